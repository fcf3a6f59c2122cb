// The headers brpc programs include around the stream API: butil/time.h,
// butil/string_printf.h, butil/string_splitter.h, butil/macros.h,
// butil/atomicops.h, butil/rand_util.h, butil/fast_rand.h, brpc/callback.h,
// bvar/reducer.h and json2pb.
#include <butil/atomicops.h>
#include <butil/fast_rand.h>
#include <butil/macros.h>
#include <butil/rand_util.h>
#include <butil/string_printf.h>
#include <butil/string_splitter.h>
#include <butil/time.h>
#include <brpc/callback.h>
#include <bvar/reducer.h>
#include <json2pb/json_to_pb.h>
#include <json2pb/pb_to_json.h>

#include <climits>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <unistd.h>

#include "echo.pb.h"

namespace {

TEST(TimeTest, ClocksAgreeOnUnitsAndMoveForward) {
    const int64_t wall_us = butil::gettimeofday_us();
    EXPECT_NEAR(static_cast<double>(butil::gettimeofday_ms()), wall_us / 1000.0, 1000.0);
    EXPECT_NEAR(static_cast<double>(butil::gettimeofday_s()), wall_us / 1000000.0, 1.0);
    const int64_t mono = butil::monotonic_time_us();
    const int64_t cpu = butil::cpuwide_time_us();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_GE(butil::monotonic_time_us() - mono, 19000);
    EXPECT_GE(butil::cpuwide_time_ms() - cpu / 1000, 19);
}

TEST(TimeTest, TimerMeasuresTheTimeBetweenStartAndStop) {
    butil::Timer timer;
    timer.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    timer.stop();
    EXPECT_GE(timer.m_elapsed(), 29);
    EXPECT_LT(timer.s_elapsed(), 10);
    EXPECT_EQ(timer.u_elapsed(), timer.n_elapsed() / 1000);
}

TEST(TimeTest, TimespecArithmeticNormalizes) {
    timespec t = butil::milliseconds_to_timespec(1500);
    EXPECT_EQ(t.tv_sec, 1);
    EXPECT_EQ(t.tv_nsec, 500000000);
    butil::timespec_add(&t, butil::milliseconds_to_timespec(700));
    EXPECT_EQ(butil::timespec_to_milliseconds(t), 2200);
    butil::timespec_minus(&t, butil::seconds_to_timespec(3));
    EXPECT_EQ(butil::timespec_to_milliseconds(t), -800);
}

TEST(StringPrintfTest, FormatsShortAndLongText) {
    EXPECT_EQ(butil::string_printf("%d-%s", 7, "x"), "7-x");
    std::string out = "a";
    ASSERT_EQ(butil::string_appendf(&out, "%s", std::string(1000, 'b').c_str()), 0);
    EXPECT_EQ(out.size(), 1001u);
    ASSERT_EQ(butil::string_printf(&out, "%05d", 42), 0);
    EXPECT_EQ(out, "00042");
}

std::vector<std::string> Fields(butil::StringSplitter sp) {
    std::vector<std::string> out;
    for (; sp; ++sp) {
        out.push_back(sp.field_sp().as_string());
    }
    return out;
}

TEST(StringSplitterTest, SkipsOrKeepsEmptyFields) {
    // The way brpc's selective/partition echo servers read --sleep_us.
    EXPECT_EQ(Fields(butil::StringSplitter("100,,2000,", ',')),
              (std::vector<std::string>{"100", "2000"}));
    // As in brpc, the input's end is no field of its own, even after a separator.
    EXPECT_EQ(Fields(butil::StringSplitter(",a,,b,", ',', butil::ALLOW_EMPTY_FIELD)),
              (std::vector<std::string>{"", "a", "", "b"}));
    EXPECT_TRUE(Fields(butil::StringSplitter("", ',')).empty());
    EXPECT_TRUE(Fields(butil::StringSplitter(",,,", ',')).empty());
    EXPECT_TRUE(Fields(butil::StringSplitter(static_cast<const char*>(NULL), ',')).empty());
}

TEST(StringSplitterTest, ARangeMayHoldNulsAndEndsWhereGiven) {
    const char text[] = {'a', '\0', 'b', ' ', 'c', 'd', ' ', 'x'};
    // [text, text + 7): "a\0b", "cd"; the 'x' after the end is not read.
    butil::StringSplitter sp(text, text + 7, ' ');
    ASSERT_TRUE(sp);
    EXPECT_EQ(sp.length(), 3u);
    EXPECT_EQ(std::string(sp.field(), sp.length()), std::string("a\0b", 3));
    butil::StringSplitter before = sp++;
    EXPECT_EQ(before.length(), 3u);
    ASSERT_TRUE(sp);
    EXPECT_EQ(sp.field_sp(), butil::StringPiece("cd"));
    ++sp;
    EXPECT_FALSE(sp);
    EXPECT_EQ(Fields(butil::StringSplitter(butil::StringPiece("k v"), ' ')),
              (std::vector<std::string>{"k", "v"}));
}

TEST(StringSplitterTest, NumbersParseTheWholeFieldAndMustFit) {
    butil::StringSplitter sp("12,-3,300,x7,4.5,,99999999999", ',', butil::ALLOW_EMPTY_FIELD);
    int i = 0;
    ASSERT_EQ(sp.to_int(&i), 0);
    EXPECT_EQ(i, 12);
    ++sp;  // -3
    unsigned long long ull = 0;
    int8_t i8 = 0;
    EXPECT_EQ(sp.to_int8(&i8), 0);
    EXPECT_EQ(i8, -3);
    ++sp;  // 300
    uint8_t u8 = 0;
    EXPECT_EQ(sp.to_uint8(&u8), -1);
    long l = 0;
    EXPECT_EQ(sp.to_long(&l), 0);
    EXPECT_EQ(l, 300);
    ++sp;  // x7
    EXPECT_EQ(sp.to_int(&i), -1);
    ++sp;  // 4.5
    double d = 0;
    EXPECT_EQ(sp.to_double(&d), 0);
    EXPECT_DOUBLE_EQ(d, 4.5);
    EXPECT_EQ(sp.to_int(&i), -1);
    ++sp;  // empty
    EXPECT_EQ(sp.to_ulonglong(&ull), -1);
    ++sp;  // 99999999999: a long, not an int
    EXPECT_EQ(sp.to_int(&i), -1);
    EXPECT_EQ(sp.to_ulonglong(&ull), 0);
    EXPECT_EQ(ull, 99999999999ULL);
}

TEST(StringSplitterTest, MultiSplitterAndKeyValuePairs) {
    std::vector<std::string> fields;
    for (butil::StringMultiSplitter sp("a b\tc;;d", " \t;"); sp; ++sp) {
        fields.push_back(std::string(sp.field(), sp.length()));
    }
    EXPECT_EQ(fields, (std::vector<std::string>{"a", "b", "c", "d"}));

    std::vector<std::string> pairs;
    for (butil::KeyValuePairsSplitter kv("a=1&b=x=y&&flag", '&', '='); kv; ++kv) {
        pairs.push_back(kv.key().as_string() + "|" + kv.value().as_string());
    }
    EXPECT_EQ(pairs, (std::vector<std::string>{"a|1", "b|x=y", "flag|"}));
}

TEST(MacrosTest, ArraySizeAndConcat) {
    int values[7];
    (void)values;
    EXPECT_EQ(arraysize(values), 7u);
    EXPECT_EQ(ARRAY_SIZE(values), 7u);
    int BAIDU_CONCAT(joined_, 1) = 3;
    EXPECT_EQ(joined_1, 3);
    EXPECT_STREQ(BAIDU_SYMBOLSTR(BAIDU_CACHELINE_SIZE), "64");
}

TEST(AtomicopsTest, ButilAtomicIsStdAtomic) {
    butil::atomic<int> n(1);
    n.fetch_add(2, butil::memory_order_relaxed);
    EXPECT_EQ(n.load(butil::memory_order_acquire), 3);
}

TEST(RandUtilTest, IntsCoverTheirClosedRangeAndDoublesStayBelowOne) {
    std::set<int> seen;
    for (int i = 0; i < 2000; ++i) {
        const int v = butil::RandInt(-3, 3);
        ASSERT_GE(v, -3);
        ASSERT_LE(v, 3);
        seen.insert(v);
        const double d = butil::RandDouble();
        ASSERT_GE(d, 0.0);
        ASSERT_LT(d, 1.0);
        ASSERT_LT(butil::RandGenerator(10), 10u);
    }
    EXPECT_EQ(seen.size(), 7u);  // each value has p=1/7; missing one in 2000 draws: < 1e-130
    EXPECT_EQ(butil::RandInt(5, 5), 5);
    const int extreme = butil::RandInt(INT_MIN, INT_MAX);  // the whole range does not overflow
    (void)extreme;
    EXPECT_EQ(butil::BitsToOpenEndedUnitInterval(0), 0.0);
    EXPECT_LT(butil::BitsToOpenEndedUnitInterval(~UINT64_C(0)), 1.0);
}

TEST(RandUtilTest, BytesDifferBetweenDrawsAndTheUrandomFdReads) {
    const std::string a = butil::RandBytesAsString(32);
    const std::string b = butil::RandBytesAsString(32);
    ASSERT_EQ(a.size(), 32u);
    EXPECT_NE(a, b);  // equal with p=2^-256
    EXPECT_NE(butil::RandUint64(), butil::RandUint64());  // p=2^-64
    const int fd = butil::GetUrandomFD();
    ASSERT_GE(fd, 0);
    EXPECT_EQ(butil::GetUrandomFD(), fd);
    char buf[8];
    EXPECT_EQ(read(fd, buf, sizeof(buf)), 8);
}

TEST(FastRandTest, RangesHoldForSignedUnsignedAndSwappedBounds) {
    std::set<int64_t> seen;
    for (int i = 0; i < 2000; ++i) {
        const int v = butil::fast_rand_in(-2, 2);
        ASSERT_GE(v, -2);
        ASSERT_LE(v, 2);
        seen.insert(v);
        const unsigned u = butil::fast_rand_in(9u, 7u);  // swapped, as brpc allows
        ASSERT_GE(u, 7u);
        ASSERT_LE(u, 9u);
        ASSERT_LT(butil::fast_rand_less_than(3), 3u);
        const double d = butil::fast_rand_double();
        ASSERT_GE(d, 0.0);
        ASSERT_LT(d, 1.0);
    }
    EXPECT_EQ(seen.size(), 5u);
    EXPECT_EQ(butil::fast_rand_less_than(0), 0u);
    EXPECT_EQ(butil::fast_rand_in(INT64_MIN, INT64_MIN), INT64_MIN);
    (void)butil::fast_rand_in(INT64_MIN, INT64_MAX);  // the whole range
    (void)butil::fast_rand_in(uint64_t(0), UINT64_MAX);
}

TEST(FastRandTest, ASeedGivesOneSequenceAndThreadsGetTheirOwn) {
    butil::FastRandSeed s1;
    butil::init_fast_rand_seed(&s1);
    butil::FastRandSeed s2 = s1;
    for (int i = 0; i < 10; ++i) {
        ASSERT_EQ(butil::fast_rand(&s1), butil::fast_rand(&s2));
    }
    uint64_t here = butil::fast_rand();
    uint64_t there = here;
    std::thread([&there] { there = butil::fast_rand(); }).join();
    EXPECT_NE(here, there);  // p=2^-64
}

TEST(FastRandTest, BytesAndPrintableText) {
    unsigned char buf[19] = {0};
    butil::fast_rand_bytes(buf, sizeof(buf));
    int zeros = 0;
    for (unsigned char c : buf) zeros += (c == 0);
    EXPECT_LT(zeros, 10);
    const std::string text = butil::fast_rand_printable(33);
    ASSERT_EQ(text.size(), 33u);
    for (char c : text) {
        ASSERT_GE(c, 'A');
        ASSERT_LE(c, 'P');
    }
    EXPECT_NE(text, butil::fast_rand_printable(33));
}

TEST(BvarReducerTest, AdderSumsAcrossThreadsAndResetTakesTheSum) {
    bvar::Adder<size_t> n;
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&n] {
            for (int i = 0; i < 10000; ++i) n << 1;
        });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(n.get_value(), 40000u);
    EXPECT_EQ(n.reset(), 40000u);
    EXPECT_EQ(n.get_value(), 0u);
    bvar::Adder<double> d;
    d << 0.5 << 0.25;
    EXPECT_DOUBLE_EQ(d.get_value(), 0.75);
}

TEST(BvarReducerTest, MaxerAndMinerKeepTheExtremesAcrossThreads) {
    bvar::Maxer<int64_t> max;
    bvar::Miner<int64_t> min;
    EXPECT_EQ(max.get_value(), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(min.get_value(), std::numeric_limits<int64_t>::max());
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&max, &min, t] {
            for (int64_t i = 0; i < 1000; ++i) {
                max << i * (t + 1);
                min << -i * (t + 1);
            }
        });
    }
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(max.get_value(), 999 * 4);
    EXPECT_EQ(min.get_value(), -999 * 4);
    EXPECT_EQ(max.reset(), 999 * 4);
    EXPECT_EQ(max.get_value(), std::numeric_limits<int64_t>::min());
    bvar::Miner<double> dmin;
    dmin << 3.5 << -1.5 << 2.0;
    EXPECT_DOUBLE_EQ(dmin.get_value(), -1.5);
}

int g_sum = 0;
void AddThree(int a, int b, int c) { g_sum = a + b + c; }

struct Counter {
    void Add(int n) { total += n; }
    int total = 0;
};

TEST(CallbackTest, NewCallbackBindsArgumentsAndDeletesItselfAfterRun) {
    google::protobuf::Closure* done = brpc::NewCallback(&AddThree, 1, 2, 3);
    done->Run();  // ASan reports a leak if it did not delete itself.
    EXPECT_EQ(g_sum, 6);
    Counter counter;
    brpc::NewCallback(&counter, &Counter::Add, 5)->Run();
    EXPECT_EQ(counter.total, 5);
}

TEST(CallbackTest, PermanentCallbackRunsMoreThanOnce) {
    Counter counter;
    google::protobuf::Closure* add = brpc::NewPermanentCallback(&counter, &Counter::Add, 2);
    add->Run();
    add->Run();
    delete add;
    EXPECT_EQ(counter.total, 4);
}

TEST(CallbackTest, DoNothingCanRunRepeatedly) {
    brpc::DoNothing()->Run();
    brpc::DoNothing()->Run();
    EXPECT_EQ(brpc::DoNothing(), brpc::DoNothing());
}

TEST(Json2pbTest, MessageRoundTripsThroughJson) {
    test::EchoRequest request;
    request.set_message("hello");
    std::string json;
    std::string error;
    ASSERT_TRUE(json2pb::ProtoMessageToJson(request, &json, &error)) << error;
    EXPECT_NE(json.find("\"message\":\"hello\""), std::string::npos) << json;
    test::EchoRequest parsed;
    ASSERT_TRUE(json2pb::JsonToProtoMessage(json, &parsed, &error)) << error;
    EXPECT_EQ(parsed.message(), "hello");
}

TEST(Json2pbTest, BadJsonFailsWithATextAndUnknownFieldsAreIgnored) {
    test::EchoRequest parsed;
    std::string error;
    EXPECT_FALSE(json2pb::JsonToProtoMessage("{not json", &parsed, &error));
    EXPECT_FALSE(error.empty());
    EXPECT_TRUE(json2pb::JsonToProtoMessage("{\"message\":\"m\",\"unknown\":1}", &parsed, &error)) << error;
    EXPECT_EQ(parsed.message(), "m");
}

TEST(Json2pbTest, AnOptionProtobufCannotHonourIsRefusedWithAText) {
    test::EchoRequest request;
    json2pb::Pb2JsonOptions options;
    options.bytes_to_base64 = false;
    std::string json;
    std::string error;
    EXPECT_FALSE(json2pb::ProtoMessageToJson(request, &json, options, &error));
    EXPECT_NE(error.find("bytes_to_base64"), std::string::npos);
}

}  // namespace
