// Our brpc::Server against the bytes an unmodified brpc client sent
// (../shared/wire captures, replayed frame by frame over raw TCP): its
// answers must decode like the captured brpc server's, ids aside.

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "stream_test_support.h"

namespace {

using namespace stream_test;
using brpc_meta_test::RpcMeta;
using brpc_meta_test::StreamFrameMeta;

bool HasCaptures(const std::string& path) {
    std::ifstream probe(path + "/README.md");
    return probe.good();
}

// BRPC_WIRE_DIR, else ../shared/wire beside the repository, else the
// project's shared folder; "" when none has the captures.
std::string WireDir() {
    const char* env = getenv("BRPC_WIRE_DIR");
    if (env != NULL && *env != '\0') {
        return env;
    }
    const std::string candidates[] = {std::string(BRPC_STREAM_ROOT) + "/../shared/wire", "/work/shared/wire"};
    for (const std::string& dir : candidates) {
        if (HasCaptures(dir)) {
            return dir;
        }
    }
    return std::string();
}

bool ReadCapture(const std::string& name, std::vector<Frame>* frames) {
    const std::string dir = WireDir();
    std::ifstream in(dir + "/" + name, std::ios::binary);
    if (!in) {
        return false;
    }
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return CutFrames(&bytes, frames) && bytes.empty();
}

// The PRPC frame inside a setup response's DATA payload.
bool EmbeddedRpc(const Frame& data, Frame* rpc) {
    std::string payload = data.payload;
    std::vector<Frame> inner;
    if (!CutFrames(&payload, &inner) || inner.size() != 1 || !payload.empty() || inner[0].magic != "PRPC") {
        return false;
    }
    *rpc = inner[0];
    return true;
}

// Equal as a receiver sees them: unset fields read as their defaults.
::testing::AssertionResult DecodesAlike(const google::protobuf::Message& expected,
                                       const google::protobuf::Message& actual) {
    google::protobuf::util::MessageDifferencer differ;
    differ.set_message_field_comparison(google::protobuf::util::MessageDifferencer::EQUIVALENT);
    std::string report;
    differ.ReportDifferencesToString(&report);
    if (differ.Compare(expected, actual)) {
        return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "expected {" << expected.ShortDebugString() << "}, got {"
                                         << actual.ShortDebugString() << "}: " << report;
}

// A frame's bytes exactly as they were on the wire.
std::string Verbatim(const Frame& f) {
    const uint32_t body = htonl((uint32_t)(f.meta.size() + f.payload.size()));
    const uint32_t meta_size = htonl((uint32_t)f.meta.size());
    std::string out = f.magic;
    out.append(reinterpret_cast<const char*>(&body), 4);
    out.append(reinterpret_cast<const char*>(&meta_size), 4);
    return out + f.meta + f.payload;
}

// Rewrites a captured client frame to our server's stream id.
std::string Readdressed(const Frame& captured, int64_t server_stream_id) {
    StreamFrameMeta meta = StreamMeta(captured);
    meta.set_stream_id(server_stream_id);
    return EncodeFrame("STRM", meta, captured.payload);
}

// Open as the captured server did it: accepts, answers "accepted", writes
// "done" once it saw `expect_messages` messages; closes when the client does.
struct CapturedServerBehaviour {
    CapturedServerBehaviour()
        : service([this](brpc::Controller* cntl, const bench::OpenRequest* request, bench::OpenResponse* response,
                         google::protobuf::Closure* done) {
              brpc::ClosureGuard guard(done);
              expect_messages = request->expect_messages();
              brpc::StreamOptions options;
              options.handler = &handler;
              brpc::StreamId id = brpc::INVALID_STREAM_ID;
              if (brpc::StreamAccept(&id, *cntl, &options) != 0) {
                  cntl->SetFailed(EINVAL, "StreamAccept failed");
                  return;
              }
              accepted = id;
              response->set_status("accepted");
          }) {
        handler.on_messages = [this](brpc::StreamId id, const std::vector<std::string>&) {
            if (handler.received_count(id) == (size_t)expect_messages.load()) {
                EXPECT_EQ(0, brpc::StreamWrite(id, Buf("done")));
            }
        };
    }
    RecordingHandler handler;
    std::atomic<int> expect_messages{-1};
    std::atomic<brpc::StreamId> accepted{brpc::INVALID_STREAM_ID};
    FunctionService service;
};

TEST(StreamWire, CapturesAreFound) {
    ASSERT_FALSE(WireDir().empty()) << "no wire captures: set BRPC_WIRE_DIR (scripts/test.sh does)";
    std::vector<Frame> frames;
    ASSERT_TRUE(ReadCapture("open_write_close.client_to_server.bin", &frames)) << WireDir();
    EXPECT_EQ(6u, frames.size());
}

TEST(StreamWire, ReplayedBrpcClientStreamIsAnsweredAsBrpcServerAnswered) {
    std::vector<Frame> client;
    std::vector<Frame> captured;
    ASSERT_TRUE(ReadCapture("open_write_close.client_to_server.bin", &client)) << "dir: '" << WireDir() << "'";
    ASSERT_TRUE(ReadCapture("open_write_close.server_to_client.bin", &captured));
    ASSERT_EQ(6u, client.size());
    ASSERT_EQ("PRPC", client[0].magic);
    const RpcMeta request_meta = RpcMetaOf(client[0]);
    ASSERT_EQ(1, request_meta.stream_settings().stream_id());
    ASSERT_EQ(8589934594LL, request_meta.correlation_id());

    CapturedServerBehaviour behaviour;
    LoopbackServer server(&behaviour.service);
    RawConnection conn(ConnectLoopback(server.port()));
    ASSERT_GE(conn.fd(), 0);

    // 1. The request, verbatim: the answer is the RPC response inside DATA.
    ASSERT_TRUE(conn.Send(Verbatim(client[0])));
    Frame setup;
    ASSERT_TRUE(conn.Next(&setup));
    ASSERT_EQ("STRM", setup.magic);
    const StreamFrameMeta setup_meta = StreamMeta(setup);
    const int64_t our_id = setup_meta.source_stream_id();
    EXPECT_EQ(behaviour.accepted.load(), (brpc::StreamId)our_id);
    const StreamFrameMeta captured_setup_meta = StreamMeta(captured[0]);
    const int64_t their_id = captured_setup_meta.source_stream_id();
    StreamFrameMeta normalized = setup_meta;
    normalized.set_source_stream_id(their_id);
    EXPECT_TRUE(DecodesAlike(captured_setup_meta, normalized));

    Frame rpc;
    Frame captured_rpc;
    ASSERT_TRUE(EmbeddedRpc(setup, &rpc)) << "DATA payload is not one PRPC frame";
    ASSERT_TRUE(EmbeddedRpc(captured[0], &captured_rpc));
    RpcMeta response_meta = RpcMetaOf(rpc);
    EXPECT_EQ(our_id, response_meta.stream_settings().stream_id());
    response_meta.mutable_stream_settings()->set_stream_id(their_id);
    // Fields 10-12 are what newer peers add as zero/empty: not a difference.
    response_meta.clear_content_type();
    response_meta.clear_checksum_type();
    response_meta.clear_checksum_value();
    EXPECT_TRUE(DecodesAlike(RpcMetaOf(captured_rpc), response_meta));
    EXPECT_EQ(captured_rpc.payload, rpc.payload);

    // 2. Three messages; the server answers "done" and FEEDBACKs them.
    for (int i = 1; i <= 3; ++i) {
        ASSERT_EQ("STRM", client[i].magic);
        ASSERT_TRUE(conn.Send(Readdressed(client[i], our_id)));
    }
    std::vector<Frame> answers;
    int64_t consumed = 0;
    bool done_seen = false;
    while (!(done_seen && consumed == 15)) {
        Frame f;
        ASSERT_TRUE(conn.Next(&f, 5)) << "done: " << done_seen << ", consumed: " << consumed;
        const StreamFrameMeta m = StreamMeta(f);
        if (m.frame_type() == brpc_meta_test::FRAME_TYPE_FEEDBACK) {
            EXPECT_GT(m.feedback().consumed_size(), consumed);
            EXPECT_EQ(0, m.feedback().consumed_size() % 5) << "a feedback between messages";
            consumed = m.feedback().consumed_size();
        } else {
            done_seen = done_seen || f.payload == "done";
            answers.push_back(f);
        }
    }

    // 3. The client's FEEDBACK and CLOSE; the server closes its side too.
    ASSERT_TRUE(conn.Send(Readdressed(client[4], our_id)));
    ASSERT_TRUE(conn.Send(Readdressed(client[5], our_id)));
    for (;;) {
        Frame f;
        ASSERT_TRUE(conn.Next(&f, 5)) << "no CLOSE from the server";
        const StreamFrameMeta m = StreamMeta(f);
        EXPECT_NE(brpc_meta_test::FRAME_TYPE_RST, m.frame_type());
        if (m.frame_type() != brpc_meta_test::FRAME_TYPE_FEEDBACK) {
            answers.push_back(f);
        }
        if (m.frame_type() == brpc_meta_test::FRAME_TYPE_CLOSE) {
            break;
        }
    }

    // Ours and theirs, FEEDBACK aside (its batching is timing): DATA "done", CLOSE.
    std::vector<Frame> theirs;
    for (size_t i = 1; i < captured.size(); ++i) {
        if (StreamMeta(captured[i]).frame_type() != brpc_meta_test::FRAME_TYPE_FEEDBACK) {
            theirs.push_back(captured[i]);
        }
    }
    ASSERT_EQ(theirs.size(), answers.size());
    for (size_t i = 0; i < theirs.size(); ++i) {
        StreamFrameMeta ours = StreamMeta(answers[i]);
        EXPECT_EQ(our_id, ours.source_stream_id());
        ours.set_source_stream_id(their_id);
        EXPECT_TRUE(DecodesAlike(StreamMeta(theirs[i]), ours)) << "frame " << i;
        EXPECT_EQ(theirs[i].payload, answers[i].payload) << "frame " << i;
    }

    const brpc::StreamId server_stream = behaviour.accepted.load();
    ASSERT_TRUE(behaviour.handler.WaitClosed(server_stream));
    ExpectClosedCleanly(behaviour.handler.lifecycle(server_stream));
    const std::vector<std::string> got = behaviour.handler.received(server_stream);
    ASSERT_EQ(3u, got.size());
    for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(client[i + 1].payload, got[i]);
    }
}

TEST(StreamWire, ReplayedRejectedOpenGetsTheErrorInsideDataWithoutAStream) {
    std::vector<Frame> client;
    std::vector<Frame> captured;
    ASSERT_TRUE(ReadCapture("rejected_open.client_to_server.bin", &client)) << "dir: '" << WireDir() << "'";
    ASSERT_TRUE(ReadCapture("rejected_open.server_to_client.bin", &captured));
    ASSERT_EQ(1u, client.size());
    ASSERT_EQ(1u, captured.size());

    FunctionService service([](brpc::Controller* cntl, const bench::OpenRequest*, bench::OpenResponse*,
                               google::protobuf::Closure* done) {
        brpc::ClosureGuard guard(done);
        cntl->SetFailed(EPERM, "rejected by peer_server");
    });
    LoopbackServer server(&service);
    RawConnection conn(ConnectLoopback(server.port()));
    ASSERT_GE(conn.fd(), 0);
    ASSERT_TRUE(conn.Send(Verbatim(client[0])));
    Frame answer;
    ASSERT_TRUE(conn.Next(&answer));
    ASSERT_EQ("STRM", answer.magic);
    EXPECT_TRUE(DecodesAlike(StreamMeta(captured[0]), StreamMeta(answer)));
    EXPECT_EQ(-1, StreamMeta(answer).source_stream_id());

    Frame rpc;
    Frame captured_rpc;
    ASSERT_TRUE(EmbeddedRpc(answer, &rpc));
    ASSERT_TRUE(EmbeddedRpc(captured[0], &captured_rpc));
    const RpcMeta ours = RpcMetaOf(rpc);
    const RpcMeta theirs = RpcMetaOf(captured_rpc);
    EXPECT_EQ(theirs.response().error_code(), ours.response().error_code());
    EXPECT_NE(std::string::npos, ours.response().error_text().find("rejected by peer_server"))
        << ours.response().error_text();
    EXPECT_EQ(theirs.correlation_id(), ours.correlation_id());
    EXPECT_FALSE(ours.has_stream_settings());
    EXPECT_TRUE(rpc.payload.empty());
}

}  // namespace
