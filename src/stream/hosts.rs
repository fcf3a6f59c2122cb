//! Which streams ride on which host connection. The set lives with the
//! connection ([`crate::socket::Riders`]), so a failing connection closes
//! every stream on it with its own code and text, and a stream joining a
//! connection that failed already is closed at once.

use crate::errno;
use crate::error::Error;
use crate::socket::{Refused, Socket, SocketId};

use super::core::StreamId;

/// `stream` rides on `host` from now on; when the connection failed
/// already, the stream fails with its error. `ELIMIT` when the connection
/// carries as many streams as it takes (the stream is left as it was).
pub(super) fn attach(host: &Socket, stream: StreamId) -> Result<(), Error> {
    match host.riders().add(stream) {
        Ok(()) => Ok(()),
        Err(Refused::Failed) => {
            let failure = host.failure().unwrap_or_else(gone);
            Socket::set_failed_by_id(stream, failure);
            Ok(())
        }
        Err(Refused::Full { max }) => Err(full(max)),
    }
}

/// The error of a stream whose call's connection is gone.
pub(super) fn gone() -> Error {
    Error::new(errno::EFAILEDSOCKET, "the connection of the stream's call is gone")
}

/// The error of a connection that carries `max` streams already.
pub(super) fn full(max: usize) -> Error {
    Error::new(errno::ELIMIT, format!("the connection carries max_streams_per_connection={max} streams already"))
}

/// Whether `host` has room for `n` more streams now.
pub(super) fn has_room(host: &Socket, n: usize) -> Result<(), Error> {
    let max = host.riders().max();
    if max > 0 && host.riders().count() + n > max {
        return Err(full(max));
    }
    Ok(())
}

/// `stream` ended; the last one off a connection its owner let go closes it.
pub(super) fn detach(host: SocketId, stream: StreamId) {
    let Some(host) = Socket::address_failed_as_well(host) else { return };
    if let Some(close) = host.riders().remove(stream) {
        host.close_after_flush(close);
    }
}

/// The host connection failed: every stream on it fails with its error.
pub fn on_host_failed(host: &Socket, error: &Error) {
    for stream in host.riders().take_all() {
        Socket::set_failed_by_id(stream, error.clone());
    }
}

/// Fails the connection `host` now, or, while streams ride on it, when the
/// last of them closes (a destroyed channel's connection serves its
/// streams to the end, as brpc's shared sockets do). Either way after what
/// is queued on it (the last streams' CLOSE frames among it) went out.
pub fn close_host_when_idle(host: SocketId, error: Error) {
    if let Some(socket) = Socket::address(host) {
        if socket.riders().close_when_empty(error.clone()) {
            socket.close_after_flush(error);
        }
    }
}
