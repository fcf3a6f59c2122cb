//! Frames arriving for streams, on the dispatcher thread: DATA is queued for
//! ordered delivery on the stream's executor (and dropped once the stream
//! ended, so nothing follows `on_closed`), FEEDBACK opens the window at
//! once (so a blocked writer wakes even when every worker is busy), CLOSE
//! and RST end the stream. Frames for streams this side does not have are
//! answered with RST, except RST and FEEDBACK, which may legitimately
//! outlive their stream.
//!
//! A peer's DATA is bounded: a message started while the stream's window
//! (`max_buf_size`) is all unconsumed, or one reassembled past 64 MiB,
//! resets the stream (RST to the peer, `on_failed` here with
//! `EOVERCROWDED`/`EMSGSIZE`) and drops what it had queued.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::close;
use super::core::{core_of, find, find_core, Receiver, StreamCore, StreamId};
use super::frames;
use super::state::ResetAction;
use crate::errno;
use crate::error::Error;
use crate::protocol::{FrameType, Limits, StreamFrame};
use crate::runtime::timers;
use crate::socket::Socket;

/// Routes a STRM frame that arrived on `host`.
pub fn on_frame(host: &Socket, frame: StreamFrame) {
    let kind = frame.meta.frame_type();
    let id = frame.meta.stream_id() as StreamId;
    // A stream only takes frames from its own connection: an id that
    // names a stream elsewhere is, for this peer, a stream it does not have.
    let socket = Socket::address(id);
    let found =
        socket.as_ref().and_then(|s| core_of(s)).filter(|core| core.host_id.load(Ordering::Acquire) == host.id());
    let (Some(socket), Some(core)) = (socket.as_ref(), found) else {
        return answer_unknown(host, &frame);
    };
    match kind {
        FrameType::Data => on_data(socket, core, frame.payload, frame.meta.has_continuation()),
        FrameType::Feedback => {
            let consumed = frame.meta.feedback.as_ref().and_then(|f| f.consumed_size).unwrap_or(0);
            core.flow.on_feedback(consumed.max(0) as u64);
        }
        FrameType::Close => close::closed_by_peer(socket, core),
        // A stream this side is closing already: the peer's RST answers
        // our CLOSE crossing its own, and the close stays a normal one.
        FrameType::Rst => {
            let action = core.link.lock().state().peer_reset();
            if action == ResetAction::Fail {
                socket.set_failed(Error::new(libc::ECONNRESET, "the peer reset the stream"));
            }
        }
        FrameType::Unknown => log_warning!("dropped a stream frame of unknown type for stream {id}"),
    }
}

fn answer_unknown(host: &Socket, frame: &StreamFrame) {
    match frame.meta.frame_type() {
        FrameType::Rst | FrameType::Feedback | FrameType::Unknown => {}
        FrameType::Data | FrameType::Close => {
            let Some(source) = frame.meta.source_stream_id.filter(|id| *id >= 0) else { return };
            if let Ok(rst) = frames::rst(source) {
                let _ = host.write(vec![rst], None);
            }
        }
    }
}

fn on_data(socket: &Socket, core: &StreamCore, payload: Bytes, continues: bool) {
    let queued = {
        let mut receiver = core.receiver.lock();
        if receiver.ended {
            // The stream ended while the frame was on its way: it would
            // arrive after on_closed.
            return;
        }
        if core.options.idle_timeout().is_some() {
            receiver.set_last_data(Instant::now());
        }
        if receiver.partial().is_none() {
            let unconsumed = receiver.received - receiver.consumed;
            let window = receive_window(core);
            if unconsumed >= window {
                receiver.drop_queue();
                drop(receiver);
                let text = format!(
                    "the peer wrote past the stream's window: a new message while {unconsumed} bytes wait \
                     for the handler, window (max_buf_size) {window} bytes; the peer ignores FEEDBACK, \
                     the stream is reset"
                );
                return reset(socket, core, Error::new(errno::EOVERCROWDED, text));
            }
        }
        if too_large(&receiver, &payload) {
            drop(receiver.take_partial());
            drop(receiver);
            let text = "a message in DATA segments grew past the 64 MiB body limit; the stream is reset";
            return reset(socket, core, Error::new(libc::EMSGSIZE, text));
        }
        let message = match receiver.take_partial() {
            Some(mut partial) => {
                partial.extend_from_slice(&payload);
                if continues {
                    receiver.set_partial(partial);
                    return;
                }
                partial.freeze()
            }
            None if continues => {
                receiver.set_partial(BytesMut::from(&payload[..]));
                return;
            }
            None => payload,
        };
        crate::stats::STREAM_MESSAGES_IN.inc();
        crate::stats::STREAM_BYTES_IN.add(message.len() as u64);
        receiver.received += message.len() as u64;
        receiver.push(message);
        if receiver.delivering {
            return;
        }
        // The core `socket` provides, owned for the task.
        let Some(owned) = find_core(socket) else { return };
        receiver.delivering = true;
        // Its place among the stream's callbacks is fixed under the lock,
        // so the last ones, queued once the stream ended, come after it.
        core.executor().enqueue(move || deliver(&owned))
    };
    queued.start_after_batch();
}

/// What the peer may leave unconsumed here before it starts a message:
/// this stream's `max_buf_size`, the window a brpc writer keeps to (it
/// starts a message only while `produced < consumed + max_buf_size`, and
/// this side's consumed count is never behind the FEEDBACK it sent). A
/// stream without a window (`max_buf_size <= 0`) still holds at most
/// [`UNWINDOWED_RECEIVE_BOUND`].
fn receive_window(core: &StreamCore) -> u64 {
    match core.options.max_buf_size {
        size if size > 0 => size as u64,
        _ => UNWINDOWED_RECEIVE_BOUND,
    }
}

/// Unconsumed bytes a stream with `max_buf_size <= 0` holds before it
/// resets its peer (brpc's `max_body_size`).
const UNWINDOWED_RECEIVE_BOUND: u64 = Limits::DEFAULT_MAX_BODY_SIZE as u64;

/// Ends a stream this side cannot go on with: the peer's stream is sent
/// RST (its `on_failed` gets `ECONNRESET`), this one fails with `error`
/// (its handler's `on_failed`), and what it had queued is gone.
fn reset(socket: &Socket, core: &StreamCore, error: Error) {
    log_warning!("stream {}: {}", core.id(), error.text());
    let (host, remote) = {
        let link = core.link.lock();
        (core.host(), link.remote_id())
    };
    if let (Some(host), Some(remote)) = (host.and_then(Socket::address), remote) {
        if let Ok(rst) = frames::rst(remote) {
            let _ = host.write(vec![rst], None);
        }
    }
    socket.set_failed(error);
}

/// A message reassembled from DATA segments may not exceed what one frame
/// could carry: a peer cannot make this side buffer without bound.
fn too_large(receiver: &Receiver, payload: &Bytes) -> bool {
    let buffered = receiver.partial().map_or(0, BytesMut::len);
    buffered + payload.len() > Limits::DEFAULT_MAX_BODY_SIZE
}

/// Batches one delivery turn hands to the handler before its worker goes
/// back to the pool, so a stream whose peer never stops writing shares the
/// workers with every other callback instead of holding one.
const BATCHES_PER_TURN: usize = 4;

/// Hands queued messages to the handler in batches of at most
/// `messages_in_batch`, then tells the peer what was consumed; after
/// [`BATCHES_PER_TURN`] batches the rest waits for a new turn.
fn deliver(core: &Arc<StreamCore>) {
    let batch_size = core.options.messages_in_batch();
    for turn in 0.. {
        let batch: Vec<Bytes> = {
            let mut receiver = core.receiver.lock();
            if !receiver.has_queued() {
                receiver.delivering = false;
                return;
            }
            // Requeued behind the stream's callbacks queued so far; once
            // the stream ended its last callbacks are queued already, so
            // what is left goes out now, before them.
            if turn >= BATCHES_PER_TURN && !receiver.ended {
                let owned = Arc::clone(core);
                let queued = core.executor().enqueue_next_turn(move || deliver(&owned));
                drop(receiver);
                drop(queued);
                return;
            }
            receiver.take_batch(batch_size)
        };
        if let Some(handler) = &core.options.handler {
            handler.on_received_messages(core.id(), &batch);
        }
        let bytes: u64 = batch.iter().map(|m| m.len() as u64).sum();
        let consumed = {
            let mut receiver = core.receiver.lock();
            receiver.consumed += bytes;
            receiver.consumed
        };
        let need_feedback = core.link.lock().remote_need_feedback;
        if need_feedback {
            core.send_control(|remote, local| frames::feedback(remote, local, consumed));
        }
    }
}

/// Calls `on_idle_timeout` whenever no data arrived for `idle_timeout`.
pub(super) fn start_idle_timer(core: &StreamCore) {
    if let Some(idle) = core.options.idle_timeout() {
        schedule_idle_check(core.id(), Instant::now() + idle, idle);
    }
}

fn schedule_idle_check(id: StreamId, at: Instant, idle: Duration) {
    timers().schedule(at, Box::new(move || check_idle(id, idle)));
}

fn check_idle(id: StreamId, idle: Duration) {
    let Some((_, core)) = find(id) else { return };
    let now = Instant::now();
    let last = core.receiver.lock().last_data();
    match last.map(|last| last + idle).filter(|due| *due > now) {
        Some(due) => schedule_idle_check(id, due, idle),
        None => {
            let queued = {
                let mut receiver = core.receiver.lock();
                if receiver.ended {
                    return;
                }
                receiver.set_last_data(now);
                let handler = core.options.handler.clone();
                handler.map(|handler| core.executor().enqueue(move || handler.on_idle_timeout(id)))
            };
            drop(queued);
            schedule_idle_check(id, now + idle, idle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{close, StreamHandler, StreamOptions};
    use std::sync::mpsc;

    /// Tells the test every callback, in the order they ran.
    struct Events(parking_lot::Mutex<mpsc::Sender<&'static str>>);

    impl StreamHandler for Events {
        fn on_received_messages(&self, _id: StreamId, _messages: &[Bytes]) {
            let _ = self.0.lock().send("message");
        }
        fn on_idle_timeout(&self, _id: StreamId) {
            let _ = self.0.lock().send("idle");
        }
        fn on_closed(&self, _id: StreamId) {
            let _ = self.0.lock().send("closed");
        }
        fn on_failed(&self, _id: StreamId, _error: &Error) {
            let _ = self.0.lock().send("failed");
        }
    }

    /// A new stream whose handler reports to the returned receiver.
    fn stream_telling_events() -> (StreamId, Arc<StreamCore>, mpsc::Receiver<&'static str>) {
        let (sender, events) = mpsc::channel();
        let handler = Arc::new(Events(parking_lot::Mutex::new(sender)));
        let options = StreamOptions { handler: Some(handler), ..Default::default() };
        let (id, core) = StreamCore::spawn(options).unwrap();
        (id, core, events)
    }

    #[test]
    fn data_that_reaches_a_stream_as_it_ends_never_follows_on_closed() {
        let (id, core, events) = stream_telling_events();
        // The dispatcher found the stream, then a user closed it before the
        // frame's message was queued.
        let socket = Socket::address(id).unwrap();
        close(id).unwrap();
        on_data(&socket, &core, Bytes::from_static(b"late"), false);
        drop(socket);
        let wait = Duration::from_secs(5);
        assert_eq!(events.recv_timeout(wait), Ok("closed"));
        assert!(events.recv_timeout(Duration::from_millis(200)).is_err(), "a callback after on_closed");
    }

    #[test]
    fn data_that_arrived_before_a_stream_ended_is_delivered_before_on_closed() {
        let (id, core, events) = stream_telling_events();
        let socket = Socket::address(id).unwrap();
        on_data(&socket, &core, Bytes::from_static(b"in time"), false);
        close(id).unwrap();
        drop(socket);
        let wait = Duration::from_secs(5);
        assert_eq!(events.recv_timeout(wait), Ok("message"));
        assert_eq!(events.recv_timeout(wait), Ok("closed"));
    }
}
