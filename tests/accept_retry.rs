//! A listener that ran out of file descriptors accepts the connections
//! waiting in its backlog once descriptors are free again, with no new
//! connection arriving to wake it. A test binary of its own: it lowers the
//! process's descriptor limit and takes every descriptor left (its cases
//! take turns).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use brpc_stream::protocol::{pack_rpc, RpcMeta, RpcRequestMeta};
use brpc_stream::rpc::{Server, ServerOptions};
use brpc_stream::stats;
use bytes::BytesMut;
use parking_lot::Mutex;

/// A TCP socket, not connected yet: connecting it later needs no descriptor.
fn unconnected_socket() -> libc::c_int {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    fd
}

fn connect(fd: libc::c_int, to: SocketAddr) {
    let SocketAddr::V4(to) = to else { panic!("the server listens on IPv4") };
    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*to.ip()).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid sockaddr_in of the size passed.
    let rc = unsafe {
        libc::connect(
            fd,
            (&address as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
}

fn descriptor_limit() -> libc::rlimit {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    limit
}

fn set_descriptor_limit(limit: libc::rlimit) {
    // SAFETY: setrlimit reads the struct.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0, "{}", std::io::Error::last_os_error());
}

fn accepted() -> u64 {
    stats::snapshot().connections_accepted
}

/// The cases change the process's descriptor limit: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Takes every descriptor left under a limit of `headroom` above those open now.
fn exhaust_descriptors(headroom: u64) -> (libc::rlimit, Vec<File>) {
    let original = descriptor_limit();
    let open = std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
    set_descriptor_limit(libc::rlimit {
        rlim_cur: original.rlim_cur.min(open + headroom),
        rlim_max: original.rlim_max,
    });
    let mut hogs = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        hogs.push(file);
    }
    (original, hogs)
}

/// Starts a non-blocking connect of `fd` to `to`.
fn start_connect(fd: libc::c_int, to: SocketAddr) {
    // SAFETY: fcntl on the test's own descriptor.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
    let SocketAddr::V4(to) = to else { panic!("the server listens on IPv4") };
    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: to.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*to.ip()).to_be() },
        sin_zero: [0; 8],
    };
    // SAFETY: a valid sockaddr_in of the size passed.
    let rc = unsafe {
        libc::connect(
            fd,
            (&address as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let error = std::io::Error::last_os_error().raw_os_error();
    assert!(rc == 0 || error == Some(libc::EINPROGRESS), "connect: {}", std::io::Error::last_os_error());
}

/// How many of `fds` finished connecting (writable, no error) by `deadline`.
fn connected_by(fds: &[libc::c_int], deadline: Instant) -> usize {
    let mut polls: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLOUT, revents: 0 }).collect();
    let mut done = vec![false; fds.len()];
    loop {
        let left = deadline.saturating_duration_since(Instant::now()).as_millis().min(100) as libc::c_int;
        for poll in &mut polls {
            poll.revents = 0;
        }
        // SAFETY: `polls` is a live array of the length passed.
        unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, left) };
        for (poll, done) in polls.iter_mut().zip(done.iter_mut()) {
            if poll.revents & libc::POLLOUT != 0 && poll.revents & (libc::POLLERR | libc::POLLHUP) == 0 {
                *done = true;
                // Not polled again.
                poll.fd = -1;
            }
        }
        let count = done.iter().filter(|d| **d).count();
        if count == fds.len() || Instant::now() >= deadline {
            return count;
        }
    }
}

#[test]
fn a_burst_of_connects_at_the_descriptor_limit_waits_in_the_backlog_and_is_served_once_descriptors_free() {
    let _one = ONE_AT_A_TIME.lock();
    let max_backlog = brpc_stream::rpc::system_max_backlog().expect("net.core.somaxconn is readable");
    // The kernel queues backlog + 1 connections; std's listeners took 128.
    let burst = (max_backlog as usize).min(2000);
    assert!(burst > 129, "net.core.somaxconn is {max_backlog}: too small to tell the backlog from std's 128");
    let original = descriptor_limit();
    let needed = burst as u64 * 2 + 256;
    if original.rlim_cur < needed {
        set_descriptor_limit(libc::rlimit { rlim_cur: needed.min(original.rlim_max), rlim_max: original.rlim_max });
    }
    let server = Server::new();
    server.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    let address = server.listen_address().unwrap();
    let clients: Vec<libc::c_int> = (0..burst).map(|_| unconnected_socket()).collect();
    let before = accepted();

    // The server can accept none of them: every descriptor is taken.
    let (limit, hogs) = exhaust_descriptors(16);
    for &fd in &clients {
        start_connect(fd, address);
    }
    // Each completes at once in the kernel's queue; past the backlog a
    // connect would wait a second for its first SYN retry.
    let connected = connected_by(&clients, Instant::now() + Duration::from_millis(700));
    let while_out = accepted();
    drop(hogs);
    set_descriptor_limit(limit);
    assert_eq!(while_out, before, "accepted with no descriptor free");
    assert_eq!(connected, burst, "connects completed while the server was out of descriptors");

    // Descriptors are free: the server accepts the whole queue and answers
    // a request on every connection.
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted() < before + burst as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(accepted(), before + burst as u64, "connections left unaccepted");
    let mut request = BytesMut::new();
    let meta = RpcMeta {
        request: Some(RpcRequestMeta {
            service_name: Some("no.Service".into()),
            method_name: Some("Call".into()),
            ..Default::default()
        }),
        correlation_id: Some(1),
        ..Default::default()
    };
    pack_rpc(&mut request, &meta, b"").unwrap();
    let mut streams: Vec<TcpStream> = clients
        .iter()
        .map(|&fd| {
            // SAFETY: the test's own connected descriptor, handed over once.
            let stream = unsafe { TcpStream::from_raw_fd(fd) };
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            stream
        })
        .collect();
    for stream in &mut streams {
        stream.write_all(&request).unwrap();
    }
    let mut answered = 0;
    for stream in &mut streams {
        let mut head = [0u8; 12];
        if stream.read_exact(&mut head).is_ok() && &head[..4] == b"PRPC" {
            let body = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
            let mut rest = vec![0u8; body];
            if stream.read_exact(&mut rest).is_ok() {
                answered += 1;
            }
        }
    }
    assert_eq!(answered, burst, "connections not answered");
    drop(streams);
    server.join();
    set_descriptor_limit(original);
}

#[test]
fn connections_that_waited_while_descriptors_ran_out_are_accepted_once_some_are_free() {
    let _one = ONE_AT_A_TIME.lock();
    let server = Server::new();
    server.start("127.0.0.1:0", ServerOptions::default()).unwrap();
    let address = server.listen_address().unwrap();
    let client = unconnected_socket();
    let before = accepted();

    let original = descriptor_limit();
    set_descriptor_limit(libc::rlimit { rlim_cur: original.rlim_cur.min(256), rlim_max: original.rlim_max });
    let mut hogs = Vec::new();
    while let Ok(file) = File::open("/dev/null") {
        hogs.push(file);
    }
    connect(client, address);
    // The server sees the connection and cannot accept it.
    std::thread::sleep(Duration::from_millis(100));
    let while_out = accepted();
    drop(hogs);
    set_descriptor_limit(original);
    assert_eq!(while_out, before, "accepted with no descriptor free");

    let deadline = Instant::now() + Duration::from_secs(5);
    while accepted() == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(accepted(), before + 1, "the waiting connection was never accepted");
    // SAFETY: the test's own descriptor.
    unsafe { libc::close(client) };
    server.join();
}
