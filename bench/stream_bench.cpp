// The stream benchmark: what a brpc program gets from the facade, as a
// ratio to the loopback TCP ceiling measured in the same run.
//
//   stream_bench [--runs N] [--seconds S] [--only NAME[,NAME...]] [--list]
//
// Every scenario runs N times (default 5); the table reports the median and
// the min-max of the absolute figure and of its ratio, each run's ratio
// taken against that run's ceiling. Progress goes to stderr, the markdown
// table to stdout. A scenario that fails prints FAILED with the reason and
// the others go on; a watchdog ends the program (exit 2) should any
// scenario outlive its deadline, so it never hangs.
//
// Scenarios (--list prints them):
//   raw_1m, raw_4k, raw_64   plain blocking writer and reader threads on a
//                            loopback TCP connection: the ceilings
//   stream_64/4k/1m          one stream, one writer thread, default options
//   bg_64/4k/1m              the same with write_in_background
//   streams8_4k              8 streams on one connection, 8 writer threads
//   churn                    8 loops of StreamCreate + call + StreamClose
//   memory                   resident bytes per idle connected stream at
//                            10 000 streams, client and server measured
//                            in separate processes
// Throughput is measured at the receiver (the server's handler counts),
// over `seconds` after a warm-up.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "brpc/channel.h"
#include "brpc/server.h"
#include "brpc/stream.h"
#include "bench_common.h"
#include "stream_bench.pb.h"

extern char** environ;

namespace {

using bench::BenchServiceImpl;
using bench::RealtimeIn;

using Clock = std::chrono::steady_clock;

const double kWarmupSeconds = 0.3;
// How long a scenario may take beyond its measuring window.
const double kScenarioSlackSeconds = 60;
// Bound of every teardown wait (streams closing, threads ending).
const double kTeardownSeconds = 10;
const int kChurnLoops = 8;
const int kMultiStreams = 8;
const int kMemoryCalls = 100;
const int kMemoryStreamsPerCall = 100;

double SecondsSince(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

void SleepSeconds(double seconds) {
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
}

template <typename Pred>
bool WaitUntil(Pred done, double seconds) {
    const Clock::time_point start = Clock::now();
    while (!done()) {
        if (SecondsSince(start) > seconds) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

std::string ErrnoText(int code) { return std::string(strerror(code)) + " (" + std::to_string(code) + ")"; }

// VmRSS of a process in KiB, or -1.
long ResidentKiB(pid_t pid) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line)) {
        if (line.compare(0, 6, "VmRSS:") == 0) {
            return atol(line.c_str() + 6);
        }
    }
    return -1;
}

std::string LoadAverage() {
    std::ifstream loadavg("/proc/loadavg");
    double one = 0, five = 0, fifteen = 0;
    loadavg >> one >> five >> fifteen;
    char text[64];
    snprintf(text, sizeof(text), "%.2f %.2f %.2f", one, five, fifteen);
    return text;
}

// One scenario's figure, or why there is none.
struct Measurement {
    bool ok;
    double value;
    std::string error;
};

Measurement Value(double value) { return Measurement{true, value, ""}; }
Measurement Failure(const std::string& error) { return Measurement{false, 0, error}; }

// Ends the program if a scenario outlives its deadline: a hang in the
// library must not hang the benchmark.
class Watchdog {
public:
    Watchdog() : thread_([this] { Run(); }) {}
    ~Watchdog() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            quit_ = true;
        }
        cv_.notify_one();
        thread_.join();
    }
    void Arm(const std::string& what, double seconds) {
        std::lock_guard<std::mutex> lock(mu_);
        what_ = what;
        budget_ = seconds;
        deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
        armed_ = true;
    }
    void Disarm() {
        std::lock_guard<std::mutex> lock(mu_);
        armed_ = false;
    }

private:
    void Run() {
        std::unique_lock<std::mutex> lock(mu_);
        while (!quit_) {
            cv_.wait_for(lock, std::chrono::milliseconds(200));
            if (armed_ && Clock::now() > deadline_) {
                fprintf(stderr, "FAILED: %s did not finish within %.0f s; exiting\n", what_.c_str(), budget_);
                fflush(stderr);
                fflush(stdout);
                _exit(2);
            }
        }
    }

    std::mutex mu_;
    std::condition_variable cv_;
    bool quit_ = false;
    bool armed_ = false;
    std::string what_;
    double budget_ = 0;
    Clock::time_point deadline_;
    std::thread thread_;
};

// ---- raw loopback TCP: the ceiling ----------------------------------------

// A connected loopback TCP pair (default socket options), or an error.
std::string LoopbackPair(int* writer_fd, int* reader_fd) {
    *writer_fd = *reader_fd = -1;
    const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) {
        return "socket: " + ErrnoText(errno);
    }
    sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    std::string error;
    if (bind(listener, (sockaddr*)&addr, sizeof(addr)) != 0 || listen(listener, 1) != 0 ||
        getsockname(listener, (sockaddr*)&addr, &len) != 0) {
        error = "bind/listen: " + ErrnoText(errno);
    } else {
        *writer_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (*writer_fd < 0 || connect(*writer_fd, (sockaddr*)&addr, sizeof(addr)) != 0) {
            error = "connect: " + ErrnoText(errno);
        } else {
            *reader_fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
            if (*reader_fd < 0) {
                error = "accept: " + ErrnoText(errno);
            }
        }
    }
    close(listener);
    // Bounds every blocking call of the pair.
    timeval five_seconds = {5, 0};
    for (int fd : {*writer_fd, *reader_fd}) {
        if (fd >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &five_seconds, sizeof(five_seconds));
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &five_seconds, sizeof(five_seconds));
        }
    }
    if (!error.empty()) {
        for (int fd : {*writer_fd, *reader_fd}) {
            if (fd >= 0) {
                close(fd);
            }
        }
        *writer_fd = *reader_fd = -1;
    }
    return error;
}

// How fast the count `received()` grows per second over `seconds`, after
// the warm-up.
template <typename Counter>
double RateOverWindow(Counter received, double seconds) {
    SleepSeconds(std::min(kWarmupSeconds, seconds));
    const double before = received();
    const Clock::time_point start = Clock::now();
    SleepSeconds(seconds);
    const double after = received();
    return (after - before) / SecondsSince(start);
}

// A writer thread doing one blocking send() per `write_size` bytes and a
// reader thread reading whatever is there. Bytes/s at the reader, or
// writes/s when `per_write`.
Measurement RawTcp(size_t write_size, bool per_write, double seconds) {
    int writer_fd = -1;
    int reader_fd = -1;
    const std::string error = LoopbackPair(&writer_fd, &reader_fd);
    if (!error.empty()) {
        return Failure(error);
    }
    std::atomic<uint64_t> received{0};
    std::atomic<bool> stop{false};
    std::string writer_error;
    std::thread reader([&] {
        std::vector<char> buf(1 << 20);
        for (;;) {
            const ssize_t n = read(reader_fd, buf.data(), buf.size());
            if (n > 0) {
                received.fetch_add((uint64_t)n, std::memory_order_relaxed);
            } else if (n == 0 || errno != EINTR) {
                return;  // EOF after the writer's shutdown, or an error
            }
        }
    });
    std::thread writer([&] {
        const std::vector<char> message(write_size, 'x');
        while (!stop.load(std::memory_order_relaxed)) {
            size_t sent = 0;
            while (sent < write_size) {
                const ssize_t n = send(writer_fd, message.data() + sent, write_size - sent, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR) {
                    continue;
                }
                if (n <= 0) {
                    writer_error = "send: " + ErrnoText(errno);
                    shutdown(writer_fd, SHUT_WR);
                    return;
                }
                sent += (size_t)n;
            }
        }
        shutdown(writer_fd, SHUT_WR);
    });
    const double bytes_per_second =
        RateOverWindow([&] { return (double)received.load(std::memory_order_relaxed); }, seconds);
    stop = true;
    writer.join();
    reader.join();
    close(writer_fd);
    close(reader_fd);
    if (!writer_error.empty()) {
        return Failure(writer_error);
    }
    if (bytes_per_second <= 0) {
        return Failure("nothing received in the window");
    }
    return Value(per_write ? bytes_per_second / (double)write_size : bytes_per_second);
}

// ---- streams -------------------------------------------------------------

// Counts what a stream (or many sharing it) received and how they ended.
class CountingHandler : public brpc::StreamInputHandler {
public:
    int on_received_messages(brpc::StreamId, butil::IOBuf* const messages[], size_t size) override {
        uint64_t bytes = 0;
        for (size_t i = 0; i < size; ++i) {
            bytes += messages[i]->size();
        }
        messages_.fetch_add(size, std::memory_order_relaxed);
        bytes_.fetch_add(bytes, std::memory_order_relaxed);
        return 0;
    }
    void on_idle_timeout(brpc::StreamId) override {}
    void on_failed(brpc::StreamId, int error_code, const std::string& error_text) override {
        std::lock_guard<std::mutex> lock(mu_);
        ++failed_;
        last_failure_ = "[" + std::to_string(error_code) + "] " + error_text;
    }
    void on_closed(brpc::StreamId) override {
        {
            std::lock_guard<std::mutex> lock(mu_);
            ++closed_;
        }
        closed_cv_.notify_all();
    }

    uint64_t messages() const { return messages_.load(std::memory_order_relaxed); }
    uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
    uint64_t closed() {
        std::lock_guard<std::mutex> lock(mu_);
        return closed_;
    }
    // Whether `count` streams closed within `seconds`.
    bool WaitClosed(uint64_t count, double seconds) {
        std::unique_lock<std::mutex> lock(mu_);
        return closed_cv_.wait_for(lock, std::chrono::duration<double>(seconds),
                                   [&] { return closed_ >= count; });
    }
    std::string failures() {
        std::lock_guard<std::mutex> lock(mu_);
        return failed_ == 0 ? "" : std::to_string(failed_) + " on_failed, last " + last_failure_;
    }

private:
    std::atomic<uint64_t> messages_{0};
    std::atomic<uint64_t> bytes_{0};
    std::mutex mu_;
    std::condition_variable closed_cv_;
    uint64_t closed_ = 0;
    uint64_t failed_ = 0;
    std::string last_failure_;
};

// A server on 127.0.0.1 and a channel to it. Members are destroyed in
// reverse order: the channel, then the server (Stop and Join), then the
// service.
struct Loopback {
    explicit Loopback(brpc::StreamInputHandler* server_handler) : service(server_handler) {}

    std::string Start() {
        if (server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE) != 0 ||
            server.Start("127.0.0.1:0", NULL) != 0) {
            return "server start: " + ErrnoText(errno);
        }
        brpc::ChannelOptions options;
        // Generous: a loaded machine must not turn into failed calls.
        options.timeout_ms = 10000;
        options.connect_timeout_ms = 5000;
        const std::string address = butil::endpoint2str(server.listen_address()).c_str();
        if (channel.Init(address.c_str(), &options) != 0) {
            return "channel init: " + ErrnoText(errno);
        }
        return "";
    }

    BenchServiceImpl service;
    brpc::Server server;
    brpc::Channel channel;
};

// Creates `count` streams on one call of Open. "" or the error; on error
// no stream is left open.
std::string OpenStreams(brpc::Channel& channel, int count, brpc::StreamInputHandler* handler,
                        brpc::StreamIds* streams) {
    brpc::Controller cntl;
    brpc::StreamOptions options;
    options.handler = handler;
    brpc::StreamIds created;
    if (brpc::StreamCreate(created, count, cntl, &options) != 0) {
        return "StreamCreate failed";
    }
    streambench::OpenRequest request;
    streambench::OpenResponse response;
    streambench::BenchService_Stub stub(&channel);
    stub.Open(&cntl, &request, &response, NULL);
    if (cntl.Failed()) {
        for (brpc::StreamId id : created) {
            brpc::StreamClose(id);
        }
        return "Open failed: [" + std::to_string(cntl.ErrorCode()) + "] " + cntl.ErrorText();
    }
    streams->insert(streams->end(), created.begin(), created.end());
    return "";
}

// Closes the client's streams and waits for both sides' on_closed. "" or
// what did not close.
std::string CloseAll(const brpc::StreamIds& streams, CountingHandler* client, CountingHandler* server,
                     uint64_t server_streams) {
    for (brpc::StreamId id : streams) {
        brpc::StreamClose(id);
    }
    if (!client->WaitClosed(streams.size(), kTeardownSeconds)) {
        return "teardown: " + std::to_string(client->closed()) + " of " + std::to_string(streams.size()) +
               " client streams closed";
    }
    if (!server->WaitClosed(server_streams, kTeardownSeconds)) {
        return "teardown: " + std::to_string(server->closed()) + " of " + std::to_string(server_streams) +
               " server streams closed";
    }
    return "";
}

// Handlers must outlive their streams' on_closed: after a scenario that
// failed, when a stream may still be closing, they are leaked rather than
// freed under it.
struct Handlers {
    std::unique_ptr<CountingHandler> client{new CountingHandler};
    std::unique_ptr<CountingHandler> server{new CountingHandler};
    std::vector<std::unique_ptr<CountingHandler> > more;
    void LeakUnless(bool clean) {
        if (clean) {
            return;
        }
        client.release();
        server.release();
        for (std::unique_ptr<CountingHandler>& handler : more) {
            handler.release();
        }
    }
};

// `stream_count` streams on one connection, a writer thread each looping
// StreamWrite (StreamWait on EAGAIN). Received bytes/s, or messages/s
// when `per_message`, at the server.
Measurement StreamThroughput(size_t message_size, int stream_count, bool background, bool per_message,
                             double seconds) {
    Handlers handlers;
    Measurement result = Failure("not run");
    {
        Loopback loopback(handlers.server.get());
        std::string error = loopback.Start();
        brpc::StreamIds streams;
        if (error.empty()) {
            error = OpenStreams(loopback.channel, stream_count, handlers.client.get(), &streams);
        }
        if (!error.empty()) {
            handlers.LeakUnless(false);
            return Failure(error);
        }
        std::atomic<bool> stop{false};
        std::vector<std::string> writer_errors(streams.size());
        std::vector<std::thread> writers;
        for (size_t i = 0; i < streams.size(); ++i) {
            writers.emplace_back([&, i] {
                // The same message every time: the library copies it, and
                // building it is the caller's cost, not the stream's.
                butil::IOBuf message;
                message.append(std::string(message_size, 'x'));
                brpc::StreamWriteOptions write_options;
                write_options.write_in_background = background;
                while (!stop.load(std::memory_order_relaxed)) {
                    const int rc = brpc::StreamWrite(streams[i], message, &write_options);
                    if (rc == 0) {
                        continue;
                    }
                    if (rc != EAGAIN) {
                        writer_errors[i] = "StreamWrite: " + ErrnoText(rc);
                        return;
                    }
                    // Short waits, so the writer sees `stop` soon.
                    const timespec due = RealtimeIn(100);
                    const int wait_rc = brpc::StreamWait(streams[i], &due);
                    if (wait_rc != 0 && wait_rc != ETIMEDOUT) {
                        writer_errors[i] = "StreamWait: " + ErrnoText(wait_rc);
                        return;
                    }
                }
            });
        }
        CountingHandler* const receiver = handlers.server.get();
        const double rate = RateOverWindow(
            [&] { return (double)(per_message ? receiver->messages() : receiver->bytes()); }, seconds);
        stop = true;
        for (std::thread& writer : writers) {
            writer.join();
        }
        const std::string teardown_error =
            CloseAll(streams, handlers.client.get(), handlers.server.get(), streams.size());
        const std::string failures = handlers.client->failures() + handlers.server->failures();
        for (const std::string& writer_error : writer_errors) {
            if (error.empty()) {
                error = writer_error;
            }
        }
        if (error.empty()) {
            error = !teardown_error.empty() ? teardown_error : failures;
        }
        if (error.empty() && rate <= 0) {
            error = "nothing received in the window";
        }
        result = error.empty() ? Value(rate) : Failure(error);
    }
    handlers.LeakUnless(result.ok);
    return result;
}

// kChurnLoops threads, each: StreamCreate, a call of Open (the server
// accepts), StreamClose, then wait for the client's on_closed. Completed
// setup+close pairs per second.
Measurement Churn(double seconds) {
    Handlers handlers;
    std::vector<std::unique_ptr<CountingHandler> >& loop_handlers = handlers.more;
    for (int i = 0; i < kChurnLoops; ++i) {
        loop_handlers.emplace_back(new CountingHandler);
    }
    Measurement result = Failure("not run");
    {
        Loopback loopback(handlers.server.get());
        std::string error = loopback.Start();
        if (!error.empty()) {
            return Failure(error);
        }
        std::atomic<bool> stop{false};
        std::atomic<uint64_t> completed{0};
        std::vector<std::string> loop_errors(kChurnLoops);
        std::vector<std::thread> loops;
        for (int i = 0; i < kChurnLoops; ++i) {
            loops.emplace_back([&, i] {
                CountingHandler* const handler = loop_handlers[i].get();
                uint64_t created = 0;
                while (!stop.load(std::memory_order_relaxed)) {
                    brpc::StreamIds stream;
                    const std::string open_error = OpenStreams(loopback.channel, 1, handler, &stream);
                    if (!open_error.empty()) {
                        loop_errors[i] = open_error;
                        return;
                    }
                    ++created;
                    brpc::StreamClose(stream[0]);
                    if (!handler->WaitClosed(created, kTeardownSeconds)) {
                        loop_errors[i] = "on_closed did not run within 10 s of StreamClose";
                        return;
                    }
                    completed.fetch_add(1, std::memory_order_relaxed);
                }
            });
        }
        const double rate =
            RateOverWindow([&] { return (double)completed.load(std::memory_order_relaxed); }, seconds);
        stop = true;
        for (std::thread& loop : loops) {
            loop.join();
        }
        std::string teardown_error;
        if (!handlers.server->WaitClosed(loopback.service.accepted(), kTeardownSeconds)) {
            teardown_error = "teardown: " + std::to_string(handlers.server->closed()) + " of " +
                             std::to_string(loopback.service.accepted()) + " server streams closed";
        }
        for (const std::string& loop_error : loop_errors) {
            if (error.empty()) {
                error = loop_error;
            }
        }
        if (error.empty()) {
            error = teardown_error;
        }
        if (error.empty() && rate <= 0) {
            error = "no setup+close completed in the window";
        }
        // Every close here is a normal one: an on_failed is worth seeing,
        // though the figure stands.
        std::string client_failures;
        for (const std::unique_ptr<CountingHandler>& handler : loop_handlers) {
            client_failures += handler->failures();
        }
        if (!client_failures.empty() || !handlers.server->failures().empty()) {
            fprintf(stderr, "  churn: unexpected on_failed: client {%s} server {%s}\n", client_failures.c_str(),
                    handlers.server->failures().c_str());
        }
        result = error.empty() ? Value(rate) : Failure(error);
    }
    handlers.LeakUnless(result.ok);
    return result;
}

// ---- memory per idle stream ------------------------------------------------

// Writes all of `data` to `fd`; false on error.
bool WriteAll(int fd, const void* data, size_t len) {
    const char* bytes = static_cast<const char*>(data);
    while (len > 0) {
        const ssize_t n = write(fd, bytes, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        bytes += n;
        len -= (size_t)n;
    }
    return true;
}

// Reads up to `cap` bytes from `fd` until EOF or `seconds` pass.
std::string ReadWithDeadline(int fd, size_t cap, double seconds) {
    std::string out;
    const Clock::time_point start = Clock::now();
    char buf[4096];
    while (out.size() < cap) {
        const double left = seconds - SecondsSince(start);
        if (left <= 0) {
            break;
        }
        pollfd p = {fd, POLLIN, 0};
        const int ready = poll(&p, 1, (int)(left * 1000) + 1);
        if (ready < 0 && errno == EINTR) {
            continue;
        }
        if (ready <= 0) {
            break;
        }
        const ssize_t n = read(fd, buf, std::min(sizeof(buf), cap - out.size()));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        out.append(buf, (size_t)n);
    }
    return out;
}

// Waits for `pid` up to `seconds`, then kills it. Its exit status, or -1.
int ReapWithDeadline(pid_t pid, double seconds) {
    int status = 0;
    const bool exited = WaitUntil([&] { return waitpid(pid, &status, WNOHANG) == pid; }, seconds);
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
    }
    return status;
}

// The server half of the memory probe, in the forked child: reports its
// port on `reply`, serves until a byte arrives on `commands`, then reports
// (one byte, 1 or 0) whether every stream it accepted has closed, and
// exits when `commands` closes.
[[noreturn]] void MemoryServer(int commands, int reply) {
    CountingHandler handler;
    BenchServiceImpl service(&handler);
    brpc::Server server;
    int port = -1;
    if (server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE) == 0 &&
        server.Start("127.0.0.1:0", NULL) == 0) {
        port = server.listen_address().port;
    }
    WriteAll(reply, &port, sizeof(port));
    char command;
    while (read(commands, &command, 1) < 0 && errno == EINTR) {
    }
    const char closed = handler.WaitClosed(service.accepted(), kTeardownSeconds) ? 1 : 0;
    WriteAll(reply, &closed, 1);
    for (;;) {
        const ssize_t n = read(commands, &command, 1);
        if (n == 0 || (n < 0 && errno != EINTR)) {
            break;  // EOF: the client is done
        }
    }
    // The probe is over: the process's end releases everything at once.
    _exit(0);
}

// `stream_bench --memory-probe`: a fresh process, so that no earlier
// scenario's heap hides or inflates the growth. Forks the server before
// the library starts any thread, warms both sides up with 100 open
// streams, then opens 10 000 more and prints the VmRSS growth per stream
// of each side on one line:
//   memory <client KiB/stream> <server KiB/stream> <details>
int MemoryProbe() {
    int commands[2];
    int reply[2];
    if (pipe2(commands, O_CLOEXEC) != 0 || pipe2(reply, O_CLOEXEC) != 0) {
        printf("error pipe: %s\n", ErrnoText(errno).c_str());
        return 1;
    }
    const pid_t parent = getpid();
    const pid_t child = fork();
    if (child < 0) {
        printf("error fork: %s\n", ErrnoText(errno).c_str());
        return 1;
    }
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(1);
        }
        close(commands[1]);
        close(reply[0]);
        MemoryServer(commands[0], reply[1]);
    }
    close(commands[0]);
    close(reply[1]);

    std::string error;
    const std::string port_bytes = ReadWithDeadline(reply[0], sizeof(int), 20);
    int port = -1;
    if (port_bytes.size() == sizeof(int)) {
        memcpy(&port, port_bytes.data(), sizeof(int));
    }
    CountingHandler handler;
    brpc::StreamIds streams;
    const size_t measured = (size_t)kMemoryCalls * kMemoryStreamsPerCall;
    // Reserved now, so the id vector's growth is not counted.
    streams.reserve(measured + kMemoryStreamsPerCall);
    long client_before = 0, client_after = 0, server_before = 0, server_after = 0;
    {
        brpc::Channel channel;
        brpc::ChannelOptions options;
        options.timeout_ms = 20000;
        options.connect_timeout_ms = 5000;
        const std::string address = "127.0.0.1:" + std::to_string(port);
        if (port <= 0) {
            error = "the server process did not start";
        } else if (channel.Init(address.c_str(), &options) != 0) {
            error = "channel init: " + ErrnoText(errno);
        }
        if (error.empty()) {
            error = OpenStreams(channel, kMemoryStreamsPerCall, &handler, &streams);
        }
        if (error.empty()) {
            SleepSeconds(0.2);
            client_before = ResidentKiB(getpid());
            server_before = ResidentKiB(child);
            for (int call = 0; call < kMemoryCalls && error.empty(); ++call) {
                error = OpenStreams(channel, kMemoryStreamsPerCall, &handler, &streams);
            }
        }
        if (error.empty()) {
            // Let the I/O and worker threads finish with the last call.
            SleepSeconds(0.2);
            client_after = ResidentKiB(getpid());
            server_after = ResidentKiB(child);
            if (client_before < 0 || client_after < 0 || server_before < 0 || server_after < 0) {
                error = "cannot read VmRSS from /proc";
            }
        }
        for (brpc::StreamId id : streams) {
            brpc::StreamClose(id);
        }
        if (!handler.WaitClosed(streams.size(), kTeardownSeconds * 2) && error.empty()) {
            error = "teardown: " + std::to_string(handler.closed()) + " of " + std::to_string(streams.size()) +
                    " client streams closed";
        }
        // The connection stays up until the server's streams have closed
        // too: their answering CLOSE frames must not meet a closed socket.
        const char quit = 'q';
        const bool asked = WriteAll(commands[1], &quit, 1);
        const std::string server_closed = asked ? ReadWithDeadline(reply[0], 1, kTeardownSeconds + 5) : "";
        if (error.empty() && server_closed != std::string(1, 1)) {
            error = "teardown: the server's streams did not all close";
        }
    }
    close(commands[1]);  // the server exits
    ReapWithDeadline(child, 5);
    close(reply[0]);
    if (!error.empty()) {
        printf("error %s\n", error.c_str());
        fflush(stdout);
        _exit(1);  // streams may still be closing: skip the static destructors
    }
    printf("memory %.4f %.4f client %ld->%ld KiB, server %ld->%ld KiB, %zu streams\n",
           (double)(client_after - client_before) / (double)measured,
           (double)(server_after - server_before) / (double)measured, client_before, client_after,
           server_before, server_after, measured);
    fflush(stdout);
    return 0;
}

// Runs the memory probe in a new process of this program: KiB per stream,
// client then server.
std::vector<Measurement> Memory() {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) {
        const Measurement failure = Failure("pipe: " + ErrnoText(errno));
        return {failure, failure};
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    char self[] = "/proc/self/exe";
    char probe_flag[] = "--memory-probe";
    char* argv[] = {self, probe_flag, NULL};
    pid_t pid = -1;
    const int spawn_rc = posix_spawn(&pid, self, &actions, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    if (spawn_rc != 0) {
        close(out[0]);
        const Measurement failure = Failure("posix_spawn: " + ErrnoText(spawn_rc));
        return {failure, failure};
    }
    const std::string output = ReadWithDeadline(out[0], 4096, kScenarioSlackSeconds);
    close(out[0]);
    const int status = ReapWithDeadline(pid, 10);
    double client = 0, server = 0;
    if (sscanf(output.c_str(), "memory %lf %lf", &client, &server) == 2) {
        const size_t space = output.find(' ', output.find(' ', 7) + 1);
        fprintf(stderr, "  memory probe:%s", output.substr(space).c_str());
        return {Value(client), Value(server)};
    }
    std::string reason = output.empty() ? "the probe printed nothing" : output;
    while (!reason.empty() && reason.back() == '\n') {
        reason.pop_back();
    }
    if (status == -1) {
        reason += " (killed after its deadline)";
    }
    const Measurement failure = Failure("memory probe: " + reason);
    return {failure, failure};
}

// ---- scenarios and the report ---------------------------------------------

enum Unit { kBytesPerSecond, kMessagesPerSecond, kPerSecond, kKiB };

// One line of the table.
struct Row {
    const char* key;
    const char* label;
    Unit unit;
    // The row whose same-run value is the denominator, or NULL: then
    // `reference` is.
    const char* ceiling;
    double reference;
    const char* reference_label;
    // The target ratio; higher is better unless `lower_is_better`.
    double target;
    bool lower_is_better;
    const char* brpc;
};

const Row kRows[] = {
    {"raw_1m", "raw TCP, 1 MiB writes", kBytesPerSecond, NULL, 0, "", 0, false, "4.8 GB/s"},
    {"raw_4k", "raw TCP, 4 KiB writes", kBytesPerSecond, NULL, 0, "", 0, false, "-"},
    {"raw_64", "raw TCP, 64 B writes", kMessagesPerSecond, NULL, 0, "", 0, false, "3.0 M writes/s"},
    {"stream_64", "stream 64 B, 1 writer", kMessagesPerSecond, "raw_64", 0, "raw 64 B writes/s", 1.5, false,
     "0.40 M msg/s (0.13)"},
    {"stream_4k", "stream 4 KiB, 1 writer", kBytesPerSecond, "raw_4k", 0, "raw 4 KiB", 0.55, false,
     "0.85 GB/s"},
    {"stream_1m", "stream 1 MiB, 1 writer", kBytesPerSecond, "raw_1m", 0, "raw 1 MiB", 0.85, false,
     "2.39 GB/s (0.50)"},
    {"bg_64", "stream 64 B, write_in_background", kMessagesPerSecond, "raw_64", 0, "raw 64 B writes/s", 0,
     false, "2.1 M msg/s (0.70)"},
    {"bg_4k", "stream 4 KiB, write_in_background", kBytesPerSecond, "raw_4k", 0, "raw 4 KiB", 0, false, "-"},
    {"bg_1m", "stream 1 MiB, write_in_background", kBytesPerSecond, "raw_1m", 0, "raw 1 MiB", 0, false, "-"},
    {"streams8_4k", "8 streams x 4 KiB, 1 connection", kBytesPerSecond, "raw_4k", 0, "raw 4 KiB", 0, false,
     "-"},
    {"churn", "setup + close, 8 loops", kPerSecond, NULL, 20000, "20 000/s", 1.0, false, "8 700/s (0.44)"},
    {"memory_client", "memory per idle stream, client", kKiB, NULL, 1.0, "1 KiB", 1.0, true,
     "1.3 KiB (older: 2.4)"},
    {"memory_server", "memory per idle stream, server", kKiB, NULL, 1.0, "1 KiB", 1.0, true,
     "1.4 KiB (older: 2.6)"},
};

// What runs to fill rows; its rows in the order its run returns them.
struct Scenario {
    const char* name;
    std::vector<const char*> rows;
    std::function<std::vector<Measurement>(double seconds)> run;
    // Its ceiling scenario, run too when only this one is asked for.
    const char* needs;
};

std::vector<Scenario> Scenarios() {
    auto one = [](Measurement m) { return std::vector<Measurement>{m}; };
    // Each ceiling runs just before the scenarios compared with it, so
    // that a change in the machine's load between them skews the ratio
    // less.
    return {
        {"raw_64", {"raw_64"}, [=](double s) { return one(RawTcp(64, true, s)); }, NULL},
        {"stream_64", {"stream_64"}, [=](double s) { return one(StreamThroughput(64, 1, false, true, s)); },
         "raw_64"},
        {"bg_64", {"bg_64"}, [=](double s) { return one(StreamThroughput(64, 1, true, true, s)); }, "raw_64"},
        {"raw_4k", {"raw_4k"}, [=](double s) { return one(RawTcp(4096, false, s)); }, NULL},
        {"stream_4k", {"stream_4k"}, [=](double s) { return one(StreamThroughput(4096, 1, false, false, s)); },
         "raw_4k"},
        {"bg_4k", {"bg_4k"}, [=](double s) { return one(StreamThroughput(4096, 1, true, false, s)); },
         "raw_4k"},
        {"streams8_4k", {"streams8_4k"},
         [=](double s) { return one(StreamThroughput(4096, kMultiStreams, false, false, s)); }, "raw_4k"},
        {"raw_1m", {"raw_1m"}, [=](double s) { return one(RawTcp(1 << 20, false, s)); }, NULL},
        {"stream_1m", {"stream_1m"},
         [=](double s) { return one(StreamThroughput(1 << 20, 1, false, false, s)); }, "raw_1m"},
        {"bg_1m", {"bg_1m"}, [=](double s) { return one(StreamThroughput(1 << 20, 1, true, false, s)); },
         "raw_1m"},
        {"churn", {"churn"}, [=](double s) { return one(Churn(s)); }, NULL},
        {"memory", {"memory_client", "memory_server"}, [](double) { return Memory(); }, NULL},
    };
}

std::string Absolute(Unit unit, double value) {
    char text[64];
    switch (unit) {
        case kBytesPerSecond:
            snprintf(text, sizeof(text), "%.2f GB/s", value / 1e9);
            break;
        case kMessagesPerSecond:
            snprintf(text, sizeof(text), "%.2f M/s", value / 1e6);
            break;
        case kPerSecond:
            snprintf(text, sizeof(text), "%.0f/s", value);
            break;
        case kKiB:
            snprintf(text, sizeof(text), "%.2f KiB", value);
            break;
    }
    return text;
}

// Just the number, for the min-max span.
std::string Bare(Unit unit, double value) {
    std::string text = Absolute(unit, value);
    return text.substr(0, text.find_first_of(" /"));
}

double Median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    const size_t n = values.size();
    return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

struct Options {
    int runs = 5;
    double seconds = 2.0;
    std::vector<std::string> only;
    bool list = false;
};

void Usage(const char* program) {
    fprintf(stderr,
            "usage: %s [--runs N (5)] [--seconds S (2)] [--only NAME[,NAME...]] [--list]\n"
            "  --only also runs the raw TCP ceiling a stream scenario is compared with\n",
            program);
}

bool ParseOptions(int argc, char** argv, Options* options) {
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const bool has_value = i + 1 < argc;
        if (arg == "--runs" && has_value) {
            options->runs = atoi(argv[++i]);
        } else if (arg == "--seconds" && has_value) {
            options->seconds = atof(argv[++i]);
        } else if (arg == "--only" && has_value) {
            std::stringstream names(argv[++i]);
            std::string name;
            while (std::getline(names, name, ',')) {
                if (!name.empty()) {
                    options->only.push_back(name);
                }
            }
        } else if (arg == "--list") {
            options->list = true;
        } else {
            return false;
        }
    }
    return options->runs >= 1 && options->runs <= 100 && options->seconds > 0 && options->seconds <= 600;
}

const Row* FindRow(const std::string& key) {
    for (const Row& row : kRows) {
        if (key == row.key) {
            return &row;
        }
    }
    return NULL;
}

// The per-run values of each row, and why runs failed.
struct Results {
    std::map<std::string, std::vector<Measurement> > runs;
};

// This run's ratio for `row`, if both figures exist.
bool RatioOf(const Row& row, const Results& results, size_t run, double* ratio) {
    const Measurement& m = results.runs.at(row.key)[run];
    if (!m.ok) {
        return false;
    }
    if (row.ceiling == NULL) {
        if (row.reference <= 0) {
            return false;
        }
        *ratio = m.value / row.reference;
        return true;
    }
    auto ceiling = results.runs.find(row.ceiling);
    if (ceiling == results.runs.end() || run >= ceiling->second.size() || !ceiling->second[run].ok) {
        return false;
    }
    *ratio = m.value / ceiling->second[run].value;
    return true;
}

void PrintTable(const Results& results, const Options& options) {
    printf("| scenario | median (min-max) | ratio: median (min-max) | of | target | meets | brpc (issue) |\n");
    printf("| --- | --- | --- | --- | --- | --- | --- |\n");
    for (const Row& row : kRows) {
        auto found = results.runs.find(row.key);
        if (found == results.runs.end()) {
            continue;
        }
        std::vector<double> values;
        std::vector<double> ratios;
        std::string failure;
        size_t failed = 0;
        for (size_t run = 0; run < found->second.size(); ++run) {
            const Measurement& m = found->second[run];
            if (!m.ok) {
                ++failed;
                failure = m.error;
                continue;
            }
            values.push_back(m.value);
            double ratio = 0;
            if (RatioOf(row, results, run, &ratio)) {
                ratios.push_back(ratio);
            }
        }
        std::string absolute;
        if (!values.empty()) {
            absolute = Absolute(row.unit, Median(values)) + " (" +
                       Bare(row.unit, *std::min_element(values.begin(), values.end())) + "-" +
                       Bare(row.unit, *std::max_element(values.begin(), values.end())) + ")";
        }
        if (failed > 0) {
            absolute += std::string(values.empty() ? "" : " ") + "FAILED " + std::to_string(failed) + "/" + std::to_string(found->second.size()) +
                        " runs: " + failure;
        }
        std::string ratio_text = "-";
        std::string meets = "-";
        const bool has_reference = row.ceiling != NULL || row.reference > 0;
        if (!ratios.empty()) {
            char text[96];
            const double median = Median(ratios);
            snprintf(text, sizeof(text), "%.2f (%.2f-%.2f)", median,
                     *std::min_element(ratios.begin(), ratios.end()),
                     *std::max_element(ratios.begin(), ratios.end()));
            ratio_text = text;
            if (row.target > 0) {
                meets = (row.lower_is_better ? median <= row.target : median >= row.target) ? "yes" : "NO";
            }
        } else if (has_reference) {
            ratio_text = "FAILED";
        }
        std::string target = "-";
        if (row.target > 0) {
            char text[32];
            snprintf(text, sizeof(text), "%s %.2f", row.lower_is_better ? "<=" : ">=", row.target);
            target = text;
        }
        std::string of = row.ceiling != NULL ? row.reference_label : (row.reference > 0 ? row.reference_label : "-");
        printf("| %s | %s | %s | %s | %s | %s | %s |\n", row.label, absolute.c_str(), ratio_text.c_str(),
               of.c_str(), target.c_str(), meets.c_str(), row.brpc);
    }
    printf("\n%d run(s) of %.1f s per measurement (after %.1f s of warm-up); GB = 1e9 bytes, M = 1e6.\n",
           options.runs, options.seconds, std::min(kWarmupSeconds, options.seconds));
    printf("brpc's ratios in parentheses are to its own raw TCP figures (4.8 GB/s, 3.0 M writes/s),\n"
           "or to the 20 000/s churn target.\n");
}

void PrintHeader(int argc, char** argv) {
    std::string command;
    for (int i = 0; i < argc; ++i) {
        command += (i > 0 ? " " : "") + std::string(argv[i]);
    }
    utsname host;
    uname(&host);
    printf("command: `%s`  \n", command.c_str());
    printf("machine: %s %s, %ld online CPU(s); load average at start: %s  \n", host.sysname, host.release,
           sysconf(_SC_NPROCESSORS_ONLN), LoadAverage().c_str());
}

}  // namespace

int main(int argc, char** argv) {
    // Writes to a peer that is gone (a pipe, a socket) fail with EPIPE.
    signal(SIGPIPE, SIG_IGN);
    if (argc == 2 && std::string(argv[1]) == "--memory-probe") {
        return MemoryProbe();
    }
    Options options;
    if (!ParseOptions(argc, argv, &options)) {
        Usage(argv[0]);
        return 2;
    }
    const std::vector<Scenario> all = Scenarios();
    if (options.list) {
        for (const Scenario& scenario : all) {
            printf("%s\n", scenario.name);
        }
        return 0;
    }
    // The chosen scenarios, in the table's order, ceilings included.
    std::vector<const Scenario*> chosen;
    for (const Scenario& scenario : all) {
        bool wanted = options.only.empty();
        for (const std::string& name : options.only) {
            wanted = wanted || name == scenario.name;
            for (const Scenario& other : all) {
                wanted = wanted || (name == other.name && other.needs != NULL && scenario.name == std::string(other.needs));
            }
        }
        if (wanted) {
            chosen.push_back(&scenario);
        }
    }
    for (const std::string& name : options.only) {
        bool known = false;
        for (const Scenario& scenario : all) {
            known = known || name == scenario.name;
        }
        if (!known) {
            fprintf(stderr, "unknown scenario %s (--list shows them)\n", name.c_str());
            return 2;
        }
    }

    PrintHeader(argc, argv);
    Watchdog watchdog;
    Results results;
    for (int run = 0; run < options.runs; ++run) {
        fprintf(stderr, "[run %d/%d] load average %s\n", run + 1, options.runs, LoadAverage().c_str());
        for (const Scenario* scenario : chosen) {
            watchdog.Arm(scenario->name, kWarmupSeconds + options.seconds + kScenarioSlackSeconds * 2);
            const std::vector<Measurement> measured = scenario->run(options.seconds);
            watchdog.Disarm();
            for (size_t i = 0; i < scenario->rows.size() && i < measured.size(); ++i) {
                results.runs[scenario->rows[i]].push_back(measured[i]);
                const Row* row = FindRow(scenario->rows[i]);
                const Measurement& m = measured[i];
                std::string ratio;
                double r = 0;
                if (row != NULL && m.ok && RatioOf(*row, results, (size_t)run, &r)) {
                    char text[64];
                    snprintf(text, sizeof(text), " (%.2f of %s)", r, row->reference_label);
                    ratio = text;
                }
                fprintf(stderr, "[run %d/%d] %-14s %s%s\n", run + 1, options.runs, scenario->rows[i],
                        m.ok ? Absolute(row != NULL ? row->unit : kPerSecond, m.value).c_str()
                             : ("FAILED: " + m.error).c_str(),
                        ratio.c_str());
            }
        }
    }
    printf("load average at end: %s\n\n", LoadAverage().c_str());
    PrintTable(results, options);
    return 0;
}
