// brpc::Channel over the C ABI in brpc_stream.h: header-only.
//
// A Channel talks baidu_std to one server, or to the servers a naming
// service lists ("list://", "file://", "dns://", "http://") through a load
// balancer ("rr", "wrr", "random", "wr", "la", "c_murmurhash", "c_md5").
// CallMethod is synchronous when `done` is NULL and asynchronous otherwise:
// then done->Run() runs exactly once, on a worker thread, after the
// controller and the response were filled.

#ifndef BRPC_CHANNEL_H
#define BRPC_CHANNEL_H

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/service.h>
#include <google/protobuf/stubs/callback.h>

#include "brpc_stream.h"
#include "brpc/controller.h"
#include "brpc/event_dispatcher.h"
#include "brpc/errno.h"
#include "butil/endpoint.h"
#include "butil/strings/string_piece.h"

namespace brpc {

// A protocol given by type or by name (options.protocol = "baidu_std").
class AdaptiveProtocolType {
public:
    AdaptiveProtocolType() : type_(PROTOCOL_UNKNOWN) {}
    explicit AdaptiveProtocolType(ProtocolType type) { *this = type; }
    explicit AdaptiveProtocolType(butil::StringPiece name) { *this = name; }

    void operator=(ProtocolType type) {
        type_ = type;
        name_ = ProtocolTypeName(type);
    }
    void operator=(butil::StringPiece name) {
        name_.assign(name.data(), name.size());
        type_ = PROTOCOL_UNKNOWN;
        for (int t = PROTOCOL_RDMA_HANDSHAKE; t <= PROTOCOL_MYSQL; ++t) {
            if (name == butil::StringPiece(ProtocolTypeName(static_cast<ProtocolType>(t)))) {
                type_ = static_cast<ProtocolType>(t);
            }
        }
    }
    void operator=(const char* name) { *this = butil::StringPiece(name); }
    void operator=(const std::string& name) { *this = butil::StringPiece(name); }

    operator ProtocolType() const { return type_; }
    // The name given (an unknown one too, so Init can say which).
    const char* name() const { return name_.c_str(); }

private:
    ProtocolType type_;
    std::string name_;
};

// brpc's connection types (the numbers of brpc's options.proto).
enum ConnectionType {
    CONNECTION_TYPE_UNKNOWN = 0,
    CONNECTION_TYPE_SINGLE = 1,
    CONNECTION_TYPE_POOLED = 2,
    CONNECTION_TYPE_SHORT = 4,
};

// A connection type given by value or by name ("single", "pooled",
// "short"); an unknown name makes Init fail, naming it.
class AdaptiveConnectionType {
public:
    AdaptiveConnectionType() : type_(CONNECTION_TYPE_UNKNOWN) {}
    AdaptiveConnectionType(ConnectionType type) { *this = type; }  // NOLINT: brpc converts implicitly

    void operator=(ConnectionType type) {
        type_ = type;
        name_ = type == CONNECTION_TYPE_SINGLE ? "single"
              : type == CONNECTION_TYPE_POOLED ? "pooled"
              : type == CONNECTION_TYPE_SHORT  ? "short" : "";
    }
    void operator=(butil::StringPiece name) {
        name_.assign(name.data(), name.size());
        type_ = name == butil::StringPiece("single") ? CONNECTION_TYPE_SINGLE
              : name == butil::StringPiece("pooled") ? CONNECTION_TYPE_POOLED
              : name == butil::StringPiece("short")  ? CONNECTION_TYPE_SHORT : CONNECTION_TYPE_UNKNOWN;
    }
    void operator=(const char* name) { *this = butil::StringPiece(name); }
    void operator=(const std::string& name) { *this = butil::StringPiece(name); }

    operator ConnectionType() const { return type_; }
    const char* name() const { return name_.c_str(); }
    bool has_error() const { return type_ == CONNECTION_TYPE_UNKNOWN && !name_.empty(); }

private:
    ConnectionType type_;
    std::string name_;
};

// brpc's pluggable policies and security options: declared so programs
// that name them compile; setting any of them makes Init fail with a
// text naming the option, since this library implements none.
class Authenticator;
class RetryPolicy;
class RetryBackoffPolicy;
class BackupRequestPolicy;
class NamingServiceFilter;
struct ChannelSSLOptions {
    std::string sni_name;
};
enum SocketMode {
    SOCKET_MODE_TCP = 0,
    SOCKET_MODE_RDMA = 1,
};
struct HealthCheckOption {
    // An HTTP health check: not implemented (the check is a TCP connect).
    std::string health_check_path;
    int32_t health_check_timeout_ms = 500;
};

struct ChannelOptions {
    ChannelOptions()
        : connect_timeout_ms(200), timeout_ms(500), backup_request_ms(-1), max_retry(3),
          enable_circuit_breaker(false), protocol(PROTOCOL_BAIDU_STD), succeed_without_server(true),
          log_succeed_without_server(true), use_rdma(false), socket_mode(SOCKET_MODE_TCP), auth(NULL),
          backup_request_policy(NULL), retry_policy(NULL), retry_backoff_policy(NULL), ns_filter(NULL),
          health_check_interval(3),
          keepalive(false), keepalive_idle_s(-1), keepalive_interval_s(-1), keepalive_count(-1),
          tcp_user_timeout_ms(-1) {}
    ChannelOptions(const ChannelOptions& other) { *this = other; }
    ChannelOptions& operator=(const ChannelOptions& other) {
        if (this != &other) {
            connect_timeout_ms = other.connect_timeout_ms;
            timeout_ms = other.timeout_ms;
            backup_request_ms = other.backup_request_ms;
            max_retry = other.max_retry;
            enable_circuit_breaker = other.enable_circuit_breaker;
            protocol = other.protocol;
            connection_type = other.connection_type;
            succeed_without_server = other.succeed_without_server;
            log_succeed_without_server = other.log_succeed_without_server;
            use_rdma = other.use_rdma;
            socket_mode = other.socket_mode;
            auth = other.auth;
            backup_request_policy = other.backup_request_policy;
            retry_policy = other.retry_policy;
            retry_backoff_policy = other.retry_backoff_policy;
            ns_filter = other.ns_filter;
            connection_group = other.connection_group;
            hc_option = other.hc_option;
            client_host = other.client_host;
            device_name = other.device_name;
            health_check_interval = other.health_check_interval;
            keepalive = other.keepalive;
            keepalive_idle_s = other.keepalive_idle_s;
            keepalive_interval_s = other.keepalive_interval_s;
            keepalive_count = other.keepalive_count;
            tcp_user_timeout_ms = other.tcp_user_timeout_ms;
            ssl_.reset(other.ssl_ ? new ChannelSSLOptions(*other.ssl_) : NULL);
        }
        return *this;
    }

    // Timeout of connecting to a server; <= 0: none.
    int32_t connect_timeout_ms;
    // Default timeout of a call (Controller::set_timeout_ms overrides); <= 0: none.
    int32_t timeout_ms;
    // A call without an answer after this long is sent once more, to
    // another server when there is one; the first answer wins. < 0: never.
    // Calls that create streams send no backup.
    int32_t backup_request_ms;
    // Default retries of a call that failed in a way brpc retries (the
    // connection broke or was refused, the server is stopping or over its
    // limits), each to another server when there is one
    // (Controller::set_max_retry overrides).
    int max_retry;
    // Not implemented: true fails Init.
    bool enable_circuit_breaker;
    // Must be baidu_std: Init fails for any other.
    AdaptiveProtocolType protocol;
    // "single" (default: one connection per server, shared), "pooled" (one
    // call per connection at a time, connections kept for reuse) or
    // "short" (a connection per call). Calls that create streams always use
    // the single connection of their server.
    AdaptiveConnectionType connection_type;
    // With a naming service: Init succeeds even when it lists no server
    // (and logs so when log_succeed_without_server).
    bool succeed_without_server;
    bool log_succeed_without_server;
    // brpc's RDMA switch (older brpc; newer ones have socket_mode): only
    // TCP here, true fails Init.
    bool use_rdma;
    // Only SOCKET_MODE_TCP; any other fails Init.
    SocketMode socket_mode;
    // Not implemented: setting any fails Init.
    const Authenticator* auth;
    BackupRequestPolicy* backup_request_policy;
    const RetryPolicy* retry_policy;
    const RetryBackoffPolicy* retry_backoff_policy;
    const NamingServiceFilter* ns_filter;
    // Channels of different groups do not share connections.
    std::string connection_group;
    // A health_check_path fails Init (only TCP checks are implemented).
    HealthCheckOption hc_option;
    // Binding to a local address or device: not implemented, non-empty
    // fails Init.
    std::string client_host;
    std::string device_name;
    // Not in brpc's ChannelOptions (brpc has the global flag
    // -health_check_interval): seconds between TCP probes of a server whose
    // connection failed; it takes no calls until a probe connects.
    int32_t health_check_interval;
    // SSL is not implemented: Init fails when ssl options were asked for.
    bool has_ssl_options() const { return ssl_ != NULL; }
    const ChannelSSLOptions& ssl_options() const { return *ssl_; }
    ChannelSSLOptions* mutable_ssl_options() {
        if (!ssl_) {
            ssl_.reset(new ChannelSSLOptions);
        }
        return ssl_.get();
    }
    // Dead-peer detection (not in brpc's ChannelOptions: brpc has gflags
    // for it). keepalive turns SO_KEEPALIVE on, with TCP_KEEPIDLE,
    // TCP_KEEPINTVL and TCP_KEEPCNT; tcp_user_timeout_ms sets
    // TCP_USER_TIMEOUT. A peer that stops answering then fails the
    // connection (and its streams) with ETIMEDOUT. <= 0: the system's.
    bool keepalive;
    int keepalive_idle_s;
    int keepalive_interval_s;
    int keepalive_count;
    int tcp_user_timeout_ms;

private:
    std::unique_ptr<ChannelSSLOptions> ssl_;
};

class Channel : public google::protobuf::RpcChannel {
public:
    Channel() : handle_(NULL) {}
    // Calls in flight still complete (their done runs) after the channel is gone.
    ~Channel() override;

    // Connects lazily to "ip:port" or "hostname:port"; options may be NULL
    // (defaults). 0 on success, -1 (errno set) otherwise.
    int Init(const char* server_addr_and_port, const ChannelOptions* options);
    int Init(const char* server_addr, int port, const ChannelOptions* options);
    int Init(butil::EndPoint server_addr_and_port, const ChannelOptions* options);
    // A naming service URL ("list://ip:port,ip:port", "file://path",
    // "dns://host:port", "http://host:port"; entries "ip:port tag", the tag
    // being the weight for wrr and wr) and a load balancer ("rr", "wrr",
    // "random", "wr", "la", "c_murmurhash", "c_md5"), or a plain
    // "ip:port" with "" or NULL. Waits for the first server list. 0 on
    // success; -1 with errno set and the reason logged otherwise (an
    // unknown scheme or balancer, an option this library refuses, ...).
    int Init(const char* naming_service_url, const char* load_balancer_name,
             const ChannelOptions* options);

    // Sends method(request) with controller's attachment, timeout and
    // retries; fills controller (error, response attachment, sides) and
    // response. A call that fails before it is sent (channel not
    // initialized, request not serializable) runs done here, before
    // returning.
    void CallMethod(const google::protobuf::MethodDescriptor* method,
                    google::protobuf::RpcController* controller,
                    const google::protobuf::Message* request,
                    google::protobuf::Message* response,
                    google::protobuf::Closure* done) override;

    const ChannelOptions& options() const { return options_; }

private:
    Channel(const Channel&);
    Channel& operator=(const Channel&);

    int Create(const butil::EndPoint& server, const ChannelOptions* options);
    int Open(const char* url, const char* load_balancer, const ChannelOptions* options);

    brpc_channel* handle_;
    ChannelOptions options_;
};

// ---- implementation ----

namespace channel_internal {

// What the C callback needs to finish a call.
struct PendingCall {
    PendingCall(Controller* c, google::protobuf::Message* r, google::protobuf::Closure* d)
        : cntl(c), response(r), done(d) {}
    Controller* cntl;
    google::protobuf::Message* response;
    google::protobuf::Closure* done;  // NULL: a synchronous call, on its caller's stack
};

inline void FillResponse(PendingCall* call, const brpc_call_result* result) {
    if (result->error_code != 0) {
        return;  // the library set the controller's error already
    }
    if (result->attachment_len > 0) {
        call->cntl->response_attachment().append(result->attachment, result->attachment_len);
    }
    if (call->response == NULL) {
        return;
    }
    if (result->payload_len > (size_t)INT_MAX ||
        !call->response->ParseFromArray(result->payload, (int)result->payload_len)) {
        call->cntl->SetFailed(ERESPONSE, "Fail to parse response message, response_size=%zu",
                              result->payload_len);
    }
}

inline void OnCallDone(void* arg, const brpc_call_result* result) {
    PendingCall* call = static_cast<PendingCall*>(arg);
    FillResponse(call, result);
    if (call->done != NULL) {
        google::protobuf::Closure* const done = call->done;
        delete call;
        done->Run();
    }
}

}  // namespace channel_internal

inline Channel::~Channel() { brpc_channel_destroy(handle_); }

inline int Channel::Init(const char* server_addr_and_port, const ChannelOptions* options) {
    butil::EndPoint server;
    if (butil::str2endpoint(server_addr_and_port, &server) != 0 &&
        butil::hostname2endpoint(server_addr_and_port, &server) != 0) {
        errno = EINVAL;
        return -1;
    }
    return Create(server, options);
}

inline int Channel::Init(const char* server_addr, int port, const ChannelOptions* options) {
    butil::EndPoint server;
    if (butil::str2endpoint(server_addr, port, &server) != 0 &&
        butil::hostname2endpoint(server_addr, port, &server) != 0) {
        errno = EINVAL;
        return -1;
    }
    return Create(server, options);
}

inline int Channel::Init(butil::EndPoint server_addr_and_port, const ChannelOptions* options) {
    return Create(server_addr_and_port, options);
}

inline int Channel::Init(const char* naming_service_url, const char* load_balancer_name,
                         const ChannelOptions* options) {
    if (naming_service_url == NULL) {
        errno = EINVAL;
        return -1;
    }
    return Open(naming_service_url, load_balancer_name, options);
}

inline int Channel::Create(const butil::EndPoint& server, const ChannelOptions* options) {
    return Open(butil::endpoint2str(server).c_str(), "", options);
}

namespace channel_internal {

// The options set to something this library does not implement.
inline std::string Unsupported(const ChannelOptions& o) {
    std::string names;
    const auto add = [&names](bool set, const char* name) {
        if (set) {
            names += names.empty() ? "" : ", ";
            names += name;
        }
    };
    add(o.enable_circuit_breaker, "enable_circuit_breaker");
    add(o.use_rdma, "use_rdma");
    add(o.socket_mode != SOCKET_MODE_TCP, "socket_mode");
    add(o.auth != NULL, "auth");
    add(o.backup_request_policy != NULL, "backup_request_policy");
    add(o.retry_policy != NULL, "retry_policy");
    add(o.retry_backoff_policy != NULL, "retry_backoff_policy");
    add(o.ns_filter != NULL, "ns_filter");
    add(o.has_ssl_options(), "ssl_options");
    add(!o.hc_option.health_check_path.empty(), "hc_option.health_check_path");
    add(!o.client_host.empty(), "client_host");
    add(!o.device_name.empty(), "device_name");
    return names;
}

}  // namespace channel_internal

inline int Channel::Open(const char* url, const char* load_balancer, const ChannelOptions* options) {
    const ChannelOptions chosen = options != NULL ? *options : ChannelOptions();
    const std::string unsupported = channel_internal::Unsupported(chosen);
    brpc_channel_options c;
    brpc_channel_options_init(&c);
    c.connect_timeout_ms = chosen.connect_timeout_ms;
    c.timeout_ms = chosen.timeout_ms;
    c.backup_request_ms = chosen.backup_request_ms;
    c.max_retry = chosen.max_retry;
    c.protocol = chosen.protocol.name();
    c.connection_type = chosen.connection_type.name();
    c.connection_group = chosen.connection_group.c_str();
    c.succeed_without_server = chosen.succeed_without_server;
    c.log_succeed_without_server = chosen.log_succeed_without_server;
    c.health_check_interval_s = chosen.health_check_interval;
    c.unsupported = unsupported.c_str();
    c.liveness.keepalive = chosen.keepalive;
    c.liveness.keepalive_idle_s = chosen.keepalive_idle_s;
    c.liveness.keepalive_interval_s = chosen.keepalive_interval_s;
    c.liveness.keepalive_count = chosen.keepalive_count;
    c.liveness.tcp_user_timeout_ms = chosen.tcp_user_timeout_ms;
    brpc_channel* created = NULL;
    const int rc = brpc_channel_init(url, load_balancer != NULL ? load_balancer : "", &c, &created, NULL, 0);
    if (rc != 0) {
        errno = rc;
        return -1;
    }
    brpc_channel_destroy(handle_);
    handle_ = created;
    options_ = chosen;
    return 0;
}

inline void Channel::CallMethod(const google::protobuf::MethodDescriptor* method,
                                google::protobuf::RpcController* controller,
                                const google::protobuf::Message* request,
                                google::protobuf::Message* response,
                                google::protobuf::Closure* done) {
    Controller* cntl = static_cast<Controller*>(controller);
    cntl->response_attachment().clear();
    std::string payload;
    bool sendable = false;
    if (handle_ == NULL) {
        cntl->SetFailed(EINVAL, "Channel is not initialized");
    } else if (method == NULL) {
        cntl->SetFailed(ENOMETHOD, "method is NULL");
    } else if (request != NULL && !request->SerializeToString(&payload)) {
        cntl->SetFailed(EREQUEST, "Fail to serialize request");
    } else {
        sendable = true;
    }
    if (!sendable) {
        if (done != NULL) {
            done->Run();
        }
        return;
    }
    const std::string attachment = cntl->request_attachment().to_string();
    const std::string& service_name = method->service()->full_name();
    const std::string& method_name = method->name();
    const uint8_t* payload_bytes = reinterpret_cast<const uint8_t*>(payload.data());
    const uint8_t* attachment_bytes = reinterpret_cast<const uint8_t*>(attachment.data());

    if (done != NULL) {
        channel_internal::PendingCall* call = new channel_internal::PendingCall(cntl, response, done);
        const int rc = brpc_channel_call(handle_, cntl->handle_, service_name.c_str(), method_name.c_str(),
                                         payload_bytes, payload.size(), attachment_bytes,
                                         attachment.size(), &channel_internal::OnCallDone, call);
        if (rc != 0) {
            delete call;
            cntl->SetFailed(rc, "Fail to send the request");
            done->Run();
        }
        return;
    }
    // Synchronous: the library blocks this thread until the call ended and
    // runs OnCallDone here before returning.
    channel_internal::PendingCall call(cntl, response, NULL);
    const int rc = brpc_channel_call_sync(handle_, cntl->handle_, service_name.c_str(), method_name.c_str(),
                                          payload_bytes, payload.size(), attachment_bytes, attachment.size(),
                                          &channel_internal::OnCallDone, &call);
    if (rc != 0) {
        cntl->SetFailed(rc, "Fail to send the request");
    }
}

}  // namespace brpc

#endif  // BRPC_CHANNEL_H
