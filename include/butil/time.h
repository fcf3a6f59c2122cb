// butil/time.h: brpc's clock helpers (wall clock, monotonic and the cheap
// "cpuwide" clock, in ns/us/ms/s), timespec arithmetic and butil::Timer.
#ifndef BUTIL_BAIDU_TIME_H
#define BUTIL_BAIDU_TIME_H

#include <stdint.h>
#include <sys/time.h>
#include <time.h>

namespace butil {

inline void timespec_normalize(timespec* tm) {
    if (tm->tv_nsec >= 1000000000L) {
        const int64_t carry = tm->tv_nsec / 1000000000L;
        tm->tv_nsec -= carry * 1000000000L;
        tm->tv_sec += carry;
    } else if (tm->tv_nsec < 0) {
        const int64_t borrow = (-tm->tv_nsec - 1) / 1000000000L + 1;
        tm->tv_nsec += borrow * 1000000000L;
        tm->tv_sec -= borrow;
    }
}
inline void timespec_add(timespec* tm, const timespec& span) {
    tm->tv_sec += span.tv_sec;
    tm->tv_nsec += span.tv_nsec;
    timespec_normalize(tm);
}
inline void timespec_minus(timespec* tm, const timespec& span) {
    tm->tv_sec -= span.tv_sec;
    tm->tv_nsec -= span.tv_nsec;
    timespec_normalize(tm);
}

inline int64_t timespec_to_nanoseconds(const timespec& ts) { return ts.tv_sec * 1000000000L + ts.tv_nsec; }
inline int64_t timespec_to_microseconds(const timespec& ts) { return timespec_to_nanoseconds(ts) / 1000L; }
inline int64_t timespec_to_milliseconds(const timespec& ts) { return timespec_to_nanoseconds(ts) / 1000000L; }
inline int64_t timespec_to_seconds(const timespec& ts) { return timespec_to_nanoseconds(ts) / 1000000000L; }
inline timespec nanoseconds_to_timespec(int64_t ns) {
    timespec ts;
    ts.tv_sec = ns / 1000000000L;
    ts.tv_nsec = ns - ts.tv_sec * 1000000000L;
    timespec_normalize(&ts);
    return ts;
}
inline timespec microseconds_to_timespec(int64_t us) { return nanoseconds_to_timespec(us * 1000L); }
inline timespec milliseconds_to_timespec(int64_t ms) { return nanoseconds_to_timespec(ms * 1000000L); }
inline timespec seconds_to_timespec(int64_t s) { return nanoseconds_to_timespec(s * 1000000000L); }

inline timespec nanoseconds_from(timespec start_time, int64_t nanoseconds) {
    start_time.tv_nsec += nanoseconds;
    timespec_normalize(&start_time);
    return start_time;
}
inline timespec microseconds_from(timespec start_time, int64_t us) { return nanoseconds_from(start_time, us * 1000L); }
inline timespec milliseconds_from(timespec start_time, int64_t ms) { return nanoseconds_from(start_time, ms * 1000000L); }
inline timespec seconds_from(timespec start_time, int64_t s) { return nanoseconds_from(start_time, s * 1000000000L); }
// Absolute wall-clock deadlines, as brpc's *_from_now.
inline timespec nanoseconds_from_now(int64_t ns) {
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return nanoseconds_from(now, ns);
}
inline timespec microseconds_from_now(int64_t us) { return nanoseconds_from_now(us * 1000L); }
inline timespec milliseconds_from_now(int64_t ms) { return nanoseconds_from_now(ms * 1000000L); }
inline timespec seconds_from_now(int64_t s) { return nanoseconds_from_now(s * 1000000000L); }

inline int64_t timeval_to_microseconds(const timeval& tv) { return tv.tv_sec * 1000000L + tv.tv_usec; }
inline int64_t timeval_to_milliseconds(const timeval& tv) { return timeval_to_microseconds(tv) / 1000L; }
inline int64_t timeval_to_seconds(const timeval& tv) { return timeval_to_microseconds(tv) / 1000000L; }
inline timeval microseconds_to_timeval(int64_t us) {
    timeval tv;
    tv.tv_sec = us / 1000000L;
    tv.tv_usec = us - tv.tv_sec * 1000000L;
    return tv;
}
inline timeval milliseconds_to_timeval(int64_t ms) { return microseconds_to_timeval(ms * 1000L); }
inline timeval seconds_to_timeval(int64_t s) { return microseconds_to_timeval(s * 1000000L); }

inline int64_t monotonic_time_ns() {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return timespec_to_nanoseconds(now);
}
inline int64_t monotonic_time_us() { return monotonic_time_ns() / 1000L; }
inline int64_t monotonic_time_ms() { return monotonic_time_ns() / 1000000L; }
inline int64_t monotonic_time_s() { return monotonic_time_ns() / 1000000000L; }

// brpc reads the TSC here; the vDSO's CLOCK_MONOTONIC is as cheap and
// never goes backwards across cores.
inline int64_t cpuwide_time_ns() { return monotonic_time_ns(); }
inline int64_t cpuwide_time_us() { return cpuwide_time_ns() / 1000L; }
inline int64_t cpuwide_time_ms() { return cpuwide_time_ns() / 1000000L; }
inline int64_t cpuwide_time_s() { return cpuwide_time_ns() / 1000000000L; }
inline int64_t cputhread_time_ns() {
    timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return timespec_to_nanoseconds(now);
}

inline int64_t gettimeofday_us() {
    timeval now;
    gettimeofday(&now, NULL);
    return timeval_to_microseconds(now);
}
inline int64_t gettimeofday_ms() { return gettimeofday_us() / 1000L; }
inline int64_t gettimeofday_s() { return gettimeofday_us() / 1000000L; }

// True at most once per interval (for periodic work in a loop).
class EveryManyUS {
public:
    explicit EveryManyUS(int64_t interval_us) : _last_time_us(cpuwide_time_us()), _interval_us(interval_us) {}
    operator bool() {
        const int64_t now_us = cpuwide_time_us();
        if (now_us < _last_time_us + _interval_us) {
            return false;
        }
        _last_time_us = now_us;
        return true;
    }

private:
    int64_t _last_time_us;
    const int64_t _interval_us;
};

// Measures the time between start() and stop().
class Timer {
public:
    enum TimerType { STARTED };
    Timer() : _stop(0), _start(0) {}
    explicit Timer(const TimerType) : Timer() { start(); }
    void start() {
        _start = cpuwide_time_ns();
        _stop = _start;
    }
    void stop() { _stop = cpuwide_time_ns(); }
    int64_t n_elapsed() const { return _stop - _start; }
    int64_t u_elapsed() const { return n_elapsed() / 1000L; }
    int64_t m_elapsed() const { return u_elapsed() / 1000L; }
    int64_t s_elapsed() const { return m_elapsed() / 1000L; }
    double n_elapsed(double) const { return static_cast<double>(_stop - _start); }
    double u_elapsed(double) const { return n_elapsed(0.0) / 1000.0; }
    double m_elapsed(double) const { return u_elapsed(0.0) / 1000.0; }
    double s_elapsed(double) const { return m_elapsed(0.0) / 1000.0; }

private:
    int64_t _stop;
    int64_t _start;
};

}  // namespace butil

#endif  // BUTIL_BAIDU_TIME_H
