//! Compressed and checksummed bodies (RpcMeta fields 3 and 11–13) over
//! real loopback TCP: through the Rust API both ways, and against a raw
//! peer that reads what the library sends and sends what it must refuse.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use brpc_stream::errno;
use brpc_stream::protocol::body::{
    CHECKSUM_TYPE_CRC32C, COMPRESS_TYPE_GZIP, COMPRESS_TYPE_LZ4, COMPRESS_TYPE_NONE, COMPRESS_TYPE_SNAPPY,
    COMPRESS_TYPE_ZLIB,
};
use brpc_stream::protocol::{
    encode_body, pack_rpc, BodyCoding, RawFrame, RpcMessage, RpcMeta, RpcRequestMeta, RpcResponseMeta,
};
use brpc_stream::rpc::{CallOutcome, CallRequest, Channel, ChannelOptions, Server, ServerCall, ServerOptions};
use bytes::{Bytes, BytesMut};

const WAIT: Duration = Duration::from_secs(20);

fn text() -> Bytes {
    Bytes::from("a request that repeats itself, ".repeat(100))
}

fn coding(compress_type: i32, checksum_type: i32, with_attachment: bool) -> BodyCoding {
    BodyCoding { compress_type, checksum_type, checksum_with_attachment: with_attachment }
}

/// Echoes payload and attachment, answering with the request's coding;
/// counts the calls its method ran.
fn echo_server() -> (Server, String, Arc<AtomicUsize>) {
    let ran = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&ran);
    let server = Server::new();
    server
        .add_method(
            "test.EchoService",
            "Echo",
            Arc::new(move |mut call: ServerCall| {
                counter.fetch_add(1, Ordering::SeqCst);
                let coding = call.request_coding();
                call.set_response_coding(coding);
                let reply = (call.request.payload.clone(), call.request.attachment.clone());
                call.respond(Ok(reply));
            }),
        )
        .unwrap();
    server.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    let addr = format!("127.0.0.1:{}", server.listen_address().unwrap().port());
    (server, addr, ran)
}

fn call(channel: &Channel, payload: Bytes, attachment: Bytes, coding: BodyCoding) -> CallOutcome {
    let (tx, rx) = mpsc::channel();
    let request = CallRequest {
        service: "test.EchoService".into(),
        method: "Echo".into(),
        payload,
        attachment,
        timeout: Some(WAIT),
        coding,
        ..Default::default()
    };
    channel.call(
        request,
        Box::new(move |outcome| {
            let _ = tx.send(outcome);
        }),
    );
    rx.recv_timeout(WAIT + WAIT).expect("done runs")
}

/// Reads one whole frame off a blocking stream.
fn read_frame(stream: &mut TcpStream) -> RawFrame {
    let mut header = [0u8; RawFrame::HEADER_LEN];
    stream.read_exact(&mut header).unwrap();
    let body_size = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
    let meta_size = u32::from_be_bytes(header[8..12].try_into().unwrap()) as usize;
    let mut body = vec![0u8; body_size];
    stream.read_exact(&mut body).unwrap();
    let body = Bytes::from(body);
    let magic = if &header[..4] == b"PRPC" { brpc_stream::protocol::Magic::Rpc } else { panic!("not PRPC") };
    RawFrame { magic, meta: body.slice(..meta_size), payload: body.slice(meta_size..) }
}

fn connect(addr: &str) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

#[test]
fn every_compression_with_crc32c_round_trips_request_and_response() {
    let (_server, addr, _) = echo_server();
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    for compress_type in [COMPRESS_TYPE_NONE, COMPRESS_TYPE_SNAPPY, COMPRESS_TYPE_GZIP, COMPRESS_TYPE_ZLIB] {
        for with_attachment in [false, true] {
            let c = coding(compress_type, CHECKSUM_TYPE_CRC32C, with_attachment);
            let outcome = call(&channel, text(), Bytes::from_static(b"attached"), c);
            assert_eq!(outcome.error(), None, "compress_type {compress_type}");
            let message = outcome.result.unwrap();
            assert_eq!(message.payload, text(), "compress_type {compress_type}");
            assert_eq!(&message.attachment[..], b"attached");
            assert_eq!(BodyCoding::of(&message.meta), c);
        }
    }
}

#[test]
fn the_request_carries_its_coding_in_fields_3_11_12_13_and_an_uncompressed_attachment() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    let request = CallRequest {
        service: "test.EchoService".into(),
        method: "Echo".into(),
        payload: text(),
        attachment: Bytes::from_static(b"ATTACHMENT"),
        timeout: Some(WAIT),
        coding: coding(COMPRESS_TYPE_GZIP, CHECKSUM_TYPE_CRC32C, true),
        ..Default::default()
    };
    channel.call(request, Box::new(move |outcome| drop(tx.send(outcome))));
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let frame = read_frame(&mut peer);
    let meta = &frame.meta[..];
    // Tags as brpc's baidu_rpc_meta.proto numbers them: (field << 3) | wire type.
    let has = |needle: &[u8]| meta.windows(needle.len()).any(|w| w == needle);
    assert!(has(&[3 << 3, 2]), "compress_type = 2 (gzip): {meta:02x?}");
    assert!(has(&[11 << 3, 1]), "checksum_type = 1 (crc32c): {meta:02x?}");
    assert!(has(&[(12 << 3) | 2, 4]), "checksum_value: 4 bytes: {meta:02x?}");
    assert!(has(&[13 << 3, 1]), "checksum_with_attachment = true: {meta:02x?}");
    assert!(frame.payload.ends_with(b"ATTACHMENT"), "the attachment goes uncompressed");
    assert_eq!(&frame.payload[..2], &[0x1f, 0x8b], "the body is gzip");
    // The checksum covers the compressed body and then the attachment.
    let decoded = RpcMessage::decode(&frame).unwrap();
    let value = decoded.meta.checksum_value.clone().unwrap();
    let masked = u32::from_be_bytes(value[..].try_into().unwrap());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&decoded.payload), &decoded.attachment);
    assert_eq!(masked, crc.rotate_right(15).wrapping_add(0xa282_ead8));

    // Answer with a response whose checksum is off by one bit.
    let mut response_meta = RpcMeta {
        response: Some(RpcResponseMeta { error_code: Some(0), error_text: None }),
        correlation_id: decoded.meta.correlation_id,
        ..Default::default()
    };
    let body = encode_body(coding(COMPRESS_TYPE_SNAPPY, CHECKSUM_TYPE_CRC32C, false), text(), b"", &mut response_meta)
        .unwrap();
    let mut bad = response_meta.checksum_value.clone().unwrap().to_vec();
    bad[3] ^= 1;
    response_meta.checksum_value = Some(Bytes::from(bad));
    let mut out = BytesMut::new();
    pack_rpc(&mut out, &response_meta, &body).unwrap();
    peer.write_all(&out).unwrap();

    let outcome = rx.recv_timeout(WAIT + WAIT).expect("done runs");
    let error = outcome.error().expect("the call fails");
    let (code, text) = (error.code(), error.text());
    assert_eq!(code, errno::ERESPONSE, "{text}");
    assert!(text.contains("checksum mismatch"), "{text}");
}

#[test]
fn a_response_labelled_zlib_that_is_garbage_fails_the_call_with_eresponse() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    let request = CallRequest {
        service: "test.EchoService".into(),
        method: "Echo".into(),
        payload: text(),
        timeout: Some(WAIT),
        ..Default::default()
    };
    channel.call(request, Box::new(move |outcome| drop(tx.send(outcome))));
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let request = RpcMessage::decode(&read_frame(&mut peer)).unwrap();
    let response_meta = RpcMeta {
        response: Some(RpcResponseMeta { error_code: Some(0), error_text: None }),
        correlation_id: request.meta.correlation_id,
        compress_type: Some(COMPRESS_TYPE_ZLIB),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    pack_rpc(&mut out, &response_meta, b"\x00\x01 not zlib at all").unwrap();
    peer.write_all(&out).unwrap();
    let outcome = rx.recv_timeout(WAIT + WAIT).expect("done runs");
    let error = outcome.error().expect("the call fails");
    let (code, text) = (error.code(), error.text());
    assert_eq!(code, errno::ERESPONSE, "{text}");
    assert!(text.contains("zlib"), "{text}");
}

/// Sends one raw request to the server and returns its response.
fn raw_call(addr: &str, meta: RpcMeta, payload: &[u8]) -> RpcMessage {
    let mut stream = connect(addr);
    let mut out = BytesMut::new();
    pack_rpc(&mut out, &meta, payload).unwrap();
    stream.write_all(&out).unwrap();
    RpcMessage::decode(&read_frame(&mut stream)).unwrap()
}

fn echo_request_meta() -> RpcMeta {
    RpcMeta {
        request: Some(RpcRequestMeta {
            service_name: Some("test.EchoService".into()),
            method_name: Some("Echo".into()),
            ..Default::default()
        }),
        correlation_id: Some(7),
        ..Default::default()
    }
}

#[test]
fn a_request_whose_checksum_does_not_match_is_answered_erequest_and_its_method_never_runs() {
    let (_server, addr, ran) = echo_server();
    let mut meta = echo_request_meta();
    let body = encode_body(coding(COMPRESS_TYPE_GZIP, CHECKSUM_TYPE_CRC32C, false), text(), b"", &mut meta).unwrap();
    let mut corrupted = body.to_vec();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0x40;
    let response = raw_call(&addr, meta, &corrupted);
    let response_meta = response.meta.response.unwrap();
    assert_eq!(response_meta.error_code, Some(errno::EREQUEST));
    let text = response_meta.error_text.unwrap();
    assert!(text.contains("checksum mismatch"), "{text}");
    assert_eq!(response.meta.correlation_id, Some(7));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn a_request_with_a_checksum_value_of_the_wrong_size_is_answered_erequest() {
    let (_server, addr, ran) = echo_server();
    let mut meta = echo_request_meta();
    meta.checksum_type = Some(CHECKSUM_TYPE_CRC32C);
    meta.checksum_value = Some(Bytes::from_static(b"12"));
    let response = raw_call(&addr, meta, &text());
    let response_meta = response.meta.response.unwrap();
    assert_eq!(response_meta.error_code, Some(errno::EREQUEST));
    assert!(response_meta.error_text.unwrap().contains("2 bytes"));
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn a_request_labelled_snappy_that_is_garbage_is_answered_erequest_and_the_connection_serves_on() {
    let (_server, addr, ran) = echo_server();
    let mut stream = connect(&addr);
    let mut meta = echo_request_meta();
    meta.compress_type = Some(COMPRESS_TYPE_SNAPPY);
    let mut out = BytesMut::new();
    pack_rpc(&mut out, &meta, b"\xff\xff\xff\xff\xff\xff garbage").unwrap();
    stream.write_all(&out).unwrap();
    let response = RpcMessage::decode(&read_frame(&mut stream)).unwrap();
    let response_meta = response.meta.response.unwrap();
    assert_eq!(response_meta.error_code, Some(errno::EREQUEST));
    assert!(response_meta.error_text.unwrap().contains("snappy"));
    // The same connection still answers a good request.
    let mut meta = echo_request_meta();
    meta.correlation_id = Some(8);
    let body = encode_body(coding(COMPRESS_TYPE_SNAPPY, 0, false), text(), b"", &mut meta).unwrap();
    let mut out = BytesMut::new();
    pack_rpc(&mut out, &meta, &body).unwrap();
    stream.write_all(&out).unwrap();
    let response = RpcMessage::decode(&read_frame(&mut stream)).unwrap();
    assert_eq!(response.meta.response.unwrap().error_code, Some(0));
    assert_eq!(response.meta.correlation_id, Some(8));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[test]
fn a_call_asking_for_lz4_fails_with_erequest_before_anything_is_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let outcome = call(&channel, text(), Bytes::new(), coding(COMPRESS_TYPE_LZ4, 0, false));
    let error = outcome.error().expect("the call fails");
    let (code, text) = (error.code(), error.text());
    assert_eq!(code, errno::EREQUEST);
    assert!(text.contains("lz4"), "{text}");
    assert!(listener.accept().is_err(), "nothing connected");
}

#[test]
fn a_server_answering_with_an_unknown_checksum_type_sends_eresponse() {
    let server = Server::new();
    server
        .add_method(
            "test.EchoService",
            "Echo",
            Arc::new(|mut call: ServerCall| {
                call.set_response_coding(coding(COMPRESS_TYPE_NONE, 9, false));
                call.respond(Ok((Bytes::from_static(b"reply"), Bytes::new())));
            }),
        )
        .unwrap();
    server.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    let addr = format!("127.0.0.1:{}", server.listen_address().unwrap().port());
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let outcome = call(&channel, text(), Bytes::new(), BodyCoding::default());
    let error = outcome.error().expect("the call fails");
    let (code, text) = (error.code(), error.text());
    assert_eq!(code, errno::ERESPONSE);
    assert!(text.contains("ChecksumType=9"), "{text}");
}
