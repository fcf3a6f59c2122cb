//! Reading: on each input edge the dispatcher reads until EAGAIN (the fd is
//! edge-triggered) and hands the bytes to the socket's user after every read,
//! so a protocol can act on (or refuse) a frame before all of it arrived.

use bytes::BytesMut;

use super::Socket;
use crate::errno;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 64 * 1024;

pub(super) fn on_readable(socket: &Socket) {
    let fd = socket.fd();
    if fd < 0 {
        return;
    }
    // Only the dispatcher thread reads, so this lock is never contended; it
    // exists so the buffer can live in the shared socket object.
    let mut buf = socket.read_buf.lock();
    loop {
        match read_some(fd, &mut buf) {
            Ok(0) => {
                deliver(socket, &mut buf);
                socket.set_failed(errno::EEOF, "the remote side closed the connection");
                return;
            }
            Ok(_) => {
                if !deliver(socket, &mut buf) {
                    return;
                }
            }
            Err(libc::EINTR) => {}
            Err(libc::EAGAIN) => return,
            Err(code) => {
                let text = format!("fail to read from fd={fd}: {}", errno::describe(code));
                socket.set_failed(code, &text);
                return;
            }
        }
    }
}

fn read_some(fd: i32, buf: &mut BytesMut) -> Result<usize, i32> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    let spare = buf.spare_capacity_mut();
    // SAFETY: reading into the buffer's spare capacity, whose length we pass;
    // set_len only covers the bytes the kernel reported as written.
    let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), spare.len()) };
    if n < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
    }
    let n = n as usize;
    crate::stats::SOCKET_BYTES_READ.add(n as u64);
    // SAFETY: read() initialized `n` bytes of the spare capacity it was given.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Hands buffered input to the user; false when the socket failed.
fn deliver(socket: &Socket, buf: &mut BytesMut) -> bool {
    let Some(user) = &socket.user else {
        buf.clear();
        return true;
    };
    if buf.is_empty() {
        return true;
    }
    // What the input makes this thread write leaves once it is handled.
    match super::write::while_handling_input(|| user.on_input(socket, buf)) {
        Ok(()) => true,
        Err((code, text)) => {
            socket.set_failed(code, &text);
            false
        }
    }
}
