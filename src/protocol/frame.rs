//! The 12-byte header shared by PRPC and STRM, packing frames into an
//! outgoing buffer, and turning a cut frame into typed values.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use super::meta::{decode_rpc_meta, decode_stream_meta, DecodeError, RpcMeta, StreamFrameMeta};

const RPC_MAGIC: [u8; 4] = *b"PRPC";
const STREAM_MAGIC: [u8; 4] = *b"STRM";

/// Which of the two framings a frame uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Magic {
    /// `PRPC`: an RPC request or response.
    Rpc,
    /// `STRM`: a stream frame.
    Stream,
}

impl Magic {
    pub fn bytes(self) -> [u8; 4] {
        match self {
            Magic::Rpc => RPC_MAGIC,
            Magic::Stream => STREAM_MAGIC,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Magic::Rpc => "PRPC",
            Magic::Stream => "STRM",
        }
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Magic> {
        if bytes == RPC_MAGIC {
            Some(Magic::Rpc)
        } else if bytes == STREAM_MAGIC {
            Some(Magic::Stream)
        } else {
            None
        }
    }

    /// Whether `partial` (shorter than 4 bytes) can still become a magic.
    pub(crate) fn could_start(partial: &[u8]) -> bool {
        RPC_MAGIC.starts_with(partial) || STREAM_MAGIC.starts_with(partial)
    }
}

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub magic: Option<Magic>,
    pub body_size: u32,
    pub meta_size: u32,
}

impl Header {
    /// `bytes` must hold at least [`RawFrame::HEADER_LEN`] bytes; `None` otherwise.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Header> {
        let header: &[u8; RawFrame::HEADER_LEN] = bytes.get(..RawFrame::HEADER_LEN)?.try_into().ok()?;
        let [m0, m1, m2, m3, b0, b1, b2, b3, s0, s1, s2, s3] = *header;
        Some(Header {
            magic: Magic::from_bytes(&[m0, m1, m2, m3]),
            body_size: u32::from_be_bytes([b0, b1, b2, b3]),
            meta_size: u32::from_be_bytes([s0, s1, s2, s3]),
        })
    }
}

/// One whole frame cut off a read buffer: the meta still encoded, the
/// payload (with any attachment) as a zero-copy slice of what was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawFrame {
    pub magic: Magic,
    pub meta: Bytes,
    pub payload: Bytes,
}

impl RawFrame {
    /// `magic[4] | body_size u32be | meta_size u32be` before every meta.
    pub const HEADER_LEN: usize = 12;

    /// Reads a frame packed whole inside `bytes`: brpc sends the RPC
    /// response that connects a stream as the payload of a STRM DATA frame
    /// (then [`RpcMessage::decode`] it). The header must describe exactly
    /// `bytes`.
    pub fn from_embedded(bytes: Bytes) -> Result<RawFrame, DecodeError> {
        let header = Header::parse(&bytes).ok_or_else(|| DecodeError::BadEmbeddedFrame {
            detail: format!("{} bytes cannot hold a header", bytes.len()),
        })?;
        let magic =
            header.magic.ok_or_else(|| DecodeError::BadEmbeddedFrame { detail: "unknown magic".to_string() })?;
        let body_size = header.body_size as usize;
        let meta_size = header.meta_size as usize;
        if bytes.len() - RawFrame::HEADER_LEN != body_size || meta_size > body_size {
            return Err(DecodeError::BadEmbeddedFrame {
                detail: format!("body_size={body_size} meta_size={meta_size} in {} bytes", bytes.len()),
            });
        }
        let meta_end = RawFrame::HEADER_LEN + meta_size;
        Ok(RawFrame { magic, meta: bytes.slice(RawFrame::HEADER_LEN..meta_end), payload: bytes.slice(meta_end..) })
    }

    /// The meta of a PRPC frame; fails for a STRM frame.
    pub fn decode_rpc(&self) -> Result<RpcMeta, DecodeError> {
        self.require_magic(Magic::Rpc)?;
        decode_rpc_meta(self.meta.clone())
    }

    /// The meta of a STRM frame; fails for a PRPC frame.
    pub fn decode_stream(&self) -> Result<StreamFrameMeta, DecodeError> {
        self.require_magic(Magic::Stream)?;
        decode_stream_meta(self.meta.clone())
    }

    fn require_magic(&self, magic: Magic) -> Result<(), DecodeError> {
        if self.magic == magic {
            Ok(())
        } else {
            Err(DecodeError::WrongMagic { expected: magic.name() })
        }
    }
}

/// A PRPC message with its payload split from its attachment by
/// `attachment_size`.
#[derive(Clone, Debug, PartialEq)]
pub struct RpcMessage {
    pub meta: RpcMeta,
    /// The serialized request or response protobuf.
    pub payload: Bytes,
    pub attachment: Bytes,
}

impl RpcMessage {
    /// A server answers an error here with `EREQUEST`, a client with
    /// `ERESPONSE` (brpc's codes for a request or response it cannot
    /// parse).
    pub fn decode(frame: &RawFrame) -> Result<RpcMessage, DecodeError> {
        let meta = frame.decode_rpc()?;
        let body = &frame.payload;
        let attachment_size = meta.attachment_size();
        let attachment_len = usize::try_from(attachment_size)
            .ok()
            .filter(|&len| len <= body.len())
            .ok_or(DecodeError::BadAttachmentSize { attachment_size, payload_len: body.len() })?;
        let split = body.len() - attachment_len;
        Ok(RpcMessage { payload: body.slice(..split), attachment: body.slice(split..), meta })
    }
}

/// A STRM frame with its meta decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamFrame {
    pub meta: StreamFrameMeta,
    pub payload: Bytes,
}

impl StreamFrame {
    /// The stream layer logs an error here and drops the frame.
    pub fn decode(frame: &RawFrame) -> Result<StreamFrame, DecodeError> {
        Ok(StreamFrame { meta: frame.decode_stream()?, payload: frame.payload.clone() })
    }
}

/// Why a frame could not be packed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackError {
    /// `EOVERFLOW`: the body does not fit the header's 32-bit size.
    /// Nothing is appended to `out` then.
    pub code: i32,
    pub text: String,
}

impl From<PackError> for crate::error::Error {
    fn from(error: PackError) -> Self {
        crate::error::Error::new(error.code, error.text)
    }
}

/// Appends the header and the encoded meta of a PRPC frame whose payload
/// (attachment included) is `payload_len` bytes; the caller sends the
/// payload after it, uncopied.
pub fn pack_rpc_header(out: &mut BytesMut, meta: &RpcMeta, payload_len: usize) -> Result<(), PackError> {
    pack_header(out, Magic::Rpc, meta, payload_len)
}

/// Appends the header and the encoded meta of a STRM frame whose payload
/// is `payload_len` bytes.
pub fn pack_stream_header(out: &mut BytesMut, meta: &StreamFrameMeta, payload_len: usize) -> Result<(), PackError> {
    pack_header(out, Magic::Stream, meta, payload_len)
}

/// A whole PRPC frame in `out`, payload copied: for small messages and
/// tests.
pub fn pack_rpc(out: &mut BytesMut, meta: &RpcMeta, payload: &[u8]) -> Result<(), PackError> {
    pack_rpc_header(out, meta, payload.len())?;
    out.extend_from_slice(payload);
    Ok(())
}

/// A whole STRM frame in `out`, payload copied: for control frames
/// (CLOSE, RST, FEEDBACK carry none) and tests.
pub fn pack_stream(out: &mut BytesMut, meta: &StreamFrameMeta, payload: &[u8]) -> Result<(), PackError> {
    pack_stream_header(out, meta, payload.len())?;
    out.extend_from_slice(payload);
    Ok(())
}

/// [`pack_stream_header`] with the meta already encoded (`encoded_meta`),
/// for a sender that packs many frames with the same meta.
pub fn pack_stream_header_encoded(
    out: &mut BytesMut,
    encoded_meta: &[u8],
    payload_len: usize,
) -> Result<(), PackError> {
    put_header(out, Magic::Stream, encoded_meta.len(), payload_len)?;
    out.put_slice(encoded_meta);
    Ok(())
}

fn pack_header(out: &mut BytesMut, magic: Magic, meta: &impl Message, payload_len: usize) -> Result<(), PackError> {
    let meta_len = meta.encoded_len();
    put_header(out, magic, meta_len, payload_len)?;
    // A BytesMut grows on demand, so this only fails if memory is gone.
    meta.encode(out)
        .map_err(|e| PackError { code: libc::ENOMEM, text: format!("fail to encode the {} meta: {e}", magic.name()) })
}

/// The 12-byte header of a frame whose meta of `meta_len` bytes follows,
/// with room reserved for that meta.
fn put_header(out: &mut BytesMut, magic: Magic, meta_len: usize, payload_len: usize) -> Result<(), PackError> {
    let sizes = meta_len
        .checked_add(payload_len)
        .and_then(|body_len| Some((u32::try_from(body_len).ok()?, u32::try_from(meta_len).ok()?)));
    let Some((body_size, meta_size)) = sizes else {
        return Err(PackError {
            code: libc::EOVERFLOW,
            text: format!("a {} body of {meta_len}+{payload_len} bytes does not fit in 32 bits", magic.name()),
        });
    };
    out.reserve(RawFrame::HEADER_LEN + meta_len);
    out.put_slice(&magic.bytes());
    out.put_u32(body_size);
    out.put_u32(meta_size);
    Ok(())
}
