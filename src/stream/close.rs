//! Where a stream closes. Every ending (a local close, the peer's CLOSE or
//! RST, the host connection failing, the setup call failing) fails the
//! stream's socket, and the socket's single failure lands in [`finished`],
//! which runs `on_failed` (when the end was abnormal or writes were dropped)
//! and then `on_closed`, each once, on the stream's executor after every
//! message already received was delivered.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use parking_lot::Mutex;

use super::core::{find, find_core, AfterEnd, AfterEndTask, EndWatcher, StreamCore, StreamId, CLOSE_TAG};
use super::state::{AlreadyClosing, CloseAction, EndAction, State, NORMAL_CLOSE};
use super::{frames, hosts};
use crate::error::Error;
use crate::socket::{Chunks, Socket, SocketUser, WriteOptions};
use crate::stats;

/// `StreamClose`: any number of times, from any thread or callback;
/// `EINVAL` once the stream is closing or gone.
pub fn close(id: StreamId) -> Result<(), Error> {
    let (socket, core) = find(id).ok_or(AlreadyClosing)?;
    close_locally(&socket, &core, "the stream was closed")
}

fn close_locally(socket: &Socket, core: &StreamCore, why: &'static str) -> Result<(), Error> {
    close_with(socket, core, |state| state.close(why))
}

/// Applies a close (`StreamClose` or the peer's CLOSE) and performs what it asks.
fn close_with(
    socket: &Socket,
    core: &StreamCore,
    close: impl FnOnce(&mut State) -> Result<CloseAction, AlreadyClosing>,
) -> Result<(), Error> {
    let action = {
        let mut link = core.link.lock();
        let action = link.apply(close)?;
        // Under the lock, so no writer takes the direct path after it.
        let send_now = action == CloseAction::CloseAfterDirectWriters && core.direct_writers.close();
        (action, send_now)
    };
    match action {
        (CloseAction::Fail(error), _) => {
            // Writes accepted so far can never leave: they fail, and
            // on_failed reports them.
            socket.set_failed(error);
        }
        (CloseAction::QueueClose, _) => {
            // Queued behind every write accepted before it, so the peer
            // gets CLOSE after all of them; sending it fails the socket.
            let options = WriteOptions { tag: CLOSE_TAG, background: false };
            let _ = socket.write_with(Chunks::empty(), options, None);
        }
        // Otherwise the last direct writer still queueing sends it.
        (CloseAction::CloseAfterDirectWriters, true) => send_direct_close(socket, core),
        (CloseAction::CloseAfterDirectWriters, false) => {}
    }
    Ok(())
}

/// Sends the CLOSE of a direct stream on its host, behind every frame the
/// direct writers queued there, and ends the stream.
pub(super) fn send_direct_close(socket: &Socket, core: &StreamCore) {
    let (route, why) = {
        let link = core.link.lock();
        ((core.host(), link.remote_id()), link.state().closing_why())
    };
    if let (Some(host), Some(remote)) = (route.0.and_then(Socket::address), route.1) {
        if let Ok(close) = frames::close(remote, core.wire_id()) {
            let _ = host.write(vec![close], None);
        }
    }
    socket.set_failed(Error::new(NORMAL_CLOSE, why.unwrap_or("the stream was closed")));
}

/// The peer sent CLOSE: deliver what arrived, answer with our CLOSE (as
/// brpc does) and close.
pub(super) fn closed_by_peer(socket: &Socket, core: &StreamCore) {
    let _ = close_with(socket, core, |state| state.peer_close("the stream was closed by the peer"));
}

/// Ends the streams of a call that failed before it was made (create,
/// accept), with no callback: the caller was told the call failed and may
/// free the handler at once. Not yet connected, they send nothing.
pub(super) fn discard(ids: &[StreamId]) {
    for id in ids {
        if let Some((socket, core)) = find(*id) {
            core.link.lock().silenced = true;
            let _ = close_locally(&socket, &core, "the call that created the stream failed");
        }
    }
}

/// Fails a stream by id (setup failure, host failure).
pub(super) fn fail(id: StreamId, error: Error) {
    Socket::set_failed_by_id(id, error);
}

/// Fails every stream of `ids` and runs `then` once each of them ended and
/// its last callbacks returned (on the thread that ran the last of them).
pub(super) fn fail_all_then(ids: &[StreamId], error: &Error, then: AfterEnd) {
    let countdown = Arc::new(Countdown { left: AtomicUsize::new(ids.len() + 1), then: Mutex::new(Some(then)) });
    for id in ids {
        fail(*id, error.clone());
        let tick = Arc::clone(&countdown);
        after_end(*id, Box::new(move || tick.tick()));
    }
    countdown.tick();
}

/// Runs `then` once the stream's last callbacks returned: at once when they
/// did (or the stream is gone), else on the thread that ran `on_closed`.
pub fn after_end(id: StreamId, then: AfterEnd) {
    after_end_task(id, AfterEndTask::Run(then));
}

/// Like [`after_end`], but tells `watcher`, which costs the stream no
/// allocation.
pub fn tell_after_end(id: StreamId, watcher: Arc<dyn EndWatcher>) {
    after_end_task(id, AfterEndTask::Tell(watcher));
}

fn after_end_task(id: StreamId, then: AfterEndTask) {
    match Socket::address_failed_as_well(id).as_deref().and_then(find_core) {
        Some(core) => core.after_end(then),
        // Recycled: its last callbacks returned (their task held it).
        None => then.run(),
    }
}

/// Runs `then` when `left` reaches zero.
struct Countdown {
    left: AtomicUsize,
    then: Mutex<Option<AfterEnd>>,
}

impl Countdown {
    fn tick(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(then) = self.then.lock().take() {
                then();
            }
        }
    }
}

/// Told when a stream's socket fails: the one place a stream ends.
pub(super) struct StreamEnd;

impl SocketUser for StreamEnd {
    fn on_input(&self, _socket: &Socket, buf: &mut BytesMut) -> Result<(), Error> {
        // A stream's socket has no fd to read; its input comes as frames.
        buf.clear();
        Ok(())
    }

    fn on_failed(&self, socket: &Socket, error: &Error) {
        if let Some(core) = find_core(socket) {
            finished(socket, &core, error);
        }
    }

    fn on_writes_settled(&self, socket: &Socket) {
        if let Some(core) = find_core(socket) {
            report_end(socket, &core);
        }
    }
}

fn finished(socket: &Socket, core: &Arc<StreamCore>, error: &Error) {
    // Before the last callbacks are queued: a message still arriving is
    // dropped, one that arrived already is delivered before them.
    core.receiver.lock().end();
    let (action, host) = {
        let mut link = core.link.lock();
        (link.apply(|state| state.end(error)), core.take_host())
    };
    if action == EndAction::Nothing {
        return;
    }
    if let Some(host) = host {
        hosts::detach(host, core.id());
    }
    core.flow.on_closed();
    // Otherwise the last write in flight reports the end (on_writes_settled).
    if socket.writes_in_flight() == 0 {
        report_end(socket, core);
    }
}

/// Schedules `on_failed` (when due) and `on_closed`, once: the stream has
/// ended and every write it accepted was sent or dropped, so the count of
/// dropped writes is final.
fn report_end(socket: &Socket, core: &Arc<StreamCore>) {
    let (ending, silenced) = {
        let mut link = core.link.lock();
        (link.apply(|state| state.take_ending()), link.silenced)
    };
    let Some(ending) = ending else { return };
    let (messages, bytes) = socket.dropped_writes();
    stats::STREAM_WRITES_DROPPED.add(messages);
    stats::STREAM_BYTES_DROPPED.add(bytes);
    let handler = core.options.handler.clone().filter(|_| !silenced);
    let Some(handler) = handler else { return core.last_callbacks_returned() };
    let id = core.id();
    let last = ending.last_callbacks(messages, bytes);
    // Held until the callbacks returned, so whoever waits for them can
    // still find the stream by its id until then.
    let socket = Socket::address_failed_as_well(socket.id());
    let core = Arc::clone(core);
    core.clone().executor().submit(move || {
        if let Some(error) = last.failed {
            handler.on_failed(id, &error);
        }
        handler.on_closed(id);
        core.last_callbacks_returned();
        drop(socket);
    });
}
