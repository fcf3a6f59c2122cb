//! Sockets: one object per connection, addressed by a versioned [`SocketId`].
//!
//! A socket owns its fd (server side: given at creation; client side:
//! connected on first write), a wait-free write queue, and a read buffer fed
//! by the dispatcher. Where things happen:
//! - `riders`: the sockets riding on a connection (its streams).
//! - [`connect`]: non-blocking TCP connect with a timeout, result exactly once.
//! - `write`: the write queue's owner loop, KeepWrite on EPOLLOUT, and
//!   `check_connected_and_keep_write`, the end of every connection attempt.
//! - `read`: edge-triggered reads handed to the socket's [`SocketUser`].
//! - `trim`: free memory given back to the system after a large teardown.
//! - this file: creation, addressing and failing.

mod chunks;
pub mod connect;
pub mod liveness;
mod read;
mod riders;
mod trim;
pub mod write;
pub mod write_queue;

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::BytesMut;
use nix::sys::socket::SockaddrStorage;
use parking_lot::Mutex;

use crate::errno;
use crate::error::Error;
use crate::id::{self, Registry};
use crate::runtime::{dispatcher, Interest, Token};
use crate::stats;

pub use chunks::Chunks;
pub use liveness::Liveness;
pub use read::make_room;
pub use riders::{Refused, Riders};
pub use trim::{trim_count, FREED_ENOUGH as TRIM_AFTER_FREEING, SETTLE as TRIM_SETTLE};
pub use write::{
    check_connected_and_keep_write, max_unwritten_bytes, overcrowded_grace, pending_attempts, set_max_unwritten_bytes,
    set_overcrowded_grace, ConnectData, WriteDone, DEFAULT_MAX_UNWRITTEN_BYTES, DEFAULT_OVERCROWDED_GRACE,
};
use write::{Burst, ParkedWriter, WriteRequest};
use write_queue::WriteQueue;

pub type SocketId = id::Id;
pub const INVALID_SOCKET_ID: SocketId = id::INVALID_ID;

/// A counted reference to a live (or failed but not yet recycled) socket.
pub type SocketRef = id::Ref<'static, Socket>;

static SOCKETS: LazyLock<Registry<Socket>> = LazyLock::new(Registry::new);

/// What the owner of a socket is told. Both run on library threads and must
/// not block: `on_input` on the dispatcher thread, `on_failed` on the thread
/// that failed the socket.
pub trait SocketUser: Send + Sync {
    /// New bytes were appended to `buf`; consume what forms whole messages and
    /// leave the rest for the next call. An `Err` fails the socket.
    fn on_input(&self, socket: &Socket, buf: &mut BytesMut) -> Result<(), Error>;
    /// The socket failed; called exactly once, after queued writes were failed.
    fn on_failed(&self, socket: &Socket, error: &Error);
    /// The socket failed and the last data write still in flight was just
    /// sent or dropped (a thread that was draining the queue when the
    /// socket failed finishes after `on_failed`). May come before
    /// `on_failed` is over, and not at all when nothing was in flight.
    fn on_writes_settled(&self, _socket: &Socket) {}
    /// Whether the socket should read its input now. False holds the input
    /// in the kernel (the peer's sends block once its window is full) until
    /// the user calls [`Socket::resume_input`]: a peer cannot queue more
    /// work than its user is willing to hold.
    fn accepts_input(&self) -> bool {
        true
    }
}

/// A connection provided by the socket's owner instead of a TCP connect
/// (a stream's socket rides on its host connection and has no fd of its own).
pub trait Connection: Send + Sync {
    /// Starts connecting; the owner must eventually call
    /// [`check_connected_and_keep_write`] with `data`, exactly once, unless this
    /// returns an error.
    fn connect(&self, socket: &Socket, data: ConnectData) -> Result<(), Error>;
    /// Writes queued messages of a connected socket, oldest first; returns
    /// how many bytes were taken, or an error (`EAGAIN` waits for
    /// [`Socket::notify_writable`], `EINTR` retries; any other fails the
    /// socket, keeping it as the cause): shaped as `writev(2)`, whose
    /// place it takes on the write path. Message boundaries and tags are kept so
    /// the owner can frame each message.
    fn write(&self, socket: &Socket, messages: &[OutMessage<'_>]) -> Result<usize, Error>;
    /// The connection as `Any`, so its owner can find its own type again.
    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync>;
    /// The same, borrowed (no reference count touched: for hot paths).
    fn as_any_ref(&self) -> &dyn std::any::Any;
    /// The user of the socket this connection serves (kept here rather
    /// than in the socket, which stays small).
    fn user(&self) -> Option<&dyn SocketUser>;
}

/// One queued message as an owner-provided connection sees it.
pub struct OutMessage<'a> {
    pub chunks: &'a Chunks,
    /// What [`WriteOptions::tag`] said; 0 for plain data.
    pub tag: u32,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Passed to an owner-provided connection with the message.
    pub tag: u32,
    /// The writing thread never writes into the fd: the queue is drained on
    /// a worker.
    pub background: bool,
}

#[derive(Default)]
pub struct SocketOptions {
    /// A connected fd (server side). Without it the socket connects to
    /// `remote` (or through `connection`) on its first write.
    pub fd: Option<OwnedFd>,
    pub remote: Option<SocketAddr>,
    pub connect_timeout: Option<Duration>,
    /// Told about input and failure. A socket with a `connection` has the
    /// connection's user ([`Connection::user`]) and refuses this one.
    pub user: Option<Arc<dyn SocketUser>>,
    pub connection: Option<Arc<dyn Connection>>,
    /// Applied to the fd, given or connected.
    pub liveness: Liveness,
    /// Most sockets (streams) riding on this one at once; 0: no bound.
    pub max_riders: usize,
}

pub struct Socket {
    id: SocketId,
    /// -1 until connected. Owned (closed at recycle) unless the socket has an
    /// owner-provided connection, whose fd belongs to the owner.
    fd: AtomicI32,
    connection: Option<Arc<dyn Connection>>,
    queue: WriteQueue<WriteRequest>,
    /// The write-queue owner waiting for EPOLLOUT or for a connection.
    parked: Mutex<Option<Box<ParkedWriter>>>,
    /// The pending connection attempt (its id in the attempts registry).
    connecting: AtomicU64,
    failure: Mutex<Option<Box<Error>>>,
    dropped_messages: std::sync::atomic::AtomicU64,
    dropped_bytes: std::sync::atomic::AtomicU64,
    /// Data writes queued and not yet sent or dropped.
    writes_in_flight: std::sync::atomic::AtomicU64,
    /// Bytes queued and not yet written or dropped (brpc's unwritten bytes).
    unwritten: AtomicU64,
    /// What only a socket with a TCP connection of its own has; `None`
    /// for one riding on its owner's connection (a stream's socket, of
    /// which a process may hold many thousands, so it stays small).
    tcp: Option<Box<Tcp>>,
}

/// The parts of a socket that owns its fd.
struct Tcp {
    user: Option<Arc<dyn SocketUser>>,
    remote: Option<SocketAddr>,
    connect_timeout: Option<Duration>,
    liveness: Liveness,
    registration: Mutex<Option<Token>>,
    /// Input was left unread because the user did not accept it.
    input_held: AtomicBool,
    read_buf: Mutex<read::ReadBuf>,
    /// A refused write armed the overcrowding check (one timer at a time).
    overcrowded_check: std::sync::atomic::AtomicBool,
    burst: Burst,
    riders: Riders,
    /// This connection's own traffic (the process-wide sums are in `stats`).
    created: std::time::Instant,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

/// One socket's traffic, as `/connections` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    pub age: Duration,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Queued and not yet written or dropped.
    pub unwritten: u64,
}

impl Socket {
    /// Creates a socket; a given fd is made non-blocking and watched for input
    /// at once.
    pub fn create(options: SocketOptions) -> Result<SocketId, Error> {
        let SocketOptions { fd, remote, connect_timeout, user, connection, liveness, max_riders } = options;
        if connection.is_some() && user.is_some() {
            return Err(Error::new(
                libc::EINVAL,
                "a socket with an owner-provided connection has that connection's user",
            ));
        }
        let remote = remote.or_else(|| fd.as_ref().and_then(|fd| peer_address(fd.as_raw_fd())));
        let raw_fd = match &fd {
            Some(fd) => {
                let raw_fd = fd.as_raw_fd();
                set_nonblocking(raw_fd)
                    .map_err(|code| Error::new(code, format!("fail to make fd={raw_fd} non-blocking")))?;
                liveness
                    .apply(raw_fd)
                    .map_err(|code| Error::new(code, format!("fail to set the liveness options of fd={raw_fd}")))?;
                raw_fd
            }
            None => -1,
        };
        let id = SOCKETS.create_with(|id| {
            // Counted where the object is made, so its Drop always undoes it.
            stats::SOCKETS_ALIVE.inc();
            let tcp = connection.is_none().then(|| {
                Box::new(Tcp {
                    user,
                    remote,
                    connect_timeout,
                    liveness,
                    registration: Mutex::new(None),
                    input_held: AtomicBool::new(false),
                    read_buf: Mutex::new(read::ReadBuf::default()),
                    overcrowded_check: Default::default(),
                    burst: Burst::default(),
                    riders: Riders::with_max(max_riders),
                    created: std::time::Instant::now(),
                    bytes_read: AtomicU64::new(0),
                    bytes_written: AtomicU64::new(0),
                })
            });
            Socket {
                id,
                fd: AtomicI32::new(raw_fd),
                connection,
                queue: WriteQueue::new(),
                parked: Mutex::new(None),
                connecting: AtomicU64::new(id::INVALID_ID),
                failure: Mutex::new(None),
                dropped_messages: Default::default(),
                dropped_bytes: Default::default(),
                writes_in_flight: Default::default(),
                unwritten: AtomicU64::new(0),
                tcp,
            }
        });
        // On error `fd` is dropped (closed) here.
        let id = id.map_err(|code| Error::new(code, "too many sockets"))?;
        trim::created(SOCKETS.live());
        // The socket owns the fd from now on: it is closed at recycle.
        if let Some(fd) = fd {
            let _ = std::os::fd::IntoRawFd::into_raw_fd(fd);
            if let Some(socket) = Socket::address(id) {
                if let Err(code) = socket.watch_input(raw_fd) {
                    let error = Error::new(code, format!("fail to watch fd={raw_fd} for input"));
                    socket.refuse(&error);
                    return Err(error);
                }
            }
        }
        Ok(id)
    }

    pub fn address(id: SocketId) -> Option<SocketRef> {
        SOCKETS.address(id)
    }

    pub fn address_failed_as_well(id: SocketId) -> Option<SocketRef> {
        SOCKETS.address_failed_as_well(id)
    }

    pub fn status(id: SocketId) -> Option<id::Status> {
        SOCKETS.status(id)
    }

    /// Sockets created and not yet recycled.
    pub fn live_count() -> usize {
        SOCKETS.live()
    }

    /// Fails the socket addressed by `id`; false when it is unknown or failed already.
    pub fn set_failed_by_id(id: SocketId, error: Error) -> bool {
        match Socket::address_failed_as_well(id) {
            Some(socket) => socket.set_failed(error),
            None => false,
        }
    }

    pub fn id(&self) -> SocketId {
        self.id
    }

    pub fn fd(&self) -> RawFd {
        self.fd.load(Ordering::Acquire)
    }

    /// The peer's address; `None` for a socket riding on its owner's
    /// connection.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.tcp.as_ref()?.remote
    }

    /// The local end of the connection, once connected.
    pub fn local(&self) -> Option<SocketAddr> {
        let fd = self.fd();
        if fd < 0 {
            return None;
        }
        to_std_addr(nix::sys::socket::getsockname::<SockaddrStorage>(fd).ok()?)
    }

    /// A socket riding on its owner's connection counts only what waits
    /// in its queue: its bytes are its connection's.
    pub fn traffic(&self) -> Traffic {
        let (age, bytes_read, bytes_written) = match &self.tcp {
            Some(tcp) => (
                tcp.created.elapsed(),
                tcp.bytes_read.load(Ordering::Relaxed),
                tcp.bytes_written.load(Ordering::Relaxed),
            ),
            None => (Duration::ZERO, 0, 0),
        };
        Traffic { age, bytes_read, bytes_written, unwritten: self.unwritten_bytes() }
    }

    pub fn failed(&self) -> bool {
        SOCKETS.status(self.id).is_none_or(|status| status.failed)
    }

    /// What the socket failed with, if it did.
    pub fn failure(&self) -> Option<Error> {
        self.failure.lock().as_deref().cloned()
    }

    pub fn description(&self) -> String {
        let mut text = format!("Socket{{id={} fd={}", self.id, self.fd());
        if let Some(remote) = self.remote() {
            text.push_str(&format!(" addr={remote}"));
        }
        if let Some(failure) = self.failure.lock().as_deref() {
            text.push_str(&format!(" failed={} \"{}\"", failure.code(), failure.text()));
        }
        text.push('}');
        text
    }

    /// Fails the socket: exactly one caller gets true. The fd is shut down
    /// at once (the peer sees it, pending I/O errors out) and closed when the
    /// last reference goes, so no thread ever writes into a reused fd number.
    /// Queued writes fail with the error's code, a pending connection
    /// attempt is resolved as failed, and the socket's user is told.
    pub fn set_failed(&self, error: Error) -> bool {
        let code = error.code();
        // Record the reason before the flag flips so that whoever sees the
        // socket failed also finds why.
        {
            let mut failure = self.failure.lock();
            if failure.is_some() {
                return false;
            }
            *failure = Some(Box::new(error.clone()));
        }
        if !SOCKETS.set_failed(self.id) {
            return false;
        }
        // The peer closing its end, a stream's close, a server stopping or
        // closing an idle connection: orderly ends, neither broken
        // connections nor news.
        let orderly = code == errno::ECLOSE || code == errno::ELOGOFF || code == errno::EEOF || code == errno::EUNUSED;
        if !orderly && self.owns_fd() && self.fd() >= 0 {
            stats::CONNECTIONS_BROKEN.inc();
        }
        // A write into a connection the peer has closed (EPIPE) is how a
        // peer's exit usually shows: brpc does not warn about it either.
        if !orderly && code != libc::EPIPE {
            // As brpc shows an error, the code once (a stream failed with
            // its call's error has it in its text already).
            log_warning!("Socket{{id={} fd={}}} failed: {error}", self.id, self.fd());
        }
        if let Some(token) = self.tcp.as_ref().and_then(|tcp| tcp.registration.lock().take()) {
            dispatcher().deregister(token, self.fd());
        }
        if self.connection.is_none() {
            let fd = self.fd();
            if fd >= 0 {
                // SAFETY-free: shutdown on a descriptor we own and have not closed.
                let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Both);
            }
        }
        write::fail_pending_writes(self, &error);
        if let Some(user) = self.user() {
            user.on_failed(self, &error);
        }
        true
    }

    /// Fails the socket once everything queued before this call was
    /// written: an orderly close that does not cut off frames in flight.
    pub fn close_after_flush(&self, error: Error) {
        let id = self.id;
        let close = Box::new(move |_written: i32| {
            Socket::set_failed_by_id(id, error);
        });
        // Refused only when failed already, which is what was asked.
        let _ = self.write(Chunks::empty(), Some(close));
    }

    /// Starts watching `fd` for input (and, later, output readiness).
    /// Fails a socket `create` is about to refuse. Its user hears nothing
    /// (a call that fails keeps nothing it was given): no `on_failed`; the
    /// caller's reference is the last, so the socket, its fd and its user
    /// go before `create` returns.
    fn refuse(&self, error: &Error) {
        *self.failure.lock() = Some(Box::new(error.clone()));
        SOCKETS.set_failed(self.id);
    }

    fn watch_input(&self, fd: RawFd) -> Result<(), i32> {
        let id = self.id;
        let handler: crate::runtime::dispatcher::Handler = Arc::new(move |events| {
            if let Some(socket) = Socket::address(id) {
                if events.writable {
                    socket.notify_writable();
                }
                if events.readable || events.hangup || events.error {
                    // Without a hangup or error in the edge, a short read
                    // ends it: the next bytes bring their own edge.
                    read::on_readable(&socket, !(events.hangup || events.error));
                }
            }
        });
        let Some(tcp) = &self.tcp else { return Err(libc::EBADF) };
        let token = dispatcher().register(fd, Interest::READ, handler)?;
        *tcp.registration.lock() = Some(token);
        Ok(())
    }

    /// Whether to read now; when the user holds its input, marks it held
    /// so that [`Socket::resume_input`] reads it later.
    fn input_accepted(&self) -> bool {
        let Some(tcp) = &self.tcp else {
            return true;
        };
        let Some(user) = &tcp.user else {
            return true;
        };
        if user.accepts_input() {
            return true;
        }
        tcp.input_held.store(true, Ordering::SeqCst);
        // A resume between the look and the mark saw nothing held: look
        // again. Both may go on; a spare read turn costs one EAGAIN.
        user.accepts_input() && tcp.input_held.swap(false, Ordering::SeqCst)
    }

    /// Reads the input held back by [`SocketUser::accepts_input`], if any,
    /// on the socket's event loop soon; callable from any thread.
    pub fn resume_input(&self) {
        let Some(tcp) = &self.tcp else {
            return;
        };
        if tcp.input_held.swap(false, Ordering::SeqCst) {
            if let Some(token) = *tcp.registration.lock() {
                dispatcher().resume(token);
            }
        }
    }

    /// Input is left to read: be called again after the other sockets.
    fn read_again(&self) {
        if let Some(token) = self.tcp.as_ref().and_then(|tcp| *tcp.registration.lock()) {
            dispatcher().again(token);
        }
    }

    /// Asks the dispatcher for one more EPOLLOUT edge.
    fn want_writable(&self) -> Result<(), i32> {
        match self.tcp.as_ref().and_then(|tcp| *tcp.registration.lock()) {
            Some(token) => dispatcher().modify(token, self.fd(), Interest::BOTH),
            None => Err(libc::EBADF),
        }
    }

    /// The fd (or the owner's connection) can take more bytes: resume the
    /// parked writer, if any.
    pub fn notify_writable(&self) {
        write::resume_parked(self);
    }

    /// Whoever is told about this socket's input and failure.
    fn user(&self) -> Option<&dyn SocketUser> {
        match (&self.tcp, &self.connection) {
            (Some(tcp), _) => tcp.user.as_deref(),
            (None, Some(connection)) => connection.user(),
            (None, None) => None,
        }
    }

    fn owns_fd(&self) -> bool {
        self.connection.is_none()
    }

    /// The sockets riding on this connection (its streams). A socket that
    /// rides on another's connection carries none: its set refuses every
    /// socket.
    pub fn riders(&self) -> &Riders {
        static NONE: LazyLock<Riders> = LazyLock::new(Riders::refusing);
        match &self.tcp {
            Some(tcp) => &tcp.riders,
            None => &NONE,
        }
    }

    /// The owner-provided connection, if the socket has one.
    pub fn connection(&self) -> Option<&Arc<dyn Connection>> {
        self.connection.as_ref()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        stats::SOCKETS_ALIVE.dec();
        // The registry counts this one live until the drop is over.
        trim::freed(SOCKETS.live().saturating_sub(1));
        // The last reference is gone: nobody can be using the fd number now.
        // (Writes still parked here complete through WriteRequest's Drop.)
        if self.owns_fd() {
            let fd = self.fd.swap(-1, Ordering::AcqRel);
            if fd >= 0 {
                // SAFETY: the socket owned `fd` and this is its only close.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}

fn set_nonblocking(fd: RawFd) -> Result<(), i32> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| e as i32)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(|e| e as i32)?;
    Ok(())
}

fn peer_address(fd: RawFd) -> Option<SocketAddr> {
    to_std_addr(nix::sys::socket::getpeername::<SockaddrStorage>(fd).ok()?)
}

fn to_std_addr(addr: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}
