//! Where a stream closes. Every ending (a local close, the peer's CLOSE or
//! RST, the host connection failing, the setup call failing) fails the
//! stream's socket, and the socket's single failure lands in [`finished`],
//! which runs `on_failed` (when the end was abnormal or writes were dropped)
//! and then `on_closed`, each once, on the stream's executor after every
//! message already received was delivered.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::core::{find, Phase, StreamCore, CLOSE_TAG};
use super::{frames, hosts, StreamId};
use crate::errno;
use crate::socket::{Chunks, Socket, WriteOptions};
use crate::stats;

/// The code a stream's socket fails with when the stream closed normally.
pub(super) const NORMAL_CLOSE: i32 = errno::ECLOSE;

/// `StreamClose`: any number of times, from any thread or callback;
/// `EINVAL` once the stream is closing or gone.
pub fn close(id: StreamId) -> Result<(), i32> {
    let (socket, core) = find(id).ok_or(libc::EINVAL)?;
    close_locally(&socket, &core, "the stream was closed")
}

fn close_locally(socket: &Socket, core: &StreamCore, why: &str) -> Result<(), i32> {
    let mut link = core.link.lock();
    match link.phase {
        Phase::Created => {
            link.set_phase(Phase::Closing);
            let writes_waiting = link.pending_connect.is_some();
            drop(link);
            if writes_waiting {
                // The writes accepted so far can never leave: they fail
                // with ECONNRESET and on_failed reports them.
                socket.set_failed(libc::ECONNRESET, "the stream was closed before it was connected");
            } else {
                socket.set_failed(NORMAL_CLOSE, why);
            }
        }
        Phase::Connected if link.direct => {
            link.set_phase(Phase::Closing);
            let route = (link.host, link.remote_id);
            drop(link);
            // Writers that chose the direct path before the phase changed
            // queue on the host first, so CLOSE follows their messages.
            while core.direct_writers.load(Ordering::Acquire) > 0 {
                std::thread::yield_now();
            }
            if let (Some(host), Some(remote)) = (route.0.and_then(Socket::address), route.1) {
                if let Ok(close) = frames::close(remote, core.id() as i64) {
                    let _ = host.write(vec![close], None);
                }
            }
            socket.set_failed(NORMAL_CLOSE, why);
        }
        Phase::Connected => {
            link.set_phase(Phase::Closing);
            drop(link);
            // Queued behind every write accepted before it, so the peer
            // gets CLOSE after all of them; sending it fails the socket.
            let options = WriteOptions { tag: CLOSE_TAG, background: false };
            let _ = socket.write_with(Chunks::empty(), options, None);
        }
        Phase::Closing | Phase::Closed => return Err(libc::EINVAL),
    }
    Ok(())
}

/// The peer sent CLOSE: deliver what arrived, answer with our CLOSE (as
/// brpc does) and close.
pub(super) fn closed_by_peer(socket: &Socket, core: &StreamCore) {
    let _ = close_locally(socket, core, "the stream was closed by the peer");
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
pub(super) fn fail(id: StreamId, code: i32, text: &str) {
    Socket::set_failed_by_id(id, code, text);
}

/// The stream's socket failed: the one place a stream ends.
pub(super) fn finished(socket: &Socket, core: &Arc<StreamCore>, code: i32, text: &str) {
    // Before the last callbacks are queued: a message still arriving is
    // dropped, one that arrived already is delivered before them.
    core.receiver.lock().end();
    let host = {
        let mut link = core.link.lock();
        link.set_phase(Phase::Closed);
        link.ending = Some((code, text.to_string()));
        link.host.take()
    };
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
pub(super) fn report_end(socket: &Socket, core: &Arc<StreamCore>) {
    let (ending, silenced) = {
        let mut link = core.link.lock();
        (link.ending.take(), link.silenced)
    };
    let Some((code, text)) = ending else { return };
    let (messages, bytes) = socket.dropped_writes();
    stats::STREAM_WRITES_DROPPED.add(messages);
    stats::STREAM_BYTES_DROPPED.add(bytes);
    if silenced {
        return;
    }
    let Some(handler) = core.options.handler.clone() else { return };
    let id = core.id();
    core.executor.submit(move || {
        let failure = match (code != NORMAL_CLOSE, messages > 0) {
            (true, _) => Some(code),
            (false, true) => Some(libc::ECONNRESET),
            (false, false) => None,
        };
        if let Some(code) = failure {
            let text = if messages > 0 {
                format!("{text}: {messages} messages ({bytes} bytes) written to the stream were not delivered")
            } else {
                text
            };
            handler.on_failed(id, code, &text);
        }
        handler.on_closed(id);
    });
}
