// Live counters of the stream library, read the way brpc users read bvars
// (brpc has no single equivalent: its socket and stream bvars are spread
// over many names). Cheap to read and always on.
//
//   brpc::StreamStats s = brpc::GetStreamStats();
//   LOG(INFO) << s.streams_alive << " streams, " << s.stream_writes_dropped << " writes dropped";

#ifndef BRPC_STREAM_STATS_H
#define BRPC_STREAM_STATS_H

#include <stdint.h>

#include "brpc_stream.h"

namespace brpc {

// Gauges (what is there now): sockets_alive, streams_alive, streams_created,
// streams_connected, streams_closing, streams_closed, writes_queued,
// stream_bytes_unconsumed.
// Every other field only grows. Fields are read one by one, so two of them
// may disagree by an event in flight. See brpc_stats in brpc_stream.h for
// each field's meaning.
struct StreamStats {
    uint64_t sockets_alive;
    uint64_t streams_alive;
    uint64_t streams_created;
    uint64_t streams_connected;
    uint64_t streams_closing;
    uint64_t streams_closed;
    uint64_t socket_bytes_read;
    uint64_t socket_bytes_written;
    uint64_t stream_messages_in;
    uint64_t stream_bytes_in;
    uint64_t stream_messages_out;
    uint64_t stream_bytes_out;
    uint64_t stream_writes;
    uint64_t stream_writes_dropped;
    uint64_t stream_bytes_dropped;
    uint64_t writes_queued;
    uint64_t writes_dropped;
    uint64_t bytes_dropped;
    uint64_t connections_accepted;
    uint64_t connections_connected;
    uint64_t connect_failures;
    uint64_t connections_broken;
    // DATA frames sent: one per message, more for a message longer than
    // StreamWriteMaxSegmentSize() (brpc/stream.h).
    uint64_t stream_data_frames_out;
    // Bytes written by streams with a window (max_buf_size > 0) that their
    // peers have not reported consumed yet; a stream's share goes when it
    // ends.
    uint64_t stream_bytes_unconsumed;
};

inline StreamStats GetStreamStats() {
    brpc_stats c;
    brpc_stats_get(&c);
    StreamStats s;
    s.sockets_alive = c.sockets_alive;
    s.streams_alive = c.streams_alive;
    s.streams_created = c.streams_created;
    s.streams_connected = c.streams_connected;
    s.streams_closing = c.streams_closing;
    s.streams_closed = c.streams_closed;
    s.socket_bytes_read = c.socket_bytes_read;
    s.socket_bytes_written = c.socket_bytes_written;
    s.stream_messages_in = c.stream_messages_in;
    s.stream_bytes_in = c.stream_bytes_in;
    s.stream_messages_out = c.stream_messages_out;
    s.stream_bytes_out = c.stream_bytes_out;
    s.stream_writes = c.stream_writes;
    s.stream_writes_dropped = c.stream_writes_dropped;
    s.stream_bytes_dropped = c.stream_bytes_dropped;
    s.writes_queued = c.writes_queued;
    s.writes_dropped = c.writes_dropped;
    s.bytes_dropped = c.bytes_dropped;
    s.connections_accepted = c.connections_accepted;
    s.connections_connected = c.connections_connected;
    s.connect_failures = c.connect_failures;
    s.connections_broken = c.connections_broken;
    s.stream_data_frames_out = c.stream_data_frames_out;
    s.stream_bytes_unconsumed = c.stream_bytes_unconsumed;
    return s;
}

}  // namespace brpc

#endif  // BRPC_STREAM_STATS_H
