//! The captures as scripts: what an unmodified brpc client sent is replayed
//! to our server, and what an unmodified brpc server sent is replayed to our
//! client, with the peers' own ids put in place of the captured ones. Our
//! answers must decode like the captured peer's.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brpc_stream::protocol::{
    pack_rpc_header, pack_stream_header, Cut, Cutter, FrameType, Limits, Magic, RawFrame, RpcMessage, StreamFrame,
};
use brpc_stream::rpc::{CallRequest, Channel, ChannelOptions, Server, ServerCall, ServerOptions};
use brpc_stream::stream::{self, StreamHandler, StreamId, StreamOptions};
use brpc_stream::Error;
use bytes::{Bytes, BytesMut};

/// The captured client's stream and call.
const CAPTURED_CLIENT_STREAM: i64 = 1;
const CAPTURED_CORRELATION_ID: i64 = 8589934594;
const CAPTURED_SERVER_STREAM: i64 = 403726926130;

fn capture(name: &str) -> Vec<RawFrame> {
    let bytes = std::fs::read(common::wire_dir().join(name)).unwrap();
    cut_all(&mut BytesMut::from(&bytes[..]))
}

fn cut_all(buf: &mut BytesMut) -> Vec<RawFrame> {
    let mut cutter = Cutter::new(Limits::default());
    let mut frames = Vec::new();
    while let Cut::Frame(frame) = cutter.cut(buf) {
        frames.push(frame);
    }
    frames
}

/// A frame as the comparison sees it: its kind and the fields that do not
/// depend on who picked the ids.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Request { service: String, method: String, need_feedback: bool, writable: bool, payload: Bytes },
    Response { error_code: i32, has_settings: bool, payload: Bytes },
    Data(Bytes),
    Feedback(i64),
    Close,
    Rst,
}

fn shape(frame: &RawFrame) -> Shape {
    if frame.magic == Magic::Rpc {
        let message = RpcMessage::decode(frame).unwrap();
        let request = message.meta.request.clone().unwrap();
        let settings = message.meta.stream_settings.clone().unwrap();
        return Shape::Request {
            service: request.service_name.unwrap_or_default(),
            method: request.method_name.unwrap_or_default(),
            need_feedback: settings.need_feedback(),
            writable: settings.writable(),
            payload: message.payload,
        };
    }
    let stream_frame = StreamFrame::decode(frame).unwrap();
    match stream_frame.meta.frame_type() {
        FrameType::Data => {
            match RawFrame::from_embedded(stream_frame.payload.clone()).ok().filter(|f| f.magic == Magic::Rpc) {
                Some(embedded) => {
                    let message = RpcMessage::decode(&embedded).unwrap();
                    Shape::Response {
                        error_code: message.meta.response.as_ref().and_then(|r| r.error_code).unwrap_or(0),
                        has_settings: message.meta.stream_settings.is_some(),
                        payload: message.payload,
                    }
                }
                None => Shape::Data(stream_frame.payload),
            }
        }
        FrameType::Feedback => Shape::Feedback(stream_frame.meta.feedback.and_then(|f| f.consumed_size).unwrap_or(0)),
        FrameType::Close => Shape::Close,
        FrameType::Rst => Shape::Rst,
        FrameType::Unknown => panic!("unknown frame type"),
    }
}

/// FEEDBACK counts depend on how reads were batched: compare the last one.
fn without_intermediate_feedback(shapes: Vec<Shape>) -> Vec<Shape> {
    let last_feedback = shapes.iter().rposition(|s| matches!(s, Shape::Feedback(_)));
    shapes
        .into_iter()
        .enumerate()
        .filter(|(i, s)| !matches!(s, Shape::Feedback(_)) || Some(*i) == last_feedback)
        .map(|(_, s)| s)
        .collect()
}

/// Re-packs a captured frame with other stream ids and correlation id.
fn rewrite(frame: &RawFrame, map_stream: &dyn Fn(i64) -> i64, correlation_id: i64) -> Vec<u8> {
    let mut out = BytesMut::new();
    if frame.magic == Magic::Rpc {
        let mut message = RpcMessage::decode(frame).unwrap();
        message.meta.correlation_id = Some(correlation_id);
        if let Some(settings) = message.meta.stream_settings.as_mut() {
            settings.stream_id = Some(map_stream(settings.stream_id()));
        }
        pack_rpc_header(&mut out, &message.meta, message.payload.len() + message.attachment.len()).unwrap();
        out.extend_from_slice(&message.payload);
        out.extend_from_slice(&message.attachment);
        return out.to_vec();
    }
    let mut stream_frame = StreamFrame::decode(frame).unwrap();
    stream_frame.meta.stream_id = stream_frame.meta.stream_id.map(map_stream);
    stream_frame.meta.source_stream_id = stream_frame.meta.source_stream_id.map(map_stream);
    let mut payload = stream_frame.payload.to_vec();
    if let Ok(embedded) = RawFrame::from_embedded(stream_frame.payload.clone()) {
        if embedded.magic == Magic::Rpc {
            payload = rewrite(&embedded, map_stream, correlation_id);
        }
    }
    pack_stream_header(&mut out, &stream_frame.meta, payload.len()).unwrap();
    out.extend_from_slice(&payload);
    out.to_vec()
}

/// Reads frames off a connection, keeping partial frames between calls
/// and every raw byte (for decode.py).
struct FrameReader {
    socket: TcpStream,
    cutter: Cutter,
    buf: BytesMut,
    raw: Vec<u8>,
}

impl FrameReader {
    fn new(socket: TcpStream) -> Self {
        socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        FrameReader { socket, cutter: Cutter::new(Limits::default()), buf: BytesMut::new(), raw: Vec::new() }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).unwrap();
    }

    /// Reads frames until `until` holds for those read by this call.
    fn read_until(&mut self, until: impl Fn(&[RawFrame]) -> bool) -> Vec<RawFrame> {
        let mut frames = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Cut::Frame(frame) = self.cutter.cut(&mut self.buf) {
                frames.push(frame);
            }
            if until(&frames) {
                return frames;
            }
            let n = self.socket.read(&mut chunk).expect("the peer answers in time");
            assert!(n > 0, "the connection closed after {frames:?}");
            self.raw.extend_from_slice(&chunk[..n]);
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn ends_with_close(frames: &[RawFrame]) -> bool {
    frames.last().is_some_and(|f| f.magic == Magic::Stream && shape(f) == Shape::Close)
}

/// brpc's own decoder (decode.py, beside the captures) lists our bytes
/// frame by frame.
fn assert_decode_py_reads(raw: &[u8], frames: usize) {
    let path = std::env::temp_dir().join(format!("brpc_stream_replay_{}.bin", std::process::id()));
    std::fs::write(&path, raw).unwrap();
    let output = std::process::Command::new("python3")
        .arg(common::wire_dir().join("decode.py"))
        .arg(&path)
        .output()
        .expect("python3 runs decode.py");
    let _ = std::fs::remove_file(&path);
    assert!(output.status.success(), "decode.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let listing = String::from_utf8_lossy(&output.stdout);
    let top_level = listing.lines().filter(|l| l.starts_with('@')).count();
    assert_eq!(top_level, frames, "{listing}");
    assert!(listing.contains("'accepted'") || listing.contains("accepted"), "{listing}");
}

/// Counts messages and answers "done" after the third, as the captured
/// server did.
struct DoneAfterThree {
    seen: Mutex<usize>,
}

impl StreamHandler for DoneAfterThree {
    fn on_received_messages(&self, id: StreamId, messages: &[Bytes]) {
        let mut seen = self.seen.lock().unwrap();
        let before = *seen;
        *seen += messages.len();
        if before < 3 && *seen >= 3 {
            stream::write(id, Bytes::from_static(b"done"), false).unwrap();
        }
    }
    fn on_idle_timeout(&self, _id: StreamId) {}
    fn on_closed(&self, _id: StreamId) {}
    fn on_failed(&self, _id: StreamId, _error: &Error) {}
}

#[test]
fn our_server_answers_a_brpc_clients_bytes_like_a_brpc_server() {
    let server = Server::new();
    server
        .add_method(
            "bench.StreamService",
            "Open",
            Arc::new(|call: ServerCall| {
                let handler = Arc::new(DoneAfterThree { seen: Mutex::new(0) });
                let options = StreamOptions { handler: Some(handler), ..Default::default() };
                let settings = call.stream_settings().cloned().unwrap();
                let ids = stream::accept(call.host(), &settings, &options, stream::MAX_STREAMS_PER_CALL).unwrap();
                call.respond_with_streams(Ok((Bytes::from_static(b"\n\x08accepted"), Bytes::new())), &ids);
            }),
        )
        .unwrap();
    server.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    let mut peer = FrameReader::new(TcpStream::connect(server.listen_address().unwrap()).unwrap());

    let script = capture("open_write_close.client_to_server.bin");
    // The request first; our server's stream id comes back in the response.
    peer.send(&rewrite(&script[0], &|id| id, CAPTURED_CORRELATION_ID));
    let response = peer.read_until(|frames| !frames.is_empty());
    let embedded = RawFrame::from_embedded(StreamFrame::decode(&response[0]).unwrap().payload).unwrap();
    let our_stream = RpcMessage::decode(&embedded).unwrap().meta.stream_settings.unwrap().stream_id();
    let to_ours = |id: i64| if id == CAPTURED_SERVER_STREAM { our_stream } else { id };
    // As the captured client did: three messages, then (once "done" came
    // back) its FEEDBACK and its CLOSE.
    let (messages, rest) = script[1..].split_at(3);
    for frame in messages {
        peer.send(&rewrite(frame, &to_ours, CAPTURED_CORRELATION_ID));
    }
    let mut ours = response;
    let got_done = |frames: &[RawFrame]| frames.iter().any(|f| shape(f) == Shape::Data(Bytes::from_static(b"done")));
    ours.extend(peer.read_until(got_done));
    for frame in rest {
        peer.send(&rewrite(frame, &to_ours, CAPTURED_CORRELATION_ID));
    }
    ours.extend(peer.read_until(ends_with_close));
    assert_decode_py_reads(&peer.raw, ours.len());

    let theirs = capture("open_write_close.server_to_client.bin");
    let ours_shapes = without_intermediate_feedback(ours.iter().map(shape).collect());
    let theirs_shapes = without_intermediate_feedback(theirs.iter().map(shape).collect());
    assert_eq!(ours_shapes, theirs_shapes);
    // Every stream frame is addressed to the client's stream, from ours.
    for frame in &ours {
        let meta = StreamFrame::decode(frame).unwrap().meta;
        assert_eq!(meta.stream_id(), CAPTURED_CLIENT_STREAM);
        assert_eq!(meta.source_stream_id(), our_stream);
    }
    server.join();
}

#[test]
fn our_client_talks_to_a_brpc_servers_bytes_like_a_brpc_client() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (heard_tx, heard_rx) = mpsc::channel();
    let peer = std::thread::spawn(move || {
        let mut socket = FrameReader::new(listener.accept().unwrap().0);
        let script = capture("open_write_close.server_to_client.bin");
        let request = socket.read_until(|frames| !frames.is_empty());
        let message = RpcMessage::decode(&request[0]).unwrap();
        let correlation_id = message.meta.correlation_id.unwrap();
        let our_stream = message.meta.stream_settings.unwrap().stream_id();
        let to_ours = |id: i64| if id == CAPTURED_CLIENT_STREAM { our_stream } else { id };
        // The response, then what the captured server sent as data came in:
        // the rest once the client's three messages arrived.
        socket.send(&rewrite(&script[0], &to_ours, correlation_id));
        let mut heard = request;
        heard.extend(
            socket.read_until(|frames| frames.iter().filter(|f| matches!(shape(f), Shape::Data(_))).count() == 3),
        );
        for frame in &script[1..script.len() - 1] {
            socket.send(&rewrite(frame, &to_ours, correlation_id));
        }
        heard.extend(socket.read_until(ends_with_close));
        socket.send(&rewrite(&script[script.len() - 1], &to_ours, correlation_id));
        let _ = heard_tx.send(heard);
    });

    let (done_tx, done_rx) = mpsc::channel();
    let options = StreamOptions { handler: Some(Arc::new(Collect(Mutex::new(done_tx)))), ..Default::default() };
    let ids = stream::create(1, &options).unwrap();
    let channel = Channel::new(&addr.to_string(), ChannelOptions::default()).unwrap();
    let (call_tx, call_rx) = mpsc::channel();
    let streams = ids.clone();
    channel.call(
        CallRequest {
            service: "bench.StreamService".into(),
            method: "Open".into(),
            payload: Bytes::from_static(b"\x08\x03"),
            stream_settings: stream::settings_for(&ids),
            ..Default::default()
        },
        Box::new(move |outcome| {
            let settings = outcome.result.as_ref().ok().and_then(|m| m.meta.stream_settings.clone());
            let error = outcome.error();
            let then = Box::new(move || drop(call_tx.send(error)));
            stream::on_setup_response(&streams, outcome.socket, outcome.error(), settings.as_ref(), then);
        }),
    );
    assert_eq!(call_rx.recv_timeout(Duration::from_secs(10)).unwrap(), None);
    for _ in 0..3 {
        stream::write(ids[0], Bytes::from_static(b"xxxxx"), false).unwrap();
    }
    assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)).unwrap(), Bytes::from_static(b"done"));
    // Let the FEEDBACK for "done" go out before the CLOSE, as it did in the capture.
    std::thread::sleep(Duration::from_millis(50));
    stream::close(ids[0]).unwrap();

    let heard = heard_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    peer.join().unwrap();
    let theirs = capture("open_write_close.client_to_server.bin");
    let heard_shapes = without_intermediate_feedback(heard.iter().map(shape).collect());
    let theirs_shapes = without_intermediate_feedback(theirs.iter().map(shape).collect());
    assert_eq!(heard_shapes, theirs_shapes);
}

/// Collects what a server stream receives.
struct Collect(Mutex<mpsc::Sender<Bytes>>);

impl StreamHandler for Collect {
    fn on_received_messages(&self, _id: StreamId, messages: &[Bytes]) {
        for m in messages {
            let _ = self.0.lock().unwrap().send(m.clone());
        }
    }
    fn on_idle_timeout(&self, _id: StreamId) {}
    fn on_closed(&self, _id: StreamId) {}
    fn on_failed(&self, _id: StreamId, _error: &Error) {}
}

/// A server whose Open accepts with a collecting handler, and a raw peer
/// that opened a stream on it: (server, peer, our stream id, messages).
fn opened_by_raw_peer() -> (Server, FrameReader, i64, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel();
    let options = StreamOptions { handler: Some(Arc::new(Collect(Mutex::new(tx)))), ..Default::default() };
    let (server, _) = accepting_server(options);
    let mut peer = FrameReader::new(TcpStream::connect(server.listen_address().unwrap()).unwrap());
    let script = capture("open_write_close.client_to_server.bin");
    peer.send(&rewrite(&script[0], &|id| id, CAPTURED_CORRELATION_ID));
    let response = peer.read_until(|frames| !frames.is_empty());
    let embedded = RawFrame::from_embedded(StreamFrame::decode(&response[0]).unwrap().payload).unwrap();
    let ours = RpcMessage::decode(&embedded).unwrap().meta.stream_settings.unwrap().stream_id();
    (server, peer, ours, rx)
}

fn data_frame(to: i64, from: i64, payload: &[u8], continues: bool) -> Vec<u8> {
    let meta = brpc_stream::protocol::StreamFrameMeta {
        stream_id: Some(to),
        source_stream_id: Some(from),
        frame_type: Some(FrameType::Data as i32),
        has_continuation: Some(continues),
        feedback: None,
    };
    let mut out = BytesMut::new();
    pack_stream_header(&mut out, &meta, payload.len()).unwrap();
    out.extend_from_slice(payload);
    out.to_vec()
}

#[test]
fn a_message_in_continued_data_segments_arrives_whole() {
    let (server, mut peer, ours, messages) = opened_by_raw_peer();
    peer.send(&data_frame(ours, CAPTURED_CLIENT_STREAM, b"abc", true));
    peer.send(&data_frame(ours, CAPTURED_CLIENT_STREAM, b"def", true));
    peer.send(&data_frame(ours, CAPTURED_CLIENT_STREAM, b"ghi", false));
    peer.send(&data_frame(ours, CAPTURED_CLIENT_STREAM, b"next", false));
    assert_eq!(messages.recv_timeout(Duration::from_secs(10)).unwrap(), Bytes::from_static(b"abcdefghi"));
    assert_eq!(messages.recv_timeout(Duration::from_secs(10)).unwrap(), Bytes::from_static(b"next"));
    server.join();
}

#[test]
fn a_frame_for_a_stream_of_another_connection_is_answered_with_rst() {
    let (server, _owner, ours, messages) = opened_by_raw_peer();
    let mut stranger = FrameReader::new(TcpStream::connect(server.listen_address().unwrap()).unwrap());
    stranger.send(&data_frame(ours, 7, b"not yours", false));
    let answer = stranger.read_until(|frames| !frames.is_empty());
    let meta = StreamFrame::decode(&answer[0]).unwrap().meta;
    assert_eq!(meta.frame_type(), FrameType::Rst);
    assert_eq!(meta.stream_id(), 7);
    assert!(messages.recv_timeout(Duration::from_millis(200)).is_err(), "the stream took a stranger's data");
    server.join();
}

/// The captured request, asking to set up `n` streams (ids 1..=n).
fn request_with_streams(n: i64) -> Vec<u8> {
    let script = capture("open_write_close.client_to_server.bin");
    let mut message = RpcMessage::decode(&script[0]).unwrap();
    if let Some(settings) = message.meta.stream_settings.as_mut() {
        settings.extra_stream_ids = (2..=n).collect();
    }
    let mut out = BytesMut::new();
    pack_rpc_header(&mut out, &message.meta, message.payload.len()).unwrap();
    out.extend_from_slice(&message.payload);
    out.to_vec()
}

/// A server whose `Open` accepts every stream with `options`; counts the
/// calls it ran.
fn accepting_server(options: StreamOptions) -> (Server, Arc<Mutex<usize>>) {
    let runs = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&runs);
    let server = Server::new();
    server
        .add_method(
            "bench.StreamService",
            "Open",
            Arc::new(move |call: ServerCall| {
                *counted.lock().unwrap() += 1;
                let settings = call.stream_settings().cloned().unwrap();
                let ids = stream::accept(call.host(), &settings, &options, stream::MAX_STREAMS_PER_CALL).unwrap();
                call.respond_with_streams(Ok((Bytes::new(), Bytes::new())), &ids);
            }),
        )
        .unwrap();
    server.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    (server, runs)
}

/// The RPC response a server sent inside the DATA frame to stream 1.
fn embedded_response(frame: &RawFrame) -> RpcMessage {
    let data = StreamFrame::decode(frame).unwrap();
    assert_eq!((data.meta.frame_type(), data.meta.stream_id()), (FrameType::Data, 1));
    RpcMessage::decode(&RawFrame::from_embedded(data.payload).unwrap()).unwrap()
}

#[test]
fn a_request_setting_up_more_streams_than_a_call_may_is_refused_before_its_method_runs() {
    let (server, runs) = accepting_server(StreamOptions::default());
    let mut peer = FrameReader::new(TcpStream::connect(server.listen_address().unwrap()).unwrap());
    peer.send(&request_with_streams(stream::MAX_STREAMS_PER_CALL as i64 + 1));
    let response = embedded_response(&peer.read_until(|frames| !frames.is_empty())[0]);
    let error = response.meta.response.unwrap();
    assert_eq!(error.error_code, Some(brpc_stream::errno::EREQUEST), "{:?}", error.error_text);
    assert!(response.meta.stream_settings.is_none());
    assert_eq!(*runs.lock().unwrap(), 0, "the method ran");
    server.join();
}

#[test]
fn a_request_setting_up_as_many_streams_as_a_call_may_gets_them_all() {
    let (server, runs) = accepting_server(StreamOptions::default());
    let mut peer = FrameReader::new(TcpStream::connect(server.listen_address().unwrap()).unwrap());
    peer.send(&request_with_streams(stream::MAX_STREAMS_PER_CALL as i64));
    let response = embedded_response(&peer.read_until(|frames| !frames.is_empty())[0]);
    assert_eq!(response.meta.response.and_then(|r| r.error_code).unwrap_or(0), 0);
    let settings = response.meta.stream_settings.unwrap();
    assert_eq!(1 + settings.extra_stream_ids.len(), stream::MAX_STREAMS_PER_CALL);
    assert_eq!(*runs.lock().unwrap(), 1);
    server.join();
}
