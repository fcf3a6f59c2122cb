// A call that fails keeps nothing it was given: a handler passed to a
// StreamAccept or StreamCreate that returned -1 is never called, so the
// program may delete it at once (run under ASan, a use would be reported).
#include "stream_test_support.h"

namespace {

using namespace stream_test;

// Counts every callback; deleted by the test right after a failed call.
class CountingHandler : public brpc::StreamInputHandler {
public:
    explicit CountingHandler(std::atomic<int>* calls) : calls_(calls) {}
    int on_received_messages(brpc::StreamId, butil::IOBuf* const[], size_t) override {
        ++*calls_;
        return 0;
    }
    void on_idle_timeout(brpc::StreamId) override { ++*calls_; }
    void on_failed(brpc::StreamId, int, const std::string&) override { ++*calls_; }
    void on_closed(brpc::StreamId) override { ++*calls_; }

private:
    std::atomic<int>* calls_;
};

TEST(FailedCall, ARefusedSingleAcceptNeverCallsTheDeletedHandler) {
    std::atomic<int> server_calls{0};
    std::atomic<int> refused{0};
    FunctionService service([&](brpc::Controller* cntl, const bench::OpenRequest*, bench::OpenResponse*,
                                google::protobuf::Closure* done) {
        brpc::ClosureGuard guard(done);
        CountingHandler* handler = new CountingHandler(&server_calls);
        brpc::StreamOptions options;
        options.handler = handler;
        options.idle_timeout_ms = 10;
        brpc::StreamId id = brpc::INVALID_STREAM_ID;
        if (brpc::StreamAccept(&id, *cntl, &options) != 0) {
            delete handler;  // as brpc's documentation invites
            ++refused;
            cntl->SetFailed("Fail to accept stream");
            return;
        }
        brpc::StreamClose(id);
    });
    LoopbackServer server(&service);
    brpc::Channel channel;
    brpc::ChannelOptions channel_options;
    channel_options.timeout_ms = 5000;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), &channel_options));

    // Several streams to a method that accepts one: brpc's single form refuses.
    RecordingHandler client_handler;
    brpc::StreamOptions client_options;
    client_options.handler = &client_handler;
    brpc::Controller cntl;
    brpc::StreamIds ids;
    ASSERT_EQ(0, brpc::StreamCreate(ids, 3, cntl, &client_options));
    bench::StreamService_Stub stub(&channel);
    bench::OpenRequest request;
    bench::OpenResponse response;
    stub.Open(&cntl, &request, &response, NULL);
    EXPECT_TRUE(cntl.Failed());
    EXPECT_EQ(refused.load(), 1);
    for (brpc::StreamId id : ids) {
        EXPECT_TRUE(client_handler.WaitClosed(id));
    }
    // Time for any late callback on the deleted handler to show.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(server_calls.load(), 0);
}

TEST(FailedCall, ACreateRefusedForTooManyStreamsKeepsNothing) {
    std::atomic<int> calls{0};
    CountingHandler* handler = new CountingHandler(&calls);
    brpc::StreamOptions options;
    options.handler = handler;
    brpc::Controller cntl;
    brpc::StreamIds ids;
    EXPECT_EQ(-1, brpc::StreamCreate(ids, BRPC_MAX_STREAMS_PER_CALL + 1, cntl, &options));
    delete handler;
    EXPECT_TRUE(ids.empty());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(calls.load(), 0);
}

}  // namespace
