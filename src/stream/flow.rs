//! Flow control as brpc has it: a writer may have at most `max_buf_size`
//! bytes the peer's handler has not consumed yet; FEEDBACK frames carry the
//! peer's cumulative consumed count and wake whoever waits for room.
//! Closing wakes every waiter at once with `EINVAL`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::Error;
use crate::runtime::{spawn_or_run, timers, TimerId};
use crate::stats;

/// Runs once with `Ok` (writable), `ETIMEDOUT` or `EINVAL` (closed).
pub type OnWritable = Box<dyn FnOnce(Result<(), Error>) + Send>;

/// Waiting for room ended without it: `EINVAL`, the stream closed (or is
/// unknown).
pub(super) fn closed() -> Error {
    Error::new(libc::EINVAL, "the stream is closed")
}

/// Waiting for room ended without it: `ETIMEDOUT`.
fn timed_out() -> Error {
    Error::new(libc::ETIMEDOUT, "the stream did not become writable in time")
}

pub(super) struct Flow {
    /// 0: no flow control.
    /// From `max_buf_size`, an `i32`.
    window: u32,
    /// The stream ended. Written and read under `waiters`' lock (an atomic
    /// only so it can sit here, in the word `window` leaves half empty).
    closed: AtomicBool,
    produced: AtomicU64,
    remote_consumed: AtomicU64,
    /// This stream's share of `stats::STREAM_BYTES_UNCONSUMED`: never more
    /// than it added, all of it taken back when the stream ends.
    unconsumed: AtomicU64,
    waiters: Mutex<Waiters>,
    wakeup: Condvar,
}

/// Inline in every stream, so small: the `StreamWait` callbacks, a few
/// at most, are a list allocated by the first of them.
#[derive(Default)]
struct Waiters {
    callbacks: Option<Box<Callbacks>>,
}

#[derive(Default)]
struct Callbacks {
    next: u64,
    list: Vec<Waiter>,
}

struct Waiter {
    key: u64,
    callback: OnWritable,
    timer: Option<TimerId>,
}

impl Waiters {
    /// The callback of the waiter `key`, if it is still waiting.
    fn take(&mut self, key: u64) -> Option<OnWritable> {
        let list = &mut self.callbacks.as_mut()?.list;
        let at = list.iter().position(|waiter| waiter.key == key)?;
        Some(list.swap_remove(at).callback)
    }
}

impl Flow {
    pub(super) fn new(window: u32) -> Self {
        Flow {
            window,
            closed: AtomicBool::new(false),
            produced: AtomicU64::new(0),
            remote_consumed: AtomicU64::new(0),
            unconsumed: AtomicU64::new(0),
            waiters: Mutex::new(Waiters::default()),
            wakeup: Condvar::new(),
        }
    }

    /// Room for one more message (brpc lets one message overshoot a window
    /// that still had room).
    pub(super) fn writable(&self) -> bool {
        self.window == 0
            || self.produced.load(Ordering::Acquire)
                < self.remote_consumed.load(Ordering::Acquire).saturating_add(u64::from(self.window))
    }

    /// Counts `len` more bytes in flight, once [`Flow::writable`] let them in.
    pub(super) fn produce(&self, len: usize) {
        self.produced.fetch_add(len as u64, Ordering::AcqRel);
        if self.window > 0 {
            // The gauge first: the share never exceeds what it holds.
            stats::STREAM_BYTES_UNCONSUMED.add(len as u64);
            self.unconsumed.fetch_add(len as u64, Ordering::AcqRel);
        }
    }

    /// The peer's handler has consumed `consumed` bytes in all.
    pub(super) fn on_feedback(&self, consumed: u64) {
        self.remote_consumed.fetch_max(consumed, Ordering::AcqRel);
        self.shrink_unconsumed();
        if self.writable() {
            self.wake(Ok(()));
        }
    }

    /// Brings the stream's unconsumed share down to what the peer has not
    /// consumed yet (racing a write, it may briefly count less).
    fn shrink_unconsumed(&self) {
        let outstanding =
            self.produced.load(Ordering::Acquire).saturating_sub(self.remote_consumed.load(Ordering::Acquire));
        let mut share = self.unconsumed.load(Ordering::Acquire);
        while share > outstanding {
            match self.unconsumed.compare_exchange(share, outstanding, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return stats::STREAM_BYTES_UNCONSUMED.sub(share - outstanding),
                Err(now) => share = now,
            }
        }
    }

    /// The stream ended: waiters hear `EINVAL`, its unconsumed bytes are
    /// reclaimed.
    pub(super) fn on_closed(&self) {
        self.reclaim_unconsumed();
        let waiters = self.waiters.lock();
        self.closed.store(true, Ordering::Relaxed);
        drop(waiters);
        self.wake(Err(closed()));
    }

    fn reclaim_unconsumed(&self) {
        stats::STREAM_BYTES_UNCONSUMED.sub(self.unconsumed.swap(0, Ordering::AcqRel));
    }

    fn wake(&self, outcome: Result<(), Error>) {
        let callbacks: Vec<OnWritable> = {
            let mut waiters = self.waiters.lock();
            self.wakeup.notify_all();
            waiters
                .callbacks
                .as_mut()
                // The list only: keys keep counting up, so a timer that
                // fires late never takes a later waiter.
                .map_or_else(Vec::new, |callbacks| std::mem::take(&mut callbacks.list))
                .into_iter()
                .map(|Waiter { callback, timer, .. }| {
                    if let Some(timer) = timer {
                        timers().cancel(timer);
                    }
                    callback
                })
                .collect()
        };
        for callback in callbacks {
            run_on_worker(callback, outcome.clone());
        }
    }

    /// Blocks until writable (`Ok`), closed (`EINVAL`) or `timeout`
    /// (`ETIMEDOUT`).
    pub(super) fn wait(&self, timeout: Option<Duration>) -> Result<(), Error> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut waiters = self.waiters.lock();
        loop {
            if self.closed.load(Ordering::Relaxed) {
                return Err(closed());
            }
            if self.writable() {
                return Ok(());
            }
            match deadline {
                Some(deadline) => {
                    if self.wakeup.wait_until(&mut waiters, deadline).timed_out()
                        && !self.writable()
                        && !self.closed.load(Ordering::Relaxed)
                    {
                        return Err(timed_out());
                    }
                }
                None => self.wakeup.wait(&mut waiters),
            }
        }
    }

    /// Calls `on_writable` once, on a worker, when the stream is writable,
    /// closed, or `timeout` passed. `owner` holds this flow (`flow_of`
    /// finds it there): a timeout firing after it is gone does nothing.
    pub(super) fn wait_async<O: Send + Sync + 'static>(
        owner: &Arc<O>,
        flow_of: fn(&O) -> &Flow,
        timeout: Option<Duration>,
        on_writable: OnWritable,
    ) {
        let this = flow_of(owner);
        let mut waiters = this.waiters.lock();
        if this.closed.load(Ordering::Relaxed) {
            drop(waiters);
            return run_on_worker(on_writable, Err(closed()));
        }
        if this.writable() {
            drop(waiters);
            return run_on_worker(on_writable, Ok(()));
        }
        let callbacks = waiters.callbacks.get_or_insert_with(Box::default);
        let key = callbacks.next;
        callbacks.next += 1;
        let timer = timeout.map(|timeout| {
            let owner: Weak<O> = Arc::downgrade(owner);
            timers().schedule(
                Instant::now() + timeout,
                Box::new(move || {
                    let Some(owner) = owner.upgrade() else { return };
                    let expired = flow_of(&owner).waiters.lock().take(key);
                    if let Some(callback) = expired {
                        run_on_worker(callback, Err(timed_out()));
                    }
                }),
            )
        });
        callbacks.list.push(Waiter { key, callback: on_writable, timer });
    }
}

impl Drop for Flow {
    /// A stream that never ended (its creation failed half-way) leaves no
    /// share behind either.
    fn drop(&mut self) {
        self.reclaim_unconsumed();
    }
}

pub(super) fn run_on_worker(callback: OnWritable, outcome: Result<(), Error>) {
    spawn_or_run(move || callback(outcome));
}
