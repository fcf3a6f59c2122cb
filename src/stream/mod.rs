//! Streams, as brpc has them: ordered messages both ways over the
//! connection of the call that set them up, with flow control.
//!
//! - `core`: the stream object (a socket with a stream-provided connection).
//! - `receive`: frames coming in, ordered batched delivery, feedback, idle.
//! - `flow`: the window and `StreamWait`.
//! - `close`: every way a stream ends, and its last callbacks.
//! - `hosts`: streams per host connection.
//! - this file: the operations the call layer and users reach.

mod close;
mod core;
mod flow;
mod frames;
mod hosts;
mod receive;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use self::close::close;
pub use self::core::live_count;
pub use self::flow::OnWritable;
pub use self::hosts::{close_host_when_idle, on_host_failed};
pub use self::receive::on_frame;

use self::core::{find, Phase, StreamCore};
use crate::errno;
use crate::protocol::StreamSettings;
use crate::socket::{Socket, SocketId, WriteOptions};
use crate::stats;

/// A stream's id: its socket's id, and its id on the wire.
pub type StreamId = SocketId;

/// What a stream tells its user. Calls for one stream run one at a time, in
/// order, on worker threads; they may block.
pub trait StreamHandler: Send + Sync {
    fn on_received_messages(&self, id: StreamId, messages: &[Bytes]);
    fn on_idle_timeout(&self, id: StreamId);
    /// Last, exactly once.
    fn on_closed(&self, id: StreamId);
    /// At most once, before `on_closed`: the stream ended abnormally or
    /// writes it accepted were not delivered.
    fn on_failed(&self, id: StreamId, code: i32, text: &str);
}

#[derive(Clone)]
pub struct StreamOptions {
    /// Kept for brpc's API; the window is `max_buf_size`.
    pub min_buf_size: i32,
    /// Bytes written and not yet consumed by the peer; <= 0: unlimited.
    pub max_buf_size: i32,
    pub idle_timeout: Option<Duration>,
    pub messages_in_batch: usize,
    pub handler: Option<Arc<dyn StreamHandler>>,
}

impl Default for StreamOptions {
    /// brpc's defaults.
    fn default() -> Self {
        StreamOptions {
            min_buf_size: 1024 * 1024,
            max_buf_size: 2 * 1024 * 1024,
            idle_timeout: None,
            messages_in_batch: 128,
            handler: None,
        }
    }
}

/// Most streams one call may set up. A request asking for more is refused
/// before its method runs, so a peer cannot make this side create streams
/// without bound (brpc sets no bound; calls carry a handful).
pub const MAX_STREAMS_PER_CALL: usize = 1024;

/// Creates `n` client streams for a call that is yet to be made; `EINVAL`
/// for 0 or more than [`MAX_STREAMS_PER_CALL`].
pub fn create(n: usize, options: &StreamOptions) -> Result<Vec<StreamId>, i32> {
    if n == 0 || n > MAX_STREAMS_PER_CALL {
        return Err(libc::EINVAL);
    }
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        match StreamCore::spawn(options.clone()) {
            Ok((id, _)) => ids.push(id),
            Err(code) => {
                close::discard(&ids);
                return Err(code);
            }
        }
    }
    Ok(ids)
}

/// What a request (client) or a response (server) says about `ids`: the
/// first id, the others as extras, and the first stream's wishes.
pub fn settings_for(ids: &[StreamId]) -> Option<StreamSettings> {
    let (first, extra) = ids.split_first()?;
    let (_, core) = find(*first)?;
    Some(StreamSettings {
        stream_id: Some(*first as i64),
        need_feedback: Some(core.options.max_buf_size > 0),
        writable: Some(core.options.handler.is_some()),
        extra_stream_ids: extra.iter().map(|id| *id as i64).collect(),
    })
}

fn remote_ids(settings: &StreamSettings) -> Vec<i64> {
    std::iter::once(settings.stream_id()).chain(settings.extra_stream_ids.iter().copied()).collect()
}

/// The response to the call that carried `ids` arrived on `host` (client
/// side). With the server's settings the streams connect, pairing by
/// position; otherwise each fails with the call's error. A stream that was
/// closed meanwhile stays closed and the server's stream gets RST.
pub fn on_setup_response(
    ids: &[StreamId],
    host: Option<SocketId>,
    error: Option<(i32, String)>,
    settings: Option<&StreamSettings>,
) {
    let host = host.and_then(Socket::address);
    let (settings, host) = match (error, settings, host) {
        (None, Some(settings), Some(host)) => (settings, host),
        (Some((code, text)), _, _) => return ids.iter().for_each(|id| close::fail(*id, code, &text)),
        (None, _, _) => {
            let text = "the server did not accept the stream";
            return ids.iter().for_each(|id| close::fail(*id, libc::ECONNRESET, text));
        }
    };
    let remotes = remote_ids(settings);
    let writable = settings.writable();
    let need_feedback = settings.need_feedback();
    for (position, id) in ids.iter().enumerate() {
        let remote = remotes.get(position).copied();
        match (find(*id), remote) {
            (Some((_, core)), Some(remote)) => core.connect(&host, remote, writable, need_feedback, false),
            (Some(_), None) => close::fail(*id, libc::ECONNRESET, "the server accepted fewer streams"),
            (None, Some(remote)) => {
                if let Ok(rst) = frames::rst(remote) {
                    let _ = host.write(vec![rst], None);
                }
            }
            (None, None) => {}
        }
    }
}

/// Accepts the streams a request carries (server side), bound to the
/// request's connection. They become connected when the response is about
/// to go ([`before_response`]) and write once it is queued
/// ([`after_response`]), so nothing they write overtakes it.
///
/// A request carrying more than `max` streams is refused with `EINVAL`
/// before any is made: the peer's streams then fail when the response
/// carries no stream settings, and nothing here calls the handler.
pub fn accept(
    host: SocketId,
    request: &StreamSettings,
    options: &StreamOptions,
    max: usize,
) -> Result<Vec<StreamId>, i32> {
    let remotes = remote_ids(request);
    if remotes.len() > max {
        return Err(libc::EINVAL);
    }
    let mut accepted = Vec::with_capacity(remotes.len());
    for remote in remotes {
        match StreamCore::spawn(options.clone()) {
            Ok((id, core)) => {
                {
                    let mut link = core.link.lock();
                    link.host = Some(host);
                    core.host_id.store(host, Ordering::Release);
                    link.remote_id = Some(remote);
                    link.remote_writable = request.writable();
                    link.remote_need_feedback = request.need_feedback();
                }
                // Attached now, so the connection failing before the
                // response closes them too.
                match Socket::address(host) {
                    Some(host) => hosts::attach(&host, id),
                    None => close::fail(id, errno::EFAILEDSOCKET, "the connection of the stream's call is gone"),
                }
                accepted.push(id);
            }
            Err(code) => {
                close::discard(&accepted);
                return Err(code);
            }
        }
    }
    Ok(accepted)
}

/// The accepted streams' response is about to be queued: from now on,
/// frames for them are theirs (data can only follow the response).
pub fn before_response(ids: &[StreamId]) {
    for id in ids {
        let Some((_, core)) = find(*id) else { continue };
        let (host, remote, writable, need_feedback) = {
            let link = core.link.lock();
            (link.host, link.remote_id, link.remote_writable, link.remote_need_feedback)
        };
        match (host.and_then(Socket::address), remote) {
            (Some(host), Some(remote)) => core.connect(&host, remote, writable, need_feedback, true),
            _ => close::fail(*id, errno::EFAILEDSOCKET, "the connection of the stream's call is gone"),
        }
    }
}

/// The response carrying `ids` is queued on their host: their writes go;
/// or, when the call failed, they fail with its error.
pub fn after_response(ids: &[StreamId], error: Option<&(i32, String)>) {
    for id in ids {
        match (find(*id), error) {
            (Some((_, core)), None) => core.release(),
            (_, Some((code, text))) => close::fail(*id, *code, text),
            (None, None) => {}
        }
    }
}

/// True when `id` is a connected stream: DATA for it is stream data, not
/// the response of its setup call.
pub fn is_connected(id: StreamId) -> bool {
    find(id).is_some_and(|(_, core)| core.link.lock().phase == Phase::Connected)
}

/// `StreamWrite`: queues one message. `EAGAIN` when the window is full,
/// `EINVAL` for a closed or unknown stream, `EBADF` when the peer has no
/// handler.
pub fn write(id: StreamId, message: Bytes, background: bool) -> Result<(), i32> {
    write_message(id, &[&message[..]], Some(std::slice::from_ref(&message)), background)
}

/// [`fn@write`] for a message given in parts (copied), as the C ABI has it.
pub fn write_parts(id: StreamId, parts: &[&[u8]], background: bool) -> Result<(), i32> {
    write_message(id, parts, None, background)
}

/// [`fn@write`] for a message in several chunks, kept as they are (not copied
/// unless small).
pub fn write_chunks(id: StreamId, chunks: Vec<Bytes>, background: bool) -> Result<(), i32> {
    let parts: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
    write_message(id, &parts, Some(&chunks), background)
}

fn write_message(id: StreamId, parts: &[&[u8]], owned: Option<&[Bytes]>, background: bool) -> Result<(), i32> {
    let socket = Socket::address(id).ok_or(libc::EINVAL)?;
    let core = core::core_of(&socket).ok_or(libc::EINVAL)?;
    let len = parts.iter().map(|p| p.len()).sum();
    let route = {
        let mut link = core.link.lock();
        match link.phase {
            Phase::Closing | Phase::Closed => return Err(libc::EINVAL),
            Phase::Connected if !link.remote_writable => return Err(libc::EBADF),
            Phase::Created | Phase::Connected => {}
        }
        core.flow.reserve(len)?;
        if link.direct {
            core.direct_writers.fetch_add(1, Ordering::AcqRel);
            Some((link.host, link.remote_id))
        } else {
            link.used_queue = true;
            None
        }
    };
    let options = WriteOptions { tag: 0, background };
    let Some((host, remote)) = route else {
        let message: Vec<Bytes> = owned.map(<[Bytes]>::to_vec).unwrap_or_else(|| {
            let mut copy = bytes::BytesMut::with_capacity(len);
            parts.iter().for_each(|p| copy.extend_from_slice(p));
            vec![copy.freeze()]
        });
        // A write the socket drops later is counted there and reported at
        // close; one it refuses now (it failed meanwhile) is refused here.
        socket.write_with(message, options, None).map_err(|_| libc::EINVAL)?;
        stats::STREAM_WRITES.inc();
        return Ok(());
    };
    // Connected, nothing ever queued: frame it straight onto the host.
    let sent = match (host.and_then(Socket::address), remote) {
        (Some(host), Some(remote)) => frames::data_message(remote, id as i64, parts, owned)
            .and_then(|frame| host.write_with(frame, options, None))
            .map_err(|_| libc::EINVAL),
        _ => Err(libc::EINVAL),
    };
    core.direct_writers.fetch_sub(1, Ordering::AcqRel);
    if sent.is_ok() {
        stats::STREAM_WRITES.inc();
        stats::STREAM_MESSAGES_OUT.inc();
        stats::STREAM_BYTES_OUT.add(len as u64);
    }
    sent
}

/// `StreamWait`: 0 when writable, `ETIMEDOUT`, or `EINVAL` when closed.
pub fn wait(id: StreamId, timeout: Option<Duration>) -> i32 {
    match find(id) {
        Some((socket, core)) => {
            drop(socket);
            core.flow.wait(timeout)
        }
        None => libc::EINVAL,
    }
}

/// `StreamWait` with a callback: `on_writable` runs once on a worker.
pub fn wait_async(id: StreamId, timeout: Option<Duration>, on_writable: OnWritable) {
    match find(id) {
        Some((_, core)) => core.flow.wait_async(timeout, on_writable),
        None => flow::run_on_worker(on_writable, libc::EINVAL),
    }
}

/// True while `id` names a stream that is not closing or gone.
pub fn is_known(id: StreamId) -> bool {
    find(id).is_some()
}
