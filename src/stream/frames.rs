//! Packing the four STRM frames a stream sends. DATA carries a message;
//! CLOSE, RST and FEEDBACK carry none.

use bytes::{Bytes, BytesMut};

use prost::Message;

use crate::protocol::{pack_stream_header, Feedback, FrameType, RawFrame, StreamFrameMeta};
use crate::socket::Chunks;

fn pack(meta: &StreamFrameMeta, payload_len: usize) -> Result<Bytes, i32> {
    let mut out = BytesMut::new();
    pack_stream_header(&mut out, meta, payload_len).map_err(|e| e.code)?;
    Ok(out.freeze())
}

fn data_meta(remote: i64, local: i64) -> StreamFrameMeta {
    StreamFrameMeta {
        stream_id: Some(remote),
        source_stream_id: Some(local),
        frame_type: Some(FrameType::Data as i32),
        has_continuation: Some(false),
        feedback: None,
    }
}

/// Appends the header and meta of a DATA frame whose message of
/// `payload_len` bytes is to follow.
pub(super) fn append_data_header(out: &mut BytesMut, remote: i64, local: i64, payload_len: usize) -> Result<(), i32> {
    pack_stream_header(out, &data_meta(remote, local), payload_len).map_err(|e| e.code)
}

pub(super) fn close(remote: i64, local: i64) -> Result<Bytes, i32> {
    let meta = StreamFrameMeta {
        stream_id: Some(remote),
        source_stream_id: Some(local),
        frame_type: Some(FrameType::Close as i32),
        ..Default::default()
    };
    pack(&meta, 0)
}

/// RST names only the stream it resets: the sender has none.
pub(super) fn rst(remote: i64) -> Result<Bytes, i32> {
    let meta =
        StreamFrameMeta { stream_id: Some(remote), frame_type: Some(FrameType::Rst as i32), ..Default::default() };
    pack(&meta, 0)
}

/// FEEDBACK with the cumulative bytes this side's handler consumed.
pub(super) fn feedback(remote: i64, local: i64, consumed: u64) -> Result<Bytes, i32> {
    let meta = StreamFrameMeta {
        stream_id: Some(remote),
        source_stream_id: Some(local),
        frame_type: Some(FrameType::Feedback as i32),
        feedback: Some(Feedback { consumed_size: Some(consumed as i64) }),
        ..Default::default()
    };
    pack(&meta, 0)
}

/// A whole DATA frame for one message: small messages are copied behind
/// their header into one buffer, larger ones follow it uncopied.
pub(super) fn data_message(remote: i64, local: i64, parts: &[&[u8]], owned: Option<&[Bytes]>) -> Result<Chunks, i32> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    Ok(match owned {
        Some(payload) if len > COPY_LIMIT => {
            let mut chunks = Vec::with_capacity(1 + payload.len());
            chunks.push(pack(&data_meta(remote, local), len)?);
            chunks.extend(payload.iter().cloned());
            Chunks::from(chunks)
        }
        _ => {
            let meta = data_meta(remote, local);
            // Exactly the frame's size: freezing a full buffer allocates
            // nothing more, so a small frame costs one allocation.
            let mut frame = BytesMut::with_capacity(RawFrame::HEADER_LEN + meta.encoded_len() + len);
            pack_stream_header(&mut frame, &meta, len).map_err(|e| e.code)?;
            parts.iter().for_each(|p| frame.extend_from_slice(p));
            Chunks::One(frame.freeze())
        }
    })
}

/// Messages up to this size are copied next to their frame header.
pub(super) const COPY_LIMIT: usize = 2048;
