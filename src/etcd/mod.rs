//! A small etcd v3 client over etcd's JSON gateway (HTTP + JSON, base64
//! keys and values), for service discovery: the range of a key prefix, a
//! streaming watch of it, leases kept alive, puts with a lease, deletes and
//! revokes. It serves the `etcd://` naming service and server registration.
//!
//! - [`http`]: one request per connection (HTTP/1.0, so bodies are never
//!   chunked), every step bounded in time, and the streaming body of a watch.
//! - [`client`]: [`Client`], the typed operations.
//! - [`watch`]: [`follow`], the values under a prefix, kept current with
//!   reconnects and backoff, on the caller's thread or a [`PrefixWatcher`]'s.
//! - [`registration`]: [`Registration`], a key under a lease kept alive on a
//!   thread of its own, withdrawn by revoking the lease.
//!
//! Network trouble is an [`Error`] value everywhere, never a panic; it
//! becomes the crate's [`crate::Error`] (kept as its cause) where the
//! server and the naming service report it. This layer uses only the
//! standard library and the crate's error numbers.

pub mod client;
pub mod http;
pub mod registration;
pub mod watch;

pub use client::{Client, ClientOptions, KeyValue, WatchEvent, WatchStream};
pub use registration::{Registration, RegistrationOptions};
pub use watch::{follow, PrefixWatcher, Report};

use std::fmt;

use crate::errno;

/// What went wrong talking to etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The URL or an argument is malformed.
    Invalid,
    /// No endpoint accepted a connection, or the connection broke.
    Unreachable,
    /// An operation did not finish within its time.
    Timeout,
    /// etcd answered with an error (its gRPC code, e.g. 5 for a lease not found).
    Rejected { grpc_code: i64 },
    /// etcd's answer could not be understood.
    BadResponse,
    /// The operation was stopped by its owner.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub text: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, text: impl Into<String>) -> Error {
        Error { kind, text: text.into() }
    }

    /// The errno-style number for the C ABI.
    pub fn code(&self) -> i32 {
        match self.kind {
            ErrorKind::Invalid => libc::EINVAL,
            ErrorKind::Unreachable => libc::ECONNREFUSED,
            ErrorKind::Timeout => libc::ETIMEDOUT,
            ErrorKind::Rejected { grpc_code: 5 } => libc::ENOENT,
            ErrorKind::Rejected { .. } => errno::EINTERNAL,
            ErrorKind::BadResponse => errno::ERESPONSE,
            ErrorKind::Stopped => libc::ECANCELED,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Error {}

impl From<Error> for crate::error::Error {
    /// The same text under its errno-style number; the etcd error (its
    /// kind, such as etcd's gRPC code) is kept as the cause.
    fn from(error: Error) -> crate::error::Error {
        crate::error::Error::new(error.code(), error.text.clone()).caused_by(error)
    }
}

/// Sleeps `how_long` unless `stop` is set (the stopper unparks the
/// thread); false when stopped.
fn sleep_unless_stopped(stop: &std::sync::atomic::AtomicBool, how_long: std::time::Duration) -> bool {
    let until = std::time::Instant::now() + how_long;
    loop {
        if stop.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::park_timeout(left);
    }
}

/// The parts of `etcd://host:port[,host:port...]/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// "host:port" of each etcd member to try, in order.
    pub endpoints: Vec<String>,
    /// The key prefix, always ending with '/' so that `/svc/echo` does not
    /// also cover `/svc/echo2/...`.
    pub prefix: String,
}

impl Target {
    /// Parses `etcd://host:port/prefix`; the `etcd://` is optional. The
    /// prefix must not be empty (a registry is never the whole key space).
    pub fn parse(url: &str) -> Result<Target, Error> {
        let invalid = |why: &str| Error::new(ErrorKind::Invalid, format!("invalid etcd url \"{url}\": {why}"));
        let rest = url.strip_prefix("etcd://").unwrap_or(url);
        if rest.contains("://") {
            return Err(invalid("not etcd://"));
        }
        let (hosts, path) = rest.split_once('/').ok_or_else(|| invalid("no /prefix after host:port"))?;
        let endpoints: Vec<String> = hosts.split(',').map(str::trim).map(str::to_string).collect();
        for endpoint in &endpoints {
            let port = endpoint.rsplit_once(':').map(|(host, port)| (host, port.parse::<u16>()));
            match port {
                Some((host, Ok(port))) if !host.is_empty() && port != 0 => {}
                _ => return Err(invalid("each endpoint must be host:port")),
            }
        }
        let path = path.trim_end_matches('/');
        if path.is_empty() {
            return Err(invalid("the prefix is empty"));
        }
        Ok(Target { endpoints, prefix: format!("/{path}/") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_its_endpoints_and_a_directory_prefix() {
        let target = Target::parse("etcd://127.0.0.1:2379/services/echo").unwrap();
        assert_eq!(target.endpoints, vec!["127.0.0.1:2379".to_string()]);
        assert_eq!(target.prefix, "/services/echo/");
        let target = Target::parse("etcd://a:1,b:2/svc/").unwrap();
        assert_eq!(target.endpoints, vec!["a:1".to_string(), "b:2".to_string()]);
        assert_eq!(target.prefix, "/svc/");
    }

    #[test]
    fn a_url_without_prefix_or_port_is_refused_with_a_text() {
        for url in
            ["etcd://127.0.0.1:2379", "etcd://127.0.0.1:2379/", "etcd://127.0.0.1/x", "etcd://:1/x", "etcd://h:0/x"]
        {
            let err = Target::parse(url).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Invalid, "{url}");
            assert!(err.text.contains(url), "{}", err.text);
        }
    }
}
