//! JSON POSTs to etcd's gateway, one connection per request.
//!
//! Requests are HTTP/1.0: the gateway then never chunks a body, it sends
//! `Content-Length` or ends the body by closing, and a watch is a body that
//! goes on with one JSON message per line. A request is a few hundred bytes
//! on a fresh loopback or LAN connection, made at most a few times a second,
//! so pooling would buy nothing. Every step is bounded: connecting, writing,
//! and reading against the request's deadline; a streaming read polls its
//! stop flag.

use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{Error, ErrorKind};

/// Largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest body, or watch message, accepted: a bigger one is an error (the
/// watcher then starts over, the caller of a request gets the error).
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// How often a streaming read looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

fn io_error(what: &str, endpoint: &str, err: &std::io::Error) -> Error {
    let kind = match err.kind() {
        IoKind::WouldBlock | IoKind::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Unreachable,
    };
    Error::new(kind, format!("etcd {endpoint}: {what}: {err}"))
}

fn timed_out(what: &str, endpoint: &str) -> Error {
    Error::new(ErrorKind::Timeout, format!("etcd {endpoint}: {what}: timed out"))
}

fn remaining(deadline: Instant, what: &str, endpoint: &str) -> Result<Duration, Error> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out(what, endpoint));
    }
    Ok(left)
}

/// The first IPv4 address of `endpoint` ("host:port"), else the first one.
fn resolve(endpoint: &str) -> Result<SocketAddr, Error> {
    let addrs: Vec<SocketAddr> = endpoint
        .to_socket_addrs()
        .map_err(|e| Error::new(ErrorKind::Unreachable, format!("etcd {endpoint}: cannot resolve: {e}")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| Error::new(ErrorKind::Unreachable, format!("etcd {endpoint}: resolves to no address")))
}

/// Connects and sends `POST path` with a JSON body.
fn send(endpoint: &str, path: &str, body: &[u8], deadline: Instant) -> Result<TcpStream, Error> {
    let addr = resolve(endpoint)?;
    let stream = TcpStream::connect_timeout(&addr, remaining(deadline, "connect", endpoint)?)
        .map_err(|e| io_error("connect", endpoint, &e))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_write_timeout(Some(remaining(deadline, "send", endpoint)?))
        .map_err(|e| io_error("send", endpoint, &e))?;
    let head = format!(
        "POST {path} HTTP/1.0\r\nHost: {endpoint}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    (&stream).write_all(&request).map_err(|e| io_error("send", endpoint, &e))?;
    Ok(stream)
}

/// One read into `buf`, at most until `deadline`: the bytes read, 0 at EOF.
fn read_some(stream: &TcpStream, buf: &mut Vec<u8>, deadline: Instant, endpoint: &str) -> Result<usize, Error> {
    stream
        .set_read_timeout(Some(remaining(deadline, "receive", endpoint)?))
        .map_err(|e| io_error("receive", endpoint, &e))?;
    let mut chunk = [0u8; 8192];
    loop {
        match (&*stream).read(&mut chunk) {
            Ok(n) => {
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                return Ok(n);
            }
            Err(e) if e.kind() == IoKind::Interrupted => {}
            Err(e) => return Err(io_error("receive", endpoint, &e)),
        }
    }
}

/// A parsed response head.
struct Head {
    status: u16,
    content_length: Option<usize>,
    /// Bytes of `buf` the head took.
    len: usize,
}

fn parse_head(buf: &[u8], endpoint: &str) -> Result<Option<Head>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let bad = |why: String| Error::new(ErrorKind::BadResponse, format!("etcd {endpoint}: {why}"));
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => {
            let status = response.code.unwrap_or(0);
            let mut content_length = None;
            for header in response.headers.iter() {
                if header.name.eq_ignore_ascii_case("content-length") {
                    let value = std::str::from_utf8(header.value).ok().and_then(|v| v.trim().parse().ok());
                    content_length = Some(value.ok_or_else(|| bad("a malformed Content-Length".into()))?);
                } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(bad("a transfer-encoded body answered an HTTP/1.0 request".into()));
                }
            }
            Ok(Some(Head { status, content_length, len }))
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => Ok(None),
        Ok(httparse::Status::Partial) => Err(bad(format!("a response head longer than {MAX_HEAD} bytes"))),
        Err(err) => Err(bad(format!("a malformed response head: {err}"))),
    }
}

/// Reads up to the end of the head; returns it and the body bytes already read.
fn read_head(stream: &TcpStream, deadline: Instant, endpoint: &str) -> Result<(Head, Vec<u8>), Error> {
    let mut buf = Vec::new();
    loop {
        if let Some(head) = parse_head(&buf, endpoint)? {
            let body = buf.split_off(head.len.min(buf.len()));
            return Ok((head, body));
        }
        if read_some(stream, &mut buf, deadline, endpoint)? == 0 {
            return Err(Error::new(
                ErrorKind::Unreachable,
                format!("etcd {endpoint}: the connection closed before a response"),
            ));
        }
    }
}

/// An error answer of the gateway: `{"error": ..., "code": N, "message": ...}`.
fn rejected(status: u16, body: &[u8], endpoint: &str) -> Error {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct GatewayError {
        code: i64,
        message: String,
        error: String,
    }
    match serde_json::from_slice::<GatewayError>(body) {
        Ok(e) => {
            let text = if e.message.is_empty() { e.error } else { e.message };
            Error::new(ErrorKind::Rejected { grpc_code: e.code }, format!("etcd {endpoint}: HTTP {status}: {text}"))
        }
        Err(_) => Error::new(
            ErrorKind::BadResponse,
            format!("etcd {endpoint}: HTTP {status}: {}", String::from_utf8_lossy(body.get(..200).unwrap_or(body))),
        ),
    }
}

/// POSTs `body` to `path` and returns the body of a 200 answer; any other
/// status is [`ErrorKind::Rejected`] with etcd's message.
pub fn post(endpoint: &str, path: &str, body: &[u8], deadline: Instant) -> Result<Vec<u8>, Error> {
    let stream = send(endpoint, path, body, deadline)?;
    let (head, mut body) = read_head(&stream, deadline, endpoint)?;
    loop {
        if let Some(len) = head.content_length {
            if body.len() >= len {
                body.truncate(len);
                break;
            }
        }
        if body.len() > MAX_BODY {
            return Err(Error::new(
                ErrorKind::BadResponse,
                format!("etcd {endpoint}: a response body larger than {MAX_BODY} bytes"),
            ));
        }
        if read_some(&stream, &mut body, deadline, endpoint)? == 0 {
            if head.content_length.is_some() {
                return Err(Error::new(ErrorKind::Unreachable, format!("etcd {endpoint}: the body was cut short")));
            }
            break;
        }
    }
    if head.status != 200 {
        return Err(rejected(head.status, &body, endpoint));
    }
    Ok(body)
}

/// The body of a streaming answer (a watch): one JSON message per line.
pub struct LineStream {
    stream: TcpStream,
    buf: Vec<u8>,
    endpoint: String,
}

impl LineStream {
    /// POSTs `body` to `path` and, once a 200 head arrived (by `deadline`),
    /// returns the body as a stream of lines.
    pub fn open(endpoint: &str, path: &str, body: &[u8], deadline: Instant) -> Result<LineStream, Error> {
        let stream = send(endpoint, path, body, deadline)?;
        let (head, buf) = read_head(&stream, deadline, endpoint)?;
        if head.status != 200 {
            let mut body = buf;
            while body.len() < 64 * 1024 && read_some(&stream, &mut body, deadline, endpoint).unwrap_or(0) > 0 {}
            return Err(rejected(head.status, &body, endpoint));
        }
        keep_probing(&stream);
        Ok(LineStream { stream, buf, endpoint: endpoint.to_string() })
    }

    /// The next line (without its newline), waiting as long as it takes
    /// unless `stopped()` ([`ErrorKind::Stopped`], looked at every 100 ms); the end of the body or
    /// a broken connection is [`ErrorKind::Unreachable`].
    pub fn next_line(&mut self, stopped: &dyn Fn() -> bool) -> Result<Vec<u8>, Error> {
        let endpoint = self.endpoint.as_str();
        let mut scanned = 0;
        loop {
            if let Some(at) = self.buf.get(scanned..).and_then(|b| b.iter().position(|&c| c == b'\n')) {
                let mut line: Vec<u8> = self.buf.drain(..=scanned + at).collect();
                line.pop();
                return Ok(line);
            }
            scanned = self.buf.len();
            if self.buf.len() > MAX_BODY {
                return Err(Error::new(
                    ErrorKind::BadResponse,
                    format!("etcd {endpoint}: a streamed message larger than {MAX_BODY} bytes"),
                ));
            }
            if stopped() {
                return Err(Error::new(ErrorKind::Stopped, "stopped"));
            }
            match read_some(&self.stream, &mut self.buf, Instant::now() + STOP_POLL, endpoint) {
                Ok(0) => {
                    return Err(Error::new(ErrorKind::Unreachable, format!("etcd {endpoint}: the stream ended")));
                }
                Ok(_) => {}
                Err(err) if err.kind == ErrorKind::Timeout => {}
                Err(err) => return Err(err),
            }
        }
    }
}

/// A watch connection may stay silent for hours; TCP keepalive probes find
/// a peer that vanished without closing within about 8 s.
fn keep_probing(stream: &TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(stream, sockopt::KeepAlive, &true);
    let _ = setsockopt(stream, sockopt::TcpKeepIdle, &5);
    let _ = setsockopt(stream, sockopt::TcpKeepInterval, &1);
    let _ = setsockopt(stream, sockopt::TcpKeepCount, &3);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A one-shot server that answers the first request with `answer`.
    fn answer_once(answer: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        thread::spawn(move || {
            if let Ok((mut conn, _)) = listener.accept() {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(answer);
            }
        });
        endpoint
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn a_body_ends_at_its_content_length_or_at_the_close() {
        let endpoint = answer_once(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}extra");
        assert_eq!(post(&endpoint, "/v3/x", b"{}", soon()).unwrap(), b"{}");
        let endpoint = answer_once(b"HTTP/1.0 200 OK\r\n\r\n{\"a\":1}");
        assert_eq!(post(&endpoint, "/v3/x", b"{}", soon()).unwrap(), b"{\"a\":1}");
    }

    #[test]
    fn an_error_status_carries_etcds_code_and_message() {
        let endpoint = answer_once(
            b"HTTP/1.0 404 Not Found\r\n\r\n{\"error\":\"lease not found\",\"message\":\"lease not found\",\"code\":5}",
        );
        let err = post(&endpoint, "/v3/lease/revoke", b"{}", soon()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Rejected { grpc_code: 5 });
        assert!(err.text.contains("lease not found"), "{}", err.text);
    }

    #[test]
    fn garbage_a_cut_body_and_a_silent_peer_are_errors() {
        let endpoint = answer_once(b"NOT HTTP\r\n\r\n");
        assert_eq!(post(&endpoint, "/", b"", soon()).unwrap_err().kind, ErrorKind::BadResponse);
        let endpoint = answer_once(b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\n{}");
        assert_eq!(post(&endpoint, "/", b"", soon()).unwrap_err().kind, ErrorKind::Unreachable);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let started = Instant::now();
        let err = post(&endpoint, "/", b"", Instant::now() + Duration::from_millis(300)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout, "{}", err.text);
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }

    #[test]
    fn a_refused_connection_is_unreachable() {
        let endpoint = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().to_string()
        };
        assert_eq!(post(&endpoint, "/", b"", soon()).unwrap_err().kind, ErrorKind::Unreachable);
    }

    #[test]
    fn a_stream_yields_lines_and_stops_when_asked() {
        let endpoint = answer_once(b"HTTP/1.0 200 OK\r\n\r\n{\"n\":1}\n{\"n\":2}\n{\"n\"");
        let mut lines = LineStream::open(&endpoint, "/v3/watch", b"{}", soon()).unwrap();
        let go = || false;
        assert_eq!(lines.next_line(&go).unwrap(), b"{\"n\":1}");
        assert_eq!(lines.next_line(&go).unwrap(), b"{\"n\":2}");
        // The server closed mid-line.
        assert_eq!(lines.next_line(&go).unwrap_err().kind, ErrorKind::Unreachable);

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let server = thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            conn.write_all(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
            // Silent until the client goes.
            let _ = conn.read(&mut buf);
        });
        let mut lines = LineStream::open(&endpoint, "/v3/watch", b"{}", soon()).unwrap();
        let stop = || true;
        assert_eq!(lines.next_line(&stop).unwrap_err().kind, ErrorKind::Stopped);
        drop(lines);
        server.join().unwrap();
    }
}
