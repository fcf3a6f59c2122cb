// A call that fails keeps nothing it was given: a handler passed to a
// StreamAccept or StreamCreate that returned -1 is never called, so the
// program may delete it at once (run under ASan, a use would be reported).
// The same for the other entry points taking a callback: Socket::Create,
// Socket::Write, and StreamWait's callback form (which always succeeds).
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "brpc/socket.h"
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

// What a socket's callbacks saw; the test frees it right after a failed call.
struct SocketCallbacks {
    std::atomic<int> failed{0};
    std::atomic<int> recycled{0};
};

void CountFailed(void* arg, brpc_socket_id, int, const char*) { ++static_cast<SocketCallbacks*>(arg)->failed; }
void CountRecycled(void* arg) { ++static_cast<SocketCallbacks*>(arg)->recycled; }

// An fd epoll refuses (a regular file): the socket is made, then its fd
// cannot be watched.
int UnwatchableFd() {
    char path[] = "/tmp/failed_call_test_XXXXXX";
    const int fd = mkstemp(path);
    unlink(path);
    return fd;
}

TEST(FailedCall, ASocketCreateThatFailsRunsNoCallbackAndLetsGoOfItsArgumentBeforeReturning) {
    const int fd = UnwatchableFd();
    ASSERT_GE(fd, 0);
    SocketCallbacks* callbacks = new SocketCallbacks;
    brpc_socket_options options;
    brpc_socket_options_init(&options);
    options.fd = fd;
    options.user_arg = callbacks;
    options.on_failed = &CountFailed;
    options.on_recycle = &CountRecycled;
    brpc_socket_id id = BRPC_INVALID_SOCKET_ID;
    EXPECT_NE(0, brpc_socket_create(&options, &id));
    // Its user_arg is released (on_recycle, once) and its fd closed, before
    // the call returned; on_failed never runs.
    EXPECT_EQ(1, callbacks->recycled.load());
    EXPECT_EQ(0, callbacks->failed.load());
    EXPECT_EQ(-1, fcntl(fd, F_GETFD));
    EXPECT_EQ(EBADF, errno);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(0, callbacks->failed.load());
    delete callbacks;
}

TEST(FailedCall, ASocketCreateThatFailsNeverCallsTheFacadesOnFailed) {
    std::shared_ptr<std::atomic<int>> failed = std::make_shared<std::atomic<int>>(0);
    brpc::SocketOptions options;
    options.fd = UnwatchableFd();
    ASSERT_GE(options.fd, 0);
    options.on_failed = [failed](brpc::SocketId, int, const std::string&) { ++*failed; };
    brpc::SocketId id;
    EXPECT_EQ(-1, brpc::Socket::Create(options, &id));
    options.on_failed = nullptr;  // the test's own copy
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(0, failed->load());
    EXPECT_EQ(1, failed.use_count()) << "the library still holds the on_failed it was given";
}

struct WriteDones {
    std::atomic<int> runs{0};
    static void OnDone(void* arg, int) { ++static_cast<WriteDones*>(arg)->runs; }
};

TEST(FailedCall, AWriteTheSocketRefusesNeverRunsItsDone) {
    int fds[2];
    ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, fds));
    brpc::SocketOptions options;
    options.fd = fds[0];
    brpc::SocketId id;
    ASSERT_EQ(0, brpc::Socket::Create(options, &id));
    brpc::SocketUniquePtr socket;
    ASSERT_EQ(0, brpc::Socket::Address(id, &socket));
    ASSERT_EQ(0, socket->SetFailed(ECONNRESET, "failed by the test"));
    WriteDones* dones = new WriteDones;
    brpc::Socket::WriteOptions write_options;
    write_options.on_done = &WriteDones::OnDone;
    write_options.done_arg = dones;
    butil::IOBuf message;
    message.append("refused");
    EXPECT_EQ(-1, socket->Write(&message, &write_options));
    EXPECT_EQ(brpc::EFAILEDSOCKET, errno);
    // A NULL socket is refused the same way (the C entry point).
    const char bytes[] = "x";
    iovec iov = {const_cast<char*>(bytes), 1};
    EXPECT_EQ(EINVAL, brpc_socket_write(NULL, &iov, 1, &WriteDones::OnDone, dones));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(0, dones->runs.load());
    delete dones;
    socket.reset();
    close(fds[1]);
}

TEST(FailedCall, AnAcceptedWriteRunsItsDoneOnceEvenWhenItCompletesBeforeWriteReturns) {
    int fds[2];
    ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, fds));
    brpc::SocketOptions options;
    options.fd = fds[0];
    brpc::SocketId id;
    ASSERT_EQ(0, brpc::Socket::Create(options, &id));
    brpc::SocketUniquePtr socket;
    ASSERT_EQ(0, brpc::Socket::Address(id, &socket));
    WriteDones dones;
    brpc::Socket::WriteOptions write_options;
    write_options.on_done = &WriteDones::OnDone;
    write_options.done_arg = &dones;
    for (int i = 0; i < 100; ++i) {
        butil::IOBuf message;
        message.append("m");
        ASSERT_EQ(0, socket->Write(&message, &write_options));
    }
    EXPECT_TRUE(WaitFor([&] { return dones.runs.load() == 100; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(100, dones.runs.load());
    socket->SetFailed();
    socket.reset();
    close(fds[1]);
}

struct WaitResults {
    std::atomic<int> runs{0};
    std::atomic<int> code{-1};
};

void OnWritable(brpc::StreamId, void* arg, int code) {
    WaitResults* results = static_cast<WaitResults*>(arg);
    results->code = code;
    ++results->runs;
}

TEST(FailedCall, AnAsyncWaitOnAnUnknownStreamSucceedsAndReportsEinvalOnceThroughItsCallback) {
    WaitResults results;
    // brpc's StreamWait(id, due, on_writable, arg) returns nothing and
    // always runs on_writable: the C call it wraps says 0 whenever it took
    // the callback, so no caller frees arg on an error that still calls it.
    EXPECT_EQ(0, brpc_stream_wait_async(0x7fffffffffffULL, -1, &OnWritable, &results));
    ASSERT_TRUE(WaitFor([&] { return results.runs.load() == 1; }));
    EXPECT_EQ(EINVAL, results.code.load());
    EXPECT_EQ(EINVAL, brpc_stream_wait_async(1, -1, NULL, &results));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(1, results.runs.load());
}

}  // namespace
