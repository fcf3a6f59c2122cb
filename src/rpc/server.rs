//! The server side: a listener on the dispatcher, one socket per accepted
//! connection, requests cut off it and run on the worker pool, and a
//! [`ServerCall`] that answers each request exactly once.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::{Condvar, Mutex, RwLock};

use super::admission::{self, CallGate, FrameTimeouts, Intake, PartialBudget};
use super::idle::{self, IdleConnections};
use super::method_status::{MethodSnapshot, MethodStatus};
use super::turns::CallQueue;
use crate::errno;
use crate::error::Error;
use crate::etcd::{Registration, RegistrationOptions};
use crate::protocol::{
    decode_body, encode_body, pack_rpc_header, pack_stream_header, BodyCoding, Cutter, DecodeError, FrameType, Limits,
    Magic, RawFrame, RpcMessage, RpcMeta, RpcResponseMeta, StreamFrameMeta, StreamSettings,
};
use crate::runtime::{dispatcher, raise_core_threads, timers, Interest, Token};
use crate::socket::{Liveness, Socket, SocketId, SocketOptions, SocketUser};
use crate::stream::{self, StreamId};
use prost::Message as _;

/// Runs on a worker thread for each request of its method.
pub type Handler = Arc<dyn Fn(ServerCall) + Send + Sync>;

#[derive(Clone)]
pub struct ServerOptions {
    pub limits: Limits,
    /// Connections kept at once; a new one beyond is closed at once (and
    /// logged). 0: unlimited. Default
    /// [`DEFAULT_MAX_CONNECTIONS`](crate::rpc::DEFAULT_MAX_CONNECTIONS) (10000). brpc has no such option.
    pub max_connections: usize,
    /// Bytes of requests still being read that the server holds, every
    /// connection together; the connection that takes it past this is
    /// closed (logged, `EOVERCROWDED`). 0: unlimited. Default
    /// [`DEFAULT_MAX_PARTIAL_REQUEST_BYTES`](crate::rpc::DEFAULT_MAX_PARTIAL_REQUEST_BYTES) (512 MiB).
    pub max_partial_request_bytes: usize,
    /// How long part of a frame header may wait for the rest (a peer
    /// sending a byte now and then holds its connection otherwise); the
    /// connection is then closed (logged, `ETIMEDOUT`). None: never.
    /// Default [`DEFAULT_HEADER_TIMEOUT`](crate::rpc::DEFAULT_HEADER_TIMEOUT) (10 s).
    pub header_timeout: Option<std::time::Duration>,
    /// How long a frame whose header arrived may take to arrive whole,
    /// plus one second for every [`BODY_MIN_RATE`](crate::rpc::BODY_MIN_RATE)
    /// (64 KiB) bytes of it received: a peer trickling a body (the header
    /// timeout no longer applies) is cut once it averages less; the
    /// connection is then closed (logged, `ETIMEDOUT`). None: never.
    /// Default [`DEFAULT_BODY_TIMEOUT`](crate::rpc::DEFAULT_BODY_TIMEOUT) (30 s).
    pub body_timeout: Option<std::time::Duration>,
    /// Streams one connection carries at once (accepted and not yet
    /// closed); a request that would take its connection past it is
    /// answered `ELIMIT` before its method runs (and `stream::accept`
    /// refuses with `ELIMIT` too). 0: unlimited. Default
    /// [`DEFAULT_MAX_STREAMS_PER_CONNECTION`](crate::rpc::DEFAULT_MAX_STREAMS_PER_CONNECTION) (65536).
    /// brpc has no such option.
    pub max_streams_per_connection: usize,
    /// Keepalive and TCP_USER_TIMEOUT for accepted connections.
    pub liveness: Liveness,
    /// When set, `start` registers the server in etcd (the entry is there
    /// when it returns; an etcd that cannot be reached fails the start) and
    /// `stop` withdraws it before refusing calls.
    pub etcd_registration: Option<RegistrationOptions>,
    /// Calls in flight on the whole server (brpc's `max_concurrency`);
    /// a request beyond it is answered `ELIMIT` and its method never runs.
    /// 0: unlimited (brpc's default).
    pub max_concurrency: usize,
    /// Serves connections that do not speak baidu_std (brpc's builtin
    /// services: the `portal` layer). None: such a connection is closed,
    /// as any other bytes that are not a frame.
    pub builtin_services: Option<Arc<dyn HttpService>>,
    /// brpc's `idle_timeout_sec`: a connection that moved no byte this long
    /// is closed (looked at once a second). None (default): never.
    pub idle_timeout: Option<std::time::Duration>,
    /// brpc's `num_threads`, a hint: the process's worker pool keeps at
    /// least this many threads from `start` on (up to its bound; it never
    /// shrinks, as bthread's concurrency). 0 (default): left as it is.
    pub num_threads: usize,
    /// Connections the kernel completes and queues for `accept` (the
    /// listen backlog): a burst beyond it waits for SYN retries. 0
    /// (default): the system's largest, `net.core.somaxconn` (4096 on
    /// current Linux); the kernel caps larger values at it.
    pub listen_backlog: u32,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            limits: Limits::default(),
            max_connections: admission::DEFAULT_MAX_CONNECTIONS,
            max_partial_request_bytes: admission::DEFAULT_MAX_PARTIAL_REQUEST_BYTES,
            header_timeout: Some(admission::DEFAULT_HEADER_TIMEOUT),
            body_timeout: Some(admission::DEFAULT_BODY_TIMEOUT),
            max_streams_per_connection: admission::DEFAULT_MAX_STREAMS_PER_CONNECTION,
            liveness: Liveness::default(),
            etcd_registration: None,
            max_concurrency: 0,
            builtin_services: None,
            idle_timeout: None,
            num_threads: 0,
            listen_backlog: 0,
        }
    }
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("limits", &self.limits)
            .field("max_connections", &self.max_connections)
            .field("max_partial_request_bytes", &self.max_partial_request_bytes)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("max_streams_per_connection", &self.max_streams_per_connection)
            .field("liveness", &self.liveness)
            .field("etcd_registration", &self.etcd_registration)
            .field("max_concurrency", &self.max_concurrency)
            .field("builtin_services", &self.builtin_services.is_some())
            .field("idle_timeout", &self.idle_timeout)
            .field("num_threads", &self.num_threads)
            .field("listen_backlog", &self.listen_backlog)
            .finish()
    }
}

/// The HTTP side of a server's port, as brpc serves its builtin pages next
/// to baidu_std: a connection whose first bytes are neither `PRPC` nor
/// `STRM` is handed here (the `portal` layer implements it).
pub trait HttpService: Send + Sync {
    /// `buf` holds every byte the connection sent so far. Either write the
    /// answer and close the connection through `socket` (then `Answered`:
    /// later bytes are discarded), or return `NeedMore`.
    fn on_input(&self, server: ServerView<'_>, socket: &Socket, buf: &BytesMut) -> HttpProgress;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpProgress {
    NeedMore,
    Answered,
}

/// How long an HTTP connection has to send its request before it is closed.
pub const HTTP_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What an [`HttpService`] may read of the server: its methods, its
/// connections, its address and age.
#[derive(Clone, Copy)]
pub struct ServerView<'a> {
    inner: &'a ServerInner,
}

impl ServerView<'_> {
    /// Every service's full name with its method names, sorted.
    pub fn services(&self) -> Vec<(String, Vec<String>)> {
        let services = self.inner.services.read();
        let mut list: Vec<(String, Vec<String>)> = services
            .iter()
            .map(|(service, methods)| {
                let mut names: Vec<String> = methods.keys().cloned().collect();
                names.sort();
                (service.clone(), names)
            })
            .collect();
        list.sort();
        list
    }

    /// The connections the server accepted and still holds, oldest id first.
    pub fn connections(&self) -> Vec<SocketId> {
        let mut ids: Vec<SocketId> = self.inner.connections.lock().iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub fn listen_address(&self) -> Option<SocketAddr> {
        self.inner.listener.lock().as_ref().map(|l| l.address)
    }

    /// Since the server started listening.
    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started.lock().map(|at| at.elapsed()).unwrap_or_default()
    }

    /// Calls being handled now, all methods together.
    pub fn concurrency(&self) -> usize {
        *self.inner.in_flight.lock()
    }

    /// Every method's figures (calls, errors, concurrency, latency), sorted.
    pub fn method_statuses(&self) -> Vec<MethodSnapshot> {
        self.inner.method_statuses()
    }

    /// The version the program gave ([`Server::set_version`]); empty if none.
    pub fn version(&self) -> String {
        self.inner.version.lock().clone()
    }
}

/// A registered method: its handler and its figures.
struct Method {
    handler: Handler,
    status: Arc<MethodStatus>,
}

pub struct Server {
    inner: Arc<ServerInner>,
}

struct ServerInner {
    /// service full name → method name → method.
    services: RwLock<HashMap<String, HashMap<String, Method>>>,
    listener: Mutex<Option<Listener>>,
    running: AtomicBool,
    stopping: AtomicBool,
    connections: Mutex<HashSet<SocketId>>,
    /// Signalled (under `connections`) when a connection leaves the set or
    /// the last of `open_streams` ends: what `join` waits for.
    ended: Condvar,
    /// Streams accepted by this server's calls whose last callbacks have
    /// not returned yet.
    open_streams: AtomicUsize,
    in_flight: Mutex<usize>,
    idle: Condvar,
    limits: Mutex<Limits>,
    liveness: Mutex<Liveness>,
    /// `ServerOptions::max_concurrency` of the current run.
    max_concurrency: AtomicUsize,
    builtin_services: Mutex<Option<Arc<dyn HttpService>>>,
    started: Mutex<Option<std::time::Instant>>,
    /// Failed accept rounds since the last connection was accepted.
    accept_retries: AtomicUsize,
    /// A retry is on the timer (one at a time).
    accept_retry_due: AtomicBool,
    /// The server's entry in etcd, from start to stop.
    registration: Mutex<Option<Registration>>,
    /// `ServerOptions::max_connections` of the current run.
    max_connections: AtomicUsize,
    /// Connections closed at accept for `max_connections`.
    refused_connections: AtomicUsize,
    /// Bytes of requests being read, against `max_partial_request_bytes`.
    partial: Arc<PartialBudget>,
    timeouts: Mutex<FrameTimeouts>,
    /// `ServerOptions::max_streams_per_connection` of the current run.
    max_streams_per_connection: AtomicUsize,
    /// Connections' traffic as last seen, for `idle_timeout`.
    idle_connections: Mutex<IdleConnections>,
    /// Bumped at every start and stop: a sweep of an older run ends.
    idle_sweeps: AtomicU64,
    /// What `/version` shows (brpc's `Server::set_version`); empty: unset.
    version: Mutex<String>,
}

/// This host's name, for the address a started server prints.
fn host_name() -> String {
    let mut name = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length, which is passed.
    let rc = unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) };
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    match std::str::from_utf8(&name[..end]) {
        Ok(host) if rc == 0 && !host.is_empty() => host.to_owned(),
        _ => "localhost".to_owned(),
    }
}

/// How soon accepting is tried again after it failed.
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

struct Listener {
    socket: TcpListener,
    token: Token,
    address: SocketAddr,
}

impl Default for Server {
    fn default() -> Self {
        Server::new()
    }
}

impl Server {
    pub fn new() -> Server {
        Server {
            inner: Arc::new(ServerInner {
                services: RwLock::new(HashMap::new()),
                listener: Mutex::new(None),
                running: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                connections: Mutex::new(HashSet::new()),
                ended: Condvar::new(),
                open_streams: AtomicUsize::new(0),
                in_flight: Mutex::new(0),
                idle: Condvar::new(),
                limits: Mutex::new(Limits::default()),
                liveness: Mutex::new(Liveness::default()),
                max_concurrency: AtomicUsize::new(0),
                builtin_services: Mutex::new(None),
                started: Mutex::new(None),
                accept_retries: AtomicUsize::new(0),
                accept_retry_due: AtomicBool::new(false),
                registration: Mutex::new(None),
                max_connections: AtomicUsize::new(0),
                refused_connections: AtomicUsize::new(0),
                partial: Arc::default(),
                timeouts: Mutex::new(FrameTimeouts::default()),
                max_streams_per_connection: AtomicUsize::new(0),
                idle_connections: Mutex::new(IdleConnections::default()),
                idle_sweeps: AtomicU64::new(0),
                version: Mutex::new(String::new()),
            }),
        }
    }

    /// The version `/version` shows, as brpc's `Server::set_version`; may be
    /// changed at any time.
    pub fn set_version(&self, version: &str) {
        *self.inner.version.lock() = version.to_owned();
    }

    /// Registers `service.method`; EEXIST for a duplicate, EPERM once started.
    pub fn add_method(&self, service: &str, method: &str, handler: Handler) -> Result<(), Error> {
        if self.inner.running.load(Ordering::Acquire) {
            return Err(Error::new(libc::EPERM, "methods are added before the server starts"));
        }
        let mut services = self.inner.services.write();
        let methods = services.entry(service.to_string()).or_default();
        if methods.contains_key(method) {
            return Err(Error::new(libc::EEXIST, format!("{service}.{method} is added already")));
        }
        let status = Arc::new(MethodStatus::new(service, method));
        methods.insert(method.to_string(), Method { handler, status });
        Ok(())
    }

    /// Limits the calls in flight of one method, named `service.method`
    /// (the service's full name), as brpc's `MaxConcurrencyOf`; 0 removes
    /// the limit. `ENOENT` for an unknown method, `EPERM` once started.
    pub fn set_max_concurrency_of(&self, full_method_name: &str, max: usize) -> Result<(), Error> {
        if self.inner.running.load(Ordering::Acquire) {
            return Err(Error::new(libc::EPERM, "a method's max_concurrency is set before the server starts"));
        }
        let status = self
            .inner
            .status_of(full_method_name)
            .ok_or_else(|| Error::new(libc::ENOENT, format!("no method {full_method_name}")))?;
        status.set_max_concurrency(max);
        Ok(())
    }

    /// The limit set by [`Server::set_max_concurrency_of`] (0: none), or
    /// `None` for an unknown method.
    pub fn max_concurrency_of(&self, full_method_name: &str) -> Option<usize> {
        self.inner.status_of(full_method_name).map(|status| status.max_concurrency())
    }

    /// Every method's figures, sorted by service then method.
    pub fn method_statuses(&self) -> Vec<MethodSnapshot> {
        self.inner.method_statuses()
    }

    /// Calls in flight on the whole server now.
    pub fn concurrency(&self) -> usize {
        *self.inner.in_flight.lock()
    }

    /// Connections the server holds now.
    pub fn connection_count(&self) -> usize {
        self.inner.connections.lock().len()
    }

    /// Bytes of requests still being read, every connection together
    /// (what `max_partial_request_bytes` bounds).
    pub fn partial_request_bytes(&self) -> usize {
        self.inner.partial.held()
    }

    /// Listens on "ip:port" (port 0 picks a free one) and starts accepting.
    pub fn start(&self, address: &str, options: ServerOptions) -> Result<(), Error> {
        if self.inner.running.swap(true, Ordering::AcqRel) {
            return Err(Error::new(libc::EPERM, "the server is started already"));
        }
        let started = self.listen(address, &options).and_then(|()| self.register(&options));
        if started.is_err() {
            self.stop_listening();
            self.inner.running.store(false, Ordering::Release);
        } else if let Some(address) = self.listen_address() {
            let name = self.inner.name();
            log_info!("Server[{name}] is serving on port={}.", address.port());
            if options.builtin_services.is_some() {
                log_info!("Check out http://{}:{} in web browser.", host_name(), address.port());
            } else {
                log_warning!("Builtin services are disabled according to ServerOptions.has_builtin_services");
            }
        }
        started
    }

    fn listen(&self, address: &str, options: &ServerOptions) -> Result<(), Error> {
        let address = super::resolve(address)?;
        let cannot_listen = |err: std::io::Error| {
            let code = err.raw_os_error().unwrap_or(libc::EINVAL);
            Error::new(code, format!("cannot listen on {address}: {err}")).caused_by(err)
        };
        let socket = super::listen::listen(address, options.listen_backlog).map_err(cannot_listen)?;
        let address = socket.local_addr().map_err(cannot_listen)?;
        *self.inner.limits.lock() = options.limits;
        *self.inner.liveness.lock() = options.liveness;
        self.inner.max_concurrency.store(options.max_concurrency, Ordering::Release);
        self.inner.max_connections.store(options.max_connections, Ordering::Release);
        self.inner.partial.set_max(options.max_partial_request_bytes);
        *self.inner.timeouts.lock() = FrameTimeouts { header: options.header_timeout, body: options.body_timeout };
        self.inner.max_streams_per_connection.store(options.max_streams_per_connection, Ordering::Release);
        *self.inner.builtin_services.lock() = options.builtin_services.clone();
        *self.inner.started.lock() = Some(std::time::Instant::now());
        self.inner.stopping.store(false, Ordering::Release);
        let weak = Arc::downgrade(&self.inner);
        let token = dispatcher()
            .register(
                socket.as_raw_fd(),
                Interest::READ,
                Arc::new(move |_events| {
                    if let Some(server) = weak.upgrade() {
                        server.accept_all();
                    }
                }),
            )
            .map_err(|code| Error::new(code, format!("cannot watch the listening socket of {address}")))?;
        *self.inner.listener.lock() = Some(Listener { socket, token, address });
        let run = self.inner.idle_sweeps.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(timeout) = options.idle_timeout {
            self.inner.sweep_idle_later(run, timeout);
        }
        if options.num_threads > 0 {
            let core = raise_core_threads(options.num_threads);
            if core < options.num_threads {
                log_info!("num_threads={} is past the worker pool's bound; it keeps {core}", options.num_threads);
            }
        }
        Ok(())
    }

    /// Puts the server's entry into etcd when the options ask for it.
    fn register(&self, options: &ServerOptions) -> Result<(), Error> {
        let Some(registration) = &options.etcd_registration else { return Ok(()) };
        let Some(listening) = self.listen_address() else {
            return Err(Error::new(libc::EINVAL, "the server listens nowhere to register"));
        };
        match Registration::start(registration, listening) {
            Ok(registration) => {
                *self.inner.registration.lock() = Some(registration);
                Ok(())
            }
            Err(err) => {
                let text = format!("fail to register the server in etcd: {err}");
                Err(Error::new(err.code(), text).caused_by(err))
            }
        }
    }

    /// The address listened on, with the chosen port.
    pub fn listen_address(&self) -> Option<SocketAddr> {
        self.inner.listener.lock().as_ref().map(|l| l.address)
    }

    pub fn is_running(&self) -> bool {
        self.inner.running.load(Ordering::Acquire) && !self.inner.stopping.load(Ordering::Acquire)
    }

    /// Stops accepting; requests arriving from now on get ELOGOFF, calls in
    /// flight and open streams go on (`join` waits for them).
    /// A server registered in etcd first withdraws its entry, so clients
    /// stop choosing it before it refuses them.
    pub fn stop(&self) {
        let registration = self.inner.registration.lock().take();
        if let Some(registration) = registration {
            if let Err(err) = registration.withdraw() {
                log_warning!("the server's entry stays in etcd until its lease lapses: {err}");
            }
        }
        let was_stopping = self.inner.stopping.swap(true, Ordering::AcqRel);
        if !was_stopping && self.inner.running.load(Ordering::Acquire) {
            log_info!("Server[{}] is going to quit", self.inner.name());
        }
        self.inner.idle_sweeps.fetch_add(1, Ordering::AcqRel);
        self.stop_listening();
    }

    fn stop_listening(&self) {
        if let Some(listener) = self.inner.listener.lock().take() {
            dispatcher().deregister(listener.token, listener.socket.as_raw_fd());
        }
    }

    /// Returns once every call was answered and every connection ended
    /// with all its streams: their last callbacks (`on_closed`) returned,
    /// so the program may destroy their handlers. As brpc's acceptor at
    /// stop, a connection that carries no stream closes once its responses
    /// went out; one that carries streams keeps being read, so what the
    /// peer sent before closing them is delivered and their close is
    /// normal, and closes when its last stream ends. A connection whose
    /// peer sends nothing for [`JOIN_QUIET_GRACE`] while streams still ride
    /// on it is failed with `ELOGOFF` (so are its streams).
    pub fn join(&self) {
        if !self.inner.running.load(Ordering::Acquire) {
            return;
        }
        self.stop();
        {
            let mut in_flight = self.inner.in_flight.lock();
            while *in_flight > 0 {
                self.inner.idle.wait(&mut in_flight);
            }
        }
        let connections: Vec<SocketId> = self.inner.connections.lock().iter().copied().collect();
        for id in connections {
            // After the responses of the calls that just ended went out.
            stream::close_host_when_idle(id, Error::new(errno::ELOGOFF, "the server stopped"));
        }
        self.inner.wait_for_connections_and_streams();
        self.inner.running.store(false, Ordering::Release);
    }
}

/// How long `Server::join` lets a connection whose streams are still open
/// stay silent before failing it: its peer keeps sending what it wrote
/// before closing them, so a pause this long means it is not closing them.
pub const JOIN_QUIET_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How often `Server::join` looks at the input of the connections it waits for.
const JOIN_TICK: std::time::Duration = std::time::Duration::from_millis(20);

impl Drop for Server {
    fn drop(&mut self) {
        self.join();
    }
}

impl ServerInner {
    /// `join`'s wait: until no connection is left and every stream accepted
    /// on them ran its last callbacks; connections whose peer went quiet
    /// for [`JOIN_QUIET_GRACE`] are failed on the way.
    fn wait_for_connections_and_streams(&self) {
        let mut read_so_far = 0;
        let mut quiet_since = std::time::Instant::now();
        let mut connections = self.connections.lock();
        loop {
            if connections.is_empty() {
                if self.open_streams.load(Ordering::Acquire) == 0 {
                    return;
                }
                // Only the last callbacks are left to return.
                self.ended.wait(&mut connections);
                continue;
            }
            let _ = self.ended.wait_for(&mut connections, JOIN_TICK);
            let read: u64 = connections
                .iter()
                .filter_map(|id| Socket::address_failed_as_well(*id))
                .map(|socket| socket.traffic().bytes_read)
                .sum();
            if read != read_so_far {
                read_so_far = read;
                quiet_since = std::time::Instant::now();
                continue;
            }
            if quiet_since.elapsed() < JOIN_QUIET_GRACE {
                continue;
            }
            let quiet: Vec<SocketId> = connections.iter().copied().collect();
            // Failing a connection takes it out of the set (on_failed).
            drop(connections);
            for id in quiet {
                Socket::set_failed_by_id(id, Error::new(errno::ELOGOFF, "the server stopped"));
            }
            connections = self.connections.lock();
        }
    }

    /// Counts `accepted` streams in until their last callbacks returned.
    fn track_streams(self: &Arc<Self>, accepted: &[StreamId]) {
        for id in accepted {
            self.open_streams.fetch_add(1, Ordering::AcqRel);
            stream::tell_after_end(*id, Arc::clone(self) as Arc<dyn stream::EndWatcher>);
        }
    }
}

/// The server's count of open streams, told by each as it ends.
impl stream::EndWatcher for ServerInner {
    fn stream_ended(&self) {
        if self.open_streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Under the lock, so a join between its check and its wait hears it.
            let _connections = self.connections.lock();
            self.ended.notify_all();
        }
    }
}

impl ServerInner {
    fn connection_ended(&self, id: SocketId) {
        let mut connections = self.connections.lock();
        connections.remove(&id);
        self.ended.notify_all();
    }

    /// Looks for idle connections `idle::CHECK_INTERVAL` from now, and so
    /// on until the run `run` stops.
    fn sweep_idle_later(self: &Arc<Self>, run: u64, timeout: std::time::Duration) {
        let server = Arc::downgrade(self);
        let sweep = Box::new(move || {
            let Some(server) = server.upgrade() else { return };
            if server.idle_sweeps.load(Ordering::Acquire) != run {
                return;
            }
            let connections = server.connections.lock().clone();
            server.idle_connections.lock().sweep(&connections, timeout, std::time::Instant::now());
            server.sweep_idle_later(run, timeout);
        });
        timers().schedule(std::time::Instant::now() + idle::CHECK_INTERVAL, sweep);
    }

    /// The services' names, sorted, as brpc's start and stop lines show them.
    /// The server's name in its log lines, as brpc's `version()`: the one
    /// set with [`Server::set_version`], else its services' names joined
    /// with '+'.
    fn name(&self) -> String {
        let version = self.version.lock().clone();
        if !version.is_empty() {
            return version;
        }
        let mut names: Vec<String> = self.services.read().keys().cloned().collect();
        names.sort();
        names.join("+")
    }

    fn method_statuses(&self) -> Vec<MethodSnapshot> {
        let services = self.services.read();
        let mut all: Vec<MethodSnapshot> =
            services.values().flat_map(|methods| methods.values().map(|m| m.status.snapshot())).collect();
        drop(services);
        all.sort_by(|a, b| (&a.service, &a.method).cmp(&(&b.service, &b.method)));
        all
    }

    fn accept_all(self: &Arc<Self>) {
        loop {
            let accepted = match self.listener.lock().as_ref() {
                Some(listener) => listener.socket.accept(),
                None => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    let retries = self.accept_retries.swap(0, Ordering::AcqRel);
                    if retries > 0 {
                        log_info!("accepting again after {retries} retries");
                    }
                    self.adopt(stream);
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return self.accept_later(&err),
            }
        }
    }

    /// Accepting failed (EMFILE and friends): the connections waiting in the
    /// backlog raise no new edge, so a timer tries again.
    fn accept_later(self: &Arc<Self>, err: &std::io::Error) {
        if self.accept_retries.fetch_add(1, Ordering::AcqRel) == 0 {
            log_warning!("fail to accept: {err}; retrying every {} ms", ACCEPT_RETRY.as_millis());
        }
        if self.accept_retry_due.swap(true, Ordering::AcqRel) {
            return;
        }
        let server = Arc::downgrade(self);
        let retry = Box::new(move || {
            if let Some(server) = server.upgrade() {
                server.accept_retry_due.store(false, Ordering::Release);
                server.accept_all();
            }
        });
        timers().schedule(std::time::Instant::now() + ACCEPT_RETRY, retry);
    }

    fn adopt(self: &Arc<Self>, stream: std::net::TcpStream) {
        let connections = self.connections.lock().len();
        let max = self.max_connections.load(Ordering::Acquire);
        if !admission::admit_connection(connections, max, &self.refused_connections) {
            return;
        }
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok();
        // SAFETY: into_raw_fd hands over the descriptor's only owner.
        let fd = unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(stream)) };
        let connection = Arc::new(ServerConnection {
            server: Arc::downgrade(self),
            cutter: Mutex::new(Cutter::new(*self.limits.lock())),
            local,
            protocol: Mutex::new(Protocol::Undecided),
            http: self.builtin_services.lock().clone(),
            http_answered: Arc::new(AtomicBool::new(false)),
            intake: Intake::new(Arc::clone(&self.partial), *self.timeouts.lock()),
            refused: AtomicBool::new(false),
            gate: Arc::default(),
            calls: Arc::default(),
        });
        let liveness = *self.liveness.lock();
        let max_riders = self.max_streams_per_connection.load(Ordering::Acquire);
        let options =
            SocketOptions { fd: Some(fd), user: Some(connection), liveness, max_riders, ..Default::default() };
        match Socket::create(options) {
            Ok(id) => {
                crate::stats::CONNECTIONS_ACCEPTED.inc();
                {
                    let mut connections = self.connections.lock();
                    connections.insert(id);
                    // Its event loop may be another thread, which can have
                    // read it, failed it and taken it out of the set
                    // (on_failed) before it was put in: then it is not kept.
                    if Socket::address(id).is_none() {
                        connections.remove(&id);
                        self.ended.notify_all();
                    }
                }
                // Accepted as the server stopped: not served (join may have
                // listed the connections already).
                if self.stopping.load(Ordering::Acquire) {
                    Socket::set_failed_by_id(id, Error::new(errno::ELOGOFF, "the server stopped"));
                }
            }
            Err(error) => log_warning!("fail to create a socket for an accepted connection: {error}"),
        }
    }

    fn method(&self, service: &str, method: &str) -> Result<(Handler, Arc<MethodStatus>), Error> {
        let services = self.services.read();
        let methods = services
            .get(service)
            .ok_or_else(|| Error::new(errno::ENOSERVICE, format!("Fail to find service={service}")))?;
        methods
            .get(method)
            .map(|m| (Arc::clone(&m.handler), Arc::clone(&m.status)))
            .ok_or_else(|| Error::new(errno::ENOMETHOD, format!("Fail to find method={service}/{method}")))
    }

    /// `service.method`: the service's full name may hold dots itself, so
    /// the method is what follows the last one.
    fn status_of(&self, full_method_name: &str) -> Option<Arc<MethodStatus>> {
        let (service, method) = full_method_name.rsplit_once('.')?;
        self.services.read().get(service)?.get(method).map(|m| Arc::clone(&m.status))
    }

    /// Counts a call in unless the server is at its `max_concurrency`.
    fn call_started(&self) -> Result<(), Error> {
        let max = self.max_concurrency.load(Ordering::Acquire);
        let mut in_flight = self.in_flight.lock();
        if max > 0 && *in_flight >= max {
            return Err(Error::new(errno::ELIMIT, format!("Reached server's max_concurrency={max}")));
        }
        *in_flight += 1;
        Ok(())
    }

    fn call_ended(&self) {
        let mut in_flight = self.in_flight.lock();
        *in_flight = in_flight.saturating_sub(1);
        if *in_flight == 0 {
            self.idle.notify_all();
        }
    }
}

/// Calls being handled, process-wide (for leak checks).
static CALLS_IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

pub fn calls_in_flight() -> usize {
    CALLS_IN_FLIGHT.load(Ordering::Acquire)
}

/// One request being handled. Answer it with [`ServerCall::respond`]; a call
/// dropped unanswered answers `EINTERNAL`, so the client always hears back.
pub struct ServerCall {
    server: Arc<ServerInner>,
    status: Arc<MethodStatus>,
    /// When the request was cut off the connection.
    received: std::time::Instant,
    socket: SocketId,
    correlation_id: i64,
    pub request: RpcMessage,
    pub remote: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    /// How the response's payload is compressed and checksummed.
    response_coding: BodyCoding,
    answered: bool,
    /// The connection's unanswered calls, this one's request size among them.
    gate: Arc<CallGate>,
    request_bytes: usize,
}

impl ServerCall {
    pub fn service(&self) -> &str {
        self.request.meta.request.as_ref().and_then(|r| r.service_name.as_deref()).unwrap_or("")
    }

    pub fn method(&self) -> &str {
        self.request.meta.request.as_ref().and_then(|r| r.method_name.as_deref()).unwrap_or("")
    }

    pub fn log_id(&self) -> Option<i64> {
        self.request.meta.request.as_ref().and_then(|r| r.log_id)
    }

    /// The request's request id; empty when it carried none.
    pub fn request_id(&self) -> &str {
        self.request.meta.request.as_ref().and_then(|r| r.request_id.as_deref()).unwrap_or("")
    }

    /// The streams the request asks to set up, if any.
    pub fn stream_settings(&self) -> Option<&StreamSettings> {
        self.request.meta.stream_settings.as_ref()
    }

    /// The connection the request came on (accepted streams ride on it).
    pub fn host(&self) -> SocketId {
        self.socket
    }

    /// How the client compressed and checksummed the request.
    pub fn request_coding(&self) -> BodyCoding {
        BodyCoding::of(&self.request.meta)
    }

    /// How to compress and checksum the response (default: neither, as in
    /// brpc, whatever the request used). A coding that cannot be applied
    /// answers `ERESPONSE` instead of the response.
    pub fn set_response_coding(&mut self, coding: BodyCoding) {
        self.response_coding = coding;
    }

    /// Verifies and decompresses the request's payload in place, within
    /// `limit` bytes.
    fn decode_request(&mut self, limit: usize) -> Result<(), Error> {
        let request = &mut self.request;
        match decode_body(&request.meta, &request.payload, &request.attachment, limit) {
            Ok(payload) => {
                request.payload = payload;
                Ok(())
            }
            Err(err) => Err(Error::new(errno::EREQUEST, format!("Fail to parse request: {err}")).caused_by(err)),
        }
    }

    /// Sends the response, or the error, and ends the call.
    pub fn respond(self, result: Result<(Bytes, Bytes), Error>) {
        self.respond_with_streams(result, &[]);
    }

    /// Like [`ServerCall::respond`], connecting the streams the method
    /// accepted (or failing them, when the result is an error).
    pub fn respond_with_streams(mut self, result: Result<(Bytes, Bytes), Error>, accepted: &[StreamId]) {
        self.answered = true;
        let error = result.as_ref().err().cloned();
        let client_stream = self.stream_settings().map(|s| s.stream_id());
        // Join waits for these to end, whatever the call's outcome.
        self.server.track_streams(accepted);
        if error.is_none() {
            stream::before_response(accepted);
        }
        // Counted before the client can hear back, so what it sees next
        // includes this call.
        self.status.on_responded(error.is_some(), self.received.elapsed());
        send_response(self.socket, self.correlation_id, result, self.response_coding, client_stream, accepted);
        stream::after_response(accepted, error.as_ref());
        self.end();
    }

    fn end(&self) {
        self.gate.call_answered(self.request_bytes, self.socket);
        CALLS_IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        self.server.call_ended();
    }
}

impl Drop for ServerCall {
    fn drop(&mut self) {
        if !self.answered {
            let error = Error::new(errno::EINTERNAL, "the method ended without a response");
            let client_stream = self.stream_settings().map(|s| s.stream_id());
            self.status.on_responded(true, self.received.elapsed());
            send_response(self.socket, self.correlation_id, Err(error), BodyCoding::default(), client_stream, &[]);
            self.end();
        }
    }
}

/// Sends a response, its payload coded as `coding` says; one that answers
/// a call with streams goes inside a STRM DATA frame to the client's first
/// stream, from the first accepted stream (or -1), as brpc sends it.
fn send_response(
    socket: SocketId,
    correlation_id: i64,
    result: Result<(Bytes, Bytes), Error>,
    coding: BodyCoding,
    client_stream: Option<i64>,
    accepted: &[StreamId],
) {
    let Some(socket) = Socket::address(socket) else { return };
    let mut coded = RpcMeta { compress_type: Some(0), ..Default::default() };
    // As brpc: a response that cannot be coded answers ERESPONSE.
    let result = result.and_then(|(payload, attachment)| {
        let mut meta = RpcMeta::default();
        let body = encode_body(coding, payload, &attachment, &mut meta)
            .map_err(|err| Error::new(errno::ERESPONSE, format!("Fail to serialize response: {err}")).caused_by(err))?;
        coded = meta;
        Ok((body, attachment))
    });
    let (payload, attachment, response, streams) = match result {
        Ok((payload, attachment)) => {
            let response = RpcResponseMeta { error_code: Some(0), error_text: None };
            (payload, attachment, response, stream::settings_for(accepted))
        }
        Err(error) => {
            let response =
                RpcResponseMeta { error_code: Some(error.code()), error_text: Some(error.text().into_owned()) };
            (Bytes::new(), Bytes::new(), response, None)
        }
    };
    let source_stream = streams.as_ref().map_or(-1, |s| s.stream_id());
    let meta = RpcMeta {
        response: Some(response),
        correlation_id: Some(correlation_id),
        attachment_size: (!attachment.is_empty()).then_some(attachment.len() as i32),
        stream_settings: streams,
        ..coded
    };
    let mut head = BytesMut::new();
    if let Err(err) = pack_rpc_header(&mut head, &meta, payload.len() + attachment.len()) {
        log_warning!("fail to pack a response: {}", err.text);
        return;
    }
    let mut chunks = vec![head.freeze(), payload, attachment];
    if let Some(client_stream) = client_stream {
        let len: usize = chunks.iter().map(Bytes::len).sum();
        let frame = StreamFrameMeta {
            stream_id: Some(client_stream),
            source_stream_id: Some(source_stream),
            frame_type: Some(FrameType::Data as i32),
            has_continuation: Some(false),
            feedback: None,
        };
        let mut strm = BytesMut::new();
        if let Err(err) = pack_stream_header(&mut strm, &frame, len) {
            log_warning!("fail to pack a response frame: {}", err.text);
            return;
        }
        chunks.insert(0, strm.freeze());
    }
    let _ = socket.write(chunks, None);
}

/// The input side of an accepted connection.
struct ServerConnection {
    server: std::sync::Weak<ServerInner>,
    cutter: Mutex<Cutter>,
    /// This side's address, read once at accept rather than per call.
    local: Option<SocketAddr>,
    /// What the connection speaks, told by its first bytes.
    protocol: Mutex<Protocol>,
    /// Where HTTP goes (the server's builtin services), if anywhere.
    http: Option<Arc<dyn HttpService>>,
    /// The HTTP request was answered (shared with the request's timer).
    http_answered: Arc<AtomicBool>,
    /// Its part of the server's partial-request budget, its header watch.
    intake: Intake,
    /// A request's meta did not parse: the connection is closing and its
    /// further input is dropped.
    refused: AtomicBool,
    /// Its calls read and not yet answered; the connection is read while
    /// they are few enough.
    gate: Arc<CallGate>,
    /// Its calls not yet started, waiting for their turn on a worker.
    calls: Arc<CallQueue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Fewer than 4 bytes so far, a prefix of a baidu_std magic.
    Undecided,
    BaiduStd,
    Http,
}

impl SocketUser for ServerConnection {
    fn on_input(&self, socket: &Socket, buf: &mut BytesMut) -> Result<(), Error> {
        let mut frame_ended = false;
        match self.protocol(socket, buf) {
            Protocol::Undecided => {}
            Protocol::Http => return self.on_http_input(socket, buf),
            Protocol::BaiduStd => {
                let before = buf.len();
                let mut cutter = self.cutter.lock();
                super::cut_frames(
                    &mut cutter,
                    buf,
                    |frame| self.on_request(socket, &frame),
                    |frame| {
                        if !self.refused.load(Ordering::Acquire) {
                            stream::on_frame(socket, frame);
                        }
                    },
                )?;
                frame_ended = buf.len() < before;
            }
        }
        if self.refused.load(Ordering::Acquire) {
            // The connection closes once its last answer is out; what the
            // peer sends meanwhile is not read as requests.
            buf.clear();
        }
        // What is left is part of a frame, a new one if any was cut.
        self.intake.after_input(socket, buf.len(), frame_ended)
    }

    fn accepts_input(&self) -> bool {
        self.gate.is_open()
    }

    fn on_failed(&self, socket: &Socket, error: &Error) {
        self.intake.on_closed();
        if let Some(server) = self.server.upgrade() {
            server.connection_ended(socket.id());
        }
        super::cancel::host_failed(socket.id());
        stream::on_host_failed(socket, error);
    }
}

/// Answers a request with an error before any method ran.
fn reject(socket: &Socket, meta: &RpcMeta, error: Error) {
    let client_stream = meta.stream_settings.as_ref().map(|s| s.stream_id());
    let correlation_id = meta.correlation_id.unwrap_or(0);
    send_response(socket.id(), correlation_id, Err(error), BodyCoding::default(), client_stream, &[]);
}

impl ServerConnection {
    /// Tells baidu_std from anything else by the magic. Without builtin
    /// services everything goes to the cutter, which closes the connection
    /// on bytes that are not a frame.
    fn protocol(&self, socket: &Socket, buf: &BytesMut) -> Protocol {
        let mut protocol = self.protocol.lock();
        if *protocol != Protocol::Undecided {
            return *protocol;
        }
        if self.http.is_none() {
            *protocol = Protocol::BaiduStd;
            return *protocol;
        }
        let head = buf.get(..buf.len().min(4)).unwrap_or_default();
        let baidu_std = [Magic::Rpc, Magic::Stream].iter().any(|magic| magic.bytes().starts_with(head));
        *protocol = match (baidu_std, head.len() < 4) {
            (true, true) => Protocol::Undecided,
            (true, false) => Protocol::BaiduStd,
            (false, _) => {
                self.start_http_timer(socket.id());
                Protocol::Http
            }
        };
        *protocol
    }

    /// A client that never finishes its request is not kept.
    fn start_http_timer(&self, socket: SocketId) {
        let answered = Arc::clone(&self.http_answered);
        let expire = Box::new(move || {
            if !answered.load(Ordering::Acquire) {
                let text = format!("no whole HTTP request within {} s", HTTP_REQUEST_TIMEOUT.as_secs());
                Socket::set_failed_by_id(socket, Error::new(libc::ETIMEDOUT, text));
            }
        });
        timers().schedule(std::time::Instant::now() + HTTP_REQUEST_TIMEOUT, expire);
    }

    fn on_http_input(&self, socket: &Socket, buf: &mut BytesMut) -> Result<(), Error> {
        if self.http_answered.load(Ordering::Acquire) {
            buf.clear();
            return Ok(());
        }
        let (Some(http), Some(server)) = (&self.http, self.server.upgrade()) else {
            return Err(Error::new(errno::ELOGOFF, "Server is stopping"));
        };
        if http.on_input(ServerView { inner: &server }, socket, buf) == HttpProgress::Answered {
            self.http_answered.store(true, Ordering::Release);
            buf.clear();
        }
        Ok(())
    }

    /// A request whose meta does not parse ends the conversation, as in
    /// brpc (which fails the connection with `EREQUEST`): when the meta
    /// still gives its correlation id (a required field is missing), the
    /// call is answered `EREQUEST` and the connection closes once that
    /// answer is out; otherwise it closes at once.
    fn refuse_meta(&self, socket: &Socket, frame: &RawFrame, err: DecodeError) -> Result<(), Error> {
        let error = Error::new(errno::EREQUEST, err.to_string()).caused_by(err);
        let correlation_id = RpcMeta::decode(frame.meta.clone()).ok().and_then(|meta| meta.correlation_id);
        let Some(correlation_id) = correlation_id else {
            return Err(error);
        };
        self.refused.store(true, Ordering::Release);
        let text = error.text().into_owned();
        // A plain response: the stream settings are what did not parse.
        send_response(socket.id(), correlation_id, Err(error), BodyCoding::default(), None, &[]);
        socket.close_after_flush(Error::new(errno::EREQUEST, text));
        Ok(())
    }

    fn on_request(&self, socket: &Socket, frame: &RawFrame) -> Result<(), Error> {
        if self.refused.load(Ordering::Acquire) {
            return Ok(());
        }
        let received = std::time::Instant::now();
        let meta = match frame.decode_rpc() {
            Ok(meta) => meta,
            Err(err) => return self.refuse_meta(socket, frame, err),
        };
        self.dispatch(socket, meta, frame, received);
        Ok(())
    }

    /// Runs the request on a worker, or answers it with an error.
    fn dispatch(&self, socket: &Socket, meta: RpcMeta, frame: &RawFrame, received: std::time::Instant) {
        let correlation_id = meta.correlation_id.unwrap_or(0);
        let request = match RpcMessage::decode(frame) {
            Ok(request) if request.meta.request.is_some() => request,
            Ok(_) => return reject(socket, &meta, Error::new(errno::EREQUEST, "the request has no request meta")),
            Err(err) => {
                let error = Error::new(errno::EREQUEST, format!("Fail to parse the request: {err}")).caused_by(err);
                return reject(socket, &meta, error);
            }
        };
        if let Some(settings) = &request.meta.stream_settings {
            let asked = 1 + settings.extra_stream_ids.len();
            if asked > stream::MAX_STREAMS_PER_CALL {
                let text = format!("the request sets up {asked} streams, more than {}", stream::MAX_STREAMS_PER_CALL);
                return reject(socket, &request.meta, Error::new(errno::EREQUEST, text));
            }
            // The method never sees a request its connection has no room
            // for (accept checks again: calls run concurrently).
            let (riding, max) = (socket.riders().count(), socket.riders().max());
            if max > 0 && riding + asked > max {
                let text = format!(
                    "the connection carries {riding} streams and the request sets up {asked}, \
                     more than max_streams_per_connection={max}"
                );
                return reject(socket, &request.meta, Error::new(errno::ELIMIT, text));
            }
        }
        let Some(server) = self.server.upgrade() else {
            return reject(socket, &request.meta, Error::new(errno::ELOGOFF, "Server is stopping"));
        };
        if server.stopping.load(Ordering::Acquire) {
            return reject(socket, &request.meta, Error::new(errno::ELOGOFF, "Server is stopping"));
        }
        let names = request
            .meta
            .request
            .as_ref()
            .map(|r| (r.service_name.clone().unwrap_or_default(), r.method_name.clone().unwrap_or_default()));
        let (service, method) = names.unwrap_or_default();
        let (handler, status) = match server.method(&service, &method) {
            Ok(method) => method,
            Err(error) => return reject(socket, &request.meta, error),
        };
        let limit = server.limits.lock().max_body_size;
        if let Err(error) = server.call_started() {
            status.on_rejected();
            return reject(socket, &request.meta, error);
        }
        if !status.on_requested() {
            server.call_ended();
            let text = format!("Reached method's max_concurrency={}", status.max_concurrency());
            return reject(socket, &request.meta, Error::new(errno::ELIMIT, text));
        }
        CALLS_IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
        let request_bytes = frame.meta.len() + frame.payload.len();
        self.gate.call_read(request_bytes);
        let mut call = ServerCall {
            server,
            status,
            received,
            socket: socket.id(),
            correlation_id,
            request,
            remote: socket.remote(),
            local: self.local,
            response_coding: BodyCoding::default(),
            answered: false,
            gate: Arc::clone(&self.gate),
            request_bytes,
        };
        // On a worker in turn with the other connections' calls (a refused
        // spawn drops a call, which answers EINTERNAL). The body is decoded
        // there, off the connection's input.
        let run = move || match call.decode_request(limit) {
            Ok(()) => handler(call),
            Err(error) => call.respond(Err(error)),
        };
        super::turns::run_in_turn(&self.calls, Box::new(run));
    }
}
