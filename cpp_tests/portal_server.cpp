// A brpc server with two services, for portal_clients.sh: it serves on an
// ephemeral port of 127.0.0.1, prints "port N", answers one Echo call of
// its own (so the pages have a connection and a call to show), and stops
// when its stdin closes (or after 120 s, whichever comes first).

#include <poll.h>
#include <unistd.h>

#include <cstdio>

#include <brpc/channel.h>
#include <brpc/server.h>

#include "echo.pb.h"
#include "stream_service.pb.h"

namespace {

class EchoImpl : public test::EchoService {
public:
    void Echo(google::protobuf::RpcController*, const test::EchoRequest* request,
              test::EchoResponse* response, google::protobuf::Closure* done) override {
        brpc::ClosureGuard guard(done);
        response->set_message(request->message());
    }
};

class StreamsImpl : public bench::StreamService {
public:
    void Open(google::protobuf::RpcController*, const bench::OpenRequest*, bench::OpenResponse* response,
              google::protobuf::Closure* done) override {
        brpc::ClosureGuard guard(done);
        response->set_status("accepted");
    }
};

}  // namespace

int main() {
    EchoImpl echo;
    StreamsImpl streams;
    brpc::Server server;
    if (server.AddService(&echo, brpc::SERVER_DOESNT_OWN_SERVICE) != 0 ||
        server.AddService(&streams, brpc::SERVER_DOESNT_OWN_SERVICE) != 0) {
        std::perror("AddService");
        return 1;
    }
    brpc::ServerOptions options;
    if (server.Start("127.0.0.1:0", &options) != 0) {
        std::perror("Start");
        return 1;
    }
    const int port = server.listen_address().port;

    // baidu_std on the same port as the pages, from a connection that stays.
    brpc::Channel channel;
    brpc::ChannelOptions channel_options;
    if (channel.Init("127.0.0.1", port, &channel_options) != 0) {
        std::perror("Channel::Init");
        return 1;
    }
    test::EchoService_Stub stub(&channel);
    brpc::Controller cntl;
    test::EchoRequest request;
    test::EchoResponse response;
    request.set_message("hello");
    stub.Echo(&cntl, &request, &response, NULL);
    if (cntl.Failed() || response.message() != "hello") {
        std::fprintf(stderr, "Echo failed: %s\n", cntl.ErrorText().c_str());
        return 1;
    }

    std::printf("port %d\n", port);
    std::fflush(stdout);
    struct pollfd in = {STDIN_FILENO, POLLIN, 0};
    char byte;
    while (poll(&in, 1, 120 * 1000) > 0 && read(STDIN_FILENO, &byte, 1) > 0) {
    }
    server.Stop();
    server.Join();
    return 0;
}
