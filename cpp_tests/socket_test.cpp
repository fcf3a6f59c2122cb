// brpc::Socket through the facade: connect, write, read, fail, recycle.
// Every test runs real loopback TCP and checks, at its end, that the
// process's fds and the socket registry are back where they started.

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "brpc/socket.h"
#include "wait_for.h"

namespace {

using Clock = std::chrono::steady_clock;

int CountOpenFds() {
    int n = 0;
    DIR* dir = opendir("/proc/self/fd");
    if (dir == NULL) {
        return -1;
    }
    while (readdir(dir) != NULL) {
        ++n;
    }
    closedir(dir);
    return n - 3;  // ".", ".." and the DIR's own fd
}

using test_support::WaitFor;

// A listening socket on 127.0.0.1 with a free port.
struct Listener {
    int fd = -1;
    int port = 0;
    explicit Listener(int backlog = 128) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        bind(fd, (sockaddr*)&addr, sizeof(addr));
        listen(fd, backlog);
        socklen_t len = sizeof(addr);
        getsockname(fd, (sockaddr*)&addr, &len);
        port = ntohs(addr.sin_port);
    }
    int Accept() { return accept(fd, NULL, NULL); }
    ~Listener() { close(fd); }
};

// A port on 127.0.0.1 nothing listens on.
int ClosedPort() {
    Listener l;
    return l.port;  // closed when `l` goes
}

butil::EndPoint Loopback(int port) {
    butil::EndPoint ep;
    butil::str2endpoint("127.0.0.1", port, &ep);
    return ep;
}

// Write completions, by error code.
struct Completions {
    std::mutex mu;
    std::vector<int> codes;
    static void OnDone(void* arg, int code) {
        Completions* c = static_cast<Completions*>(arg);
        std::lock_guard<std::mutex> g(c->mu);
        c->codes.push_back(code);
    }
    size_t size() {
        std::lock_guard<std::mutex> g(mu);
        return codes.size();
    }
    std::vector<int> snapshot() {
        std::lock_guard<std::mutex> g(mu);
        return codes;
    }
    brpc::Socket::WriteOptions options() {
        brpc::Socket::WriteOptions o;
        o.on_done = &Completions::OnDone;
        o.done_arg = this;
        return o;
    }
};

// An owner-provided connection that connects only when the test says so,
// as a stream's socket waits for its setup call.
struct PendingConnection : public brpc::SocketConnection {
    std::atomic<int> connect_calls{0};
    std::atomic<int> recycled{0};
    int (*on_connect)(int, int, void*) = NULL;
    void* data = NULL;
    int Connect(brpc::SocketId, const timespec*, int (*cb)(int, int, void*), void* d) override {
        ++connect_calls;
        on_connect = cb;
        data = d;
        return 0;
    }
    ssize_t Write(brpc::SocketId, int, const struct iovec*, int) override {
        errno = EPIPE;
        return -1;
    }
    void BeforeRecycle() override { ++recycled; }
};


class SocketTest : public ::testing::Test {
protected:
    void SetUp() override {
        WarmUpRuntime();
        fds_before_ = CountOpenFds();
        live_before_ = brpc::Socket::LiveCount();
    }
    void TearDown() override {
        EXPECT_TRUE(WaitFor([&] { return brpc::Socket::LiveCount() == live_before_; }))
            << "sockets alive: " << brpc::Socket::LiveCount() << " (was " << live_before_ << ")";
        EXPECT_TRUE(WaitFor([&] { return brpc_socket_pending_connects() == 0; }));
        EXPECT_TRUE(WaitFor([&] { return CountOpenFds() == fds_before_; }))
            << "open fds: " << CountOpenFds() << " (was " << fds_before_ << ")";
    }
    // Starts the dispatcher (its epoll fd) before fds are counted.
    static void WarmUpRuntime() {
        int pair[2];
        ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
        brpc::SocketOptions options;
        options.fd = pair[0];
        brpc::SocketId id;
        ASSERT_EQ(0, brpc::Socket::Create(options, &id));
        brpc::Socket::SetFailed(id);
        close(pair[1]);
        WaitFor([&] { return brpc::Socket::Status(id) < 0; });
    }
    int fds_before_ = 0;
    size_t live_before_ = 0;
};

// ---- the seed: a pending connection resolved with fd = -1 ----

void ExpectPendingWritesFailWhenConnectionResolvesWith(int err, int expected_code) {
    PendingConnection conn;
    brpc::SocketOptions options;
    options.conn = &conn;
    brpc::SocketId id;
    ASSERT_EQ(0, brpc::Socket::Create(options, &id));
    brpc::SocketUniquePtr s;
    ASSERT_EQ(0, brpc::Socket::Address(id, &s));
    int32_t nref_before_connect = 0;
    ASSERT_EQ(0, brpc::Socket::Status(id, &nref_before_connect));

    Completions done;
    brpc::Socket::WriteOptions wopt = done.options();
    for (int i = 0; i < 3; ++i) {
        butil::IOBuf msg;
        msg.append("queued before the connection");
        ASSERT_EQ(0, s->Write(&msg, &wopt));
    }
    ASSERT_EQ(1, conn.connect_calls.load());
    int32_t nref_connecting = 0;
    brpc::Socket::Status(id, &nref_connecting);
    EXPECT_EQ(nref_before_connect + 1, nref_connecting) << "the attempt holds one reference";
    EXPECT_EQ(0u, done.size()) << "nothing completes while the connection is pending";

    testing::internal::CaptureStderr();
    EXPECT_EQ(0, conn.on_connect(-1, err, conn.data));
    const std::string log = testing::internal::GetCapturedStderr();

    ASSERT_TRUE(WaitFor([&] { return done.size() == 3; }));
    for (int code : done.snapshot()) {
        EXPECT_EQ(expected_code, code);
    }
    EXPECT_TRUE(s->Failed());
    EXPECT_EQ(expected_code, s->error_code());
    EXPECT_FALSE(s->error_text().empty());
    EXPECT_EQ(std::string::npos, log.find("Check failed"));
    EXPECT_LE(std::count(log.begin(), log.end(), '\n'), 1) << log;

    int32_t nref_after = 0;
    EXPECT_EQ(1, brpc::Socket::Status(id, &nref_after));
    // The attempt's reference and the creator's (released by the failure)
    // are gone: only ours is left.
    EXPECT_EQ(1, nref_after);
    EXPECT_EQ(-1, brpc::Socket::Address(id, NULL));

    // A second resolution of the same attempt is refused, not a crash.
    EXPECT_EQ(EINVAL, conn.on_connect(-1, err, conn.data));

    s.reset();
    // Recycled once its failure callback has run.
    EXPECT_TRUE(WaitFor([&] { return brpc::Socket::Status(id) == -1; }));
    EXPECT_EQ(-1, brpc::Socket::AddressFailedAsWell(id, NULL));
    EXPECT_TRUE(WaitFor([&] { return conn.recycled.load() == 1; }));
}

TEST_F(SocketTest, PendingWritesFailWithTheConnectErrorWhenTheConnectionResolvesToMinusOne) {
    ExpectPendingWritesFailWhenConnectionResolvesWith(ECONNRESET, ECONNRESET);
}

TEST_F(SocketTest, PendingWritesFailWithEconnresetWhenMinusOneComesWithoutAnError) {
    ExpectPendingWritesFailWhenConnectionResolvesWith(0, ECONNRESET);
}

TEST_F(SocketTest, ClosingASocketWhileItConnectsFailsItsQueuedWritesOnce) {
    PendingConnection conn;
    brpc::SocketOptions options;
    options.conn = &conn;
    brpc::SocketId id;
    ASSERT_EQ(0, brpc::Socket::Create(options, &id));
    brpc::SocketUniquePtr s;
    ASSERT_EQ(0, brpc::Socket::Address(id, &s));
    Completions done;
    brpc::Socket::WriteOptions wopt = done.options();
    butil::IOBuf msg;
    msg.append("early");
    ASSERT_EQ(0, s->Write(&msg, &wopt));

    ASSERT_EQ(0, s->SetFailed(ECONNRESET, "closed by the test while connecting"));
    ASSERT_TRUE(WaitFor([&] { return done.size() == 1; }));
    EXPECT_EQ(ECONNRESET, done.snapshot()[0]);
    // The owner's late result finds the attempt resolved already.
    EXPECT_EQ(EINVAL, conn.on_connect(-1, ECONNRESET, conn.data));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(1u, done.size());
    butil::IOBuf late;
    late.append("late");
    EXPECT_EQ(-1, s->Write(&late, &wopt));
    EXPECT_EQ(brpc::EFAILEDSOCKET, errno);
    // A refused write keeps nothing it was given: its on_done never runs.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(1u, done.size());
}

// ---- TCP connect ----

struct ConnectResult {
    std::atomic<int> calls{0};
    std::atomic<int> fd{-2};
    std::atomic<int> err{-2};
    static int OnConnect(int fd, int err, void* arg) {
        ConnectResult* r = static_cast<ConnectResult*>(arg);
        r->fd = fd;
        r->err = err;
        ++r->calls;
        if (fd >= 0) {
            close(fd);
        }
        return 0;
    }
};

TEST_F(SocketTest, ConnectToAClosedPortReportsEconnrefusedOnce) {
    brpc::SocketOptions options;
    options.remote_side = Loopback(ClosedPort());
    brpc::SocketId id;
    ASSERT_EQ(0, brpc::Socket::Create(options, &id));
    brpc::SocketUniquePtr s;
    ASSERT_EQ(0, brpc::Socket::Address(id, &s));
    ConnectResult result;
    ASSERT_EQ(0, s->Connect(NULL, &ConnectResult::OnConnect, &result));
    ASSERT_TRUE(WaitFor([&] { return result.calls.load() > 0; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(1, result.calls.load());
    EXPECT_EQ(-1, result.fd.load());
    EXPECT_EQ(ECONNREFUSED, result.err.load());
    s->SetFailed();
}

TEST_F(SocketTest, WritingToAClosedPortFailsTheWriteAndTheSocketWithEconnrefused) {
    brpc::SocketOptions options;
    options.remote_side = Loopback(ClosedPort());
    brpc::SocketId id;
    ASSERT_EQ(0, brpc::Socket::Create(options, &id));
    brpc::SocketUniquePtr s;
    ASSERT_EQ(0, brpc::Socket::Address(id, &s));
    Completions done;
    brpc::Socket::WriteOptions wopt = done.options();
    butil::IOBuf msg;
    msg.append("nobody listens");
    ASSERT_EQ(0, s->Write(&msg, &wopt));
    ASSERT_TRUE(WaitFor([&] { return done.size() == 1; }));
    EXPECT_EQ(ECONNREFUSED, done.snapshot()[0]);
    EXPECT_TRUE(s->Failed());
    EXPECT_EQ(ECONNREFUSED, s->error_code());
}

TEST_F(SocketTest, ConnectTimesOutOnceAndClosesItsFd) {
    // A listener with a full accept queue drops further SYNs, so a connect
    // to it stays pending until our timeout.
    Listener full(0);
    std::vector<int> fillers;
    for (int i = 0; i < 8; ++i) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_port = htons(full.port);
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        connect(fd, (sockaddr*)&addr, sizeof(addr));
        fillers.push_back(fd);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const int fds_before_connect = CountOpenFds();

    brpc::SocketOptions options;
    options.remote_side = Loopback(full.port);
    brpc::SocketId id;
    ASSERT_EQ(0, brpc::Socket::Create(options, &id));
    brpc::SocketUniquePtr s;
    ASSERT_EQ(0, brpc::Socket::Address(id, &s));
    ConnectResult result;
    timespec abstime;
    clock_gettime(CLOCK_REALTIME, &abstime);
    abstime.tv_nsec += 200 * 1000000L;
    if (abstime.tv_nsec >= 1000000000L) {
        abstime.tv_sec += 1;
        abstime.tv_nsec -= 1000000000L;
    }
    const auto start = Clock::now();
    ASSERT_EQ(0, s->Connect(&abstime, &ConnectResult::OnConnect, &result));
    ASSERT_TRUE(WaitFor([&] { return result.calls.load() > 0; }, 5));
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(1, result.calls.load());
    EXPECT_EQ(ETIMEDOUT, result.err.load());
    EXPECT_EQ(-1, result.fd.load());
    EXPECT_GE(elapsed, 150);
    EXPECT_EQ(fds_before_connect, CountOpenFds()) << "the connecting fd is closed";
    s->SetFailed();
    s.reset();
    for (int fd : fillers) {
        close(fd);
    }
}

// ---- writing and reading over loopback TCP ----

// Collects what a server-side socket reads.
struct Sink {
    std::mutex mu;
    std::string data;
    std::atomic<size_t> size{0};
    std::atomic<int> failed_code{0};
    void Attach(brpc::SocketOptions* options) {
        options->on_input = [this](brpc::SocketId, butil::IOBuf* buf) {
            std::lock_guard<std::mutex> g(mu);
            data.append(buf->to_string());
            size = data.size();
        };
        options->on_failed = [this](brpc::SocketId, int code, const std::string&) { failed_code = code; };
    }
};

// A connected client socket (connects on first write) and the server-side
// socket wrapping the accepted fd.
struct Pair {
    Listener listener;
    Sink sink;
    brpc::SocketUniquePtr client;
    brpc::SocketUniquePtr server;
    Pair() {
        brpc::SocketOptions copt;
        copt.remote_side = Loopback(listener.port);
        copt.connect_timeout_ms = 2000;
        brpc::SocketId cid;
        EXPECT_EQ(0, brpc::Socket::Create(copt, &cid));
        EXPECT_EQ(0, brpc::Socket::Address(cid, &client));
    }
    // Accepts the client's connection (after its first write started it).
    void AcceptServer() {
        brpc::SocketOptions sopt;
        sopt.fd = listener.Accept();
        sink.Attach(&sopt);
        brpc::SocketId sid;
        EXPECT_EQ(0, brpc::Socket::Create(sopt, &sid));
        EXPECT_EQ(0, brpc::Socket::Address(sid, &server));
    }
    // The sink is on this object: wait until both sockets are recycled, so
    // no input callback can still reach it.
    ~Pair() {
        std::vector<brpc::SocketId> ids;
        for (brpc::SocketUniquePtr* s : {&client, &server}) {
            if (*s) {
                ids.push_back((*s)->id());
                (*s)->SetFailed();
                s->reset();
            }
        }
        for (brpc::SocketId id : ids) {
            EXPECT_TRUE(WaitFor([&] { return brpc::Socket::Status(id) < 0; }));
        }
    }
};

TEST_F(SocketTest, SixtyFourMegabytesArriveIntactThroughManyEpolloutRounds) {
    Pair pair;
    const size_t kSize = 64u << 20;
    std::string payload(kSize, '\0');
    for (size_t i = 0; i < kSize; ++i) {
        payload[i] = (char)((i * 131 + (i >> 12)) & 0xff);
    }
    Completions done;
    brpc::Socket::WriteOptions wopt = done.options();
    butil::IOBuf msg;
    msg.append(payload);
    ASSERT_EQ(0, pair.client->Write(&msg, &wopt));
    EXPECT_TRUE(msg.empty());
    pair.AcceptServer();
    ASSERT_TRUE(WaitFor([&] { return pair.sink.size.load() == kSize; }, 60))
        << "received " << pair.sink.size.load();
    ASSERT_TRUE(WaitFor([&] { return done.size() == 1; }));
    EXPECT_EQ(0, done.snapshot()[0]);
    std::lock_guard<std::mutex> g(pair.sink.mu);
    EXPECT_TRUE(pair.sink.data == payload);
}

TEST_F(SocketTest, EightInterleavedWritersLoseNothingAndKeepTheirOwnOrder) {
    Pair pair;
    const int kThreads = 8;
    const int kPerThread = 5000;
    // Prime the connection so writers race on a connected socket.
    butil::IOBuf hello;
    hello.append("H");
    ASSERT_EQ(0, pair.client->Write(&hello));
    pair.AcceptServer();
    std::vector<std::thread> writers;
    for (int t = 0; t < kThreads; ++t) {
        writers.emplace_back([&, t] {
            for (int i = 0; i < kPerThread; ++i) {
                char rec[16];
                snprintf(rec, sizeof(rec), "%d:%06d;", t, i);
                butil::IOBuf m;
                m.append(rec);
                EXPECT_EQ(0, pair.client->Write(&m));
            }
        });
    }
    for (auto& w : writers) w.join();
    const size_t expected = 1 + (size_t)kThreads * kPerThread * 9;
    ASSERT_TRUE(WaitFor([&] { return pair.sink.size.load() == expected; }, 30))
        << pair.sink.size.load() << " of " << expected;
    std::lock_guard<std::mutex> g(pair.sink.mu);
    ASSERT_EQ('H', pair.sink.data[0]);
    std::vector<int> next(kThreads, 0);
    for (size_t pos = 1; pos + 9 <= pair.sink.data.size(); pos += 9) {
        const int t = pair.sink.data[pos] - '0';
        const int seq = atoi(pair.sink.data.substr(pos + 2, 6).c_str());
        ASSERT_TRUE(t >= 0 && t < kThreads);
        ASSERT_EQ(next[t], seq) << "writer " << t << " out of order";
        ++next[t];
    }
    for (int t = 0; t < kThreads; ++t) {
        EXPECT_EQ(kPerThread, next[t]);
    }
}

TEST_F(SocketTest, TheServerSideSeesEofAsEeofWhenTheClientFails) {
    Pair pair;
    butil::IOBuf hello;
    hello.append("bye");
    ASSERT_EQ(0, pair.client->Write(&hello));
    pair.AcceptServer();
    ASSERT_TRUE(WaitFor([&] { return pair.sink.size.load() == 3; }));
    pair.client->SetFailed();
    ASSERT_TRUE(WaitFor([&] { return pair.sink.failed_code.load() != 0; }));
    EXPECT_EQ(brpc::EEOF, pair.sink.failed_code.load());
    EXPECT_TRUE(pair.server->Failed());
}

// ---- failing and recycling ----

TEST_F(SocketTest, ConcurrentSetFailedHasExactlyOneWinnerAndRecyclesOnce) {
    for (int round = 0; round < 20; ++round) {
        PendingConnection* conn = new PendingConnection;
        brpc::SocketOptions options;
        options.conn = conn;
        brpc::SocketId id;
        ASSERT_EQ(0, brpc::Socket::Create(options, &id));
        std::atomic<int> winners{0};
        std::atomic<bool> go{false};
        std::vector<std::thread> threads;
        for (int t = 0; t < 8; ++t) {
            threads.emplace_back([&] {
                while (!go.load()) {
                }
                if (brpc::Socket::SetFailed(id) == 0) {
                    ++winners;
                }
            });
        }
        go = true;
        for (auto& t : threads) t.join();
        EXPECT_EQ(1, winners.load());
        EXPECT_EQ(-1, brpc::Socket::Address(id, NULL));
        EXPECT_TRUE(WaitFor([&] { return brpc::Socket::Status(id) == -1; }));
        EXPECT_TRUE(WaitFor([&] { return conn->recycled.load() == 1; }));
        delete conn;
    }
}

TEST_F(SocketTest, AFailedSocketIsReachableOnlyThroughAddressFailedAsWell) {
    int pair[2];
    ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM, 0, pair));
    brpc::SocketOptions options;
    options.fd = pair[0];
    brpc::SocketId id;
    ASSERT_EQ(0, brpc::Socket::Create(options, &id));
    brpc::SocketUniquePtr held;
    ASSERT_EQ(0, brpc::Socket::Address(id, &held));
    EXPECT_EQ(pair[0], held->fd());
    EXPECT_NE(std::string::npos, held->description().find("fd="));
    ASSERT_EQ(0, brpc::Socket::SetFailed(id));
    EXPECT_EQ(-1, brpc::Socket::SetFailed(id));
    EXPECT_EQ(-1, brpc::Socket::Address(id, NULL));
    brpc::SocketUniquePtr again;
    EXPECT_EQ(1, brpc::Socket::AddressFailedAsWell(id, &again));
    ASSERT_TRUE(again != NULL);
    EXPECT_EQ(id, again->id());
    again.reset();
    held.reset();
    EXPECT_TRUE(WaitFor([&] { return brpc::Socket::AddressFailedAsWell(id, NULL) == -1; }));
    close(pair[1]);
}

TEST_F(SocketTest, AStaleIdNeverReachesTheNextSocketInItsSlot) {
    brpc::SocketOptions options;
    options.remote_side = Loopback(ClosedPort());
    brpc::SocketId first;
    ASSERT_EQ(0, brpc::Socket::Create(options, &first));
    ASSERT_EQ(0, brpc::Socket::SetFailed(first));
    brpc::SocketId second;
    ASSERT_EQ(0, brpc::Socket::Create(options, &second));
    EXPECT_NE(first, second);
    EXPECT_EQ(-1, brpc::Socket::Address(first, NULL));
    EXPECT_EQ(0, brpc::Socket::Address(second, NULL));
    brpc::Socket::SetFailed(second);
}

}  // namespace
