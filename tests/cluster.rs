//! Channels over naming services and load balancers, against several real
//! servers on loopback: distribution per balancer, servers stopped and
//! restarted during a run, retries, backup requests, connection types.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use brpc_stream::errno;
use brpc_stream::rpc::lb::murmur_hash32;
use brpc_stream::rpc::{
    CallOutcome, CallRequest, Channel, ChannelOptions, ConnectionType, Server, ServerCall, ServerOptions,
};
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
                        return call.respond(Err((errno::ELIMIT, "refusing".into())));
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
fn who(channel: &Channel, code: Option<u64>) -> Result<u16, (i32, String)> {
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
        let Err((code, _)) = who(&channel, None) else { panic!("{lb} picked without a request code") };
        assert_eq!(code, libc::EINVAL);
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
fn init_refuses_what_it_does_not_know_with_a_text() {
    for (url, lb, expect) in [
        ("list://127.0.0.1:1", "nope", "unknown load balancer"),
        ("zk://x/y", "rr", "unknown naming service"),
        ("consul://127.0.0.1:8500/svc", "rr", "unknown naming service"),
        ("list://127.0.0.1:1", "", "needs a load balancer"),
        ("127.0.0.1:1", "rr", "needs a naming service URL"),
    ] {
        let Err((code, text)) = Channel::init(url, lb, options()) else { panic!("{url} {lb} accepted") };
        assert_eq!(code, libc::EINVAL, "{text}");
        assert!(text.contains(expect), "{url} {lb}: {text}");
    }
    let strict = ChannelOptions { succeed_without_server: false, ..options() };
    let Err((code, _)) = Channel::init("list://", "rr", strict) else { panic!("an empty list accepted") };
    assert_eq!(code, libc::ENODATA);
    let empty = Channel::init("list://", "rr", options()).unwrap();
    assert_eq!(who(&empty, None).unwrap_err().0, libc::EHOSTDOWN);
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
    let errors: Vec<i32> = (0..4).filter_map(|_| call_with(&channel, None).error().map(|e| e.0)).collect();
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
