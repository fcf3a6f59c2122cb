// A streaming client written as brpc's streaming example is: StreamCreate
// before the call, the call, then StreamWrite of many messages (StreamWait
// when the window is full), and StreamClose. Messages are "<seq> filler";
// a last "END" asks the server for what it counted, answered on the stream.
//
//   brpc_style_streaming_echo_client --server=127.0.0.1:PORT [--messages=N]
//
// Exit code 0 when the server counted every message in order and the
// stream closed (on_closed ran, nothing failed).

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

#include <gflags/gflags.h>

#include <brpc/channel.h>
#include <brpc/stream.h>
#include <butil/logging.h>

#include "echo.pb.h"

DEFINE_string(server, "0.0.0.0:8001", "IP Address of server");
DEFINE_int32(timeout_ms, 10000, "RPC timeout in milliseconds");
DEFINE_int32(max_retry, 3, "Max retries(not including the first RPC)");
DEFINE_int32(messages, 10000, "Number of messages to write");
DEFINE_int32(message_size, 64, "Bytes per message (at least the number)");
DEFINE_int32(wait_s, 120, "Longest wait for the answer and for on_closed");

namespace {

class AnswerReceiver : public brpc::StreamInputHandler {
public:
    int on_received_messages(brpc::StreamId, butil::IOBuf* const messages[],
                             size_t size) override {
        std::lock_guard<std::mutex> lock(mutex_);
        for (size_t i = 0; i < size; ++i) {
            answer_ = messages[i]->to_string();
            answered_ = true;
        }
        changed_.notify_all();
        return 0;
    }

    void on_idle_timeout(brpc::StreamId id) override {
        LOG(INFO) << "Stream " << id << " has no data transmission for a while";
    }

    void on_closed(brpc::StreamId id) override {
        std::lock_guard<std::mutex> lock(mutex_);
        LOG(INFO) << "Stream " << id << " is closed";
        closed_ = true;
        changed_.notify_all();
    }

    void on_failed(brpc::StreamId id, int error_code, const std::string& error_text) override {
        std::lock_guard<std::mutex> lock(mutex_);
        LOG(ERROR) << "Stream " << id << " failed: [" << error_code << "] " << error_text;
        failed_ = true;
    }

    // The server's answer, or "" after --wait_s.
    std::string WaitAnswer() {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait_for(lock, std::chrono::seconds(FLAGS_wait_s), [this] { return answered_; });
        return answer_;
    }

    // True once on_closed ran without on_failed, within --wait_s.
    bool WaitClosedWell() {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait_for(lock, std::chrono::seconds(FLAGS_wait_s), [this] { return closed_; });
        return closed_ && !failed_;
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    std::string answer_;
    bool answered_ = false;
    bool closed_ = false;
    bool failed_ = false;
};

// Writes `text`, waiting while the window is full. 0 or the error.
int WriteMessage(brpc::StreamId stream, const std::string& text) {
    butil::IOBuf message;
    message.append(text);
    while (true) {
        const int rc = brpc::StreamWrite(stream, message);
        if (rc != EAGAIN) {
            return rc;
        }
        const int wait_rc = brpc::StreamWait(stream, NULL);
        if (wait_rc != 0) {
            return wait_rc;
        }
    }
}

}  // namespace

int main(int argc, char* argv[]) {
    GFLAGS_NAMESPACE::ParseCommandLineFlags(&argc, &argv, true);

    brpc::Channel channel;
    brpc::ChannelOptions options;
    options.protocol = brpc::PROTOCOL_BAIDU_STD;
    options.timeout_ms = FLAGS_timeout_ms;
    options.max_retry = FLAGS_max_retry;
    if (channel.Init(FLAGS_server.c_str(), &options) != 0) {
        LOG(ERROR) << "Fail to initialize channel";
        return -1;
    }
    example::EchoService_Stub stub(&channel);

    AnswerReceiver receiver;
    brpc::Controller cntl;
    brpc::StreamId stream;
    brpc::StreamOptions stream_options;
    stream_options.handler = &receiver;
    if (brpc::StreamCreate(&stream, cntl, &stream_options) != 0) {
        LOG(ERROR) << "Fail to create stream";
        return -1;
    }
    example::EchoRequest request;
    example::EchoResponse response;
    request.set_message("I'm a RPC to connect stream");
    stub.Echo(&cntl, &request, &response, NULL);
    if (cntl.Failed()) {
        LOG(ERROR) << "Fail to connect stream, " << cntl.ErrorText();
        return -1;
    }
    LOG(INFO) << "Connected: " << response.message();

    for (int i = 0; i < FLAGS_messages; ++i) {
        std::string text = std::to_string(i) + " ";
        if ((int)text.size() < FLAGS_message_size) {
            text.append(FLAGS_message_size - text.size(), 'x');
        }
        const int rc = WriteMessage(stream, text);
        if (rc != 0) {
            LOG(ERROR) << "Fail to write message " << i << ": " << rc;
            return 1;
        }
    }
    if (WriteMessage(stream, "END") != 0) {
        LOG(ERROR) << "Fail to write END";
        return 1;
    }
    const std::string answer = receiver.WaitAnswer();
    const std::string expected = "received " + std::to_string(FLAGS_messages) + " in order";
    const bool answered_well = (answer == expected);
    LOG_IF(ERROR, !answered_well) << "Server answered \"" << answer << "\", expected \""
                                  << expected << "\"";

    CHECK_EQ(0, brpc::StreamClose(stream));
    const bool closed_well = receiver.WaitClosedWell();
    LOG_IF(ERROR, !closed_well) << "Stream did not close well";
    LOG(INFO) << "StreamingEchoClient wrote " << FLAGS_messages << " messages: " << answer;
    return (answered_well && closed_well) ? 0 : 1;
}
