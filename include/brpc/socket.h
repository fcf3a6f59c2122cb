// brpc::Socket over the C ABI in brpc_stream.h: header-only.
//
// A `Socket*` here is a counted reference (a handle from brpc_socket_address);
// SocketUniquePtr releases it. Two Address calls for one id give two distinct
// pointers to the same socket; compare ids, not pointers.

#ifndef BRPC_SOCKET_H
#define BRPC_SOCKET_H

#include <sys/uio.h>
#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "brpc_stream.h"
#include "brpc/errno.h"
#include "butil/endpoint.h"
#include "butil/iobuf.h"

namespace brpc {

typedef brpc_socket_id SocketId;
const SocketId INVALID_SOCKET_ID = (SocketId)-1;

class Socket;

struct SocketDeleter {
    void operator()(Socket* s) const;
};
// Holds one reference to a socket; the socket is recycled (its fd closed)
// when the last reference goes.
typedef std::unique_ptr<Socket, SocketDeleter> SocketUniquePtr;

// A connection provided by the socket's owner instead of TCP (as brpc's
// SocketConnection, with writes taking iovecs).
class SocketConnection {
public:
    virtual ~SocketConnection() {}
    // Starts connecting `socket_id`; return 0 and later call
    // on_connect(fd, err, data) exactly once, or return an errno.
    virtual int Connect(SocketId socket_id, const timespec* abstime,
                        int (*on_connect)(int fd, int err, void* data), void* data) = 0;
    // Writes for the connected socket: bytes taken, or -1 with errno set
    // (EAGAIN: call Socket::NotifyWritable later).
    virtual ssize_t Write(SocketId socket_id, int fd, const struct iovec* iov, int iovcnt) = 0;
    // The socket no longer uses this connection; called once. The connection
    // may delete itself here.
    virtual void BeforeRecycle() {}
};

struct SocketOptions {
    SocketOptions() : fd(-1), connect_timeout_ms(-1), conn(NULL) {}
    // A connected fd the socket takes ownership of; -1 to connect to
    // remote_side (or through conn) on the first write.
    int fd;
    butil::EndPoint remote_side;
    // Timeout of the connect started by the first write; <= 0: none.
    int connect_timeout_ms;
    SocketConnection* conn;
    // Bytes read, on a worker thread, in order, one call at a time. Optional.
    std::function<void(SocketId, butil::IOBuf*)> on_input;
    // The socket failed: once, on a worker thread, after every on_input. Optional.
    std::function<void(SocketId, int error_code, const std::string& error_text)> on_failed;
};

class Socket {
public:
    struct WriteOptions {
        WriteOptions() : on_done(NULL), done_arg(NULL) {}
        // Runs once on a worker thread when Write returned 0: 0 when the
        // bytes left, else the error that dropped them. A Write that fails
        // (-1) never runs it: done_arg may be freed at once.
        void (*on_done)(void* arg, int error_code);
        void* done_arg;
    };

    // Creates a socket; 0 and *id on success, -1 with errno otherwise.
    static int Create(const SocketOptions& options, SocketId* id);
    // 0 and a reference in *ptr when the socket is live, -1 otherwise.
    static int Address(SocketId id, SocketUniquePtr* ptr);
    // 0 when live, 1 when failed but not recycled (both fill *ptr), -1 when gone.
    static int AddressFailedAsWell(SocketId id, SocketUniquePtr* ptr);
    // Fails the socket; 0 when this call did it, -1 otherwise.
    static int SetFailed(SocketId id);
    // 0 when live, 1 when failed but not recycled, -1 when gone; *nref gets
    // the reference count.
    static int Status(SocketId id, int32_t* nref = NULL);
    // Ends a connection attempt started through SocketConnection::Connect:
    // with fd >= 0 and err == 0 queued writes go out; otherwise they fail with
    // err (ECONNRESET when 0) and the socket fails. Never aborts.
    static int CheckConnectedAndKeepWrite(int fd, int err, void* data);
    // Sockets created and not yet recycled, process-wide.
    static size_t LiveCount() { return brpc_socket_live_count(); }

    int SetFailed();
    int SetFailed(int error_code, const char* error_fmt, ...)
        __attribute__((format(printf, 3, 4)));
    bool Failed() const { return brpc_socket_failed(handle()); }
    int error_code() const;
    std::string error_text() const;

    // Queues msg's bytes (msg is emptied); 0, or -1 with errno.
    int Write(butil::IOBuf* msg, const WriteOptions* options = NULL);
    // Connects to remote_side without blocking; on_connect(fd, err, data)
    // runs once on a worker thread. 0, or -1 with errno.
    int Connect(const timespec* abstime, int (*on_connect)(int fd, int err, void* data), void* data);
    // For owner-provided connections that returned EAGAIN.
    static int NotifyWritable(SocketId id);

    SocketId id() const { return brpc_socket_id_of(handle()); }
    int fd() const { return brpc_socket_fd(handle()); }
    std::string description() const;

private:
    Socket();  // handles come from Address only
    const brpc_socket* handle() const { return reinterpret_cast<const brpc_socket*>(this); }
    friend struct SocketDeleter;
};

// ---- implementation ----

namespace socket_internal {

struct Hooks {
    std::function<void(SocketId, butil::IOBuf*)> on_input;
    std::function<void(SocketId, int, const std::string&)> on_failed;
};

inline void OnInput(void* arg, brpc_socket_id id, const uint8_t* data, size_t len) {
    Hooks* hooks = static_cast<Hooks*>(arg);
    if (hooks->on_input) {
        butil::IOBuf buf;
        buf.append(data, len);
        hooks->on_input(id, &buf);
    }
}

inline void OnFailed(void* arg, brpc_socket_id id, int code, const char* text) {
    Hooks* hooks = static_cast<Hooks*>(arg);
    if (hooks->on_failed) {
        hooks->on_failed(id, code, std::string(text ? text : ""));
    }
}

inline void OnRecycle(void* arg) { delete static_cast<Hooks*>(arg); }

inline int64_t MillisecondsUntil(const timespec* abstime) {
    if (abstime == NULL) {
        return 0;
    }
    timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t ms = (int64_t)(abstime->tv_sec - now.tv_sec) * 1000 +
                 (abstime->tv_nsec - now.tv_nsec) / 1000000;
    return ms > 0 ? ms : 1;
}

inline int ConnConnect(void* ctx, brpc_socket_id id, brpc_on_connect_fn on_connect, void* data) {
    return static_cast<SocketConnection*>(ctx)->Connect(id, NULL, on_connect, data);
}

inline ssize_t ConnWrite(void* ctx, brpc_socket_id id, int fd, const struct iovec* iov, int iovcnt) {
    return static_cast<SocketConnection*>(ctx)->Write(id, fd, iov, iovcnt);
}

inline void ConnRelease(void* ctx) { static_cast<SocketConnection*>(ctx)->BeforeRecycle(); }

inline int Fail(int code) {
    errno = code;
    return -1;
}

}  // namespace socket_internal

inline void SocketDeleter::operator()(Socket* s) const {
    brpc_socket_dereference(reinterpret_cast<brpc_socket*>(s));
}

inline int Socket::Create(const SocketOptions& options, SocketId* id) {
    brpc_socket_options c;
    brpc_socket_options_init(&c);
    c.fd = options.fd;
    c.remote_ip = options.remote_side.ip.s_addr;
    c.remote_port = options.remote_side.port;
    c.connect_timeout_ms = options.connect_timeout_ms;
    socket_internal::Hooks* hooks = new socket_internal::Hooks;
    hooks->on_input = options.on_input;
    hooks->on_failed = options.on_failed;
    c.user_arg = hooks;
    c.on_input = &socket_internal::OnInput;
    c.on_failed = &socket_internal::OnFailed;
    c.on_recycle = &socket_internal::OnRecycle;
    brpc_socket_connection conn;
    if (options.conn != NULL) {
        conn.ctx = options.conn;
        conn.connect = &socket_internal::ConnConnect;
        conn.write = &socket_internal::ConnWrite;
        conn.release = &socket_internal::ConnRelease;
        c.connection = &conn;
    }
    brpc_socket_id out = INVALID_SOCKET_ID;
    const int rc = brpc_socket_create(&c, &out);
    if (rc != 0) {
        // hooks were released through OnRecycle already.
        return socket_internal::Fail(rc);
    }
    if (id != NULL) {
        *id = out;
    }
    return 0;
}

inline int Socket::Address(SocketId id, SocketUniquePtr* ptr) {
    brpc_socket* handle = NULL;
    if (brpc_socket_address(id, &handle) != 0) {
        return -1;
    }
    if (ptr != NULL) {
        ptr->reset(reinterpret_cast<Socket*>(handle));
    } else {
        brpc_socket_dereference(handle);
    }
    return 0;
}

inline int Socket::AddressFailedAsWell(SocketId id, SocketUniquePtr* ptr) {
    brpc_socket* handle = NULL;
    bool failed = false;
    if (brpc_socket_address_failed_as_well(id, &handle, &failed) != 0) {
        return -1;
    }
    if (ptr != NULL) {
        ptr->reset(reinterpret_cast<Socket*>(handle));
    } else {
        brpc_socket_dereference(handle);
    }
    return failed ? 1 : 0;
}

inline int Socket::SetFailed(SocketId id) {
    return brpc_socket_set_failed(id, EFAILEDSOCKET, NULL) == 0 ? 0 : -1;
}

inline int Socket::Status(SocketId id, int32_t* nref) {
    bool failed = false;
    if (brpc_socket_status(id, nref, &failed) != 0) {
        return -1;
    }
    return failed ? 1 : 0;
}

inline int Socket::CheckConnectedAndKeepWrite(int fd, int err, void* data) {
    return brpc_socket_check_connected_and_keep_write(fd, err, data);
}

inline int Socket::SetFailed() { return SetFailed(EFAILEDSOCKET, "%s", "failed by its user"); }

inline int Socket::SetFailed(int error_code, const char* error_fmt, ...) {
    char text[512];
    va_list ap;
    va_start(ap, error_fmt);
    vsnprintf(text, sizeof(text), error_fmt, ap);
    va_end(ap);
    return brpc_socket_set_failed(id(), error_code, text) == 0 ? 0 : -1;
}

inline int Socket::error_code() const {
    int code = 0;
    brpc_socket_failure(handle(), &code, NULL, 0);
    return code;
}

inline std::string Socket::error_text() const {
    const size_t len = brpc_socket_failure(handle(), NULL, NULL, 0);
    std::string text(len + 1, '\0');
    brpc_socket_failure(handle(), NULL, &text[0], text.size());
    text.resize(len);
    return text;
}

inline int Socket::Write(butil::IOBuf* msg, const WriteOptions* options) {
    std::vector<struct iovec> iov;
    if (msg != NULL) {
        iov.reserve(msg->backing_block_num());
        for (size_t i = 0; i < msg->backing_block_num(); ++i) {
            butil::StringPiece block = msg->backing_block(i);
            struct iovec v;
            v.iov_base = const_cast<char*>(block.data());
            v.iov_len = block.size();
            iov.push_back(v);
        }
    }
    const int rc = brpc_socket_write(handle(), iov.data(), (int)iov.size(),
                                     options ? options->on_done : NULL,
                                     options ? options->done_arg : NULL);
    if (msg != NULL) {
        msg->clear();  // the library copied the bytes
    }
    return rc == 0 ? 0 : socket_internal::Fail(rc);
}

inline int Socket::Connect(const timespec* abstime, int (*on_connect)(int, int, void*), void* data) {
    const int rc = brpc_socket_connect(handle(), socket_internal::MillisecondsUntil(abstime),
                                       on_connect, data);
    return rc == 0 ? 0 : socket_internal::Fail(rc);
}

inline int Socket::NotifyWritable(SocketId id) {
    const int rc = brpc_socket_notify_writable(id);
    return rc == 0 ? 0 : socket_internal::Fail(rc);
}

inline std::string Socket::description() const {
    char buf[256];
    const size_t len = brpc_socket_description(handle(), buf, sizeof(buf));
    if (len < sizeof(buf)) {
        return std::string(buf, len);
    }
    std::string text(len + 1, '\0');
    brpc_socket_description(handle(), &text[0], text.size());
    text.resize(len);
    return text;
}

}  // namespace brpc

#endif  // BRPC_SOCKET_H
