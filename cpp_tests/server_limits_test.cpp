// brpc::Server's limits through the facade: ServerOptions.max_concurrency,
// method_max_concurrency and MaxConcurrencyOf answer ELIMIT beyond the
// limit without running the method; limiters not implemented refuse Start.
// The bounds against peers that send no whole request: max_connections,
// max_partial_request_bytes, header_timeout_ms, body_timeout_ms,
// max_streams_per_connection.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "brpc/callback.h"
#include "brpc/channel.h"
#include "brpc/controller.h"
#include "brpc/server.h"
#include "echo.pb.h"

namespace {

// Sleeps as asked, counting the calls that reached it.
class SleepyEcho : public test::EchoService {
public:
    void Echo(google::protobuf::RpcController*, const test::EchoRequest* request,
              test::EchoResponse* response, google::protobuf::Closure* done) override {
        brpc::ClosureGuard guard(done);
        ++runs;
        std::this_thread::sleep_for(std::chrono::milliseconds(request->sleep_ms()));
        response->set_message(request->message());
    }
    std::atomic<int> runs{0};
};

class Caller {
public:
    explicit Caller(int port) {
        brpc::ChannelOptions options;
        options.timeout_ms = 10000;
        EXPECT_EQ(0, channel_.Init("127.0.0.1", port, &options));
    }
    // Starts an asynchronous Echo that sleeps `sleep_ms` on the server.
    void Start(int sleep_ms) {
        request_.set_sleep_ms(sleep_ms);
        test::EchoService_Stub stub(&channel_);
        stub.Echo(&cntl_, &request_, &response_, brpc::NewCallback(&Caller::Done, this));
    }
    int Wait() {
        for (int i = 0; i < 2000 && !done_; ++i) {
            usleep(10 * 1000);
        }
        EXPECT_TRUE(done_.load());
        return cntl_.ErrorCode();
    }

private:
    static void Done(Caller* self) { self->done_ = true; }
    brpc::Channel channel_;
    brpc::Controller cntl_;
    test::EchoRequest request_;
    test::EchoResponse response_;
    std::atomic<bool> done_{false};
};

// Waits until `runs` calls reached the service.
bool WaitForRuns(const SleepyEcho& service, int runs) {
    for (int i = 0; i < 2000; ++i) {
        if (service.runs >= runs) {
            return true;
        }
        usleep(5 * 1000);
    }
    return false;
}

TEST(ServerLimitsTest, ACallBeyondMaxConcurrencyOfItsMethodGetsElimitWithoutRunning) {
    SleepyEcho service;
    brpc::Server server;
    ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    server.MaxConcurrencyOf("test.EchoService.Echo") = 1;
    EXPECT_EQ(1, server.MaxConcurrencyOf("test.EchoService", "Echo"));
    ASSERT_EQ(0, server.Start("127.0.0.1:0", NULL));
    const brpc::Server& running = server;
    EXPECT_EQ(1, running.MaxConcurrencyOf(&service, "Echo"));
    Caller slow(server.listen_address().port);
    slow.Start(1000);
    ASSERT_TRUE(WaitForRuns(service, 1));
    Caller refused(server.listen_address().port);
    refused.Start(0);
    EXPECT_EQ(brpc::ELIMIT, refused.Wait());
    EXPECT_EQ(1, service.runs.load());
    EXPECT_EQ(0, slow.Wait());
}

TEST(ServerLimitsTest, MethodMaxConcurrencyAppliesToEveryMethodAndMaxConcurrencyToTheServer) {
    for (int server_wide = 0; server_wide < 2; ++server_wide) {
        SleepyEcho service;
        brpc::Server server;
        ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
        brpc::ServerOptions options;
        if (server_wide) {
            options.max_concurrency = 1;
        } else {
            options.method_max_concurrency = "1";
        }
        ASSERT_EQ(0, server.Start("127.0.0.1:0", &options));
        Caller slow(server.listen_address().port);
        slow.Start(1000);
        ASSERT_TRUE(WaitForRuns(service, 1));
        Caller refused(server.listen_address().port);
        refused.Start(0);
        EXPECT_EQ(brpc::ELIMIT, refused.Wait()) << "server_wide=" << server_wide;
        EXPECT_EQ(0, slow.Wait());
    }
}

TEST(ServerLimitsTest, AnAdaptiveLimiterIsRefusedAtStart) {
    SleepyEcho service;
    brpc::Server server;
    ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    server.MaxConcurrencyOf("test.EchoService.Echo") = "auto";
    EXPECT_EQ(-1, server.Start("127.0.0.1:0", NULL));
    EXPECT_EQ(EINVAL, errno);
    EXPECT_FALSE(server.IsRunning());
}

TEST(ServerLimitsTest, AnUnknownMethodGetsAPlaceholderLimit) {
    SleepyEcho service;
    brpc::Server server;
    ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    server.MaxConcurrencyOf("test.EchoService.Nope") = 5;
    const brpc::Server& const_server = server;
    EXPECT_EQ(0, const_server.MaxConcurrencyOf("test.EchoService.Nope"));
    EXPECT_EQ(0, server.Start("127.0.0.1:0", NULL));
}

// A connection to 127.0.0.1:port, or -1.
int ConnectTo(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

// True when the server closed `fd` within `ms` (a read sees EOF or a reset).
bool ClosedByServer(int fd, int ms) {
    timeval timeout = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    char byte;
    const ssize_t n = read(fd, &byte, 1);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

TEST(ServerLimitsTest, ServerOptionsBoundConnectionsPartialRequestsAndHeaderTimeByDefault) {
    brpc::ServerOptions options;
    EXPECT_EQ(10000, options.max_connections);
    EXPECT_EQ(512LL * 1024 * 1024, options.max_partial_request_bytes);
    EXPECT_EQ(10000, options.header_timeout_ms);
    EXPECT_EQ(30000, options.body_timeout_ms);
    EXPECT_EQ(65536, options.max_streams_per_connection);
}

TEST(ServerLimitsTest, NegativeConnectionOrPartialRequestBoundsAreRefusedAtStart) {
    for (int which = 0; which < 3; ++which) {
        SleepyEcho service;
        brpc::Server server;
        ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
        brpc::ServerOptions options;
        if (which == 0) {
            options.max_connections = -1;
        } else if (which == 1) {
            options.max_partial_request_bytes = -1;
        } else {
            options.max_streams_per_connection = -1;
        }
        EXPECT_EQ(-1, server.Start("127.0.0.1:0", &options));
        EXPECT_EQ(EINVAL, errno);
        EXPECT_FALSE(server.IsRunning());
    }
}

TEST(ServerLimitsTest, AConnectionBeyondMaxConnectionsIsClosedAtOnce) {
    SleepyEcho service;
    brpc::Server server;
    ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    brpc::ServerOptions options;
    options.max_connections = 2;
    options.has_builtin_services = false;
    ASSERT_EQ(0, server.Start("127.0.0.1:0", &options));
    const int port = server.listen_address().port;
    int kept[2];
    for (int i = 0; i < 2; ++i) {
        kept[i] = ConnectTo(port);
        ASSERT_GE(kept[i], 0);
    }
    // Accepted one after the other, so the third is the one refused.
    usleep(200 * 1000);
    const int third = ConnectTo(port);
    ASSERT_GE(third, 0);
    EXPECT_TRUE(ClosedByServer(third, 5000));
    EXPECT_FALSE(ClosedByServer(kept[0], 300));
    close(third);
    close(kept[0]);
    close(kept[1]);
}

TEST(ServerLimitsTest, AHeaderThatNeverCompletesIsCutAfterHeaderTimeoutMs) {
    SleepyEcho service;
    brpc::Server server;
    ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    brpc::ServerOptions options;
    options.header_timeout_ms = 300;
    ASSERT_EQ(0, server.Start("127.0.0.1:0", &options));
    const int fd = ConnectTo(server.listen_address().port);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(5, write(fd, "PRPC\0", 5));
    const auto started = std::chrono::steady_clock::now();
    EXPECT_TRUE(ClosedByServer(fd, 5000));
    EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(250));
    close(fd);
}

TEST(ServerLimitsTest, ABodyTrickledABytePerTenthOfASecondIsCutAfterBodyTimeoutMs) {
    SleepyEcho service;
    brpc::Server server;
    ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    brpc::ServerOptions options;
    options.body_timeout_ms = 500;
    ASSERT_EQ(0, server.Start("127.0.0.1:0", &options));
    const int fd = ConnectTo(server.listen_address().port);
    ASSERT_GE(fd, 0);
    // A whole header announcing a 4096-byte body, then a byte at a time.
    const unsigned char header[12] = {'P', 'R', 'P', 'C', 0, 0, 16, 0, 0, 0, 0, 16};
    ASSERT_EQ(12, write(fd, header, sizeof(header)));
    const auto started = std::chrono::steady_clock::now();
    bool closed = false;
    for (int i = 0; i < 50 && !closed; ++i) {
        const char byte = 0;
        if (send(fd, &byte, 1, MSG_NOSIGNAL) != 1) {
            break;
        }
        closed = ClosedByServer(fd, 100);
    }
    EXPECT_TRUE(closed || ClosedByServer(fd, 1000));
    EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(450));
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(4));
    close(fd);
}

}  // namespace
