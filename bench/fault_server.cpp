// The server examples/fault_probe attacks from another process: a plain
// streaming echo server written against brpc's public API only, so this
// same source builds against include/ (cpp_tests/CMakeLists.txt) and
// against apache/brpc (scripts/bench.sh --faults --brpc-prefix DIR).
//
// It serves fault.Service (bench/fault_server.proto), the names the
// in-process fault suite serves too: Echo, Busy (0.2 ms of computing), Stream (one echoing stream per
// call) and Sink (one consuming stream, window 4 MiB). Every option is
// the library's default: the probe measures what a server gets out of the
// box.
//
//   fault_server        prints "port P" once it serves 127.0.0.1:P, then
//                       serves until it is killed (or its parent dies).

#include <signal.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>

#include "brpc/server.h"
#include "brpc/stream.h"
#include "fault_server.pb.h"

namespace {

// Writes every message back, waiting for room inside the callback as
// brpc's streaming echo example does. One per stream, deleted when its
// stream closes.
class EchoHandler : public brpc::StreamInputHandler {
public:
    int on_received_messages(brpc::StreamId id, butil::IOBuf* const messages[], size_t size) override {
        for (size_t i = 0; i < size; ++i) {
            for (;;) {
                const int rc = brpc::StreamWrite(id, *messages[i]);
                if (rc != EAGAIN) {
                    break;
                }
                timespec due;
                clock_gettime(CLOCK_REALTIME, &due);
                due.tv_sec += 5;
                if (brpc::StreamWait(id, &due) != 0) {
                    return 0;
                }
            }
        }
        return 0;
    }
    void on_idle_timeout(brpc::StreamId) override {}
    void on_closed(brpc::StreamId) override { delete this; }
};

// Consumes what arrives; one for every Sink stream.
class SinkHandler : public brpc::StreamInputHandler {
public:
    int on_received_messages(brpc::StreamId, butil::IOBuf* const messages[], size_t size) override {
        for (size_t i = 0; i < size; ++i) {
            bytes_.fetch_add(messages[i]->size(), std::memory_order_relaxed);
        }
        return 0;
    }
    void on_idle_timeout(brpc::StreamId) override {}
    void on_closed(brpc::StreamId) override {}

private:
    std::atomic<uint64_t> bytes_{0};
};

class FaultService : public fault::Service {
public:
    void Echo(google::protobuf::RpcController*, const fault::EchoMessage* request, fault::EchoMessage* response,
              google::protobuf::Closure* done) override {
        brpc::ClosureGuard done_guard(done);
        response->CopyFrom(*request);
    }

    // A method that computes: its callers wait for the workers, not for
    // the reading.
    void Busy(google::protobuf::RpcController*, const fault::EchoMessage*, fault::EchoMessage*,
              google::protobuf::Closure* done) override {
        brpc::ClosureGuard done_guard(done);
        const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
        while (std::chrono::steady_clock::now() < until) {
        }
    }

    // A method written for one stream: the single-stream StreamAccept, the
    // handler deleted when the accept fails (the call then keeps nothing).
    void Stream(google::protobuf::RpcController* controller, const fault::EchoMessage*, fault::EchoMessage*,
                google::protobuf::Closure* done) override {
        brpc::ClosureGuard done_guard(done);
        brpc::Controller* cntl = static_cast<brpc::Controller*>(controller);
        EchoHandler* handler = new EchoHandler;
        brpc::StreamOptions options;
        options.handler = handler;
        brpc::StreamId stream;
        if (brpc::StreamAccept(&stream, *cntl, &options) != 0) {
            delete handler;
            cntl->SetFailed("Fail to accept the stream");
        }
    }

    void Sink(google::protobuf::RpcController* controller, const fault::EchoMessage*, fault::EchoMessage*,
              google::protobuf::Closure* done) override {
        brpc::ClosureGuard done_guard(done);
        brpc::Controller* cntl = static_cast<brpc::Controller*>(controller);
        brpc::StreamOptions options;
        options.handler = &sink_;
        options.max_buf_size = 4 * 1024 * 1024;
        brpc::StreamId stream;
        if (brpc::StreamAccept(&stream, *cntl, &options) != 0) {
            cntl->SetFailed("Fail to accept the stream");
        }
    }

private:
    SinkHandler sink_;
};

}  // namespace

int main() {
    signal(SIGPIPE, SIG_IGN);
    // Started by the probe: gone with it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    FaultService service;
    brpc::Server server;
    brpc::ServerOptions options;
    if (server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE) != 0 ||
        server.Start("127.0.0.1:0", &options) != 0) {
        fprintf(stderr, "fault_server: the server did not start\n");
        return 1;
    }
    printf("port %d\n", server.listen_address().port);
    fflush(stdout);
    for (;;) {
        pause();
    }
}
