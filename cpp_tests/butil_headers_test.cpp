// The headers brpc programs include around the stream API: butil/time.h,
// butil/string_printf.h, butil/string_splitter.h, butil/macros.h,
// butil/atomicops.h, brpc/callback.h and json2pb.
#include <butil/atomicops.h>
#include <butil/macros.h>
#include <butil/string_printf.h>
#include <butil/string_splitter.h>
#include <butil/time.h>
#include <brpc/callback.h>
#include <json2pb/json_to_pb.h>
#include <json2pb/pb_to_json.h>

#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

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
