//! The attacks of issue 12, made as a hostile or broken peer makes them:
//! each talks to the server over loopback only and checks only what a peer
//! sees, so the same code attacks the fault suite's in-process server
//! (tests/fault_suite.rs adds the checks inside the server) and a server
//! in another process (examples/fault_probe.rs). Each returns a note on
//! what happened, and panics with what it found when the server did not
//! hold. `sample` samples the server's RSS; the suite's checks ride on it.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use brpc_stream::errno;
use brpc_stream::protocol::{FrameType, RpcMeta, RpcResponseMeta, StreamSettings};
use brpc_stream::rpc;
use brpc_stream::stream;
use parking_lot::{Condvar, Mutex};

use crate::measure::MIB;
use crate::raw_peer::{
    close_frame, closed_by_server, connect_many, data_frame, echo_message, header, request_meta, reset_on_close,
    rpc_frame, RawPeer, Received, SplitMix,
};

/// The attacker's stream ids: far from anything the library hands out.
const MY_STREAM: i64 = 0x7000_0000_0000;

/// The window (`max_buf_size`) of a "fault.Service/Sink" stream.
pub const SINK_WINDOW: i32 = 4 * 1024 * 1024;

/// The server's bounds the attacks test: they size an attack and say what
/// the server should have done.
pub struct Bounds {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub max_streams_per_connection: usize,
    pub max_partial_request_bytes: usize,
}

impl Bounds {
    /// The library's defaults (bench/fault_server.cpp runs with them).
    pub fn defaults() -> Bounds {
        Bounds {
            header_timeout: rpc::DEFAULT_HEADER_TIMEOUT,
            body_timeout: rpc::DEFAULT_BODY_TIMEOUT,
            max_connections: rpc::DEFAULT_MAX_CONNECTIONS,
            max_streams_per_connection: rpc::DEFAULT_MAX_STREAMS_PER_CONNECTION,
            max_partial_request_bytes: rpc::DEFAULT_MAX_PARTIAL_REQUEST_BYTES,
        }
    }
}

pub type Attack = fn(&str, &Bounds, &dyn Fn()) -> String;

/// Every attack, by the name the probe's table and the suite's figures use.
pub const ALL: &[(&str, Attack)] = &[
    ("extra stream ids", |addr, _, sample| extra_stream_ids(addr, sample)),
    ("stream flood ignoring FEEDBACK", |addr, _, sample| stream_flood_ignoring_feedback(addr, sample)),
    ("pipelining without reading", |addr, _, sample| pipelining_without_reading(addr, sample)),
    ("garbage headers", |addr, _, sample| garbage_headers(addr, sample)),
    ("truncated headers", |addr, _, sample| truncated_headers(addr, sample)),
    ("bodies claiming 2 GiB", |addr, _, sample| bodies_claiming_two_gib(addr, sample)),
    ("slowloris x1000", |addr, bounds, sample| slowloris(addr, bounds.header_timeout, sample)),
    ("trickled bodies x200", |addr, bounds, sample| trickled_bodies(addr, bounds.body_timeout, sample)),
    ("partial bodies", |addr, bounds, sample| partial_bodies(addr, bounds.max_partial_request_bytes, sample)),
    ("idle x2000", |addr, _, sample| idle_connections(addr, sample)),
    ("connections beyond max_connections", |addr, bounds, sample| {
        connections_beyond_max(addr, bounds.max_connections, sample)
    }),
    ("resets mid-request x5000", |addr, _, sample| resets_mid_request(addr, sample)),
    ("absurd RpcMeta fields", |addr, _, sample| absurd_rpc_meta_fields(addr, sample)),
    ("metas that do not parse", |addr, _, sample| metas_that_do_not_parse(addr, sample)),
    ("streams without end", |addr, bounds, sample| {
        streams_without_end(addr, bounds.max_streams_per_connection, sample)
    }),
    ("max streams then hang up x5", |addr, bounds, sample| {
        for _ in 0..5 {
            max_streams_then_hang_up(addr, bounds.max_streams_per_connection, sample);
            // The teardown, then the trim it calls for (a second later).
            hold(sample, Duration::from_secs(3));
        }
        format!("5 rounds of {} streams", bounds.max_streams_per_connection)
    }),
    ("request flooders x4", |addr, _, sample| {
        let received = request_flooders(addr, 4, sample);
        format!("MiB of responses each in 4 s {:?}", received.iter().map(|b| b / MIB as u64).collect::<Vec<_>>())
    }),
    ("busy request flooders x3", |addr, _, sample| {
        let received = busy_request_flooders(addr, 3, sample);
        format!("bytes of responses each in 3 s {received:?}")
    }),
    ("stream flooders x4", |addr, _, sample| {
        let shares = stream_flooders(addr, 4, sample);
        format!("MiB consumed each in 3 s {:?}", shares.iter().map(|b| b / MIB as u64).collect::<Vec<_>>())
    }),
];

/// Samples RSS while `duration` passes, so the legitimate client calls
/// throughout an attack that holds its ground.
fn hold(sample: &dyn Fn(), duration: Duration) {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        sample();
        thread::sleep(Duration::from_millis(50));
    }
}

/// The error code and text of a call's response (0 when it succeeded).
pub fn outcome(response: &RpcMeta) -> (i32, String) {
    let response = response.response.clone().unwrap_or_default();
    (response.error_code.unwrap_or(0), response.error_text.unwrap_or_default())
}

/// A request carrying extra stream ids to "Stream", a method written for
/// one stream: refused every time, and the connection still serves.
pub fn extra_stream_ids(addr: &str, sample: &dyn Fn()) -> String {
    let mut peer = RawPeer::connect(addr);
    let mut refused = 0;
    for call in 1..=300i64 {
        // 1 to MAX_STREAMS_PER_CALL + 8 extra ids, some of them absurd.
        let extra: Vec<i64> = (0..call % (stream::MAX_STREAMS_PER_CALL as i64 + 8) + 1)
            .map(|i| if i % 3 == 0 { -i } else { MY_STREAM + call * 1000 + i })
            .collect();
        let response = peer
            .call_with_streams(call, MY_STREAM + call * 1000, extra)
            .unwrap_or_else(|| panic!("no answer to call {call} (it carried extra stream ids)"));
        let code = outcome(&response).0;
        assert_ne!(code, 0, "call {call}: a request with extra streams was accepted");
        refused += 1;
        if call % 50 == 0 {
            sample();
        }
    }
    // The same connection still sets up a legitimate stream.
    let response = peer.call_with_streams(1000, MY_STREAM - 1, Vec::new()).expect("no answer to the last call");
    assert_eq!(outcome(&response).0, 0, "a legitimate stream was refused after");
    hold(sample, Duration::from_millis(500));
    format!("{refused} requests refused, then one stream accepted")
}

/// A stream peer that never reads and never sends FEEDBACK, writing far
/// past its window while the server echoes: its stream is reset (RST).
pub fn stream_flood_ignoring_feedback(addr: &str, sample: &dyn Fn()) -> String {
    let mut peer = RawPeer::connect(addr);
    let response = peer.open_stream(MY_STREAM, Vec::new()).expect("no answer to the stream's call");
    let server_stream = response.stream_settings.and_then(|s| s.stream_id).expect("the stream was refused");
    // The server's echo fills the window and blocks, so what the peer
    // sends waits unconsumed.
    peer.conn.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let message = data_frame(server_stream, MY_STREAM, &vec![3u8; 64 * 1024]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = 0usize;
    while Instant::now() < deadline && sent < 256 * MIB {
        if peer.conn.write_all(&message).is_err() {
            break;
        }
        sent += message.len();
        if sent % (4 * MIB) < message.len() {
            sample();
        }
    }
    sample();
    // Now read: among the echoes, the RST for this side's stream.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reset = false;
    while let Some(frame) = peer.next(deadline) {
        if let Received::Stream(meta) = frame {
            if meta.frame_type() == FrameType::Rst && meta.stream_id() == MY_STREAM {
                reset = true;
                break;
            }
        }
    }
    assert!(reset, "the peer was not sent RST for its stream ({} MiB sent)", sent / MIB);
    hold(sample, Duration::from_millis(500));
    format!("{} MiB sent, the stream reset", sent / MIB)
}

/// Writes requests of `payload` bytes without ever reading the responses
/// until the server hangs up; true when it did within `budget`.
fn pipeline_without_reading(addr: &str, payload: usize, sample: &dyn Fn(), budget: Duration) -> bool {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    let frame = rpc_frame(&request_meta(1, "Echo"), &echo_message(&vec![7u8; payload]));
    let deadline = Instant::now() + budget;
    let mut last_sample = Instant::now();
    // Where the next write starts in `frame`: a write cut by the timeout
    // goes on where it stopped, so the server sees whole frames only.
    let mut offset = 0;
    while Instant::now() < deadline {
        match stream.write(&frame[offset..]) {
            Ok(n) => offset = (offset + n) % frame.len(),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock || err.kind() == std::io::ErrorKind::TimedOut => {
                // The server stopped reading for now (it is busy writing).
            }
            Err(_) => return true,
        }
        if last_sample.elapsed() > Duration::from_millis(50) {
            sample();
            last_sample = Instant::now();
            // A hang-up shows as EOF on read once the server closed.
            stream.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            let closed = matches!(stream.peek(&mut byte), Ok(0));
            stream.set_nonblocking(false).unwrap();
            if closed {
                return true;
            }
        }
    }
    false
}

/// A client pipelining 64 KiB echo requests and never reading the
/// responses: disconnected (the responses it does not read are bounded).
pub fn pipelining_without_reading(addr: &str, sample: &dyn Fn()) -> String {
    let started = Instant::now();
    let budget = Duration::from_secs(30);
    let cut = pipeline_without_reading(addr, 64 * 1024, sample, budget);
    assert!(cut, "a peer that does not read was not disconnected within {budget:?}");
    format!("disconnected after {:.1} s", started.elapsed().as_secs_f64())
}

/// 500 connections sending 64 bytes of garbage: all closed.
pub fn garbage_headers(addr: &str, sample: &dyn Fn()) -> String {
    let mut rng = SplitMix(12);
    let mut conns = connect_many(addr, 500);
    for conn in &mut conns {
        let mut garbage: Vec<u8> = (0..64).map(|_| rng.below(256) as u8).collect();
        garbage[0] = b'X';
        let _ = conn.write_all(&garbage);
    }
    sample();
    let closed = closed_by_server(&conns, Instant::now() + Duration::from_secs(10));
    assert_eq!(closed, conns.len(), "connections sending garbage were kept");
    hold(sample, Duration::from_millis(500));
    format!("{closed} of 500 closed")
}

/// 5 x 200 connections sending part of a header, then closing.
pub fn truncated_headers(addr: &str, sample: &dyn Fn()) -> String {
    for round in 0..5 {
        let mut conns = connect_many(addr, 200);
        for (i, conn) in conns.iter_mut().enumerate() {
            let whole = header(b"PRPC", 1000, 10);
            let _ = conn.write_all(&whole[..1 + (i + round) % 11]);
        }
        sample();
    }
    hold(sample, Duration::from_millis(300));
    "1000 connections cut short".to_string()
}

/// 300 connections whose header claims a 2 GiB body: all closed.
pub fn bodies_claiming_two_gib(addr: &str, sample: &dyn Fn()) -> String {
    let mut conns = connect_many(addr, 300);
    for conn in &mut conns {
        let _ = conn.write_all(&header(b"PRPC", 0x8000_0000, 64));
        let _ = conn.write_all(&[0u8; 4096]);
    }
    sample();
    let closed = closed_by_server(&conns, Instant::now() + Duration::from_secs(10));
    assert_eq!(closed, conns.len(), "connections claiming 2 GiB bodies were kept");
    hold(sample, Duration::from_millis(500));
    format!("{closed} of 300 closed")
}

/// How long a trickle goes on against a server that cuts after `timeout`.
fn trickle_for(timeout: Duration) -> Duration {
    (timeout * 3).min(timeout + Duration::from_secs(10))
}

/// 1000 connections sending a header a byte at a time, slower than
/// `header_timeout` allows: all cut.
pub fn slowloris(addr: &str, header_timeout: Duration, sample: &dyn Fn()) -> String {
    let mut conns = connect_many(addr, 1000);
    let started = Instant::now();
    let trickle = trickle_for(header_timeout);
    // One byte per connection every 0.3 header timeouts: the 12-byte
    // header would take 3.6 of them.
    let whole = header(b"PRPC", 100, 10);
    for byte in &whole[..8] {
        for conn in &mut conns {
            let _ = conn.write(std::slice::from_ref(byte));
        }
        sample();
        if started.elapsed() > trickle || closed_by_server(&conns, Instant::now()) == conns.len() {
            break;
        }
        thread::sleep(header_timeout * 3 / 10);
    }
    let closed = closed_by_server(&conns, started + trickle + Duration::from_secs(3));
    let cut_within = started.elapsed().as_secs_f64();
    assert_eq!(
        closed,
        conns.len(),
        "slow headers were kept past the header timeout ({closed} of 1000 cut within {cut_within:.1} s)"
    );
    format!("{closed} cut within {cut_within:.1} s")
}

/// 200 connections sending a whole header, then a 1 MiB body a byte at a
/// time, slower than `body_timeout` allows: all cut, while a slow but
/// honest client (2 MiB at about 400 KiB/s) is answered.
pub fn trickled_bodies(addr: &str, body_timeout: Duration, sample: &dyn Fn()) -> String {
    let started = Instant::now();
    let trickle = trickle_for(body_timeout);
    let mut conns = connect_many(addr, 200);
    for conn in &mut conns {
        let _ = conn.write_all(&header(b"PRPC", MIB as u32, 16));
    }
    let honest = thread::spawn({
        let addr = addr.to_string();
        move || {
            let mut peer = RawPeer::connect(&addr);
            let frame = rpc_frame(&request_meta(9, "Echo"), &echo_message(&vec![4u8; 2 * MIB]));
            for piece in frame.chunks(40 * 1024) {
                peer.conn.write_all(piece).ok()?;
                thread::sleep(Duration::from_millis(100));
            }
            peer.response(9, Instant::now() + Duration::from_secs(20))
        }
    });
    let mut round = 0u8;
    while started.elapsed() < trickle {
        for conn in &mut conns {
            let _ = conn.write(&[round]);
        }
        round = round.wrapping_add(1);
        sample();
        if closed_by_server(&conns, Instant::now()) == conns.len() {
            break;
        }
        thread::sleep(body_timeout / 5);
    }
    let closed = closed_by_server(&conns, started + trickle + Duration::from_secs(3));
    let cut_within = started.elapsed().as_secs_f64();
    let answer = honest.join().ok().flatten();
    assert_eq!(
        closed,
        conns.len(),
        "trickled bodies were kept past the body timeout ({closed} of 200 cut within {cut_within:.1} s)"
    );
    let answer = answer.expect("the slow honest request was not answered");
    assert_eq!(outcome(&answer).0, 0, "the slow honest request failed: {:?}", outcome(&answer));
    format!("{closed} cut within {cut_within:.1} s, the honest one answered")
}

/// Connections that each send 2 MiB of a request claiming 60 MiB, then
/// fall silent, four times `budget` in all: those past the budget are
/// closed.
pub fn partial_bodies(addr: &str, budget: usize, sample: &dyn Fn()) -> String {
    let count = (4 * budget / (2 * MIB)).max(4);
    let mut conns = connect_many(addr, count);
    let chunk = vec![9u8; 256 * 1024];
    for conn in &mut conns {
        let _ = conn.write_all(&header(b"PRPC", 60 * MIB as u32, 32));
        for _ in 0..8 {
            if conn.write_all(&chunk).is_err() {
                break;
            }
        }
        sample();
    }
    let closed = closed_by_server(&conns, Instant::now() + Duration::from_secs(3));
    assert!(closed >= count * 5 / 8, "only {closed} of {count} closed ({} MiB sent)", 2 * count);
    hold(sample, Duration::from_millis(500));
    format!("{closed} of {count} closed ({} MiB sent)", 2 * count)
}

/// 2000 idle connections: kept.
pub fn idle_connections(addr: &str, sample: &dyn Fn()) -> String {
    let conns = connect_many(addr, 2000);
    hold(sample, Duration::from_secs(1));
    let closed = closed_by_server(&conns, Instant::now());
    assert_eq!(closed, 0, "{closed} of 2000 idle connections closed");
    "2000 kept".to_string()
}

/// 300 connections more than `max_connections`: closed at once.
pub fn connections_beyond_max(addr: &str, max_connections: usize, sample: &dyn Fn()) -> String {
    // The legitimate client's connection is one of those allowed.
    hold(sample, Duration::from_millis(300));
    let conns = connect_many(addr, max_connections + 300);
    sample();
    let closed = closed_by_server(&conns, Instant::now() + Duration::from_secs(2));
    assert!(closed >= 300, "only {closed} of {} closed with {max_connections} allowed", conns.len());
    hold(sample, Duration::from_millis(500));
    format!("{closed} of {} closed", conns.len())
}

/// 5000 connections that send half a request and reset.
pub fn resets_mid_request(addr: &str, sample: &dyn Fn()) -> String {
    let body = vec![5u8; 32 * 1024];
    let mut request = header(b"PRPC", 64 * 1024, 16);
    request.extend_from_slice(&body);
    thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..1250 {
                    let Ok(mut conn) = TcpStream::connect(addr) else { continue };
                    let _ = conn.write_all(&request);
                    reset_on_close(&conn);
                }
            });
        }
        hold(sample, Duration::from_millis(500));
    });
    "5000 reset".to_string()
}

/// Requests with absurd RpcMeta fields, 20 rounds on one connection: each
/// answered (with an error code where it is one).
pub fn absurd_rpc_meta_fields(addr: &str, sample: &dyn Fn()) -> String {
    let mut peer = RawPeer::connect(addr);
    let mut cases: Vec<(RpcMeta, Vec<u8>)> = Vec::new();
    let echo = |id| request_meta(id, "Echo");
    let mut m = echo(1);
    m.attachment_size = Some(i32::MAX);
    cases.push((m, b"short".to_vec()));
    let mut m = echo(2);
    m.attachment_size = Some(-5);
    cases.push((m, b"short".to_vec()));
    let mut m = echo(3);
    m.compress_type = Some(99);
    cases.push((m, b"x".to_vec()));
    let mut m = echo(4);
    m.compress_type = Some(2);
    cases.push((m, b"not gzip at all".to_vec()));
    let mut m = echo(5);
    m.checksum_type = Some(1);
    m.checksum_value = Some(bytes::Bytes::from_static(b"\0\0\0\0"));
    cases.push((m, b"x".to_vec()));
    let mut m = echo(6);
    m.checksum_type = Some(-7);
    cases.push((m, b"x".to_vec()));
    let mut m = request_meta(7, "NoSuchMethod");
    m.request.as_mut().unwrap().service_name = Some("s".repeat(100_000));
    cases.push((m, Vec::new()));
    let mut m = echo(8);
    m.request.as_mut().unwrap().timeout_ms = Some(i32::MIN);
    m.request.as_mut().unwrap().log_id = Some(i64::MIN);
    cases.push((m, echo_message(b"ok")));
    let mut m = echo(9);
    m.stream_settings = Some(StreamSettings {
        stream_id: Some(-1),
        need_feedback: Some(true),
        writable: Some(true),
        extra_stream_ids: (0..10_000).collect(),
    });
    cases.push((m, echo_message(b"x")));
    let mut m = echo(10);
    m.user_fields = (0..2000).map(|i| (format!("k{i}"), "v".repeat(100))).collect();
    cases.push((m, echo_message(b"ok")));
    let mut m = echo(11);
    m.response = Some(RpcResponseMeta { error_code: Some(i32::MIN), error_text: Some("a response".into()) });
    cases.push((m, echo_message(b"ok")));
    let mut m = echo(i64::MIN);
    m.content_type = Some(i32::MAX);
    cases.push((m, echo_message(b"ok")));
    for round in 0..20 {
        for (meta, payload) in &cases {
            let id = meta.correlation_id.unwrap_or(0);
            let written = peer.conn.write_all(&rpc_frame(meta, payload));
            assert!(written.is_ok(), "round {round}: the connection was closed before call {id}");
            let answer = peer.response(id, Instant::now() + Duration::from_secs(10));
            assert!(answer.is_some(), "round {round}: no answer to call {id}");
        }
        sample();
    }
    hold(sample, Duration::from_millis(300));
    format!("{} requests answered", 20 * cases.len())
}

/// A PRPC frame around `meta` as given (it need not parse).
fn frame_with_raw_meta(meta: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = header(b"PRPC", (meta.len() + payload.len()) as u32, meta.len() as u32);
    out.extend_from_slice(meta);
    out.extend_from_slice(payload);
    out
}

/// Requests whose meta does not parse, each followed by a good one on its
/// connection: the connection ends, answered EREQUEST when the meta had a
/// correlation id, and the good request is not served.
pub fn metas_that_do_not_parse(addr: &str, sample: &dyn Fn()) -> String {
    use prost::Message;
    let mut no_method = request_meta(1, "Echo");
    no_method.request.as_mut().unwrap().method_name = None;
    let mut no_stream_id = request_meta(2, "Stream");
    no_stream_id.stream_settings = Some(StreamSettings { stream_id: None, ..Default::default() });
    // correlation_id (field 4) as a varint of 11 bytes, one past the most.
    let mut long_varint = vec![0x20];
    long_varint.extend_from_slice(&[0xff; 10]);
    long_varint.push(0x01);
    let whole = request_meta(4, "Echo").encode_to_vec();
    let truncated = whole[..whole.len() - 3].to_vec();
    // (case, meta bytes, the correlation id answered EREQUEST, if any)
    let cases: Vec<(&str, Vec<u8>, Option<i64>)> = vec![
        ("missing method_name", no_method.encode_to_vec(), Some(1)),
        ("stream settings without stream_id", no_stream_id.encode_to_vec(), Some(2)),
        ("an 11-byte varint", long_varint, None),
        ("a truncated meta", truncated, None),
        ("no protobuf at all", vec![0xff; 8], None),
    ];
    let mut notes = Vec::new();
    for (case, meta, answered) in cases {
        let mut peer = RawPeer::connect(addr);
        let started = Instant::now();
        let mut bytes = frame_with_raw_meta(&meta, &echo_message(b"x"));
        // A good request right behind it is not served: the connection is over.
        bytes.extend_from_slice(&rpc_frame(&request_meta(99, "Echo"), &echo_message(b"after")));
        peer.conn.write_all(&bytes).unwrap();
        let responses = peer.until_closed(Instant::now() + Duration::from_secs(2));
        let Some(responses) = responses else { panic!("{case}: the connection was still open after 2 s") };
        let codes: Vec<(Option<i64>, i32)> = responses
            .iter()
            .map(|m| (m.correlation_id, m.response.as_ref().and_then(|r| r.error_code).unwrap_or(0)))
            .collect();
        match answered {
            Some(id) => assert_eq!(codes, vec![(Some(id), errno::EREQUEST)], "{case}"),
            None => assert!(codes.is_empty(), "{case}: answered {codes:?}"),
        }
        notes.push(format!("{:.0} ms", started.elapsed().as_secs_f64() * 1e3));
        sample();
    }
    hold(sample, Duration::from_millis(300));
    format!("5 connections ended, after {}", notes.join(", "))
}

/// One connection opening streams through "Stream" and never closing them:
/// past `max` it is refused with ELIMIT, and closing some makes room.
pub fn streams_without_end(addr: &str, max: usize, sample: &dyn Fn()) -> String {
    let mut peer = RawPeer::connect(addr);
    let mut opened = Vec::new();
    let mut refused = Vec::new();
    for call in 1..=(max as i64 + 100) {
        let mine = MY_STREAM + call;
        let response = peer.call_with_streams(call, mine, Vec::new()).expect("no answer to a call");
        match outcome(&response) {
            (0, _) => opened.push((response.stream_settings.and_then(|s| s.stream_id).unwrap_or(-1), mine)),
            (code, text) => refused.push((code, text)),
        }
        if call % 50 == 0 {
            sample();
        }
    }
    assert_eq!(opened.len(), max, "streams accepted on one connection");
    assert_eq!(refused.len(), 100);
    let (code, text) = &refused[0];
    assert_eq!(*code, errno::ELIMIT, "{text}");
    assert!(text.contains(&format!("max_streams_per_connection={max}")), "unclear error text: {text}");
    // Another connection has room of its own.
    let mut other = RawPeer::connect(addr);
    let response = other.call_with_streams(1, MY_STREAM, Vec::new()).expect("no answer on another connection");
    assert_eq!(outcome(&response).0, 0, "a second connection was refused: {:?}", outcome(&response));
    // Streams the peer closes make room again.
    for (theirs, mine) in opened.drain(..10) {
        peer.conn.write_all(&close_frame(theirs, mine)).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut call = max as i64 + 10_000;
    let reopened = loop {
        call += 1;
        let response = peer.call_with_streams(call, MY_STREAM + call, Vec::new()).expect("no answer to a call");
        if outcome(&response).0 == 0 || Instant::now() >= deadline {
            break outcome(&response).0 == 0;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(reopened, "no room after the peer closed 10 streams");
    hold(sample, Duration::from_millis(300));
    format!("{max} accepted, 100 refused with {code}, room again after closes")
}

/// One connection opening `max` streams through "Stream", then dropped
/// without closing any: the server frees them all.
pub fn max_streams_then_hang_up(addr: &str, max: usize, sample: &dyn Fn()) {
    let mut peer = RawPeer::connect(addr);
    for call in 1..=max as i64 {
        let response = peer.call_with_streams(call, MY_STREAM + call, Vec::new()).expect("no answer to a call");
        assert_eq!(outcome(&response).0, 0, "stream {call} of {max} refused: {:?}", outcome(&response));
        if call % 50 == 0 {
            sample();
        }
    }
    drop(peer);
}

/// Sends echo requests as fast as the server takes them and reads the
/// responses on another thread; returns the bytes of responses it got.
fn flood(addr: &str, stop: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    flood_with(addr, stop, rpc_frame(&request_meta(2, "Echo"), &echo_message(&vec![1u8; 16 * 1024])))
}

/// [`flood`] with `frame` as the request.
fn flood_with(addr: &str, stop: Arc<AtomicBool>, frame: Vec<u8>) -> thread::JoinHandle<usize> {
    let stream = TcpStream::connect(addr).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let mut writer = stream;
    let writing = Arc::clone(&stop);
    thread::spawn(move || {
        while !writing.load(Ordering::Acquire) && writer.write_all(&frame).is_ok() {}
        let _ = writer.shutdown(std::net::Shutdown::Both);
    });
    thread::spawn(move || {
        use std::io::Read;
        let mut received = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        let _ = reader.set_read_timeout(Some(Duration::from_millis(200)));
        while !stop.load(Ordering::Acquire) {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => received += n,
                Err(_) => {}
            }
        }
        received
    })
}

/// `count` connections flooding "Echo" with 16 KiB requests for 4 s (and
/// reading the answers); returns the bytes of responses each got.
pub fn request_flooders(addr: &str, count: usize, sample: &dyn Fn()) -> Vec<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..count).map(|_| flood(addr, Arc::clone(&stop))).collect();
    hold(sample, Duration::from_secs(4));
    stop.store(true, Ordering::Release);
    let received: Vec<u64> = flooders.into_iter().map(|f| f.join().unwrap_or(0) as u64).collect();
    assert!(received.iter().all(|&bytes| bytes > 0), "a flooder got no response: {received:?}");
    received
}

/// `count` connections flooding "Busy" (0.2 ms of computing each) with
/// small requests for 3 s (and reading the answers); returns the bytes of
/// responses each got. Each keeps as many calls waiting as the server lets
/// one connection have unanswered, so a quiet caller's wait shows whether
/// the workers take the connections' calls in turn or first come first
/// served.
pub fn busy_request_flooders(addr: &str, count: usize, sample: &dyn Fn()) -> Vec<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let frame = rpc_frame(&request_meta(3, "Busy"), &echo_message(&[1u8; 64]));
    let flooders: Vec<_> = (0..count).map(|_| flood_with(addr, Arc::clone(&stop), frame.clone())).collect();
    hold(sample, Duration::from_secs(3));
    stop.store(true, Ordering::Release);
    let received: Vec<u64> = flooders.into_iter().map(|f| f.join().unwrap_or(0) as u64).collect();
    assert!(received.iter().all(|&bytes| bytes > 0), "a flooder got no response: {received:?}");
    received
}

/// Makes the calling thread yield its core to any other (nice 19): the
/// flooders stand for peers on other machines, and their own copying and
/// loopback TCP work would otherwise take this machine's two cores from
/// the server they attack.
fn as_a_remote_peer() {
    // SAFETY: setpriority(2) on the calling thread (on Linux PRIO_PROCESS
    // with 0 names the thread); no memory is passed.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
}

/// What the server said it consumed of a stream, from its FEEDBACK.
type Consumed = Arc<(Mutex<u64>, Condvar)>;

/// Opens a stream to "fault.Service/Sink" and writes 16 KiB DATA frames
/// into it as fast as its window lets it (a peer that ignores FEEDBACK
/// altogether has its stream reset: [`stream_flood_ignoring_feedback`]).
fn flood_stream(addr: &str, mine: i64, stop: Arc<AtomicBool>) -> (Consumed, thread::JoinHandle<()>) {
    let mut peer = RawPeer::connect(addr);
    let response = peer.call_method_with_streams("Sink", 1, mine, Vec::new()).expect("no answer from the sink");
    let theirs = response.stream_settings.as_ref().map(|s| s.stream_id()).expect("the sink refused the stream");
    let mut writer = peer.conn.try_clone().unwrap();
    let frame = data_frame(theirs, mine, &[3u8; 16 * 1024]);
    const FRAMES_PER_WRITE: usize = 16;
    let payload = 16 * 1024u64;
    let mut batch = Vec::with_capacity(frame.len() * FRAMES_PER_WRITE);
    for _ in 0..FRAMES_PER_WRITE {
        batch.extend_from_slice(&frame);
    }
    let consumed: Consumed = Arc::new((Mutex::new(0u64), Condvar::new()));
    let feedback = Arc::clone(&consumed);
    let window = Arc::clone(&consumed);
    let writing = thread::spawn(move || {
        as_a_remote_peer();
        let mut sent = 0u64;
        while !stop.load(Ordering::Acquire) {
            {
                // Every message of the batch starts inside the window.
                let (lock, opened) = &*window;
                let mut consumed = lock.lock();
                if sent + (FRAMES_PER_WRITE as u64 - 1) * payload >= *consumed + SINK_WINDOW as u64 {
                    opened.wait_for(&mut consumed, Duration::from_millis(50));
                    continue;
                }
            }
            if writer.write_all(&batch).is_err() {
                break;
            }
            sent += FRAMES_PER_WRITE as u64 * payload;
        }
        let _ = writer.shutdown(std::net::Shutdown::Both);
    });
    thread::spawn(move || {
        as_a_remote_peer();
        while let Some(received) = peer.next(Instant::now() + Duration::from_secs(30)) {
            let Received::Stream(meta) = received else { continue };
            if let Some(total) = meta.feedback.and_then(|f| f.consumed_size) {
                let (lock, opened) = &*feedback;
                *lock.lock() = total.max(0) as u64;
                opened.notify_all();
            }
        }
    });
    (consumed, writing)
}

/// `count` connections each writing into a "Sink" stream as fast as its
/// window lets it, for 3 s; returns the bytes the server consumed of each
/// in those 3 s (from its FEEDBACK).
pub fn stream_flooders(addr: &str, count: usize, sample: &dyn Fn()) -> Vec<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> =
        (0..count).map(|i| flood_stream(addr, 0x6000_0000_0000 + i as i64, Arc::clone(&stop))).collect();
    let consumed = |flooder: &(Consumed, _)| *flooder.0 .0.lock();
    let before: Vec<u64> = flooders.iter().map(consumed).collect();
    hold(sample, Duration::from_secs(3));
    let shares: Vec<u64> = flooders.iter().zip(&before).map(|(flooder, before)| consumed(flooder) - before).collect();
    stop.store(true, Ordering::Release);
    for (_, writing) in flooders {
        let _ = writing.join();
    }
    assert!(shares.iter().all(|share| *share > 0), "a stream flooder was not served: {shares:?}");
    shares
}
