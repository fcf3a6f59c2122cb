//! brpc's builtin pages on the server's own port: a connection whose first
//! bytes are not baidu_std is HTTP, and [`BuiltinServices`] answers it.
//!
//! | page | what |
//! | --- | --- |
//! | `/health` | `OK` |
//! | `/status` | the server; per method: calls, errors, ELIMIT refusals, concurrency and its limit, latency percentiles |
//! | `/vars`, `/vars/NAME` | every counter, `name : value` |
//! | `/brpc_metrics` | the same in Prometheus' text format |
//! | `/connections` | one row per connection: peer, age, streams, bytes in/out, unwritten bytes |
//! | `/version` | the version the program set (brpc's `Server::set_version`), else the library's name and version |
//!
//! Plain text, or HTML when a browser asks (see [`http::Request::wants_html`]).
//! One request per connection (the response says `Connection: close`); a
//! request head over [`http::MAX_REQUEST_HEAD`] bytes or with too many
//! headers gets 413, one that does not parse 400, a method other than GET
//! or HEAD 405, and the connection is closed after each. The server closes
//! a connection that has not sent its whole request within
//! [`crate::rpc::HTTP_REQUEST_TIMEOUT`].

pub mod http;
pub mod pages;

use std::sync::Arc;

use bytes::BytesMut;

use crate::rpc::{HttpProgress, HttpService, ServerView};
use crate::socket::Socket;
use http::{Parsed, Request, Response};

/// The pages; [`builtin_services`] makes them a server option.
pub struct BuiltinServices;

/// For [`crate::rpc::ServerOptions::builtin_services`].
pub fn builtin_services() -> Arc<dyn HttpService> {
    Arc::new(BuiltinServices)
}

impl HttpService for BuiltinServices {
    fn on_input(&self, server: ServerView<'_>, socket: &Socket, buf: &BytesMut) -> HttpProgress {
        match http::parse(buf) {
            Parsed::Partial => HttpProgress::NeedMore,
            Parsed::Refused(response) => {
                response.send(socket, false);
                HttpProgress::Answered
            }
            Parsed::Complete(request) => {
                let head_only = request.method == "HEAD";
                answer(&server, &request).send(socket, head_only);
                HttpProgress::Answered
            }
        }
    }
}

/// The response to a whole request.
pub fn answer(server: &ServerView<'_>, request: &Request) -> Response {
    if request.method != "GET" && request.method != "HEAD" {
        return Response::text(405, &format!("Method Not Allowed: {}\n", request.method));
    }
    let html = request.wants_html();
    let path = request.path.trim_end_matches('/');
    match path {
        "/health" => Response::text(200, "OK\n"),
        "/version" => Response::text(200, &version_text(server)),
        "/brpc_metrics" => Response::text(200, &pages::metrics(server)),
        "/vars" => {
            let text = pages::vars_text(&pages::vars(server));
            page(html, "vars", &text, || format!("<pre>{}</pre>\n", pages::escape(&text)))
        }
        "" | "/status" => {
            let (summary, table) = pages::status(server);
            let text = format!("{summary}\n\n{}", table.text());
            page(html, "status", &text, || format!("<p>{}</p>\n{}", pages::escape(&summary), table.html()))
        }
        "/connections" => {
            let table = pages::connections(server);
            page(html, "connections", &table.text(), || table.html())
        }
        _ => match path.strip_prefix("/vars/") {
            Some(name) => match pages::vars(server).into_iter().find(|var| var.name == name) {
                Some(var) => Response::text(200, &pages::vars_text(&[var])),
                None => Response::text(404, &format!("Not Found: no variable {name}\n")),
            },
            None => Response::text(404, &format!("Not Found: {}\n", request.path)),
        },
    }
}

/// brpc's `/version`: what the program set, else the library's own.
fn version_text(server: &ServerView<'_>) -> String {
    let set = server.version();
    if set.is_empty() {
        format!("brpc_stream/{}\n", env!("CARGO_PKG_VERSION"))
    } else {
        format!("{set}\n")
    }
}

fn page(html: bool, title: &str, text: &str, body: impl FnOnce() -> String) -> Response {
    if html {
        Response::html(pages::html_page(title, &body()))
    } else {
        Response::text(200, text)
    }
}
