//! The write path: queueing, the owner's drain loop, waiting for EPOLLOUT or
//! for a connection, and [`check_connected_and_keep_write`], where every
//! connection attempt ends.
//!
//! Exactly one thread owns the write queue at a time (the one whose push
//! found it idle). The owner writes in its own thread until the fd would
//! block; then it parks itself in the socket and the dispatcher resumes it on
//! the next EPOLLOUT edge. A socket that is not connected parks its owner in
//! a connection attempt instead. Failing the socket takes a parked owner
//! wherever it is and fails its writes, so no write is ever left waiting.
//! Writes the dispatcher makes while handling input are held until that
//! input is handled, then leave together (`while_handling_input`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use nix::sys::socket::{sendmsg, MsgFlags, SockaddrStorage};
use parking_lot::Mutex;

use super::chunks::Chunks;
use super::connect::{socket_error, tcp_connect};
use super::write_queue::Owner;
use super::{OutMessage, Socket, SocketRef, WriteOptions};
use crate::errno;
use crate::error::Error;
use crate::id::{self, Registry};
use crate::runtime::{spawn, timers};
use crate::stats;

/// Runs once with 0 when every byte of the write left through the fd (or the
/// owner's connection), or with the error that dropped it. It runs on a
/// library thread and must not block.
pub type WriteDone = Box<dyn FnOnce(i32) + Send>;

/// Tells a burst (one thread writing for the third time in a row less than
/// [`Burst::WINDOW`] after its previous write to the socket returned, and
/// not a large write) from sparse writes, so a burst is written in batches
/// by a worker while a lone request still leaves from the writer's own
/// thread without a hand-off. The gap is measured from the previous write's
/// return, not its start: a slow inline write must not hide that its writer
/// is back at once. One close pair is no burst: a call's request often
/// follows the CLOSE of the stream before it closely (the thread only waited
/// for `on_closed`), and handing that request to a worker added a wake-up
/// to every setup + close. Writes from different threads in quick
/// succession are no burst: each finds the queue owned (and returns at
/// once) or idle (and a hand-off would only add a wake-up).
#[derive(Default)]
pub(super) struct Burst {
    /// The previous write's return: ns since [`BURST_EPOCH`] (high 47
    /// bits), whether that write followed its own predecessor closely (1
    /// bit), and the writing thread's tag (low 16 bits).
    last_write: std::sync::atomic::AtomicU64,
}

static BURST_EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

impl Burst {
    const WINDOW: std::time::Duration = std::time::Duration::from_micros(20);
    /// A write this large fills a syscall by itself: handing it to a worker
    /// would only add a wake-up, so it always leaves from its writer.
    const BATCH_BY_ITSELF: usize = 64 * 1024;
    const TAG_BITS: u32 = 16;
    /// Set when the write stamped followed its own predecessor closely.
    const CLOSE_PAIR: u64 = 1 << Self::TAG_BITS;
    const TIME_SHIFT: u32 = Self::TAG_BITS + 1;

    fn stamp() -> u64 {
        thread_local! {
            static TAG: u64 = {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                NEXT.fetch_add(1, Ordering::Relaxed) & ((1 << Burst::TAG_BITS) - 1)
            };
        }
        let now = BURST_EPOCH.elapsed().as_nanos() as u64;
        now << Self::TIME_SHIFT | TAG.with(|tag| *tag)
    }

    /// Whether this write is the third in a row of this thread, each
    /// following the previous one's return closely; it counts as returned
    /// now until [`Burst::returned`] says otherwise.
    fn follows_closely(&self) -> bool {
        let now = Self::stamp();
        let tag_mask = (1 << Self::TAG_BITS) - 1;
        let mut burst = false;
        // Only another thread's write to the socket races this: a lost
        // update misjudges one write, harmlessly.
        let _ = self.last_write.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            let close = last & tag_mask == now & tag_mask && Self::within_window(last, now);
            burst = close && last & Self::CLOSE_PAIR != 0;
            Some(if close { now | Self::CLOSE_PAIR } else { now })
        });
        burst
    }

    /// Whether any thread wrote to the socket less than [`Burst::WINDOW`] ago.
    fn recent(&self) -> bool {
        Self::within_window(self.last_write.load(Ordering::Relaxed), Self::stamp())
    }

    /// Whether stamp `now` is less than [`Burst::WINDOW`] after stamp `last`.
    /// Wrapping: after 2^47 ns (1.6 days) one pair may be misjudged, harmlessly.
    fn within_window(last: u64, now: u64) -> bool {
        let since = (now >> Self::TIME_SHIFT).wrapping_sub(last >> Self::TIME_SHIFT);
        since < Self::WINDOW.as_nanos() as u64
    }

    /// The write this thread made inline returned.
    fn returned(&self) {
        let pair = self.last_write.load(Ordering::Relaxed) & Self::CLOSE_PAIR;
        self.last_write.store(Self::stamp() | pair, Ordering::Relaxed);
    }
}

/// brpc's `socket_max_unwritten_bytes` default: 64 MiB.
pub const DEFAULT_MAX_UNWRITTEN_BYTES: u64 = 64 * 1024 * 1024;
/// How long a peer may stay over the bound before it is disconnected.
pub const DEFAULT_OVERCROWDED_GRACE: Duration = Duration::from_secs(5);

static MAX_UNWRITTEN_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_MAX_UNWRITTEN_BYTES);
static OVERCROWDED_GRACE_MS: AtomicU64 = AtomicU64::new(DEFAULT_OVERCROWDED_GRACE.as_millis() as u64);

/// Sets the process-wide bound on bytes queued and not yet written on one
/// TCP socket (brpc's `-socket_max_unwritten_bytes`): once a socket holds
/// more, a new write fails with `EOVERCROWDED`. 0 restores the default.
pub fn set_max_unwritten_bytes(bytes: u64) {
    let bytes = if bytes == 0 { DEFAULT_MAX_UNWRITTEN_BYTES } else { bytes };
    MAX_UNWRITTEN_BYTES.store(bytes, Ordering::Relaxed);
}

pub fn max_unwritten_bytes() -> u64 {
    MAX_UNWRITTEN_BYTES.load(Ordering::Relaxed)
}

/// Sets how long a socket may stay over the bound after a write was refused
/// before it is failed with `EOVERCROWDED` (a peer that does not read).
/// Zero restores the default.
pub fn set_overcrowded_grace(grace: Duration) {
    let grace = if grace.is_zero() { DEFAULT_OVERCROWDED_GRACE } else { grace };
    OVERCROWDED_GRACE_MS.store(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
}

pub fn overcrowded_grace() -> Duration {
    Duration::from_millis(OVERCROWDED_GRACE_MS.load(Ordering::Relaxed))
}

/// At most this many buffers go into one sendmsg.
const MAX_IOVECS: usize = 256;

pub(crate) struct WriteRequest {
    chunks: Chunks,
    tag: u32,
    done: Option<WriteDone>,
}

impl WriteRequest {
    fn complete(mut self, code: i32) {
        if let Some(done) = self.done.take() {
            done(code);
        }
    }
}

impl Drop for WriteRequest {
    /// A request dropped without completion (its socket was recycled with it
    /// still queued) still reports, so `done` runs exactly once on every path.
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(errno::EFAILEDSOCKET);
        }
    }
}

/// The queue's owner and the writes it took, waiting to continue.
pub(crate) struct ParkedWriter {
    owner: Owner,
    batch: VecDeque<WriteRequest>,
}

/// A pending connection attempt. It holds a reference to its socket (the
/// "connect reference") until it is resolved, and the parked writer.
struct ConnectAttempt {
    socket: SocketRef,
    writer: Mutex<Option<ParkedWriter>>,
}

static ATTEMPTS: LazyLock<Registry<ConnectAttempt>> = LazyLock::new(Registry::new);

/// Identifies a connection attempt to whoever completes it. Versioned, so a
/// second or stale completion is refused instead of reaching a newer attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectData(pub u64);

impl Socket {
    /// Counts a data write (tag 0) that will never leave.
    fn count_dropped(&self, request: &WriteRequest) {
        if request.tag == 0 {
            self.dropped_messages.fetch_add(1, Ordering::Relaxed);
            let bytes = request.chunks.len();
            self.dropped_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            stats::WRITES_DROPPED.inc();
            stats::BYTES_DROPPED.add(bytes as u64);
        }
    }

    /// Data writes (tag 0) this socket accepted and failed: messages, bytes.
    pub fn dropped_writes(&self) -> (u64, u64) {
        (self.dropped_messages.load(Ordering::Acquire), self.dropped_bytes.load(Ordering::Acquire))
    }

    /// Bytes queued on this socket and not yet written or dropped.
    pub fn unwritten_bytes(&self) -> u64 {
        self.unwritten.load(Ordering::Acquire)
    }

    /// Refuses a write to a TCP socket that already holds more than the
    /// bound; the first refusal arms a check that disconnects the peer if
    /// the socket is still over the bound a grace period later.
    fn overcrowded(&self, len: usize) -> bool {
        let max = max_unwritten_bytes();
        let Some(tcp) = &self.tcp else { return false };
        if len == 0 || self.unwritten.load(Ordering::Acquire) <= max {
            return false;
        }
        if !tcp.overcrowded_check.swap(true, Ordering::AcqRel) {
            let id = self.id;
            let grace = overcrowded_grace();
            let check = Box::new(move || {
                let Some(socket) = Socket::address(id) else { return };
                if let Some(tcp) = &socket.tcp {
                    tcp.overcrowded_check.store(false, Ordering::Release);
                }
                let unwritten = socket.unwritten_bytes();
                if unwritten > max_unwritten_bytes() {
                    let text = format!(
                        "the peer read nothing of {unwritten} bytes waiting for {} ms (socket_max_unwritten_bytes={})",
                        grace.as_millis(),
                        max_unwritten_bytes()
                    );
                    socket.set_failed(Error::new(errno::EOVERCROWDED, text));
                }
            });
            timers().schedule(Instant::now() + grace, check);
        }
        true
    }

    /// Data writes (tag 0) queued and not yet sent or dropped. Once the
    /// socket failed and this is 0, [`Socket::dropped_writes`] is final.
    pub fn writes_in_flight(&self) -> u64 {
        self.writes_in_flight.load(Ordering::SeqCst)
    }

    /// A data write left the queue, sent or dropped; the last one of a
    /// failed socket tells its user.
    fn write_resolved(&self) {
        stats::WRITES_QUEUED.dec();
        // SeqCst with the increment in write_with: whoever reads 0 after
        // the failure was recorded knows no write will be counted later.
        if self.writes_in_flight.fetch_sub(1, Ordering::SeqCst) == 1 && self.failure.lock().is_some() {
            if let Some(user) = self.user() {
                user.on_writes_settled(self);
            }
        }
    }

    /// Queues `chunks` as one write, in order after every write queued before
    /// it by any thread. The writing thread writes into the fd itself, except
    /// - in a burst (this thread wrote to the socket a moment ago): a worker
    ///   drains the queue, so many messages leave per syscall;
    /// - while the thread handles a socket's input (the dispatcher): the
    ///   write leaves once that input is handled, with the others it caused.
    ///
    /// `done` (if any) runs exactly once, also when this returns an error (a
    /// failed socket takes no writes: `EFAILEDSOCKET`).
    pub fn write(&self, chunks: impl Into<Chunks>, done: Option<WriteDone>) -> Result<(), Error> {
        self.write_with(chunks, WriteOptions::default(), done)
    }

    /// [`Socket::write`] with a tag for the owner's connection, or written
    /// in the background.
    pub fn write_with(
        &self,
        chunks: impl Into<Chunks>,
        options: WriteOptions,
        done: Option<WriteDone>,
    ) -> Result<(), Error> {
        let request = WriteRequest { chunks: chunks.into(), tag: options.tag, done };
        // In flight before the failure check, so a socket failing meanwhile
        // either refuses the write here or waits for it to be resolved.
        let data = request.tag == 0;
        if data {
            self.writes_in_flight.fetch_add(1, Ordering::SeqCst);
            stats::WRITES_QUEUED.inc();
        }
        if let Some(failure) = self.failure() {
            // Refused, not dropped: the caller is told.
            request.complete(errno::EFAILEDSOCKET);
            if data {
                self.write_resolved();
            }
            return Err(Error::new(errno::EFAILEDSOCKET, "the socket failed").caused_by(failure));
        }
        let len = request.chunks.len();
        if self.overcrowded(len) {
            request.complete(errno::EOVERCROWDED);
            if data {
                self.write_resolved();
            }
            return Err(Error::new(errno::EOVERCROWDED, "too many bytes are waiting to be written to the socket"));
        }
        self.unwritten.fetch_add(len as u64, Ordering::AcqRel);
        // Stamped by every write, owner or not, so a writer that keeps
        // finding the queue owned is still seen as bursting.
        let in_burst = self
            .tcp
            .as_ref()
            .is_some_and(|tcp| request.chunks.len() < Burst::BATCH_BY_ITSELF && tcp.burst.follows_closely());
        let Some(owner) = self.queue.push(request) else { return Ok(()) };
        if options.background {
            self.hand_off(owner);
            return Ok(());
        }
        let Some(tcp) = &self.tcp else {
            drain(self, owner, VecDeque::new());
            return Ok(());
        };
        let Some(owner) = held_until_input_handled(self, owner) else { return Ok(()) };
        if in_burst {
            self.hand_off(owner);
        } else {
            drain(self, owner, VecDeque::new());
            tcp.burst.returned();
        }
        Ok(())
    }

    /// A worker drains the queue for `owner`.
    fn hand_off(&self, owner: Owner) {
        match Socket::address_failed_as_well(self.id) {
            Some(socket) => {
                let writer = ParkedWriter { owner, batch: VecDeque::new() };
                // A refused spawn drops the writer: its requests complete
                // with EFAILEDSOCKET and the socket is failed below.
                if spawn(move || drain_with(&socket, writer.owner, writer.batch, true)).is_err() {
                    self.set_failed(Error::new(libc::EAGAIN, "no worker to write in the background"));
                }
            }
            None => drain(self, owner, VecDeque::new()),
        }
    }
}

thread_local! {
    /// Queue owners whose writes were started while this thread handled a
    /// socket's input (see [`while_handling_input`]); `None` otherwise.
    static HELD: RefCell<Option<Vec<(SocketRef, Owner)>>> = const { RefCell::new(None) };
}

/// Runs `handle_input` (the dispatcher handling what one read brought) with
/// the writes it starts held back, then writes them when it returns, also
/// when it panics. Answers to many frames of one read (CLOSE for CLOSE, RST
/// for unknown streams) then leave in one sendmsg per connection instead of
/// one each, and the dispatcher never wakes a worker to write them.
pub(super) fn while_handling_input<R>(handle_input: impl FnOnce() -> R) -> R {
    /// Puts the outer state back and writes what was held, also on unwind.
    struct WriteHeld {
        outer: Option<Vec<(SocketRef, Owner)>>,
    }
    impl Drop for WriteHeld {
        fn drop(&mut self) {
            let outer = self.outer.take();
            let held = swap_held(outer);
            for (socket, owner) in held.into_iter().flatten() {
                drain(&socket, owner, VecDeque::new());
            }
        }
    }
    let _write_held = WriteHeld { outer: swap_held(Some(Vec::new())) };
    handle_input()
}

/// Replaces this thread's held owners, returning what was there.
fn swap_held(with: Option<Vec<(SocketRef, Owner)>>) -> Option<Vec<(SocketRef, Owner)>> {
    HELD.try_with(|held| held.try_borrow_mut().ok().and_then(|mut held| std::mem::replace(&mut *held, with)))
        .ok()
        .flatten()
}

/// Holds `owner` for the write at the end of the input this thread is
/// handling; gives it back when the thread handles none.
fn held_until_input_handled(socket: &Socket, owner: Owner) -> Option<Owner> {
    let holding = HELD.try_with(|held| held.try_borrow().is_ok_and(|held| held.is_some())).unwrap_or(false);
    let Some(holder) = holding.then(|| Socket::address_failed_as_well(socket.id)).flatten() else {
        return Some(owner);
    };
    let mut owner = Some(owner);
    let _ = HELD.try_with(|held| {
        if let Some(list) = held.try_borrow_mut().ok().as_mut().and_then(|held| held.as_mut()) {
            list.extend(owner.take().map(|owner| (holder, owner)));
        }
    });
    owner
}

enum Flush {
    Done,
    WouldBlock,
    Failed(Error),
}

/// The owner's loop: take what was queued, write it, give ownership up when
/// nothing is left, or park until the fd or the connection is ready.
fn drain(socket: &Socket, owner: Owner, batch: VecDeque<WriteRequest>) {
    drain_with(socket, owner, batch, false);
}

/// [`drain`]; `linger`: a worker draining a burst waits a moment for the
/// writer's next message before it gives ownership up (see [`await_more`]).
fn drain_with(socket: &Socket, mut owner: Owner, mut batch: VecDeque<WriteRequest>, linger: bool) {
    loop {
        socket.queue.take_pending(&mut owner, &mut batch);
        let failure = socket.failure.lock().as_deref().map(Error::code);
        if let Some(code) = failure {
            fail_batch(socket, &mut batch, code);
        } else {
            let fd = socket.fd();
            if fd < 0 {
                return start_connect(socket, ParkedWriter { owner, batch });
            }
            match flush(socket, fd, &mut batch) {
                Flush::Done => {}
                Flush::WouldBlock => return park(socket, ParkedWriter { owner, batch }),
                Flush::Failed(error) => {
                    let text = format!("fail to write into fd={fd}: {}", errno::describe(error.code()));
                    socket.set_failed(Error::new(error.code(), text).caused_by(error));
                    continue;
                }
            }
        }
        if linger && await_more(socket, &mut owner, &mut batch) {
            continue;
        }
        match socket.queue.try_release(owner) {
            Ok(()) => return,
            Err(still_owner) => owner = still_owner,
        }
    }
}

/// How long a worker that drained a burst waits for the writer's next
/// message before it gives the queue up: about what the hand-off it saves
/// costs (a futex wake and a thread switch on this kind of machine).
const LINGER: Duration = Duration::from_micros(10);

/// A worker draining a burst found the queue empty while its writer is
/// still writing: it yields for up to [`LINGER`] and takes what arrives.
/// Giving the queue up at once made every next write of the burst hand a
/// new batch to a worker, one wake-up each; when the worker outpaced the
/// writer those batches stayed small (a few messages per `sendmsg` and per
/// wake-up instead of hundreds), a regime the writer did not leave. True
/// when more was taken into `batch`.
fn await_more(socket: &Socket, owner: &mut Owner, batch: &mut VecDeque<WriteRequest>) -> bool {
    if !socket.tcp.as_ref().is_some_and(|tcp| tcp.burst.recent()) {
        return false;
    }
    let until = Instant::now() + LINGER;
    loop {
        std::thread::yield_now();
        socket.queue.take_pending(owner, batch);
        if !batch.is_empty() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
    }
}

/// Writes as much of `batch` as the fd takes, completing finished requests.
fn flush(socket: &Socket, fd: RawFd, batch: &mut VecDeque<WriteRequest>) -> Flush {
    let mut iov: Vec<IoSlice<'_>> = Vec::new();
    loop {
        if batch.is_empty() {
            return Flush::Done;
        }
        iov.clear();
        let written = match &socket.connection {
            Some(connection) => {
                let messages: Vec<OutMessage<'_>> =
                    batch.iter().map(|r| OutMessage { chunks: &r.chunks, tag: r.tag }).collect();
                connection.write(socket, &messages)
            }
            None => {
                let slices = batch.iter().flat_map(|r| r.chunks.iter()).filter(|c| !c.is_empty());
                iov.extend(slices.take(MAX_IOVECS).map(|c| IoSlice::new(c)));
                if iov.is_empty() {
                    Ok(0)
                } else {
                    let sent = sendmsg::<SockaddrStorage>(fd, &iov, &[], MsgFlags::MSG_NOSIGNAL, None);
                    if let Ok(n) = sent {
                        stats::SOCKET_BYTES_WRITTEN.add(n as u64);
                    }
                    sent.map_err(|e| Error::from_code(e as i32))
                }
            }
        };
        if let (Ok(n), Some(tcp)) = (&written, &socket.tcp) {
            tcp.bytes_written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        match written {
            // Nothing taken although bytes wait: the connection is full.
            Ok(0) if batch.front().is_some_and(|r| r.chunks.iter().any(|c| !c.is_empty())) => {
                return Flush::WouldBlock;
            }
            Ok(n) => {
                drop(iov);
                consume(socket, batch, n);
                iov = Vec::new();
            }
            Err(error) if error.code() == libc::EINTR => {}
            Err(error) if error.code() == libc::EAGAIN => return Flush::WouldBlock,
            Err(error) => return Flush::Failed(error),
        }
    }
}

/// Removes `n` written bytes from the front of `batch`; requests with
/// nothing left complete successfully.
fn consume(socket: &Socket, batch: &mut VecDeque<WriteRequest>, mut n: usize) {
    socket.unwritten.fetch_sub(n as u64, Ordering::AcqRel);
    while let Some(front) = batch.front_mut() {
        let unfinished = !front.chunks.is_empty();
        n = front.chunks.consume(n);
        if unfinished && !front.chunks.is_empty() {
            return;
        }
        if let Some(finished) = batch.pop_front() {
            let data = finished.tag == 0;
            finished.complete(0);
            if data {
                socket.write_resolved();
            }
        }
    }
}

fn fail_batch(socket: &Socket, batch: &mut VecDeque<WriteRequest>, code: i32) {
    for request in batch.drain(..) {
        socket.unwritten.fetch_sub(request.chunks.len() as u64, Ordering::AcqRel);
        socket.count_dropped(&request);
        let data = request.tag == 0;
        request.complete(code);
        if data {
            socket.write_resolved();
        }
    }
}

/// Waits for an EPOLLOUT edge (or the owner's notify_writable).
fn park(socket: &Socket, writer: ParkedWriter) {
    *socket.parked.lock() = Some(Box::new(writer));
    // A failure that happened before the writer was visible would not have
    // found it: look again.
    if socket.failure.lock().is_some() {
        return resume_parked(socket);
    }
    if socket.owns_fd() {
        if let Err(code) = socket.want_writable() {
            socket.set_failed(Error::new(code, "fail to wait for EPOLLOUT"));
        }
    }
}

/// Continues the parked writer, if there is one.
pub(crate) fn resume_parked(socket: &Socket) {
    let parked = socket.parked.lock().take();
    if let Some(parked) = parked {
        let ParkedWriter { owner, batch } = *parked;
        drain(socket, owner, batch);
    }
}

/// Called by `set_failed`: the parked writer and a pending connection
/// attempt fail their writes now instead of waiting for an event that may
/// never come.
pub(crate) fn fail_pending_writes(socket: &Socket, error: &Error) {
    resume_parked(socket);
    let attempt = socket.connecting.swap(id::INVALID_ID, Ordering::AcqRel);
    if attempt != id::INVALID_ID {
        let _ = resolve_attempt(ConnectData(attempt), -1, Some(error.clone()));
    }
}

fn start_connect(socket: &Socket, writer: ParkedWriter) {
    let Some(connect_ref) = Socket::address_failed_as_well(socket.id()) else {
        // Unreachable while the caller holds a reference; fail safe anyway.
        let ParkedWriter { owner, mut batch } = writer;
        fail_batch(socket, &mut batch, errno::EFAILEDSOCKET);
        return drain(socket, owner, batch);
    };
    let attempt = match ATTEMPTS.create(ConnectAttempt { socket: connect_ref, writer: Mutex::new(None) }) {
        Ok(attempt) => ConnectData(attempt),
        Err(code) => {
            socket.set_failed(Error::new(code, "too many connection attempts in progress"));
            return drain(socket, writer.owner, writer.batch);
        }
    };
    if let Some(created) = ATTEMPTS.address(attempt.0) {
        *created.writer.lock() = Some(writer);
    }
    socket.connecting.store(attempt.0, Ordering::Release);
    // set_failed may have run before the attempt was visible to it.
    if let Some(failure) = socket.failure() {
        let _ = resolve_attempt(attempt, -1, Some(failure));
        return;
    }
    if let Some(connection) = &socket.connection {
        if let Err(error) = connection.connect(socket, attempt) {
            let _ = resolve_attempt(attempt, -1, Some(error));
        }
        return;
    }
    let Some(remote) = socket.remote() else {
        let _ =
            resolve_attempt(attempt, -1, Some(Error::new(libc::EINVAL, "socket has neither an fd nor a remote side")));
        return;
    };
    let deadline = socket.tcp.as_ref().and_then(|tcp| tcp.connect_timeout).map(|timeout| Instant::now() + timeout);
    tcp_connect(
        remote,
        deadline,
        Box::new(move |fd, err| {
            let raw = fd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
            if complete_attempt(attempt, raw, err).is_ok() {
                // The attempt took the descriptor: adopted, or closed by it.
                let _ = fd.map(IntoRawFd::into_raw_fd);
            }
        }),
    );
}

/// The end of a connection attempt (brpc's `Socket::CheckConnectedAndKeepWrite`).
///
/// With `fd >= 0` and `err == 0` the socket checks `SO_ERROR`, adopts the fd
/// and writes what was queued. Otherwise every queued write fails with `err`
/// (`ECONNRESET` when `err` is 0), the socket fails with a text saying what
/// happened, and the attempt's reference to the socket is released.
///
/// Returns 0 when the attempt was resolved either way; then an fd `>= 0` was
/// taken by a socket that owns its fd (adopted, or closed when the attempt
/// failed), while an owner-provided connection's fd stays the owner's.
/// Returns `EINVAL`, touching nothing, when `data` names no pending attempt
/// (a second call, or a stale one).
pub fn check_connected_and_keep_write(fd: RawFd, err: i32, data: ConnectData) -> i32 {
    match complete_attempt(data, fd, err) {
        Ok(()) => 0,
        Err(code) => code,
    }
}

fn complete_attempt(data: ConnectData, fd: RawFd, err: i32) -> Result<(), i32> {
    if fd < 0 || err != 0 {
        let code = if err != 0 { err } else { libc::ECONNRESET };
        let text = format!("connection was not established (fd={fd}, err={err}: {})", errno::describe(code));
        return resolve_attempt(data, fd, Some(Error::new(code, text)));
    }
    resolve_attempt(data, fd, None)
}

/// Resolves an attempt exactly once: without a `failure` the socket adopts
/// `fd`, otherwise it fails with it.
fn resolve_attempt(data: ConnectData, fd: RawFd, failure: Option<Error>) -> Result<(), i32> {
    let attempt = ATTEMPTS.address(data.0).ok_or(libc::EINVAL)?;
    if !ATTEMPTS.set_failed(data.0) {
        return Err(libc::EINVAL);
    }
    let writer = attempt.writer.lock().take();
    let socket: SocketRef = attempt.socket.clone();
    // Dropping the attempt releases the connect reference (the registry's
    // own reference to the attempt went at set_failed above).
    drop(attempt);
    let _ = socket.connecting.compare_exchange(data.0, id::INVALID_ID, Ordering::AcqRel, Ordering::Acquire);
    match failure {
        None => adopt(&socket, fd),
        Some(failure) => {
            if socket.owns_fd() {
                stats::CONNECT_FAILURES.inc();
                if fd >= 0 {
                    close_fd(fd);
                }
            }
            socket.set_failed(failure);
        }
    }
    if let Some(ParkedWriter { owner, batch }) = writer {
        drain(&socket, owner, batch);
    }
    Ok(())
}

/// Takes a connected fd into the socket, or closes it and fails the socket
/// when it is not usable.
fn adopt(socket: &Socket, fd: RawFd) {
    let Some(tcp) = &socket.tcp else {
        socket.fd.store(fd, Ordering::Release);
        return;
    };
    let pending = socket_error(fd);
    let usable =
        if pending != 0 { Err(pending) } else { super::set_nonblocking(fd).and_then(|()| tcp.liveness.apply(fd)) };
    if let Err(code) = usable {
        stats::CONNECT_FAILURES.inc();
        close_fd(fd);
        let text = format!("connected fd={fd} is not usable: {}", errno::describe(code));
        socket.set_failed(Error::new(code, text));
        return;
    }
    stats::CONNECTIONS_CONNECTED.inc();
    socket.fd.store(fd, Ordering::Release);
    if let Err(code) = socket.watch_input(fd) {
        socket.set_failed(Error::new(code, format!("fail to watch fd={fd} for input")));
    }
}

fn close_fd(fd: RawFd) {
    // SAFETY: the caller hands over ownership of `fd`, which nobody else uses.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
}

/// The number of connection attempts not yet resolved and released.
pub fn pending_attempts() -> usize {
    ATTEMPTS.live()
}

#[cfg(test)]
mod tests {
    use super::{while_handling_input, Burst};
    use crate::error::Error;
    use crate::socket::{Socket, SocketOptions};
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// A socket on one end of a loopback connection, and the other end.
    fn connected_socket() -> (crate::socket::SocketRef, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let id = Socket::create(SocketOptions { fd: Some(ours.into()), ..Default::default() }).unwrap();
        (Socket::address(id).unwrap(), peer)
    }

    fn nothing_readable(peer: &TcpStream) -> bool {
        peer.set_nonblocking(true).unwrap();
        let empty = matches!((&*peer).read(&mut [0u8; 16]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        peer.set_nonblocking(false).unwrap();
        empty
    }

    fn read_exactly(mut peer: &TcpStream, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        peer.read_exact(&mut got).unwrap();
        got
    }

    #[test]
    fn writes_made_while_handling_input_leave_when_it_is_handled() {
        let (socket, peer) = connected_socket();
        while_handling_input(|| {
            socket.write(bytes::Bytes::from_static(b"one,"), None).unwrap();
            socket.write(bytes::Bytes::from_static(b"two"), None).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            assert!(nothing_readable(&peer), "a held write left before the input was handled");
        });
        assert_eq!(read_exactly(&peer, 7), b"one,two");
        socket.set_failed(Error::new(crate::errno::ECLOSE, "test over"));
    }

    #[test]
    fn held_writes_leave_even_when_handling_input_panics() {
        let (socket, peer) = connected_socket();
        let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            while_handling_input(|| {
                socket.write(bytes::Bytes::from_static(b"kept"), None).unwrap();
                panic!("deliberate test panic while handling input");
            })
        }));
        assert!(handled.is_err());
        assert_eq!(read_exactly(&peer, 4), b"kept");
        // Nothing is held any more: the next write leaves at once.
        socket.write(bytes::Bytes::from_static(b"!"), None).unwrap();
        assert_eq!(read_exactly(&peer, 1), b"!");
        socket.set_failed(Error::new(crate::errno::ECLOSE, "test over"));
    }

    #[test]
    fn a_thread_writing_again_at_once_is_a_burst() {
        let burst = Burst::default();
        // Retried: a preemption between two calls may stretch one gap.
        let seen = (0..100).any(|_| {
            burst.returned();
            burst.follows_closely();
            burst.returned();
            burst.follows_closely()
        });
        assert!(seen, "immediate rewrites were never seen as a burst");
    }

    #[test]
    fn one_close_pair_is_no_burst() {
        let burst = Burst::default();
        for _ in 0..100 {
            // A write after a pause, then one at once (a CLOSE, then the next call's request).
            std::thread::sleep(Duration::from_millis(1));
            assert!(!burst.follows_closely());
            burst.returned();
            assert!(!burst.follows_closely(), "the second write of a pair was seen as a burst");
            burst.returned();
        }
    }

    #[test]
    fn a_write_after_a_pause_is_no_burst() {
        let burst = Burst::default();
        burst.returned();
        std::thread::sleep(Duration::from_millis(2));
        assert!(!burst.follows_closely());
    }

    #[test]
    fn writes_from_different_threads_are_no_burst() {
        let burst = Burst::default();
        for _ in 0..100 {
            burst.returned();
            let other = std::thread::scope(|scope| scope.spawn(|| burst.follows_closely()).join());
            assert!(!other.unwrap(), "another thread's write counted as this thread's burst");
        }
    }
}
