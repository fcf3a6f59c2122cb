//! The server's listening socket. Bound as std binds one (`SO_REUSEADDR`,
//! close-on-exec), but with a backlog the system allows rather than std's
//! fixed 128: a burst of connects arriving while the server cannot accept
//! (it is at its descriptor limit, or busy) waits in the kernel's queue
//! instead of being dropped.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage};

/// Where the system's bound on a listen backlog is read.
const SOMAXCONN_PATH: &str = "/proc/sys/net/core/somaxconn";

/// The system's largest listen backlog (`net.core.somaxconn`); the kernel
/// caps any backlog asked for at it.
pub fn system_max_backlog() -> Option<u32> {
    std::fs::read_to_string(SOMAXCONN_PATH).ok()?.trim().parse().ok()
}

/// A non-blocking listener on `address`, with `backlog` pending connections
/// (0: the system's largest, `net.core.somaxconn`).
pub fn listen(address: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let os = |errno: nix::errno::Errno| std::io::Error::from_raw_os_error(errno as i32);
    let family = if address.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
    let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
    let fd: OwnedFd = socket(family, SockType::Stream, flags, None).map_err(os)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(os)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(address)).map_err(os)?;
    // Past somaxconn the kernel caps it, so asking for the most is asking
    // for somaxconn (brpc asks for 65535 the same way).
    let backlog = match backlog {
        0 => system_max_backlog().unwrap_or(u32::MAX),
        asked => asked,
    };
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    // SAFETY: listen(2) on a socket this function owns; no memory is passed.
    if unsafe { libc::listen(fd.as_raw_fd(), backlog) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}
