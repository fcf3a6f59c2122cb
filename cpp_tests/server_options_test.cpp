// brpc::ServerOptions as brpc programs set them, and the server-side
// Controller hooks: idle_timeout_sec closes idle connections and keeps busy
// ones, num_threads keeps that many workers, every option this library does
// not provide fails Start naming it, after_rpc_resp_fn runs once after the
// response went out, NotifyOnCancel's closure runs once (when the client
// goes away mid-call, else when the call ends).

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
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
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "brpc/callback.h"
#include "brpc/channel.h"
#include "brpc/controller.h"
#include "brpc/server.h"
#include "butil/logging.h"
#include "echo.pb.h"
#include "wait_for.h"

namespace {

using Clock = std::chrono::steady_clock;

using test_support::WaitFor;

int64_t MillisecondsSince(Clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

int CountThreads() {
    int n = 0;
    DIR* dir = opendir("/proc/self/task");
    if (dir == NULL) {
        return -1;
    }
    while (readdir(dir) != NULL) {
        ++n;
    }
    closedir(dir);
    return n - 2;
}

// An Echo whose body is the test's: `handler` runs in place of echoing
// (it owns `done`); every call's remote port is recorded.
class HookedEcho : public test::EchoService {
public:
    using Handler = std::function<void(brpc::Controller*, const test::EchoRequest*, test::EchoResponse*,
                                       google::protobuf::Closure*)>;

    void Echo(google::protobuf::RpcController* cntl_base, const test::EchoRequest* request,
              test::EchoResponse* response, google::protobuf::Closure* done) override {
        brpc::Controller* cntl = static_cast<brpc::Controller*>(cntl_base);
        {
            std::lock_guard<std::mutex> lock(mu_);
            ports_.push_back(cntl->remote_side().port);
        }
        if (handler) {
            handler(cntl, request, response, done);
            return;
        }
        brpc::ClosureGuard guard(done);
        response->set_message(request->message());
    }

    std::vector<int> ports() {
        std::lock_guard<std::mutex> lock(mu_);
        return ports_;
    }

    Handler handler;

private:
    std::mutex mu_;
    std::vector<int> ports_;
};

// A server of `service` on 127.0.0.1 with `options`.
std::unique_ptr<brpc::Server> StartServer(HookedEcho* service, const brpc::ServerOptions& options) {
    std::unique_ptr<brpc::Server> server(new brpc::Server);
    EXPECT_EQ(0, server->AddService(service, brpc::SERVER_DOESNT_OWN_SERVICE));
    EXPECT_EQ(0, server->Start("127.0.0.1:0", &options));
    return server;
}

bool Echo(brpc::Channel* channel, const std::string& message, std::string* error = NULL) {
    test::EchoService_Stub stub(channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    request.set_message(message);
    test::EchoResponse response;
    stub.Echo(&cntl, &request, &response, NULL);
    if (error != NULL) {
        *error = cntl.ErrorText();
    }
    return !cntl.Failed() && response.message() == message;
}

// A plain TCP connection to `port` that sends nothing.
int ConnectRaw(int port) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
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

// True once the peer closed `fd` (EOF or reset) within `ms`.
bool ClosedByPeerWithin(int fd, int ms) {
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0) {
        return false;
    }
    char byte;
    const ssize_t n = recv(fd, &byte, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

// ---- idle_timeout_sec ----

TEST(IdleTimeoutTest, AConnectionThatSendsNothingIsClosedAfterIdleTimeoutSec) {
    HookedEcho service;
    brpc::ServerOptions options;
    options.idle_timeout_sec = 1;
    std::unique_ptr<brpc::Server> server = StartServer(&service, options);
    const int fd = ConnectRaw(server->listen_address().port);
    ASSERT_GE(fd, 0);
    const Clock::time_point start = Clock::now();
    EXPECT_TRUE(ClosedByPeerWithin(fd, 5000)) << "still open after 5 s";
    // Looked at once a second: closed after one to about two seconds.
    const int64_t elapsed = MillisecondsSince(start);
    EXPECT_GE(elapsed, 900);
    EXPECT_LE(elapsed, 3500);
    close(fd);
}

TEST(IdleTimeoutTest, WithoutIdleTimeoutSecAnIdleConnectionStaysOpen) {
    HookedEcho service;
    brpc::ServerOptions options;  // idle_timeout_sec = -1, as in brpc
    EXPECT_EQ(-1, options.idle_timeout_sec);
    std::unique_ptr<brpc::Server> server = StartServer(&service, options);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init("127.0.0.1", server->listen_address().port, NULL));
    ASSERT_TRUE(Echo(&channel, "first"));
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    ASSERT_TRUE(Echo(&channel, "second"));
    const std::vector<int> ports = service.ports();
    ASSERT_EQ(2u, ports.size());
    EXPECT_EQ(ports[0], ports[1]) << "the connection was replaced";
}

TEST(IdleTimeoutTest, AConnectionCarryingCallsStaysOpenPastIdleTimeoutSec) {
    HookedEcho service;
    brpc::ServerOptions options;
    options.idle_timeout_sec = 1;
    std::unique_ptr<brpc::Server> server = StartServer(&service, options);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init("127.0.0.1", server->listen_address().port, NULL));
    // A call every 250 ms for 3 s: three idle timeouts' worth.
    for (int i = 0; i < 12; ++i) {
        ASSERT_TRUE(Echo(&channel, "busy " + std::to_string(i)));
        std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    const std::vector<int> ports = service.ports();
    ASSERT_EQ(12u, ports.size());
    EXPECT_EQ(1u, std::set<int>(ports.begin(), ports.end()).size()) << "one connection all along";
}

TEST(IdleTimeoutTest, AChannelWhoseConnectionWasClosedForIdlenessCallsAgainOnANewOne) {
    HookedEcho service;
    brpc::ServerOptions options;
    options.idle_timeout_sec = 1;
    std::unique_ptr<brpc::Server> server = StartServer(&service, options);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init("127.0.0.1", server->listen_address().port, NULL));
    ASSERT_TRUE(Echo(&channel, "before"));
    std::this_thread::sleep_for(std::chrono::milliseconds(3000));
    std::string error;
    ASSERT_TRUE(Echo(&channel, "after", &error)) << error;
    const std::vector<int> ports = service.ports();
    ASSERT_EQ(2u, ports.size());
    EXPECT_NE(ports[0], ports[1]) << "the idle connection was not closed";
}

// ---- num_threads ----

// Makes `n` calls at once, each from its own thread; all must succeed.
void MakeConcurrentCalls(int port, int n) {
    brpc::ChannelOptions channel_options;
    channel_options.timeout_ms = 20000;
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init("127.0.0.1", port, &channel_options));
    std::vector<std::thread> callers;
    std::atomic<int> succeeded{0};
    for (int i = 0; i < n; ++i) {
        callers.emplace_back([&] {
            if (Echo(&channel, "meet")) {
                ++succeeded;
            }
        });
    }
    for (std::thread& t : callers) {
        t.join();
    }
    EXPECT_EQ(n, succeeded.load());
}

class NumThreadsTest : public ::testing::Test {
protected:
    static constexpr int kThreads = 16;

    void SetUp() override {
        service_.handler = [this](brpc::Controller*, const test::EchoRequest* request,
                                  test::EchoResponse* response, google::protobuf::Closure* done) {
            brpc::ClosureGuard guard(done);
            std::unique_lock<std::mutex> lock(mu_);
            ++inside_;
            max_inside_ = std::max(max_inside_, inside_);
            cv_.notify_all();
            // Each handler blocks until all of them are in.
            met_ = cv_.wait_for(lock, std::chrono::seconds(10), [this] { return max_inside_ >= kThreads; }) &&
                   met_;
            --inside_;
            response->set_message(request->message());
        };
        brpc::ServerOptions options;
        options.num_threads = kThreads;
        server_ = StartServer(&service_, options);
    }

    HookedEcho service_;
    std::unique_ptr<brpc::Server> server_;
    std::mutex mu_;
    std::condition_variable cv_;
    int inside_ = 0;
    int max_inside_ = 0;
    bool met_ = true;
};

TEST_F(NumThreadsTest, NumThreadsHandlersBlockingAtOnceAllRunTogether) {
    MakeConcurrentCalls(server_->listen_address().port, kThreads);
    std::lock_guard<std::mutex> lock(mu_);
    EXPECT_TRUE(met_) << "only " << max_inside_ << " handlers ran at once";
    EXPECT_EQ(kThreads, max_inside_);
}

TEST_F(NumThreadsTest, TheWorkersNumThreadsAskedForStayWhenIdle) {
    MakeConcurrentCalls(server_->listen_address().port, kThreads);
    // Workers above the pool's core size retire after 5 s idle; num_threads
    // raised the core size, so these stay.
    std::this_thread::sleep_for(std::chrono::milliseconds(6500));
    EXPECT_GE(CountThreads(), kThreads);
}

// ---- brpc's options this library does not provide ----

struct RefusedOption {
    const char* name;
    std::function<void(brpc::ServerOptions*)> set;
};

// gtest names a case by this (the option), not by its bytes.
void PrintTo(const RefusedOption& option, std::ostream* os) { *os << option.name; }

std::vector<std::string> g_log_lines;
std::vector<int> g_log_levels;
std::mutex g_log_mu;

void CollectLog(int level, const char*, int, const uint8_t* message, size_t len, void*) {
    std::lock_guard<std::mutex> lock(g_log_mu);
    g_log_lines.push_back(std::string(reinterpret_cast<const char*>(message), len));
    g_log_levels.push_back(level);
}

class RefusedServerOptionTest : public ::testing::TestWithParam<RefusedOption> {
protected:
    void SetUp() override {
        g_log_lines.clear();
        g_log_levels.clear();
        brpc_log_set_sink(&CollectLog, NULL);
    }
    void TearDown() override { brpc_log_set_sink(NULL, NULL); }
};

TEST_P(RefusedServerOptionTest, StartFailsWithEnotsupAndALogLineNamingTheOption) {
    HookedEcho service;
    brpc::Server server;
    ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    brpc::ServerOptions options;
    GetParam().set(&options);
    errno = 0;
    EXPECT_EQ(-1, server.Start("127.0.0.1:0", &options));
    EXPECT_EQ(ENOTSUP, errno);
    EXPECT_FALSE(server.IsRunning());
    std::lock_guard<std::mutex> lock(g_log_mu);
    ASSERT_EQ(1u, g_log_lines.size());
    EXPECT_NE(std::string::npos, g_log_lines[0].find(std::string("ServerOptions.") + GetParam().name))
        << g_log_lines[0];
}

// Stand-ins for objects brpc programs would pass: never used, only compared to NULL.
char g_object;
template <typename T>
T* Fake() {
    return reinterpret_cast<T*>(&g_object);
}

class NoData : public brpc::DataFactory {
public:
    void* CreateData() const override { return NULL; }
    void DestroyData(void*) const override {}
};
NoData g_no_data;

INSTANTIATE_TEST_SUITE_P(
    EveryField, RefusedServerOptionTest,
    ::testing::Values(
        RefusedOption{"pid_file", [](brpc::ServerOptions* o) { o->pid_file = "/tmp/server.pid"; }},
        RefusedOption{"nshead_service", [](brpc::ServerOptions* o) { o->nshead_service = Fake<brpc::NsheadService>(); }},
        RefusedOption{"thrift_service", [](brpc::ServerOptions* o) { o->thrift_service = Fake<brpc::ThriftService>(); }},
        RefusedOption{"mongo_service_adaptor",
                      [](brpc::ServerOptions* o) { o->mongo_service_adaptor = Fake<brpc::MongoServiceAdaptor>(); }},
        RefusedOption{"auth", [](brpc::ServerOptions* o) { o->auth = Fake<brpc::Authenticator>(); }},
        RefusedOption{"auth", [](brpc::ServerOptions* o) { o->server_owns_auth = true; }},
        RefusedOption{"interceptor", [](brpc::ServerOptions* o) { o->interceptor = Fake<brpc::Interceptor>(); }},
        RefusedOption{"interceptor", [](brpc::ServerOptions* o) { o->server_owns_interceptor = true; }},
        RefusedOption{"session_local_data_factory",
                      [](brpc::ServerOptions* o) { o->session_local_data_factory = &g_no_data; }},
        RefusedOption{"session_local_data_factory",
                      [](brpc::ServerOptions* o) { o->reserved_session_local_data = 4; }},
        RefusedOption{"thread_local_data_factory",
                      [](brpc::ServerOptions* o) { o->thread_local_data_factory = &g_no_data; }},
        RefusedOption{"thread_local_data_factory",
                      [](brpc::ServerOptions* o) { o->reserved_thread_local_data = 4; }},
        RefusedOption{"bthread_init_fn",
                      [](brpc::ServerOptions* o) { o->bthread_init_fn = [](void*) { return true; }; }},
        RefusedOption{"bthread_init_fn", [](brpc::ServerOptions* o) { o->bthread_init_count = 2; }},
        RefusedOption{"internal_port", [](brpc::ServerOptions* o) { o->internal_port = 8888; }},
        RefusedOption{"use_rdma", [](brpc::ServerOptions* o) { o->use_rdma = true; }},
        RefusedOption{"ssl_options",
                      [](brpc::ServerOptions* o) { o->mutable_ssl_options()->default_cert.certificate = "cert.pem"; }},
        RefusedOption{"ssl_options", [](brpc::ServerOptions* o) { o->force_ssl = true; }},
        RefusedOption{"baidu_master_service",
                      [](brpc::ServerOptions* o) { o->baidu_master_service = Fake<brpc::BaiduMasterService>(); }},
        RefusedOption{"http_master_service",
                      [](brpc::ServerOptions* o) { o->http_master_service = Fake<google::protobuf::Service>(); }},
        RefusedOption{"health_reporter", [](brpc::ServerOptions* o) { o->health_reporter = Fake<brpc::HealthReporter>(); }},
        RefusedOption{"rtmp_service", [](brpc::ServerOptions* o) { o->rtmp_service = Fake<brpc::RtmpService>(); }},
        RefusedOption{"enabled_protocols", [](brpc::ServerOptions* o) { o->enabled_protocols = "baidu_std http"; }},
        RefusedOption{"redis_service", [](brpc::ServerOptions* o) { o->redis_service = Fake<brpc::RedisService>(); }},
        RefusedOption{"server_info_name", [](brpc::ServerOptions* o) { o->server_info_name = "echo"; }},
        RefusedOption{"rpc_pb_message_factory",
                      [](brpc::ServerOptions* o) { o->rpc_pb_message_factory = Fake<brpc::RpcPBMessageFactory>(); }},
        RefusedOption{"ignore_eovercrowded", [](brpc::ServerOptions* o) { o->ignore_eovercrowded = true; }}),
    [](const ::testing::TestParamInfo<RefusedOption>& info) {
        return std::string(info.param.name) + "_" + std::to_string(info.index);
    });

// ---- what Start and Stop log ----

class ServerLogTest : public ::testing::Test {
protected:
    void SetUp() override {
        g_log_lines.clear();
        g_log_levels.clear();
        brpc_log_set_sink(&CollectLog, NULL);
    }
    void TearDown() override { brpc_log_set_sink(NULL, NULL); }
};

TEST_F(ServerLogTest, StartAndStopLogBrpcsLinesOnceEach) {
    HookedEcho service;
    brpc::Server server;
    ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    ASSERT_EQ(0, server.Start("127.0.0.1:0", NULL));
    const std::string port = std::to_string(server.listen_address().port);
    server.Stop();
    server.Join();
    server.Stop();
    std::lock_guard<std::mutex> lock(g_log_mu);
    // Named after the service's class, as brpc's version() is.
    ASSERT_EQ(3u, g_log_lines.size());
    EXPECT_EQ("Server[(anonymous namespace)::HookedEcho] is serving on port=" + port + ".", g_log_lines[0]);
    EXPECT_EQ(0u, g_log_lines[1].find("Check out http://")) << g_log_lines[1];
    EXPECT_NE(std::string::npos, g_log_lines[1].find(":" + port + " in web browser.")) << g_log_lines[1];
    EXPECT_EQ("Server[(anonymous namespace)::HookedEcho] is going to quit", g_log_lines[2]);
}

TEST_F(ServerLogTest, AConnectionClosedForIdlenessIsAnOrderlyEndNotAWarning) {
    HookedEcho service;
    brpc::ServerOptions options;
    options.idle_timeout_sec = 1;
    std::unique_ptr<brpc::Server> server = StartServer(&service, options);
    const int fd = ConnectRaw(server->listen_address().port);
    ASSERT_GE(fd, 0);
    EXPECT_TRUE(ClosedByPeerWithin(fd, 5000));
    close(fd);
    server.reset();
    std::lock_guard<std::mutex> lock(g_log_mu);
    for (size_t i = 0; i < g_log_levels.size(); ++i) {
        EXPECT_LT(g_log_levels[i], logging::BLOG_WARNING) << g_log_lines[i];
    }
}

// ---- after_rpc_resp_fn ----

TEST(AfterRpcRespFnTest, RunsOncePerCallAfterTheResponseWasSentWithThatCallsObjects) {
    HookedEcho service;
    std::mutex mu;
    std::condition_variable cv;
    int runs = 0;
    bool client_had_response_first = true;
    bool same_controller = true;
    std::vector<std::string> seen;
    std::atomic<bool> client_got_response{false};
    service.handler = [&](brpc::Controller* cntl, const test::EchoRequest* request, test::EchoResponse* response,
                          google::protobuf::Closure* done) {
        brpc::ClosureGuard guard(done);
        cntl->set_after_rpc_resp_fn([&, cntl](brpc::Controller* c, const google::protobuf::Message* req,
                                              const google::protobuf::Message* res) {
            // Runs after the response went out: the client can have it
            // while this waits (it never would if this ran before).
            const bool had = WaitFor([&] { return client_got_response.load(); }, 5);
            std::lock_guard<std::mutex> lock(mu);
            ++runs;
            client_had_response_first = client_had_response_first && had;
            same_controller = same_controller && c == cntl;
            seen.push_back(static_cast<const test::EchoRequest*>(req)->message() + "->" +
                           static_cast<const test::EchoResponse*>(res)->message());
            cv.notify_all();
        });
        response->set_message("re:" + request->message());
    };
    std::unique_ptr<brpc::Server> server = StartServer(&service, brpc::ServerOptions());
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init("127.0.0.1", server->listen_address().port, NULL));
    for (int i = 0; i < 3; ++i) {
        client_got_response = false;
        test::EchoService_Stub stub(&channel);
        brpc::Controller cntl;
        test::EchoRequest request;
        request.set_message("m" + std::to_string(i));
        test::EchoResponse response;
        stub.Echo(&cntl, &request, &response, NULL);
        ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
        client_got_response = true;
        std::unique_lock<std::mutex> lock(mu);
        ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return runs == i + 1; }));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(3, runs);
    EXPECT_TRUE(client_had_response_first);
    EXPECT_TRUE(same_controller);
    EXPECT_EQ((std::vector<std::string>{"m0->re:m0", "m1->re:m1", "m2->re:m2"}), seen);
}

TEST(AfterRpcRespFnTest, RunsForACallTheHandlerFailedSeeingItsError) {
    HookedEcho service;
    std::atomic<int> runs{0};
    std::atomic<int> code_seen{0};
    service.handler = [&](brpc::Controller* cntl, const test::EchoRequest*, test::EchoResponse*,
                          google::protobuf::Closure* done) {
        brpc::ClosureGuard guard(done);
        cntl->set_after_rpc_resp_fn(
            [&](brpc::Controller* c, const google::protobuf::Message*, const google::protobuf::Message*) {
                code_seen = c->ErrorCode();
                ++runs;
            });
        cntl->SetFailed(EPERM, "refused by the handler");
    };
    std::unique_ptr<brpc::Server> server = StartServer(&service, brpc::ServerOptions());
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init("127.0.0.1", server->listen_address().port, NULL));
    std::string error;
    EXPECT_FALSE(Echo(&channel, "x", &error));
    ASSERT_TRUE(WaitFor([&] { return runs.load() == 1; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(1, runs.load());
    EXPECT_EQ(EPERM, code_seen.load());
}

// ---- server-side NotifyOnCancel ----

TEST(ServerNotifyOnCancelTest, TheClosureRunsOnceWhenTheClientDisconnectsMidCall) {
    HookedEcho service;
    std::atomic<int> runs{0};
    std::atomic<bool> ran_while_handling{false};
    std::atomic<bool> canceled_seen{false};
    std::atomic<bool> handler_done{false};
    service.handler = [&](brpc::Controller* cntl, const test::EchoRequest*, test::EchoResponse* response,
                          google::protobuf::Closure* done) {
        brpc::ClosureGuard guard(done);
        cntl->NotifyOnCancel(brpc::NewCallback(+[](std::atomic<int>* n) { ++*n; }, &runs));
        // The client gives up and closes its connection; the closure runs
        // while this handler still holds the call.
        ran_while_handling = WaitFor([&] { return runs.load() == 1; }, 10);
        canceled_seen = cntl->IsCanceled();
        response->set_message("too late");
        handler_done = true;
    };
    std::unique_ptr<brpc::Server> server = StartServer(&service, brpc::ServerOptions());
    brpc::ChannelOptions options;
    options.connection_type = "short";  // closed when the call ends
    options.timeout_ms = 300;
    options.max_retry = 0;
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init("127.0.0.1", server->listen_address().port, &options));
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    test::EchoResponse response;
    stub.Echo(&cntl, &request, &response, NULL);
    EXPECT_EQ(brpc::ERPCTIMEDOUT, cntl.ErrorCode()) << cntl.ErrorText();
    ASSERT_TRUE(WaitFor([&] { return handler_done.load(); }, 15));
    EXPECT_TRUE(ran_while_handling.load());
    EXPECT_TRUE(canceled_seen.load());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(1, runs.load()) << "the call's end ran it again";
}

TEST(ServerNotifyOnCancelTest, TheClosureRunsOnceAfterTheResponseWhenTheCallEndsNormally) {
    HookedEcho service;
    std::atomic<int> runs{0};
    std::atomic<int> runs_before_done{-1};
    std::atomic<bool> canceled_seen{true};
    service.handler = [&](brpc::Controller* cntl, const test::EchoRequest* request, test::EchoResponse* response,
                          google::protobuf::Closure* done) {
        cntl->NotifyOnCancel(brpc::NewCallback(+[](std::atomic<int>* n) { ++*n; }, &runs));
        response->set_message(request->message());
        canceled_seen = cntl->IsCanceled();
        runs_before_done = runs.load();
        done->Run();
    };
    std::unique_ptr<brpc::Server> server = StartServer(&service, brpc::ServerOptions());
    {
        brpc::Channel channel;
        ASSERT_EQ(0, channel.Init("127.0.0.1", server->listen_address().port, NULL));
        ASSERT_TRUE(Echo(&channel, "normal"));
        ASSERT_TRUE(WaitFor([&] { return runs.load() == 1; }));
        EXPECT_EQ(0, runs_before_done.load()) << "ran before the call ended";
        EXPECT_FALSE(canceled_seen.load());
    }
    // The client's connection goes after the call ended: not a second run.
    server->Stop();
    server->Join();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(1, runs.load());
}

}  // namespace
