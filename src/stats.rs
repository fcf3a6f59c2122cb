//! Live counters, read the way brpc users read bvars: what is alive now and
//! how much went through. Each counter is one relaxed atomic on a cache line
//! of its own, so counting costs an uncontended add and stays on in
//! production; a [`snapshot`] is not atomic across counters.
//!
//! Gauges (`*_alive`, `streams_*` by state, `writes_queued`,
//! `stream_bytes_unconsumed`) go up
//! and down and read the current value; the rest only grow.

use std::sync::atomic::{AtomicU64, Ordering};

/// One counter, alone on its cache line (two lines: adjacent-line
/// prefetching pairs them on x86).
#[repr(align(128))]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn inc(&self) {
        self.add(1);
    }

    /// Gauges only; every `dec` follows the `inc` it undoes.
    pub(crate) fn dec(&self) {
        self.sub(1);
    }

    /// Gauges only; every `sub` follows the `add` it undoes.
    pub(crate) fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

pub(crate) static SOCKETS_ALIVE: Counter = Counter::new();
pub(crate) static STREAMS_ALIVE: Counter = Counter::new();
pub(crate) static STREAMS_CREATED: Counter = Counter::new();
pub(crate) static STREAMS_CONNECTED: Counter = Counter::new();
pub(crate) static STREAMS_CLOSING: Counter = Counter::new();
pub(crate) static STREAMS_CLOSED: Counter = Counter::new();
pub(crate) static SOCKET_BYTES_READ: Counter = Counter::new();
pub(crate) static SOCKET_BYTES_WRITTEN: Counter = Counter::new();
pub(crate) static STREAM_MESSAGES_IN: Counter = Counter::new();
pub(crate) static STREAM_BYTES_IN: Counter = Counter::new();
pub(crate) static STREAM_MESSAGES_OUT: Counter = Counter::new();
pub(crate) static STREAM_BYTES_OUT: Counter = Counter::new();
/// DATA frames beyond the first of segmented messages (see
/// `Stats::stream_data_frames_out`): nothing counted per unsegmented message.
pub(crate) static STREAM_EXTRA_SEGMENTS_OUT: Counter = Counter::new();
pub(crate) static STREAM_BYTES_UNCONSUMED: Counter = Counter::new();
pub(crate) static STREAM_WRITES: Counter = Counter::new();
pub(crate) static STREAM_WRITES_DROPPED: Counter = Counter::new();
pub(crate) static STREAM_BYTES_DROPPED: Counter = Counter::new();
pub(crate) static WRITES_QUEUED: Counter = Counter::new();
pub(crate) static WRITES_DROPPED: Counter = Counter::new();
pub(crate) static BYTES_DROPPED: Counter = Counter::new();
pub(crate) static CONNECTIONS_ACCEPTED: Counter = Counter::new();
pub(crate) static CONNECTIONS_CONNECTED: Counter = Counter::new();
pub(crate) static CONNECT_FAILURES: Counter = Counter::new();
pub(crate) static CONNECTIONS_BROKEN: Counter = Counter::new();

/// The counters at one moment (each read on its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sockets not yet recycled: connections, and one per stream.
    pub sockets_alive: u64,
    /// Streams not yet recycled (the sum of the four states below, give or
    /// take a stream between two of them).
    pub streams_alive: u64,
    /// Streams created and not connected yet: their writes queue.
    pub streams_created: u64,
    pub streams_connected: u64,
    /// Closed by either side, the CLOSE not sent yet.
    pub streams_closing: u64,
    /// Ended, last callbacks pending or references still held.
    pub streams_closed: u64,
    /// Bytes read from and written into TCP connections (stream frames included).
    pub socket_bytes_read: u64,
    pub socket_bytes_written: u64,
    /// Stream messages received whole, and their payload bytes.
    pub stream_messages_in: u64,
    pub stream_bytes_in: u64,
    /// Stream messages handed to their host connection, and their bytes.
    pub stream_messages_out: u64,
    pub stream_bytes_out: u64,
    /// DATA frames handed to their host connection: one per message, more
    /// for a message longer than the maximum segment size
    /// (`stream::set_write_max_segment_size`).
    pub stream_data_frames_out: u64,
    /// Gauge: bytes written by windowed streams (`max_buf_size > 0`) that
    /// their peers have not reported consumed yet (brpc's streams'
    /// unconsumed size); a stream's share goes when it ends.
    pub stream_bytes_unconsumed: u64,
    /// Writes `StreamWrite` accepted.
    pub stream_writes: u64,
    /// Accepted stream writes never delivered, as their streams' `on_failed`
    /// reported them (counted when a stream's last callbacks are due).
    pub stream_writes_dropped: u64,
    pub stream_bytes_dropped: u64,
    /// Data writes queued on any socket (stream or connection) and not yet
    /// sent or dropped.
    pub writes_queued: u64,
    /// Data writes a socket accepted and then failed, and their bytes.
    pub writes_dropped: u64,
    pub bytes_dropped: u64,
    /// Connections a server accepted.
    pub connections_accepted: u64,
    /// Client connects that succeeded, and that failed (refused, timed out, ...).
    pub connections_connected: u64,
    pub connect_failures: u64,
    /// Established connections that failed other than by an orderly close
    /// of either side (a reset, a read or write error, a timeout, a bad frame).
    pub connections_broken: u64,
}

/// Reads every counter.
pub fn snapshot() -> Stats {
    Stats {
        sockets_alive: SOCKETS_ALIVE.get(),
        streams_alive: STREAMS_ALIVE.get(),
        streams_created: STREAMS_CREATED.get(),
        streams_connected: STREAMS_CONNECTED.get(),
        streams_closing: STREAMS_CLOSING.get(),
        streams_closed: STREAMS_CLOSED.get(),
        socket_bytes_read: SOCKET_BYTES_READ.get(),
        socket_bytes_written: SOCKET_BYTES_WRITTEN.get(),
        stream_messages_in: STREAM_MESSAGES_IN.get(),
        stream_bytes_in: STREAM_BYTES_IN.get(),
        stream_messages_out: STREAM_MESSAGES_OUT.get(),
        stream_bytes_out: STREAM_BYTES_OUT.get(),
        stream_data_frames_out: STREAM_MESSAGES_OUT.get() + STREAM_EXTRA_SEGMENTS_OUT.get(),
        stream_bytes_unconsumed: STREAM_BYTES_UNCONSUMED.get(),
        stream_writes: STREAM_WRITES.get(),
        stream_writes_dropped: STREAM_WRITES_DROPPED.get(),
        stream_bytes_dropped: STREAM_BYTES_DROPPED.get(),
        writes_queued: WRITES_QUEUED.get(),
        writes_dropped: WRITES_DROPPED.get(),
        bytes_dropped: BYTES_DROPPED.get(),
        connections_accepted: CONNECTIONS_ACCEPTED.get(),
        connections_connected: CONNECTIONS_CONNECTED.get(),
        connect_failures: CONNECT_FAILURES.get(),
        connections_broken: CONNECTIONS_BROKEN.get(),
    }
}
