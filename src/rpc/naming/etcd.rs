//! `etcd://host:port[,host:port...]/prefix`: the servers are the values
//! under the key prefix (each a brpc server entry, `ip:port[ tag]`), read
//! and then watched, so a server that registers appears and one whose
//! lease lapses or that withdraws disappears as soon as etcd says so.
//! Servers register themselves with `ServerOptions::etcd_registration`.
//! When etcd cannot be reached the last list stays in force; the first
//! list is empty when etcd cannot be reached at start.

use super::{parse_list, NamingActions, NamingService};
use crate::error::Error;
use crate::etcd::{follow, Client, ClientOptions, Report, Target};

struct EtcdNamingService {
    client: Client,
    target: Target,
}

pub(super) fn create(rest: &str) -> Result<Box<dyn NamingService>, Error> {
    let target = Target::parse(rest)?;
    let client = Client::new(target.endpoints.clone(), ClientOptions::default())?;
    Ok(Box::new(EtcdNamingService { client, target }))
}

impl NamingService for EtcdNamingService {
    fn run(self: Box<Self>, actions: NamingActions) {
        let source = format!("etcd://{}{}", self.target.endpoints.join(","), self.target.prefix);
        let mut reported = false;
        let mut report = |report: Report<'_>| match report {
            Report::List(values) => {
                actions.reset_servers(parse_list(values.iter().map(String::as_str), &source));
                reported = true;
            }
            // Init waits for a first list: without etcd it is empty.
            Report::Failed(_) if !reported => {
                actions.reset_servers(Vec::new());
                reported = true;
            }
            Report::Failed(_) => {}
        };
        follow(&self.client, &self.target.prefix, &mut report, &|| actions.stopped());
    }
}
