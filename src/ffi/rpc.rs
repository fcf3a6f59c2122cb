//! `brpc_controller_*`, `brpc_channel_*`, `brpc_server_*`: baidu_std calls
//! for C and the `brpc::Controller`/`Channel`/`Server` facade. Requests and
//! responses are serialized bytes; the facade does the protobuf part.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use super::etcd::brpc_etcd_registration_options;
use super::{c_code, c_string, guard, guard_value, on_worker, write_c_string, SendPtr};
use crate::error::Error;
use crate::portal::builtin_services;
use crate::protocol::BodyCoding;
use crate::rpc::{
    call_id, cancel, CallOutcome, CallRequest, Channel, ChannelOptions, ConnectionType, Controller, Server, ServerCall,
    ServerOptions,
};
use crate::runtime::spin::Handoff;
use crate::socket::Liveness;
use crate::stream;

/// Per-call settings and results. Created by `brpc_controller_new` and owned
/// by the caller, or borrowed from a server call.
pub struct brpc_controller {
    pub(super) inner: Mutex<Controller>,
}

impl Drop for brpc_controller {
    fn drop(&mut self) {
        let id = self.inner.get_mut().call_id;
        if id != 0 {
            call_id::forget(id);
        }
        run_cancel_watch(self.inner.get_mut());
    }
}

/// A server call ended (or its controller was reset) before its connection
/// failed: the `NotifyOnCancel` callback runs now, here, as brpc runs it
/// when the controller goes.
fn run_cancel_watch(c: &mut Controller) {
    let (Some(host), Some(ticket)) = (c.host, c.cancel_watch.take()) else { return };
    if let Some(callback) = cancel::unwatch(host, ticket) {
        callback();
    }
}

/// A channel to one server, or to the servers of a naming service. Owned
/// by the caller.
pub struct brpc_channel {
    inner: Channel,
}

/// A server. Owned by the caller.
pub struct brpc_server {
    inner: Server,
}

/// One request being handled. The method's handler owns it until
/// `brpc_server_call_respond` (or `brpc_server_call_send_response`, then
/// `brpc_server_call_free`) frees it.
pub struct brpc_server_call {
    /// None once the response went out (`brpc_server_call_send_response`).
    call: Option<ServerCall>,
    controller: brpc_controller,
}

/// Dead-peer detection for a connection (see `brpc_channel_options` and
/// `brpc_server_options`). The defaults change nothing.
#[repr(C)]
pub struct brpc_liveness_options {
    /// Default false: SO_KEEPALIVE, probing connections idle for
    /// `keepalive_idle_s`.
    pub keepalive: bool,
    /// TCP_KEEPIDLE, TCP_KEEPINTVL (seconds) and TCP_KEEPCNT; default -1,
    /// and any value <= 0: the system's.
    pub keepalive_idle_s: i32,
    pub keepalive_interval_s: i32,
    pub keepalive_count: i32,
    /// TCP_USER_TIMEOUT: sent data or keepalive probes unacknowledged this
    /// long fail the connection with ETIMEDOUT (its streams too). Default
    /// -1, and any value <= 0: the system's.
    pub tcp_user_timeout_ms: i32,
}

impl brpc_liveness_options {
    fn from_rust(l: &Liveness) -> Self {
        let seconds = |d: Option<Duration>| d.map_or(-1, |d| d.as_secs().min(i32::MAX as u64) as i32);
        brpc_liveness_options {
            keepalive: l.keepalive,
            keepalive_idle_s: seconds(l.keepalive_idle),
            keepalive_interval_s: seconds(l.keepalive_interval),
            keepalive_count: l.keepalive_count.map_or(-1, |n| n.min(i32::MAX as u32) as i32),
            tcp_user_timeout_ms: l.user_timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32),
        }
    }

    fn to_rust(&self) -> Liveness {
        let positive = |v: i32| (v > 0).then_some(v as u64);
        Liveness {
            keepalive: self.keepalive,
            keepalive_idle: positive(self.keepalive_idle_s).map(Duration::from_secs),
            keepalive_interval: positive(self.keepalive_interval_s).map(Duration::from_secs),
            keepalive_count: positive(self.keepalive_count).map(|n| n as u32),
            user_timeout: positive(self.tcp_user_timeout_ms).map(Duration::from_millis),
        }
    }
}

/// brpc's `ChannelOptions`. The strings are read during
/// `brpc_channel_init`/`brpc_channel_create` only; NULL means "".
#[repr(C)]
pub struct brpc_channel_options {
    /// Default 200 (brpc's); <= 0: no connect timeout.
    pub connect_timeout_ms: i64,
    /// Default 500; <= 0: calls never time out.
    pub timeout_ms: i64,
    /// Default -1: no backup request. Else a call without an answer after
    /// this long is sent again, to another server when there is one; the
    /// first answer wins. Calls that set up streams send none.
    pub backup_request_ms: i64,
    /// Default 3: retries of a call that failed in a way brpc retries (the
    /// connection broke or was refused, the server is stopping or over its
    /// limits), each to another server when there is one.
    pub max_retry: i32,
    /// "baidu_std" (or ""): the only protocol; any other fails Init.
    pub protocol: *const c_char,
    /// "single" (or ""), "pooled" or "short"; any other fails Init.
    pub connection_type: *const c_char,
    /// Channels with different groups do not share connections.
    pub connection_group: *const c_char,
    /// Default true: Init succeeds when the naming service lists no server.
    pub succeed_without_server: bool,
    /// Default true: and logs that it did.
    pub log_succeed_without_server: bool,
    /// Default 3 (brpc's flag): seconds between probes of a server that
    /// failed, until it accepts connections again; <= 0: the default.
    pub health_check_interval_s: i32,
    /// Comma-separated names of options the caller set that this library
    /// does not implement (the C++ facade fills it: auth, retry_policy,
    /// ssl_options, ...); non-empty fails Init with `EINVAL` naming them.
    pub unsupported: *const c_char,
    /// Default: off.
    pub liveness: brpc_liveness_options,
}

impl brpc_channel_options {
    /// The options as the channel takes them; a refused one is `EINVAL` or
    /// `EPROTONOSUPPORT` with a text naming it.
    ///
    /// # Safety
    /// The string fields are NULL or NUL-terminated strings readable during
    /// the call.
    unsafe fn to_rust(&self) -> Result<ChannelOptions, Error> {
        // SAFETY: NULL or NUL-terminated strings (this function's contract),
        // here and below.
        let (unsupported, protocol, connection_type, connection_group) = unsafe {
            (
                c_string(self.unsupported),
                c_string(self.protocol),
                c_string(self.connection_type),
                c_string(self.connection_group),
            )
        };
        if !unsupported.is_empty() {
            return Err(Error::new(
                libc::EINVAL,
                format!("ChannelOptions not supported by this library: {unsupported}"),
            ));
        }
        if !protocol.is_empty() && protocol != "baidu_std" {
            let text = format!("protocol \"{protocol}\" is not supported (only baidu_std)");
            return Err(Error::new(libc::EPROTONOSUPPORT, text));
        }
        let millis = |ms: i64| (ms > 0).then(|| Duration::from_millis(ms as u64));
        let defaults = ChannelOptions::default();
        Ok(ChannelOptions {
            connect_timeout: millis(self.connect_timeout_ms),
            timeout: millis(self.timeout_ms),
            backup_request: (self.backup_request_ms >= 0).then(|| Duration::from_millis(self.backup_request_ms as u64)),
            max_retry: self.max_retry.max(0) as u32,
            connection_type: ConnectionType::parse(&connection_type).map_err(|text| Error::new(libc::EINVAL, text))?,
            connection_group,
            succeed_without_server: self.succeed_without_server,
            log_succeed_without_server: self.log_succeed_without_server,
            health_check_interval: if self.health_check_interval_s > 0 {
                Duration::from_secs(self.health_check_interval_s as u64)
            } else {
                defaults.health_check_interval
            },
            liveness: self.liveness.to_rust(),
        })
    }
}

#[repr(C)]
pub struct brpc_server_options {
    /// Default 64 MiB: a larger frame fails its connection.
    pub max_body_size: i64,
    /// For accepted connections. Default: off.
    pub liveness: brpc_liveness_options,
    /// Registration in etcd. Default: none.
    pub etcd_registration: brpc_etcd_registration_options,
    /// Calls in flight on the whole server; beyond it a request is answered
    /// `ELIMIT` and its method never runs. 0 (default): unlimited.
    pub max_concurrency: c_int,
    /// brpc's builtin pages (`/status`, `/vars`, `/brpc_metrics`,
    /// `/connections`, `/health`, `/version`) over HTTP on the server's
    /// port. Default: true. False: a connection that does not speak
    /// baidu_std is closed.
    pub has_builtin_services: bool,
    /// Connections kept at once; a new one beyond is closed at once (and
    /// logged). Default 10000; 0: unlimited; < 0: `EINVAL`.
    pub max_connections: c_int,
    /// Bytes of requests still being read, every connection together; the
    /// connection that takes the server past it is closed (logged,
    /// `EOVERCROWDED`). Default 512 MiB; 0: unlimited; < 0: `EINVAL`.
    pub max_partial_request_bytes: i64,
    /// A connection holding part of a frame header this long is closed
    /// (logged, `ETIMEDOUT`). Default 10000; <= 0: never.
    pub header_timeout_ms: c_int,
    /// brpc's `idle_timeout_sec`: a connection that moved no byte for this
    /// many seconds is closed (looked at once a second). Default -1, and
    /// any value <= 0: never.
    pub idle_timeout_sec: c_int,
    /// brpc's `num_threads`, a hint: the process's worker pool (which runs
    /// the methods) keeps at least this many threads from the start on, up
    /// to its bound (`BRPC_STREAM_MAX_WORKERS`, logged when reached); it
    /// never shrinks. Default 0, and any value <= 0: left as it is.
    pub num_threads: c_int,
    /// A connection whose frame (its header whole) is not whole after this
    /// many milliseconds plus one second per 64 KiB of it received is closed
    /// (logged, `ETIMEDOUT`). Default 30000; <= 0: never.
    pub body_timeout_ms: c_int,
    /// Streams one connection carries at once; a request that would take
    /// its connection past it is answered `ELIMIT` before its method runs.
    /// Default 10000; 0: unlimited; < 0: `EINVAL`.
    pub max_streams_per_connection: c_int,
}

/// How a call ended; every pointer is valid only during the callback.
#[repr(C)]
pub struct brpc_call_result {
    /// 0 on success, then `payload` is the serialized response.
    pub error_code: c_int,
    /// "" on success.
    pub error_text: *const c_char,
    pub payload: *const u8,
    pub payload_len: usize,
    pub attachment: *const u8,
    pub attachment_len: usize,
}

pub type brpc_call_done_fn = Option<unsafe extern "C" fn(arg: *mut c_void, result: *const brpc_call_result)>;

/// Handles one request of a method, on a worker thread. The call is the
/// handler's: end it with `brpc_server_call_respond` (or
/// `brpc_server_call_send_response` and `brpc_server_call_free`), exactly
/// once, from any thread; one freed unanswered is answered `EINTERNAL`.
pub type brpc_method_fn = Option<unsafe extern "C" fn(arg: *mut c_void, call: *mut brpc_server_call)>;

/// `brpc_compress_type`: brpc's `CompressType` numbers (literals, so
/// cbindgen prints them; a test keeps them equal to the protocol's). LZ4 is
/// declared by brpc but coded by neither brpc's baidu_std nor this library.
pub const BRPC_COMPRESS_TYPE_NONE: c_int = 0;
pub const BRPC_COMPRESS_TYPE_SNAPPY: c_int = 1;
pub const BRPC_COMPRESS_TYPE_GZIP: c_int = 2;
pub const BRPC_COMPRESS_TYPE_ZLIB: c_int = 3;
pub const BRPC_COMPRESS_TYPE_LZ4: c_int = 4;

/// `brpc_checksum_type`: brpc's `ChecksumType` numbers.
pub const BRPC_CHECKSUM_TYPE_NONE: c_int = 0;
pub const BRPC_CHECKSUM_TYPE_CRC32C: c_int = 1;

// ---- controller ----

/// A new controller, owned by the caller: free it with
/// `brpc_controller_destroy`. NULL only when the library failed internally.
#[no_mangle]
pub extern "C" fn brpc_controller_new() -> *mut brpc_controller {
    guard_value(std::ptr::null_mut(), || {
        Box::into_raw(Box::new(brpc_controller { inner: Mutex::new(Controller::default()) }))
    })
}

/// Frees a controller from `brpc_controller_new`; NULL is ignored. Not one
/// borrowed from `brpc_server_call_controller` (its call frees that).
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_destroy(cntl: *mut brpc_controller) {
    // SAFETY: from brpc_controller_new, freed once.
    unsafe { super::free_boxed(cntl) }
}

/// Runs `f` on the controller under the panic guard: `fallback` for NULL,
/// and for a panic (which `guard_value` logs as every guard does).
///
/// # Safety
/// `cntl` is NULL or a live controller: owned by the caller, or borrowed
/// from a call not freed yet.
unsafe fn with_controller<T>(cntl: *const brpc_controller, fallback: T, f: impl FnOnce(&mut Controller) -> T) -> T {
    let ran = guard_value(None, || {
        // SAFETY: a live controller or NULL (this function's contract).
        unsafe { cntl.as_ref() }.map(|cntl| f(&mut cntl.inner.lock()))
    });
    ran.unwrap_or(fallback)
}

/// Back to the state of a new controller.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_reset(cntl: *mut brpc_controller) {
    let mut pending = Controller::default();
    // SAFETY: a live controller or NULL, per the contract.
    unsafe {
        with_controller(cntl, (), |c| {
            if c.call_id != 0 {
                call_id::forget(c.call_id);
            }
            pending = std::mem::take(c);
        })
    };
    // Outside the controller's lock: the callback may use it.
    guard_value((), || run_cancel_watch(&mut pending))
}

/// Server side of brpc's `NotifyOnCancel`: `callback(arg)` runs exactly
/// once, on a worker when the client's connection fails first (at once if
/// it has), else when the call's controller goes (after the response).
/// 0, and the library keeps `callback` and `arg` until it ran; `ENOTSUP`
/// on a client's controller, `EEXIST` when one is registered already,
/// `EINVAL` for NULL: then neither is kept nor called.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_notify_on_cancel(
    cntl: *mut brpc_controller,
    callback: Option<unsafe extern "C" fn(*mut c_void)>,
    arg: *mut c_void,
) -> c_int {
    let Some(callback) = callback else { return libc::EINVAL };
    let arg = SendPtr(arg);
    let register = |c: &mut Controller| {
        let Some(host) = c.host else { return libc::ENOTSUP };
        if c.cancel_watch.is_some() {
            return libc::EEXIST;
        }
        // SAFETY: the caller's callback with its argument, run once.
        let run = Box::new(move || unsafe { callback(arg.get()) });
        c.cancel_watch = Some(cancel::watch(host, run));
        0
    };
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, libc::EINVAL, register) }
}

/// < 0: use the channel's timeout.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_set_timeout_ms(cntl: *mut brpc_controller, ms: i64) {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, (), |c| c.timeout_ms = (ms >= 0).then_some(ms)) }
}

/// -1 when unset.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_timeout_ms(cntl: *const brpc_controller) -> i64 {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, -1, |c| c.timeout_ms.unwrap_or(-1)) }
}

/// < 0: use the channel's.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_set_max_retry(cntl: *mut brpc_controller, n: i32) {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, (), |c| c.max_retry = (n >= 0).then_some(n)) }
}

/// -1 when unset.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_max_retry(cntl: *const brpc_controller) -> i32 {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, -1, |c| c.max_retry.unwrap_or(-1)) }
}

#[no_mangle]
pub unsafe extern "C" fn brpc_controller_set_log_id(cntl: *mut brpc_controller, log_id: i64) {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, (), |c| c.log_id = Some(log_id)) }
}

/// On a server: the request's log id. 0 when unset.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_log_id(cntl: *const brpc_controller) -> i64 {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, 0, |c| c.log_id.unwrap_or(0)) }
}

/// Sets the request id sent with the call (brpc's `set_request_id`):
/// `request_id` NULL or NUL-terminated, copied; NULL or "" sends none.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_set_request_id(cntl: *mut brpc_controller, request_id: *const c_char) {
    // SAFETY: `request_id` NULL or a NUL-terminated string, per the contract.
    let request_id = unsafe { c_string(request_id) };
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, (), |c| c.request_id = request_id) }
}

/// The request id (on a server: the request's) into `buf[0..cap)`
/// (NUL-terminated, truncated); returns its full length, 0 when none.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_request_id(
    cntl: *const brpc_controller,
    buf: *mut c_char,
    cap: usize,
) -> usize {
    let write = |c: &mut Controller| {
        // SAFETY: `buf` is writable for `cap` bytes or NULL, per the contract.
        unsafe { write_c_string(&c.request_id, buf, cap) }
    };
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, 0, write) }
}

/// How the request's payload is compressed: a `brpc_compress_type`. On a
/// client, set before the call; a type without a codec here (LZ4, or not
/// brpc's) fails the call with `EREQUEST`. On a server, how the request
/// was compressed.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_set_request_compress_type(cntl: *mut brpc_controller, compress_type: c_int) {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, (), |c| c.request_coding.compress_type = compress_type) }
}

#[no_mangle]
pub unsafe extern "C" fn brpc_controller_request_compress_type(cntl: *const brpc_controller) -> c_int {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, 0, |c| c.request_coding.compress_type) }
}

/// How the response's payload is compressed. On a server, set before
/// responding (default none, whatever the request used); a type without a
/// codec here answers `ERESPONSE` instead. On a client, after the call: how
/// the response was compressed.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_set_response_compress_type(cntl: *mut brpc_controller, compress_type: c_int) {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, (), |c| c.response_coding.compress_type = compress_type) }
}

#[no_mangle]
pub unsafe extern "C" fn brpc_controller_response_compress_type(cntl: *const brpc_controller) -> c_int {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, 0, |c| c.response_coding.compress_type) }
}

/// The request's checksum: a `brpc_checksum_type`, verified by the server
/// (a mismatch fails the call with `EREQUEST`). Another type fails the call
/// with `EREQUEST` before it is sent.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_set_request_checksum_type(cntl: *mut brpc_controller, checksum_type: c_int) {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, (), |c| c.request_coding.checksum_type = checksum_type) }
}

#[no_mangle]
pub unsafe extern "C" fn brpc_controller_request_checksum_type(cntl: *const brpc_controller) -> c_int {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, 0, |c| c.request_coding.checksum_type) }
}

/// The response's checksum, set on a server before responding; verified by
/// the client (a mismatch fails the call with `ERESPONSE`).
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_set_response_checksum_type(cntl: *mut brpc_controller, checksum_type: c_int) {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, (), |c| c.response_coding.checksum_type = checksum_type) }
}

#[no_mangle]
pub unsafe extern "C" fn brpc_controller_response_checksum_type(cntl: *const brpc_controller) -> c_int {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, 0, |c| c.response_coding.checksum_type) }
}

/// Whether the request's checksum also covers its attachment (RpcMeta
/// `checksum_with_attachment`). Default false: the payload only.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_set_request_checksum_attachment(cntl: *mut brpc_controller, with: bool) {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, (), |c| c.request_coding.checksum_with_attachment = with) }
}

#[no_mangle]
pub unsafe extern "C" fn brpc_controller_request_checksum_attachment(cntl: *const brpc_controller) -> bool {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, false, |c| c.request_coding.checksum_with_attachment) }
}

/// Whether the response's checksum also covers its attachment.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_set_response_checksum_attachment(cntl: *mut brpc_controller, with: bool) {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, (), |c| c.response_coding.checksum_with_attachment = with) }
}

#[no_mangle]
pub unsafe extern "C" fn brpc_controller_response_checksum_attachment(cntl: *const brpc_controller) -> bool {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, false, |c| c.response_coding.checksum_with_attachment) }
}

/// Marks the call failed (code 0 means `EINTERNAL`; `text` may be NULL,
/// and is copied).
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_set_failed(cntl: *mut brpc_controller, code: c_int, text: *const c_char) {
    // SAFETY: a live controller or NULL, and `text` NULL or a NUL-terminated
    // string, per the contract.
    unsafe { with_controller(cntl, (), |c| c.set_failed(code, &c_string(text))) }
}

#[no_mangle]
pub unsafe extern "C" fn brpc_controller_failed(cntl: *const brpc_controller) -> bool {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, false, |c| c.failed()) }
}

#[no_mangle]
pub unsafe extern "C" fn brpc_controller_error_code(cntl: *const brpc_controller) -> c_int {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, 0, |c| c.error_code()) }
}

/// The error text into `buf[0..cap)` (NUL-terminated, truncated); returns
/// its full length.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_error_text(
    cntl: *const brpc_controller,
    buf: *mut c_char,
    cap: usize,
) -> usize {
    let write = |c: &mut Controller| {
        // SAFETY: `buf` is writable for `cap` bytes or NULL, per the contract.
        unsafe { write_c_string(&c.error_text(), buf, cap) }
    };
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, 0, write) }
}

/// The server's address (client) or the client's (server): IPv4 in network
/// byte order and port. 0, or `ENOENT` when not known.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_remote_side(
    cntl: *const brpc_controller,
    ip: *mut u32,
    port: *mut c_int,
) -> c_int {
    let write = |c: &mut Controller| {
        // SAFETY: writable out-parameters or NULL, per the contract.
        unsafe { write_endpoint(c.remote, ip, port) }
    };
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, libc::EINVAL, write) }
}

/// This side's address of the connection, as `brpc_controller_remote_side`.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_local_side(
    cntl: *const brpc_controller,
    ip: *mut u32,
    port: *mut c_int,
) -> c_int {
    let write = |c: &mut Controller| {
        // SAFETY: writable out-parameters or NULL, per the contract.
        unsafe { write_endpoint(c.local, ip, port) }
    };
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, libc::EINVAL, write) }
}

/// `addr` into `*ip` (network byte order) and `*port`, each skipped when
/// NULL: 0, `ENOENT` for no address, `EAFNOSUPPORT` for IPv6.
///
/// # Safety
/// `ip` and `port` are each NULL or writable.
unsafe fn write_endpoint(addr: Option<SocketAddr>, ip: *mut u32, port: *mut c_int) -> c_int {
    let Some(addr) = addr else { return libc::ENOENT };
    let IpAddr::V4(v4) = addr.ip() else { return libc::EAFNOSUPPORT };
    // SAFETY: writable or NULL (this function's contract), checked non-null.
    unsafe {
        if !ip.is_null() {
            *ip = u32::from(v4).to_be();
        }
        if !port.is_null() {
            *port = addr.port() as c_int;
        }
    }
    0
}

/// Consistent hashing (`c_murmurhash`, `c_md5`) picks the server by it.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_set_request_code(cntl: *mut brpc_controller, code: u64) {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, (), |c| c.request_code = Some(code)) }
}

#[no_mangle]
pub unsafe extern "C" fn brpc_controller_has_request_code(cntl: *const brpc_controller) -> bool {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, false, |c| c.request_code.is_some()) }
}

/// 0 when unset.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_request_code(cntl: *const brpc_controller) -> u64 {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, 0, |c| c.request_code.unwrap_or(0)) }
}

/// The last call's duration in microseconds, from its start to its end.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_latency_us(cntl: *const brpc_controller) -> i64 {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, 0, |c| c.latency_us) }
}

/// Retries the last call made (the backup request not counted).
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_retried_count(cntl: *const brpc_controller) -> c_int {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, 0, |c| c.retried_count) }
}

/// Whether the last call sent a backup request.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_has_backup_request(cntl: *const brpc_controller) -> bool {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe { with_controller(cntl, false, |c| c.has_backup_request) }
}

/// brpc's `Controller::call_id()`: the id of the controller's next (or
/// current) call, for `brpc_call_id_cancel` / `brpc_call_id_join`. Take it
/// before starting the call. 0 for NULL.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_call_id(cntl: *mut brpc_controller) -> u64 {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe {
        with_controller(cntl, 0, |c| {
            if c.call_id == 0 || !call_id::is_open(c.call_id) {
                c.call_id = call_id::allocate();
            }
            c.call_id
        })
    }
}

/// Client: whether the last call was canceled (`ECANCELED`). Server:
/// whether the client's connection is gone.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_is_canceled(cntl: *const brpc_controller) -> bool {
    // SAFETY: a live controller or NULL, per the contract.
    unsafe {
        with_controller(cntl, false, |c| match c.host {
            Some(host) => crate::socket::Socket::address(host).is_none(),
            None => c.error_code() == libc::ECANCELED,
        })
    }
}

/// brpc's `StartCancel(call_id)`: the call ends with `ECANCELED` (its done
/// runs) unless it ended; canceled before it starts, it ends as it starts.
#[no_mangle]
pub extern "C" fn brpc_call_id_cancel(id: u64) {
    guard_value((), || call_id::cancel(id))
}

/// brpc's `Join(call_id)`: blocks until the call ended and its done
/// returned; at once for a call that ended.
#[no_mangle]
pub extern "C" fn brpc_call_id_join(id: u64) {
    guard_value((), || call_id::join(id))
}

/// brpc's `policy::MurmurHash32`: MurmurHash3 x86 32-bit, seed 0, of
/// `len` bytes at `data` (NULL with 0). For request codes of `c_murmurhash`.
#[no_mangle]
pub unsafe extern "C" fn brpc_murmurhash32(data: *const u8, len: usize) -> u32 {
    guard_value(0, || {
        // SAFETY: `len` readable bytes at `data`, or NULL, per the contract.
        crate::rpc::lb::murmur_hash32(&unsafe { copy_bytes(data, len) })
    })
}

/// brpc's `policy::MD5Hash32`: the first 4 bytes of the MD5 digest,
/// little-endian. For request codes of `c_md5`.
#[no_mangle]
pub unsafe extern "C" fn brpc_md5hash32(data: *const u8, len: usize) -> u32 {
    guard_value(0, || {
        // SAFETY: `len` readable bytes at `data`, or NULL, per the contract.
        crate::rpc::lb::md5_hash32(&unsafe { copy_bytes(data, len) })
    })
}

// ---- channel ----

#[no_mangle]
pub unsafe extern "C" fn brpc_channel_options_init(options: *mut brpc_channel_options) {
    // SAFETY: a writable options struct or NULL, per the contract.
    unsafe {
        super::write_out(options, || {
            let defaults = ChannelOptions::default();
            brpc_channel_options {
                connect_timeout_ms: defaults.connect_timeout.map_or(0, |t| t.as_millis() as i64),
                timeout_ms: defaults.timeout.map_or(0, |t| t.as_millis() as i64),
                backup_request_ms: -1,
                max_retry: defaults.max_retry as i32,
                protocol: std::ptr::null(),
                connection_type: std::ptr::null(),
                connection_group: std::ptr::null(),
                succeed_without_server: defaults.succeed_without_server,
                log_succeed_without_server: defaults.log_succeed_without_server,
                health_check_interval_s: defaults.health_check_interval.as_secs() as i32,
                unsupported: std::ptr::null(),
                liveness: brpc_liveness_options::from_rust(&defaults.liveness),
            }
        })
    }
}

/// A channel to "ip:port" or "host:port"; `options` may be NULL (defaults).
/// Nothing connects until the first call. Returns 0 with `*out` a channel
/// the caller owns (free it with `brpc_channel_destroy`), or `EINVAL` for
/// an address that does not resolve (or an option refused as in
/// `brpc_channel_init`), `*out` untouched. `server_addr` and `options` are
/// read during the call only.
#[no_mangle]
pub unsafe extern "C" fn brpc_channel_create(
    server_addr: *const c_char,
    options: *const brpc_channel_options,
    out: *mut *mut brpc_channel,
) -> c_int {
    if server_addr.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: the caller's promises, passed on; "" is a valid C string.
    unsafe { brpc_channel_init(server_addr, c"".as_ptr(), options, out, std::ptr::null_mut(), 0) }
}

/// brpc's `Channel::Init(naming_service_url, load_balancer_name, options)`:
/// `naming_url` is "list://a:p,b:p", "file://path", "dns://host:port",
/// "http://host:port" (servers as "host:port" with an optional tag after
/// a space; `wrr` and `wr` read the tag as the weight) with a balancer
/// "rr", "wrr", "random", "wr", "la", "c_murmurhash" or "c_md5"; or a plain
/// "host:port" with "" (or NULL) for one server. Waits for the naming
/// service's first list (at most 5 s). `options` may be NULL (defaults).
/// The strings and `options` are read during the call only. Returns 0
/// with `*out` a channel the caller owns (free it with
/// `brpc_channel_destroy`), or an error code, `*out` untouched, with its
/// text written to `error_text[0..error_cap)` (NUL-terminated, truncated;
/// NULL for none) and logged: `EINVAL` (bad URL, unknown scheme or balancer, refused
/// option), `EPROTONOSUPPORT`, `ENODATA` (no server and
/// `succeed_without_server` false).
#[no_mangle]
pub unsafe extern "C" fn brpc_channel_init(
    naming_url: *const c_char,
    load_balancer: *const c_char,
    options: *const brpc_channel_options,
    out: *mut *mut brpc_channel,
    error_text: *mut c_char,
    error_cap: usize,
) -> c_int {
    guard(|| {
        if naming_url.is_null() || out.is_null() {
            return libc::EINVAL;
        }
        // SAFETY: readable options or NULL, per the contract.
        let opts = match unsafe { options.as_ref() } {
            // SAFETY: its strings are NULL or NUL-terminated, per the contract.
            Some(o) => unsafe { o.to_rust() },
            None => Ok(ChannelOptions::default()),
        };
        // SAFETY: NUL-terminated strings (or NULL for the balancer), per the contract.
        let (naming_url, load_balancer) = unsafe { (c_string(naming_url), c_string(load_balancer)) };
        let created = opts.and_then(|opts| Channel::init(&naming_url, &load_balancer, opts));
        match created {
            Ok(channel) => {
                // SAFETY: writable out-parameter, checked non-null.
                unsafe { *out = Box::into_raw(Box::new(brpc_channel { inner: channel })) };
                0
            }
            Err(error) => {
                log_error!("Channel::Init failed: {}", error.text());
                // SAFETY: writable for `error_cap` bytes or NULL, per the contract.
                unsafe { write_c_string(&error.text(), error_text, error_cap) };
                error.code()
            }
        }
    })
}

/// Frees a channel from `brpc_channel_create`/`brpc_channel_init`; NULL is
/// ignored. Calls in flight still end normally (their done runs); the
/// connection closes when the last of them ended.
#[no_mangle]
pub unsafe extern "C" fn brpc_channel_destroy(channel: *mut brpc_channel) {
    // SAFETY: from brpc_channel_create, freed once.
    unsafe { super::free_boxed(channel) }
}

/// Calls `service_full_name.method_name` with a serialized request. The
/// names, `request` and `attachment` are read (copied) during the call
/// only. The controller's timeout, max_retry and log id apply; it must stay
/// valid and untouched until `done` runs: exactly once, on a worker thread,
/// after the controller got the outcome (error, remote and local side),
/// with `arg` and a result valid only during the callback. Returns 0, or
/// `EINVAL` for bad arguments: then `done` never runs and neither `cntl`
/// nor `arg` is touched again.
#[no_mangle]
pub unsafe extern "C" fn brpc_channel_call(
    channel: *mut brpc_channel,
    cntl: *mut brpc_controller,
    service_full_name: *const c_char,
    method_name: *const c_char,
    request: *const u8,
    request_len: usize,
    attachment: *const u8,
    attachment_len: usize,
    done: brpc_call_done_fn,
    arg: *mut c_void,
) -> c_int {
    let arg = SendPtr(arg);
    guard(|| {
        let Some(done) = done else { return libc::EINVAL };
        let last = Box::new(move |outcome: CallOutcome, id: u64| {
            on_worker(move || {
                deliver(done, arg, &outcome);
                call_id::ended(id);
            })
        });
        // SAFETY: the caller's promises, passed on.
        let started = unsafe {
            start_call(
                channel,
                cntl,
                service_full_name,
                method_name,
                (request, request_len),
                (attachment, attachment_len),
                last,
            )
        };
        started.err().unwrap_or(0)
    })
}

/// `brpc_channel_call` that blocks until the call ended, then runs `done`
/// on the calling thread before returning: the thread that ends the call
/// wakes the caller directly, without a hop through a worker. Returns as
/// `brpc_channel_call`.
#[no_mangle]
pub unsafe extern "C" fn brpc_channel_call_sync(
    channel: *mut brpc_channel,
    cntl: *mut brpc_controller,
    service_full_name: *const c_char,
    method_name: *const c_char,
    request: *const u8,
    request_len: usize,
    attachment: *const u8,
    attachment_len: usize,
    done: brpc_call_done_fn,
    arg: *mut c_void,
) -> c_int {
    let arg = SendPtr(arg);
    guard(|| {
        let Some(done) = done else { return libc::EINVAL };
        let ended = Arc::new(Handoff::<(CallOutcome, u64)>::default());
        let signal = Arc::clone(&ended);
        let last = Box::new(move |outcome: CallOutcome, id: u64| signal.put((outcome, id)));
        // SAFETY: the caller's promises, passed on.
        let started = unsafe {
            start_call(
                channel,
                cntl,
                service_full_name,
                method_name,
                (request, request_len),
                (attachment, attachment_len),
                last,
            )
        };
        if let Err(code) = started {
            return code;
        }
        let (outcome, id) = ended.take();
        deliver(done, arg, &outcome);
        call_id::ended(id);
        0
    })
}

/// Checks a call's arguments and starts it; `last` runs once it ended,
/// after the controller and the streams got the outcome, on the thread that
/// ended the call, with the call's CallId (to mark ended once the user's
/// done returned). On `Err` nothing started and `last` is dropped unrun.
///
/// # Safety
/// As `brpc_channel_call`: `channel` NULL or live; `cntl` NULL or a live
/// controller that stays valid until `last` ran; the names NULL or
/// NUL-terminated; each buffer NULL or readable for its length during the
/// call.
unsafe fn start_call(
    channel: *mut brpc_channel,
    cntl: *mut brpc_controller,
    service_full_name: *const c_char,
    method_name: *const c_char,
    (request, request_len): (*const u8, usize),
    (attachment, attachment_len): (*const u8, usize),
    last: Box<dyn FnOnce(CallOutcome, u64) + Send>,
) -> Result<(), i32> {
    // SAFETY: a live channel or NULL.
    let channel = unsafe { channel.as_ref() }.ok_or(libc::EINVAL)?;
    if cntl.is_null() || service_full_name.is_null() || method_name.is_null() {
        return Err(libc::EINVAL);
    }
    let cntl_ptr = SendPtr(cntl.cast());
    // SAFETY: a live controller, per the contract.
    let settings = {
        // SAFETY: a live controller, per the contract.
        let mut c = unsafe { &*cntl }.inner.lock();
        if c.call_id == 0 || !call_id::is_open(c.call_id) {
            c.call_id = call_id::allocate();
        }
        c.clone()
    };
    let cid = settings.call_id;
    // SAFETY: NUL-terminated names (checked non-NULL) and readable buffers
    // of the given lengths or NULL, per this function's contract.
    let (service, method, payload, attachment) = unsafe {
        (
            c_string(service_full_name),
            c_string(method_name),
            copy_bytes(request, request_len),
            copy_bytes(attachment, attachment_len),
        )
    };
    let request = CallRequest {
        service,
        method,
        payload,
        attachment,
        timeout: settings.timeout_ms.map(|ms| Duration::from_millis(ms.max(0) as u64)),
        max_retry: settings.max_retry.map(|n| n.max(0) as u32),
        log_id: settings.log_id,
        request_id: settings.request_id.clone(),
        request_code: settings.request_code,
        stream_settings: stream::settings_for(&settings.streams),
        coding: settings.request_coding,
    };
    let streams = settings.streams;
    let started = channel.inner.call(
        request,
        Box::new(move |outcome: CallOutcome| {
            let remote_streams = outcome.result.as_ref().ok().and_then(|m| m.meta.stream_settings.clone());
            let error = shown_to_client(outcome.error());
            let remote = remote_streams.clone();
            let socket = outcome.socket;
            let finish = move || {
                // SAFETY: the controller outlives the call, per the contract.
                let cntl = unsafe { &*cntl_ptr.get().cast::<brpc_controller>() };
                {
                    let mut c = cntl.inner.lock();
                    c.error = shown_to_client(outcome.error());
                    c.remote = outcome.remote;
                    c.local = outcome.local;
                    c.remote_stream_settings = remote;
                    if let Ok(message) = &outcome.result {
                        c.response_coding = BodyCoding::of(&message.meta);
                    }
                    c.latency_us = outcome.latency.as_micros().min(i64::MAX as u128) as i64;
                    c.retried_count = outcome.retried_count.min(i32::MAX as u32) as i32;
                    c.has_backup_request = outcome.has_backup_request;
                }
                last(outcome, cid);
            };
            if streams.is_empty() {
                return finish();
            }
            // Streams connect here, on the thread that read the response,
            // before any frame behind it is looked at. When the call failed
            // they fail with its code and text, as the user sees it, and
            // the call ends once their last callbacks returned.
            stream::on_setup_response(&streams, socket, error, remote_streams.as_ref(), Box::new(finish));
        }),
    );
    if let Some(call) = started {
        call_id::bind(cid, call);
    }
    Ok(())
}

/// A client reads every failure as brpc shows it, the code once before
/// the text (`[E<code>]<text>`, see [`Error`]'s `Display`), whether the
/// text came from the server or from this side; the error as it came is
/// kept as the cause.
fn shown_to_client(error: Option<Error>) -> Option<Error> {
    let error = error?;
    if error.text_shows_code() {
        return Some(error);
    }
    Some(Error::new(error.code(), error.to_string()).caused_by(error))
}

fn deliver(done: unsafe extern "C" fn(*mut c_void, *const brpc_call_result), arg: SendPtr, outcome: &CallOutcome) {
    let error = shown_to_client(outcome.error());
    let text = CString::new(error.as_ref().map_or(String::new(), |e| e.text().replace('\0', " "))).unwrap_or_default();
    let (payload, attachment) = match (&outcome.result, &error) {
        (Ok(message), None) => (message.payload.clone(), message.attachment.clone()),
        _ => (Bytes::new(), Bytes::new()),
    };
    let result = brpc_call_result {
        error_code: error.as_ref().map_or(0, Error::code),
        error_text: text.as_ptr(),
        payload: payload.as_ptr(),
        payload_len: payload.len(),
        attachment: attachment.as_ptr(),
        attachment_len: attachment.len(),
    };
    // SAFETY: the caller's callback; the result lives through the call.
    unsafe { done(arg.get(), &result) };
}

// ---- server ----

#[no_mangle]
pub unsafe extern "C" fn brpc_server_options_init(options: *mut brpc_server_options) {
    // SAFETY: a writable options struct or NULL, per the contract.
    unsafe {
        super::write_out(options, || {
            let defaults = ServerOptions::default();
            brpc_server_options {
                max_body_size: defaults.limits.max_body_size as i64,
                liveness: brpc_liveness_options::from_rust(&defaults.liveness),
                etcd_registration: brpc_etcd_registration_options::defaults(),
                max_concurrency: defaults.max_concurrency as c_int,
                has_builtin_services: true,
                max_connections: defaults.max_connections.min(c_int::MAX as usize) as c_int,
                max_partial_request_bytes: defaults.max_partial_request_bytes as i64,
                header_timeout_ms: defaults
                    .header_timeout
                    .map_or(-1, |t| t.as_millis().min(c_int::MAX as u128) as c_int),
                idle_timeout_sec: -1,
                num_threads: 0,
                body_timeout_ms: defaults.body_timeout.map_or(-1, |t| t.as_millis().min(c_int::MAX as u128) as c_int),
                max_streams_per_connection: defaults.max_streams_per_connection.min(c_int::MAX as usize) as c_int,
            }
        })
    }
}

/// A new server, owned by the caller: free it with `brpc_server_destroy`.
/// NULL only when the library failed internally.
#[no_mangle]
pub extern "C" fn brpc_server_new() -> *mut brpc_server {
    guard_value(std::ptr::null_mut(), || Box::into_raw(Box::new(brpc_server { inner: Server::new() })))
}

/// Registers a method. The names are copied; on 0 the server keeps
/// `handler` and `arg`, which must outlive it. `EEXIST` for a duplicate,
/// `EPERM` once started, `EINVAL` for NULL: then neither is kept.
#[no_mangle]
pub unsafe extern "C" fn brpc_server_add_method(
    server: *mut brpc_server,
    service_full_name: *const c_char,
    method_name: *const c_char,
    handler: brpc_method_fn,
    arg: *mut c_void,
) -> c_int {
    let arg = SendPtr(arg);
    guard(|| {
        // SAFETY: a live server or NULL.
        let Some(server) = (unsafe { server.as_ref() }) else { return libc::EINVAL };
        let Some(handler) = handler else { return libc::EINVAL };
        if service_full_name.is_null() || method_name.is_null() {
            return libc::EINVAL;
        }
        let on_call = Arc::new(move |call: ServerCall| {
            let controller = Controller {
                log_id: call.log_id(),
                request_id: call.request_id().to_owned(),
                remote: call.remote,
                local: call.local,
                remote_stream_settings: call.stream_settings().cloned(),
                host: Some(call.host()),
                request_coding: call.request_coding(),
                ..Default::default()
            };
            let call = Box::into_raw(Box::new(brpc_server_call {
                call: Some(call),
                controller: brpc_controller { inner: Mutex::new(controller) },
            }));
            // SAFETY: the caller's handler; it takes the call.
            unsafe { handler(arg.get(), call) };
        });
        // SAFETY: NUL-terminated strings, checked non-NULL, per the contract.
        let (service, method) = unsafe { (c_string(service_full_name), c_string(method_name)) };
        c_code(server.inner.add_method(&service, &method, on_call))
    })
}

/// Listens on "ip:port" (port 0 picks one) and serves. `options` may be
/// NULL; it and `ip_port` are read during the call only. A failure is
/// logged with its text.
/// With `options->etcd_registration.url` set, the server is in etcd when
/// this returns 0; when registering fails (`ECONNREFUSED`, `ETIMEDOUT`,
/// `EINVAL` for a bad url or TTL, ...) the server is not started.
#[no_mangle]
pub unsafe extern "C" fn brpc_server_start(
    server: *mut brpc_server,
    ip_port: *const c_char,
    options: *const brpc_server_options,
) -> c_int {
    guard(|| {
        // SAFETY: a live server or NULL.
        let Some(server) = (unsafe { server.as_ref() }) else { return libc::EINVAL };
        if ip_port.is_null() {
            return libc::EINVAL;
        }
        let mut opts = ServerOptions { builtin_services: Some(builtin_services()), ..Default::default() };
        // SAFETY: readable options or NULL.
        if let Some(o) = unsafe { options.as_ref() } {
            if o.max_body_size > 0 {
                opts.limits.max_body_size = o.max_body_size as usize;
            }
            opts.liveness = o.liveness.to_rust();
            // SAFETY: its strings are NULL or NUL-terminated, per the contract.
            opts.etcd_registration = unsafe { o.etcd_registration.to_rust() };
            if o.max_concurrency < 0 {
                log_error!("ServerOptions.max_concurrency={} is negative; 0 means unlimited", o.max_concurrency);
                return libc::EINVAL;
            }
            opts.max_concurrency = o.max_concurrency as usize;
            if o.max_connections < 0 || o.max_partial_request_bytes < 0 || o.max_streams_per_connection < 0 {
                log_error!(
                    "ServerOptions.max_connections={}, max_partial_request_bytes={} or \
                     max_streams_per_connection={} is negative; 0 means unlimited",
                    o.max_connections,
                    o.max_partial_request_bytes,
                    o.max_streams_per_connection
                );
                return libc::EINVAL;
            }
            opts.max_streams_per_connection = o.max_streams_per_connection as usize;
            opts.body_timeout = (o.body_timeout_ms > 0).then(|| Duration::from_millis(o.body_timeout_ms as u64));
            opts.max_connections = o.max_connections as usize;
            opts.max_partial_request_bytes = usize::try_from(o.max_partial_request_bytes).unwrap_or(usize::MAX);
            opts.header_timeout = (o.header_timeout_ms > 0).then(|| Duration::from_millis(o.header_timeout_ms as u64));
            if !o.has_builtin_services {
                opts.builtin_services = None;
            }
            opts.idle_timeout = (o.idle_timeout_sec > 0).then(|| Duration::from_secs(o.idle_timeout_sec as u64));
            opts.num_threads = o.num_threads.max(0) as usize;
        }
        // SAFETY: a NUL-terminated string, checked non-NULL, per the contract.
        let started = server.inner.start(&unsafe { c_string(ip_port) }, opts);
        if let Err(error) = &started {
            log_error!("Server::Start failed: {}", error.text());
        }
        c_code(started)
    })
}

/// Limits the calls in flight of one method, `full_method_name` being
/// "package.Service.Method" (brpc's `MaxConcurrencyOf`); beyond it a request
/// is answered `ELIMIT`. 0 removes the limit. Only before start: `EPERM`
/// after; `ENOENT` for an unknown method, `EINVAL` for NULL or `max < 0`.
#[no_mangle]
pub unsafe extern "C" fn brpc_server_set_max_concurrency_of(
    server: *mut brpc_server,
    full_method_name: *const c_char,
    max: c_int,
) -> c_int {
    guard(|| {
        // SAFETY: a live server or NULL.
        let Some(server) = (unsafe { server.as_ref() }) else { return libc::EINVAL };
        if full_method_name.is_null() || max < 0 {
            return libc::EINVAL;
        }
        // SAFETY: a NUL-terminated string, checked non-NULL, per the contract.
        let full_method_name = unsafe { c_string(full_method_name) };
        c_code(server.inner.set_max_concurrency_of(&full_method_name, max as usize))
    })
}

/// Sets the text the server's `/version` page shows (brpc's
/// `Server::set_version`); the text is copied. `EINVAL` for NULL.
#[no_mangle]
pub unsafe extern "C" fn brpc_server_set_version(server: *mut brpc_server, version: *const c_char) -> c_int {
    if version.is_null() {
        return libc::EINVAL;
    }
    // SAFETY: a live server or NULL, per the caller; `version` is a C string.
    unsafe { with_server(server, |s| s.set_version(&c_string(version))) }
}

/// The limit of one method (0: none), or -1 for an unknown method or NULL.
#[no_mangle]
pub unsafe extern "C" fn brpc_server_max_concurrency_of(
    server: *const brpc_server,
    full_method_name: *const c_char,
) -> c_int {
    guard_value(-1, || {
        // SAFETY: a live server or NULL.
        let Some(server) = (unsafe { server.as_ref() }) else { return -1 };
        if full_method_name.is_null() {
            return -1;
        }
        // SAFETY: a NUL-terminated string, checked non-NULL, per the contract.
        let limit = server.inner.max_concurrency_of(&unsafe { c_string(full_method_name) });
        limit.map_or(-1, |n| c_int::try_from(n).unwrap_or(c_int::MAX))
    })
}

/// The port listened on, -1 when not started.
#[no_mangle]
pub unsafe extern "C" fn brpc_server_listen_port(server: *const brpc_server) -> c_int {
    guard_value(-1, || {
        // SAFETY: a live server or NULL.
        unsafe { server.as_ref() }.and_then(|s| s.inner.listen_address()).map_or(-1, |a| a.port() as c_int)
    })
}

/// Runs `f` on a live server under the panic guard: 0, or `EINVAL` for
/// NULL.
///
/// # Safety
/// `server` is NULL or a live server (from `brpc_server_new`, not destroyed).
unsafe fn with_server(server: *mut brpc_server, f: impl FnOnce(&Server)) -> c_int {
    guard(|| {
        // SAFETY: a live server or NULL, per the caller.
        match unsafe { server.as_ref() } {
            Some(server) => {
                f(&server.inner);
                0
            }
            None => libc::EINVAL,
        }
    })
}

/// Stops accepting; requests from now on get `ELOGOFF`. A server
/// registered in etcd first withdraws its entry (waiting for etcd at most
/// the registration's request timeout: half the TTL, 0.5 to 3 s).
#[no_mangle]
pub unsafe extern "C" fn brpc_server_stop(server: *mut brpc_server) -> c_int {
    // SAFETY: a live server or NULL.
    unsafe { with_server(server, Server::stop) }
}

/// Returns once every call was answered and every connection ended with all
/// its streams, their last callbacks returned (see `Server::join`).
#[no_mangle]
pub unsafe extern "C" fn brpc_server_join(server: *mut brpc_server) -> c_int {
    // SAFETY: a live server or NULL.
    unsafe { with_server(server, Server::join) }
}

#[no_mangle]
pub unsafe extern "C" fn brpc_server_is_running(server: *const brpc_server) -> bool {
    // SAFETY: a live server or NULL.
    guard_value(false, || unsafe { server.as_ref() }.is_some_and(|s| s.inner.is_running()))
}

/// Stops, joins and frees the server; NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn brpc_server_destroy(server: *mut brpc_server) {
    // SAFETY: from brpc_server_new, freed once.
    unsafe { super::free_boxed(server) }
}

/// The call's controller (log id, remote and local side; fail it to answer
/// an error). Borrowed: valid until the call is responded to.
#[no_mangle]
pub unsafe extern "C" fn brpc_server_call_controller(call: *mut brpc_server_call) -> *mut brpc_controller {
    guard_value(std::ptr::null_mut(), || {
        // SAFETY: a live call or NULL.
        unsafe { call.as_mut() }.map_or(std::ptr::null_mut(), |c| &mut c.controller as *mut _)
    })
}

/// The serialized request, valid until the call is responded to.
#[no_mangle]
pub unsafe extern "C" fn brpc_server_call_request(
    call: *const brpc_server_call,
    data: *mut *const u8,
    len: *mut usize,
) {
    guard_value((), || {
        // SAFETY: a live call or NULL.
        let call = unsafe { call.as_ref() };
        let payload = call.and_then(|c| c.call.as_ref()).map(|c| &c.request.payload);
        // SAFETY: writable out-parameters or NULL, per the contract.
        unsafe { view(payload, data, len) }
    })
}

/// The request attachment, valid until the call is responded to.
#[no_mangle]
pub unsafe extern "C" fn brpc_server_call_request_attachment(
    call: *const brpc_server_call,
    data: *mut *const u8,
    len: *mut usize,
) {
    guard_value((), || {
        // SAFETY: a live call or NULL.
        let call = unsafe { call.as_ref() };
        let attachment = call.and_then(|c| c.call.as_ref()).map(|c| &c.request.attachment);
        // SAFETY: writable out-parameters or NULL, per the contract.
        unsafe { view(attachment, data, len) }
    })
}

/// `bytes`' start and length into `*data` and `*len` (NULL and 0 for
/// none), each skipped when NULL.
///
/// # Safety
/// `data` and `len` are each NULL or writable.
unsafe fn view(bytes: Option<&Bytes>, data: *mut *const u8, len: *mut usize) {
    let (ptr, n) = bytes.map_or((std::ptr::null(), 0), |b| (b.as_ptr(), b.len()));
    // SAFETY: writable or NULL (this function's contract), checked non-null.
    unsafe {
        if !data.is_null() {
            *data = ptr;
        }
        if !len.is_null() {
            *len = n;
        }
    }
}

/// Sends the response (or the controller's error, when it failed) and frees
/// the call: `response` and `attachment` are copied, and `call`, its
/// controller and its request views must not be used after 0. On an error
/// (`EINVAL` for NULL, `EPERM` when the response went out already) the
/// caller still owns the call (`brpc_server_call_free`).
#[no_mangle]
pub unsafe extern "C" fn brpc_server_call_respond(
    call: *mut brpc_server_call,
    response: *const u8,
    len: usize,
    attachment: *const u8,
    attachment_len: usize,
) -> c_int {
    // SAFETY: forwarded as given.
    let rc = unsafe { brpc_server_call_send_response(call, response, len, attachment, attachment_len) };
    if rc == 0 {
        // SAFETY: the call just answered, freed once.
        unsafe { brpc_server_call_free(call) };
    }
    rc
}

/// Sends the response (or the controller's error) like
/// `brpc_server_call_respond` but keeps the call's controller readable
/// (brpc's `after_rpc_resp_fn` runs then); the request is gone. Free the
/// call with `brpc_server_call_free`. 0; `EINVAL` for NULL; `EPERM` when
/// the response went out already.
#[no_mangle]
pub unsafe extern "C" fn brpc_server_call_send_response(
    call: *mut brpc_server_call,
    response: *const u8,
    len: usize,
    attachment: *const u8,
    attachment_len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: a live call or NULL.
        let Some(call) = (unsafe { call.as_mut() }) else { return libc::EINVAL };
        let Some(mut server_call) = call.call.take() else { return libc::EPERM };
        let (coding, error, streams) = {
            let mut controller = call.controller.inner.lock();
            (controller.response_coding, controller.error.clone(), std::mem::take(&mut controller.streams))
        };
        server_call.set_response_coding(coding);
        let result = match error {
            Some(error) => Err(error),
            // SAFETY: readable buffers of the given lengths, or NULL, per
            // the contract.
            None => Ok(unsafe { (copy_bytes(response, len), copy_bytes(attachment, attachment_len)) }),
        };
        server_call.respond_with_streams(result, &streams);
        0
    })
}

/// Frees a call whose response went out (`brpc_server_call_send_response`);
/// one that was not answered is answered `EINTERNAL` first. A pending
/// `NotifyOnCancel` callback runs here.
#[no_mangle]
pub unsafe extern "C" fn brpc_server_call_free(call: *mut brpc_server_call) {
    guard_value((), || {
        if !call.is_null() {
            // SAFETY: from the handler, freed once.
            drop(unsafe { Box::from_raw(call) });
        }
    })
}

/// A copy of `len` bytes at `data` (empty for NULL or 0).
///
/// # Safety
/// `data` is NULL or readable for `len` bytes during the call.
unsafe fn copy_bytes(data: *const u8, len: usize) -> Bytes {
    if data.is_null() || len == 0 {
        return Bytes::new();
    }
    // SAFETY: `len` readable bytes (this function's contract), not NULL.
    Bytes::copy_from_slice(unsafe { std::slice::from_raw_parts(data, len) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::body;

    #[test]
    fn the_coding_numbers_are_the_protocols() {
        assert_eq!(BRPC_COMPRESS_TYPE_NONE, body::COMPRESS_TYPE_NONE);
        assert_eq!(BRPC_COMPRESS_TYPE_SNAPPY, body::COMPRESS_TYPE_SNAPPY);
        assert_eq!(BRPC_COMPRESS_TYPE_GZIP, body::COMPRESS_TYPE_GZIP);
        assert_eq!(BRPC_COMPRESS_TYPE_ZLIB, body::COMPRESS_TYPE_ZLIB);
        assert_eq!(BRPC_COMPRESS_TYPE_LZ4, body::COMPRESS_TYPE_LZ4);
        assert_eq!(BRPC_CHECKSUM_TYPE_NONE, body::CHECKSUM_TYPE_NONE);
        assert_eq!(BRPC_CHECKSUM_TYPE_CRC32C, body::CHECKSUM_TYPE_CRC32C);
    }
}
