//! Streams over real loopback TCP, through the Rust API: setup by a call,
//! data both ways, flow control, and every way a stream ends.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brpc_stream::errno;
use brpc_stream::rpc::{CallRequest, Channel, ChannelOptions, Server, ServerCall, ServerOptions};
use brpc_stream::stream::{self, StreamHandler, StreamId, StreamOptions};
use brpc_stream::Error;
use bytes::Bytes;

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Messages(Vec<Bytes>),
    Idle,
    Failed(i32, String),
    Closed,
}

/// Records every callback, in order.
struct Recorder {
    events: Mutex<Vec<Event>>,
    tx: Mutex<mpsc::Sender<Event>>,
}

impl Recorder {
    fn new() -> (Arc<Recorder>, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel();
        (Arc::new(Recorder { events: Mutex::new(Vec::new()), tx: Mutex::new(tx) }), rx)
    }
    fn push(&self, e: Event) {
        self.events.lock().unwrap().push(e.clone());
        let _ = self.tx.lock().unwrap().send(e);
    }
}

impl StreamHandler for Recorder {
    fn on_received_messages(&self, _id: StreamId, messages: &[Bytes]) {
        self.push(Event::Messages(messages.to_vec()));
    }
    fn on_idle_timeout(&self, _id: StreamId) {
        self.push(Event::Idle);
    }
    fn on_closed(&self, _id: StreamId) {
        self.push(Event::Closed);
    }
    fn on_failed(&self, _id: StreamId, error: &Error) {
        let code = error.code();
        let text = error.text();
        self.push(Event::Failed(code, text.to_string()));
    }
}

/// Waits for the on_closed event, collecting everything before it.
fn until_closed(rx: &mpsc::Receiver<Event>) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let e = rx.recv_timeout(Duration::from_secs(10)).expect("on_closed arrives");
        let closed = e == Event::Closed;
        seen.push(e);
        if closed {
            return seen;
        }
    }
}

fn messages(events: &[Event]) -> Vec<Bytes> {
    events
        .iter()
        .flat_map(|e| match e {
            Event::Messages(m) => m.clone(),
            _ => Vec::new(),
        })
        .collect()
}

/// A server whose Open method accepts the streams with `handler` and
/// answers "accepted"; the accepted ids go to `accepted`.
fn stream_server(handler: Arc<Recorder>, accepted: mpsc::Sender<Vec<StreamId>>) -> (Server, String) {
    let server = Server::new();
    let accepted = Mutex::new(accepted);
    server
        .add_method(
            "test.StreamService",
            "Open",
            Arc::new(move |call: ServerCall| {
                let settings = call.stream_settings().cloned().expect("the request carries streams");
                let options = StreamOptions { handler: Some(handler.clone()), ..Default::default() };
                let ids = stream::accept(call.host(), &settings, &options, stream::MAX_STREAMS_PER_CALL).unwrap();
                let _ = accepted.lock().unwrap().send(ids.clone());
                call.respond_with_streams(Ok((Bytes::from_static(b"accepted"), Bytes::new())), &ids);
            }),
        )
        .unwrap();
    server.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    let addr = format!("127.0.0.1:{}", server.listen_address().unwrap().port());
    (server, addr)
}

fn open(channel: &Channel, ids: &[StreamId]) -> mpsc::Receiver<Option<Error>> {
    let (tx, rx) = mpsc::channel();
    let streams = ids.to_vec();
    channel.call(
        CallRequest {
            service: "test.StreamService".into(),
            method: "Open".into(),
            stream_settings: stream::settings_for(ids),
            ..Default::default()
        },
        Box::new(move |outcome| {
            let settings = outcome.result.as_ref().ok().and_then(|m| m.meta.stream_settings.clone());
            let error = outcome.error();
            let then = Box::new(move || drop(tx.send(error)));
            stream::on_setup_response(&streams, outcome.socket, outcome.error(), settings.as_ref(), then);
        }),
    );
    rx
}

#[test]
fn messages_written_before_and_after_connecting_arrive_in_order() {
    let (server_handler, server_rx) = Recorder::new();
    let (accepted_tx, accepted_rx) = mpsc::channel();
    let (_server, addr) = stream_server(server_handler, accepted_tx);
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let (client_handler, client_rx) = Recorder::new();
    let options = StreamOptions { handler: Some(client_handler), ..Default::default() };
    let ids = stream::create(1, &options).unwrap();
    let id = ids[0];
    stream::write(id, Bytes::from_static(b"early-1"), false).unwrap();
    stream::write(id, Bytes::from_static(b"early-2"), false).unwrap();
    let call = open(&channel, &ids);
    assert_eq!(call.recv_timeout(Duration::from_secs(10)).unwrap(), None);
    for i in 0..100 {
        stream::write(id, Bytes::from(format!("late-{i}")), false).unwrap();
    }
    stream::close(id).unwrap();
    assert_eq!(stream::write(id, Bytes::from_static(b"after"), false).map_err(|e| e.code()), Err(libc::EINVAL));

    let server_events = until_closed(&server_rx);
    let got = messages(&server_events);
    let mut want = vec![Bytes::from_static(b"early-1"), Bytes::from_static(b"early-2")];
    want.extend((0..100).map(|i| Bytes::from(format!("late-{i}"))));
    assert_eq!(got, want);
    assert!(!server_events.iter().any(|e| matches!(e, Event::Failed(..))), "{server_events:?}");
    let client_events = until_closed(&client_rx);
    assert_eq!(client_events, vec![Event::Closed]);
    let _ = accepted_rx.recv_timeout(Duration::from_secs(1)).unwrap();
}

#[test]
fn the_server_writes_back_and_the_client_receives() {
    let (server_handler, _server_rx) = Recorder::new();
    let (accepted_tx, accepted_rx) = mpsc::channel();
    let (_server, addr) = stream_server(server_handler, accepted_tx);
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let (client_handler, client_rx) = Recorder::new();
    let ids = stream::create(1, &StreamOptions { handler: Some(client_handler), ..Default::default() }).unwrap();
    let call = open(&channel, &ids);
    assert_eq!(call.recv_timeout(Duration::from_secs(10)).unwrap(), None);
    let server_id = accepted_rx.recv_timeout(Duration::from_secs(10)).unwrap()[0];
    stream::write(server_id, Bytes::from_static(b"from the server"), false).unwrap();
    stream::close(server_id).unwrap();
    let events = until_closed(&client_rx);
    assert_eq!(messages(&events), vec![Bytes::from_static(b"from the server")]);
    assert_eq!(events.last(), Some(&Event::Closed));
}

#[test]
fn closing_before_connecting_reports_the_dropped_writes_once() {
    let (handler, rx) = Recorder::new();
    let ids = stream::create(1, &StreamOptions { handler: Some(handler.clone()), ..Default::default() }).unwrap();
    let id = ids[0];
    stream::write(id, Bytes::from_static(b"12345"), false).unwrap();
    stream::write(id, Bytes::from_static(b"678"), false).unwrap();
    stream::close(id).unwrap();
    assert_eq!(stream::close(id).map_err(|e| e.code()), Err(libc::EINVAL));
    assert_eq!(stream::write(id, Bytes::from_static(b"x"), false).map_err(|e| e.code()), Err(libc::EINVAL));
    let events = until_closed(&rx);
    assert_eq!(events.len(), 2, "{events:?}");
    match &events[0] {
        Event::Failed(code, text) => {
            assert_eq!(*code, libc::ECONNRESET);
            assert!(text.contains("2 messages (8 bytes)"), "{text}");
        }
        other => panic!("expected on_failed first, got {other:?}"),
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(handler.events.lock().unwrap().len(), 2);
}

#[test]
fn a_failed_setup_call_fails_its_streams_with_the_calls_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let channel = Channel::new(&format!("127.0.0.1:{port}"), ChannelOptions::default()).unwrap();
    let (handler, rx) = Recorder::new();
    let ids = stream::create(1, &StreamOptions { handler: Some(handler), ..Default::default() }).unwrap();
    stream::write(ids[0], Bytes::from_static(b"early"), false).unwrap();
    let call = open(&channel, &ids);
    let error = call.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(error.code(), libc::ECONNREFUSED);
    let events = until_closed(&rx);
    match &events[0] {
        Event::Failed(code, text) => {
            assert_eq!(*code, libc::ECONNREFUSED);
            assert!(text.contains("1 messages (5 bytes)"), "{text}");
        }
        other => panic!("expected on_failed first, got {other:?}"),
    }
}

#[test]
fn a_full_window_blocks_the_writer_until_feedback_arrives() {
    let (server_handler, server_rx) = Recorder::new();
    let (accepted_tx, _accepted_rx) = mpsc::channel();
    let (_server, addr) = stream_server(server_handler, accepted_tx);
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let options = StreamOptions { max_buf_size: 64 * 1024, ..Default::default() };
    let ids = stream::create(1, &options).unwrap();
    let id = ids[0];
    assert_eq!(open(&channel, &ids).recv_timeout(Duration::from_secs(10)).unwrap(), None);
    let chunk = Bytes::from(vec![7u8; 16 * 1024]);
    let mut blocked = 0;
    for _ in 0..64 {
        loop {
            match stream::write(id, chunk.clone(), false).map_err(|e| e.code()) {
                Ok(()) => break,
                Err(libc::EAGAIN) => {
                    blocked += 1;
                    assert_eq!(stream::wait(id, Some(Duration::from_secs(10))), Ok(()));
                }
                Err(code) => panic!("write failed: {code}"),
            }
        }
    }
    assert!(blocked > 0, "the 64 KiB window never filled");
    stream::close(id).unwrap();
    let received: usize = messages(&until_closed(&server_rx)).iter().map(Bytes::len).sum();
    assert_eq!(received, 64 * 16 * 1024);
}

#[test]
fn a_host_connection_failure_closes_its_streams_with_its_code() {
    let (server_handler, _server_rx) = Recorder::new();
    let (accepted_tx, accepted_rx) = mpsc::channel();
    let (server, addr) = stream_server(server_handler, accepted_tx);
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let (handler, rx) = Recorder::new();
    let ids = stream::create(3, &StreamOptions { handler: Some(handler), ..Default::default() }).unwrap();
    assert_eq!(open(&channel, &ids).recv_timeout(Duration::from_secs(10)).unwrap(), None);
    assert_eq!(accepted_rx.recv_timeout(Duration::from_secs(10)).unwrap().len(), 3);
    server.join();
    let mut failed = 0;
    let mut closed = 0;
    while closed < 3 {
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            Event::Failed(code, _) => {
                assert_eq!(code, errno::EEOF);
                failed += 1;
            }
            Event::Closed => closed += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(failed, 3);
}

#[test]
fn idle_streams_hear_about_it() {
    let (server_handler, _server_rx) = Recorder::new();
    let (accepted_tx, _accepted_rx) = mpsc::channel();
    let (_server, addr) = stream_server(server_handler, accepted_tx);
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let (handler, rx) = Recorder::new();
    let options =
        StreamOptions { handler: Some(handler), idle_timeout: Some(Duration::from_millis(50)), ..Default::default() };
    let ids = stream::create(1, &options).unwrap();
    assert_eq!(open(&channel, &ids).recv_timeout(Duration::from_secs(10)).unwrap(), None);
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Event::Idle);
    stream::close(ids[0]).unwrap();
}

/// Writes from one thread racing a close from another: every write that
/// returned 0 is reported dropped by on_failed (the stream never
/// connects), none more and none after the report.
#[test]
fn writes_racing_a_close_are_each_reported_once() {
    for _ in 0..300 {
        let (handler, rx) = Recorder::new();
        let ids = stream::create(1, &StreamOptions { handler: Some(handler), max_buf_size: 0, ..Default::default() })
            .unwrap();
        let id = ids[0];
        let writer = std::thread::spawn(move || {
            let mut accepted = 0u64;
            while stream::write(id, Bytes::from_static(b"x"), false).is_ok() {
                accepted += 1;
            }
            accepted
        });
        std::thread::yield_now();
        stream::close(id).unwrap();
        let accepted = writer.join().unwrap();
        let events = until_closed(&rx);
        let reported = events.iter().find_map(|e| match e {
            Event::Failed(_, text) => {
                text.split(": ").last().and_then(|t| t.split(' ').next()).and_then(|n| n.parse::<u64>().ok())
            }
            _ => None,
        });
        assert_eq!(reported.unwrap_or(0), accepted, "{events:?}");
    }
}

#[test]
fn a_destroyed_channels_connection_serves_its_streams_until_they_close() {
    let (server_handler, server_rx) = Recorder::new();
    let (accepted_tx, _accepted_rx) = mpsc::channel();
    let (_server, addr) = stream_server(server_handler, accepted_tx);
    let (handler, rx) = Recorder::new();
    let ids = stream::create(1, &StreamOptions { handler: Some(handler), ..Default::default() }).unwrap();
    {
        let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
        assert_eq!(open(&channel, &ids).recv_timeout(Duration::from_secs(10)).unwrap(), None);
    }
    stream::write(ids[0], Bytes::from_static(b"after the channel"), false).unwrap();
    stream::close(ids[0]).unwrap();
    let server_events = until_closed(&server_rx);
    assert_eq!(messages(&server_events), vec![Bytes::from_static(b"after the channel")]);
    assert_eq!(until_closed(&rx), vec![Event::Closed]);
}

#[test]
fn creating_no_streams_or_more_than_a_call_may_set_up_fails_with_einval() {
    let options = StreamOptions::default();
    assert_eq!(stream::create(0, &options).map_err(|e| e.code()), Err(libc::EINVAL));
    assert_eq!(stream::create(stream::MAX_STREAMS_PER_CALL + 1, &options).map_err(|e| e.code()), Err(libc::EINVAL));
}
