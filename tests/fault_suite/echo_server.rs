//! The in-process server the fault suite attacks: fault.Service, the names
//! bench/fault_server.cpp serves from another process. "Echo" answers with
//! the request's payload, "Busy" computes 0.2 ms and answers empty, "Stream" accepts one stream that echoes every
//! message, "Sink" one that consumes what it gets.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brpc_stream::errno;
use brpc_stream::rpc::{Server, ServerCall, ServerOptions};
use brpc_stream::stream::{self, StreamHandler, StreamId, StreamOptions};
use brpc_stream::Error;
use bytes::Bytes;
use parking_lot::Mutex;

/// How long "Busy" computes before answering (as bench/fault_server.cpp's).
const BUSY_METHOD: Duration = Duration::from_micros(200);

pub fn echo_server(options: ServerOptions) -> (Server, String) {
    let server = Server::new();
    server
        .add_method(
            "fault.Service",
            "Echo",
            Arc::new(|call: ServerCall| {
                let payload = call.request.payload.clone();
                call.respond(Ok((payload, Bytes::new())));
            }),
        )
        .unwrap();
    server
        .add_method(
            "fault.Service",
            "Busy",
            Arc::new(|call: ServerCall| {
                // Computes: its callers wait for the workers, not the reading.
                let until = Instant::now() + BUSY_METHOD;
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                call.respond(Ok((Bytes::new(), Bytes::new())));
            }),
        )
        .unwrap();
    server.add_method("fault.Service", "Stream", Arc::new(accept_echo_stream)).unwrap();
    server.add_method("fault.Service", "Sink", Arc::new(accept_sink_stream)).unwrap();
    server.start("127.0.0.1:0", options).unwrap();
    let addr = server.listen_address().unwrap().to_string();
    (server, addr)
}

/// The `on_failed`s the server's streams got.
pub static STREAM_FAILURES: Mutex<Failures> = Mutex::new(Failures { total: 0, recent: VecDeque::new() });

/// The latest [`Failures::KEPT`] failures kept: a peer that opens 65 536
/// streams and hangs up fails them all, and a test's record growing with
/// every one would be the test's memory, not the server's.
pub struct Failures {
    /// Every failure so far, counted.
    pub total: usize,
    /// The latest ones: (code, text).
    pub recent: VecDeque<(i32, String)>,
}

impl Failures {
    const KEPT: usize = 256;

    fn record(error: &Error) {
        let mut failures = STREAM_FAILURES.lock();
        if failures.recent.len() == Self::KEPT {
            failures.recent.pop_front();
        }
        failures.recent.push_back((error.code(), error.text().to_string()));
        failures.total += 1;
    }
}

/// Writes every message back, waiting for room as brpc's echo examples do
/// (inside the callback).
struct EchoStream;

impl StreamHandler for EchoStream {
    fn on_received_messages(&self, id: StreamId, messages: &[Bytes]) {
        for message in messages {
            while let Err(libc::EAGAIN) = stream::write(id, message.clone(), false).map_err(|e| e.code()) {
                if stream::wait(id, Some(Duration::from_secs(5))).is_err() {
                    return;
                }
            }
        }
    }
    fn on_idle_timeout(&self, _id: StreamId) {}
    fn on_closed(&self, _id: StreamId) {}
    fn on_failed(&self, _id: StreamId, error: &Error) {
        Failures::record(error);
    }
}

/// Consumes what arrives and sends nothing back.
struct SinkStream;

impl StreamHandler for SinkStream {
    fn on_received_messages(&self, _id: StreamId, _messages: &[Bytes]) {}
    fn on_idle_timeout(&self, _id: StreamId) {}
    fn on_closed(&self, _id: StreamId) {}
    fn on_failed(&self, _id: StreamId, error: &Error) {
        Failures::record(error);
    }
}

/// "fault.Service/Sink": accepts one stream that consumes what it gets.
pub fn accept_sink_stream(call: ServerCall) {
    let Some(settings) = call.stream_settings().cloned() else {
        return call.respond(Err(Error::new(errno::EREQUEST, "no stream to accept")));
    };
    let options = StreamOptions {
        handler: Some(Arc::new(SinkStream)),
        max_buf_size: crate::attacks::SINK_WINDOW,
        ..Default::default()
    };
    match stream::accept(call.host(), &settings, &options, 1) {
        Ok(ids) => call.respond_with_streams(Ok((Bytes::from_static(b"accepted"), Bytes::new())), &ids),
        Err(error) => call.respond(Err(Error::new(error.code(), "only one stream per call").caused_by(error))),
    }
}

/// "fault.Service/Stream": accepts one stream (a request with more is
/// refused, as a method written for one stream refuses them).
pub fn accept_echo_stream(call: ServerCall) {
    let Some(settings) = call.stream_settings().cloned() else {
        return call.respond(Err(Error::new(errno::EREQUEST, "no stream to accept")));
    };
    let options = StreamOptions { handler: Some(Arc::new(EchoStream)), ..Default::default() };
    match stream::accept(call.host(), &settings, &options, 1) {
        Ok(ids) => call.respond_with_streams(Ok((Bytes::from_static(b"accepted"), Bytes::new())), &ids),
        Err(error) => call.respond(Err(Error::new(error.code(), "only one stream per call").caused_by(error))),
    }
}
