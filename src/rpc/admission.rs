//! What a server takes from its peers beyond one frame's limits: how many
//! connections it keeps, how many bytes of requests still being read it
//! holds (every connection together), and how long the header of a frame
//! may take to arrive. brpc has none of these (only `max_body_size` per
//! frame); each answers an attack that holds a server's memory or
//! descriptors without sending a whole request.
//!
//! | bound | default | beyond it |
//! | --- | --- | --- |
//! | `max_connections` | 10000 | a new connection is closed at once (logged) |
//! | `max_partial_request_bytes` | 512 MiB | the connection whose bytes went past it is closed (logged, `EOVERCROWDED`) |
//! | `header_timeout` | 10 s | a connection holding part of a frame header that long is closed (logged, `ETIMEDOUT`) |

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

/// One connection's share: the bytes of an incomplete frame it holds, and
/// the watch over an incomplete header.
pub(super) struct Intake {
    budget: Arc<PartialBudget>,
    header_timeout: Option<Duration>,
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
    next_ticket: u64,
}

impl Intake {
    pub(super) fn new(budget: Arc<PartialBudget>, header_timeout: Option<Duration>) -> Intake {
        Intake { budget, header_timeout, state: Arc::default() }
    }

    /// The connection's input was cut into frames and `pending` bytes of
    /// an incomplete one remain. An error closes the connection.
    pub(super) fn after_input(&self, socket: &Socket, pending: usize) -> Result<(), Error> {
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
        match (header_incomplete, self.header_timeout) {
            (true, Some(timeout)) if state.header_ticket.is_none() => {
                state.next_ticket += 1;
                let ticket = state.next_ticket;
                state.header_ticket = Some(ticket);
                watch_header(Arc::clone(&self.state), ticket, socket.id(), timeout);
            }
            (true, _) => {}
            (false, _) => state.header_ticket = None,
        }
        Ok(())
    }

    /// The connection failed: its bytes leave the budget.
    pub(super) fn on_closed(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        state.header_ticket = None;
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
        Socket::set_failed_by_id(socket, libc::ETIMEDOUT, &text);
    });
    timers().schedule(Instant::now() + timeout, expire);
}
