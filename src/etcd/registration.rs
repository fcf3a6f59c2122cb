//! A server's entry in etcd: the key `<prefix><ip:port>` holding the line
//! `ip:port[ tag]`, attached to a lease a thread keeps alive (renewed every
//! third of its TTL). Withdrawing revokes the lease, which deletes the key
//! at once; a process that dies without withdrawing leaves the lease to
//! lapse, and the key goes with it after the TTL. When a renewal finds the
//! lease gone (etcd was unreachable longer than the TTL), the key is put
//! again under a new lease.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::client::{Client, ClientOptions};
use super::{Error, ErrorKind, Target};

/// Where and how a server registers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationOptions {
    /// `etcd://host:port[,host:port...]/prefix`.
    pub url: String,
    /// The "ip:port" clients should call. Empty (default): the address
    /// listened on, or, when that is 0.0.0.0, the local address this host
    /// uses to reach etcd.
    pub address: String,
    /// brpc's optional tag, written after the address ("" for none).
    pub tag: String,
    /// The lease's TTL in seconds (default 5; etcd raises values below its
    /// minimum, about 2 s). A killed server disappears this long after.
    pub ttl_s: i64,
}

impl Default for RegistrationOptions {
    fn default() -> Self {
        RegistrationOptions { url: String::new(), address: String::new(), tag: String::new(), ttl_s: 5 }
    }
}

/// A key kept alive under a lease until withdrawn (or dropped, which
/// withdraws).
pub struct Registration {
    client: Arc<Client>,
    key: String,
    lease: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Withdrawn or abandoned: nothing left to do on drop.
    done: bool,
}

/// The local address that routes to `endpoint` (no packet is sent).
fn local_ip_towards(endpoint: &str) -> Result<IpAddr, Error> {
    let unreachable = |why: String| Error::new(ErrorKind::Unreachable, format!("etcd {endpoint}: {why}"));
    let remote: SocketAddr = endpoint
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("cannot resolve: {e}")))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| unreachable("no IPv4 address".into()))?;
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| unreachable(e.to_string()))?;
    socket.connect(remote).map_err(|e| unreachable(e.to_string()))?;
    Ok(socket.local_addr().map_err(|e| unreachable(e.to_string()))?.ip())
}

impl Registration {
    /// Registers a server listening on `listening`: grants the lease and
    /// puts the key before returning, so a failure here leaves nothing in
    /// etcd and no thread behind.
    pub fn start(options: &RegistrationOptions, listening: SocketAddr) -> Result<Registration, Error> {
        let target = Target::parse(&options.url)?;
        if options.ttl_s < 1 {
            return Err(Error::new(ErrorKind::Invalid, format!("etcd: a lease TTL of {} s", options.ttl_s)));
        }
        let address = if !options.address.is_empty() {
            options.address.parse::<SocketAddr>().map_err(|_| {
                Error::new(ErrorKind::Invalid, format!("etcd: \"{}\" is not an ip:port to register", options.address))
            })?
        } else if listening.ip().is_unspecified() {
            let first = target.endpoints.first().map(String::as_str).unwrap_or_default();
            SocketAddr::new(local_ip_towards(first)?, listening.port())
        } else {
            listening
        };
        let key = format!("{}{address}", target.prefix);
        let value = if options.tag.is_empty() { address.to_string() } else { format!("{address} {}", options.tag) };
        // A renewal must not outlast the lease it renews.
        let timeout = Duration::from_millis((options.ttl_s as u64).saturating_mul(500).clamp(500, 3000));
        let client = Arc::new(Client::new(target.endpoints, ClientOptions { request_timeout: timeout })?);
        let (lease, ttl) = put_under_new_lease(&client, &key, &value, options.ttl_s)?;
        let lease = Arc::new(AtomicI64::new(lease));
        let stop = Arc::new(AtomicBool::new(false));
        let keeper = Keeper {
            client: client.clone(),
            key: key.clone(),
            value,
            ttl_s: options.ttl_s,
            lease: lease.clone(),
            stop: stop.clone(),
        };
        let every = Duration::from_millis((ttl.max(1) as u64) * 1000 / 3);
        let thread = std::thread::Builder::new().name("brpc_etcd_lease".into()).spawn(move || keeper.run(every));
        match thread {
            Ok(thread) => Ok(Registration { client, key, lease, stop, thread: Some(thread), done: false }),
            Err(e) => {
                let _ = client.revoke(lease.load(Ordering::Acquire));
                Err(Error::new(ErrorKind::Invalid, format!("etcd: cannot start the lease thread: {e}")))
            }
        }
    }

    /// The key registered.
    pub fn key(&self) -> &str {
        &self.key
    }

    fn stop_keeping(&mut self) {
        self.done = true;
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }

    /// Stops renewing and revokes the lease: the key is gone when this
    /// returns Ok. An error means etcd could not be told; the key then
    /// goes when the lease lapses.
    pub fn withdraw(mut self) -> Result<(), Error> {
        self.withdraw_now()
    }

    fn withdraw_now(&mut self) -> Result<(), Error> {
        self.stop_keeping();
        self.client.revoke(self.lease.load(Ordering::Acquire))
    }

    /// Stops renewing without revoking: the key stays until the lease
    /// lapses, as when the process is killed.
    pub fn abandon(mut self) {
        self.stop_keeping();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.done {
            if let Err(err) = self.withdraw_now() {
                log_warning!("etcd: {} stays until its lease lapses: {err}", self.key);
            }
        }
    }
}

fn put_under_new_lease(client: &Client, key: &str, value: &str, ttl_s: i64) -> Result<(i64, i64), Error> {
    let (lease, ttl) = client.grant(ttl_s)?;
    if let Err(err) = client.put(key.as_bytes(), value.as_bytes(), lease) {
        let _ = client.revoke(lease);
        return Err(err);
    }
    Ok((lease, ttl))
}

/// The thread that renews the lease.
struct Keeper {
    client: Arc<Client>,
    key: String,
    value: String,
    ttl_s: i64,
    lease: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
}

impl Keeper {
    fn run(self, every: Duration) {
        let mut failing = false;
        while super::sleep_unless_stopped(&self.stop, every) {
            let lease = self.lease.load(Ordering::Acquire);
            let renewed = match self.client.keep_alive(lease) {
                Ok(0) => {
                    log_warning!("etcd: the lease of {} lapsed; registering again", self.key);
                    put_under_new_lease(&self.client, &self.key, &self.value, self.ttl_s)
                        .map(|(lease, _)| self.lease.store(lease, Ordering::Release))
                }
                Ok(_) => Ok(()),
                Err(err) => Err(err),
            };
            match renewed {
                Ok(()) if failing => {
                    log_info!("etcd: {} is kept alive again", self.key);
                    failing = false;
                }
                Ok(()) => {}
                Err(err) if !failing => {
                    log_warning!("etcd: cannot keep {} alive: {err}; retrying", self.key);
                    failing = true;
                }
                Err(_) => {}
            }
        }
    }
}
