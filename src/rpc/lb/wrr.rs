//! `wrr`: round robin where each server gets turns in proportion to its
//! weight (the tag), spread out rather than in bursts (smooth weighted
//! round robin: every pick adds each weight to its server's credit, takes
//! the server with the most credit and charges it the total).

use std::net::SocketAddr;

use parking_lot::Mutex;

use super::{no_server, weighted, LoadBalancer, SelectIn};
use crate::error::Error;
use crate::rpc::naming::ServerNode;

struct Entry {
    addr: SocketAddr,
    weight: i64,
    credit: i64,
}

#[derive(Default)]
pub(super) struct WeightedRoundRobin {
    servers: Mutex<Vec<Entry>>,
}

impl LoadBalancer for WeightedRoundRobin {
    fn reset(&self, servers: &[ServerNode]) {
        let entries = weighted(servers, "wrr")
            .into_iter()
            .map(|(addr, weight)| Entry { addr, weight: weight.min(i32::MAX as u64) as i64, credit: 0 })
            .collect();
        *self.servers.lock() = entries;
    }

    fn select(&self, input: &SelectIn<'_>) -> Result<SocketAddr, Error> {
        let mut servers = self.servers.lock();
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for i in 0..servers.len() {
            let Some(entry) = servers.get_mut(i) else { break };
            if !(input.usable)(entry.addr) {
                continue;
            }
            entry.credit = entry.credit.saturating_add(entry.weight);
            total = total.saturating_add(entry.weight);
            let credit = entry.credit;
            if best.and_then(|b| servers.get(b)).is_none_or(|b| credit > b.credit) {
                best = Some(i);
            }
        }
        let entry = best.and_then(|i| servers.get_mut(i)).ok_or_else(no_server)?;
        entry.credit = entry.credit.saturating_sub(total);
        Ok(entry.addr)
    }
}
