//! Per-call settings and results, as brpc's Controller keeps them.

use std::borrow::Cow;
use std::net::SocketAddr;

use crate::error::Error;
use crate::protocol::{BodyCoding, StreamSettings};
use crate::socket::SocketId;
use crate::stream::StreamId;

#[derive(Debug, Default, Clone)]
pub struct Controller {
    /// None: the channel's.
    pub timeout_ms: Option<i64>,
    /// None: the channel's.
    pub max_retry: Option<i32>,
    pub log_id: Option<i64>,
    /// brpc's request id (RpcRequestMeta field 7): sent with the request;
    /// on the server, the request's. Empty: none.
    pub request_id: String,
    /// The call's failure. Client: its text is what the program reads
    /// (`[E<code>]` first). Server: what the response carries.
    pub error: Option<Error>,
    pub remote: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    /// Client: the streams the next call sets up. Server: those accepted.
    pub streams: Vec<StreamId>,
    /// Server: the streams the request carries. Client: what the response
    /// said about the server's.
    pub remote_stream_settings: Option<StreamSettings>,
    /// Server: the connection the request came on.
    pub host: Option<SocketId>,
    /// Client: how the request is compressed and checksummed. Server: how
    /// it was.
    pub request_coding: BodyCoding,
    /// Server: how the response is compressed and checksummed. Client: how
    /// it was.
    pub response_coding: BodyCoding,
    /// Client: picks the server under consistent hashing.
    pub request_code: Option<u64>,
    /// Client: brpc's CallId (see `call_id`); 0 until asked for or a call
    /// starts.
    pub call_id: u64,
    /// Client, after a call: its latency, retries and backup request.
    pub latency_us: i64,
    pub retried_count: i32,
    pub has_backup_request: bool,
    /// Server: the ticket of a `NotifyOnCancel` callback waiting for the
    /// connection to fail (see `rpc::cancel`).
    pub cancel_watch: Option<u64>,
}

impl Controller {
    /// Fails the call with `code` (0 becomes `EINTERNAL`) and `text`.
    pub fn set_failed(&mut self, code: i32, text: &str) {
        self.error = Some(Error::new(code, text.to_string()));
    }

    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    pub fn error_code(&self) -> i32 {
        self.error.as_ref().map_or(0, Error::code)
    }

    pub fn has_remote_stream(&self) -> bool {
        self.remote_stream_settings.is_some()
    }

    pub fn error_text(&self) -> Cow<'_, str> {
        self.error.as_ref().map_or(Cow::Borrowed(""), Error::text)
    }
}
