//! The server side of the stream attacks (a method that accepts one echoing
//! stream) and a raw baidu_std peer: plain blocking sockets and the
//! crate's own framing, so it can send what no well-behaved client would.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brpc_stream::errno;
use brpc_stream::protocol::{
    pack_rpc, pack_stream, Cut, Cutter, FrameType, Limits, Magic, RawFrame, RpcMessage, RpcMeta, RpcRequestMeta,
    StreamFrame, StreamFrameMeta, StreamSettings,
};
use brpc_stream::rpc::ServerCall;
use brpc_stream::stream::{self, StreamHandler, StreamId, StreamOptions};
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

/// Every `on_failed` the server's streams got: (code, text).
pub static STREAM_FAILURES: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());

/// Writes every message back, waiting for room as brpc's echo examples do
/// (inside the callback).
struct EchoStream;

impl StreamHandler for EchoStream {
    fn on_received_messages(&self, id: StreamId, messages: &[Bytes]) {
        for message in messages {
            while let Err(libc::EAGAIN) = stream::write(id, message.clone(), false).map_err(|e| e.code()) {
                if stream::wait(id, Some(Duration::from_secs(5))) != 0 {
                    return;
                }
            }
        }
    }
    fn on_idle_timeout(&self, _id: StreamId) {}
    fn on_closed(&self, _id: StreamId) {}
    fn on_failed(&self, _id: StreamId, code: i32, text: &str) {
        STREAM_FAILURES.lock().push((code, text.to_string()));
    }
}

/// "fault.Service/Stream": accepts one stream (a request with more is
/// refused, as a method written for one stream refuses them).
pub fn accept_echo_stream(call: ServerCall) {
    let Some(settings) = call.stream_settings().cloned() else {
        return call.respond(Err((errno::EREQUEST, "no stream to accept".into())));
    };
    let options = StreamOptions { handler: Some(Arc::new(EchoStream)), ..Default::default() };
    match stream::accept(call.host(), &settings, &options, 1) {
        Ok(ids) => call.respond_with_streams(Ok((Bytes::from_static(b"accepted"), Bytes::new())), &ids),
        Err(error) => call.respond(Err((error.code(), "only one stream per call".into()))),
    }
}

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

    /// Sets up a stream `mine` (with `extra` ids beside it) through
    /// "fault.Service/Stream"; returns the response's meta.
    pub fn open_stream(&mut self, mine: i64, extra: Vec<i64>) -> Option<RpcMeta> {
        let mut meta = request_meta(1, "Stream");
        meta.stream_settings = Some(StreamSettings {
            stream_id: Some(mine),
            need_feedback: Some(true),
            writable: Some(true),
            extra_stream_ids: extra,
        });
        self.conn.write_all(&rpc_frame(&meta, b"open")).ok()?;
        self.response(1, Instant::now() + Duration::from_secs(10))
    }
}
