// brpc's streaming RPC through the facade, over real loopback TCP: the
// behaviours brpc's own test/brpc_streaming_rpc_unittest.cpp covers (echo,
// several streams per call, order, flow control and waiting, closing with
// the connection, RST, idle timeout, ping-pong, early server writes, create
// twice) and the API's edges (EBADF, accept without a stream, ScopedStream).

#include <algorithm>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "stream_test_support.h"

namespace {

using namespace stream_test;

std::string Number(uint32_t i) {
    const uint32_t network = htonl(i);
    return std::string(reinterpret_cast<const char*>(&network), sizeof(network));
}

uint32_t NumberOf(const std::string& s) {
    uint32_t network = 0;
    memcpy(&network, s.data(), std::min(s.size(), sizeof(network)));
    return ntohl(network);
}

// A server accepting with `server_options`, a channel to it, and one
// connected client stream made with `client_options`.
struct ConnectedStream {
    ConnectedStream(const brpc::StreamOptions& server_options, const brpc::StreamOptions* client_options)
        : accepting(server_options), server(&accepting.service) {
        brpc::ChannelOptions channel_options;
        channel_options.timeout_ms = 5000;
        EXPECT_EQ(0, channel.Init(server.address().c_str(), &channel_options));
        EXPECT_EQ(0, brpc::StreamCreate(&client_id, cntl, client_options));
        const bench::OpenResponse response = CallOpen(channel, cntl);
        EXPECT_FALSE(cntl.Failed()) << cntl.ErrorText();
        EXPECT_EQ("accepted", response.status());
        const brpc::StreamIds accepted = accepting.accepted_ids();
        EXPECT_EQ(1u, accepted.size());
        server_id = accepted.empty() ? brpc::INVALID_STREAM_ID : accepted[0];
    }
    AcceptingService accepting;
    LoopbackServer server;
    brpc::Channel channel;
    brpc::Controller cntl;
    brpc::StreamId client_id = brpc::INVALID_STREAM_ID;
    brpc::StreamId server_id = brpc::INVALID_STREAM_ID;
};

// Fills `id`'s window with 4-byte numbers from *next on; the count written.
int FillWindow(brpc::StreamId id, uint32_t* next) {
    int written = 0;
    while (brpc::StreamWrite(id, Buf(Number(*next))) == 0) {
        ++*next;
        ++written;
        if (written > 1000000) {
            break;  // no window at all: the caller's assertion reports it
        }
    }
    return written;
}

void ExpectNumbersInOrder(const std::vector<std::string>& got, uint32_t count) {
    ASSERT_EQ(count, got.size());
    for (uint32_t i = 0; i < count; ++i) {
        ASSERT_EQ(i, NumberOf(got[i])) << "message " << i;
    }
}

TEST(Stream, SanityEchoesMessagesBackInOrder) {
    RecordingHandler server_handler;
    RecordingHandler client_handler;
    server_handler.on_messages = [](brpc::StreamId id, const std::vector<std::string>& batch) {
        for (size_t i = 0; i < batch.size(); ++i) {
            EXPECT_EQ(0, WriteWaiting(id, Buf(batch[i])));
        }
    };
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    brpc::StreamOptions client_options;
    client_options.handler = &client_handler;
    ConnectedStream s(server_options, &client_options);
    ASSERT_TRUE(s.cntl.has_remote_stream());

    const int kMessages = 100;
    for (int i = 0; i < kMessages; ++i) {
        ASSERT_EQ(0, WriteWaiting(s.client_id, Buf("hello " + std::to_string(i))));
    }
    ASSERT_TRUE(WaitFor([&] { return client_handler.received_count(s.client_id) == (size_t)kMessages; }));
    const std::vector<std::string> echoed = client_handler.received(s.client_id);
    for (int i = 0; i < kMessages; ++i) {
        EXPECT_EQ("hello " + std::to_string(i), echoed[i]);
    }
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    ASSERT_TRUE(client_handler.WaitClosed(s.client_id));
    ASSERT_TRUE(server_handler.WaitClosed(s.server_id));
    ExpectClosedCleanly(client_handler.lifecycle(s.client_id));
    ExpectClosedCleanly(server_handler.lifecycle(s.server_id));
    EXPECT_EQ((size_t)kMessages, server_handler.received_count(s.server_id));
}

TEST(Stream, ManyStreamsPerCallCarryMessagesUpstream) {
    RecordingHandler server_handler;
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    AcceptingService accepting(server_options);
    LoopbackServer server(&accepting.service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));

    const int kStreams = 4;
    const uint32_t kMessages = 500;
    brpc::Controller cntl;
    brpc::StreamIds client_ids;
    ASSERT_EQ(0, brpc::StreamCreate(client_ids, kStreams, cntl, NULL));
    ASSERT_EQ((size_t)kStreams, client_ids.size());
    CallOpen(channel, cntl);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    const brpc::StreamIds server_ids = accepting.accepted_ids();
    ASSERT_EQ((size_t)kStreams, server_ids.size());

    // Stream k carries k*kMessages + i: the server side shows which client
    // stream each of its streams is paired with.
    for (uint32_t i = 0; i < kMessages; ++i) {
        for (int k = 0; k < kStreams; ++k) {
            ASSERT_EQ(0, WriteWaiting(client_ids[k], Buf(Number(k * kMessages + i))));
        }
    }
    for (int k = 0; k < kStreams; ++k) {
        ASSERT_TRUE(WaitFor([&] { return server_handler.received_count(server_ids[k]) == kMessages; }))
            << "stream " << k << " got " << server_handler.received_count(server_ids[k]);
        const std::vector<std::string> got = server_handler.received(server_ids[k]);
        for (uint32_t i = 0; i < kMessages; ++i) {
            ASSERT_EQ(k * kMessages + i, NumberOf(got[i])) << "stream " << k << " message " << i;
        }
    }
    for (int k = 0; k < kStreams; ++k) {
        EXPECT_EQ(0, brpc::StreamClose(client_ids[k]));
    }
    for (int k = 0; k < kStreams; ++k) {
        ASSERT_TRUE(server_handler.WaitClosed(server_ids[k]));
        ExpectClosedCleanly(server_handler.lifecycle(server_ids[k]));
    }
}

TEST(Stream, ManyStreamsPerCallCarryMessagesBothWaysPairedByPosition) {
    RecordingHandler server_handler;
    RecordingHandler client_handler;
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    const int kStreams = 3;
    const int kMessages = 50;
    // Accepts all, then writes "k:i" on its k-th stream.
    FunctionService service([&](brpc::Controller* cntl, const bench::OpenRequest*, bench::OpenResponse* response,
                                google::protobuf::Closure* done) {
        brpc::ClosureGuard guard(done);
        brpc::StreamIds ids;
        if (brpc::StreamAccept(ids, *cntl, &server_options) != 0) {
            cntl->SetFailed(EINVAL, "StreamAccept failed");
            return;
        }
        response->set_status(std::to_string(ids.size()));
        for (size_t k = 0; k < ids.size(); ++k) {
            for (int i = 0; i < kMessages; ++i) {
                EXPECT_EQ(0, brpc::StreamWrite(ids[k], Buf(std::to_string(k) + ":" + std::to_string(i))));
            }
        }
    });
    LoopbackServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    brpc::StreamOptions client_options;
    client_options.handler = &client_handler;
    brpc::Controller cntl;
    brpc::StreamIds client_ids;
    ASSERT_EQ(0, brpc::StreamCreate(client_ids, kStreams, cntl, &client_options));
    const bench::OpenResponse response = CallOpen(channel, cntl);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ(std::to_string(kStreams), response.status());

    for (int k = 0; k < kStreams; ++k) {
        ASSERT_TRUE(WaitFor([&] { return client_handler.received_count(client_ids[k]) == (size_t)kMessages; }))
            << "stream " << k << " got " << client_handler.received_count(client_ids[k]);
        const std::vector<std::string> got = client_handler.received(client_ids[k]);
        for (int i = 0; i < kMessages; ++i) {
            EXPECT_EQ(std::to_string(k) + ":" + std::to_string(i), got[i]);
        }
    }
    for (int k = 0; k < kStreams; ++k) {
        EXPECT_EQ(0, brpc::StreamClose(client_ids[k]));
        ASSERT_TRUE(client_handler.WaitClosed(client_ids[k]));
        ExpectClosedCleanly(client_handler.lifecycle(client_ids[k]));
    }
    ASSERT_TRUE(WaitFor([&] { return server_handler.count(Event::kClosed) == kStreams; }));
    EXPECT_EQ(0, server_handler.count(Event::kFailed));
}

TEST(Stream, TenThousandMessagesArriveInOrder) {
    RecordingHandler server_handler;
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    server_options.messages_in_batch = 100;
    ConnectedStream s(server_options, NULL);
    const uint32_t kMessages = 10000;
    for (uint32_t i = 0; i < kMessages; ++i) {
        ASSERT_EQ(0, WriteWaiting(s.client_id, Buf(Number(i)))) << i;
    }
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    // Close comes after every message: on_closed sees them all delivered.
    ASSERT_TRUE(server_handler.WaitClosed(s.server_id));
    ExpectNumbersInOrder(server_handler.received(s.server_id), kMessages);
    ExpectClosedCleanly(server_handler.lifecycle(s.server_id));
    EXPECT_EQ(0, server_handler.count(Event::kIdle));
}

TEST(Stream, MessagesInABatchNeverExceedMessagesInBatch) {
    RecordingHandler server_handler;
    size_t largest = 0;
    std::mutex mu;
    server_handler.on_messages = [&](brpc::StreamId, const std::vector<std::string>& batch) {
        std::lock_guard<std::mutex> g(mu);
        largest = std::max(largest, batch.size());
    };
    server_handler.Hold();  // lets messages pile up behind the first batch
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    server_options.messages_in_batch = 7;
    ConnectedStream s(server_options, NULL);
    for (uint32_t i = 0; i < 200; ++i) {
        ASSERT_EQ(0, WriteWaiting(s.client_id, Buf(Number(i))));
    }
    // Written is not yet received: give the bytes a moment to reach the
    // server, so that they wait there in more than one batch.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    server_handler.Release();
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    ASSERT_TRUE(server_handler.WaitClosed(s.server_id));
    ExpectNumbersInOrder(server_handler.received(s.server_id), 200);
    std::lock_guard<std::mutex> g(mu);
    EXPECT_LE(largest, 7u);
    EXPECT_GT(largest, 1u);
}

TEST(Stream, WriterBlockedOnAFullWindowResumesAfterThePeerConsumes) {
    RecordingHandler server_handler;
    server_handler.Hold();
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    brpc::StreamOptions client_options;
    const uint32_t kWindowMessages = 1000;
    client_options.max_buf_size = 4 * kWindowMessages;
    ConnectedStream s(server_options, &client_options);

    uint32_t next = 0;
    EXPECT_EQ((int)kWindowMessages, FillWindow(s.client_id, &next));
    EXPECT_EQ(EAGAIN, brpc::StreamWrite(s.client_id, Buf(Number(next))));
    const timespec soon = RealtimeIn(50);
    EXPECT_EQ(ETIMEDOUT, brpc::StreamWait(s.client_id, &soon));

    server_handler.Release();
    const timespec later = RealtimeIn(10000);
    EXPECT_EQ(0, brpc::StreamWait(s.client_id, &later));
    EXPECT_EQ(0, brpc::StreamWrite(s.client_id, Buf(Number(next++))));
    // A second round: held again, filled again, released again.
    ASSERT_TRUE(WaitFor([&] { return server_handler.received_count(s.server_id) == next; }));
    server_handler.Hold();
    EXPECT_EQ(0, brpc::StreamWait(s.client_id, &later));  // the first round's feedback
    EXPECT_GT(FillWindow(s.client_id, &next), 0);
    server_handler.Release();
    EXPECT_EQ(0, brpc::StreamWait(s.client_id, NULL));
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    ASSERT_TRUE(server_handler.WaitClosed(s.server_id));
    ExpectNumbersInOrder(server_handler.received(s.server_id), next);
    ExpectClosedCleanly(server_handler.lifecycle(s.server_id));
}

struct WritableResult {
    std::atomic<int> runs{0};
    std::atomic<int> error_code{-1};
    static void OnWritable(brpc::StreamId, void* arg, int error_code) {
        WritableResult* r = static_cast<WritableResult*>(arg);
        r->error_code = error_code;
        ++r->runs;
    }
};

TEST(Stream, AsyncStreamWaitRunsOnWritableOnceWithZeroWhenThePeerConsumes) {
    RecordingHandler server_handler;
    server_handler.Hold();
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    brpc::StreamOptions client_options;
    client_options.max_buf_size = 4 * 100;
    ConnectedStream s(server_options, &client_options);
    uint32_t next = 0;
    EXPECT_EQ(100, FillWindow(s.client_id, &next));

    WritableResult result;
    brpc::StreamWait(s.client_id, NULL, &WritableResult::OnWritable, &result);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(0, result.runs.load());
    server_handler.Release();
    ASSERT_TRUE(WaitFor([&] { return result.runs.load() > 0; }));
    EXPECT_EQ(0, result.error_code.load());
    EXPECT_EQ(0, brpc::StreamWrite(s.client_id, Buf(Number(next))));
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    ASSERT_TRUE(server_handler.WaitClosed(s.server_id));
    EXPECT_EQ(1, result.runs.load());
}

TEST(Stream, AsyncStreamWaitRunsOnWritableOnceWithEtimedoutWhileThePeerConsumesNothing) {
    RecordingHandler server_handler;
    server_handler.Hold();
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    brpc::StreamOptions client_options;
    client_options.max_buf_size = 4 * 100;
    ConnectedStream s(server_options, &client_options);
    uint32_t next = 0;
    EXPECT_EQ(100, FillWindow(s.client_id, &next));

    WritableResult result;
    const timespec due = RealtimeIn(20);
    brpc::StreamWait(s.client_id, &due, &WritableResult::OnWritable, &result);
    ASSERT_TRUE(WaitFor([&] { return result.runs.load() > 0; }));
    EXPECT_EQ(ETIMEDOUT, result.error_code.load());
    server_handler.Release();
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    ASSERT_TRUE(server_handler.WaitClosed(s.server_id));
    EXPECT_EQ(1, result.runs.load());
}

TEST(Stream, AsyncStreamWaitOnAnUnknownStreamRunsOnWritableWithEinval) {
    WritableResult result;
    brpc::StreamWait(brpc::INVALID_STREAM_ID, NULL, &WritableResult::OnWritable, &result);
    ASSERT_TRUE(WaitFor([&] { return result.runs.load() > 0; }));
    EXPECT_EQ(EINVAL, result.error_code.load());
    EXPECT_EQ(EINVAL, brpc::StreamWait(brpc::INVALID_STREAM_ID, NULL));
    EXPECT_EQ(EINVAL, brpc::StreamWrite(brpc::INVALID_STREAM_ID, Buf("x")));
    EXPECT_EQ(EINVAL, brpc::StreamClose(brpc::INVALID_STREAM_ID));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(1, result.runs.load());
}

TEST(Stream, CloseWakesWritersBlockedOnAFullWindowWithEinval) {
    RecordingHandler server_handler;
    server_handler.Hold();
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    brpc::StreamOptions client_options;
    client_options.max_buf_size = 4 * 100;
    ConnectedStream s(server_options, &client_options);
    uint32_t next = 0;
    EXPECT_EQ(100, FillWindow(s.client_id, &next));

    std::atomic<int> blocking_result{-1};
    std::thread waiter([&] { blocking_result = brpc::StreamWait(s.client_id, NULL); });
    WritableResult async_result;
    brpc::StreamWait(s.client_id, NULL, &WritableResult::OnWritable, &async_result);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(-1, blocking_result.load());
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    const bool woken = WaitFor([&] { return blocking_result.load() != -1 && async_result.runs.load() > 0; }, 2);
    server_handler.Release();  // lets the waiter go even if the close did not
    waiter.join();
    EXPECT_TRUE(woken);
    EXPECT_EQ(EINVAL, blocking_result.load());
    EXPECT_EQ(EINVAL, async_result.error_code.load());
    EXPECT_EQ(EINVAL, brpc::StreamWrite(s.client_id, Buf(Number(next))));
    ASSERT_TRUE(server_handler.WaitClosed(s.server_id));
    // Everything written before the close still arrived.
    ExpectNumbersInOrder(server_handler.received(s.server_id), next);
}

TEST(Stream, StreamsCloseWithTheConnectionWhenTheServerStops) {
    RecordingHandler server_handler;
    RecordingHandler client_handler;
    server_handler.Hold();  // the client's messages stay unconsumed
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    AcceptingService accepting(server_options);
    LoopbackServer server(&accepting.service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    brpc::StreamOptions client_options;
    client_options.handler = &client_handler;
    brpc::Controller cntl;
    brpc::StreamIds client_ids;
    ASSERT_EQ(0, brpc::StreamCreate(client_ids, 2, cntl, &client_options));
    CallOpen(channel, cntl);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    ASSERT_EQ(0, brpc::StreamWrite(client_ids[0], Buf("unconsumed")));

    std::thread releaser([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        server_handler.Release();
    });
    ASSERT_EQ(0, server.server().Stop(0));
    ASSERT_EQ(0, server.server().Join());
    releaser.join();

    int codes[2] = {0, 0};
    for (int k = 0; k < 2; ++k) {
        ASSERT_TRUE(client_handler.WaitClosed(client_ids[k])) << k;
        std::string text;
        ExpectFailedThenClosed(client_handler.lifecycle(client_ids[k]), &codes[k], &text);
        // What the client's connection failed with: the server closed it.
        EXPECT_TRUE(codes[k] == brpc::EEOF || codes[k] == ECONNRESET) << codes[k] << " " << text;
        EXPECT_FALSE(text.empty());
        EXPECT_EQ(EINVAL, brpc::StreamWrite(client_ids[k], Buf("late")));
    }
    EXPECT_EQ(codes[0], codes[1]);
    for (size_t k = 0; k < accepting.accepted_ids().size(); ++k) {
        ASSERT_TRUE(server_handler.WaitClosed(accepting.accepted_ids()[k]));
    }
}

TEST(Stream, StreamsCloseWithTheConnectionWhenARawPeerClosesIt) {
    RecordingHandler client_handler;
    std::atomic<bool> got_data{false};
    // Accepts the stream as a brpc server would, reads one message, closes.
    RawPeer peer([&](RawConnection& conn) {
        Frame request;
        ASSERT_TRUE(conn.Next(&request));
        const brpc_meta_test::RpcMeta meta = RpcMetaOf(request);
        bench::OpenResponse body;
        body.set_status("accepted");
        ASSERT_TRUE(conn.Send(SetupResponse(meta, 77, body)));
        Frame data;
        ASSERT_TRUE(conn.Next(&data));
        EXPECT_EQ(brpc_meta_test::FRAME_TYPE_DATA, StreamMeta(data).frame_type());
        EXPECT_EQ(77, StreamMeta(data).stream_id());
        EXPECT_EQ("before the drop", data.payload);
        got_data = true;
    });
    brpc::Channel channel;
    brpc::ChannelOptions channel_options;
    channel_options.timeout_ms = 5000;
    ASSERT_EQ(0, channel.Init(peer.address().c_str(), &channel_options));
    brpc::StreamOptions client_options;
    client_options.handler = &client_handler;
    brpc::Controller cntl;
    brpc::StreamId id = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&id, cntl, &client_options));
    const bench::OpenResponse response = CallOpen(channel, cntl);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ("accepted", response.status());
    ASSERT_EQ(0, brpc::StreamWrite(id, Buf("before the drop")));
    peer.Join();
    EXPECT_TRUE(got_data.load());

    ASSERT_TRUE(client_handler.WaitClosed(id));
    int code = 0;
    std::string text;
    ExpectFailedThenClosed(client_handler.lifecycle(id), &code, &text);
    EXPECT_TRUE(code == brpc::EEOF || code == ECONNRESET) << code << " " << text;
    EXPECT_FALSE(text.empty());
    EXPECT_EQ(EINVAL, brpc::StreamWrite(id, Buf("late")));
}

TEST(Stream, RstFromThePeerFailsTheStreamWithEconnreset) {
    RecordingHandler client_handler;
    std::atomic<bool> client_closed{false};
    // Accepts, then resets the stream, and stays connected until the client
    // saw it.
    RawPeer peer([&](RawConnection& conn) {
        Frame request;
        ASSERT_TRUE(conn.Next(&request));
        const brpc_meta_test::RpcMeta meta = RpcMetaOf(request);
        bench::OpenResponse body;
        body.set_status("accepted");
        ASSERT_TRUE(conn.Send(SetupResponse(meta, 88, body)));
        brpc_meta_test::StreamFrameMeta rst;
        rst.set_stream_id(meta.stream_settings().stream_id());
        rst.set_frame_type(brpc_meta_test::FRAME_TYPE_RST);
        ASSERT_TRUE(conn.Send(EncodeFrame("STRM", rst, std::string())));
        WaitFor([&] { return client_closed.load(); });
    });
    brpc::Channel channel;
    brpc::ChannelOptions channel_options;
    channel_options.timeout_ms = 5000;
    ASSERT_EQ(0, channel.Init(peer.address().c_str(), &channel_options));
    brpc::StreamOptions client_options;
    client_options.handler = &client_handler;
    brpc::Controller cntl;
    brpc::StreamId id = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&id, cntl, &client_options));
    CallOpen(channel, cntl);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    const bool closed = client_handler.WaitClosed(id);
    client_closed = true;
    ASSERT_TRUE(closed);
    int code = 0;
    std::string text;
    ExpectFailedThenClosed(client_handler.lifecycle(id), &code, &text);
    EXPECT_EQ(ECONNRESET, code);
    EXPECT_FALSE(text.empty());
    EXPECT_EQ(EINVAL, brpc::StreamWrite(id, Buf("late")));
}

TEST(Stream, ServerAnswersRstForAStreamItDoesNotHave) {
    RecordingHandler server_handler;
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    AcceptingService accepting(server_options);
    LoopbackServer server(&accepting.service);
    RawConnection conn(ConnectLoopback(server.port()));
    ASSERT_GE(conn.fd(), 0);
    ASSERT_TRUE(conn.Send(StreamFrame(123456789, 42, brpc_meta_test::FRAME_TYPE_DATA, "nobody")));
    Frame answer;
    ASSERT_TRUE(conn.Next(&answer, 5));
    EXPECT_EQ("STRM", answer.magic);
    const brpc_meta_test::StreamFrameMeta meta = StreamMeta(answer);
    EXPECT_EQ(brpc_meta_test::FRAME_TYPE_RST, meta.frame_type());
    EXPECT_EQ(42, meta.stream_id());
    EXPECT_TRUE(answer.payload.empty());
    // A FEEDBACK for an unknown stream is not answered; the connection stays.
    ASSERT_TRUE(conn.Send(StreamFrame(123456789, 43, brpc_meta_test::FRAME_TYPE_FEEDBACK)));
    EXPECT_FALSE(conn.Next(&answer, 0.1));
    EXPECT_EQ(0, server_handler.count(Event::kMessages));
}

TEST(Stream, IdleTimeoutCallsOnIdleTimeoutUntilAMessageOrClose) {
    RecordingHandler server_handler;
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    server_options.idle_timeout_ms = 10;
    ConnectedStream s(server_options, NULL);
    ASSERT_TRUE(WaitFor([&] { return server_handler.count(Event::kIdle, s.server_id) >= 3; }, 5));
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    ASSERT_TRUE(server_handler.WaitClosed(s.server_id));
    ExpectClosedCleanly(server_handler.lifecycle(s.server_id));
    EXPECT_EQ(0, server_handler.count(Event::kMessages));
}

TEST(Stream, NoIdleTimeoutWithoutIdleTimeoutMs) {
    RecordingHandler server_handler;
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    ConnectedStream s(server_options, NULL);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    ASSERT_TRUE(server_handler.WaitClosed(s.server_id));
    EXPECT_EQ(0, server_handler.count(Event::kIdle));
}

TEST(Stream, PingPongRunsToTheEnd) {
    RecordingHandler server_handler;
    RecordingHandler client_handler;
    const uint32_t kLast = 100;
    // Each side answers n with n + 1; the client stops after kLast.
    server_handler.on_messages = [](brpc::StreamId id, const std::vector<std::string>& batch) {
        for (size_t i = 0; i < batch.size(); ++i) {
            EXPECT_EQ(0, WriteWaiting(id, Buf(Number(NumberOf(batch[i]) + 1))));
        }
    };
    client_handler.on_messages = [kLast](brpc::StreamId id, const std::vector<std::string>& batch) {
        for (size_t i = 0; i < batch.size(); ++i) {
            const uint32_t n = NumberOf(batch[i]);
            if (n < kLast) {
                EXPECT_EQ(0, WriteWaiting(id, Buf(Number(n + 1))));
            }
        }
    };
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    brpc::StreamOptions client_options;
    client_options.handler = &client_handler;
    ConnectedStream s(server_options, &client_options);
    ASSERT_EQ(0, brpc::StreamWrite(s.client_id, Buf(Number(0))));
    ASSERT_TRUE(WaitFor([&] { return client_handler.received_count(s.client_id) == kLast / 2 + 1; }));
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    ASSERT_TRUE(server_handler.WaitClosed(s.server_id));
    ASSERT_TRUE(client_handler.WaitClosed(s.client_id));
    const std::vector<std::string> server_got = server_handler.received(s.server_id);
    const std::vector<std::string> client_got = client_handler.received(s.client_id);
    ASSERT_EQ(kLast / 2 + 1, server_got.size());
    ASSERT_EQ(kLast / 2 + 1, client_got.size());
    for (uint32_t i = 0; i < server_got.size(); ++i) {
        EXPECT_EQ(2 * i, NumberOf(server_got[i]));
        EXPECT_EQ(2 * i + 1, NumberOf(client_got[i]));
    }
    ExpectClosedCleanly(server_handler.lifecycle(s.server_id));
    ExpectClosedCleanly(client_handler.lifecycle(s.client_id));
}

TEST(Stream, ServerWritesBeforeItsMethodRespondsArriveAfterTheResponse) {
    RecordingHandler client_handler;
    std::atomic<int> early_write_errors{0};
    std::atomic<brpc::StreamId> server_id{brpc::INVALID_STREAM_ID};
    // Accepts, writes ten messages, and only then responds.
    FunctionService service([&](brpc::Controller* cntl, const bench::OpenRequest*, bench::OpenResponse* response,
                                google::protobuf::Closure* done) {
        brpc::ClosureGuard guard(done);
        brpc::StreamId id = brpc::INVALID_STREAM_ID;
        if (brpc::StreamAccept(&id, *cntl, NULL) != 0) {
            cntl->SetFailed(EINVAL, "StreamAccept failed");
            return;
        }
        for (int i = 0; i < 10; ++i) {
            if (brpc::StreamWrite(id, Buf("early " + std::to_string(i))) != 0) {
                ++early_write_errors;
            }
        }
        server_id = id;
        response->set_status("accepted");
    });
    LoopbackServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    brpc::StreamOptions client_options;
    client_options.handler = &client_handler;
    brpc::Controller cntl;
    brpc::StreamId id = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&id, cntl, &client_options));
    CallOpen(channel, cntl);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ(0, early_write_errors.load());
    ASSERT_TRUE(WaitFor([&] { return client_handler.received_count(id) == 10; }));
    const std::vector<std::string> got = client_handler.received(id);
    for (int i = 0; i < 10; ++i) {
        EXPECT_EQ("early " + std::to_string(i), got[i]);
    }
    // The server side closes, the client follows.
    EXPECT_EQ(0, brpc::StreamClose(server_id.load()));
    ASSERT_TRUE(client_handler.WaitClosed(id));
    ExpectClosedCleanly(client_handler.lifecycle(id));
    EXPECT_EQ(10u, client_handler.received_count(id));
}

TEST(Stream, CreatingStreamsTwiceOnOneControllerFails) {
    RecordingHandler handler;
    brpc::StreamOptions options;
    options.handler = &handler;
    brpc::Controller cntl;
    brpc::StreamId first = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&first, cntl, &options));
    EXPECT_NE(brpc::INVALID_STREAM_ID, first);
    brpc::ScopedStream guard(first);
    brpc::StreamId second = brpc::INVALID_STREAM_ID;
    EXPECT_EQ(-1, brpc::StreamCreate(&second, cntl, &options));
    EXPECT_EQ(brpc::INVALID_STREAM_ID, second);
    brpc::StreamIds more;
    EXPECT_EQ(-1, brpc::StreamCreate(more, 2, cntl, &options));
    EXPECT_TRUE(more.empty());
    guard.reset();
    ASSERT_TRUE(handler.WaitClosed(first));
    EXPECT_EQ(1, handler.count(Event::kClosed));
}

TEST(Stream, CreateIntoANonEmptyStreamIdsFails) {
    brpc::Controller cntl;
    brpc::StreamIds ids(1, 12345);
    EXPECT_EQ(-1, brpc::StreamCreate(ids, 1, cntl, NULL));
    EXPECT_EQ(1u, ids.size());
    EXPECT_EQ(-1, brpc::StreamCreate(NULL, cntl, NULL));
}

TEST(Stream, CreatingMoreStreamsThanACallMaySetUpFails) {
    brpc::Controller cntl;
    brpc::StreamIds ids;
    EXPECT_EQ(-1, brpc::StreamCreate(ids, BRPC_MAX_STREAMS_PER_CALL + 1, cntl, NULL));
    EXPECT_TRUE(ids.empty());
    EXPECT_EQ(0, brpc::StreamCreate(ids, BRPC_MAX_STREAMS_PER_CALL, cntl, NULL));
    EXPECT_EQ((size_t)BRPC_MAX_STREAMS_PER_CALL, ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
        EXPECT_EQ(0, brpc::StreamClose(ids[i]));
    }
}

TEST(Stream, AcceptWithoutAStreamInTheRequestFails) {
    std::atomic<int> accept_result{0};
    std::atomic<int> had_remote_stream{-1};
    FunctionService service([&](brpc::Controller* cntl, const bench::OpenRequest*, bench::OpenResponse* response,
                                google::protobuf::Closure* done) {
        brpc::ClosureGuard guard(done);
        had_remote_stream = cntl->has_remote_stream() ? 1 : 0;
        brpc::StreamId id = brpc::INVALID_STREAM_ID;
        accept_result = brpc::StreamAccept(&id, *cntl, NULL);
        response->set_status("no stream");
    });
    LoopbackServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    brpc::Controller cntl;
    const bench::OpenResponse response = CallOpen(channel, cntl);
    ASSERT_FALSE(cntl.Failed()) << cntl.ErrorText();
    EXPECT_EQ("no stream", response.status());
    EXPECT_EQ(0, had_remote_stream.load());
    EXPECT_EQ(-1, accept_result.load());
    EXPECT_FALSE(cntl.has_remote_stream());
}

TEST(Stream, SingleAcceptOfSeveralStreamsFailsAndTheCallFailsTheClientStreams) {
    RecordingHandler client_handler;
    std::atomic<int> accept_result{0};
    FunctionService service([&](brpc::Controller* cntl, const bench::OpenRequest*, bench::OpenResponse*,
                                google::protobuf::Closure* done) {
        brpc::ClosureGuard guard(done);
        brpc::StreamId id = brpc::INVALID_STREAM_ID;
        accept_result = brpc::StreamAccept(&id, *cntl, NULL);
        cntl->SetFailed(EPERM, "one stream only");
    });
    LoopbackServer server(&service);
    brpc::Channel channel;
    ASSERT_EQ(0, channel.Init(server.address().c_str(), NULL));
    brpc::StreamOptions client_options;
    client_options.handler = &client_handler;
    brpc::Controller cntl;
    brpc::StreamIds ids;
    ASSERT_EQ(0, brpc::StreamCreate(ids, 2, cntl, &client_options));
    CallOpen(channel, cntl);
    EXPECT_EQ(-1, accept_result.load());
    ASSERT_TRUE(cntl.Failed());
    EXPECT_EQ(EPERM, cntl.ErrorCode());
    for (size_t k = 0; k < ids.size(); ++k) {
        ASSERT_TRUE(client_handler.WaitClosed(ids[k]));
        int code = 0;
        std::string text;
        ExpectFailedThenClosed(client_handler.lifecycle(ids[k]), &code, &text);
        EXPECT_EQ(EPERM, code);
        EXPECT_NE(std::string::npos, text.find("one stream only")) << text;
    }
}

TEST(Stream, WritingToAPeerWithoutAHandlerFailsWithEbadf) {
    brpc::StreamOptions server_options;  // no handler
    RecordingHandler client_handler;
    brpc::StreamOptions client_options;
    client_options.handler = &client_handler;
    ConnectedStream s(server_options, &client_options);
    EXPECT_EQ(EBADF, brpc::StreamWrite(s.client_id, Buf("nobody reads this")));
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    ASSERT_TRUE(client_handler.WaitClosed(s.client_id));
}

TEST(Stream, LargeMessagesArriveWhole) {
    RecordingHandler server_handler;
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    ConnectedStream s(server_options, NULL);
    std::vector<std::string> sent;
    for (int i = 0; i < 5; ++i) {
        std::string message((size_t)(1 << 20) + (size_t)i * 4097, '\0');
        for (size_t j = 0; j < message.size(); ++j) {
            message[j] = (char)((j * 31 + (size_t)i) & 0xff);
        }
        sent.push_back(message);
        ASSERT_EQ(0, WriteWaiting(s.client_id, Buf(message))) << i;
    }
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    ASSERT_TRUE(server_handler.WaitClosed(s.server_id));
    const std::vector<std::string> got = server_handler.received(s.server_id);
    ASSERT_EQ(sent.size(), got.size());
    for (size_t i = 0; i < sent.size(); ++i) {
        EXPECT_TRUE(sent[i] == got[i]) << "message " << i << ": " << got[i].size() << " bytes";
    }
}

TEST(Stream, WriteInBackgroundDeliversInOrderToo) {
    RecordingHandler server_handler;
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    ConnectedStream s(server_options, NULL);
    brpc::StreamWriteOptions background;
    background.write_in_background = true;
    for (uint32_t i = 0; i < 1000; ++i) {
        int rc;
        while ((rc = brpc::StreamWrite(s.client_id, Buf(Number(i)), &background)) == EAGAIN) {
            ASSERT_EQ(0, brpc::StreamWait(s.client_id, NULL));
        }
        ASSERT_EQ(0, rc) << i;
    }
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    ASSERT_TRUE(server_handler.WaitClosed(s.server_id));
    ExpectNumbersInOrder(server_handler.received(s.server_id), 1000);
}

TEST(Stream, ScopedStreamClosesWhatItHoldsAndReleaseGivesItUp) {
    RecordingHandler handler;
    brpc::StreamOptions options;
    options.handler = &handler;
    brpc::Controller first_cntl;
    brpc::Controller second_cntl;
    brpc::StreamId first = brpc::INVALID_STREAM_ID;
    brpc::StreamId second = brpc::INVALID_STREAM_ID;
    ASSERT_EQ(0, brpc::StreamCreate(&first, first_cntl, &options));
    ASSERT_EQ(0, brpc::StreamCreate(&second, second_cntl, &options));
    brpc::StreamId released = brpc::INVALID_STREAM_ID;
    {
        brpc::ScopedStream a(first);
        brpc::ScopedStream b(second);
        EXPECT_TRUE(a.is_valid());
        EXPECT_TRUE(a == first);
        released = b.release();
        EXPECT_FALSE(b.is_valid());
        brpc::ScopedStream moved(std::move(a));
        EXPECT_FALSE(a.is_valid());
        EXPECT_EQ(first, moved.get());
    }
    ASSERT_TRUE(handler.WaitClosed(first));
    EXPECT_EQ(second, released);
    EXPECT_EQ(0, brpc::StreamWrite(second, Buf("still open")));
    EXPECT_EQ(0, brpc::StreamClose(second));
    ASSERT_TRUE(handler.WaitClosed(second));
    EXPECT_EQ(1, handler.count(Event::kClosed, first));
    ExpectClosedCleanly(handler.lifecycle(first));
}

}  // namespace

namespace {

std::string Pattern(size_t size, int seed) {
    std::string s(size, '\0');
    for (size_t i = 0; i < size; ++i) {
        s[i] = (char)((i * 131 + seed * 7 + (i >> 11)) & 0xff);
    }
    return s;
}

std::atomic<int> g_lent_releases(0);
void CountRelease(void*) { ++g_lent_releases; }

}  // namespace

TEST(Stream, LargeMessagesEchoBackIntactThroughTheZeroCopyPaths) {
    RecordingHandler server_handler;
    RecordingHandler client_handler;
    server_handler.on_messages = [](brpc::StreamId id, const std::vector<std::string>& batch) {
        for (size_t i = 0; i < batch.size(); ++i) {
            EXPECT_EQ(0, WriteWaiting(id, Buf(batch[i])));
        }
    };
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    brpc::StreamOptions client_options;
    client_options.handler = &client_handler;
    ConnectedStream s(server_options, &client_options);
    const size_t sizes[] = {16 * 1024, 100 * 1000, 1 << 20, 3 * (1 << 20) + 17};
    for (size_t i = 0; i < 4; ++i) {
        ASSERT_EQ(0, WriteWaiting(s.client_id, Buf(Pattern(sizes[i], (int)i))));
    }
    ASSERT_TRUE(WaitFor([&] { return client_handler.received_count(s.client_id) == 4u; }, 30));
    const std::vector<std::string> echoed = client_handler.received(s.client_id);
    for (size_t i = 0; i < 4; ++i) {
        EXPECT_TRUE(echoed[i] == Pattern(sizes[i], (int)i)) << "message " << i << " of " << sizes[i] << " bytes";
    }
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    ASSERT_TRUE(client_handler.WaitClosed(s.client_id));
    ExpectClosedCleanly(client_handler.lifecycle(s.client_id));
}

TEST(Stream, LentBlocksAreReleasedExactlyOnceWhetherSentOrRefused) {
    RecordingHandler server_handler;
    brpc::StreamOptions server_options;
    server_options.handler = &server_handler;
    ConnectedStream s(server_options, NULL);
    g_lent_releases = 0;
    const std::string a = Pattern(40000, 1);
    const std::string b = Pattern(30000, 2);
    brpc_stream_block blocks[2] = {{reinterpret_cast<const uint8_t*>(a.data()), a.size()},
                                   {reinterpret_cast<const uint8_t*>(b.data()), b.size()}};
    ASSERT_EQ(0, brpc_stream_write_blocks(s.client_id, blocks, 2, &CountRelease, NULL, false));
    ASSERT_TRUE(WaitFor([&] { return server_handler.received_count(s.server_id) == 1u; }));
    EXPECT_TRUE(server_handler.received(s.server_id)[0] == a + b);
    EXPECT_TRUE(WaitFor([&] { return g_lent_releases.load() == 1; }));
    EXPECT_EQ(0, brpc::StreamClose(s.client_id));
    ASSERT_TRUE(server_handler.WaitClosed(s.server_id));
    // Refused (the stream is closed): released before the call returns.
    EXPECT_EQ(EINVAL, brpc_stream_write_blocks(s.client_id, blocks, 2, &CountRelease, NULL, false));
    EXPECT_EQ(2, g_lent_releases.load());
}
