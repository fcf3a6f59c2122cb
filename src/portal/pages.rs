//! What each page says: the variables (the library's counters and the
//! server's), the server's status, its connections, in plain text, HTML or
//! Prometheus' text format.

use std::fmt::Write as _;

use crate::rpc::{MethodSnapshot, ServerView};
use crate::socket::Socket;
use crate::stats;

/// One variable, named as brpc's bvar where brpc has a counterpart.
pub struct Var {
    pub name: String,
    pub value: u64,
    pub help: &'static str,
}

/// Every variable, sorted by name: the process-wide counters
/// (`brpc::GetStreamStats`), this server's (`rpc_server_<port>_*`) and its
/// methods' (`rpc_server_<port>_<service>_<method>_*`, as brpc names them).
pub fn vars(server: &ServerView<'_>) -> Vec<Var> {
    let mut vars = gauges(server);
    for method in server.method_statuses() {
        let prefix = method_prefix(server, &method);
        let latency = method.latency;
        let figures: [(&str, u64, &'static str); 8] = [
            ("count", method.calls, "Calls the method answered"),
            ("error", method.errors, "Calls the method answered with an error"),
            ("concurrency", method.concurrency as u64, "Calls of the method in flight"),
            ("latency_50", latency.p50_us, "Median latency of recent calls, us"),
            ("latency_90", latency.p90_us, "90th percentile latency of recent calls, us"),
            ("latency_99", latency.p99_us, "99th percentile latency of recent calls, us"),
            ("latency_999", latency.p999_us, "99.9th percentile latency of recent calls, us"),
            ("max_latency", latency.max_us, "Slowest recent call, us"),
        ];
        vars.extend(figures.into_iter().map(|(name, value, help)| Var {
            name: format!("{prefix}_{name}"),
            value,
            help,
        }));
    }
    vars.sort_by(|a, b| a.name.cmp(&b.name));
    vars
}

/// brpc's name of a method's variables: the server's prefix, then the
/// method's full name in lower case with `_` between words
/// (`example.EchoService.Echo` becomes `example_echo_service_echo`).
fn method_prefix(server: &ServerView<'_>, method: &MethodSnapshot) -> String {
    let mut name = server_prefix(server);
    name.push('_');
    let mut previous: Option<char> = None;
    for c in method.full_name().chars() {
        if c.is_ascii_uppercase() {
            if previous.is_some_and(|p| !p.is_ascii_uppercase()) && !name.ends_with('_') {
                name.push('_');
            }
            name.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('_') {
            name.push('_');
        }
        previous = Some(c);
    }
    name
}

/// The variables that are plain gauges: the library's and the server's.
fn gauges(server: &ServerView<'_>) -> Vec<Var> {
    let s = stats::snapshot();
    let library: [(&str, u64, &'static str); 24] = [
        ("rpc_socket_count", s.sockets_alive, "Sockets not yet recycled: connections, and one per stream"),
        ("brpc_stream_streams_alive", s.streams_alive, "Streams not yet recycled"),
        ("brpc_stream_streams_created", s.streams_created, "Streams created and not connected yet"),
        ("brpc_stream_streams_connected", s.streams_connected, "Streams connected"),
        ("brpc_stream_streams_closing", s.streams_closing, "Streams closed, their CLOSE not sent yet"),
        ("brpc_stream_streams_closed", s.streams_closed, "Streams ended, last callbacks or references pending"),
        ("brpc_stream_socket_bytes_read", s.socket_bytes_read, "Bytes read from TCP connections"),
        ("brpc_stream_socket_bytes_written", s.socket_bytes_written, "Bytes written into TCP connections"),
        ("brpc_stream_stream_messages_in", s.stream_messages_in, "Stream messages received"),
        ("brpc_stream_stream_bytes_in", s.stream_bytes_in, "Payload bytes of stream messages received"),
        ("brpc_stream_stream_messages_out", s.stream_messages_out, "Stream messages sent to their connection"),
        ("brpc_stream_stream_bytes_out", s.stream_bytes_out, "Payload bytes of stream messages sent"),
        ("brpc_stream_stream_data_frames_out", s.stream_data_frames_out, "DATA frames of stream messages sent"),
        ("brpc_stream_stream_bytes_unconsumed", s.stream_bytes_unconsumed, "Bytes streams wrote, not consumed yet"),
        ("brpc_stream_stream_writes", s.stream_writes, "Writes StreamWrite accepted"),
        ("brpc_stream_stream_writes_dropped", s.stream_writes_dropped, "Accepted stream writes never delivered"),
        ("brpc_stream_stream_bytes_dropped", s.stream_bytes_dropped, "Bytes of accepted stream writes never delivered"),
        ("brpc_stream_writes_queued", s.writes_queued, "Writes queued on any socket, not sent or dropped yet"),
        ("brpc_stream_writes_dropped", s.writes_dropped, "Writes a socket accepted and then failed"),
        ("brpc_stream_bytes_dropped", s.bytes_dropped, "Bytes of writes a socket accepted and then failed"),
        ("brpc_stream_connections_accepted", s.connections_accepted, "Connections servers accepted"),
        ("brpc_stream_connections_connected", s.connections_connected, "Client connects that succeeded"),
        ("brpc_stream_connect_failures", s.connect_failures, "Client connects that failed"),
        ("brpc_stream_connections_broken", s.connections_broken, "Established connections that failed abnormally"),
    ];
    let mut vars: Vec<Var> =
        library.into_iter().map(|(name, value, help)| Var { name: name.to_string(), value, help }).collect();
    let prefix = server_prefix(server);
    let services = server.services();
    let own: [(&str, u64, &'static str); 4] = [
        ("connection_count", server.connections().len() as u64, "Connections of this server"),
        ("service_count", services.len() as u64, "Services of this server"),
        ("concurrency", server.concurrency() as u64, "Calls of this server being handled"),
        ("uptime", server.uptime().as_secs(), "Seconds since this server started"),
    ];
    vars.extend(own.into_iter().map(|(name, value, help)| Var { name: format!("{prefix}_{name}"), value, help }));
    vars
}

/// brpc's prefix of a server's variables: `rpc_server_<port>`.
fn server_prefix(server: &ServerView<'_>) -> String {
    format!("rpc_server_{}", server.listen_address().map_or(0, |a| a.port()))
}

/// `/vars` as brpc prints it: `name : value`, one a line.
pub fn vars_text(vars: &[Var]) -> String {
    let mut out = String::new();
    for var in vars {
        let _ = writeln!(out, "{} : {}", var.name, var.value);
    }
    out
}

/// `/brpc_metrics`, as brpc exports its bvars: every variable a gauge,
/// but a method's latency a summary (quantiles in microseconds, `_count`
/// its calls) beside its `_error` and `_concurrency` gauges.
pub fn metrics(server: &ServerView<'_>) -> String {
    let mut out = String::new();
    let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    };
    let mut vars = gauges(server);
    vars.sort_by(|a, b| a.name.cmp(&b.name));
    for var in &vars {
        gauge(&mut out, &var.name, var.help, var.value);
    }
    for method in server.method_statuses() {
        let name = method_prefix(server, &method);
        let l = method.latency;
        let _ = writeln!(out, "# HELP {name} Latency of {} in microseconds\n# TYPE {name} summary", method.full_name());
        for (quantile, value) in
            [("0.5", l.p50_us), ("0.9", l.p90_us), ("0.99", l.p99_us), ("0.999", l.p999_us), ("1", l.max_us)]
        {
            let _ = writeln!(out, "{name}{{quantile=\"{quantile}\"}} {value}");
        }
        let _ = writeln!(out, "{name}_count {}", method.calls);
        gauge(&mut out, &format!("{name}_error"), "Calls answered with an error", method.errors);
        gauge(&mut out, &format!("{name}_concurrency"), "Calls in flight", method.concurrency as u64);
    }
    out
}

/// A table, printed as aligned text or as HTML.
pub struct Table {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn text(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        out
    }

    pub fn html(&self) -> String {
        let mut out = String::from("<table>\n<tr>");
        for header in &self.headers {
            let _ = write!(out, "<th>{}</th>", escape(header));
        }
        out.push_str("</tr>\n");
        for row in &self.rows {
            out.push_str("<tr>");
            for cell in row {
                let _ = write!(out, "<td>{}</td>", escape(cell));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
        out
    }
}

/// `/status`: the server, then one row per method.
pub fn status(server: &ServerView<'_>) -> (String, Table) {
    let summary = format!(
        "server {} (brpc_stream {}), up {} s, {} connections, {} calls being handled",
        server.listen_address().map_or_else(|| "not listening".to_string(), |a| a.to_string()),
        env!("CARGO_PKG_VERSION"),
        server.uptime().as_secs(),
        server.connections().len(),
        server.concurrency(),
    );
    let rows = server
        .method_statuses()
        .into_iter()
        .map(|m| {
            let limit = if m.max_concurrency == 0 { "-".to_string() } else { m.max_concurrency.to_string() };
            vec![
                m.service,
                m.method,
                m.calls.to_string(),
                m.errors.to_string(),
                m.rejected.to_string(),
                m.concurrency.to_string(),
                limit,
                m.latency.p50_us.to_string(),
                m.latency.p90_us.to_string(),
                m.latency.p99_us.to_string(),
                m.latency.p999_us.to_string(),
                m.latency.max_us.to_string(),
            ]
        })
        .collect();
    let headers = vec![
        "service",
        "method",
        "calls",
        "errors",
        "elimit",
        "concurrency",
        "max_concurrency",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "max_us",
    ];
    (summary, Table { headers, rows })
}

/// `/connections`: one row per connection the server holds.
pub fn connections(server: &ServerView<'_>) -> Table {
    let mut rows = Vec::new();
    for id in server.connections() {
        let Some(socket) = Socket::address_failed_as_well(id) else { continue };
        let traffic = socket.traffic();
        let state = match socket.failure() {
            Some(failure) => format!("failed E{}", failure.code()),
            None => "connected".to_string(),
        };
        rows.push(vec![
            id.to_string(),
            socket.remote().map_or_else(|| "-".to_string(), |a| a.to_string()),
            format!("{:.1}", traffic.age.as_secs_f64()),
            socket.riders().count().to_string(),
            traffic.bytes_read.to_string(),
            traffic.bytes_written.to_string(),
            traffic.unwritten.to_string(),
            state,
        ]);
    }
    Table { headers: vec!["socket", "peer", "age_s", "streams", "bytes_in", "bytes_out", "unwritten", "state"], rows }
}

/// An HTML page with the pages' links on top.
pub fn html_page(title: &str, body: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title>\n\
         <style>body{{font-family:sans-serif}} table{{border-collapse:collapse}} \
         td,th{{border:1px solid #999;padding:2px 8px;text-align:left}}</style></head>\n<body>\n<p>",
        escape(title)
    );
    for page in ["status", "vars", "connections", "brpc_metrics", "health", "version"] {
        let _ = write!(out, "<a href=\"/{page}\">{page}</a> ");
    }
    let _ = write!(out, "</p>\n<h1>{}</h1>\n{body}</body></html>\n", escape(title));
    out
}

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}
