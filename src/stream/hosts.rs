//! Which streams ride on which host connection, so a failing connection
//! closes every stream on it with its own code and text.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use parking_lot::Mutex;

use super::{close, StreamId};
use crate::socket::{Socket, SocketId};

static HOSTS: LazyLock<Mutex<HashMap<SocketId, HashSet<StreamId>>>> = LazyLock::new(Default::default);

pub(super) fn attach(host: &Socket, stream: StreamId) {
    HOSTS.lock().entry(host.id()).or_default().insert(stream);
    // A host that failed before the stream joined it did not see it.
    if let Some((code, text)) = host.failure() {
        on_host_failed(host.id(), code, &text);
    }
}

pub(super) fn detach(host: SocketId, stream: StreamId) {
    let mut hosts = HOSTS.lock();
    if let Some(streams) = hosts.get_mut(&host) {
        streams.remove(&stream);
        if streams.is_empty() {
            hosts.remove(&host);
        }
    }
}

/// The host connection failed: every stream on it fails with its code and text.
pub fn on_host_failed(host: SocketId, code: i32, text: &str) {
    let streams = HOSTS.lock().remove(&host).unwrap_or_default();
    for stream in streams {
        close::fail(stream, code, text);
    }
}
