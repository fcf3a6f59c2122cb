//! The error every layer from the socket up returns: brpc's number
//! ([`crate::errno`]), a text saying what failed, and the lower error that
//! caused it, if any. Only `src/ffi` turns it into a C `int` and a C string.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::errno;

/// A failure as brpc reports one: `code` is what C callers compare against,
/// `text` is what they read. Displayed as brpc shows it, `[E<code>]<text>`,
/// the code once: a text that starts with `[E<code>]` already (what a C++
/// `Controller::SetFailed` stores, what a client's call errors read) is
/// shown as it is.
#[derive(Clone)]
pub struct Error {
    code: i32,
    /// `None`: the code's own description, made only when read (a full
    /// window's `EAGAIN` is a hot path).
    text: Option<Cow<'static, str>>,
    /// Shared, so a socket's failure can be handed to everything riding on
    /// it and still name its cause.
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// A result whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// `code` (0 is no failure: it becomes `EINTERNAL`) with `text`.
    pub fn new(code: i32, text: impl Into<Cow<'static, str>>) -> Error {
        let code = if code == 0 { errno::EINTERNAL } else { code };
        Error { code, text: Some(text.into()), source: None }
    }

    /// `code` with brpc's (or the C library's) description of it as text.
    pub fn from_code(code: i32) -> Error {
        let code = if code == 0 { errno::EINTERNAL } else { code };
        Error { code, text: None, source: None }
    }

    /// The same error, caused by `source` (kept for [`std::error::Error::source`]).
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Error {
        self.source = Some(Arc::new(source));
        self
    }

    /// The number, never 0.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The text as given, without an `[E<code>]` of its own (C callers get
    /// the code apart).
    pub fn text(&self) -> Cow<'_, str> {
        match &self.text {
            Some(text) => Cow::Borrowed(text),
            None => Cow::Owned(errno::describe(self.code)),
        }
    }

    /// Whether the text starts with this error's `[E<code>]` already.
    pub fn text_shows_code(&self) -> bool {
        let Some(text) = &self.text else { return false };
        let number = text.strip_prefix("[E").and_then(|rest| rest.split_once(']')).map(|(number, _)| number);
        number.and_then(|n| n.parse::<i32>().ok()) == Some(self.code)
    }
}

impl From<i32> for Error {
    /// An errno-style code from a lower layer, described.
    fn from(code: i32) -> Error {
        Error::from_code(code)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text_shows_code() {
            f.write_str(&self.text())
        } else {
            write!(f, "[E{}]{}", self.code, self.text())
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("code", &self.code).field("text", &self.text());
        if let Some(source) = &self.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for Error {
    /// Equal when the code and text are (the cause is context, not identity).
    fn eq(&self, other: &Error) -> bool {
        self.code == other.code && self.text() == other.text()
    }
}

impl Eq for Error {}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn displays_the_code_once_before_the_text() {
        let error = Error::new(libc::ETIMEDOUT, "connect timed out");
        assert_eq!(error.to_string(), "[E110]connect timed out");
        assert_eq!(error.text(), "connect timed out");
        assert_eq!(error.code(), libc::ETIMEDOUT);
    }

    #[test]
    fn a_text_that_shows_its_code_is_not_prefixed_again() {
        let set_failed = Error::new(4242, "[E4242]the handler says no");
        assert!(set_failed.text_shows_code());
        assert_eq!(set_failed.to_string(), "[E4242]the handler says no");
        // Another code's prefix is part of the text.
        let other = Error::new(libc::ETIMEDOUT, "[E1003]bad request [E2001]then worse");
        assert!(!other.text_shows_code());
        assert_eq!(other.to_string(), "[E110][E1003]bad request [E2001]then worse");
        assert!(!Error::from_code(libc::ETIMEDOUT).text_shows_code());
        assert!(!Error::new(libc::ETIMEDOUT, "[E11").text_shows_code());
    }

    #[test]
    fn a_bare_code_is_described() {
        assert_eq!(Error::from(errno::EEOF).text(), "Got EOF");
        assert_eq!(Error::from_code(libc::ECONNRESET).text(), "Connection reset by peer");
    }

    #[test]
    fn zero_is_never_a_failure_code() {
        assert_eq!(Error::new(0, "odd").code(), errno::EINTERNAL);
        assert_eq!(Error::from_code(0).code(), errno::EINTERNAL);
    }

    #[test]
    fn keeps_its_cause() {
        let cause = Error::new(errno::EOVERCROWDED, "the host is overcrowded");
        let error = Error::new(libc::EINVAL, "the stream's host refused the write").caused_by(cause.clone());
        let source = error.source().and_then(|s| s.downcast_ref::<Error>());
        assert_eq!(source, Some(&cause));
        assert_eq!(error.to_string(), "[E22]the stream's host refused the write");
        assert!(format!("{error:?}").contains("[E1011]the host is overcrowded"));
    }
}
