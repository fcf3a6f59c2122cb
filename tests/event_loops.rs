//! The number of event loops (brpc's `-event_dispatcher_num`) set by the
//! program: it takes effect when set before the runtime starts (that many
//! I/O threads run and connections spread over them), and a late or
//! out-of-range setting fails with a clear code and changes nothing. Its own
//! test binary: the setting is process-wide and only counts before the
//! first socket.

use std::net::TcpStream;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use brpc_stream::rpc::{CallRequest, Channel, ChannelOptions, Server, ServerCall, ServerOptions};
use brpc_stream::runtime::{dispatcher, event_loops, set_event_loops, MAX_EVENT_LOOPS};
use bytes::Bytes;

const WAIT: Duration = Duration::from_secs(20);

/// Threads of this process with the event loops' name.
fn dispatcher_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "brpc_dispatcher")
        .count()
}

fn echo(channel: &Channel) -> Result<Bytes, String> {
    let (done, answer) = mpsc::channel();
    let request = CallRequest {
        service: "loops.Service".into(),
        method: "Echo".into(),
        payload: Bytes::from_static(b"ping"),
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    channel.call(
        request,
        Box::new(move |outcome| {
            let _ = done.send(outcome.result.map(|response| response.payload).map_err(|error| error.to_string()));
        }),
    );
    answer.recv_timeout(WAIT).map_err(|_| "no answer".to_string())?
}

#[test]
fn event_loops_set_before_the_first_socket_take_effect_and_a_late_setting_is_refused() {
    let default = event_loops();
    assert!((1..=MAX_EVENT_LOOPS).contains(&default), "{default}");
    for wrong in [0, MAX_EVENT_LOOPS + 1] {
        let error = set_event_loops(wrong).expect_err("out of range");
        assert_eq!(error.code(), libc::EINVAL, "{error}");
        assert!(error.text().contains(&wrong.to_string()), "{error}");
    }
    assert_eq!(event_loops(), default, "a refused setting changed the count");
    assert_eq!(dispatcher_threads(), 0, "nothing started the loops yet");

    set_event_loops(3).expect("before the first socket");
    assert_eq!(event_loops(), 3);

    let server = Server::new();
    let handler = Arc::new(|call: ServerCall| {
        let payload = call.request.payload.clone();
        call.respond(Ok((payload, Bytes::new())));
    });
    server.add_method("loops.Service", "Echo", handler).expect("a method");
    server.start("127.0.0.1:0", ServerOptions::default()).expect("the server starts");
    let addr = server.listen_address().expect("an address").to_string();
    // Six connections besides the listener: two for each loop.
    let peers: Vec<TcpStream> = (0..6).map(|_| TcpStream::connect(&addr).expect("a connection")).collect();
    let deadline = Instant::now() + WAIT;
    while server.connection_count() < peers.len() {
        assert!(Instant::now() < deadline, "the server took {} connections", server.connection_count());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(dispatcher().event_loop_count(), 3);
    // A thread names itself once it runs.
    while dispatcher_threads() != 3 {
        assert!(Instant::now() < deadline, "{} I/O threads run, not 3", dispatcher_threads());
        std::thread::sleep(Duration::from_millis(5));
    }
    let spread = dispatcher().registrations_per_loop();
    let (least, most) = (spread.iter().min().copied(), spread.iter().max().copied());
    assert!(spread.len() == 3 && least.zip(most).is_some_and(|(l, m)| l >= 2 && m - l <= 1), "{spread:?}");
    let channel = Channel::new(&addr, ChannelOptions::default()).expect("a channel");
    assert_eq!(echo(&channel).as_deref(), Ok(&b"ping"[..]));

    // Too late: the loops run with connections on them.
    let error = set_event_loops(2).expect_err("after the loops started");
    assert_eq!(error.code(), libc::EPERM, "{error}");
    assert!(error.text().contains("too late"), "{error}");
    assert_eq!(event_loops(), 3);
    assert_eq!(dispatcher_threads(), 3);
    drop(peers);
    server.stop();
    server.join();
}
