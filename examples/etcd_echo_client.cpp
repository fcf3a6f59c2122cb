// An echo client that finds its servers in etcd and spreads its calls over
// them with a load balancer (README "Service discovery with etcd"):
//
//   etcd_echo_client --naming=etcd://127.0.0.1:2379/services/echo --lb=rr
//
// Every --report_ms it prints how many calls each server answered in that
// window; at the end (after --calls calls, or on SIGINT/SIGTERM when
// --calls=0) the totals and the failures. Exits 1 when more than
// --max_failures calls failed.

#include <unistd.h>

#include <cstdio>
#include <map>
#include <sstream>
#include <string>

#include <gflags/gflags.h>

#include <brpc/channel.h>
#include <butil/logging.h>
#include <butil/time.h>

#include "etcd_echo.pb.h"

DEFINE_string(naming, "etcd://127.0.0.1:2379/services/echo", "Naming service URL");
DEFINE_string(lb, "rr", "Load balancer: rr, wrr, random, wr, la, c_murmurhash, c_md5");
DEFINE_int32(calls, 0, "Calls to make (0: until SIGINT/SIGTERM)");
DEFINE_int32(interval_ms, 10, "Pause between calls");
DEFINE_int32(report_ms, 1000, "How often to print the calls per server");
DEFINE_int32(timeout_ms, 1000, "RPC timeout in milliseconds");
DEFINE_int32(max_retry, 3, "Retries of a failed call, on another server when there is one");
DEFINE_int64(max_failures, 0, "Exit 1 when more calls failed");

static std::string Counts(const std::map<std::string, int64_t>& counts) {
    std::ostringstream out;
    for (std::map<std::string, int64_t>::const_iterator it = counts.begin(); it != counts.end(); ++it) {
        out << " " << it->first << "=" << it->second;
    }
    return out.str();
}

int main(int argc, char* argv[]) {
    GFLAGS_NAMESPACE::ParseCommandLineFlags(&argc, &argv, true);

    brpc::Channel channel;
    brpc::ChannelOptions options;
    options.timeout_ms = FLAGS_timeout_ms;
    options.max_retry = FLAGS_max_retry;
    if (channel.Init(FLAGS_naming.c_str(), FLAGS_lb.c_str(), &options) != 0) {
        LOG(ERROR) << "Fail to initialize the channel to " << FLAGS_naming;
        return 1;
    }
    example::EchoService_Stub stub(&channel);

    std::map<std::string, int64_t> window, total;
    int64_t calls = 0, failures = 0;
    int64_t last_report_us = butil::gettimeofday_us();
    while ((FLAGS_calls == 0 || calls < FLAGS_calls) && !brpc::IsAskedToQuit()) {
        example::EchoRequest request;
        example::EchoResponse response;
        brpc::Controller cntl;
        request.set_message("hello " + std::to_string(calls));
        stub.Echo(&cntl, &request, &response, NULL);
        ++calls;
        if (cntl.Failed() || response.message() != request.message()) {
            LOG(WARNING) << "Call " << calls << " failed: " << cntl.ErrorText();
            ++failures;
        } else {
            const std::string server = butil::endpoint2str(cntl.remote_side()).c_str();
            ++window[server];
            ++total[server];
        }
        if (butil::gettimeofday_us() - last_report_us >= FLAGS_report_ms * 1000LL) {
            printf("window:%s failed=%lld\n", Counts(window).c_str(), (long long)failures);
            fflush(stdout);
            window.clear();
            last_report_us = butil::gettimeofday_us();
        }
        if (FLAGS_interval_ms > 0) {
            usleep(FLAGS_interval_ms * 1000);
        }
    }
    printf("total:%s calls=%lld failed=%lld\n", Counts(total).c_str(), (long long)calls, (long long)failures);
    return failures <= FLAGS_max_failures ? 0 : 1;
}
