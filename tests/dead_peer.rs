//! Dead-peer detection: keepalive and TCP_USER_TIMEOUT reach the sockets
//! of both ends, and a peer that goes silent without closing ends a
//! blocked `StreamWait` instead of leaving it waiting forever.
//!
//! On loopback a silent process still has a kernel that ACKs everything, so
//! the silent-peer tests make the silence real: the test thread moves into
//! a network namespace of its own (needs CAP_SYS_ADMIN, as root in a
//! container has), connects there over its loopback, and then takes the
//! loopback down, so every segment either way is dropped.
//! `BRPC_SKIP_NETNS_TESTS=1` skips those two where namespaces are not
//! allowed; otherwise they fail rather than pass unseen.

#[path = "common/fault_peer.rs"]
mod fault_peer;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brpc_stream::rpc::{CallRequest, Channel, ChannelOptions, Server, ServerCall, ServerOptions};
use brpc_stream::socket::{Liveness, Socket};
use brpc_stream::stream::{self, StreamHandler, StreamId, StreamOptions};
use brpc_stream::Error;
use bytes::Bytes;
use fault_peer::{Fault, FaultPeer};

const SHORT: Liveness = Liveness {
    keepalive: true,
    keepalive_idle: Some(Duration::from_secs(1)),
    keepalive_interval: Some(Duration::from_secs(1)),
    keepalive_count: Some(1),
    user_timeout: Some(Duration::from_millis(500)),
};

#[test]
fn liveness_options_reach_both_ends_of_a_connection() {
    let server_side = Arc::new(Mutex::new(None));
    let server = Server::new();
    let seen = server_side.clone();
    server
        .add_method(
            "test.Live",
            "Check",
            Arc::new(move |call: ServerCall| {
                let fd = Socket::address(call.host()).unwrap().fd();
                *seen.lock().unwrap() = Some(Liveness::of(fd).unwrap());
                call.respond(Ok((Bytes::new(), Bytes::new())));
            }),
        )
        .unwrap();
    server.start("127.0.0.1:0", ServerOptions { liveness: SHORT, ..Default::default() }).unwrap();
    let channel = Channel::new(
        &server.listen_address().unwrap().to_string(),
        ChannelOptions { liveness: SHORT, ..Default::default() },
    )
    .unwrap();
    let (tx, rx) = mpsc::channel();
    channel.call(
        CallRequest { service: "test.Live".into(), method: "Check".into(), ..Default::default() },
        Box::new(move |outcome| {
            let fd = Socket::address(outcome.socket.unwrap()).unwrap().fd();
            let _ = tx.send((outcome.error(), Liveness::of(fd).unwrap()));
        }),
    );
    let (error, client) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(error, None);
    assert_eq!(client, SHORT);
    assert_eq!(server_side.lock().unwrap().unwrap(), SHORT);

    // Without options the system's settings stay: no keepalive, no user timeout.
    let plain = Channel::new(&server.listen_address().unwrap().to_string(), ChannelOptions::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    plain.call(
        CallRequest { service: "test.Live".into(), method: "Check".into(), ..Default::default() },
        Box::new(move |outcome| {
            let fd = Socket::address(outcome.socket.unwrap()).unwrap().fd();
            let _ = tx.send(Liveness::of(fd).unwrap());
        }),
    );
    let plain = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(!plain.keepalive);
    assert_eq!(plain.user_timeout, Some(Duration::ZERO));
}

/// Records how the stream failed.
struct Failure(Mutex<Option<i32>>);

impl StreamHandler for Failure {
    fn on_received_messages(&self, _id: StreamId, _messages: &[Bytes]) {}
    fn on_idle_timeout(&self, _id: StreamId) {}
    fn on_closed(&self, _id: StreamId) {}
    fn on_failed(&self, _id: StreamId, error: &Error) {
        let code = error.code();
        *self.0.lock().unwrap() = Some(code);
    }
}

impl Failure {
    /// The code `on_failed` got, waiting for it: StreamWait wakes when the
    /// stream closes, and its callbacks run a moment later on a worker.
    fn code(&self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let code = *self.0.lock().unwrap();
            if code.is_some() || Instant::now() > deadline {
                return code;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Brings this namespace's loopback up or down.
fn set_loopback(up: bool) {
    // SAFETY: plain ioctls on a datagram socket of our own, with an ifreq
    // naming "lo".
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0);
        let mut request: libc::ifreq = std::mem::zeroed();
        for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request), 0);
        let flags = request.ifr_ifru.ifru_flags;
        let up_flag = libc::IFF_UP as libc::c_short;
        request.ifr_ifru.ifru_flags = if up { flags | up_flag } else { flags & !up_flag };
        assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &request), 0);
        libc::close(fd);
    }
}

/// Runs `test` on a thread of its own in a new network namespace whose
/// loopback is up; sockets made there live in it.
fn in_private_network(test: impl FnOnce() + Send + 'static) {
    if std::env::var("BRPC_SKIP_NETNS_TESTS").is_ok_and(|v| v == "1") {
        println!("skipped: BRPC_SKIP_NETNS_TESTS=1");
        return;
    }
    std::thread::spawn(move || {
        // SAFETY: unshare only changes this thread's network namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare(CLONE_NEWNET): {} (BRPC_SKIP_NETNS_TESTS=1 skips)", std::io::Error::last_os_error());
        set_loopback(true);
        test();
    })
    .join()
    .unwrap();
}

/// Sets up a stream with a 1 KiB window to a silent peer over a channel
/// with `liveness`.
fn stream_to_silent_peer(peer: &FaultPeer, liveness: Liveness) -> (Channel, StreamId, Arc<Failure>) {
    let channel = Channel::new(&peer.address().to_string(), ChannelOptions { liveness, ..Default::default() }).unwrap();
    let failure = Arc::new(Failure(Mutex::new(None)));
    let options = StreamOptions { max_buf_size: 1024, handler: Some(failure.clone()), ..Default::default() };
    let ids = stream::create(1, &options).unwrap();
    let (tx, rx) = mpsc::channel();
    let streams = ids.clone();
    channel.call(
        CallRequest {
            service: "test.Silent".into(),
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
    assert!(stream::is_connected(ids[0]));
    (channel, ids[0], failure)
}

/// A StreamWait with no timeout, on a thread of its own: its result and
/// how long it took.
fn wait_forever(id: StreamId) -> (i32, Duration) {
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(stream::wait(id, None).err().map_or(0, |error| error.code()));
    });
    let code = rx.recv_timeout(Duration::from_secs(20)).expect("StreamWait still blocked after 20 s");
    (code, started.elapsed())
}

#[test]
fn user_timeout_ends_a_wait_on_a_peer_that_stopped_acknowledging() {
    in_private_network(|| {
        let peer = FaultPeer::start(Fault::Silent, Duration::from_secs(6), 0);
        let liveness = Liveness { user_timeout: Some(Duration::from_millis(500)), ..Default::default() };
        let (_channel, id, failure) = stream_to_silent_peer(&peer, liveness);
        set_loopback(false);
        // Sent into the void: unacknowledged, so the user timeout runs.
        stream::write(id, Bytes::from(vec![1u8; 1024]), false).unwrap();
        assert_eq!(stream::write(id, Bytes::from_static(b"more"), false).map_err(|e| e.code()), Err(libc::EAGAIN));
        let (code, took) = wait_forever(id);
        assert_eq!(code, libc::EINVAL, "the closed stream's wait ends with EINVAL");
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert_eq!(failure.code(), Some(libc::ETIMEDOUT));
        println!("user timeout 500 ms: StreamWait returned after {took:?}");
        set_loopback(true);
    });
}

#[test]
fn keepalive_ends_a_wait_on_a_peer_that_went_silent_while_idle() {
    in_private_network(|| {
        let peer = FaultPeer::start(Fault::Silent, Duration::from_secs(6), 0);
        let liveness = Liveness {
            keepalive: true,
            keepalive_idle: Some(Duration::from_secs(1)),
            keepalive_interval: Some(Duration::from_secs(1)),
            keepalive_count: Some(1),
            user_timeout: None,
        };
        let (_channel, id, failure) = stream_to_silent_peer(&peer, liveness);
        // The peer takes the bytes (its kernel ACKs) but never consumes:
        // the window is full with nothing unacknowledged.
        stream::write(id, Bytes::from(vec![1u8; 1024]), false).unwrap();
        assert_eq!(stream::write(id, Bytes::from_static(b"more"), false).map_err(|e| e.code()), Err(libc::EAGAIN));
        std::thread::sleep(Duration::from_millis(100));
        set_loopback(false);
        let (code, took) = wait_forever(id);
        assert_eq!(code, libc::EINVAL);
        assert!(took < Duration::from_secs(10), "took {took:?}");
        assert_eq!(failure.code(), Some(libc::ETIMEDOUT));
        println!("keepalive 1 s + 1 probe: StreamWait returned after {took:?}");
        set_loopback(true);
    });
}
