//! Per-method statistics and the per-method concurrency limit, as brpc's
//! `MethodStatus`: calls, errors, calls refused with `ELIMIT`, calls in
//! flight and their limit, and latency percentiles over a recent window.
//! Read with [`MethodStatus::snapshot`] (listed by
//! [`crate::rpc::Server::method_statuses`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Latency is kept for the current window and the one before it, so a
/// snapshot always covers between one and two windows of recent calls.
const WINDOW: Duration = Duration::from_secs(10);

/// Sub-buckets per power of two: bucket edges step by 2^(1/4) (~19 %),
/// which bounds a percentile's error to that.
const SUB_BITS: u32 = 2;
/// Enough buckets for every u64 microsecond count.
const BUCKETS: usize = (64 << SUB_BITS) as usize;

/// Latency percentiles in microseconds (0 when no call ended in the window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    /// The slowest call of the window.
    pub max_us: u64,
    /// Calls the percentiles are computed over.
    pub samples: u64,
}

/// One method's figures at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodSnapshot {
    /// The service's full name, e.g. `example.EchoService`.
    pub service: String,
    pub method: String,
    /// Calls that ran the method and ended (answered), since start.
    pub calls: u64,
    /// Of those, the ones answered with an error.
    pub errors: u64,
    /// Calls refused with `ELIMIT` before the method ran.
    pub rejected: u64,
    /// Calls of this method in flight now.
    pub concurrency: usize,
    /// The method's limit on calls in flight; 0: unlimited.
    pub max_concurrency: usize,
    /// Latency of the calls that ended recently.
    pub latency: Percentiles,
}

impl MethodSnapshot {
    /// `service.method`, the name brpc's `MaxConcurrencyOf` takes.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.service, self.method)
    }
}

/// The live figures of one method.
pub struct MethodStatus {
    service: String,
    method: String,
    calls: AtomicU64,
    errors: AtomicU64,
    rejected: AtomicU64,
    concurrency: AtomicUsize,
    max_concurrency: AtomicUsize,
    latency: Mutex<LatencyWindows>,
}

impl MethodStatus {
    pub fn new(service: &str, method: &str) -> MethodStatus {
        MethodStatus {
            service: service.to_string(),
            method: method.to_string(),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            concurrency: AtomicUsize::new(0),
            max_concurrency: AtomicUsize::new(0),
            latency: Mutex::new(LatencyWindows::new(Instant::now())),
        }
    }

    /// 0 removes the limit.
    pub fn set_max_concurrency(&self, max: usize) {
        self.max_concurrency.store(max, Ordering::Release);
    }

    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency.load(Ordering::Acquire)
    }

    /// Counts a call in, unless the method is at its limit: then the call is
    /// counted as rejected and false returned (the caller answers `ELIMIT`
    /// and must not call [`MethodStatus::on_responded`]).
    pub fn on_requested(&self) -> bool {
        let now = self.concurrency.fetch_add(1, Ordering::AcqRel) + 1;
        let max = self.max_concurrency();
        if max > 0 && now > max {
            self.concurrency.fetch_sub(1, Ordering::AcqRel);
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// A call that [`MethodStatus::on_requested`] let in ended.
    pub fn on_responded(&self, failed: bool, latency: Duration) {
        self.concurrency.fetch_sub(1, Ordering::AcqRel);
        self.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency.lock().record(Instant::now(), micros);
    }

    /// Counts a call refused before reaching the method (the server's own
    /// limit), so the method's page shows it.
    pub fn on_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> MethodSnapshot {
        MethodSnapshot {
            service: self.service.clone(),
            method: self.method.clone(),
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            concurrency: self.concurrency.load(Ordering::Acquire),
            max_concurrency: self.max_concurrency(),
            latency: self.latency.lock().percentiles(Instant::now()),
        }
    }
}

/// The current window's histogram and the previous one's.
struct LatencyWindows {
    started: Instant,
    current: Histogram,
    previous: Histogram,
}

impl LatencyWindows {
    fn new(now: Instant) -> LatencyWindows {
        LatencyWindows { started: now, current: Histogram::default(), previous: Histogram::default() }
    }

    fn rotate(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.started);
        if age < WINDOW {
            return;
        }
        if age < WINDOW * 2 {
            self.previous = std::mem::take(&mut self.current);
        } else {
            // Quiet for two windows: nothing recent is left.
            self.previous = Histogram::default();
            self.current = Histogram::default();
        }
        self.started = now;
    }

    fn record(&mut self, now: Instant, micros: u64) {
        self.rotate(now);
        self.current.record(micros);
    }

    fn percentiles(&mut self, now: Instant) -> Percentiles {
        self.rotate(now);
        let mut both = self.previous.clone();
        both.merge(&self.current);
        both.percentiles()
    }
}

#[derive(Clone)]
struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: Box::new([0; BUCKETS]), total: 0, max: 0 }
    }
}

impl Histogram {
    fn record(&mut self, micros: u64) {
        if let Some(count) = self.counts.get_mut(bucket_of(micros)) {
            *count += 1;
        }
        self.total += 1;
        self.max = self.max.max(micros);
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    fn percentiles(&self) -> Percentiles {
        Percentiles {
            p50_us: self.quantile(500),
            p90_us: self.quantile(900),
            p99_us: self.quantile(990),
            p999_us: self.quantile(999),
            max_us: self.max,
            samples: self.total,
        }
    }

    /// The upper edge of the bucket holding the `per_mille` quantile, never
    /// above the largest value seen.
    fn quantile(&self, per_mille: u64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        // The rank of the sample at that quantile, 1-based, rounded up.
        let rank = (self.total * per_mille).div_ceil(1000).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return upper_edge(bucket).min(self.max);
            }
        }
        self.max
    }
}

/// Values below 2^SUB_BITS have a bucket each; above, each power of two is
/// split into 2^SUB_BITS buckets.
fn bucket_of(value: u64) -> usize {
    let sub = 1u64 << SUB_BITS;
    if value < sub {
        return value as usize;
    }
    let power = 63 - value.leading_zeros();
    let shift = power - SUB_BITS;
    let fraction = (value >> shift) - sub;
    ((power - SUB_BITS + 1) as usize) * (sub as usize) + fraction as usize
}

/// The largest value that falls into `bucket`.
fn upper_edge(bucket: usize) -> u64 {
    let sub = 1usize << SUB_BITS;
    if bucket < sub {
        return bucket as u64;
    }
    let group = bucket / sub - 1;
    let fraction = (bucket % sub) as u64;
    let shift = group as u32;
    let low = ((1u64 << SUB_BITS) + fraction).checked_shl(shift).unwrap_or(u64::MAX);
    let width = 1u64.checked_shl(shift).unwrap_or(u64::MAX);
    low.saturating_add(width - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_falls_in_a_bucket_whose_edge_is_not_below_it() {
        for value in (0..5000u64).chain([1 << 20, (1 << 20) + 12345, u64::MAX / 3, u64::MAX]) {
            let bucket = bucket_of(value);
            assert!(bucket < BUCKETS, "{value} -> {bucket}");
            assert!(upper_edge(bucket) >= value, "{value}: edge {}", upper_edge(bucket));
            if bucket > 0 {
                assert!(upper_edge(bucket - 1) < value, "{value}: previous edge {}", upper_edge(bucket - 1));
            }
        }
    }

    #[test]
    fn percentiles_are_within_a_bucket_of_the_truth() {
        let mut histogram = Histogram::default();
        for micros in 1..=10_000u64 {
            histogram.record(micros);
        }
        let p = histogram.percentiles();
        for (got, truth) in [(p.p50_us, 5000.0), (p.p90_us, 9000.0), (p.p99_us, 9900.0), (p.p999_us, 9990.0)] {
            let error = (got as f64 - truth).abs() / truth;
            assert!(error < 0.2, "{got} vs {truth}");
        }
        assert_eq!(p.max_us, 10_000);
        assert_eq!(p.samples, 10_000);
    }

    #[test]
    fn the_limit_refuses_the_call_over_it_and_lets_the_next_in_once_one_ended() {
        let status = MethodStatus::new("example.Echo", "Echo");
        status.set_max_concurrency(2);
        assert!(status.on_requested());
        assert!(status.on_requested());
        assert!(!status.on_requested());
        status.on_responded(false, Duration::from_millis(3));
        assert!(status.on_requested());
        status.on_responded(true, Duration::from_millis(5));
        let snapshot = status.snapshot();
        assert_eq!((snapshot.calls, snapshot.errors, snapshot.rejected), (2, 1, 1));
        assert_eq!((snapshot.concurrency, snapshot.max_concurrency), (1, 2));
        assert_eq!(snapshot.latency.samples, 2);
        assert!(snapshot.latency.p50_us >= 3000 && snapshot.latency.max_us == 5000, "{:?}", snapshot.latency);
        assert_eq!(snapshot.full_name(), "example.Echo.Echo");
    }

    #[test]
    fn windows_older_than_two_are_forgotten() {
        let start = Instant::now();
        let mut windows = LatencyWindows::new(start);
        windows.record(start, 100);
        assert_eq!(windows.percentiles(start + WINDOW).samples, 1);
        assert_eq!(windows.percentiles(start + WINDOW * 3 + WINDOW).samples, 0);
    }
}
