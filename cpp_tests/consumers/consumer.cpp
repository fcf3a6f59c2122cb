// A program that uses brpc_stream as a package: built by each consumer
// project here (CMake add_subdirectory, FetchContent, find_package, and a
// Makefile with pkg-config), linked statically and dynamically, and run by
// run.sh. It starts a server on an ephemeral port, stops it, and prints
// "consumer ok" when the library answered as expected.

#include <cstdio>
#include <string>

#include <brpc/server.h>
#include <brpc/stream_stats.h>
#include <butil/iobuf.h>

int main() {
    butil::IOBuf buf;
    buf.append("package");
    if (buf.to_string() != "package") {
        std::fprintf(stderr, "IOBuf holds '%s'\n", buf.to_string().c_str());
        return 1;
    }
    brpc::Server server;
    brpc::ServerOptions options;
    if (server.Start("127.0.0.1:0", &options) != 0) {
        std::perror("Server::Start");
        return 1;
    }
    const int port = server.listen_address().port;
    const uint64_t sockets = brpc::GetStreamStats().sockets_alive;
    server.Stop();
    server.Join();
    if (port <= 0) {
        std::fprintf(stderr, "the server listens on port %d\n", port);
        return 1;
    }
    std::printf("consumer ok: served on port %d, %llu sockets alive\n", port,
                static_cast<unsigned long long>(sockets));
    return 0;
}
