// An asynchronous echo client written as brpc's example programs are: each
// call gets a heap-allocated Controller and response and a brpc::NewCallback
// closure that checks and frees them. It keeps --concurrency calls in flight.
//
//   brpc_style_async_echo_client --server=127.0.0.1:PORT [--calls=N]
//
// Exit code 0 when every callback ran once and saw its own message echoed.

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>

#include <gflags/gflags.h>

#include <brpc/callback.h>
#include <brpc/channel.h>
#include <butil/logging.h>

#include "echo.pb.h"

DEFINE_string(server, "0.0.0.0:8000", "IP Address of server");
DEFINE_int32(timeout_ms, 10000, "RPC timeout in milliseconds");
DEFINE_int32(max_retry, 3, "Max retries(not including the first RPC)");
DEFINE_int32(calls, 1000, "Number of calls to make");
DEFINE_int32(concurrency, 16, "Calls in flight at once");

namespace {

std::mutex g_mutex;
std::condition_variable g_changed;
int g_in_flight = 0;
int g_done = 0;
int g_failures = 0;

void HandleEchoResponse(brpc::Controller* cntl, example::EchoResponse* response,
                        std::string expected) {
    // Deleted when this returns, whatever happened.
    std::unique_ptr<brpc::Controller> cntl_guard(cntl);
    std::unique_ptr<example::EchoResponse> response_guard(response);

    bool ok = true;
    if (cntl->Failed()) {
        LOG(WARNING) << "Call " << cntl->log_id() << " failed: " << cntl->ErrorText();
        ok = false;
    } else if (response->message() != expected) {
        LOG(ERROR) << "Call " << cntl->log_id() << " got " << response->message()
                   << ", expected " << expected;
        ok = false;
    }
    std::lock_guard<std::mutex> lock(g_mutex);
    --g_in_flight;
    ++g_done;
    if (!ok) {
        ++g_failures;
    }
    g_changed.notify_all();
}

}  // namespace

int main(int argc, char* argv[]) {
    GFLAGS_NAMESPACE::ParseCommandLineFlags(&argc, &argv, true);

    brpc::Channel channel;
    brpc::ChannelOptions options;
    options.timeout_ms = FLAGS_timeout_ms;
    options.max_retry = FLAGS_max_retry;
    if (channel.Init(FLAGS_server.c_str(), &options) != 0) {
        LOG(ERROR) << "Fail to initialize channel";
        return -1;
    }
    example::EchoService_Stub stub(&channel);

    for (int i = 0; i < FLAGS_calls && !brpc::IsAskedToQuit(); ++i) {
        {
            std::unique_lock<std::mutex> lock(g_mutex);
            g_changed.wait(lock, [] { return g_in_flight < FLAGS_concurrency; });
            ++g_in_flight;
        }
        example::EchoResponse* response = new example::EchoResponse();
        brpc::Controller* cntl = new brpc::Controller();
        example::EchoRequest request;
        request.set_message("hello world " + std::to_string(i));
        cntl->set_log_id(i);

        // The closure owns cntl and response from here; request may go as
        // soon as Echo returns.
        google::protobuf::Closure* done =
            brpc::NewCallback(&HandleEchoResponse, cntl, response, request.message());
        stub.Echo(cntl, &request, response, done);
    }

    std::unique_lock<std::mutex> lock(g_mutex);
    g_changed.wait(lock, [] { return g_in_flight == 0; });
    LOG(INFO) << "AsyncEchoClient: " << g_done << " calls done, " << g_failures << " failed";
    return (g_done == FLAGS_calls && g_failures == 0) ? 0 : 1;
}
