// What the benchmark programs (stream_bench.cpp, stream_procs.cpp,
// stream_count.cpp) share. Only brpc's public API, so it builds against
// apache/brpc as well.

#ifndef BRPC_STREAM_BENCH_COMMON_H
#define BRPC_STREAM_BENCH_COMMON_H

#include <time.h>

#include <atomic>
#include <cstdint>

#include "brpc/server.h"
#include "brpc/stream.h"
#include "stream_bench.pb.h"

namespace bench {

// The CLOCK_REALTIME instant `ms` from now, as StreamWait takes it.
inline timespec RealtimeIn(long ms) {
    timespec due;
    clock_gettime(CLOCK_REALTIME, &due);
    due.tv_sec += ms / 1000;
    due.tv_nsec += (ms % 1000) * 1000000L;
    if (due.tv_nsec >= 1000000000L) {
        due.tv_sec += 1;
        due.tv_nsec -= 1000000000L;
    }
    return due;
}

// Open accepts every stream of the call with the given handler.
class BenchServiceImpl : public streambench::BenchService {
public:
    explicit BenchServiceImpl(brpc::StreamInputHandler* handler) : handler_(handler) {}
    void Open(google::protobuf::RpcController* controller, const streambench::OpenRequest*,
              streambench::OpenResponse* response, google::protobuf::Closure* done) override {
        brpc::ClosureGuard done_guard(done);
        brpc::Controller* cntl = static_cast<brpc::Controller*>(controller);
        brpc::StreamOptions options;
        options.handler = handler_;
        brpc::StreamIds streams;
        if (brpc::StreamAccept(streams, *cntl, &options) != 0) {
            cntl->SetFailed("Fail to accept the streams");
            return;
        }
        accepted_.fetch_add(streams.size());
        response->set_accepted((int)streams.size());
    }
    uint64_t accepted() const { return accepted_.load(); }

private:
    brpc::StreamInputHandler* handler_;
    std::atomic<uint64_t> accepted_{0};
};

}  // namespace bench

#endif  // BRPC_STREAM_BENCH_COMMON_H
