//! The stream object. A stream is a socket whose connection is provided by
//! the stream itself: its write queue keeps the user's messages in order
//! while the stream is not connected, and once the setup call connects it,
//! [`StreamCore::write`] frames each message as DATA onto the host
//! connection. The stream's id is its socket's id.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

use super::close::StreamEnd;
use super::flow::Flow;
use super::frames;
use super::state::{Phase, QueueConnectAction, State, NORMAL_CLOSE};
use crate::errno;
use crate::error::Error;
use crate::runtime::SerialExecutor;
use crate::socket::{
    check_connected_and_keep_write, ConnectData, Connection, OutMessage, Socket, SocketId, SocketRef, SocketUser,
};
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
    fn on_failed(&self, id: StreamId, error: &Error);
}

#[derive(Clone)]
pub struct StreamOptions {
    /// Kept for brpc's API; the window is `max_buf_size`.
    pub min_buf_size: i32,
    /// Bytes written and not yet consumed by the peer; <= 0: unlimited.
    /// Also the window a peer gets: a peer that starts a message while
    /// this many bytes wait for this side's handler is reset (see
    /// `receive`).
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

/// What a stream keeps of its [`StreamOptions`], in less room
/// (`min_buf_size` is brpc's API only).
pub(super) struct Settings {
    pub handler: Option<Arc<dyn StreamHandler>>,
    /// `max_buf_size`: the window, none when <= 0.
    pub max_buf_size: i32,
    /// At least 1.
    messages_in_batch: u32,
    /// `idle_timeout` in nanoseconds (at least 1), saturated at `u64::MAX`.
    idle_timeout_ns: Option<std::num::NonZeroU64>,
}

impl Settings {
    fn new(options: StreamOptions) -> Self {
        let ns = |timeout: Duration| u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX).max(1);
        Settings {
            handler: options.handler,
            max_buf_size: options.max_buf_size,
            messages_in_batch: u32::try_from(options.messages_in_batch.max(1)).unwrap_or(u32::MAX),
            idle_timeout_ns: options.idle_timeout.and_then(|timeout| std::num::NonZeroU64::new(ns(timeout))),
        }
    }

    pub(super) fn messages_in_batch(&self) -> usize {
        self.messages_in_batch as usize
    }

    pub(super) fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout_ns.map(|ns| Duration::from_nanos(ns.get()))
    }
}

/// Tag of the message that asks for a CLOSE frame after everything queued.
pub(super) const CLOSE_TAG: u32 = 1;

/// Streams not yet recycled, process-wide.
pub fn live_count() -> usize {
    stats::STREAMS_ALIVE.get() as usize
}

/// The gauge counting streams in `phase`.
fn gauge(phase: Phase) -> &'static stats::Counter {
    match phase {
        Phase::Created => &stats::STREAMS_CREATED,
        Phase::Connected => &stats::STREAMS_CONNECTED,
        Phase::Closing => &stats::STREAMS_CLOSING,
        Phase::Closed => &stats::STREAMS_CLOSED,
    }
}

/// The stream's state and where it is attached, under one lock.
#[derive(Debug)]
pub(super) struct Link {
    state: State,
    /// The peer's stream id, once known (`has_remote`): apart, so the
    /// flags share one word.
    remote: i64,
    has_remote: bool,
    /// What the peer said: it has a handler (so writing makes sense), it
    /// wants FEEDBACK.
    pub remote_writable: bool,
    pub remote_need_feedback: bool,
    /// The call that made the stream failed: its end runs no callback
    /// (the handler is no longer the library's to call).
    pub silenced: bool,
}

impl Link {
    /// The peer's stream id, once known.
    pub(super) fn remote_id(&self) -> Option<i64> {
        self.has_remote.then_some(self.remote)
    }

    pub(super) fn set_remote_id(&mut self, remote: i64) {
        self.remote = remote;
        self.has_remote = true;
    }

    pub(super) fn state(&self) -> &State {
        &self.state
    }

    /// Applies an event to the state, keeping the per-phase gauges right.
    pub(super) fn apply<R>(&mut self, event: impl FnOnce(&mut State) -> R) -> R {
        let before = self.state.phase();
        let action = event(&mut self.state);
        let after = self.state.phase();
        if before != after {
            gauge(before).dec();
            gauge(after).inc();
        }
        action
    }
}

/// Writers between choosing the direct path and queueing their frame on the
/// host, and whether a CLOSE waits for them. Whoever is last, the closer or
/// the last writer to leave, sends the CLOSE: a hand-off, nobody waits.
#[derive(Default)]
pub(super) struct DirectWriters(AtomicUsize);

const CLOSE_WAITING: usize = 1 << (usize::BITS - 1);

impl DirectWriters {
    /// Called under the link lock while the path is direct.
    pub(super) fn enter(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// True when this writer was the last and a CLOSE waits: send it.
    #[must_use]
    pub(super) fn leave(&self) -> bool {
        self.0.fetch_sub(1, Ordering::AcqRel) == CLOSE_WAITING | 1
    }

    /// Called under the link lock once the stream is closing (no writer
    /// enters after it). True when no writer is in flight: send it now.
    #[must_use]
    pub(super) fn close(&self) -> bool {
        self.0.fetch_or(CLOSE_WAITING, Ordering::AcqRel) & !CLOSE_WAITING == 0
    }
}

/// Messages waiting for the handler.
#[derive(Default)]
pub(super) struct Receiver {
    /// Allocated by the first DATA frame.
    inbox: Option<Box<Inbox>>,
    /// A delivery task is queued or running.
    pub delivering: bool,
    /// Bytes handed to the handler so far (what FEEDBACK reports).
    pub consumed: u64,
    /// Bytes of whole messages queued so far; `received - consumed` is
    /// what the handler has not consumed yet (the peer's window in use).
    pub received: u64,
    /// When data last arrived (or the idle timer last fired), as
    /// nanoseconds after [`RECEIVER_EPOCH`] plus one; 0: never.
    last_data: u64,
    /// The stream ended: what arrives from now on is dropped, and nothing
    /// more is queued for its handler after its last callbacks.
    pub ended: bool,
}

/// What a stream that received data keeps of it.
#[derive(Default)]
struct Inbox {
    queue: VecDeque<Bytes>,
    /// Segments of a message whose DATA frames said `has_continuation`.
    partial: Option<BytesMut>,
}

/// The origin of [`Receiver`]'s instants.
static RECEIVER_EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

impl Receiver {
    /// Queues a message for the handler.
    pub(super) fn push(&mut self, message: Bytes) {
        self.inbox.get_or_insert_with(Box::default).queue.push_back(message);
    }

    /// A message waits for the handler.
    pub(super) fn has_queued(&self) -> bool {
        self.inbox.as_ref().is_some_and(|inbox| !inbox.queue.is_empty())
    }

    /// Up to `max` queued messages, oldest first; empty when none waits.
    pub(super) fn take_batch(&mut self, max: usize) -> Vec<Bytes> {
        match self.inbox.as_mut() {
            Some(inbox) => {
                let n = inbox.queue.len().min(max);
                inbox.queue.drain(..n).collect()
            }
            None => Vec::new(),
        }
    }

    /// Drops every queued message.
    pub(super) fn drop_queue(&mut self) {
        if let Some(inbox) = self.inbox.as_mut() {
            inbox.queue = VecDeque::new();
        }
    }

    /// The message being reassembled from DATA segments, if any.
    pub(super) fn partial(&self) -> Option<&BytesMut> {
        self.inbox.as_ref()?.partial.as_ref()
    }

    pub(super) fn take_partial(&mut self) -> Option<BytesMut> {
        self.inbox.as_mut()?.partial.take()
    }

    pub(super) fn set_partial(&mut self, partial: BytesMut) {
        self.inbox.get_or_insert_with(Box::default).partial = Some(partial);
    }

    pub(super) fn last_data(&self) -> Option<Instant> {
        let ns = self.last_data.checked_sub(1)?;
        Some(*RECEIVER_EPOCH + Duration::from_nanos(ns))
    }

    pub(super) fn set_last_data(&mut self, at: Instant) {
        let ns = at.saturating_duration_since(*RECEIVER_EPOCH).as_nanos();
        self.last_data = u64::try_from(ns).unwrap_or(u64::MAX - 1).saturating_add(1);
    }
    /// The stream ended (see [`Receiver::ended`]).
    pub(super) fn end(&mut self) {
        self.ended = true;
        drop(self.take_partial());
    }
}

/// Runs once a stream's last callbacks returned.
pub type AfterEnd = Box<dyn FnOnce() + Send>;

/// Told that a stream's last callbacks returned. One watcher serves many
/// streams (a server counting its open ones) without an allocation each.
pub trait EndWatcher: Send + Sync {
    fn stream_ended(&self);
}

/// What waits for a stream's last callbacks.
pub(super) enum AfterEndTask {
    Run(AfterEnd),
    Tell(Arc<dyn EndWatcher>),
}

impl AfterEndTask {
    pub(super) fn run(self) {
        match self {
            AfterEndTask::Run(then) => then(),
            AfterEndTask::Tell(watcher) => watcher.stream_ended(),
        }
    }
}

/// Whether the last callbacks returned, and what waits for them: usually
/// nothing or one task, kept inline.
#[derive(Default)]
pub(super) enum LastCallbacks {
    #[default]
    Running,
    RunningBeforeOne(AfterEndTask),
    // Boxed, unlike clippy's advice: a bare Vec would make every stream's
    // inline state a word larger, for a case few streams ever reach.
    #[allow(clippy::box_collection)]
    RunningBeforeMany(Box<Vec<AfterEndTask>>),
    Returned,
}

/// One allocation per stream besides its socket: what a connected, idle
/// stream needs is kept inline, and what only traffic needs (the executor
/// running its callbacks, a segmented message) is allocated when it comes.
pub(crate) struct StreamCore {
    /// Set once, right after the stream's socket is created.
    id: AtomicU64,
    pub(super) options: Settings,
    /// Made by the first callback to run.
    executor: OnceLock<SerialExecutor>,
    pub(super) link: Mutex<Link>,
    pub(super) flow: Flow,
    pub(super) receiver: Mutex<Receiver>,
    /// The host connection once attached (`INVALID_ID` before and after):
    /// written under the link lock, read by every arriving frame without it.
    pub(super) host_id: AtomicU64,
    pub(super) direct_writers: DirectWriters,
    last_returned: Mutex<LastCallbacks>,
}

impl StreamCore {
    fn new(options: StreamOptions) -> Self {
        stats::STREAMS_ALIVE.inc();
        stats::STREAMS_CREATED.inc();
        let window = u32::try_from(options.max_buf_size).unwrap_or(0);
        StreamCore {
            id: AtomicU64::new(crate::id::INVALID_ID),
            options: Settings::new(options),
            executor: OnceLock::new(),
            link: Mutex::new(Link {
                state: State::default(),
                remote: 0,
                has_remote: false,
                remote_writable: false,
                remote_need_feedback: false,
                silenced: false,
            }),
            direct_writers: DirectWriters::default(),
            last_returned: Mutex::default(),
            host_id: AtomicU64::new(crate::id::INVALID_ID),
            flow: Flow::new(window),
            receiver: Mutex::new(Receiver::default()),
        }
    }

    /// Creates a stream (its socket, not connected) and returns its id.
    /// [`StreamEnd`] is told when the stream's socket fails (the stream ends).
    pub(super) fn spawn(options: StreamOptions) -> Result<(StreamId, Arc<StreamCore>), Error> {
        let core = Arc::new(StreamCore::new(options));
        let id = Socket::create(crate::socket::SocketOptions {
            connection: Some(Arc::clone(&core) as Arc<dyn Connection>),
            ..Default::default()
        })?;
        core.id.store(id, Ordering::Release);
        Ok((id, core))
    }

    pub(super) fn id(&self) -> StreamId {
        self.id.load(Ordering::Acquire)
    }

    /// The host connection, while attached.
    pub(super) fn host(&self) -> Option<crate::socket::SocketId> {
        Some(self.host_id.load(Ordering::Acquire)).filter(|id| *id != crate::id::INVALID_ID)
    }

    /// Detaches the stream from its host (under the link lock), returning it.
    pub(super) fn take_host(&self) -> Option<crate::socket::SocketId> {
        Some(self.host_id.swap(crate::id::INVALID_ID, Ordering::AcqRel)).filter(|id| *id != crate::id::INVALID_ID)
    }

    /// Runs the stream's callbacks one at a time, in order.
    pub(super) fn executor(&self) -> &SerialExecutor {
        self.executor.get_or_init(SerialExecutor::new)
    }

    /// This side's id on the wire.
    pub(super) fn wire_id(&self) -> i64 {
        self.id() as i64
    }

    /// Runs `then` once the stream's last callbacks returned: now, if they
    /// did, or right after `on_closed`.
    pub(super) fn after_end(&self, then: AfterEndTask) {
        let mut last = self.last_returned.lock();
        *last = match std::mem::take(&mut *last) {
            LastCallbacks::Returned => {
                *last = LastCallbacks::Returned;
                drop(last);
                return then.run();
            }
            LastCallbacks::Running => LastCallbacks::RunningBeforeOne(then),
            LastCallbacks::RunningBeforeOne(first) => LastCallbacks::RunningBeforeMany(Box::new(vec![first, then])),
            LastCallbacks::RunningBeforeMany(mut all) => {
                all.push(then);
                LastCallbacks::RunningBeforeMany(all)
            }
        };
    }

    /// The stream's last callbacks returned (or there were none to run).
    pub(super) fn last_callbacks_returned(&self) {
        let waiting = std::mem::replace(&mut *self.last_returned.lock(), LastCallbacks::Returned);
        match waiting {
            LastCallbacks::RunningBeforeOne(then) => then.run(),
            LastCallbacks::RunningBeforeMany(all) => all.into_iter().for_each(AfterEndTask::run),
            LastCallbacks::Running | LastCallbacks::Returned => {}
        }
    }

    /// The host connection and the peer's id, once connected.
    pub(super) fn route(&self) -> Option<(SocketRef, i64)> {
        let link = self.link.lock();
        let host = Socket::address(self.host()?)?;
        Some((host, link.remote_id()?))
    }

    /// Sends a frame straight to the host, outside the stream's queue
    /// (FEEDBACK). Lost frames are fine: the host is failing then.
    pub(super) fn send_control(&self, frame: impl FnOnce(i64, i64) -> Result<Bytes, Error>) {
        if let Some((host, remote)) = self.route() {
            if let Ok(bytes) = frame(remote, self.wire_id()) {
                let _ = host.write(vec![bytes], None);
            }
        }
    }
}

impl Drop for StreamCore {
    fn drop(&mut self) {
        gauge(self.link.get_mut().state.phase()).dec();
        stats::STREAMS_ALIVE.dec();
    }
}

impl Connection for StreamCore {
    fn connect(&self, _socket: &Socket, data: ConnectData) -> Result<(), Error> {
        let (action, host) = {
            let mut link = self.link.lock();
            (link.apply(|state| state.queue_connect(data)), self.host())
        };
        match action {
            QueueConnectAction::Wait => Ok(()),
            // Connected (or closing, with a CLOSE to send): the queue goes now.
            QueueConnectAction::Drain(data) => {
                let fd = host.and_then(Socket::address).map_or(0, |h| h.fd().max(0));
                let _ = check_connected_and_keep_write(fd, 0, data);
                Ok(())
            }
            QueueConnectAction::Refuse => Err(Error::new(libc::ECONNRESET, "the stream closed before it connected")),
        }
    }

    /// Frames every queued message onto the host connection in one write,
    /// DATA for messages and CLOSE for the close marker. Small messages are
    /// copied with their headers into one buffer, so a burst of them costs
    /// one chunk (and one iovec) rather than two per message.
    fn write(&self, socket: &Socket, messages: &[OutMessage<'_>]) -> Result<usize, Error> {
        let Some((host, remote)) = self.route() else {
            return Err(Error::new(errno::EFAILEDSOCKET, "the stream has no connection to write to"));
        };
        let local = self.wire_id();
        let mut chunks = std::collections::VecDeque::new();
        let mut small = BytesMut::new();
        let mut taken = 0;
        let mut close = false;
        let mut extra_segments = 0;
        for message in messages {
            if message.tag == CLOSE_TAG {
                small.extend_from_slice(&frames::close(remote, local)?);
                close = true;
                break;
            }
            let len: usize = message.chunks.iter().map(Bytes::len).sum();
            if let Some(max) = frames::segment_size_for(len) {
                let parts: Vec<&[u8]> = message.chunks.iter().map(|c| &c[..]).collect();
                extra_segments += frames::append_segments(&mut small, remote, local, &parts, max)? - 1;
                taken += len;
                continue;
            }
            frames::append_data_header(&mut small, remote, local, len)?;
            if len <= frames::COPY_LIMIT {
                message.chunks.iter().for_each(|c| small.extend_from_slice(c));
            } else {
                chunks.push_back(small.split().freeze());
                chunks.extend(message.chunks.iter().cloned());
            }
            taken += len;
        }
        if !small.is_empty() {
            chunks.push_back(small.freeze());
        }
        host.write(chunks, None)?;
        let sent = messages.iter().take_while(|m| m.tag != CLOSE_TAG).count();
        stats::STREAM_MESSAGES_OUT.add(sent as u64);
        stats::STREAM_BYTES_OUT.add(taken as u64);
        stats::STREAM_EXTRA_SEGMENTS_OUT.add(extra_segments as u64);
        if close {
            // Everything before the CLOSE is out: the stream is done.
            let why = self.link.lock().state().closing_why().unwrap_or("the stream was closed");
            socket.set_failed(Error::new(NORMAL_CLOSE, why));
        }
        Ok(taken)
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn as_any_ref(&self) -> &dyn Any {
        self
    }

    fn user(&self) -> Option<&dyn SocketUser> {
        Some(&StreamEnd)
    }
}

/// The stream behind a socket, if the socket is a stream's.
pub(super) fn find_core(socket: &Socket) -> Option<Arc<StreamCore>> {
    Arc::clone(socket.connection()?).as_any().downcast::<StreamCore>().ok()
}

/// The stream behind a socket, borrowed from it.
pub(super) fn core_of(socket: &Socket) -> Option<&StreamCore> {
    socket.connection()?.as_any_ref().downcast_ref::<StreamCore>()
}

/// A live stream and its socket.
pub(super) fn find(id: StreamId) -> Option<(SocketRef, Arc<StreamCore>)> {
    let socket = Socket::address(id)?;
    let core = find_core(&socket)?;
    Some((socket, core))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connected stream costs its socket's registry slot and this
    /// core, one allocation each (issue 13: at most 0.5 KiB a stream on
    /// each side, measured by `stream_procs --only memory`). The bounds
    /// keep them from growing back unnoticed: 280 bytes and an `Arc`'s
    /// counts make a 304-byte malloc chunk.
    #[test]
    fn an_idle_streams_state_stays_small() {
        let core = std::mem::size_of::<StreamCore>();
        let socket = std::mem::size_of::<Socket>();
        assert!(core <= 280, "StreamCore is {core} bytes");
        assert!(socket <= 136, "Socket is {socket} bytes");
    }
}
