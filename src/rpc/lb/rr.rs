//! `rr`: each call to the next server in turn, skipping unusable ones.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use super::{addresses, no_server, LoadBalancer, SelectIn};
use crate::error::Error;
use crate::rpc::naming::ServerNode;

#[derive(Default)]
pub(super) struct RoundRobin {
    servers: RwLock<Vec<SocketAddr>>,
    next: AtomicUsize,
}

impl LoadBalancer for RoundRobin {
    fn reset(&self, servers: &[ServerNode]) {
        *self.servers.write() = addresses(servers);
    }

    fn select(&self, input: &SelectIn<'_>) -> Result<SocketAddr, Error> {
        let servers = self.servers.read();
        let n = servers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .filter_map(|i| servers.get(start.wrapping_add(i) % n).copied())
            .find(|addr| (input.usable)(*addr))
            .ok_or_else(no_server)
    }
}
