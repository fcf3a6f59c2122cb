//! `dns://host:port` and `http://host:port` (brpc's domain naming service):
//! every address the host name resolves to, re-resolved every 5 seconds
//! (brpc's `ns_access_interval`). The port defaults to 80.

use std::net::ToSocketAddrs;
use std::time::Duration;

use super::{NamingActions, NamingService, ServerNode};
use crate::error::Error;

const RESOLVE_EVERY: Duration = Duration::from_secs(5);

struct DomainNamingService {
    host: String,
    port: u16,
}

pub(super) fn create(rest: &str) -> Result<Box<dyn NamingService>, Error> {
    // "host:port/path": the path means nothing to a resolver.
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => {
            let port = port
                .parse::<u16>()
                .map_err(|err| Error::new(libc::EINVAL, format!("invalid port in \"{rest}\"")).caused_by(err))?;
            (host, port)
        }
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(Error::new(libc::EINVAL, format!("no host name in \"{rest}\"")));
    }
    Ok(Box::new(DomainNamingService { host: host.to_string(), port }))
}

impl DomainNamingService {
    fn resolve(&self) -> Result<Vec<ServerNode>, String> {
        let addrs = (self.host.as_str(), self.port).to_socket_addrs().map_err(|err| err.to_string())?;
        let mut servers: Vec<ServerNode> =
            addrs.filter(|a| a.is_ipv4()).map(|addr| ServerNode { addr, tag: String::new() }).collect();
        servers.sort();
        servers.dedup();
        Ok(servers)
    }
}

impl NamingService for DomainNamingService {
    fn run(self: Box<Self>, actions: NamingActions) {
        let mut reported = false;
        loop {
            match self.resolve() {
                Ok(servers) => {
                    actions.reset_servers(servers);
                    reported = true;
                }
                Err(err) => {
                    log_error!("cannot resolve {}:{}: {err}", self.host, self.port);
                    // The first list is due even when it is empty.
                    if !reported {
                        actions.reset_servers(Vec::new());
                        reported = true;
                    }
                }
            }
            if actions.sleep(RESOLVE_EVERY) {
                return;
            }
        }
    }
}
