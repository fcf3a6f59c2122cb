// A fixed amount of stream work in one process, for counting what it costs
// rather than timing it: run it under `valgrind --tool=callgrind` (or
// `perf stat -e 'raw_syscalls:sys_enter,context-switches'`) at two counts
// and divide the difference by the difference of the counts, so setup,
// teardown and the runtime's start cancel out. Load does not change such
// counts much, unlike throughput on a shared machine.
//
//   stream_count 64|4k|1m N   one stream; N messages of that size written
//                             (StreamWait on EAGAIN) and received by the
//                             server's handler, then closed
//   stream_count churn N      N times: StreamCreate, a call (the server
//                             accepts), StreamClose, wait for on_closed
//
// Exit 0 when everything arrived and closed normally, 1 otherwise (the
// reason on stderr). Built by hand against a checkout (see BENCHMARKS.md,
// "Issue 14"), so one source measures any commit.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "brpc/channel.h"
#include "brpc/server.h"
#include "brpc/stream.h"
#include "bench_common.h"
#include "stream_bench.pb.h"

namespace {

using bench::BenchServiceImpl;
using bench::RealtimeIn;

const double kWaitSeconds = 60;  // Generous: valgrind runs it 50x slower.

class Counting : public brpc::StreamInputHandler {
public:
    int on_received_messages(brpc::StreamId, butil::IOBuf* const messages[], size_t size) override {
        std::lock_guard<std::mutex> lock(mu_);
        messages_ += size;
        cv_.notify_all();
        return 0;
    }
    void on_idle_timeout(brpc::StreamId) override {}
    void on_failed(brpc::StreamId, int code, const std::string& text) override {
        fprintf(stderr, "on_failed: [%d] %s\n", code, text.c_str());
        std::lock_guard<std::mutex> lock(mu_);
        ++failed_;
    }
    void on_closed(brpc::StreamId) override {
        std::lock_guard<std::mutex> lock(mu_);
        ++closed_;
        cv_.notify_all();
    }
    bool WaitMessages(uint64_t n) { return Wait([&] { return messages_ >= n; }); }
    bool WaitClosed(uint64_t n) { return Wait([&] { return closed_ >= n; }); }
    uint64_t failed() {
        std::lock_guard<std::mutex> lock(mu_);
        return failed_;
    }

private:
    template <typename Pred>
    bool Wait(Pred pred) {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, std::chrono::duration<double>(kWaitSeconds), pred);
    }
    std::mutex mu_;
    std::condition_variable cv_;
    uint64_t messages_ = 0;
    uint64_t closed_ = 0;
    uint64_t failed_ = 0;
};

bool Open(brpc::Channel& channel, Counting* handler, brpc::StreamId* id) {
    brpc::Controller cntl;
    brpc::StreamOptions options;
    options.handler = handler;
    if (brpc::StreamCreate(id, cntl, &options) != 0) {
        fprintf(stderr, "StreamCreate failed\n");
        return false;
    }
    streambench::OpenRequest request;
    streambench::OpenResponse response;
    streambench::BenchService_Stub(&channel).Open(&cntl, &request, &response, NULL);
    if (cntl.Failed()) {
        fprintf(stderr, "Open failed: %s\n", cntl.ErrorText().c_str());
        brpc::StreamClose(*id);
        return false;
    }
    return true;
}

bool Write(brpc::StreamId id, size_t size, uint64_t n) {
    butil::IOBuf message;
    message.append(std::string(size, 'x'));
    for (uint64_t i = 0; i < n;) {
        const int rc = brpc::StreamWrite(id, message);
        if (rc == 0) {
            ++i;
            continue;
        }
        if (rc != EAGAIN) {
            fprintf(stderr, "StreamWrite: %d\n", rc);
            return false;
        }
        const timespec due = RealtimeIn(1000);
        const int wait_rc = brpc::StreamWait(id, &due);
        if (wait_rc != 0 && wait_rc != ETIMEDOUT) {
            fprintf(stderr, "StreamWait: %d\n", wait_rc);
            return false;
        }
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s 64|4k|1m|churn N\n", argv[0]);
        return 2;
    }
    const std::string what = argv[1];
    const uint64_t n = strtoull(argv[2], NULL, 10);
    const size_t size = what == "64" ? 64 : what == "4k" ? 4096 : what == "1m" ? 1 << 20 : 0;
    if (size == 0 && what != "churn") {
        fprintf(stderr, "unknown scenario %s\n", what.c_str());
        return 2;
    }
    Counting server_handler;
    Counting client_handler;
    bool ok = true;
    {
        BenchServiceImpl service(&server_handler);
        brpc::Server server;
        brpc::Channel channel;
        brpc::ChannelOptions options;
        options.timeout_ms = 60000;
        options.connect_timeout_ms = 60000;
        if (server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE) != 0 ||
            server.Start("127.0.0.1:0", NULL) != 0 ||
            channel.Init(butil::endpoint2str(server.listen_address()).c_str(), &options) != 0) {
            fprintf(stderr, "loopback setup failed\n");
            return 1;
        }
        if (size > 0) {
            brpc::StreamId id;
            ok = Open(channel, &client_handler, &id) && Write(id, size, n) && server_handler.WaitMessages(n);
            brpc::StreamClose(id);
            ok = client_handler.WaitClosed(1) && server_handler.WaitClosed(1) && ok;
        } else {
            for (uint64_t i = 0; ok && i < n; ++i) {
                brpc::StreamId id;
                ok = Open(channel, &client_handler, &id);
                brpc::StreamClose(id);
                ok = client_handler.WaitClosed(i + 1) && ok;
            }
            ok = server_handler.WaitClosed(n) && ok;
        }
    }
    if (!ok || client_handler.failed() + server_handler.failed() > 0) {
        fprintf(stderr, "%s %llu: failed\n", what.c_str(), (unsigned long long)n);
        return 1;
    }
    return 0;
}
