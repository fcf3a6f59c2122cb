//! One case per attack of issue 12, each through [`under_attack`]: the
//! server survives, the legitimate client is served within a bound, RSS
//! and descriptors come back.

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use brpc_stream::errno;
use brpc_stream::protocol::{FrameType, RpcMeta, RpcResponseMeta, StreamSettings};
use brpc_stream::rpc::ServerOptions;
use brpc_stream::stream;

use super::raw_peer::{
    closed_by_server, connect_many, data_frame, header, request_meta, reset_on_close, rpc_frame, RawPeer, Received,
    SplitMix, STREAM_FAILURES,
};
use super::{under_attack, under_attack_on, MIB};

/// The attacker's stream ids: far from anything the library hands out.
const MY_STREAM: i64 = 0x7000_0000_0000;

#[test]
fn a_stream_peer_that_ignores_feedback_is_reset_on_both_sides() {
    under_attack("stream flood ignoring FEEDBACK", ServerOptions::default(), |addr, sample| {
        STREAM_FAILURES.lock().clear();
        let mut peer = RawPeer::connect(addr);
        let response = peer.open_stream(MY_STREAM, Vec::new()).expect("the stream is accepted");
        let server_stream = response.stream_settings.and_then(|s| s.stream_id).expect("the server's stream id");
        // Never reads, never sends FEEDBACK: the server's echo fills its
        // window and blocks, so what the peer sends waits unconsumed.
        peer.conn.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
        let message = data_frame(server_stream, MY_STREAM, &vec![3u8; 64 * 1024]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut sent = 0usize;
        while Instant::now() < deadline && sent < 256 * MIB {
            match peer.conn.write(&message) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
            if sent % (4 * MIB) < message.len() {
                sample();
                if STREAM_FAILURES.lock().iter().any(|(code, _)| *code == errno::EOVERCROWDED) {
                    break;
                }
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
        assert!(reset, "the peer was not sent RST for its stream (sent {} MiB)", sent / MIB);
        let failures = STREAM_FAILURES.lock().clone();
        let (code, text) =
            failures.iter().find(|(code, _)| *code == errno::EOVERCROWDED).expect("on_failed on the server");
        assert!(text.contains("window"), "unclear error text: {text}");
        hold(sample, Duration::from_millis(500));
        println!("stream flood: {} MiB sent; the server's stream failed with {code}: {text}", sent / MIB);
    });
}

/// Samples RSS while `duration` passes, so the legitimate client calls
/// throughout an attack that holds its ground.
fn hold(sample: &dyn Fn(), duration: Duration) {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        sample();
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn extra_stream_ids_sent_to_a_single_stream_method_are_refused_without_a_crash() {
    under_attack("extra stream ids", ServerOptions::default(), |addr, sample| {
        let mut peer = RawPeer::connect(addr);
        let mut refused = 0;
        for call in 1..=300i64 {
            // 1 to MAX_STREAMS_PER_CALL + 8 extra ids, some of them absurd.
            let extra: Vec<i64> = (0..call % (stream::MAX_STREAMS_PER_CALL as i64 + 8) + 1)
                .map(|i| if i % 3 == 0 { -i } else { MY_STREAM + call * 1000 + i })
                .collect();
            let response = peer.call_with_streams(call, MY_STREAM + call * 1000, extra).expect("an answer");
            let code = response.response.and_then(|r| r.error_code).unwrap_or(0);
            assert_ne!(code, 0, "call {call}: a request with extra streams was accepted");
            refused += 1;
            if call % 50 == 0 {
                sample();
            }
        }
        // The same connection still sets up a legitimate stream.
        let response = peer.call_with_streams(1000, MY_STREAM - 1, Vec::new()).expect("an answer");
        assert_eq!(response.response.and_then(|r| r.error_code).unwrap_or(0), 0);
        hold(sample, Duration::from_millis(500));
        println!("extra stream ids: {refused} requests refused, then one stream accepted");
    });
}

#[test]
fn garbage_instead_of_a_header_closes_the_connection() {
    under_attack("garbage headers", ServerOptions::default(), |addr, sample| {
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
    });
}

#[test]
fn headers_cut_short_by_the_peer_leave_nothing_behind() {
    under_attack_on("truncated headers", ServerOptions::default(), |server, addr, sample| {
        for round in 0..5 {
            let mut conns = connect_many(addr, 200);
            for (i, conn) in conns.iter_mut().enumerate() {
                let whole = header(b"PRPC", 1000, 10);
                let _ = conn.write_all(&whole[..1 + (i + round) % 11]);
            }
            sample();
            drop(conns);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while (server.connection_count() > 1 || server.partial_request_bytes() > 0) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(server.partial_request_bytes(), 0, "bytes of closed connections still counted");
        assert!(server.connection_count() <= 1, "{} connections kept", server.connection_count());
    });
}

#[test]
fn a_body_claiming_two_gib_closes_the_connection_before_any_is_buffered() {
    under_attack("bodies claiming 2 GiB", ServerOptions::default(), |addr, sample| {
        let mut conns = connect_many(addr, 300);
        for conn in &mut conns {
            let _ = conn.write_all(&header(b"PRPC", 0x8000_0000, 64));
            let _ = conn.write_all(&[0u8; 4096]);
        }
        sample();
        let closed = closed_by_server(&conns, Instant::now() + Duration::from_secs(10));
        assert_eq!(closed, conns.len(), "connections claiming 2 GiB bodies were kept");
        hold(sample, Duration::from_millis(500));
    });
}

#[test]
fn slowloris_connections_are_cut_after_the_header_timeout() {
    let options = ServerOptions { header_timeout: Some(Duration::from_secs(1)), ..Default::default() };
    under_attack_on("slowloris x1000", options, |server, addr, sample| {
        let mut conns = connect_many(addr, 1000);
        let started = Instant::now();
        // One byte of a header per connection every 300 ms: the header
        // would take 3.6 s, the server gives it 1.
        let whole = header(b"PRPC", 100, 10);
        for byte in &whole[..8] {
            for conn in &mut conns {
                let _ = conn.write(std::slice::from_ref(byte));
            }
            sample();
            if started.elapsed() > Duration::from_secs(3) {
                break;
            }
            thread::sleep(Duration::from_millis(300));
        }
        let closed = closed_by_server(&conns, started + Duration::from_secs(6));
        println!("slowloris x1000: {closed} cut within {:.1} s", started.elapsed().as_secs_f64());
        assert_eq!(closed, conns.len(), "slow headers were kept past the header timeout");
        assert!(server.connection_count() <= 1);
    });
}

#[test]
fn two_thousand_idle_connections_are_kept_while_others_are_served() {
    under_attack_on("idle x2000", ServerOptions::default(), |server, addr, sample| {
        let conns = connect_many(addr, 2000);
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.connection_count() < 2000 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(server.connection_count() >= 2000, "only {} accepted", server.connection_count());
        hold(sample, Duration::from_secs(1));
        drop(conns);
    });
}

#[test]
fn connections_beyond_max_connections_are_closed_at_once() {
    let options = ServerOptions { max_connections: 100, ..Default::default() };
    under_attack_on("connections beyond max_connections", options, |server, addr, sample| {
        // The legitimate client's connection is one of the 100.
        hold(sample, Duration::from_millis(300));
        let conns = connect_many(addr, 400);
        sample();
        let closed = closed_by_server(&conns, Instant::now() + Duration::from_secs(2));
        assert!(closed >= 300, "only {closed} of 400 closed with 100 allowed");
        assert!(server.connection_count() <= 100, "{} connections kept", server.connection_count());
        hold(sample, Duration::from_millis(500));
    });
}

#[test]
fn five_thousand_resets_mid_request_leave_nothing_behind() {
    under_attack_on("resets mid-request x5000", ServerOptions::default(), |server, addr, sample| {
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while (server.connection_count() > 1 || server.partial_request_bytes() > 0) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(server.partial_request_bytes(), 0);
        assert!(server.connection_count() <= 1, "{} connections kept", server.connection_count());
    });
}

#[test]
fn absurd_rpc_meta_fields_are_answered_with_error_codes() {
    under_attack("absurd RpcMeta fields", ServerOptions::default(), |addr, sample| {
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
        cases.push((m, b"ok".to_vec()));
        let mut m = echo(9);
        m.stream_settings = Some(StreamSettings {
            stream_id: Some(-1),
            need_feedback: Some(true),
            writable: Some(true),
            extra_stream_ids: (0..10_000).collect(),
        });
        cases.push((m, b"x".to_vec()));
        let mut m = echo(10);
        m.user_fields = (0..2000).map(|i| (format!("k{i}"), "v".repeat(100))).collect();
        cases.push((m, b"ok".to_vec()));
        let mut m = echo(11);
        m.response = Some(RpcResponseMeta { error_code: Some(i32::MIN), error_text: Some("a response".into()) });
        cases.push((m, b"ok".to_vec()));
        let mut m = echo(i64::MIN);
        m.content_type = Some(i32::MAX);
        cases.push((m, b"ok".to_vec()));
        for round in 0..20 {
            for (meta, payload) in &cases {
                peer.conn.write_all(&rpc_frame(meta, payload)).unwrap();
                let id = meta.correlation_id.unwrap_or(0);
                let answer = peer.response(id, Instant::now() + Duration::from_secs(10));
                assert!(answer.is_some(), "round {round}: no answer to call {id}");
            }
            sample();
        }
        hold(sample, Duration::from_millis(300));
    });
}

/// A PRPC frame around `meta` as given (it need not parse).
fn frame_with_raw_meta(meta: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = header(b"PRPC", (meta.len() + payload.len()) as u32, meta.len() as u32);
    out.extend_from_slice(meta);
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_request_whose_meta_does_not_parse_ends_the_connection() {
    use prost::Message;
    under_attack("metas that do not parse", ServerOptions::default(), |addr, sample| {
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
        for (case, meta, answered) in cases {
            let mut peer = RawPeer::connect(addr);
            let started = Instant::now();
            let mut bytes = frame_with_raw_meta(&meta, b"x");
            // A good request right behind it is not served: the connection is over.
            bytes.extend_from_slice(&rpc_frame(&request_meta(99, "Echo"), b"after"));
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
            println!("{case}: closed after {:.1} ms, answers {codes:?}", started.elapsed().as_secs_f64() * 1e3);
            sample();
        }
        hold(sample, Duration::from_millis(300));
    });
}

#[test]
fn partial_bodies_beyond_the_budget_close_their_connections() {
    let options = ServerOptions { max_partial_request_bytes: 32 * MIB, ..Default::default() };
    under_attack_on("partial bodies", options, |server, addr, sample| {
        let mut conns = connect_many(addr, 64);
        let chunk = vec![9u8; 256 * 1024];
        for conn in &mut conns {
            // A request claiming 60 MiB, 2 MiB of it sent, then silence.
            let _ = conn.write_all(&header(b"PRPC", 60 * MIB as u32, 32));
            for _ in 0..8 {
                if conn.write_all(&chunk).is_err() {
                    break;
                }
            }
            sample();
        }
        let closed = closed_by_server(&conns, Instant::now() + Duration::from_secs(3));
        let held = server.partial_request_bytes();
        println!("partial bodies: {closed} of 64 closed, {} MiB held", held / MIB);
        assert!(held <= 32 * MIB, "{held} bytes held");
        assert!(closed >= 40, "only {closed} of 64 closed");
        hold(sample, Duration::from_millis(500));
        drop(conns);
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.partial_request_bytes() > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(server.partial_request_bytes(), 0);
    });
}

/// The error code and text of a call's response (0 when it succeeded).
fn outcome(response: &RpcMeta) -> (i32, String) {
    let response = response.response.clone().unwrap_or_default();
    (response.error_code.unwrap_or(0), response.error_text.unwrap_or_default())
}

#[test]
fn a_peer_opening_streams_without_end_is_refused_past_max_streams_per_connection() {
    const MAX: usize = 200;
    let options = ServerOptions { max_streams_per_connection: MAX, ..Default::default() };
    under_attack("streams without end", options, |addr, sample| {
        let mut peer = RawPeer::connect(addr);
        let streams_before = stream::live_count();
        let mut opened = Vec::new();
        let mut refused = Vec::new();
        for call in 1..=(MAX as i64 + 100) {
            let mine = MY_STREAM + call;
            let response = peer.call_with_streams(call, mine, Vec::new()).expect("an answer");
            match outcome(&response) {
                (0, _) => opened.push((response.stream_settings.and_then(|s| s.stream_id).unwrap_or(-1), mine)),
                (code, text) => refused.push((code, text)),
            }
            if call % 50 == 0 {
                sample();
            }
        }
        assert_eq!(opened.len(), MAX, "streams accepted on one connection");
        assert_eq!(refused.len(), 100);
        let (code, text) = &refused[0];
        assert_eq!(*code, errno::ELIMIT, "{text}");
        assert!(text.contains("max_streams_per_connection=200"), "unclear error text: {text}");
        assert!(stream::live_count() <= streams_before + MAX, "the server holds more streams than it accepted");
        // Another connection has room of its own.
        let mut other = RawPeer::connect(addr);
        let response = other.call_with_streams(1, MY_STREAM, Vec::new()).expect("an answer");
        assert_eq!(outcome(&response).0, 0, "a second connection was refused: {:?}", outcome(&response));
        // Streams the peer closes make room again.
        for (theirs, mine) in opened.drain(..10) {
            peer.conn.write_all(&super::raw_peer::close_frame(theirs, mine)).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut call = 10_000;
        let reopened = loop {
            call += 1;
            let response = peer.call_with_streams(call, MY_STREAM + call, Vec::new()).expect("an answer");
            if outcome(&response).0 == 0 || Instant::now() >= deadline {
                break outcome(&response).0 == 0;
            }
            thread::sleep(Duration::from_millis(50));
        };
        assert!(reopened, "no room after the peer closed 10 streams");
        hold(sample, Duration::from_millis(300));
        println!("streams without end: {MAX} accepted, 100 refused with {code}: {text}; room again after closes");
    });
}

#[test]
fn a_body_trickled_slower_than_the_body_timeout_allows_closes_the_connection() {
    let options = ServerOptions { body_timeout: Some(Duration::from_secs(1)), ..Default::default() };
    under_attack_on("trickled bodies x200", options, |server, addr, sample| {
        let started = Instant::now();
        let mut conns = connect_many(addr, 200);
        for conn in &mut conns {
            // The header whole (the header timeout is met), then a body
            // of 1 MiB that comes a byte at a time.
            let _ = conn.write_all(&header(b"PRPC", MIB as u32, 16));
        }
        // Meanwhile a slow but honest client: 2 MiB at about 400 KiB/s,
        // past the 1 s body timeout, above 64 KiB/s all along.
        let honest = thread::spawn({
            let addr = addr.to_string();
            move || {
                let mut peer = RawPeer::connect(&addr);
                let frame = rpc_frame(&request_meta(9, "Echo"), &vec![4u8; 2 * MIB]);
                for piece in frame.chunks(40 * 1024) {
                    peer.conn.write_all(piece).ok()?;
                    thread::sleep(Duration::from_millis(100));
                }
                peer.response(9, Instant::now() + Duration::from_secs(20))
            }
        });
        for round in 0..15 {
            for conn in &mut conns {
                let _ = conn.write(&[round as u8]);
            }
            sample();
            thread::sleep(Duration::from_millis(200));
        }
        let closed = closed_by_server(&conns, started + Duration::from_secs(6));
        println!("trickled bodies x200: {closed} cut within {:.1} s", started.elapsed().as_secs_f64());
        assert_eq!(closed, conns.len(), "trickled bodies were kept past the body timeout");
        let answer = honest.join().unwrap().expect("the slow honest request is answered");
        assert_eq!(outcome(&answer).0, 0, "{:?}", outcome(&answer));
        // The honest peer's close reaches the server a moment after its
        // thread ended; the legitimate client's connection stays.
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.connection_count() > 1 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(server.connection_count() <= 1, "{} connections left", server.connection_count());
    });
}
