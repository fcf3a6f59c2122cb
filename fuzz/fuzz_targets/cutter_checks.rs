//! The checks behind the `cutter` fuzz target, shared with the regression
//! test that replays every input the fuzzer ever failed on
//! (`tests/protocol_fuzz_regressions.rs`). Bytes from a peer, read in
//! arbitrary pieces: the cutter and the meta decoders must never panic,
//! must hand out the same outcomes whatever the read boundaries, and what
//! decodes must re-encode to an equal value.

use bytes::{Bytes, BytesMut};
use prost::Message;

use brpc_stream::protocol::{
    decode_rpc_meta, decode_stream_meta, Cut, Cutter, FatalError, Limits, Magic, RawFrame, RpcMessage, StreamFrame,
};

// Small enough that the fuzzer reaches the oversize path.
const MAX_BODY: usize = 4096;

/// The first byte picks the read sizes, the rest is what the peer sent.
pub fn check_input(data: &[u8]) {
    let Some((&split_seed, stream)) = data.split_first() else {
        return;
    };
    let whole = cut_all(stream, &[stream.len().max(1)]);
    // Read sizes from 1 to 16 bytes, varied by the seed.
    let sizes: Vec<usize> = (0..8).map(|i| 1 + ((split_seed as usize >> (i % 4)) + i) % 16).collect();
    let pieces = cut_all(stream, &sizes);
    assert_eq!(
        whole.iter().map(comparable).collect::<Vec<_>>(),
        pieces.iter().map(comparable).collect::<Vec<_>>(),
        "outcome depends on read boundaries"
    );

    for outcome in &whole {
        if let Cut::Frame(frame) = outcome {
            check_frame(frame);
        }
    }
    // The decoders on their own, over raw bytes.
    check_rpc_meta(Bytes::copy_from_slice(stream));
    check_stream_meta(Bytes::copy_from_slice(stream));
    if let Ok(frame) = RawFrame::from_embedded(Bytes::copy_from_slice(stream)) {
        check_frame(&frame);
    }
}

/// The outcome without a fatal error's text, which quotes however many
/// bytes of the bad magic had arrived.
fn comparable(cut: &Cut) -> Cut {
    match cut {
        Cut::Fatal(error) => Cut::Fatal(FatalError { text: String::new(), ..error.clone() }),
        other => other.clone(),
    }
}

/// Feeds `stream` to a cutter in reads of the given sizes (cycled) and
/// returns every outcome except `NeedMore`, stopping at the first fatal.
fn cut_all(stream: &[u8], read_sizes: &[usize]) -> Vec<Cut> {
    let mut cutter = Cutter::new(Limits { max_body_size: MAX_BODY });
    let mut buf = BytesMut::new();
    let mut outcomes = Vec::new();
    let mut offset = 0;
    let mut sizes = read_sizes.iter().cycle();
    while offset < stream.len() {
        let size = sizes.next().copied().unwrap_or(1).min(stream.len() - offset);
        buf.extend_from_slice(&stream[offset..offset + size]);
        offset += size;
        loop {
            match cutter.cut(&mut buf) {
                Cut::NeedMore { at_least } => {
                    assert!(at_least > 0);
                    assert!(buf.len() + at_least <= 12 + MAX_BODY);
                    break;
                }
                fatal @ Cut::Fatal(_) => {
                    assert_eq!(cutter.cut(&mut buf), fatal, "fatal must stick");
                    outcomes.push(fatal);
                    return outcomes;
                }
                other => outcomes.push(other),
            }
        }
    }
    outcomes
}

fn check_frame(frame: &RawFrame) {
    match frame.magic {
        Magic::Rpc => {
            check_rpc_meta(frame.meta.clone());
            if let Ok(message) = RpcMessage::decode(frame) {
                assert_eq!(message.payload.len() + message.attachment.len(), frame.payload.len());
            }
            assert!(frame.decode_stream().is_err());
        }
        Magic::Stream => {
            check_stream_meta(frame.meta.clone());
            let _ = StreamFrame::decode(frame);
            assert!(frame.decode_rpc().is_err());
            if frame.payload.starts_with(b"PRPC") {
                if let Ok(inner) = RawFrame::from_embedded(frame.payload.clone()) {
                    check_rpc_meta(inner.meta.clone());
                }
            }
        }
    }
}

fn check_rpc_meta(bytes: Bytes) {
    if let Ok(meta) = decode_rpc_meta(bytes) {
        let again = decode_rpc_meta(meta.encode_to_vec().into());
        assert_eq!(again.as_ref(), Ok(&meta), "RpcMeta does not round-trip");
    }
}

fn check_stream_meta(bytes: Bytes) {
    if let Ok(meta) = decode_stream_meta(bytes) {
        let again = decode_stream_meta(meta.encode_to_vec().into());
        assert_eq!(again.as_ref(), Ok(&meta), "StreamFrameMeta does not round-trip");
    }
}
