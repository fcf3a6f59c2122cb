//! The library's one logging path. Every message, the library's own and
//! the C++ facade's `LOG(...)`, goes through [`fn@write`]: a minimum level
//! filters it, then the sink the program set receives it whole, or the
//! default sink writes it to stderr as one line in brpc's default format
//! (`I1201 09:30:00.123456  4242     0 src/file.cpp:42 Func] text`: the
//! thread id, the bthread id, the file as compiled, the line and, for a
//! C++ `LOG`, the function).

use std::ffi::c_void;
use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicI32, Ordering};

use parking_lot::RwLock;

/// brpc's severities (`butil/logging.h`), with its numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum Level {
    Verbose = -1,
    Info = 0,
    Notice = 1,
    Warning = 2,
    Error = 3,
    Fatal = 4,
}

impl Level {
    /// The level for a C `int`; values outside brpc's range are clamped.
    pub fn from_c(level: i32) -> Level {
        match level {
            i32::MIN..=-1 => Level::Verbose,
            0 => Level::Info,
            1 => Level::Notice,
            2 => Level::Warning,
            3 => Level::Error,
            _ => Level::Fatal,
        }
    }

    /// The first letter of brpc's severity name, as its line prefix uses.
    fn letter(self) -> char {
        match self {
            Level::Verbose => 'V',
            Level::Info => 'I',
            Level::Notice => 'N',
            Level::Warning => 'W',
            Level::Error => 'E',
            Level::Fatal => 'F',
        }
    }
}

/// A program's sink: receives the level, the source file (NUL-terminated),
/// the line, the message (not NUL-terminated, no trailing newline) and its
/// length, and the `user` pointer given with it. Called on any thread,
/// possibly concurrently; it must not call back into the library's logging.
pub type Sink = extern "C" fn(
    level: i32,
    file: *const std::ffi::c_char,
    line: i32,
    message: *const u8,
    len: usize,
    user: *mut c_void,
);

#[derive(Clone, Copy)]
struct InstalledSink {
    sink: Sink,
    user: *mut c_void,
}

// SAFETY: the program that installs a sink promises (brpc_log_set_sink's
// contract) that it and its `user` pointer may be used from any thread.
unsafe impl Send for InstalledSink {}
// SAFETY: as for Send: the sink is callable from any thread at once.
unsafe impl Sync for InstalledSink {}

static MIN_LEVEL: AtomicI32 = AtomicI32::new(Level::Info as i32);
static SINK: RwLock<Option<InstalledSink>> = RwLock::new(None);

/// Messages below `level` are dropped from now on (default: `Info`).
pub fn set_min_level(level: Level) {
    MIN_LEVEL.store(level as i32, Ordering::Relaxed);
}

/// The current minimum level.
pub fn min_level() -> Level {
    Level::from_c(MIN_LEVEL.load(Ordering::Relaxed))
}

/// Whether a message at `level` would be written.
pub fn enabled(level: Level) -> bool {
    level as i32 >= MIN_LEVEL.load(Ordering::Relaxed)
}

/// Sends every later message to `sink` with `user`; `None` restores stderr.
pub fn set_sink(sink: Option<(Sink, *mut c_void)>) {
    *SINK.write() = sink.map(|(sink, user)| InstalledSink { sink, user });
}

/// Writes one message at `level` from `file:line`, if the level is enabled.
pub fn write(level: Level, file: &str, line: u32, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let message = match args.as_str() {
        Some(text) => std::borrow::Cow::Borrowed(text),
        None => std::borrow::Cow::Owned(args.to_string()),
    };
    write_str(level, file, line, &message);
}

/// [`fn@write`] for a message already formatted.
pub fn write_str(level: Level, file: &str, line: u32, message: &str) {
    write_from(level as i32, file, line, "", message)
}

/// A C++ `LOG` statement's message (the C entry point's path), which its
/// caller decided to write: `severity` is brpc's number, `-n` for a
/// `VLOG(n)`; `func` the function it is in ("" for none).
pub fn write_from(severity: i32, file: &str, line: u32, func: &str, message: &str) {
    let level = Level::from_c(severity);
    let installed = *SINK.read();
    match installed {
        Some(InstalledSink { sink, user }) => {
            let file = std::ffi::CString::new(file.replace('\0', "")).unwrap_or_default();
            let line = i32::try_from(line).unwrap_or(i32::MAX);
            sink(level as i32, file.as_ptr(), line, message.as_ptr(), message.len(), user);
        }
        None => {
            let at = Site { file, line, func };
            let line = format_line(severity, &at, message, &now_local(), current_tid());
            // One write per line: lines of concurrent threads never interleave.
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

/// The wall-clock time split as a log prefix needs it.
struct Stamp {
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
}

fn now_local() -> Stamp {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    // SAFETY: `tv` is a valid, writable timeval; the timezone argument may be NULL.
    unsafe { libc::gettimeofday(&mut tv, std::ptr::null_mut()) };
    // SAFETY: an all-zero `tm` is a valid value for localtime_r to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
    unsafe { libc::localtime_r(&tv.tv_sec, &mut tm) };
    let field = |v: libc::c_int| u32::try_from(v).unwrap_or(0);
    Stamp {
        month: field(tm.tm_mon + 1),
        day: field(tm.tm_mday),
        hour: field(tm.tm_hour),
        minute: field(tm.tm_min),
        second: field(tm.tm_sec),
        micros: u32::try_from(tv.tv_usec).unwrap_or(0),
    }
}

fn current_tid() -> i64 {
    // SAFETY: gettid has no preconditions.
    i64::from(unsafe { libc::gettid() })
}

/// Where a message was logged from.
struct Site<'a> {
    file: &'a str,
    line: u32,
    func: &'a str,
}

/// brpc's line with its default flags: the severity's letter (`V<n> ` for
/// a `VLOG(n)`), MMDD hh:mm:ss.uuuuuu, the thread id, the bthread id,
/// file:line as compiled, the function when known, `] `, the message, a
/// newline. brpc prints 0 for the bthread id on a thread that is not a
/// bthread, and every thread here is a pthread.
fn format_line(severity: i32, site: &Site<'_>, message: &str, at: &Stamp, tid: i64) -> String {
    let severity = if severity < 0 {
        format!("V{} ", severity.unsigned_abs())
    } else {
        Level::from_c(severity).letter().to_string()
    };
    let func = if site.func.is_empty() { String::new() } else { format!(" {}", site.func) };
    format!(
        "{}{:02}{:02} {:02}:{:02}:{:02}.{:06} {:>5} {:>5} {}:{}{}] {}\n",
        severity,
        at.month,
        at.day,
        at.hour,
        at.minute,
        at.second,
        at.micros,
        tid,
        0,
        site.file,
        site.line,
        func,
        message.trim_end_matches('\n')
    )
}

/// Logs at error level through [`fn@write`].
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, file!(), line!(), format_args!($($arg)*)) };
}
/// Logs at warning level through [`fn@write`].
macro_rules! log_warning {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warning, file!(), line!(), format_args!($($arg)*)) };
}
/// Logs at info level through [`fn@write`].
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, file!(), line!(), format_args!($($arg)*)) };
}
/// Logs at verbose (brpc's DEBUG) level through [`fn@write`].
#[allow(unused_macros)]
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Verbose, file!(), line!(), format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[test]
    fn a_line_has_brpcs_default_prefix_and_one_newline() {
        let at = Stamp { month: 12, day: 1, hour: 9, minute: 5, second: 7, micros: 42 };
        let site = Site { file: "src/a/b.rs", line: 17, func: "" };
        let line = format_line(Level::Warning as i32, &site, "hello\n", &at, 4242);
        assert_eq!(line, "W1201 09:05:07.000042  4242     0 src/a/b.rs:17] hello\n");
        let site = Site { file: "/abs/server.cpp", line: 61, func: "Echo" };
        let line = format_line(Level::Info as i32, &site, "x", &at, 123456);
        assert_eq!(line, "I1201 09:05:07.000042 123456     0 /abs/server.cpp:61 Echo] x\n");
    }

    #[test]
    fn a_vlog_line_shows_its_verbosity_as_brpc_does() {
        let at = Stamp { month: 1, day: 2, hour: 3, minute: 4, second: 5, micros: 6 };
        let site = Site { file: "a.cpp", line: 1, func: "main" };
        let line = format_line(-2, &site, "v", &at, 7);
        assert_eq!(line, "V2 0102 03:04:05.000006     7     0 a.cpp:1 main] v\n");
    }

    #[test]
    fn levels_outside_brpcs_range_are_clamped() {
        assert_eq!(Level::from_c(-7), Level::Verbose);
        assert_eq!(Level::from_c(2), Level::Warning);
        assert_eq!(Level::from_c(99), Level::Fatal);
    }

    static SEEN: Mutex<Vec<(i32, String, i32, String)>> = Mutex::new(Vec::new());

    extern "C" fn collect(
        level: i32,
        file: *const std::ffi::c_char,
        line: i32,
        msg: *const u8,
        len: usize,
        _: *mut c_void,
    ) {
        // SAFETY: write_str passes a live CString and a message slice valid for the call.
        let (file, msg) = unsafe {
            (
                std::ffi::CStr::from_ptr(file).to_string_lossy().into_owned(),
                String::from_utf8_lossy(std::slice::from_raw_parts(msg, len)).into_owned(),
            )
        };
        SEEN.lock().push((level, file, line, msg));
    }

    #[test]
    fn the_sink_gets_enabled_messages_whole_and_the_level_filters() {
        set_sink(Some((collect, std::ptr::null_mut())));
        log_warning!("shown {}", 1);
        set_min_level(Level::Error);
        log_warning!("hidden");
        log_error!("also shown");
        set_min_level(Level::Info);
        set_sink(None);
        let seen = SEEN.lock().clone();
        // Other tests of this process log too; keep this file's lines.
        let seen: Vec<_> = seen.into_iter().filter(|s| s.1.ends_with("log.rs")).collect();
        let texts: Vec<&str> = seen.iter().map(|s| s.3.as_str()).collect();
        assert_eq!(texts, ["shown 1", "also shown"]);
        assert_eq!(seen[0].0, Level::Warning as i32);
        assert!(seen[0].1.ends_with("log.rs"));
        assert!(seen[0].2 > 0);
    }
}
