//! Channels over naming services and load balancers, against several real
//! servers on loopback: distribution per balancer, servers stopped and
//! restarted during a run, retries, backup requests, connection types;
//! streams following their calls while a server process is killed.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use brpc_stream::errno;
use brpc_stream::rpc::lb::murmur_hash32;
use brpc_stream::rpc::{
    CallOutcome, CallRequest, Channel, ChannelOptions, ConnectionType, Server, ServerCall, ServerOptions,
};
use brpc_stream::stream::{self, StreamHandler, StreamId, StreamOptions};
use brpc_stream::Error;
use bytes::Bytes;

/// A server that answers "Who" with its own port and remembers the client
/// ports (one per connection) that called it.
struct Backend {
    server: Server,
    addr: SocketAddr,
    /// Slows "Who" down.
    delay_ms: Arc<AtomicU32>,
    /// "Who" answers ELIMIT while set.
    refuse: Arc<AtomicBool>,
    client_ports: Arc<Mutex<Vec<u16>>>,
}

impl Backend {
    fn start(at: &str) -> Backend {
        let server = Server::new();
        let delay_ms = Arc::new(AtomicU32::new(0));
        let refuse = Arc::new(AtomicBool::new(false));
        let client_ports = Arc::new(Mutex::new(Vec::new()));
        let (d, r, p) = (Arc::clone(&delay_ms), Arc::clone(&refuse), Arc::clone(&client_ports));
        server
            .add_method(
                "test.Cluster",
                "Who",
                Arc::new(move |call: ServerCall| {
                    if let Some(remote) = call.remote {
                        p.lock().unwrap().push(remote.port());
                    }
                    let delay = d.load(Ordering::Relaxed);
                    if delay > 0 {
                        std::thread::sleep(Duration::from_millis(delay.into()));
                    }
                    if r.load(Ordering::Relaxed) {
                        return call.respond(Err(Error::new(errno::ELIMIT, "refusing")));
                    }
                    let port = call.local.map_or(0, |a| a.port());
                    call.respond(Ok((Bytes::from(port.to_string()), Bytes::new())));
                }),
            )
            .unwrap();
        server.start(at, ServerOptions::default()).unwrap();
        let addr = server.listen_address().unwrap();
        Backend { server, addr, delay_ms, refuse, client_ports }
    }

    fn stop(&self) {
        self.server.stop();
        self.server.join();
    }
}

fn backends(n: usize) -> Vec<Backend> {
    (0..n).map(|_| Backend::start("127.0.0.1:0")).collect()
}

fn list_url(backends: &[Backend]) -> String {
    let entries: Vec<String> = backends.iter().map(|b| b.addr.to_string()).collect();
    format!("list://{}", entries.join(","))
}

fn call_with(channel: &Channel, code: Option<u64>) -> CallOutcome {
    let (tx, rx) = mpsc::channel();
    channel.call(
        CallRequest { service: "test.Cluster".into(), method: "Who".into(), request_code: code, ..Default::default() },
        Box::new(move |outcome| {
            let _ = tx.send(outcome);
        }),
    );
    rx.recv_timeout(Duration::from_secs(30)).expect("done runs")
}

/// The port of the server that answered, or the error.
fn who(channel: &Channel, code: Option<u64>) -> Result<u16, Error> {
    let outcome = call_with(channel, code);
    if let Some(error) = outcome.error() {
        return Err(error);
    }
    let message = outcome.result.unwrap();
    Ok(String::from_utf8_lossy(&message.payload).parse().unwrap())
}

fn counts(channel: &Channel, calls: usize) -> HashMap<u16, usize> {
    let mut counts = HashMap::new();
    for _ in 0..calls {
        *counts.entry(who(channel, None).expect("call succeeds")).or_default() += 1;
    }
    counts
}

/// Replaces the file at once, as a careful editor does (a plain write
/// truncates first, and a reader between the two sees an empty list).
fn write_atomically(path: &std::path::Path, text: String) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn options() -> ChannelOptions {
    ChannelOptions { timeout: Some(Duration::from_secs(5)), ..Default::default() }
}

#[test]
fn rr_spreads_calls_evenly_over_three_servers() {
    let servers = backends(3);
    let channel = Channel::init(&list_url(&servers), "rr", options()).unwrap();
    let counts = counts(&channel, 300);
    for b in &servers {
        let n = counts.get(&b.addr.port()).copied().unwrap_or(0);
        assert!((95..=105).contains(&n), "{counts:?}");
    }
}

#[test]
fn wrr_and_wr_follow_the_weights_in_the_tags() {
    let servers = backends(3);
    let url = format!("list://{} 1,{} 2,{} 3", servers[0].addr, servers[1].addr, servers[2].addr);
    let wrr = counts(&Channel::init(&url, "wrr", options()).unwrap(), 600);
    for (b, weight) in servers.iter().zip([1usize, 2, 3]) {
        let n = wrr.get(&b.addr.port()).copied().unwrap_or(0);
        assert!(n.abs_diff(100 * weight) <= 5 * weight, "wrr {wrr:?}");
    }
    let wr = counts(&Channel::init(&url, "wr", options()).unwrap(), 600);
    for (b, weight) in servers.iter().zip([1usize, 2, 3]) {
        let n = wr.get(&b.addr.port()).copied().unwrap_or(0);
        // Random: within 40 % of the expectation.
        assert!(n.abs_diff(100 * weight) <= 40 * weight, "wr {wr:?}");
    }
}

#[test]
fn random_reaches_every_server() {
    let servers = backends(3);
    let counts = counts(&Channel::init(&list_url(&servers), "random", options()).unwrap(), 300);
    for b in &servers {
        let n = counts.get(&b.addr.port()).copied().unwrap_or(0);
        assert!((50..=150).contains(&n), "{counts:?}");
    }
}

#[test]
fn la_sends_most_calls_to_the_fast_servers() {
    let servers = backends(3);
    servers[0].delay_ms.store(30, Ordering::Relaxed);
    let counts = counts(&Channel::init(&list_url(&servers), "la", options()).unwrap(), 300);
    let slow = counts.get(&servers[0].addr.port()).copied().unwrap_or(0);
    assert!(slow < 60, "the slow server got {slow} of 300: {counts:?}");
}

#[test]
fn consistent_hashing_keeps_keys_and_moves_about_a_quarter_when_a_fourth_server_joins() {
    let servers = backends(4);
    let dir = std::env::temp_dir().join(format!("brpc_chash_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("servers");
    let lines = |n: usize| servers.iter().take(n).map(|b| format!("{}\n", b.addr)).collect::<String>();
    write_atomically(&file, lines(3));
    for lb in ["c_murmurhash", "c_md5"] {
        write_atomically(&file, lines(3));
        let channel = Channel::init(&format!("file://{}", file.display()), lb, options()).unwrap();
        let keys: Vec<u64> = (0..200).map(|k| u64::from(murmur_hash32(format!("key-{k}").as_bytes()))).collect();
        let before: Vec<u16> = keys.iter().map(|k| who(&channel, Some(*k)).unwrap()).collect();
        let again: Vec<u16> = keys.iter().map(|k| who(&channel, Some(*k)).unwrap()).collect();
        assert_eq!(before, again, "{lb}: a key changed server with no change of servers");
        write_atomically(&file, lines(4));
        let fourth = servers[3].addr.port();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !keys.iter().any(|k| who(&channel, Some(*k)) == Ok(fourth)) {
            assert!(Instant::now() < deadline, "{lb}: the fourth server never got a key");
            std::thread::sleep(Duration::from_millis(100));
        }
        // A whole pass after the change (one taken during it mixes both).
        let after: Vec<u16> = keys.iter().map(|k| who(&channel, Some(*k)).unwrap()).collect();
        let moved: Vec<usize> = (0..keys.len()).filter(|i| before[*i] != after[*i]).collect();
        assert!(moved.iter().all(|i| after[*i] == fourth), "{lb}: keys moved between old servers");
        // About 1/4 of 200 = 50.
        assert!((20..=90).contains(&moved.len()), "{lb}: {} of 200 keys moved", moved.len());
        let Err(error) = who(&channel, None) else { panic!("{lb} picked without a request code") };
        assert_eq!(error.code(), libc::EINVAL);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_file_naming_service_picks_up_an_edited_file() {
    let servers = backends(2);
    let dir = std::env::temp_dir().join(format!("brpc_file_ns_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("servers");
    write_atomically(&file, format!("# one server\n{}\n", servers[0].addr));
    let channel = Channel::init(&format!("file://{}", file.display()), "rr", options()).unwrap();
    let first = counts(&channel, 10);
    assert_eq!(first.keys().copied().collect::<Vec<_>>(), vec![servers[0].addr.port()]);
    write_atomically(&file, format!("{}\n", servers[1].addr));
    let deadline = Instant::now() + Duration::from_secs(10);
    while who(&channel, None).unwrap() != servers[1].addr.port() {
        assert!(Instant::now() < deadline, "the edit was not picked up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let later = counts(&channel, 10);
    assert_eq!(later.keys().copied().collect::<Vec<_>>(), vec![servers[1].addr.port()]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_dns_and_http_naming_services_reach_the_servers_a_host_name_resolves_to() {
    let server = Backend::start("127.0.0.1:0");
    let port = server.addr.port();
    for url in [format!("dns://localhost:{port}"), format!("http://localhost:{port}/any/path")] {
        let channel = Channel::init(&url, "rr", options()).unwrap();
        for _ in 0..3 {
            assert_eq!(who(&channel, None), Ok(port), "{url}");
        }
    }
    let unresolvable = Channel::init("dns://no-such-host.invalid:8000", "rr", options()).unwrap();
    assert_eq!(who(&unresolvable, None).unwrap_err().code(), libc::EHOSTDOWN);
}

#[test]
fn init_refuses_what_it_does_not_know_with_a_text() {
    for (url, lb, expect) in [
        ("list://127.0.0.1:1", "nope", "unknown load balancer"),
        ("zk://x/y", "rr", "unknown naming service"),
        ("consul://127.0.0.1:8500/svc", "rr", "unknown naming service"),
        ("list://127.0.0.1:1", "", "needs a load balancer"),
        ("127.0.0.1:1", "rr", "needs a naming service URL"),
    ] {
        let Err(error) = Channel::init(url, lb, options()) else { panic!("{url} {lb} accepted") };
        assert_eq!(error.code(), libc::EINVAL, "{error}");
        assert!(error.text().contains(expect), "{url} {lb}: {error}");
    }
    let strict = ChannelOptions { succeed_without_server: false, ..options() };
    let Err(error) = Channel::init("list://", "rr", strict) else { panic!("an empty list accepted") };
    assert_eq!(error.code(), libc::ENODATA);
    let empty = Channel::init("list://", "rr", options()).unwrap();
    assert_eq!(who(&empty, None).unwrap_err().code(), libc::EHOSTDOWN);
    assert!(Channel::init("127.0.0.1:1", "", options()).is_ok());
}

#[test]
fn a_stopped_server_costs_no_call_and_comes_back_after_a_restart() {
    let servers = backends(3);
    let channel = Arc::new(
        Channel::init(
            &list_url(&servers),
            "rr",
            ChannelOptions { health_check_interval: Duration::from_secs(1), ..options() },
        )
        .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicU32::new(0));
    let runners: Vec<_> = (0..3)
        .map(|_| {
            let (channel, stop, failures, done) =
                (Arc::clone(&channel), Arc::clone(&stop), Arc::clone(&failures), Arc::clone(&done));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match who(&channel, None) {
                        Ok(_) => {}
                        Err(error) => failures.lock().unwrap().push(error),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let victim = &servers[1];
    let port = victim.addr.port();
    victim.stop();
    std::thread::sleep(Duration::from_millis(500));
    let during = counts(&channel, 30);
    assert!(!during.contains_key(&port), "the stopped server answered: {during:?}");
    // Back on the same port: the health check lets it in again.
    let restarted = Backend::start(&victim.addr.to_string());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if counts(&channel, 10).contains_key(&port) {
            break;
        }
        assert!(Instant::now() < deadline, "the restarted server got no call");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for runner in runners {
        runner.join().unwrap();
    }
    // The server stopped between calls, with nothing in flight it had
    // accepted and not answered: every call succeeded, by retrying.
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} calls failed: {:?}",
        failures.len(),
        done.load(Ordering::Relaxed),
        failures.first()
    );
    drop(restarted);
}

#[test]
fn a_retry_goes_to_another_server() {
    let servers = backends(2);
    servers[0].refuse.store(true, Ordering::Relaxed);
    let channel = Channel::init(&list_url(&servers), "rr", options()).unwrap();
    for _ in 0..10 {
        let outcome = call_with(&channel, None);
        assert_eq!(outcome.error(), None);
        assert_eq!(outcome.remote, Some(servers[1].addr));
        assert!(outcome.retried_count <= 1);
    }
    let refused = ChannelOptions { max_retry: 0, ..options() };
    let channel = Channel::init(&list_url(&servers), "rr", refused).unwrap();
    let errors: Vec<i32> = (0..4).filter_map(|_| call_with(&channel, None).error().map(|e| e.code())).collect();
    assert_eq!(errors, vec![errno::ELIMIT; 2], "without retries, calls to the refusing server fail");
}

#[test]
fn a_backup_request_goes_to_another_server_and_the_first_answer_wins() {
    let servers = backends(2);
    servers[0].delay_ms.store(1000, Ordering::Relaxed);
    let with_backup = ChannelOptions { backup_request: Some(Duration::from_millis(100)), ..options() };
    let channel = Channel::init(&list_url(&servers), "rr", with_backup).unwrap();
    let mut backups = 0;
    for _ in 0..6 {
        let outcome = call_with(&channel, None);
        assert_eq!(outcome.error(), None);
        assert_eq!(outcome.remote, Some(servers[1].addr), "the fast server answers");
        assert!(outcome.latency < Duration::from_millis(900), "{:?}", outcome.latency);
        if outcome.has_backup_request {
            backups += 1;
        }
    }
    assert!(backups >= 2, "{backups} backups");
}

fn ports_seen(kind: ConnectionType, concurrent: usize) -> (usize, usize) {
    let servers = backends(1);
    servers[0].delay_ms.store(50, Ordering::Relaxed);
    let opts = ChannelOptions { connection_type: kind, ..options() };
    let channel = Arc::new(Channel::init(&list_url(&servers), "rr", opts).unwrap());
    let threads: Vec<_> = (0..concurrent)
        .map(|_| {
            let channel = Arc::clone(&channel);
            std::thread::spawn(move || {
                for _ in 0..4 {
                    who(&channel, None).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let ports = servers[0].client_ports.lock().unwrap();
    (ports.len(), ports.iter().collect::<HashSet<_>>().len())
}

#[test]
fn connection_types_are_seen_by_the_server() {
    let (calls, connections) = ports_seen(ConnectionType::Single, 3);
    assert_eq!((calls, connections), (12, 1), "single: one shared connection");
    let (calls, connections) = ports_seen(ConnectionType::Short, 1);
    assert_eq!((calls, connections), (4, 4), "short: a connection per call");
    let (calls, connections) = ports_seen(ConnectionType::Pooled, 1);
    assert_eq!((calls, connections), (4, 1), "pooled, one at a time: the connection is reused");
    let (calls, connections) = ports_seen(ConnectionType::Pooled, 3);
    assert_eq!(calls, 12);
    assert!((2..=3).contains(&connections), "pooled, three at a time: {connections} connections");
}

#[test]
fn connection_groups_do_not_share_connections() {
    let servers = backends(1);
    let url = list_url(&servers);
    let a = Channel::init(&url, "rr", ChannelOptions { connection_group: "a".into(), ..options() }).unwrap();
    let b = Channel::init(&url, "rr", ChannelOptions { connection_group: "b".into(), ..options() }).unwrap();
    let a2 = Channel::init(&url, "rr", ChannelOptions { connection_group: "a".into(), ..options() }).unwrap();
    for channel in [&a, &b, &a2] {
        who(channel, None).unwrap();
    }
    let ports: HashSet<u16> = servers[0].client_ports.lock().unwrap().iter().copied().collect();
    assert_eq!(ports.len(), 2);
}

// ---------------------------------------------------------------------------
// Servers in processes of their own, killed outright (SIGKILL) while calls
// and streams run through a channel over all of them.

const CHILD_ENV: &str = "BRPC_CLUSTER_CHILD_SERVER";
const CHILD_READY: &str = "child-server-listening-on";

/// Echoes every message of every stream it accepts.
struct Echo;

impl StreamHandler for Echo {
    fn on_received_messages(&self, id: StreamId, messages: &[Bytes]) {
        for message in messages {
            let _ = stream::write(id, message.clone(), false);
        }
    }
    fn on_idle_timeout(&self, _id: StreamId) {}
    fn on_closed(&self, _id: StreamId) {}
    fn on_failed(&self, _id: StreamId, _error: &Error) {}
}

/// Not a test of its own: the entry of the server process that
/// `streams_follow_their_calls_...` starts (this binary run again with
/// `BRPC_CLUSTER_CHILD_SERVER=addr`) so that it can kill it outright. It
/// serves "Who" (its port) and "Open" (echoing streams; answers "its port,
/// the caller's port"), prints its port, and runs until killed or its stdin
/// closes.
#[test]
#[ignore = "the entry of a child server process, run by the kill test"]
fn child_server_process() {
    let Ok(at) = std::env::var(CHILD_ENV) else { return };
    let server = Server::new();
    server
        .add_method(
            "test.Cluster",
            "Who",
            Arc::new(|call: ServerCall| {
                let port = call.local.map_or(0, |a| a.port());
                call.respond(Ok((Bytes::from(port.to_string()), Bytes::new())));
            }),
        )
        .unwrap();
    server
        .add_method(
            "test.Cluster",
            "Open",
            Arc::new(|call: ServerCall| {
                let Some(settings) = call.stream_settings().cloned() else {
                    return call.respond(Err(Error::new(libc::EINVAL, "no stream")));
                };
                let options = StreamOptions { handler: Some(Arc::new(Echo)), ..Default::default() };
                let ids = stream::accept(call.host(), &settings, &options, 1).unwrap();
                let answer = format!("{} {}", call.local.map_or(0, |a| a.port()), call.remote.map_or(0, |a| a.port()));
                call.respond_with_streams(Ok((Bytes::from(answer), Bytes::new())), &ids);
            }),
        )
        .unwrap();
    server.start(&at, ServerOptions::default()).unwrap();
    println!("{CHILD_READY} {}", server.listen_address().unwrap().port());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// A server process; killed (SIGKILL) when dropped.
struct ChildServer {
    child: std::process::Child,
    addr: SocketAddr,
}

impl ChildServer {
    fn start(at: &str) -> ChildServer {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args(["child_server_process", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, at)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        // SAFETY: prctl is async-signal-safe and the closure touches nothing
        // else between fork and exec.
        unsafe {
            // The server goes with this test process, also when a harness
            // kills it.
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let port: u16 = loop {
            let line = lines.next().expect("the child server prints its port").unwrap();
            // libtest may have printed "test name ... " before it.
            if let Some((_, port)) = line.split_once(CHILD_READY) {
                break port.trim().parse().unwrap();
            }
        };
        ChildServer { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What a client stream saw.
#[derive(Default)]
struct Seen {
    /// Sequence numbers of the echoes, in arrival order.
    echoes: Vec<u64>,
    failed: Option<(i32, String)>,
    closed: bool,
    /// Messages after on_closed, or a second on_failed / on_closed.
    misuse: u32,
}

#[derive(Default)]
struct ClientStream {
    seen: Mutex<Seen>,
}

impl StreamHandler for ClientStream {
    fn on_received_messages(&self, _id: StreamId, messages: &[Bytes]) {
        let mut seen = self.seen.lock().unwrap();
        if seen.closed {
            seen.misuse += 1;
        }
        for message in messages {
            let text = String::from_utf8_lossy(message);
            let seq = text.rsplit('-').next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
            seen.echoes.push(seq);
        }
    }
    fn on_idle_timeout(&self, _id: StreamId) {}
    fn on_closed(&self, _id: StreamId) {
        let mut seen = self.seen.lock().unwrap();
        if seen.closed {
            seen.misuse += 1;
        }
        seen.closed = true;
    }
    fn on_failed(&self, _id: StreamId, error: &Error) {
        let code = error.code();
        let text = error.text();
        let mut seen = self.seen.lock().unwrap();
        if seen.failed.is_some() || seen.closed {
            seen.misuse += 1;
        }
        seen.failed = Some((code, text.to_string()));
    }
}

/// One stream of the test: set up by its own call through the channel,
/// written to by a thread of its own until told to stop or a write fails.
struct RunningStream {
    id: StreamId,
    handler: Arc<ClientStream>,
    /// The server its call went to, and the connection it went on.
    server: u16,
    socket: Option<brpc_stream::socket::SocketId>,
    written: Arc<AtomicU64>,
    writer: Option<std::thread::JoinHandle<Option<i32>>>,
}

fn open_stream(channel: &Channel, name: usize, stop: &Arc<AtomicBool>) -> RunningStream {
    let handler = Arc::new(ClientStream::default());
    let options = StreamOptions { handler: Some(handler.clone()), ..Default::default() };
    let ids = stream::create(1, &options).unwrap();
    let (tx, rx) = mpsc::channel();
    let streams = ids.clone();
    channel.call(
        CallRequest {
            service: "test.Cluster".into(),
            method: "Open".into(),
            stream_settings: stream::settings_for(&ids),
            ..Default::default()
        },
        Box::new(move |outcome| {
            let settings = outcome.result.as_ref().ok().and_then(|m| m.meta.stream_settings.clone());
            let error = outcome.error();
            let payload = outcome.result.as_ref().map(|m| m.payload.clone()).unwrap_or_default();
            let seen = (error.clone(), payload, outcome.remote, outcome.local, outcome.socket);
            let then = Box::new(move || drop(tx.send(seen)));
            stream::on_setup_response(&streams, outcome.socket, error, settings.as_ref(), then);
        }),
    );
    let (error, payload, remote, local, socket) = rx.recv_timeout(Duration::from_secs(30)).expect("done runs");
    assert_eq!(error, None, "stream {name}: its call failed");
    // The server accepted the stream on the connection the call came on.
    let answer = String::from_utf8_lossy(&payload).to_string();
    let (server, caller) = answer.split_once(' ').unwrap();
    let server: u16 = server.parse().unwrap();
    assert_eq!(Some(server), remote.map(|a| a.port()), "stream {name}: {answer}");
    assert_eq!(caller.parse::<u16>().ok(), local.map(|a| a.port()), "stream {name}: another connection");
    let id = ids[0];
    let written = Arc::new(AtomicU64::new(0));
    let (w, stop) = (Arc::clone(&written), Arc::clone(stop));
    let writer = std::thread::spawn(move || {
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            match stream::write(id, Bytes::from(format!("s{name}-{seq}")), false).map_err(|e| e.code()) {
                Ok(()) => {
                    seq += 1;
                    w.store(seq, Ordering::Release);
                }
                Err(libc::EAGAIN) => {
                    let _ = stream::wait(id, Some(Duration::from_millis(100)));
                    continue;
                }
                Err(code) => return Some(code),
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    });
    RunningStream { id, handler, server, socket, written, writer: Some(writer) }
}

fn echoes(s: &RunningStream) -> usize {
    s.handler.seen.lock().unwrap().echoes.len()
}

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ends a stream of a live server normally and checks that every message
/// came back, in order, and that it closed without failing.
fn end_normally(mut s: RunningStream) {
    let error = s.writer.take().unwrap().join().unwrap();
    assert_eq!(error, None, "a write to stream on {} failed", s.server);
    let written = s.written.load(Ordering::Acquire) as usize;
    wait_for("the last echoes", Duration::from_secs(10), || echoes(&s) >= written);
    stream::close(s.id).unwrap();
    wait_for("on_closed", Duration::from_secs(10), || s.handler.seen.lock().unwrap().closed);
    let seen = s.handler.seen.lock().unwrap();
    assert_eq!(seen.failed, None, "a stream on a live server failed");
    assert_eq!(seen.misuse, 0);
    assert!(seen.echoes.iter().copied().eq(0..written as u64), "stream on {}: echoes out of order or lost", s.server);
}

#[test]
fn streams_follow_their_calls_and_a_killed_server_fails_only_its_own_while_calls_carry_on() {
    let mut children: Vec<ChildServer> = (0..3).map(|_| ChildServer::start("127.0.0.1:0")).collect();
    let ports: Vec<u16> = children.iter().map(|c| c.addr.port()).collect();
    let url = format!("list://{}", children.iter().map(|c| c.addr.to_string()).collect::<Vec<_>>().join(","));
    let opts = ChannelOptions { health_check_interval: Duration::from_millis(500), ..options() };
    let streams_channel = Channel::init(&url, "rr", opts.clone()).unwrap();
    let calls_channel = Arc::new(Channel::init(&url, "rr", opts).unwrap());

    // Calls all along, from three threads: at most three are in flight.
    let stop_calls = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(HashMap::<u16, usize>::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let (channel, stop, answers, failures) =
                (Arc::clone(&calls_channel), Arc::clone(&stop_calls), Arc::clone(&answers), Arc::clone(&failures));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match who(&channel, None) {
                        Ok(port) => *answers.lock().unwrap().entry(port).or_default() += 1,
                        Err(error) => failures.lock().unwrap().push(error),
                    }
                }
            })
        })
        .collect();

    // Nine streams, each set up by its own call: rr puts three on each
    // server, all of one server's on its one connection.
    let stop_writers = Arc::new(AtomicBool::new(false));
    let streams: Vec<RunningStream> = (0..9).map(|i| open_stream(&streams_channel, i, &stop_writers)).collect();
    for port in &ports {
        let on: Vec<&RunningStream> = streams.iter().filter(|s| s.server == *port).collect();
        assert_eq!(on.len(), 3, "streams on {port}");
        assert!(on.iter().all(|s| s.socket.is_some() && s.socket == on[0].socket), "{port}: several connections");
    }
    let sockets: HashSet<_> = streams.iter().map(|s| s.socket).collect();
    assert_eq!(sockets.len(), 3, "one connection per server");
    wait_for("echoes on every stream", Duration::from_secs(10), || streams.iter().all(|s| echoes(s) > 20));

    // Kill the second server outright.
    let victim = ports[1];
    children[1].kill();
    let (doomed, mut alive): (Vec<RunningStream>, Vec<RunningStream>) =
        streams.into_iter().partition(|s| s.server == victim);
    for mut s in doomed {
        wait_for("the killed server's streams to end", Duration::from_secs(10), || {
            s.handler.seen.lock().unwrap().closed
        });
        let seen = s.handler.seen.lock().unwrap();
        let (code, text) = seen.failed.clone().expect("on_failed before on_closed");
        // The connection's failure: EOF, or a reset or broken pipe when
        // the kernel answered a write with RST.
        assert!([errno::EEOF, libc::ECONNRESET, libc::EPIPE].contains(&code), "code {code}: {text}");
        assert!(!text.is_empty());
        assert_eq!(seen.misuse, 0);
        drop(seen);
        let error = s.writer.take().unwrap().join().unwrap();
        assert!(error.is_some(), "writes to a failed stream kept succeeding");
    }
    // From now on an answer from the victim's port is the restarted one's.
    answers.lock().unwrap().remove(&victim);
    // The others keep flowing.
    let before: Vec<usize> = alive.iter().map(echoes).collect();
    wait_for("the other streams to keep flowing", Duration::from_secs(10), || {
        alive.iter().zip(&before).all(|(s, b)| echoes(s) >= b + 50)
    });

    // Back on the same port: the health check lets it in again, for calls
    // and for new streams.
    children[1] = ChildServer::start(&format!("127.0.0.1:{victim}"));
    wait_for("calls to reach the restarted server", Duration::from_secs(15), || {
        answers.lock().unwrap().contains_key(&victim)
    });
    let mut name = 9;
    wait_for("a new stream on the restarted server", Duration::from_secs(15), || {
        let s = open_stream(&streams_channel, name, &stop_writers);
        name += 1;
        let there = s.server == victim;
        alive.push(s);
        there
    });
    let restarted = alive.last().and_then(|s| s.socket);
    wait_for("echoes on the new streams", Duration::from_secs(10), || alive.iter().all(|s| echoes(s) > 20));

    // Back to three servers, rr spreads the calls evenly again (within 5 %).
    answers.lock().unwrap().clear();
    wait_for("600 calls", Duration::from_secs(30), || answers.lock().unwrap().values().sum::<usize>() >= 600);
    let window = answers.lock().unwrap().clone();
    let mean = window.values().sum::<usize>() / 3;
    for port in &ports {
        let n = window.get(port).copied().unwrap_or(0);
        assert!(n.abs_diff(mean) * 20 <= mean, "{window:?}");
    }

    stop_writers.store(true, Ordering::Relaxed);
    for s in alive {
        assert!(s.server != victim || s.socket == restarted);
        end_normally(s);
    }
    stop_calls.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.join().unwrap();
    }
    // Retries on another server cover calls in flight on the killed one;
    // none beyond those (three at most) may fail.
    let failures = failures.lock().unwrap();
    assert!(failures.len() <= 3, "{} calls failed: {:?}", failures.len(), failures.first());
    let answers = answers.lock().unwrap();
    assert!(ports.iter().filter(|p| **p != victim).all(|p| answers.get(p).copied().unwrap_or(0) > 0), "{answers:?}");
}
