//! The etcd v3 operations service discovery needs, as typed calls on the
//! JSON gateway (`/v3/...`, which etcd 3.4 and later serve).
//!
//! The gateway writes 64-bit integers as JSON strings and leaves out fields
//! holding their default (a PUT event has no `type`, an expired lease no
//! `TTL`); the types here read both spellings and take absence as the default.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::http::{self, LineStream};
use super::{Error, ErrorKind};

#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// Bounds each request (connect, send, answer); default 3 s. A watch's
    /// stream is unbounded once its head arrived.
    pub request_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions { request_timeout: Duration::from_secs(3) }
    }
}

/// A client of one etcd cluster. Requests go to the endpoint that last
/// answered; when it cannot be reached the next ones are tried in turn.
pub struct Client {
    endpoints: Vec<String>,
    current: AtomicUsize,
    options: ClientOptions,
}

/// A key and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub lease: i64,
}

/// One change under a watched range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Put(KeyValue),
    Delete(Vec<u8>),
}

/// Reads an int64 written as a JSON string or number.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(i64),
    }
    match Int::deserialize(d)? {
        Int::Number(n) => Ok(n),
        Int::Text(t) => t.parse().map_err(serde::de::Error::custom),
    }
}

fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    BASE64.decode(text).map_err(serde::de::Error::custom)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Header {
    #[serde(deserialize_with = "int64")]
    revision: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawKeyValue {
    #[serde(deserialize_with = "bytes")]
    key: Vec<u8>,
    #[serde(deserialize_with = "bytes")]
    value: Vec<u8>,
    #[serde(deserialize_with = "int64")]
    lease: i64,
}

impl From<RawKeyValue> for KeyValue {
    fn from(kv: RawKeyValue) -> KeyValue {
        KeyValue { key: kv.key, value: kv.value, lease: kv.lease }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RangeResponse {
    header: Header,
    kvs: Vec<RawKeyValue>,
    more: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LeaseResponse {
    #[serde(rename = "ID", alias = "id", deserialize_with = "int64")]
    id: i64,
    #[serde(rename = "TTL", alias = "ttl", deserialize_with = "int64")]
    ttl: i64,
    error: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeepAliveResponse {
    result: LeaseResponse,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DeleteResponse {
    #[serde(deserialize_with = "int64")]
    deleted: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: String,
    kv: RawKeyValue,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WatchResult {
    header: Header,
    created: bool,
    canceled: bool,
    #[serde(alias = "compactRevision", deserialize_with = "int64")]
    compact_revision: i64,
    #[serde(alias = "cancelReason")]
    cancel_reason: String,
    events: Vec<RawEvent>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WatchMessage {
    result: Option<WatchResult>,
    error: Option<serde_json::Value>,
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::new(ErrorKind::BadResponse, format!("etcd: a malformed {what}: {e}")))
}

/// The end of the range holding every key that starts with `prefix`: the
/// prefix with its last byte below 0xff incremented ("\0" when every byte
/// is 0xff, which etcd reads as "to the end").
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Client {
    /// A client of the etcd members at `endpoints` ("host:port" each).
    pub fn new(endpoints: Vec<String>, options: ClientOptions) -> Result<Client, Error> {
        if endpoints.is_empty() {
            return Err(Error::new(ErrorKind::Invalid, "etcd: no endpoint"));
        }
        Ok(Client { endpoints, current: AtomicUsize::new(0), options })
    }

    /// Runs `attempt` against the current endpoint, then each other one
    /// while they cannot be reached.
    fn on_endpoints<T>(&self, attempt: impl Fn(&str, Instant) -> Result<T, Error>) -> Result<T, Error> {
        let deadline = Instant::now() + self.options.request_timeout;
        let first = self.current.load(Ordering::Relaxed);
        let mut last = Error::new(ErrorKind::Unreachable, "etcd: no endpoint");
        for i in 0..self.endpoints.len() {
            let index = (first + i) % self.endpoints.len();
            let Some(endpoint) = self.endpoints.get(index) else { continue };
            match attempt(endpoint, deadline) {
                Ok(value) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(value);
                }
                Err(err) if err.kind == ErrorKind::Unreachable => last = err,
                Err(err) => return Err(err),
            }
        }
        Err(last)
    }

    fn call(&self, path: &str, body: serde_json::Value) -> Result<Vec<u8>, Error> {
        let body = body.to_string().into_bytes();
        self.on_endpoints(|endpoint, deadline| http::post(endpoint, path, &body, deadline))
    }

    /// Every key starting with `prefix`, sorted by key, and the revision
    /// they were read at.
    pub fn range_prefix(&self, prefix: &[u8]) -> Result<(i64, Vec<KeyValue>), Error> {
        let body = self.call(
            "/v3/kv/range",
            json!({ "key": BASE64.encode(prefix), "range_end": BASE64.encode(prefix_end(prefix)) }),
        )?;
        let response: RangeResponse = parse(&body, "range response")?;
        if response.more {
            return Err(Error::new(ErrorKind::BadResponse, "etcd: the range answer was truncated"));
        }
        Ok((response.header.revision, response.kvs.into_iter().map(KeyValue::from).collect()))
    }

    /// Sets `key` to `value`, attached to `lease` (0: none); the revision.
    pub fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<i64, Error> {
        let mut request = json!({ "key": BASE64.encode(key), "value": BASE64.encode(value) });
        if lease != 0 {
            request["lease"] = json!(lease.to_string());
        }
        let body = self.call("/v3/kv/put", request)?;
        let response: RangeResponse = parse(&body, "put response")?;
        Ok(response.header.revision)
    }

    /// Deletes `key`; how many keys went (0 or 1).
    pub fn delete(&self, key: &[u8]) -> Result<i64, Error> {
        let body = self.call("/v3/kv/deleterange", json!({ "key": BASE64.encode(key) }))?;
        let response: DeleteResponse = parse(&body, "delete response")?;
        Ok(response.deleted)
    }

    /// A new lease of `ttl_s` seconds: its id and the TTL etcd granted
    /// (etcd raises TTLs below its minimum).
    pub fn grant(&self, ttl_s: i64) -> Result<(i64, i64), Error> {
        let body = self.call("/v3/lease/grant", json!({ "TTL": ttl_s.to_string() }))?;
        let response: LeaseResponse = parse(&body, "lease grant response")?;
        if !response.error.is_empty() || response.id == 0 {
            return Err(Error::new(
                ErrorKind::Rejected { grpc_code: 0 },
                format!("etcd: lease grant refused: {}", response.error),
            ));
        }
        Ok((response.id, response.ttl))
    }

    /// Renews `lease` once; the TTL it has again, or 0 when the lease no
    /// longer exists (expired or revoked).
    pub fn keep_alive(&self, lease: i64) -> Result<i64, Error> {
        let body = self.call("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))?;
        let response: KeepAliveResponse = parse(&body, "lease keepalive response")?;
        Ok(response.result.ttl.max(0))
    }

    /// Revokes `lease`, deleting every key attached to it. A lease that no
    /// longer exists is not an error.
    pub fn revoke(&self, lease: i64) -> Result<(), Error> {
        match self.call("/v3/lease/revoke", json!({ "ID": lease.to_string() })) {
            Ok(_) => Ok(()),
            Err(err) if err.kind == (ErrorKind::Rejected { grpc_code: 5 }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Watches every key starting with `prefix`, from `start_revision` on.
    /// Returns once etcd confirmed the watch.
    pub fn watch_prefix(&self, prefix: &[u8], start_revision: i64) -> Result<WatchStream, Error> {
        let request = json!({ "create_request": {
            "key": BASE64.encode(prefix),
            "range_end": BASE64.encode(prefix_end(prefix)),
            "start_revision": start_revision.to_string(),
        }})
        .to_string()
        .into_bytes();
        let lines =
            self.on_endpoints(|endpoint, deadline| LineStream::open(endpoint, "/v3/watch", &request, deadline))?;
        Ok(WatchStream { lines, created: false })
    }
}

/// The events of one watch, as etcd sends them.
pub struct WatchStream {
    lines: LineStream,
    created: bool,
}

impl WatchStream {
    /// The next batch of events and the revision it brings the range to.
    /// Waits until there is one, or `stopped()` ([`ErrorKind::Stopped`]).
    /// A watch etcd cancels (its start revision was compacted away) is an
    /// error: read the range again and watch from there.
    pub fn next(&mut self, stopped: &dyn Fn() -> bool) -> Result<(i64, Vec<WatchEvent>), Error> {
        loop {
            let line = self.lines.next_line(stopped)?;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let message: WatchMessage = parse(&line, "watch message")?;
            if let Some(error) = message.error {
                return Err(Error::new(ErrorKind::Rejected { grpc_code: 0 }, format!("etcd: watch failed: {error}")));
            }
            let Some(result) = message.result else { continue };
            if result.canceled {
                return Err(Error::new(
                    ErrorKind::Rejected { grpc_code: 0 },
                    format!(
                        "etcd: watch canceled (compacted at revision {}){}{}",
                        result.compact_revision,
                        if result.cancel_reason.is_empty() { "" } else { ": " },
                        result.cancel_reason
                    ),
                ));
            }
            if result.created && !self.created {
                self.created = true;
                if result.events.is_empty() {
                    continue;
                }
            }
            let events = result
                .events
                .into_iter()
                .map(|event| match event.kind.as_str() {
                    "DELETE" => WatchEvent::Delete(event.kv.key),
                    _ => WatchEvent::Put(event.kv.into()),
                })
                .collect();
            return Ok((result.header.revision, events));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_past_every_key_with_that_prefix() {
        assert_eq!(prefix_end(b"/svc/"), b"/svc0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn gateway_json_reads_with_strings_for_int64_and_absent_defaults() {
        let body = br#"{"header":{"revision":"7"},"kvs":[{"key":"L3MvYQ==","create_revision":"2","value":"MTI3LjAuMC4xOjEgdA==","lease":"41"}],"count":"1"}"#;
        let range: RangeResponse = parse(body, "range").unwrap();
        assert_eq!(range.header.revision, 7);
        let kv: KeyValue = range.kvs.into_iter().next().unwrap().into();
        assert_eq!(kv, KeyValue { key: b"/s/a".to_vec(), value: b"127.0.0.1:1 t".to_vec(), lease: 41 });

        let expired: KeepAliveResponse =
            parse(br#"{"result":{"header":{"revision":"2"},"ID":"12345"}}"#, "ka").unwrap();
        assert_eq!((expired.result.id, expired.result.ttl), (12345, 0));
        let granted: LeaseResponse = parse(br#"{"ID":4111120366493386757,"TTL":"3"}"#, "grant").unwrap();
        assert_eq!((granted.id, granted.ttl), (4111120366493386757, 3));
        assert!(parse::<RangeResponse>(br#"{"kvs":[{"key":"!!"}]}"#, "range").is_err());
    }
}
