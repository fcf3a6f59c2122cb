//! baidu_std calls: the client [`Channel`], the [`Server`], and the
//! connection input that cuts PRPC frames off a socket and routes them.
//!
//! A call that sets streams up carries `stream_settings` in its request, and
//! its response may come back inside a STRM DATA frame addressed to the
//! client's stream; the client matches it by correlation id either way.

pub mod client;
pub mod controller;
pub mod server;

pub use client::{CallDone, CallOutcome, CallRequest, Channel, ChannelOptions};
pub use controller::Controller;
pub use server::{Handler, Server, ServerCall, ServerOptions};


use std::net::{SocketAddr, ToSocketAddrs};

use crate::protocol::{RawFrame, RpcMessage};

/// Resolves "host:port" (an IPv4 address or a host name such as
/// `localhost`), preferring IPv4 as brpc does.
pub fn resolve(addr: &str) -> Result<SocketAddr, i32> {
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|_| libc::EINVAL)?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or(libc::EINVAL)
}

/// The RPC message a STRM DATA frame carries when it answers a call that set
/// streams up.
pub(crate) fn embedded_rpc(payload: bytes::Bytes) -> Option<RpcMessage> {
    let frame = RawFrame::from_embedded(payload).ok()?;
    RpcMessage::decode(&frame).ok()
}
