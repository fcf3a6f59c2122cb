//! `brpc_socket_*`: sockets for C and the `brpc::Socket` facade.
//!
//! Threads: `on_input` and `on_failed` run on worker threads, one at a time
//! per socket and in order (`on_failed` after every input); write
//! completions and connect results run on the worker pool too.
//! A connection's `connect` and `write` run on whichever thread is writing.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{c_code, c_string, guard, guard_value, on_worker, write_c_string, SendPtr};
use crate::errno;
use crate::error::Error;
use crate::runtime::SerialExecutor;
use crate::socket::connect::tcp_connect;
use crate::socket::{
    check_connected_and_keep_write, ConnectData, Connection, OutMessage, Socket, SocketOptions, SocketRef, SocketUser,
    WriteDone,
};

/// A socket's versioned id: version in the high 32 bits, slot in the low 32.
pub type brpc_socket_id = u64;

/// No socket has this id.
pub const BRPC_INVALID_SOCKET_ID: brpc_socket_id = 0xFFFF_FFFF_FFFF_FFFF;

/// A counted reference to a socket, returned by `brpc_socket_address*`.
/// While you hold it the socket is not recycled (it may fail). Release it
/// with `brpc_socket_dereference`, exactly once.
pub struct brpc_socket {
    inner: SocketRef,
}

/// Called once per write with 0 (every byte left) or the error that dropped it.
pub type brpc_write_done_fn = Option<unsafe extern "C" fn(arg: *mut c_void, err: c_int)>;

/// A connection result: `fd >= 0` and `err == 0` on success.
pub type brpc_on_connect_fn = Option<unsafe extern "C" fn(fd: c_int, err: c_int, data: *mut c_void) -> c_int>;

/// Bytes read from the socket, valid only during the call; on a worker
/// thread, one call at a time per socket, in the order they were read.
pub type brpc_socket_input_fn =
    Option<unsafe extern "C" fn(arg: *mut c_void, id: brpc_socket_id, data: *const u8, len: usize)>;

/// The socket failed; `text` is valid only during the call.
pub type brpc_socket_failed_fn =
    Option<unsafe extern "C" fn(arg: *mut c_void, id: brpc_socket_id, code: c_int, text: *const c_char)>;

/// The socket no longer uses `arg`.
pub type brpc_socket_recycle_fn = Option<unsafe extern "C" fn(arg: *mut c_void)>;

/// A connection provided by the socket's owner instead of TCP (brpc's
/// `SocketConnection`). The struct is copied at creation; `ctx` must stay
/// valid until `release` is called (once, when the socket is recycled).
#[repr(C)]
pub struct brpc_socket_connection {
    pub ctx: *mut c_void,
    /// Starts connecting socket `id`. Return 0 and later call
    /// `on_connect(fd, err, data)` exactly once, or return an errno (then
    /// never call it).
    pub connect: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            id: brpc_socket_id,
            on_connect: brpc_on_connect_fn,
            data: *mut c_void,
        ) -> c_int,
    >,
    /// Writes for the connected socket: the number of bytes taken, or -1
    /// with errno set (`EAGAIN`: call `brpc_socket_notify_writable` later).
    pub write: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            id: brpc_socket_id,
            fd: c_int,
            iov: *const libc::iovec,
            iovcnt: c_int,
        ) -> isize,
    >,
    /// Called once when the socket no longer needs `ctx`.
    pub release: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
}

#[repr(C)]
pub struct brpc_socket_options {
    /// A connected fd the socket takes ownership of (even when creation
    /// fails), or -1 to connect to the remote side on the first write.
    pub fd: c_int,
    /// IPv4 address in network byte order (`in_addr.s_addr`) and port.
    pub remote_ip: u32,
    pub remote_port: c_int,
    /// Timeout of the TCP connect started by the first write; <= 0: none.
    pub connect_timeout_ms: i64,
    /// Passed to `on_input`, `on_failed` and `on_recycle`; must stay valid
    /// until `on_recycle` runs (once, when the socket is recycled).
    pub user_arg: *mut c_void,
    pub on_input: brpc_socket_input_fn,
    pub on_failed: brpc_socket_failed_fn,
    pub on_recycle: brpc_socket_recycle_fn,
    /// Borrowed during the call (copied); NULL for a TCP socket.
    pub connection: *const brpc_socket_connection,
}

/// Fills `options` with the defaults: no fd, no remote, no callbacks.
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_options_init(options: *mut brpc_socket_options) {
    let defaults = || brpc_socket_options {
        fd: -1,
        remote_ip: 0,
        remote_port: 0,
        connect_timeout_ms: 0,
        user_arg: std::ptr::null_mut(),
        on_input: None,
        on_failed: None,
        on_recycle: None,
        connection: std::ptr::null(),
    };
    // SAFETY: a writable options struct or NULL, per the contract.
    unsafe { super::write_out(options, defaults) }
}

/// Creates a socket and stores its id in `*id`. Returns 0 or an errno. The
/// socket takes `fd` and `user_arg` even when creation fails (the fd is then
/// closed and `on_recycle` called before this returns).
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_create(options: *const brpc_socket_options, id: *mut brpc_socket_id) -> c_int {
    guard(|| {
        // SAFETY: the caller gives readable options (or NULL).
        let Some(options) = (unsafe { options.as_ref() }) else { return libc::EINVAL };
        // Take the fd first so it is closed on every error path below.
        // SAFETY: the caller hands over an fd it owns (the contract), closed
        // exactly once by the OwnedFd.
        let fd = (options.fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(options.fd) });
        let remote = (options.remote_port > 0).then(|| {
            let ip = Ipv4Addr::from(u32::from_be(options.remote_ip));
            SocketAddr::V4(SocketAddrV4::new(ip, options.remote_port as u16))
        });
        let user: Arc<dyn SocketUser> = Arc::new(CUser {
            arg: Arc::new(UserArg { arg: SendPtr(options.user_arg), on_recycle: options.on_recycle }),
            on_input: options.on_input,
            on_failed: options.on_failed,
            executor: SerialExecutor::new(),
        });
        // SAFETY: the caller gives a readable connection struct (or NULL).
        // A socket with a connection has that connection's user.
        let (user, connection): (_, Option<Arc<dyn Connection>>) = match unsafe { options.connection.as_ref() } {
            Some(c) => (
                None,
                Some(Arc::new(CConnection {
                    ctx: SendPtr(c.ctx),
                    connect: c.connect,
                    write: c.write,
                    release: c.release,
                    user: Some(user),
                })),
            ),
            None => (Some(user), None),
        };
        if id.is_null() {
            return libc::EINVAL;
        }
        let timeout =
            (options.connect_timeout_ms > 0).then(|| Duration::from_millis(options.connect_timeout_ms as u64));
        let created = Socket::create(SocketOptions {
            fd,
            remote,
            connect_timeout: timeout,
            user,
            connection,
            ..Default::default()
        });
        match created {
            Ok(created) => {
                // SAFETY: checked non-null above; the caller gives writable memory.
                unsafe { *id = created };
                0
            }
            Err(error) => error.code(),
        }
    })
}

/// Boxes `socket` as a handle the caller owns (freed with
/// `brpc_socket_release`) into `*out`: 0.
///
/// # Safety
/// `out` is writable (not NULL).
unsafe fn hand_out(socket: SocketRef, out: *mut *mut brpc_socket) -> c_int {
    // SAFETY: a writable pointer slot (this function's contract).
    unsafe { *out = Box::into_raw(Box::new(brpc_socket { inner: socket })) };
    0
}

/// Takes a reference to the socket if it is live (not failed). On success
/// `*out` receives a handle the caller owns. Returns 0, or `EINVAL` when the
/// id is stale, failed or unknown.
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_address(id: brpc_socket_id, out: *mut *mut brpc_socket) -> c_int {
    guard(|| {
        if out.is_null() {
            return libc::EINVAL;
        }
        match Socket::address(id) {
            // SAFETY: writable per the contract, checked non-NULL.
            Some(socket) => unsafe { hand_out(socket, out) },
            None => libc::EINVAL,
        }
    })
}

/// Like `brpc_socket_address`, but also reaches a failed socket that was not
/// recycled yet; `*failed` (if not NULL) tells which.
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_address_failed_as_well(
    id: brpc_socket_id,
    out: *mut *mut brpc_socket,
    failed: *mut bool,
) -> c_int {
    guard(|| {
        if out.is_null() {
            return libc::EINVAL;
        }
        let Some(socket) = Socket::address_failed_as_well(id) else { return libc::EINVAL };
        if !failed.is_null() {
            // SAFETY: checked non-null; the caller gives writable memory.
            unsafe { *failed = socket.failed() };
        }
        // SAFETY: writable per the contract, checked non-NULL.
        unsafe { hand_out(socket, out) }
    })
}

/// Another handle to the same socket (one more reference).
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_clone(socket: *const brpc_socket) -> *mut brpc_socket {
    guard_value(std::ptr::null_mut(), || {
        // SAFETY: a handle from brpc_socket_address* that was not released.
        match unsafe { socket.as_ref() } {
            Some(socket) => Box::into_raw(Box::new(brpc_socket { inner: socket.inner.clone() })),
            None => std::ptr::null_mut(),
        }
    })
}

/// Releases a handle; the socket is recycled (and its fd closed) when the
/// last reference goes. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_dereference(socket: *mut brpc_socket) {
    // SAFETY: the handle came from Box::into_raw and is released once.
    unsafe { super::free_boxed(socket) }
}

/// Fails the socket with `code` (0 means `EFAILEDSOCKET`) and `text` (may be
/// NULL). Returns 0 when this call failed it, `EINVAL` when it was unknown
/// or had failed already.
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_set_failed(id: brpc_socket_id, code: c_int, text: *const c_char) -> c_int {
    guard(|| {
        // SAFETY: a NUL-terminated string, checked non-NULL, per the contract.
        let text = if text.is_null() { "failed by its user".to_string() } else { unsafe { c_string(text) } };
        let code = if code == 0 { errno::EFAILEDSOCKET } else { code };
        if Socket::set_failed_by_id(id, Error::new(code, text)) {
            0
        } else {
            libc::EINVAL
        }
    })
}

/// True when the socket failed (or is not a live handle).
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_failed(socket: *const brpc_socket) -> bool {
    // SAFETY: a handle that was not released, or NULL.
    guard_value(true, || unsafe { socket.as_ref() }.is_none_or(|s| s.inner.failed()))
}

/// The code the socket failed with (0 if it did not) and, if `text` is not
/// NULL, its text in `text[0..cap)`. Returns the text's full length.
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_failure(
    socket: *const brpc_socket,
    code: *mut c_int,
    text: *mut c_char,
    cap: usize,
) -> usize {
    guard_value(0, || {
        // SAFETY: a handle that was not released, or NULL.
        let Some(socket) = (unsafe { socket.as_ref() }) else { return 0 };
        let failure = socket.inner.failure();
        if !code.is_null() {
            // SAFETY: checked non-null; writable per the contract.
            unsafe { *code = failure.as_ref().map_or(0, Error::code) };
        }
        // SAFETY: writable for `cap` bytes or NULL, per the contract.
        unsafe { write_c_string(&failure.as_ref().map(Error::text).unwrap_or_default(), text, cap) }
    })
}

/// The reference count and failed flag of a socket that was not recycled.
/// Returns 0, or `EINVAL` when the id addresses nothing.
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_status(id: brpc_socket_id, nref: *mut i32, failed: *mut bool) -> c_int {
    guard(|| match Socket::status(id) {
        Some(status) => {
            if !nref.is_null() {
                // SAFETY: checked non-null; writable per the contract.
                unsafe { *nref = status.nref as i32 };
            }
            if !failed.is_null() {
                // SAFETY: checked non-null; writable per the contract.
                unsafe { *failed = status.failed };
            }
            0
        }
        None => libc::EINVAL,
    })
}

/// Queues the bytes of `iov` (copied) as one message, written in order after
/// everything queued before it. Returns 0, and then `done(arg, err)`, if
/// given, runs exactly once on a worker thread: with 0 once every byte
/// left, or the error that dropped the write. Or returns an error
/// (`EFAILEDSOCKET` for a failed socket, `EOVERCROWDED` beyond
/// `brpc_socket_set_max_unwritten_bytes`, `EINVAL` for NULL), and then
/// `done` never runs: a refused write keeps nothing it was given. A socket
/// without an fd connects first.
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_write(
    socket: *const brpc_socket,
    iov: *const libc::iovec,
    iovcnt: c_int,
    done: brpc_write_done_fn,
    arg: *mut c_void,
) -> c_int {
    let arg = SendPtr(arg);
    guard(|| {
        // SAFETY: a handle that was not released, or NULL.
        let Some(socket) = (unsafe { socket.as_ref() }) else { return libc::EINVAL };
        let held = done.map(|f| HeldDone::new(f, arg));
        let mut chunks = Vec::new();
        if !iov.is_null() && iovcnt > 0 {
            // SAFETY: `iovcnt` readable iovecs, each buffer readable for
            // `iov_len` bytes, during the call (the bytes are copied), per
            // the contract.
            let parts = unsafe { super::iovec_slices(iov, iovcnt) };
            let mut data = BytesMut::with_capacity(parts.clone().map(<[u8]>::len).sum());
            for part in parts {
                data.extend_from_slice(part);
            }
            chunks.push(data.freeze());
        }
        let rc = c_code(socket.inner.write(chunks, held.as_ref().map(HeldDone::completion)));
        if let Some(held) = held {
            held.returned(rc == 0);
        }
        rc
    })
}

/// A C write's `done`, held until `brpc_socket_write` returns: the socket
/// may complete a write (or refuse it) before then. Refused, it never runs;
/// accepted, it runs exactly once on a worker, however early the write
/// completed.
struct HeldDone {
    state: Arc<parking_lot::Mutex<Held>>,
}

struct Held {
    done: Option<(unsafe extern "C" fn(*mut c_void, c_int), SendPtr)>,
    returned: bool,
    /// The write's result when it came before the return.
    early: Option<c_int>,
}

impl HeldDone {
    fn new(f: unsafe extern "C" fn(*mut c_void, c_int), arg: SendPtr) -> HeldDone {
        HeldDone {
            state: Arc::new(parking_lot::Mutex::new(Held { done: Some((f, arg)), returned: false, early: None })),
        }
    }

    /// What the socket calls with the write's result.
    fn completion(&self) -> WriteDone {
        let state = Arc::clone(&self.state);
        Box::new(move |code| {
            let mut held = state.lock();
            if !held.returned {
                held.early = Some(code);
                return;
            }
            let done = held.done.take();
            drop(held);
            if let Some((f, arg)) = done {
                run_write_done(f, arg, code);
            }
        })
    }

    /// `brpc_socket_write` is returning; `accepted` when it returns 0.
    fn returned(self, accepted: bool) {
        let mut held = self.state.lock();
        held.returned = true;
        if !accepted {
            held.done = None;
            return;
        }
        let Some(code) = held.early.take() else { return };
        let done = held.done.take();
        drop(held);
        if let Some((f, arg)) = done {
            run_write_done(f, arg, code);
        }
    }
}

fn run_write_done(f: unsafe extern "C" fn(*mut c_void, c_int), arg: SendPtr, code: c_int) {
    // SAFETY: the C callback and its argument, as the caller gave them.
    on_worker(move || unsafe { f(arg.get(), code) });
}

/// Connects to the socket's remote side without blocking (brpc's
/// `Socket::Connect`). `on_connect(fd, err, data)` runs exactly once on a
/// worker thread: with a connected fd the callee then owns, or with -1 and
/// the error (`ECONNREFUSED`, `ETIMEDOUT` after `timeout_ms` > 0, ...).
/// Returns 0, or an errno (and then `on_connect` is not called).
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_connect(
    socket: *const brpc_socket,
    timeout_ms: i64,
    on_connect: brpc_on_connect_fn,
    data: *mut c_void,
) -> c_int {
    let data = SendPtr(data);
    guard(|| {
        // SAFETY: a handle that was not released, or NULL.
        let Some(socket) = (unsafe { socket.as_ref() }) else { return libc::EINVAL };
        let (Some(on_connect), Some(remote)) = (on_connect, socket.inner.remote()) else { return libc::EINVAL };
        let deadline = (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
        tcp_connect(
            remote,
            deadline,
            Box::new(move |fd, err| {
                let fd = fd.map_or(-1, IntoRawFd::into_raw_fd);
                on_worker(move || {
                    // SAFETY: the C callback and its data, as the caller gave them.
                    unsafe { on_connect(fd, err, data.get()) };
                });
            }),
        );
        0
    })
}

/// Ends a connection attempt (brpc's `Socket::CheckConnectedAndKeepWrite`):
/// `data` is what the socket passed to its connection's `connect`. With
/// `fd >= 0 && err == 0` the queued writes go out; otherwise each fails with
/// `err` (`ECONNRESET` when 0), the socket fails with a text saying so, and
/// the attempt's reference is released. Never aborts. Returns 0 when the
/// attempt was resolved, `EINVAL` when `data` names no pending attempt.
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_check_connected_and_keep_write(fd: c_int, err: c_int, data: *mut c_void) -> c_int {
    guard(|| check_connected_and_keep_write(fd, err, ConnectData(data as u64)))
}

/// Tells a socket with an owner-provided connection that `write` may take
/// bytes again after it returned `EAGAIN`.
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_notify_writable(id: brpc_socket_id) -> c_int {
    guard(|| match Socket::address(id) {
        Some(socket) => {
            socket.notify_writable();
            0
        }
        None => libc::EINVAL,
    })
}

/// The socket's id, or `BRPC_INVALID_SOCKET_ID` for NULL.
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_id_of(socket: *const brpc_socket) -> brpc_socket_id {
    // SAFETY: a handle that was not released, or NULL.
    guard_value(BRPC_INVALID_SOCKET_ID, || unsafe { socket.as_ref() }.map_or(BRPC_INVALID_SOCKET_ID, |s| s.inner.id()))
}

/// The socket's fd, -1 when not connected.
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_fd(socket: *const brpc_socket) -> c_int {
    // SAFETY: a handle that was not released, or NULL.
    guard_value(-1, || unsafe { socket.as_ref() }.map_or(-1, |s| s.inner.fd()))
}

/// A one-line description into `buf[0..cap)` (NUL-terminated, truncated);
/// returns its full length.
#[no_mangle]
pub unsafe extern "C" fn brpc_socket_description(socket: *const brpc_socket, buf: *mut c_char, cap: usize) -> usize {
    guard_value(0, || {
        // SAFETY: a handle that was not released, or NULL.
        let text = unsafe { socket.as_ref() }.map_or_else(|| "Socket{null}".to_string(), |s| s.inner.description());
        // SAFETY: writable for `cap` bytes or NULL, per the contract.
        unsafe { write_c_string(&text, buf, cap) }
    })
}

/// Sockets created and not yet recycled, process-wide.
#[no_mangle]
pub extern "C" fn brpc_socket_live_count() -> usize {
    guard_value(0, Socket::live_count)
}

/// Connection attempts not yet resolved, process-wide.
#[no_mangle]
pub extern "C" fn brpc_socket_pending_connects() -> usize {
    guard_value(0, crate::socket::write::pending_attempts)
}

struct CUser {
    arg: Arc<UserArg>,
    on_input: brpc_socket_input_fn,
    on_failed: brpc_socket_failed_fn,
    /// The socket's callbacks, in order, off the dispatcher thread.
    executor: SerialExecutor,
}

/// The user's argument, released when the socket and every callback still
/// queued for it are done with it.
struct UserArg {
    arg: SendPtr,
    on_recycle: brpc_socket_recycle_fn,
}

impl Drop for UserArg {
    fn drop(&mut self) {
        if let Some(f) = self.on_recycle {
            // SAFETY: called once, after the last use of the argument.
            unsafe { f(self.arg.0) };
        }
    }
}

impl SocketUser for CUser {
    fn on_input(&self, socket: &Socket, buf: &mut BytesMut) -> Result<(), Error> {
        let data = buf.split().freeze();
        if let Some(f) = self.on_input {
            let arg = Arc::clone(&self.arg);
            let id = socket.id();
            // Holding the socket keeps it from being recycled until the
            // callback ran: once a socket is gone, none of its callbacks runs.
            let pinned = Socket::address_failed_as_well(id);
            self.executor.submit(move || {
                // SAFETY: the C callback; the bytes are valid during the call.
                unsafe { f(arg.arg.get(), id, data.as_ptr(), data.len()) };
                drop(pinned);
            });
        }
        Ok(())
    }

    fn on_failed(&self, socket: &Socket, error: &Error) {
        let Some(f) = self.on_failed else { return };
        let arg = Arc::clone(&self.arg);
        let id = socket.id();
        let code = error.code();
        let text = CString::new(error.text().replace('\0', " ")).unwrap_or_default();
        let pinned = Socket::address_failed_as_well(id);
        self.executor.submit(move || {
            // SAFETY: the C callback; `text` lives until the call returns.
            unsafe { f(arg.arg.get(), id, code, text.as_ptr()) };
            drop(pinned);
        });
    }
}

struct CConnection {
    ctx: SendPtr,
    connect: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            id: brpc_socket_id,
            on_connect: brpc_on_connect_fn,
            data: *mut c_void,
        ) -> c_int,
    >,
    write: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            id: brpc_socket_id,
            fd: c_int,
            iov: *const libc::iovec,
            iovcnt: c_int,
        ) -> isize,
    >,
    release: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
    /// The socket's callbacks (`None` only while dropping).
    user: Option<Arc<dyn SocketUser>>,
}

unsafe extern "C" fn keep_write_trampoline(fd: c_int, err: c_int, data: *mut c_void) -> c_int {
    // SAFETY: forwards to the exported function with the same contract.
    unsafe { brpc_socket_check_connected_and_keep_write(fd, err, data) }
}

impl Connection for CConnection {
    fn connect(&self, socket: &Socket, data: ConnectData) -> Result<(), Error> {
        let Some(connect) = self.connect else {
            return Err(Error::new(libc::EINVAL, "the owner's connection has no connect function"));
        };
        // SAFETY: the owner's callback with the context it gave.
        let rc = unsafe { connect(self.ctx.get(), socket.id(), Some(keep_write_trampoline), data.0 as *mut c_void) };
        if rc == 0 {
            Ok(())
        } else {
            Err(Error::new(rc, "the owner's connection refused to connect"))
        }
    }

    fn write(&self, socket: &Socket, messages: &[OutMessage<'_>]) -> Result<usize, Error> {
        let Some(write) = self.write else {
            return Err(Error::new(libc::EINVAL, "the owner's connection has no write function"));
        };
        let iov: Vec<libc::iovec> = messages
            .iter()
            .flat_map(|m| m.chunks.iter())
            .filter(|c| !c.is_empty())
            .map(|c| libc::iovec { iov_base: c.as_ptr() as *mut c_void, iov_len: c.len() })
            .collect();
        if iov.is_empty() {
            return Ok(0);
        }
        // SAFETY: the owner's callback; the buffers are valid during the call.
        let n = unsafe { write(self.ctx.get(), socket.id(), socket.fd(), iov.as_ptr(), iov.len() as c_int) };
        if n >= 0 {
            Ok(n as usize)
        } else {
            Err(Error::from_code(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)))
        }
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }

    fn as_any_ref(&self) -> &dyn std::any::Any {
        self
    }

    fn user(&self) -> Option<&dyn SocketUser> {
        self.user.as_deref()
    }
}

impl Drop for CConnection {
    fn drop(&mut self) {
        // The user goes first, then the context, as when the socket held both.
        drop(self.user.take());
        if let Some(release) = self.release {
            // SAFETY: called once, when the socket lets go of the context.
            unsafe { release(self.ctx.get()) };
        }
    }
}

/// Bounds the bytes queued and not yet written on one TCP connection
/// (brpc's `-socket_max_unwritten_bytes`, default 64 MiB), process-wide:
/// once a connection holds more, a new write fails with `EOVERCROWDED`
/// (a server's response is dropped, a client's call fails). <= 0 restores
/// the default.
#[no_mangle]
pub extern "C" fn brpc_socket_set_max_unwritten_bytes(bytes: i64) {
    guard_value((), || crate::socket::set_max_unwritten_bytes(u64::try_from(bytes).unwrap_or(0)))
}

/// The bound set by `brpc_socket_set_max_unwritten_bytes`.
#[no_mangle]
pub extern "C" fn brpc_socket_max_unwritten_bytes() -> i64 {
    guard_value(0, || i64::try_from(crate::socket::max_unwritten_bytes()).unwrap_or(i64::MAX))
}

/// How long a connection may stay over that bound after a write was
/// refused before it is closed with `EOVERCROWDED` (a peer that does not
/// read its responses), process-wide. Default 5000 ms; <= 0 restores it.
#[no_mangle]
pub extern "C" fn brpc_socket_set_overcrowded_grace_ms(ms: i64) {
    let grace = std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    guard_value((), || crate::socket::set_overcrowded_grace(grace))
}
