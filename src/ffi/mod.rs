//! The C ABI: thin `extern "C"` functions over the safe core, in the style of
//! rustls-ffi. Every function catches panics (a panic becomes `EINTERNAL`),
//! returns an errno-style `int`, and documents who owns each pointer.
//! cbindgen turns this module into `include/brpc_stream.h`.
//!
//! Safety, for every function here: each pointer argument is NULL or valid
//! for what its doc comment says (readable, writable, a live handle from
//! this library that was not released), for the duration of the call unless
//! the comment says longer. The functions check for NULL; the rest is the
//! caller's promise, as in any C API.
#![allow(clippy::missing_safety_doc)]

pub mod errors;
pub mod etcd;
pub mod log;
pub mod rpc;
pub mod runtime;
pub mod socket;
pub mod stats;
pub mod stream;

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::errno;
use crate::error::Error;

/// Most streams one call may set up (`brpc_stream_create`'s `n`, the ids
/// `brpc_stream_accept` can return); a request asking for more is answered
/// with `EREQUEST` before its method runs.
pub const BRPC_MAX_STREAMS_PER_CALL: usize = 1024;
const _: () = assert!(BRPC_MAX_STREAMS_PER_CALL == crate::stream::MAX_STREAMS_PER_CALL);

/// Runs `f`, turning a panic into `EINTERNAL` so none crosses into C.
pub(crate) fn guard(f: impl FnOnce() -> i32) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(code) => code,
        Err(_) => {
            log_error!("internal error: a panic was caught at the C boundary");
            errno::EINTERNAL
        }
    }
}

/// A result as C has it: 0, or the error's number. Where an [`Error`]
/// becomes a C `int` (its text reaches C only through the error-text
/// getters).
pub(crate) fn c_code<E: Into<Error>>(result: Result<(), E>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(error) => error.into().code(),
    }
}

/// Like [`guard`] for functions returning a value: `fallback` on panic.
pub(crate) fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log_error!("internal error: a panic was caught at the C boundary");
        fallback
    })
}

/// Writes `make()` to `*out` under the panic guard; NULL is ignored. The
/// `*_options_init` functions.
///
/// # Safety
/// `out` is NULL or valid for writing a `T`.
pub(crate) unsafe fn write_out<T>(out: *mut T, make: impl FnOnce() -> T) {
    guard_value((), || {
        if !out.is_null() {
            // SAFETY: per this function's contract, checked non-null.
            unsafe { out.write(make()) }
        }
    })
}

/// Frees a handle this library boxed for C. NULL is ignored; a panic in
/// the value's drop is contained like any other.
///
/// # Safety
/// `handle` is NULL or came from `Box::into_raw` of a `T`, and is freed once.
pub(crate) unsafe fn free_boxed<T>(handle: *mut T) {
    guard_value((), || {
        if !handle.is_null() {
            // SAFETY: per this function's contract.
            drop(unsafe { Box::from_raw(handle) });
        }
    })
}

/// A C callback's context pointer, moved to the thread that calls back.
/// The C side promises the pointee may be used from any thread.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut std::ffi::c_void);

impl SendPtr {
    /// The pointer; a method so closures capture the whole `SendPtr`.
    pub(crate) fn get(self) -> *mut std::ffi::c_void {
        self.0
    }
}

// SAFETY: the pointer is only handed back to C code, which documents that
// its callbacks may run on library threads.
unsafe impl Send for SendPtr {}
// SAFETY: as for Send: the pointee is only used by C code, which allows it.
unsafe impl Sync for SendPtr {}

/// Copies a Rust string into a C buffer of `cap` bytes, NUL-terminated and
/// truncated to fit; returns the full length (like snprintf). NULL or 0
/// bytes: nothing is written.
///
/// # Safety
/// `buf` is NULL or valid for writing `cap` bytes.
pub(crate) unsafe fn write_c_string(text: &str, buf: *mut std::ffi::c_char, cap: usize) -> usize {
    if !buf.is_null() && cap > 0 {
        let n = text.len().min(cap - 1);
        // SAFETY: `buf` is writable for `cap` > `n` bytes (this function's contract).
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr().cast(), buf, n);
            *buf.add(n) = 0;
        }
    }
    text.len()
}

/// A C string as an owned Rust string ("" for NULL; invalid UTF-8 replaced).
///
/// # Safety
/// `text` is NULL or a NUL-terminated string readable during the call.
pub(crate) unsafe fn c_string(text: *const std::ffi::c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: a NUL-terminated string (this function's contract), not NULL.
    unsafe { std::ffi::CStr::from_ptr(text) }.to_string_lossy().into_owned()
}

/// The buffers of the `iovcnt` iovecs at `iov`, leaving out empty ones and
/// those whose base is NULL; none for a NULL `iov` or a count <= 0. The
/// one place a C scatter list becomes slices.
///
/// # Safety
/// `iov` is NULL or points to `iovcnt` readable iovecs, each buffer NULL or
/// readable for `iov_len` bytes, all of it unchanged for `'a`.
pub(crate) unsafe fn iovec_slices<'a>(
    iov: *const libc::iovec,
    iovcnt: std::ffi::c_int,
) -> impl Iterator<Item = &'a [u8]> + Clone {
    let iovs: &'a [libc::iovec] = match (iov.is_null(), usize::try_from(iovcnt)) {
        // SAFETY: `iovcnt` readable iovecs for `'a` (this function's contract).
        (false, Ok(count)) => unsafe { std::slice::from_raw_parts(iov, count) },
        _ => &[],
    };
    iovs.iter().filter(|v| !v.iov_base.is_null() && v.iov_len > 0).map(|v| {
        // SAFETY: a non-NULL buffer readable for `iov_len` bytes for `'a`
        // (this function's contract).
        unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) }
    })
}

/// Runs a C callback on the worker pool (user code never runs on the
/// dispatcher or timer threads).
pub(crate) fn on_worker(task: impl FnOnce() + Send + 'static) {
    crate::runtime::spawn_or_run(task)
}

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;

    use super::rpc::{brpc_channel_options_init, brpc_server_options_init};
    use super::socket::brpc_socket_options_init;
    use super::stream::brpc_stream_options_init;

    #[test]
    fn options_init_fills_the_defaults_and_ignores_null() {
        // SAFETY: NULL, or a struct of the right type to write.
        unsafe {
            brpc_channel_options_init(std::ptr::null_mut());
            brpc_server_options_init(std::ptr::null_mut());
            brpc_socket_options_init(std::ptr::null_mut());
            brpc_stream_options_init(std::ptr::null_mut());
            let mut channel = MaybeUninit::uninit();
            brpc_channel_options_init(channel.as_mut_ptr());
            assert_eq!(channel.assume_init().max_retry, 3);
            let mut server = MaybeUninit::uninit();
            brpc_server_options_init(server.as_mut_ptr());
            assert!(server.assume_init().has_builtin_services);
            let mut socket = MaybeUninit::uninit();
            brpc_socket_options_init(socket.as_mut_ptr());
            assert_eq!(socket.assume_init().fd, -1);
            let mut stream = MaybeUninit::uninit();
            brpc_stream_options_init(stream.as_mut_ptr());
            assert_eq!(stream.assume_init().idle_timeout_ms, -1);
        }
    }
}
