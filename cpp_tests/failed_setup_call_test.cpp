// A failed setup call is over when it returns: every stream it set up has
// run on_failed and on_closed before CallMethod returns (synchronous) or
// before done->Run() (asynchronous), so the program may destroy the
// handler at once. Run under ASan, a late callback would be a reported
// use after free; CPU hogs make the race show.
#include <fcntl.h>

#include "stream_test_support.h"

namespace {

using namespace stream_test;

// Records on_failed and on_closed; checked and destroyed right after the call.
class EndHandler : public brpc::StreamInputHandler {
public:
    int on_received_messages(brpc::StreamId, butil::IOBuf* const[], size_t) override { return 0; }
    void on_idle_timeout(brpc::StreamId) override {}
    void on_failed(brpc::StreamId, int, const std::string&) override {
        // Slow on purpose: a caller that did not wait would see 0 here.
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        failed.fetch_add(1);
    }
    void on_closed(brpc::StreamId) override {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        closed.fetch_add(1);
    }
    std::atomic<int> failed{0};
    std::atomic<int> closed{0};
};

// A listener that never accepts, its backlog filled, so connects to it
// hang until the caller's connect timeout.
class NeverAccepting {
public:
    NeverAccepting() {
        fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof(addr);
        if (fd_ < 0 || bind(fd_, (sockaddr*)&addr, len) != 0 || listen(fd_, 0) != 0 ||
            getsockname(fd_, (sockaddr*)&addr, &len) != 0) {
            return;
        }
        port_ = ntohs(addr.sin_port);
        for (int i = 0; i < 4; ++i) {
            const int c = socket(AF_INET, SOCK_STREAM, 0);
            fcntl(c, F_SETFL, O_NONBLOCK);
            connect(c, (sockaddr*)&addr, sizeof(addr));
            fillers_.push_back(c);
        }
    }
    ~NeverAccepting() {
        for (int c : fillers_) {
            close(c);
        }
        if (fd_ >= 0) {
            close(fd_);
        }
    }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    bool ok() const { return port_ != 0; }

private:
    int fd_ = -1;
    int port_ = 0;
    std::vector<int> fillers_;
};

// Busy threads for the duration of a test.
class CpuHogs {
public:
    CpuHogs() {
        for (int i = 0; i < 3; ++i) {
            threads_.emplace_back([this] {
                volatile uint64_t x = 0;
                while (!stop_.load(std::memory_order_relaxed)) {
                    x = x + 1;
                }
            });
        }
    }
    ~CpuHogs() {
        stop_ = true;
        for (auto& t : threads_) {
            t.join();
        }
    }

private:
    std::atomic<bool> stop_{false};
    std::vector<std::thread> threads_;
};

// A done that runs a function (and does not delete itself).
class FunctionClosure : public google::protobuf::Closure {
public:
    explicit FunctionClosure(std::function<void()> run) : run_(std::move(run)) {}
    void Run() override { run_(); }

private:
    std::function<void()> run_;
};

TEST(FailedSetupCall, ASynchronousCallThatFailsHasEndedItsStreamsWhenItReturns) {
    NeverAccepting listener;
    ASSERT_TRUE(listener.ok());
    CpuHogs hogs;
    brpc::Channel channel;
    brpc::ChannelOptions options;
    options.connect_timeout_ms = 50;
    options.timeout_ms = 100;
    options.max_retry = 0;
    ASSERT_EQ(0, channel.Init(listener.address().c_str(), &options));
    bench::StreamService_Stub stub(&channel);
    for (int round = 0; round < 20; ++round) {
        EndHandler* handler = new EndHandler;
        brpc::StreamOptions stream_options;
        stream_options.handler = handler;
        brpc::Controller cntl;
        brpc::StreamIds ids;
        ASSERT_EQ(0, brpc::StreamCreate(ids, 2, cntl, &stream_options));
        // One message waits in a stream's queue: it can never be delivered.
        EXPECT_EQ(0, brpc::StreamWrite(ids[0], Buf("never sent")));
        bench::OpenRequest request;
        bench::OpenResponse response;
        stub.Open(&cntl, &request, &response, NULL);
        ASSERT_TRUE(cntl.Failed());
        EXPECT_EQ(handler->failed.load(), 2) << "round " << round;
        EXPECT_EQ(handler->closed.load(), 2) << "round " << round;
        delete handler;
    }
}

TEST(FailedSetupCall, AnAsynchronousCallThatFailsHasEndedItsStreamsBeforeDone) {
    NeverAccepting listener;
    ASSERT_TRUE(listener.ok());
    CpuHogs hogs;
    brpc::Channel channel;
    brpc::ChannelOptions options;
    options.connect_timeout_ms = 50;
    options.timeout_ms = 100;
    options.max_retry = 0;
    ASSERT_EQ(0, channel.Init(listener.address().c_str(), &options));
    bench::StreamService_Stub stub(&channel);
    for (int round = 0; round < 20; ++round) {
        EndHandler* handler = new EndHandler;
        brpc::StreamOptions stream_options;
        stream_options.handler = handler;
        brpc::Controller cntl;
        brpc::StreamId id = brpc::INVALID_STREAM_ID;
        ASSERT_EQ(0, brpc::StreamCreate(&id, cntl, &stream_options));
        bench::OpenRequest request;
        bench::OpenResponse response;
        std::mutex mu;
        std::condition_variable cv;
        bool done_ran = false;
        int failed_at_done = -1;
        int closed_at_done = -1;
        FunctionClosure done([&] {
            std::lock_guard<std::mutex> lock(mu);
            failed_at_done = handler->failed.load();
            closed_at_done = handler->closed.load();
            done_ran = true;
            cv.notify_all();
        });
        stub.Open(&cntl, &request, &response, &done);
        {
            std::unique_lock<std::mutex> lock(mu);
            ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return done_ran; }));
        }
        EXPECT_TRUE(cntl.Failed());
        EXPECT_EQ(failed_at_done, 1) << "round " << round;
        EXPECT_EQ(closed_at_done, 1) << "round " << round;
        delete handler;
    }
}


// How often `needle` occurs in `text`.
int Occurrences(const std::string& text, const std::string& needle) {
    int n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) {
        ++n;
    }
    return n;
}

// Keeps what on_failed was given.
class FailureRecorder : public brpc::StreamInputHandler {
public:
    int on_received_messages(brpc::StreamId, butil::IOBuf* const[], size_t) override { return 0; }
    void on_idle_timeout(brpc::StreamId) override {}
    void on_failed(brpc::StreamId, int error_code, const std::string& error_text) override {
        std::lock_guard<std::mutex> lock(mu);
        code = error_code;
        text = error_text;
    }
    void on_closed(brpc::StreamId) override {}
    std::mutex mu;
    int code = 0;
    std::string text;
};

// The library's log lines at warning and above, kept while it is alive.
class LogLines {
public:
    LogLines() { brpc_log_set_sink(&LogLines::Sink, this); }
    ~LogLines() { brpc_log_set_sink(NULL, NULL); }
    std::vector<std::string> Lines() {
        std::lock_guard<std::mutex> lock(mu_);
        return lines_;
    }

private:
    static void Sink(int level, const char*, int, const uint8_t* message, size_t len, void* user) {
        LogLines* self = static_cast<LogLines*>(user);
        if (level >= 2) {
            std::lock_guard<std::mutex> lock(self->mu_);
            self->lines_.push_back(std::string(reinterpret_cast<const char*>(message), len));
        }
    }
    std::mutex mu_;
    std::vector<std::string> lines_;
};

// brpc shows an error as "[E<code>]<text>": the code once. A call whose
// connect timed out (ETIMEDOUT) reaches the controller, its stream's
// on_failed and the log line of the stream's failure with "[E110]" once
// each, though the stream fails with the call's text, which has it.
TEST(FailedSetupCall, TheCallsErrorShowsItsCodeOnceWhereverItIsRead) {
    NeverAccepting listener;
    ASSERT_TRUE(listener.ok());
    brpc::Channel channel;
    brpc::ChannelOptions options;
    options.connect_timeout_ms = 50;
    options.timeout_ms = 5000;
    options.max_retry = 0;
    ASSERT_EQ(0, channel.Init(listener.address().c_str(), &options));
    bench::StreamService_Stub stub(&channel);
    FailureRecorder handler;
    LogLines log;
    {
        brpc::StreamOptions stream_options;
        stream_options.handler = &handler;
        brpc::Controller cntl;
        brpc::StreamId id = brpc::INVALID_STREAM_ID;
        ASSERT_EQ(0, brpc::StreamCreate(&id, cntl, &stream_options));
        bench::OpenRequest request;
        bench::OpenResponse response;
        stub.Open(&cntl, &request, &response, NULL);

        ASSERT_TRUE(cntl.Failed());
        ASSERT_EQ(ETIMEDOUT, cntl.ErrorCode()) << cntl.ErrorText();
        const std::string code = "[E" + std::to_string(ETIMEDOUT) + "]";
        EXPECT_EQ(0u, cntl.ErrorText().find(code)) << cntl.ErrorText();
        EXPECT_EQ(1, Occurrences(cntl.ErrorText(), code)) << cntl.ErrorText();
        std::lock_guard<std::mutex> lock(handler.mu);
        EXPECT_EQ(ETIMEDOUT, handler.code);
        EXPECT_EQ(cntl.ErrorText(), handler.text);
        EXPECT_EQ(1, Occurrences(handler.text, code)) << handler.text;
    }
    int failure_lines = 0;
    for (const std::string& line : log.Lines()) {
        if (line.find(" failed: ") != std::string::npos) {
            ++failure_lines;
            EXPECT_EQ(1, Occurrences(line, "[E" + std::to_string(ETIMEDOUT) + "]")) << line;
        }
    }
    EXPECT_GT(failure_lines, 0) << "the stream's failure is logged";
}

}  // namespace
