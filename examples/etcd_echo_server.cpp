// An echo server that registers itself in etcd, so clients find it with
// the naming service "etcd://host:port/prefix" (README "Service discovery
// with etcd"). Registration is ServerOptions' etcd_registration_* fields:
// Start() puts "<prefix>/<ip:port>" under a lease it keeps alive, Stop()
// (SIGINT/SIGTERM here) withdraws it; a killed server's entry goes when
// its lease lapses.
//
//   etcd_echo_server --port=8001 --etcd=etcd://127.0.0.1:2379/services/echo
//
// --port=0 picks a free port (written to --port_file when given).

#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>

#include <gflags/gflags.h>

#include <brpc/server.h>
#include <butil/logging.h>

#include "etcd_echo.pb.h"

DEFINE_int32(port, 8000, "TCP port of this server (0: any free one)");
DEFINE_string(etcd, "etcd://127.0.0.1:2379/services/echo", "Where to register (etcd://host:port/prefix)");
DEFINE_string(tag, "", "brpc's tag registered after the address (the weight for wrr/wr)");
DEFINE_int32(lease_ttl_s, 5, "TTL of the registration's lease: a killed server vanishes this long after");
DEFINE_string(port_file, "", "Where to write the port listened on, once registered");

namespace example {

class EchoServiceImpl : public EchoService {
public:
    EchoServiceImpl() : calls_(0) {}

    void Echo(google::protobuf::RpcController*, const EchoRequest* request, EchoResponse* response,
              google::protobuf::Closure* done) override {
        brpc::ClosureGuard done_guard(done);
        response->set_message(request->message());
        calls_.fetch_add(1, std::memory_order_relaxed);
    }

    int64_t calls() const { return calls_.load(std::memory_order_relaxed); }

private:
    std::atomic<int64_t> calls_;
};

}  // namespace example

int main(int argc, char* argv[]) {
    GFLAGS_NAMESPACE::ParseCommandLineFlags(&argc, &argv, true);

    brpc::Server server;
    example::EchoServiceImpl echo_service;
    if (server.AddService(&echo_service, brpc::SERVER_DOESNT_OWN_SERVICE) != 0) {
        LOG(ERROR) << "Fail to add service";
        return 1;
    }
    brpc::ServerOptions options;
    options.etcd_registration_url = FLAGS_etcd;
    options.etcd_registration_tag = FLAGS_tag;
    options.etcd_registration_ttl_s = FLAGS_lease_ttl_s;
    // Listening on 0.0.0.0 registers the address this host reaches etcd from.
    if (server.Start(FLAGS_port, &options) != 0) {
        LOG(ERROR) << "Fail to start EchoServer (is etcd running at " << FLAGS_etcd << "?)";
        return 1;
    }
    const int port = server.listen_address().port;
    LOG(INFO) << "EchoServer on port " << port << " registered under " << FLAGS_etcd;
    if (!FLAGS_port_file.empty()) {
        const std::string tmp = FLAGS_port_file + ".tmp";
        std::ofstream(tmp.c_str()) << port << "\n";
        std::rename(tmp.c_str(), FLAGS_port_file.c_str());
    }
    server.RunUntilAskedToQuit();
    LOG(INFO) << "EchoServer on port " << port << " answered " << echo_service.calls() << " calls";
    return 0;
}
