//! The values under a key prefix, kept current: a thread reads the range,
//! then watches it from the revision it read, and hands the whole list to
//! its callback whenever it changed. When etcd cannot be reached, or the
//! watch breaks or is canceled, it starts over after a backoff (100 ms,
//! doubling up to 2 s); the last list handed out stays in force meanwhile.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::client::{Client, WatchEvent};
use super::{Error, ErrorKind};

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Watches a prefix until dropped; dropping it stops and joins its thread
/// (within about 100 ms), after which the callback never runs again.
pub struct PrefixWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Called on the watcher's thread with every value under the prefix,
/// ordered by key, each time the set changed (the first time always).
pub type OnUpdate = Box<dyn FnMut(Vec<String>) + Send>;

impl PrefixWatcher {
    /// Starts watching `prefix`. Values that are not UTF-8 are skipped
    /// (with a log line), and each value is trimmed.
    pub fn start(client: Client, prefix: &str, on_update: OnUpdate) -> Result<PrefixWatcher, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut state =
            Watch { client, prefix: prefix.as_bytes().to_vec(), on_update, values: None, stop: stop.clone() };
        let thread = std::thread::Builder::new()
            .name("brpc_etcd_watch".into())
            .spawn(move || state.run())
            .map_err(|e| Error::new(ErrorKind::Invalid, format!("etcd: cannot start the watch thread: {e}")))?;
        Ok(PrefixWatcher { stop, thread: Some(thread) })
    }
}

impl Drop for PrefixWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            // The callback may drop its own watcher: never join oneself.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

struct Watch {
    client: Client,
    prefix: Vec<u8>,
    on_update: OnUpdate,
    /// What the callback last received.
    values: Option<Vec<String>>,
    stop: Arc<AtomicBool>,
}

impl Watch {
    fn run(&mut self) {
        let mut backoff = BACKOFF_FIRST;
        let mut failing = false;
        while !self.stop.load(Ordering::Acquire) {
            let err = self.session(&mut backoff, &mut failing);
            if err.kind == ErrorKind::Stopped || self.stop.load(Ordering::Acquire) {
                return;
            }
            if !failing {
                log_warning!("etcd watch of {}: {err}; retrying", String::from_utf8_lossy(&self.prefix));
                failing = true;
            }
            super::sleep_unless_stopped(&self.stop, backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Reads the range, then follows it; returns why it ended.
    fn session(&mut self, backoff: &mut Duration, failing: &mut bool) -> Error {
        let (revision, kvs) = match self.client.range_prefix(&self.prefix) {
            Ok(range) => range,
            Err(err) => return err,
        };
        if std::mem::take(failing) {
            log_info!("etcd watch of {}: reading again", String::from_utf8_lossy(&self.prefix));
        }
        *backoff = BACKOFF_FIRST;
        let mut entries: BTreeMap<Vec<u8>, Vec<u8>> = kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
        self.publish(&entries);
        let mut watch = match self.client.watch_prefix(&self.prefix, revision.saturating_add(1)) {
            Ok(watch) => watch,
            Err(err) => return err,
        };
        loop {
            let events = match watch.next(&self.stop) {
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
        if self.values.as_ref() != Some(&values) {
            self.values = Some(values.clone());
            (self.on_update)(values);
        }
    }
}
