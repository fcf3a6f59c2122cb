//! The builtin pages on a server's own port, over real TCP: each page,
//! text and HTML, the refusals (400, 405, 413, 404), and the switch that
//! turns them off.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use brpc_stream::portal::builtin_services;
use brpc_stream::rpc::{Server, ServerCall, ServerOptions};
use bytes::Bytes;

fn server(builtin: bool) -> (Server, SocketAddr) {
    let server = Server::new();
    let echo = Arc::new(|call: ServerCall| call.respond(Ok((Bytes::new(), Bytes::new()))));
    server.add_method("example.EchoService", "Echo", echo.clone()).unwrap();
    server.add_method("bench.StreamService", "Open", echo).unwrap();
    let options = ServerOptions { builtin_services: builtin.then(builtin_services), ..Default::default() };
    server.start("127.0.0.1:0", options).unwrap();
    let address = server.listen_address().unwrap();
    (server, address)
}

/// Sends `request` and reads until the server closes: (status, whole response).
fn exchange(address: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut conn = TcpStream::connect(address).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    conn.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = conn.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.get(9..12).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, response)
}

fn get(address: SocketAddr, path: &str) -> (u16, String) {
    exchange(address, format!("GET {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: curl/8\r\n\r\n").as_bytes())
}

#[test]
fn every_page_answers_in_plain_text() {
    let (_server, address) = server(true);
    let (status, health) = get(address, "/health");
    assert_eq!(status, 200, "{health}");
    assert!(health.ends_with("\r\n\r\nOK\n"), "{health}");
    assert!(health.contains("Content-Type: text/plain"), "{health}");

    let (status, page) = get(address, "/status");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("example.EchoService") && page.contains("Echo"), "{page}");
    assert!(page.contains("bench.StreamService") && page.contains("Open"), "{page}");

    let (status, page) = get(address, "/vars");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("rpc_socket_count : "), "{page}");
    assert!(page.contains(&format!("rpc_server_{}_connection_count : ", address.port())), "{page}");

    let (status, page) = get(address, "/vars/rpc_socket_count");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page.lines().filter(|l| l.contains(" : ")).count(), 1, "{page}");
    assert_eq!(get(address, "/vars/no_such_variable").0, 404);

    let (status, page) = get(address, "/brpc_metrics");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("# TYPE rpc_socket_count gauge\nrpc_socket_count "), "{page}");
    let method = format!("rpc_server_{}_example_echo_service_echo", address.port());
    assert!(page.contains(&format!("# TYPE {method} summary\n{method}{{quantile=\"0.5\"}} ")), "{page}");
    assert!(page.contains(&format!("\n{method}_count 0\n")), "{page}");

    let (status, page) = get(address, "/version");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("brpc_stream/"), "{page}");

    assert_eq!(get(address, "/no_such_page").0, 404);
}

#[test]
fn version_shows_what_the_program_set() {
    let (server, address) = server(true);
    server.set_version("selective_echo_server 2.1");
    let (status, page) = get(address, "/version");
    assert_eq!(status, 200, "{page}");
    assert_eq!(page.lines().last(), Some("selective_echo_server 2.1"), "{page}");
    server.set_version("");
    let (_, page) = get(address, "/version");
    assert!(page.contains("brpc_stream/"), "{page}");
}

#[test]
fn connections_lists_the_asking_connection_with_its_traffic() {
    let (_server, address) = server(true);
    let (status, page) = get(address, "/connections");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("peer") && page.contains("unwritten"), "{page}");
    // The row of the connection asking: it has read its own request.
    let row = page.lines().find(|line| line.contains("127.0.0.1:")).unwrap_or_else(|| panic!("{page}"));
    let bytes_in: u64 = row.split_whitespace().nth(4).and_then(|v| v.parse().ok()).unwrap_or(0);
    assert!(bytes_in > 0, "{row}");
}

#[test]
fn a_browser_gets_html() {
    let (_server, address) = server(true);
    let request =
        "GET /status HTTP/1.1\r\nHost: t\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: text/html\r\n\r\n";
    let (status, page) = exchange(address, request.as_bytes());
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Content-Type: text/html"), "{page}");
    assert!(page.contains("<td>example.EchoService</td>"), "{page}");
}

#[test]
fn bad_oversized_and_unsupported_requests_are_refused_and_closed() {
    let (_server, address) = server(true);
    assert_eq!(exchange(address, b"GARBAGE\x01\x02 / HTTP/1.1\r\n\r\n").0, 400);
    assert_eq!(exchange(address, b"POST /status HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0, 405);
    let mut huge = b"GET /status HTTP/1.1\r\nX-Long: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    assert_eq!(exchange(address, &huge).0, 413);
    // The server goes on answering.
    assert_eq!(get(address, "/health").0, 200);
}

#[test]
fn without_builtin_services_http_gets_the_connection_closed() {
    let (_server, address) = server(false);
    let (status, response) = get(address, "/health");
    assert_eq!(status, 0);
    assert!(response.is_empty(), "{response}");
}
