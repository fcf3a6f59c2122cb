//! brpc's Socket and Stream layer, in Rust, for C++ programs that link it in
//! place of brpc's own.
//!
//! Layers, bottom up; each uses only the ones above it in this list:
//! - [`log`]: the one logging path (level, program-set sink, brpc's format).
//! - [`errno`]: brpc's error numbers and their texts.
//! - [`error`]: [`Error`], the code, text and cause every layer from the
//!   socket up returns (a C `int` only in `ffi`).
//! - `sync`: the atomics the lock-free parts use (loom's under `--cfg brpc_loom`).
//! - [`id`]: the versioned, reference-counted registry behind SocketId.
//! - [`stats`]: live counters (alive objects, bytes, messages, failures).
//! - [`runtime`]: the epoll dispatcher, timers and worker threads.
//! - [`socket`]: fd ownership, connect, the write queue, reading, failing.
//! - [`protocol`]: PRPC and STRM framing, the protobuf metas, the cutter.
//! - [`stream`]: the stream state machine, flow control, delivery, closing.
//! - [`etcd`]: an etcd v3 client (JSON gateway) for discovery and registration.
//! - [`rpc`]: channels and calls (connections, retries, naming services,
//!   load balancers), the server (dispatch, limits, stop and join) and the
//!   call that sets up streams.
//! - [`portal`]: brpc's builtin HTTP pages on a server's port (over `rpc` and `stats`).
//! - [`ffi`]: the C ABI (`include/brpc_stream.h`) over all of the above: the
//!   one panic guard and the one place an [`Error`] becomes a C `int`.

#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unsafe_op_in_unsafe_fn)]

#[macro_use]
pub mod log;
pub mod errno;
pub mod error;
pub mod etcd;
pub mod id;
pub mod portal;
pub mod protocol;
pub mod rpc;
pub mod runtime;
pub mod socket;
pub mod stats;
pub mod stream;
mod sync;

pub mod ffi;

pub use error::Error;
