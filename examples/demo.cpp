// The demo: a loopback echo written against the brpc facade.
//
// A client brpc::Socket connects to 127.0.0.1 on its first write and sends
// numbered messages; the server wraps each accepted fd in a brpc::Socket
// whose input is written straight back. The client checks every echoed byte
// and prints what happened and how fast.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "brpc/socket.h"

namespace {

int Listen(int* port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (sockaddr*)&addr, sizeof(addr)) != 0 || listen(fd, 16) != 0) {
        return -1;
    }
    socklen_t len = sizeof(addr);
    getsockname(fd, (sockaddr*)&addr, &len);
    *port = ntohs(addr.sin_port);
    return fd;
}

std::string MessageNumber(int i) {
    char buf[64];
    snprintf(buf, sizeof(buf), "message %06d: hello over loopback\n", i);
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    const int kMessages = argc > 1 ? atoi(argv[1]) : 100000;
    int port = 0;
    const int listen_fd = Listen(&port);
    if (listen_fd < 0) {
        perror("listen");
        return 1;
    }
    printf("server listening on 127.0.0.1:%d\n", port);

    // Server: echo every byte back on the same socket.
    std::thread acceptor([&] {
        const int fd = accept(listen_fd, NULL, NULL);
        brpc::SocketOptions options;
        options.fd = fd;
        options.on_input = [](brpc::SocketId id, butil::IOBuf* data) {
            brpc::SocketUniquePtr self;
            if (brpc::Socket::Address(id, &self) == 0) {
                self->Write(data);
            }
        };
        brpc::SocketId id;
        if (brpc::Socket::Create(options, &id) == 0) {
            brpc::SocketUniquePtr s;
            if (brpc::Socket::Address(id, &s) == 0) {
                printf("server accepted %s\n", s->description().c_str());
            }
        }
    });

    // Client: everything it gets back must be what it sent.
    std::string expected;
    for (int i = 0; i < kMessages; ++i) {
        expected += MessageNumber(i);
    }
    std::mutex mu;
    std::string echoed;
    std::atomic<size_t> echoed_bytes{0};
    std::atomic<int> failed_code{0};
    brpc::SocketOptions options;
    butil::str2endpoint("127.0.0.1", port, &options.remote_side);
    options.connect_timeout_ms = 1000;
    options.on_input = [&](brpc::SocketId, butil::IOBuf* data) {
        std::lock_guard<std::mutex> g(mu);
        echoed += data->to_string();
        echoed_bytes = echoed.size();
    };
    options.on_failed = [&](brpc::SocketId, int code, const std::string& text) {
        failed_code = code;
        fprintf(stderr, "client failed: %d %s\n", code, text.c_str());
    };
    brpc::SocketId client_id;
    if (brpc::Socket::Create(options, &client_id) != 0) {
        perror("create");
        return 1;
    }
    brpc::SocketUniquePtr client;
    brpc::Socket::Address(client_id, &client);

    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kMessages; ++i) {
        butil::IOBuf msg;
        msg.append(MessageNumber(i));
        if (client->Write(&msg) != 0) {
            fprintf(stderr, "write %d failed: %s\n", i, berror(errno));
            return 1;
        }
    }
    printf("client %s wrote %d messages (%zu bytes)\n", client->description().c_str(), kMessages,
           expected.size());
    const auto deadline = start + std::chrono::seconds(30);
    while (echoed_bytes.load() < expected.size() && failed_code.load() == 0 &&
           std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    acceptor.join();

    bool intact;
    {
        std::lock_guard<std::mutex> g(mu);
        intact = echoed == expected;
    }
    printf("client received %zu bytes back in %.3f s: %.0f messages/s, %.1f MB/s, %s\n",
           echoed_bytes.load(), seconds, kMessages / seconds, expected.size() / seconds / 1e6,
           intact ? "every byte intact" : "MISMATCH");
    client->SetFailed();
    client.reset();
    close(listen_fd);
    return intact ? 0 : 1;
}
