//! What a server takes from its peers beyond one frame's limits: how many
//! connections it keeps, how many bytes of requests still being read it
//! holds (every connection together), how long the header of a frame may
//! take to arrive and how slowly its body may, and how many streams one
//! connection carries. brpc has none of these (only `max_body_size` per
//! frame); each answers an attack that holds a server's memory or
//! descriptors without sending a whole request.
//!
//! | bound | default | beyond it |
//! | --- | --- | --- |
//! | `max_connections` | 10000 | a new connection is closed at once (logged) |
//! | `max_partial_request_bytes` | 512 MiB | the connection whose bytes went past it is closed (logged, `EOVERCROWDED`) |
//! | `header_timeout` | 10 s | a connection holding part of a frame header that long is closed (logged, `ETIMEDOUT`) |
//! | `body_timeout` | 30 s | a connection whose frame (header whole) is not whole after this long plus one second per [`BODY_MIN_RATE`] bytes of it received is closed (logged, `ETIMEDOUT`) |
//! | `max_streams_per_connection` | 65536 | a request that would take its connection past it is answered `ELIMIT`, its method never runs |
//! | calls of one connection read and not answered | 1024 calls or 8 MiB of requests | the connection is not read until some are answered (its peer's sends block); checked between reads, so one read's calls (64 KiB) may pass it |

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::errno;
use crate::error::Error;
use crate::protocol::RawFrame;
use crate::runtime::timers;
use crate::socket::{Socket, SocketId};

/// Connections a server keeps by default; 0 in the options: no bound.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Bytes of incomplete requests a server holds by default, all
/// connections together (eight bodies of brpc's `max_body_size`); 0 in
/// the options: no bound.
pub const DEFAULT_MAX_PARTIAL_REQUEST_BYTES: usize = 512 * 1024 * 1024;
/// How long a frame's header may take by default.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a frame's body may take by default, before the time its bytes
/// earn at [`BODY_MIN_RATE`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes a second a frame's body must average once its `body_timeout`
/// passed: every this many bytes of the frame received earn it one more
/// second (a 64 MiB body at 64 KiB/s or faster is never cut; a peer
/// trickling a byte now and then is, after `body_timeout`).
pub const BODY_MIN_RATE: usize = 64 * 1024;
/// Streams one connection carries at once by default (accepted by the
/// server and not yet closed); 0 in the options: no bound. brpc has no
/// bound and its programs open ten thousand streams on one connection;
/// this many idle streams hold about 30 MiB.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: usize = 65_536;

/// Calls one connection may have read and not yet answered before the
/// server stops reading it: a peer that sends requests faster than they
/// are answered (or never reads the answers) queues no more than this.
pub const MAX_UNANSWERED_CALLS_PER_CONNECTION: usize = 1024;
/// The same bound in bytes of requests (a single larger request is still
/// read: the gate closes only after it).
pub const MAX_UNANSWERED_BYTES_PER_CONNECTION: usize = 8 * 1024 * 1024;

/// The calls of one connection read and not yet answered: the server
/// reads the connection only while they are under the bounds above.
#[derive(Default)]
pub(super) struct CallGate {
    calls: AtomicUsize,
    bytes: AtomicUsize,
}

impl CallGate {
    pub(super) fn is_open(&self) -> bool {
        self.calls.load(Ordering::SeqCst) < MAX_UNANSWERED_CALLS_PER_CONNECTION
            && self.bytes.load(Ordering::SeqCst) < MAX_UNANSWERED_BYTES_PER_CONNECTION
    }

    pub(super) fn call_read(&self, bytes: usize) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
    }

    /// One call answered; the connection is read again if it waited for it.
    pub(super) fn call_answered(&self, bytes: usize, socket: SocketId) {
        self.calls.fetch_sub(1, Ordering::SeqCst);
        self.bytes.fetch_sub(bytes, Ordering::SeqCst);
        if self.is_open() {
            if let Some(socket) = Socket::address(socket) {
                socket.resume_input();
            }
        }
    }
}

/// Whether a server at `connections` may take one more; logs the refusals
/// (the first, then every thousandth).
pub(super) fn admit_connection(connections: usize, max: usize, refused: &AtomicUsize) -> bool {
    if max == 0 || connections < max {
        return true;
    }
    let count = refused.fetch_add(1, Ordering::Relaxed) + 1;
    if count % 1000 == 1 {
        log_error!("the server holds max_connections={max} connections: a new one is closed ({count} so far)");
    }
    false
}

/// Bytes of incomplete requests one server holds, and its bound.
#[derive(Default)]
pub(super) struct PartialBudget {
    held: AtomicUsize,
    /// 0: no bound.
    max: AtomicUsize,
}

impl PartialBudget {
    pub(super) fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Release);
    }

    pub(super) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// How long the parts of a frame may take; None: no bound.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct FrameTimeouts {
    pub(super) header: Option<Duration>,
    pub(super) body: Option<Duration>,
}

/// One connection's share: the bytes of an incomplete frame it holds, and
/// the watches over an incomplete header and an incomplete body.
pub(super) struct Intake {
    budget: Arc<PartialBudget>,
    timeouts: FrameTimeouts,
    state: Arc<Mutex<IntakeState>>,
}

#[derive(Default)]
struct IntakeState {
    /// Bytes counted in the budget for this connection.
    held: usize,
    /// The connection failed: nothing is counted any more.
    closed: bool,
    /// The header watch running now, if any, by its ticket.
    header_ticket: Option<u64>,
    /// When the incomplete frame whose header is whole began to be
    /// waited for; None when no such frame is pending.
    body_started: Option<Instant>,
    /// The body watch (one timer at most) is scheduled.
    body_watched: bool,
    next_ticket: u64,
}

impl Intake {
    pub(super) fn new(budget: Arc<PartialBudget>, timeouts: FrameTimeouts) -> Intake {
        Intake { budget, timeouts, state: Arc::default() }
    }

    /// The connection's input was cut into frames and `pending` bytes of
    /// an incomplete one remain; `frame_ended` when at least one frame was
    /// cut off (what is pending is a new frame's). An error closes the
    /// connection.
    pub(super) fn after_input(&self, socket: &Socket, pending: usize, frame_ended: bool) -> Result<(), Error> {
        let mut state = self.state.lock();
        if state.closed {
            return Ok(());
        }
        let grew = pending > state.held;
        if grew {
            self.budget.held.fetch_add(pending - state.held, Ordering::AcqRel);
        } else {
            self.budget.held.fetch_sub(state.held - pending, Ordering::AcqRel);
        }
        state.held = pending;
        let max = self.budget.max.load(Ordering::Acquire);
        let held = self.budget.held();
        if grew && max > 0 && held > max {
            let text = format!(
                "requests still being read hold {held} bytes, more than the server's \
                 max_partial_request_bytes={max}: this connection ({pending} bytes of a request) is closed"
            );
            log_error!("{text}");
            return Err(Error::new(errno::EOVERCROWDED, text));
        }
        let header_incomplete = pending > 0 && pending < RawFrame::HEADER_LEN;
        match (header_incomplete, self.timeouts.header) {
            (true, Some(timeout)) if state.header_ticket.is_none() => {
                state.next_ticket += 1;
                let ticket = state.next_ticket;
                state.header_ticket = Some(ticket);
                watch_header(Arc::clone(&self.state), ticket, socket.id(), timeout);
            }
            (true, _) => {}
            (false, _) => state.header_ticket = None,
        }
        let body_incomplete = pending >= RawFrame::HEADER_LEN;
        match (body_incomplete, self.timeouts.body) {
            (true, Some(timeout)) => {
                let now = Instant::now();
                if frame_ended || state.body_started.is_none() {
                    state.body_started = Some(now);
                }
                // One timer per connection: it follows the frames.
                if !state.body_watched {
                    state.body_watched = true;
                    watch_body(Arc::clone(&self.state), socket.id(), timeout, now + timeout);
                }
            }
            _ => state.body_started = None,
        }
        Ok(())
    }

    /// The connection failed: its bytes leave the budget.
    pub(super) fn on_closed(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        state.header_ticket = None;
        state.body_started = None;
        self.budget.held.fetch_sub(std::mem::take(&mut state.held), Ordering::AcqRel);
    }
}

/// Closes the connection unless the header that was incomplete when
/// `ticket` was taken completed within `timeout`.
fn watch_header(state: Arc<Mutex<IntakeState>>, ticket: u64, socket: SocketId, timeout: Duration) {
    let expire = Box::new(move || {
        if state.lock().header_ticket != Some(ticket) {
            return;
        }
        let text = format!(
            "a frame header did not complete within header_timeout={} ms; the connection is closed",
            timeout.as_millis()
        );
        log_error!("{text}");
        Socket::set_failed_by_id(socket, Error::new(libc::ETIMEDOUT, text));
    });
    timers().schedule(Instant::now() + timeout, expire);
}

/// At `check`, closes the connection unless the frame pending then (its
/// header whole) is whole, or the bytes of it received so far earn it more
/// time at [`BODY_MIN_RATE`]; then looks again when that time is up.
fn watch_body(state: Arc<Mutex<IntakeState>>, socket: SocketId, timeout: Duration, check: Instant) {
    let expire = Box::new(move || {
        let mut locked = state.lock();
        let started = match locked.body_started {
            Some(started) if !locked.closed => started,
            _ => {
                locked.body_watched = false;
                return;
            }
        };
        let held = locked.held;
        let allowed = timeout + Duration::from_secs_f64(held as f64 / BODY_MIN_RATE as f64);
        let waited = started.elapsed();
        if waited < allowed {
            drop(locked);
            return watch_body(state, socket, timeout, started + allowed);
        }
        locked.body_watched = false;
        drop(locked);
        let text = format!(
            "a frame was not whole within body_timeout={} ms plus one second per {BODY_MIN_RATE} bytes \
             received ({held} bytes of it in {} ms); the connection is closed",
            timeout.as_millis(),
            waited.as_millis()
        );
        log_error!("{text}");
        Socket::set_failed_by_id(socket, Error::new(libc::ETIMEDOUT, text));
    });
    timers().schedule(check, expire);
}
