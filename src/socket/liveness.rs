//! Dead-peer detection at the TCP level. A peer that stops answering
//! without closing (a crashed host, a cut cable, a firewall dropping the
//! flow) leaves a connection that no read or write ever fails, so a
//! `StreamWait` for its window would wait forever. Keepalive probes an idle
//! connection; `TCP_USER_TIMEOUT` bounds how long sent data (and probes)
//! may stay unacknowledged. Either way the kernel fails the connection with
//! `ETIMEDOUT`, and the socket fails with it.

use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use nix::sys::socket::{getsockopt, setsockopt, sockopt};

/// What a connection does to notice a silent peer. The default changes
/// nothing (the system's settings: no keepalive, no user timeout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Liveness {
    /// SO_KEEPALIVE: probe a connection that was idle for `keepalive_idle`.
    pub keepalive: bool,
    /// TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT (whole seconds, at least 1);
    /// None: the system's (`net.ipv4.tcp_keepalive_*`).
    pub keepalive_idle: Option<Duration>,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_count: Option<u32>,
    /// TCP_USER_TIMEOUT (milliseconds): sent data or probes unacknowledged
    /// this long fail the connection. None: the system's.
    pub user_timeout: Option<Duration>,
}

impl Liveness {
    /// Applies the settings to a TCP socket; the errno of the first that fails.
    pub(crate) fn apply(&self, fd: RawFd) -> Result<(), i32> {
        // SAFETY: the caller owns `fd`, open for this call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let seconds = |d: Duration| d.as_secs().clamp(1, u64::from(u32::MAX)) as u32;
        if self.keepalive {
            setsockopt(&fd, sockopt::KeepAlive, &true).map_err(|e| e as i32)?;
            if let Some(idle) = self.keepalive_idle {
                setsockopt(&fd, sockopt::TcpKeepIdle, &seconds(idle)).map_err(|e| e as i32)?;
            }
            if let Some(interval) = self.keepalive_interval {
                setsockopt(&fd, sockopt::TcpKeepInterval, &seconds(interval)).map_err(|e| e as i32)?;
            }
            if let Some(count) = self.keepalive_count {
                setsockopt(&fd, sockopt::TcpKeepCount, &count.max(1)).map_err(|e| e as i32)?;
            }
        }
        if let Some(timeout) = self.user_timeout {
            let ms = timeout.as_millis().clamp(1, u128::from(u32::MAX)) as u32;
            setsockopt(&fd, sockopt::TcpUserTimeout, &ms).map_err(|e| e as i32)?;
        }
        Ok(())
    }

    /// What the kernel has for `fd` (every field filled in), for checking.
    pub fn of(fd: RawFd) -> Result<Liveness, i32> {
        // SAFETY: the caller keeps `fd` open for this call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let get = |e: nix::Error| e as i32;
        Ok(Liveness {
            keepalive: getsockopt(&fd, sockopt::KeepAlive).map_err(get)?,
            keepalive_idle: Some(Duration::from_secs(getsockopt(&fd, sockopt::TcpKeepIdle).map_err(get)?.into())),
            keepalive_interval: Some(Duration::from_secs(
                getsockopt(&fd, sockopt::TcpKeepInterval).map_err(get)?.into(),
            )),
            keepalive_count: Some(getsockopt(&fd, sockopt::TcpKeepCount).map_err(get)?),
            user_timeout: Some(Duration::from_millis(getsockopt(&fd, sockopt::TcpUserTimeout).map_err(get)?.into())),
        })
    }
}
