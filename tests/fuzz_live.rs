//! The `live` fuzz target's checks (`fuzz/fuzz_targets/live_checks.rs`)
//! over seeded random inputs, bounded, so every run of the tests drives
//! the live server with a few thousand arbitrary frame sequences; then
//! every input the fuzzer keeps in `fuzz/corpus/live/` and every one it
//! ever failed on (`tests/fuzz_regressions/live/`).

#[path = "../fuzz/fuzz_targets/live_checks.rs"]
mod live_checks;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// The whole test stops taking new inputs past this (the inputs it
/// replays first included), so a slow machine still finishes in time.
const BUDGET: Duration = Duration::from_secs(25);
/// Random inputs at most, after the replayed ones.
const INPUTS: u64 = 3000;
/// Random inputs at least, however slow the machine.
const AT_LEAST: u64 = 200;

/// splitmix64, so every run sends the same inputs.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Runs every input in `dir` (relative to the crate) until `until`;
/// returns how many ran and how many there are.
fn replay_dir(dir: &str, until: Instant) -> (usize, usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let Ok(entries) = fs::read_dir(&dir) else { return (0, 0) };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    let mut replayed = 0;
    for path in &paths {
        if Instant::now() >= until {
            break;
        }
        if let Ok(input) = fs::read(path) {
            live_checks::check_input(&input);
            replayed += 1;
        }
    }
    (replayed, paths.len())
}

#[test]
fn a_live_server_survives_arbitrary_frame_sequences_and_keeps_serving() {
    let live = live_checks::live();
    let started = Instant::now();
    let (regressions, _) = replay_dir("tests/fuzz_regressions/live", started + BUDGET);
    // The corpus gets half the time at most; the random inputs the rest.
    let (corpus, corpus_files) = replay_dir("fuzz/corpus/live", started + BUDGET / 2);
    let mut rng = SplitMix(0x6272_7063);
    let mut inputs = 0;
    while inputs < INPUTS && (inputs < AT_LEAST || started.elapsed() < BUDGET) {
        let len = (rng.next() % 512) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        live_checks::check_input(&data);
        inputs += 1;
    }
    live_checks::check_served(live, true);
    let (connections, partial) = live_checks::settle(live, Duration::from_secs(10));
    // What the inputs reached: stream messages both ways, connections the
    // server broke off.
    let stats = brpc_stream::stats::snapshot();
    println!(
        "stream messages in {}, out {}; connections accepted {}, broken {}; streams alive {}",
        stats.stream_messages_in,
        stats.stream_messages_out,
        stats.connections_accepted,
        stats.connections_broken,
        stats.streams_alive
    );
    println!(
        "{regressions} regressions, {corpus} of {corpus_files} corpus inputs, {inputs} random inputs in {:.1} s; \
         {connections} connections and {partial} partial bytes left",
        started.elapsed().as_secs_f64()
    );
    assert!(connections <= 1, "{connections} connections kept after every input closed its own");
    assert_eq!(partial, 0, "partial request bytes kept after every connection closed");
}
