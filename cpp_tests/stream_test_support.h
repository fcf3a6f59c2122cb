// What the stream tests share: a handler that records every callback in
// order, a loopback server running a bench.StreamService whose Open the test
// supplies, raw brpc frames (read, write, decode) and a raw TCP peer.

#ifndef BRPC_STREAM_CPP_TESTS_STREAM_TEST_SUPPORT_H
#define BRPC_STREAM_CPP_TESTS_STREAM_TEST_SUPPORT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "brpc/channel.h"
#include "brpc/server.h"
#include "brpc/stream.h"
#include "brpc_meta_test.pb.h"
#include "stream_service.pb.h"
#include "wait_for.h"

namespace stream_test {

using Clock = std::chrono::steady_clock;

using test_support::WaitFor;

// An absolute CLOCK_REALTIME time `ms` from now, as StreamWait takes.
inline timespec RealtimeIn(int64_t ms) {
    timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (ms % 1000) * 1000000;
    if (t.tv_nsec >= 1000000000) {
        t.tv_sec += 1;
        t.tv_nsec -= 1000000000;
    }
    return t;
}

inline butil::IOBuf Buf(const std::string& s) {
    butil::IOBuf b;
    b.append(s);
    return b;
}

// Writes, waiting for room (up to 10 s) while the window is full.
inline int WriteWaiting(brpc::StreamId id, const butil::IOBuf& message) {
    for (;;) {
        const int rc = brpc::StreamWrite(id, message);
        if (rc != EAGAIN) {
            return rc;
        }
        const timespec due = RealtimeIn(10000);
        const int wait_rc = brpc::StreamWait(id, &due);
        if (wait_rc != 0) {
            return wait_rc;
        }
    }
}

// True when `text` says `count` followed by `unit` (e.g. "3 message").
inline bool Names(const std::string& text, size_t count, const std::string& unit) {
    return text.find(std::to_string(count) + " " + unit) != std::string::npos;
}

// One callback, as a handler saw it.
struct Event {
    enum Kind { kMessages, kIdle, kFailed, kClosed };
    Kind kind;
    brpc::StreamId id;
    int error_code;
    std::string error_text;
};

// Records every callback of every stream it handles, in order. Optionally
// holds on_received_messages until released (a consumer that is slow), or
// runs `on_messages` inside it (echo, ping-pong).
class RecordingHandler : public brpc::StreamInputHandler {
public:
    int on_received_messages(brpc::StreamId id, butil::IOBuf* const messages[], size_t size) override {
        std::vector<std::string> batch;
        for (size_t i = 0; i < size; ++i) {
            batch.push_back(messages[i]->to_string());
        }
        {
            std::lock_guard<std::mutex> g(mu_);
            events_.push_back(Event{Event::kMessages, id, 0, std::string()});
            std::vector<std::string>& received = received_[id];
            received.insert(received.end(), batch.begin(), batch.end());
            for (size_t i = 0; i < batch.size(); ++i) {
                bytes_ += batch[i].size();
            }
            ++batches_;
        }
        // A held consumer: bounded, so a broken test cannot hang.
        WaitFor([this] { return !held_.load(); }, 20);
        if (on_messages) {
            on_messages(id, batch);
        }
        return 0;
    }
    void on_idle_timeout(brpc::StreamId id) override { Record(Event{Event::kIdle, id, 0, std::string()}); }
    void on_failed(brpc::StreamId id, int error_code, const std::string& error_text) override {
        Record(Event{Event::kFailed, id, error_code, error_text});
    }
    void on_closed(brpc::StreamId id) override { Record(Event{Event::kClosed, id, 0, std::string()}); }

    void Hold() { held_ = true; }
    void Release() { held_ = false; }

    // Runs inside on_received_messages, with the batch as strings.
    std::function<void(brpc::StreamId, const std::vector<std::string>&)> on_messages;

    std::vector<Event> events() {
        std::lock_guard<std::mutex> g(mu_);
        return events_;
    }
    // The events other than message batches, of one stream.
    std::vector<Event> lifecycle(brpc::StreamId id) {
        std::lock_guard<std::mutex> g(mu_);
        std::vector<Event> out;
        for (size_t i = 0; i < events_.size(); ++i) {
            if (events_[i].id == id && events_[i].kind != Event::kMessages) {
                out.push_back(events_[i]);
            }
        }
        return out;
    }
    std::vector<std::string> received(brpc::StreamId id) {
        std::lock_guard<std::mutex> g(mu_);
        return received_[id];
    }
    size_t received_count(brpc::StreamId id) {
        std::lock_guard<std::mutex> g(mu_);
        return received_[id].size();
    }
    size_t total_bytes() {
        std::lock_guard<std::mutex> g(mu_);
        return bytes_;
    }
    int count(Event::Kind kind, brpc::StreamId id) {
        std::lock_guard<std::mutex> g(mu_);
        int n = 0;
        for (size_t i = 0; i < events_.size(); ++i) {
            n += events_[i].kind == kind && events_[i].id == id;
        }
        return n;
    }
    int count(Event::Kind kind) {
        std::lock_guard<std::mutex> g(mu_);
        int n = 0;
        for (size_t i = 0; i < events_.size(); ++i) {
            n += events_[i].kind == kind;
        }
        return n;
    }
    // The streams that got at least one callback, in order of the first.
    std::vector<brpc::StreamId> streams() {
        std::lock_guard<std::mutex> g(mu_);
        std::vector<brpc::StreamId> out;
        for (size_t i = 0; i < events_.size(); ++i) {
            bool seen = false;
            for (size_t j = 0; j < out.size(); ++j) {
                seen = seen || out[j] == events_[i].id;
            }
            if (!seen) {
                out.push_back(events_[i].id);
            }
        }
        return out;
    }
    bool WaitClosed(brpc::StreamId id, double seconds = 10) {
        return WaitFor([&] { return count(Event::kClosed, id) > 0; }, seconds);
    }

private:
    void Record(const Event& e) {
        std::lock_guard<std::mutex> g(mu_);
        events_.push_back(e);
    }

    std::mutex mu_;
    std::vector<Event> events_;
    std::map<brpc::StreamId, std::vector<std::string> > received_;
    size_t bytes_ = 0;
    size_t batches_ = 0;
    std::atomic<bool> held_{false};
};

// A stream's lifecycle events as a short string ("F(104) C"), for messages.
inline std::string Describe(const std::vector<Event>& events) {
    std::string out;
    for (size_t i = 0; i < events.size(); ++i) {
        if (!out.empty()) {
            out += " ";
        }
        switch (events[i].kind) {
            case Event::kMessages: out += "M"; break;
            case Event::kIdle: out += "I"; break;
            case Event::kFailed:
                out += "F(" + std::to_string(events[i].error_code) + ",'" + events[i].error_text + "')";
                break;
            case Event::kClosed: out += "C"; break;
        }
    }
    return out;
}

// Checks that a stream's lifecycle ended as "on_failed(code) then
// on_closed", each once (idle timeouts before them are allowed).
inline void ExpectFailedThenClosed(const std::vector<Event>& lifecycle, int* code, std::string* text) {
    std::vector<Event> ends;
    for (size_t i = 0; i < lifecycle.size(); ++i) {
        if (lifecycle[i].kind != Event::kIdle) {
            ends.push_back(lifecycle[i]);
        }
    }
    ASSERT_EQ(2u, ends.size()) << Describe(lifecycle);
    EXPECT_EQ(Event::kFailed, ends[0].kind) << Describe(lifecycle);
    EXPECT_EQ(Event::kClosed, ends[1].kind) << Describe(lifecycle);
    *code = ends[0].error_code;
    *text = ends[0].error_text;
}

// Checks that a stream closed normally: on_closed once, no on_failed.
inline void ExpectClosedCleanly(const std::vector<Event>& lifecycle) {
    int closed = 0;
    for (size_t i = 0; i < lifecycle.size(); ++i) {
        EXPECT_NE(Event::kFailed, lifecycle[i].kind) << Describe(lifecycle);
        closed += lifecycle[i].kind == Event::kClosed;
    }
    EXPECT_EQ(1, closed) << Describe(lifecycle);
    ASSERT_FALSE(lifecycle.empty());
    EXPECT_EQ(Event::kClosed, lifecycle.back().kind) << Describe(lifecycle);
}

// bench.StreamService whose Open runs the test's function.
class FunctionService : public bench::StreamService {
public:
    typedef std::function<void(brpc::Controller*, const bench::OpenRequest*, bench::OpenResponse*,
                               google::protobuf::Closure*)>
        OpenFn;
    explicit FunctionService(OpenFn fn) : fn_(fn) {}
    void Open(google::protobuf::RpcController* cntl, const bench::OpenRequest* request,
              bench::OpenResponse* response, google::protobuf::Closure* done) override {
        ++calls;
        fn_(static_cast<brpc::Controller*>(cntl), request, response, done);
    }
    std::atomic<int> calls{0};

private:
    OpenFn fn_;
};

// Open that accepts every stream with `options` and answers "accepted";
// the accepted ids are kept in `accepted`.
struct AcceptingService {
    explicit AcceptingService(const brpc::StreamOptions& o)
        : options(o), service([this](brpc::Controller* cntl, const bench::OpenRequest*,
                                     bench::OpenResponse* response, google::protobuf::Closure* done) {
              brpc::ClosureGuard guard(done);
              brpc::StreamIds ids;
              if (brpc::StreamAccept(ids, *cntl, &options) != 0) {
                  cntl->SetFailed(EINVAL, "StreamAccept failed");
                  return;
              }
              {
                  std::lock_guard<std::mutex> g(mu);
                  accepted.insert(accepted.end(), ids.begin(), ids.end());
              }
              response->set_status("accepted");
          }) {}
    brpc::StreamIds accepted_ids() {
        std::lock_guard<std::mutex> g(mu);
        return accepted;
    }
    brpc::StreamOptions options;
    std::mutex mu;
    brpc::StreamIds accepted;
    FunctionService service;
};

// A brpc::Server on 127.0.0.1 (free port) serving `service`.
class LoopbackServer {
public:
    explicit LoopbackServer(google::protobuf::Service* service) {
        EXPECT_EQ(0, server_.AddService(service, brpc::SERVER_DOESNT_OWN_SERVICE));
        EXPECT_EQ(0, server_.Start("127.0.0.1:0", NULL));
    }
    int port() const { return server_.listen_address().port; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port()); }
    brpc::Server& server() { return server_; }

private:
    brpc::Server server_;
};

// Calls Open synchronously on `channel`.
inline bench::OpenResponse CallOpen(brpc::Channel& channel, brpc::Controller& cntl, int expect_messages = 0) {
    bench::StreamService_Stub stub(&channel);
    bench::OpenRequest request;
    request.set_expect_messages(expect_messages);
    bench::OpenResponse response;
    stub.Open(&cntl, &request, &response, NULL);
    return response;
}

// A done that records that it ran, for asynchronous calls.
class DoneFlag : public google::protobuf::Closure {
public:
    void Run() override { ++runs; }
    std::atomic<int> runs{0};
};

// ---- raw frames ----

struct Frame {
    std::string magic;  // "PRPC" or "STRM"
    std::string meta;
    std::string payload;
};

inline uint32_t ReadBigEndian32(const char* p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return ntohl(v);
}

// Cuts every complete frame off the front of `bytes`; false on a malformed
// header.
inline bool CutFrames(std::string* bytes, std::vector<Frame>* out) {
    while (bytes->size() >= 12) {
        const uint32_t body = ReadBigEndian32(bytes->data() + 4);
        const uint32_t meta = ReadBigEndian32(bytes->data() + 8);
        if (meta > body) {
            return false;
        }
        if (bytes->size() < 12 + (size_t)body) {
            return true;
        }
        Frame f;
        f.magic = bytes->substr(0, 4);
        f.meta = bytes->substr(12, meta);
        f.payload = bytes->substr(12 + meta, body - meta);
        out->push_back(f);
        bytes->erase(0, 12 + (size_t)body);
    }
    return true;
}

inline std::string EncodeFrame(const std::string& magic, const google::protobuf::Message& meta,
                               const std::string& payload) {
    const std::string meta_bytes = meta.SerializeAsString();
    const uint32_t body = htonl((uint32_t)(meta_bytes.size() + payload.size()));
    const uint32_t meta_size = htonl((uint32_t)meta_bytes.size());
    std::string out = magic;
    out.append(reinterpret_cast<const char*>(&body), 4);
    out.append(reinterpret_cast<const char*>(&meta_size), 4);
    return out + meta_bytes + payload;
}

inline brpc_meta_test::StreamFrameMeta StreamMeta(const Frame& f) {
    brpc_meta_test::StreamFrameMeta m;
    EXPECT_TRUE(m.ParseFromString(f.meta)) << "bad STRM meta";
    return m;
}

inline brpc_meta_test::RpcMeta RpcMetaOf(const Frame& f) {
    brpc_meta_test::RpcMeta m;
    EXPECT_TRUE(m.ParseFromString(f.meta)) << "bad PRPC meta";
    return m;
}

inline std::string StreamFrame(int64_t stream_id, int64_t source_stream_id, brpc_meta_test::FrameType type,
                               const std::string& payload = std::string()) {
    brpc_meta_test::StreamFrameMeta meta;
    meta.set_stream_id(stream_id);
    meta.set_source_stream_id(source_stream_id);
    meta.set_frame_type(type);
    if (type == brpc_meta_test::FRAME_TYPE_DATA) {
        meta.set_has_continuation(false);
    }
    return EncodeFrame("STRM", meta, payload);
}

// One end of a raw TCP connection, reading whole frames with a deadline.
class RawConnection {
public:
    explicit RawConnection(int fd) : fd_(fd) {}
    ~RawConnection() { Close(); }
    void Close() {
        if (fd_ >= 0) {
            close(fd_);
            fd_ = -1;
        }
    }
    bool Send(const std::string& bytes) {
        size_t sent = 0;
        while (sent < bytes.size()) {
            const ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) {
                return false;
            }
            sent += (size_t)n;
        }
        return true;
    }
    // The next frame, or false on EOF, error or `seconds` passing.
    bool Next(Frame* f, double seconds = 10) {
        const auto deadline = Clock::now() + std::chrono::milliseconds((int)(seconds * 1000));
        for (;;) {
            if (!ready_.empty()) {
                *f = ready_.front();
                ready_.erase(ready_.begin());
                return true;
            }
            if (!CutFrames(&pending_, &ready_)) {
                return false;
            }
            if (!ready_.empty()) {
                continue;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) {
                return false;
            }
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, (int)left.count()) <= 0) {
                return false;
            }
            char buf[65536];
            const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
            if (n <= 0) {
                return false;
            }
            pending_.append(buf, (size_t)n);
        }
    }
    // Reads until EOF (true) or `seconds` (false), keeping the frames.
    bool ReadUntilEof(std::vector<Frame>* frames, double seconds = 10) {
        const auto deadline = Clock::now() + std::chrono::milliseconds((int)(seconds * 1000));
        for (;;) {
            CutFrames(&pending_, &ready_);
            frames->insert(frames->end(), ready_.begin(), ready_.end());
            ready_.clear();
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) {
                return false;
            }
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, (int)left.count()) <= 0) {
                return false;
            }
            char buf[65536];
            const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
            if (n <= 0) {
                return true;
            }
            pending_.append(buf, (size_t)n);
        }
    }
    int fd() const { return fd_; }

private:
    int fd_;
    std::string pending_;
    std::vector<Frame> ready_;
};

// Connects to 127.0.0.1:port; -1 on failure.
inline int ConnectLoopback(int port) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)port);
    if (fd < 0 || connect(fd, (sockaddr*)&addr, sizeof(addr)) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

// A raw TCP peer on 127.0.0.1 that accepts one connection and runs
// `script` on it in its own thread, then closes it.
class RawPeer {
public:
    explicit RawPeer(std::function<void(RawConnection&)> script) {
        listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EXPECT_EQ(0, bind(listen_fd_, (sockaddr*)&addr, sizeof(addr)));
        EXPECT_EQ(0, listen(listen_fd_, 4));
        socklen_t len = sizeof(addr);
        getsockname(listen_fd_, (sockaddr*)&addr, &len);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this, script] {
            pollfd p{listen_fd_, POLLIN, 0};
            if (poll(&p, 1, 10000) != 1) {
                return;
            }
            RawConnection conn(accept(listen_fd_, NULL, NULL));
            script(conn);
            closed_ = true;
        });
    }
    ~RawPeer() {
        Join();
        close(listen_fd_);
    }
    void Join() {
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    int port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    bool closed() const { return closed_; }

private:
    int listen_fd_ = -1;
    int port_ = 0;
    std::atomic<bool> closed_{false};
    std::thread thread_;
};

// The RPC response a brpc server sends for a call that set up streams: a
// STRM DATA frame to the client's first stream carrying the PRPC response
// with the server's stream settings (source -1 when it accepted none).
inline std::string SetupResponse(const brpc_meta_test::RpcMeta& request, int64_t server_stream_id,
                                 const bench::OpenResponse& body) {
    brpc_meta_test::RpcMeta meta;
    meta.mutable_response()->set_error_code(0);
    meta.set_compress_type(0);
    meta.set_correlation_id(request.correlation_id());
    brpc_meta_test::StreamSettings* settings = meta.mutable_stream_settings();
    settings->set_stream_id(server_stream_id);
    settings->set_need_feedback(true);
    settings->set_writable(true);
    const std::string prpc = EncodeFrame("PRPC", meta, body.SerializeAsString());
    return StreamFrame(request.stream_settings().stream_id(), server_stream_id, brpc_meta_test::FRAME_TYPE_DATA,
                       prpc);
}

}  // namespace stream_test

#endif  // BRPC_STREAM_CPP_TESTS_STREAM_TEST_SUPPORT_H
