//! `Server::join` keeps its promise to the server's streams: it returns only
//! once each of them ended and its last callback returned, what a client
//! wrote before closing its stream is delivered, and nothing is called
//! after it returned. Real loopback TCP, real threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use brpc_stream::errno;
use brpc_stream::rpc::{CallRequest, Channel, ChannelOptions, Server, ServerCall, ServerOptions, JOIN_QUIET_GRACE};
use brpc_stream::stream::{self, StreamHandler, StreamId, StreamOptions};
use brpc_stream::Error;
use bytes::Bytes;

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Messages(usize),
    Failed(i32),
    Closed,
}

/// Records the server stream's callbacks; one that starts after `joined`
/// was set is recorded as a violation. `on_closed` lingers for `linger`.
struct Recorder {
    events: Mutex<Vec<Event>>,
    next: Mutex<u32>,
    out_of_order: AtomicBool,
    joined: AtomicBool,
    after_join: AtomicBool,
    linger: Duration,
}

impl Recorder {
    fn new(linger: Duration) -> Arc<Recorder> {
        Arc::new(Recorder {
            events: Mutex::new(Vec::new()),
            next: Mutex::new(0),
            out_of_order: AtomicBool::new(false),
            joined: AtomicBool::new(false),
            after_join: AtomicBool::new(false),
            linger,
        })
    }

    fn push(&self, event: Event) {
        if self.joined.load(Ordering::Acquire) {
            self.after_join.store(true, Ordering::Release);
        }
        self.events.lock().unwrap().push(event);
    }

    fn received(&self) -> u32 {
        *self.next.lock().unwrap()
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

impl StreamHandler for Recorder {
    fn on_received_messages(&self, _id: StreamId, messages: &[Bytes]) {
        let mut next = self.next.lock().unwrap();
        for message in messages {
            if message.as_ref() != next.to_be_bytes() {
                self.out_of_order.store(true, Ordering::Release);
            }
            *next += 1;
        }
        drop(next);
        self.push(Event::Messages(messages.len()));
    }
    fn on_idle_timeout(&self, _id: StreamId) {}
    fn on_closed(&self, _id: StreamId) {
        std::thread::sleep(self.linger);
        self.push(Event::Closed);
    }
    fn on_failed(&self, _id: StreamId, error: &Error) {
        let code = error.code();
        self.push(Event::Failed(code));
    }
}

/// A server whose Open method accepts the call's stream with `handler`.
fn stream_server(handler: Arc<Recorder>) -> (Server, String) {
    let server = Server::new();
    server
        .add_method(
            "test.StreamService",
            "Open",
            Arc::new(move |call: ServerCall| {
                let settings = call.stream_settings().cloned().expect("the request carries a stream");
                let options = StreamOptions {
                    handler: Some(handler.clone() as Arc<dyn StreamHandler>),
                    messages_in_batch: 100,
                    ..Default::default()
                };
                let ids = stream::accept(call.host(), &settings, &options, 1).unwrap();
                call.respond_with_streams(Ok((Bytes::from_static(b"accepted"), Bytes::new())), &ids);
            }),
        )
        .unwrap();
    server.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    let addr = format!("127.0.0.1:{}", server.listen_address().unwrap().port());
    (server, addr)
}

/// A client stream (no window, as brpc's `received_in_order`) set up by a
/// call to Open.
fn open_stream(channel: &Channel) -> StreamId {
    let options = StreamOptions { max_buf_size: 0, ..Default::default() };
    let ids = stream::create(1, &options).unwrap();
    let (tx, rx) = mpsc::channel();
    let streams = ids.clone();
    channel.call(
        CallRequest {
            service: "test.StreamService".into(),
            method: "Open".into(),
            stream_settings: stream::settings_for(&ids),
            ..Default::default()
        },
        Box::new(move |outcome| {
            let settings = outcome.result.as_ref().ok().and_then(|m| m.meta.stream_settings.clone());
            let error = outcome.error();
            let then = Box::new(move || drop(tx.send(error)));
            stream::on_setup_response(&streams, outcome.socket, outcome.error(), settings.as_ref(), then);
        }),
    );
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), None);
    ids[0]
}

/// Joins, and marks the moment so later callbacks show.
fn join(server: &Server, handler: &Recorder) {
    server.join();
    handler.joined.store(true, Ordering::Release);
}

#[test]
fn join_delivers_what_the_client_wrote_before_closing_and_returns_after_on_closed() {
    let handler = Recorder::new(Duration::from_millis(200));
    let (server, addr) = stream_server(Arc::clone(&handler));
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let id = open_stream(&channel);
    const N: u32 = 10_000;
    for i in 0..N {
        stream::write(id, Bytes::copy_from_slice(&i.to_be_bytes()), false).unwrap();
    }
    stream::close(id).unwrap();
    join(&server, &handler);

    let events = handler.events();
    assert_eq!(events.last(), Some(&Event::Closed), "on_closed returned before join did: {events:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::Failed(_))), "a normal close failed: {events:?}");
    assert_eq!(handler.received(), N);
    assert!(!handler.out_of_order.load(Ordering::Acquire));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!handler.after_join.load(Ordering::Acquire), "a callback ran after join returned");
}

#[test]
fn join_fails_a_stream_the_client_keeps_open_and_waits_for_its_last_callbacks() {
    let handler = Recorder::new(Duration::from_millis(200));
    let (server, addr) = stream_server(Arc::clone(&handler));
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let id = open_stream(&channel);
    stream::write(id, Bytes::copy_from_slice(&0u32.to_be_bytes()), false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while handler.received() < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    join(&server, &handler);
    let took = started.elapsed();

    assert!(took >= JOIN_QUIET_GRACE, "join returned after {took:?}, before the client went quiet that long");
    assert!(took < JOIN_QUIET_GRACE + Duration::from_secs(5), "join took {took:?}");
    assert_eq!(handler.events(), vec![Event::Messages(1), Event::Failed(errno::ELOGOFF), Event::Closed]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!handler.after_join.load(Ordering::Acquire), "a callback ran after join returned");
    // The client's stream ends with the connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stream::is_known(id) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!stream::is_known(id));
}

#[test]
fn stop_answers_new_calls_with_elogoff_while_open_streams_go_on() {
    let handler = Recorder::new(Duration::ZERO);
    let (server, addr) = stream_server(Arc::clone(&handler));
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let id = open_stream(&channel);
    server.stop();

    // The stream still carries data after Stop.
    stream::write(id, Bytes::copy_from_slice(&0u32.to_be_bytes()), false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while handler.received() < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(handler.received(), 1);
    // A new call on the same connection is refused.
    let (tx, rx) = mpsc::channel();
    channel.call(
        CallRequest { service: "test.StreamService".into(), method: "Open".into(), ..Default::default() },
        Box::new(move |outcome| {
            let _ = tx.send(outcome.error().map(|e| e.code()));
        }),
    );
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Some(errno::ELOGOFF));

    stream::close(id).unwrap();
    join(&server, &handler);
    assert_eq!(handler.events(), vec![Event::Messages(1), Event::Closed]);
}
