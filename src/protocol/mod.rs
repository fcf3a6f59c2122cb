//! brpc's two framings on one TCP connection, `PRPC` (baidu_std RPC) and
//! `STRM` (stream frames):
//!
//! ```text
//! magic[4] | body_size u32be | meta_size u32be | meta[meta_size] | payload[body_size - meta_size]
//! ```
//!
//! - [`meta`]: the protobuf metas (`RpcMeta`, `StreamFrameMeta`, ...) and
//!   their checked decoders.
//! - [`frame`]: packing a header and meta straight into the outgoing
//!   buffer ([`pack_rpc_header`], [`pack_stream_header`]: the payload is
//!   sent after it as its own `Bytes`, never copied), and typed views of a
//!   cut frame ([`RpcMessage`], [`StreamFrame`]).
//! - [`cutter`]: [`Cutter::cut`] over the socket's `BytesMut` read buffer.
//! - [`body`]: a message body's compression and checksum ([`encode_body`],
//!   [`decode_body`]), RpcMeta fields 3 and 11–13.
//!
//! Reading a connection:
//!
//! ```
//! use brpc_stream::protocol::{Cut, Cutter, Limits, Magic, RpcMessage, StreamFrame};
//! # let mut read_buf = bytes::BytesMut::new();
//! let mut cutter = Cutter::new(Limits::default());
//! loop {
//!     match cutter.cut(&mut read_buf) {
//!         Cut::Frame(frame) if frame.magic == Magic::Stream => {
//!             // Err: log it and drop the frame.
//!             let _ = StreamFrame::decode(&frame);
//!         }
//!         Cut::Frame(frame) => {
//!             // Err: fail the call, EREQUEST on a server, ERESPONSE on a client.
//!             let _ = RpcMessage::decode(&frame);
//!         }
//!         Cut::Dropped { .. } => continue, // log the reason
//!         Cut::NeedMore { at_least } => { read_buf.reserve(at_least); break; }
//!         Cut::Fatal(error) => { /* fail the connection with error.code, error.text */ break; }
//!     }
//! }
//! ```
//!
//! Limits and outcomes, as brpc has them:
//!
//! | input | outcome |
//! | --- | --- |
//! | fewer than 12 bytes, a prefix of `PRPC`/`STRM` | `NeedMore` |
//! | anything else where a magic should be | `Fatal`, `EINVAL` (`UnknownMagic`) |
//! | `body_size > max_body_size` (64 MiB default) | `Fatal`, `EINVAL` (`BodyTooBig`), seen from the header alone |
//! | `meta_size > body_size` | `Dropped` once the whole body is in |
//! | meta not a valid protobuf, or a required field absent | `DecodeError` from the typed decoders |
//! | body of zero bytes | a `Frame` with empty meta and payload (a STRM one then lacks `stream_id`) |
//!
//! Since a frame is only handed out whole, a connection buffers at most
//! `12 + max_body_size` bytes plus one read beyond a frame boundary.
//!
//! Divergences from brpc's C++ protobuf: string fields must be UTF-8 (prost
//! checks, so a non-UTF-8 `error_text` makes the meta invalid), and an
//! empty key or value of `user_fields` is left out of its map entry (C++
//! writes it; either form reads back the same).

// Nothing here is part of the C ABI: keep cbindgen from exporting the
// constants.
/// cbindgen:ignore
pub mod body;
/// cbindgen:ignore
pub mod cutter;
/// cbindgen:ignore
pub mod frame;
/// cbindgen:ignore
pub mod meta;

pub use body::{decode_body, encode_body, BodyCoding, BodyError, Compression};
pub use cutter::{Cut, Cutter, DropReason, FatalError, FatalKind, Limits};
pub use frame::{
    pack_rpc, pack_rpc_header, pack_stream, pack_stream_header, pack_stream_header_encoded, Magic, PackError, RawFrame,
    RpcMessage, StreamFrame,
};
pub use meta::{
    decode_rpc_meta, decode_stream_meta, DecodeError, Feedback, FrameType, RpcMeta, RpcRequestMeta, RpcResponseMeta,
    StreamFrameMeta, StreamSettings,
};
