//! The client side: a channel shares one connection per endpoint, every
//! call is a pending entry in a versioned registry whose id is the call's
//! correlation id, and exactly one of {response, timeout, connection failure}
//! ends it (the registry's set_failed picks the winner).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;

use super::embedded_rpc;
use crate::errno;
use crate::id::{Id, Registry};
use crate::protocol::{
    decode_body, encode_body, pack_rpc_header, BodyCoding, Cutter, FrameType, Limits, RpcMessage, RpcMeta,
    RpcRequestMeta, StreamFrame, StreamSettings,
};
use crate::runtime::{timers, TimerId};
use crate::socket::{Liveness, Socket, SocketId, SocketOptions, SocketRef, SocketUser};
use crate::stream;

#[derive(Debug, Clone, Copy)]
pub struct ChannelOptions {
    pub connect_timeout: Option<Duration>,
    /// None: calls never time out.
    pub timeout: Option<Duration>,
    /// Retries of a call whose request could not be written.
    pub max_retry: u32,
    /// Keepalive and TCP_USER_TIMEOUT for the channel's connections.
    pub liveness: Liveness,
}

impl Default for ChannelOptions {
    /// brpc's defaults: 200 ms to connect, 500 ms per call, 3 retries.
    fn default() -> Self {
        ChannelOptions {
            connect_timeout: Some(Duration::from_millis(200)),
            timeout: Some(Duration::from_millis(500)),
            max_retry: 3,
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
    /// Streams this call sets up (issue of the stream layer).
    pub stream_settings: Option<StreamSettings>,
    /// How the payload is compressed and checksummed on the wire.
    pub coding: BodyCoding,
}

/// How a call ended: the server's message (whose meta may carry an error
/// code of the server's) or a local error, and the connection's two ends.
#[derive(Debug)]
pub struct CallOutcome {
    pub result: Result<RpcMessage, (i32, String)>,
    pub remote: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    /// The connection the call ended on (its streams ride on it).
    pub socket: Option<SocketId>,
}

impl CallOutcome {
    /// The call's error: local, or the server's response code and text.
    pub fn error(&self) -> Option<(i32, String)> {
        match &self.result {
            Err(error) => Some(error.clone()),
            Ok(message) => message
                .meta
                .response
                .as_ref()
                .filter(|r| r.error_code.unwrap_or(0) != 0)
                .map(|r| (r.error_code.unwrap_or(0), r.error_text.clone().unwrap_or_default())),
        }
    }
}

/// Runs exactly once, on the thread that ended the call (the dispatcher for
/// a response, the timer thread for a timeout, the failing thread for a
/// connection failure): it must not block.
pub type CallDone = Box<dyn FnOnce(CallOutcome) + Send>;

pub struct Channel {
    inner: Arc<ChannelInner>,
}

struct ChannelInner {
    remote: SocketAddr,
    options: ChannelOptions,
}

/// The connection every channel to one endpoint shares, as brpc's socket
/// map keeps one per server address (and, like its channel signature, per
/// connection settings: channels asking for different liveness get
/// different connections).
#[derive(Default)]
struct Endpoint {
    channels: usize,
    connection: Option<(SocketId, Arc<ClientConnection>)>,
}

static ENDPOINTS: LazyLock<Mutex<HashMap<(SocketAddr, Liveness), Endpoint>>> = LazyLock::new(Default::default);

struct PendingCall {
    channel: Arc<ChannelInner>,
    /// Header and meta, payload, attachment: resent as they are on retry.
    frame: Vec<Bytes>,
    state: Mutex<CallState>,
}

struct CallState {
    done: Option<CallDone>,
    timer: Option<TimerId>,
    retries_left: u32,
    written: bool,
    connection: Option<(SocketId, Arc<ClientConnection>)>,
}

static CALLS: LazyLock<Registry<PendingCall>> = LazyLock::new(Registry::new);

/// Calls started and not yet ended, process-wide.
pub fn pending_calls() -> usize {
    CALLS.live()
}

impl Channel {
    /// A channel to "host:port"; nothing connects until the first call.
    pub fn new(server: &str, options: ChannelOptions) -> Result<Channel, i32> {
        let remote = super::resolve(server)?;
        ENDPOINTS.lock().entry((remote, options.liveness)).or_default().channels += 1;
        Ok(Channel { inner: Arc::new(ChannelInner { remote, options }) })
    }

    pub fn remote(&self) -> SocketAddr {
        self.inner.remote
    }

    /// Starts a call; `done` runs exactly once. A payload that cannot be
    /// coded as `request.coding` asks ends the call with `EREQUEST` before
    /// anything is sent.
    pub fn call(&self, request: CallRequest, done: CallDone) {
        let mut meta = RpcMeta::default();
        let body = match encode_body(request.coding, request.payload.clone(), &request.attachment, &mut meta) {
            Ok(body) => body,
            Err(err) => {
                let result = Err((errno::EREQUEST, format!("Fail to compress request: {err}")));
                return done(CallOutcome { result, remote: Some(self.inner.remote), local: None, socket: None });
            }
        };
        let options = self.inner.options;
        let timeout = match request.timeout {
            Some(t) if t.is_zero() => None,
            Some(t) => Some(t),
            None => options.timeout,
        };
        let retries = request.max_retry.unwrap_or(options.max_retry);
        let state = CallState { done: None, timer: None, retries_left: retries, written: false, connection: None };
        let created = CALLS.create_with(|id| PendingCall {
            channel: Arc::clone(&self.inner),
            frame: pack_request(id, &request, meta.clone(), body.clone()),
            state: Mutex::new(state),
        });
        let call = match created.map(|id| (id, CALLS.address(id))) {
            Ok((id, Some(call))) => {
                call.state.lock().done = Some(done);
                (id, call)
            }
            Ok((_, None)) | Err(_) => {
                let result = Err((libc::EAGAIN, "too many calls in flight".to_string()));
                return done(CallOutcome { result, remote: Some(self.inner.remote), local: None, socket: None });
            }
        };
        let (id, call) = call;
        if let Some(timeout) = timeout {
            let remote = self.inner.remote;
            let text = format!("Reached timeout={}ms @{}", timeout.as_millis(), remote);
            let timer = timers()
                .schedule(Instant::now() + timeout, Box::new(move || finish(id, Err((errno::ERPCTIMEDOUT, text)))));
            call.state.lock().timer = Some(timer);
        }
        send(id, &call);
    }
}

impl Drop for ChannelInner {
    /// The channel and its last call are gone: when no other channel uses
    /// the endpoint, close its connection (once the streams on it closed).
    fn drop(&mut self) {
        let unused = {
            let mut endpoints = ENDPOINTS.lock();
            let last = endpoints.get_mut(&self.endpoint()).is_some_and(|endpoint| {
                endpoint.channels = endpoint.channels.saturating_sub(1);
                endpoint.channels == 0
            });
            if last {
                endpoints.remove(&self.endpoint()).and_then(|endpoint| endpoint.connection)
            } else {
                None
            }
        };
        if let Some((id, _)) = unused {
            stream::close_host_when_idle(id, errno::ECLOSE, "the channel was destroyed");
        }
    }
}

/// The request's frame: `coded` is the meta with the body's coding (from
/// [`encode_body`]) and `body` the coded payload.
fn pack_request(id: Id, request: &CallRequest, coded: RpcMeta, body: Bytes) -> Vec<Bytes> {
    let meta = RpcMeta {
        request: Some(RpcRequestMeta {
            service_name: Some(request.service.clone()),
            method_name: Some(request.method.clone()),
            log_id: request.log_id,
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

/// Writes the call on the channel's connection (a new one if it failed).
fn send(id: Id, call: &PendingCall) {
    let (socket, connection) = match call.channel.connection() {
        Ok(pair) => pair,
        Err(code) => return finish(id, Err((code, format!("fail to create a connection to {}", call.channel.remote)))),
    };
    connection.pending.lock().insert(id);
    {
        let mut state = call.state.lock();
        state.written = false;
        state.connection = Some((socket.id(), Arc::clone(&connection)));
    }
    // A failure that swept the connection before this call joined it would
    // not have seen it: check now.
    if let Some((code, text)) = socket.failure() {
        return connection_failed(id, &connection, code, &text);
    }
    let written_connection = Arc::clone(&connection);
    let result = socket.write(
        call.frame.clone(),
        Some(Box::new(move |code| {
            if code == 0 {
                if let Some(call) = CALLS.address(id) {
                    call.state.lock().written = true;
                }
            } else {
                let text = format!("fail to write the request: {}", errno::describe(code));
                connection_failed(id, &written_connection, code, &text);
            }
        })),
    );
    // An Err was already reported through the completion above.
    let _ = result;
}

impl ChannelInner {
    /// The key of the connection this channel shares.
    fn endpoint(&self) -> (SocketAddr, Liveness) {
        (self.remote, self.options.liveness)
    }

    fn connection(self: &Arc<Self>) -> Result<(SocketRef, Arc<ClientConnection>), i32> {
        let mut endpoints = ENDPOINTS.lock();
        let current = &mut endpoints.entry(self.endpoint()).or_default().connection;
        if let Some((id, connection)) = current.as_ref() {
            if let Some(socket) = Socket::address(*id) {
                return Ok((socket, Arc::clone(connection)));
            }
        }
        let connection = Arc::new(ClientConnection::default());
        let id = Socket::create(SocketOptions {
            remote: Some(self.remote),
            connect_timeout: self.options.connect_timeout,
            liveness: self.options.liveness,
            user: Some(Arc::clone(&connection) as Arc<dyn SocketUser>),
            ..Default::default()
        })?;
        let socket = Socket::address(id).ok_or(errno::EFAILEDSOCKET)?;
        if let Some((old, _)) = current.replace((id, Arc::clone(&connection))) {
            Socket::set_failed_by_id(old, errno::EFAILEDSOCKET, "replaced by a new connection");
        }
        Ok((socket, connection))
    }
}

/// The connection a call was on failed: retry the call if its request was
/// never written and retries are left, else end it with the failure.
fn connection_failed(id: Id, connection: &ClientConnection, code: i32, text: &str) {
    // Whoever removes the call from the connection handles it, once.
    if !connection.pending.lock().remove(&id) {
        return;
    }
    let Some(call) = CALLS.address(id) else { return };
    let retry = {
        let mut state = call.state.lock();
        state.connection = None;
        let retry = !state.written && state.retries_left > 0;
        if retry {
            state.retries_left -= 1;
        }
        retry
    };
    if retry {
        send(id, &call);
    } else {
        finish(id, Err((code, text.to_string())));
    }
}

/// Ends a call exactly once; later attempts find it ended.
fn finish(id: Id, result: Result<RpcMessage, (i32, String)>) {
    let Some(call) = CALLS.address(id) else { return };
    if !CALLS.set_failed(id) {
        return;
    }
    let (done, timer, connection) = {
        let mut state = call.state.lock();
        (state.done.take(), state.timer.take(), state.connection.take())
    };
    if let Some(timer) = timer {
        timers().cancel(timer);
    }
    let (mut remote, mut local, mut socket) = (Some(call.channel.remote), None, None);
    if let Some((socket_id, connection)) = connection {
        connection.pending.lock().remove(&id);
        socket = Some(socket_id);
        if let Some(socket) = Socket::address_failed_as_well(socket_id) {
            remote = socket.remote().or(remote);
            local = connection.local(&socket);
        }
    }
    drop(call);
    if let Some(done) = done {
        done(CallOutcome { result, remote, local, socket });
    }
}

/// The input side of a client connection: responses, and stream frames.
#[derive(Default)]
struct ClientConnection {
    cutter: Mutex<Option<Cutter>>,
    pending: Mutex<HashSet<Id>>,
    /// This side's address once connected, read once rather than per call.
    local: std::sync::OnceLock<SocketAddr>,
}

impl ClientConnection {
    fn local(&self, socket: &Socket) -> Option<SocketAddr> {
        if let Some(local) = self.local.get() {
            return Some(*local);
        }
        let local = socket.local()?;
        Some(*self.local.get_or_init(|| local))
    }
}

impl SocketUser for ClientConnection {
    fn on_input(&self, socket: &Socket, buf: &mut BytesMut) -> Result<(), (i32, String)> {
        let mut cutter = self.cutter.lock();
        let cutter = cutter.get_or_insert_with(|| Cutter::new(Limits::default()));
        super::cut_frames(
            cutter,
            buf,
            |frame| match RpcMessage::decode(&frame) {
                Ok(message) => on_response(message),
                Err(err) => on_bad_response(&frame, &err.to_string()),
            },
            |frame| on_stream_frame(socket, frame),
        )
    }

    fn on_failed(&self, socket: &Socket, code: i32, text: &str) {
        let calls: Vec<Id> = self.pending.lock().iter().copied().collect();
        let text = format!("{text} @{}", socket.remote().map_or_else(String::new, |r| r.to_string()));
        for id in calls {
            connection_failed(id, self, code, &text);
        }
        stream::on_host_failed(socket, code, &text);
    }
}

fn on_response(message: RpcMessage) {
    match message.meta.correlation_id {
        Some(id) => finish(id as Id, decode_response(message)),
        None => log_warning!("dropped a response without correlation_id"),
    }
}

/// Verifies and decompresses a successful response's payload; a response
/// that fails either ends its call with `ERESPONSE`.
fn decode_response(mut message: RpcMessage) -> Result<RpcMessage, (i32, String)> {
    let failed = message.meta.response.as_ref().is_some_and(|r| r.error_code.unwrap_or(0) != 0);
    if failed {
        return Ok(message);
    }
    let limit = Limits::default().max_body_size;
    match decode_body(&message.meta, &message.payload, &message.attachment, limit) {
        Ok(payload) => {
            message.payload = payload;
            Ok(message)
        }
        Err(err) => Err((errno::ERESPONSE, format!("Fail to parse response: {err}"))),
    }
}

fn on_bad_response(frame: &crate::protocol::RawFrame, why: &str) {
    match frame.decode_rpc().ok().and_then(|meta| meta.correlation_id) {
        Some(id) => finish(id as Id, Err((errno::ERESPONSE, format!("fail to parse the response: {why}")))),
        None => log_warning!("dropped a response that does not parse: {why}"),
    }
}

/// A DATA frame for a stream that is not connected yet carries the
/// response of the call that sets it up; every other frame is the stream's.
fn on_stream_frame(host: &Socket, frame: StreamFrame) {
    let target = frame.meta.stream_id() as Id;
    if frame.meta.frame_type() == FrameType::Data && !stream::is_connected(target) {
        if let Some(message) = embedded_rpc(frame.payload.clone()) {
            if message.meta.response.is_some() {
                return on_response(message);
            }
        }
    }
    stream::on_frame(host, frame);
}
