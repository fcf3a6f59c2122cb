//! `random`: a server chosen uniformly among the usable ones.

use std::net::SocketAddr;

use parking_lot::RwLock;

use super::{addresses, no_server, LoadBalancer, SelectIn};
use crate::error::Error;
use crate::rpc::naming::ServerNode;

#[derive(Default)]
pub(super) struct Randomized {
    servers: RwLock<Vec<SocketAddr>>,
}

impl LoadBalancer for Randomized {
    fn reset(&self, servers: &[ServerNode]) {
        *self.servers.write() = addresses(servers);
    }

    fn select(&self, input: &SelectIn<'_>) -> Result<SocketAddr, Error> {
        let servers = self.servers.read();
        let usable: Vec<SocketAddr> = servers.iter().copied().filter(|a| (input.usable)(*a)).collect();
        if usable.is_empty() {
            return Err(no_server());
        }
        usable.get(fastrand::usize(..usable.len())).copied().ok_or_else(no_server)
    }
}
