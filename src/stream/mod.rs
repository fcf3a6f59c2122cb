//! Streams, as brpc has them: ordered messages both ways over the
//! connection of the call that set them up, with flow control.
//!
//! The modules point one way: `state` (the lifecycle as data) is used by
//! `core` (the stream object), which the operations below build on, and
//! this file puts them together.
//! - `state`: phases, the write path, every transition and its action.
//! - `core`: the stream object (a socket with a stream-provided connection).
//! - `flow`: the window and `StreamWait`; `frames`: packing STRM frames.
//! - `setup`: creating, accepting and connecting streams with their call.
//! - `send`: writing (`StreamWrite`).
//! - `receive`: frames coming in, ordered batched delivery, feedback, idle.
//! - `close`: every way a stream ends, and its last callbacks.
//! - `hosts`: streams per host connection.

mod close;
mod core;
mod flow;
mod frames;
mod hosts;
mod receive;
mod send;
mod setup;
mod state;

use std::time::Duration;

pub use self::close::{after_end, close, tell_after_end};
pub use self::core::{live_count, AfterEnd, EndWatcher, StreamHandler, StreamId, StreamOptions};
pub use self::flow::OnWritable;
pub use self::frames::{set_write_max_segment_size, write_max_segment_size, DEFAULT_MAX_SEGMENT_SIZE};
pub use self::hosts::{close_host_when_idle, on_host_failed};
pub use self::receive::on_frame;
pub use self::send::{write, write_chunks, write_parts};
pub use self::setup::{
    accept, after_response, before_response, create, on_setup_response, settings_for, MAX_STREAMS_PER_CALL,
};

use self::core::find;
use self::state::Phase;
use crate::error::Error;

/// True when `id` is a connected stream: DATA for it is stream data, not
/// the response of its setup call.
pub fn is_connected(id: StreamId) -> bool {
    find(id).is_some_and(|(_, core)| core.link.lock().state().phase() == Phase::Connected)
}

/// `StreamWait`: `Ok` when writable, `ETIMEDOUT`, or `EINVAL` when closed
/// or unknown.
pub fn wait(id: StreamId, timeout: Option<Duration>) -> Result<(), Error> {
    match find(id) {
        Some((socket, core)) => {
            drop(socket);
            core.flow.wait(timeout)
        }
        None => Err(flow::closed()),
    }
}

/// `StreamWait` with a callback: `on_writable` runs once on a worker.
pub fn wait_async(id: StreamId, timeout: Option<Duration>, on_writable: OnWritable) {
    match find(id) {
        Some((_, core)) => flow::Flow::wait_async(&core, |core| &core.flow, timeout, on_writable),
        None => flow::run_on_worker(on_writable, Err(flow::closed())),
    }
}

/// True while `id` names a stream that is not closing or gone.
pub fn is_known(id: StreamId) -> bool {
    find(id).is_some()
}
