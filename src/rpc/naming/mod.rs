//! Naming services: where a channel's list of servers comes from
//! (brpc's `NamingService`). `Channel::init("list://a:p,b:p", "rr", ..)`
//! picks one by the URL's scheme; it runs on a thread of its own and
//! pushes server lists to the channel, which hands them to its load
//! balancer.
//!
//! # Writing a naming service
//!
//! 1. Implement [`NamingService`] for a type built from the part of the URL
//!    after `scheme://`. Its [`run`](NamingService::run) gets a
//!    [`NamingActions`] and reports through it, either whole lists
//!    ([`NamingActions::reset_servers`]) or changes
//!    ([`NamingActions::add_servers`] / [`NamingActions::remove_servers`]).
//!    Report the first list as soon as it is known, even when it is empty
//!    or could not be fetched (report an empty list then): `Channel::init`
//!    waits for it (at most [`FIRST_LIST_WAIT`]).
//! 2. Loop until [`NamingActions::stopped`] is true (the channel is gone);
//!    sleep with [`NamingActions::sleep`], which returns early when the
//!    channel stops. A blocking read (a watch) should use a timeout of a
//!    second or so and check `stopped` between reads.
//! 3. Never panic on a peer's input; log and report what is known.
//! 4. Add a line to [`SCHEMES`]: the scheme and a constructor
//!    `fn(&str) -> Result<Box<dyn NamingService>, Error>` that
//!    checks the URL's rest and fails with `EINVAL` and a text when it is
//!    malformed (`Channel::init` returns that error).
//!
//! Server entries are brpc's: `host:port` with an optional tag after a
//! space (`10.0.0.1:8000 tag`); balancers that weigh servers (`wrr`, `wr`)
//! read the tag as the weight, as brpc does. [`parse_server`] parses one.

mod domain;
mod etcd;
mod file;
mod list;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::Error;

/// One server of a list: its address and brpc's optional tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerNode {
    pub addr: SocketAddr,
    pub tag: String,
}

impl fmt::Display for ServerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tag.is_empty() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{} {}", self.addr, self.tag)
        }
    }
}

/// Parses "host:port" or "host:port tag" (surrounding blanks ignored).
pub fn parse_server(entry: &str) -> Result<ServerNode, String> {
    let entry = entry.trim();
    let (addr, tag) = match entry.split_once(char::is_whitespace) {
        Some((addr, tag)) => (addr, tag.trim()),
        None => (entry, ""),
    };
    let addr = super::resolve(addr).map_err(|_| format!("invalid server address \"{addr}\""))?;
    Ok(ServerNode { addr, tag: tag.to_string() })
}

/// A source of server lists; see the module's documentation.
pub trait NamingService: Send + 'static {
    /// Runs on a thread of its own until `actions.stopped()`.
    fn run(self: Box<Self>, actions: NamingActions);
}

/// Builds a naming service from the URL's part after `scheme://`.
pub type NamingConstructor = fn(&str) -> Result<Box<dyn NamingService>, Error>;

/// The schemes `Channel::init` knows.
pub const SCHEMES: &[(&str, NamingConstructor)] = &[
    ("list", list::create),
    ("file", file::create),
    ("dns", domain::create),
    ("http", domain::create),
    ("etcd", etcd::create),
];

/// How long `Channel::init` waits for a naming service's first list.
pub const FIRST_LIST_WAIT: Duration = Duration::from_secs(5);

/// Splits "scheme://rest"; None for a plain address.
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    url.split_once("://")
}

/// The naming service for `url` ("scheme://rest").
pub fn create(url: &str) -> Result<Box<dyn NamingService>, Error> {
    let Some((scheme, rest)) = split_url(url) else {
        return Err(Error::new(libc::EINVAL, format!("\"{url}\" is not a naming service URL (scheme://...)")));
    };
    match SCHEMES.iter().find(|(name, _)| *name == scheme) {
        Some((_, constructor)) => constructor(rest),
        None => {
            let known: Vec<&str> = SCHEMES.iter().map(|(name, _)| *name).collect();
            Err(Error::new(libc::EINVAL, format!("unknown naming service \"{scheme}\" (known: {})", known.join(", "))))
        }
    }
}

/// Where a naming service reports; what the channel does with a report.
pub(crate) trait ServerListSink: Send + Sync {
    fn reset_servers(&self, servers: Vec<ServerNode>);
    fn add_servers(&self, servers: &[ServerNode]);
    fn remove_servers(&self, servers: &[ServerNode]);
}

/// Set when the channel that runs a naming service is gone.
#[derive(Default)]
pub(crate) struct StopSignal {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl StopSignal {
    pub(crate) fn stop(&self) {
        *self.stopped.lock() = true;
        self.wake.notify_all();
    }
}

/// A naming service's line to its channel; cheap to clone. Reports after
/// the channel is gone are dropped.
#[derive(Clone)]
pub struct NamingActions {
    sink: Weak<dyn ServerListSink>,
    stop: Arc<StopSignal>,
}

impl NamingActions {
    pub(crate) fn new(sink: Weak<dyn ServerListSink>, stop: Arc<StopSignal>) -> Self {
        NamingActions { sink, stop }
    }

    /// The whole list of servers is now `servers` (duplicates are merged).
    pub fn reset_servers(&self, servers: Vec<ServerNode>) {
        if let Some(sink) = self.sink.upgrade() {
            sink.reset_servers(servers);
        }
    }

    /// These servers joined (those already known are ignored).
    pub fn add_servers(&self, servers: &[ServerNode]) {
        if let Some(sink) = self.sink.upgrade() {
            sink.add_servers(servers);
        }
    }

    /// These servers left (those not known are ignored).
    pub fn remove_servers(&self, servers: &[ServerNode]) {
        if let Some(sink) = self.sink.upgrade() {
            sink.remove_servers(servers);
        }
    }

    /// True once the channel is gone: `run` should return.
    pub fn stopped(&self) -> bool {
        *self.stop.stopped.lock() || self.sink.strong_count() == 0
    }

    /// Sleeps `period`, or less when the channel stops; returns `stopped()`.
    pub fn sleep(&self, period: Duration) -> bool {
        let deadline = Instant::now() + period;
        let mut stopped = self.stop.stopped.lock();
        while !*stopped && Instant::now() < deadline {
            let _ = self.stop.wake.wait_until(&mut stopped, deadline);
        }
        drop(stopped);
        self.stopped()
    }
}

/// Reads a list of entries separated by `separator` (blank entries and,
/// for files, `#` comments skipped); bad entries are logged and left out,
/// as brpc does.
pub(crate) fn parse_list<'a>(entries: impl Iterator<Item = &'a str>, source: &str) -> Vec<ServerNode> {
    let mut servers = Vec::new();
    for entry in entries {
        let entry = entry.split('#').next().unwrap_or_default().trim();
        if entry.is_empty() {
            continue;
        }
        match parse_server(entry) {
            Ok(server) => servers.push(server),
            Err(why) => log_error!("{source}: skipped an entry: {why}"),
        }
    }
    servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_has_an_address_and_an_optional_tag() {
        let node = parse_server(" 127.0.0.1:8000  w3 ").unwrap();
        assert_eq!(node.addr.to_string(), "127.0.0.1:8000");
        assert_eq!(node.tag, "w3");
        assert_eq!(parse_server("127.0.0.1:80").unwrap().tag, "");
        assert!(parse_server("127.0.0.1").is_err());
    }

    #[test]
    fn unknown_schemes_fail_with_a_text() {
        let Err(error) = create("zk://a/b") else { panic!("zk accepted") };
        assert_eq!(error.code(), libc::EINVAL);
        assert!(error.text().contains("unknown naming service"), "{error}");
    }
}
