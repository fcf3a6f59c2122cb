// The stream benchmark as users run it: client and server in separate
// processes, default StreamOptions on both sides, every message a new
// butil::IOBuf filled with append(std::string), StreamWait on EAGAIN.
//
// Only brpc's public API is used, so this same source builds against
// apache/brpc: scripts/bench.sh --brpc-prefix DIR builds it both ways and
// passes the brpc build as --impl brpc=PATH, and the table then gives each
// figure beside brpc's and beside raw loopback TCP, all measured in the
// same run, each from fresh processes.
//
//   stream_procs [--runs N] [--runs-64 N] [--seconds S] [--only NAME,...]
//                [--impl LABEL=PROGRAM ...] [--list]
//
// Scenarios: 1m, 4k, 64 (one stream, one writer thread, messages of that
// size, bytes/s or messages/s counted by the server's handler), churn
// (one loop: StreamCreate, a call the server answers with StreamAccept,
// StreamClose, wait for the client's on_closed; completed loops/s counted
// by the client), paced (the churn loop with a 200 us pause before each
// setup, a light load: CPU time per loop of each process, which shows what
// waiting costs when work comes at intervals) and memory (VmRSS growth per
// idle connected stream of each process, 10 000 streams opened 100 per
// call after 100 warm-up streams). Raw TCP (a process doing blocking send() of the same size to
// a process reading) is the ceiling of 1m, 4k and 64.
//
// The processes: `PROGRAM --serve` prints "port P RAWPORT" and answers
// "stat" on stdin with "stat messages bytes accepted closed failed
// raw_bytes"; `PROGRAM --client SCENARIO PORT RAWPORT` prints "ready",
// answers "stat" with "stat completed" and "stop" with "stopped" or
// "error TEXT", then exits. The driver ends both when done, with SIGKILL
// past a deadline, so nothing hangs.

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
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
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
const double kStepSeconds = 30;  // bound of every setup and teardown step
const int kPacedGapMicros = 200;  // the paced loop's pause between setups
const int kMemoryCalls = 100;
const int kMemoryStreamsPerCall = 100;

double SecondsSince(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

void SleepSeconds(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

std::string ErrnoText(int code) { return std::string(strerror(code)) + " (" + std::to_string(code) + ")"; }

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

// CPU time (user + system, every thread) `pid` has used, in seconds, or -1.
double CpuSeconds(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const size_t name_end = text.rfind(')');
    if (name_end == std::string::npos) {
        return -1;
    }
    // After the name: state, then utime and stime are the 12th and 13th.
    std::istringstream fields(text.substr(name_end + 1));
    std::string field;
    double ticks = 0;
    for (int i = 0; i < 13 && (fields >> field); ++i) {
        if (i >= 11) {
            ticks += atof(field.c_str());
        }
    }
    return ticks / (double)sysconf(_SC_CLK_TCK);
}

std::string LoadAverage() {
    std::ifstream loadavg("/proc/loadavg");
    double one = 0, five = 0, fifteen = 0;
    loadavg >> one >> five >> fifteen;
    char text[64];
    snprintf(text, sizeof(text), "%.2f %.2f %.2f", one, five, fifteen);
    return text;
}

// One line to stdout, flushed: the driver reads it through a pipe.
void Say(const std::string& line) {
    fputs((line + "\n").c_str(), stdout);
    fflush(stdout);
}

// A line from stdin; false at EOF.
bool Hear(std::string* line) {
    line->clear();
    for (;;) {
        char c;
        const ssize_t n = read(STDIN_FILENO, &c, 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        if (c == '\n') {
            return true;
        }
        line->push_back(c);
    }
}

// ---- both processes: counting handler, the service --------------------------

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
        std::lock_guard<std::mutex> lock(mu_);
        ++closed_;
        cv_.notify_all();
    }
    uint64_t messages() const { return messages_.load(std::memory_order_relaxed); }
    uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
    uint64_t closed() {
        std::lock_guard<std::mutex> lock(mu_);
        return closed_;
    }
    uint64_t failed() {
        std::lock_guard<std::mutex> lock(mu_);
        return failed_;
    }
    bool WaitClosed(uint64_t count, double seconds) {
        std::unique_lock<std::mutex> lock(mu_);
        return cv_.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return closed_ >= count; });
    }

private:
    std::atomic<uint64_t> messages_{0};
    std::atomic<uint64_t> bytes_{0};
    std::mutex mu_;
    std::condition_variable cv_;
    uint64_t closed_ = 0;
    uint64_t failed_ = 0;
    std::string last_failure_;
};

// ---- the server process -----------------------------------------------------

std::atomic<uint64_t> g_raw_bytes{0};

// Accepts raw TCP connections and counts what they bring.
void RawListener(int listener) {
    for (;;) {
        const int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            return;
        }
        std::thread([fd] {
            std::vector<char> buf(1 << 20);
            for (;;) {
                const ssize_t n = read(fd, buf.data(), buf.size());
                if (n > 0) {
                    g_raw_bytes.fetch_add((uint64_t)n, std::memory_order_relaxed);
                } else if (n == 0 || errno != EINTR) {
                    close(fd);
                    return;
                }
            }
        }).detach();
    }
}

int RawListen(int* port) {
    const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (listener < 0 || bind(listener, (sockaddr*)&addr, sizeof(addr)) != 0 || listen(listener, 16) != 0 ||
        getsockname(listener, (sockaddr*)&addr, &len) != 0) {
        return -1;
    }
    *port = ntohs(addr.sin_port);
    return listener;
}

[[noreturn]] void Serve() {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    CountingHandler handler;
    BenchServiceImpl service(&handler);
    brpc::Server server;
    int raw_port = -1;
    const int raw = RawListen(&raw_port);
    if (raw < 0 || server.AddService(&service, brpc::SERVER_DOESNT_OWN_SERVICE) != 0 ||
        server.Start("127.0.0.1:0", NULL) != 0) {
        Say("error server start: " + ErrnoText(errno));
        _exit(1);
    }
    std::thread(RawListener, raw).detach();
    Say("port " + std::to_string(server.listen_address().port) + " " + std::to_string(raw_port));
    std::string command;
    while (Hear(&command)) {
        if (command == "stat") {
            Say("stat " + std::to_string(handler.messages()) + " " + std::to_string(handler.bytes()) + " " +
                std::to_string(service.accepted()) + " " + std::to_string(handler.closed()) + " " +
                std::to_string(handler.failed()) + " " + std::to_string(g_raw_bytes.load()));
        }
    }
    // EOF: the driver is done with this process; nothing to clean up.
    _exit(0);
}

// ---- the client process -----------------------------------------------------

// Opens `count` streams with one call of Open. "" or the error.
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
        for (size_t i = 0; i < created.size(); ++i) {
            brpc::StreamClose(created[i]);
        }
        return "Open failed: [" + std::to_string(cntl.ErrorCode()) + "] " + cntl.ErrorText();
    }
    streams->insert(streams->end(), created.begin(), created.end());
    return "";
}

// Runs `load` on a thread until "stop", answering "stat" with `completed`.
// Then `finish` (closing streams); prints "stopped" or "error ...", and
// exits at the end of stdin.
template <typename Load, typename Finish>
[[noreturn]] void RunUntilStopped(std::atomic<uint64_t>& completed, Load load, Finish finish) {
    std::atomic<bool> stop{false};
    std::string load_error;
    std::thread worker([&] { load_error = load(stop); });
    std::string command;
    while (Hear(&command) && command != "stop") {
        if (command == "stat") {
            Say("stat " + std::to_string(completed.load()));
        }
    }
    stop = true;
    worker.join();
    std::string error = load_error.empty() ? finish() : load_error;
    Say(error.empty() ? "stopped" : "error " + error);
    // The connection stays up until the driver has seen the server's
    // streams close: their CLOSE frames must not meet a reset connection.
    while (Hear(&command)) {
    }
    _exit(0);
}

std::string RawWriter(int port, size_t size, const std::atomic<bool>& stop) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)port);
    if (fd < 0 || connect(fd, (sockaddr*)&addr, sizeof(addr)) != 0) {
        return "raw connect: " + ErrnoText(errno);
    }
    const std::string message(size, 'x');
    while (!stop.load(std::memory_order_relaxed)) {
        size_t sent = 0;
        while (sent < size) {
            const ssize_t n = send(fd, message.data() + sent, size - sent, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                close(fd);
                return "raw send: " + ErrnoText(errno);
            }
            sent += (size_t)n;
        }
    }
    close(fd);
    return "";
}

[[noreturn]] void Client(const std::string& scenario, int port, int raw_port) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::atomic<uint64_t> completed{0};
    size_t size = 0;
    if (scenario == "1m" || scenario == "raw_1m") {
        size = 1 << 20;
    } else if (scenario == "4k" || scenario == "raw_4k") {
        size = 4096;
    } else if (scenario == "64" || scenario == "raw_64") {
        size = 64;
    }
    if (scenario.compare(0, 4, "raw_") == 0) {
        Say("ready");
        RunUntilStopped(completed, [&](std::atomic<bool>& stop) { return RawWriter(raw_port, size, stop); },
                        [] { return std::string(); });
    }
    CountingHandler handler;
    brpc::Channel channel;
    brpc::ChannelOptions options;
    // brpc's 500 ms default would turn a busy machine into failed calls.
    options.timeout_ms = 20000;
    options.connect_timeout_ms = 5000;
    const std::string address = "127.0.0.1:" + std::to_string(port);
    if (channel.Init(address.c_str(), &options) != 0) {
        Say("error channel init");
        _exit(1);
    }
    if (size > 0) {
        brpc::StreamIds streams;
        const std::string error = OpenStreams(channel, 1, &handler, &streams);
        if (!error.empty()) {
            Say("error " + error);
            _exit(1);
        }
        const brpc::StreamId id = streams[0];
        Say("ready");
        RunUntilStopped(
            completed,
            [&](std::atomic<bool>& stop) -> std::string {
                const std::string payload(size, 'x');
                while (!stop.load(std::memory_order_relaxed)) {
                    // A new IOBuf per message, as a program builds them.
                    butil::IOBuf message;
                    message.append(payload);
                    for (;;) {
                        const int rc = brpc::StreamWrite(id, message);
                        if (rc == 0) {
                            break;
                        }
                        if (rc != EAGAIN) {
                            return "StreamWrite: " + ErrnoText(rc);
                        }
                        const timespec due = RealtimeIn(100);
                        const int wait_rc = brpc::StreamWait(id, &due);
                        if (wait_rc != 0 && wait_rc != ETIMEDOUT) {
                            return "StreamWait: " + ErrnoText(wait_rc);
                        }
                        if (stop.load(std::memory_order_relaxed)) {
                            return std::string();
                        }
                    }
                }
                return std::string();
            },
            [&]() -> std::string {
                brpc::StreamClose(id);
                return handler.WaitClosed(1, kStepSeconds) ? "" : "on_closed did not run";
            });
    }
    if (scenario == "churn" || scenario == "paced") {
        // paced: the same loop at a light load, one every kPacedGapMicros.
        const bool paced = scenario == "paced";
        Say("ready");
        RunUntilStopped(
            completed,
            [&](std::atomic<bool>& stop) -> std::string {
                uint64_t created = 0;
                while (!stop.load(std::memory_order_relaxed)) {
                    if (paced) {
                        std::this_thread::sleep_for(std::chrono::microseconds(kPacedGapMicros));
                    }
                    brpc::StreamIds stream;
                    const std::string error = OpenStreams(channel, 1, &handler, &stream);
                    if (!error.empty()) {
                        return error;
                    }
                    ++created;
                    brpc::StreamClose(stream[0]);
                    if (!handler.WaitClosed(created, kStepSeconds)) {
                        return "on_closed did not run after StreamClose";
                    }
                    completed.fetch_add(1, std::memory_order_relaxed);
                }
                return std::string();
            },
            [] { return std::string(); });
    }
    if (scenario == "memory") {
        brpc::StreamIds streams;
        streams.reserve((size_t)(kMemoryCalls + 1) * kMemoryStreamsPerCall);
        std::string error = OpenStreams(channel, kMemoryStreamsPerCall, &handler, &streams);
        if (!error.empty()) {
            Say("error " + error);
            _exit(1);
        }
        SleepSeconds(0.2);
        Say("warm");
        std::string command;
        if (!Hear(&command) || command != "go") {
            _exit(1);
        }
        for (int call = 0; call < kMemoryCalls && error.empty(); ++call) {
            error = OpenStreams(channel, kMemoryStreamsPerCall, &handler, &streams);
        }
        if (!error.empty()) {
            Say("error " + error);
            _exit(1);
        }
        SleepSeconds(0.2);
        Say("opened " + std::to_string(streams.size() - kMemoryStreamsPerCall));
        RunUntilStopped(
            completed, [](std::atomic<bool>&) { return std::string(); },
            [&]() -> std::string {
                for (size_t i = 0; i < streams.size(); ++i) {
                    brpc::StreamClose(streams[i]);
                }
                return handler.WaitClosed(streams.size(), kStepSeconds) ? "" : "not every stream closed";
            });
    }
    Say("error unknown scenario " + scenario);
    _exit(1);
}

// ---- the driver ---------------------------------------------------------------

// A child process of the driver, talked to by lines over pipes.
class Child {
public:
    Child() {}
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child() { End(); }

    std::string Spawn(const std::vector<std::string>& args) {
        int in[2], out[2];
        if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
            return "pipe: " + ErrnoText(errno);
        }
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
        posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
        std::vector<char*> argv;
        for (const std::string& arg : args) {
            argv.push_back(const_cast<char*>(arg.c_str()));
        }
        argv.push_back(NULL);
        const int rc = posix_spawn(&pid_, args[0].c_str(), &actions, NULL, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        close(in[0]);
        close(out[1]);
        to_ = in[1];
        from_ = out[0];
        if (rc != 0) {
            pid_ = -1;
            return "posix_spawn " + args[0] + ": " + ErrnoText(rc);
        }
        return "";
    }
    pid_t pid() const { return pid_; }
    bool Send(const std::string& line) {
        const std::string text = line + "\n";
        return write(to_, text.data(), text.size()) == (ssize_t)text.size();
    }
    // The next line within `seconds`, or "" (EOF, timeout).
    std::string Read(double seconds) {
        const Clock::time_point start = Clock::now();
        for (;;) {
            const size_t newline = buffered_.find('\n');
            if (newline != std::string::npos) {
                const std::string line = buffered_.substr(0, newline);
                buffered_.erase(0, newline + 1);
                return line;
            }
            const double left = seconds - SecondsSince(start);
            if (left <= 0) {
                return "";
            }
            pollfd p = {from_, POLLIN, 0};
            const int ready = poll(&p, 1, (int)(left * 1000) + 1);
            if (ready < 0 && errno == EINTR) {
                continue;
            }
            if (ready <= 0) {
                return "";
            }
            char buf[512];
            const ssize_t n = read(from_, buf, sizeof(buf));
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return "";
            }
            buffered_.append(buf, (size_t)n);
        }
    }
    std::string Ask(const std::string& line) { return Send(line) ? Read(kStepSeconds) : ""; }
    // Closes its stdin (it exits) and reaps it, SIGKILL after 10 s.
    void End() {
        if (to_ >= 0) {
            close(to_);
            to_ = -1;
        }
        if (pid_ > 0) {
            int status = 0;
            const Clock::time_point start = Clock::now();
            while (waitpid(pid_, &status, WNOHANG) != pid_) {
                if (SecondsSince(start) > 10) {
                    kill(pid_, SIGKILL);
                    waitpid(pid_, &status, 0);
                    break;
                }
                SleepSeconds(0.01);
            }
            pid_ = -1;
        }
        if (from_ >= 0) {
            close(from_);
            from_ = -1;
        }
    }

private:
    pid_t pid_ = -1;
    int to_ = -1;
    int from_ = -1;
    std::string buffered_;
};

struct Measurement {
    bool ok;
    double value;
    std::string error;
};
Measurement Value(double v) { return Measurement{true, v, ""}; }
Measurement Failure(const std::string& e) { return Measurement{false, 0, e}; }

// Field `index` (0 = the word "stat") of a stat line, or -1.
double StatField(const std::string& line, int index) {
    std::istringstream in(line);
    std::string word;
    in >> word;
    if (word != "stat") {
        return -1;
    }
    double value = -1;
    for (int i = 0; i < index && (in >> value); ++i) {
    }
    return value;
}

// Server stat fields.
enum { kMessages = 1, kBytes = 2, kAccepted = 3, kClosed = 4, kFailed = 5, kRawBytes = 6 };

// One measurement of `scenario` with `program` on both sides, fresh
// processes. Throughput: the server's count; churn: the client's; memory:
// two values (client, server) in KiB per stream.
std::vector<Measurement> Measure(const std::string& program, const std::string& scenario, double seconds) {
    const bool memory = scenario == "memory";
    const size_t outputs = memory || scenario == "paced" ? 2 : 1;
    auto fail = [&](const std::string& error) { return std::vector<Measurement>(outputs, Failure(error)); };
    Child server;
    std::string error = server.Spawn({program, "--serve"});
    if (!error.empty()) {
        return fail(error);
    }
    const std::string greeting = server.Read(kStepSeconds);
    int port = 0, raw_port = 0;
    if (sscanf(greeting.c_str(), "port %d %d", &port, &raw_port) != 2) {
        return fail("server: " + (greeting.empty() ? std::string("no greeting") : greeting));
    }
    Child client;
    error = client.Spawn({program, "--client", scenario, std::to_string(port), std::to_string(raw_port)});
    if (!error.empty()) {
        return fail(error);
    }
    const std::string ready = client.Read(kStepSeconds);
    if (ready != (memory ? "warm" : "ready")) {
        return fail("client: " + (ready.empty() ? std::string("no answer") : ready));
    }
    std::vector<Measurement> result;
    if (memory) {
        SleepSeconds(0.2);
        const long client_before = ResidentKiB(client.pid());
        const long server_before = ResidentKiB(server.pid());
        const std::string opened = client.Ask("go");
        int count = 0;
        if (sscanf(opened.c_str(), "opened %d", &count) != 1 || count <= 0) {
            return fail("client: " + (opened.empty() ? std::string("no answer") : opened));
        }
        const long client_after = ResidentKiB(client.pid());
        const long server_after = ResidentKiB(server.pid());
        fprintf(stderr, "    client %ld->%ld KiB, server %ld->%ld KiB, %d streams\n", client_before,
                client_after, server_before, server_after, count);
        result.push_back(Value((double)(client_after - client_before) / count));
        result.push_back(Value((double)(server_after - server_before) / count));
    } else if (scenario == "paced") {
        SleepSeconds(kWarmupSeconds);
        const double loops_before = StatField(client.Ask("stat"), 1);
        const double client_before = CpuSeconds(client.pid());
        const double server_before = CpuSeconds(server.pid());
        SleepSeconds(seconds);
        const double loops = StatField(client.Ask("stat"), 1) - loops_before;
        const double client_cpu = CpuSeconds(client.pid()) - client_before;
        const double server_cpu = CpuSeconds(server.pid()) - server_before;
        if (loops_before < 0 || loops <= 0 || client_before < 0 || server_before < 0) {
            return fail("no loops or no CPU figures in the window");
        }
        fprintf(stderr, "    %.0f loops/s\n", loops / seconds);
        result.push_back(Value(client_cpu / loops * 1e6));
        result.push_back(Value(server_cpu / loops * 1e6));
    } else {
        const bool raw = scenario.compare(0, 4, "raw_") == 0;
        const bool churn = scenario == "churn";
        const bool per_message = scenario == "64" || scenario == "raw_64";
        auto count = [&]() -> double {
            if (churn) {
                return StatField(client.Ask("stat"), 1);
            }
            const double bytes = StatField(server.Ask("stat"), raw ? kRawBytes : kBytes);
            return per_message && bytes >= 0 ? bytes / 64 : bytes;
        };
        SleepSeconds(kWarmupSeconds);
        const double before = count();
        const Clock::time_point start = Clock::now();
        SleepSeconds(seconds);
        const double after = count();
        const double elapsed = SecondsSince(start);
        if (before < 0 || after < 0) {
            return fail("no stat answer");
        }
        result.push_back(after > before ? Value((after - before) / elapsed) : Failure("nothing in the window"));
    }
    const std::string stopped = client.Ask("stop");
    if (stopped != "stopped") {
        return fail("client: " + (stopped.empty() ? std::string("no answer to stop") : stopped));
    }
    if (scenario.compare(0, 4, "raw_") != 0) {
        // Every stream the server accepted must close too.
        const Clock::time_point start = Clock::now();
        for (;;) {
            const std::string stat = server.Ask("stat");
            const double accepted = StatField(stat, kAccepted);
            const double closed = StatField(stat, kClosed);
            if (accepted >= 0 && closed >= accepted) {
                if (StatField(stat, kFailed) > 0) {
                    fprintf(stderr, "    note: %s server streams saw on_failed\n",
                            std::to_string((long)StatField(stat, kFailed)).c_str());
                }
                break;
            }
            if (SecondsSince(start) > kStepSeconds) {
                return fail("server: not every accepted stream closed");
            }
            SleepSeconds(0.01);
        }
        // The answers to the last CLOSE frames (RST for streams already
        // gone) settle before the processes end, so neither side sees its
        // connection reset.
        SleepSeconds(0.2);
    }
    return result;
}

struct Impl {
    std::string label;
    std::string program;
};

struct Row {
    const char* key;
    const char* label;
    const char* scenario;
    int output;  // which of the scenario's outputs
    const char* raw;  // its ceiling scenario, or NULL
    const char* unit;
    bool lower_is_better;
    double goal;  // ratio to brpc (higher is better), or KiB when lower_is_better; 0: none
    const char* goal_text;
};

const Row kRows[] = {
    {"1m", "1 MiB messages", "1m", 0, "raw_1m", "GB/s", false, 1.7, ">= 1.7x brpc"},
    {"4k", "4 KiB messages", "4k", 0, "raw_4k", "GB/s", false, 3.0, ">= 3x brpc"},
    {"64", "64 B messages", "64", 0, "raw_64", "M msg/s", false, 10.0, ">= 10x brpc"},
    {"churn", "setup + close, one loop", "churn", 0, NULL, "/s", false, 2.3, ">= 2.3x brpc"},
    {"paced_client", "CPU per setup + close, paced, client", "paced", 0, NULL, "us", true, 0, "lower is better"},
    {"paced_server", "CPU per setup + close, paced, server", "paced", 1, NULL, "us", true, 0, "lower is better"},
    {"memory_client", "idle stream RSS, client", "memory", 0, NULL, "KiB", true, 0.5, "<= 0.5 KiB"},
    {"memory_server", "idle stream RSS, server", "memory", 1, NULL, "KiB", true, 0.5, "<= 0.5 KiB"},
};

const char* const kScenarios[] = {"1m", "4k", "64", "churn", "paced", "memory"};

double Scale(const std::string& unit) {
    if (unit == "GB/s") return 1e-9;
    if (unit == "M msg/s") return 1e-6;
    return 1;
}

std::string Number(double v) {
    char text[32];
    snprintf(text, sizeof(text), v >= 100 ? "%.0f" : (v >= 10 ? "%.1f" : "%.2f"), v);
    return text;
}

struct Stats {
    size_t ok = 0, failed = 0;
    double median = 0, min = 0, max = 0;
    std::string error;
};

Stats Summarize(const std::vector<Measurement>& runs) {
    Stats s;
    std::vector<double> values;
    for (const Measurement& m : runs) {
        if (m.ok) {
            values.push_back(m.value);
        } else {
            ++s.failed;
            s.error = m.error;
        }
    }
    s.ok = values.size();
    if (!values.empty()) {
        std::sort(values.begin(), values.end());
        const size_t n = values.size();
        s.median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
        s.min = values.front();
        s.max = values.back();
    }
    return s;
}

std::string Cell(const Stats& s, double scale) {
    if (s.ok == 0) {
        return s.failed > 0 ? "FAILED: " + s.error : "-";
    }
    std::string text = Number(s.median * scale) + " (" + Number(s.min * scale) + "-" + Number(s.max * scale) + ")";
    if (s.failed > 0) {
        text += " FAILED " + std::to_string(s.failed) + ": " + s.error;
    }
    return text;
}

// Per-run ratios a/b where both runs succeeded.
std::vector<Measurement> Ratios(const std::vector<Measurement>& a, const std::vector<Measurement>& b) {
    std::vector<Measurement> out;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
        if (a[i].ok && b[i].ok && b[i].value > 0) {
            out.push_back(Value(a[i].value / b[i].value));
        }
    }
    return out;
}

std::string RunsList(const std::vector<Measurement>& runs, double scale) {
    std::string text;
    for (const Measurement& m : runs) {
        text += (text.empty() ? "" : " ") + (m.ok ? Number(m.value * scale) : std::string("F"));
    }
    return text;
}

int Drive(int argc, char** argv) {
    int runs = 5;
    int runs_64 = 10;
    double seconds = 2.0;
    std::vector<std::string> only;
    std::vector<Impl> impls;
    impls.push_back(Impl{"here", "/proc/self/exe"});
    char self[4096];
    const ssize_t self_len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (self_len > 0) {
        impls[0].program.assign(self, (size_t)self_len);
    }
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const bool has_value = i + 1 < argc;
        if (arg == "--runs" && has_value) {
            runs = atoi(argv[++i]);
        } else if (arg == "--runs-64" && has_value) {
            runs_64 = atoi(argv[++i]);
        } else if (arg == "--seconds" && has_value) {
            seconds = atof(argv[++i]);
        } else if (arg == "--only" && has_value) {
            std::stringstream names(argv[++i]);
            std::string name;
            while (std::getline(names, name, ',')) {
                only.push_back(name);
            }
        } else if (arg == "--impl" && has_value) {
            const std::string spec = argv[++i];
            const size_t eq = spec.find('=');
            if (eq == std::string::npos || eq == 0) {
                fprintf(stderr, "--impl takes LABEL=PROGRAM\n");
                return 2;
            }
            impls.push_back(Impl{spec.substr(0, eq), spec.substr(eq + 1)});
        } else if (arg == "--list") {
            for (const char* s : kScenarios) {
                printf("%s\n", s);
            }
            return 0;
        } else {
            fprintf(stderr,
                    "usage: %s [--runs N (5)] [--runs-64 N (10)] [--seconds S (2)] [--only 1m,4k,64,churn,paced,memory]\n"
                    "          [--impl LABEL=PROGRAM (e.g. brpc=build/bench-brpc/stream_procs)] [--list]\n",
                    argv[0]);
            return 2;
        }
    }
    if (runs < 1 || runs_64 < 1 || seconds <= 0) {
        fprintf(stderr, "--runs, --runs-64 and --seconds must be positive\n");
        return 2;
    }
    std::vector<std::string> chosen;
    for (const char* s : kScenarios) {
        if (only.empty() || std::find(only.begin(), only.end(), s) != only.end()) {
            chosen.push_back(s);
        }
    }
    for (const std::string& name : only) {
        if (std::find(std::begin(kScenarios), std::end(kScenarios), name) == std::end(kScenarios)) {
            fprintf(stderr, "unknown scenario %s (--list)\n", name.c_str());
            return 2;
        }
    }
    utsname host;
    uname(&host);
    std::string command;
    for (int i = 0; i < argc; ++i) {
        command += (i > 0 ? " " : "") + std::string(argv[i]);
    }
    printf("command: `%s`  \n", command.c_str());
    printf("machine: %s %s, %ld online CPU(s); load average at start: %s  \n", host.sysname, host.release,
           sysconf(_SC_NPROCESSORS_ONLN), LoadAverage().c_str());

    // results[impl label or "raw"][row key] = per-run values
    std::map<std::string, std::map<std::string, std::vector<Measurement> > > results;
    const int max_runs = std::max(runs, runs_64);
    for (int run = 0; run < max_runs; ++run) {
        bool announced = false;
        for (const std::string& scenario : chosen) {
            if (run >= (scenario == "64" ? runs_64 : runs)) {
                continue;
            }
            if (!announced) {
                fprintf(stderr, "[run %d] load average %s\n", run + 1, LoadAverage().c_str());
                announced = true;
            }
            std::vector<std::pair<std::string, std::string> > sides;  // (label, program)
            if (scenario == "1m" || scenario == "4k" || scenario == "64") {
                sides.push_back(std::make_pair(std::string("raw"), impls[0].program));
            }
            for (const Impl& impl : impls) {
                sides.push_back(std::make_pair(impl.label, impl.program));
            }
            for (const auto& side : sides) {
                const std::string name = side.first == "raw" ? "raw_" + scenario : scenario;
                const std::vector<Measurement> measured = Measure(side.second, name, seconds);
                for (const Row& row : kRows) {
                    if (scenario != row.scenario || (size_t)row.output >= measured.size()) {
                        continue;
                    }
                    const Measurement& m = measured[(size_t)row.output];
                    results[side.first][row.key].push_back(m);
                    fprintf(stderr, "[run %d] %-14s %-5s %s\n", run + 1, row.key, side.first.c_str(),
                            m.ok ? (Number(m.value * Scale(row.unit)) + " " + row.unit).c_str()
                                 : ("FAILED: " + m.error).c_str());
                }
            }
        }
    }
    printf("load average at end: %s\n\n", LoadAverage().c_str());
    // The table: each implementation's figure, raw TCP, and the ratios.
    std::string header = "| scenario | unit | raw TCP |";
    std::string rule = "| --- | --- | --- |";
    for (const Impl& impl : impls) {
        header += " " + impl.label + " |";
        rule += " --- |";
    }
    header += " here / raw TCP |";
    rule += " --- |";
    for (size_t i = 1; i < impls.size(); ++i) {
        header += " here / " + impls[i].label + " | " + impls[i].label + " / raw TCP |";
        rule += " --- | --- |";
    }
    header += " goal |";
    rule += " --- |";
    printf("%s\n%s\n", header.c_str(), rule.c_str());
    for (const Row& row : kRows) {
        if (std::find(chosen.begin(), chosen.end(), row.scenario) == chosen.end()) {
            continue;
        }
        const double scale = Scale(row.unit);
        const std::vector<Measurement>& here = results[impls[0].label][row.key];
        const std::vector<Measurement>* raw = row.raw != NULL ? &results["raw"][row.key] : NULL;
        std::string line = std::string("| ") + row.label + " | " + row.unit + " | " +
                           (raw != NULL ? Cell(Summarize(*raw), scale) : "-") + " |";
        for (const Impl& impl : impls) {
            line += " " + Cell(Summarize(results[impl.label][row.key]), scale) + " |";
        }
        line += " " + (raw != NULL ? Cell(Summarize(Ratios(here, *raw)), 1) : "-") + " |";
        for (size_t i = 1; i < impls.size(); ++i) {
            const std::vector<Measurement>& other = results[impls[i].label][row.key];
            // Memory: lower is better, so brpc / here reads as "x better".
            line += " " + Cell(Summarize(row.lower_is_better ? Ratios(other, here) : Ratios(here, other)), 1) +
                    " | " + (raw != NULL ? Cell(Summarize(Ratios(other, *raw)), 1) : "-") + " |";
        }
        line += std::string(" ") + row.goal_text + " |";
        printf("%s\n", line.c_str());
    }
    printf("\nmedian (min-max) over %d run(s) (64 B: %d) of %.1f s each after %.1f s of warm-up; every figure\n"
           "from fresh server and client processes; GB = 1e9 bytes, M = 1e6. Memory and CPU ratios are brpc / here.\n",
           runs, runs_64, seconds, kWarmupSeconds);
    if (std::find(chosen.begin(), chosen.end(), "64") != chosen.end()) {
        printf("\n64 B, every run (M msg/s):\n");
        for (const Impl& impl : impls) {
            printf("- %s: %s\n", impl.label.c_str(), RunsList(results[impl.label]["64"], 1e-6).c_str());
        }
        printf("- raw TCP: %s\n", RunsList(results["raw"]["64"], 1e-6).c_str());
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc == 2 && std::string(argv[1]) == "--serve") {
        Serve();
    }
    if (argc == 5 && std::string(argv[1]) == "--client") {
        Client(argv[2], atoi(argv[3]), atoi(argv[4]));
    }
    return Drive(argc, argv);
}
