//! A raw baidu_std peer: plain blocking sockets and the crate's own
//! framing, so it can send what no well-behaved client would. Shared by
//! tests/fault_suite.rs and examples/fault_probe.rs.

// Each program that includes this file uses a part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use brpc_stream::protocol::{
    pack_rpc, pack_stream, Cut, Cutter, FrameType, Limits, Magic, RawFrame, RpcMessage, RpcMeta, RpcRequestMeta,
    StreamFrame, StreamFrameMeta, StreamSettings,
};
use bytes::BytesMut;

pub fn request_meta(correlation_id: i64, method: &str) -> RpcMeta {
    RpcMeta {
        request: Some(RpcRequestMeta {
            service_name: Some("fault.Service".into()),
            method_name: Some(method.into()),
            ..Default::default()
        }),
        correlation_id: Some(correlation_id),
        ..Default::default()
    }
}

/// `payload` as fault.EchoMessage (bench/fault_server.proto) encodes it,
/// field 1: a server built on protobuf parses it (the in-process one
/// echoes any bytes).
pub fn echo_message(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0a];
    let mut len = payload.len() as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(payload);
    out
}

pub fn rpc_frame(meta: &RpcMeta, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    pack_rpc(&mut out, meta, payload).unwrap();
    out.to_vec()
}

pub fn data_frame(to: i64, from: i64, payload: &[u8]) -> Vec<u8> {
    let meta = StreamFrameMeta {
        stream_id: Some(to),
        source_stream_id: Some(from),
        frame_type: Some(FrameType::Data as i32),
        has_continuation: Some(false),
        feedback: None,
    };
    let mut out = BytesMut::new();
    pack_stream(&mut out, &meta, payload).unwrap();
    out.to_vec()
}

/// What the server sent back, frame by frame.
pub enum Received {
    /// A call's response, whether plain or inside a STRM DATA frame.
    Response(Box<RpcMeta>),
    Stream(StreamFrameMeta),
}

/// A raw connection to the server, reading with the crate's cutter.
pub struct RawPeer {
    pub conn: TcpStream,
    buf: BytesMut,
    cutter: Cutter,
}

impl RawPeer {
    pub fn connect(addr: &str) -> RawPeer {
        let conn = TcpStream::connect(addr).unwrap();
        RawPeer { conn, buf: BytesMut::new(), cutter: Cutter::new(Limits::default()) }
    }

    /// The next frame, or None on EOF, error or `deadline`.
    pub fn next(&mut self, deadline: Instant) -> Option<Received> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match self.cutter.cut(&mut self.buf) {
                Cut::Frame(frame) if frame.magic == Magic::Rpc => {
                    return frame.decode_rpc().ok().map(|m| Received::Response(Box::new(m)))
                }
                Cut::Frame(frame) => {
                    let Ok(frame) = StreamFrame::decode(&frame) else { continue };
                    let embedded = RawFrame::from_embedded(frame.payload.clone()).ok();
                    match embedded.and_then(|f| RpcMessage::decode(&f).ok()).filter(|m| m.meta.response.is_some()) {
                        Some(message) => return Some(Received::Response(Box::new(message.meta))),
                        None => return Some(Received::Stream(frame.meta)),
                    }
                }
                Cut::Dropped { .. } => continue,
                Cut::Fatal(_) => return None,
                Cut::NeedMore { .. } => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.conn.set_read_timeout(Some(left)).ok()?;
            match self.conn.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The response to the call `correlation_id`, skipping stream frames.
    pub fn response(&mut self, correlation_id: i64, deadline: Instant) -> Option<RpcMeta> {
        loop {
            match self.next(deadline)? {
                Received::Response(meta) if meta.correlation_id == Some(correlation_id) => return Some(*meta),
                _ => {}
            }
        }
    }

    /// Reads until the server closes the connection; returns the
    /// responses that came before, or None if it was still open at `deadline`.
    pub fn until_closed(&mut self, deadline: Instant) -> Option<Vec<RpcMeta>> {
        let mut responses = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match self.cutter.cut(&mut self.buf) {
                Cut::Frame(frame) => {
                    responses.extend(frame.decode_rpc().ok());
                    continue;
                }
                Cut::Dropped { .. } => continue,
                Cut::Fatal(_) => return None,
                Cut::NeedMore { .. } => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.conn.set_read_timeout(Some(left)).ok()?;
            match self.conn.read(&mut chunk) {
                Ok(0) => return Some(responses),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(_) => return Some(responses),
            }
        }
    }

    /// Sets up a stream `mine` (with `extra` ids beside it) through
    /// "fault.Service/Stream"; returns the response's meta.
    pub fn open_stream(&mut self, mine: i64, extra: Vec<i64>) -> Option<RpcMeta> {
        self.call_with_streams(1, mine, extra)
    }

    /// [`RawPeer::open_stream`] as call `correlation_id`.
    pub fn call_with_streams(&mut self, correlation_id: i64, mine: i64, extra: Vec<i64>) -> Option<RpcMeta> {
        self.call_method_with_streams("Stream", correlation_id, mine, extra)
    }

    /// Sets up a stream `mine` (with `extra` ids beside it) through
    /// "fault.Service/`method`" as call `correlation_id`.
    pub fn call_method_with_streams(
        &mut self,
        method: &str,
        correlation_id: i64,
        mine: i64,
        extra: Vec<i64>,
    ) -> Option<RpcMeta> {
        let mut meta = request_meta(correlation_id, method);
        meta.stream_settings = Some(StreamSettings {
            stream_id: Some(mine),
            need_feedback: Some(true),
            writable: Some(true),
            extra_stream_ids: extra,
        });
        self.conn.write_all(&rpc_frame(&meta, &echo_message(b""))).ok()?;
        self.response(correlation_id, Instant::now() + Duration::from_secs(10))
    }
}

/// A frame header: `magic`, then the sizes as written (they need not fit
/// what follows).
pub fn header(magic: &[u8; 4], body_size: u32, meta_size: u32) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&body_size.to_be_bytes());
    out.extend_from_slice(&meta_size.to_be_bytes());
    out
}

/// `n` connections to `addr`.
pub fn connect_many(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect()
}

/// How many of `conns` the server closed (EOF or reset seen) by `deadline`;
/// returns early once all are. What the server sent before closing (a
/// server with builtin HTTP services answers garbage with 400) is read and
/// dropped.
pub fn closed_by_server(conns: &[TcpStream], deadline: Instant) -> usize {
    for conn in conns {
        conn.set_nonblocking(true).unwrap();
    }
    let mut closed = vec![false; conns.len()];
    let mut buf = [0u8; 4096];
    loop {
        for (mut conn, closed) in conns.iter().zip(closed.iter_mut()).filter(|(_, c)| !**c) {
            *closed = loop {
                match conn.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(_) => continue,
                    Err(err) => break err.kind() != std::io::ErrorKind::WouldBlock,
                }
            };
        }
        let count = closed.iter().filter(|c| **c).count();
        if count == conns.len() || Instant::now() >= deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes the coming close send RST instead of FIN.
pub fn reset_on_close(conn: &TcpStream) {
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

/// splitmix64: a seeded generator, so every run sends the same bytes.
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
}

/// A CLOSE for the server's stream `to` from this side's `from`.
pub fn close_frame(to: i64, from: i64) -> Vec<u8> {
    let meta = StreamFrameMeta {
        stream_id: Some(to),
        source_stream_id: Some(from),
        frame_type: Some(FrameType::Close as i32),
        has_continuation: Some(false),
        feedback: None,
    };
    let mut out = BytesMut::new();
    pack_stream(&mut out, &meta, &[]).unwrap();
    out.to_vec()
}
