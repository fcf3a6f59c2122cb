//! Which streams ride on which host connection, so a failing connection
//! closes every stream on it with its own code and text.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use parking_lot::Mutex;

use super::{close, StreamId};
use crate::socket::{Socket, SocketId};

#[derive(Default)]
struct Hosts {
    streams: HashMap<SocketId, HashSet<StreamId>>,
    /// Connections whose owner let go of them while streams still rode on
    /// them: they close when their last stream does.
    closing: HashMap<SocketId, (i32, String)>,
}

static HOSTS: LazyLock<Mutex<Hosts>> = LazyLock::new(Default::default);

pub(super) fn attach(host: &Socket, stream: StreamId) {
    HOSTS.lock().streams.entry(host.id()).or_default().insert(stream);
    // A host that failed before the stream joined it did not see it.
    if let Some((code, text)) = host.failure() {
        on_host_failed(host.id(), code, &text);
    }
}

pub(super) fn detach(host: SocketId, stream: StreamId) {
    let close_now = {
        let mut hosts = HOSTS.lock();
        let emptied = hosts.streams.get_mut(&host).is_some_and(|streams| {
            streams.remove(&stream);
            streams.is_empty()
        });
        if emptied {
            hosts.streams.remove(&host);
            hosts.closing.remove(&host)
        } else {
            None
        }
    };
    if let Some((code, text)) = close_now {
        Socket::set_failed_by_id(host, code, &text);
    }
}

/// The host connection failed: every stream on it fails with its code and text.
pub fn on_host_failed(host: SocketId, code: i32, text: &str) {
    let streams = {
        let mut hosts = HOSTS.lock();
        hosts.closing.remove(&host);
        hosts.streams.remove(&host).unwrap_or_default()
    };
    for stream in streams {
        close::fail(stream, code, text);
    }
}

/// Fails the connection `host` now, or, while streams ride on it, when the
/// last of them closes (a destroyed channel's connection serves its
/// streams to the end, as brpc's shared sockets do).
pub fn close_host_when_idle(host: SocketId, code: i32, text: &str) {
    {
        let mut hosts = HOSTS.lock();
        if hosts.streams.get(&host).is_some_and(|streams| !streams.is_empty()) {
            hosts.closing.insert(host, (code, text.to_string()));
            return;
        }
    }
    Socket::set_failed_by_id(host, code, text);
}
