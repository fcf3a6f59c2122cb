//! Each kind of bad or awkward input, one by one, with its defined outcome.

use brpc_stream::protocol::{
    decode_rpc_meta, pack_rpc, pack_rpc_header, pack_stream, Cut, Cutter, DecodeError, DropReason, FatalKind,
    FrameType, Limits, Magic, RawFrame, RpcMessage, RpcMeta, RpcRequestMeta, StreamFrame, StreamFrameMeta,
    StreamSettings,
};
use bytes::{BufMut, BytesMut};

const HEADER_LEN: usize = RawFrame::HEADER_LEN;
const DEFAULT_MAX_BODY_SIZE: usize = Limits::DEFAULT_MAX_BODY_SIZE;

fn header(magic: &[u8; 4], body_size: u32, meta_size: u32) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_slice(magic);
    out.put_u32(body_size);
    out.put_u32(meta_size);
    out
}

fn data_meta(stream_id: i64) -> StreamFrameMeta {
    StreamFrameMeta {
        stream_id: Some(stream_id),
        source_stream_id: Some(7),
        frame_type: Some(FrameType::Data as i32),
        has_continuation: Some(false),
        feedback: None,
    }
}

fn data_frame(stream_id: i64, payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    pack_stream(&mut out, &data_meta(stream_id), payload).unwrap();
    out
}

fn expect_frame(cut: Cut) -> RawFrame {
    match cut {
        Cut::Frame(frame) => frame,
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[test]
fn truncated_header_waits_for_the_rest() {
    let whole = data_frame(1, b"hello");
    for n in 0..HEADER_LEN {
        let mut cutter = Cutter::new(Limits::default());
        let mut buf = BytesMut::from(&whole[..n]);
        assert_eq!(cutter.cut(&mut buf), Cut::NeedMore { at_least: HEADER_LEN - n });
        assert_eq!(buf.len(), n, "nothing consumed");
        buf.extend_from_slice(&whole[n..]);
        let frame = expect_frame(cutter.cut(&mut buf));
        assert_eq!(&frame.payload[..], b"hello");
        assert!(buf.is_empty());
    }
}

#[test]
fn truncated_body_says_how_much_is_missing() {
    let whole = data_frame(1, b"0123456789");
    let mut cutter = Cutter::new(Limits::default());
    let mut buf = BytesMut::from(&whole[..whole.len() - 4]);
    assert_eq!(cutter.cut(&mut buf), Cut::NeedMore { at_least: 4 });
    buf.extend_from_slice(&whole[whole.len() - 4..]);
    assert_eq!(&expect_frame(cutter.cut(&mut buf)).payload[..], b"0123456789");
}

#[test]
fn wrong_magic_fails_the_connection_and_stays_failed() {
    let mut cutter = Cutter::new(Limits::default());
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
    let Cut::Fatal(error) = cutter.cut(&mut buf) else { panic!("not fatal") };
    assert_eq!(error.kind, FatalKind::UnknownMagic);
    assert_eq!(error.code, libc::EINVAL);
    assert!(error.text.contains("GET "), "{}", error.text);
    // Later cuts repeat the error, even over bytes that would be valid.
    let mut valid = data_frame(1, b"x");
    assert_eq!(cutter.cut(&mut valid), Cut::Fatal(error));
    assert_eq!(valid, data_frame(1, b"x"), "buffer left alone");
}

#[test]
fn wrong_magic_is_seen_from_its_first_wrong_byte() {
    for prefix in [&b"X"[..], b"PX", b"STRX", b"PRPCx"] {
        let mut buf = BytesMut::from(prefix);
        let cut = Cutter::new(Limits::default()).cut(&mut buf);
        assert!(
            matches!(cut, Cut::Fatal(ref e) if e.kind == FatalKind::UnknownMagic) ||
            // "PRPCx" is a valid magic with the header still incomplete.
            (prefix == b"PRPCx" && cut == Cut::NeedMore { at_least: 7 }),
            "{prefix:?}: {cut:?}"
        );
    }
    for prefix in [&b"P"[..], b"PR", b"PRP", b"S", b"ST", b"STR", b"STRM"] {
        let mut buf = BytesMut::from(prefix);
        assert_eq!(Cutter::new(Limits::default()).cut(&mut buf), Cut::NeedMore { at_least: HEADER_LEN - prefix.len() });
    }
}

#[test]
fn oversize_body_fails_before_any_of_it_is_buffered() {
    let mut cutter = Cutter::new(Limits::default());
    let mut buf = header(b"PRPC", DEFAULT_MAX_BODY_SIZE as u32 + 1, 10);
    let Cut::Fatal(error) = cutter.cut(&mut buf) else { panic!("not fatal") };
    assert_eq!(error.kind, FatalKind::BodyTooBig);
    assert_eq!(error.code, libc::EINVAL);
    assert!(error.text.contains("max_body_size=67108864"), "{}", error.text);
    assert!(error.text.contains("body_size=67108865"), "{}", error.text);

    // Exactly the limit is accepted: the cutter asks for the whole body.
    let mut buf = header(b"STRM", DEFAULT_MAX_BODY_SIZE as u32, 10);
    assert_eq!(Cutter::new(Limits::default()).cut(&mut buf), Cut::NeedMore { at_least: DEFAULT_MAX_BODY_SIZE });
}

#[test]
fn body_limit_is_configurable() {
    let limits = Limits { max_body_size: 16 };
    let mut buf = data_frame(1, &[0; 100]);
    let cut = Cutter::new(limits).cut(&mut buf);
    assert!(matches!(cut, Cut::Fatal(ref e) if e.kind == FatalKind::BodyTooBig), "{cut:?}");
    let mut buf = header(b"STRM", u32::MAX, 0);
    let cut = Cutter::new(limits).cut(&mut buf);
    assert!(matches!(cut, Cut::Fatal(ref e) if e.kind == FatalKind::BodyTooBig), "{cut:?}");
}

#[test]
fn meta_larger_than_body_drops_that_frame_only() {
    let mut cutter = Cutter::new(Limits::default());
    let mut buf = header(b"STRM", 4, 5);
    // The frame is dropped once whole, as brpc does.
    assert_eq!(cutter.cut(&mut buf), Cut::NeedMore { at_least: 4 });
    buf.extend_from_slice(b"abcd");
    buf.extend_from_slice(&data_frame(3, b"next"));
    let cut = cutter.cut(&mut buf);
    let Cut::Dropped { magic, reason } = cut else { panic!("not dropped: {cut:?}") };
    assert_eq!(magic, Magic::Stream);
    assert_eq!(reason, DropReason::MetaLargerThanBody { meta_size: 5, body_size: 4 });
    assert_eq!(reason.to_string(), "meta_size=5 is bigger than body_size=4");
    let frame = expect_frame(cutter.cut(&mut buf));
    assert_eq!(StreamFrame::decode(&frame).unwrap().meta.stream_id(), 3);
    assert_eq!(cutter.cut(&mut buf), Cut::NeedMore { at_least: HEADER_LEN });
}

#[test]
fn garbage_stream_meta_is_an_error_and_the_connection_goes_on() {
    let garbage = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    let mut buf = header(b"STRM", garbage.len() as u32 + 2, garbage.len() as u32);
    buf.extend_from_slice(&garbage);
    buf.extend_from_slice(b"pl");
    buf.extend_from_slice(&data_frame(4, b"ok"));
    let mut cutter = Cutter::new(Limits::default());
    let frame = expect_frame(cutter.cut(&mut buf));
    let error = StreamFrame::decode(&frame).unwrap_err();
    assert!(matches!(error, DecodeError::Malformed { message: "StreamFrameMeta", .. }), "{error}");
    let next = expect_frame(cutter.cut(&mut buf));
    assert_eq!(StreamFrame::decode(&next).unwrap().meta.stream_id(), 4);
}

#[test]
fn garbage_rpc_meta_is_an_error() {
    // A length-delimited field whose length runs past the end.
    let garbage = [0x0a, 0x7f, 0x01];
    let mut buf = header(b"PRPC", 3, 3);
    buf.extend_from_slice(&garbage);
    let frame = expect_frame(Cutter::new(Limits::default()).cut(&mut buf));
    let error = RpcMessage::decode(&frame).unwrap_err();
    assert!(matches!(error, DecodeError::Malformed { message: "RpcMeta", .. }), "{error}");
    assert!(error.to_string().starts_with("fail to parse RpcMeta"), "{error}");
}

#[test]
fn zero_length_body() {
    let mut cutter = Cutter::new(Limits::default());
    let mut buf = header(b"STRM", 0, 0);
    buf.extend_from_slice(&header(b"PRPC", 0, 0));

    let stream = expect_frame(cutter.cut(&mut buf));
    assert!(stream.meta.is_empty() && stream.payload.is_empty());
    assert_eq!(
        stream.decode_stream(),
        Err(DecodeError::MissingRequired { message: "StreamFrameMeta", field: "stream_id" })
    );

    // Every RpcMeta field is optional: an empty one is valid and says
    // nothing; the rpc layer decides what that means.
    let rpc = expect_frame(cutter.cut(&mut buf));
    let message = RpcMessage::decode(&rpc).unwrap();
    assert_eq!(message.meta, RpcMeta::default());
    assert!(message.payload.is_empty() && message.attachment.is_empty());
    assert_eq!(cutter.cut(&mut buf), Cut::NeedMore { at_least: HEADER_LEN });
}

#[test]
fn required_fields_must_be_present() {
    let request = |service: Option<&str>, method: Option<&str>| RpcMeta {
        request: Some(RpcRequestMeta {
            service_name: service.map(str::to_string),
            method_name: method.map(str::to_string),
            ..Default::default()
        }),
        ..Default::default()
    };
    let encode = |meta: &RpcMeta| prost::Message::encode_to_vec(meta).into();
    assert!(decode_rpc_meta(encode(&request(Some("S"), Some("M")))).is_ok());
    assert_eq!(
        decode_rpc_meta(encode(&request(Some("S"), None))),
        Err(DecodeError::MissingRequired { message: "RpcRequestMeta", field: "method_name" })
    );
    assert_eq!(
        decode_rpc_meta(encode(&request(None, Some("M")))),
        Err(DecodeError::MissingRequired { message: "RpcRequestMeta", field: "service_name" })
    );
    let settings = RpcMeta {
        stream_settings: Some(StreamSettings { need_feedback: Some(true), ..Default::default() }),
        ..Default::default()
    };
    assert_eq!(
        decode_rpc_meta(encode(&settings)),
        Err(DecodeError::MissingRequired { message: "StreamSettings", field: "stream_id" })
    );
}

#[test]
fn attachment_is_split_off_the_end_and_checked() {
    let with_attachment = |size: i32, body: &[u8]| {
        let meta = RpcMeta { correlation_id: Some(9), attachment_size: Some(size), ..Default::default() };
        let mut buf = BytesMut::new();
        pack_rpc(&mut buf, &meta, body).unwrap();
        RpcMessage::decode(&expect_frame(Cutter::new(Limits::default()).cut(&mut buf)))
    };
    let message = with_attachment(3, b"requestATT").unwrap();
    assert_eq!((&message.payload[..], &message.attachment[..]), (&b"request"[..], &b"ATT"[..]));
    let message = with_attachment(10, b"requestATT").unwrap();
    assert_eq!((&message.payload[..], &message.attachment[..]), (&b""[..], &b"requestATT"[..]));
    assert_eq!(
        with_attachment(11, b"requestATT"),
        Err(DecodeError::BadAttachmentSize { attachment_size: 11, payload_len: 10 })
    );
    assert_eq!(
        with_attachment(-1, b"requestATT"),
        Err(DecodeError::BadAttachmentSize { attachment_size: -1, payload_len: 10 })
    );
}

#[test]
fn unknown_fields_and_enum_values_are_tolerated() {
    let mut meta = prost::Message::encode_to_vec(&data_meta(5));
    // Field 3 again with value 9 (last one wins), then fields 6 (varint),
    // 7 (bytes) and 99 (fixed32), none of which the message knows.
    meta.extend_from_slice(&[0x18, 0x09, 0x30, 0x01, 0x3a, 0x02, b'h', b'i', 0x9d, 0x06, 1, 2, 3, 4]);
    let mut buf = header(b"STRM", meta.len() as u32, meta.len() as u32);
    buf.extend_from_slice(&meta);
    let frame = expect_frame(Cutter::new(Limits::default()).cut(&mut buf));
    let decoded = frame.decode_stream().unwrap();
    assert_eq!(decoded.stream_id(), 5);
    assert_eq!(decoded.frame_type, Some(9));
    assert_eq!(decoded.frame_type(), FrameType::Unknown);
}

#[test]
fn asking_for_the_other_framing_is_an_error() {
    let mut buf = data_frame(1, b"x");
    let frame = expect_frame(Cutter::new(Limits::default()).cut(&mut buf));
    assert_eq!(frame.decode_rpc(), Err(DecodeError::WrongMagic { expected: "PRPC" }));
    assert!(RpcMessage::decode(&frame).is_err());
}

#[test]
fn embedded_frame_must_span_its_bytes_exactly() {
    let meta = RpcMeta { correlation_id: Some(1), ..Default::default() };
    let mut packed = BytesMut::new();
    pack_rpc(&mut packed, &meta, b"body").unwrap();
    let packed = packed.freeze();
    let frame = RawFrame::from_embedded(packed.clone()).unwrap();
    assert_eq!(frame.decode_rpc().unwrap(), meta);
    assert_eq!(&frame.payload[..], b"body");

    let mut longer = packed.to_vec();
    longer.push(0);
    for bad in [&packed[..packed.len() - 1], &longer[..], &packed[..5], b"XXXX\0\0\0\0\0\0\0\0"] {
        let result = RawFrame::from_embedded(bytes::Bytes::copy_from_slice(bad));
        assert!(matches!(result, Err(DecodeError::BadEmbeddedFrame { .. })), "{bad:?}");
    }
    let mut meta_too_big = header(b"PRPC", 0, 1);
    meta_too_big.truncate(HEADER_LEN);
    assert!(RawFrame::from_embedded(meta_too_big.freeze()).is_err());
}

#[test]
fn sixty_mib_body_in_pieces_is_handed_out_whole_and_uncopied() {
    const BODY: usize = 60 << 20;
    let payload: Vec<u8> = (0..BODY).map(|i| (i % 251) as u8).collect();
    let meta = data_meta(8);
    let mut wire = BytesMut::new();
    pack_stream(&mut wire, &meta, &payload).unwrap();
    let meta_len = wire.len() - HEADER_LEN - BODY;

    let mut cutter = Cutter::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut chunks = wire.chunks(1 << 20).peekable();
    // The socket reserves what NeedMore asks for, so the frame ends up in
    // one allocation and the payload is a slice of it.
    let mut start = None;
    while let Some(chunk) = chunks.next() {
        buf.extend_from_slice(chunk);
        match cutter.cut(&mut buf) {
            Cut::NeedMore { at_least } => {
                assert!(chunks.peek().is_some(), "needs more after the last byte");
                buf.reserve(at_least);
                start.get_or_insert(buf.as_ptr() as usize);
            }
            Cut::Frame(frame) => {
                assert!(chunks.peek().is_none(), "frame before its last byte");
                assert_eq!(frame.payload.len(), BODY);
                assert!(frame.payload[..] == payload[..]);
                assert_eq!(StreamFrame::decode(&frame).unwrap().meta, meta);
                let start = start.unwrap();
                assert_eq!(frame.payload.as_ptr() as usize, start + HEADER_LEN + meta_len);
                return;
            }
            other => panic!("{other:?}"),
        }
    }
    panic!("no frame");
}

#[test]
fn many_frames_in_one_read() {
    let mut buf = BytesMut::new();
    for id in 0..100 {
        buf.extend_from_slice(&data_frame(id, format!("m{id}").as_bytes()));
    }
    let mut cutter = Cutter::new(Limits::default());
    for id in 0..100 {
        let frame = StreamFrame::decode(&expect_frame(cutter.cut(&mut buf))).unwrap();
        assert_eq!(frame.meta.stream_id(), id);
        assert_eq!(frame.payload, format!("m{id}").as_bytes());
    }
    assert_eq!(cutter.cut(&mut buf), Cut::NeedMore { at_least: HEADER_LEN });
}

#[test]
fn packing_refuses_a_body_over_32_bits() {
    let meta = RpcMeta { correlation_id: Some(1), ..Default::default() };
    let mut out = BytesMut::from(&b"earlier"[..]);
    let error = pack_rpc_header(&mut out, &meta, u32::MAX as usize).unwrap_err();
    assert_eq!(error.code, libc::EOVERFLOW);
    assert_eq!(&out[..], b"earlier", "nothing appended");
    // An empty meta leaves room for exactly u32::MAX payload bytes.
    pack_rpc_header(&mut out, &RpcMeta::default(), u32::MAX as usize).unwrap();
    assert_eq!(&out[7..], b"PRPC\xff\xff\xff\xff\0\0\0\0");
}
