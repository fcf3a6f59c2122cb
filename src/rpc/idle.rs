//! brpc's `ServerOptions::idle_timeout_sec`: once a second the server looks
//! at the bytes each connection moved; one that moved none for the timeout
//! is closed (`EUNUSED`, as brpc fails it). Streams ride on their
//! connection, so their traffic keeps it alive.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::errno;
use crate::error::Error;
use crate::socket::{Socket, SocketId};

/// How often connections are looked at (brpc's interval too).
pub(super) const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Each connection's bytes moved when last seen changing, and when.
#[derive(Default)]
pub(super) struct IdleConnections {
    last_moved: HashMap<SocketId, (u64, Instant)>,
}

impl IdleConnections {
    /// Closes those of `connections` that moved no byte for `timeout`;
    /// forgets the connections that are gone.
    pub(super) fn sweep(&mut self, connections: &HashSet<SocketId>, timeout: Duration, now: Instant) {
        self.last_moved.retain(|id, _| connections.contains(id));
        for id in connections {
            let Some(socket) = Socket::address(*id) else { continue };
            let traffic = socket.traffic();
            let moved = traffic.bytes_read + traffic.bytes_written;
            // First seen: idle since it was made if it never moved a byte.
            let first_seen = if moved == 0 { now.checked_sub(traffic.age).unwrap_or(now) } else { now };
            let last = self.last_moved.entry(*id).or_insert((moved, first_seen));
            if last.0 != moved {
                *last = (moved, now);
            } else if now.saturating_duration_since(last.1) >= timeout {
                let text = format!("No data transmission for {} seconds", timeout.as_secs());
                log_debug!("close the connection from {:?}: {text}", socket.remote());
                socket.set_failed(Error::new(errno::EUNUSED, text));
            }
        }
    }
}
