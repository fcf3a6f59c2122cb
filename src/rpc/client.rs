//! The client side: a channel reaches one server, or the servers a naming
//! service lists through a load balancer (`cluster`). Every call is a
//! pending entry in a versioned registry whose id is the call's
//! correlation id; it goes out in one or more attempts (retries after
//! failures brpc retries, a backup request after `backup_request`), each
//! on a connection of `connections`, and exactly one of {response,
//! timeout, cancellation, last failure} ends it (the registry's set_failed
//! picks the winner).

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

use super::cluster::Cluster;
use super::connections::{self, ClientConnection, ConnKey, Uses};
use super::embedded_rpc;
use super::lb::{self, Feedback};
use super::naming;
use crate::errno;
use crate::error::Error;
use crate::id::{Id, Registry};
use crate::protocol::{
    decode_body, encode_body, pack_rpc_header, BodyCoding, FrameType, Limits, RpcMessage, RpcMeta, RpcRequestMeta,
    StreamFrame, StreamSettings,
};
use crate::runtime::{timers, TimerId};
use crate::socket::{Liveness, Socket, SocketId};
use crate::stream;

/// How a channel's calls use connections (brpc's `connection_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConnectionType {
    /// One connection per server, shared by every call (and channel) to it;
    /// brpc's default for baidu_std.
    #[default]
    Single,
    /// A pool of connections per server, one call on a connection at a time.
    Pooled,
    /// A new connection per call, closed when the call ends.
    Short,
}

impl ConnectionType {
    /// brpc's names: "single", "pooled", "short"; "" is the default.
    pub fn parse(name: &str) -> Result<ConnectionType, String> {
        match name {
            "" | "single" => Ok(ConnectionType::Single),
            "pooled" => Ok(ConnectionType::Pooled),
            "short" => Ok(ConnectionType::Short),
            other => Err(format!("unknown connection_type \"{other}\" (expected single, pooled or short)")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChannelOptions {
    pub connect_timeout: Option<Duration>,
    /// None: calls never time out.
    pub timeout: Option<Duration>,
    /// None: no backup request. Else a call not ended after this long is
    /// sent a second time, to another server when there is one; the first
    /// answer wins.
    pub backup_request: Option<Duration>,
    /// Retries of a call that failed in a way brpc retries (the connection
    /// broke, the server is stopping or over its limits, ...), each on
    /// another server when there is one.
    pub max_retry: u32,
    pub connection_type: ConnectionType,
    /// Channels with different groups use different connections to a
    /// server (brpc's `connection_group`).
    pub connection_group: String,
    /// With a naming service: whether `init` succeeds when the service
    /// lists no server at first (brpc's default: true), and whether that is
    /// logged.
    pub succeed_without_server: bool,
    pub log_succeed_without_server: bool,
    /// With a naming service: a server whose connection failed is left out
    /// and probed this often until it accepts connections again (brpc's
    /// `health_check_interval`, 3 s).
    pub health_check_interval: Duration,
    /// Keepalive and TCP_USER_TIMEOUT for the channel's connections.
    pub liveness: Liveness,
}

impl Default for ChannelOptions {
    /// brpc's defaults: 200 ms to connect, 500 ms per call, no backup
    /// request, 3 retries, single connections.
    fn default() -> Self {
        ChannelOptions {
            connect_timeout: Some(Duration::from_millis(200)),
            timeout: Some(Duration::from_millis(500)),
            backup_request: None,
            max_retry: 3,
            connection_type: ConnectionType::Single,
            connection_group: String::new(),
            succeed_without_server: true,
            log_succeed_without_server: true,
            health_check_interval: Duration::from_secs(3),
            liveness: Liveness::default(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CallRequest {
    pub service: String,
    pub method: String,
    pub payload: Bytes,
    pub attachment: Bytes,
    /// None: the channel's. Zero: no timeout.
    pub timeout: Option<Duration>,
    /// None: the channel's.
    pub max_retry: Option<u32>,
    pub log_id: Option<i64>,
    /// Sent when not empty.
    pub request_id: String,
    /// Consistent hashing balancers pick the server by it.
    pub request_code: Option<u64>,
    /// Streams this call sets up. Such a call goes on the shared (single)
    /// connection of the server it picks, whatever the connection type,
    /// since its streams stay there, and sends no backup request.
    pub stream_settings: Option<StreamSettings>,
    /// How the payload is compressed and checksummed on the wire.
    pub coding: BodyCoding,
}

/// How a call ended: the server's message (whose meta may carry an error
/// code of the server's) or a local error, and the connection's two ends.
#[derive(Debug)]
pub struct CallOutcome {
    pub result: Result<RpcMessage, Error>,
    /// The server that answered, or the last one tried.
    pub remote: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    /// The connection the call ended on (its streams ride on it).
    pub socket: Option<SocketId>,
    /// Attempts after the first that were retries (not the backup).
    pub retried_count: u32,
    pub has_backup_request: bool,
    /// From the start of the call to its end.
    pub latency: Duration,
}

impl CallOutcome {
    /// The call's error: local, or the server's response code and text.
    pub fn error(&self) -> Option<Error> {
        match &self.result {
            Err(error) => Some(error.clone()),
            Ok(message) => response_error(message),
        }
    }
}

/// The server's error code and text, when its response carries one.
fn response_error(message: &RpcMessage) -> Option<Error> {
    let response = message.meta.response.as_ref()?;
    let code = response.error_code.filter(|code| *code != 0)?;
    Some(Error::new(code, response.error_text.clone().unwrap_or_default()))
}

/// Runs exactly once, on the thread that ended the call (the dispatcher for
/// a response, the timer thread for a timeout, the failing thread for a
/// connection failure, the canceller): it must not block.
pub type CallDone = Box<dyn FnOnce(CallOutcome) + Send>;

pub struct Channel {
    inner: Arc<ChannelInner>,
}

/// Where a channel's calls go.
enum Servers {
    One(SocketAddr),
    Cluster(Arc<Cluster>),
}

struct ChannelInner {
    servers: Servers,
    options: ChannelOptions,
    uses: Uses,
}

struct PendingCall {
    channel: Arc<ChannelInner>,
    /// Header and meta, payload, attachment: resent as they are.
    frame: Vec<Bytes>,
    request_code: Option<u64>,
    with_streams: bool,
    started: Instant,
    state: Mutex<CallState>,
}

/// One sending of the request, to one server on one connection.
struct Attempt {
    server: SocketAddr,
    socket: SocketId,
    connection: Arc<ClientConnection>,
    kind: ConnectionType,
    key: ConnKey,
    started: Instant,
}

#[derive(Default)]
struct CallState {
    done: Option<CallDone>,
    timers: Vec<TimerId>,
    retries_left: u32,
    retried: u32,
    backup_sent: bool,
    attempts: Vec<Attempt>,
    /// Servers this call went to, in order.
    tried: Vec<SocketAddr>,
}

static CALLS: LazyLock<Registry<PendingCall>> = LazyLock::new(Registry::new);

/// Calls started and not yet ended, process-wide.
pub fn pending_calls() -> usize {
    CALLS.live()
}

/// brpc's default retry policy: the errors after which another attempt may
/// succeed (a broken or refused connection, a server stopping or over its
/// limits); never a timeout of the call itself.
pub fn is_retryable(code: i32) -> bool {
    matches!(
        code,
        errno::EFAILEDSOCKET
            | errno::EEOF
            | errno::ELOGOFF
            | errno::ELIMIT
            | errno::EOVERCROWDED
            | errno::EH2RUNOUTSTREAMS
            | libc::EHOSTDOWN
            | libc::ETIMEDOUT
            | libc::ENOENT
            | libc::EPIPE
            | libc::ECONNREFUSED
            | libc::ECONNRESET
            | libc::ENODATA
    )
}

impl Channel {
    /// A channel to "host:port"; nothing connects until the first call.
    /// `EINVAL` when the address does not resolve.
    pub fn new(server: &str, options: ChannelOptions) -> Result<Channel, Error> {
        let remote = super::resolve(server)?;
        Ok(Channel::with_servers(Servers::One(remote), options))
    }

    /// brpc's `Init(naming_service_url, load_balancer_name, options)`: a
    /// "scheme://..." URL with a balancer's name, or a plain "host:port"
    /// with "" (one server). Waits for the naming service's first list;
    /// fails when it is empty and `succeed_without_server` is false.
    pub fn init(naming_url: &str, load_balancer: &str, options: ChannelOptions) -> Result<Channel, Error> {
        if naming::split_url(naming_url).is_none() {
            if !load_balancer.is_empty() {
                return Err(Error::new(
                    libc::EINVAL,
                    format!("load balancer \"{load_balancer}\" needs a naming service URL, not \"{naming_url}\""),
                ));
            }
            return Channel::new(naming_url, options).map_err(|error| {
                Error::new(error.code(), format!("invalid server address \"{naming_url}\"")).caused_by(error)
            });
        }
        if load_balancer.is_empty() {
            return Err(Error::new(
                libc::EINVAL,
                format!("{naming_url} needs a load balancer (rr, wrr, random, wr, la, c_murmurhash, c_md5)"),
            ));
        }
        let lb = lb::by_name(load_balancer)?;
        let service = naming::create(naming_url)?;
        let cluster = Cluster::start(naming_url, service, lb, options.health_check_interval, options.connect_timeout)?;
        if cluster.server_count() == 0 {
            if !options.succeed_without_server {
                return Err(Error::new(libc::ENODATA, format!("{naming_url} lists no server")));
            }
            if options.log_succeed_without_server {
                log_info!("{naming_url} lists no server yet; the channel waits for some");
            }
        }
        Ok(Channel::with_servers(Servers::Cluster(cluster), options))
    }

    fn with_servers(servers: Servers, options: ChannelOptions) -> Channel {
        Channel { inner: Arc::new(ChannelInner { servers, options, uses: Uses::default() }) }
    }

    /// The single server, or None for a channel over a naming service.
    pub fn remote(&self) -> Option<SocketAddr> {
        match &self.inner.servers {
            Servers::One(addr) => Some(*addr),
            Servers::Cluster(_) => None,
        }
    }

    /// Starts a call; `done` runs exactly once. Returns the call's id (for
    /// [`cancel`]), or None when it ended already. A payload that cannot be
    /// coded as `request.coding` asks ends the call with `EREQUEST` before
    /// anything is sent.
    pub fn call(&self, request: CallRequest, done: CallDone) -> Option<Id> {
        let ended_early = |done: CallDone, error: Error| {
            done(CallOutcome {
                result: Err(error),
                remote: self.remote(),
                local: None,
                socket: None,
                retried_count: 0,
                has_backup_request: false,
                latency: Duration::ZERO,
            });
            None
        };
        let mut meta = RpcMeta::default();
        let body = match encode_body(request.coding, request.payload.clone(), &request.attachment, &mut meta) {
            Ok(body) => body,
            Err(err) => {
                let error = Error::new(errno::EREQUEST, format!("Fail to compress request: {err}")).caused_by(err);
                return ended_early(done, error);
            }
        };
        let options = &self.inner.options;
        let timeout = match request.timeout {
            Some(t) if t.is_zero() => None,
            Some(t) => Some(t),
            None => options.timeout,
        };
        let state = CallState { retries_left: request.max_retry.unwrap_or(options.max_retry), ..Default::default() };
        let with_streams = request.stream_settings.is_some();
        let created = CALLS.create_with(|id| PendingCall {
            channel: Arc::clone(&self.inner),
            frame: pack_request(id, &request, meta, body),
            request_code: request.request_code,
            with_streams,
            started: Instant::now(),
            state: Mutex::new(state),
        });
        let (id, call) = match created.map(|id| (id, CALLS.address(id))) {
            Ok((id, Some(call))) => {
                call.state.lock().done = Some(done);
                (id, call)
            }
            Ok((_, None)) | Err(_) => {
                return ended_early(done, Error::new(libc::EAGAIN, "too many calls in flight"));
            }
        };
        let mut scheduled = Vec::new();
        if let Some(timeout) = timeout {
            // The text is made when the timer fires: most calls end first.
            let task = Box::new(move || {
                let text = format!("Reached timeout={}ms", timeout.as_millis());
                finish(id, Err(Error::new(errno::ERPCTIMEDOUT, text)), None)
            });
            scheduled.push(timers().schedule(Instant::now() + timeout, task));
        }
        if let (Some(backup), false) = (options.backup_request, with_streams) {
            if timeout.is_none_or(|t| backup < t) {
                scheduled.push(timers().schedule(Instant::now() + backup, Box::new(move || send_backup(id))));
            }
        }
        call.state.lock().timers = scheduled;
        issue(id, &call);
        Some(id)
    }
}

/// Ends a call with `ECANCELED` unless it ended already (brpc's
/// `StartCancel`); its done runs as for any ending.
pub fn cancel(id: Id) {
    finish(id, Err(Error::new(libc::ECANCELED, "RPC was canceled")), None);
}

/// The request's frame: `coded` is the meta with the body's coding (from
/// [`encode_body`]) and `body` the coded payload.
fn pack_request(id: Id, request: &CallRequest, coded: RpcMeta, body: Bytes) -> Vec<Bytes> {
    let meta = RpcMeta {
        request: Some(RpcRequestMeta {
            service_name: Some(request.service.clone()),
            method_name: Some(request.method.clone()),
            log_id: request.log_id,
            request_id: (!request.request_id.is_empty()).then(|| request.request_id.clone()),
            ..Default::default()
        }),
        correlation_id: Some(id as i64),
        attachment_size: (!request.attachment.is_empty()).then_some(request.attachment.len() as i32),
        stream_settings: request.stream_settings.clone(),
        ..coded
    };
    let mut head = BytesMut::new();
    // A request too large for the header's 32 bits fails when written.
    let _ = pack_rpc_header(&mut head, &meta, body.len() + request.attachment.len());
    vec![head.freeze(), body, request.attachment.clone()]
}

impl ChannelInner {
    fn pick(&self, request_code: Option<u64>, tried: &[SocketAddr]) -> Result<SocketAddr, Error> {
        match &self.servers {
            Servers::One(addr) => Ok(*addr),
            Servers::Cluster(cluster) => cluster.pick(request_code, tried),
        }
    }

    fn key(&self, remote: SocketAddr) -> ConnKey {
        ConnKey { remote, liveness: self.options.liveness, group: self.options.connection_group.clone() }
    }

    fn cluster(&self) -> Option<&Arc<Cluster>> {
        match &self.servers {
            Servers::Cluster(cluster) => Some(cluster),
            Servers::One(_) => None,
        }
    }
}

/// The backup request: a second attempt, to a server not tried yet when
/// there is one, if the call is still waiting for its first.
fn send_backup(id: Id) {
    let Some(call) = CALLS.address(id) else { return };
    {
        let mut state = call.state.lock();
        if state.backup_sent || state.attempts.is_empty() {
            return;
        }
        state.backup_sent = true;
    }
    issue(id, &call);
}

/// Sends one attempt of the call: picks a server, gets a connection of the
/// channel's type to it, writes the request.
fn issue(id: Id, call: &PendingCall) {
    let channel = &call.channel;
    let tried = call.state.lock().tried.clone();
    let server = match channel.pick(call.request_code, &tried) {
        Ok(server) => server,
        Err(error) => return attempt_lost(id, call, error),
    };
    call.state.lock().tried.push(server);
    let kind = if call.with_streams { ConnectionType::Single } else { channel.options.connection_type };
    let lease = match connections::acquire(&channel.uses, kind, channel.key(server), channel.options.connect_timeout) {
        Ok(lease) => lease,
        Err(error) => {
            let text = format!("fail to create a connection to {server}: {}", error.text());
            if let Some(cluster) = channel.cluster() {
                cluster.feedback(&Feedback { server, latency: Duration::ZERO, failed: true });
                cluster.mark_down(server);
            }
            return attempt_lost(id, call, Error::new(error.code(), text).caused_by(error));
        }
    };
    let socket_id = lease.socket.id();
    lease.connection.pending.lock().insert(id);
    call.state.lock().attempts.push(Attempt {
        server,
        socket: socket_id,
        connection: Arc::clone(&lease.connection),
        kind: lease.kind,
        key: lease.key.clone(),
        started: Instant::now(),
    });
    // A failure that swept the connection before this call joined it would
    // not have seen it: check now.
    if let Some(failure) = lease.socket.failure() {
        return on_attempt_failed(id, socket_id, failure);
    }
    let result = lease.socket.write(
        call.frame.clone(),
        Some(Box::new(move |code| {
            if code != 0 {
                let text = format!("fail to write the request: {}", errno::describe(code));
                on_attempt_failed(id, socket_id, Error::new(code, text));
            }
        })),
    );
    // An Err was already reported through the completion above.
    let _ = result;
}

/// An attempt could not be made or failed: retry when brpc would, else
/// leave the call to the attempts still out, else end it.
fn attempt_lost(id: Id, call: &PendingCall, error: Error) {
    let retry = {
        let mut state = call.state.lock();
        let retry = is_retryable(error.code()) && state.retries_left > 0;
        if retry {
            state.retries_left -= 1;
            state.retried += 1;
        } else if !state.attempts.is_empty() {
            return;
        }
        retry
    };
    if retry {
        issue(id, call);
    } else {
        finish(id, Err(error), None);
    }
}

/// Takes the call's attempts on `socket` out of its state; whoever takes
/// them handles their ending, once.
fn take_attempts(call: &PendingCall, id: Id, socket: SocketId, only_one: bool) -> Vec<Attempt> {
    let mut state = call.state.lock();
    let mut taken = Vec::new();
    while let Some(at) = state.attempts.iter().position(|a| a.socket == socket) {
        taken.push(state.attempts.swap_remove(at));
        if only_one {
            break;
        }
    }
    if let Some(first) = taken.first() {
        if !state.attempts.iter().any(|a| a.socket == socket) {
            first.connection.pending.lock().remove(&id);
        }
    }
    taken
}

/// The connection an attempt was on failed, or its request could not be
/// written.
pub(crate) fn on_attempt_failed(id: Id, socket: SocketId, error: Error) {
    let Some(call) = CALLS.address(id) else { return };
    let taken = take_attempts(&call, id, socket, false);
    if taken.is_empty() {
        return;
    }
    for attempt in taken {
        if let Some(cluster) = call.channel.cluster() {
            cluster.feedback(&Feedback { server: attempt.server, latency: attempt.started.elapsed(), failed: true });
            cluster.mark_down(attempt.server);
        }
        connections::release(attempt.kind, &attempt.key, attempt.socket, attempt.connection, false);
    }
    attempt_lost(id, &call, error);
}

/// A response (or one that does not parse) came on `socket`.
pub(crate) fn on_response_frame(socket: SocketId, response: Result<RpcMessage, (Id, Error)>) {
    let (id, result) = match response {
        Ok(message) => match message.meta.correlation_id {
            Some(id) => (id as Id, decode_response(message)),
            None => return log_warning!("dropped a response without correlation_id"),
        },
        Err((id, error)) => (id, Err(error)),
    };
    let Some(call) = CALLS.address(id) else { return };
    let Some(attempt) = take_attempts(&call, id, socket, true).pop() else { return };
    let error = match &result {
        Ok(message) => response_error(message),
        Err(error) => Some(error.clone()),
    };
    if let Some(cluster) = call.channel.cluster() {
        let failed = error.is_some();
        cluster.feedback(&Feedback { server: attempt.server, latency: attempt.started.elapsed(), failed });
    }
    // A server's own refusal (ELOGOFF, ELIMIT, ...) is retried on another
    // server; a channel with one server hands it to the caller at once.
    let elsewhere = call.channel.cluster().is_some();
    match error {
        Some(error) if elsewhere && is_retryable(error.code()) && call.state.lock().retries_left > 0 => {
            connections::release(attempt.kind, &attempt.key, attempt.socket, attempt.connection, true);
            attempt_lost(id, &call, error);
        }
        _ => {
            drop(call);
            finish(id, result, Some(attempt));
        }
    }
}

/// Verifies and decompresses a successful response's payload; a response
/// that fails either ends its call with `ERESPONSE`.
fn decode_response(mut message: RpcMessage) -> Result<RpcMessage, Error> {
    if response_error(&message).is_some() {
        return Ok(message);
    }
    let limit = Limits::default().max_body_size;
    match decode_body(&message.meta, &message.payload, &message.attachment, limit) {
        Ok(payload) => {
            message.payload = payload;
            Ok(message)
        }
        Err(err) => Err(Error::new(errno::ERESPONSE, format!("Fail to parse response: {err}")).caused_by(err)),
    }
}

/// Ends a call exactly once; later attempts find it ended. `winner` is the
/// attempt that brought the ending response.
fn finish(id: Id, result: Result<RpcMessage, Error>, winner: Option<Attempt>) {
    let Some(call) = CALLS.address(id) else { return };
    if !CALLS.set_failed(id) {
        if let Some(w) = winner {
            connections::release(w.kind, &w.key, w.socket, w.connection, true);
        }
        return;
    }
    let (done, timers_to_cancel, others, retried, backup, last) = {
        let mut state = call.state.lock();
        let others: Vec<Attempt> = state.attempts.drain(..).collect();
        (
            state.done.take(),
            std::mem::take(&mut state.timers),
            others,
            state.retried,
            state.backup_sent,
            state.tried.last().copied(),
        )
    };
    for timer in timers_to_cancel {
        timers().cancel(timer);
    }
    for attempt in others {
        attempt.connection.pending.lock().remove(&id);
        if let Some(cluster) = call.channel.cluster() {
            cluster.feedback(&Feedback { server: attempt.server, latency: attempt.started.elapsed(), failed: true });
        }
        connections::release(attempt.kind, &attempt.key, attempt.socket, attempt.connection, false);
    }
    let (mut remote, mut local, mut socket) = (last, None, None);
    if let Some(w) = winner {
        remote = Some(w.server);
        socket = Some(w.socket);
        if let Some(s) = Socket::address_failed_as_well(w.socket) {
            local = w.connection.local(&s);
        }
        connections::release(w.kind, &w.key, w.socket, w.connection, true);
    }
    let latency = call.started.elapsed();
    drop(call);
    if let Some(done) = done {
        done(CallOutcome {
            result,
            remote,
            local,
            socket,
            retried_count: retried,
            has_backup_request: backup,
            latency,
        });
    }
}

/// A DATA frame for a stream that is not connected yet carries the
/// response of the call that sets it up; every other frame is the stream's.
pub(crate) fn on_stream_frame(host: &Socket, frame: StreamFrame) {
    let target = frame.meta.stream_id() as Id;
    if frame.meta.frame_type() == FrameType::Data && !stream::is_connected(target) {
        if let Some(message) = embedded_rpc(frame.payload.clone()) {
            if message.meta.response.is_some() {
                return on_response_frame(host.id(), Ok(message));
            }
        }
    }
    stream::on_frame(host, frame);
}
