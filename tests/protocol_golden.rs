//! Every capture in the shared wire directory cuts into exactly the frames
//! its `.txt` listing (decode.py's output) shows, with the same field
//! values, whatever the read boundaries; packing those values again gives
//! the same bytes.
//!
//! The captures are read from `$BRPC_WIRE_DIR` when it is set, else from
//! `$CARGO_MANIFEST_DIR/../shared/wire` or `/work/shared/wire`; the tests
//! fail when there are none.

use std::fmt::Write as _;
use std::fs;

use brpc_stream::protocol::{
    pack_rpc_header, pack_stream, pack_stream_header, Cut, Cutter, FrameType, Limits, Magic, RawFrame, RpcMessage,
    RpcMeta, StreamFrame, StreamFrameMeta,
};
use bytes::{Bytes, BytesMut};

mod common;
use common::wire_dir;

fn captures() -> Vec<(String, Vec<u8>, String)> {
    let dir = wire_dir();
    let mut found = Vec::new();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "bin") {
            let listing = fs::read_to_string(path.with_extension("txt"))
                .unwrap_or_else(|e| panic!("{}: no listing beside it: {e}", path.display()));
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            found.push((name, fs::read(&path).unwrap(), listing));
        }
    }
    found.sort();
    assert!(found.len() >= 10, "expected the ten captures in {}", dir.display());
    found
}

/// Cuts `bytes` fed in reads of `read_size` bytes; every outcome must be a
/// frame.
fn cut_in_reads(bytes: &[u8], read_size: usize) -> Vec<RawFrame> {
    let mut cutter = Cutter::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in bytes.chunks(read_size) {
        buf.extend_from_slice(chunk);
        loop {
            match cutter.cut(&mut buf) {
                Cut::Frame(frame) => frames.push(frame),
                Cut::NeedMore { at_least } => {
                    assert!(at_least > 0);
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(buf.is_empty(), "{} trailing bytes", buf.len());
    frames
}

// decode.py prints Python reprs; these render the decoded values the same
// way, so a listing compares line for line.

fn py_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::from(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(out, "\\x{:02x}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

fn py_bytes(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') { b'"' } else { b'\'' };
    let mut out = format!("b{}", quote as char);
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c as char);
            }
            0x20..=0x7e => out.push(c as char),
            c => write!(out, "\\x{c:02x}").unwrap(),
        }
    }
    out.push(quote as char);
    out
}

fn show(payload: &[u8]) -> String {
    if payload.len() <= 64 {
        py_bytes(payload)
    } else {
        format!("{}...({} bytes)", py_bytes(&payload[..32]), payload.len())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn dict(entries: Vec<(&str, String)>) -> String {
    let items: Vec<String> = entries.into_iter().map(|(k, v)| format!("{}: {v}", py_str(k))).collect();
    format!("{{{}}}", items.join(", "))
}

fn push<T: ToString>(entries: &mut Vec<(&'static str, String)>, name: &'static str, v: &Option<T>) {
    if let Some(v) = v {
        entries.push((name, v.to_string()));
    }
}

fn push_bool(entries: &mut Vec<(&'static str, String)>, name: &'static str, v: Option<bool>) {
    push(entries, name, &v.map(u8::from));
}

fn stream_dict(meta: &StreamFrameMeta) -> String {
    let mut e = Vec::new();
    push(&mut e, "stream_id", &meta.stream_id);
    push(&mut e, "source_stream_id", &meta.source_stream_id);
    let type_name = |v: i32| match FrameType::try_from(v) {
        Ok(FrameType::Unknown) => py_str("UNKNOWN"),
        Ok(FrameType::Rst) => py_str("RST"),
        Ok(FrameType::Close) => py_str("CLOSE"),
        Ok(FrameType::Data) => py_str("DATA"),
        Ok(FrameType::Feedback) => py_str("FEEDBACK"),
        Err(_) => v.to_string(),
    };
    if let Some(v) = meta.frame_type {
        e.push(("frame_type", type_name(v)));
    }
    push_bool(&mut e, "has_continuation", meta.has_continuation);
    if let Some(feedback) = &meta.feedback {
        let mut f = Vec::new();
        push(&mut f, "consumed_size", &feedback.consumed_size);
        e.push(("feedback", dict(f)));
    }
    // decode.py adds the frame type last when the meta lacks it.
    if meta.frame_type.is_none() {
        e.push(("frame_type", type_name(0)));
    }
    dict(e)
}

fn rpc_dict(meta: &RpcMeta) -> String {
    let mut e = Vec::new();
    if let Some(r) = &meta.request {
        let mut q = Vec::new();
        push(&mut q, "service_name", &r.service_name.as_deref().map(py_str));
        push(&mut q, "method_name", &r.method_name.as_deref().map(py_str));
        push(&mut q, "log_id", &r.log_id);
        push(&mut q, "trace_id", &r.trace_id);
        push(&mut q, "span_id", &r.span_id);
        push(&mut q, "parent_span_id", &r.parent_span_id);
        push(&mut q, "request_id", &r.request_id.as_deref().map(py_str));
        push(&mut q, "timeout_ms", &r.timeout_ms);
        e.push(("request", dict(q)));
    }
    if let Some(r) = &meta.response {
        let mut q = Vec::new();
        push(&mut q, "error_code", &r.error_code);
        push(&mut q, "error_text", &r.error_text.as_deref().map(py_str));
        e.push(("response", dict(q)));
    }
    push(&mut e, "compress_type", &meta.compress_type);
    push(&mut e, "correlation_id", &meta.correlation_id);
    push(&mut e, "attachment_size", &meta.attachment_size);
    push(&mut e, "authentication_data", &meta.authentication_data.as_deref().map(|b| py_str(&hex(b))));
    if let Some(s) = &meta.stream_settings {
        let mut q = Vec::new();
        push(&mut q, "stream_id", &s.stream_id);
        push_bool(&mut q, "need_feedback", s.need_feedback);
        push_bool(&mut q, "writable", s.writable);
        if !s.extra_stream_ids.is_empty() {
            let ids: Vec<String> = s.extra_stream_ids.iter().map(i64::to_string).collect();
            q.push(("extra_stream_ids", format!("[{}]", ids.join(", "))));
        }
        e.push(("stream_settings", dict(q)));
    }
    if !meta.user_fields.is_empty() {
        let entries: Vec<String> =
            meta.user_fields.iter().map(|(k, v)| dict(vec![("key", py_str(k)), ("value", py_str(v))])).collect();
        e.push(("user_fields", format!("[{}]", entries.join(", "))));
    }
    push(&mut e, "content_type", &meta.content_type);
    push(&mut e, "checksum_type", &meta.checksum_type);
    push(&mut e, "checksum_value", &meta.checksum_value.as_deref().map(|b| py_str(&hex(b))));
    push_bool(&mut e, "checksum_with_attachment", meta.checksum_with_attachment);
    dict(e)
}

/// decode.py's listing of `bytes`, from frames our cutter and decoders
/// produced.
fn listing(bytes: &[u8], indent: &str, out: &mut String) {
    let mut offset = 0;
    for frame in cut_in_reads(bytes, bytes.len().max(1)) {
        let body = frame.meta.len() + frame.payload.len();
        let (tag, fields) = match frame.magic {
            Magic::Stream => ("STRM", stream_dict(&frame.decode_stream().unwrap())),
            Magic::Rpc => ("PRPC", rpc_dict(&frame.decode_rpc().unwrap())),
        };
        writeln!(
            out,
            "{indent}@{offset} {tag} body={body} meta={} {fields} payload={}",
            frame.meta.len(),
            show(&frame.payload)
        )
        .unwrap();
        if frame.magic == Magic::Stream && frame.payload.starts_with(b"PRPC") {
            listing(&frame.payload, &format!("{indent}    "), out);
        }
        offset += 12 + body;
    }
}

#[test]
fn captures_list_exactly_as_decode_py_does() {
    for (name, bytes, expected) in captures() {
        let mut ours = String::new();
        listing(&bytes, "", &mut ours);
        assert_eq!(ours, expected, "{name}");
    }
}

#[test]
fn captures_cut_the_same_whatever_the_read_size() {
    for (name, bytes, _) in captures() {
        let whole = cut_in_reads(&bytes, bytes.len());
        // Prime sizes cross every header and body boundary differently;
        // byte by byte only for the small captures, to bound the run time.
        let sizes: &[usize] =
            if bytes.len() < 4096 { &[1, 2, 3, 5, 7, 11, 13, 4096] } else { &[7, 1000, 16395, 65536] };
        for &size in sizes {
            assert_eq!(cut_in_reads(&bytes, size), whole, "{name} in reads of {size}");
        }
    }
}

/// Packs a decoded frame again the way a sender does: header and meta into
/// one buffer, the payload chained after it without a copy.
fn repack(frame: &RawFrame) -> Vec<Bytes> {
    let mut head = BytesMut::new();
    match frame.magic {
        Magic::Stream => {
            let decoded = StreamFrame::decode(frame).unwrap();
            pack_stream_header(&mut head, &decoded.meta, decoded.payload.len()).unwrap();
            vec![head.freeze(), decoded.payload]
        }
        Magic::Rpc => {
            let message = RpcMessage::decode(frame).unwrap();
            let len = message.payload.len() + message.attachment.len();
            pack_rpc_header(&mut head, &message.meta, len).unwrap();
            vec![head.freeze(), message.payload, message.attachment]
        }
    }
}

#[test]
fn decoded_values_pack_back_to_the_captured_bytes() {
    for (name, bytes, _) in captures() {
        let mut packed = Vec::new();
        for frame in cut_in_reads(&bytes, bytes.len()) {
            if frame.magic == Magic::Stream && frame.payload.starts_with(b"PRPC") {
                let inner = RawFrame::from_embedded(frame.payload.clone()).unwrap();
                let inner_packed: Vec<u8> = repack(&inner).concat();
                assert_eq!(inner_packed, frame.payload, "{name}: embedded response");
            }
            for chunk in repack(&frame) {
                packed.extend_from_slice(&chunk);
            }
        }
        assert_eq!(packed, bytes, "{name}");
    }
}

#[test]
fn control_frames_pack_whole() {
    // A CLOSE as captured in three_streams_one_call: stream 2 from stream 2.
    let meta = StreamFrameMeta {
        stream_id: Some(2),
        source_stream_id: Some(2),
        frame_type: Some(FrameType::Close as i32),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    pack_stream(&mut out, &meta, &[]).unwrap();
    assert_eq!(&out[..], b"STRM\0\0\0\x06\0\0\0\x06\x08\x02\x10\x02\x18\x02");
}
