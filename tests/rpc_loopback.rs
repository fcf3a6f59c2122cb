//! baidu_std calls over real loopback TCP, through the Rust API.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use brpc_stream::errno;
use brpc_stream::rpc::{CallOutcome, CallRequest, Channel, ChannelOptions, Server, ServerCall, ServerOptions};
use brpc_stream::Error;
use bytes::Bytes;

fn echo_server() -> (Server, String) {
    let server = Server::new();
    server
        .add_method(
            "test.EchoService",
            "Echo",
            Arc::new(|call: ServerCall| {
                let payload = call.request.payload.clone();
                let attachment = call.request.attachment.clone();
                call.respond(Ok((payload, attachment)));
            }),
        )
        .unwrap();
    server
        .add_method(
            "test.EchoService",
            "Sleep",
            Arc::new(|call: ServerCall| {
                std::thread::sleep(Duration::from_millis(300));
                call.respond(Ok((Bytes::new(), Bytes::new())));
            }),
        )
        .unwrap();
    server
        .add_method(
            "test.EchoService",
            "Fail",
            Arc::new(|call: ServerCall| call.respond(Err(Error::new(libc::EPERM, "not allowed")))),
        )
        .unwrap();
    server.add_method("test.EchoService", "Forget", Arc::new(|_call: ServerCall| {})).unwrap();
    server.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    let port = server.listen_address().unwrap().port();
    (server, format!("127.0.0.1:{port}"))
}

fn call(channel: &Channel, method: &str, payload: &'static [u8], attachment: &'static [u8]) -> CallOutcome {
    let (tx, rx) = mpsc::channel();
    channel.call(
        CallRequest {
            service: "test.EchoService".into(),
            method: method.into(),
            payload: Bytes::from_static(payload),
            attachment: Bytes::from_static(attachment),
            ..Default::default()
        },
        Box::new(move |outcome| {
            let _ = tx.send(outcome);
        }),
    );
    rx.recv_timeout(Duration::from_secs(10)).expect("done runs")
}

#[test]
fn an_echo_returns_the_payload_and_the_attachment() {
    let (_server, addr) = echo_server();
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let outcome = call(&channel, "Echo", b"hello", b"attached");
    assert_eq!(outcome.error(), None);
    let message = outcome.result.unwrap();
    assert_eq!(&message.payload[..], b"hello");
    assert_eq!(&message.attachment[..], b"attached");
    assert_eq!(outcome.remote.unwrap().to_string(), addr);
    assert!(outcome.local.is_some());
}

#[test]
fn the_handlers_error_reaches_the_client() {
    let (_server, addr) = echo_server();
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    assert_eq!(call(&channel, "Fail", b"", b"").error(), Some(Error::new(libc::EPERM, "not allowed")));
}

#[test]
fn unknown_services_and_methods_get_brpcs_codes() {
    let (_server, addr) = echo_server();
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    assert_eq!(call(&channel, "Nope", b"", b"").error().unwrap().code(), errno::ENOMETHOD);
    let (tx, rx) = mpsc::channel();
    channel.call(
        CallRequest { service: "test.Missing".into(), method: "Echo".into(), ..Default::default() },
        Box::new(move |o| {
            let _ = tx.send(o.error());
        }),
    );
    let error = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!(error.code(), errno::ENOSERVICE);
    assert!(error.text().contains("test.Missing"));
}

#[test]
fn a_method_that_never_responds_answers_einternal() {
    let (_server, addr) = echo_server();
    let channel = Channel::new(&addr, ChannelOptions::default()).unwrap();
    assert_eq!(call(&channel, "Forget", b"", b"").error().unwrap().code(), errno::EINTERNAL);
}

#[test]
fn a_slow_handler_times_the_call_out() {
    let (_server, addr) = echo_server();
    let options = ChannelOptions { timeout: Some(Duration::from_millis(100)), ..Default::default() };
    let channel = Channel::new(&addr, options).unwrap();
    let started = std::time::Instant::now();
    let error = call(&channel, "Sleep", b"", b"").error().unwrap();
    assert_eq!(error.code(), errno::ERPCTIMEDOUT);
    assert!(started.elapsed() < Duration::from_millis(290));
}

#[test]
fn a_refused_connection_fails_the_call_after_retries() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let channel = Channel::new(&format!("127.0.0.1:{port}"), ChannelOptions::default()).unwrap();
    assert_eq!(call(&channel, "Echo", b"x", b"").error().unwrap().code(), libc::ECONNREFUSED);
}

#[test]
fn many_threads_get_their_own_responses() {
    let (_server, addr) = echo_server();
    let channel = Arc::new(Channel::new(&addr, ChannelOptions::default()).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let channel = Arc::clone(&channel);
            std::thread::spawn(move || {
                for i in 0..500 {
                    let text = format!("{t}:{i}");
                    let (tx, rx) = mpsc::channel();
                    channel.call(
                        CallRequest {
                            service: "test.EchoService".into(),
                            method: "Echo".into(),
                            payload: Bytes::from(text.clone()),
                            ..Default::default()
                        },
                        Box::new(move |o| {
                            let _ = tx.send(o);
                        }),
                    );
                    let outcome = rx.recv_timeout(Duration::from_secs(10)).unwrap();
                    assert_eq!(&outcome.result.unwrap().payload[..], text.as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn channels_to_one_endpoint_share_one_connection() {
    let (_server, addr) = echo_server();
    let first = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let second = Channel::new(&addr, ChannelOptions::default()).unwrap();
    let a = call(&first, "Echo", b"a", b"");
    let b = call(&second, "Echo", b"b", b"");
    assert!(a.socket.is_some());
    assert_eq!(a.socket, b.socket);
    drop(first);
    // The survivor keeps the connection.
    assert_eq!(call(&second, "Echo", b"c", b"").socket, a.socket);
}
