//! `wr`: a random server, each as likely as its weight (the tag).

use std::net::SocketAddr;

use parking_lot::RwLock;

use super::{no_server, pick_weighted, weighted, LoadBalancer, SelectIn};
use crate::error::Error;
use crate::rpc::naming::ServerNode;

#[derive(Default)]
pub(super) struct WeightedRandomized {
    servers: RwLock<Vec<(SocketAddr, u64)>>,
}

impl LoadBalancer for WeightedRandomized {
    fn reset(&self, servers: &[ServerNode]) {
        *self.servers.write() = weighted(servers, "wr");
    }

    fn select(&self, input: &SelectIn<'_>) -> Result<SocketAddr, Error> {
        let servers = self.servers.read();
        let usable = servers.iter().filter(|(a, _)| (input.usable)(*a)).map(|(a, w)| (*a, *w as f64));
        pick_weighted(usable).ok_or_else(no_server)
    }
}
