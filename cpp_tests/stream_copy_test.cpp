// What the facade copies on the way through, measured with a probe on
// operator new (every C++ allocation of this process: the IOBuf blocks a
// copy would need among them), not with timings. Messages are built before
// the probe starts, so what it sees is what StreamWrite and the delivery to
// the handler allocate: a copy of the payload on either side would show up
// as at least the payload's size.

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "stream_test_support.h"

namespace {

std::atomic<uint64_t> g_new_bytes(0);

void* CountedAlloc(size_t size) {
    g_new_bytes.fetch_add(size, std::memory_order_relaxed);
    return std::malloc(size == 0 ? 1 : size);
}

}  // namespace

// The replaced allocation functions: malloc and free underneath, so that a
// sanitizer sees matching pairs. Never inlined: the compiler would then
// pair free() with the operator new it knows and warn of a mismatch.
[[gnu::noinline]] void* operator new(size_t size) {
    void* p = CountedAlloc(size);
    if (p == NULL) {
        throw std::bad_alloc();
    }
    return p;
}
[[gnu::noinline]] void* operator new[](size_t size) { return operator new(size); }
[[gnu::noinline]] void* operator new(size_t size, const std::nothrow_t&) noexcept { return CountedAlloc(size); }
[[gnu::noinline]] void* operator new[](size_t size, const std::nothrow_t&) noexcept { return CountedAlloc(size); }
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, size_t) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

namespace {

using namespace stream_test;

std::string Pattern(size_t size, int seed) {
    std::string s(size, '\0');
    for (size_t i = 0; i < size; ++i) {
        s[i] = (char)((i * 131 + seed * 7 + (i >> 11)) & 0xff);
    }
    return s;
}

// Counts what it receives and checks it against the expected bytes,
// reading the IOBufs in place (no copy of its own for the probe to see).
class CheckingHandler : public brpc::StreamInputHandler {
public:
    explicit CheckingHandler(const std::string& expected) : expected_(expected) {}
    int on_received_messages(brpc::StreamId, butil::IOBuf* const messages[], size_t size) override {
        for (size_t i = 0; i < size; ++i) {
            if (!messages[i]->equals(butil::StringPiece(expected_))) {
                mismatches_.fetch_add(1);
            }
            bytes_.fetch_add(messages[i]->size());
        }
        return 0;
    }
    void on_idle_timeout(brpc::StreamId) override {}
    void on_closed(brpc::StreamId) override { closed_.store(true); }
    uint64_t bytes() const { return bytes_.load(); }
    int mismatches() const { return mismatches_.load(); }
    bool closed() const { return closed_.load(); }

private:
    const std::string expected_;
    std::atomic<uint64_t> bytes_{0};
    std::atomic<int> mismatches_{0};
    std::atomic<bool> closed_{false};
};

// Sends `messages` (each holding `expected`) from a client stream to a
// server stream and returns the C++ bytes allocated from the first write
// until the handler got the last byte.
uint64_t AllocatedWhileSending(const std::vector<butil::IOBuf>& messages, const std::string& expected) {
    CheckingHandler handler(expected);
    brpc::StreamOptions server_options;
    server_options.handler = &handler;
    AcceptingService accepting(server_options);
    LoopbackServer server(&accepting.service);
    brpc::Channel channel;
    brpc::ChannelOptions channel_options;
    channel_options.timeout_ms = 5000;
    EXPECT_EQ(0, channel.Init(server.address().c_str(), &channel_options));
    brpc::Controller cntl;
    brpc::StreamId id = brpc::INVALID_STREAM_ID;
    EXPECT_EQ(0, brpc::StreamCreate(&id, cntl, NULL));
    CallOpen(channel, cntl);
    EXPECT_FALSE(cntl.Failed()) << cntl.ErrorText();
    const uint64_t payload = (uint64_t)messages.size() * expected.size();

    const uint64_t before = g_new_bytes.load();
    for (size_t i = 0; i < messages.size(); ++i) {
        EXPECT_EQ(0, WriteWaiting(id, messages[i])) << "message " << i;
    }
    EXPECT_TRUE(WaitFor([&] { return handler.bytes() >= payload; }, 60));
    const uint64_t allocated = g_new_bytes.load() - before;
    printf("%zu messages of %zu bytes: %llu bytes allocated by C++ for %llu bytes sent\n", messages.size(),
           expected.size(), (unsigned long long)allocated, (unsigned long long)payload);

    EXPECT_EQ(payload, handler.bytes());
    EXPECT_EQ(0, handler.mismatches());
    EXPECT_EQ(0, brpc::StreamClose(id));
    EXPECT_TRUE(WaitFor([&] { return handler.closed(); }));
    return allocated;
}

TEST(StreamCopies, A4KiBMessageReachesTheHandlerInTheLibrarysBuffer) {
    const std::string text = Pattern(4096, 1);
    std::vector<butil::IOBuf> messages(2048, Buf(text));
    const uint64_t payload = messages.size() * text.size();
    const uint64_t allocated = AllocatedWhileSending(messages, text);
    // A copy into IOBuf blocks would be the payload again; what is left is
    // a block header per message and the batch's lists.
    EXPECT_LT(allocated, payload / 8) << allocated << " bytes allocated for " << payload << " bytes sent";
}

TEST(StreamCopies, A1MiBMessageIsWrittenFromItsBlocksAndReceivedUncopied) {
    const std::string text = Pattern(1 << 20, 2);
    std::vector<butil::IOBuf> messages(16, Buf(text));
    ASSERT_EQ(16u, messages[0].backing_block_num());  // append() makes 64 KiB blocks
    const uint64_t payload = messages.size() * text.size();
    const uint64_t allocated = AllocatedWhileSending(messages, text);
    EXPECT_LT(allocated, payload / 64) << allocated << " bytes allocated for " << payload << " bytes sent";
}

TEST(StreamCopies, AMessageOfManySmallBlocksIsNotFlattenedOnTheWay) {
    // 256 user-data blocks of 4 KiB, far more than the 8 iovecs kept inline.
    const std::string text = Pattern(256 * 4096, 3);
    butil::IOBuf message;
    for (size_t i = 0; i < 256; ++i) {
        message.append_user_data(const_cast<char*>(text.data() + i * 4096), 4096, NULL);
    }
    ASSERT_EQ(256u, message.backing_block_num());
    std::vector<butil::IOBuf> messages(8, message);
    const uint64_t payload = messages.size() * text.size();
    const uint64_t allocated = AllocatedWhileSending(messages, text);
    EXPECT_LT(allocated, payload / 16) << allocated << " bytes allocated for " << payload << " bytes sent";
}

}  // namespace
