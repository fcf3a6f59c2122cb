// brpc's streaming RPC API over the C ABI in brpc_stream.h: header-only.
//
// A client creates streams on a Controller before the call; the server's
// method accepts them before it responds; the response connects them. Both
// sides then write messages that the other side's StreamInputHandler gets in
// order, with flow control (max_buf_size bytes the peer has not consumed).
//
// Unlike brpc, user code runs on OS threads of the library's worker pool,
// never on the I/O threads: a handler may block (in StreamWait, in a
// synchronous call) without stalling the connection. A stream's callbacks run
// one at a time, in order; on_failed (if any) before on_closed, each at most
// once, on_closed exactly once and last.
//
// A stream closed before it connected reports the messages it had accepted
// but never sent through on_failed (ECONNRESET), instead of dropping them
// silently as brpc does.
//
// A call that fails keeps nothing it was given: after StreamCreate or
// StreamAccept returned -1, the handler in its options is never called (the
// program may delete it at once), and streams a server refuses (not
// accepted, or beyond what it accepted) are reset to the peer without any
// local callback. Callbacks of a call that succeeded run exactly once
// (on_closed; StreamWait's on_writable, even for an unknown stream).

#ifndef BRPC_STREAM_H
#define BRPC_STREAM_H

#include <sys/uio.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

#include "brpc_stream.h"
#include "brpc/controller.h"
#include "butil/iobuf.h"
#include "butil/scoped_generic.h"

namespace brpc {

typedef brpc_stream_id StreamId;
typedef std::vector<StreamId> StreamIds;
const StreamId INVALID_STREAM_ID = (StreamId)-1;

namespace detail {
struct StreamIdTraits;
}

// Closes the stream it holds when it goes out of scope.
typedef butil::ScopedGeneric<StreamId, detail::StreamIdTraits> ScopedStream;

class StreamInputHandler {
public:
    virtual ~StreamInputHandler() {}
    // Messages in the order they were written, at most
    // StreamOptions::messages_in_batch at a time. The IOBufs are the
    // handler's to read, cut or swap out during the call. The return value
    // is ignored, as in brpc.
    virtual int on_received_messages(StreamId id, butil::IOBuf* const messages[], size_t size) = 0;
    // No DATA frame arrived for idle_timeout_ms, counted from the last one
    // (or from the last on_idle_timeout, or the stream's start).
    virtual void on_idle_timeout(StreamId id) = 0;
    // The stream is closed: the last callback it gets.
    virtual void on_closed(StreamId id) = 0;
    // The stream closed abnormally (peer reset, connection lost, setup call
    // failed, accepted messages dropped); runs just before on_closed.
    virtual void on_failed(StreamId id, int error_code, const std::string& error_text) {
        (void)id;
        (void)error_code;
        (void)error_text;
    }
};

struct StreamOptions {
    StreamOptions()
        : min_buf_size(1024 * 1024),
          max_buf_size(2 * 1024 * 1024),
          idle_timeout_ms(-1),
          messages_in_batch(128),
          handler(NULL) {}

    // Kept for brpc compatibility; the window is max_buf_size.
    int min_buf_size;
    // Bytes written but not yet consumed by the peer's handler that make
    // StreamWrite return EAGAIN. <= 0: no limit (and no feedback asked).
    // It is also the window the peer gets (brpc's writers keep to their
    // own max_buf_size, so give a stream at least the writer's): a peer
    // that starts a message while max_buf_size bytes already wait for this
    // side's handler ignores FEEDBACK, and the stream is reset. This side's
    // on_failed gets EOVERCROWDED with a text naming the window, the peer
    // gets RST (its on_failed: ECONNRESET), and the queued messages are
    // dropped. A message reassembled from DATA segments past 64 MiB resets
    // the stream the same way with EMSGSIZE. With max_buf_size <= 0 the
    // bound is 64 MiB.
    int max_buf_size;
    // on_idle_timeout after this long without a DATA frame; -1: never.
    long idle_timeout_ms;
    // Most messages per on_received_messages call.
    size_t messages_in_batch;
    // Receives this side's messages and events. NULL: the peer may not
    // write (its StreamWrite returns EBADF). Must outlive the stream's
    // on_closed.
    StreamInputHandler* handler;
};

struct StreamWriteOptions {
    StreamWriteOptions() : write_in_background(false) {}
    // The calling thread never writes into the socket itself; a worker of
    // the library's pool writes the bytes.
    bool write_in_background;
};

// [Client] Creates a stream that the next call made with `cntl` sets up.
// Messages written before the call connects it are queued. options NULL:
// defaults (no handler). Returns 0, or -1 (e.g. cntl already has streams).
int StreamCreate(StreamId* request_stream, Controller& cntl, const StreamOptions* options);

// [Client] Creates `request_stream_size` streams for one call, appended to
// the empty `request_streams`. 0 or -1.
//
// When the call that sets the streams up fails (timeout, connect failure,
// error response, cancel), every one of its streams has run on_failed and
// on_closed, and they have returned, before CallMethod returns (a
// synchronous call) or before done->Run() (an asynchronous one): the
// program may destroy the handler as soon as it sees cntl.Failed().
int StreamCreate(StreamIds& request_streams, int request_stream_size, Controller& cntl,
                 const StreamOptions* options);

// [Server] Accepts the one stream the request carries, before responding.
// -1 when there is none (cntl.has_remote_stream() is false), it was
// accepted already, or the client sent several (none is accepted; the
// client's streams fail when the response goes without them).
//
// A StreamCreate or StreamAccept that returns -1 keeps nothing of
// `options`: its handler is never called, so the program may delete it.
int StreamAccept(StreamId* response_stream, Controller& cntl, const StreamOptions* options);

// [Server] Accepts every stream the request carries, appended in the
// client's order to the empty `response_streams`. 0 or -1.
int StreamAccept(StreamIds& response_streams, Controller& cntl, const StreamOptions* options);

// Queues `message` for the peer: under 16 KiB its bytes are copied once,
// behind the frame header; from 16 KiB on its blocks are shared (the
// IOBuf's bytes are immutable) and go to the socket as they are. Returns 0,
// or an error number:
// EAGAIN when the peer's unconsumed bytes reached max_buf_size (StreamWait
// for room), EINVAL for a closed or unknown stream, EBADF when the peer
// accepted the stream without a handler.
int StreamWrite(StreamId stream_id, const butil::IOBuf& message,
                const StreamWriteOptions* options = NULL);

// Waits until the stream is writable (0), `due_time` (absolute,
// CLOCK_REALTIME; NULL: no limit) passes (ETIMEDOUT), or the stream closes
// (EINVAL).
int StreamWait(StreamId stream_id, const timespec* due_time);

// As above, but returns at once; `on_writable(stream_id, arg, error_code)`
// runs exactly once, on a worker thread, with the result.
void StreamWait(StreamId stream_id, const timespec* due_time,
                void (*on_writable)(StreamId stream_id, void* arg, int error_code), void* arg);

// Closes the stream: later writes fail, waiters wake with EINVAL, the peer
// gets everything written before, then CLOSE. Any number of times, from any
// thread (callbacks too). 0, or EINVAL when the stream is unknown or
// already closed.
int StreamClose(StreamId stream_id);

// brpc's gflag stream_write_max_segment_size, process-wide: a message longer
// than this many bytes is sent as several DATA frames of at most this
// payload, which the peer joins back into one message (brpc's default,
// 512 MiB, never splits a message the peer would take). Applies to
// messages written from then on. 0, or EINVAL for 0 (the size stays).
// brpc::GetStreamStats().stream_data_frames_out counts the frames.
int SetStreamWriteMaxSegmentSize(uint64_t max_segment_size);
uint64_t StreamWriteMaxSegmentSize();

namespace detail {

struct StreamIdTraits {
    static StreamId InvalidValue() { return INVALID_STREAM_ID; }
    static void Free(StreamId id) {
        if (id != INVALID_STREAM_ID) {
            StreamClose(id);
        }
    }
};

// ---- implementation ----


// Messages from this size on are written without a copy: StreamWrite lends
// the IOBuf's blocks to the library, which sends them as they are.
const size_t kZeroCopyBytes = 16 * 1024;

// Received messages from this size on reach the handler without a copy: the
// IOBuf's block is the library's read buffer, held (brpc_bytes_retain) until
// the last IOBuf sharing it lets go (brpc_bytes_release, once). Below it,
// copying a batch of messages into a few shared blocks costs less than a
// retained reference per message. A handler that keeps such an IOBuf keeps
// the whole read buffer the message arrived in (64 KiB, or the message's
// own size when larger) alive with it, as brpc's IOBuf keeps its block.
const size_t kLendReceivedBytes = 1024;

inline void ReleaseLibraryBytes(void* bytes) { brpc_bytes_release(static_cast<brpc_bytes*>(bytes)); }

// The C callbacks, bound to the StreamInputHandler in handler_arg. noexcept:
// an exception must not unwind into the library (it terminates, as an
// uncaught exception in a brpc callback would).
inline int OnReceivedMessages(void* arg, brpc_stream_id id, const brpc_stream_message* messages,
                              size_t n) noexcept {
    // Small messages: one copy of them into shared blocks, each cut out of
    // it (a few allocations per batch). Larger ones: lent, not copied.
    butil::IOBuf batch;
    std::vector<butil::IOBuf> bufs(n);
    std::vector<butil::IOBuf*> pointers(n);
    for (size_t i = 0; i < n; ++i) {
        brpc_bytes* shared =
            messages[i].len >= kLendReceivedBytes ? brpc_bytes_retain(messages[i].bytes) : NULL;
        if (shared != NULL) {
            bufs[i].append_user_data(const_cast<uint8_t*>(messages[i].data), messages[i].len,
                                     [shared](void*) { ReleaseLibraryBytes(shared); });
        } else {
            batch.append(messages[i].data, messages[i].len);
            batch.cutn(&bufs[i], messages[i].len);
        }
        pointers[i] = &bufs[i];
    }
    return static_cast<StreamInputHandler*>(arg)->on_received_messages(id, pointers.data(), n);
}

inline void OnIdleTimeout(void* arg, brpc_stream_id id) noexcept {
    static_cast<StreamInputHandler*>(arg)->on_idle_timeout(id);
}

inline void OnClosed(void* arg, brpc_stream_id id) noexcept {
    static_cast<StreamInputHandler*>(arg)->on_closed(id);
}

inline void OnFailed(void* arg, brpc_stream_id id, int error_code, const char* error_text) noexcept {
    static_cast<StreamInputHandler*>(arg)->on_failed(
        id, error_code, std::string(error_text != NULL ? error_text : ""));
}

inline brpc_stream_options ToCOptions(const StreamOptions* options) {
    const StreamOptions chosen = options != NULL ? *options : StreamOptions();
    brpc_stream_options c;
    brpc_stream_options_init(&c);
    c.min_buf_size = chosen.min_buf_size;
    c.max_buf_size = chosen.max_buf_size;
    c.idle_timeout_ms = chosen.idle_timeout_ms;
    c.messages_in_batch = chosen.messages_in_batch;
    if (chosen.handler != NULL) {
        c.has_handler = true;
        c.handler_arg = chosen.handler;
        c.on_received_messages = &OnReceivedMessages;
        c.on_idle_timeout = &OnIdleTimeout;
        c.on_closed = &OnClosed;
        c.on_failed = &OnFailed;
    }
    return c;
}

// Milliseconds from now until the absolute CLOCK_REALTIME `due_time`,
// rounded up (0 when past); -1 (no limit) for NULL.
inline int64_t TimeoutMsUntil(const timespec* due_time) {
    if (due_time == NULL) {
        return -1;
    }
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    const int64_t ns = ((int64_t)due_time->tv_sec - (int64_t)now.tv_sec) * 1000000000LL +
                       ((int64_t)due_time->tv_nsec - (int64_t)now.tv_nsec);
    if (ns <= 0) {
        return 0;
    }
    return (ns + 999999) / 1000000;
}

}  // namespace detail

inline int StreamCreate(StreamIds& request_streams, int request_stream_size, Controller& cntl,
                        const StreamOptions* options) {
    if (!request_streams.empty() || request_stream_size <= 0) {
        return -1;
    }
    const brpc_stream_options c = detail::ToCOptions(options);
    StreamIds ids((size_t)request_stream_size, INVALID_STREAM_ID);
    if (brpc_stream_create(cntl.c_controller(), ids.size(), &c, ids.data()) != 0) {
        return -1;
    }
    request_streams.swap(ids);
    return 0;
}

inline int StreamCreate(StreamId* request_stream, Controller& cntl, const StreamOptions* options) {
    if (request_stream == NULL) {
        return -1;
    }
    StreamIds ids;
    if (StreamCreate(ids, 1, cntl, options) != 0) {
        return -1;
    }
    *request_stream = ids[0];
    return 0;
}

namespace detail {
// Accepts at most `cap` streams; a request carrying more is refused whole,
// with nothing of `options` kept (the caller may free its handler).
inline int AcceptUpTo(StreamIds& response_streams, size_t cap, Controller& cntl, const StreamOptions* options) {
    if (!response_streams.empty()) {
        return -1;
    }
    const brpc_stream_options c = ToCOptions(options);
    StreamIds ids(cap, INVALID_STREAM_ID);
    size_t n = 0;
    if (brpc_stream_accept(cntl.c_controller(), &c, ids.data(), ids.size(), &n) != 0) {
        return -1;
    }
    ids.resize(n);
    response_streams.swap(ids);
    return 0;
}
}  // namespace detail

inline int StreamAccept(StreamIds& response_streams, Controller& cntl, const StreamOptions* options) {
    // No request reaches a method with more streams than a call may set up.
    return detail::AcceptUpTo(response_streams, BRPC_MAX_STREAMS_PER_CALL, cntl, options);
}

// brpc's rule: the single form cannot accept a request's several streams;
// then it fails and the handler is never used.
inline int StreamAccept(StreamId* response_stream, Controller& cntl, const StreamOptions* options) {
    if (response_stream == NULL) {
        return -1;
    }
    StreamIds ids;
    if (detail::AcceptUpTo(ids, 1, cntl, options) != 0) {
        return -1;
    }
    *response_stream = ids[0];
    return 0;
}

namespace detail {
inline void DeleteLentIOBuf(void* buf) { delete static_cast<butil::IOBuf*>(buf); }
}  // namespace detail

inline int StreamWrite(StreamId stream_id, const butil::IOBuf& message, const StreamWriteOptions* options) {
    const bool background = options != NULL && options->write_in_background;
    const size_t blocks = message.backing_block_num();
    if (blocks > (size_t)INT32_MAX) {
        return EINVAL;
    }
    if (message.size() >= detail::kZeroCopyBytes) {
        // Large: lend the blocks of a (block-sharing) copy of the message,
        // which the library deletes when it has sent them.
        butil::IOBuf* lent = new butil::IOBuf(message);
        std::vector<brpc_stream_block> lent_blocks(blocks);
        for (size_t i = 0; i < blocks; ++i) {
            const butil::StringPiece block = lent->backing_block(i);
            lent_blocks[i].data = reinterpret_cast<const uint8_t*>(block.data());
            lent_blocks[i].len = block.size();
        }
        return brpc_stream_write_blocks(stream_id, lent_blocks.data(), blocks, &detail::DeleteLentIOBuf,
                                        lent, background);
    }
    // Small: the library copies the bytes; the iovec is on the stack for
    // the usual few blocks.
    iovec inline_iov[8];
    std::vector<iovec> heap_iov;
    iovec* iov = inline_iov;
    if (blocks > sizeof(inline_iov) / sizeof(inline_iov[0])) {
        heap_iov.resize(blocks);
        iov = heap_iov.data();
    }
    for (size_t i = 0; i < blocks; ++i) {
        const butil::StringPiece block = message.backing_block(i);
        iov[i].iov_base = const_cast<char*>(block.data());
        iov[i].iov_len = block.size();
    }
    return brpc_stream_write(stream_id, iov, (int)blocks, background);
}

inline int StreamWait(StreamId stream_id, const timespec* due_time) {
    return brpc_stream_wait(stream_id, detail::TimeoutMsUntil(due_time));
}

inline void StreamWait(StreamId stream_id, const timespec* due_time,
                       void (*on_writable)(StreamId stream_id, void* arg, int error_code), void* arg) {
    // on_writable runs exactly once, with EINVAL for a closed or unknown id.
    brpc_stream_wait_async(stream_id, detail::TimeoutMsUntil(due_time), on_writable, arg);
}

inline int StreamClose(StreamId stream_id) { return brpc_stream_close(stream_id); }

inline int SetStreamWriteMaxSegmentSize(uint64_t max_segment_size) {
    return brpc_stream_set_write_max_segment_size(max_segment_size);
}

inline uint64_t StreamWriteMaxSegmentSize() { return brpc_stream_write_max_segment_size(); }

}  // namespace brpc

#endif  // BRPC_STREAM_H
