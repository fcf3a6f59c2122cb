//! The proto2 metas of baidu_std (`RpcMeta`) and of streaming frames
//! (`StreamFrameMeta`), as prost messages derived by hand from brpc's
//! `baidu_rpc_meta.proto` and `streaming_rpc_meta.proto`.
//!
//! Every proto2 `optional` scalar is an `Option` so that presence survives
//! a round trip: brpc writes a set-but-zero field (`compress_type: 0`,
//! `has_continuation: false`) and packing the same values again must give
//! the same bytes. prost generates a getter per optional field
//! (`meta.stream_id()`) that reads an absent field as its default.
//!
//! prost knows nothing of `required`; [`decode_rpc_meta`] and
//! [`decode_stream_meta`] check those fields afterwards, so a message
//! missing one is invalid, as it is for brpc's C++ parser. Unknown fields
//! (such as `chunk_info` = 6, which brpc never sends on streams) are
//! skipped.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use prost::Message;

/// `brpc.policy.RpcMeta`: the meta of every PRPC message.
#[derive(Clone, PartialEq, Message)]
pub struct RpcMeta {
    #[prost(message, optional, tag = "1")]
    pub request: Option<RpcRequestMeta>,
    #[prost(message, optional, tag = "2")]
    pub response: Option<RpcResponseMeta>,
    #[prost(int32, optional, tag = "3")]
    pub compress_type: Option<i32>,
    #[prost(int64, optional, tag = "4")]
    pub correlation_id: Option<i64>,
    /// Trailing bytes of the payload that are the attachment.
    #[prost(int32, optional, tag = "5")]
    pub attachment_size: Option<i32>,
    #[prost(bytes = "bytes", optional, tag = "7")]
    pub authentication_data: Option<Bytes>,
    #[prost(message, optional, tag = "8")]
    pub stream_settings: Option<StreamSettings>,
    /// Ordered so that packing is deterministic. prost leaves an empty key
    /// or value out of its map entry where C++ writes it; both read back
    /// the same.
    #[prost(btree_map = "string, string", tag = "9")]
    pub user_fields: BTreeMap<String, String>,
    #[prost(int32, optional, tag = "10")]
    pub content_type: Option<i32>,
    #[prost(int32, optional, tag = "11")]
    pub checksum_type: Option<i32>,
    #[prost(bytes = "bytes", optional, tag = "12")]
    pub checksum_value: Option<Bytes>,
    #[prost(bool, optional, tag = "13")]
    pub checksum_with_attachment: Option<bool>,
}

/// `brpc.policy.RpcRequestMeta`; `service_name` and `method_name` are
/// required.
#[derive(Clone, PartialEq, Message)]
pub struct RpcRequestMeta {
    #[prost(string, optional, tag = "1")]
    pub service_name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub method_name: Option<String>,
    #[prost(int64, optional, tag = "3")]
    pub log_id: Option<i64>,
    #[prost(int64, optional, tag = "4")]
    pub trace_id: Option<i64>,
    #[prost(int64, optional, tag = "5")]
    pub span_id: Option<i64>,
    #[prost(int64, optional, tag = "6")]
    pub parent_span_id: Option<i64>,
    #[prost(string, optional, tag = "7")]
    pub request_id: Option<String>,
    #[prost(int32, optional, tag = "8")]
    pub timeout_ms: Option<i32>,
}

/// `brpc.policy.RpcResponseMeta`.
#[derive(Clone, PartialEq, Message)]
pub struct RpcResponseMeta {
    #[prost(int32, optional, tag = "1")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub error_text: Option<String>,
}

/// `brpc.StreamSettings`: the streams a call sets up; `stream_id` is
/// required.
#[derive(Clone, PartialEq, Message)]
pub struct StreamSettings {
    #[prost(int64, optional, tag = "1")]
    pub stream_id: Option<i64>,
    #[prost(bool, optional, tag = "2")]
    pub need_feedback: Option<bool>,
    #[prost(bool, optional, tag = "3")]
    pub writable: Option<bool>,
    /// Further streams of the same call, paired by position with the
    /// peer's. Unpacked, as proto2 repeated fields are by default.
    #[prost(int64, repeated, packed = "false", tag = "4")]
    pub extra_stream_ids: Vec<i64>,
}

/// `brpc.FrameType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum FrameType {
    Unknown = 0,
    Rst = 1,
    Close = 2,
    Data = 3,
    Feedback = 4,
}

/// `brpc.StreamFrameMeta`: the meta of every STRM frame; `stream_id` (the
/// receiver's stream) is required.
#[derive(Clone, PartialEq, Message)]
pub struct StreamFrameMeta {
    #[prost(int64, optional, tag = "1")]
    pub stream_id: Option<i64>,
    #[prost(int64, optional, tag = "2")]
    pub source_stream_id: Option<i64>,
    /// A value outside [`FrameType`] reads as `FrameType::Unknown` through
    /// `frame_type()`, as an unknown enum value does in proto2.
    #[prost(enumeration = "FrameType", optional, tag = "3")]
    pub frame_type: Option<i32>,
    #[prost(bool, optional, tag = "4")]
    pub has_continuation: Option<bool>,
    #[prost(message, optional, tag = "5")]
    pub feedback: Option<Feedback>,
}

/// `brpc.Feedback`: cumulative bytes the receiver's handler consumed.
#[derive(Clone, PartialEq, Message)]
pub struct Feedback {
    #[prost(int64, optional, tag = "1")]
    pub consumed_size: Option<i64>,
}

/// Why a frame could not be turned into typed values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The meta bytes are not a valid protobuf of the expected message.
    Malformed { message: &'static str, detail: String },
    /// A proto2 `required` field is absent.
    MissingRequired { message: &'static str, field: &'static str },
    /// `attachment_size` is negative or larger than the payload.
    BadAttachmentSize { attachment_size: i32, payload_len: usize },
    /// Asked for one framing, found the other (or none).
    WrongMagic { expected: &'static str },
    /// An embedded frame (the RPC response inside a STRM DATA frame) whose
    /// header does not describe exactly the bytes given.
    BadEmbeddedFrame { detail: String },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed { message, detail } => {
                write!(f, "fail to parse {message}: {detail}")
            }
            DecodeError::MissingRequired { message, field } => {
                write!(f, "{message} lacks required field {field}")
            }
            DecodeError::BadAttachmentSize { attachment_size, payload_len } => {
                write!(f, "attachment_size={attachment_size} does not fit a payload of {payload_len} bytes")
            }
            DecodeError::WrongMagic { expected } => write!(f, "not a {expected} frame"),
            DecodeError::BadEmbeddedFrame { detail } => {
                write!(f, "bad embedded frame: {detail}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Parses an `RpcMeta` and checks the required fields of its parts.
pub fn decode_rpc_meta(bytes: Bytes) -> Result<RpcMeta, DecodeError> {
    let meta =
        RpcMeta::decode(bytes).map_err(|e| DecodeError::Malformed { message: "RpcMeta", detail: e.to_string() })?;
    if let Some(request) = &meta.request {
        require(&request.service_name, "RpcRequestMeta", "service_name")?;
        require(&request.method_name, "RpcRequestMeta", "method_name")?;
    }
    if let Some(settings) = &meta.stream_settings {
        require(&settings.stream_id, "StreamSettings", "stream_id")?;
    }
    Ok(meta)
}

/// Parses a `StreamFrameMeta` and checks that `stream_id` is present.
pub fn decode_stream_meta(bytes: Bytes) -> Result<StreamFrameMeta, DecodeError> {
    let meta = StreamFrameMeta::decode(bytes)
        .map_err(|e| DecodeError::Malformed { message: "StreamFrameMeta", detail: e.to_string() })?;
    require(&meta.stream_id, "StreamFrameMeta", "stream_id")?;
    Ok(meta)
}

fn require<T>(field: &Option<T>, message: &'static str, name: &'static str) -> Result<(), DecodeError> {
    match field {
        Some(_) => Ok(()),
        None => Err(DecodeError::MissingRequired { message, field: name }),
    }
}
