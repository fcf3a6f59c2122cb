//! The etcd client, the prefix watcher and registration against a real
//! etcd (started by the test on free loopback ports).

#[path = "common/etcd.rs"]
mod etcd_process;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use brpc_stream::etcd::{ErrorKind, PrefixWatcher, Registration, RegistrationOptions, WatchEvent};
use brpc_stream::rpc::{Server, ServerOptions};
use etcd_process::Etcd;

/// Generous bound for anything that should take milliseconds.
const SOON: Duration = Duration::from_secs(10);

#[test]
fn put_range_delete_and_leases_round_trip_through_the_gateway() {
    let etcd = Etcd::start();
    let client = etcd.client();
    client.put(b"/svc/a", b"127.0.0.1:1", 0).unwrap();
    client.put(b"/svc/b", b"127.0.0.1:2 tag", 0).unwrap();
    client.put(b"/svc0", b"outside", 0).unwrap();
    client.put(b"/svc2/x", b"outside too", 0).unwrap();
    let (revision, kvs) = client.range_prefix(b"/svc/").unwrap();
    assert!(revision >= 4, "revision {revision}");
    let values: Vec<&[u8]> = kvs.iter().map(|kv| kv.value.as_slice()).collect();
    assert_eq!(values, vec![&b"127.0.0.1:1"[..], &b"127.0.0.1:2 tag"[..]]);

    assert_eq!(client.delete(b"/svc/a").unwrap(), 1);
    assert_eq!(client.delete(b"/svc/a").unwrap(), 0);

    let (lease, ttl) = client.grant(5).unwrap();
    assert!(lease != 0 && ttl >= 5, "lease {lease} ttl {ttl}");
    client.put(b"/svc/c", b"127.0.0.1:3", lease).unwrap();
    let (_, kvs) = client.range_prefix(b"/svc/c").unwrap();
    assert_eq!(kvs.first().map(|kv| kv.lease), Some(lease));
    assert!(client.keep_alive(lease).unwrap() > 0);
    client.revoke(lease).unwrap();
    assert!(client.range_prefix(b"/svc/c").unwrap().1.is_empty(), "a revoked lease takes its key");
    assert_eq!(client.keep_alive(lease).unwrap(), 0, "a revoked lease is gone");
    client.revoke(lease).unwrap();
}

#[test]
fn a_watch_reports_puts_and_deletes_from_its_start_revision() {
    let etcd = Etcd::start();
    let client = etcd.client();
    let (revision, _) = client.range_prefix(b"/w/").unwrap();
    let mut watch = client.watch_prefix(b"/w/", revision + 1).unwrap();
    client.put(b"/w/a", b"1", 0).unwrap();
    client.put(b"/other", b"x", 0).unwrap();
    client.delete(b"/w/a").unwrap();
    let mut events = Vec::new();
    while events.len() < 2 {
        let (_, batch) = watch.next(&|| false).unwrap();
        events.extend(batch);
    }
    assert!(matches!(&events[0], WatchEvent::Put(kv) if kv.key == b"/w/a" && kv.value == b"1"), "{events:?}");
    assert_eq!(events[1], WatchEvent::Delete(b"/w/a".to_vec()));
}

#[test]
fn a_stopped_etcd_is_an_error_value_within_the_timeout() {
    let mut etcd = Etcd::start();
    let client = etcd.client();
    etcd.kill();
    let started = Instant::now();
    let err = client.range_prefix(b"/x/").unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unreachable, "{}", err.text);
    assert!(!err.text.is_empty());
    assert!(started.elapsed() < SOON);
}

/// Watches `prefix` and forwards every list it reports.
fn watch(etcd: &Etcd, prefix: &str) -> (PrefixWatcher, mpsc::Receiver<Vec<String>>) {
    let (tx, rx) = mpsc::channel();
    let watcher = PrefixWatcher::start(
        etcd.client(),
        prefix,
        Box::new(move |values| {
            let _ = tx.send(values);
        }),
    )
    .unwrap();
    (watcher, rx)
}

/// Waits for a reported list equal to `want`; how long it took.
fn wait_for(rx: &mpsc::Receiver<Vec<String>>, want: &[&str], within: Duration) -> Duration {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < within {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(values) if values == want => return started.elapsed(),
            Ok(values) => last = Some(values),
            Err(_) => {}
        }
    }
    panic!("never saw {want:?}; last {last:?}");
}

#[test]
fn a_watcher_reports_the_list_then_each_change() {
    let etcd = Etcd::start();
    let client = etcd.client();
    client.put(b"/svc/echo/127.0.0.1:1", b"127.0.0.1:1", 0).unwrap();
    let (watcher, rx) = watch(&etcd, "/svc/echo/");
    wait_for(&rx, &["127.0.0.1:1"], SOON);
    client.put(b"/svc/echo/127.0.0.1:2", b" 127.0.0.1:2 blue\n", 0).unwrap();
    wait_for(&rx, &["127.0.0.1:1", "127.0.0.1:2 blue"], SOON);
    client.put(b"/svc/echo2/x", b"127.0.0.1:9", 0).unwrap();
    client.delete(b"/svc/echo/127.0.0.1:1").unwrap();
    wait_for(&rx, &["127.0.0.1:2 blue"], SOON);
    drop(watcher);
    // Nothing runs after the drop: the sender went with the callback.
    let drained: Vec<Vec<String>> = rx.try_iter().collect();
    assert!(drained.iter().all(|v| v.len() <= 2));
    assert!(matches!(rx.recv_timeout(Duration::from_millis(200)), Err(mpsc::RecvTimeoutError::Disconnected)));
}

#[test]
fn a_watcher_keeps_its_list_while_etcd_is_away_and_catches_up_after() {
    let mut etcd = Etcd::start();
    let (_watcher, rx) = watch(&etcd, "/svc/");
    wait_for(&rx, &[], SOON);
    etcd.kill();
    std::thread::sleep(Duration::from_millis(500));
    assert!(rx.try_recv().is_err(), "no list is reported while etcd is away");
    let etcd = Etcd::restart(etcd);
    etcd.client().put(b"/svc/a", b"127.0.0.1:5", 0).unwrap();
    wait_for(&rx, &["127.0.0.1:5"], Duration::from_secs(15));
}

fn registration(etcd: &Etcd, prefix: &str, port: u16, ttl_s: i64) -> Registration {
    let options = RegistrationOptions { url: etcd.url(prefix), tag: "t1".into(), ttl_s, ..Default::default() };
    Registration::start(&options, SocketAddr::from(([127, 0, 0, 1], port))).unwrap()
}

#[test]
fn a_registration_is_listed_until_withdrawn() {
    let etcd = Etcd::start();
    let (_watcher, rx) = watch(&etcd, "/reg/");
    wait_for(&rx, &[], SOON);
    let first = registration(&etcd, "/reg", 8001, 2);
    assert_eq!(first.key(), "/reg/127.0.0.1:8001");
    let second = registration(&etcd, "/reg", 8002, 2);
    wait_for(&rx, &["127.0.0.1:8001 t1", "127.0.0.1:8002 t1"], SOON);
    // Kept alive well past its TTL.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(etcd.client().range_prefix(b"/reg/").unwrap().1.len(), 2, "both leases were kept alive");
    first.withdraw().unwrap();
    let took = wait_for(&rx, &["127.0.0.1:8002 t1"], SOON);
    assert!(took < Duration::from_secs(2), "withdrawn entries go at once ({took:?})");
    drop(second);
    wait_for(&rx, &[], SOON);
}

#[test]
fn an_abandoned_registration_vanishes_when_its_lease_lapses() {
    let etcd = Etcd::start();
    let (_watcher, rx) = watch(&etcd, "/reg/");
    let kept = registration(&etcd, "/reg", 8001, 2);
    let killed = registration(&etcd, "/reg", 8002, 2);
    wait_for(&rx, &["127.0.0.1:8001 t1", "127.0.0.1:8002 t1"], SOON);
    let abandoned_at = Instant::now();
    killed.abandon();
    wait_for(&rx, &["127.0.0.1:8001 t1"], SOON);
    let took = abandoned_at.elapsed();
    // The lease lapses after its TTL (2 s), counted from the last renewal.
    assert!(took >= Duration::from_millis(1000) && took < Duration::from_secs(6), "vanished after {took:?}");
    drop(kept);
}

#[test]
fn a_registration_refuses_a_bad_url_and_an_unreachable_etcd() {
    let listening = SocketAddr::from(([127, 0, 0, 1], 8000));
    for url in ["etcd://127.0.0.1:2379", "http://x/y", ""] {
        let options = RegistrationOptions { url: url.into(), ..Default::default() };
        let err = Registration::start(&options, listening).err().unwrap();
        assert_eq!(err.kind, ErrorKind::Invalid, "{url}: {}", err.text);
    }
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let options = RegistrationOptions { url: format!("etcd://127.0.0.1:{closed}/svc"), ..Default::default() };
    let started = Instant::now();
    let err = Registration::start(&options, listening).err().unwrap();
    assert_eq!(err.kind, ErrorKind::Unreachable, "{}", err.text);
    assert!(started.elapsed() < SOON);
}

#[test]
fn a_server_on_any_address_registers_the_address_that_reaches_etcd() {
    let etcd = Etcd::start();
    let options = RegistrationOptions { url: etcd.url("/any"), ..Default::default() };
    let registration = Registration::start(&options, SocketAddr::from(([0, 0, 0, 0], 8123))).unwrap();
    assert_eq!(registration.key(), "/any/127.0.0.1:8123");
    let (_, kvs) = etcd.client().range_prefix(b"/any/").unwrap();
    assert_eq!(kvs.first().map(|kv| kv.value.clone()), Some(b"127.0.0.1:8123".to_vec()));
}

fn registered_server(etcd: &Etcd, prefix: &str) -> Server {
    let server = Server::new();
    let options = ServerOptions {
        etcd_registration: Some(RegistrationOptions { url: etcd.url(prefix), ttl_s: 2, ..Default::default() }),
        ..Default::default()
    };
    server.start("127.0.0.1:0", options).unwrap();
    server
}

#[test]
fn a_server_registers_at_start_and_withdraws_at_stop() {
    let etcd = Etcd::start();
    let (_watcher, rx) = watch(&etcd, "/echo/");
    let servers: Vec<Server> = (0..3).map(|_| registered_server(&etcd, "/echo")).collect();
    let mut addresses: Vec<String> = servers.iter().map(|s| s.listen_address().unwrap().to_string()).collect();
    addresses.sort();
    let want: Vec<&str> = addresses.iter().map(String::as_str).collect();
    wait_for(&rx, &want, SOON);
    let gone = servers[1].listen_address().unwrap().to_string();
    servers[1].stop();
    let left: Vec<&str> = want.iter().copied().filter(|a| *a != gone).collect();
    let took = wait_for(&rx, &left, SOON);
    assert!(took < Duration::from_secs(2), "a stopped server is gone at once ({took:?})");
    drop(servers);
    wait_for(&rx, &[], SOON);
}

#[test]
fn a_server_that_cannot_register_does_not_start() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let server = Server::new();
    let options = ServerOptions {
        etcd_registration: Some(RegistrationOptions {
            url: format!("etcd://127.0.0.1:{closed}/echo"),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(server.start("127.0.0.1:0", options).map_err(|e| e.code()), Err(libc::ECONNREFUSED));
    assert!(!server.is_running());
    assert_eq!(server.listen_address(), None, "the listener was closed again");
    let bad = ServerOptions {
        etcd_registration: Some(RegistrationOptions { url: "etcd://127.0.0.1:1".into(), ..Default::default() }),
        ..Default::default()
    };
    assert_eq!(server.start("127.0.0.1:0", bad).map_err(|e| e.code()), Err(libc::EINVAL));
    server.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    assert!(server.is_running());
}
