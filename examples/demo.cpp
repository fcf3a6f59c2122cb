// The demo: a brpc streaming RPC over loopback, written against the facade
// exactly as against brpc.
//
// A brpc::Server serves demo.StreamService; its Open accepts the client's
// stream and counts what arrives, checking the order. The client creates a
// stream, calls Open, writes many small messages and a few large ones
// (waiting whenever the window is full), and gets the server's summary back
// on the stream. Then both sides close and the demo prints which callbacks
// ran. Last, it closes a stream before its call connected, with writes
// queued: the case brpc asserts on (or loses silently); here on_failed
// reports the dropped writes.
//
//   stream_demo [small_messages=200000] [large_messages=4]
//
// Exit code 0 when every message arrived in order and every stream closed
// with the callbacks expected, within the time limit.

#include <arpa/inet.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "brpc/channel.h"
#include "brpc/server.h"
#include "brpc/stream.h"
#include "demo.pb.h"

namespace {

using Clock = std::chrono::steady_clock;

const size_t kSmallSize = 64;
const size_t kLargeSize = 1 << 20;
// Everything, both runs included, ends well within this.
const int kTimeLimitSeconds = 60;

template <typename Pred>
bool WaitFor(Pred done, int seconds = kTimeLimitSeconds) {
    const auto deadline = Clock::now() + std::chrono::seconds(seconds);
    while (!done()) {
        if (Clock::now() > deadline) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

double SecondsSince(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// A message: its sequence number (8 bytes, big-endian), then filler.
butil::IOBuf Message(uint64_t seq, size_t size) {
    std::string bytes(size, '.');
    for (int i = 0; i < 8; ++i) {
        bytes[i] = (char)(seq >> (56 - 8 * i));
    }
    butil::IOBuf buf;
    buf.append(bytes);
    return buf;
}

uint64_t SequenceOf(const butil::IOBuf& message) {
    unsigned char bytes[8] = {0};
    message.copy_to(bytes, sizeof(bytes));
    uint64_t seq = 0;
    for (int i = 0; i < 8; ++i) {
        seq = (seq << 8) | bytes[i];
    }
    return seq;
}

// What a handler saw at the end of its stream.
struct Ending {
    std::atomic<int> closed{0};
    std::atomic<int> failed{0};
    std::mutex mu;
    int error_code = 0;
    std::string error_text;

    void OnFailed(int code, const std::string& text) {
        std::lock_guard<std::mutex> g(mu);
        error_code = code;
        error_text = text;
        ++failed;
    }
    std::string Describe() {
        std::lock_guard<std::mutex> g(mu);
        std::string out;
        if (failed.load() > 0) {
            out = "on_failed(" + std::to_string(error_code) + ", \"" + error_text + "\") then ";
        }
        out += closed.load() == 1 ? "on_closed" : std::to_string(closed.load()) + " x on_closed";
        if (failed.load() == 0) {
            out += " (no on_failed)";
        }
        return out;
    }
};

// The server side: counts messages and bytes, checks the order, and
// answers with a summary once it has everything the request announced.
class CountingHandler : public brpc::StreamInputHandler {
public:
    int on_received_messages(brpc::StreamId id, butil::IOBuf* const messages[], size_t size) override {
        for (size_t i = 0; i < size; ++i) {
            if (SequenceOf(*messages[i]) != messages_) {
                ++out_of_order_;
            }
            ++messages_;
            bytes_ += messages[i]->size();
        }
        if (messages_ == expect_messages.load() && bytes_ == expect_bytes.load()) {
            char summary[160];
            snprintf(summary, sizeof(summary), "received %llu messages, %llu bytes, %s",
                     (unsigned long long)messages_, (unsigned long long)bytes_,
                     out_of_order_ == 0 ? "all in order" : "SOME OUT OF ORDER");
            butil::IOBuf reply;
            reply.append(summary);
            if (brpc::StreamWrite(id, reply) != 0) {
                fprintf(stderr, "server: could not send the summary\n");
            }
        }
        return 0;
    }
    void on_idle_timeout(brpc::StreamId) override {}
    void on_failed(brpc::StreamId, int error_code, const std::string& error_text) override {
        ending.OnFailed(error_code, error_text);
    }
    void on_closed(brpc::StreamId) override { ++ending.closed; }

    std::atomic<uint64_t> expect_messages{0};
    std::atomic<uint64_t> expect_bytes{0};
    bool in_order() const { return out_of_order_ == 0; }
    Ending ending;

private:
    // Only the stream's callbacks touch these, one at a time.
    uint64_t messages_ = 0;
    uint64_t bytes_ = 0;
    uint64_t out_of_order_ = 0;
};

class DemoService : public demo::StreamService {
public:
    explicit DemoService(CountingHandler* handler) : handler_(handler) {}
    void Open(google::protobuf::RpcController* controller, const demo::OpenRequest* request,
              demo::OpenResponse* response, google::protobuf::Closure* done) override {
        brpc::ClosureGuard done_guard(done);
        brpc::Controller* cntl = static_cast<brpc::Controller*>(controller);
        handler_->expect_messages = (uint64_t)request->expect_messages();
        handler_->expect_bytes = (uint64_t)request->expect_bytes();
        brpc::StreamOptions options;
        options.handler = handler_;
        brpc::StreamId stream;
        if (brpc::StreamAccept(&stream, *cntl, &options) != 0) {
            cntl->SetFailed("Fail to accept stream");
            return;
        }
        response->set_status("accepted");
    }

private:
    CountingHandler* handler_;
};

// The client side: keeps the server's summary.
class SummaryHandler : public brpc::StreamInputHandler {
public:
    int on_received_messages(brpc::StreamId, butil::IOBuf* const messages[], size_t size) override {
        std::lock_guard<std::mutex> g(mu_);
        for (size_t i = 0; i < size; ++i) {
            summary_ = messages[i]->to_string();
        }
        received_ = true;
        return 0;
    }
    void on_idle_timeout(brpc::StreamId) override {}
    void on_failed(brpc::StreamId, int error_code, const std::string& error_text) override {
        ending.OnFailed(error_code, error_text);
    }
    void on_closed(brpc::StreamId) override { ++ending.closed; }

    bool received() {
        std::lock_guard<std::mutex> g(mu_);
        return received_;
    }
    std::string summary() {
        std::lock_guard<std::mutex> g(mu_);
        return summary_;
    }
    Ending ending;

private:
    std::mutex mu_;
    bool received_ = false;
    std::string summary_;
};

// StreamWrite, waiting for the window whenever it is full.
int WriteWaiting(brpc::StreamId stream, const butil::IOBuf& message) {
    for (;;) {
        const int rc = brpc::StreamWrite(stream, message);
        if (rc != EAGAIN) {
            return rc;
        }
        timespec due;
        clock_gettime(CLOCK_REALTIME, &due);
        due.tv_sec += kTimeLimitSeconds;
        const int wait_rc = brpc::StreamWait(stream, &due);
        if (wait_rc != 0) {
            return wait_rc;
        }
    }
}

// Streams `small` + `large` messages to the server and checks the summary.
bool StreamToServer(long small, long large) {
    CountingHandler server_handler;
    SummaryHandler client_handler;
    DemoService service(&server_handler);
    brpc::Server server;
    if (server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE) != 0 ||
        server.Start("127.0.0.1:0", NULL) != 0) {
        fprintf(stderr, "server: cannot start: %s\n", strerror(errno));
        return false;
    }
    const std::string address = butil::endpoint2str(server.listen_address()).c_str();
    printf("server: listening on %s\n", address.c_str());

    brpc::Channel channel;
    if (channel.Init(address.c_str(), NULL) != 0) {
        fprintf(stderr, "client: cannot init the channel\n");
        return false;
    }
    brpc::Controller cntl;
    brpc::StreamOptions stream_options;
    stream_options.handler = &client_handler;
    brpc::StreamId stream;
    if (brpc::StreamCreate(&stream, cntl, &stream_options) != 0) {
        fprintf(stderr, "client: cannot create the stream\n");
        return false;
    }
    demo::OpenRequest request;
    request.set_expect_messages(small + large);
    request.set_expect_bytes((int64_t)(small * kSmallSize + large * kLargeSize));
    demo::OpenResponse response;
    demo::StreamService_Stub stub(&channel);
    stub.Open(&cntl, &request, &response, NULL);
    if (cntl.Failed()) {
        fprintf(stderr, "client: Open failed: [%d] %s\n", cntl.ErrorCode(), cntl.ErrorText().c_str());
        brpc::StreamClose(stream);
        return false;
    }
    printf("client: stream %llu set up, Open answered \"%s\"\n", (unsigned long long)stream,
           response.status().c_str());

    const Clock::time_point start = Clock::now();
    uint64_t seq = 0;
    for (long i = 0; i < small + large; ++i, ++seq) {
        const int rc = WriteWaiting(stream, Message(seq, i < small ? kSmallSize : kLargeSize));
        if (rc != 0) {
            fprintf(stderr, "client: write %ld failed: %s\n", i, strerror(rc));
            brpc::StreamClose(stream);
            return false;
        }
    }
    const bool summarized = WaitFor([&] { return client_handler.received(); });
    const double seconds = SecondsSince(start);
    const double bytes = (double)(small * kSmallSize + large * kLargeSize);
    printf("client: wrote %ld messages of %zu bytes and %ld of 1 MiB (%.1f MiB) in %.3f s: "
           "%.0f messages/s, %.1f MiB/s\n",
           small, kSmallSize, large, bytes / (1 << 20), seconds, (double)(small + large) / seconds,
           bytes / (1 << 20) / seconds);
    printf("server: \"%s\"\n", summarized ? client_handler.summary().c_str() : "(no summary in time)");

    brpc::StreamClose(stream);
    const bool closed = WaitFor([&] {
        return client_handler.ending.closed.load() == 1 && server_handler.ending.closed.load() == 1;
    });
    printf("close: client stream %s; server stream %s\n", client_handler.ending.Describe().c_str(),
           server_handler.ending.Describe().c_str());
    return summarized && closed && server_handler.in_order() && client_handler.ending.failed.load() == 0 &&
           server_handler.ending.failed.load() == 0;
}

// A stream closed before its call connected, with two writes queued.
bool CloseBeforeConnect() {
    SummaryHandler handler;
    brpc::StreamOptions options;
    options.handler = &handler;
    brpc::Controller cntl;
    brpc::StreamId stream;
    if (brpc::StreamCreate(&stream, cntl, &options) != 0) {
        return false;
    }
    const int first = brpc::StreamWrite(stream, Message(0, kSmallSize));
    const int second = brpc::StreamWrite(stream, Message(1, kSmallSize));
    printf("early close: two writes before any call: %d, %d (accepted)\n", first, second);
    brpc::StreamClose(stream);
    const bool closed = WaitFor([&] { return handler.ending.closed.load() == 1; });
    printf("early close: %s; a later write returns %s\n", handler.ending.Describe().c_str(),
           brpc::StreamWrite(stream, Message(2, kSmallSize)) == EINVAL ? "EINVAL" : "something else");
    return closed && handler.ending.failed.load() == 1;
}

}  // namespace

int main(int argc, char** argv) {
    const long small = argc > 1 ? atol(argv[1]) : 200000;
    const long large = argc > 2 ? atol(argv[2]) : 4;
    if (small < 0 || large < 0) {
        fprintf(stderr, "usage: %s [small_messages=200000] [large_messages=4]\n", argv[0]);
        return 2;
    }
    const bool streamed = StreamToServer(small, large);
    const bool early = CloseBeforeConnect();
    printf("%s\n", streamed && early ? "demo: OK" : "demo: FAILED");
    return streamed && early ? 0 : 1;
}
