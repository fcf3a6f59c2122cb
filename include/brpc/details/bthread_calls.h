// The bthread names brpc programs reach through brpc's own headers (brpc's
// controller.h and server.h include <bthread/bthread.h>, so examples call
// bthread_usleep having included only <brpc/server.h>).
//
// bthread itself is not provided: <bthread/bthread.h> stops the build.
// Methods and callbacks run on the library's worker threads, which are
// pthreads, so bthread_usleep sleeps the calling thread (the pool starts
// another worker when all of them are blocked). Every other bthread call
// stops the build where it is used, with a message naming it.

#ifndef BRPC_DETAILS_BTHREAD_CALLS_H
#define BRPC_DETAILS_BTHREAD_CALLS_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

#include <type_traits>

// brpc declares CallId as bthread's id type, a struct around a 64-bit value:
// same name, same layout.
#ifndef BRPC_STREAM_BTHREAD_ID_T
#define BRPC_STREAM_BTHREAD_ID_T
typedef struct {
    uint64_t value;
} bthread_id_t;
#endif

// Declared so that programs declaring variables of these types reach the
// clear message at the call instead of an unknown type.
typedef uint64_t bthread_t;
typedef struct {
    uint32_t index;
    uint32_t version;
} bthread_key_t;

// Sleeps the calling thread for `microseconds`; 0 (EINTR resumes the sleep).
inline int bthread_usleep(uint64_t microseconds) {
    struct timespec left;
    left.tv_sec = (time_t)(microseconds / 1000000);
    left.tv_nsec = (long)(microseconds % 1000000) * 1000;
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
    return 0;
}

namespace brpc_stream_internal {
template <typename... Args>
struct NotProvided : std::false_type {};
}  // namespace brpc_stream_internal

#define BRPC_STREAM_BTHREAD_NOT_PROVIDED(result, name)                                             \
    template <typename... Args>                                                                  \
    inline result name(Args&&...) {                                                              \
        static_assert(brpc_stream_internal::NotProvided<Args...>::value,                         \
                      "brpc_stream: " #name " is not provided: bthread (brpc's M:N threads) is " \
                      "not part of this library; use std::thread / pthread keys (methods and "   \
                      "callbacks run on the library's worker threads, which are pthreads)");     \
        return static_cast<result>(0);                                                           \
    }

BRPC_STREAM_BTHREAD_NOT_PROVIDED(int, bthread_start_background)
BRPC_STREAM_BTHREAD_NOT_PROVIDED(int, bthread_start_urgent)
BRPC_STREAM_BTHREAD_NOT_PROVIDED(int, bthread_join)
BRPC_STREAM_BTHREAD_NOT_PROVIDED(int, bthread_key_create)
BRPC_STREAM_BTHREAD_NOT_PROVIDED(int, bthread_key_delete)
BRPC_STREAM_BTHREAD_NOT_PROVIDED(void*, bthread_getspecific)
BRPC_STREAM_BTHREAD_NOT_PROVIDED(int, bthread_setspecific)

#undef BRPC_STREAM_BTHREAD_NOT_PROVIDED

#endif  // BRPC_DETAILS_BTHREAD_CALLS_H
