//! Non-blocking TCP connect whose result is delivered exactly once.
//!
//! Three parties may finish an attempt: the dispatcher (the fd became
//! writable or errored), the timer (the deadline passed) and the immediate
//! path (connect(2) succeeded or failed at once). They race for the attempt's
//! state; the one that takes it calls the callback, the others find nothing.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage};
use parking_lot::Mutex;

use crate::runtime::{dispatcher, timers, Interest, TimerId, Token};

/// Receives the connected fd, or `None` and the errno of the failure.
pub type OnConnect = Box<dyn FnOnce(Option<OwnedFd>, i32) + Send>;

struct Pending {
    fd: OwnedFd,
    on_connect: OnConnect,
    registration: Token,
    timer: Option<TimerId>,
}

/// One connection attempt; whoever takes `pending` finishes it.
struct Attempt {
    pending: Mutex<Option<Pending>>,
}

/// Connects to `remote` without blocking; `on_connect` runs exactly once, on
/// the calling thread (immediate result), the dispatcher thread or the timer
/// thread, so it must not block.
pub fn tcp_connect(remote: SocketAddr, deadline: Option<Instant>, on_connect: OnConnect) {
    let fd = match new_stream_socket(&remote) {
        Ok(fd) => fd,
        Err(code) => return on_connect(None, code),
    };
    let addr = SockaddrStorage::from(remote);
    match socket::connect(fd.as_raw_fd(), &addr) {
        Ok(()) => return on_connect(Some(fd), 0),
        Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(err) => return on_connect(None, err as i32),
    }
    let raw = fd.as_raw_fd();
    let attempt = Arc::new(Attempt { pending: Mutex::new(None) });
    // Held until the attempt is complete, so an event or the timer that
    // fires at once waits for the registration it has to undo.
    let mut pending = attempt.pending.lock();
    let on_event = Arc::clone(&attempt);
    let registered =
        dispatcher().register(raw, Interest::WRITE, Arc::new(move |_events| on_event.finish_from_socket()));
    let token = match registered {
        Ok(token) => token,
        Err(code) => {
            drop(fd);
            return on_connect(None, code);
        }
    };
    let timer = deadline.map(|deadline| {
        let on_timeout = Arc::clone(&attempt);
        timers().schedule(deadline, Box::new(move || on_timeout.finish(libc::ETIMEDOUT)))
    });
    *pending = Some(Pending { fd, on_connect, registration: token, timer });
}

impl Attempt {
    /// The fd reported an event: connected, or failed with SO_ERROR.
    fn finish_from_socket(&self) {
        let code = {
            let guard = self.pending.lock();
            match guard.as_ref() {
                Some(pending) => socket_error(pending.fd.as_raw_fd()),
                None => return,
            }
        };
        // Writable with no error may still be a spurious wake-up before the
        // handshake completed; then getpeername fails with ENOTCONN.
        if code == 0 && !self.is_connected() {
            return;
        }
        self.finish(code);
    }

    fn is_connected(&self) -> bool {
        let guard = self.pending.lock();
        guard.as_ref().is_some_and(|p| socket::getpeername::<SockaddrStorage>(p.fd.as_raw_fd()).is_ok())
    }

    fn finish(&self, code: i32) {
        let Some(pending) = self.pending.lock().take() else { return };
        let Pending { fd, on_connect, registration, timer } = pending;
        dispatcher().deregister(registration, fd.as_raw_fd());
        if let Some(timer) = timer {
            timers().cancel(timer);
        }
        if code == 0 {
            on_connect(Some(fd), 0);
        } else {
            drop(fd);
            on_connect(None, code);
        }
    }
}

fn new_stream_socket(remote: &SocketAddr) -> Result<OwnedFd, i32> {
    let family = if remote.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| e as i32)?;
    // Small messages (stream frames, RPCs) must not wait for Nagle.
    let _ = socket::setsockopt(&fd, sockopt::TcpNoDelay, &true);
    Ok(fd)
}

/// The pending error of a socket (SO_ERROR), 0 when there is none.
pub fn socket_error(fd: RawFd) -> i32 {
    // SAFETY: `fd` is open for the duration of this call (callers hold it).
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    match socket::getsockopt(&borrowed, sockopt::SocketError) {
        Ok(code) => code,
        Err(err) => err as i32,
    }
}
