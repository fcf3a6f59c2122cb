//! Sockets that ride on a connection (a connection's streams), kept with
//! the connection itself: when it fails, whoever handles the failure takes
//! them all at once, and a socket trying to join it afterwards is refused,
//! so none is missed whatever the timing.

use std::collections::HashSet;

use parking_lot::Mutex;

use super::SocketId;
use crate::error::Error;

#[derive(Default)]
pub struct Riders(Mutex<State>);

#[derive(Default)]
struct State {
    ids: HashSet<SocketId>,
    /// The connection failed and its riders were taken.
    taken: bool,
    /// The connection's owner let go of it while sockets still rode on it:
    /// it closes with this code and text when the last one leaves.
    close_when_empty: Option<Error>,
}

impl Riders {
    /// Adds `id`; false once the riders were taken (the connection failed).
    pub fn add(&self, id: SocketId) -> bool {
        let mut state = self.0.lock();
        if state.taken {
            return false;
        }
        state.ids.insert(id);
        true
    }

    /// Removes `id`; when it was the last one and the owner let go of the
    /// connection, the close to perform now.
    pub fn remove(&self, id: SocketId) -> Option<Error> {
        let mut state = self.0.lock();
        if !state.ids.remove(&id) || !state.ids.is_empty() {
            return None;
        }
        state.close_when_empty.take()
    }

    /// The connection failed: every rider, once; later ones are refused.
    pub fn take_all(&self) -> Vec<SocketId> {
        let mut state = self.0.lock();
        state.taken = true;
        state.close_when_empty = None;
        state.ids.drain().collect()
    }

    /// The owner lets go of the connection: true when nothing rides on it
    /// (close it now); otherwise it closes when the last rider leaves.
    pub fn close_when_empty(&self, code: i32, text: &str) -> bool {
        let mut state = self.0.lock();
        if state.ids.is_empty() {
            return true;
        }
        state.close_when_empty = Some(Error::new(code, text.to_string()));
        false
    }

    /// How many ride on the connection now.
    pub fn count(&self) -> usize {
        self.0.lock().ids.len()
    }
}
