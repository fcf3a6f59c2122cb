//! The connections a channel's calls go out on, by `connection_type`:
//! `single` shares one connection per server among every call and every
//! channel (like brpc's socket map), `pooled` lends a connection to one
//! call at a time and takes it back after a response (at most
//! `MAX_IDLE_PER_SERVER` idle ones kept), `short` opens one per call and
//! closes it after. Connections are keyed by server, liveness settings
//! and `connection_group`, as brpc keys them by server and channel
//! signature.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use parking_lot::Mutex;

use super::client::{on_attempt_failed, on_response_frame, ConnectionType};
use crate::errno;
use crate::error::Error;
use crate::id::{Id, IdMap, IdSet};
use crate::protocol::{Cutter, Limits, RpcMessage};
use crate::socket::{Liveness, Socket, SocketId, SocketOptions, SocketRef, SocketUser};
use crate::stream;

/// Idle pooled connections kept per server (brpc's
/// `max_connection_pool_size`); more are closed when given back.
pub const MAX_IDLE_PER_SERVER: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ConnKey {
    pub(crate) remote: SocketAddr,
    pub(crate) liveness: Liveness,
    pub(crate) group: String,
}

type Connection = (SocketId, Arc<ClientConnection>);

#[derive(Default)]
struct Endpoint {
    /// Channels that used this key; the connections go with the last.
    channels: usize,
    single: Option<Connection>,
    idle: Vec<Connection>,
}

static ENDPOINTS: LazyLock<Mutex<IdMap<ConnKey, Endpoint>>> = LazyLock::new(Default::default);

/// The keys one channel used, released when it goes.
#[derive(Default)]
pub(crate) struct Uses {
    keys: Mutex<IdSet<ConnKey>>,
}

impl Uses {
    fn note(&self, key: &ConnKey, endpoints: &mut IdMap<ConnKey, Endpoint>) {
        if self.keys.lock().insert(key.clone()) {
            endpoints.entry(key.clone()).or_default().channels += 1;
        }
    }
}

impl Drop for Uses {
    /// The channel and its last call are gone: connections no other
    /// channel uses close (a single one once the streams on it closed).
    fn drop(&mut self) {
        let mut closing = Vec::new();
        {
            let mut endpoints = ENDPOINTS.lock();
            for key in self.keys.lock().drain() {
                let Some(endpoint) = endpoints.get_mut(&key) else { continue };
                endpoint.channels = endpoint.channels.saturating_sub(1);
                if endpoint.channels == 0 {
                    if let Some(endpoint) = endpoints.remove(&key) {
                        closing.extend(endpoint.single.map(|c| (c.0, true)));
                        closing.extend(endpoint.idle.into_iter().map(|c| (c.0, false)));
                    }
                }
            }
        }
        for (id, single) in closing {
            if single {
                stream::close_host_when_idle(id, Error::new(errno::ECLOSE, "the channel was destroyed"));
            } else {
                Socket::set_failed_by_id(id, Error::new(errno::ECLOSE, "the channel was destroyed"));
            }
        }
    }
}

/// A connection lent to one attempt of a call.
pub(crate) struct Lease {
    pub(crate) socket: SocketRef,
    pub(crate) connection: Arc<ClientConnection>,
    pub(crate) kind: ConnectionType,
    pub(crate) key: ConnKey,
}

/// A connection to `key.remote` for one attempt.
pub(crate) fn acquire(
    uses: &Uses,
    kind: ConnectionType,
    key: ConnKey,
    connect_timeout: Option<Duration>,
) -> Result<Lease, Error> {
    let mut endpoints = ENDPOINTS.lock();
    uses.note(&key, &mut endpoints);
    let endpoint = endpoints.entry(key.clone()).or_default();
    let reuse = match kind {
        ConnectionType::Single => endpoint.single.clone(),
        ConnectionType::Pooled => loop {
            match endpoint.idle.pop() {
                Some(c) if Socket::address(c.0).is_some() => break Some(c),
                Some(_) => continue,
                None => break None,
            }
        },
        ConnectionType::Short => None,
    };
    if let Some((id, connection)) = reuse {
        if let Some(socket) = Socket::address(id) {
            return Ok(Lease { socket, connection, kind, key });
        }
    }
    let connection = Arc::new(ClientConnection::default());
    let id = Socket::create(SocketOptions {
        remote: Some(key.remote),
        connect_timeout,
        liveness: key.liveness,
        user: Some(Arc::clone(&connection) as Arc<dyn SocketUser>),
        ..Default::default()
    })?;
    let socket = Socket::address(id).ok_or_else(|| Error::new(errno::EFAILEDSOCKET, "the new connection is gone"))?;
    if kind == ConnectionType::Single {
        if let Some((old, _)) = endpoint.single.replace((id, Arc::clone(&connection))) {
            Socket::set_failed_by_id(old, Error::new(errno::EFAILEDSOCKET, "replaced by a new connection"));
        }
    }
    Ok(Lease { socket, connection, kind, key })
}

/// Gives a connection back after its attempt. A pooled connection is
/// reused only when its call got a response (a late response on it would
/// break one call per connection), a short one always closes.
pub(crate) fn release(
    kind: ConnectionType,
    key: &ConnKey,
    id: SocketId,
    connection: Arc<ClientConnection>,
    responded: bool,
) {
    match kind {
        ConnectionType::Single => {}
        ConnectionType::Pooled => {
            if responded && Socket::address(id).is_some() {
                let mut endpoints = ENDPOINTS.lock();
                if let Some(endpoint) = endpoints.get_mut(key) {
                    if endpoint.idle.len() < MAX_IDLE_PER_SERVER {
                        endpoint.idle.push((id, connection));
                        return;
                    }
                }
            }
            Socket::set_failed_by_id(
                id,
                Error::new(errno::ECLOSE, "a pooled connection closes after a call without response"),
            );
        }
        ConnectionType::Short => {
            Socket::set_failed_by_id(id, Error::new(errno::ECLOSE, "a short connection closes after its call"));
        }
    }
}

/// The input side of a client connection: responses, and stream frames.
#[derive(Default)]
pub(crate) struct ClientConnection {
    cutter: Mutex<Option<Cutter>>,
    /// Calls with an attempt on this connection.
    pub(crate) pending: Mutex<IdSet<Id>>,
    /// This side's address once connected, read once rather than per call.
    local: OnceLock<SocketAddr>,
}

impl ClientConnection {
    pub(crate) fn local(&self, socket: &Socket) -> Option<SocketAddr> {
        if let Some(local) = self.local.get() {
            return Some(*local);
        }
        let local = socket.local()?;
        Some(*self.local.get_or_init(|| local))
    }
}

impl SocketUser for ClientConnection {
    fn on_input(&self, socket: &Socket, buf: &mut BytesMut) -> Result<(), Error> {
        let mut cutter = self.cutter.lock();
        let cutter = cutter.get_or_insert_with(|| Cutter::new(Limits::default()));
        let host = socket.id();
        super::cut_frames(
            cutter,
            buf,
            |frame| {
                match RpcMessage::decode(&frame) {
                    Ok(message) => on_response_frame(host, Ok(message)),
                    Err(err) => match frame.decode_rpc().ok().and_then(|meta| meta.correlation_id) {
                        Some(id) => on_response_frame(
                            host,
                            Err((
                                id as Id,
                                Error::new(errno::ERESPONSE, format!("fail to parse the response: {err}"))
                                    .caused_by(err),
                            )),
                        ),
                        None => log_warning!("dropped a response that does not parse: {err}"),
                    },
                }
                Ok(())
            },
            |frame| super::client::on_stream_frame(socket, frame),
        )
    }

    fn on_failed(&self, socket: &Socket, error: &Error) {
        let calls: Vec<Id> = self.pending.lock().iter().copied().collect();
        let remote = socket.remote().map_or_else(String::new, |r| r.to_string());
        let failure = Error::new(error.code(), format!("{} @{remote}", error.text())).caused_by(error.clone());
        for id in calls {
            on_attempt_failed(id, socket.id(), failure.clone());
        }
        stream::on_host_failed(socket, &failure);
    }
}
