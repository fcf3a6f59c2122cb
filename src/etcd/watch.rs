//! The values under a key prefix, kept current: [`follow`] reads the
//! range, then watches it from the revision it read, and reports the whole
//! list whenever it changed. When etcd cannot be reached, or the watch
//! breaks or is canceled, it starts over after a backoff (100 ms, doubling
//! up to 2 s); the last list reported stays in force meanwhile.
//! [`PrefixWatcher`] runs it on a thread of its own.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::{Client, WatchEvent};
use super::{Error, ErrorKind};

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often a backoff looks at its stop condition.
const STOP_POLL: Duration = Duration::from_millis(50);

/// What [`follow`] reports.
#[derive(Debug)]
pub enum Report<'a> {
    /// Every value under the prefix, ordered by key, trimmed (values that
    /// are not UTF-8 are skipped with a log line); sent the first time and
    /// each time the list changed.
    List(Vec<String>),
    /// etcd could not be read or watched, the first time in a row; the
    /// last list stays in force and it is tried again.
    Failed(&'a Error),
}

/// Follows the values under `prefix` on the calling thread, reporting to
/// `report`, until `stopped()` is true (checked at least every 100 ms).
pub fn follow(client: &Client, prefix: &str, report: &mut dyn FnMut(Report<'_>), stopped: &dyn Fn() -> bool) {
    let mut watch = Watch { client, prefix: prefix.as_bytes(), report, last: None, stopped };
    watch.run();
}

/// Watches a prefix on a thread of its own until dropped; dropping it
/// stops and joins the thread (within about 100 ms), after which the
/// callback never runs again.
pub struct PrefixWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Called on the watcher's thread with [`Report::List`]'s lists.
pub type OnUpdate = Box<dyn FnMut(Vec<String>) + Send>;

impl PrefixWatcher {
    /// Starts watching `prefix`.
    pub fn start(client: Client, prefix: &str, mut on_update: OnUpdate) -> Result<PrefixWatcher, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let prefix = prefix.to_string();
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("brpc_etcd_watch".into())
            .spawn(move || {
                let mut report = |report: Report<'_>| {
                    if let Report::List(values) = report {
                        on_update(values);
                    }
                };
                follow(&client, &prefix, &mut report, &|| stopped.load(Ordering::Acquire));
            })
            .map_err(|e| Error::new(ErrorKind::Invalid, format!("etcd: cannot start the watch thread: {e}")))?;
        Ok(PrefixWatcher { stop, thread: Some(thread) })
    }
}

impl Drop for PrefixWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // The callback may drop its own watcher: never join oneself.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

struct Watch<'a, 'r> {
    client: &'a Client,
    prefix: &'a [u8],
    report: &'r mut dyn FnMut(Report<'_>),
    /// The list last reported.
    last: Option<Vec<String>>,
    stopped: &'a dyn Fn() -> bool,
}

impl Watch<'_, '_> {
    fn run(&mut self) {
        let mut backoff = BACKOFF_FIRST;
        let mut failing = false;
        while !(self.stopped)() {
            let err = self.session(&mut backoff, &mut failing);
            if err.kind == ErrorKind::Stopped || (self.stopped)() {
                return;
            }
            if !failing {
                log_warning!("etcd watch of {}: {err}; retrying", String::from_utf8_lossy(self.prefix));
                (self.report)(Report::Failed(&err));
                failing = true;
            }
            self.back_off(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn back_off(&self, how_long: Duration) {
        let until = Instant::now() + how_long;
        while !(self.stopped)() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(STOP_POLL));
        }
    }

    /// Reads the range, then follows it; returns why it ended.
    fn session(&mut self, backoff: &mut Duration, failing: &mut bool) -> Error {
        let (revision, kvs) = match self.client.range_prefix(self.prefix) {
            Ok(range) => range,
            Err(err) => return err,
        };
        if std::mem::take(failing) {
            log_info!("etcd watch of {}: reading again", String::from_utf8_lossy(self.prefix));
        }
        *backoff = BACKOFF_FIRST;
        let mut entries: BTreeMap<Vec<u8>, Vec<u8>> = kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
        self.publish(&entries);
        let mut watch = match self.client.watch_prefix(self.prefix, revision.saturating_add(1)) {
            Ok(watch) => watch,
            Err(err) => return err,
        };
        loop {
            let events = match watch.next(self.stopped) {
                Ok((_, events)) => events,
                Err(err) => return err,
            };
            for event in events {
                match event {
                    WatchEvent::Put(kv) => entries.insert(kv.key, kv.value),
                    WatchEvent::Delete(key) => entries.remove(&key),
                };
            }
            self.publish(&entries);
        }
    }

    fn publish(&mut self, entries: &BTreeMap<Vec<u8>, Vec<u8>>) {
        let values: Vec<String> = entries
            .iter()
            .filter_map(|(key, value)| match std::str::from_utf8(value) {
                Ok(value) => Some(value.trim().to_string()),
                Err(_) => {
                    log_warning!("etcd: skipped {}: its value is not UTF-8", String::from_utf8_lossy(key));
                    None
                }
            })
            .collect();
        if self.last.as_ref() != Some(&values) {
            self.last = Some(values.clone());
            (self.report)(Report::List(values));
        }
    }
}
