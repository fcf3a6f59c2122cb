// <butil/logging.h>: LOG, PLOG, VLOG, the _IF/_EVERY_N/_FIRST_N forms, noflush
// and CHECK, all through the library's one logging path and its sink.
#include <butil/logging.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <butil/endpoint.h>
#include <butil/iobuf.h>
#include <gtest/gtest.h>

namespace {

struct Line {
    int level;
    std::string file;
    int line;
    std::string text;
};

std::mutex g_mutex;
std::vector<Line> g_lines;

void Collect(int level, const char* file, int line, const uint8_t* message, size_t len, void*) {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_lines.push_back(Line{level, file, line, std::string(reinterpret_cast<const char*>(message), len)});
}

class LoggingTest : public ::testing::Test {
protected:
    void SetUp() override {
        g_lines.clear();
        brpc_log_set_sink(&Collect, nullptr);
        logging::SetMinLogLevel(logging::BLOG_INFO);
    }
    void TearDown() override {
        brpc_log_set_sink(nullptr, nullptr);
        logging::SetMinLogLevel(logging::BLOG_INFO);
        FLAGS_v = 0;
    }
    static std::vector<std::string> Texts() {
        std::lock_guard<std::mutex> lock(g_mutex);
        std::vector<std::string> texts;
        for (const Line& l : g_lines) {
            texts.push_back(l.text);
        }
        return texts;
    }
};

TEST_F(LoggingTest, LogReachesTheSinkWithLevelFileAndLine) {
    const int line = __LINE__ + 1;
    LOG(WARNING) << "value=" << 42;
    ASSERT_EQ(g_lines.size(), 1u);
    EXPECT_EQ(g_lines[0].level, logging::BLOG_WARNING);
    EXPECT_NE(g_lines[0].file.find("logging_test.cpp"), std::string::npos);
    EXPECT_EQ(g_lines[0].line, line);
    EXPECT_EQ(g_lines[0].text, "value=42");
}

TEST_F(LoggingTest, LinesBelowTheMinimumLevelAreNotWrittenNorEvaluated) {
    logging::SetMinLogLevel(logging::BLOG_ERROR);
    int evaluated = 0;
    LOG(INFO) << "hidden" << ++evaluated;
    LOG(ERROR) << "shown";
    EXPECT_EQ(evaluated, 0);
    EXPECT_EQ(Texts(), std::vector<std::string>{"shown"});
}

TEST_F(LoggingTest, LogIfWritesOnlyWhenTheConditionHolds) {
    LOG_IF(INFO, false) << "no";
    LOG_IF(INFO, true) << "yes";
    EXPECT_EQ(Texts(), std::vector<std::string>{"yes"});
}

TEST_F(LoggingTest, PlogAppendsTheErrnoText) {
    errno = ENOENT;
    PLOG(ERROR) << "open";
    ASSERT_EQ(g_lines.size(), 1u);
    EXPECT_EQ(g_lines[0].text, std::string("open: ") + strerror(ENOENT) + " [" + std::to_string(ENOENT) + "]");
}

TEST_F(LoggingTest, VlogFollowsTheVerboseLevel) {
    VLOG(1) << "off";
    FLAGS_v = 1;
    logging::SetMinLogLevel(logging::BLOG_VERBOSE);
    VLOG(1) << "on";
    VLOG(2) << "too verbose";
    EXPECT_EQ(Texts(), std::vector<std::string>{"on"});
}

TEST_F(LoggingTest, VlogNeedsOnlyTheVerboseLevelNotTheMinimumLevel) {
    FLAGS_v = 1;
    VLOG(1) << "shown at the default minimum level";
    LOG(DEBUG) << "held back by the minimum level";
    logging::SetMinLogLevel(logging::BLOG_ERROR);
    VLOG(1) << "shown above it too";
    LOG(WARNING) << "held back";
    EXPECT_EQ(Texts(), (std::vector<std::string>{"shown at the default minimum level", "shown above it too"}));
}

TEST_F(LoggingTest, TheCFunctionWithoutAFunctionNameHoldsVerboseLinesToTheMinimumLevel) {
    const std::string text = "verbose";
    brpc_log_write(-1, __FILE__, __LINE__, reinterpret_cast<const uint8_t*>(text.data()), text.size());
    EXPECT_TRUE(Texts().empty());
    logging::SetMinLogLevel(logging::BLOG_VERBOSE);
    brpc_log_write(-1, __FILE__, __LINE__, reinterpret_cast<const uint8_t*>(text.data()), text.size());
    EXPECT_EQ(Texts(), std::vector<std::string>{"verbose"});
}

TEST_F(LoggingTest, EveryNFirstNAndOnceCountPerCallSite) {
    for (int i = 0; i < 10; ++i) {
        LOG_EVERY_N(INFO, 4) << "every " << i;
    }
    for (int i = 0; i < 10; ++i) {
        LOG_FIRST_N(INFO, 2) << "first " << i;
    }
    for (int i = 0; i < 3; ++i) {
        LOG_ONCE(INFO) << "once";
    }
    for (int i = 0; i < 3; ++i) {
        LOG_EVERY_SECOND(INFO) << "second";
    }
    EXPECT_EQ(Texts(), (std::vector<std::string>{"every 0", "every 4", "every 8", "first 0", "first 1", "once",
                                                  "second"}));
}

TEST_F(LoggingTest, NoflushJoinsTheThreadsNextLine) {
    LOG(INFO) << "part one, " << noflush;
    LOG(INFO) << "part two";
    EXPECT_EQ(Texts(), std::vector<std::string>{"part one, part two"});
}

TEST_F(LoggingTest, IobufAndEndpointStreamIntoALine) {
    butil::IOBuf buf;
    buf.append("payload");
    butil::EndPoint point;
    ASSERT_EQ(butil::str2endpoint("127.0.0.1:8000", &point), 0);
    LOG(INFO) << buf << " from " << point;
    EXPECT_EQ(Texts(), std::vector<std::string>{"payload from 127.0.0.1:8000"});
}

TEST_F(LoggingTest, PassingChecksWriteNothing) {
    int calls = 0;
    CHECK(++calls == 1) << "never shown";
    CHECK_EQ(1 + 1, 2);
    CHECK_NE(1, 2);
    CHECK_LT(1, 2);
    CHECK_LE(2, 2);
    CHECK_GT(3, 2);
    CHECK_GE(3, 3);
    DCHECK(true);
    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(Texts().empty());
}

TEST_F(LoggingTest, ConcurrentLinesArriveWholeAndNoneIsLost) {
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([t] {
            for (int i = 0; i < 500; ++i) {
                LOG(INFO) << "thread " << t << " line " << i << " end";
            }
        });
    }
    for (std::thread& th : threads) {
        th.join();
    }
    const std::vector<std::string> texts = Texts();
    ASSERT_EQ(texts.size(), 2000u);
    for (const std::string& text : texts) {
        EXPECT_EQ(text.rfind("thread ", 0), 0u);
        EXPECT_EQ(text.substr(text.size() - 4), " end");
    }
}

TEST_F(LoggingTest, LogDebugIsWrittenAtBrpcsDebugSeverity) {
    logging::SetMinLogLevel(logging::BLOG_VERBOSE);
    LOG(DEBUG) << "debug line";
    LOG(NOTICE) << "notice line";
    ASSERT_EQ(g_lines.size(), 2u);
    // brpc's DEBUG is INFO in debug builds and VERBOSE under NDEBUG.
    EXPECT_EQ(g_lines[0].level, logging::BLOG_DEBUG);
    EXPECT_EQ(g_lines[0].text, "debug line");
    EXPECT_EQ(g_lines[1].level, logging::BLOG_NOTICE);
}

TEST_F(LoggingTest, TheLibrarysOwnMessagesGoThroughTheSinkWithTheirRustSource) {
    brpc_channel* channel = nullptr;
    EXPECT_EQ(EINVAL, brpc_channel_init("127.0.0.1:1", "no_such_balancer", nullptr, &channel, nullptr, 0));
    std::lock_guard<std::mutex> lock(g_mutex);
    ASSERT_EQ(g_lines.size(), 1u);
    EXPECT_EQ(g_lines[0].level, logging::BLOG_ERROR);
    EXPECT_EQ(g_lines[0].file.substr(g_lines[0].file.size() - 3), ".rs");
    EXPECT_NE(g_lines[0].text.find("no_such_balancer"), std::string::npos) << g_lines[0].text;
}

TEST_F(LoggingTest, TheMinimumLevelSetFromCFiltersTheLibrarysMessagesToo) {
    brpc_log_set_min_level(logging::BLOG_FATAL);
    EXPECT_EQ(brpc_log_min_level(), logging::BLOG_FATAL);
    EXPECT_EQ(logging::GetMinLogLevel(), logging::BLOG_FATAL);
    brpc_channel* channel = nullptr;
    EXPECT_EQ(EINVAL, brpc_channel_init("127.0.0.1:1", "no_such_balancer", nullptr, &channel, nullptr, 0));
    LOG(ERROR) << "filtered too";
    EXPECT_TRUE(Texts().empty());
}

TEST_F(LoggingTest, DchecksAreCheckedInDebugBuildsOnlyAndNeverEvaluatedOtherwise) {
    int evaluated = 0;
    DCHECK(++evaluated > 0);
    DCHECK_EQ(++evaluated, 2);
#if DCHECK_IS_ON()
    EXPECT_EQ(evaluated, 2);
    EXPECT_DEATH({ DCHECK_LT(2, 1) << "debug"; }, "Check failed: 2 < 1");
#else
    EXPECT_EQ(evaluated, 0);
    DCHECK_LT(2, 1) << "never checked";
#endif
    EXPECT_TRUE(Texts().empty());
}

// The default sink's line, against brpc's default format (brpc's
// logging.cc with log_pid=false, log_bid=true, log_year=false,
// log_hostname=false): severity letter, MMDD hh:mm:ss.uuuuuu, the thread
// id (width 5), the bthread id (0 off a bthread), __FILE__:line, the
// function, "] ", the text. Seen from brpc's echo server:
// "I1202 13:37:00.391922 30291 8589934849 /work/brpc-src/example/echo_c++/server.cpp:61 Echo] ..."
void LogFromANamedFunction(int* line) {
    *line = __LINE__ + 1;
    LOG(WARNING) << "formatted " << 7;
}

TEST(LoggingFormatTest, TheDefaultLineIsBrpcsWithThreadBthreadFileLineAndFunction) {
    brpc_log_set_sink(nullptr, nullptr);
    int line = 0;
    testing::internal::CaptureStderr();
    LogFromANamedFunction(&line);
    const std::string out = testing::internal::GetCapturedStderr();
    const std::string tail =
        std::string(" ") + __FILE__ + ":" + std::to_string(line) + " LogFromANamedFunction] formatted 7\n";
    ASSERT_GT(out.size(), tail.size()) << out;
    EXPECT_EQ(out.substr(out.size() - tail.size()), tail) << out;
    // W, MMDD, time to the microsecond ('9' a digit), thread id, bthread id 0.
    const std::string shape = "W9999 99:99:99.999999";
    for (size_t i = 0; i < shape.size(); ++i) {
        EXPECT_TRUE(shape[i] == '9' ? isdigit(static_cast<unsigned char>(out[i])) != 0 : out[i] == shape[i])
            << "at " << i << ": " << out;
    }
    unsigned long thread = 0;
    unsigned bthread = 1;
    char path_start = 0;
    EXPECT_EQ(3, sscanf(out.c_str() + shape.size(), " %lu %u %c", &thread, &bthread, &path_start)) << out;
    EXPECT_EQ(0u, bthread) << out;
    EXPECT_EQ('/', path_start) << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
}

TEST(LoggingFormatTest, AVlogLineShowsItsVerbosityAndVlogZeroIsInfo) {
    brpc_log_set_sink(nullptr, nullptr);
    logging::SetMinLogLevel(logging::BLOG_VERBOSE);
    FLAGS_v = 2;
    testing::internal::CaptureStderr();
    VLOG(2) << "two";
    const std::string two = testing::internal::GetCapturedStderr();
    testing::internal::CaptureStderr();
    VLOG(0) << "zero";
    const std::string zero = testing::internal::GetCapturedStderr();
    FLAGS_v = 0;
    logging::SetMinLogLevel(logging::BLOG_INFO);
    EXPECT_EQ(two.substr(0, 3), "V2 ") << two;
    EXPECT_NE(two.find(" TestBody] two\n"), std::string::npos) << two;
    EXPECT_EQ(zero.substr(0, 1), "I") << zero;
}

TEST(LoggingDeathTest, AFailedCheckLogsTheValuesAndAborts) {
    const int two = 2;
    EXPECT_DEATH({ CHECK_EQ(two, 3) << "extra"; }, "Check failed: two == 3 \\(2 vs 3\\)\\. extra");
}

TEST(LoggingDeathTest, LogFatalAborts) {
    EXPECT_DEATH({ LOG(FATAL) << "fatal here"; }, "fatal here");
}

}  // namespace
