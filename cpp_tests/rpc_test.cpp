// brpc::Controller, Channel, Server and ClosureGuard through the facade:
// protoc-generated services called over real loopback TCP. Every RpcTest
// checks at its end that the process's fds are back where they started.

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <gtest/gtest.h>

#include "brpc/channel.h"
#include "brpc/server.h"
#include "echo.pb.h"
#include "wait_for.h"

namespace {

using Clock = std::chrono::steady_clock;

int CountEntries(const char* dir_path) {
    int n = 0;
    DIR* dir = opendir(dir_path);
    if (dir == NULL) {
        return -1;
    }
    while (readdir(dir) != NULL) {
        ++n;
    }
    closedir(dir);
    return n - 2;  // "." and ".."
}

int CountOpenFds() { return CountEntries("/proc/self/fd") - 1; }  // the DIR's own fd
int CountThreads() { return CountEntries("/proc/self/task"); }

using test_support::WaitFor;

int64_t MillisecondsSince(Clock::time_point start) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

bool StartsWith(const std::string& s, const std::string& prefix) {
    return s.compare(0, prefix.size(), prefix) == 0;
}

// A port on 127.0.0.1 nothing listens on.
int ClosedPort() {
    const int fd = butil::tcp_listen(butil::EndPoint(butil::int2ip(htonl(INADDR_LOOPBACK)), 0));
    butil::EndPoint bound;
    butil::get_local_side(fd, &bound);
    close(fd);
    return bound.port;
}

// Echoes the request (message and attachment), or does what the request asks.
class EchoServiceImpl : public test::EchoService {
public:
    ~EchoServiceImpl() {
        std::lock_guard<std::mutex> lock(mu_);
        for (size_t i = 0; i < later_.size(); ++i) {
            later_[i].join();
        }
    }

    void Echo(google::protobuf::RpcController* cntl_base, const test::EchoRequest* request,
              test::EchoResponse* response, google::protobuf::Closure* done) override {
        brpc::ClosureGuard done_guard(done);
        brpc::Controller* cntl = static_cast<brpc::Controller*>(cntl_base);
        ++calls;
        last_log_id = cntl->log_id();
        {
            std::lock_guard<std::mutex> lock(mu_);
            request_ids_.push_back(cntl->request_id());
        }
        last_local_port = cntl->local_side().port;
        last_remote_port = cntl->remote_side().port;
        if (request->sleep_ms() > 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(request->sleep_ms()));
        }
        if (request->fail_code() != 0) {
            cntl->SetFailed(request->fail_code(), "%s", request->fail_text().c_str());
            return;
        }
        if (!request->nested_message().empty()) {
            test::EchoService_Stub stub(nested_channel);
            // As brpc's cascade_echo server: the nested call carries the
            // log id and request id of the call it serves.
            brpc::Controller nested_cntl(cntl->inheritable());
            test::EchoRequest nested_request;
            nested_request.set_message(request->nested_message());
            test::EchoResponse nested_response;
            stub.Echo(&nested_cntl, &nested_request, &nested_response, NULL);
            if (nested_cntl.Failed()) {
                cntl->SetFailed(nested_cntl.ErrorCode(), "nested: %s", nested_cntl.ErrorText().c_str());
                return;
            }
            response->set_message("outer(" + nested_response.message() + ")");
            return;
        }
        cntl->response_attachment().append(cntl->request_attachment());
        if (request->respond_later()) {
            google::protobuf::Closure* later_done = done_guard.release();
            const std::string message = request->message();
            std::lock_guard<std::mutex> lock(mu_);
            later_.push_back(std::thread([this, response, later_done, message] {
                WaitFor([this] { return release_later_responses.load(); });
                response->set_message("later:" + message);
                later_done->Run();
            }));
            return;
        }
        response->set_message(request->message());
    }

    std::vector<std::string> request_ids() {
        std::lock_guard<std::mutex> lock(mu_);
        return request_ids_;
    }

    std::atomic<int> calls{0};
    std::atomic<uint64_t> last_log_id{0};
    // The ends of the last call's connection, as the server saw them.
    std::atomic<int> last_local_port{0};
    std::atomic<int> last_remote_port{0};
    // Responses deferred by respond_later go out once this is true.
    std::atomic<bool> release_later_responses{false};
    brpc::Channel* nested_channel = NULL;

private:
    std::mutex mu_;
    std::vector<std::thread> later_;
    std::vector<std::string> request_ids_;  // of every call, in arrival order
};

// A done that counts its runs and the thread of the last one.
struct CountingDone : public google::protobuf::Closure {
    void Run() override {
        std::lock_guard<std::mutex> lock(mu);
        thread = std::this_thread::get_id();
        ++runs;
    }
    int Runs() {
        std::lock_guard<std::mutex> lock(mu);
        return runs;
    }
    std::mutex mu;
    std::thread::id thread;
    int runs = 0;
};

// Waits until every socket the library created is recycled (their fds
// closed): connections close asynchronously after Join and channel
// destruction.
bool WaitForSocketsRecycled() {
    return WaitFor([] { return brpc_socket_live_count() == 0; });
}

// Starts the library's fixed threads and fds (dispatcher, timers) with one
// whole server/channel round, so counts taken after it are stable.
void WarmUpRuntime() {
    EchoServiceImpl service;
    brpc::Server server;
    ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    ASSERT_EQ(0, server.Start("127.0.0.1:0", NULL));
    {
        brpc::Channel channel;
        ASSERT_EQ(0, channel.Init("127.0.0.1", server.listen_address().port, NULL));
        test::EchoService_Stub stub(&channel);
        brpc::Controller cntl;
        test::EchoRequest request;
        request.set_message("warm-up");
        test::EchoResponse response;
        stub.Echo(&cntl, &request, &response, NULL);
        ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    }
    server.Stop();
    server.Join();
}

// Counts taken after a warm-up whose connections are all closed.
void WarmUpAndSettle() {
    WarmUpRuntime();
    ASSERT_TRUE(WaitForSocketsRecycled()) << brpc_socket_live_count() << " sockets alive";
}

class RpcTest : public ::testing::Test {
protected:
    void SetUp() override {
        WarmUpAndSettle();
        fds_before_ = CountOpenFds();
        server_.reset(new brpc::Server);
        ASSERT_EQ(0, server_->AddService(&service_, brpc::SERVER_DOESNT_OWN_SERVICE));
        ASSERT_EQ(0, server_->Start("127.0.0.1:0", NULL));
        port_ = server_->listen_address().port;
        ASSERT_GT(port_, 0);
    }
    void TearDown() override {
        server_.reset();
        EXPECT_TRUE(WaitForSocketsRecycled()) << brpc_socket_live_count() << " sockets alive";
        EXPECT_TRUE(WaitFor([&] { return CountOpenFds() == fds_before_; }))
            << "open fds: " << CountOpenFds() << " (was " << fds_before_ << ")";
    }

    void InitChannel(brpc::Channel* channel, int timeout_ms = 2000) {
        brpc::ChannelOptions options;
        options.timeout_ms = timeout_ms;
        ASSERT_EQ(0, channel->Init("127.0.0.1", port_, &options));
    }

    EchoServiceImpl service_;  // outlives the server, which may call it until destroyed
    std::unique_ptr<brpc::Server> server_;
    int port_ = 0;
    int fds_before_ = 0;
};

// ---- calls ----

TEST_F(RpcTest, SyncEchoReturnsTheRequestMessage) {
    brpc::Channel channel;
    InitChannel(&channel);
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    cntl.set_log_id(12345);
    test::EchoRequest request;
    request.set_message("hello");
    test::EchoResponse response;
    stub.Echo(&cntl, &request, &response, NULL);

    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ(0, cntl.ErrorCode());
    EXPECT_EQ("", cntl.ErrorText());
    EXPECT_EQ("hello", response.message());
    EXPECT_EQ(12345u, service_.last_log_id.load());
    EXPECT_EQ("127.0.0.1", std::string(butil::ip2str(cntl.remote_side().ip).c_str()));
    EXPECT_EQ(port_, cntl.remote_side().port);
    EXPECT_EQ("127.0.0.1", std::string(butil::ip2str(cntl.local_side().ip).c_str()));
    EXPECT_GT(cntl.local_side().port, 0);
    // The server saw the same connection from its end.
    EXPECT_EQ(port_, service_.last_local_port.load());
    EXPECT_EQ(cntl.local_side().port, service_.last_remote_port.load());
}

TEST_F(RpcTest, AsyncEchoRunsDoneOnceOnAnotherThread) {
    brpc::Channel channel;
    InitChannel(&channel);
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    request.set_message("async hello");
    request.set_sleep_ms(50);  // so CallMethod surely returns before the response
    test::EchoResponse response;
    CountingDone done;
    stub.Echo(&cntl, &request, &response, &done);
    EXPECT_EQ(0, done.Runs()) << "an async call returns before its response";

    ASSERT_TRUE(WaitFor([&] { return done.Runs() == 1; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(1, done.Runs());
    EXPECT_NE(std::this_thread::get_id(), done.thread);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ("async hello", response.message());
}

TEST_F(RpcTest, AsyncDoneMayDeleteItselfAsProtobufCallbacksDo) {
    brpc::Channel channel;
    InitChannel(&channel);
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    request.set_message("self-deleting");
    test::EchoResponse response;
    std::atomic<int> runs{0};
    struct Count {
        static void Run(std::atomic<int>* n) { ++*n; }
    };
    stub.Echo(&cntl, &request, &response, google::protobuf::NewCallback(&Count::Run, &runs));
    ASSERT_TRUE(WaitFor([&] { return runs.load() == 1; }));
    EXPECT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ("self-deleting", response.message());
}

TEST_F(RpcTest, RequestAndResponseAttachmentsRoundTrip) {
    brpc::Channel channel;
    InitChannel(&channel);
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    std::string payload("attached\0bytes\xff", 15);
    for (int i = 0; i < 100000; ++i) {
        payload.push_back((char)(i * 7));
    }
    cntl.request_attachment().append(payload);
    test::EchoRequest request;
    request.set_message("with attachment");
    test::EchoResponse response;
    stub.Echo(&cntl, &request, &response, NULL);

    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ("with attachment", response.message());
    EXPECT_EQ(payload.size(), cntl.response_attachment().size());
    EXPECT_TRUE(cntl.response_attachment().to_string() == payload);
}

TEST_F(RpcTest, AnErrorSetByTheHandlerReachesTheClientWithItsCodeAndText) {
    brpc::Channel channel;
    InitChannel(&channel);
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    request.set_message("please fail");
    request.set_fail_code(4242);
    request.set_fail_text("the handler says no");
    test::EchoResponse response;
    stub.Echo(&cntl, &request, &response, NULL);

    ASSERT_TRUE(cntl.Failed());
    EXPECT_EQ(4242, cntl.ErrorCode());
    // The server's SetFailed made the text "[E4242]<reason>"; the client
    // shows it as it is, the code once.
    EXPECT_EQ("[E4242]the handler says no", cntl.ErrorText());
    EXPECT_EQ("", response.message());
}

TEST_F(RpcTest, AnUnknownServiceFailsWithENOSERVICE) {
    brpc::Channel channel;
    InitChannel(&channel);
    test::MissingService_Stub stub(&channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    request.set_message("anyone?");
    test::EchoResponse response;
    stub.Echo(&cntl, &request, &response, NULL);

    ASSERT_TRUE(cntl.Failed());
    EXPECT_EQ(brpc::ENOSERVICE, cntl.ErrorCode()) << cntl.ErrorText();
    EXPECT_TRUE(StartsWith(cntl.ErrorText(), "[E1001]")) << cntl.ErrorText();
    EXPECT_NE(std::string::npos, cntl.ErrorText().find("test.MissingService")) << cntl.ErrorText();
    EXPECT_EQ(0, service_.calls.load());
}

// test.EchoService as a client that knows a method the server lacks.
const google::protobuf::MethodDescriptor* EchoServiceMethodTheServerLacks(
    google::protobuf::DescriptorPool* pool) {
    google::protobuf::FileDescriptorProto file;
    test::EchoService::descriptor()->file()->CopyTo(&file);
    for (int i = 0; i < file.service_size(); ++i) {
        if (file.service(i).name() == "EchoService") {
            google::protobuf::MethodDescriptorProto* extra = file.mutable_service(i)->add_method();
            extra->set_name("Extra");
            extra->set_input_type(".test.EchoRequest");
            extra->set_output_type(".test.EchoResponse");
        }
    }
    if (pool->BuildFile(file) == NULL) {
        return NULL;
    }
    return pool->FindMethodByName("test.EchoService.Extra");
}

TEST_F(RpcTest, AnUnknownMethodOfAKnownServiceFailsWithENOMETHOD) {
    google::protobuf::DescriptorPool pool;
    const google::protobuf::MethodDescriptor* extra = EchoServiceMethodTheServerLacks(&pool);
    ASSERT_TRUE(extra != NULL);
    brpc::Channel channel;
    InitChannel(&channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    request.set_message("anyone?");
    test::EchoResponse response;
    channel.CallMethod(extra, &cntl, &request, &response, NULL);

    ASSERT_TRUE(cntl.Failed());
    EXPECT_EQ(brpc::ENOMETHOD, cntl.ErrorCode()) << cntl.ErrorText();
    EXPECT_TRUE(StartsWith(cntl.ErrorText(), "[E1002]")) << cntl.ErrorText();
    EXPECT_NE(std::string::npos, cntl.ErrorText().find("Extra")) << cntl.ErrorText();
    EXPECT_EQ(0, service_.calls.load());
}

TEST_F(RpcTest, ACallToASleepingHandlerTimesOutWithERPCTIMEDOUT) {
    brpc::Channel channel;
    InitChannel(&channel);
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    cntl.set_timeout_ms(100);
    EXPECT_EQ(100, cntl.timeout_ms());
    test::EchoRequest request;
    request.set_message("too slow");
    request.set_sleep_ms(1000);
    test::EchoResponse response;
    const Clock::time_point start = Clock::now();
    stub.Echo(&cntl, &request, &response, NULL);
    const int64_t elapsed_ms = MillisecondsSince(start);

    ASSERT_TRUE(cntl.Failed());
    EXPECT_EQ(brpc::ERPCTIMEDOUT, cntl.ErrorCode()) << cntl.ErrorText();
    EXPECT_TRUE(StartsWith(cntl.ErrorText(), "[E1008]Reached timeout=100ms")) << cntl.ErrorText();
    EXPECT_GE(elapsed_ms, 90);
    EXPECT_LT(elapsed_ms, 600);
    EXPECT_EQ("", response.message());
}

TEST_F(RpcTest, ACallWithNoServerFailsWithECONNREFUSEDPromptly) {
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init("127.0.0.1", ClosedPort(), NULL));
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    request.set_message("nobody home");
    test::EchoResponse response;
    const Clock::time_point start = Clock::now();
    stub.Echo(&cntl, &request, &response, NULL);
    const int64_t elapsed_ms = MillisecondsSince(start);

    ASSERT_TRUE(cntl.Failed());
    EXPECT_EQ(ECONNREFUSED, cntl.ErrorCode()) << cntl.ErrorText();
    EXPECT_FALSE(cntl.ErrorText().empty());
    EXPECT_LT(elapsed_ms, 500) << "refused connects are retried at once, not after a timeout";
}

TEST_F(RpcTest, StoppingAndJoiningTheServerMidCallStillDeliversTheResponse) {
    brpc::Channel channel;
    InitChannel(&channel);
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    request.set_message("finish me");
    request.set_sleep_ms(300);
    test::EchoResponse response;
    CountingDone done;
    stub.Echo(&cntl, &request, &response, &done);
    ASSERT_TRUE(WaitFor([&] { return service_.calls.load() == 1; }));

    EXPECT_EQ(0, server_->Stop());
    EXPECT_EQ(0, server_->Join()) << "Join waits for the call in flight";
    EXPECT_FALSE(server_->IsRunning());

    ASSERT_TRUE(WaitFor([&] { return done.Runs() == 1; }));
    EXPECT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ("finish me", response.message());
}

TEST_F(RpcTest, EightThreadsMakingTenThousandCallsEachGetTheirOwnResponses) {
    brpc::Channel channel;
    InitChannel(&channel, 10000);
    const int kThreads = 8;
    const int kCallsPerThread = 10000;
    std::vector<int> mismatches(kThreads, 0);
    std::vector<int> failures(kThreads, 0);
    std::vector<std::string> first_error(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.push_back(std::thread([&, t] {
            test::EchoService_Stub stub(&channel);
            brpc::Controller cntl;
            for (int i = 0; i < kCallsPerThread; ++i) {
                cntl.Reset();
                test::EchoRequest request;
                request.set_message("thread " + std::to_string(t) + " call " + std::to_string(i));
                test::EchoResponse response;
                stub.Echo(&cntl, &request, &response, NULL);
                if (cntl.Failed()) {
                    if (failures[t]++ == 0) {
                        first_error[t] = cntl.ErrorText();
                    }
                } else if (response.message() != request.message()) {
                    ++mismatches[t];
                }
            }
        }));
    }
    for (size_t t = 0; t < threads.size(); ++t) {
        threads[t].join();
    }
    for (int t = 0; t < kThreads; ++t) {
        EXPECT_EQ(0, failures[t]) << "thread " << t << ": " << first_error[t];
        EXPECT_EQ(0, mismatches[t]) << "thread " << t;
    }
    EXPECT_EQ(kThreads * kCallsPerThread, service_.calls.load());
}

TEST_F(RpcTest, ASyncCallMadeFromInsideAServiceMethodWorks) {
    brpc::Channel nested_channel;
    InitChannel(&nested_channel);
    service_.nested_channel = &nested_channel;
    brpc::Channel channel;
    InitChannel(&channel);
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    request.set_message("outer");
    request.set_nested_message("inner");
    test::EchoResponse response;
    stub.Echo(&cntl, &request, &response, NULL);

    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ("outer(inner)", response.message());
    EXPECT_EQ(2, service_.calls.load());
}

TEST_F(RpcTest, ANestedCallInheritsTheLogIdAndRequestIdOfTheCallItServes) {
    brpc::Channel nested_channel;
    InitChannel(&nested_channel);
    service_.nested_channel = &nested_channel;
    brpc::Channel channel;
    InitChannel(&channel);
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    cntl.set_log_id(777);
    cntl.set_request_id(std::string(100, 'r'));  // longer than the facade's first buffer
    test::EchoRequest request;
    request.set_message("outer");
    request.set_nested_message("inner");
    test::EchoResponse response;
    stub.Echo(&cntl, &request, &response, NULL);

    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ("outer(inner)", response.message());
    // The outer call and the nested one both arrived with the ids.
    EXPECT_EQ(service_.request_ids(), std::vector<std::string>(2, std::string(100, 'r')));
    EXPECT_EQ(777u, service_.last_log_id.load());

    // A call without a request id sends none.
    brpc::Controller plain;
    request.clear_nested_message();
    stub.Echo(&plain, &request, &response, NULL);
    ASSERT_FALSE(plain.Failed()) << plain.ErrorText();
    EXPECT_EQ(service_.request_ids().back(), "");
    EXPECT_EQ(0u, service_.last_log_id.load());
}

TEST(ControllerTest, InheritableCarriesLogIdAndRequestIdAndClogPrefixesTheRequestId) {
    brpc::Controller parent;
    parent.set_log_id(5);
    parent.set_request_id("abc");
    brpc::Controller child(parent.inheritable());
    EXPECT_EQ(5u, child.log_id());
    EXPECT_EQ("abc", child.request_id());
    std::ostringstream with_id;
    with_id << child.LogPrefix() << "text";
    EXPECT_EQ("@rid=abc text", with_id.str());
    child.Reset();
    EXPECT_EQ("", child.request_id());
    std::ostringstream without_id;
    without_id << child.LogPrefix() << "text";
    EXPECT_EQ("text", without_id.str());
    brpc::Controller::Inheritable ctx = parent.inheritable();
    ctx.Reset();
    EXPECT_EQ(0u, ctx.log_id);
    EXPECT_EQ("", ctx.request_id);
}

TEST_F(RpcTest, AHandlerMayRespondLaterFromAnotherThread) {
    brpc::Channel channel;
    InitChannel(&channel);
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    cntl.request_attachment().append("late attachment");
    test::EchoRequest request;
    request.set_message("call me back");
    request.set_respond_later(true);
    test::EchoResponse response;
    CountingDone done;
    stub.Echo(&cntl, &request, &response, &done);
    ASSERT_TRUE(WaitFor([&] { return service_.calls.load() == 1; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(0, done.Runs()) << "no response before the handler's done runs";
    service_.release_later_responses = true;

    ASSERT_TRUE(WaitFor([&] { return done.Runs() == 1; }));
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ("later:call me back", response.message());
    EXPECT_EQ("late attachment", cntl.response_attachment().to_string());
}

TEST_F(RpcTest, AControllerServesSuccessiveCallsAfterReset) {
    brpc::Channel channel;
    InitChannel(&channel);
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    for (int round = 0; round < 3; ++round) {
        cntl.Reset();
        test::EchoRequest request;
        request.set_message("round " + std::to_string(round));
        if (round == 1) {
            request.set_fail_code(brpc::EINTERNAL);
            request.set_fail_text("round 1 fails");
        }
        cntl.request_attachment().append("att " + std::to_string(round));
        test::EchoResponse response;
        stub.Echo(&cntl, &request, &response, NULL);
        if (round == 1) {
            EXPECT_TRUE(cntl.Failed());
            EXPECT_EQ(brpc::EINTERNAL, cntl.ErrorCode());
            continue;
        }
        ASSERT_FALSE(cntl.Failed()) << "round " << round << ": " << cntl.ErrorText();
        EXPECT_EQ(request.message(), response.message());
        EXPECT_EQ("att " + std::to_string(round), cntl.response_attachment().to_string());
    }
}

TEST_F(RpcTest, AResponseThatDoesNotParseFailsWithERESPONSE) {
    brpc::Channel channel;
    InitChannel(&channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    request.set_message("\x07");  // field 0: not a valid message encoding
    test::MisreadEchoResponse response;
    channel.CallMethod(test::EchoService::descriptor()->FindMethodByName("Echo"), &cntl, &request,
                       &response, NULL);

    ASSERT_TRUE(cntl.Failed());
    EXPECT_EQ(brpc::ERESPONSE, cntl.ErrorCode());
    EXPECT_TRUE(StartsWith(cntl.ErrorText(), "[E2002]Fail to parse response message")) << cntl.ErrorText();
}

TEST_F(RpcTest, ARequestThatDoesNotParseIsAnsweredWithEREQUEST) {
    brpc::Channel channel;
    InitChannel(&channel);
    brpc::Controller cntl;
    test::MisreadEchoResponse request;  // field 1 holds a message, the server expects a string
    request.mutable_message()->set_message(std::string("\xff\xfe", 2));
    test::EchoResponse response;
    channel.CallMethod(test::EchoService::descriptor()->FindMethodByName("Echo"), &cntl, &request,
                       &response, NULL);

    ASSERT_TRUE(cntl.Failed());
    EXPECT_EQ(brpc::EREQUEST, cntl.ErrorCode()) << cntl.ErrorText();
    EXPECT_EQ(0, service_.calls.load());
}

TEST_F(RpcTest, ACallOnAStoppedServerFails) {
    server_->Stop();
    server_->Join();
    brpc::Channel channel;
    InitChannel(&channel);
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    request.set_message("too late");
    test::EchoResponse response;
    stub.Echo(&cntl, &request, &response, NULL);
    EXPECT_TRUE(cntl.Failed());
    EXPECT_EQ(0, service_.calls.load());
}

// ---- resources ----

// One server and channel serving 16 concurrent slow calls, all destroyed
// before returning. The concurrency makes the library start its core
// workers and more.
void ServeConcurrentSlowCalls() {
    EchoServiceImpl service;
    brpc::Server server;
    ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    ASSERT_EQ(0, server.Start("127.0.0.1:0", NULL));
    {
        brpc::Channel channel;
        brpc::ChannelOptions options;
        options.timeout_ms = 5000;
        ASSERT_EQ(0, channel.Init("127.0.0.1", server.listen_address().port, &options));
        test::EchoService_Stub stub(&channel);
        std::vector<std::unique_ptr<brpc::Controller> > cntls;
        std::vector<std::unique_ptr<test::EchoResponse> > responses;
        std::vector<std::unique_ptr<CountingDone> > dones;
        test::EchoRequest request;
        request.set_message("busy");
        request.set_sleep_ms(100);
        for (int i = 0; i < 16; ++i) {
            cntls.emplace_back(new brpc::Controller);
            responses.emplace_back(new test::EchoResponse);
            dones.emplace_back(new CountingDone);
            stub.Echo(cntls.back().get(), &request, responses.back().get(), dones.back().get());
        }
        for (size_t i = 0; i < dones.size(); ++i) {
            ASSERT_TRUE(WaitFor([&] { return dones[i]->Runs() == 1; }));
            EXPECT_FALSE(cntls[i]->Failed()) << cntls[i]->ErrorText();
            EXPECT_EQ("busy", responses[i]->message());
        }
    }
    EXPECT_EQ(0, server.Stop());
    EXPECT_EQ(0, server.Join());
}

// The thread count once workers above the pool's core retired (they do
// after ~5 s idle): unchanged for 6 s, or the last one seen after 15 s.
int SettledThreadCount() {
    const auto deadline = Clock::now() + std::chrono::seconds(15);
    int count = CountThreads();
    auto unchanged_since = Clock::now();
    while (Clock::now() < deadline && Clock::now() - unchanged_since < std::chrono::seconds(6)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        const int now = CountThreads();
        if (now != count) {
            count = now;
            unchanged_since = Clock::now();
        }
    }
    return count;
}

TEST(RpcResourceTest, FdsAndThreadsReturnToTheirStartingCountsAfterStopJoinAndChannelDestruction) {
    ServeConcurrentSlowCalls();  // starts the library's fixed threads and core workers
    ASSERT_TRUE(WaitForSocketsRecycled()) << brpc_socket_live_count() << " sockets alive";
    const int threads_before = SettledThreadCount();
    const int fds_before = CountOpenFds();

    ServeConcurrentSlowCalls();

    EXPECT_TRUE(WaitForSocketsRecycled()) << brpc_socket_live_count() << " sockets alive";
    EXPECT_TRUE(WaitFor([&] { return CountOpenFds() == fds_before; }))
        << "open fds: " << CountOpenFds() << " (was " << fds_before << ")";
    EXPECT_TRUE(WaitFor([&] { return CountThreads() == threads_before; }))
        << "threads: " << CountThreads() << " (was " << threads_before << ")";
}

// ---- server ----

TEST(ServerTest, AddingTheSameServiceTwiceFailsWithEEXIST) {
    EchoServiceImpl service;
    brpc::Server server;
    ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    EXPECT_EQ(-1, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    EXPECT_EQ(EEXIST, errno);
}

TEST(ServerTest, AddingAServiceOnceStartedFailsWithEPERM) {
    EchoServiceImpl service;
    brpc::Server server;
    ASSERT_EQ(0, server.Start("127.0.0.1:0", NULL));
    EXPECT_TRUE(server.IsRunning());
    EXPECT_EQ(-1, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    EXPECT_EQ(EPERM, errno);
}

// brpc's selective/partition echo servers name each server with set_version;
// the builtin /version page on the server's port shows it.
TEST(ServerTest, SetVersionIsWhatTheVersionPageShows) {
    brpc::Server server;
    EXPECT_EQ(server.version(), "");
    server.set_version("example_server 3");
    EXPECT_EQ(server.version(), "example_server 3");
    ASSERT_EQ(0, server.Start("127.0.0.1:0", NULL));
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server.listen_address().port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(0, connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
    timeval limit = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
    const std::string request = "GET /version HTTP/1.1\r\nHost: t\r\nUser-Agent: curl/8\r\n\r\n";
    ASSERT_EQ(static_cast<ssize_t>(request.size()), write(fd, request.data(), request.size()));
    std::string response;
    char buf[512];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {  // the server closes after answering
        response.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    EXPECT_EQ(response.compare(0, 12, "HTTP/1.1 200"), 0) << response;
    const std::string body = "\r\n\r\nexample_server 3\n";
    ASSERT_GE(response.size(), body.size()) << response;
    EXPECT_EQ(response.substr(response.size() - body.size()), body) << response;
}

std::mutex g_server_log_mutex;
std::vector<std::string> g_server_log;

void CollectServerLog(int, const char*, int, const uint8_t* message, size_t len, void*) {
    std::lock_guard<std::mutex> lock(g_server_log_mutex);
    g_server_log.push_back(std::string(reinterpret_cast<const char*>(message), len));
}

// What a brpc server prints when it starts and stops, which launch scripts
// and people wait for; unnamed, it is named after its services' classes.
TEST(ServerTest, StartAndStopLogBrpcsLinesWithTheServersName) {
    EchoServiceImpl service;
    {
        std::lock_guard<std::mutex> lock(g_server_log_mutex);
        g_server_log.clear();
    }
    brpc_log_set_sink(&CollectServerLog, nullptr);
    {
        brpc::Server server;
        ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
        ASSERT_EQ(0, server.Start("127.0.0.1:0", NULL));
        EXPECT_EQ(server.version(), "(anonymous namespace)::EchoServiceImpl");
        const int port = server.listen_address().port;
        ASSERT_EQ(0, server.Stop(0));
        ASSERT_EQ(0, server.Join());
        brpc_log_set_sink(nullptr, nullptr);
        std::lock_guard<std::mutex> lock(g_server_log_mutex);
        ASSERT_GE(g_server_log.size(), 3u);
        EXPECT_EQ(g_server_log[0], "Server[(anonymous namespace)::EchoServiceImpl] is serving on port=" +
                                       std::to_string(port) + ".");
        EXPECT_EQ(g_server_log[1].compare(0, 17, "Check out http://"), 0) << g_server_log[1];
        EXPECT_NE(g_server_log[1].find(":" + std::to_string(port) + " in web browser."), std::string::npos)
            << g_server_log[1];
        EXPECT_EQ(g_server_log[2], "Server[(anonymous namespace)::EchoServiceImpl] is going to quit");
    }
    {
        std::lock_guard<std::mutex> lock(g_server_log_mutex);
        g_server_log.clear();
    }
    brpc_log_set_sink(&CollectServerLog, nullptr);
    {
        brpc::Server server;
        server.set_version("echo_v2");
        brpc::ServerOptions options;
        options.has_builtin_services = false;
        ASSERT_EQ(0, server.Start("127.0.0.1:0", &options));
        EXPECT_EQ(server.version(), "echo_v2");
    }  // the destructor stops the server, and says so
    brpc_log_set_sink(nullptr, nullptr);
    std::lock_guard<std::mutex> lock(g_server_log_mutex);
    ASSERT_EQ(g_server_log.size(), 3u);
    EXPECT_EQ(g_server_log[0].compare(0, 35, "Server[echo_v2] is serving on port="), 0) << g_server_log[0];
    EXPECT_EQ(g_server_log[1],
              "Builtin services are disabled according to ServerOptions.has_builtin_services");
    EXPECT_EQ(g_server_log[2], "Server[echo_v2] is going to quit");
}

TEST(ServerTest, ListenAddressHasTheChosenPort) {
    brpc::Server server;
    EXPECT_FALSE(server.IsRunning());
    ASSERT_EQ(0, server.Start("127.0.0.1:0", NULL));
    EXPECT_TRUE(server.IsRunning());
    EXPECT_EQ("127.0.0.1", std::string(butil::ip2str(server.listen_address().ip).c_str()));
    EXPECT_GT(server.listen_address().port, 0);
    brpc::Server second;
    EXPECT_EQ(-1, second.Start(butil::endpoint2str(server.listen_address()).c_str(), NULL));
    EXPECT_EQ(EADDRINUSE, errno);
}

TEST(ServerTest, StartingOnAMalformedAddressFails) {
    brpc::Server server;
    EXPECT_EQ(-1, server.Start("127.0.0.1:notaport", NULL));
    EXPECT_EQ(-1, server.Start(70000, NULL));
    EXPECT_FALSE(server.IsRunning());
}

TEST(ServerTest, TheServerDeletesTheServicesItOwns) {
    struct OwnedService : public EchoServiceImpl {
        explicit OwnedService(bool* deleted) : deleted_(deleted) {}
        ~OwnedService() { *deleted_ = true; }
        bool* deleted_;
    };
    bool owned_deleted = false;
    bool kept_deleted = false;
    OwnedService* kept = new OwnedService(&kept_deleted);
    {
        brpc::Server server;
        ASSERT_EQ(0, server.AddService(new OwnedService(&owned_deleted), brpc::SERVER_OWNS_SERVICE));
        EXPECT_FALSE(owned_deleted);
        brpc::Server other;
        ASSERT_EQ(0, other.AddService(kept, brpc::SERVER_DOESNT_OWN_SERVICE));
    }
    EXPECT_TRUE(owned_deleted);
    EXPECT_FALSE(kept_deleted);
    delete kept;
}

TEST(ServerTest, RunUntilAskedToQuitReturnsAfterSIGTERMWithTheServerStopped) {
    brpc::Server server;
    ASSERT_EQ(0, server.Start("127.0.0.1:0", NULL));
    EXPECT_FALSE(brpc::IsAskedToQuit());  // installs the handlers before the signal
    std::future<void> running = std::async(std::launch::async, [&] { server.RunUntilAskedToQuit(); });
    EXPECT_EQ(std::future_status::timeout, running.wait_for(std::chrono::milliseconds(100)));
    EXPECT_TRUE(server.IsRunning());

    ASSERT_EQ(0, kill(getpid(), SIGTERM));
    ASSERT_EQ(std::future_status::ready, running.wait_for(std::chrono::seconds(5)));
    EXPECT_TRUE(brpc::IsAskedToQuit());
    EXPECT_FALSE(server.IsRunning());
}

// ---- channel ----

TEST(ChannelTest, OptionsHaveBrpcDefaults) {
    brpc::ChannelOptions options;
    EXPECT_EQ(200, options.connect_timeout_ms);
    EXPECT_EQ(500, options.timeout_ms);
    EXPECT_EQ(3, options.max_retry);
    EXPECT_EQ(brpc::PROTOCOL_BAIDU_STD, (brpc::ProtocolType)options.protocol);
    EXPECT_STREQ("baidu_std", options.protocol.name());
}

TEST(ChannelTest, InitFailsForAProtocolOtherThanBaiduStd) {
    brpc::ChannelOptions options;
    options.protocol = "http";
    brpc::Channel channel;
    EXPECT_EQ(-1, channel.Init("127.0.0.1:8000", &options));
    options.protocol = "baidu_std";
    EXPECT_EQ(0, channel.Init("127.0.0.1:8000", &options));
}

TEST(ChannelTest, InitFailsForAMalformedAddress) {
    brpc::Channel channel;
    EXPECT_EQ(-1, channel.Init("127.0.0.1", NULL));
    EXPECT_EQ(-1, channel.Init("127.0.0.1", 70000, NULL));
}

TEST(ChannelTest, ACallOnAnUninitializedChannelFailsAndRunsDone) {
    brpc::Channel channel;
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    test::EchoResponse response;
    CountingDone done;
    stub.Echo(&cntl, &request, &response, &done);
    EXPECT_EQ(1, done.Runs());
    EXPECT_TRUE(cntl.Failed());
    EXPECT_EQ(EINVAL, cntl.ErrorCode());
}

// ---- controller ----

TEST(ControllerTest, SetFailedFormatsTheTextAsBrpcDoes) {
    brpc::Controller cntl;
    EXPECT_FALSE(cntl.Failed());
    EXPECT_EQ(0, cntl.ErrorCode());
    EXPECT_EQ("", cntl.ErrorText());

    cntl.SetFailed(brpc::EREQUEST, "bad %s #%d", "request", 7);
    EXPECT_TRUE(cntl.Failed());
    EXPECT_EQ(brpc::EREQUEST, cntl.ErrorCode());
    EXPECT_EQ("[E1003]bad request #7", cntl.ErrorText());

    cntl.SetFailed(brpc::EINTERNAL, "then worse");
    EXPECT_EQ(brpc::EINTERNAL, cntl.ErrorCode());
    EXPECT_EQ("[E1003]bad request #7 [E2001]then worse", cntl.ErrorText());

    cntl.Reset();
    EXPECT_FALSE(cntl.Failed());
    EXPECT_EQ("", cntl.ErrorText());
    cntl.SetFailed(std::string("plain reason"));
    EXPECT_TRUE(cntl.Failed());
    EXPECT_EQ(-1, cntl.ErrorCode());
    EXPECT_EQ("plain reason", cntl.ErrorText());
}

TEST(ControllerTest, SettingsStartUnsetAndResetClearsThem) {
    brpc::Controller cntl;
    EXPECT_EQ(-1, cntl.timeout_ms());
    EXPECT_EQ(-1, cntl.max_retry());
    EXPECT_EQ(0u, cntl.log_id());
    EXPECT_FALSE(cntl.has_remote_stream());
    EXPECT_FALSE(cntl.IsCanceled());
    EXPECT_EQ(0, cntl.remote_side().port);
    cntl.set_timeout_ms(1234);
    cntl.set_max_retry(0);
    cntl.set_log_id(99);
    cntl.request_attachment().append("req");
    cntl.response_attachment().append("resp");
    EXPECT_EQ(1234, cntl.timeout_ms());
    EXPECT_EQ(0, cntl.max_retry());
    EXPECT_EQ(99u, cntl.log_id());
    cntl.Reset();
    EXPECT_EQ(-1, cntl.timeout_ms());
    EXPECT_EQ(-1, cntl.max_retry());
    EXPECT_EQ(0u, cntl.log_id());
    EXPECT_TRUE(cntl.request_attachment().empty());
    EXPECT_TRUE(cntl.response_attachment().empty());
}

TEST(ControllerTest, NotifyOnCancelRunsTheCallbackOnResetOrDestruction) {
    CountingDone on_reset;
    CountingDone on_destruction;
    CountingDone second;
    {
        brpc::Controller cntl;
        cntl.NotifyOnCancel(&on_reset);
        EXPECT_EQ(0, on_reset.Runs());
        cntl.NotifyOnCancel(&second);
        EXPECT_EQ(1, second.Runs()) << "a second registration runs at once";
        cntl.Reset();
        EXPECT_EQ(1, on_reset.Runs());
        cntl.NotifyOnCancel(&on_destruction);
        EXPECT_EQ(0, on_destruction.Runs());
    }
    EXPECT_EQ(1, on_destruction.Runs());
    EXPECT_EQ(1, on_reset.Runs());
}

// ---- closure guard ----

TEST(ClosureGuardTest, RunsTheClosureWhenItGoesOutOfScope) {
    CountingDone done;
    {
        brpc::ClosureGuard guard(&done);
        EXPECT_FALSE(guard.empty());
        EXPECT_EQ(0, done.Runs());
    }
    EXPECT_EQ(1, done.Runs());
}

TEST(ClosureGuardTest, ReleaseHandsTheClosureBackWithoutRunningIt) {
    CountingDone done;
    {
        brpc::ClosureGuard guard(&done);
        EXPECT_EQ(&done, guard.release());
        EXPECT_TRUE(guard.empty());
    }
    EXPECT_EQ(0, done.Runs());
}

TEST(ClosureGuardTest, ResetRunsTheHeldClosureAndGuardsTheNewOne) {
    CountingDone first;
    CountingDone second;
    {
        brpc::ClosureGuard guard;
        EXPECT_TRUE(guard.empty());
        guard.reset(&first);
        EXPECT_EQ(0, first.Runs());
        guard.reset(&second);
        EXPECT_EQ(1, first.Runs());
        EXPECT_EQ(0, second.Runs());
    }
    EXPECT_EQ(1, first.Runs());
    EXPECT_EQ(1, second.Runs());
}

}  // namespace
