//! Error numbers: the system's errno values plus brpc's own (1001–2006),
//! with brpc's numbering so C++ code comparing against them keeps working.

pub const ENOSERVICE: i32 = 1001;
pub const ENOMETHOD: i32 = 1002;
pub const EREQUEST: i32 = 1003;
pub const ERPCAUTH: i32 = 1004;
pub const ETOOMANYFAILS: i32 = 1005;
pub const EPCHANFINISH: i32 = 1006;
pub const EBACKUPREQUEST: i32 = 1007;
pub const ERPCTIMEDOUT: i32 = 1008;
pub const EFAILEDSOCKET: i32 = 1009;
pub const EHTTP: i32 = 1010;
pub const EOVERCROWDED: i32 = 1011;
pub const ERTMPPUBLISHABLE: i32 = 1012;
pub const ERTMPCREATESTREAM: i32 = 1013;
pub const EEOF: i32 = 1014;
pub const EUNUSED: i32 = 1015;
pub const ESSL: i32 = 1016;
pub const EH2RUNOUTSTREAMS: i32 = 1017;
pub const EINTERNAL: i32 = 2001;
pub const ERESPONSE: i32 = 2002;
pub const ELOGOFF: i32 = 2003;
pub const ELIMIT: i32 = 2004;
pub const ECLOSE: i32 = 2005;
pub const EITP: i32 = 2006;

/// A short description of `code`, brpc's wording for its own numbers and
/// the C library's for errno values.
pub fn describe(code: i32) -> String {
    let brpc = match code {
        ENOSERVICE => "Service not found",
        ENOMETHOD => "Method not found",
        EREQUEST => "Bad request",
        ERPCAUTH => "Unauthorized",
        ETOOMANYFAILS => "Too many sub calls failed",
        EPCHANFINISH => "ParallelChannel finished",
        EBACKUPREQUEST => "Sending backup request",
        ERPCTIMEDOUT => "RPC call is timed out",
        EFAILEDSOCKET => "Broken socket",
        EHTTP => "Bad http call",
        EOVERCROWDED => "The server is overcrowded",
        ERTMPPUBLISHABLE => "RtmpRetryingClientStream is publishable",
        ERTMPCREATESTREAM => "createStream was rejected by the RTMP server",
        EEOF => "Got EOF",
        EUNUSED => "The socket was not needed",
        ESSL => "SSL related error",
        EH2RUNOUTSTREAMS => "The H2 socket was run out of streams",
        EINTERNAL => "Internal Server Error",
        ERESPONSE => "Bad Response",
        ELOGOFF => "Server is stopping",
        ELIMIT => "Reached server's limit on resources",
        ECLOSE => "Close socket initiatively",
        EITP => "Failed Itp response",
        _ => "",
    };
    if !brpc.is_empty() {
        return brpc.to_string();
    }
    std::io::Error::from_raw_os_error(code).to_string().split(" (os error").next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_brpc_and_system_codes() {
        assert_eq!(describe(EEOF), "Got EOF");
        assert_eq!(describe(libc::ECONNRESET), "Connection reset by peer");
    }
}
