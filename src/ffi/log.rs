//! The logging entry points: where the library's messages and the C++
//! facade's `LOG(...)` lines go (`butil/logging.h` is built on these).

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_void, CStr};

use super::{guard, guard_value};
use crate::log::{self, Level};

/// A log sink: `level` is brpc's severity (-1 verbose, 0 info, 1 notice,
/// 2 warning, 3 error, 4 fatal), `file` a NUL-terminated path, `message`
/// `len` bytes without a trailing newline; all valid only during the call.
pub type brpc_log_sink = Option<
    extern "C" fn(level: c_int, file: *const c_char, line: c_int, message: *const u8, len: usize, user: *mut c_void),
>;

/// Sends every later message to `sink`, with `user` passed back; NULL
/// restores the default (one line per message on stderr, brpc's format).
/// The sink is called on any thread, possibly concurrently, and must not
/// log itself; `user` must stay valid until another sink replaces it.
#[no_mangle]
pub extern "C" fn brpc_log_set_sink(sink: brpc_log_sink, user: *mut c_void) {
    guard_value((), || log::set_sink(sink.map(|sink| (sink, user))))
}

/// Drops messages below `level` from now on (default 0, info).
#[no_mangle]
pub extern "C" fn brpc_log_set_min_level(level: c_int) {
    guard_value((), || log::set_min_level(Level::from_c(level)))
}

/// The current minimum level.
#[no_mangle]
pub extern "C" fn brpc_log_min_level() -> c_int {
    guard_value(Level::Info as c_int, || log::min_level() as c_int)
}

/// Writes one message: `file` is NULL or NUL-terminated, `message` points
/// to `len` bytes (NULL when `len` is 0); both are only read during the
/// call. Returns 0, or EINVAL for a NULL message with a non-zero length.
/// A message below the minimum level is dropped. Otherwise the same as
/// `brpc_log_write_at` without a function name.
#[no_mangle]
pub unsafe extern "C" fn brpc_log_write(
    level: c_int,
    file: *const c_char,
    line: c_int,
    message: *const u8,
    len: usize,
) -> c_int {
    if !log::enabled(Level::from_c(level)) {
        return 0;
    }
    // SAFETY: the same contract, and a NULL function name.
    unsafe { brpc_log_write_at(level, file, line, std::ptr::null(), message, len) }
}

/// Writes one message logged in function `func` (NULL or NUL-terminated;
/// the default line shows it after file:line, as brpc's does). `level` may
/// be below -1: `-n` is a `VLOG(n)` line, written as brpc writes it
/// (`V<n> `). A negative level is written whatever the minimum level: the
/// caller's verbosity check (`VLOG_IS_ON`) let it through, and as in brpc
/// the minimum level only holds `LOG`'s levels back (which the C++ `LOG`
/// checks before it builds the message). Otherwise as `brpc_log_write`.
#[no_mangle]
pub unsafe extern "C" fn brpc_log_write_at(
    level: c_int,
    file: *const c_char,
    line: c_int,
    func: *const c_char,
    message: *const u8,
    len: usize,
) -> c_int {
    guard(|| {
        if message.is_null() && len != 0 {
            return libc::EINVAL;
        }
        // A verbose line (VLOG) was let through by the caller's verbosity
        // check, as brpc's VLOG is: the minimum level is for LOG's levels.
        if level >= 0 && !log::enabled(Level::from_c(level)) {
            return 0;
        }
        // SAFETY: the caller passes NUL-terminated strings (or NULL) valid for the call.
        let text_of = |s: *const c_char| (!s.is_null()).then(|| unsafe { CStr::from_ptr(s) }.to_string_lossy());
        let file = text_of(file).unwrap_or(std::borrow::Cow::Borrowed("?"));
        let func = text_of(func).unwrap_or_default();
        let bytes: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: the caller passes `len` readable bytes at `message`.
            unsafe { std::slice::from_raw_parts(message, len) }
        };
        let text = String::from_utf8_lossy(bytes);
        log::write_from(level, &file, u32::try_from(line).unwrap_or(0), &func, &text);
        0
    })
}
