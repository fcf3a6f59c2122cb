//! The checks behind the `live` fuzz target, shared with the seeded test
//! `tests/fuzz_live.rs`. One streaming echo server, started once in the
//! process on loopback, is sent what an input decodes to: baidu_std
//! requests with arbitrary metas (stream settings with arbitrary ids among
//! them), STRM frames of every type for the streams it accepted or for
//! made-up ids, headers with sizes that lie, truncated frames and garbage,
//! over up to four connections at once, reading what comes back as it
//! goes. The server must never crash or hang: every [`CHECK_EVERY`]
//! inputs a legitimate client's call must be answered, and now and then a
//! legitimate stream must echo.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use brpc_stream::error::Error;
use brpc_stream::protocol::{
    pack_rpc, pack_stream, Cut, Cutter, Feedback, FrameType, Limits, Magic, RawFrame, RpcMessage, RpcMeta,
    RpcRequestMeta, RpcResponseMeta, StreamFrame, StreamFrameMeta, StreamSettings,
};
use brpc_stream::rpc::{CallRequest, Channel, ChannelOptions, Server, ServerCall, ServerOptions};
use brpc_stream::stream::{self, StreamHandler, StreamId, StreamOptions};

const SERVICE: &str = "fuzz.Service";
/// Methods of the server, and one it does not have.
const METHODS: [&str; 5] = ["Echo", "Stream", "Streams", "Refuse", "Nope"];
/// A legitimate call is made after this many inputs.
pub const CHECK_EVERY: u64 = 16;
/// Connections one input may hold open at once.
const MAX_CONNECTIONS: usize = 4;
/// Operations one input decodes to at most.
const MAX_OPS: usize = 64;
/// A payload's largest size (requests and stream messages).
const MAX_PAYLOAD: usize = 4096;
/// The server's `max_body_size`: small, so the fuzzer reaches the frames
/// it drops and the connections it closes for their size.
const MAX_BODY: usize = 16 * 1024;
/// The window of the server's streams: small, so a peer that ignores it
/// is reset now and then.
const STREAM_WINDOW: i32 = 8 * 1024;
/// The server's bound on streams per connection: small, so it is reached.
const STREAMS_PER_CONNECTION: usize = 24;
/// How long a read waits for more of the server's answers.
const READ_WAIT: Duration = Duration::from_millis(2);

/// The server, its address, and a legitimate client.
pub struct Live {
    pub server: Server,
    addr: String,
    channel: Channel,
    inputs: AtomicU64,
}

/// The server, started on first use.
pub fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(|| {
        // Every dropped frame is logged; only a fatal one matters here.
        brpc_stream::log::set_min_level(brpc_stream::log::Level::Fatal);
        let server = Server::new();
        server.add_method(SERVICE, "Echo", Arc::new(echo)).expect("a new method");
        server.add_method(SERVICE, "Stream", Arc::new(|call| accept_streams(call, 1, true))).expect("a new method");
        server.add_method(SERVICE, "Streams", Arc::new(|call| accept_streams(call, 8, true))).expect("a new method");
        server.add_method(SERVICE, "Refuse", Arc::new(|call| accept_streams(call, 8, false))).expect("a new method");
        let options = ServerOptions {
            limits: Limits { max_body_size: MAX_BODY },
            max_partial_request_bytes: 4 * MAX_BODY,
            header_timeout: Some(Duration::from_secs(1)),
            body_timeout: Some(Duration::from_secs(1)),
            max_streams_per_connection: STREAMS_PER_CONNECTION,
            ..Default::default()
        };
        server.start("127.0.0.1:0", options).expect("the server starts");
        let addr = server.listen_address().expect("a listening server").to_string();
        let channel = Channel::new(&addr, ChannelOptions::default()).expect("a channel");
        Live { server, addr, channel, inputs: AtomicU64::new(0) }
    })
}

/// "Echo": the payload back; a payload starting with "drop" is never
/// answered by the method (the server answers for it).
fn echo(call: ServerCall) {
    if call.request.payload.starts_with(b"drop") {
        return drop(call);
    }
    let payload = call.request.payload.clone();
    call.respond(Ok((payload, Bytes::new())));
}

/// Accepts up to `max` streams that echo; `succeed` false fails the call
/// after accepting them (their streams must end with it).
fn accept_streams(call: ServerCall, max: usize, succeed: bool) {
    let Some(settings) = call.stream_settings().cloned() else {
        return call.respond(Err(Error::new(brpc_stream::errno::EREQUEST, "no stream")));
    };
    let options = StreamOptions {
        handler: Some(Arc::new(EchoStream)),
        max_buf_size: STREAM_WINDOW,
        messages_in_batch: 4,
        ..Default::default()
    };
    match stream::accept(call.host(), &settings, &options, max) {
        Ok(ids) if succeed => call.respond_with_streams(Ok((Bytes::from_static(b"accepted"), Bytes::new())), &ids),
        Ok(ids) => call.respond_with_streams(Err(Error::new(brpc_stream::errno::EREQUEST, "refused")), &ids),
        Err(error) => call.respond(Err(error)),
    }
}

/// Echoes every message without waiting for room (a full window drops
/// it); "close" closes the stream from this side.
struct EchoStream;

impl StreamHandler for EchoStream {
    fn on_received_messages(&self, id: StreamId, messages: &[Bytes]) {
        for message in messages {
            if message.starts_with(b"close") {
                let _ = stream::close(id);
                return;
            }
            let _ = stream::write(id, message.clone(), false);
        }
    }
    fn on_idle_timeout(&self, _id: StreamId) {}
    fn on_closed(&self, _id: StreamId) {}
    fn on_failed(&self, _id: StreamId, _error: &Error) {}
}

/// The input, read a piece at a time; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }

    /// An integer of any size, small ones and the edges most often.
    fn int(&mut self) -> i64 {
        match self.byte() % 8 {
            0 => 0,
            1 => -1,
            2 => i64::from(self.byte()),
            3 => i64::from(self.u16()),
            4 => i64::MAX,
            5 => i64::MIN,
            6 => i64::from(self.u32() as i32),
            _ => self.u64() as i64,
        }
    }

    /// Up to `max` bytes: taken from the input, or a pattern.
    fn payload(&mut self, max: usize) -> Vec<u8> {
        let len = (self.u16() as usize) % (max + 1);
        match self.byte() % 8 {
            0 => b"close".iter().copied().chain((0..len).map(|i| i as u8)).take(len.max(5)).collect(),
            1 => b"drop".to_vec(),
            2..=4 => {
                let take = len.min(self.0.len());
                let (head, rest) = self.0.split_at(take);
                self.0 = rest;
                head.to_vec()
            }
            _ => (0..len).map(|i| i as u8).collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One connection of an input and what it learnt from the server.
struct Peer {
    conn: TcpStream,
    /// The server closed it, or a write failed.
    dead: bool,
    buf: BytesMut,
    cutter: Cutter,
    /// Stream ids the server gave (its side of the streams).
    server_streams: Vec<i64>,
}

impl Peer {
    fn connect(addr: &str) -> Option<Peer> {
        let conn = TcpStream::connect(addr).ok()?;
        conn.set_write_timeout(Some(Duration::from_millis(200))).ok()?;
        let _ = conn.set_nodelay(true);
        Some(Peer {
            conn,
            dead: false,
            buf: BytesMut::new(),
            cutter: Cutter::new(Limits::default()),
            server_streams: Vec::new(),
        })
    }

    fn send(&mut self, bytes: &[u8]) {
        if !self.dead && self.conn.write_all(bytes).is_err() {
            self.dead = true;
        }
    }

    /// Reads what the server sent until it pauses for `wait`, learning the
    /// stream ids it hands out.
    fn pump(&mut self, wait: Duration) {
        if self.dead || self.conn.set_read_timeout(Some(wait)).is_err() {
            return;
        }
        let mut chunk = [0u8; 16 * 1024];
        // Bounded: a server that keeps talking cannot hold the input.
        for _ in 0..64 {
            match self.conn.read(&mut chunk) {
                Ok(0) => {
                    self.dead = true;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => break,
            }
        }
        loop {
            match self.cutter.cut(&mut self.buf) {
                Cut::Frame(frame) => self.learn(&frame),
                Cut::Dropped { .. } => {}
                Cut::NeedMore { .. } => break,
                Cut::Fatal(_) => {
                    // The server never sends what this side cannot cut.
                    panic!("the server sent bytes that are no baidu_std frame");
                }
            }
        }
    }

    fn learn(&mut self, frame: &RawFrame) {
        let settings = match frame.magic {
            Magic::Rpc => frame.decode_rpc().ok().and_then(|meta| meta.stream_settings),
            Magic::Stream => {
                let Ok(frame) = StreamFrame::decode(frame) else { return };
                if let Some(source) = frame.meta.source_stream_id {
                    self.remember(source);
                }
                let embedded = RawFrame::from_embedded(frame.payload.clone()).ok();
                embedded.and_then(|f| RpcMessage::decode(&f).ok()).and_then(|m| m.meta.stream_settings)
            }
        };
        if let Some(settings) = settings {
            let ids = settings.stream_id.into_iter().chain(settings.extra_stream_ids);
            for id in ids {
                self.remember(id);
            }
        }
    }

    fn remember(&mut self, id: i64) {
        if id >= 0 && !self.server_streams.contains(&id) && self.server_streams.len() < 64 {
            self.server_streams.push(id);
        }
    }

    /// A stream id of the server's, mostly one it gave.
    fn server_stream(&self, input: &mut Input<'_>) -> i64 {
        let pick = input.byte() as usize;
        match (self.server_streams.is_empty(), pick % 4) {
            (false, 0..=2) => self.server_streams[pick / 4 % self.server_streams.len()],
            _ => input.int(),
        }
    }
}

/// This side's stream ids: a few small ones, so frames hit them again.
fn my_stream(input: &mut Input<'_>) -> i64 {
    match input.byte() % 8 {
        0 => input.int(),
        n => i64::from(n),
    }
}

fn request(input: &mut Input<'_>, peer: &Peer) -> Vec<u8> {
    // One request in four has odd fields; the others reach the methods.
    let flags = if input.byte() % 4 == 0 { input.u16() } else { 0 };
    let on = |bit: u16| flags & (1 << bit) != 0;
    let method = METHODS[input.byte() as usize % METHODS.len()];
    let mut meta = RpcMeta { correlation_id: Some(input.int()), ..Default::default() };
    if !on(0) {
        meta.request = Some(RpcRequestMeta {
            service_name: Some(if on(1) { "fuzz.Nothing".into() } else { SERVICE.into() }),
            method_name: Some(method.into()),
            log_id: on(2).then(|| input.int()),
            timeout_ms: on(3).then(|| input.u32() as i32),
            ..Default::default()
        });
    }
    if on(4) {
        meta.response = Some(RpcResponseMeta { error_code: Some(input.u32() as i32), error_text: None });
    }
    if on(5) {
        meta.compress_type = Some(i32::from(input.byte() % 7) - 1);
    }
    if on(6) {
        meta.attachment_size = Some(match input.byte() % 4 {
            0 => -1,
            1 => i32::MAX,
            _ => i32::from(input.byte()),
        });
    }
    if on(7) {
        meta.checksum_type = Some(i32::from(input.byte() % 3));
        meta.checksum_value = on(8).then(|| Bytes::from(input.u32().to_le_bytes().to_vec()));
        meta.checksum_with_attachment = Some(on(9));
    }
    if on(10) || method.starts_with("Stream") || method == "Refuse" {
        let extra = match input.byte() % 8 {
            0..=4 => 0,
            5 | 6 => input.byte() % 10,
            _ => input.byte(),
        };
        meta.stream_settings = Some(StreamSettings {
            stream_id: Some(my_stream(input)),
            need_feedback: Some(!on(11)),
            writable: Some(!on(12)),
            extra_stream_ids: (0..extra).map(|_| my_stream(input)).collect(),
        });
    }
    if on(13) {
        meta.user_fields.insert("k".into(), "v".repeat(input.byte() as usize));
    }
    let payload = input.payload(MAX_PAYLOAD);
    let mut out = BytesMut::new();
    let _ = pack_rpc(&mut out, &meta, &payload);
    // A response from the server's side of a stream, as a peer could
    // send, now and then inside a DATA frame.
    if on(14) && !peer.server_streams.is_empty() {
        let to = peer.server_stream(input);
        return stream_frame(to, my_stream(input), FrameType::Data as i32, false, None, &out);
    }
    out.to_vec()
}

fn stream_frame(to: i64, from: i64, kind: i32, more: bool, feedback: Option<i64>, payload: &[u8]) -> Vec<u8> {
    let meta = StreamFrameMeta {
        stream_id: Some(to),
        source_stream_id: Some(from),
        frame_type: Some(kind),
        has_continuation: Some(more),
        feedback: feedback.map(|consumed| Feedback { consumed_size: Some(consumed) }),
    };
    let mut out = BytesMut::new();
    let _ = pack_stream(&mut out, &meta, payload);
    out.to_vec()
}

fn strm(input: &mut Input<'_>, peer: &mut Peer) -> Vec<u8> {
    // Mostly to a stream of the server's: with none yet, one is set up
    // first (what random bytes would seldom do in the right order).
    if peer.server_streams.is_empty() && input.byte() % 4 != 0 {
        let mut meta = RpcMeta { correlation_id: Some(input.int()), ..Default::default() };
        meta.request = Some(RpcRequestMeta {
            service_name: Some(SERVICE.into()),
            method_name: Some("Stream".into()),
            ..Default::default()
        });
        meta.stream_settings = Some(StreamSettings {
            stream_id: Some(my_stream(input)),
            need_feedback: Some(true),
            writable: Some(true),
            extra_stream_ids: Vec::new(),
        });
        let mut open = BytesMut::new();
        let _ = pack_rpc(&mut open, &meta, b"open");
        peer.send(&open);
        for _ in 0..3 {
            peer.pump(READ_WAIT);
            if !peer.server_streams.is_empty() {
                break;
            }
        }
    }
    let to = peer.server_stream(input);
    let from = my_stream(input);
    let kind = match input.byte() % 8 {
        0..=2 => FrameType::Data as i32,
        3 => FrameType::Feedback as i32,
        4 => FrameType::Close as i32,
        5 => FrameType::Rst as i32,
        6 => FrameType::Unknown as i32,
        _ => input.u32() as i32,
    };
    // A message in several DATA frames, and a FEEDBACK riding on another
    // type, one frame in eight each.
    let flags = input.byte();
    let feedback = (flags & 7 == 0 || kind == FrameType::Feedback as i32).then(|| input.int());
    let payload = if kind == FrameType::Data as i32 { input.payload(MAX_PAYLOAD) } else { Vec::new() };
    stream_frame(to, from, kind, flags & 56 == 0, feedback, &payload)
}

/// A header whose sizes need not fit what follows.
fn lying_header(input: &mut Input<'_>) -> Vec<u8> {
    let mut out = if input.byte() % 2 == 0 { b"PRPC".to_vec() } else { b"STRM".to_vec() };
    let body = match input.byte() % 4 {
        0 => input.u32(),
        _ => u32::from(input.u16()),
    };
    let meta = match input.byte() % 3 {
        0 => input.u32(),
        1 => body,
        _ => u32::from(input.byte()),
    };
    out.extend_from_slice(&body.to_be_bytes());
    out.extend_from_slice(&meta.to_be_bytes());
    let tail = input.byte() as usize;
    out.extend((0..tail).map(|i| i as u8));
    out
}

/// Decodes `data` into operations on up to [`MAX_CONNECTIONS`] connections
/// to the live server and runs them; every [`CHECK_EVERY`] inputs checks
/// that a legitimate client is still served.
pub fn check_input(data: &[u8]) {
    let live = live();
    let mut input = Input(data);
    let mut peers: Vec<Peer> = Vec::new();
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.byte();
        if peers.is_empty() || (op % 32 == 0 && peers.len() < MAX_CONNECTIONS) {
            peers.extend(Peer::connect(&live.addr));
            if peers.is_empty() {
                break;
            }
            continue;
        }
        let which = input.byte() as usize % peers.len();
        // Mostly frames; what ends a connection (bytes that are no frame)
        // now and then.
        match op % 32 {
            0..=8 => {
                let frame = request(&mut input, &peers[which]);
                peers[which].send(&frame);
            }
            9..=20 => {
                let frame = strm(&mut input, &mut peers[which]);
                peers[which].send(&frame);
            }
            21 => {
                let garbage = input.payload(256);
                peers[which].send(&garbage);
            }
            22 => {
                // A frame cut short: what follows is read as its rest.
                let mut frame = if input.byte() % 2 == 0 {
                    request(&mut input, &peers[which])
                } else {
                    strm(&mut input, &mut peers[which])
                };
                frame.truncate(input.u16() as usize % (frame.len() + 1));
                peers[which].send(&frame);
            }
            23 => {
                let header = lying_header(&mut input);
                peers[which].send(&header);
            }
            24..=28 => peers[which].pump(READ_WAIT),
            _ => {
                let peer = peers.swap_remove(which);
                if input.byte() % 2 == 0 {
                    reset_on_close(&peer.conn);
                } else {
                    let _ = peer.conn.shutdown(Shutdown::Write);
                }
            }
        }
    }
    for peer in &mut peers {
        peer.pump(READ_WAIT);
    }
    drop(peers);
    let done = live.inputs.fetch_add(1, Ordering::AcqRel) + 1;
    if done % CHECK_EVERY == 0 {
        check_served(live, done % (CHECK_EVERY * 8) == 0);
    }
    if done % (CHECK_EVERY * 32) == 0 {
        let (connections, partial) = settle(live, Duration::from_secs(10));
        assert!(connections <= 1, "{connections} connections kept after every input closed its own");
        assert_eq!(partial, 0, "partial request bytes kept after every connection closed");
    }
}

/// Makes the coming close send RST instead of FIN.
fn reset_on_close(conn: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on an open socket with a properly sized value.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// A legitimate call is answered (and, with `with_stream`, a legitimate
/// stream echoes); panics otherwise, which is what the fuzzer reports.
pub fn check_served(live: &Live, with_stream: bool) {
    assert!(live.server.is_running(), "the server stopped");
    let (tx, rx) = mpsc::channel();
    let request = CallRequest {
        service: SERVICE.into(),
        method: "Echo".into(),
        payload: Bytes::from_static(b"legit"),
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    live.channel.call(
        request,
        Box::new(move |outcome| {
            let _ = tx.send(outcome.result.map(|m| m.payload).map_err(|e| e.to_string()));
        }),
    );
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(payload)) => assert_eq!(payload, Bytes::from_static(b"legit"), "a legitimate call got a wrong answer"),
        Ok(Err(error)) => panic!("a legitimate call failed: {error}"),
        Err(_) => panic!("a legitimate call was not answered within 10 s"),
    }
    if with_stream {
        check_stream(live);
    }
}

/// Messages a legitimate stream's handler received.
struct Received(std::sync::Mutex<mpsc::Sender<Bytes>>);

impl StreamHandler for Received {
    fn on_received_messages(&self, _id: StreamId, messages: &[Bytes]) {
        if let Ok(tx) = self.0.lock() {
            for message in messages {
                let _ = tx.send(message.clone());
            }
        }
    }
    fn on_idle_timeout(&self, _id: StreamId) {}
    fn on_closed(&self, _id: StreamId) {}
    fn on_failed(&self, _id: StreamId, _error: &Error) {}
}

/// A stream set up by a legitimate call echoes a message.
fn check_stream(live: &Live) {
    let (tx, echoed) = mpsc::channel();
    let handler = Arc::new(Received(std::sync::Mutex::new(tx)));
    let ids = stream::create(1, &StreamOptions { handler: Some(handler), ..Default::default() })
        .expect("a client stream is created");
    let (setup_tx, setup) = mpsc::channel();
    let streams = ids.clone();
    live.channel.call(
        CallRequest {
            service: SERVICE.into(),
            method: "Stream".into(),
            stream_settings: stream::settings_for(&ids),
            timeout: Some(Duration::from_secs(5)),
            ..Default::default()
        },
        Box::new(move |outcome| {
            let settings = outcome.result.as_ref().ok().and_then(|m| m.meta.stream_settings.clone());
            let error = outcome.error();
            let then = Box::new(move || drop(setup_tx.send(error)));
            stream::on_setup_response(&streams, outcome.socket, outcome.error(), settings.as_ref(), then);
        }),
    );
    match setup.recv_timeout(Duration::from_secs(10)) {
        Ok(None) => {}
        Ok(Some(error)) => panic!("a legitimate stream was refused: {error}"),
        Err(_) => panic!("a legitimate stream call was not answered within 10 s"),
    }
    stream::write(ids[0], Bytes::from_static(b"legit stream"), false).expect("a legitimate stream takes a write");
    let got = echoed.recv_timeout(Duration::from_secs(10));
    let _ = stream::close(ids[0]);
    assert_eq!(got.ok(), Some(Bytes::from_static(b"legit stream")), "a legitimate stream did not echo");
}

/// Once every connection of the inputs is closed: the server keeps only
/// the legitimate client's connection and the streams still closing, and
/// holds no partial request. Returns (connections, partial bytes) seen.
pub fn settle(live: &Live, within: Duration) -> (usize, usize) {
    let deadline = Instant::now() + within;
    loop {
        let seen = (live.server.connection_count(), live.server.partial_request_bytes());
        if (seen.0 <= 1 && seen.1 == 0) || Instant::now() >= deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
