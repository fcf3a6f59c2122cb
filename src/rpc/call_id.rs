//! brpc's `CallId`: a number a program takes from a controller before a
//! call (`Controller::call_id()`) to cancel the call from anywhere
//! (`brpc::StartCancel`) or wait until it ended and its done returned
//! (`brpc::Join`). Ids are never reused; one unknown here has ended.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

use parking_lot::{Condvar, Mutex};

use super::client;
use crate::id::{Id, IdMap};

#[derive(Default)]
struct Slot {
    /// The call it names, once started.
    call: Option<Id>,
    canceled: bool,
}

static NEXT: AtomicU64 = AtomicU64::new(1);
static SLOTS: LazyLock<(Mutex<IdMap<u64, Slot>>, Condvar)> = LazyLock::new(Default::default);

/// A new id, not yet naming a call.
pub fn allocate() -> u64 {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    SLOTS.0.lock().insert(id, Slot::default());
    id
}

/// Whether `id` names no ended call yet (it may name no call at all).
pub fn is_open(id: u64) -> bool {
    SLOTS.0.lock().contains_key(&id)
}

/// `id` now names `call`; a cancellation that came first cancels it now.
pub fn bind(id: u64, call: Id) {
    let canceled = {
        let mut slots = SLOTS.0.lock();
        match slots.get_mut(&id) {
            Some(slot) => {
                slot.call = Some(call);
                slot.canceled
            }
            None => false,
        }
    };
    if canceled {
        client::cancel(call);
    }
}

/// brpc's `StartCancel`: the call ends with `ECANCELED` unless it ended;
/// before it started, it will end so as soon as it starts.
pub fn cancel(id: u64) {
    let call = {
        let mut slots = SLOTS.0.lock();
        let Some(slot) = slots.get_mut(&id) else { return };
        slot.canceled = true;
        slot.call
    };
    if let Some(call) = call {
        client::cancel(call);
    }
}

/// The call `id` names ended and its done returned: wake the joiners.
pub fn ended(id: u64) {
    SLOTS.0.lock().remove(&id);
    SLOTS.1.notify_all();
}

/// The controller holding `id` is reset or gone: an id that names no
/// call is dropped (its joiners return).
pub fn forget(id: u64) {
    let mut slots = SLOTS.0.lock();
    if slots.get(&id).is_some_and(|slot| slot.call.is_none()) {
        slots.remove(&id);
        SLOTS.1.notify_all();
    }
}

/// brpc's `Join`: waits until the call `id` names ended and its done
/// returned (at once when it did already).
pub fn join(id: u64) {
    let mut slots = SLOTS.0.lock();
    while slots.contains_key(&id) {
        SLOTS.1.wait(&mut slots);
    }
}
