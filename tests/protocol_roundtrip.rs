//! Any meta values and payloads, packed and then cut from the byte stream
//! split into arbitrary reads, come back as the same values.

use std::collections::BTreeMap;

use brpc_stream::protocol::{
    pack_rpc, pack_rpc_header, pack_stream, pack_stream_header, Cut, Cutter, Feedback, Limits, Magic, RpcMessage,
    RpcMeta, RpcRequestMeta, RpcResponseMeta, StreamFrame, StreamFrameMeta, StreamSettings,
};
use bytes::{Bytes, BytesMut};
use proptest::collection::{btree_map, vec};
use proptest::option::of;
use proptest::prelude::*;
use prost::Message;

const HEADER_LEN: usize = brpc_stream::protocol::RawFrame::HEADER_LEN;

fn text() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..12).prop_map(|chars| chars.into_iter().collect())
}

fn blob() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn request() -> impl Strategy<Value = RpcRequestMeta> {
    (
        (text(), text(), of(any::<i64>()), of(any::<i64>())),
        (of(any::<i64>()), of(any::<i64>()), of(text()), of(any::<i32>())),
    )
        .prop_map(|((service, method, log_id, trace_id), (span_id, parent_span_id, request_id, timeout_ms))| {
            RpcRequestMeta {
                service_name: Some(service),
                method_name: Some(method),
                log_id,
                trace_id,
                span_id,
                parent_span_id,
                request_id,
                timeout_ms,
            }
        })
}

fn settings() -> impl Strategy<Value = StreamSettings> {
    (any::<i64>(), of(any::<bool>()), of(any::<bool>()), vec(any::<i64>(), 0..4)).prop_map(
        |(stream_id, need_feedback, writable, extra_stream_ids)| StreamSettings {
            stream_id: Some(stream_id),
            need_feedback,
            writable,
            extra_stream_ids,
        },
    )
}

fn rpc_meta() -> impl Strategy<Value = RpcMeta> {
    (
        (
            of(request()),
            of((of(any::<i32>()), of(text()))
                .prop_map(|(error_code, error_text)| RpcResponseMeta { error_code, error_text })),
            of(any::<i32>()),
            of(any::<i64>()),
            of(any::<i32>()),
            of(blob()),
        ),
        (
            of(settings()),
            btree_map(text(), text(), 0..3),
            of(any::<i32>()),
            of(any::<i32>()),
            of(blob()),
            of(any::<bool>()),
        ),
    )
        .prop_map(
            |(
                (request, response, compress_type, correlation_id, attachment_size, authentication_data),
                (stream_settings, user_fields, content_type, checksum_type, checksum_value, checksum_with_attachment),
            )| RpcMeta {
                request,
                response,
                compress_type,
                correlation_id,
                attachment_size,
                authentication_data,
                stream_settings,
                user_fields: BTreeMap::from_iter(user_fields),
                content_type,
                checksum_type,
                checksum_value,
                checksum_with_attachment,
            },
        )
}

fn stream_meta() -> impl Strategy<Value = StreamFrameMeta> {
    (
        any::<i64>(),
        of(any::<i64>()),
        // Values past FrameType's range too: they must survive as numbers.
        of(-1..8i32),
        of(any::<bool>()),
        of(of(any::<i64>()).prop_map(|consumed_size| Feedback { consumed_size })),
    )
        .prop_map(|(stream_id, source_stream_id, frame_type, has_continuation, feedback)| StreamFrameMeta {
            stream_id: Some(stream_id),
            source_stream_id,
            frame_type,
            has_continuation,
            feedback,
        })
}

#[derive(Clone, Debug, PartialEq)]
enum Sent {
    Rpc(Box<RpcMeta>, Vec<u8>),
    Stream(StreamFrameMeta, Vec<u8>),
}

fn sent() -> impl Strategy<Value = Sent> {
    let payload = || vec(any::<u8>(), 0..200);
    prop_oneof![
        (rpc_meta(), payload()).prop_map(|(m, p)| Sent::Rpc(Box::new(m), p)),
        (stream_meta(), payload()).prop_map(|(m, p)| Sent::Stream(m, p)),
    ]
}

fn pack_all(frames: &[Sent]) -> BytesMut {
    let mut wire = BytesMut::new();
    for frame in frames {
        match frame {
            Sent::Rpc(meta, payload) => pack_rpc(&mut wire, meta, payload).unwrap(),
            Sent::Stream(meta, payload) => pack_stream(&mut wire, meta, payload).unwrap(),
        }
    }
    wire
}

fn cut_in_reads(wire: &[u8], read_sizes: &[usize]) -> Vec<Sent> {
    let mut cutter = Cutter::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut received = Vec::new();
    let mut rest = wire;
    let mut sizes = read_sizes.iter().cycle();
    while !rest.is_empty() {
        let (read, after) = rest.split_at((*sizes.next().unwrap()).min(rest.len()));
        rest = after;
        buf.extend_from_slice(read);
        loop {
            match cutter.cut(&mut buf) {
                Cut::Frame(frame) if frame.magic == Magic::Rpc => {
                    received.push(Sent::Rpc(Box::new(frame.decode_rpc().unwrap()), frame.payload.to_vec()))
                }
                Cut::Frame(frame) => {
                    let decoded = StreamFrame::decode(&frame).unwrap();
                    received.push(Sent::Stream(decoded.meta, decoded.payload.to_vec()))
                }
                Cut::NeedMore { at_least } => {
                    assert!(at_least > 0);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(buf.is_empty());
    received
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn frames_survive_any_split_into_reads(
        frames in vec(sent(), 1..6),
        read_sizes in vec(1..80usize, 1..8),
    ) {
        let wire = pack_all(&frames);
        prop_assert_eq!(cut_in_reads(&wire, &read_sizes), frames);
    }

    #[test]
    fn header_packing_is_the_frame_minus_its_payload(meta in rpc_meta(), stream in stream_meta(), payload in vec(any::<u8>(), 0..64)) {
        let mut whole = BytesMut::new();
        pack_rpc(&mut whole, &meta, &payload).unwrap();
        let mut head = BytesMut::new();
        pack_rpc_header(&mut head, &meta, payload.len()).unwrap();
        prop_assert_eq!(head.len(), HEADER_LEN + meta.encoded_len());
        prop_assert_eq!([&head[..], &payload[..]].concat(), whole.to_vec());

        let mut whole = BytesMut::new();
        pack_stream(&mut whole, &stream, &payload).unwrap();
        let mut head = BytesMut::new();
        pack_stream_header(&mut head, &stream, payload.len()).unwrap();
        prop_assert_eq!([&head[..], &payload[..]].concat(), whole.to_vec());
    }

    #[test]
    fn attachment_splits_at_its_size(meta in rpc_meta(), body in vec(any::<u8>(), 0..64), cut in any::<prop::sample::Index>()) {
        let attachment_len = cut.index(body.len() + 1);
        let meta = RpcMeta { attachment_size: Some(attachment_len as i32), ..meta };
        let mut wire = BytesMut::new();
        pack_rpc(&mut wire, &meta, &body).unwrap();
        let Cut::Frame(frame) = Cutter::new(Limits::default()).cut(&mut wire) else {
            panic!("no frame");
        };
        let message = RpcMessage::decode(&frame).unwrap();
        let split = body.len() - attachment_len;
        prop_assert_eq!(&message.payload[..], &body[..split]);
        prop_assert_eq!(&message.attachment[..], &body[split..]);
        prop_assert_eq!(message.meta, meta);
    }
}
