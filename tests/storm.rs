//! The lifecycle storm: thousands of stream setups against peers that
//! misbehave in every way the fault peer knows (and a well-behaved server),
//! with writes before and after connecting and closes from the setup's
//! thread, from a thread that closes at random, and from inside callbacks.
//!
//! It asserts what DESIGN.md promises: no panic, `on_closed` exactly once
//! and `on_failed` at most once and before it, for every stream on both
//! sides; every accepted write delivered or reported dropped; and at the
//! end the counters, the fds and the registries back where they started.
//!
//! `BRPC_STORM_SETUPS` (default 10 000) and `BRPC_STORM_SEED` (default: from
//! the clock; printed) choose the run; `BRPC_STORM_BUDGET_SECS` (default
//! 240) stops starting setups after that long, so the test stays bounded on
//! a slow machine (valgrind), and says so.

#[path = "common/fault_peer.rs"]
mod fault_peer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use brpc_stream::rpc::{client, server, CallRequest, Channel, ChannelOptions, Server, ServerCall, ServerOptions};
use brpc_stream::socket::{pending_attempts, Socket};
use brpc_stream::stats;
use brpc_stream::stream::{self, StreamHandler, StreamId, StreamOptions};
use brpc_stream::Error;
use bytes::Bytes;
use fault_peer::{Fault, FaultPeer, SplitMix, ALL_FAULTS};

/// Everything one stream's handler saw.
#[derive(Default)]
struct Tracker {
    id: AtomicU64,
    failed: AtomicU32,
    closed: AtomicU32,
    /// A callback arrived after on_closed, or on_failed after on_closed.
    out_of_order: AtomicBool,
    received: AtomicU64,
    /// Writes this side's StreamWrite accepted.
    accepted: AtomicU64,
    /// What on_failed said was not delivered.
    dropped_reported: AtomicU64,
    /// Close the stream from inside on_received_messages and on_failed.
    close_in_callback: AtomicBool,
    /// (Server side) closed before the client did: what the client sent
    /// after that is refused by design.
    closed_first: AtomicBool,
    /// How the stream was set up and how it failed, for failure messages.
    story: Mutex<String>,
    done: Mutex<bool>,
    closed_signal: Condvar,
}

impl Tracker {
    fn wait_closed(&self, timeout: Duration) -> bool {
        let done = self.done.lock().unwrap();
        let (done, _) = self.closed_signal.wait_timeout_while(done, timeout, |closed| !*closed).unwrap();
        *done
    }

    fn id(&self) -> StreamId {
        self.id.load(Ordering::Acquire)
    }
}

impl StreamHandler for Tracker {
    fn on_received_messages(&self, id: StreamId, messages: &[Bytes]) {
        if self.closed.load(Ordering::Acquire) > 0 {
            self.out_of_order.store(true, Ordering::Release);
        }
        self.received.fetch_add(messages.len() as u64, Ordering::AcqRel);
        if self.close_in_callback.load(Ordering::Acquire) {
            let _ = stream::close(id);
        }
    }

    fn on_idle_timeout(&self, _id: StreamId) {}

    fn on_closed(&self, _id: StreamId) {
        self.closed.fetch_add(1, Ordering::AcqRel);
        *self.done.lock().unwrap() = true;
        self.closed_signal.notify_all();
    }

    fn on_failed(&self, id: StreamId, error: &Error) {
        let code = error.code();
        let text = error.text();
        if self.closed.load(Ordering::Acquire) > 0 {
            self.out_of_order.store(true, Ordering::Release);
        }
        self.failed.fetch_add(1, Ordering::AcqRel);
        self.story.lock().unwrap().push_str(&format!(" failed [{code}] {text};"));
        self.dropped_reported.fetch_add(dropped_in(&text), Ordering::AcqRel);
        if self.close_in_callback.load(Ordering::Acquire) {
            // The stream is ending already: EINVAL, and nothing else.
            let _ = stream::close(id);
        }
    }
}

/// The count in "...: N messages (B bytes) written to the stream were not delivered".
fn dropped_in(text: &str) -> u64 {
    let Some(end) = text.find(" messages (") else { return 0 };
    let start = text[..end].rfind(|c: char| !c.is_ascii_digit()).map_or(0, |i| i + 1);
    text[start..end].parse().unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Target {
    Healthy,
    Faulty(Fault),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CloseHow {
    /// Before the setup call starts.
    BeforeCall,
    /// Right after the call started, racing its response.
    DuringCall,
    /// After the writes that follow the call.
    AfterWrites,
    /// From inside the stream's callbacks (the setup's thread closes it
    /// after a while if no callback came).
    InCallback,
    /// Left to the thread that closes random streams.
    ByCloser,
    /// Left to the peer's fault (the setup's thread closes what is still
    /// open after a while: the well-behaved server never ends it).
    ByPeer,
}

const CLOSE_WAYS: [CloseHow; 6] = [
    CloseHow::BeforeCall,
    CloseHow::DuringCall,
    CloseHow::AfterWrites,
    CloseHow::InCallback,
    CloseHow::ByCloser,
    CloseHow::ByPeer,
];

/// Streams the random closer may pick (ids of closed streams stay: closing
/// a stale id must be harmless).
struct Candidates(Mutex<Vec<StreamId>>);

impl Candidates {
    fn add(&self, id: StreamId, rng: &mut SplitMix) {
        let mut ids = self.0.lock().unwrap();
        if ids.len() < 256 {
            ids.push(id);
        } else {
            let slot = rng.below(ids.len() as u64) as usize;
            ids[slot] = id;
        }
    }

    fn pick(&self, rng: &mut SplitMix) -> Option<StreamId> {
        let ids = self.0.lock().unwrap();
        (!ids.is_empty()).then(|| ids[rng.below(ids.len() as u64) as usize])
    }
}

/// What the well-behaved server's accepted streams saw, by client stream id.
type ServerSide = Mutex<HashMap<StreamId, Arc<Tracker>>>;

struct Storm {
    peers: Vec<FaultPeer>,
    healthy: String,
    server_side: Arc<ServerSide>,
    candidates: Arc<Candidates>,
    clients: Mutex<Vec<(Target, Arc<Tracker>)>>,
    by_target: Mutex<HashMap<Target, u64>>,
    by_close: Mutex<HashMap<CloseHow, u64>>,
    calls_ended: AtomicU64,
    stuck: Mutex<Vec<String>>,
}

fn healthy_server(server_side: Arc<ServerSide>, seed: u64) -> Server {
    let server = Server::new();
    let rng = Mutex::new(SplitMix(seed));
    server
        .add_method(
            "storm.Service",
            "Open",
            Arc::new(move |call: ServerCall| {
                let Some(settings) = call.stream_settings().cloned() else {
                    // The client's streams closed before the call: nothing to accept.
                    return call.respond(Ok((Bytes::from_static(b"no streams"), Bytes::new())));
                };
                let clients: Vec<i64> =
                    std::iter::once(settings.stream_id()).chain(settings.extra_stream_ids.iter().copied()).collect();
                let trackers: Vec<Arc<Tracker>> = clients.iter().map(|_| Arc::new(Tracker::default())).collect();
                let mut ids = Vec::new();
                for (client, tracker) in clients.iter().zip(&trackers) {
                    let options = StreamOptions { handler: Some(tracker.clone()), ..Default::default() };
                    let single = brpc_stream::protocol::StreamSettings {
                        stream_id: Some(*client),
                        extra_stream_ids: Vec::new(),
                        ..settings.clone()
                    };
                    // One accept per stream so each has its own tracker; the
                    // ids pair with the client's by position.
                    let id = stream::accept(call.host(), &single, &options, 1).unwrap()[0];
                    tracker.id.store(id, Ordering::Release);
                    ids.push(id);
                }
                {
                    let mut side = server_side.lock().unwrap();
                    for (client, tracker) in clients.iter().zip(&trackers) {
                        side.insert(*client as StreamId, tracker.clone());
                    }
                }
                let close_early = rng.lock().unwrap().below(8) == 0;
                // Written before the response: held until it is queued.
                for (id, tracker) in ids.iter().zip(&trackers) {
                    if stream::write(*id, Bytes::from_static(b"hello from the server"), false).is_ok() {
                        tracker.accepted.fetch_add(1, Ordering::AcqRel);
                    }
                }
                if close_early {
                    trackers[0].closed_first.store(true, Ordering::Release);
                    let _ = stream::close(ids[0]);
                }
                call.respond_with_streams(Ok((Bytes::from_static(b"accepted"), Bytes::new())), &ids);
            }),
        )
        .unwrap();
    server.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    server
}

fn write_some(id: StreamId, tracker: &Tracker, count: u64, size: usize, rng: &mut SplitMix) {
    let payload = Bytes::from(vec![b's'; size]);
    for _ in 0..count {
        match stream::write(id, payload.clone(), rng.below(4) == 0).map_err(|e| e.code()) {
            Ok(()) => {
                tracker.accepted.fetch_add(1, Ordering::AcqRel);
            }
            Err(libc::EAGAIN) => match rng.below(3) {
                0 => {
                    let _ = stream::wait(id, Some(Duration::from_millis(5)));
                }
                1 => {
                    let close = tracker.close_in_callback.load(Ordering::Acquire);
                    stream::wait_async(
                        id,
                        Some(Duration::from_millis(5)),
                        Box::new(move |_code| {
                            if close {
                                let _ = stream::close(id);
                            }
                        }),
                    );
                    return;
                }
                _ => return,
            },
            Err(_) => return,
        }
    }
}

impl Storm {
    fn setup(&self, rng: &mut SplitMix) {
        let target = match rng.below(ALL_FAULTS.len() as u64 + 2) as usize {
            i if i < ALL_FAULTS.len() => Target::Faulty(ALL_FAULTS[i]),
            _ => Target::Healthy,
        };
        let how = CLOSE_WAYS[rng.below(CLOSE_WAYS.len() as u64) as usize];
        *self.by_target.lock().unwrap().entry(target).or_default() += 1;
        *self.by_close.lock().unwrap().entry(how).or_default() += 1;
        let n = if rng.below(4) == 0 { 2 } else { 1 };
        // A window that StopReading fills at the TCP level too: big
        // messages and no stream flow control.
        let fill_tcp = target == Target::Faulty(Fault::StopReading) && rng.below(2) == 0;
        let (window, size) = if fill_tcp { (0, 512 * 1024) } else { (8 * 1024, 1024) };
        let trackers: Vec<Arc<Tracker>> = (0..n).map(|_| Arc::new(Tracker::default())).collect();
        let mut ids = Vec::new();
        for tracker in &trackers {
            tracker.close_in_callback.store(how == CloseHow::InCallback, Ordering::Release);
            *tracker.story.lock().unwrap() = format!("{target:?} {how:?} window={window} n={n};");
            let options = StreamOptions { max_buf_size: window, handler: Some(tracker.clone()), ..Default::default() };
            let id = stream::create(1, &options).unwrap()[0];
            tracker.id.store(id, Ordering::Release);
            self.candidates.add(id, rng);
            ids.push(id);
        }
        self.clients.lock().unwrap().extend(trackers.iter().map(|t| (target, t.clone())));
        for (id, tracker) in ids.iter().zip(&trackers) {
            write_some(*id, tracker, rng.below(4), size, rng);
        }
        if how == CloseHow::BeforeCall {
            // EINVAL when the random closer was first.
            ids.iter().for_each(|id| {
                let _ = stream::close(*id);
            });
        }
        let address = match target {
            Target::Healthy => self.healthy.clone(),
            Target::Faulty(fault) => self.peers.iter().find(|p| p.fault() == fault).unwrap().address().to_string(),
        };
        let options = ChannelOptions {
            connect_timeout: Some(Duration::from_secs(2)),
            timeout: Some(Duration::from_secs(2)),
            max_retry: 0,
            ..Default::default()
        };
        let channel = Channel::new(&address, options).unwrap();
        let (tx, rx) = mpsc::channel();
        let streams = ids.clone();
        channel.call(
            CallRequest {
                service: "storm.Service".into(),
                method: "Open".into(),
                stream_settings: stream::settings_for(&ids),
                ..Default::default()
            },
            Box::new(move |outcome| {
                let settings = outcome.result.as_ref().ok().and_then(|m| m.meta.stream_settings.clone());
                let then = Box::new(move || {
                    let _ = tx.send(());
                });
                stream::on_setup_response(&streams, outcome.socket, outcome.error(), settings.as_ref(), then);
            }),
        );
        if how == CloseHow::DuringCall {
            ids.iter().for_each(|id| {
                let _ = stream::close(*id);
            });
        }
        if rx.recv_timeout(Duration::from_secs(10)).is_ok() {
            self.calls_ended.fetch_add(1, Ordering::AcqRel);
        } else {
            self.stuck.lock().unwrap().push(format!("the call to {target:?} never ended"));
        }
        for (id, tracker) in ids.iter().zip(&trackers) {
            write_some(*id, tracker, rng.below(8), size, rng);
        }
        if how == CloseHow::AfterWrites {
            ids.iter().for_each(|id| {
                let _ = stream::close(*id);
            });
        }
        // Closes left to others get a moment; then this thread closes.
        let patience = Duration::from_millis(match how {
            CloseHow::InCallback | CloseHow::ByCloser => 20,
            CloseHow::ByPeer => 60,
            _ => 0,
        });
        for (id, tracker) in ids.iter().zip(&trackers) {
            if !tracker.wait_closed(patience) {
                let _ = stream::close(*id);
            }
            if !tracker.wait_closed(Duration::from_secs(10)) {
                self.stuck.lock().unwrap().push(format!("client stream {id} ({target:?}, {how:?}) never closed"));
            }
        }
        // The well-behaved server's streams end before the connection goes,
        // so nothing they were sent is lost with it.
        if target == Target::Healthy {
            for id in &ids {
                let server = self.server_side.lock().unwrap().get(id).cloned();
                if let Some(server) = server {
                    if !server.wait_closed(Duration::from_secs(10)) {
                        self.stuck.lock().unwrap().push(format!("server stream of client {id} never closed"));
                    }
                }
            }
        }
        drop(channel);
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Polls `done` for up to 20 s.
fn settles(done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Debug, PartialEq)]
struct Baseline {
    sockets: u64,
    streams: u64,
    by_state: [u64; 4],
    writes_queued: u64,
    live_sockets: usize,
    live_streams: usize,
    attempts: usize,
    calls: usize,
    server_calls: usize,
    fds: usize,
}

fn baseline() -> Baseline {
    let s = stats::snapshot();
    Baseline {
        sockets: s.sockets_alive,
        streams: s.streams_alive,
        by_state: [s.streams_created, s.streams_connected, s.streams_closing, s.streams_closed],
        writes_queued: s.writes_queued,
        live_sockets: Socket::live_count(),
        live_streams: stream::live_count(),
        attempts: pending_attempts(),
        calls: client::pending_calls(),
        server_calls: server::calls_in_flight(),
        fds: open_fds(),
    }
}

#[test]
fn the_storm() {
    let setups: usize = env_or("BRPC_STORM_SETUPS", 10_000);
    let budget = Duration::from_secs(env_or("BRPC_STORM_BUDGET_SECS", 240));
    let seed: u64 = env_or(
        "BRPC_STORM_SEED",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64,
    );
    println!("storm: seed={seed} setups={setups} (BRPC_STORM_SEED={seed} repeats the choices)");

    let mut seeds = SplitMix(seed);
    let server_side: Arc<ServerSide> = Arc::default();
    let candidates = Arc::new(Candidates(Mutex::new(Vec::new())));
    let server = healthy_server(server_side.clone(), seeds.next());
    let peers: Vec<FaultPeer> =
        ALL_FAULTS.iter().map(|f| FaultPeer::start(*f, Duration::from_millis(30), seeds.next())).collect();
    let storm = Arc::new(Storm {
        peers,
        healthy: server.listen_address().unwrap().to_string(),
        server_side,
        candidates,
        clients: Mutex::new(Vec::new()),
        by_target: Mutex::default(),
        by_close: Mutex::default(),
        calls_ended: AtomicU64::new(0),
        stuck: Mutex::new(Vec::new()),
    });
    // One setup first, so the runtime's threads and fds exist before the baseline.
    storm.setup(&mut SplitMix(seeds.next()));
    assert!(settles(|| Socket::live_count() == 0 && storm.peers.iter().all(FaultPeer::idle)));
    storm.clients.lock().unwrap().clear();
    storm.server_side.lock().unwrap().clear();
    let before = baseline();
    let stats_before = stats::snapshot();
    let started = Instant::now();

    let next = Arc::new(AtomicUsize::new(0));
    let stop_closer = Arc::new(AtomicBool::new(false));
    let closer = {
        let (candidates, stop, mut rng) = (storm.candidates.clone(), stop_closer.clone(), SplitMix(seeds.next()));
        std::thread::spawn(move || {
            let mut closes = 0u64;
            while !stop.load(Ordering::Acquire) {
                if let Some(id) = candidates.pick(&mut rng) {
                    let _ = stream::close(id);
                    closes += 1;
                }
                std::thread::sleep(Duration::from_micros(200 + rng.below(800)));
            }
            closes
        })
    };
    let drivers: Vec<_> = (0..8)
        .map(|_| {
            let (storm, next, mut rng) = (storm.clone(), next.clone(), SplitMix(seeds.next()));
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::AcqRel) < setups && started.elapsed() < budget {
                    storm.setup(&mut rng);
                }
            })
        })
        .collect();
    for driver in drivers {
        driver.join().expect("a driver panicked");
    }
    stop_closer.store(true, Ordering::Release);
    let random_closes = closer.join().unwrap();
    let elapsed = started.elapsed();
    let done = next.load(Ordering::Acquire).min(setups);

    // Every stream, both sides: on_closed once, on_failed at most once and before it.
    let clients = storm.clients.lock().unwrap().clone();
    let servers: Vec<Arc<Tracker>> = storm.server_side.lock().unwrap().values().cloned().collect();
    for tracker in clients.iter().map(|(_, t)| t).chain(&servers) {
        assert!(tracker.wait_closed(Duration::from_secs(10)), "stream {} never closed", tracker.id());
    }
    let stuck = storm.stuck.lock().unwrap().clone();
    assert!(stuck.is_empty(), "{} stuck: {:?}", stuck.len(), &stuck[..stuck.len().min(10)]);
    let mut violations = Vec::new();
    let (mut failed_calls, mut closed_calls) = (0u64, 0u64);
    for tracker in clients.iter().map(|(_, t)| t).chain(&servers) {
        let (failed, closed) = (tracker.failed.load(Ordering::Acquire), tracker.closed.load(Ordering::Acquire));
        failed_calls += u64::from(failed);
        closed_calls += u64::from(closed);
        if closed != 1 || failed > 1 || tracker.out_of_order.load(Ordering::Acquire) {
            violations.push(format!(
                "stream {}: on_failed x{failed}, on_closed x{closed}: {}",
                tracker.id(),
                tracker.story.lock().unwrap()
            ));
        }
    }
    assert!(
        violations.is_empty(),
        "{} callback violations: {:?}",
        violations.len(),
        &violations[..violations.len().min(10)]
    );

    // Every accepted write delivered or reported dropped: end to end for
    // the well-behaved server, and in the counters for everyone.
    let mut undelivered = Vec::new();
    for (target, tracker) in &clients {
        let accepted = tracker.accepted.load(Ordering::Acquire);
        let dropped = tracker.dropped_reported.load(Ordering::Acquire);
        if dropped > accepted {
            undelivered.push(format!("stream {} reported {dropped} dropped of {accepted}", tracker.id()));
        }
        let server = storm.server_side.lock().unwrap().get(&tracker.id()).cloned();
        if let (Target::Healthy, Some(server)) = (target, server) {
            let received = server.received.load(Ordering::Acquire);
            if !server.closed_first.load(Ordering::Acquire) && accepted != received + dropped {
                undelivered.push(format!(
                    "healthy stream {}: {accepted} accepted, {received} received, {dropped} dropped; client: {} server: {}",
                    tracker.id(),
                    tracker.story.lock().unwrap(),
                    server.story.lock().unwrap()
                ));
            }
        }
    }
    assert!(
        undelivered.is_empty(),
        "{} write accounting errors: {:?}",
        undelivered.len(),
        &undelivered[..undelivered.len().min(10)]
    );
    let every = || clients.iter().map(|(_, t)| t).chain(&servers);
    let accepted: u64 = every().map(|t| t.accepted.load(Ordering::Acquire)).sum();
    let reported: u64 = every().map(|t| t.dropped_reported.load(Ordering::Acquire)).sum();
    let received_by_server: u64 = servers.iter().map(|t| t.received.load(Ordering::Acquire)).sum();

    drop(servers);
    drop(clients);
    storm.clients.lock().unwrap().clear();
    storm.server_side.lock().unwrap().clear();
    let settled = settles(|| baseline() == before);
    let after = baseline();
    let stats_after = stats::snapshot();
    let writes = stats_after.stream_writes - stats_before.stream_writes;
    let sent = stats_after.stream_messages_out - stats_before.stream_messages_out;
    let dropped = stats_after.stream_writes_dropped - stats_before.stream_writes_dropped;

    let by_target = storm.by_target.lock().unwrap().clone();
    let by_close = storm.by_close.lock().unwrap().clone();
    println!(
        "storm: {done} setups in {:.1}s ({} calls ended), {random_closes} random closes",
        elapsed.as_secs_f64(),
        storm.calls_ended.load(Ordering::Acquire)
    );
    println!("storm: setups by peer {by_target:?}");
    let accepted_by_fault: Vec<(Fault, u64)> = storm.peers.iter().map(|p| (p.fault(), p.accepted())).collect();
    println!("storm: connections the fault peer took, by fault {accepted_by_fault:?}");
    println!("storm: closes {by_close:?}");
    println!("storm: callbacks on_closed={closed_calls} on_failed={failed_calls}");
    println!("storm: writes accepted={accepted} (counter {writes}) handed to a connection={sent} dropped={dropped} (reported {reported}); server received {received_by_server}");
    println!(
        "storm: connections accepted={} connected={} connect failures={} broken={}",
        stats_after.connections_accepted - stats_before.connections_accepted,
        stats_after.connections_connected - stats_before.connections_connected,
        stats_after.connect_failures - stats_before.connect_failures,
        stats_after.connections_broken - stats_before.connections_broken
    );
    println!("storm: before {before:?}\nstorm: after  {after:?}");
    if done < setups {
        println!("storm: the {}s budget ran out after {done} of {setups} setups", budget.as_secs());
    }
    assert!(settled, "leaked: before {before:?}, after {after:?}");
    assert_eq!(writes, accepted, "the counter of accepted writes disagrees with StreamWrite's answers");
    assert_eq!(writes, sent + dropped, "accepted writes neither sent nor dropped");
    assert_eq!(dropped, reported, "dropped writes that on_failed did not report");
    drop(storm);
    drop(server);
}
