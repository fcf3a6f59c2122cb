// berror(): the text of an error number, brpc's wording for brpc's own
// numbers (<brpc/errno.h>) and the C library's for errno values.
// Header-only (C++11). The returned string stays valid until the calling
// thread's next berror call.

#ifndef BUTIL_ERRNO_H
#define BUTIL_ERRNO_H

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace butil {
namespace errno_detail {

// The descriptions brpc registers for its codes, so texts match brpc's.
inline const char* brpc_error_text(int error_code) {
    switch (error_code) {
    case 1001: return "No such service";
    case 1002: return "No such method";
    case 1003: return "Bad request";
    case 1004: return "Authentication failed";
    case 1005: return "Too many sub channels failed";
    case 1006: return "ParallelChannel finished";
    case 1007: return "Sending backup request";
    case 1008: return "RPC call is timed out";
    case 1009: return "Broken socket";
    case 1010: return "Bad http call";
    case 1011: return "The server is overcrowded";
    case 1012: return "RtmpRetryingClientStream is publishable";
    case 1013: return "createStream was rejected by the RTMP server";
    case 1014: return "Got EOF";
    case 1015: return "The socket was not needed";
    case 1016: return "SSL related operation failed";
    case 1017: return "The H2 socket was run out of streams";
    case 2001: return "General internal error";
    case 2002: return "Bad response";
    case 2003: return "Server is stopping";
    case 2004: return "Reached server's max_concurrency";
    case 2005: return "Close socket initiatively";
    case 2006: return "Bad Itp response";
    default: return NULL;
    }
}

// strerror_r is the GNU variant (returns the text, maybe not in buf) or the
// XSI one (returns 0 on success) depending on feature macros; accept both.
inline const char* strerror_r_text(const char* text, const char*) { return text; }
inline const char* strerror_r_text(int rc, const char* buf) { return rc == 0 ? buf : NULL; }

}  // namespace errno_detail
}  // namespace butil

inline const char* berror(int error_code) {
    const char* brpc_text = butil::errno_detail::brpc_error_text(error_code);
    if (brpc_text != NULL) {
        return brpc_text;
    }
    // Callers often pass errno and read it again afterwards.
    const int saved_errno = errno;
    thread_local char buf[128];
    const char* text =
        butil::errno_detail::strerror_r_text(strerror_r(error_code, buf, sizeof(buf)), buf);
    if (text == NULL || text[0] == '\0') {
        snprintf(buf, sizeof(buf), "Unknown error %d", error_code);
        text = buf;
    }
    errno = saved_errno;
    return text;
}

// The text of the calling thread's errno.
inline const char* berror() { return berror(errno); }

#endif  // BUTIL_ERRNO_H
