//! `la` (locality-aware): a random server, each as likely as the inverse
//! of its measured latency, divided again by the calls it has in flight,
//! so faster and less loaded servers get more calls (brpc's idea, not its
//! exact arithmetic). A server not measured yet counts as the average of
//! the others; a failed call counts as twice the slower of its latency
//! and the server's average, so failing servers fade.

use std::collections::HashMap;
use std::net::SocketAddr;

use parking_lot::Mutex;

use super::{addresses, no_server, pick_weighted, Feedback, LoadBalancer, SelectIn};
use crate::error::Error;
use crate::rpc::naming::ServerNode;

/// Weight of a new measurement in the moving average.
const ALPHA: f64 = 0.3;
/// Latency assumed when nothing was measured at all.
const UNKNOWN_US: f64 = 1000.0;

#[derive(Default, Clone)]
struct Stat {
    /// Moving average of latencies in microseconds; 0: not measured.
    latency_us: f64,
    in_flight: u32,
}

#[derive(Default)]
pub(super) struct LocalityAware {
    servers: Mutex<Vec<(SocketAddr, Stat)>>,
}

impl LoadBalancer for LocalityAware {
    fn reset(&self, servers: &[ServerNode]) {
        let mut current = self.servers.lock();
        let old: HashMap<SocketAddr, Stat> = current.drain(..).collect();
        *current = addresses(servers).into_iter().map(|a| (a, old.get(&a).cloned().unwrap_or_default())).collect();
    }

    fn select(&self, input: &SelectIn<'_>) -> Result<SocketAddr, Error> {
        let mut servers = self.servers.lock();
        let measured: Vec<f64> = servers.iter().map(|(_, s)| s.latency_us).filter(|l| *l > 0.0).collect();
        let default =
            if measured.is_empty() { UNKNOWN_US } else { measured.iter().sum::<f64>() / measured.len() as f64 };
        let weights = servers.iter().filter(|(a, _)| (input.usable)(*a)).map(|(a, s)| {
            let latency = if s.latency_us > 0.0 { s.latency_us } else { default };
            (*a, 1e9 / (latency.max(1.0) * f64::from(s.in_flight + 1)))
        });
        let chosen = pick_weighted(weights).ok_or_else(no_server)?;
        if let Some((_, stat)) = servers.iter_mut().find(|(a, _)| *a == chosen) {
            stat.in_flight = stat.in_flight.saturating_add(1);
        }
        Ok(chosen)
    }

    fn feedback(&self, feedback: &Feedback) {
        let mut servers = self.servers.lock();
        let Some((_, stat)) = servers.iter_mut().find(|(a, _)| *a == feedback.server) else { return };
        stat.in_flight = stat.in_flight.saturating_sub(1);
        let mut sample = feedback.latency.as_micros() as f64;
        if feedback.failed {
            sample = 2.0 * sample.max(stat.latency_us).max(UNKNOWN_US);
        }
        stat.latency_us =
            if stat.latency_us > 0.0 { stat.latency_us * (1.0 - ALPHA) + sample * ALPHA } else { sample.max(1.0) };
    }
}
