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

namespace brpc_stream_internal {
template <typename... Args>
struct NotProvided : std::false_type {};

// A bthread type a program names: naming it (in a pointer, a parameter)
// compiles; anything that needs the type itself (a variable, sizeof, an
// initializer) stops the build with the message.
template <int kWhich>
struct BthreadTypeNotProvided {
    // Takes any initializer, so that the message below is the only error.
    template <typename... Args>
    BthreadTypeNotProvided(Args&&...) {}
    static_assert(kWhich < 0,
                  "brpc_stream: bthread_attr_t / bthread_list_t are not provided: bthread (brpc's M:N "
                  "threads) is not part of this library; use std::thread (methods and callbacks run on "
                  "the library's worker threads, which are pthreads)");
};
}  // namespace brpc_stream_internal

typedef brpc_stream_internal::BthreadTypeNotProvided<0> bthread_attr_t;
typedef brpc_stream_internal::BthreadTypeNotProvided<1> bthread_list_t;
// brpc's constants for bthread_attr_t's fields, with its values; they mean
// nothing here without a bthread_attr_t.
typedef unsigned bthread_stacktype_t;
typedef unsigned bthread_attrflags_t;
typedef int bthread_tag_t;
static const bthread_tag_t BTHREAD_TAG_INVALID = -1;
static const bthread_stacktype_t BTHREAD_STACKTYPE_UNKNOWN = 0;
static const bthread_stacktype_t BTHREAD_STACKTYPE_PTHREAD = 1;
static const bthread_stacktype_t BTHREAD_STACKTYPE_SMALL = 2;
static const bthread_stacktype_t BTHREAD_STACKTYPE_NORMAL = 3;
static const bthread_stacktype_t BTHREAD_STACKTYPE_LARGE = 4;
static const bthread_attrflags_t BTHREAD_LOG_START_AND_FINISH = 8;
static const bthread_attrflags_t BTHREAD_LOG_CONTEXT_SWITCH = 16;
static const bthread_attrflags_t BTHREAD_NOSIGNAL = 32;
static const bthread_attrflags_t BTHREAD_NEVER_QUIT = 64;
static const bthread_attrflags_t BTHREAD_INHERIT_SPAN = 128;
// Declared, never defined: any use that needs the value stops the build at
// bthread_attr_t, one that passes its address at the bthread call.
extern const bthread_attr_t BTHREAD_ATTR_PTHREAD;
extern const bthread_attr_t BTHREAD_ATTR_SMALL;
extern const bthread_attr_t BTHREAD_ATTR_NORMAL;
extern const bthread_attr_t BTHREAD_ATTR_LARGE;

// Sleeps the calling thread for `microseconds`; 0 (EINTR resumes the sleep).
inline int bthread_usleep(uint64_t microseconds) {
    struct timespec left;
    left.tv_sec = (time_t)(microseconds / 1000000);
    left.tv_nsec = (long)(microseconds % 1000000) * 1000;
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
    return 0;
}

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
BRPC_STREAM_BTHREAD_NOT_PROVIDED(bthread_t, bthread_self)
BRPC_STREAM_BTHREAD_NOT_PROVIDED(int, bthread_list_init)
BRPC_STREAM_BTHREAD_NOT_PROVIDED(int, bthread_list_add)
BRPC_STREAM_BTHREAD_NOT_PROVIDED(int, bthread_list_stop)
BRPC_STREAM_BTHREAD_NOT_PROVIDED(int, bthread_list_join)
BRPC_STREAM_BTHREAD_NOT_PROVIDED(int, bthread_list_destroy)

#undef BRPC_STREAM_BTHREAD_NOT_PROVIDED

#endif  // BRPC_DETAILS_BTHREAD_CALLS_H
