// brpc::Controller over the C ABI in brpc_stream.h: header-only.
//
// A client creates a Controller per call (or Reset()s one between calls); it
// owns its brpc_controller. On the server a Controller wraps the call's
// borrowed controller and lives until the call's done->Run().
//
// Error texts read as brpc's: SetFailed(code, fmt, ...) appends
// "[E<code>]<text>" to the text already there, separated by a space.

#ifndef BRPC_CONTROLLER_H
#define BRPC_CONTROLLER_H

#include <signal.h>

#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <type_traits>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/service.h>
#include <google/protobuf/stubs/callback.h>

#include "brpc_stream.h"
// As in brpc, a program that includes channel.h or server.h has
// brpc::NewCallback and brpc::ClosureGuard through this header.
#include "brpc/callback.h"
#include "brpc/closure_guard.h"
#include "brpc/details/bthread_calls.h"
#include "brpc/traceprintf.h"
#include "brpc/errno.h"
#include "brpc/options.pb.h"
#include "butil/endpoint.h"
#include "butil/iobuf.h"
#include "butil/logging.h"

namespace brpc {

// Names one call of a Controller: take it with call_id() before the call,
// then StartCancel(id) / Join(id) from anywhere.
typedef bthread_id_t CallId;

class Channel;
namespace server_internal {
class Call;
}

class Controller : public google::protobuf::RpcController {
public:
    // What a call made while serving another carries over from it: the
    // log id and the request id (Controller(cntl->inheritable())).
    struct Inheritable {
        Inheritable() : log_id(0) {}
        void Reset() {
            log_id = 0;
            request_id.clear();
        }

        uint64_t log_id;
        std::string request_id;
    };

    Controller();
    // A controller for a call made on behalf of the call `parent_ctx` came
    // from: it sends the same log id and request id.
    Controller(const Inheritable& parent_ctx);
    ~Controller() override;

    // ---- client side ----

    // Timeout of the call in milliseconds; -1 (unset) uses the channel's.
    void set_timeout_ms(int64_t timeout_ms) { brpc_controller_set_timeout_ms(handle_, timeout_ms); }
    int64_t timeout_ms() const { return brpc_controller_timeout_ms(handle_); }
    // Retries of a call whose request could not be written; -1 (unset) uses
    // the channel's.
    void set_max_retry(int max_retry) { brpc_controller_set_max_retry(handle_, max_retry); }
    int max_retry() const { return brpc_controller_max_retry(handle_); }

    // How the request's payload is compressed and checksummed (brpc's
    // defaults: neither). A type without a codec (COMPRESS_TYPE_LZ4) fails
    // the call with EREQUEST. With request_checksum_attachment the checksum
    // also covers the attachment. On the server: how the request was.
    void set_request_compress_type(CompressType t) {
        brpc_controller_set_request_compress_type(handle_, (int)t);
    }
    CompressType request_compress_type() const {
        return (CompressType)brpc_controller_request_compress_type(handle_);
    }
    void set_request_checksum_type(ChecksumType t) {
        brpc_controller_set_request_checksum_type(handle_, (int)t);
    }
    ChecksumType request_checksum_type() const {
        return (ChecksumType)brpc_controller_request_checksum_type(handle_);
    }
    void set_request_checksum_attachment(bool with_attachment) {
        brpc_controller_set_request_checksum_attachment(handle_, with_attachment);
    }
    bool request_checksum_attachment() const {
        return brpc_controller_request_checksum_attachment(handle_);
    }

    // Consistent hashing balancers (c_murmurhash, c_md5) pick the server by
    // it; compute it with brpc::policy::MurmurHash32/MD5Hash32
    // (<brpc/policy/hasher.h>) of the key.
    void set_request_code(uint64_t request_code) { brpc_controller_set_request_code(handle_, request_code); }
    bool has_request_code() const { return brpc_controller_has_request_code(handle_); }
    uint64_t request_code() const { return brpc_controller_request_code(handle_); }

    // After a call: how long it took (microseconds), how often it was
    // retried, whether a backup request went out.
    int64_t latency_us() const { return brpc_controller_latency_us(handle_); }
    int retried_count() const { return brpc_controller_retried_count(handle_); }
    bool has_backup_request() const { return brpc_controller_has_backup_request(handle_); }

    // The id of this controller's next (or current) call, for
    // brpc::StartCancel and brpc::Join. Take it before CallMethod: the
    // controller may be gone once the call ended.
    CallId call_id() {
        CallId id = {brpc_controller_call_id(handle_)};
        return id;
    }

    // ---- server side ----

    // Runs after the response was sent, before the controller, request and
    // response go (brpc's after_rpc_resp_fn); on the thread that ran done.
    using AfterRpcRespFnType = std::function<void(Controller* cntl, const google::protobuf::Message* req,
                                                  const google::protobuf::Message* res)>;
    void set_after_rpc_resp_fn(AfterRpcRespFnType&& fn) { after_rpc_resp_fn_ = fn; }

    // brpc's session data needs ServerOptions::session_local_data_factory,
    // which is not provided: using it stops the build here.
    template <typename T = void>
    void* session_local_data() {
        static_assert(!std::is_same<T, T>::value,
                      "brpc_stream: Controller::session_local_data is not provided (nor "
                      "ServerOptions::session_local_data_factory): keep per-connection state in the "
                      "service, keyed by remote_side()");
        return NULL;
    }

    // How the response's payload is compressed and checksummed; set before
    // done->Run() (default neither, whatever the request used). A type
    // without a codec answers ERESPONSE instead of the response. On the
    // client, after the call: how the response was. A checksum that does
    // not match fails the call (EREQUEST on the server, ERESPONSE on the
    // client).
    void set_response_compress_type(CompressType t) {
        brpc_controller_set_response_compress_type(handle_, (int)t);
    }
    CompressType response_compress_type() const {
        return (CompressType)brpc_controller_response_compress_type(handle_);
    }
    void set_response_checksum_type(ChecksumType t) {
        brpc_controller_set_response_checksum_type(handle_, (int)t);
    }
    ChecksumType response_checksum_type() const {
        return (ChecksumType)brpc_controller_response_checksum_type(handle_);
    }
    void set_response_checksum_attachment(bool with_attachment) {
        brpc_controller_set_response_checksum_attachment(handle_, with_attachment);
    }
    bool response_checksum_attachment() const {
        return brpc_controller_response_checksum_attachment(handle_);
    }

    // ---- both sides ----

    // Sent with the request; on the server, the request's.
    void set_log_id(uint64_t log_id) { brpc_controller_set_log_id(handle_, (int64_t)log_id); }
    uint64_t log_id() const { return (uint64_t)brpc_controller_log_id(handle_); }
    // brpc's request id (RpcRequestMeta field 7, x-request-id in HTTP):
    // sent with the request when not empty; on the server, the request's.
    void set_request_id(std::string request_id) { brpc_controller_set_request_id(handle_, request_id.c_str()); }
    std::string request_id() const;
    // The log id and request id, for Controller(cntl->inheritable()).
    Inheritable inheritable() const {
        Inheritable ctx;
        ctx.log_id = log_id();
        ctx.request_id = request_id();
        return ctx;
    }

    // What CLOGI(cntl) and the other CLOG macros put before the text:
    // "@rid=<request id> " when the call has a request id, else nothing.
    class LogPrefixDummy {
    public:
        explicit LogPrefixDummy(const Controller* cntl) : cntl_(cntl) {}
        void DoPrintLogPrefix(std::ostream& os) const;

    private:
        const Controller* cntl_;
    };
    LogPrefixDummy LogPrefix() const { return LogPrefixDummy(this); }

    // Bytes sent after the request / response message, outside protobuf.
    butil::IOBuf& request_attachment() { return request_attachment_; }
    butil::IOBuf& response_attachment() { return response_attachment_; }

    // The peer and our own address of the call's connection; 0.0.0.0:0
    // until a connection is known.
    butil::EndPoint remote_side() const;
    butil::EndPoint local_side() const;

    // Whether the request (server) or the response (client) carried streams.
    bool has_remote_stream() const { return brpc_controller_has_remote_stream(handle_); }

    int ErrorCode() const { return brpc_controller_error_code(handle_); }

    // The C ABI's controller behind this one (brpc/stream.h passes it on).
    brpc_controller* c_controller() { return handle_; }

    // Fails the call with `error_code` (0 counts as -1, as in brpc) and a
    // printf-formatted reason.
    void SetFailed(int error_code, const char* reason_fmt, ...)
        __attribute__((format(printf, 3, 4)));

    // ---- google::protobuf::RpcController ----

    // Back to a fresh controller, ready for another call. Runs a pending
    // NotifyOnCancel callback.
    void Reset() override;
    bool Failed() const override { return brpc_controller_failed(handle_); }
    std::string ErrorText() const override;
    // Fails the call with error code -1 and `reason`, as brpc does.
    void SetFailed(const std::string& reason) override;
    // Does nothing, as protobuf's own cancellation races with the
    // controller's lifetime: cancel with brpc::StartCancel(call_id()).
    void StartCancel() override {}
    // Client: the call ended because it was canceled (ECANCELED). Server:
    // the client's connection is gone.
    bool IsCanceled() const override { return brpc_controller_is_canceled(handle_); }
    // Runs `callback` once. Client: when this controller is Reset or
    // destroyed. Server: when the client's connection breaks while the call
    // is served (on a worker thread), else when the call ended, after its
    // response went out. A second registration runs at once.
    void NotifyOnCancel(google::protobuf::Closure* callback) override;

private:
    friend class Channel;
    friend class server_internal::Call;

    // Wraps a controller owned by someone else (the server's call).
    explicit Controller(brpc_controller* borrowed);
    Controller(const Controller&);
    Controller& operator=(const Controller&);

    void RunCancelCallback();
    void AppendFailure(int error_code, const char* reason_fmt, va_list ap);

    brpc_controller* handle_;
    bool owns_handle_;
    butil::IOBuf request_attachment_;
    butil::IOBuf response_attachment_;
    google::protobuf::Closure* on_cancel_;
    AfterRpcRespFnType after_rpc_resp_fn_;
};

// ---- implementation ----

namespace controller_internal {

typedef int (*SideFn)(const brpc_controller*, uint32_t*, int*);

inline butil::EndPoint Side(const brpc_controller* handle, SideFn side) {
    uint32_t ip = 0;
    int port = 0;
    if (side(handle, &ip, &port) != 0) {
        return butil::EndPoint();
    }
    return butil::EndPoint(butil::int2ip(ip), port);
}

}  // namespace controller_internal

inline Controller::Controller()
    : handle_(brpc_controller_new()), owns_handle_(true), on_cancel_(NULL) {}

inline Controller::Controller(const Inheritable& parent_ctx)
    : handle_(brpc_controller_new()), owns_handle_(true), on_cancel_(NULL) {
    if (parent_ctx.log_id != 0) {
        set_log_id(parent_ctx.log_id);
    }
    set_request_id(parent_ctx.request_id);
}

inline Controller::Controller(brpc_controller* borrowed)
    : handle_(borrowed), owns_handle_(false), on_cancel_(NULL) {}

inline Controller::~Controller() {
    RunCancelCallback();
    if (owns_handle_) {
        brpc_controller_destroy(handle_);
    }
}

inline butil::EndPoint Controller::remote_side() const {
    return controller_internal::Side(handle_, &brpc_controller_remote_side);
}

inline butil::EndPoint Controller::local_side() const {
    return controller_internal::Side(handle_, &brpc_controller_local_side);
}

inline void Controller::Reset() {
    RunCancelCallback();
    brpc_controller_reset(handle_);
    request_attachment_.clear();
    response_attachment_.clear();
}

inline std::string Controller::request_id() const {
    char buf[64];
    const size_t len = brpc_controller_request_id(handle_, buf, sizeof(buf));
    if (len < sizeof(buf)) {
        return std::string(buf, len);
    }
    std::string id(len + 1, '\0');
    brpc_controller_request_id(handle_, &id[0], id.size());
    id.resize(len);
    return id;
}

inline void Controller::LogPrefixDummy::DoPrintLogPrefix(std::ostream& os) const {
    const std::string id = cntl_->request_id();
    if (!id.empty()) {
        os << "@rid=" << id << ' ';
    }
}

inline std::ostream& operator<<(std::ostream& os, const Controller::LogPrefixDummy& prefix) {
    prefix.DoPrintLogPrefix(os);
    return os;
}

inline std::string Controller::ErrorText() const {
    char buf[256];
    const size_t len = brpc_controller_error_text(handle_, buf, sizeof(buf));
    if (len < sizeof(buf)) {
        return std::string(buf, len);
    }
    std::string text(len + 1, '\0');
    brpc_controller_error_text(handle_, &text[0], text.size());
    text.resize(len);
    return text;
}

inline void Controller::AppendFailure(int error_code, const char* reason_fmt, va_list ap) {
    std::string text = ErrorText();
    if (!text.empty()) {
        text.push_back(' ');
    }
    if (error_code != -1) {
        char prefix[24];
        snprintf(prefix, sizeof(prefix), "[E%d]", error_code);
        text.append(prefix);
    }
    va_list measure;
    va_copy(measure, ap);
    const int len = vsnprintf(NULL, 0, reason_fmt, measure);
    va_end(measure);
    if (len > 0) {
        const size_t start = text.size();
        text.resize(start + (size_t)len + 1);
        vsnprintf(&text[start], (size_t)len + 1, reason_fmt, ap);
        text.resize(start + (size_t)len);
    }
    brpc_controller_set_failed(handle_, error_code, text.c_str());
}

inline void Controller::SetFailed(int error_code, const char* reason_fmt, ...) {
    va_list ap;
    va_start(ap, reason_fmt);
    AppendFailure(error_code == 0 ? -1 : error_code, reason_fmt, ap);
    va_end(ap);
}

inline void Controller::SetFailed(const std::string& reason) { SetFailed(-1, "%s", reason.c_str()); }

namespace controller_internal {
inline void RunClosure(void* closure) { static_cast<google::protobuf::Closure*>(closure)->Run(); }
}  // namespace controller_internal

inline void Controller::NotifyOnCancel(google::protobuf::Closure* callback) {
    if (callback == NULL) {
        return;
    }
    const int rc = brpc_controller_notify_on_cancel(handle_, &controller_internal::RunClosure, callback);
    if (rc == 0) {
        return;  // a server call's: the library runs it
    }
    if (rc != ENOTSUP || on_cancel_ != NULL) {
        callback->Run();
        return;
    }
    on_cancel_ = callback;
}

inline void Controller::RunCancelCallback() {
    google::protobuf::Closure* const callback = on_cancel_;
    on_cancel_ = NULL;
    if (callback != NULL) {
        callback->Run();
    }
}

// True once SIGINT or SIGTERM arrived (the handlers are installed by the
// first call of IsAskedToQuit, AskToQuit or Server::RunUntilAskedToQuit).
// Handlers the program had before are still called after ours.
namespace quit_internal {

inline volatile std::sig_atomic_t& QuitFlag() {
    static volatile std::sig_atomic_t asked = 0;
    return asked;
}

// The handlers SIGINT and SIGTERM had before ours, called after ours.
inline struct sigaction* PreviousQuitHandlers() {
    static struct sigaction previous[2];
    return previous;
}

inline void OnQuitSignal(int signo) {
    QuitFlag() = 1;
    const struct sigaction& previous = PreviousQuitHandlers()[signo == SIGINT ? 0 : 1];
    if ((previous.sa_flags & SA_SIGINFO) == 0 && previous.sa_handler != SIG_DFL &&
        previous.sa_handler != SIG_IGN && previous.sa_handler != NULL) {
        previous.sa_handler(signo);
    }
}

inline void InstallQuitHandlers() {
    static std::once_flag installed;
    std::call_once(installed, [] {
        struct sigaction action;
        action.sa_handler = &OnQuitSignal;
        sigemptyset(&action.sa_mask);
        action.sa_flags = 0;
        sigaction(SIGINT, &action, &PreviousQuitHandlers()[0]);
        sigaction(SIGTERM, &action, &PreviousQuitHandlers()[1]);
    });
}

}  // namespace quit_internal

inline bool IsAskedToQuit() {
    quit_internal::InstallQuitHandlers();
    return quit_internal::QuitFlag() != 0;
}

inline void AskToQuit() {
    quit_internal::InstallQuitHandlers();
    raise(SIGINT);
}

// Ends the call `id` names with ECANCELED unless it ended (its done still
// runs, once). A call canceled before it starts ends as it starts.
inline void StartCancel(CallId id) { brpc_call_id_cancel(id.value); }

// Blocks until the call `id` names ended and its done returned; returns at
// once for a call that ended.
inline void Join(CallId id) { brpc_call_id_join(id.value); }

}  // namespace brpc

// LOG and VLOG lines about a call, prefixed with its request id.
#define CLOGD(cntl) LOG(DEBUG) << (cntl)->LogPrefix()
#define CLOGI(cntl) LOG(INFO) << (cntl)->LogPrefix()
#define CLOGW(cntl) LOG(WARNING) << (cntl)->LogPrefix()
#define CLOGE(cntl) LOG(ERROR) << (cntl)->LogPrefix()
#define CLOGF(cntl) LOG(FATAL) << (cntl)->LogPrefix()
#define CVLOG(v, cntl) VLOG(v) << (cntl)->LogPrefix()

#endif  // BRPC_CONTROLLER_H
