// brpc::Channel over the C ABI in brpc_stream.h: header-only.
//
// A Channel talks baidu_std to one server over one shared connection that is
// reconnected on failure. CallMethod is synchronous when `done` is NULL and
// asynchronous otherwise: then done->Run() runs exactly once, on a worker
// thread, after the controller and the response were filled.

#ifndef BRPC_CHANNEL_H
#define BRPC_CHANNEL_H

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/service.h>
#include <google/protobuf/stubs/callback.h>

#include "brpc_stream.h"
#include "brpc/controller.h"
#include "brpc/errno.h"
#include "butil/endpoint.h"
#include "butil/strings/string_piece.h"

namespace brpc {

// brpc's protocol numbers; baidu_std is the only one spoken here.
enum ProtocolType {
    PROTOCOL_UNKNOWN = 0,
    PROTOCOL_BAIDU_STD = 1,
};

// A protocol given by type or by name (options.protocol = "baidu_std").
class AdaptiveProtocolType {
public:
    AdaptiveProtocolType() : type_(PROTOCOL_UNKNOWN) {}
    explicit AdaptiveProtocolType(ProtocolType type) : type_(type) {}
    explicit AdaptiveProtocolType(butil::StringPiece name) : type_(TypeOf(name)) {}

    void operator=(ProtocolType type) { type_ = type; }
    void operator=(butil::StringPiece name) { type_ = TypeOf(name); }
    void operator=(const char* name) { type_ = TypeOf(butil::StringPiece(name)); }
    void operator=(const std::string& name) { type_ = TypeOf(butil::StringPiece(name)); }

    operator ProtocolType() const { return type_; }
    const char* name() const { return type_ == PROTOCOL_BAIDU_STD ? "baidu_std" : "unknown"; }

private:
    static ProtocolType TypeOf(butil::StringPiece name) {
        return name == butil::StringPiece("baidu_std") ? PROTOCOL_BAIDU_STD : PROTOCOL_UNKNOWN;
    }

    ProtocolType type_;
};

struct ChannelOptions {
    ChannelOptions()
        : connect_timeout_ms(200), timeout_ms(500), max_retry(3), protocol(PROTOCOL_BAIDU_STD),
          keepalive(false), keepalive_idle_s(-1), keepalive_interval_s(-1), keepalive_count(-1),
          tcp_user_timeout_ms(-1) {}

    // Timeout of connecting to the server; <= 0: none.
    int32_t connect_timeout_ms;
    // Default timeout of a call (Controller::set_timeout_ms overrides); <= 0: none.
    int32_t timeout_ms;
    // Default retries of a call whose request could not be written
    // (Controller::set_max_retry overrides).
    int max_retry;
    // Must be baidu_std: Init fails for any other.
    AdaptiveProtocolType protocol;
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

inline int Channel::Create(const butil::EndPoint& server, const ChannelOptions* options) {
    const ChannelOptions chosen = options != NULL ? *options : ChannelOptions();
    if (chosen.protocol != PROTOCOL_BAIDU_STD) {
        errno = EPROTONOSUPPORT;
        return -1;
    }
    brpc_channel_options c;
    brpc_channel_options_init(&c);
    c.connect_timeout_ms = chosen.connect_timeout_ms;
    c.timeout_ms = chosen.timeout_ms;
    c.max_retry = chosen.max_retry;
    c.liveness.keepalive = chosen.keepalive;
    c.liveness.keepalive_idle_s = chosen.keepalive_idle_s;
    c.liveness.keepalive_interval_s = chosen.keepalive_interval_s;
    c.liveness.keepalive_count = chosen.keepalive_count;
    c.liveness.tcp_user_timeout_ms = chosen.tcp_user_timeout_ms;
    brpc_channel* created = NULL;
    const int rc = brpc_channel_create(butil::endpoint2str(server).c_str(), &c, &created);
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
