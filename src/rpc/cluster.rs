//! A channel's servers when it has a naming service: the list the service
//! pushes, the balancer that picks among them, and which are down. A
//! server whose connection failed is down: left out of picks and probed
//! (a TCP connect) every `health_check_interval` until it accepts again,
//! as brpc's health check does.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::lb::{Feedback, LoadBalancer, SelectIn};
use super::naming::{NamingActions, NamingService, ServerListSink, ServerNode, StopSignal, FIRST_LIST_WAIT};
use crate::error::Error;
use crate::runtime::timers;

pub(crate) struct Cluster {
    url: String,
    lb: Box<dyn LoadBalancer>,
    servers: Mutex<Vec<ServerNode>>,
    down: Mutex<HashSet<SocketAddr>>,
    /// Set once the naming service reported its first list.
    first: (Mutex<bool>, Condvar),
    stop: Arc<StopSignal>,
    health_check_interval: Duration,
    probe_timeout: Duration,
}

impl Cluster {
    /// Starts the naming service on a thread of its own and waits for its
    /// first list (at most `FIRST_LIST_WAIT`).
    pub(crate) fn start(
        url: &str,
        service: Box<dyn NamingService>,
        lb: Box<dyn LoadBalancer>,
        health_check_interval: Duration,
        connect_timeout: Option<Duration>,
    ) -> Result<Arc<Cluster>, Error> {
        let cluster = Arc::new(Cluster {
            url: url.to_string(),
            lb,
            servers: Mutex::new(Vec::new()),
            down: Mutex::new(HashSet::new()),
            first: (Mutex::new(false), Condvar::new()),
            stop: Arc::new(StopSignal::default()),
            health_check_interval,
            probe_timeout: connect_timeout.unwrap_or(Duration::from_millis(500)),
        });
        let sink: Weak<dyn ServerListSink> = Arc::downgrade(&cluster) as Weak<dyn ServerListSink>;
        let actions = NamingActions::new(sink, Arc::clone(&cluster.stop));
        std::thread::Builder::new().name("brpc_naming".into()).spawn(move || service.run(actions)).map_err(|err| {
            Error::new(libc::EAGAIN, format!("cannot start the naming service's thread: {err}")).caused_by(err)
        })?;
        let deadline = Instant::now() + FIRST_LIST_WAIT;
        let mut first = cluster.first.0.lock();
        while !*first && Instant::now() < deadline {
            let _ = cluster.first.1.wait_until(&mut first, deadline);
        }
        drop(first);
        Ok(cluster)
    }

    pub(crate) fn server_count(&self) -> usize {
        self.servers.lock().len()
    }

    /// A server for one attempt: not down, not in `tried` when another is
    /// usable (a retry or backup goes elsewhere when it can).
    pub(crate) fn pick(&self, request_code: Option<u64>, tried: &[SocketAddr]) -> Result<SocketAddr, Error> {
        let down = self.down.lock().clone();
        let fresh = |a: SocketAddr| !down.contains(&a) && !tried.contains(&a);
        let picked = self.lb.select(&SelectIn { request_code, usable: &fresh });
        let picked = match picked {
            Err(error) if error.code() == libc::EHOSTDOWN && !tried.is_empty() => {
                self.lb.select(&SelectIn { request_code, usable: &|a: SocketAddr| !down.contains(&a) })
            }
            other => other,
        };
        picked.map_err(|error| {
            let text = format!("fail to select a server from {}: {}", self.url, error.text());
            Error::new(error.code(), text).caused_by(error)
        })
    }

    pub(crate) fn feedback(&self, feedback: &Feedback) {
        self.lb.feedback(feedback);
    }

    /// The server's connection failed: leave it out until a probe connects.
    pub(crate) fn mark_down(self: &Arc<Self>, server: SocketAddr) {
        if !self.servers.lock().iter().any(|s| s.addr == server) || !self.down.lock().insert(server) {
            return;
        }
        log_warning!("{}: {server} is down; probing it every {:?}", self.url, self.health_check_interval);
        schedule_probe(Arc::downgrade(self), server);
    }

    fn set_servers(&self, mut servers: Vec<ServerNode>) {
        servers.sort();
        servers.dedup();
        self.lb.reset(&servers);
        let addrs: HashSet<SocketAddr> = servers.iter().map(|s| s.addr).collect();
        // A server that left is no longer probed (its probe ends itself).
        self.down.lock().retain(|a| addrs.contains(a));
        *self.servers.lock() = servers;
        let mut first = self.first.0.lock();
        *first = true;
        self.first.1.notify_all();
    }
}

fn schedule_probe(cluster: Weak<Cluster>, server: SocketAddr) {
    let Some(interval) = cluster.upgrade().map(|c| c.health_check_interval) else { return };
    timers().schedule(
        Instant::now() + interval,
        // A connect blocks: not on the timer thread.
        Box::new(move || crate::runtime::spawn_or_run(move || probe(cluster, server))),
    );
}

fn probe(cluster: Weak<Cluster>, server: SocketAddr) {
    let Some(alive) = cluster.upgrade() else { return };
    if !alive.down.lock().contains(&server) {
        return;
    }
    let timeout = alive.probe_timeout;
    drop(alive);
    let up = TcpStream::connect_timeout(&server, timeout).is_ok();
    let Some(alive) = cluster.upgrade() else { return };
    if up {
        alive.down.lock().remove(&server);
        log_info!("{}: {server} is back", alive.url);
    } else if alive.down.lock().contains(&server) {
        schedule_probe(cluster, server);
    }
}

impl ServerListSink for Cluster {
    fn reset_servers(&self, servers: Vec<ServerNode>) {
        self.set_servers(servers);
    }

    fn add_servers(&self, added: &[ServerNode]) {
        let mut servers = self.servers.lock().clone();
        servers.extend(added.iter().cloned());
        self.set_servers(servers);
    }

    fn remove_servers(&self, removed: &[ServerNode]) {
        let mut servers = self.servers.lock().clone();
        servers.retain(|s| !removed.contains(s));
        self.set_servers(servers);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop.stop();
    }
}
