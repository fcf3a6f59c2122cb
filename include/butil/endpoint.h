// butil::EndPoint and the address helpers brpc programs use, header-only
// (C++11). IPv4 only: ip_t is struct in_addr as in brpc; IPv6 and unix
// socket addresses are out of scope and are rejected by the parsers.
//
// Functions returning int return 0 on success and -1 on failure (brpc's
// convention); the socket helpers return a descriptor or -1 with errno set.

#ifndef BUTIL_ENDPOINT_H
#define BUTIL_ENDPOINT_H

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <ostream>
#include <string>

namespace butil {

typedef struct in_addr ip_t;

static const ip_t IP_ANY = {INADDR_ANY};
static const ip_t IP_NONE = {INADDR_NONE};

inline in_addr_t ip2int(ip_t ip) { return ip.s_addr; }
inline ip_t int2ip(in_addr_t ip_value) {
    ip_t ip;
    ip.s_addr = ip_value;
    return ip;
}

// Dotted-decimal text, e.g. "127.0.0.1".
struct IPStr {
    const char* c_str() const { return _buf; }
    char _buf[INET_ADDRSTRLEN];
};

inline IPStr ip2str(ip_t ip) {
    IPStr str;
    if (inet_ntop(AF_INET, &ip, str._buf, sizeof(str._buf)) == NULL) {
        str._buf[0] = '\0';
    }
    return str;
}

// Parses a dotted-decimal IPv4 address; leading blanks are skipped.
inline int str2ip(const char* ip_str, ip_t* ip) {
    if (ip_str == NULL || ip == NULL) {
        return -1;
    }
    while (isspace(static_cast<unsigned char>(*ip_str))) {
        ++ip_str;
    }
    ip_t parsed;
    if (inet_pton(AF_INET, ip_str, &parsed) != 1) {
        return -1;
    }
    *ip = parsed;
    return 0;
}

// Resolves a host name (or dotted address) to its first IPv4 address; NULL
// means this machine's host name.
inline int hostname2ip(const char* hostname, ip_t* ip) {
    if (ip == NULL) {
        return -1;
    }
    char own_name[HOST_NAME_MAX + 1];
    if (hostname == NULL) {
        if (gethostname(own_name, sizeof(own_name)) != 0) {
            return -1;
        }
        own_name[HOST_NAME_MAX] = '\0';
        hostname = own_name;
    }
    while (isspace(static_cast<unsigned char>(*hostname))) {
        ++hostname;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo* found = NULL;
    if (getaddrinfo(hostname, NULL, &hints, &found) != 0 || found == NULL) {
        return -1;
    }
    *ip = reinterpret_cast<const struct sockaddr_in*>(found->ai_addr)->sin_addr;
    freeaddrinfo(found);
    return 0;
}

namespace endpoint_internal {
// This machine's host name and the IPv4 address it resolves to, found on
// first use and kept for the process, as brpc does.
struct MyAddress {
    char hostname[HOST_NAME_MAX + 1];
    ip_t ip;
    IPStr ip_str;
    MyAddress() : ip(IP_ANY) {
        if (gethostname(hostname, sizeof(hostname)) != 0) {
            hostname[0] = '\0';
        } else {
            hostname[HOST_NAME_MAX] = '\0';
            if (hostname2ip(hostname, &ip) != 0) {
                ip = IP_ANY;
            }
        }
        ip_str = ip2str(ip);
    }
};
inline const MyAddress& Mine() {
    static const MyAddress mine;
    return mine;
}
}  // namespace endpoint_internal

// This machine's host name ("" if unknown).
inline const char* my_hostname() { return endpoint_internal::Mine().hostname; }
// The IPv4 address this machine's host name resolves to; IP_ANY if none.
inline ip_t my_ip() { return endpoint_internal::Mine().ip; }
inline const char* my_ip_cstr() { return endpoint_internal::Mine().ip_str.c_str(); }

struct EndPoint {
    EndPoint() : ip(IP_ANY), port(0) {}
    EndPoint(ip_t ip2, int port2) : ip(ip2), port(port2) {}
    explicit EndPoint(const sockaddr_in& in) : ip(in.sin_addr), port(ntohs(in.sin_port)) {}

    ip_t ip;
    int port;
};

// "ip:port", e.g. "127.0.0.1:8000".
struct EndPointStr {
    const char* c_str() const { return _buf; }
    char _buf[INET_ADDRSTRLEN + 16];
};

inline EndPointStr endpoint2str(const EndPoint& point) {
    EndPointStr str;
    snprintf(str._buf, sizeof(str._buf), "%s:%d", ip2str(point.ip).c_str(), point.port);
    return str;
}

namespace endpoint_detail {

// Splits "host:port" at its first ':' into `host` (NUL-terminated) and a
// port in [0, 65535] followed by nothing but blanks.
inline bool split_host_port(const char* str, char* host, size_t host_size, int* port) {
    if (str == NULL) {
        return false;
    }
    const char* colon = strchr(str, ':');
    if (colon == NULL || static_cast<size_t>(colon - str) >= host_size) {
        return false;
    }
    const char* digits = colon + 1;
    if (!isdigit(static_cast<unsigned char>(*digits))) {
        return false;
    }
    char* end = NULL;
    errno = 0;
    const long value = strtol(digits, &end, 10);
    if (errno != 0 || value < 0 || value > 65535) {
        return false;
    }
    while (isspace(static_cast<unsigned char>(*end))) {
        ++end;
    }
    if (*end != '\0') {
        return false;
    }
    memcpy(host, str, static_cast<size_t>(colon - str));
    host[colon - str] = '\0';
    *port = static_cast<int>(value);
    return true;
}

inline bool valid_port(int port) { return port >= 0 && port <= 65535; }

}  // namespace endpoint_detail

// Parses "ip:port"; `*point` is written only on success.
inline int str2endpoint(const char* ip_and_port, EndPoint* point) {
    char host[64];
    int port = 0;
    ip_t ip;
    if (point == NULL ||
        !endpoint_detail::split_host_port(ip_and_port, host, sizeof(host), &port) ||
        str2ip(host, &ip) != 0) {
        return -1;
    }
    *point = EndPoint(ip, port);
    return 0;
}

inline int str2endpoint(const char* ip_str, int port, EndPoint* point) {
    ip_t ip;
    if (point == NULL || !endpoint_detail::valid_port(port) || str2ip(ip_str, &ip) != 0) {
        return -1;
    }
    *point = EndPoint(ip, port);
    return 0;
}

// Like str2endpoint, and the host may be a name ("localhost:8000").
inline int hostname2endpoint(const char* name_and_port, EndPoint* point) {
    char host[256];
    int port = 0;
    ip_t ip;
    if (point == NULL ||
        !endpoint_detail::split_host_port(name_and_port, host, sizeof(host), &port) ||
        hostname2ip(host, &ip) != 0) {
        return -1;
    }
    *point = EndPoint(ip, port);
    return 0;
}

inline int hostname2endpoint(const char* name, int port, EndPoint* point) {
    ip_t ip;
    if (point == NULL || name == NULL || !endpoint_detail::valid_port(port) ||
        hostname2ip(name, &ip) != 0) {
        return -1;
    }
    *point = EndPoint(ip, port);
    return 0;
}

inline int endpoint2sockaddr(const EndPoint& point, struct sockaddr_storage* ss,
                             socklen_t* size = NULL) {
    if (ss == NULL || !endpoint_detail::valid_port(point.port)) {
        return -1;
    }
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in* in = reinterpret_cast<struct sockaddr_in*>(ss);
    in->sin_family = AF_INET;
    in->sin_addr = point.ip;
    in->sin_port = htons(static_cast<uint16_t>(point.port));
    if (size != NULL) {
        *size = sizeof(*in);
    }
    return 0;
}

inline int sockaddr2endpoint(struct sockaddr_storage* ss, socklen_t size, EndPoint* point) {
    if (ss == NULL || point == NULL || ss->ss_family != AF_INET ||
        size < static_cast<socklen_t>(sizeof(struct sockaddr_in))) {
        return -1;
    }
    *point = EndPoint(*reinterpret_cast<const struct sockaddr_in*>(ss));
    return 0;
}

// The address a connected or bound socket uses, or its peer's.
inline int get_local_side(int fd, EndPoint* out) {
    struct sockaddr_storage ss;
    socklen_t size = sizeof(ss);
    if (out == NULL || getsockname(fd, reinterpret_cast<struct sockaddr*>(&ss), &size) != 0) {
        return -1;
    }
    return sockaddr2endpoint(&ss, size, out);
}

inline int get_remote_side(int fd, EndPoint* out) {
    struct sockaddr_storage ss;
    socklen_t size = sizeof(ss);
    if (out == NULL || getpeername(fd, reinterpret_cast<struct sockaddr*>(&ss), &size) != 0) {
        return -1;
    }
    return sockaddr2endpoint(&ss, size, out);
}

// A blocking TCP connection to `server` (close-on-exec); `*self_port`, when
// given, receives the local port.
inline int tcp_connect(EndPoint server, int* self_port) {
    struct sockaddr_storage ss;
    socklen_t size = 0;
    if (endpoint2sockaddr(server, &ss, &size) != 0) {
        errno = EINVAL;
        return -1;
    }
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    int rc;
    do {
        rc = connect(fd, reinterpret_cast<struct sockaddr*>(&ss), size);
    } while (rc != 0 && errno == EINTR);
    EndPoint local;
    if (rc != 0 || (self_port != NULL && get_local_side(fd, &local) != 0)) {
        const int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (self_port != NULL) {
        *self_port = local.port;
    }
    return fd;
}

// A listening TCP socket bound to `point` (SO_REUSEADDR, close-on-exec);
// port 0 picks a free port, see get_local_side.
inline int tcp_listen(EndPoint point) {
    struct sockaddr_storage ss;
    socklen_t size = 0;
    if (endpoint2sockaddr(point, &ss, &size) != 0) {
        errno = EINVAL;
        return -1;
    }
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    const int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        bind(fd, reinterpret_cast<struct sockaddr*>(&ss), size) != 0 ||
        listen(fd, SOMAXCONN) != 0) {
        const int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

inline bool operator==(const EndPoint& a, const EndPoint& b) {
    return a.ip.s_addr == b.ip.s_addr && a.port == b.port;
}
inline bool operator!=(const EndPoint& a, const EndPoint& b) { return !(a == b); }
// Orders by address (in network byte order's numeric value), then port.
inline bool operator<(const EndPoint& a, const EndPoint& b) {
    return a.ip.s_addr != b.ip.s_addr ? a.ip.s_addr < b.ip.s_addr : a.port < b.port;
}
inline std::ostream& operator<<(std::ostream& os, const EndPoint& point) {
    return os << endpoint2str(point).c_str();
}

}  // namespace butil

// ip_t is the global struct in_addr, so its operators live where
// argument-dependent lookup finds them: the global namespace (as in brpc).
inline bool operator==(butil::ip_t a, butil::ip_t b) { return a.s_addr == b.s_addr; }
inline bool operator!=(butil::ip_t a, butil::ip_t b) { return a.s_addr != b.s_addr; }
inline bool operator<(butil::ip_t a, butil::ip_t b) { return a.s_addr < b.s_addr; }
inline std::ostream& operator<<(std::ostream& os, butil::ip_t ip) {
    return os << butil::ip2str(ip).c_str();
}

namespace std {
template <>
struct hash<butil::EndPoint> {
    size_t operator()(const butil::EndPoint& point) const {
        return std::hash<uint64_t>()((static_cast<uint64_t>(point.ip.s_addr) << 16) ^
                                     static_cast<uint64_t>(static_cast<uint32_t>(point.port)));
    }
};
}  // namespace std

#endif  // BUTIL_ENDPOINT_H
