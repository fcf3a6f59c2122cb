//! Server-side bounds over real loopback: calls in flight per server and per
//! method (`ELIMIT`, the method never runs), unanswered calls per
//! connection (the connection waits), and the per-method figures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use brpc_stream::errno;
use brpc_stream::rpc::{
    CallOutcome, CallRequest, Channel, ChannelOptions, Server, ServerCall, ServerOptions,
    MAX_UNANSWERED_CALLS_PER_CONNECTION,
};
use brpc_stream::Error;
use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

const WAIT: Duration = Duration::from_secs(20);

/// A gate the "Hold" method waits at until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    entered: AtomicUsize,
}

impl Gate {
    fn wait(&self) {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock();
        let deadline = std::time::Instant::now() + WAIT;
        while !*open && std::time::Instant::now() < deadline {
            self.opened.wait_until(&mut open, deadline);
        }
    }

    fn open(&self) {
        *self.open.lock() = true;
        self.opened.notify_all();
    }

    fn wait_entered(&self, n: usize) {
        let deadline = std::time::Instant::now() + WAIT;
        while self.entered.load(Ordering::SeqCst) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "only {} calls reached the method",
                self.entered.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn server_with(gate: &Arc<Gate>, options: ServerOptions, method_limit: Option<usize>) -> (Server, String) {
    let server = Server::new();
    let held = Arc::clone(gate);
    server
        .add_method(
            "test.LimitService",
            "Hold",
            Arc::new(move |call: ServerCall| {
                held.wait();
                call.respond(Ok((Bytes::from_static(b"held"), Bytes::new())));
            }),
        )
        .unwrap();
    server
        .add_method(
            "test.LimitService",
            "Echo",
            Arc::new(|call: ServerCall| {
                let payload = call.request.payload.clone();
                call.respond(Ok((payload, Bytes::new())));
            }),
        )
        .unwrap();
    if let Some(limit) = method_limit {
        server.set_max_concurrency_of("test.LimitService.Hold", limit).unwrap();
        assert_eq!(server.max_concurrency_of("test.LimitService.Hold"), Some(limit));
    }
    assert_eq!(server.set_max_concurrency_of("test.LimitService.Nope", 1).map_err(|e| e.code()), Err(libc::ENOENT));
    server.start("127.0.0.1:0", options).unwrap();
    assert_eq!(server.set_max_concurrency_of("test.LimitService.Hold", 3).map_err(|e| e.code()), Err(libc::EPERM));
    let port = server.listen_address().unwrap().port();
    (server, format!("127.0.0.1:{port}"))
}

fn start_call(channel: &Channel, method: &str) -> mpsc::Receiver<CallOutcome> {
    let (tx, rx) = mpsc::channel();
    let request = CallRequest {
        service: "test.LimitService".into(),
        method: method.into(),
        payload: Bytes::from_static(b"x"),
        timeout: Some(WAIT),
        ..Default::default()
    };
    channel.call(
        request,
        Box::new(move |outcome| {
            let _ = tx.send(outcome);
        }),
    );
    rx
}

fn code(rx: &mpsc::Receiver<CallOutcome>) -> Option<i32> {
    rx.recv_timeout(WAIT).expect("the call ends").error().map(|e| e.code())
}

#[test]
fn a_call_beyond_the_methods_limit_gets_elimit_and_the_method_never_runs() {
    let gate = Arc::new(Gate::default());
    let (server, addr) = server_with(&gate, ServerOptions::default(), Some(2));
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let first = start_call(&channel, "Hold");
    let second = start_call(&channel, "Hold");
    gate.wait_entered(2);
    let third = start_call(&channel, "Hold");
    assert_eq!(code(&third), Some(errno::ELIMIT));
    // Other methods are not limited by this one's limit.
    assert_eq!(code(&start_call(&channel, "Echo")), None);
    assert_eq!(gate.entered.load(Ordering::SeqCst), 2, "the refused call ran the method");
    let during = server.method_statuses();
    let hold = during.iter().find(|m| m.method == "Hold").unwrap();
    assert_eq!((hold.concurrency, hold.max_concurrency, hold.rejected), (2, 2, 1));
    gate.open();
    assert_eq!(code(&first), None);
    assert_eq!(code(&second), None);
    // Room again once they ended (counted out just after their response left).
    let deadline = std::time::Instant::now() + WAIT;
    while code(&start_call(&channel, "Hold")) == Some(errno::ELIMIT) {
        assert!(std::time::Instant::now() < deadline, "no room after the calls ended");
        std::thread::sleep(Duration::from_millis(2));
    }
    let after = server.method_statuses();
    let hold = after.iter().find(|m| m.method == "Hold").unwrap();
    assert_eq!((hold.calls, hold.errors, hold.concurrency), (3, 0, 0));
    assert_eq!(hold.latency.samples, 3);
    assert!(hold.latency.p50_us > 0 && hold.latency.p999_us >= hold.latency.p50_us, "{:?}", hold.latency);
    assert_eq!(
        after.iter().map(|m| m.full_name()).collect::<Vec<_>>(),
        ["test.LimitService.Echo", "test.LimitService.Hold"]
    );
}

#[test]
fn a_call_beyond_the_servers_limit_gets_elimit() {
    let gate = Arc::new(Gate::default());
    let options = ServerOptions { max_concurrency: 1, ..Default::default() };
    let (server, addr) = server_with(&gate, options, None);
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let first = start_call(&channel, "Hold");
    gate.wait_entered(1);
    let echo = channel_call_error(&channel, "Echo");
    assert_eq!(echo.code(), errno::ELIMIT);
    assert!(echo.text().contains("max_concurrency=1"), "{echo}");
    assert_eq!(server.concurrency(), 1);
    gate.open();
    assert_eq!(code(&first), None);
    // The server counts a call out just after its response left, so the
    // client may hear back a moment before there is room again.
    let deadline = std::time::Instant::now() + WAIT;
    let mut refused = 1;
    while code(&start_call(&channel, "Echo")) == Some(errno::ELIMIT) {
        assert!(std::time::Instant::now() < deadline, "no room after the call ended");
        refused += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    let echo = server.method_statuses().into_iter().find(|m| m.method == "Echo").unwrap();
    assert_eq!((echo.calls, echo.rejected), (1, refused));
}

fn channel_call_error(channel: &Channel, method: &str) -> Error {
    let outcome = start_call(channel, method).recv_timeout(WAIT).expect("the call ends");
    outcome.error().expect("the call failed")
}

/// A server whose "Park" method keeps its calls unanswered (no worker
/// waits) until the test answers them.
fn parking_server() -> (Server, String, Arc<Mutex<Vec<ServerCall>>>) {
    let parked = Arc::new(Mutex::new(Vec::new()));
    let server = Server::new();
    let keep = Arc::clone(&parked);
    server.add_method("test.LimitService", "Park", Arc::new(move |call: ServerCall| keep.lock().push(call))).unwrap();
    server
        .add_method(
            "test.LimitService",
            "Echo",
            Arc::new(|call: ServerCall| {
                let payload = call.request.payload.clone();
                call.respond(Ok((payload, Bytes::new())));
            }),
        )
        .unwrap();
    server.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    let port = server.listen_address().unwrap().port();
    (server, format!("127.0.0.1:{port}"), parked)
}

#[test]
fn a_connection_with_too_many_unanswered_calls_is_not_read_until_some_are_answered() {
    let (server, addr, parked) = parking_server();
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let sent = 3 * MAX_UNANSWERED_CALLS_PER_CONNECTION;
    let calls: Vec<_> = (0..sent).map(|_| start_call(&channel, "Park")).collect();
    // The server takes calls off the connection up to the bound, then waits.
    let deadline = std::time::Instant::now() + WAIT;
    while parked.lock().len() < MAX_UNANSWERED_CALLS_PER_CONNECTION {
        assert!(std::time::Instant::now() < deadline, "only {} calls were read", parked.lock().len());
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    let held = parked.lock().len();
    std::thread::sleep(Duration::from_millis(300));
    let held_later = parked.lock().len();
    // Another connection is read meanwhile.
    let other = ChannelOptions { connection_group: "other".into(), ..Default::default() };
    let other = Channel::new(&addr, other).unwrap();
    let echo = code(&start_call(&other, "Echo"));
    // Answered calls make room: every call is read and served (answered
    // before any assertion, so a failure does not leave the server waiting
    // for calls its own method keeps).
    let mut answered = 0;
    while answered < sent && std::time::Instant::now() < deadline + WAIT {
        let ready: Vec<ServerCall> = std::mem::take(&mut *parked.lock());
        if ready.is_empty() {
            std::thread::sleep(Duration::from_millis(2));
        }
        for call in ready {
            call.respond(Ok((Bytes::from_static(b"parked"), Bytes::new())));
            answered += 1;
        }
    }
    assert_eq!(held, held_later, "went on reading the connection");
    // The bound is checked between reads, so one read's calls may pass it.
    assert!(held < 2 * MAX_UNANSWERED_CALLS_PER_CONNECTION, "read {held} calls of {sent}");
    assert_eq!(echo, None);
    assert_eq!(answered, sent);
    for call in &calls {
        assert_eq!(code(call), None);
    }
    let park = server.method_statuses().into_iter().find(|m| m.method == "Park").unwrap();
    assert_eq!((park.calls, park.errors, park.rejected), (sent as u64, 0, 0));
}
