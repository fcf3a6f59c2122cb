//! The I/O threads: how many event loops read the process's connections
//! (brpc's `-event_dispatcher_num`).

use std::ffi::c_int;

use super::{c_code, guard, guard_value};
use crate::error::Error;
use crate::runtime;

/// Sets how many I/O threads (event loops) read the process's connections,
/// as brpc's `-event_dispatcher_num` flag: 1 to 64. Effective only before
/// the library's first server, channel, stream or socket starts them: 0
/// then. `EPERM` once they run (connections are already on the loops),
/// `EINVAL` out of range; either refusal is logged with its reason and
/// leaves the count as it was.
/// Unset, the environment variable `BRPC_STREAM_EVENT_DISPATCHERS` says,
/// else one per two cores, from 1 to 4. A connection stays on one loop;
/// new ones go to the loop with the fewest.
#[no_mangle]
pub extern "C" fn brpc_set_event_dispatcher_num(num: c_int) -> c_int {
    guard(|| {
        let result = match usize::try_from(num) {
            Ok(loops) => runtime::set_event_loops(loops),
            Err(_) => Err(Error::new(libc::EINVAL, format!("event_dispatcher_num={num} is not positive"))),
        };
        if let Err(error) = &result {
            log_error!("brpc_set_event_dispatcher_num: {}", error.text());
        }
        c_code(result)
    })
}

/// The I/O threads (event loops) running now, or, before they start, how
/// many will (`brpc_set_event_dispatcher_num`, else the environment's,
/// else the default).
#[no_mangle]
pub extern "C" fn brpc_event_dispatcher_num() -> c_int {
    guard_value(0, || c_int::try_from(runtime::event_loops()).unwrap_or(c_int::MAX))
}
