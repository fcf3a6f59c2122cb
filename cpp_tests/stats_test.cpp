// brpc::GetStreamStats through the facade: the counters move with real
// loopback traffic and the gauges come back when everything is closed.

#include <arpa/inet.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "brpc/channel.h"
#include "brpc/server.h"
#include "brpc/stream_stats.h"
#include "echo.pb.h"
#include "wait_for.h"

namespace {

class EchoImpl : public test::EchoService {
public:
    void Echo(google::protobuf::RpcController*, const test::EchoRequest* request, test::EchoResponse* response,
              google::protobuf::Closure* done) override {
        brpc::ClosureGuard done_guard(done);
        response->set_message(request->message());
    }
};

// Waits up to 10 s for the socket gauge to come back to `sockets`.
bool SocketsBackTo(uint64_t sockets) {
    return test_support::WaitFor([&] { return brpc::GetStreamStats().sockets_alive == sockets; });
}

TEST(StreamStatsTest, CountsAConnectionItsBytesAndItsEnd) {
    const brpc::StreamStats before = brpc::GetStreamStats();
    EchoImpl service;
    brpc::Server server;
    ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    ASSERT_EQ(0, server.Start("127.0.0.1:0", NULL));
    const std::string message(1000, 'x');
    {
        brpc::Channel channel;
        ASSERT_EQ(0, channel.Init(butil::endpoint2str(server.listen_address()).c_str(), NULL));
        test::EchoService_Stub stub(&channel);
        brpc::Controller cntl;
        test::EchoRequest request;
        request.set_message(message);
        test::EchoResponse response;
        stub.Echo(&cntl, &request, &response, NULL);
        ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
        const brpc::StreamStats during = brpc::GetStreamStats();
        EXPECT_EQ(before.connections_accepted + 1, during.connections_accepted);
        EXPECT_EQ(before.connections_connected + 1, during.connections_connected);
        EXPECT_EQ(before.sockets_alive + 2, during.sockets_alive);
        // The request went out and came in once, the response likewise. The
        // server counts its bytes written after sendmsg returns, which may be
        // after the client read them: wait for the count, do not race it.
        EXPECT_TRUE(test_support::WaitFor([&] {
            return brpc::GetStreamStats().socket_bytes_written - before.socket_bytes_written >= 2 * message.size();
        }));
        EXPECT_GE(brpc::GetStreamStats().socket_bytes_read - before.socket_bytes_read, 2 * message.size());
    }
    server.Stop(0);
    server.Join();
    EXPECT_TRUE(SocketsBackTo(before.sockets_alive));
    const brpc::StreamStats after = brpc::GetStreamStats();
    EXPECT_EQ(before.connect_failures, after.connect_failures);
    EXPECT_EQ(before.connections_broken, after.connections_broken);
}

TEST(StreamStatsTest, CountsAFailedConnect) {
    const brpc::StreamStats before = brpc::GetStreamStats();
    // A port nothing listens on: bound, never listening.
    const int fd = butil::tcp_listen(butil::EndPoint(butil::int2ip(htonl(INADDR_LOOPBACK)), 0));
    butil::EndPoint bound;
    butil::get_local_side(fd, &bound);
    close(fd);
    {
        brpc::Channel channel;
        ASSERT_EQ(0, channel.Init(butil::endpoint2str(bound).c_str(), NULL));
        test::EchoService_Stub stub(&channel);
        brpc::Controller cntl;
        cntl.set_max_retry(0);
        test::EchoRequest request;
        test::EchoResponse response;
        stub.Echo(&cntl, &request, &response, NULL);
        ASSERT_TRUE(cntl.Failed());
    }
    EXPECT_EQ(before.connect_failures + 1, brpc::GetStreamStats().connect_failures);
    EXPECT_TRUE(SocketsBackTo(before.sockets_alive));
}

}  // namespace
