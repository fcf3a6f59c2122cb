// brpc's -event_dispatcher_num through the facade: brpc::SetEventDispatcherNum
// before the first server or channel starts that many I/O threads; a late
// or out-of-range call fails (EPERM, EINVAL) and changes nothing. Each test
// is its own process under ctest (gtest_discover_tests); run as one
// process, the second only calls what starts nothing.

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "brpc/channel.h"
#include "brpc/controller.h"
#include "brpc/event_dispatcher.h"
#include "brpc/server.h"
#include "echo.pb.h"
#include "wait_for.h"

namespace {

class EchoImpl : public test::EchoService {
public:
    void Echo(google::protobuf::RpcController*, const test::EchoRequest* request,
              test::EchoResponse* response, google::protobuf::Closure* done) override {
        brpc::ClosureGuard guard(done);
        response->set_message(request->message());
    }
};

// Threads of this process named as the library's event loops.
int DispatcherThreads() {
    int count = 0;
    DIR* tasks = opendir("/proc/self/task");
    if (tasks == NULL) {
        return -1;
    }
    while (struct dirent* task = readdir(tasks)) {
        std::ifstream comm(std::string("/proc/self/task/") + task->d_name + "/comm");
        std::string name;
        if (std::getline(comm, name) && name == "brpc_dispatcher") {
            ++count;
        }
    }
    closedir(tasks);
    return count;
}

int ConnectTo(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

TEST(EventDispatcherNum, SetBeforeTheFirstServerStartsThatManyIoThreadsAndALateSetIsRefused) {
    ASSERT_EQ(0, DispatcherThreads()) << "nothing started the I/O threads yet";
    ASSERT_EQ(0, brpc::SetEventDispatcherNum(3));
    EXPECT_EQ(3, brpc::EventDispatcherNum());

    EchoImpl service;
    brpc::Server server;
    ASSERT_EQ(0, server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE));
    ASSERT_EQ(0, server.Start("127.0.0.1:0", NULL));
    const int port = server.listen_address().port;
    // A thread names itself once it runs.
    EXPECT_TRUE(test_support::WaitFor([] { return DispatcherThreads() == 3; }))
        << DispatcherThreads() << " I/O threads";
    EXPECT_EQ(3, brpc::EventDispatcherNum());

    // Connections on every loop, and calls answered.
    std::vector<int> peers;
    for (int i = 0; i < 6; ++i) {
        peers.push_back(ConnectTo(port));
        ASSERT_GE(peers.back(), 0);
    }
    brpc::ChannelOptions options;
    options.timeout_ms = 5000;
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init("127.0.0.1", port, &options));
    test::EchoService_Stub stub(&channel);
    for (int i = 0; i < 3; ++i) {
        brpc::Controller cntl;
        test::EchoRequest request;
        test::EchoResponse response;
        request.set_message("ping");
        stub.Echo(&cntl, &request, &response, NULL);
        ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
        EXPECT_EQ("ping", response.message());
    }

    // Too late: the loops run with connections on them.
    EXPECT_EQ(EPERM, brpc::SetEventDispatcherNum(2));
    EXPECT_EQ(3, brpc::EventDispatcherNum());
    EXPECT_EQ(3, DispatcherThreads());
    for (size_t i = 0; i < peers.size(); ++i) {
        close(peers[i]);
    }
    server.Stop(0);
    server.Join();
}

TEST(EventDispatcherNum, OutOfRangeIsRefusedAndChangesNothing) {
    const int before = brpc::EventDispatcherNum();
    EXPECT_GE(before, 1);
    EXPECT_EQ(EINVAL, brpc::SetEventDispatcherNum(0));
    EXPECT_EQ(EINVAL, brpc::SetEventDispatcherNum(-1));
    EXPECT_EQ(EINVAL, brpc::SetEventDispatcherNum(65));
    EXPECT_EQ(before, brpc::EventDispatcherNum());
    // The C ABI underneath, the same.
    EXPECT_EQ(EINVAL, brpc_set_event_dispatcher_num(1000));
    EXPECT_EQ(before, brpc_event_dispatcher_num());
}

}  // namespace
