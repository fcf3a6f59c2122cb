//! Channels over `etcd://` against a real etcd (started by the test on free
//! loopback ports) and servers that register themselves in it: round robin
//! over what etcd lists, servers stopped, killed and added during a run of
//! calls.

#[path = "common/etcd.rs"]
mod etcd_process;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use brpc_stream::etcd::{Registration, RegistrationOptions};
use brpc_stream::rpc::{CallRequest, Channel, ChannelOptions, Server, ServerCall, ServerOptions};
use brpc_stream::Error;
use bytes::Bytes;
use etcd_process::Etcd;

const PREFIX: &str = "/services/who";
/// The leases' TTL: a killed server vanishes this long after its last renewal.
const TTL_S: i64 = 2;

/// A server answering "Who" with its port.
fn who_server() -> Server {
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
}

fn registration(etcd: &Etcd) -> RegistrationOptions {
    RegistrationOptions { url: etcd.url(PREFIX), ttl_s: TTL_S, ..Default::default() }
}

/// A server registered through its options: withdrawn by `stop`.
fn registered_server(etcd: &Etcd) -> (Server, u16) {
    let server = who_server();
    let options = ServerOptions { etcd_registration: Some(registration(etcd)), ..Default::default() };
    server.start("127.0.0.1:0", options).unwrap();
    let port = server.listen_address().unwrap().port();
    (server, port)
}

fn channel(etcd: &Etcd) -> Channel {
    let options = ChannelOptions { timeout: Some(Duration::from_secs(5)), max_retry: 3, ..Default::default() };
    Channel::init(&etcd.url(PREFIX), "rr", options).unwrap()
}

/// The port of the server that answered, or the error.
fn who(channel: &Channel) -> Result<u16, Error> {
    let (tx, rx) = mpsc::channel();
    channel.call(
        CallRequest { service: "test.Cluster".into(), method: "Who".into(), ..Default::default() },
        Box::new(move |outcome| {
            let _ = tx.send(outcome);
        }),
    );
    let outcome = rx.recv_timeout(Duration::from_secs(30)).expect("done runs");
    if let Some(error) = outcome.error() {
        return Err(error);
    }
    let message = outcome.result?;
    Ok(String::from_utf8_lossy(&message.payload).parse().unwrap_or(0))
}

/// Calls until every port in `ports` answered (within `within`).
fn wait_until_all_answer(channel: &Channel, ports: &[u16], within: Duration) -> Duration {
    let started = Instant::now();
    let mut seen: Vec<u16> = Vec::new();
    while started.elapsed() < within {
        if let Ok(port) = who(channel) {
            if !seen.contains(&port) {
                seen.push(port);
            }
        }
        if ports.iter().all(|p| seen.contains(p)) {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("not every server of {ports:?} answered within {within:?}; saw {seen:?}");
}

#[test]
fn rr_over_etcd_reaches_every_registered_server_evenly() {
    let etcd = Etcd::start();
    let servers: Vec<(Server, u16)> = (0..3).map(|_| registered_server(&etcd)).collect();
    let ports: Vec<u16> = servers.iter().map(|s| s.1).collect();
    let channel = channel(&etcd);
    wait_until_all_answer(&channel, &ports, Duration::from_secs(10));
    let mut counts: HashMap<u16, usize> = HashMap::new();
    for _ in 0..300 {
        *counts.entry(who(&channel).expect("every call succeeds")).or_default() += 1;
    }
    for port in &ports {
        let n = counts.get(port).copied().unwrap_or(0);
        assert!((95..=105).contains(&n), "rr within 5 %: {counts:?}");
    }
}

/// A call's outcome (the answering server's port, or the error) and when it ended.
type Outcome = (Instant, Result<u16, Error>);

/// Calls one after another on a thread until stopped; every outcome with
/// the time it ended.
struct Caller {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Outcome>>>,
    thread: Option<JoinHandle<()>>,
}

impl Caller {
    fn start(channel: Arc<Channel>) -> Caller {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (s, l) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                let outcome = who(&channel);
                l.lock().unwrap().push((Instant::now(), outcome));
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Caller { stop, log, thread: Some(thread) }
    }

    /// Ports that answered after `since`.
    fn answered_since(&self, since: Instant) -> Vec<u16> {
        let log = self.log.lock().unwrap();
        let mut ports: Vec<u16> =
            log.iter().filter(|(at, _)| *at > since).filter_map(|(_, r)| r.as_ref().ok().copied()).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Waits until `port` answered after `since`; how long it took from `since`.
    fn wait_for(&self, port: u16, since: Instant, within: Duration) -> Duration {
        while since.elapsed() < within {
            let first =
                self.log.lock().unwrap().iter().find(|(at, r)| *at > since && r == &Ok(port)).map(|(at, _)| *at);
            if let Some(at) = first {
                return at - since;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("port {port} never answered within {within:?}");
    }

    fn stop(mut self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn listed(etcd: &Etcd, port: u16) -> bool {
    let (_, kvs) = etcd.client().range_prefix(format!("{PREFIX}/").as_bytes()).unwrap();
    kvs.iter().any(|kv| kv.value == format!("127.0.0.1:{port}").into_bytes())
}

#[test]
fn servers_stopped_killed_and_added_during_a_run_of_calls_lose_no_call() {
    let etcd = Etcd::start();
    let (stopped, stopped_port) = registered_server(&etcd);
    let (kept, kept_port) = registered_server(&etcd);
    // The one to kill registers on its own, so its keep-alive can stop
    // without a revoke, as when its process is killed.
    let killed = who_server();
    killed.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    let killed_addr: SocketAddr = killed.listen_address().unwrap();
    let killed_port = killed_addr.port();
    let killed_registration = Registration::start(&registration(&etcd), killed_addr).unwrap();

    let channel = Arc::new(channel(&etcd));
    wait_until_all_answer(&channel, &[stopped_port, kept_port, killed_port], Duration::from_secs(10));
    let caller = Caller::start(channel.clone());
    std::thread::sleep(Duration::from_millis(500));

    // Stop: withdrawn at once, so no call goes there soon after.
    stopped.stop();
    stopped.join();
    let after_stop = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let answering = caller.answered_since(after_stop + Duration::from_millis(500));
    assert!(!answering.contains(&stopped_port), "a stopped server gets no call: {answering:?}");
    assert!(answering.contains(&kept_port) && answering.contains(&killed_port), "{answering:?}");

    // Kill: the keep-alive ends without a revoke and the server goes away.
    killed_registration.abandon();
    drop(killed);
    let killed_at = Instant::now();
    while listed(&etcd, killed_port) {
        assert!(killed_at.elapsed() < Duration::from_secs(15), "the killed server's entry never lapsed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let lapsed_after = killed_at.elapsed();
    assert!(lapsed_after < Duration::from_secs(TTL_S as u64 + 4), "lapsed after {lapsed_after:?}");

    // A newcomer: seen within about 2 s.
    let (newcomer, newcomer_port) = registered_server(&etcd);
    let started = Instant::now();
    let appeared_after = caller.wait_for(newcomer_port, started, Duration::from_secs(10));
    assert!(appeared_after < Duration::from_secs(2), "a new server appeared after {appeared_after:?}");
    std::thread::sleep(Duration::from_millis(500));
    let answering = caller.answered_since(started + appeared_after);
    assert_eq!(answering, {
        let mut want = vec![kept_port, newcomer_port];
        want.sort_unstable();
        want
    });

    let log = caller.stop();
    let failures: Vec<&Error> = log.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    // The caller has one call in flight at a time: at most that one may
    // fail with the killed server; the stopped one withdrew first.
    assert!(failures.len() <= 1, "{} of {} calls failed: {failures:?}", failures.len(), log.len());
    assert!(log.len() > 200, "only {} calls were made", log.len());
    eprintln!(
        "{} calls, {} failed; the killed server's entry lapsed after {lapsed_after:?}, the newcomer answered after {appeared_after:?}",
        log.len(),
        failures.len()
    );
    drop((kept, newcomer));
}

#[test]
fn an_etcd_url_without_a_prefix_fails_init_with_a_text() {
    let Err(error) = Channel::init("etcd://127.0.0.1:2379", "rr", ChannelOptions::default()) else {
        panic!("accepted an etcd url without a prefix");
    };
    assert_eq!(error.code(), libc::EINVAL);
    assert!(error.text().contains("prefix"), "{error}");
}
