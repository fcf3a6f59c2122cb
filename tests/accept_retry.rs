//! A listener that ran out of file descriptors accepts the connections
//! waiting in its backlog once descriptors are free again, with no new
//! connection arriving to wake it. A test binary of its own: it lowers the
//! process's descriptor limit and takes every descriptor left.

use std::fs::File;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use brpc_stream::rpc::{Server, ServerOptions};
use brpc_stream::stats;

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

#[test]
fn connections_that_waited_while_descriptors_ran_out_are_accepted_once_some_are_free() {
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
