// brpc's TRACEPRINTF / TRACEPRINTF_SPAN annotate the current call's rpcz
// span. rpcz (brpc's call tracing) is not part of this library, so a
// program that uses them stops the build at the use, with a message
// naming what is missing; including this header alone compiles.
#ifndef BRPC_TRACEPRINTF_H
#define BRPC_TRACEPRINTF_H

#include <type_traits>

namespace brpc_stream_internal {
template <typename... Args>
struct RpczNotProvided : std::false_type {};

template <typename... Args>
inline void TraceprintfNotProvided(Args&&...) {
    static_assert(RpczNotProvided<Args...>::value,
                  "brpc_stream: TRACEPRINTF is not provided: rpcz (brpc's call tracing and its "
                  "spans) is not part of this library; log with LOG(INFO) or CLOGI(cntl) instead");
}
}  // namespace brpc_stream_internal

#define TRACEPRINTF(fmt, ...) ::brpc_stream_internal::TraceprintfNotProvided(fmt, ##__VA_ARGS__)
#define TRACEPRINTF_SPAN(span_ptr, fmt, ...) \
    ::brpc_stream_internal::TraceprintfNotProvided(span_ptr, fmt, ##__VA_ARGS__)

#endif  // BRPC_TRACEPRINTF_H
