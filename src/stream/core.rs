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
    fn on_failed(&self, id: StreamId, code: i32, text: &str);
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
    pub host: Option<crate::socket::SocketId>,
    pub remote_id: Option<i64>,
    /// What the peer said: it has a handler (so writing makes sense), it
    /// wants FEEDBACK.
    pub remote_writable: bool,
    pub remote_need_feedback: bool,
    /// The call that made the stream failed: its end runs no callback
    /// (the handler is no longer the library's to call).
    pub silenced: bool,
}

impl Link {
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
    pub queue: VecDeque<Bytes>,
    /// Segments of a message whose DATA frames said `has_continuation`.
    pub partial: Option<BytesMut>,
    /// A delivery task is queued or running.
    pub delivering: bool,
    /// Bytes handed to the handler so far (what FEEDBACK reports).
    pub consumed: u64,
    /// Bytes of whole messages queued so far; `received - consumed` is
    /// what the handler has not consumed yet (the peer's window in use).
    pub received: u64,
    pub last_data: Option<Instant>,
    /// The stream ended: what arrives from now on is dropped, and nothing
    /// more is queued for its handler after its last callbacks.
    pub ended: bool,
}

impl Receiver {
    /// The stream ended (see [`Receiver::ended`]).
    pub(super) fn end(&mut self) {
        self.ended = true;
        self.partial = None;
    }
}

/// Runs once a stream's last callbacks returned.
pub type AfterEnd = Box<dyn FnOnce() + Send>;

/// Whether the last callbacks returned, and what waits for them.
#[derive(Default)]
pub(super) struct LastCallbacksReturned {
    returned: bool,
    waiting: Vec<AfterEnd>,
}

pub(crate) struct StreamCore {
    id: OnceLock<StreamId>,
    pub(super) options: StreamOptions,
    pub(super) executor: SerialExecutor,
    pub(super) link: Mutex<Link>,
    pub(super) flow: Arc<Flow>,
    pub(super) receiver: Mutex<Receiver>,
    /// `link.host`, readable without the lock by every arriving frame.
    pub(super) host_id: AtomicU64,
    pub(super) direct_writers: DirectWriters,
    last_returned: Mutex<LastCallbacksReturned>,
}

impl StreamCore {
    fn new(options: StreamOptions) -> Self {
        stats::STREAMS_ALIVE.inc();
        stats::STREAMS_CREATED.inc();
        let window = if options.max_buf_size > 0 { options.max_buf_size as u64 } else { 0 };
        StreamCore {
            id: OnceLock::new(),
            options,
            executor: SerialExecutor::new(),
            link: Mutex::new(Link {
                state: State::default(),
                host: None,
                remote_id: None,
                remote_writable: false,
                remote_need_feedback: false,
                silenced: false,
            }),
            direct_writers: DirectWriters::default(),
            last_returned: Mutex::default(),
            host_id: AtomicU64::new(crate::id::INVALID_ID),
            flow: Arc::new(Flow::new(window)),
            receiver: Mutex::new(Receiver::default()),
        }
    }

    /// Creates a stream (its socket, not connected) and returns its id.
    /// `user` is told when the stream's socket fails (the stream ends).
    pub(super) fn spawn(
        options: StreamOptions,
        user: Arc<dyn SocketUser>,
    ) -> Result<(StreamId, Arc<StreamCore>), Error> {
        let core = Arc::new(StreamCore::new(options));
        let id = Socket::create(crate::socket::SocketOptions {
            connection: Some(Arc::clone(&core) as Arc<dyn Connection>),
            user: Some(user),
            ..Default::default()
        })?;
        let _ = core.id.set(id);
        Ok((id, core))
    }

    pub(super) fn id(&self) -> StreamId {
        self.id.get().copied().unwrap_or(crate::id::INVALID_ID)
    }

    /// This side's id on the wire.
    pub(super) fn wire_id(&self) -> i64 {
        self.id() as i64
    }

    /// Runs `then` once the stream's last callbacks returned: now, if they
    /// did, or right after `on_closed`.
    pub(super) fn after_end(&self, then: AfterEnd) {
        let mut last = self.last_returned.lock();
        if last.returned {
            drop(last);
            return then();
        }
        last.waiting.push(then);
    }

    /// The stream's last callbacks returned (or there were none to run).
    pub(super) fn last_callbacks_returned(&self) {
        let waiting = {
            let mut last = self.last_returned.lock();
            last.returned = true;
            std::mem::take(&mut last.waiting)
        };
        waiting.into_iter().for_each(|then| then());
    }

    /// The host connection and the peer's id, once connected.
    pub(super) fn route(&self) -> Option<(SocketRef, i64)> {
        let link = self.link.lock();
        let host = Socket::address(link.host?)?;
        Some((host, link.remote_id?))
    }

    /// Sends a frame straight to the host, outside the stream's queue
    /// (FEEDBACK). Lost frames are fine: the host is failing then.
    pub(super) fn send_control(&self, frame: impl FnOnce(i64, i64) -> Result<Bytes, i32>) {
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
            (link.apply(|state| state.queue_connect(data)), link.host)
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
    fn write(&self, socket: &Socket, messages: &[OutMessage<'_>]) -> Result<usize, i32> {
        let Some((host, remote)) = self.route() else {
            return Err(errno::EFAILEDSOCKET);
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
        // The host's reason goes with its socket; this write reports the code.
        host.write(chunks, None).map_err(|error| error.code())?;
        let sent = messages.iter().take_while(|m| m.tag != CLOSE_TAG).count();
        stats::STREAM_MESSAGES_OUT.add(sent as u64);
        stats::STREAM_BYTES_OUT.add(taken as u64);
        stats::STREAM_EXTRA_SEGMENTS_OUT.add(extra_segments as u64);
        if close {
            // Everything before the CLOSE is out: the stream is done.
            let why = self.link.lock().state().closing_why().unwrap_or("the stream was closed");
            socket.set_failed(NORMAL_CLOSE, why);
        }
        Ok(taken)
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }

    fn as_any_ref(&self) -> &dyn Any {
        self
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
