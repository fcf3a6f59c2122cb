//! `list://host:port[ tag],host:port[ tag],...`: a fixed list, reported once.

use super::{parse_list, NamingActions, NamingService, ServerNode};
use crate::error::Error;

struct ListNamingService {
    servers: Vec<ServerNode>,
}

pub(super) fn create(rest: &str) -> Result<Box<dyn NamingService>, Error> {
    let servers = parse_list(rest.split(','), "list://");
    if servers.is_empty() && !rest.trim().is_empty() {
        return Err(Error::new(libc::EINVAL, format!("list://{rest} has no valid server")));
    }
    Ok(Box::new(ListNamingService { servers }))
}

impl NamingService for ListNamingService {
    fn run(self: Box<Self>, actions: NamingActions) {
        actions.reset_servers(self.servers);
    }
}
