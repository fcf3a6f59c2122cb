// brpc::ChannelOptions as brpc programs set them: every field brpc
// documents either works (max_retry, connect_timeout_ms,
// succeed_without_server, log_succeed_without_server, connection_group
// here; timeout_ms and backup_request_ms in rpc_test and cluster_test) or
// fails Init with a log line naming it; the three
// connection types use connections as brpc's do (single: one shared;
// pooled: one per call in flight, returned to a pool; short: one per call,
// closed after it), seen from the server (the calls' remote ports) and
// from the process's socket count.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <ostream>
#include <set>
#include <utility>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "brpc/channel.h"
#include "brpc/controller.h"
#include "brpc/server.h"
#include "echo.pb.h"
#include "wait_for.h"

namespace {

using Clock = std::chrono::steady_clock;

using test_support::WaitFor;

// Echoes, recording each call's remote port; a request with sleep_ms set
// waits until `Release()` (or 10 s) before answering.
class PortRecordingEcho : public test::EchoService {
public:
    void Echo(google::protobuf::RpcController* cntl_base, const test::EchoRequest* request,
              test::EchoResponse* response, google::protobuf::Closure* done) override {
        brpc::ClosureGuard guard(done);
        brpc::Controller* cntl = static_cast<brpc::Controller*>(cntl_base);
        std::unique_lock<std::mutex> lock(mu_);
        ports_.push_back(cntl->remote_side().port);
        ++inside_;
        cv_.notify_all();
        if (request->sleep_ms() > 0) {
            cv_.wait_for(lock, std::chrono::seconds(10), [this] { return released_; });
        }
        --inside_;
        response->set_message(request->message());
    }

    std::vector<int> ports() {
        std::lock_guard<std::mutex> lock(mu_);
        return ports_;
    }
    void ClearPorts() {
        std::lock_guard<std::mutex> lock(mu_);
        ports_.clear();
    }
    bool WaitInside(int n) {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return inside_ >= n; });
    }
    void Release() {
        std::lock_guard<std::mutex> lock(mu_);
        released_ = true;
        cv_.notify_all();
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<int> ports_;
    int inside_ = 0;
    bool released_ = false;
};

size_t Distinct(const std::vector<int>& ports) { return std::set<int>(ports.begin(), ports.end()).size(); }

class ConnectionTypeTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_EQ(0, server_.AddService(&service_, brpc::SERVER_DOESNT_OWN_SERVICE));
        ASSERT_EQ(0, server_.Start("127.0.0.1:0", NULL));
        port_ = server_.listen_address().port;
    }
    void TearDown() override { service_.Release(); }

    void InitChannel(brpc::Channel* channel, const char* type) {
        brpc::ChannelOptions options;
        options.connection_type = type;
        options.timeout_ms = 15000;
        ASSERT_EQ(0, channel->Init("127.0.0.1", port_, &options));
    }

    bool Call(brpc::Channel* channel, bool wait_for_release = false) {
        test::EchoService_Stub stub(channel);
        brpc::Controller cntl;
        test::EchoRequest request;
        request.set_message("hi");
        request.set_sleep_ms(wait_for_release ? 1 : 0);
        test::EchoResponse response;
        stub.Echo(&cntl, &request, &response, NULL);
        EXPECT_FALSE(cntl.Failed()) << cntl.ErrorText();
        return !cntl.Failed();
    }

    // `n` calls held by the server at once, then let go.
    void CallsInFlightAtOnce(brpc::Channel* channel, int n) {
        std::vector<std::thread> callers;
        for (int i = 0; i < n; ++i) {
            callers.emplace_back([this, channel] { Call(channel, true); });
        }
        EXPECT_TRUE(service_.WaitInside(n));
        service_.Release();
        for (std::thread& t : callers) {
            t.join();
        }
    }

    PortRecordingEcho service_;
    brpc::Server server_;
    int port_ = 0;
};

TEST_F(ConnectionTypeTest, SingleSharesOneConnectionBetweenCallsInFlightAndKeepsIt) {
    brpc::Channel channel;
    InitChannel(&channel, "single");
    CallsInFlightAtOnce(&channel, 4);
    ASSERT_TRUE(Call(&channel));
    const std::vector<int> ports = service_.ports();
    ASSERT_EQ(5u, ports.size());
    EXPECT_EQ(1u, Distinct(ports));
}

TEST_F(ConnectionTypeTest, PooledUsesAConnectionPerCallInFlightAndReusesThemAfterwards) {
    brpc::Channel channel;
    InitChannel(&channel, "pooled");
    CallsInFlightAtOnce(&channel, 4);
    const std::vector<int> in_flight = service_.ports();
    ASSERT_EQ(4u, in_flight.size());
    EXPECT_EQ(4u, Distinct(in_flight)) << "one connection per call in flight";
    service_.ClearPorts();
    for (int i = 0; i < 6; ++i) {
        ASSERT_TRUE(Call(&channel));
    }
    const std::set<int> pool(in_flight.begin(), in_flight.end());
    for (int port : service_.ports()) {
        EXPECT_EQ(1u, pool.count(port)) << "port " << port << " is a new connection, not one from the pool";
    }
}

TEST_F(ConnectionTypeTest, ShortUsesANewConnectionForEveryCallAndClosesIt) {
    brpc::Channel channel;
    InitChannel(&channel, "short");
    ASSERT_TRUE(Call(&channel));
    // Once a call ended its connection goes, on both sides: the process's
    // sockets come back to what they were before it.
    ASSERT_TRUE(WaitFor([] { return brpc_socket_live_count() == 0; }))
        << brpc_socket_live_count() << " sockets alive";
    for (int i = 0; i < 4; ++i) {
        ASSERT_TRUE(Call(&channel));
        EXPECT_TRUE(WaitFor([] { return brpc_socket_live_count() == 0; }))
            << "call " << i << ": " << brpc_socket_live_count() << " sockets alive";
    }
    const std::vector<int> ports = service_.ports();
    ASSERT_EQ(5u, ports.size());
    EXPECT_EQ(5u, Distinct(ports));
}

TEST_F(ConnectionTypeTest, ASingleConnectionOutlivesItsCalls) {
    brpc::Channel channel;
    InitChannel(&channel, "single");
    ASSERT_TRUE(Call(&channel));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    // The client's socket and the server's.
    EXPECT_EQ(2u, brpc_socket_live_count());
}

TEST_F(ConnectionTypeTest, ChannelsOfOneConnectionGroupShareAConnectionAndOfTwoGroupsDoNot) {
    brpc::ChannelOptions a_options;
    a_options.connection_group = "a";
    brpc::ChannelOptions b_options;
    b_options.connection_group = "b";
    brpc::Channel a1, a2, b;
    ASSERT_EQ(0, a1.Init("127.0.0.1", port_, &a_options));
    ASSERT_EQ(0, a2.Init("127.0.0.1", port_, &a_options));
    ASSERT_EQ(0, b.Init("127.0.0.1", port_, &b_options));
    ASSERT_TRUE(Call(&a1));
    ASSERT_TRUE(Call(&a2));
    ASSERT_TRUE(Call(&b));
    const std::vector<int> ports = service_.ports();
    ASSERT_EQ(3u, ports.size());
    EXPECT_EQ(ports[0], ports[1]);
    EXPECT_NE(ports[0], ports[2]);
}

TEST(ChannelOptionsTest, TheDefaultsAreBrpcs) {
    brpc::ChannelOptions options;
    EXPECT_EQ(200, options.connect_timeout_ms);
    EXPECT_EQ(500, options.timeout_ms);
    EXPECT_EQ(-1, options.backup_request_ms);
    EXPECT_EQ(3, options.max_retry);
    EXPECT_FALSE(options.enable_circuit_breaker);
    EXPECT_EQ(brpc::PROTOCOL_BAIDU_STD, (brpc::ProtocolType)options.protocol);
    EXPECT_EQ(brpc::CONNECTION_TYPE_UNKNOWN, (brpc::ConnectionType)options.connection_type);
    EXPECT_TRUE(options.succeed_without_server);
    EXPECT_TRUE(options.log_succeed_without_server);
    EXPECT_FALSE(options.use_rdma);
    EXPECT_EQ(NULL, options.auth);
    EXPECT_EQ(NULL, options.retry_policy);
    EXPECT_EQ(NULL, options.retry_backoff_policy);
    EXPECT_EQ(NULL, options.ns_filter);
    EXPECT_EQ("", options.connection_group);
    EXPECT_FALSE(options.has_ssl_options());
}

// ---- options that work ----

// A port on 127.0.0.1 nothing listens on.
int ClosedPort() {
    const int fd = butil::tcp_listen(butil::EndPoint(butil::int2ip(htonl(INADDR_LOOPBACK)), 0));
    butil::EndPoint bound;
    butil::get_local_side(fd, &bound);
    close(fd);
    return bound.port;
}

// Fails one call on `channel`; its controller's code and retried_count.
std::pair<int, int> FailedCall(brpc::Channel* channel, int64_t* elapsed_ms = NULL) {
    test::EchoService_Stub stub(channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    test::EchoResponse response;
    const Clock::time_point start = Clock::now();
    stub.Echo(&cntl, &request, &response, NULL);
    if (elapsed_ms != NULL) {
        *elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    }
    EXPECT_TRUE(cntl.Failed());
    return std::make_pair(cntl.ErrorCode(), cntl.retried_count());
}

TEST(ChannelOptionsTest, MaxRetryIsHowOftenARefusedConnectionIsTriedAgain) {
    const int port = ClosedPort();
    for (int max_retry : {0, 2}) {
        brpc::ChannelOptions options;
        options.max_retry = max_retry;
        brpc::Channel channel;
        ASSERT_EQ(0, channel.Init("127.0.0.1", port, &options));
        const std::pair<int, int> failed = FailedCall(&channel);
        EXPECT_EQ(ECONNREFUSED, failed.first);
        EXPECT_EQ(max_retry, failed.second);
    }
}

TEST(ChannelOptionsTest, ConnectTimeoutMsEndsAConnectThatGetsNoAnswer) {
    // A listener that never accepts, its backlog full: further SYNs go
    // unanswered, so a connect neither succeeds nor is refused.
    const int listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(0, bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
    ASSERT_EQ(0, listen(listener, 0));
    socklen_t len = sizeof(addr);
    ASSERT_EQ(0, getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len));
    std::vector<int> fillers;
    for (int i = 0; i < 4; ++i) {
        const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
        fillers.push_back(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    brpc::ChannelOptions options;
    options.connect_timeout_ms = 150;
    options.timeout_ms = 5000;
    options.max_retry = 0;
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init("127.0.0.1", ntohs(addr.sin_port), &options));
    int64_t elapsed_ms = 0;
    const std::pair<int, int> failed = FailedCall(&channel, &elapsed_ms);
    EXPECT_EQ(ETIMEDOUT, failed.first);
    EXPECT_GE(elapsed_ms, 140);
    EXPECT_LT(elapsed_ms, 2500) << "the call's 5 s timeout ended it, not the connect timeout";
    for (int fd : fillers) {
        close(fd);
    }
    close(listener);
}

class EmptyServerList {
public:
    EmptyServerList() {
        char path[] = "/tmp/channel_options_test_XXXXXX";
        close(mkstemp(path));
        path_ = path;
    }
    ~EmptyServerList() { unlink(path_.c_str()); }
    std::string url() const { return "file://" + path_; }

private:
    std::string path_;
};

TEST(ChannelOptionsTest, SucceedWithoutServerDecidesWhetherAnEmptyListFailsInit) {
    EmptyServerList empty;
    brpc::ChannelOptions strict;
    strict.succeed_without_server = false;
    brpc::Channel refused;
    errno = 0;
    EXPECT_EQ(-1, refused.Init(empty.url().c_str(), "rr", &strict));
    EXPECT_EQ(ENODATA, errno);
    brpc::Channel waiting;
    ASSERT_EQ(0, waiting.Init(empty.url().c_str(), "rr", NULL));
}

TEST(ChannelOptionsTest, LogSucceedWithoutServerDecidesWhetherThatIsLogged) {
    EmptyServerList empty;
    std::atomic<int> lines{0};
    brpc_log_set_sink(
        [](int, const char*, int, const uint8_t*, size_t, void* n) { ++*static_cast<std::atomic<int>*>(n); },
        &lines);
    brpc::Channel logged;
    ASSERT_EQ(0, logged.Init(empty.url().c_str(), "rr", NULL));
    EXPECT_EQ(1, lines.load());
    brpc::ChannelOptions quiet;
    quiet.log_succeed_without_server = false;
    brpc::Channel silent;
    ASSERT_EQ(0, silent.Init(empty.url().c_str(), "rr", &quiet));
    EXPECT_EQ(1, lines.load());
    brpc_log_set_sink(NULL, NULL);
}

// ---- options this library refuses ----

struct RefusedChannelOption {
    const char* name;
    int error;
    std::function<void(brpc::ChannelOptions*)> set;
};

// gtest names a case by this (the option), not by its bytes.
void PrintTo(const RefusedChannelOption& option, std::ostream* os) { *os << option.name; }

std::vector<std::string> g_log_lines;
std::mutex g_log_mu;

void CollectLog(int, const char*, int, const uint8_t* message, size_t len, void*) {
    std::lock_guard<std::mutex> lock(g_log_mu);
    g_log_lines.push_back(std::string(reinterpret_cast<const char*>(message), len));
}

class RefusedChannelOptionTest : public ::testing::TestWithParam<RefusedChannelOption> {
protected:
    void SetUp() override {
        g_log_lines.clear();
        brpc_log_set_sink(&CollectLog, NULL);
    }
    void TearDown() override { brpc_log_set_sink(NULL, NULL); }
};

TEST_P(RefusedChannelOptionTest, InitFailsWithALogLineNamingTheOption) {
    brpc::ChannelOptions options;
    GetParam().set(&options);
    brpc::Channel channel;
    errno = 0;
    EXPECT_EQ(-1, channel.Init("127.0.0.1:8000", "", &options));
    EXPECT_EQ(GetParam().error, errno);
    std::lock_guard<std::mutex> lock(g_log_mu);
    ASSERT_EQ(1u, g_log_lines.size());
    EXPECT_NE(std::string::npos, g_log_lines[0].find(GetParam().name)) << g_log_lines[0];
}

TEST(ChannelProtocolTest, ProtocolsHaveBrpcsNumbersAndNamesAndOnlyBaiduStdIsSpoken) {
    EXPECT_EQ(2, brpc::PROTOCOL_BAIDU_STD);
    EXPECT_EQ(8, brpc::PROTOCOL_HTTP);
    EXPECT_EQ(29, brpc::PROTOCOL_MYSQL);
    brpc::ChannelOptions options;
    options.protocol = "h2";
    EXPECT_EQ(brpc::PROTOCOL_H2, (brpc::ProtocolType)options.protocol);
    options.protocol = "baidu_std";
    EXPECT_EQ(brpc::PROTOCOL_BAIDU_STD, (brpc::ProtocolType)options.protocol);
    // As brpc's cascade_echo server does with --use_http: set by number,
    // refused at Init with the protocol's name.
    options.protocol = brpc::PROTOCOL_HTTP;
    EXPECT_STREQ("http", options.protocol.name());
    g_log_lines.clear();
    brpc_log_set_sink(&CollectLog, NULL);
    brpc::Channel channel;
    errno = 0;
    EXPECT_EQ(-1, channel.Init("127.0.0.1:8000", "", &options));
    EXPECT_EQ(EPROTONOSUPPORT, errno);
    brpc_log_set_sink(NULL, NULL);
    std::lock_guard<std::mutex> lock(g_log_mu);
    ASSERT_EQ(1u, g_log_lines.size());
    EXPECT_NE(std::string::npos, g_log_lines[0].find("\"http\"")) << g_log_lines[0];
}

char g_object;
template <typename T>
T* Fake() {
    return reinterpret_cast<T*>(&g_object);
}

INSTANTIATE_TEST_SUITE_P(
    EveryField, RefusedChannelOptionTest,
    ::testing::Values(
        RefusedChannelOption{"enable_circuit_breaker", EINVAL,
                             [](brpc::ChannelOptions* o) { o->enable_circuit_breaker = true; }},
        RefusedChannelOption{"protocol", EPROTONOSUPPORT, [](brpc::ChannelOptions* o) { o->protocol = "http"; }},
        RefusedChannelOption{"connection_type", EINVAL,
                             [](brpc::ChannelOptions* o) { o->connection_type = "multiplexed"; }},
        RefusedChannelOption{"use_rdma", EINVAL, [](brpc::ChannelOptions* o) { o->use_rdma = true; }},
        RefusedChannelOption{"socket_mode", EINVAL,
                             [](brpc::ChannelOptions* o) { o->socket_mode = brpc::SOCKET_MODE_RDMA; }},
        RefusedChannelOption{"auth", EINVAL, [](brpc::ChannelOptions* o) { o->auth = Fake<brpc::Authenticator>(); }},
        RefusedChannelOption{"retry_policy", EINVAL,
                             [](brpc::ChannelOptions* o) { o->retry_policy = Fake<brpc::RetryPolicy>(); }},
        RefusedChannelOption{"retry_backoff_policy", EINVAL,
                             [](brpc::ChannelOptions* o) {
                                 o->retry_backoff_policy = Fake<brpc::RetryBackoffPolicy>();
                             }},
        RefusedChannelOption{"backup_request_policy", EINVAL,
                             [](brpc::ChannelOptions* o) {
                                 o->backup_request_policy = Fake<brpc::BackupRequestPolicy>();
                             }},
        RefusedChannelOption{"ns_filter", EINVAL,
                             [](brpc::ChannelOptions* o) { o->ns_filter = Fake<brpc::NamingServiceFilter>(); }},
        RefusedChannelOption{"ssl_options", EINVAL,
                             [](brpc::ChannelOptions* o) { o->mutable_ssl_options()->sni_name = "example.com"; }},
        RefusedChannelOption{"hc_option.health_check_path", EINVAL,
                             [](brpc::ChannelOptions* o) { o->hc_option.health_check_path = "/health"; }},
        RefusedChannelOption{"client_host", EINVAL, [](brpc::ChannelOptions* o) { o->client_host = "127.0.0.1"; }},
        RefusedChannelOption{"device_name", EINVAL, [](brpc::ChannelOptions* o) { o->device_name = "eth0"; }}),
    [](const ::testing::TestParamInfo<RefusedChannelOption>& info) {
        std::string name = info.param.name;
        for (char& c : name) {
            if (c == '.') {
                c = '_';
            }
        }
        return name;
    });

}  // namespace
