// brpc's streaming unit test (test/brpc_streaming_rpc_unittest.cpp), case by
// case, written against the facade alone. Where brpc's test reaches into its
// internals (a host socket's SetFailed, SendStreamRst, socket statistics),
// the same intent is reached through public means: a TCP relay that is cut,
// a raw peer that sends RST, the library's counters.
#include <arpa/inet.h>

#include <algorithm>
#include <unordered_map>

#include "brpc/stream_stats.h"
#include "echo.pb.h"
#include "stream_test_support.h"

namespace {

using namespace stream_test;

// Runs after the method accepted its stream, inside the method.
typedef std::function<void(brpc::StreamId)> AfterAccept;

// brpc's MyServiceWithStream: echoes, accepting the request's one stream.
class StreamEchoService : public test::EchoService {
public:
    explicit StreamEchoService(const brpc::StreamOptions& options, AfterAccept after = AfterAccept())
        : options_(options), after_(after) {}

    void Echo(google::protobuf::RpcController* controller, const test::EchoRequest* request,
              test::EchoResponse* response, google::protobuf::Closure* done) override {
        brpc::ClosureGuard done_guard(done);
        response->set_message(request->message());
        brpc::Controller* cntl = static_cast<brpc::Controller*>(controller);
        brpc::StreamId response_stream = brpc::INVALID_STREAM_ID;
        if (brpc::StreamAccept(&response_stream, *cntl, &options_) != 0) {
            ++accept_failures;
            cntl->SetFailed("Fail to accept stream");
            return;
        }
        if (after_) {
            after_(response_stream);
        }
    }

    std::atomic<int> accept_failures{0};

private:
    brpc::StreamOptions options_;
    AfterAccept after_;
};

// A server on an ephemeral loopback port, as brpc's test starts one on 9007.
class TestServer {
public:
    explicit TestServer(google::protobuf::Service* service) {
        EXPECT_EQ(0, server_.AddService(service, brpc::SERVER_DOESNT_OWN_SERVICE));
        EXPECT_EQ(0, server_.Start("127.0.0.1:0", NULL));
    }
    std::string address() const { return "127.0.0.1:" + std::to_string(server_.listen_address().port); }
    int port() const { return server_.listen_address().port; }
    void StopAndJoin() {
        server_.Stop(0);
        server_.Join();
    }

private:
    brpc::Server server_;
};

butil::IOBuf IntMessage(int value) {
    const uint32_t network = htonl((uint32_t)value);
    butil::IOBuf out;
    out.append(&network, sizeof(network));
    return out;
}

// brpc's OrderedInputHandler: expects 0, 1, 2, ... as 4-byte big-endian ints;
// optionally blocks its consumer while `block` is set.
class OrderedInputHandler : public brpc::StreamInputHandler {
public:
    int on_received_messages(brpc::StreamId, butil::IOBuf* const messages[], size_t size) override {
        while (block.load()) {
            usleep(100);
        }
        for (size_t i = 0; i < size; ++i) {
            uint32_t network = 0;
            if (messages[i]->size() != sizeof(network)) {
                ++errors;
                continue;
            }
            messages[i]->cutn(&network, sizeof(network));
            if ((int)ntohl(network) != expected_next_value.load()) {
                ++errors;
            }
            ++expected_next_value;
        }
        return 0;
    }
    void on_idle_timeout(brpc::StreamId) override { ++idle_times; }
    void on_closed(brpc::StreamId) override { ++closed; }
    void on_failed(brpc::StreamId, int error_code, const std::string&) override {
        if (error_code == 0) {
            ++errors;
        }
        ++failed;
    }

    std::atomic<bool> block{false};
    std::atomic<int> expected_next_value{0};
    std::atomic<int> errors{0};
    std::atomic<int> idle_times{0};
    std::atomic<int> closed{0};
    std::atomic<int> failed{0};
};

// Calls Echo on `channel` setting up `stream`'s call; synchronous.
void CallEcho(brpc::Channel* channel, brpc::Controller* cntl, test::EchoResponse* response,
              google::protobuf::Closure* done = NULL) {
    test::EchoRequest request;
    request.set_message("hello world");
    test::EchoService_Stub stub(channel);
    stub.Echo(cntl, &request, response, done);
}

TEST(BrpcStreamingRpc, SanityACallWithAStreamSucceeds) {
    brpc::StreamOptions server_options;
    StreamEchoService service(server_options);
    TestServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    brpc::Controller cntl;
    brpc::StreamId request_stream = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&request_stream, cntl, NULL));
    brpc::ScopedStream stream_guard(request_stream);
    test::EchoResponse response;
    CallEcho(&channel, &cntl, &response);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ("hello world", response.message());
    EXPECT_EQ(0, brpc::StreamClose(request_stream));
    server.StopAndJoin();
}

TEST(BrpcStreamingRpc, BatchCreatedExtraStreamGetsFeedbackAndWritesAgain) {
    // The server writes exactly its window (64 bytes over max_buf_size 16 is
    // allowed once, as brpc's first write), then one byte that can only go
    // after the client's FEEDBACK for the extra stream.
    std::atomic<int> first_rc{-1};
    std::atomic<int> second_rc{-1};
    std::atomic<bool> writes_done{false};
    std::thread sender;
    std::vector<brpc::StreamId> server_ids;
    std::mutex mu;
    class BatchService : public test::EchoService {
    public:
        std::function<void(brpc::Controller*)> on_echo;
        void Echo(google::protobuf::RpcController* controller, const test::EchoRequest* request,
                  test::EchoResponse* response, google::protobuf::Closure* done) override {
            brpc::ClosureGuard guard(done);
            response->set_message(request->message());
            on_echo(static_cast<brpc::Controller*>(controller));
        }
    } service;
    brpc::StreamOptions server_options;
    server_options.max_buf_size = 16;
    service.on_echo = [&](brpc::Controller* cntl) {
        brpc::StreamIds ids;
        ASSERT_EQ(0, brpc::StreamAccept(ids, *cntl, &server_options));
        ASSERT_EQ(2u, ids.size());
        std::lock_guard<std::mutex> g(mu);
        server_ids = ids;
        const brpc::StreamId extra = ids[1];
        sender = std::thread([&, extra] {
            first_rc = brpc::StreamWrite(extra, Buf(std::string(64, 'a')));
            int rc = EAGAIN;
            const auto deadline = Clock::now() + std::chrono::seconds(10);
            while (rc == EAGAIN && Clock::now() < deadline) {
                rc = brpc::StreamWrite(extra, Buf("b"));
                if (rc == EAGAIN) {
                    const timespec due = RealtimeIn(100);
                    brpc::StreamWait(extra, &due);
                }
            }
            second_rc = rc;
            writes_done = true;
        });
    };
    TestServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));

    RecordingHandler client_handler;
    brpc::StreamOptions client_options;
    client_options.handler = &client_handler;
    client_options.max_buf_size = 0;
    brpc::Controller cntl;
    brpc::StreamIds request_streams;
    ASSERT_EQ(0, brpc::StreamCreate(request_streams, 2, cntl, &client_options));
    test::EchoResponse response;
    CallEcho(&channel, &cntl, &response);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();

    ASSERT_TRUE(WaitFor([&] { return writes_done.load(); }));
    EXPECT_EQ(0, first_rc.load());
    EXPECT_EQ(0, second_rc.load());
    ASSERT_TRUE(WaitFor([&] { return client_handler.received(request_streams[1]).size() == 2; }));
    EXPECT_EQ(std::string(64, 'a'), client_handler.received(request_streams[1])[0]);
    EXPECT_EQ("b", client_handler.received(request_streams[1])[1]);

    sender.join();
    for (brpc::StreamId id : request_streams) {
        brpc::StreamClose(id);
        EXPECT_TRUE(client_handler.WaitClosed(id));
    }
    server.StopAndJoin();
}

TEST(BrpcStreamingRpc, MessagesWrittenBeforeCloseArriveInOrderBeforeJoinReturns) {
    OrderedInputHandler handler;
    brpc::StreamOptions server_options;
    server_options.handler = &handler;
    server_options.messages_in_batch = 100;
    StreamEchoService service(server_options);
    TestServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    brpc::Controller cntl;
    brpc::StreamId request_stream = brpc::INVALID_STREAM_ID;
    brpc::StreamOptions request_options;
    request_options.max_buf_size = 0;
    ASSERT_EQ(0, brpc::StreamCreate(&request_stream, cntl, &request_options));
    brpc::ScopedStream stream_guard(request_stream);
    test::EchoResponse response;
    CallEcho(&channel, &cntl, &response);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    const int N = 10000;
    for (int i = 0; i < N; ++i) {
        ASSERT_EQ(0, brpc::StreamWrite(request_stream, IntMessage(i))) << "i=" << i;
    }
    ASSERT_EQ(0, brpc::StreamClose(request_stream));
    server.StopAndJoin();
    // Join returned: every message was delivered and the stream closed
    // normally, with nothing left to wait for (brpc's test polls here).
    EXPECT_EQ(1, handler.closed.load());
    EXPECT_EQ(0, handler.failed.load());
    EXPECT_EQ(0, handler.idle_times.load());
    EXPECT_EQ(N, handler.expected_next_value.load());
    EXPECT_EQ(0, handler.errors.load());
}

TEST(BrpcStreamingRpc, BlockedConsumerFillsTheWindowAndWaitsWakeWritersBothWays) {
    OrderedInputHandler handler;
    handler.block = true;
    const int N = 10000;
    brpc::StreamOptions server_options;
    server_options.handler = &handler;
    server_options.max_buf_size = sizeof(uint32_t) * N;
    StreamEchoService service(server_options);
    TestServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    brpc::Controller cntl;
    brpc::StreamOptions request_options;
    request_options.max_buf_size = sizeof(uint32_t) * N;
    brpc::StreamId request_stream = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&request_stream, cntl, &request_options));
    brpc::ScopedStream stream_guard(request_stream);
    test::EchoResponse response;
    CallEcho(&channel, &cntl, &response);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();

    for (int i = 0; i < N; ++i) {
        ASSERT_EQ(0, brpc::StreamWrite(request_stream, IntMessage(i))) << "i=" << i;
    }
    EXPECT_EQ(EAGAIN, brpc::StreamWrite(request_stream, IntMessage(-1)));
    handler.block = false;
    ASSERT_TRUE(WaitFor([&] { return handler.expected_next_value.load() == N; }));

    // Blocking wait: each StreamWait returns once there is room again.
    handler.block = true;
    std::thread unblock([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        handler.block = false;
    });
    for (int i = N; i < N + N; ++i) {
        ASSERT_EQ(0, brpc::StreamWait(request_stream, NULL));
        ASSERT_EQ(0, brpc::StreamWrite(request_stream, IntMessage(i))) << "i=" << i;
    }
    unblock.join();
    ASSERT_TRUE(WaitFor([&] { return handler.expected_next_value.load() == N + N; }));

    // Callback wait: on_writable with 0 once room comes back.
    // The consumer caught up; its FEEDBACK may still be on the way, so a
    // write that finds the window full waits for it.
    handler.block = true;
    for (int i = N + N; i < 3 * N; ++i) {
        ASSERT_EQ(0, WriteWaiting(request_stream, IntMessage(i))) << "i=" << i;
    }
    EXPECT_EQ(EAGAIN, brpc::StreamWrite(request_stream, IntMessage(-1)));
    struct Writable {
        std::atomic<bool> called{false};
        std::atomic<int> code{-1};
    } timed_out, woken;
    auto on_writable = [](brpc::StreamId, void* arg, int error_code) {
        Writable* w = static_cast<Writable*>(arg);
        w->code = error_code;
        w->called = true;
    };
    // A wait whose deadline passes first reports ETIMEDOUT.
    timespec due = RealtimeIn(1);
    brpc::StreamWait(request_stream, &due, on_writable, &timed_out);
    ASSERT_TRUE(WaitFor([&] { return timed_out.called.load(); }));
    EXPECT_EQ(ETIMEDOUT, timed_out.code.load());
    brpc::StreamWait(request_stream, NULL, on_writable, &woken);
    handler.block = false;
    ASSERT_TRUE(WaitFor([&] { return woken.called.load(); }));
    EXPECT_EQ(0, woken.code.load());

    ASSERT_TRUE(WaitFor([&] { return handler.expected_next_value.load() == 3 * N; }));
    ASSERT_EQ(0, brpc::StreamClose(request_stream));
    ASSERT_TRUE(WaitFor([&] { return handler.closed.load() == 1; }));
    EXPECT_EQ(0, handler.failed.load());
    EXPECT_EQ(0, handler.idle_times.load());
    EXPECT_EQ(0, handler.errors.load());
    server.StopAndJoin();
}

// A loopback TCP relay between a client and a server, so a test can break
// the connection under both of them (brpc's test calls SetFailed on the
// host socket instead).
class Relay {
public:
    explicit Relay(int server_port) : server_port_(server_port) {
        listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr;
        memset(&addr, 0, sizeof(addr));
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        socklen_t len = sizeof(addr);
        EXPECT_EQ(0, bind(listen_fd_, (sockaddr*)&addr, sizeof(addr)));
        EXPECT_EQ(0, listen(listen_fd_, 4));
        EXPECT_EQ(0, getsockname(listen_fd_, (sockaddr*)&addr, &len));
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { Run(); });
    }
    ~Relay() {
        Cut();
        thread_.join();
        close(listen_fd_);
    }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    // Resets both connections: each side sees its connection broken.
    void Cut() {
        cut_ = true;
        std::lock_guard<std::mutex> g(mu_);
        for (int fd : fds_) {
            shutdown(fd, SHUT_RDWR);
        }
    }

private:
    void Run() {
        pollfd accept_poll = {listen_fd_, POLLIN, 0};
        while (!cut_ && poll(&accept_poll, 1, 10) <= 0) {
        }
        if (cut_) {
            return;
        }
        const int client = accept(listen_fd_, NULL, NULL);
        const int server = ConnectLoopback(server_port_);
        {
            std::lock_guard<std::mutex> g(mu_);
            fds_ = {client, server};
        }
        char buf[65536];
        while (!cut_) {
            pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
            if (poll(fds, 2, 10) <= 0) {
                continue;
            }
            for (int i = 0; i < 2; ++i) {
                if (fds[i].revents == 0) {
                    continue;
                }
                const ssize_t n = read(fds[i].fd, buf, sizeof(buf));
                if (n <= 0) {
                    cut_ = true;
                    break;
                }
                const int to = i == 0 ? server : client;
                for (ssize_t sent = 0; sent < n;) {
                    const ssize_t w = write(to, buf + sent, n - sent);
                    if (w <= 0) {
                        cut_ = true;
                        break;
                    }
                    sent += w;
                }
            }
        }
        std::lock_guard<std::mutex> g(mu_);
        for (int fd : fds_) {
            shutdown(fd, SHUT_RDWR);
            close(fd);
        }
        fds_.clear();
    }

    int server_port_;
    int listen_fd_ = -1;
    int port_ = 0;
    std::atomic<bool> cut_{false};
    std::mutex mu_;
    std::vector<int> fds_;
    std::thread thread_;
};

TEST(BrpcStreamingRpc, StreamsCloseAutomaticallyWhenTheHostConnectionBreaks) {
    OrderedInputHandler handler;
    handler.block = true;
    brpc::StreamOptions server_options;
    server_options.handler = &handler;
    server_options.max_buf_size = sizeof(uint32_t) * 10000;
    StreamEchoService service(server_options);
    TestServer server(&service);
    Relay relay(server.port());
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(relay.address().c_str(), NULL));
    brpc::Controller cntl;
    brpc::StreamId request_stream = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&request_stream, cntl, NULL));
    brpc::ScopedStream stream_guard(request_stream);
    test::EchoResponse response;
    CallEcho(&channel, &cntl, &response);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();

    relay.Cut();
    // The client's stream fails with its connection: writes are refused.
    ASSERT_TRUE(WaitFor([&] { return brpc::StreamWrite(request_stream, Buf("test")) == EINVAL; }));
    handler.block = false;
    ASSERT_TRUE(WaitFor([&] { return handler.closed.load() == 1; }));
    EXPECT_EQ(1, handler.failed.load());
    EXPECT_EQ(0, handler.idle_times.load());
    EXPECT_EQ(0, handler.expected_next_value.load());
    server.StopAndJoin();
}

TEST(BrpcStreamingRpc, AStreamFailsWhenThePeerSendsRst) {
    OrderedInputHandler handler;
    brpc::StreamOptions server_options;
    server_options.handler = &handler;
    server_options.messages_in_batch = 100;
    StreamEchoService service(server_options);
    TestServer server(&service);

    // A raw client: the call with stream 1, N messages, then RST.
    RawConnection conn(ConnectLoopback(server.port()));
    ASSERT_GE(conn.fd(), 0);
    brpc_meta_test::RpcMeta meta;
    meta.mutable_request()->set_service_name("test.EchoService");
    meta.mutable_request()->set_method_name("Echo");
    meta.set_correlation_id(1);
    meta.mutable_stream_settings()->set_stream_id(1);
    meta.mutable_stream_settings()->set_need_feedback(false);
    meta.mutable_stream_settings()->set_writable(true);
    test::EchoRequest request;
    request.set_message("hello world");
    ASSERT_TRUE(conn.Send(EncodeFrame("PRPC", meta, request.SerializeAsString())));
    Frame setup;
    ASSERT_TRUE(conn.Next(&setup));
    ASSERT_EQ("STRM", setup.magic);
    const int64_t server_stream = StreamMeta(setup).source_stream_id();
    ASSERT_GT(server_stream, 0);

    const int N = 10000;
    std::string batch;
    for (int i = 0; i < N; ++i) {
        const uint32_t network = htonl((uint32_t)i);
        batch += StreamFrame(server_stream, 1, brpc_meta_test::FRAME_TYPE_DATA,
                             std::string(reinterpret_cast<const char*>(&network), sizeof(network)));
    }
    ASSERT_TRUE(conn.Send(batch));
    ASSERT_TRUE(WaitFor([&] { return handler.expected_next_value.load() == N; }));
    ASSERT_TRUE(conn.Send(StreamFrame(server_stream, 1, brpc_meta_test::FRAME_TYPE_RST, "")));
    ASSERT_TRUE(WaitFor([&] { return handler.closed.load() == 1; }));
    EXPECT_EQ(1, handler.failed.load());
    EXPECT_EQ(0, handler.idle_times.load());
    EXPECT_EQ(N, handler.expected_next_value.load());
    EXPECT_EQ(0, handler.errors.load());
    conn.Close();
    server.StopAndJoin();
}

TEST(BrpcStreamingRpc, AnIdleStreamReportsIdleTimeoutsAndClosesNormally) {
    OrderedInputHandler handler;
    brpc::StreamOptions server_options;
    server_options.handler = &handler;
    server_options.idle_timeout_ms = 2;
    server_options.max_buf_size = sizeof(uint32_t) * 10000;
    StreamEchoService service(server_options);
    TestServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    brpc::Controller cntl;
    brpc::StreamId request_stream = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&request_stream, cntl, NULL));
    brpc::ScopedStream stream_guard(request_stream);
    test::EchoResponse response;
    CallEcho(&channel, &cntl, &response);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    ASSERT_TRUE(WaitFor([&] { return handler.idle_times.load() >= 2; }));
    ASSERT_EQ(0, brpc::StreamClose(request_stream));
    ASSERT_TRUE(WaitFor([&] { return handler.closed.load() == 1; }));
    EXPECT_EQ(0, handler.failed.load());
    EXPECT_EQ(0, handler.expected_next_value.load());
    server.StopAndJoin();
}

// brpc's PingPongHandler: answers n with n+1, expects one message a batch.
class PingPongHandler : public brpc::StreamInputHandler {
public:
    explicit PingPongHandler(int first_expected) : expected_next_value_(first_expected) {}
    int on_received_messages(brpc::StreamId id, butil::IOBuf* const messages[], size_t size) override {
        if (size != 1) {
            ++errors;
            return 0;
        }
        uint32_t network = 0;
        if (messages[0]->size() != sizeof(network)) {
            ++errors;
            return 0;
        }
        messages[0]->cutn(&network, sizeof(network));
        const int value = (int)ntohl(network);
        if (value != expected_next_value_) {
            ++errors;
        }
        const int send_back = value + 1;
        expected_next_value_ = send_back + 1;
        ++exchanges;
        brpc::StreamWrite(id, IntMessage(send_back));  // the return value is not needed
        return 0;
    }
    void on_idle_timeout(brpc::StreamId) override { ++idle_times; }
    void on_closed(brpc::StreamId) override { ++closed; }
    void on_failed(brpc::StreamId, int, const std::string&) override { ++failed; }

    std::atomic<int> errors{0};
    std::atomic<int> exchanges{0};
    std::atomic<int> idle_times{0};
    std::atomic<int> closed{0};
    std::atomic<int> failed{0};

private:
    int expected_next_value_;
};

TEST(BrpcStreamingRpc, PingPongRunsBothWaysOneMessageAtATime) {
    PingPongHandler server_handler(0);
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    server_options.max_buf_size = sizeof(uint32_t) * 10000;
    StreamEchoService service(server_options);
    TestServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    PingPongHandler client_handler(1);
    brpc::StreamOptions request_options;
    request_options.handler = &client_handler;
    request_options.max_buf_size = sizeof(uint32_t) * 10000;
    brpc::Controller cntl;
    brpc::StreamId request_stream = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&request_stream, cntl, &request_options));
    brpc::ScopedStream stream_guard(request_stream);
    test::EchoResponse response;
    CallEcho(&channel, &cntl, &response);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    ASSERT_EQ(0, brpc::StreamWrite(request_stream, IntMessage(0)));
    ASSERT_TRUE(WaitFor([&] { return client_handler.exchanges.load() >= 100; }));
    ASSERT_EQ(0, brpc::StreamClose(request_stream));
    ASSERT_TRUE(WaitFor([&] { return server_handler.closed.load() == 1 && client_handler.closed.load() == 1; }));
    EXPECT_EQ(0, server_handler.errors.load());
    EXPECT_EQ(0, client_handler.errors.load());
    EXPECT_EQ(0, server_handler.idle_times.load());
    EXPECT_EQ(0, client_handler.idle_times.load());
    server.StopAndJoin();
}

TEST(BrpcStreamingRpc, DataTheServerWritesBeforeRunningDoneArrivesInOrder) {
    const int N = 10000;
    brpc::StreamOptions server_options;
    server_options.max_buf_size = -1;
    std::atomic<int> write_errors{0};
    StreamEchoService service(server_options, [&](brpc::StreamId id) {
        for (int i = 0; i < N; ++i) {
            if (brpc::StreamWrite(id, IntMessage(i)) != 0) {
                ++write_errors;
            }
        }
    });
    TestServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    OrderedInputHandler handler;
    brpc::StreamOptions request_options;
    request_options.handler = &handler;
    brpc::Controller cntl;
    brpc::StreamId request_stream = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&request_stream, cntl, &request_options));
    brpc::ScopedStream stream_guard(request_stream);
    test::EchoResponse response;
    CallEcho(&channel, &cntl, &response);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ(0, write_errors.load());
    ASSERT_TRUE(WaitFor([&] { return handler.expected_next_value.load() == N; }));
    ASSERT_EQ(0, brpc::StreamClose(request_stream));
    ASSERT_TRUE(WaitFor([&] { return handler.closed.load() == 1; }));
    EXPECT_EQ(0, handler.failed.load());
    EXPECT_EQ(0, handler.idle_times.load());
    EXPECT_EQ(0, handler.errors.load());
    server.StopAndJoin();
}

// brpc's segment_stream_data_automatically, with its gflag through
// SetStreamWriteMaxSegmentSize and its host-socket statistics through the
// library's counters: each 4-byte message goes as four 1-byte DATA frames
// and arrives whole and in order.
TEST(BrpcStreamingRpc, MessagesLongerThanTheMaxSegmentSizeAreSplitAndJoinedBack) {
    ASSERT_EQ(EINVAL, brpc::SetStreamWriteMaxSegmentSize(0));
    ASSERT_EQ(0, brpc::SetStreamWriteMaxSegmentSize(1));
    struct RestoreSegmentSize {
        ~RestoreSegmentSize() { brpc::SetStreamWriteMaxSegmentSize(512 * 1024 * 1024); }
    } restore;
    EXPECT_EQ(1u, brpc::StreamWriteMaxSegmentSize());
    OrderedInputHandler handler;
    brpc::StreamOptions server_options;
    server_options.handler = &handler;
    server_options.messages_in_batch = 100;
    StreamEchoService service(server_options);
    TestServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    brpc::Controller cntl;
    brpc::StreamId request_stream = brpc::INVALID_STREAM_ID;
    brpc::StreamOptions request_options;
    ASSERT_EQ(0, brpc::StreamCreate(&request_stream, cntl, &request_options));
    brpc::ScopedStream stream_guard(request_stream);
    test::EchoResponse response;
    CallEcho(&channel, &cntl, &response);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    const brpc::StreamStats before = brpc::GetStreamStats();
    const int N = 1000;
    for (int i = 0; i < N; ++i) {
        ASSERT_EQ(0, WriteWaiting(request_stream, IntMessage(i))) << "i=" << i;
    }
    ASSERT_EQ(0, brpc::StreamClose(request_stream));
    server.StopAndJoin();
    const brpc::StreamStats after = brpc::GetStreamStats();
    // Only the client's stream sends DATA here: 4 frames per message.
    EXPECT_EQ((uint64_t)N, after.stream_messages_out - before.stream_messages_out);
    EXPECT_EQ((uint64_t)N * sizeof(uint32_t), after.stream_data_frames_out - before.stream_data_frames_out);
    // Each 1-byte segment carries a whole frame header and meta.
    EXPECT_LT(N * sizeof(uint32_t) * 4, after.socket_bytes_written - before.socket_bytes_written);
    EXPECT_EQ(1, handler.closed.load());
    EXPECT_EQ(0, handler.failed.load());
    EXPECT_EQ(0, handler.idle_times.load());
    EXPECT_EQ(N, handler.expected_next_value.load());
    EXPECT_EQ(0, handler.errors.load());
}

TEST(BrpcStreamingRpc, CreatingARequestStreamTwiceOnOneControllerFails) {
    brpc::Controller cntl;
    brpc::StreamId first = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&first, cntl, NULL));
    brpc::ScopedStream stream_guard(first);
    brpc::StreamId second = brpc::INVALID_STREAM_ID;
    EXPECT_EQ(-1, brpc::StreamCreate(&second, cntl, NULL));
    EXPECT_EQ(brpc::INVALID_STREAM_ID, second);
}

// brpc's MultiStreamHandler: per stream, expects 0..N-1 in order.
class MultiStreamHandler : public brpc::StreamInputHandler {
public:
    int on_received_messages(brpc::StreamId id, butil::IOBuf* const messages[], size_t size) override {
        std::lock_guard<std::mutex> g(mu_);
        for (size_t i = 0; i < size; ++i) {
            uint32_t network = 0;
            if (messages[i]->size() != sizeof(network)) {
                error_ = true;
                continue;
            }
            messages[i]->cutn(&network, sizeof(network));
            if ((int)ntohl(network) != expected_[id]) {
                error_ = true;
            }
            ++expected_[id];
            ++received_[id];
        }
        return 0;
    }
    void on_idle_timeout(brpc::StreamId) override {}
    void on_closed(brpc::StreamId id) override {
        std::lock_guard<std::mutex> g(mu_);
        ++closed_[id];
    }
    void on_failed(brpc::StreamId, int, const std::string&) override {
        std::lock_guard<std::mutex> g(mu_);
        failed_ = true;
    }
    size_t received(brpc::StreamId id) {
        std::lock_guard<std::mutex> g(mu_);
        return received_[id];
    }
    size_t closed(brpc::StreamId id) {
        std::lock_guard<std::mutex> g(mu_);
        return closed_[id];
    }
    size_t total_received() {
        std::lock_guard<std::mutex> g(mu_);
        size_t sum = 0;
        for (const auto& kv : received_) {
            sum += kv.second;
        }
        return sum;
    }
    size_t total_closed() {
        std::lock_guard<std::mutex> g(mu_);
        size_t sum = 0;
        for (const auto& kv : closed_) {
            sum += kv.second;
        }
        return sum;
    }
    size_t num_streams() {
        std::lock_guard<std::mutex> g(mu_);
        return received_.size();
    }
    bool error() {
        std::lock_guard<std::mutex> g(mu_);
        return error_;
    }
    bool failed() {
        std::lock_guard<std::mutex> g(mu_);
        return failed_;
    }

private:
    std::mutex mu_;
    std::unordered_map<brpc::StreamId, int> expected_;
    std::unordered_map<brpc::StreamId, size_t> received_;
    std::unordered_map<brpc::StreamId, size_t> closed_;
    bool error_ = false;
    bool failed_ = false;
};

// Accepts a batch of streams and writes 0..n-1 on each.
class ExtraStreamService : public test::EchoService {
public:
    ExtraStreamService(const brpc::StreamOptions& options, size_t count, int n)
        : options_(options), count_(count), n_(n) {}
    void Echo(google::protobuf::RpcController* controller, const test::EchoRequest* request,
              test::EchoResponse* response, google::protobuf::Closure* done) override {
        brpc::ClosureGuard guard(done);
        brpc::Controller* cntl = static_cast<brpc::Controller*>(controller);
        response->set_message(request->message());
        brpc::StreamIds ids;
        if (brpc::StreamAccept(ids, *cntl, &options_) != 0 || ids.size() != count_) {
            ++errors;
            cntl->SetFailed("unexpected streams");
            return;
        }
        for (size_t s = 0; s < ids.size(); ++s) {
            for (int i = 0; i < n_; ++i) {
                if (brpc::StreamWrite(ids[s], IntMessage(i)) != 0) {
                    ++errors;
                }
            }
        }
    }
    std::atomic<int> errors{0};

private:
    brpc::StreamOptions options_;
    size_t count_;
    int n_;
};

TEST(BrpcStreamingRpc, EveryBatchCreatedStreamReceivesItsOwnOrderedData) {
    const size_t kStreams = 3;
    const int N = 1000;
    MultiStreamHandler handler;
    brpc::StreamOptions server_options;
    server_options.max_buf_size = -1;
    ExtraStreamService service(server_options, kStreams, N);
    TestServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    brpc::Controller cntl;
    brpc::StreamOptions client_options;
    client_options.handler = &handler;
    brpc::StreamIds request_streams;
    ASSERT_EQ(0, brpc::StreamCreate(request_streams, kStreams, cntl, &client_options));
    test::EchoResponse response;
    CallEcho(&channel, &cntl, &response);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ(0, service.errors.load());
    for (size_t i = 0; i < kStreams; ++i) {
        const brpc::StreamId id = request_streams[i];
        ASSERT_TRUE(WaitFor([&] { return handler.received(id) >= (size_t)N; })) << "stream " << i;
        EXPECT_EQ((size_t)N, handler.received(id));
    }
    EXPECT_FALSE(handler.error());
    EXPECT_FALSE(handler.failed());
    for (brpc::StreamId id : request_streams) {
        brpc::StreamClose(id);
    }
    server.StopAndJoin();
    for (brpc::StreamId id : request_streams) {
        ASSERT_TRUE(WaitFor([&] { return handler.closed(id) == 1; }));
    }
}

TEST(BrpcStreamingRpc, ExtraStreamsThatOnlyCarryUpstreamDataConnect) {
    const size_t kStreams = 3;
    const int N = 1000;
    MultiStreamHandler server_handler;
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    server_options.max_buf_size = 0;
    ExtraStreamService service(server_options, kStreams, 0);
    TestServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    brpc::Controller cntl;
    brpc::StreamOptions client_options;
    client_options.max_buf_size = -1;
    brpc::StreamIds request_streams;
    ASSERT_EQ(0, brpc::StreamCreate(request_streams, kStreams, cntl, &client_options));
    test::EchoResponse response;
    CallEcho(&channel, &cntl, &response);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    for (size_t i = 0; i < kStreams; ++i) {
        for (int j = 0; j < N; ++j) {
            ASSERT_EQ(0, brpc::StreamWrite(request_streams[i], IntMessage(j))) << "stream " << i << " j=" << j;
        }
    }
    const size_t total = kStreams * N;
    ASSERT_TRUE(WaitFor([&] { return server_handler.total_received() >= total; }));
    EXPECT_EQ(total, server_handler.total_received());
    EXPECT_EQ(kStreams, server_handler.num_streams());
    EXPECT_FALSE(server_handler.error());
    EXPECT_FALSE(server_handler.failed());
    for (brpc::StreamId id : request_streams) {
        brpc::StreamClose(id);
    }
    ASSERT_TRUE(WaitFor([&] { return server_handler.total_closed() == kStreams; }));
    server.StopAndJoin();
}

// brpc's unconsumed_bytes_reclaimed_on_stream_close, with the host socket's
// unconsumed-size field read through the stream_bytes_unconsumed counter:
// bytes the blocked server has not consumed are counted while the stream
// is open and reclaimed when it closes.
TEST(BrpcStreamingRpc, UnconsumedBytesAreReclaimedWhenTheStreamCloses) {
    std::atomic<bool> blocked{true};
    struct BlockingHandler : brpc::StreamInputHandler {
        explicit BlockingHandler(std::atomic<bool>* b) : blocked(b) {}
        int on_received_messages(brpc::StreamId, butil::IOBuf* const[], size_t) override {
            WaitFor([this] { return !blocked->load(); }, 20);
            return 0;
        }
        void on_idle_timeout(brpc::StreamId) override {}
        void on_closed(brpc::StreamId) override {}
        std::atomic<bool>* blocked;
    } handler(&blocked);
    brpc::StreamOptions server_options;
    server_options.handler = &handler;
    server_options.max_buf_size = 1024 * 1024;
    StreamEchoService service(server_options);
    TestServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    brpc::Controller cntl;
    brpc::StreamId request_stream = brpc::INVALID_STREAM_ID;
    brpc::StreamOptions request_options;
    request_options.max_buf_size = 1024 * 1024;
    ASSERT_EQ(0, brpc::StreamCreate(&request_stream, cntl, &request_options));
    brpc::ScopedStream stream_guard(request_stream);
    test::EchoResponse response;
    CallEcho(&channel, &cntl, &response);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();

    const uint64_t baseline = brpc::GetStreamStats().stream_bytes_unconsumed;
    const size_t write_size = 100 * 1024;
    ASSERT_EQ(0, brpc::StreamWrite(request_stream, Buf(std::string(write_size, 'x'))));
    ASSERT_TRUE(WaitFor([&] { return brpc::GetStreamStats().stream_bytes_unconsumed >= baseline + write_size; }));
    ASSERT_EQ(0, brpc::StreamClose(request_stream));
    ASSERT_TRUE(WaitFor([&] { return brpc::GetStreamStats().stream_bytes_unconsumed == baseline; }));
    blocked = false;
    server.StopAndJoin();
}

}  // namespace
