//! One timer thread for idle timeouts, RPC deadlines and retries: a heap of
//! deadlines and a condvar it sleeps on until the earliest one.
//!
//! Tasks live in a map by id and the heap only holds (deadline, id), so
//! cancelling is a map removal; the heap entry it leaves behind is skipped
//! when it reaches the top, and the heap is compacted when such entries
//! outnumber the live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::run_contained;
use crate::id::IdMap;

/// Names one scheduled task; never reused within a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId(u64);

type Task = Box<dyn FnOnce() + Send>;

/// Below this many heap entries, cancelled leftovers are not worth a rebuild.
const COMPACT_MIN_ENTRIES: usize = 64;

/// The process's timer service; its thread starts with the first schedule.
pub fn timers() -> &'static TimerService {
    static TIMERS: OnceLock<TimerService> = OnceLock::new();
    TIMERS.get_or_init(TimerService::new)
}

pub struct TimerService {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the earliest deadline moves earlier or the service stops.
    changed: Condvar,
}

struct State {
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    tasks: IdMap<u64, Task>,
    next_id: u64,
    thread: Option<JoinHandle<()>>,
    stopping: bool,
}

impl TimerService {
    pub(crate) fn new() -> TimerService {
        TimerService {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    deadlines: BinaryHeap::new(),
                    tasks: IdMap::default(),
                    next_id: 1,
                    thread: None,
                    stopping: false,
                }),
                changed: Condvar::new(),
            }),
        }
    }

    /// Runs `task` on the timer thread at or after `deadline`. Tasks must be
    /// short; they may schedule and cancel.
    pub fn schedule(&self, deadline: Instant, task: Box<dyn FnOnce() + Send>) -> TimerId {
        let mut state = self.shared.state.lock();
        let id = state.next_id;
        state.next_id += 1;
        let earliest = state.deadlines.peek().is_none_or(|Reverse((first, _))| deadline < *first);
        state.tasks.insert(id, task);
        state.deadlines.push(Reverse((deadline, id)));
        self.start_thread_if_needed(&mut state);
        if earliest {
            self.shared.changed.notify_one();
        }
        TimerId(id)
    }

    /// `true`: the task was removed before it started and will never run (it
    /// is dropped). `false`: it already ran, is running, or never existed.
    pub fn cancel(&self, id: TimerId) -> bool {
        let removed = {
            let mut state = self.shared.state.lock();
            let removed = state.tasks.remove(&id.0);
            if removed.is_some() {
                state.compact_if_mostly_cancelled();
            }
            removed
        };
        // Dropped without the lock: the task's captures may touch timers on drop.
        removed.is_some()
    }

    /// Tasks scheduled and neither run nor cancelled yet.
    pub fn pending(&self) -> usize {
        self.shared.state.lock().tasks.len()
    }

    fn start_thread_if_needed(&self, state: &mut MutexGuard<'_, State>) {
        if state.thread.is_some() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        match thread::Builder::new().name("brpc_timer".into()).spawn(move || shared.run()) {
            Ok(thread) => state.thread = Some(thread),
            // Tasks stay queued; the next schedule tries again.
            Err(err) => log_error!("cannot start the timer thread: {err}"),
        }
    }
}

impl Drop for TimerService {
    fn drop(&mut self) {
        let thread = {
            let mut state = self.shared.state.lock();
            state.stopping = true;
            state.thread.take()
        };
        self.shared.changed.notify_all();
        if let Some(thread) = thread {
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl State {
    fn compact_if_mostly_cancelled(&mut self) {
        if self.deadlines.len() > COMPACT_MIN_ENTRIES && self.deadlines.len() > 2 * self.tasks.len() {
            let tasks = &self.tasks;
            self.deadlines.retain(|Reverse((_, id))| tasks.contains_key(id));
        }
    }
}

impl Shared {
    fn run(&self) {
        let mut state = self.state.lock();
        while !state.stopping {
            let Some(&Reverse((deadline, id))) = state.deadlines.peek() else {
                self.changed.wait(&mut state);
                continue;
            };
            if !state.tasks.contains_key(&id) {
                // Cancelled: its heap entry was left for us to discard.
                state.deadlines.pop();
                continue;
            }
            if Instant::now() < deadline {
                self.changed.wait_until(&mut state, deadline);
                continue;
            }
            state.deadlines.pop();
            // Taking the task out under the lock is what makes a later cancel return false.
            if let Some(task) = state.tasks.remove(&id) {
                MutexGuard::unlocked(&mut state, || run_contained("a timer task", task));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::{channel, RecvTimeoutError};
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(5);

    fn wait_for(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn tasks_run_in_deadline_order() {
        let service = TimerService::new();
        let (sender, fired) = channel();
        let start = Instant::now();
        for (label, delay_ms) in [(0, 60u64), (1, 20), (2, 40), (3, 0)] {
            let sender = sender.clone();
            service.schedule(
                start + Duration::from_millis(delay_ms),
                Box::new(move || sender.send((label, Instant::now())).unwrap()),
            );
        }
        let order: Vec<_> = (0..4).map(|_| fired.recv_timeout(WAIT).unwrap()).collect();
        assert_eq!(order.iter().map(|(label, _)| *label).collect::<Vec<_>>(), vec![3, 1, 2, 0]);
        assert!(order[3].1 >= start + Duration::from_millis(60), "ran before its deadline");
        assert_eq!(service.pending(), 0);
    }

    #[test]
    fn cancel_before_run_drops_the_task_and_it_never_runs() {
        let service = TimerService::new();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let id = service.schedule(
            Instant::now() + Duration::from_millis(250),
            Box::new(move || flag.store(true, Ordering::SeqCst)),
        );
        assert_eq!(service.pending(), 1);
        assert!(service.cancel(id));
        assert_eq!(service.pending(), 0);
        assert_eq!(Arc::strong_count(&ran), 1, "the cancelled task was not dropped");
        assert!(!service.cancel(id));
        thread::sleep(Duration::from_millis(350));
        assert!(!ran.load(Ordering::SeqCst));
    }

    #[test]
    fn cancel_after_run_returns_false() {
        let service = TimerService::new();
        let (sender, fired) = channel();
        let id = service.schedule(Instant::now(), Box::new(move || sender.send(()).unwrap()));
        fired.recv_timeout(WAIT).unwrap();
        assert!(!service.cancel(id));
        assert!(!service.cancel(TimerId(u64::MAX)), "an id never issued");
    }

    #[test]
    fn an_earlier_timer_wakes_a_thread_sleeping_on_a_later_one() {
        let service = TimerService::new();
        let (sender, fired) = channel();
        let late = sender.clone();
        service.schedule(Instant::now() + Duration::from_secs(60), Box::new(move || late.send("late").unwrap()));
        thread::sleep(Duration::from_millis(20));
        service.schedule(Instant::now() + Duration::from_millis(10), Box::new(move || sender.send("early").unwrap()));
        assert_eq!(fired.recv_timeout(WAIT).unwrap(), "early");
        assert_eq!(service.pending(), 1);
    }

    #[test]
    fn tasks_may_schedule_and_cancel() {
        let service = Arc::new(TimerService::new());
        let (sender, fired) = channel();
        let victim = service.schedule(Instant::now() + Duration::from_secs(60), Box::new(|| {}));
        let weak = Arc::downgrade(&service);
        service.schedule(
            Instant::now(),
            Box::new(move || {
                let Some(service) = weak.upgrade() else { return };
                let cancelled = service.cancel(victim);
                service.schedule(Instant::now(), Box::new(move || sender.send(cancelled).unwrap()));
            }),
        );
        assert!(fired.recv_timeout(WAIT).unwrap());
        assert_eq!(service.pending(), 0);
    }

    #[test]
    fn a_panicking_task_does_not_stop_the_timer_thread() {
        let service = TimerService::new();
        let (sender, fired) = channel();
        service.schedule(Instant::now(), Box::new(|| panic!("deliberate test panic in a timer task")));
        service.schedule(Instant::now() + Duration::from_millis(10), Box::new(move || sender.send(()).unwrap()));
        fired.recv_timeout(WAIT).unwrap();
    }

    #[test]
    fn cancelled_entries_are_compacted_out_of_the_heap() {
        let service = TimerService::new();
        let far = Instant::now() + Duration::from_secs(3600);
        let ids: Vec<_> = (0..1000).map(|_| service.schedule(far, Box::new(|| {}))).collect();
        for id in &ids[..990] {
            assert!(service.cancel(*id));
        }
        let state = service.shared.state.lock();
        assert_eq!(state.tasks.len(), 10);
        assert!(state.deadlines.len() <= 2 * COMPACT_MIN_ENTRIES, "heap kept {} entries", state.deadlines.len());
    }

    #[test]
    fn cancel_racing_the_deadline_either_runs_or_cancels_each_task() {
        const TIMERS: usize = 300;
        let service = Arc::new(TimerService::new());
        let ran: Arc<Vec<AtomicBool>> = Arc::new((0..TIMERS).map(|_| AtomicBool::new(false)).collect());
        let start = Instant::now() + Duration::from_millis(30);
        let scheduled: Vec<(TimerId, Instant)> = (0..TIMERS)
            .map(|index| {
                let deadline = start + Duration::from_micros(200 * index as u64);
                let ran = Arc::clone(&ran);
                let id = service.schedule(deadline, Box::new(move || ran[index].store(true, Ordering::SeqCst)));
                (id, deadline)
            })
            .collect();
        let canceller_service = Arc::clone(&service);
        let canceller = thread::spawn(move || {
            scheduled
                .into_iter()
                .map(|(id, deadline)| {
                    let now = Instant::now();
                    if deadline > now {
                        thread::sleep(deadline - now);
                    }
                    canceller_service.cancel(id)
                })
                .collect::<Vec<bool>>()
        });
        let cancelled = canceller.join().unwrap();
        wait_for("every uncancelled task to run", || {
            service.pending() == 0
                && (0..TIMERS).filter(|&i| ran[i].load(Ordering::SeqCst)).count()
                    == cancelled.iter().filter(|c| !**c).count()
        });
        for (index, was_cancelled) in cancelled.iter().enumerate() {
            assert_ne!(ran[index].load(Ordering::SeqCst), *was_cancelled, "timer {index}: ran == cancelled");
        }
    }

    #[test]
    fn the_process_service_runs_tasks() {
        let (sender, fired) = channel();
        timers().schedule(Instant::now(), Box::new(move || sender.send(()).unwrap()));
        assert_ne!(fired.recv_timeout(WAIT), Err(RecvTimeoutError::Timeout));
    }
}
