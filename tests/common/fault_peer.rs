//! A misbehaving peer for stream setups: a loopback listener that does one
//! [`Fault`] to every connection it accepts, with plain blocking sockets and
//! the crate's own framing. Every connection ends on its own within
//! `hold` (plus a read's worth), so a test never waits on the peer.

// Each test binary that includes this file uses a part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use brpc_stream::protocol::{
    pack_rpc, pack_stream, Cut, Cutter, FrameType, Limits, Magic, RpcMeta, RpcResponseMeta, StreamFrameMeta,
    StreamSettings,
};
use bytes::BytesMut;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Closes the connection at once, the request unread.
    DropBeforeRequest,
    /// Reads the request, closes without answering.
    DropAfterRequest,
    /// Answers, accepting the streams, then closes.
    DropAfterResponse,
    /// Answers without stream settings (the streams were not accepted).
    ResponseWithoutSettings,
    /// Accepts the streams, reads a while, then closes with RST (SO_LINGER 0).
    ResetMidStream,
    /// Accepts the streams and never reads again, so every window fills;
    /// then closes (with the unread bytes, an RST).
    StopReading,
    /// Accepts the streams, then sends bytes that are no frame.
    Garbage,
    /// Accepts the streams, then sends DATA, CLOSE and FEEDBACK for a stream
    /// that does not exist, and reads on.
    UnknownStream,
    /// Accepts the streams, then reads for the whole `hold` and never sends
    /// a byte (no FEEDBACK: windows fill). Not in [`ALL_FAULTS`]: it ends
    /// nothing by itself.
    Silent,
}

pub const ALL_FAULTS: [Fault; 8] = [
    Fault::DropBeforeRequest,
    Fault::DropAfterRequest,
    Fault::DropAfterResponse,
    Fault::ResponseWithoutSettings,
    Fault::ResetMidStream,
    Fault::StopReading,
    Fault::Garbage,
    Fault::UnknownStream,
];

/// The peer's stream ids: far from anything the library hands out.
const PEER_STREAM_BASE: i64 = 1 << 40;
const UNKNOWN_STREAM: i64 = (1 << 41) + 7;

pub struct FaultPeer {
    fault: Fault,
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
    running: Arc<AtomicUsize>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultPeer {
    /// Listens on 127.0.0.1; each connection is held at most `hold` after
    /// its fault before it is closed (a Silent one exactly `hold`).
    pub fn start(fault: Fault, hold: Duration, seed: u64) -> FaultPeer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let rng = Arc::new(Mutex::new(SplitMix(seed)));
        let acceptor = {
            let (stop, accepted, running) = (stop.clone(), accepted.clone(), running.clone());
            // Non-blocking, so stopping never depends on a connection
            // reaching the listener (a test may have taken loopback down).
            listener.set_nonblocking(true).unwrap();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Acquire) {
                    let conn = match listener.accept() {
                        Ok((conn, _)) => conn,
                        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(2));
                            continue;
                        }
                        Err(_) => continue,
                    };
                    let _ = conn.set_nonblocking(false);
                    let n = accepted.fetch_add(1, Ordering::AcqRel);
                    let hold = match fault {
                        Fault::Silent => hold,
                        _ => hold.mul_f64(rng.lock().unwrap().unit()),
                    };
                    running.fetch_add(1, Ordering::AcqRel);
                    let running = running.clone();
                    std::thread::spawn(move || {
                        serve(conn, fault, hold, n);
                        running.fetch_sub(1, Ordering::AcqRel);
                    });
                }
            })
        };
        FaultPeer { fault, address, stop, accepted, running, acceptor: Some(acceptor) }
    }

    pub fn fault(&self) -> Fault {
        self.fault
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// No connection is being served.
    pub fn idle(&self) -> bool {
        self.running.load(Ordering::Acquire) == 0
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Acquire)
    }
}

impl Drop for FaultPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.running.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// splitmix64: a seeded generator for the tests, good enough to pick faults.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn serve(mut conn: TcpStream, fault: Fault, hold: Duration, n: u64) {
    let _ = conn.set_nodelay(true);
    if fault == Fault::DropBeforeRequest {
        return;
    }
    let mut buf = BytesMut::new();
    let mut cutter = Cutter::new(Limits::default());
    let Some(request) = read_request(&mut conn, &mut buf, &mut cutter) else { return };
    if fault == Fault::DropAfterRequest {
        return;
    }
    let accept = fault != Fault::ResponseWithoutSettings;
    let _ = conn.write_all(&response(&request, accept, n));
    let deadline = Instant::now() + hold;
    match fault {
        Fault::DropAfterResponse => {}
        Fault::ResetMidStream => {
            drain_until(&mut conn, deadline);
            reset(&conn);
        }
        Fault::StopReading => std::thread::sleep(hold),
        Fault::Garbage => {
            let _ = conn.write_all(b"this is no frame of brpc's at all, not PRPC nor STRM");
            drain_until(&mut conn, deadline);
        }
        Fault::UnknownStream => {
            let _ = conn.write_all(&unknown_stream_frames());
            drain_until(&mut conn, deadline);
        }
        _ => drain_until(&mut conn, deadline),
    }
}

/// Reads until the first PRPC request; None if the connection ended first.
fn read_request(conn: &mut TcpStream, buf: &mut BytesMut, cutter: &mut Cutter) -> Option<RpcMeta> {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match cutter.cut(buf) {
            Cut::Frame(frame) if frame.magic == Magic::Rpc => return frame.decode_rpc().ok(),
            Cut::Frame(_) | Cut::Dropped { .. } => continue,
            Cut::Fatal(_) => return None,
            Cut::NeedMore { .. } => {}
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The answer to `request`: success, with one peer stream per requested
/// stream when `accept`.
fn response(request: &RpcMeta, accept: bool, n: u64) -> Vec<u8> {
    let settings = request.stream_settings.as_ref().filter(|_| accept).map(|asked| {
        let base = PEER_STREAM_BASE + (n as i64) * 16;
        StreamSettings {
            stream_id: Some(base),
            need_feedback: Some(false),
            writable: Some(true),
            extra_stream_ids: (1..=asked.extra_stream_ids.len() as i64).map(|i| base + i).collect(),
        }
    });
    let meta = RpcMeta {
        response: Some(RpcResponseMeta { error_code: Some(0), error_text: None }),
        correlation_id: request.correlation_id,
        stream_settings: settings,
        ..Default::default()
    };
    let mut out = BytesMut::new();
    pack_rpc(&mut out, &meta, b"").unwrap();
    out.to_vec()
}

fn unknown_stream_frames() -> Vec<u8> {
    let mut out = BytesMut::new();
    for kind in [FrameType::Data, FrameType::Close, FrameType::Feedback] {
        let meta = StreamFrameMeta {
            stream_id: Some(UNKNOWN_STREAM),
            source_stream_id: Some(UNKNOWN_STREAM + 1),
            frame_type: Some(kind as i32),
            ..Default::default()
        };
        pack_stream(&mut out, &meta, if kind == FrameType::Data { b"for nobody" } else { b"" }).unwrap();
    }
    out.to_vec()
}

/// Reads and discards until EOF or `deadline`.
fn drain_until(conn: &mut TcpStream, deadline: Instant) {
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let _ = conn.set_read_timeout(Some(left));
        match conn.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Makes the coming close send RST instead of FIN.
fn reset(conn: &TcpStream) {
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
