// brpc::Channel over naming services and load balancers through the
// facade: three servers on loopback, brpc's three-argument Init, the
// balancers' distribution, CallId cancellation and Join, request codes.

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "brpc/channel.h"
#include "brpc/policy/hasher.h"
#include "brpc/server.h"
#include "echo.pb.h"

namespace {

// Answers with its own port; sleeps when asked to.
class WhoService : public test::EchoService {
public:
    explicit WhoService(int* port) : port_(port) {}
    void Echo(google::protobuf::RpcController* cntl_base, const test::EchoRequest* request,
              test::EchoResponse* response, google::protobuf::Closure* done) override {
        brpc::ClosureGuard guard(done);
        (void)cntl_base;
        if (request->sleep_ms() > 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(request->sleep_ms()));
        }
        response->set_message(std::to_string(*port_));
    }

private:
    int* port_;
};

struct Backend {
    Backend() : service(&port) {
        EXPECT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
        EXPECT_EQ(0, server.Start("127.0.0.1:0", NULL));
        port = server.listen_address().port;
    }
    int port = 0;
    WhoService service;
    brpc::Server server;
};

std::string ListUrl(const std::vector<std::unique_ptr<Backend> >& backends) {
    std::string url = "list://";
    for (size_t i = 0; i < backends.size(); ++i) {
        url += (i ? "," : "") + std::string("127.0.0.1:") + std::to_string(backends[i]->port);
    }
    return url;
}

std::vector<std::unique_ptr<Backend> > Backends(int n) {
    std::vector<std::unique_ptr<Backend> > backends;
    for (int i = 0; i < n; ++i) {
        backends.emplace_back(new Backend);
    }
    return backends;
}

int Who(brpc::Channel* channel, brpc::Controller* cntl, int sleep_ms = 0) {
    test::EchoService_Stub stub(channel);
    test::EchoRequest request;
    request.set_sleep_ms(sleep_ms);
    test::EchoResponse response;
    stub.Echo(cntl, &request, &response, NULL);
    return cntl->Failed() ? -1 : std::stoi(response.message());
}

TEST(ClusterTest, ThreeArgumentInitWithAnEmptyBalancerReachesOneServer) {
    auto backends = Backends(1);
    brpc::Channel channel;
    brpc::ChannelOptions options;
    options.connection_type = "single";
    const std::string addr = "127.0.0.1:" + std::to_string(backends[0]->port);
    ASSERT_EQ(0, channel.Init(addr.c_str(), "", &options));
    brpc::Controller cntl;
    EXPECT_EQ(backends[0]->port, Who(&channel, &cntl));
    EXPECT_GT(cntl.latency_us(), 0);
    EXPECT_EQ(backends[0]->port, cntl.remote_side().port);
}

TEST(ClusterTest, RoundRobinSpreadsCallsEvenlyOverThreeServers) {
    auto backends = Backends(3);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(ListUrl(backends).c_str(), "rr", NULL));
    std::map<int, int> counts;
    for (int i = 0; i < 300; ++i) {
        brpc::Controller cntl;
        ++counts[Who(&channel, &cntl)];
    }
    for (const auto& b : backends) {
        EXPECT_NEAR(100, counts[b->port], 5);
    }
}

TEST(ClusterTest, InitFailsForUnknownBalancersSchemesAndRefusedOptions) {
    brpc::Channel channel;
    EXPECT_EQ(-1, channel.Init("list://127.0.0.1:1", "no_such_lb", NULL));
    EXPECT_EQ(EINVAL, errno);
    EXPECT_EQ(-1, channel.Init("zk://host/path", "rr", NULL));
    EXPECT_EQ(-1, channel.Init("consul://127.0.0.1:8500/svc", "rr", NULL));
    brpc::ChannelOptions options;
    options.connection_type = "bogus";
    EXPECT_EQ(-1, channel.Init("127.0.0.1:1", "", &options));
    brpc::ChannelOptions with_policy;
    with_policy.retry_policy = reinterpret_cast<const brpc::RetryPolicy*>(&options);
    EXPECT_EQ(-1, channel.Init("127.0.0.1:1", "", &with_policy));
    EXPECT_EQ(EINVAL, errno);
    brpc::ChannelOptions other_protocol;
    other_protocol.protocol = "http";
    EXPECT_EQ(-1, channel.Init("127.0.0.1:1", "", &other_protocol));
    EXPECT_EQ(EPROTONOSUPPORT, errno);
}

TEST(ClusterTest, ConsistentHashingSendsOneKeyToOneServer) {
    auto backends = Backends(3);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(ListUrl(backends).c_str(), "c_murmurhash", NULL));
    for (int k = 0; k < 20; ++k) {
        const std::string key = "user-" + std::to_string(k);
        int first = -2;
        for (int i = 0; i < 3; ++i) {
            brpc::Controller cntl;
            cntl.set_request_code(brpc::policy::MurmurHash32(key.data(), key.size()));
            ASSERT_TRUE(cntl.has_request_code());
            const int port = Who(&channel, &cntl);
            ASSERT_GT(port, 0) << cntl.ErrorText();
            if (first == -2) {
                first = port;
            }
            EXPECT_EQ(first, port);
        }
    }
    brpc::Controller without_code;
    EXPECT_EQ(-1, Who(&channel, &without_code));
    EXPECT_EQ(EINVAL, without_code.ErrorCode());
}

struct Flag : google::protobuf::Closure {
    void Run() override { ran.fetch_add(1); }
    std::atomic<int> ran{0};
};

TEST(ClusterTest, StartCancelEndsACallAndJoinWaitsForItsDone) {
    auto backends = Backends(1);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(ListUrl(backends).c_str(), "rr", NULL));
    test::EchoService_Stub stub(&channel);
    test::EchoRequest request;
    request.set_sleep_ms(400);
    test::EchoResponse response;
    brpc::Controller cntl;
    Flag done;
    const brpc::CallId id = cntl.call_id();
    const auto start = std::chrono::steady_clock::now();
    stub.Echo(&cntl, &request, &response, &done);
    brpc::StartCancel(id);
    brpc::Join(id);
    EXPECT_EQ(1, done.ran.load());
    EXPECT_EQ(ECANCELED, cntl.ErrorCode());
    EXPECT_TRUE(cntl.IsCanceled());
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(350));
    brpc::Join(id);  // ended: returns at once

    // Canceled before it starts: it ends as it starts.
    brpc::Controller early;
    Flag early_done;
    const brpc::CallId early_id = early.call_id();
    brpc::StartCancel(early_id);
    stub.Echo(&early, &request, &response, &early_done);
    brpc::Join(early_id);
    EXPECT_EQ(1, early_done.ran.load());
    EXPECT_EQ(ECANCELED, early.ErrorCode());
}

TEST(ClusterTest, ABackupRequestIsAnsweredByTheOtherServer) {
    auto backends = Backends(2);
    brpc::ChannelOptions options;
    options.backup_request_ms = 50;
    options.timeout_ms = 3000;
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(ListUrl(backends).c_str(), "rr", &options));
    // Both sleep, so every call sends its backup; it is still the first
    // answer that counts.
    for (int i = 0; i < 4; ++i) {
        brpc::Controller cntl;
        EXPECT_GT(Who(&channel, &cntl, 200), 0) << cntl.ErrorText();
        EXPECT_TRUE(cntl.has_backup_request());
        EXPECT_EQ(0, cntl.retried_count());
    }
}

}  // namespace
