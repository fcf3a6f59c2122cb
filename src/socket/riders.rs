//! Sockets that ride on a connection (a connection's streams), kept with
//! the connection itself: when it fails, whoever handles the failure takes
//! them all at once, and a socket trying to join it afterwards is refused,
//! so none is missed whatever the timing. A connection may bound how many
//! ride on it at once (a server's `max_streams_per_connection`).

use parking_lot::Mutex;

use super::SocketId;
use crate::error::Error;
use crate::id::IdSet;

#[derive(Default)]
pub struct Riders(Mutex<State>);

/// Why a socket could not join a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The connection failed and its riders were taken.
    Failed,
    /// As many as the connection takes ride on it already.
    Full { max: usize },
}

#[derive(Default)]
struct State {
    ids: IdSet<SocketId>,
    /// The connection failed and its riders were taken.
    taken: bool,
    /// The connection's owner let go of it while sockets still rode on it:
    /// it closes with this error when the last one leaves.
    close_when_empty: Option<Error>,
    /// Most riders at once; 0: no bound.
    max: usize,
}

impl Riders {
    /// Riders of a connection that takes at most `max` at once (0: no bound).
    pub fn with_max(max: usize) -> Riders {
        Riders(Mutex::new(State { max, ..Default::default() }))
    }

    /// A set that refuses every socket, as a failed connection's does.
    pub(super) fn refusing() -> Self {
        Riders(Mutex::new(State { taken: true, ..State::default() }))
    }

    /// Adds `id` (riding already: nothing changes); refused once the riders
    /// were taken (the connection failed) or when the connection is full.
    pub fn add(&self, id: SocketId) -> Result<(), Refused> {
        let mut state = self.0.lock();
        if state.taken {
            return Err(Refused::Failed);
        }
        if state.max > 0 && state.ids.len() >= state.max && !state.ids.contains(&id) {
            return Err(Refused::Full { max: state.max });
        }
        state.ids.insert(id);
        Ok(())
    }

    /// Most riders at once; 0: no bound.
    pub fn max(&self) -> usize {
        self.0.lock().max
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
    pub fn close_when_empty(&self, error: Error) -> bool {
        let mut state = self.0.lock();
        if state.ids.is_empty() {
            return true;
        }
        state.close_when_empty = Some(error);
        false
    }

    /// How many ride on the connection now.
    pub fn count(&self) -> usize {
        self.0.lock().ids.len()
    }
}
