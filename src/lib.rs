//! brpc's Socket and Stream layer, in Rust, for C++ programs that link it in
//! place of brpc's own.
//!
//! Layers, bottom up; each uses only the ones above it in this list:
//! - [`id`]: the versioned, reference-counted registry behind SocketId.
//! - [`stats`]: live counters (alive objects, bytes, messages, failures).
//! - [`runtime`]: the epoll dispatcher, timers and worker threads.
//! - [`socket`]: fd ownership, connect, the write queue, reading, failing.
//! - [`protocol`]: PRPC and STRM framing, the protobuf metas, the cutter.
//! - [`ffi`]: the C ABI (`include/brpc_stream.h`) over all of the above.

pub mod errno;
pub mod id;
pub mod protocol;
pub mod rpc;
pub mod runtime;
pub mod socket;
pub mod stats;
pub mod stream;
mod sync;

pub mod ffi;
