//! Load balancers: which server of a channel's list a call goes to
//! (brpc's `LoadBalancer`), by brpc's names: `rr`, `wrr`, `random`, `wr`,
//! `la`, `c_murmurhash`, `c_md5`.
//!
//! A balancer gets the whole list on every change ([`LoadBalancer::reset`])
//! and picks one server per attempt of a call ([`LoadBalancer::select`]),
//! skipping servers the call must not use (down, or already tried by this
//! call). `la` also learns from [`LoadBalancer::feedback`], which the
//! channel sends exactly once for every successful `select`.

mod chash;
mod la;
mod random;
mod rr;
mod wr;
mod wrr;

use std::net::SocketAddr;
use std::time::Duration;

use super::naming::ServerNode;
use crate::error::Error;

/// What a balancer knows of one call.
pub struct SelectIn<'a> {
    /// `Controller::set_request_code`; consistent hashing needs it.
    pub request_code: Option<u64>,
    /// Whether a server may be used for this attempt.
    pub usable: &'a dyn Fn(SocketAddr) -> bool,
}

/// How an attempt that `select` led to ended.
pub struct Feedback {
    pub server: SocketAddr,
    pub latency: Duration,
    /// The attempt failed (its latency then says little).
    pub failed: bool,
}

pub trait LoadBalancer: Send + Sync {
    /// The channel's servers are now `servers` (no duplicates). Entries the
    /// balancer cannot use (a weight that is not a positive integer) are
    /// logged and left out.
    fn reset(&self, servers: &[ServerNode]);

    /// A usable server, or `EHOSTDOWN` (none usable) / `EINVAL` (the call
    /// lacks what the balancer needs) with a text.
    fn select(&self, input: &SelectIn<'_>) -> Result<SocketAddr, Error>;

    fn feedback(&self, _feedback: &Feedback) {}
}

/// The balancer brpc calls `name`.
pub fn by_name(name: &str) -> Result<Box<dyn LoadBalancer>, Error> {
    Ok(match name {
        "rr" => Box::new(rr::RoundRobin::default()),
        "wrr" => Box::new(wrr::WeightedRoundRobin::default()),
        "random" => Box::new(random::Randomized::default()),
        "wr" => Box::new(wr::WeightedRandomized::default()),
        "la" => Box::new(la::LocalityAware::default()),
        "c_murmurhash" => Box::new(chash::ConsistentHashing::new(chash::Hash::Murmur3)),
        "c_md5" => Box::new(chash::ConsistentHashing::new(chash::Hash::Md5)),
        other => {
            return Err(Error::new(
                libc::EINVAL,
                format!("unknown load balancer \"{other}\" (known: rr, wrr, random, wr, la, c_murmurhash, c_md5)"),
            ))
        }
    })
}

pub use chash::{md5_hash32, murmur_hash32};

fn no_server() -> Error {
    Error::new(libc::EHOSTDOWN, "no server available")
}

/// The tag as a weight (`wrr`, `wr`): a positive integer, as brpc requires;
/// other entries are logged and left out.
fn weighted(servers: &[ServerNode], balancer: &str) -> Vec<(SocketAddr, u64)> {
    servers
        .iter()
        .filter_map(|server| match server.tag.trim().parse::<u64>() {
            Ok(weight) if weight > 0 => Some((server.addr, weight)),
            _ => {
                log_error!("{balancer}: left out {}: its tag \"{}\" is not a positive weight", server.addr, server.tag);
                None
            }
        })
        .collect()
}

/// Distinct addresses, in the list's order.
fn addresses(servers: &[ServerNode]) -> Vec<SocketAddr> {
    let mut seen = std::collections::HashSet::new();
    servers.iter().map(|s| s.addr).filter(|a| seen.insert(*a)).collect()
}

/// Picks by weight among the usable: a random point on the summed weights.
fn pick_weighted(entries: impl Iterator<Item = (SocketAddr, f64)> + Clone) -> Option<SocketAddr> {
    let total: f64 = entries.clone().map(|(_, w)| w).sum();
    if total <= 0.0 {
        return None;
    }
    let mut point = fastrand::f64() * total;
    let mut last = None;
    for (addr, weight) in entries {
        last = Some(addr);
        if point < weight {
            return Some(addr);
        }
        point -= weight;
    }
    last
}
