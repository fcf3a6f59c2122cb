//! baidu_std calls: the client [`Channel`], the [`Server`], and the
//! connection input that cuts PRPC frames off a socket and routes them.
//!
//! A call that sets streams up carries `stream_settings` in its request, and
//! its response may come back inside a STRM DATA frame addressed to the
//! client's stream; the client matches it by correlation id either way.

mod admission;
pub mod call_id;
pub mod cancel;
pub mod client;
mod cluster;
mod connections;
pub mod controller;
mod idle;
pub mod lb;
mod listen;
pub mod method_status;
pub mod naming;
pub mod server;
mod turns;

pub use admission::{
    BODY_MIN_RATE, DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_PARTIAL_REQUEST_BYTES, DEFAULT_MAX_STREAMS_PER_CONNECTION, MAX_UNANSWERED_BYTES_PER_CONNECTION,
    MAX_UNANSWERED_CALLS_PER_CONNECTION,
};
pub use client::{CallDone, CallOutcome, CallRequest, Channel, ChannelOptions, ConnectionType};
pub use controller::Controller;
pub use listen::system_max_backlog;
pub use method_status::{MethodSnapshot, MethodStatus, Percentiles};
pub use server::{
    Handler, HttpProgress, HttpService, Server, ServerCall, ServerOptions, ServerView, HTTP_REQUEST_TIMEOUT,
    JOIN_QUIET_GRACE,
};

use std::net::{SocketAddr, ToSocketAddrs};

use bytes::BytesMut;

use crate::error::Error;
use crate::protocol::{Cut, Cutter, Magic, RawFrame, RpcMessage, StreamFrame};

/// Resolves "host:port" (an IPv4 address or a host name such as
/// `localhost`), preferring IPv4 as brpc does; `EINVAL` (the resolver's
/// error as its cause) when it does not.
pub fn resolve(addr: &str) -> Result<SocketAddr, Error> {
    let invalid = || Error::new(libc::EINVAL, format!("\"{addr}\" is not a host:port that resolves"));
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|err| invalid().caused_by(err))?.collect();
    addrs.iter().find(|a| a.is_ipv4()).or_else(|| addrs.first()).copied().ok_or_else(invalid)
}

/// The RPC message a STRM DATA frame carries when it answers a call that set
/// streams up.
pub(crate) fn embedded_rpc(payload: bytes::Bytes) -> Option<RpcMessage> {
    let frame = RawFrame::from_embedded(payload).ok()?;
    RpcMessage::decode(&frame).ok()
}

/// Cuts every whole frame off a connection's read buffer: PRPC frames go to
/// `on_rpc`, STRM frames whose meta parses to `on_stream`; frames to drop
/// are logged. An error, returned by `on_rpc` or met cutting, is fatal for
/// the connection.
pub(crate) fn cut_frames(
    cutter: &mut Cutter,
    buf: &mut BytesMut,
    mut on_rpc: impl FnMut(RawFrame) -> Result<(), Error>,
    mut on_stream: impl FnMut(StreamFrame),
) -> Result<(), Error> {
    crate::runtime::serial::batch_starts(|| loop {
        match cutter.cut(buf) {
            Cut::Frame(frame) if frame.magic == Magic::Rpc => on_rpc(frame)?,
            Cut::Frame(frame) => match StreamFrame::decode(&frame) {
                Ok(frame) => on_stream(frame),
                Err(err) => log_warning!("dropped a stream frame whose meta does not parse: {err}"),
            },
            Cut::Dropped { magic, reason } => log_warning!("dropped a {} frame: {reason}", magic.name()),
            Cut::NeedMore { at_least } => {
                crate::socket::make_room(buf, at_least);
                return Ok(());
            }
            Cut::Fatal(error) => return Err(Error::new(error.code, error.text)),
        }
    })
}
