//! The stream object. A stream is a socket whose connection is provided by
//! the stream itself: its write queue keeps the user's messages in order
//! while the stream is not connected, and once the setup call connects it,
//! [`StreamCore::write`] frames each message as DATA onto the host
//! connection. The stream's id is its socket's id.

use std::any::Any;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

use super::flow::Flow;
use super::frames;
use super::receive::Receiver;
use super::{StreamId, StreamOptions};
use crate::errno;
use crate::runtime::SerialExecutor;
use crate::socket::{
    check_connected_and_keep_write, ConnectData, Connection, OutMessage, Socket, SocketRef, SocketUser,
};
use crate::stats;

/// Tag of the message that asks for a CLOSE frame after everything queued.
pub(super) const CLOSE_TAG: u32 = 1;

/// Streams not yet recycled, process-wide.
pub fn live_count() -> usize {
    stats::STREAMS_ALIVE.get() as usize
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Writes queue until the setup call connects the stream.
    Created,
    Connected,
    /// Closed by this side or the peer; a CLOSE is on its way out.
    Closing,
    /// The stream's socket failed: nothing more happens but callbacks.
    Closed,
}

impl Phase {
    /// The gauge counting streams in this phase.
    fn gauge(self) -> &'static stats::Counter {
        match self {
            Phase::Created => &stats::STREAMS_CREATED,
            Phase::Connected => &stats::STREAMS_CONNECTED,
            Phase::Closing => &stats::STREAMS_CLOSING,
            Phase::Closed => &stats::STREAMS_CLOSED,
        }
    }
}

/// Where the stream is attached and what the peer said about itself.
#[derive(Debug)]
pub(super) struct Link {
    pub phase: Phase,
    pub host: Option<crate::socket::SocketId>,
    pub remote_id: Option<i64>,
    pub remote_writable: bool,
    pub remote_need_feedback: bool,
    /// The write queue waiting for the stream to connect.
    pub pending_connect: Option<ConnectData>,
    /// Connected, but writes wait for the setup response to be queued.
    pub held: bool,
    /// Some write went through the stream's own queue (before it
    /// connected, or racing the connect): the stream keeps using it, so
    /// no later write overtakes one still queued.
    pub used_queue: bool,
    /// Connected with nothing ever queued: writes frame themselves straight
    /// onto the host connection, skipping the stream's queue.
    pub direct: bool,
    /// How the stream ended, until its last callbacks are scheduled.
    pub ending: Option<(i32, String)>,
    /// The call that made the stream failed: its end runs no callback
    /// (the handler is no longer the library's to call).
    pub(super) silenced: bool,
}

impl Link {
    /// Moves to `phase`, keeping the per-phase gauges right.
    pub(super) fn set_phase(&mut self, phase: Phase) {
        self.phase.gauge().dec();
        phase.gauge().inc();
        self.phase = phase;
    }
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
    /// Writers between choosing the direct path and queueing on the host:
    /// a CLOSE waits for them, so it follows every write accepted before it.
    pub(super) direct_writers: AtomicUsize,
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
                phase: Phase::Created,
                host: None,
                remote_id: None,
                remote_writable: false,
                remote_need_feedback: false,
                pending_connect: None,
                held: false,
                used_queue: false,
                direct: false,
                ending: None,
                silenced: false,
            }),
            direct_writers: AtomicUsize::new(0),
            host_id: AtomicU64::new(crate::id::INVALID_ID),
            flow: Arc::new(Flow::new(window)),
            receiver: Mutex::new(Receiver::default()),
        }
    }

    /// Creates a stream (its socket, not connected) and returns its id.
    pub(super) fn spawn(options: StreamOptions) -> Result<(StreamId, Arc<StreamCore>), i32> {
        let core = Arc::new(StreamCore::new(options));
        let id = Socket::create(crate::socket::SocketOptions {
            connection: Some(Arc::clone(&core) as Arc<dyn Connection>),
            user: Some(Arc::clone(&core) as Arc<dyn SocketUser>),
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

    /// Connects the stream to `remote` on `host`. Unless `held`, queued
    /// writes go at once; a held stream (a server's, whose response is not
    /// queued yet) keeps them until [`StreamCore::release`], so nothing it
    /// writes overtakes the response, while frames arriving for it are
    /// already taken as a connected stream's.
    pub(super) fn connect(&self, host: &Socket, remote: i64, writable: bool, need_feedback: bool, held: bool) {
        {
            let mut link = self.link.lock();
            if link.phase != Phase::Created {
                return;
            }
            link.set_phase(Phase::Connected);
            link.held = held;
            link.host = Some(host.id());
            self.host_id.store(host.id(), Ordering::Release);
            link.remote_id = Some(remote);
            link.remote_writable = writable;
            link.remote_need_feedback = need_feedback;
        }
        super::hosts::attach(host, self.id());
        super::receive::start_idle_timer(self);
        if !held {
            self.release();
        }
    }

    /// Lets the writes queued while the stream was held (or connecting) go.
    pub(super) fn release(&self) {
        let (pending, host) = {
            let mut link = self.link.lock();
            link.held = false;
            let pending = link.pending_connect.take();
            link.direct = pending.is_none() && !link.used_queue && link.phase == Phase::Connected;
            (pending, link.host)
        };
        if let Some(data) = pending {
            let fd = host.and_then(Socket::address).map_or(0, |h| h.fd().max(0));
            let _ = check_connected_and_keep_write(fd, 0, data);
        }
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
        self.link.get_mut().phase.gauge().dec();
        stats::STREAMS_ALIVE.dec();
    }
}

impl Connection for StreamCore {
    fn connect(&self, _socket: &Socket, data: ConnectData) -> Result<(), i32> {
        let host_fd = {
            let mut link = self.link.lock();
            match link.phase {
                Phase::Created => {
                    link.pending_connect = Some(data);
                    return Ok(());
                }
                Phase::Connected | Phase::Closing if link.held => {
                    link.pending_connect = Some(data);
                    return Ok(());
                }
                // Closing still connects, to send what is queued and the CLOSE.
                Phase::Connected | Phase::Closing if link.remote_id.is_some() => {
                    link.host.and_then(Socket::address).map_or(0, |h| h.fd().max(0))
                }
                Phase::Connected | Phase::Closing | Phase::Closed => return Err(libc::ECONNRESET),
            }
        };
        // Connected before anything was written: the queue goes at once.
        let _ = check_connected_and_keep_write(host_fd, 0, data);
        Ok(())
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
        for message in messages {
            if message.tag == CLOSE_TAG {
                small.extend_from_slice(&frames::close(remote, local)?);
                close = true;
                break;
            }
            let len: usize = message.chunks.iter().map(Bytes::len).sum();
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
        if close {
            // Everything before the CLOSE is out: the stream is done.
            socket.set_failed(super::close::NORMAL_CLOSE, "the stream was closed");
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

impl SocketUser for StreamCore {
    fn on_input(&self, _socket: &Socket, buf: &mut BytesMut) -> Result<(), (i32, String)> {
        // A stream's socket has no fd to read; its input comes as frames.
        buf.clear();
        Ok(())
    }

    fn on_failed(&self, socket: &Socket, code: i32, text: &str) {
        if let Some(core) = find_core(socket) {
            super::close::finished(socket, &core, code, text);
        }
    }

    fn on_writes_settled(&self, socket: &Socket) {
        if let Some(core) = find_core(socket) {
            super::close::report_end(socket, &core);
        }
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
