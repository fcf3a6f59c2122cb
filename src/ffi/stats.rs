//! `brpc_stats_get`: the live counters for C and `brpc/stream_stats.h`.

#![allow(non_camel_case_types)]

use std::ffi::c_int;

use super::guard;
use crate::stats;

/// The library's counters at one moment (each read on its own, so two of
/// them may disagree by an event in flight). Gauges: `*_alive`,
/// `streams_created/connected/closing/closed`, `writes_queued`,
/// `stream_bytes_unconsumed`;
/// the others only grow.
#[repr(C)]
pub struct brpc_stats {
    /// Sockets not yet recycled: connections, and one per stream.
    pub sockets_alive: u64,
    /// Streams not yet recycled.
    pub streams_alive: u64,
    /// Streams by state: not connected yet (writes queue), connected,
    /// closing (CLOSE not sent yet), closed (last callbacks pending).
    pub streams_created: u64,
    pub streams_connected: u64,
    pub streams_closing: u64,
    pub streams_closed: u64,
    /// Bytes read from and written into TCP connections.
    pub socket_bytes_read: u64,
    pub socket_bytes_written: u64,
    /// Stream messages received whole, and their bytes.
    pub stream_messages_in: u64,
    pub stream_bytes_in: u64,
    /// Stream messages handed to their connection, and their bytes.
    pub stream_messages_out: u64,
    pub stream_bytes_out: u64,
    /// Writes `brpc_stream_write` accepted.
    pub stream_writes: u64,
    /// Accepted stream writes never delivered, as `on_failed` reported them.
    pub stream_writes_dropped: u64,
    pub stream_bytes_dropped: u64,
    /// Data writes queued on any socket and not yet sent or dropped.
    pub writes_queued: u64,
    /// Data writes any socket accepted and then failed, and their bytes.
    pub writes_dropped: u64,
    pub bytes_dropped: u64,
    /// Connections servers accepted.
    pub connections_accepted: u64,
    /// Client connects that succeeded, and that failed.
    pub connections_connected: u64,
    pub connect_failures: u64,
    /// Established connections that failed other than by an orderly close
    /// of either side (a reset, a read or write error, a timeout, a bad frame).
    pub connections_broken: u64,
    /// DATA frames handed to their connection: one per message, more for a
    /// message longer than `brpc_stream_write_max_segment_size()`.
    pub stream_data_frames_out: u64,
    /// Gauge: bytes written by streams with a window (`max_buf_size > 0`)
    /// their peers have not reported consumed yet; a stream's share goes
    /// when it ends.
    pub stream_bytes_unconsumed: u64,
}

/// Fills `*out` with the counters. 0, or `EINVAL` for NULL. Cheap (a few
/// relaxed loads): fine to call often.
#[no_mangle]
pub unsafe extern "C" fn brpc_stats_get(out: *mut brpc_stats) -> c_int {
    guard(|| {
        if out.is_null() {
            return libc::EINVAL;
        }
        let s = stats::snapshot();
        let c = brpc_stats {
            sockets_alive: s.sockets_alive,
            streams_alive: s.streams_alive,
            streams_created: s.streams_created,
            streams_connected: s.streams_connected,
            streams_closing: s.streams_closing,
            streams_closed: s.streams_closed,
            socket_bytes_read: s.socket_bytes_read,
            socket_bytes_written: s.socket_bytes_written,
            stream_messages_in: s.stream_messages_in,
            stream_bytes_in: s.stream_bytes_in,
            stream_messages_out: s.stream_messages_out,
            stream_bytes_out: s.stream_bytes_out,
            stream_writes: s.stream_writes,
            stream_writes_dropped: s.stream_writes_dropped,
            stream_bytes_dropped: s.stream_bytes_dropped,
            writes_queued: s.writes_queued,
            writes_dropped: s.writes_dropped,
            bytes_dropped: s.bytes_dropped,
            connections_accepted: s.connections_accepted,
            connections_connected: s.connections_connected,
            connect_failures: s.connect_failures,
            connections_broken: s.connections_broken,
            stream_data_frames_out: s.stream_data_frames_out,
            stream_bytes_unconsumed: s.stream_bytes_unconsumed,
        };
        // SAFETY: a writable brpc_stats per the contract.
        unsafe { out.write(c) };
        0
    })
}
