//! brpc's error numbers for C callers (the C++ facade has them as
//! `brpc::Errno` in `brpc/errno.h`). Literals, so cbindgen can print them;
//! a test keeps them equal to [`crate::errno`].

use std::ffi::c_int;

use crate::errno;

pub const BRPC_ENOSERVICE: c_int = 1001;
pub const BRPC_ENOMETHOD: c_int = 1002;
pub const BRPC_EREQUEST: c_int = 1003;
pub const BRPC_ERPCAUTH: c_int = 1004;
pub const BRPC_ERPCTIMEDOUT: c_int = 1008;
pub const BRPC_EFAILEDSOCKET: c_int = 1009;
pub const BRPC_EEOF: c_int = 1014;
pub const BRPC_EINTERNAL: c_int = 2001;
pub const BRPC_ERESPONSE: c_int = 2002;
pub const BRPC_ELOGOFF: c_int = 2003;

/// brpc's description of `code` (or the C library's for errno values) into
/// `buf[0..cap)`, NUL-terminated and truncated; returns the full length.
#[no_mangle]
pub unsafe extern "C" fn brpc_error_text(code: c_int, buf: *mut std::ffi::c_char, cap: usize) -> usize {
    super::guard_value(0, || {
        // SAFETY: writable for `cap` bytes or NULL, per the contract.
        unsafe { super::write_c_string(&errno::describe(code), buf, cap) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_constants_match_the_crate_numbers() {
        let pairs = [
            (BRPC_ENOSERVICE, errno::ENOSERVICE),
            (BRPC_ENOMETHOD, errno::ENOMETHOD),
            (BRPC_EREQUEST, errno::EREQUEST),
            (BRPC_ERPCAUTH, errno::ERPCAUTH),
            (BRPC_ERPCTIMEDOUT, errno::ERPCTIMEDOUT),
            (BRPC_EFAILEDSOCKET, errno::EFAILEDSOCKET),
            (BRPC_EEOF, errno::EEOF),
            (BRPC_EINTERNAL, errno::EINTERNAL),
            (BRPC_ERESPONSE, errno::ERESPONSE),
            (BRPC_ELOGOFF, errno::ELOGOFF),
        ];
        for (c, rust) in pairs {
            assert_eq!(c, rust);
        }
    }
}
