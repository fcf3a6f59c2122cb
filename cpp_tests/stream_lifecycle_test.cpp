// The seed scenario of DESIGN.md, one TEST per row: a stream written to
// before it connected, closed before it connected, whose connection drops
// during the setup call, and whose setup response arrives after it closed.
// (The CheckConnectedAndKeepWrite row is socket_test.cpp's.)

#include <algorithm>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "stream_test_support.h"

namespace {

using namespace stream_test;

TEST(StreamLifecycle, WriteBeforeConnectIsAcceptedAndQueuedUntilTheWindowIsFull) {
    RecordingHandler handler;
    brpc::StreamOptions options;
    options.handler = &handler;
    options.max_buf_size = 4096;
    brpc::StreamId id = brpc::INVALID_STREAM_ID;
    {
        brpc::Controller cntl;
        ASSERT_EQ(0, brpc::StreamCreate(&id, cntl, &options));
        brpc::ScopedStream guard(id);
        const butil::IOBuf message = Buf(std::string(64, 'q'));
        for (int i = 0; i < 4096 / 64; ++i) {
            ASSERT_EQ(0, brpc::StreamWrite(id, message)) << "write " << i;
        }
        EXPECT_EQ(EAGAIN, brpc::StreamWrite(id, message));
        EXPECT_EQ(EAGAIN, brpc::StreamWrite(id, Buf("x")));
        // Waiting cannot succeed: nothing connects the stream.
        const timespec due = RealtimeIn(30);
        EXPECT_EQ(ETIMEDOUT, brpc::StreamWait(id, &due));
    }
    ASSERT_TRUE(handler.WaitClosed(id));
}

TEST(StreamLifecycle, WritesQueuedBeforeConnectGoOutFirstAndInOrder) {
    RecordingHandler server_handler;
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    AcceptingService accepting(server_options);
    LoopbackServer server(&accepting.service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));

    brpc::Controller cntl;
    brpc::StreamId id = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&id, cntl, NULL));
    brpc::ScopedStream guard(id);
    for (int i = 0; i < 10; ++i) {
        ASSERT_EQ(0, brpc::StreamWrite(id, Buf("m" + std::to_string(i))));
    }
    CallOpen(channel, cntl);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    for (int i = 10; i < 20; ++i) {
        ASSERT_EQ(0, WriteWaiting(id, Buf("m" + std::to_string(i))));
    }
    ASSERT_EQ(1u, accepting.accepted_ids().size());
    const brpc::StreamId server_id = accepting.accepted_ids()[0];
    ASSERT_TRUE(WaitFor([&] { return server_handler.received_count(server_id) == 20; }));
    const std::vector<std::string> got = server_handler.received(server_id);
    for (int i = 0; i < 20; ++i) {
        EXPECT_EQ("m" + std::to_string(i), got[i]);
    }
    EXPECT_EQ(0, brpc::StreamClose(guard.release()));
    ASSERT_TRUE(server_handler.WaitClosed(server_id));
    ExpectClosedCleanly(server_handler.lifecycle(server_id));
}

TEST(StreamLifecycle, CloseBeforeConnectReportsTheDroppedWritesThenCloses) {
    // Earlier tests' connections may still be going away: let them.
    WaitFor([] { return brpc_stream_live_count() == 0 && brpc_socket_live_count() == 0; }, 2);
    const size_t streams_before = brpc_stream_live_count();
    const size_t sockets_before = brpc_socket_live_count();
    RecordingHandler handler;
    brpc::StreamOptions options;
    options.handler = &handler;
    brpc::StreamId id = brpc::INVALID_STREAM_ID;
    std::string log;
    {
        brpc::Controller cntl;
        ASSERT_EQ(0, brpc::StreamCreate(&id, cntl, &options));
        for (int i = 0; i < 3; ++i) {
            ASSERT_EQ(0, brpc::StreamWrite(id, Buf("hello")));
        }
        testing::internal::CaptureStderr();
        EXPECT_EQ(0, brpc::StreamClose(id));
        const bool closed = handler.WaitClosed(id);
        log = testing::internal::GetCapturedStderr();
        ASSERT_TRUE(closed);
        EXPECT_EQ(EINVAL, brpc::StreamWrite(id, Buf("late")));
        EXPECT_EQ(EINVAL, brpc::StreamClose(id));
        const timespec due = RealtimeIn(1000);
        EXPECT_EQ(EINVAL, brpc::StreamWait(id, &due));
    }
    int code = 0;
    std::string text;
    ExpectFailedThenClosed(handler.lifecycle(id), &code, &text);
    EXPECT_EQ(ECONNRESET, code);
    EXPECT_TRUE(Names(text, 3, "message")) << text;
    EXPECT_TRUE(Names(text, 15, "byte")) << text;
    EXPECT_EQ(0, handler.count(Event::kMessages));
    EXPECT_EQ(std::string::npos, log.find("Check failed")) << log;
    EXPECT_EQ(std::string::npos, log.find("panicked")) << log;
    EXPECT_LE(std::count(log.begin(), log.end(), '\n'), 1) << log;
    // Nothing else arrives later.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(2u, handler.lifecycle(id).size()) << Describe(handler.lifecycle(id));
    EXPECT_TRUE(WaitFor([&] {
        return brpc_stream_live_count() <= streams_before && brpc_socket_live_count() <= sockets_before;
    })) << "streams " << brpc_stream_live_count() << " (was " << streams_before << "), sockets "
        << brpc_socket_live_count() << " (was " << sockets_before << ")";
}

TEST(StreamLifecycle, PeerDroppingTheConnectionDuringSetupFailsTheCallAndTheStream) {
    // Reads part of the request, then closes the connection.
    RawPeer peer([](RawConnection& conn) {
        Frame request;
        conn.Next(&request);
    });
    RecordingHandler handler;
    brpc::StreamOptions options;
    options.handler = &handler;
    brpc::ChannelOptions channel_options;
    channel_options.max_retry = 0;
    channel_options.timeout_ms = 5000;
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(peer.address().c_str(), &channel_options));

    brpc::Controller cntl;
    brpc::StreamId id = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&id, cntl, &options));
    ASSERT_EQ(0, brpc::StreamWrite(id, Buf("early1")));
    ASSERT_EQ(0, brpc::StreamWrite(id, Buf("early2")));
    CallOpen(channel, cntl);
    ASSERT_TRUE(cntl.Failed());
    EXPECT_TRUE(cntl.ErrorCode() == brpc::EEOF || cntl.ErrorCode() == ECONNRESET) << cntl.ErrorCode();
    EXPECT_FALSE(cntl.ErrorText().empty());
    ASSERT_TRUE(handler.WaitClosed(id));
    int code = 0;
    std::string text;
    ExpectFailedThenClosed(handler.lifecycle(id), &code, &text);
    EXPECT_EQ(cntl.ErrorCode(), code);
    EXPECT_NE(std::string::npos, text.find(cntl.ErrorText())) << "stream: '" << text << "', call: '"
                                                              << cntl.ErrorText() << "'";
    EXPECT_TRUE(Names(text, 2, "message")) << text;
    EXPECT_TRUE(Names(text, 12, "byte")) << text;
    EXPECT_EQ(EINVAL, brpc::StreamWrite(id, Buf("late")));
}

TEST(StreamLifecycle, ResponseArrivingAfterTheStreamClosedStillCompletesTheCall) {
    RecordingHandler server_handler;
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    std::mutex mu;
    google::protobuf::Closure* pending_done = NULL;
    brpc::StreamId server_id = brpc::INVALID_STREAM_ID;
    // Accepts, then leaves the response to the test.
    FunctionService service([&](brpc::Controller* cntl, const bench::OpenRequest*, bench::OpenResponse* response,
                                google::protobuf::Closure* done) {
        brpc::StreamId accepted = brpc::INVALID_STREAM_ID;
        if (brpc::StreamAccept(&accepted, *cntl, &server_options) != 0) {
            cntl->SetFailed(EINVAL, "StreamAccept failed");
            done->Run();
            return;
        }
        response->set_status("accepted");
        std::lock_guard<std::mutex> g(mu);
        server_id = accepted;
        pending_done = done;
    });
    LoopbackServer server(&service);
    brpc::Channel channel;
    brpc::ChannelOptions channel_options;
    channel_options.timeout_ms = 5000;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), &channel_options));

    RecordingHandler client_handler;
    brpc::StreamOptions client_options;
    client_options.handler = &client_handler;
    brpc::Controller cntl;
    brpc::StreamId id = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&id, cntl, &client_options));
    bench::StreamService_Stub stub(&channel);
    bench::OpenRequest request;
    bench::OpenResponse response;
    DoneFlag call_done;
    stub.Open(&cntl, &request, &response, &call_done);
    ASSERT_TRUE(WaitFor([&] {
        std::lock_guard<std::mutex> g(mu);
        return pending_done != NULL;
    }));

    EXPECT_EQ(0, brpc::StreamClose(id));
    ASSERT_TRUE(client_handler.WaitClosed(id));
    {
        std::lock_guard<std::mutex> g(mu);
        pending_done->Run();
    }
    ASSERT_TRUE(WaitFor([&] { return call_done.runs.load() == 1; }));
    EXPECT_FALSE(cntl.Failed()) << cntl.ErrorCode() << " " << cntl.ErrorText();
    EXPECT_EQ("accepted", response.status());
    // The client stream stays closed, and closed once.
    EXPECT_EQ(EINVAL, brpc::StreamWrite(id, Buf("late")));
    ExpectClosedCleanly(client_handler.lifecycle(id));
    // The server's stream was reset.
    ASSERT_TRUE(server_handler.WaitClosed(server_id));
    int code = 0;
    std::string text;
    ExpectFailedThenClosed(server_handler.lifecycle(server_id), &code, &text);
    EXPECT_EQ(ECONNRESET, code);
    EXPECT_FALSE(text.empty());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(1, call_done.runs.load());
}

// The server's handler is deleted right after Join: its callbacks all ran
// before (on_closed lingers to make a late one likely), so nothing touches
// it afterwards (ASan, in the sanitized build, would catch a use after free).
TEST(StreamLifecycle, AServerHandlerDestroyedRightAfterJoinIsNeverCalledAgain) {
    struct LingeringHandler : RecordingHandler {
        void on_closed(brpc::StreamId id) override {
            usleep(50 * 1000);
            RecordingHandler::on_closed(id);
        }
    };
    LingeringHandler* handler = new LingeringHandler;
    brpc::StreamOptions server_options;
    server_options.handler = handler;
    server_options.messages_in_batch = 16;
    AcceptingService accepting(server_options);
    brpc::Server* server = new brpc::Server;
    ASSERT_EQ(0, server->AddService(&accepting.service, brpc::SERVER_DOESNT_OWN_SERVICE));
    ASSERT_EQ(0, server->Start("127.0.0.1:0", NULL));
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(("127.0.0.1:" + std::to_string(server->listen_address().port)).c_str(), NULL));

    const int kStreams = 4, kMessages = 500;
    std::vector<brpc::StreamId> ids;
    for (int s = 0; s < kStreams; ++s) {
        brpc::Controller cntl;
        brpc::StreamId id = brpc::INVALID_STREAM_ID;
        brpc::StreamOptions options;
        options.max_buf_size = 0;
        ASSERT_EQ(0, brpc::StreamCreate(&id, cntl, &options));
        CallOpen(channel, cntl);
        ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
        ids.push_back(id);
    }
    for (int i = 0; i < kMessages; ++i) {
        for (size_t s = 0; s < ids.size(); ++s) {
            ASSERT_EQ(0, brpc::StreamWrite(ids[s], Buf("m" + std::to_string(i))));
        }
    }
    for (size_t s = 0; s < ids.size(); ++s) {
        ASSERT_EQ(0, brpc::StreamClose(ids[s]));
    }
    server->Stop(0);
    server->Join();
    const brpc::StreamIds accepted = accepting.accepted_ids();
    ASSERT_EQ((size_t)kStreams, accepted.size());
    for (size_t s = 0; s < accepted.size(); ++s) {
        ExpectClosedCleanly(handler->lifecycle(accepted[s]));
        EXPECT_EQ((size_t)kMessages, handler->received_count(accepted[s]));
    }
    delete handler;
    // Time for a callback that would come late (none may).
    usleep(300 * 1000);
    delete server;
}

}  // namespace
