//! `file://path`: one server per line (`host:port[ tag]`, `#` starts a
//! comment), re-read whenever the file changes (checked every 100 ms, as
//! brpc's file watcher does).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::{parse_list, NamingActions, NamingService};
use crate::error::Error;

const CHECK_EVERY: Duration = Duration::from_millis(100);

struct FileNamingService {
    path: PathBuf,
}

pub(super) fn create(rest: &str) -> Result<Box<dyn NamingService>, Error> {
    if rest.is_empty() {
        return Err(Error::new(libc::EINVAL, "file:// needs a path"));
    }
    Ok(Box::new(FileNamingService { path: PathBuf::from(rest) }))
}

/// What tells one version of the file from another.
fn version(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl NamingService for FileNamingService {
    fn run(self: Box<Self>, actions: NamingActions) {
        let source = format!("file://{}", self.path.display());
        let mut seen = None;
        let mut reported = false;
        loop {
            let now = version(&self.path);
            if now != seen || !reported {
                // Read after taking the version: a write in between is seen
                // again at the next check.
                seen = now;
                match std::fs::read_to_string(&self.path) {
                    Ok(text) => actions.reset_servers(parse_list(text.lines(), &source)),
                    Err(err) => {
                        log_error!("{source}: cannot read: {err}");
                        if !reported {
                            actions.reset_servers(Vec::new());
                        }
                    }
                }
                reported = true;
            }
            if actions.sleep(CHECK_EVERY) {
                return;
            }
        }
    }
}
