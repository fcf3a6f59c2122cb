//! The server side of brpc's `NotifyOnCancel`: a callback that runs once,
//! when the call's connection fails (the client went away) or, if the call
//! ends first, when its owner takes it back with [`unwatch`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

use crate::id::IdMap;
use crate::runtime::spawn;
use crate::socket::{Socket, SocketId};

pub type Callback = Box<dyn FnOnce() + Send>;

/// Connection → ticket → callback.
static WATCHES: LazyLock<Mutex<IdMap<SocketId, IdMap<u64, Callback>>>> = LazyLock::new(Default::default);
static NEXT_TICKET: AtomicU64 = AtomicU64::new(1);

/// Runs `callback` on a worker once `host` fails (soon, if it has already),
/// unless [`unwatch`] takes it back first. Returns the ticket for `unwatch`.
pub fn watch(host: SocketId, callback: Callback) -> u64 {
    let ticket = NEXT_TICKET.fetch_add(1, Ordering::Relaxed);
    WATCHES.lock().entry(host).or_default().insert(ticket, callback);
    // Registered first, then checked: a failure in between finds it either way.
    if Socket::address(host).is_none() {
        host_failed(host);
    }
    ticket
}

/// The callback of `ticket`, unless the connection's failure took it.
pub fn unwatch(host: SocketId, ticket: u64) -> Option<Callback> {
    let mut watches = WATCHES.lock();
    let of_host = watches.get_mut(&host)?;
    let callback = of_host.remove(&ticket);
    if of_host.is_empty() {
        watches.remove(&host);
    }
    callback
}

/// `host` failed: each of its callbacks runs on a worker (here when no
/// worker can start: it still runs exactly once).
pub fn host_failed(host: SocketId) {
    let Some(callbacks) = WATCHES.lock().remove(&host) else { return };
    for (_, callback) in callbacks {
        let slot = Arc::new(Mutex::new(Some(callback)));
        let on_worker = Arc::clone(&slot);
        let spawned = spawn(move || {
            if let Some(callback) = on_worker.lock().take() {
                callback();
            }
        });
        if spawned.is_err() {
            if let Some(callback) = slot.lock().take() {
                callback();
            }
        }
    }
}
