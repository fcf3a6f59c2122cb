// An echo client written as brpc's example programs are: gflags, LOG, a
// Channel with ChannelOptions, a stub, and one Controller per call with a
// log id and an attachment. It checks every answer.
//
//   brpc_style_echo_client --server=127.0.0.1:PORT [--calls=N]
//
// Exit code 0 when all --calls calls succeeded with their own message and
// attachment echoed.

#include <cstdio>
#include <string>

#include <gflags/gflags.h>

#include <brpc/channel.h>
#include <butil/logging.h>
#include <butil/time.h>

#include "echo.pb.h"

DEFINE_string(attachment, "attachment", "Carried in request, echoed in response");
DEFINE_string(protocol, "baidu_std", "Protocol type");
DEFINE_string(server, "0.0.0.0:8000", "IP Address of server");
DEFINE_int32(timeout_ms, 10000, "RPC timeout in milliseconds");
DEFINE_int32(max_retry, 3, "Max retries(not including the first RPC)");
DEFINE_int32(calls, 100, "Number of calls to make");

int main(int argc, char* argv[]) {
    GFLAGS_NAMESPACE::ParseCommandLineFlags(&argc, &argv, true);

    brpc::Channel channel;
    brpc::ChannelOptions options;
    options.protocol = FLAGS_protocol;
    options.timeout_ms = FLAGS_timeout_ms;
    options.max_retry = FLAGS_max_retry;
    if (channel.Init(FLAGS_server.c_str(), &options) != 0) {
        LOG(ERROR) << "Fail to initialize channel";
        return -1;
    }
    example::EchoService_Stub stub(&channel);

    int failures = 0;
    const int64_t start_us = butil::gettimeofday_us();
    for (int i = 0; i < FLAGS_calls && !brpc::IsAskedToQuit(); ++i) {
        example::EchoRequest request;
        example::EchoResponse response;
        brpc::Controller cntl;

        request.set_message("hello world " + std::to_string(i));
        cntl.set_log_id(i);
        cntl.request_attachment().append(FLAGS_attachment);

        // done is NULL: the call returns when the response arrived.
        stub.Echo(&cntl, &request, &response, NULL);
        if (cntl.Failed()) {
            LOG(WARNING) << "Call " << i << " failed: " << cntl.ErrorText();
            ++failures;
            continue;
        }
        if (response.message() != request.message() ||
            cntl.response_attachment().to_string() != FLAGS_attachment) {
            LOG(ERROR) << "Call " << i << " got " << response.message() << " (attached="
                       << cntl.response_attachment() << "), expected " << request.message();
            ++failures;
            continue;
        }
        VLOG(1) << "Received response from " << cntl.remote_side() << " to "
                << cntl.local_side() << ": " << response.message()
                << " (attached=" << cntl.response_attachment() << ")";
    }
    LOG(INFO) << "EchoClient made " << FLAGS_calls << " calls in "
              << (butil::gettimeofday_us() - start_us) << "us, " << failures << " failed";
    return failures == 0 ? 0 : 1;
}
