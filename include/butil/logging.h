// butil/logging.h: brpc's logging macros (LOG, PLOG, VLOG, CHECK, DCHECK and
// their _IF / _EVERY_N / _FIRST_N / _ONCE / _EVERY_SECOND forms) over the
// library's one logging path: every line goes through brpc_log_write, so a
// program's sink (brpc_log_set_sink) and minimum level
// (logging::SetMinLogLevel, brpc_log_set_min_level) apply to the library's
// messages and the program's alike.
//
// As in brpc, a failed CHECK or a LOG(FATAL) in the program's own code logs
// and aborts: it is the program's assertion. The library itself never
// asserts.
#ifndef BUTIL_LOGGING_H
#define BUTIL_LOGGING_H

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <atomic>
#include <ostream>
#include <sstream>
#include <string>

#include "brpc_stream.h"
#include "butil/macros.h"

namespace logging {

typedef int LogSeverity;
const LogSeverity BLOG_VERBOSE = -1;
const LogSeverity BLOG_INFO = 0;
const LogSeverity BLOG_NOTICE = 1;
const LogSeverity BLOG_WARNING = 2;
const LogSeverity BLOG_ERROR = 3;
const LogSeverity BLOG_FATAL = 4;
const int LOG_NUM_SEVERITIES = 5;
const LogSeverity BLOG_TRACE = BLOG_INFO;
#ifndef NDEBUG
const LogSeverity BLOG_DEBUG = BLOG_INFO;
const LogSeverity BLOG_DFATAL = BLOG_FATAL;
#else
const LogSeverity BLOG_DEBUG = BLOG_VERBOSE;
const LogSeverity BLOG_DFATAL = BLOG_ERROR;
#endif

// Verbosity for VLOG(n): a VLOG(n) line is written when n <= FLAGS_v (brpc's
// -v flag; here a plain variable the program may set), whatever the minimum
// level, as in brpc (SetMinLogLevel holds LOG's levels back, not VLOG).
inline int& VerboseLevelStorage() {
    static int v = 0;
    return v;
}
#define FLAGS_v (::logging::VerboseLevelStorage())

inline void SetMinLogLevel(int level) { brpc_log_set_min_level(level); }
inline int GetMinLogLevel() { return brpc_log_min_level(); }

// The stream a LOG(...) statement writes into; noflush keeps its text for
// the thread's next LOG statement instead of writing a line now.
class LogStream : public std::ostringstream {
public:
    LogStream() : noflush_(false) {}
    void set_noflush() { noflush_ = true; }
    bool noflush() const { return noflush_; }

private:
    bool noflush_;
};

inline LogStream& noflush(LogStream& ls) {
    ls.set_noflush();
    return ls;
}

inline std::ostream& operator<<(std::ostream& os, LogStream& (*manip)(LogStream&)) {
    LogStream* ls = dynamic_cast<LogStream*>(&os);
    if (ls != NULL) {
        manip(*ls);
    }
    return os;
}

namespace logging_internal {

// Text left by a noflush statement, prefixed to the thread's next line.
inline std::string& PendingText() {
    static thread_local std::string pending;
    return pending;
}

inline int64_t MonotonicUs() {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return static_cast<int64_t>(now.tv_sec) * 1000000 + now.tv_nsec / 1000;
}

// True once a second per call site (the site's `last` timestamp).
inline bool EverySecond(std::atomic<int64_t>* last) {
    const int64_t now = MonotonicUs();
    int64_t seen = last->load(std::memory_order_relaxed);
    return now - seen >= 1000000 &&
           last->compare_exchange_strong(seen, now, std::memory_order_relaxed);
}

}  // namespace logging_internal

// One log statement: collects the text, writes it as one line when
// destroyed; a FATAL one aborts after writing. `func` is the function the
// statement is in (the LOG macros pass __func__), shown after file:line as
// brpc shows it; "" for none. A negative severity -n is a VLOG(n) line.
class LogMessage {
public:
    LogMessage(const char* file, int line, LogSeverity severity)
        : file_(file), line_(line), func_(""), severity_(severity), errno_to_append_(0), append_errno_(false) {}
    LogMessage(const char* file, int line, const char* func, LogSeverity severity)
        : file_(file), line_(line), func_(func), severity_(severity), errno_to_append_(0), append_errno_(false) {}
    // For PLOG: the errno saved before the statement's arguments ran.
    LogMessage(const char* file, int line, const char* func, LogSeverity severity, int saved_errno)
        : file_(file), line_(line), func_(func), severity_(severity), errno_to_append_(saved_errno),
          append_errno_(true) {}
    // For failed CHECK_op: `check_text` is the "Check failed: ..." line.
    LogMessage(const char* file, int line, std::string* check_text)
        : file_(file), line_(line), func_(""), severity_(BLOG_FATAL), errno_to_append_(0), append_errno_(false) {
        stream_ << *check_text;
        delete check_text;
    }
    LogMessage(const char* file, int line, const char* func, std::string* check_text)
        : file_(file), line_(line), func_(func), severity_(BLOG_FATAL), errno_to_append_(0), append_errno_(false) {
        stream_ << *check_text;
        delete check_text;
    }

    ~LogMessage() {
        if (append_errno_) {
            stream_ << ": " << strerror(errno_to_append_) << " [" << errno_to_append_ << "]";
        }
        std::string& pending = logging_internal::PendingText();
        if (stream_.noflush() && severity_ != BLOG_FATAL) {
            pending += stream_.str();
            return;
        }
        std::string text;
        text.swap(pending);
        text += stream_.str();
        brpc_log_write_at(severity_, file_, line_, func_, reinterpret_cast<const uint8_t*>(text.data()),
                          text.size());
        if (severity_ >= BLOG_FATAL) {
            abort();
        }
    }

    LogStream& stream() { return stream_; }

private:
    LogMessage(const LogMessage&);
    void operator=(const LogMessage&);

    const char* file_;
    int line_;
    const char* func_;
    LogSeverity severity_;
    int errno_to_append_;
    bool append_errno_;
    LogStream stream_;
};

// Turns `cond ? (void)0 : stream << ...` into one expression of type void.
class LogMessageVoidify {
public:
    LogMessageVoidify() {}
    void operator&(std::ostream&) {}
};

// CHECK_op helpers: NULL when the comparison holds, else the failure text
// with both values (the caller's LogMessage frees it).
template <typename T1, typename T2>
std::string* MakeCheckOpString(const T1& v1, const T2& v2, const char* names) {
    std::ostringstream ss;
    ss << "Check failed: " << names << " (" << v1 << " vs " << v2 << "). ";
    return new std::string(ss.str());
}

#define BAIDU_DEFINE_CHECK_OP_IMPL(name, op)                                              \
    template <typename T1, typename T2>                                                   \
    inline std::string* Check##name##Impl(const T1& v1, const T2& v2, const char* names) { \
        if (v1 op v2) return NULL;                                                        \
        return MakeCheckOpString(v1, v2, names);                                          \
    }
BAIDU_DEFINE_CHECK_OP_IMPL(EQ, ==)
BAIDU_DEFINE_CHECK_OP_IMPL(NE, !=)
BAIDU_DEFINE_CHECK_OP_IMPL(LE, <=)
BAIDU_DEFINE_CHECK_OP_IMPL(LT, <)
BAIDU_DEFINE_CHECK_OP_IMPL(GE, >=)
BAIDU_DEFINE_CHECK_OP_IMPL(GT, >)
#undef BAIDU_DEFINE_CHECK_OP_IMPL

}  // namespace logging

using ::logging::noflush;

#define BAIDU_LAZY_STREAM(stream, condition) \
    !(condition) ? (void)0 : ::logging::LogMessageVoidify() & (stream)

#define LOG_IS_ON(severity) \
    (::logging::BLOG_##severity >= ::logging::BLOG_FATAL || \
     ::logging::BLOG_##severity >= ::logging::GetMinLogLevel())
#define VLOG_IS_ON(verbose_level) ((verbose_level) >= 0 && FLAGS_v >= (verbose_level))

#define LOG_STREAM(severity) \
    ::logging::LogMessage(__FILE__, __LINE__, __func__, ::logging::BLOG_##severity).stream()
#define PLOG_STREAM(severity) \
    ::logging::LogMessage(__FILE__, __LINE__, __func__, ::logging::BLOG_##severity, errno).stream()

#define LOG(severity) BAIDU_LAZY_STREAM(LOG_STREAM(severity), LOG_IS_ON(severity))
#define LOG_IF(severity, condition) \
    BAIDU_LAZY_STREAM(LOG_STREAM(severity), LOG_IS_ON(severity) && (condition))
#define PLOG(severity) BAIDU_LAZY_STREAM(PLOG_STREAM(severity), LOG_IS_ON(severity))
#define PLOG_IF(severity, condition) \
    BAIDU_LAZY_STREAM(PLOG_STREAM(severity), LOG_IS_ON(severity) && (condition))
#define LOG_AT(severity, file, line)                                                      \
    BAIDU_LAZY_STREAM(::logging::LogMessage(file, line, ::logging::BLOG_##severity).stream(), \
                      LOG_IS_ON(severity))
#define LOG_ASSERT(condition) LOG_IF(FATAL, !(condition)) << "Assert failed: " #condition ". "

// A VLOG(n) line has severity -n, as in brpc (VLOG(0) is an INFO line).
#define VLOG_STREAM(verbose_level) \
    ::logging::LogMessage(__FILE__, __LINE__, __func__, -(verbose_level)).stream()
#define VLOG(verbose_level) BAIDU_LAZY_STREAM(VLOG_STREAM(verbose_level), VLOG_IS_ON(verbose_level))
#define VLOG_IF(verbose_level, condition) \
    BAIDU_LAZY_STREAM(VLOG_STREAM(verbose_level), VLOG_IS_ON(verbose_level) && (condition))
#define VPLOG(verbose_level)                                                                    \
    BAIDU_LAZY_STREAM(::logging::LogMessage(__FILE__, __LINE__, __func__, -(verbose_level), errno).stream(), \
                      VLOG_IS_ON(verbose_level))

// Every N-th time (the 1st, N+1-th, ...), the first N times, once a second:
// statements, as in brpc (each declares a counter for its call site).
#define BAIDU_LOG_IF_EVERY_N_IMPL(logifmacro, severity, condition, N)                      \
    static std::atomic<int> BAIDU_CONCAT(logeveryn_, __LINE__)(-1);                        \
    const int BAIDU_CONCAT(logeveryn_sc_, __LINE__) = (N);                                 \
    const int BAIDU_CONCAT(logeveryn_c_, __LINE__) =                                       \
        BAIDU_CONCAT(logeveryn_, __LINE__).fetch_add(1, std::memory_order_relaxed) + 1;    \
    logifmacro(severity, (condition) && (BAIDU_CONCAT(logeveryn_sc_, __LINE__) <= 1 ||     \
                                         BAIDU_CONCAT(logeveryn_c_, __LINE__) %            \
                                                 BAIDU_CONCAT(logeveryn_sc_, __LINE__) == 0))
#define BAIDU_LOG_IF_FIRST_N_IMPL(logifmacro, severity, condition, N)                      \
    static std::atomic<int> BAIDU_CONCAT(logfstn_, __LINE__)(0);                           \
    logifmacro(severity, (condition) && BAIDU_CONCAT(logfstn_, __LINE__).load(std::memory_order_relaxed) < (N) && \
                             BAIDU_CONCAT(logfstn_, __LINE__).fetch_add(1, std::memory_order_relaxed) < (N))
#define BAIDU_LOG_IF_EVERY_SECOND_IMPL(logifmacro, severity, condition)                    \
    static std::atomic<int64_t> BAIDU_CONCAT(logeverys_, __LINE__)(-1000000000LL);         \
    logifmacro(severity, (condition) &&                                                    \
                             ::logging::logging_internal::EverySecond(&BAIDU_CONCAT(logeverys_, __LINE__)))

#define LOG_EVERY_N(severity, N) BAIDU_LOG_IF_EVERY_N_IMPL(LOG_IF, severity, true, N)
#define LOG_IF_EVERY_N(severity, condition, N) BAIDU_LOG_IF_EVERY_N_IMPL(LOG_IF, severity, condition, N)
#define LOG_FIRST_N(severity, N) BAIDU_LOG_IF_FIRST_N_IMPL(LOG_IF, severity, true, N)
#define LOG_IF_FIRST_N(severity, condition, N) BAIDU_LOG_IF_FIRST_N_IMPL(LOG_IF, severity, condition, N)
#define LOG_ONCE(severity) LOG_FIRST_N(severity, 1)
#define LOG_IF_ONCE(severity, condition) LOG_IF_FIRST_N(severity, condition, 1)
#define LOG_EVERY_SECOND(severity) BAIDU_LOG_IF_EVERY_SECOND_IMPL(LOG_IF, severity, true)
#define LOG_IF_EVERY_SECOND(severity, condition) BAIDU_LOG_IF_EVERY_SECOND_IMPL(LOG_IF, severity, condition)
#define PLOG_EVERY_N(severity, N) BAIDU_LOG_IF_EVERY_N_IMPL(PLOG_IF, severity, true, N)
#define PLOG_FIRST_N(severity, N) BAIDU_LOG_IF_FIRST_N_IMPL(PLOG_IF, severity, true, N)
#define PLOG_ONCE(severity) PLOG_FIRST_N(severity, 1)
#define PLOG_EVERY_SECOND(severity) BAIDU_LOG_IF_EVERY_SECOND_IMPL(PLOG_IF, severity, true)

// CHECK: always evaluated; logs FATAL ("Check failed: ...") and aborts.
#define CHECK(condition) \
    BAIDU_LAZY_STREAM(LOG_STREAM(FATAL), !(condition)) << "Check failed: " #condition ". "
#define PCHECK(condition) \
    BAIDU_LAZY_STREAM(PLOG_STREAM(FATAL), !(condition)) << "Check failed: " #condition ". "
#define BAIDU_CHECK_OP(name, op, val1, val2)                                                   \
    while (std::string* _check_text =                                                          \
               ::logging::Check##name##Impl((val1), (val2), #val1 " " #op " " #val2))          \
    ::logging::LogMessage(__FILE__, __LINE__, __func__, _check_text).stream()
#define CHECK_EQ(val1, val2) BAIDU_CHECK_OP(EQ, ==, val1, val2)
#define CHECK_NE(val1, val2) BAIDU_CHECK_OP(NE, !=, val1, val2)
#define CHECK_LE(val1, val2) BAIDU_CHECK_OP(LE, <=, val1, val2)
#define CHECK_LT(val1, val2) BAIDU_CHECK_OP(LT, <, val1, val2)
#define CHECK_GE(val1, val2) BAIDU_CHECK_OP(GE, >=, val1, val2)
#define CHECK_GT(val1, val2) BAIDU_CHECK_OP(GT, >, val1, val2)

// D-forms: as the plain ones in debug builds; in NDEBUG builds they compile
// (their arguments must be valid) but never run.
#ifndef NDEBUG
#define DCHECK_IS_ON() 1
#define DLOG(severity) LOG(severity)
#define DLOG_IF(severity, condition) LOG_IF(severity, condition)
#define DPLOG(severity) PLOG(severity)
#define DPLOG_IF(severity, condition) PLOG_IF(severity, condition)
#define DVLOG(verbose_level) VLOG(verbose_level)
#define DLOG_EVERY_N(severity, N) LOG_EVERY_N(severity, N)
#define DLOG_FIRST_N(severity, N) LOG_FIRST_N(severity, N)
#define DLOG_ONCE(severity) LOG_ONCE(severity)
#define DLOG_EVERY_SECOND(severity) LOG_EVERY_SECOND(severity)
#define DLOG_ASSERT(condition) LOG_ASSERT(condition)
#define DCHECK(condition) CHECK(condition)
#define DPCHECK(condition) PCHECK(condition)
#define DCHECK_EQ(val1, val2) CHECK_EQ(val1, val2)
#define DCHECK_NE(val1, val2) CHECK_NE(val1, val2)
#define DCHECK_LE(val1, val2) CHECK_LE(val1, val2)
#define DCHECK_LT(val1, val2) CHECK_LT(val1, val2)
#define DCHECK_GE(val1, val2) CHECK_GE(val1, val2)
#define DCHECK_GT(val1, val2) CHECK_GT(val1, val2)
#else
#define DCHECK_IS_ON() 0
#define BAIDU_EAT_STREAM_PARAMS true ? (void)0 : ::logging::LogMessageVoidify() & LOG_STREAM(FATAL)
#define DLOG(severity) BAIDU_EAT_STREAM_PARAMS
#define DLOG_IF(severity, condition) BAIDU_EAT_STREAM_PARAMS
#define DPLOG(severity) BAIDU_EAT_STREAM_PARAMS
#define DPLOG_IF(severity, condition) BAIDU_EAT_STREAM_PARAMS
#define DVLOG(verbose_level) BAIDU_EAT_STREAM_PARAMS
#define DLOG_EVERY_N(severity, N) BAIDU_EAT_STREAM_PARAMS
#define DLOG_FIRST_N(severity, N) BAIDU_EAT_STREAM_PARAMS
#define DLOG_ONCE(severity) BAIDU_EAT_STREAM_PARAMS
#define DLOG_EVERY_SECOND(severity) BAIDU_EAT_STREAM_PARAMS
#define DLOG_ASSERT(condition) BAIDU_EAT_STREAM_PARAMS
#define DCHECK(condition) while (false) CHECK(condition)
#define DPCHECK(condition) while (false) PCHECK(condition)
#define DCHECK_EQ(val1, val2) while (false) CHECK_EQ(val1, val2)
#define DCHECK_NE(val1, val2) while (false) CHECK_NE(val1, val2)
#define DCHECK_LE(val1, val2) while (false) CHECK_LE(val1, val2)
#define DCHECK_LT(val1, val2) while (false) CHECK_LT(val1, val2)
#define DCHECK_GE(val1, val2) while (false) CHECK_GE(val1, val2)
#define DCHECK_GT(val1, val2) while (false) CHECK_GT(val1, val2)
#endif

#define NOTREACHED() LOG(ERROR) << "NOTREACHED() hit in " << __FUNCTION__ << ". "
#define NOTIMPLEMENTED() LOG(ERROR) << "Not implemented reached in " << __FUNCTION__

#endif  // BUTIL_LOGGING_H
