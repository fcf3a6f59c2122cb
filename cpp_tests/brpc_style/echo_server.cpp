// An echo server written as brpc's example programs are: gflags, LOG, a
// service over protoc's generated base, ServerOptions, and serving until
// SIGINT/SIGTERM. The response carries the request's message back and the
// request's attachment as its own.
//
//   brpc_style_echo_server --port=0 --port_file=F [--expect_calls=N]
//
// It writes the port it listens on to --port_file once serving, and exits 0
// when asked to quit if it answered at least --expect_calls calls.

#include <cstdio>
#include <ostream>
#include <string>

#include <gflags/gflags.h>

#include <brpc/server.h>
#include <butil/logging.h>

#include "echo.pb.h"
#include "port_file.h"

DEFINE_int32(port, 0, "TCP port of this server (0: any free one)");
DEFINE_string(port_file, "", "Where to write the port listened on");
DEFINE_int64(expect_calls, 0, "Exit 1 when fewer calls were answered");
DEFINE_bool(echo_attachment, true, "Echo the request's attachment");

namespace example {

// Describable, as brpc's services often are; butil::atomic and Describable
// come with brpc/server.h.
class EchoServiceImpl : public EchoService, public brpc::Describable {
public:
    EchoServiceImpl() : calls_(0) {}

    void Describe(std::ostream& os, const brpc::DescribeOptions& options) const override {
        os << "EchoServiceImpl";
        if (options.verbose) {
            os << " calls=" << calls();
        }
    }

    void Echo(google::protobuf::RpcController* cntl_base, const EchoRequest* request,
              EchoResponse* response, google::protobuf::Closure* done) override {
        // Sends the response when the method returns.
        brpc::ClosureGuard done_guard(done);
        brpc::Controller* cntl = static_cast<brpc::Controller*>(cntl_base);
        VLOG(1) << "Received request[log_id=" << cntl->log_id() << "] from "
                << cntl->remote_side() << " to " << cntl->local_side() << ": "
                << request->message() << " (attached=" << cntl->request_attachment() << ")";
        response->set_message(request->message());
        if (FLAGS_echo_attachment) {
            cntl->response_attachment().append(cntl->request_attachment());
        }
        calls_.fetch_add(1, butil::memory_order_relaxed);
    }

    int64_t calls() const { return calls_.load(butil::memory_order_relaxed); }

private:
    butil::atomic<int64_t> calls_;
};

}  // namespace example

int main(int argc, char* argv[]) {
    GFLAGS_NAMESPACE::ParseCommandLineFlags(&argc, &argv, true);

    brpc::Server server;
    example::EchoServiceImpl echo_service;
    if (server.AddService(&echo_service, brpc::SERVER_DOESNT_OWN_SERVICE) != 0) {
        LOG(ERROR) << "Fail to add service";
        return -1;
    }
    brpc::ServerOptions options;
    if (server.Start(FLAGS_port, &options) != 0) {
        LOG(ERROR) << "Fail to start EchoServer";
        return -1;
    }
    if (!brpc_style::WritePortFile(FLAGS_port_file, server.listen_address().port)) {
        return -1;
    }
    server.RunUntilAskedToQuit();

    LOG(INFO) << echo_service << " answered " << echo_service.calls() << " calls";
    if (echo_service.calls() < FLAGS_expect_calls) {
        LOG(ERROR) << "Expected at least " << FLAGS_expect_calls << " calls";
        return 1;
    }
    return 0;
}
