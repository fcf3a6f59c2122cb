//! One connection carrying 1 000 streams fails: every stream, on both
//! sides, ends once, with the code its connection failed with.

#[path = "common/fault_peer.rs"]
mod fault_peer;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use brpc_stream::errno;
use brpc_stream::rpc::{CallRequest, Channel, ChannelOptions, Server, ServerCall, ServerOptions};
use brpc_stream::socket::{Socket, SocketRef};
use brpc_stream::stream::{self, StreamHandler, StreamId, StreamOptions};
use brpc_stream::Error;
use bytes::Bytes;
use fault_peer::{Fault, FaultPeer};

const STREAMS: usize = 1000;

/// Counts callbacks and remembers every on_failed code.
#[derive(Default)]
struct Counts {
    failed: AtomicU32,
    closed: AtomicU32,
    codes: Mutex<Vec<i32>>,
    /// on_failed after on_closed.
    out_of_order: AtomicU32,
}

struct Handler(Arc<Counts>);

impl StreamHandler for Handler {
    fn on_received_messages(&self, _id: StreamId, _messages: &[Bytes]) {}
    fn on_idle_timeout(&self, _id: StreamId) {}
    fn on_closed(&self, _id: StreamId) {
        self.0.closed.fetch_add(1, Ordering::AcqRel);
    }
    fn on_failed(&self, _id: StreamId, error: &Error) {
        let code = error.code();
        if self.0.closed.load(Ordering::Acquire) > 0 {
            self.0.out_of_order.fetch_add(1, Ordering::AcqRel);
        }
        self.0.failed.fetch_add(1, Ordering::AcqRel);
        self.0.codes.lock().unwrap().push(code);
    }
}

/// A handler per stream, so exactly-once is checked per stream.
fn handlers(n: usize) -> Vec<Arc<Counts>> {
    (0..n).map(|_| Arc::new(Counts::default())).collect()
}

fn each_closed_once(counts: &[Arc<Counts>]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if counts.iter().all(|c| c.closed.load(Ordering::Acquire) >= 1) {
            // Anything late would show up now.
            std::thread::sleep(Duration::from_millis(100));
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

fn assert_each_failed_once_with(counts: &[Arc<Counts>], code: i32) {
    for (i, c) in counts.iter().enumerate() {
        assert_eq!(c.closed.load(Ordering::Acquire), 1, "stream #{i}: on_closed count");
        assert_eq!(c.failed.load(Ordering::Acquire), 1, "stream #{i}: on_failed count");
        assert_eq!(*c.codes.lock().unwrap(), vec![code], "stream #{i}: on_failed code");
        assert_eq!(c.out_of_order.load(Ordering::Acquire), 0);
    }
}

/// Creates STREAMS client streams, each with a message queued, and sets
/// them up with one call on `channel`; also returns their connection (held,
/// so its failure can be read after it failed).
fn open_many(channel: &Channel) -> (SocketRef, Vec<Arc<Counts>>) {
    let counts = handlers(STREAMS);
    let ids: Vec<StreamId> = counts
        .iter()
        .map(|c| {
            let options = StreamOptions { handler: Some(Arc::new(Handler(c.clone()))), ..Default::default() };
            stream::create(1, &options).unwrap()[0]
        })
        .collect();
    for id in &ids {
        stream::write(*id, Bytes::from_static(b"queued before the call"), false).unwrap();
    }
    let (tx, rx) = mpsc::channel();
    let streams = ids.clone();
    channel.call(
        CallRequest {
            service: "test.Many".into(),
            method: "Open".into(),
            stream_settings: stream::settings_for(&ids),
            ..Default::default()
        },
        Box::new(move |outcome| {
            let settings = outcome.result.as_ref().ok().and_then(|m| m.meta.stream_settings.clone());
            let host = outcome.socket.and_then(Socket::address_failed_as_well);
            let error = outcome.error();
            let then = Box::new(move || drop(tx.send((error, host))));
            stream::on_setup_response(&streams, outcome.socket, outcome.error(), settings.as_ref(), then);
        }),
    );
    let (error, host) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(error, None);
    for id in &ids {
        assert!(stream::is_connected(*id));
    }
    (host.unwrap(), counts)
}

/// The code the connection failed with.
fn failure_code(host: &SocketRef) -> i32 {
    host.failure().expect("the connection failed").code()
}

#[test]
fn a_server_stopping_ends_a_thousand_streams_on_each_side_once() {
    let server_counts = handlers(STREAMS);
    let server = Server::new();
    let (accepted_tx, accepted_rx) = mpsc::channel();
    let accepted_tx = Mutex::new(accepted_tx);
    let per_stream = server_counts.clone();
    server
        .add_method(
            "test.Many",
            "Open",
            Arc::new(move |call: ServerCall| {
                let settings = call.stream_settings().cloned().unwrap();
                let clients: Vec<i64> =
                    std::iter::once(settings.stream_id()).chain(settings.extra_stream_ids.iter().copied()).collect();
                let ids: Vec<StreamId> = clients
                    .iter()
                    .zip(&per_stream)
                    .map(|(client, counts)| {
                        let single = brpc_stream::protocol::StreamSettings {
                            stream_id: Some(*client),
                            extra_stream_ids: Vec::new(),
                            ..settings.clone()
                        };
                        let options =
                            StreamOptions { handler: Some(Arc::new(Handler(counts.clone()))), ..Default::default() };
                        stream::accept(call.host(), &single, &options, 1).unwrap()[0]
                    })
                    .collect();
                let _ = accepted_tx.lock().unwrap().send(ids.len());
                call.respond_with_streams(Ok((Bytes::new(), Bytes::new())), &ids);
            }),
        )
        .unwrap();
    server.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    let channel = Channel::new(&server.listen_address().unwrap().to_string(), ChannelOptions::default()).unwrap();
    let (host, client_counts) = open_many(&channel);
    assert_eq!(accepted_rx.recv_timeout(Duration::from_secs(10)).unwrap(), STREAMS);

    server.join();
    assert!(each_closed_once(&server_counts), "server streams did not all close");
    assert!(each_closed_once(&client_counts), "client streams did not all close");
    assert_each_failed_once_with(&server_counts, errno::ELOGOFF);
    // EEOF, or EPIPE when the queued messages were still going out.
    let code = failure_code(&host);
    assert!([errno::EEOF, libc::EPIPE, libc::ECONNRESET].contains(&code), "{code}");
    assert_each_failed_once_with(&client_counts, code);
}

#[test]
fn a_connection_reset_ends_a_thousand_streams_once_with_its_code() {
    let peer = FaultPeer::start(Fault::ResetMidStream, Duration::from_millis(200), 1);
    let channel = Channel::new(&peer.address().to_string(), ChannelOptions::default()).unwrap();
    let (host, counts) = open_many(&channel);
    assert!(each_closed_once(&counts), "streams did not all close");
    // ECONNRESET, or EPIPE when a write met the reset first.
    let code = failure_code(&host);
    assert!([libc::ECONNRESET, libc::EPIPE].contains(&code), "{code}");
    assert_each_failed_once_with(&counts, code);
}
