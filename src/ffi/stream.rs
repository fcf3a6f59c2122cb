//! `brpc_stream_*`: streams for C and `brpc/stream.h`.
//!
//! Handler callbacks run on worker threads, one at a time per stream, in
//! order; they may block (the pool grows). `handler_arg` must stay valid
//! until `on_closed` has run.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::rpc::brpc_controller;
use super::{c_code, guard, guard_value, SendPtr};
use crate::error::Error;
use crate::stream::{self, StreamHandler, StreamId, StreamOptions};

/// A stream's id (its socket's id).
pub type brpc_stream_id = u64;

/// One received message, valid during the callback only; `bytes` can be
/// retained to keep the data longer without copying it.
#[repr(C)]
pub struct brpc_stream_message {
    pub data: *const u8,
    pub len: usize,
    pub bytes: *const brpc_bytes,
}

/// Bytes the library shares: what a `brpc_bytes*` points at stays valid
/// until `brpc_bytes_release`. Opaque.
pub struct brpc_bytes {
    _private: [u8; 0],
}

/// A piece of a message to write, lent to the library (see
/// `brpc_stream_write_blocks`).
#[repr(C)]
pub struct brpc_stream_block {
    pub data: *const u8,
    pub len: usize,
}

/// Called once when the library no longer needs lent memory.
pub type brpc_release_fn = Option<unsafe extern "C" fn(arg: *mut c_void)>;

/// How a stream behaves and who hears of it. Read (copied) by
/// `brpc_stream_create`/`brpc_stream_accept` during the call; a call that
/// fails keeps none of it.
#[repr(C)]
pub struct brpc_stream_options {
    /// brpc's default 1 MiB; kept for API parity (the window is max_buf_size).
    pub min_buf_size: i32,
    /// Default 2 MiB: bytes written and not yet consumed by the peer's
    /// handler; <= 0: no flow control (and the peer sends no FEEDBACK).
    pub max_buf_size: i32,
    /// `on_idle_timeout` runs when no DATA frame arrived for this long,
    /// counted from the last one (or the last `on_idle_timeout`). Default
    /// -1, and any value <= 0: never.
    pub idle_timeout_ms: i64,
    /// Default 128.
    pub messages_in_batch: usize,
    /// false: no handler, the peer's writes get EBADF.
    pub has_handler: bool,
    /// Passed to every callback; the library never frees it. It must stay
    /// valid until `on_closed` returned.
    pub handler_arg: *mut c_void,
    /// The stream's messages, in order (`brpc_stream_message` says how long
    /// each is readable).
    pub on_received_messages: Option<
        unsafe extern "C" fn(
            arg: *mut c_void,
            id: brpc_stream_id,
            messages: *const brpc_stream_message,
            n: usize,
        ) -> c_int,
    >,
    pub on_idle_timeout: Option<unsafe extern "C" fn(arg: *mut c_void, id: brpc_stream_id)>,
    /// Exactly once, last.
    pub on_closed: Option<unsafe extern "C" fn(arg: *mut c_void, id: brpc_stream_id)>,
    /// At most once, before on_closed; `error_text` is readable during the
    /// call only.
    pub on_failed: Option<
        unsafe extern "C" fn(arg: *mut c_void, id: brpc_stream_id, error_code: c_int, error_text: *const c_char),
    >,
}

/// Runs once, on a worker, with 0 (writable), ETIMEDOUT or EINVAL (closed).
pub type brpc_stream_writable_fn =
    Option<unsafe extern "C" fn(id: brpc_stream_id, arg: *mut c_void, error_code: c_int)>;

#[no_mangle]
pub unsafe extern "C" fn brpc_stream_options_init(options: *mut brpc_stream_options) {
    // SAFETY: a writable options struct or NULL, per the contract.
    unsafe {
        super::write_out(options, || {
            let defaults = StreamOptions::default();
            brpc_stream_options {
                min_buf_size: defaults.min_buf_size,
                max_buf_size: defaults.max_buf_size,
                idle_timeout_ms: -1,
                messages_in_batch: defaults.messages_in_batch,
                has_handler: false,
                handler_arg: std::ptr::null_mut(),
                on_received_messages: None,
                on_idle_timeout: None,
                on_closed: None,
                on_failed: None,
            }
        })
    }
}

struct CHandler {
    arg: SendPtr,
    on_received_messages: Option<
        unsafe extern "C" fn(
            arg: *mut c_void,
            id: brpc_stream_id,
            messages: *const brpc_stream_message,
            n: usize,
        ) -> c_int,
    >,
    on_idle_timeout: Option<unsafe extern "C" fn(arg: *mut c_void, id: brpc_stream_id)>,
    on_closed: Option<unsafe extern "C" fn(arg: *mut c_void, id: brpc_stream_id)>,
    on_failed: Option<
        unsafe extern "C" fn(arg: *mut c_void, id: brpc_stream_id, error_code: c_int, error_text: *const c_char),
    >,
}

impl StreamHandler for CHandler {
    fn on_received_messages(&self, id: StreamId, messages: &[Bytes]) {
        let Some(f) = self.on_received_messages else { return };
        let views: Vec<brpc_stream_message> = messages
            .iter()
            .map(|m| brpc_stream_message {
                data: m.as_ptr(),
                len: m.len(),
                bytes: (m as *const Bytes).cast::<brpc_bytes>(),
            })
            .collect();
        // SAFETY: the user's callback; the views are valid during the call.
        unsafe { f(self.arg.get(), id, views.as_ptr(), views.len()) };
    }

    fn on_idle_timeout(&self, id: StreamId) {
        if let Some(f) = self.on_idle_timeout {
            // SAFETY: the user's callback.
            unsafe { f(self.arg.get(), id) };
        }
    }

    fn on_closed(&self, id: StreamId) {
        if let Some(f) = self.on_closed {
            // SAFETY: the user's callback.
            unsafe { f(self.arg.get(), id) };
        }
    }

    fn on_failed(&self, id: StreamId, error: &Error) {
        if let Some(f) = self.on_failed {
            let text = CString::new(error.text().replace('\0', " ")).unwrap_or_default();
            // SAFETY: the user's callback; `text` lives through the call.
            unsafe { f(self.arg.get(), id, error.code(), text.as_ptr()) };
        }
    }
}

/// The stream options `options` asks for (the defaults for NULL); a handler
/// keeps `handler_arg` and the callbacks.
///
/// # Safety
/// `options` is NULL or readable during the call.
unsafe fn options_from(options: *const brpc_stream_options) -> StreamOptions {
    let mut result = StreamOptions::default();
    // SAFETY: readable options or NULL (this function's contract).
    let Some(o) = (unsafe { options.as_ref() }) else { return result };
    result.min_buf_size = o.min_buf_size;
    result.max_buf_size = o.max_buf_size;
    result.idle_timeout = (o.idle_timeout_ms > 0).then(|| Duration::from_millis(o.idle_timeout_ms as u64));
    result.messages_in_batch = o.messages_in_batch.max(1);
    if o.has_handler {
        result.handler = Some(Arc::new(CHandler {
            arg: SendPtr(o.handler_arg),
            on_received_messages: o.on_received_messages,
            on_idle_timeout: o.on_idle_timeout,
            on_closed: o.on_closed,
            on_failed: o.on_failed,
        }));
    }
    result
}

/// Client: creates `n` streams that the next `brpc_channel_call` with `cntl`
/// sets up, ids into `out_ids[0..n)`. `EINVAL` when `cntl` already has
/// request streams, or `n` is 0 or more than `BRPC_MAX_STREAMS_PER_CALL`.
/// Writes before the call connects them are queued.
#[no_mangle]
pub unsafe extern "C" fn brpc_stream_create(
    cntl: *mut brpc_controller,
    n: usize,
    options: *const brpc_stream_options,
    out_ids: *mut brpc_stream_id,
) -> c_int {
    guard(|| {
        // SAFETY: a live controller or NULL.
        let Some(cntl) = (unsafe { cntl.as_ref() }) else { return libc::EINVAL };
        if n == 0 || out_ids.is_null() {
            return libc::EINVAL;
        }
        let mut controller = cntl.inner.lock();
        if !controller.streams.is_empty() {
            return libc::EINVAL;
        }
        // SAFETY: readable options or NULL, per the contract.
        let options = unsafe { options_from(options) };
        match stream::create(n, &options) {
            Ok(ids) => {
                // SAFETY: room for `n` ids per the contract.
                unsafe { std::ptr::copy_nonoverlapping(ids.as_ptr(), out_ids, ids.len()) };
                controller.streams = ids;
                0
            }
            Err(error) => error.code(),
        }
    })
}

/// Server, before responding: accepts every stream the request carries,
/// ids into `out_ids[0..n)`, their number `n` in `*n_out`. `EINVAL` when the
/// request carries none, they were accepted already, or it carries more
/// than `cap`: then none is accepted, nothing of `options` (its handler) is
/// kept or called, and the client's streams fail when the response goes
/// without them.
#[no_mangle]
pub unsafe extern "C" fn brpc_stream_accept(
    cntl: *mut brpc_controller,
    options: *const brpc_stream_options,
    out_ids: *mut brpc_stream_id,
    cap: usize,
    n_out: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: a live controller or NULL.
        let Some(cntl) = (unsafe { cntl.as_ref() }) else { return libc::EINVAL };
        let mut controller = cntl.inner.lock();
        let (Some(settings), Some(host)) = (controller.remote_stream_settings.clone(), controller.host) else {
            return libc::EINVAL;
        };
        if !controller.streams.is_empty() {
            return libc::EINVAL;
        }
        if out_ids.is_null() {
            return libc::EINVAL;
        }
        // SAFETY: readable options or NULL, per the contract.
        let options = unsafe { options_from(options) };
        match stream::accept(host, &settings, &options, cap) {
            Ok(ids) => {
                // SAFETY: room for `cap` ids per the contract, and accept
                // made at most `cap`.
                unsafe { std::ptr::copy_nonoverlapping(ids.as_ptr(), out_ids, ids.len()) };
                if !n_out.is_null() {
                    // SAFETY: writable per the contract.
                    unsafe { *n_out = ids.len() };
                }
                controller.streams = ids;
                0
            }
            Err(error) => error.code(),
        }
    })
}

/// True when the request (server) or the response (client) carried streams.
#[no_mangle]
pub unsafe extern "C" fn brpc_controller_has_remote_stream(cntl: *const brpc_controller) -> bool {
    // SAFETY: a live controller or NULL.
    guard_value(false, || unsafe { cntl.as_ref() }.is_some_and(|c| c.inner.lock().has_remote_stream()))
}

/// Queues one message (the bytes of `iov`, copied during the call). With
/// `write_in_background` the calling thread never writes into the socket:
/// a worker of the library's pool does. 0; `EAGAIN` when the window is
/// full; `EINVAL` for a closed or unknown stream; `EBADF` when the peer has
/// no handler.
#[no_mangle]
pub unsafe extern "C" fn brpc_stream_write(
    id: brpc_stream_id,
    iov: *const libc::iovec,
    iovcnt: c_int,
    write_in_background: bool,
) -> c_int {
    guard(|| {
        // SAFETY: NULL or `iovcnt` readable iovecs with readable buffers,
        // valid during the call (the bytes are copied), per the contract.
        let parts = unsafe { super::iovec_slices(iov, iovcnt) };
        // The usual message is a block or two: no list allocated for it.
        const INLINE_PARTS: usize = 8;
        let written = if parts.size_hint().1.is_some_and(|most| most <= INLINE_PARTS) {
            let mut inline: [&[u8]; INLINE_PARTS] = [&[]; INLINE_PARTS];
            let mut count = 0;
            for (slot, part) in inline.iter_mut().zip(parts) {
                *slot = part;
                count += 1;
            }
            stream::write_parts(id, &inline[..count], write_in_background)
        } else {
            stream::write_parts(id, &parts.collect::<Vec<_>>(), write_in_background)
        };
        c_code(written)
    })
}

/// Another reference to a received message's bytes (from
/// `brpc_stream_message.bytes`), owned by the caller: release it once with
/// `brpc_bytes_release`. NULL for NULL.
#[no_mangle]
pub unsafe extern "C" fn brpc_bytes_retain(bytes: *const brpc_bytes) -> *mut brpc_bytes {
    guard_value(std::ptr::null_mut(), || {
        // SAFETY: a brpc_bytes pointer always points at a live Bytes.
        match unsafe { bytes.cast::<Bytes>().as_ref() } {
            Some(bytes) => Box::into_raw(Box::new(bytes.clone())).cast::<brpc_bytes>(),
            None => std::ptr::null_mut(),
        }
    })
}

/// Releases a reference from `brpc_bytes_retain`; NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn brpc_bytes_release(bytes: *mut brpc_bytes) {
    // SAFETY: from brpc_bytes_retain (a boxed Bytes), released once.
    unsafe { super::free_boxed(bytes.cast::<Bytes>()) }
}

/// Lent memory: released through the caller's callback when the last
/// block using it is dropped.
struct Lender {
    release: unsafe extern "C" fn(*mut c_void),
    arg: SendPtr,
}

impl Drop for Lender {
    fn drop(&mut self) {
        // SAFETY: the caller's release callback, called once.
        unsafe { (self.release)(self.arg.get()) };
    }
}

/// One lent block as the owner of a `Bytes`.
struct LentBlock {
    data: SendPtr,
    len: usize,
    _lender: Arc<Lender>,
}

impl AsRef<[u8]> for LentBlock {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the caller keeps the block readable until release runs,
        // which is after this owner is gone.
        unsafe { std::slice::from_raw_parts(self.data.get() as *const u8, self.len) }
    }
}

/// Queues one message made of `blocks` without copying them: the library
/// keeps using the memory until it calls `release(arg)`, once (also when
/// this returns an error, before it returns). The blocks must stay
/// readable and unchanged until then. Returns as `brpc_stream_write`.
#[no_mangle]
pub unsafe extern "C" fn brpc_stream_write_blocks(
    id: brpc_stream_id,
    blocks: *const brpc_stream_block,
    n: usize,
    release: brpc_release_fn,
    arg: *mut c_void,
    write_in_background: bool,
) -> c_int {
    let arg = SendPtr(arg);
    guard(|| {
        let lender = release.map(|release| Arc::new(Lender { release, arg }));
        let mut chunks = Vec::with_capacity(n);
        if !blocks.is_null() && n > 0 {
            // SAFETY: `n` readable block descriptors.
            let blocks = unsafe { std::slice::from_raw_parts(blocks, n) };
            for block in blocks.iter().filter(|b| !b.data.is_null() && b.len > 0) {
                let chunk = match &lender {
                    Some(lender) => Bytes::from_owner(LentBlock {
                        data: SendPtr(block.data as *mut c_void),
                        len: block.len,
                        _lender: Arc::clone(lender),
                    }),
                    // Nothing tells when the memory may go: copy it.
                    // SAFETY: the block is readable for `len` bytes during the call (the contract).
                    None => Bytes::copy_from_slice(unsafe { std::slice::from_raw_parts(block.data, block.len) }),
                };
                chunks.push(chunk);
            }
        }
        drop(lender);
        c_code(stream::write_chunks(id, chunks, write_in_background))
    })
}

fn timeout(ms: i64) -> Option<Duration> {
    (ms >= 0).then(|| Duration::from_millis(ms as u64))
}

/// brpc's `stream_write_max_segment_size`, process-wide: messages written
/// from now on that are longer go as several DATA frames of at most this
/// payload (joined back into one message by the peer). 0, or `EINVAL` for
/// 0 (unchanged). Default 512 MiB.
#[no_mangle]
pub extern "C" fn brpc_stream_set_write_max_segment_size(max_segment_size: u64) -> c_int {
    guard(|| c_code(stream::set_write_max_segment_size(max_segment_size)))
}

/// The size set by `brpc_stream_set_write_max_segment_size`.
#[no_mangle]
pub extern "C" fn brpc_stream_write_max_segment_size() -> u64 {
    guard_value(stream::DEFAULT_MAX_SEGMENT_SIZE as u64, stream::write_max_segment_size)
}

/// Blocks until writable (0), `timeout_ms` passed (`ETIMEDOUT`; < 0: no
/// timeout) or the stream closed (`EINVAL`, at once).
#[no_mangle]
pub unsafe extern "C" fn brpc_stream_wait(id: brpc_stream_id, timeout_ms: i64) -> c_int {
    guard(|| c_code(stream::wait(id, timeout(timeout_ms))))
}

/// Callback form of `brpc_stream_wait`: `on_writable(id, arg, code)` runs
/// exactly once on a worker, with 0 (writable), `ETIMEDOUT`, or `EINVAL`
/// for a stream that is closed or unknown (as brpc's `StreamWait` does).
/// Returns 0; `EINVAL` only for a NULL `on_writable`.
#[no_mangle]
pub unsafe extern "C" fn brpc_stream_wait_async(
    id: brpc_stream_id,
    timeout_ms: i64,
    on_writable: brpc_stream_writable_fn,
    arg: *mut c_void,
) -> c_int {
    let arg = SendPtr(arg);
    guard(|| {
        let Some(f) = on_writable else { return libc::EINVAL };
        stream::wait_async(
            id,
            timeout(timeout_ms),
            Box::new(move |outcome| {
                // SAFETY: the user's callback and argument.
                unsafe { f(id, arg.get(), c_code(outcome)) };
            }),
        );
        0
    })
}

/// Closes the stream: any number of times, from any thread or callback.
/// 0, or `EINVAL` once it is closing or gone. The peer gets CLOSE after
/// everything written before.
#[no_mangle]
pub unsafe extern "C" fn brpc_stream_close(id: brpc_stream_id) -> c_int {
    guard(|| c_code(stream::close(id)))
}

/// Streams not yet recycled, process-wide.
#[no_mangle]
pub extern "C" fn brpc_stream_live_count() -> usize {
    guard_value(0, stream::live_count)
}
