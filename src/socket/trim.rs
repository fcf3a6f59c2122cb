//! Giving the allocator's free memory back to the system after a large
//! teardown (issue 12: a peer opens 65 536 streams on one connection, then
//! drops it).
//!
//! Everything such a connection held is freed, but glibc keeps the freed
//! chunks in the arenas of the threads that allocated them: measured with
//! mallinfo2 on that attack, 10 MiB stayed in use (the socket registry's
//! slots, kept for reuse) and 24 MiB were free but kept, growing to 57 MiB
//! over 12 repeats as the streams of each round land in other threads'
//! arenas (RSS 37 MiB after the first round, 71 MiB after the twelfth,
//! from a 4 MiB baseline). A `malloc_trim(0)` after each round costs about
//! 2 ms and brought RSS to 16 MiB after the first, 26 MiB after the tenth.
//!
//! So: when the live sockets (connections and streams) fall
//! [`FREED_ENOUGH`] below their high-water mark, one trim runs on a worker
//! [`SETTLE`] later (the rest of the teardown frees in between), and the
//! mark restarts from what is live then. At most one trim is pending, so
//! a peer can cause one per [`SETTLE`] at most, and only by having the
//! server create and free [`FREED_ENOUGH`] sockets for each.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::runtime::{spawn_or_run, timers};

/// Sockets freed below the high-water mark that make a trim worth its cost
/// (about 500 B of heap each: some 8 MiB).
pub const FREED_ENOUGH: usize = 16 * 1024;

/// How long after the threshold is crossed the trim runs.
pub const SETTLE: Duration = Duration::from_secs(1);

/// Live sockets at their most since the last trim (updated without a
/// read-modify-write: a mark a racing creator misses by one is harmless).
static HIGH: AtomicUsize = AtomicUsize::new(0);
static PENDING: AtomicBool = AtomicBool::new(false);
/// Trims run so far (tests read it).
static TRIMS: AtomicUsize = AtomicUsize::new(0);

/// A socket was created; `live` sockets exist now.
pub(super) fn created(live: usize) {
    if live > HIGH.load(Ordering::Relaxed) {
        HIGH.store(live, Ordering::Relaxed);
    }
}

/// A socket is being freed; `live` sockets remain after it.
pub(super) fn freed(live: usize) {
    if HIGH.load(Ordering::Relaxed) < live + FREED_ENOUGH || PENDING.load(Ordering::Relaxed) {
        return;
    }
    if PENDING.swap(true, Ordering::Relaxed) {
        return;
    }
    timers().schedule(Instant::now() + SETTLE, Box::new(|| spawn_or_run(trim)));
}

fn trim() {
    HIGH.store(super::Socket::live_count(), Ordering::Relaxed);
    release_free_memory();
    TRIMS.fetch_add(1, Ordering::Relaxed);
    PENDING.store(false, Ordering::Relaxed);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks.
    unsafe { libc::malloc_trim(0) };
}

/// Other allocators return memory by their own policy.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

/// Trims made since the process started.
pub fn trim_count() -> usize {
    TRIMS.load(Ordering::Relaxed)
}
