// brpc::Server over the C ABI in brpc_stream.h: header-only.
//
// Serves protobuf services (protoc's cc_generic_services) over baidu_std.
// Each request runs its method on a worker thread with a server-side
// Controller; the method (or anyone later, on any thread) ends the call with
// done->Run(), which sends the response and frees the call.

#ifndef BRPC_SERVER_H
#define BRPC_SERVER_H

#include <signal.h>
#include <unistd.h>
#include <cxxabi.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/service.h>
#include <google/protobuf/stubs/callback.h>

#include "brpc_stream.h"
#include "brpc/adaptive_max_concurrency.h"
#include "brpc/closure_guard.h"
#include "brpc/controller.h"
#include "brpc/event_dispatcher.h"
// Services often implement Describable and count with butil::atomic,
// including only server.h as brpc allows.
#include "brpc/describable.h"
#include "brpc/errno.h"
#include "butil/atomicops.h"
#include "butil/endpoint.h"
#include "butil/logging.h"
// As brpc's server.h brings bvar: the program's own counters (bvar::Adder).
#include "bvar/reducer.h"

namespace brpc {

// Kinds of objects brpc's ServerOptions point to. This library provides
// none of them (each belongs to a protocol or feature it leaves out), so a
// non-NULL one fails Start with a message naming the option.
class NsheadService;
class ThriftService;
class MongoServiceAdaptor;
class Authenticator;
class Interceptor;
class HealthReporter;
class RtmpService;
class RedisService;
class RpcPBMessageFactory;

// brpc's generic calls, which server.h brings in brpc: a
// BaiduMasterService taking every method's request as raw bytes
// (SerializedRequest / SerializedResponse). Not provided: naming them in a
// pointer compiles (ServerOptions::baidu_master_service, refused at Start
// when set), deriving from or creating one stops the build here.
namespace server_internal {
template <int kWhich>
struct GenericCallNotProvided {
    // Takes any arguments, so that the message below is the only error.
    template <typename... Args>
    GenericCallNotProvided(Args&&...) {}
    static_assert(kWhich < 0,
                  "brpc_stream: brpc::BaiduMasterService / SerializedRequest / SerializedResponse are "
                  "not provided: generic calls (one service taking every method's raw bytes) are not "
                  "part of this library; implement the protobuf service and register it with "
                  "Server::AddService");
};
}  // namespace server_internal
typedef server_internal::GenericCallNotProvided<0> BaiduMasterService;
typedef server_internal::GenericCallNotProvided<1> SerializedRequest;
typedef server_internal::GenericCallNotProvided<2> SerializedResponse;

// brpc's interface for session and thread-local data
// (ServerOptions::session_local_data_factory and thread_local_data_factory,
// not provided: a factory set there fails Start).
class DataFactory {
public:
    virtual ~DataFactory() {}
    virtual void* CreateData() const = 0;
    virtual void DestroyData(void*) const = 0;
    virtual bool ResetData(void*) const { return true; }
};

// brpc's certificate settings. SSL is not provided: a server given them
// (mutable_ssl_options) fails Start.
struct CertInfo {
    std::string certificate;
    std::string private_key;
    std::vector<std::string> sni_filters;
};

struct ServerSSLOptions {
    ServerSSLOptions()
        : strict_sni(false), disable_ssl3(true), release_buffer(false), session_lifetime_s(300),
          ecdhe_curve_name("prime256v1") {}
    CertInfo default_cert;
    std::vector<CertInfo> certs;
    bool strict_sni;
    bool disable_ssl3;
    bool release_buffer;
    int session_lifetime_s;
    std::string ciphers;
    std::string ecdhe_curve_name;
    std::vector<std::string> alpns;
};

// brpc's thread-local data needs ServerOptions::thread_local_data_factory,
// which is not provided: using it stops the build here.
template <typename T = void>
void* thread_local_data() {
    static_assert(!std::is_same<T, T>::value,
                  "brpc_stream: brpc::thread_local_data is not provided (nor "
                  "ServerOptions::thread_local_data_factory): use thread_local variables, methods run on "
                  "the library's worker threads");
    return NULL;
}

enum ServiceOwnership {
    // The server deletes the service in its destructor.
    SERVER_OWNS_SERVICE,
    SERVER_DOESNT_OWN_SERVICE,
};

struct ServerOptions {
    ServerOptions() {
        brpc_server_options defaults;
        brpc_server_options_init(&defaults);
        max_body_size = defaults.max_body_size;
        keepalive = defaults.liveness.keepalive;
        keepalive_idle_s = defaults.liveness.keepalive_idle_s;
        keepalive_interval_s = defaults.liveness.keepalive_interval_s;
        keepalive_count = defaults.liveness.keepalive_count;
        tcp_user_timeout_ms = defaults.liveness.tcp_user_timeout_ms;
        etcd_registration_ttl_s = defaults.etcd_registration.ttl_s;
        max_concurrency = defaults.max_concurrency;
        has_builtin_services = defaults.has_builtin_services;
        max_connections = defaults.max_connections;
        max_partial_request_bytes = defaults.max_partial_request_bytes;
        header_timeout_ms = defaults.header_timeout_ms;
        body_timeout_ms = defaults.body_timeout_ms;
        max_streams_per_connection = defaults.max_streams_per_connection;
        idle_timeout_sec = defaults.idle_timeout_sec;
        // brpc's default; applied to the worker pool at Start (see below).
        num_threads = 8;
        nshead_service = NULL;
        thrift_service = NULL;
        mongo_service_adaptor = NULL;
        auth = NULL;
        server_owns_auth = false;
        interceptor = NULL;
        server_owns_interceptor = false;
        session_local_data_factory = NULL;
        reserved_session_local_data = 0;
        thread_local_data_factory = NULL;
        reserved_thread_local_data = 0;
        bthread_init_fn = NULL;
        bthread_init_args = NULL;
        bthread_init_count = 0;
        internal_port = -1;
        force_ssl = false;
        use_rdma = false;
        baidu_master_service = NULL;
        http_master_service = NULL;
        health_reporter = NULL;
        rtmp_service = NULL;
        redis_service = NULL;
        rpc_pb_message_factory = NULL;
        ignore_eovercrowded = false;
    }

    // Connections that moved no byte for this many seconds are closed
    // (looked at once a second, as brpc does). <= 0 (default -1): never.
    int idle_timeout_sec;

    // A hint, as in brpc: the worker pool that runs the methods keeps at
    // least this many threads from Start on (up to its bound,
    // BRPC_STREAM_MAX_WORKERS, logged when reached; the pool never shrinks,
    // as bthread's concurrency). <= 0: the pool is left as it is.
    // Default 8 (brpc's). The I/O threads that read connections are
    // apart from these: brpc::SetEventDispatcherNum(n) before the first
    // server or channel (brpc's -event_dispatcher_num, brpc/event_dispatcher.h),
    // else BRPC_STREAM_EVENT_DISPATCHERS of them, else one per two cores
    // from 1 to 4; a connection stays on one, and each takes a bounded
    // share (64 KiB) per turn.
    // The listen backlog is the system's net.core.somaxconn (brpc asks for
    // 65535, which the kernel caps the same way).
    int num_threads;

    // ---- brpc's options for what this library does not provide ----
    // Each must keep its default: otherwise Start fails (ENOTSUP) with a
    // log line naming it.
    std::string pid_file;
    NsheadService* nshead_service;
    ThriftService* thrift_service;
    const MongoServiceAdaptor* mongo_service_adaptor;
    const Authenticator* auth;
    bool server_owns_auth;
    const Interceptor* interceptor;
    bool server_owns_interceptor;
    const DataFactory* session_local_data_factory;
    size_t reserved_session_local_data;
    const DataFactory* thread_local_data_factory;
    size_t reserved_thread_local_data;
    // Run in bthreads before the server starts: there are no bthreads here.
    bool (*bthread_init_fn)(void* args);
    void* bthread_init_args;
    size_t bthread_init_count;
    // A second port for the builtin services only (the builtin pages are
    // on the main port here, see has_builtin_services).
    int internal_port;
    bool force_ssl;
    bool use_rdma;
    BaiduMasterService* baidu_master_service;
    google::protobuf::Service* http_master_service;
    HealthReporter* health_reporter;
    RtmpService* rtmp_service;
    // The protocols a server speaks: baidu_std (and the builtin pages over
    // HTTP) only, so anything but "" fails Start.
    std::string enabled_protocols;
    RedisService* redis_service;
    std::string server_info_name;
    RpcPBMessageFactory* rpc_pb_message_factory;
    bool ignore_eovercrowded;

    bool security_mode() const { return internal_port >= 0 || !has_builtin_services; }
    bool has_ssl_options() const { return !ssl_options_.empty(); }
    const ServerSSLOptions& ssl_options() const {
        static const ServerSSLOptions none;
        return ssl_options_.empty() ? none : ssl_options_[0];
    }
    ServerSSLOptions* mutable_ssl_options() {
        if (ssl_options_.empty()) {
            ssl_options_.resize(1);
        }
        return &ssl_options_[0];
    }

    // Largest request accepted, in bytes (brpc's -max_body_size flag;
    // default 64 MiB): a connection sending a bigger one is closed.
    int64_t max_body_size;
    // Dead-peer detection for accepted connections, as in ChannelOptions
    // (brpc has gflags for it). <= 0: the system's.
    bool keepalive;
    int keepalive_idle_s;
    int keepalive_interval_s;
    int keepalive_count;
    int tcp_user_timeout_ms;

    // Registration in etcd (brpc has none; the client side is the naming
    // service "etcd://host:port/prefix", see README "Service discovery with
    // etcd"). This is the whole API: no brpc/etcd.h. With a url, Start()
    // puts the key "<prefix>/<ip:port>" holding "ip:port[ tag]" into etcd
    // under a lease it keeps alive, before returning (an etcd it cannot
    // reach fails Start with errno set); Stop() withdraws it (revokes the
    // lease) before refusing calls. A killed process's entry goes when its
    // lease lapses, etcd_registration_ttl_s after its last renewal.
    // "etcd://host:port[,host:port...]/prefix"; empty (default): none.
    std::string etcd_registration_url;
    // The "ip:port" clients should call; empty (default): the listen
    // address, or for 0.0.0.0 the local address that reaches etcd.
    std::string etcd_registration_address;
    // brpc's optional tag after the address; empty (default): none.
    std::string etcd_registration_tag;
    // The lease's TTL in seconds (default 5; etcd's minimum is about 2).
    int etcd_registration_ttl_s;
    // Calls in flight on the whole server; beyond it a request is answered
    // ELIMIT ("Reached server's max_concurrency=N") and its method never
    // runs. 0 (default): unlimited.
    int max_concurrency;

    // The limit of every method that Server::MaxConcurrencyOf does not set
    // (beyond it: ELIMIT, "Reached method's max_concurrency=N"). Default:
    // unlimited. brpc's adaptive limiters ("auto", "timeout") make Start fail.
    AdaptiveMaxConcurrency method_max_concurrency;

    // brpc's builtin pages over HTTP on the server's own port: /status,
    // /vars, /brpc_metrics, /connections, /health, /version (default true,
    // as in brpc). False: a connection that does not speak baidu_std is
    // closed.
    bool has_builtin_services;

    // Bounds against peers that hold a server's memory or descriptors
    // without sending whole requests (brpc has none of these; its
    // max_body_size above bounds one request). Each logs an error naming
    // the option.
    // Not an option: a connection with 1024 calls (or 8 MiB of requests)
    // read and not yet answered is not read further until some are
    // answered; its peer's sends wait, other connections are read as usual.
    // Connections kept at once; a new one beyond is closed at once.
    // Default 10000; 0: unlimited; negative: Start fails with EINVAL.
    int max_connections;
    // Bytes of requests still being read (a header and part of its body),
    // every connection together: the connection that takes the server past
    // it is closed (EOVERCROWDED), so a thousand peers each half-sending a
    // 60 MiB body are not all kept. Default 512 MiB; 0: unlimited;
    // negative: EINVAL.
    int64_t max_partial_request_bytes;
    // A connection holding part of a frame header this long is closed
    // (ETIMEDOUT): a peer sending a byte now and then (slowloris) is not
    // kept. Default 10000 (10 s); <= 0: never.
    int header_timeout_ms;
    // A connection whose frame (its header whole) is not whole after this
    // many milliseconds plus one second for every 64 KiB of it received is
    // closed (ETIMEDOUT): a peer trickling a body a byte now and then is cut
    // once body_timeout_ms is up, one sending at 64 KiB/s or faster never
    // is. Default 30000 (30 s); <= 0: never.
    int body_timeout_ms;
    // Streams one connection carries at once (accepted and not yet
    // closed): a request that would take its connection past it is
    // answered ELIMIT ("... max_streams_per_connection=N") and its method
    // never runs; StreamAccept refuses with ELIMIT too. The connection and
    // its other streams go on. Default 65536; 0: unlimited; negative:
    // Start fails with EINVAL. Memory: about 500 bytes of heap per open
    // stream; once 16384 or more sockets are freed (a connection with many
    // streams torn down) the library asks glibc to give its free memory
    // back (malloc_trim, at most once a second), and keeps 144 bytes per
    // socket slot at its high-water mark for reuse.
    int max_streams_per_connection;

private:
    // Zero or one, copied with the options as brpc copies its own.
    std::vector<ServerSSLOptions> ssl_options_;
};

// IsAskedToQuit() and AskToQuit() are in brpc/controller.h, as in brpc.

namespace server_internal {
struct Method;
}

class Server {
public:
    Server();
    // Stops, joins, then deletes the services it owns.
    ~Server();

    // Serves every method of `service` under the service's full name.
    // 0, or -1 (errno: EEXIST for a service added twice, EPERM once started,
    // EINVAL for NULL).
    int AddService(google::protobuf::Service* service, ServiceOwnership ownership);

    // Listens on 0.0.0.0:port (0 picks a free port; see listen_address).
    // options may be NULL (defaults). 0, or -1 with errno.
    int Start(int port, const ServerOptions* options);
    // Listens on "ip:port" or "hostname:port".
    int Start(const char* ip_port_str, const ServerOptions* options);
    int Start(const butil::EndPoint& endpoint, const ServerOptions* options);

    // Stops accepting: new requests are answered with ELOGOFF; calls in
    // flight and open streams go on. closewait_ms is unused, as in brpc.
    int Stop(int closewait_ms = 0);
    // Returns once every call was answered and every connection ended with
    // all its streams, their last callbacks (on_closed) returned: handlers
    // may be destroyed right after it, none of their callbacks runs any
    // more. As in brpc, a connection keeps being read while its streams
    // are open, so what a client wrote before StreamClose is delivered and
    // the close is normal; a connection that carries no stream closes once
    // its responses went out. A connection whose peer sends nothing for
    // 2 s while streams are still open on it is failed with ELOGOFF (its
    // streams' on_failed(ELOGOFF), then on_closed, run before Join returns).
    int Join();
    // Serves until SIGINT/SIGTERM (or AskToQuit), then Stop() and Join().
    void RunUntilAskedToQuit();
    bool IsRunning() const { return brpc_server_is_running(handle_); }

    // The address listened on, with the chosen port.
    butil::EndPoint listen_address() const { return listen_address_; }

    // The text the builtin /version page shows on the server's port and the
    // server's name in its log lines, as in brpc. Left empty, Start sets it
    // to the class names of the services, joined with '+'.
    void set_version(const std::string& version) {
        version_ = version;
        brpc_server_set_version(handle_, version_.c_str());
    }
    const std::string& version() const { return version_; }

    // The limit on calls in flight of one method ("package.Service.Method",
    // or the service's full name and the method's), as in brpc:
    //   server.MaxConcurrencyOf("example.EchoService.Echo") = 10;
    // Set it after AddService and before Start (later changes are refused
    // with an error in the log); beyond it a request is answered ELIMIT. An
    // unknown method is logged and given a placeholder, as brpc does.
    AdaptiveMaxConcurrency& MaxConcurrencyOf(const butil::StringPiece& full_method_name);
    int MaxConcurrencyOf(const butil::StringPiece& full_method_name) const;
    AdaptiveMaxConcurrency& MaxConcurrencyOf(const butil::StringPiece& full_service_name,
                                             const butil::StringPiece& method_name);
    int MaxConcurrencyOf(const butil::StringPiece& full_service_name,
                         const butil::StringPiece& method_name) const;
    AdaptiveMaxConcurrency& MaxConcurrencyOf(google::protobuf::Service* service,
                                             const butil::StringPiece& method_name);
    int MaxConcurrencyOf(google::protobuf::Service* service, const butil::StringPiece& method_name) const;

private:
    Server(const Server&);
    Server& operator=(const Server&);

    brpc_server* handle_;
    butil::EndPoint listen_address_;
    std::vector<std::unique_ptr<server_internal::Method> > methods_;
    std::vector<google::protobuf::Service*> owned_services_;
    // Set by MaxConcurrencyOf, by full method name; applied at Start.
    std::map<std::string, AdaptiveMaxConcurrency> method_limits_;
    // What MaxConcurrencyOf hands out for a method that does not exist.
    AdaptiveMaxConcurrency unknown_method_limit_;
    std::string version_;
    // The class name of each service added, for the version Start makes.
    std::vector<std::string> service_class_names_;
};

// ---- implementation ----

namespace server_internal {

// What a registered method's handler needs; outlives the C server.
struct Method {
    Method(google::protobuf::Service* s, const google::protobuf::MethodDescriptor* m)
        : service(s), descriptor(m) {}
    google::protobuf::Service* service;
    const google::protobuf::MethodDescriptor* descriptor;
};

// One request being served. It is the `done` handed to the service: Run()
// sends the response and deletes the call.
class Call : public google::protobuf::Closure {
public:
    Call(const Method* method, brpc_server_call* call)
        : call_(call),
          cntl_(brpc_server_call_controller(call)),
          request_(method->service->GetRequestPrototype(method->descriptor).New()),
          response_(method->service->GetResponsePrototype(method->descriptor).New()) {}

    // The C handler of every method: parses the request and calls the service.
    static void Handle(void* arg, brpc_server_call* c_call) {
        const Method* method = static_cast<const Method*>(arg);
        Call* call = new Call(method, c_call);
        const uint8_t* data = NULL;
        size_t len = 0;
        brpc_server_call_request(c_call, &data, &len);
        if (len > (size_t)INT_MAX || !call->request_->ParseFromArray(data, (int)len)) {
            call->cntl_.SetFailed(EREQUEST, "Fail to parse request message, request_size=%zu", len);
            call->Run();
            return;
        }
        const uint8_t* attachment = NULL;
        size_t attachment_len = 0;
        brpc_server_call_request_attachment(c_call, &attachment, &attachment_len);
        call->cntl_.request_attachment().append(attachment, attachment_len);
        method->service->CallMethod(method->descriptor, &call->cntl_, call->request_.get(),
                                    call->response_.get(), call);
    }

    void Run() override {
        std::string payload;
        if (!cntl_.Failed() && !response_->SerializeToString(&payload)) {
            cntl_.SetFailed(ERESPONSE, "Fail to serialize response");
            payload.clear();
        }
        const std::string attachment = cntl_.response_attachment().to_string();
        brpc_server_call_send_response(call_, reinterpret_cast<const uint8_t*>(payload.data()), payload.size(),
                                       reinterpret_cast<const uint8_t*>(attachment.data()), attachment.size());
        if (cntl_.after_rpc_resp_fn_) {
            cntl_.after_rpc_resp_fn_(&cntl_, request_.get(), response_.get());
        }
        brpc_server_call_free(call_);
        delete this;
    }

private:
    brpc_server_call* call_;
    Controller cntl_;
    std::unique_ptr<google::protobuf::Message> request_;
    std::unique_ptr<google::protobuf::Message> response_;
};

inline int Fail(int code) {
    errno = code;
    return -1;
}

// The first of brpc's options this library cannot honour that is not at
// its default, or "" when there is none.
// The class name of a service object, demangled: brpc's butil::class_name_str.
inline std::string ClassName(const google::protobuf::Service& service) {
    const char* mangled = typeid(service).name();
    int status = 0;
    char* demangled = abi::__cxa_demangle(mangled, NULL, NULL, &status);
    std::string name = (status == 0 && demangled != NULL) ? demangled : mangled;
    free(demangled);
    return name;
}

inline std::string Unsupported(const ServerOptions& o) {
    if (!o.pid_file.empty()) return "pid_file (writing a pid file is not provided)";
    if (o.nshead_service != NULL) return "nshead_service (the nshead protocol is not provided)";
    if (o.thrift_service != NULL) return "thrift_service (the thrift protocol is not provided)";
    if (o.mongo_service_adaptor != NULL) return "mongo_service_adaptor (the mongo protocol is not provided)";
    if (o.auth != NULL || o.server_owns_auth) return "auth (authentication is not provided)";
    if (o.interceptor != NULL || o.server_owns_interceptor) return "interceptor (interceptors are not provided)";
    if (o.session_local_data_factory != NULL || o.reserved_session_local_data != 0)
        return "session_local_data_factory (session data is not provided)";
    if (o.thread_local_data_factory != NULL || o.reserved_thread_local_data != 0)
        return "thread_local_data_factory (thread-local data is not provided)";
    if (o.internal_port >= 0)
        return "internal_port (a second port for the builtin services is not provided; they are on the main port)";
    if (o.bthread_init_fn != NULL || o.bthread_init_count != 0)
        return "bthread_init_fn (bthreads are not provided; methods run on the library's worker threads)";
    if (o.has_ssl_options() || o.force_ssl) return "ssl_options (SSL is not provided)";
    if (o.use_rdma) return "use_rdma (RDMA is not provided)";
    if (o.baidu_master_service != NULL) return "baidu_master_service (generic services are not provided)";
    if (o.http_master_service != NULL) return "http_master_service (brpc's HTTP protocol is not provided)";
    if (o.health_reporter != NULL) return "health_reporter (custom health pages are not provided)";
    if (o.rtmp_service != NULL) return "rtmp_service (the RTMP protocol is not provided)";
    if (!o.enabled_protocols.empty()) return "enabled_protocols (baidu_std is the only protocol)";
    if (o.redis_service != NULL) return "redis_service (the redis protocol is not provided)";
    if (!o.server_info_name.empty()) return "server_info_name (not provided)";
    if (o.rpc_pb_message_factory != NULL) return "rpc_pb_message_factory (not provided)";
    if (o.ignore_eovercrowded) return "ignore_eovercrowded (not provided)";
    return std::string();
}

}  // namespace server_internal

inline Server::Server() : handle_(brpc_server_new()) {}

inline Server::~Server() {
    // Joins first: no handler may run once the methods and services go.
    brpc_server_destroy(handle_);
    for (size_t i = 0; i < owned_services_.size(); ++i) {
        delete owned_services_[i];
    }
}

inline int Server::AddService(google::protobuf::Service* service, ServiceOwnership ownership) {
    if (service == NULL) {
        return server_internal::Fail(EINVAL);
    }
    const google::protobuf::ServiceDescriptor* descriptor = service->GetDescriptor();
    for (int i = 0; i < descriptor->method_count(); ++i) {
        std::unique_ptr<server_internal::Method> method(
            new server_internal::Method(service, descriptor->method(i)));
        const int rc = brpc_server_add_method(handle_, descriptor->full_name().c_str(),
                                              method->descriptor->name().c_str(),
                                              &server_internal::Call::Handle, method.get());
        if (rc != 0) {
            // Methods registered before the failure stay (the C server
            // cannot remove them); their Method records must outlive it.
            return server_internal::Fail(rc);
        }
        methods_.push_back(std::move(method));
    }
    if (ownership == SERVER_OWNS_SERVICE) {
        owned_services_.push_back(service);
    }
    service_class_names_.push_back(server_internal::ClassName(*service));
    return 0;
}

inline int Server::Start(int port, const ServerOptions* options) {
    if (port < 0 || port > 65535) {
        return server_internal::Fail(EINVAL);
    }
    return Start(butil::EndPoint(butil::IP_ANY, port), options);
}

inline int Server::Start(const char* ip_port_str, const ServerOptions* options) {
    butil::EndPoint endpoint;
    if (butil::str2endpoint(ip_port_str, &endpoint) != 0 &&
        butil::hostname2endpoint(ip_port_str, &endpoint) != 0) {
        return server_internal::Fail(EINVAL);
    }
    return Start(endpoint, options);
}

inline int Server::Start(const butil::EndPoint& endpoint, const ServerOptions* options) {
    const ServerOptions chosen = options != NULL ? *options : ServerOptions();
    const std::string unsupported = server_internal::Unsupported(chosen);
    if (!unsupported.empty()) {
        LOG(ERROR) << "Fail to start the server: ServerOptions." << unsupported
                   << "; leave it at its default";
        return server_internal::Fail(ENOTSUP);
    }
    brpc_server_options c;
    brpc_server_options_init(&c);
    c.max_body_size = chosen.max_body_size;
    c.liveness.keepalive = chosen.keepalive;
    c.liveness.keepalive_idle_s = chosen.keepalive_idle_s;
    c.liveness.keepalive_interval_s = chosen.keepalive_interval_s;
    c.liveness.keepalive_count = chosen.keepalive_count;
    c.liveness.tcp_user_timeout_ms = chosen.tcp_user_timeout_ms;
    c.etcd_registration.url = chosen.etcd_registration_url.c_str();
    c.etcd_registration.address = chosen.etcd_registration_address.c_str();
    c.etcd_registration.tag = chosen.etcd_registration_tag.c_str();
    c.etcd_registration.ttl_s = chosen.etcd_registration_ttl_s;
    c.max_concurrency = chosen.max_concurrency;
    c.max_connections = chosen.max_connections;
    c.max_partial_request_bytes = chosen.max_partial_request_bytes;
    c.header_timeout_ms = chosen.header_timeout_ms;
    c.body_timeout_ms = chosen.body_timeout_ms;
    c.max_streams_per_connection = chosen.max_streams_per_connection;
    if (chosen.max_concurrency < 0) {
        LOG(ERROR) << "Fail to start the server: ServerOptions.max_concurrency=" << chosen.max_concurrency
                   << " is negative (0 means unlimited)";
        return server_internal::Fail(EINVAL);
    }
    for (size_t i = 0; i < methods_.size(); ++i) {
        const std::string& name = methods_[i]->descriptor->full_name();
        std::map<std::string, AdaptiveMaxConcurrency>::const_iterator set = method_limits_.find(name);
        const AdaptiveMaxConcurrency& limit =
            set != method_limits_.end() ? set->second : chosen.method_max_concurrency;
        if (static_cast<int>(limit) < 0) {
            LOG(ERROR) << "Fail to start the server: the concurrency limiter \"" << limit.value() << "\" of "
                       << name << " is not implemented here (a number or \"unlimited\" is)";
            return server_internal::Fail(EINVAL);
        }
        const int limit_rc = brpc_server_set_max_concurrency_of(handle_, name.c_str(), static_cast<int>(limit));
        if (limit_rc != 0) {
            return server_internal::Fail(limit_rc);
        }
    }
    c.has_builtin_services = chosen.has_builtin_services;
    c.idle_timeout_sec = chosen.idle_timeout_sec;
    c.num_threads = chosen.num_threads;
    if (version_.empty()) {
        // As brpc: a server given no version is named after its services'
        // classes, in its log lines and on /version.
        std::string generated;
        for (size_t i = 0; i < service_class_names_.size(); ++i) {
            generated += (i == 0 ? "" : "+") + service_class_names_[i];
        }
        set_version(generated);
    }
    const int rc = brpc_server_start(handle_, butil::endpoint2str(endpoint).c_str(), &c);
    if (rc != 0) {
        return server_internal::Fail(rc);
    }
    listen_address_ = butil::EndPoint(endpoint.ip, brpc_server_listen_port(handle_));
    return 0;
}

inline AdaptiveMaxConcurrency& Server::MaxConcurrencyOf(const butil::StringPiece& full_method_name) {
    const std::string name(full_method_name.data(), full_method_name.size());
    if (IsRunning()) {
        LOG(ERROR) << "MaxConcurrencyOf(" << name << ") is only allowed before the server started";
        return unknown_method_limit_;
    }
    for (size_t i = 0; i < methods_.size(); ++i) {
        if (methods_[i]->descriptor->full_name() == name) {
            return method_limits_[name];
        }
    }
    LOG(ERROR) << "Fail to find method=" << name << " for MaxConcurrencyOf";
    return unknown_method_limit_;
}

inline int Server::MaxConcurrencyOf(const butil::StringPiece& full_method_name) const {
    const std::string name(full_method_name.data(), full_method_name.size());
    const int running = brpc_server_max_concurrency_of(handle_, name.c_str());
    if (IsRunning() || running < 0) {
        return running < 0 ? 0 : running;
    }
    std::map<std::string, AdaptiveMaxConcurrency>::const_iterator set = method_limits_.find(name);
    return set == method_limits_.end() ? 0 : static_cast<int>(set->second);
}

inline AdaptiveMaxConcurrency& Server::MaxConcurrencyOf(const butil::StringPiece& full_service_name,
                                                        const butil::StringPiece& method_name) {
    return MaxConcurrencyOf(full_service_name.as_string() + "." + method_name.as_string());
}

inline int Server::MaxConcurrencyOf(const butil::StringPiece& full_service_name,
                                    const butil::StringPiece& method_name) const {
    return MaxConcurrencyOf(full_service_name.as_string() + "." + method_name.as_string());
}

inline AdaptiveMaxConcurrency& Server::MaxConcurrencyOf(google::protobuf::Service* service,
                                                        const butil::StringPiece& method_name) {
    if (service == NULL) {
        return unknown_method_limit_;
    }
    return MaxConcurrencyOf(service->GetDescriptor()->full_name(), method_name);
}

inline int Server::MaxConcurrencyOf(google::protobuf::Service* service,
                                    const butil::StringPiece& method_name) const {
    if (service == NULL) {
        return 0;
    }
    return MaxConcurrencyOf(service->GetDescriptor()->full_name(), method_name);
}

inline int Server::Stop(int /*closewait_ms*/) {
    const int rc = brpc_server_stop(handle_);
    return rc == 0 ? 0 : server_internal::Fail(rc);
}

inline int Server::Join() {
    const int rc = brpc_server_join(handle_);
    return rc == 0 ? 0 : server_internal::Fail(rc);
}

inline void Server::RunUntilAskedToQuit() {
    while (!IsAskedToQuit()) {
        usleep(100 * 1000);
    }
    Stop(0);
    Join();
}

}  // namespace brpc

#endif  // BRPC_SERVER_H
