//! Hostile and broken peers against a live server on real loopback. Each
//! case attacks (tests/fault_suite/attacks.rs, the attacks
//! examples/fault_probe.rs makes on a server in another process) while a
//! legitimate client keeps calling, and asserts the server survives, the
//! legitimate calls are answered within a bound, the process's RSS grows
//! by less than 64 MiB during the attack and comes back near its baseline,
//! and descriptors return to their baseline; and what the server holds
//! inside (connections, partial bytes, streams) stays within its bounds.
//!
//! Cases run one at a time (a process-wide lock), so the RSS of one is not
//! another's. Run with `--nocapture` to see the figures.

#[path = "fault_suite/attacks.rs"]
mod attacks;
#[path = "fault_suite/echo_server.rs"]
mod echo_server;
#[path = "fault_suite/measure.rs"]
mod measure;
#[path = "fault_suite/raw_peer.rs"]
mod raw_peer;

use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use brpc_stream::errno;
use brpc_stream::rpc::{Server, ServerOptions};
use brpc_stream::{socket, stream};
use bytes::Bytes;
use parking_lot::Mutex;

use attacks::Bounds;
use echo_server::{echo_server, STREAM_FAILURES};
use measure::{measure, row, Figures, Spawned, MIB, RSS_BACK, TABLE_HEAD};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// RSS growth allowed during an attack.
const RSS_BUDGET: usize = 64 * MIB;
/// A legitimate call's p99 while the server is attacked (generous: two
/// cores shared with other builds).
const LEGIT_P99: Duration = Duration::from_millis(1500);

/// Runs `attack` against a fresh echo server with `options`, a legitimate
/// client calling throughout, and checks and prints the figures; returns
/// the legitimate calls' p99.
fn under_attack(name: &str, options: ServerOptions, attack: impl FnOnce(&str, &dyn Fn()) -> String) -> Duration {
    under_attack_on(name, options, |_server, addr, sample| attack(addr, sample))
}

/// [`under_attack`], the attack seeing the server too.
fn under_attack_on(
    name: &str,
    options: ServerOptions,
    attack: impl FnOnce(&Server, &str, &dyn Fn()) -> String,
) -> Duration {
    let _one = ONE_AT_A_TIME.lock();
    let (server, addr) = echo_server(options);
    let figures = measure(std::process::id(), &addr, |addr, sample| attack(&server, addr, sample));
    let Figures { rss_before, rss_peak, rss_after, fds_before, fds_after, legit, outcome, alive } = &figures;
    println!("{TABLE_HEAD}\n{}", row(name, "in-process", &figures, None));
    if let Err(found) = outcome {
        panic!("{name}: {found}");
    }
    assert!(*alive && server.is_running(), "{name}: the server stopped");
    assert!(legit.failures.is_empty(), "{name}: legitimate calls failed during the attack: {:?}", legit.failures);
    let p99 = legit.percentile(99).expect("a legitimate call answered during the attack");
    assert!(*rss_peak < rss_before + RSS_BUDGET, "{name}: RSS grew by {} MiB", (rss_peak - rss_before) / MIB);
    assert!(*rss_after <= rss_before + RSS_BACK, "{name}: RSS stayed {} MiB up", (rss_after - rss_before) / MIB);
    assert!(p99 < LEGIT_P99, "{name}: legitimate p99 {p99:?}");
    assert!(fds_after <= fds_before, "{name}: fds {fds_before} -> {fds_after}");
    drop(server);
    p99
}

/// Waits up to 10 s for `server` to hold at most one connection (the
/// legitimate client's) and no byte of a partial request.
fn assert_nothing_left(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while (server.connection_count() > 1 || server.partial_request_bytes() > 0) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.partial_request_bytes(), 0, "bytes of closed connections still counted");
    assert!(server.connection_count() <= 1, "{} connections kept", server.connection_count());
}

#[test]
fn a_client_pipelining_requests_without_reading_responses_is_bounded_then_disconnected() {
    // Requests read but not yet run wait on the worker pool with their
    // payload; max_concurrency bounds them (answered ELIMIT beyond).
    let options = ServerOptions { max_concurrency: 64, ..Default::default() };
    under_attack("pipelining without reading", options, |addr, sample| {
        /// Process-wide settings: set while this case holds the suite,
        /// restored however the attack ends.
        struct Restore;
        impl Drop for Restore {
            fn drop(&mut self) {
                socket::set_max_unwritten_bytes(0);
                socket::set_overcrowded_grace(Duration::ZERO);
            }
        }
        let _restore = Restore;
        socket::set_max_unwritten_bytes(8 * MIB as u64);
        socket::set_overcrowded_grace(Duration::from_millis(500));
        attacks::pipelining_without_reading(addr, sample)
    });
}

#[test]
fn a_write_beyond_the_unwritten_bound_fails_with_eovercrowded() {
    let _one = ONE_AT_A_TIME.lock();
    socket::set_max_unwritten_bytes(MIB as u64);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // A peer that never reads.
    let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    let fd = std::os::fd::OwnedFd::from(accepted);
    let id = socket::Socket::create(socket::SocketOptions { fd: Some(fd), ..Default::default() }).unwrap();
    let sock = socket::Socket::address(id).unwrap();
    let mut refused = None;
    for _ in 0..10_000 {
        if let Err(error) = sock.write(Bytes::from(vec![0u8; 64 * 1024]), None) {
            refused = Some(error.code());
            break;
        }
    }
    assert_eq!(refused, Some(brpc_stream::errno::EOVERCROWDED));
    assert!(sock.unwritten_bytes() > MIB as u64);
    // An empty write (an orderly close's marker) is never refused.
    assert_eq!(sock.write(socket::Chunks::empty(), None), Ok(()));
    sock.set_failed(brpc_stream::Error::new(libc::ECONNRESET, "test over"));
    socket::set_max_unwritten_bytes(0);
    drop(peer);
}

/// A legitimate call's p99 while flooders share the server (a connection
/// reads one 64 KiB turn a round, so a quiet request waits for at most one
/// turn of each busy connection), on a machine with no other load. Seen on
/// two cores at a load of 7 (other builds, and the flooders' own loopback
/// work sharing the cores): 0.7–23 ms.
const FLOODED_P99: Duration = Duration::from_millis(50);

/// [`FLOODED_P99`] scaled by the machine's load beyond this process (the
/// 1-minute load average per core, when above 1): on two cores shared
/// with other builds a thread waits for a core whatever the server does.
/// The flooders' own threads run here too (the load average lags them).
fn flooded_p99_bound() -> Duration {
    let load: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().and_then(|l| l.parse().ok()))
        .unwrap_or(0.0);
    let cores = thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    FLOODED_P99.mul_f64((load / cores).max(1.0))
}

/// The most one flooder may get over another.
fn assert_shares_within_2x(name: &str, shares: &[u64]) {
    let least = shares.iter().copied().min().unwrap_or(0);
    let most = shares.iter().copied().max().unwrap_or(0);
    assert!(least > 0 && most <= 2 * least, "{name}: flooders' shares {shares:?} are not within 2x");
}

#[test]
fn stream_flooders_share_the_server_evenly_and_a_quiet_client_stays_fast() {
    // Connections stay on their event loop: two flooders for each.
    let loops = brpc_stream::runtime::dispatcher().event_loop_count();
    let count = if loops > 1 { 2 * loops } else { 3 };
    let bound = flooded_p99_bound();
    let p99 = under_attack_on("stream flooders", ServerOptions::default(), |server, addr, sample| {
        let failed_before = STREAM_FAILURES.lock().total;
        // Sampled while the flooders write, before they hang up (which
        // fails their streams).
        let no_reset = || {
            sample();
            let failures = STREAM_FAILURES.lock();
            assert!(failures.total == failed_before, "a flooder's stream was reset: {:?}", failures.recent);
        };
        let shares = attacks::stream_flooders(addr, count, &no_reset);
        println!(
            "{count} stream flooders on {loops} event loop(s): MiB consumed each in 3 s {:?}; workers {:?}",
            shares.iter().map(|b| b / MIB as u64).collect::<Vec<_>>(),
            brpc_stream::runtime::worker_stats(),
        );
        let echo = server.method_statuses().into_iter().find(|m| m.method == "Echo").map(|m| m.latency);
        println!("stream flooders: Echo on the server (cut off the connection to answered): {echo:?}");
        // A connection stays on its loop, so shares are even among the
        // connections of one loop; across loops they follow how many
        // busy ones each got (brpc's dispatchers are the same).
        if loops == 1 {
            assert_shares_within_2x("stream flooders", &shares);
        }
        format!("{count} flooders")
    });
    println!("stream flooders: legitimate p99 {p99:?}, bound {bound:?} (load-scaled from {FLOODED_P99:?})");
    assert!(p99 <= bound, "stream flooders: legitimate p99 {p99:?} past {bound:?}");
}

#[test]
fn request_flooders_share_the_server_evenly_and_a_quiet_client_stays_fast() {
    // Connections stay on their event loop: two flooders for each.
    let loops = brpc_stream::runtime::dispatcher().event_loop_count();
    let count = if loops > 1 { 2 * loops } else { 3 };
    let bound = flooded_p99_bound();
    let name = format!("{count} request flooders");
    let p99 = under_attack_on(&name, ServerOptions::default(), |server, addr, sample| {
        let received = attacks::request_flooders(addr, count, sample);
        println!(
            "{count} request flooders on {loops} event loop(s): MiB of responses each in 4 s {:?}",
            received.iter().map(|b| b / MIB as u64).collect::<Vec<_>>()
        );
        let echo = server.method_statuses().into_iter().find(|m| m.method == "Echo").map(|m| m.latency);
        println!("request flooders: Echo on the server (cut off the connection to answered): {echo:?}");
        // Even among the connections of one loop (see the stream flooders).
        if loops == 1 {
            assert_shares_within_2x("request flooders", &received);
        }
        format!("{count} flooders")
    });
    println!("request flooders: legitimate p99 {p99:?}, bound {bound:?} (load-scaled from {FLOODED_P99:?})");
    assert!(p99 <= bound, "request flooders: legitimate p99 {p99:?} past {bound:?}");
}

#[test]
fn a_quiet_call_waits_for_one_call_of_each_busy_connection_not_their_backlog() {
    // Each flooder keeps up to 1024 calls of 0.2 ms of computing waiting
    // (the per-connection bound on unanswered calls): run first come first
    // served, a quiet call waited for all of them (p99 0.50-0.53 s at a
    // load of 7 on two cores). In turn it waits for one call of each, but
    // the busy workers hold the cores its threads (dispatcher, worker,
    // client) need: 4.5-75 ms seen at a load of 7-9. Three times the
    // flooded bound tells the two apart.
    let bound = 3 * flooded_p99_bound();
    let p99 = under_attack_on("busy request flooders", ServerOptions::default(), |server, addr, sample| {
        let received = attacks::busy_request_flooders(addr, 3, sample);
        let busy = server.method_statuses().into_iter().find(|m| m.method == "Busy").map(|m| m.latency);
        println!("busy request flooders: bytes of responses each in 3 s {received:?}; Busy on the server: {busy:?}; workers {:?}", brpc_stream::runtime::worker_stats());
        "3 flooders".to_string()
    });
    println!("busy request flooders: legitimate p99 {p99:?}, bound {bound:?} (load-scaled from 3 x {FLOODED_P99:?})");
    assert!(p99 <= bound, "busy request flooders: legitimate p99 {p99:?} past {bound:?}");
}

#[test]
fn a_stream_peer_that_ignores_feedback_is_reset_on_both_sides() {
    under_attack("stream flood ignoring FEEDBACK", ServerOptions::default(), |addr, sample| {
        STREAM_FAILURES.lock().recent.clear();
        let note = attacks::stream_flood_ignoring_feedback(addr, sample);
        let failures = STREAM_FAILURES.lock().recent.clone();
        let (code, text) =
            failures.iter().find(|(code, _)| *code == errno::EOVERCROWDED).expect("on_failed on the server");
        assert!(text.contains("window"), "unclear error text: {text}");
        format!("{note}; the server's stream failed with {code}: {text}")
    });
}

#[test]
fn extra_stream_ids_sent_to_a_single_stream_method_are_refused_without_a_crash() {
    under_attack("extra stream ids", ServerOptions::default(), attacks::extra_stream_ids);
}

#[test]
fn garbage_instead_of_a_header_closes_the_connection() {
    under_attack("garbage headers", ServerOptions::default(), attacks::garbage_headers);
}

#[test]
fn headers_cut_short_by_the_peer_leave_nothing_behind() {
    under_attack_on("truncated headers", ServerOptions::default(), |server, addr, sample| {
        let note = attacks::truncated_headers(addr, sample);
        assert_nothing_left(server);
        note
    });
}

#[test]
fn a_body_claiming_two_gib_closes_the_connection_before_any_is_buffered() {
    under_attack("bodies claiming 2 GiB", ServerOptions::default(), attacks::bodies_claiming_two_gib);
}

#[test]
fn slowloris_connections_are_cut_after_the_header_timeout() {
    let timeout = Duration::from_secs(1);
    let options = ServerOptions { header_timeout: Some(timeout), ..Default::default() };
    under_attack_on("slowloris x1000", options, |server, addr, sample| {
        let note = attacks::slowloris(addr, timeout, sample);
        assert!(server.connection_count() <= 1, "{} connections kept", server.connection_count());
        note
    });
}

#[test]
fn two_thousand_idle_connections_are_kept_while_others_are_served() {
    under_attack_on("idle x2000", ServerOptions::default(), |server, addr, sample| {
        let accepted = AtomicBool::new(false);
        // The first sample comes once the 2000 are connected: they are
        // all accepted before the attack holds them.
        let all_accepted = || {
            sample();
            if !accepted.swap(true, Ordering::Relaxed) {
                let deadline = Instant::now() + Duration::from_secs(10);
                while server.connection_count() < 2000 && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(20));
                }
                assert!(server.connection_count() >= 2000, "only {} accepted", server.connection_count());
            }
        };
        attacks::idle_connections(addr, &all_accepted)
    });
}

#[test]
fn connections_beyond_max_connections_are_closed_at_once() {
    let options = ServerOptions { max_connections: 100, ..Default::default() };
    under_attack_on("connections beyond max_connections", options, |server, addr, sample| {
        let within = || {
            sample();
            assert!(server.connection_count() <= 100, "{} connections kept", server.connection_count());
        };
        attacks::connections_beyond_max(addr, 100, &within)
    });
}

#[test]
fn five_thousand_resets_mid_request_leave_nothing_behind() {
    under_attack_on("resets mid-request x5000", ServerOptions::default(), |server, addr, sample| {
        let note = attacks::resets_mid_request(addr, sample);
        assert_nothing_left(server);
        note
    });
}

#[test]
fn absurd_rpc_meta_fields_are_answered_with_error_codes() {
    under_attack("absurd RpcMeta fields", ServerOptions::default(), attacks::absurd_rpc_meta_fields);
}

#[test]
fn a_request_whose_meta_does_not_parse_ends_the_connection() {
    under_attack("metas that do not parse", ServerOptions::default(), attacks::metas_that_do_not_parse);
}

#[test]
fn partial_bodies_beyond_the_budget_close_their_connections() {
    let budget = 32 * MIB;
    let options = ServerOptions { max_partial_request_bytes: budget, ..Default::default() };
    under_attack_on("partial bodies", options, |server, addr, sample| {
        let within = || {
            sample();
            let held = server.partial_request_bytes();
            assert!(held <= budget, "{held} bytes of partial requests held");
        };
        let note = attacks::partial_bodies(addr, budget, &within);
        let deadline = Instant::now() + Duration::from_secs(10);
        while server.partial_request_bytes() > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(server.partial_request_bytes(), 0);
        note
    });
}

#[test]
fn a_peer_opening_streams_without_end_is_refused_past_max_streams_per_connection() {
    const MAX: usize = 200;
    let options = ServerOptions { max_streams_per_connection: MAX, ..Default::default() };
    under_attack("streams without end", options, |addr, sample| {
        let streams_before = stream::live_count();
        let within = || {
            sample();
            assert!(stream::live_count() <= streams_before + MAX, "the server holds more streams than it accepted");
        };
        attacks::streams_without_end(addr, MAX, &within)
    });
}

#[test]
fn a_body_trickled_slower_than_the_body_timeout_allows_closes_the_connection() {
    let timeout = Duration::from_secs(1);
    let options = ServerOptions { body_timeout: Some(timeout), ..Default::default() };
    under_attack_on("trickled bodies x200", options, |server, addr, sample| {
        let note = attacks::trickled_bodies(addr, timeout, sample);
        // The honest peer's close reaches the server a moment after its
        // thread ended; the legitimate client's connection stays.
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.connection_count() > 1 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        assert!(server.connection_count() <= 1, "{} connections left", server.connection_count());
        note
    });
}

/// Set in the environment of the child [`serve_for_the_probe`] runs in.
const SERVE_ENV: &str = "FAULT_SUITE_SERVE";

/// The server of [`the_probe_measures_a_server_in_another_process`]: this
/// test binary run again, serving until it is killed (a minute at most).
#[test]
#[ignore = "run by the_probe_measures_a_server_in_another_process in a child process"]
fn serve_for_the_probe() {
    if std::env::var_os(SERVE_ENV).is_none() {
        return;
    }
    let (_server, addr) = echo_server(ServerOptions::default());
    // On a line of its own: the harness has begun one ("test ... ").
    println!("\nport {}", addr.rsplit(':').next().unwrap_or_default());
    thread::sleep(Duration::from_secs(60));
}

/// examples/fault_probe.rs's way, on this library's server in a child
/// process: the figures come from that process and an attack that holds
/// reads as held.
#[test]
fn the_probe_measures_a_server_in_another_process() {
    let _one = ONE_AT_A_TIME.lock();
    for name in ["extra stream ids", "garbage headers"] {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args(["serve_for_the_probe", "--exact", "--ignored", "--nocapture", "--test-threads=1"]);
        command.env(SERVE_ENV, "1");
        let mut server = Spawned::start(&mut command).unwrap();
        assert_ne!(server.pid, std::process::id());
        let (_, attack) = attacks::ALL.iter().find(|(attack, _)| *attack == name).unwrap();
        let figures = measure(server.pid, &server.addr, |addr, sample| attack(addr, &Bounds::defaults(), sample));
        let exit = server.exited();
        println!("{TABLE_HEAD}\n{}", row(name, "child process", &figures, exit.as_deref()));
        assert!(figures.alive && exit.is_none(), "{name}: the server process ended: {exit:?}");
        assert!(figures.outcome.is_ok(), "{name}: {:?}", figures.outcome);
        assert!(figures.rss_before > MIB && figures.rss_peak >= figures.rss_before, "{name}: RSS not read");
        assert!(figures.fds_before > 3 && figures.fds_after <= figures.fds_before, "{name}: fds not read or kept");
        assert!(figures.legit.failures.is_empty(), "{name}: {:?}", figures.legit.failures);
        assert!(!figures.legit.latencies.is_empty(), "{name}: no legitimate call answered");
    }
}

/// RSS after five rounds of the attack may exceed RSS after the first by
/// this much: what the allocator keeps is reused, not grown. Measured
/// without the library's trim: 37, 52, 59, 60, 66 MiB after rounds 1-5
/// (71 MiB after 12); with it: 16, 18, 18, 20, 21 MiB (26 MiB after 10).
const REPEAT_GROWTH: usize = 12 * MIB;

#[test]
fn a_peer_opening_max_streams_and_hanging_up_again_and_again_does_not_grow_the_server() {
    const ROUNDS: usize = 5;
    let max = Bounds::defaults().max_streams_per_connection;
    let after_rounds = Mutex::new(Vec::new());
    under_attack("max streams then hang up x5", ServerOptions::default(), |addr, sample| {
        let me = std::process::id();
        for round in 1..=ROUNDS {
            let streams_before = stream::live_count();
            let trims_before = socket::trim_count();
            attacks::max_streams_then_hang_up(addr, max, sample);
            // Every stream of the dropped connection is freed, then the
            // trim its teardown called for runs.
            let deadline = Instant::now() + Duration::from_secs(20);
            while (stream::live_count() > streams_before || socket::trim_count() == trims_before)
                && Instant::now() < deadline
            {
                sample();
                thread::sleep(Duration::from_millis(50));
            }
            assert_eq!(stream::live_count(), streams_before, "round {round}: streams of a dropped connection kept");
            assert!(socket::trim_count() > trims_before, "round {round}: no trim after {max} streams were freed");
            let rss = measure::rss_of(me).unwrap_or(0);
            println!("max streams then hang up: RSS after round {round}: {} MiB", rss / MIB);
            after_rounds.lock().push(rss);
        }
        format!("{ROUNDS} rounds of {max} streams")
    });
    let after_rounds = after_rounds.into_inner();
    let (first, last) = (after_rounds[0], after_rounds[ROUNDS - 1]);
    assert!(
        last <= first + REPEAT_GROWTH,
        "RSS grew with each round: {:?} MiB",
        after_rounds.iter().map(|rss| rss / MIB).collect::<Vec<_>>()
    );
}
