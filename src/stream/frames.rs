//! Packing the four STRM frames a stream sends. DATA carries a message;
//! CLOSE, RST and FEEDBACK carry none.

use bytes::{Bytes, BytesMut};

use crate::protocol::{pack_stream_header, Feedback, FrameType, StreamFrameMeta};

fn pack(meta: &StreamFrameMeta, payload_len: usize) -> Result<Bytes, i32> {
    let mut out = BytesMut::new();
    pack_stream_header(&mut out, meta, payload_len).map_err(|e| e.code)?;
    Ok(out.freeze())
}

/// The header and meta of a DATA frame; the message follows it uncopied.
pub(super) fn data(remote: i64, local: i64, payload_len: usize) -> Result<Bytes, i32> {
    let meta = StreamFrameMeta {
        stream_id: Some(remote),
        source_stream_id: Some(local),
        frame_type: Some(FrameType::Data as i32),
        has_continuation: Some(false),
        feedback: None,
    };
    pack(&meta, payload_len)
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
    let meta = StreamFrameMeta { stream_id: Some(remote), frame_type: Some(FrameType::Rst as i32), ..Default::default() };
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
