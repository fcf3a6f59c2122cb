//! One case per attack of issue 12, each through [`under_attack`]: the
//! server survives, the legitimate client is served within a bound, RSS
//! and descriptors come back.

use std::io::Write;
use std::time::{Duration, Instant};

use brpc_stream::errno;
use brpc_stream::protocol::FrameType;
use brpc_stream::rpc::ServerOptions;

use super::raw_peer::{data_frame, RawPeer, Received, STREAM_FAILURES};
use super::{under_attack, MIB};

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
        println!("stream flood: {} MiB sent; the server's stream failed with {code}: {text}", sent / MIB);
    });
}
