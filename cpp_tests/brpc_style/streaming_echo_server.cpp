// A streaming server written as brpc's streaming example is: Echo accepts
// the client's stream with StreamAccept and one StreamInputHandler shared by
// every stream. Each stream carries numbered messages ("<seq> filler"); on
// the message "END" the server answers on the same stream with what it
// counted: "received N in order", or where the order broke.
//
//   brpc_style_streaming_echo_server --port=0 --port_file=F [--expect_streams=N]
//
// Exits 0 when asked to quit if at least --expect_streams streams were
// accepted, every one of them closed (on_closed ran before Join returned)
// and none failed or saw messages out of order.

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>

#include <gflags/gflags.h>

#include <brpc/server.h>
#include <brpc/stream.h>
#include <butil/logging.h>

#include "echo.pb.h"
#include "port_file.h"

DEFINE_int32(port, 0, "TCP port of this server (0: any free one)");
DEFINE_string(port_file, "", "Where to write the port listened on");
DEFINE_int32(expect_streams, 1, "Exit 1 when fewer streams were accepted");

namespace {

class StreamReceiver : public brpc::StreamInputHandler {
public:
    int on_received_messages(brpc::StreamId id, butil::IOBuf* const messages[],
                             size_t size) override {
        for (size_t i = 0; i < size; ++i) {
            const std::string text = messages[i]->to_string();
            if (text == "END") {
                Answer(id);
                continue;
            }
            std::lock_guard<std::mutex> lock(mutex_);
            Counts& counts = streams_[id];
            const unsigned long long seq = strtoull(text.c_str(), NULL, 10);
            if (seq != counts.received && counts.out_of_order_at < 0) {
                LOG(ERROR) << "Stream " << id << ": message " << seq << " arrived at position "
                           << counts.received;
                counts.out_of_order_at = (long long)counts.received;
            }
            ++counts.received;
        }
        return 0;
    }

    void on_idle_timeout(brpc::StreamId id) override {
        LOG(INFO) << "Stream " << id << " has no data transmission for a while";
    }

    void on_closed(brpc::StreamId id) override {
        std::lock_guard<std::mutex> lock(mutex_);
        ++closed_;
        LOG(INFO) << "Stream " << id << " is closed after " << streams_[id].received
                  << " messages";
    }

    void on_failed(brpc::StreamId id, int error_code, const std::string& error_text) override {
        std::lock_guard<std::mutex> lock(mutex_);
        ++failed_;
        LOG(ERROR) << "Stream " << id << " failed: [" << error_code << "] " << error_text;
    }

    void Accepted() {
        std::lock_guard<std::mutex> lock(mutex_);
        ++accepted_;
    }

    // True when every accepted stream ended well.
    bool AllWell() {
        std::lock_guard<std::mutex> lock(mutex_);
        bool in_order = true;
        for (const auto& stream : streams_) {
            in_order = in_order && stream.second.out_of_order_at < 0;
        }
        LOG(INFO) << "Streams accepted: " << accepted_ << ", closed: " << closed_
                  << ", failed: " << failed_ << ", in order: " << (in_order ? "yes" : "no");
        return accepted_ >= FLAGS_expect_streams && closed_ == accepted_ &&
               failed_ == 0 && in_order;
    }

private:
    struct Counts {
        Counts() : received(0), out_of_order_at(-1) {}
        unsigned long long received;
        long long out_of_order_at;
    };

    void Answer(brpc::StreamId id) {
        std::string summary;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const Counts& counts = streams_[id];
            summary = counts.out_of_order_at < 0
                          ? "received " + std::to_string(counts.received) + " in order"
                          : "out of order at " + std::to_string(counts.out_of_order_at);
        }
        butil::IOBuf answer;
        answer.append(summary);
        if (brpc::StreamWrite(id, answer) != 0) {
            LOG(ERROR) << "Fail to answer on stream " << id;
        }
    }

    std::mutex mutex_;
    std::map<brpc::StreamId, Counts> streams_;
    int accepted_ = 0;
    int closed_ = 0;
    int failed_ = 0;
};

}  // namespace

namespace example {

class StreamingEchoService : public EchoService {
public:
    explicit StreamingEchoService(StreamReceiver* receiver) : receiver_(receiver) {}

    void Echo(google::protobuf::RpcController* controller, const EchoRequest* request,
              EchoResponse* response, google::protobuf::Closure* done) override {
        // Sends the response (and so accepts the stream) when this returns.
        brpc::ClosureGuard done_guard(done);
        brpc::Controller* cntl = static_cast<brpc::Controller*>(controller);
        brpc::StreamOptions stream_options;
        stream_options.handler = receiver_;
        brpc::StreamId stream;
        if (brpc::StreamAccept(&stream, *cntl, &stream_options) != 0) {
            cntl->SetFailed("Fail to accept stream");
            return;
        }
        receiver_->Accepted();
        response->set_message("Accepted stream for " + request->message());
    }

private:
    StreamReceiver* receiver_;
};

}  // namespace example

int main(int argc, char* argv[]) {
    GFLAGS_NAMESPACE::ParseCommandLineFlags(&argc, &argv, true);

    // Outlives the server: its streams' callbacks end before Join returns.
    StreamReceiver receiver;
    brpc::Server server;
    example::StreamingEchoService echo_service(&receiver);
    if (server.AddService(&echo_service, brpc::SERVER_DOESNT_OWN_SERVICE) != 0) {
        LOG(ERROR) << "Fail to add service";
        return -1;
    }
    brpc::ServerOptions options;
    if (server.Start(FLAGS_port, &options) != 0) {
        LOG(ERROR) << "Fail to start EchoServer";
        return -1;
    }
    if (!brpc_style::WritePortFile(FLAGS_port_file, server.listen_address().port)) {
        return -1;
    }
    server.RunUntilAskedToQuit();
    return receiver.AllWell() ? 0 : 1;
}
