//! Measures a server while it is attacked, in this process or in another:
//! its VmRSS before, at the peak of and after the attack, its open
//! descriptors, and the latency of a legitimate client calling
//! fault.Service/Echo throughout. Shared by tests/fault_suite.rs (the
//! server in the test's own process) and examples/fault_probe.rs (a server
//! it starts, or one given by address and pid).

// Each program that includes this file uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use brpc_stream::rpc::{CallRequest, Channel, ChannelOptions};
use bytes::Bytes;

use crate::raw_peer::echo_message;

pub const MIB: usize = 1024 * 1024;
/// RSS within this of its baseline counts as back after an attack.
pub const RSS_BACK: usize = 32 * MIB;
/// How long RSS and descriptors get to come back after an attack.
const SETTLE: Duration = Duration::from_secs(20);

/// VmRSS of `pid` in bytes; None once the process is gone (a zombie has none).
pub fn rss_of(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: usize = line["VmRSS:".len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Descriptors `pid` has open.
pub fn fds_of(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|dir| dir.count())
}

/// The legitimate client's calls during an attack.
pub struct Legit {
    /// Of the calls answered, sorted.
    pub latencies: Vec<Duration>,
    /// Of the others.
    pub failures: Vec<String>,
}

impl Legit {
    /// The `percent` percentile of the answered calls' latencies.
    pub fn percentile(&self, percent: usize) -> Option<Duration> {
        let last = self.latencies.len().checked_sub(1)?;
        Some(self.latencies[(self.latencies.len() * percent / 100).min(last)])
    }

    pub fn max(&self) -> Option<Duration> {
        self.latencies.last().copied()
    }
}

/// A client calling "Echo" in a loop, timing each call.
struct LegitClient {
    stop: Arc<AtomicBool>,
    results: mpsc::Receiver<Legit>,
}

impl LegitClient {
    fn start(addr: &str) -> LegitClient {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, results) = mpsc::channel();
        let channel = Channel::new(addr, ChannelOptions::default());
        let stopping = Arc::clone(&stop);
        thread::spawn(move || {
            let mut legit = Legit { latencies: Vec::new(), failures: Vec::new() };
            let channel = match channel {
                Ok(channel) => channel,
                Err(error) => {
                    legit.failures.push(error.to_string());
                    let _ = tx.send(legit);
                    return;
                }
            };
            let payload = Bytes::from(echo_message(b"legit"));
            while !stopping.load(Ordering::Acquire) {
                let (done_tx, done_rx) = mpsc::channel();
                let started = Instant::now();
                let request = CallRequest {
                    service: "fault.Service".into(),
                    method: "Echo".into(),
                    payload: payload.clone(),
                    timeout: Some(Duration::from_secs(10)),
                    ..Default::default()
                };
                channel.call(
                    request,
                    Box::new(move |outcome| {
                        let _ = done_tx.send(outcome.error().map(|error| error.to_string()));
                    }),
                );
                match done_rx.recv_timeout(Duration::from_secs(15)) {
                    Ok(None) => legit.latencies.push(started.elapsed()),
                    Ok(Some(error)) => legit.failures.push(error),
                    Err(_) => legit.failures.push("no answer within 15 s".to_string()),
                }
                thread::sleep(Duration::from_millis(5));
            }
            legit.latencies.sort();
            let _ = tx.send(legit);
        });
        LegitClient { stop, results }
    }

    fn finish(self) -> Legit {
        self.stop.store(true, Ordering::Release);
        self.results.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| Legit {
            latencies: Vec::new(),
            failures: vec!["the legitimate client did not end within 30 s".to_string()],
        })
    }
}

/// What one attack did to a server.
pub struct Figures {
    pub rss_before: usize,
    pub rss_peak: usize,
    /// Once back within [`RSS_BACK`] of the baseline, or when [`SETTLE`] ran out.
    pub rss_after: usize,
    pub fds_before: usize,
    pub fds_after: usize,
    pub legit: Legit,
    /// The attack's note, or what it found (the text it panicked with).
    pub outcome: Result<String, String>,
    /// The process was still there after the attack.
    pub alive: bool,
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload.downcast_ref::<&str>().map_or("a panic without text".to_string(), |t| t.to_string()),
    }
}

/// Runs `attack` (it returns when the attack is over, and panics with what
/// it found when the server did not hold) against the server `pid`
/// listening on `addr`, a legitimate client calling throughout, and
/// measures. `attack` gets a function that samples RSS; RSS is also
/// sampled every 20 ms on another thread.
pub fn measure(pid: u32, addr: &str, attack: impl FnOnce(&str, &dyn Fn()) -> String) -> Figures {
    // Warm up the server's threads and the legitimate path before the baseline.
    let warm_up = LegitClient::start(addr);
    thread::sleep(Duration::from_millis(300));
    warm_up.finish();
    thread::sleep(Duration::from_millis(100));
    let fds_before = fds_of(pid).unwrap_or(0);
    let rss_before = rss_of(pid).unwrap_or(0);
    let peak = AtomicUsize::new(rss_before);
    let sample = || {
        if let Some(now) = rss_of(pid) {
            peak.fetch_max(now, Ordering::Relaxed);
        }
    };
    let attacked = AtomicBool::new(true);
    let (outcome, legit) = thread::scope(|scope| {
        scope.spawn(|| {
            while attacked.load(Ordering::Acquire) {
                sample();
                thread::sleep(Duration::from_millis(20));
            }
        });
        let legit = LegitClient::start(addr);
        let outcome = catch_unwind(AssertUnwindSafe(|| attack(addr, &sample))).map_err(panic_text);
        sample();
        attacked.store(false, Ordering::Release);
        (outcome, legit.finish())
    });
    // The memory and descriptors the attack made the server hold go back.
    let deadline = Instant::now() + SETTLE;
    let (mut rss_after, mut fds_after) = (0, 0);
    while let (Some(rss), Some(fds)) = (rss_of(pid), fds_of(pid)) {
        (rss_after, fds_after) = (rss, fds);
        if (rss <= rss_before + RSS_BACK && fds <= fds_before) || Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    Figures {
        rss_before,
        rss_peak: peak.load(Ordering::Relaxed),
        rss_after,
        fds_before,
        fds_after,
        legit,
        outcome,
        alive: rss_of(pid).is_some(),
    }
}

/// A server process the probe started: `PROGRAM` prints "port P" once it
/// serves 127.0.0.1:P (other lines before are skipped).
pub struct Spawned {
    child: Child,
    pub pid: u32,
    pub addr: String,
}

impl Spawned {
    pub fn start(command: &mut Command) -> Result<Spawned, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start {command:?}: {error}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, port) = mpsc::channel();
        // Reads on until the process ends, so its stdout never fills.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line.strip_prefix("port ") {
                    let _ = tx.send(port.trim().to_string());
                }
            }
        });
        let mut spawned = Spawned { pid: child.id(), child, addr: String::new() };
        match port.recv_timeout(Duration::from_secs(60)) {
            Ok(port) => {
                spawned.addr = format!("127.0.0.1:{port}");
                Ok(spawned)
            }
            Err(_) => Err(format!("{command:?} printed no \"port P\" within 60 s")),
        }
    }

    /// How the process ended, if it did.
    pub fn exited(&mut self) -> Option<String> {
        use std::os::unix::process::ExitStatusExt;
        let status = self.child.try_wait().ok()??;
        Some(match status.signal() {
            Some(signal) => format!("killed by signal {signal} ({})", signal_name(signal)),
            None => format!("exited with {}", status.code().unwrap_or(-1)),
        })
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGKILL => "SIGKILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        _ => "another signal",
    }
}

/// The head of the table [`row`] fills.
pub const TABLE_HEAD: &str =
    "| attack | server | RSS before (MiB) | peak | after | legit calls | p50 (ms) | p99 | max | failed | outcome |\n\
                              |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|";

/// One line of the table: `attack` on `server`; `exit`, how the server
/// process ended if it did.
pub fn row(attack: &str, server: &str, figures: &Figures, exit: Option<&str>) -> String {
    let mib = |bytes: usize| format!("{:.0}", bytes as f64 / MIB as f64);
    let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64() * 1e3));
    let outcome = match (&figures.outcome, figures.alive) {
        (_, false) => format!("**died**: {}", exit.unwrap_or("gone")),
        (Ok(note), true) => format!("held: {note}"),
        (Err(found), true) => format!("**found**: {found}"),
    };
    let mut outcome: String = outcome.replace(['|', '\n'], " ");
    if outcome.len() > 160 {
        let mut cut = 157;
        while !outcome.is_char_boundary(cut) {
            cut -= 1;
        }
        outcome.truncate(cut);
        outcome.push_str("...");
    }
    format!(
        "| {attack} | {server} | {} | {} | {} | {} | {} | {} | {} | {} | {outcome} |",
        mib(figures.rss_before),
        mib(figures.rss_peak),
        if figures.alive { mib(figures.rss_after) } else { "-".to_string() },
        figures.legit.latencies.len(),
        ms(figures.legit.percentile(50)),
        ms(figures.legit.percentile(99)),
        ms(figures.legit.max()),
        figures.legit.failures.len(),
    )
}
