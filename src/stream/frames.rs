//! Packing the four STRM frames a stream sends. DATA carries a message;
//! CLOSE, RST and FEEDBACK carry none.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};

use prost::Message;

use crate::error::Error;
use crate::protocol::{pack_stream_header, pack_stream_header_encoded, Feedback, FrameType, RawFrame, StreamFrameMeta};
use crate::socket::Chunks;

fn pack(meta: &StreamFrameMeta, payload_len: usize) -> Result<Bytes, Error> {
    let mut out = BytesMut::new();
    pack_stream_header(&mut out, meta, payload_len)?;
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

/// The encoded meta of a DATA frame from `local` to `remote`.
struct EncodedDataMeta {
    remote: i64,
    local: i64,
    /// Two varints of at most 10 bytes and two 2-byte fields fit in 28.
    bytes: [u8; 28],
    len: usize,
}

impl EncodedDataMeta {
    fn new(remote: i64, local: i64) -> Option<Self> {
        let meta = data_meta(remote, local);
        let mut encoded = EncodedDataMeta { remote, local, bytes: [0; 28], len: meta.encoded_len() };
        let mut into = encoded.bytes.get_mut(..encoded.len)?;
        meta.encode(&mut into).ok()?;
        Some(encoded)
    }

    fn bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

thread_local! {
    /// The DATA meta this thread encoded last. Every DATA frame of a stream
    /// has the same meta and a writer thread usually writes to one stream,
    /// so it is encoded once, not per message (callgrind: encoding it was a
    /// quarter of the instructions of a 64 B write).
    static LAST_DATA_META: RefCell<Option<EncodedDataMeta>> = const { RefCell::new(None) };
}

/// Runs `f` with the encoded meta of a DATA frame from `local` to `remote`.
fn with_data_meta<R>(remote: i64, local: i64, f: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
    let mut f = Some(f);
    let cached = LAST_DATA_META.try_with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        if !last.as_ref().is_some_and(|m| m.remote == remote && m.local == local) {
            *last = Some(EncodedDataMeta::new(remote, local)?);
        }
        Some(f.take()?(last.as_ref()?.bytes()))
    });
    if let Some(result) = cached.ok().flatten() {
        return Ok(result);
    }
    // Thread-local storage is being torn down: encode this one here.
    let (Some(meta), Some(f)) = (EncodedDataMeta::new(remote, local), f) else {
        return Err(Error::new(libc::EINVAL, "the DATA frame's meta could not be encoded"));
    };
    Ok(f(meta.bytes()))
}

/// Appends the header and meta of a DATA frame whose message of
/// `payload_len` bytes is to follow.
pub(super) fn append_data_header(out: &mut BytesMut, remote: i64, local: i64, payload_len: usize) -> Result<(), Error> {
    with_data_meta(remote, local, |meta| pack_stream_header_encoded(out, meta, payload_len))?.map_err(Error::from)
}

pub(super) fn close(remote: i64, local: i64) -> Result<Bytes, Error> {
    let meta = StreamFrameMeta {
        stream_id: Some(remote),
        source_stream_id: Some(local),
        frame_type: Some(FrameType::Close as i32),
        ..Default::default()
    };
    pack(&meta, 0)
}

/// RST names only the stream it resets: the sender has none.
pub(super) fn rst(remote: i64) -> Result<Bytes, Error> {
    let meta =
        StreamFrameMeta { stream_id: Some(remote), frame_type: Some(FrameType::Rst as i32), ..Default::default() };
    pack(&meta, 0)
}

/// FEEDBACK with the cumulative bytes this side's handler consumed.
pub(super) fn feedback(remote: i64, local: i64, consumed: u64) -> Result<Bytes, Error> {
    let meta = StreamFrameMeta {
        stream_id: Some(remote),
        source_stream_id: Some(local),
        frame_type: Some(FrameType::Feedback as i32),
        feedback: Some(Feedback { consumed_size: Some(consumed as i64) }),
        ..Default::default()
    };
    pack(&meta, 0)
}

/// How many DATA frames beyond the first a message of `len` bytes takes.
pub(super) fn extra_segments(len: usize) -> usize {
    segment_size_for(len).map_or(0, |max| len.div_ceil(max) - 1)
}

/// A whole DATA frame for one message: small messages are copied behind
/// their header into one buffer, larger ones follow it uncopied; one
/// longer than the maximum segment size goes as several frames.
pub(super) fn data_message(remote: i64, local: i64, parts: &[&[u8]], owned: Option<&[Bytes]>) -> Result<Chunks, Error> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if let Some(max) = segment_size_for(len) {
        let mut frames = BytesMut::new();
        append_segments(&mut frames, remote, local, parts, max)?;
        return Ok(Chunks::One(frames.freeze()));
    }
    Ok(match owned {
        Some(payload) if len > COPY_LIMIT => {
            let mut chunks = Vec::with_capacity(1 + payload.len());
            let header = with_data_meta(remote, local, |meta| {
                let mut header = BytesMut::with_capacity(RawFrame::HEADER_LEN + meta.len());
                pack_stream_header_encoded(&mut header, meta, len).map(|()| header.freeze())
            })??;
            chunks.push(header);
            chunks.extend(payload.iter().cloned());
            Chunks::from(chunks)
        }
        _ => {
            let frame = with_data_meta(remote, local, |meta| {
                // Exactly the frame's size: freezing a full buffer
                // allocates nothing more, so a small frame costs one
                // allocation.
                let mut frame = BytesMut::with_capacity(RawFrame::HEADER_LEN + meta.len() + len);
                pack_stream_header_encoded(&mut frame, meta, len)?;
                parts.iter().for_each(|p| frame.extend_from_slice(p));
                Ok::<Bytes, Error>(frame.freeze())
            })??;
            Chunks::One(frame)
        }
    })
}

/// The largest DATA payload a message is sent in (brpc's gflag
/// `stream_write_max_segment_size`, 512 MiB by default): a longer message
/// goes as several DATA frames, all but the last with `has_continuation`,
/// which the peer joins back into one message.
static MAX_SEGMENT_SIZE: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_SEGMENT_SIZE);

pub const DEFAULT_MAX_SEGMENT_SIZE: usize = 512 * 1024 * 1024;

/// Sets the maximum DATA payload for messages written from now on,
/// process-wide; `EINVAL` for 0 (brpc requires a positive size).
pub fn set_write_max_segment_size(size: u64) -> Result<(), Error> {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size == 0 {
        return Err(Error::new(libc::EINVAL, "the maximum segment size must be positive"));
    }
    MAX_SEGMENT_SIZE.store(size, Ordering::Release);
    Ok(())
}

pub fn write_max_segment_size() -> u64 {
    MAX_SEGMENT_SIZE.load(Ordering::Acquire) as u64
}

/// The segment size when a message of `len` bytes must be segmented.
pub(super) fn segment_size_for(len: usize) -> Option<usize> {
    let max = MAX_SEGMENT_SIZE.load(Ordering::Acquire);
    (len > max).then_some(max)
}

/// Appends a message as DATA frames of at most `max` payload bytes each;
/// returns how many. Copies the message: segmenting is the rare case of a
/// lowered maximum or a huge message.
pub(super) fn append_segments(
    out: &mut BytesMut,
    remote: i64,
    local: i64,
    parts: &[&[u8]],
    max: usize,
) -> Result<usize, Error> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut message = BytesMut::with_capacity(len);
    parts.iter().for_each(|p| message.extend_from_slice(p));
    let mut frames = 0;
    let mut rest = &message[..];
    while !rest.is_empty() {
        let (segment, after) = rest.split_at(rest.len().min(max.max(1)));
        let meta = StreamFrameMeta { has_continuation: Some(!after.is_empty()), ..data_meta(remote, local) };
        pack_stream_header(out, &meta, segment.len())?;
        out.extend_from_slice(segment);
        rest = after;
        frames += 1;
    }
    Ok(frames)
}

/// Messages up to this size are copied next to their frame header.
pub(super) const COPY_LIMIT: usize = 2048;

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use super::{append_segments, data_message};
    use crate::protocol::{Cut, Cutter, FrameType, Limits, StreamFrame};

    fn decode(chunks: crate::socket::Chunks) -> StreamFrame {
        let mut buf = BytesMut::new();
        chunks.iter().for_each(|c| buf.extend_from_slice(c));
        match Cutter::new(Limits::default()).cut(&mut buf) {
            Cut::Frame(frame) => StreamFrame::decode(&frame).unwrap(),
            other => panic!("not a frame: {other:?}"),
        }
    }

    #[test]
    fn data_frames_of_streams_written_in_turn_carry_their_own_ids() {
        let big = Bytes::from(vec![7u8; 5000]);
        for (remote, local) in [(1, 2), (300_000_000_000, 4), (1, 2), (1, 5), (-1, i64::MAX)] {
            let small = decode(data_message(remote, local, &[b"ab", b"c"], None).unwrap());
            let large = decode(data_message(remote, local, &[&big[..]], Some(std::slice::from_ref(&big))).unwrap());
            for (frame, payload) in [(small, &b"abc"[..]), (large, &big[..])] {
                assert_eq!(frame.meta.stream_id(), remote);
                assert_eq!(frame.meta.source_stream_id(), local);
                assert_eq!(frame.meta.frame_type(), FrameType::Data);
                assert!(!frame.meta.has_continuation());
                assert_eq!(&frame.payload[..], payload);
            }
        }
    }

    #[test]
    fn a_message_longer_than_the_segment_size_goes_as_continued_frames_that_join_back() {
        let mut out = BytesMut::new();
        let frames = append_segments(&mut out, 3, 4, &[b"abcd", b"efg"], 3).unwrap();
        assert_eq!(frames, 3);
        let mut cutter = Cutter::new(Limits::default());
        let mut seen = Vec::new();
        while let Cut::Frame(frame) = cutter.cut(&mut out) {
            let frame = StreamFrame::decode(&frame).unwrap();
            assert_eq!((frame.meta.stream_id(), frame.meta.source_stream_id()), (3, 4));
            assert_eq!(frame.meta.frame_type(), FrameType::Data);
            seen.push((frame.payload.to_vec(), frame.meta.has_continuation()));
        }
        assert!(out.is_empty());
        let expected = [(b"abc".to_vec(), true), (b"def".to_vec(), true), (b"g".to_vec(), false)];
        assert_eq!(seen, expected);
    }
}
