//! Cutting whole frames off the front of a connection's read buffer,
//! whatever the read boundaries were.

use std::fmt;

use bytes::BytesMut;

use super::frame::{Header, Magic, RawFrame};

const HEADER_LEN: usize = RawFrame::HEADER_LEN;

/// What a connection accepts from its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A frame declaring a larger body fails the connection before any of
    /// the body is buffered.
    pub max_body_size: usize,
}

impl Limits {
    /// brpc's `max_body_size` default: 64 MiB.
    pub const DEFAULT_MAX_BODY_SIZE: usize = 64 * 1024 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body_size: Limits::DEFAULT_MAX_BODY_SIZE }
    }
}

/// The outcome of one [`Cutter::cut`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// A whole frame, removed from the front of the buffer.
    Frame(RawFrame),
    /// The buffer holds no whole frame yet; at least this many more bytes
    /// must arrive (`socket::make_room` makes room for them without
    /// copying what was cut before).
    NeedMore { at_least: usize },
    /// A whole frame was removed and discarded; the connection goes on.
    /// Log `reason`.
    Dropped { magic: Magic, reason: DropReason },
    /// The connection cannot go on: fail it with `error.code`. Every later
    /// cut returns the same error and leaves the buffer alone.
    Fatal(FatalError),
}

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// `meta_size > body_size`: there is no way to tell meta from payload.
    MetaLargerThanBody { meta_size: u32, body_size: u32 },
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::MetaLargerThanBody { meta_size, body_size } => {
                write!(f, "meta_size={meta_size} is bigger than body_size={body_size}")
            }
        }
    }
}

/// Which fatal error it was, for callers that tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatalKind {
    /// The bytes at a frame boundary are neither `PRPC` nor `STRM`.
    UnknownMagic,
    /// `body_size` is above [`Limits::max_body_size`].
    BodyTooBig,
}

/// A connection-fatal protocol error. The code is `EINVAL` for both kinds,
/// as brpc's `InputMessenger` fails the socket with `EINVAL` for an unknown
/// message and for a too-big one; the text says which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FatalError {
    pub kind: FatalKind,
    pub code: i32,
    pub text: String,
}

/// Cuts frames off a read buffer. One per connection: after a fatal error
/// it keeps answering with that error.
#[derive(Debug)]
pub struct Cutter {
    limits: Limits,
    failed: Option<FatalError>,
}

impl Cutter {
    pub fn new(limits: Limits) -> Self {
        Cutter { limits, failed: None }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Looks at the front of `buf`: removes and returns a whole frame,
    /// removes and reports a frame to drop, or says how many more bytes are
    /// needed. Call again after `Frame` and `Dropped`: more frames may be
    /// buffered already.
    pub fn cut(&mut self, buf: &mut BytesMut) -> Cut {
        if let Some(error) = &self.failed {
            return Cut::Fatal(error.clone());
        }
        let cut = self.cut_front(buf);
        if let Cut::Fatal(error) = &cut {
            self.failed = Some(error.clone());
        }
        cut
    }

    fn cut_front(&self, buf: &mut BytesMut) -> Cut {
        let Some(header) = Header::parse(buf) else {
            // A short prefix that can no longer become a magic fails now
            // rather than after the peer sends twelve bytes.
            let prefix = &buf[..buf.len().min(4)];
            if !Magic::could_start(prefix) {
                return Cut::Fatal(unknown_magic(prefix));
            }
            return Cut::NeedMore { at_least: HEADER_LEN.saturating_sub(buf.len()) };
        };
        let Some(magic) = header.magic else {
            return Cut::Fatal(unknown_magic(&buf[..4]));
        };
        let body_size = header.body_size as usize;
        if body_size > self.limits.max_body_size {
            return Cut::Fatal(FatalError {
                kind: FatalKind::BodyTooBig,
                code: libc::EINVAL,
                text: format!(
                    "a {} message of body_size={body_size} is bigger than max_body_size={}; \
                     the connection is closed",
                    magic.name(),
                    self.limits.max_body_size
                ),
            });
        }
        let frame_len = HEADER_LEN + body_size;
        if buf.len() < frame_len {
            return Cut::NeedMore { at_least: frame_len - buf.len() };
        }
        let mut frame = buf.split_to(frame_len).freeze();
        if header.meta_size > header.body_size {
            return Cut::Dropped {
                magic,
                reason: DropReason::MetaLargerThanBody { meta_size: header.meta_size, body_size: header.body_size },
            };
        }
        let payload = frame.split_off(HEADER_LEN + header.meta_size as usize);
        let meta = frame.split_off(HEADER_LEN);
        Cut::Frame(RawFrame { magic, meta, payload })
    }
}

fn unknown_magic(prefix: &[u8]) -> FatalError {
    FatalError {
        kind: FatalKind::UnknownMagic,
        code: libc::EINVAL,
        text: format!("unknown message: magic {:?} is neither PRPC nor STRM", prefix.escape_ascii().to_string()),
    }
}
