//! The HTTP of the builtin pages: one request per connection, parsed by
//! `httparse` within bounds, one response, then the connection closes.

use bytes::Bytes;

use crate::errno;
use crate::error::Error;
use crate::socket::Socket;

/// Largest request head (request line and headers) read: a longer one gets
/// 413 and the connection closed.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// Most headers in a request; more get 413 too.
pub const MAX_HEADERS: usize = 64;

/// A parsed request: what the pages need of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query.
    pub path: String,
    pub query: String,
    pub accept: String,
    pub user_agent: String,
}

/// What became of the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Complete(Request),
    Partial,
    /// Answer with this status and close.
    Refused(Response),
}

pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) if buf.len() > MAX_REQUEST_HEAD => {
            return Parsed::Refused(too_large(&format!("the request head is over {MAX_REQUEST_HEAD} bytes")));
        }
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(too_large(&format!("the request has over {MAX_HEADERS} headers")));
        }
        Err(err) => return Parsed::Refused(Response::text(400, &format!("Bad Request: {err}\n"))),
    }
    let target = request.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .unwrap_or_default()
    };
    Parsed::Complete(Request {
        method: request.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        accept: header("accept"),
        user_agent: header("user-agent"),
    })
}

fn too_large(why: &str) -> Response {
    Response::text(413, &format!("Payload Too Large: {why}\n"))
}

impl Request {
    /// HTML for browsers, plain text for everyone else, as brpc decides:
    /// `?console=1` asks for text, `?console=0` for HTML; otherwise a
    /// client that accepts text/html or calls itself Mozilla is a browser.
    pub fn wants_html(&self) -> bool {
        for pair in self.query.split('&') {
            if let Some(value) = pair.strip_prefix("console=") {
                return value == "0";
            }
        }
        self.accept.contains("text/html") || self.user_agent.starts_with("Mozilla/")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn text(status: u16, body: &str) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.to_string() }
    }

    pub fn html(body: String) -> Response {
        Response { status: 200, content_type: "text/html; charset=utf-8", body }
    }

    /// Writes the response (its head only for HEAD) and closes the
    /// connection once it is out.
    pub fn send(self, socket: &Socket, head_only: bool) {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            413 => "Payload Too Large",
            _ => "Error",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nServer: brpc_stream/{}\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len(),
            env!("CARGO_PKG_VERSION"),
        );
        if !head_only {
            out.push_str(&self.body);
        }
        // A failed socket refuses the write: nobody is left to answer.
        let _ = socket.write(Bytes::from(out), None);
        socket.close_after_flush(Error::new(errno::ECLOSE, "the HTTP response was sent"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(raw: &str) -> Request {
        match parse(raw.as_bytes()) {
            Parsed::Complete(request) => request,
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn a_request_splits_into_path_and_query() {
        let request = complete("GET /vars/x?console=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
        assert_eq!(request.path, "/vars/x");
        assert_eq!(request.query, "console=1");
        assert!(!request.wants_html());
    }

    #[test]
    fn a_browser_gets_html_and_curl_gets_text() {
        let browser = complete("GET / HTTP/1.1\r\nUser-Agent: Mozilla/5.0 (X11)\r\n\r\n");
        assert!(browser.wants_html());
        let accept = complete("GET / HTTP/1.1\r\nAccept: text/html,*/*\r\n\r\n");
        assert!(accept.wants_html());
        let curl = complete("GET / HTTP/1.1\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n");
        assert!(!curl.wants_html());
    }

    #[test]
    fn half_a_request_waits_for_more() {
        assert_eq!(parse(b"GET /status HTTP/1.1\r\nHost:"), Parsed::Partial);
    }

    #[test]
    fn garbage_is_a_bad_request() {
        match parse(b"\x01\x02\x03\x04 nonsense\r\n\r\n") {
            Parsed::Refused(response) => assert_eq!(response.status, 400),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn an_endless_head_is_too_large() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        while raw.len() <= MAX_REQUEST_HEAD {
            raw.extend_from_slice(b"X-Filler: yes\r\n");
        }
        match parse(&raw) {
            Parsed::Refused(response) => assert_eq!(response.status, 413),
            other => panic!("not refused: {other:?}"),
        }
    }
}
