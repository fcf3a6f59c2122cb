//! Attacks a server in another process the way a hostile or broken peer
//! would (the fault suite's attacks, tests/fault_suite/attacks.rs) and
//! measures it from outside: VmRSS before, at the peak of and after each
//! attack, and the latency of a legitimate client calling throughout.
//! Progress on stderr, a markdown table on stdout.
//!
//!   fault_probe [--only NAME,...] --server LABEL=PROGRAM [--server LABEL=PROGRAM ...]
//!       starts PROGRAM afresh for every attack (it prints "port P" once it
//!       serves fault.Service on 127.0.0.1:P, as bench/fault_server.cpp
//!       does), attacks and measures it, then kills it; with several
//!       servers each attack is made on each in turn, one at a time. A
//!       server that dies is reported with the signal that killed it.
//!   fault_probe [--only NAME,...] --addr HOST:PORT --pid PID
//!       attacks a server already running; stops if it dies.
//!   fault_probe --list
//!
//! `--only` makes the attacks whose names (as `--list` shows them) contain
//! one of the words given, ignoring case.
//!
//! The attacks are sized by the library's default bounds (the header and
//! body timeouts, max_connections, max_streams_per_connection and the
//! partial-request budget), the options bench/fault_server.cpp runs with.
//! scripts/bench.sh --faults builds that server (and with --brpc-prefix
//! the same source against apache/brpc) and runs this on it.

#[path = "../tests/fault_suite/attacks.rs"]
mod attacks;
#[path = "../tests/fault_suite/measure.rs"]
mod measure;
#[path = "../tests/fault_suite/raw_peer.rs"]
mod raw_peer;

use std::io::Write;
use std::process::{Command, ExitCode};

use attacks::{Attack, Bounds, ALL};
use measure::{measure, row, Spawned, TABLE_HEAD};

const USAGE: &str =
    "usage: fault_probe [--only NAME,...] (--server LABEL=PROGRAM ... | --addr HOST:PORT --pid PID | --list)";

enum Target {
    /// (label, program): started afresh for every attack.
    Spawn(Vec<(String, String)>),
    /// A server already running.
    Attach { addr: String, pid: u32 },
}

/// The attacks to make, with their names.
type Attacks = Vec<(&'static str, Attack)>;

fn parse() -> Result<(Target, Attacks), String> {
    let mut servers = Vec::new();
    let (mut addr, mut pid, mut only) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} takes a value"));
        match arg.as_str() {
            "--server" => {
                let value = value()?;
                let (label, program) = value.split_once('=').ok_or("--server takes LABEL=PROGRAM")?;
                servers.push((label.to_string(), program.to_string()));
            }
            "--addr" => addr = Some(value()?),
            "--pid" => pid = Some(value()?.parse::<u32>().map_err(|e| format!("--pid: {e}"))?),
            "--only" => only = Some(value()?),
            "--list" => {
                for (name, _) in ALL {
                    println!("{name}");
                }
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {arg}\n{USAGE}")),
        }
    }
    let attacks: Attacks = match &only {
        None => ALL.to_vec(),
        Some(only) => {
            let wanted: Vec<String> = only.split(',').map(|w| w.trim().to_lowercase()).collect();
            ALL.iter().filter(|(name, _)| wanted.iter().any(|w| name.to_lowercase().contains(w))).copied().collect()
        }
    };
    if attacks.is_empty() {
        return Err(format!("--only {}: no such attack (--list shows them)", only.unwrap_or_default()));
    }
    let target = match (servers.is_empty(), addr, pid) {
        (false, None, None) => Target::Spawn(servers),
        (true, Some(addr), Some(pid)) => Target::Attach { addr, pid },
        _ => return Err(USAGE.to_string()),
    };
    Ok((target, attacks))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() -> ExitCode {
    let (target, attacks) = match parse() {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let bounds = Bounds::defaults();
    // What an attack found is in its row; a panic's message and backtrace
    // on stderr would only bury the progress. The legitimate client's
    // channel logs every connection a dying server refuses: errors only.
    std::panic::set_hook(Box::new(|_| {}));
    brpc_stream::log::set_min_level(brpc_stream::log::Level::Error);
    eprintln!("load average at the start: {}", load_average());
    println!("{TABLE_HEAD}");
    for (name, attack) in attacks {
        let run = |addr: &str, pid: u32| measure(pid, addr, |addr, sample| attack(addr, &bounds, sample));
        match &target {
            Target::Spawn(servers) => {
                for (label, program) in servers {
                    eprintln!("{name} on {label} ...");
                    let mut server = match Spawned::start(&mut Command::new(program)) {
                        Ok(server) => server,
                        Err(error) => {
                            eprintln!("{label}: {error}");
                            return ExitCode::FAILURE;
                        }
                    };
                    let figures = run(&server.addr, server.pid);
                    let exit = server.exited();
                    println!("{}", row(name, label, &figures, exit.as_deref()));
                }
            }
            Target::Attach { addr, pid } => {
                eprintln!("{name} ...");
                let figures = run(addr, *pid);
                println!("{}", row(name, addr, &figures, None));
                if !figures.alive {
                    eprintln!("the server ({pid}) is gone: the attacks after this one are not made");
                    break;
                }
            }
        }
        let _ = std::io::stdout().flush();
    }
    eprintln!("load average at the end: {}", load_average());
    ExitCode::SUCCESS
}
