//! Reading: on each input edge the dispatcher reads until the socket is
//! empty (the fd is edge-triggered) or its turn is used up, and hands the
//! bytes to the socket's user after every read, so a protocol can act on
//! (or refuse) a frame before all of it arrived. A connection whose turn
//! ran out goes to the back of its event loop's line (`Dispatcher::again`):
//! N busy connections share the loop evenly, and a quiet one's request is
//! read after at most one turn of each.
//!
//! A socket whose user does not accept input now (a server connection with
//! too many calls unanswered) is not read: its bytes stay in the kernel and
//! the peer's sends block, until the user resumes it.
//!
//! "Empty" is EAGAIN, or, for an edge that reported no hangup or error, a
//! read that returned less than it asked for: a stream socket's read takes
//! everything queued up to the size asked, and bytes arriving later raise a
//! new edge (epoll(7), "for stream-oriented files"). That saves one read
//! per edge, which is a third of the reads of a request/response exchange.
//! An edge with a hangup reads on to EOF, as the FIN raises no further edge.

use bytes::BytesMut;

use super::Socket;
use crate::errno;
use crate::error::Error;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 64 * 1024;
/// A buffer with less room than this grows before the next read.
const MIN_READ: usize = READ_CHUNK / 4;
/// Bytes one connection may read in one turn before the others get theirs
/// (one full read: a turn costs one `epoll_wait` of the loop, which is
/// cheap next to cutting 64 KiB of frames).
const READ_BUDGET: usize = READ_CHUNK;

pub(super) fn on_readable(socket: &Socket, short_read_ends: bool) {
    let fd = socket.fd();
    let Some(tcp) = socket.tcp.as_deref().filter(|_| fd >= 0) else {
        return;
    };
    // Only the dispatcher thread reads, so this lock is never contended; it
    // exists so the buffer can live in the shared socket object.
    let mut buf = tcp.read_buf.lock();
    let mut turn = 0;
    loop {
        if !socket.input_accepted() {
            return;
        }
        if turn >= READ_BUDGET {
            socket.read_again();
            return;
        }
        match read_some(fd, &mut buf).inspect(|r| {
            tcp.bytes_read.fetch_add(r.read as u64, std::sync::atomic::Ordering::Relaxed);
        }) {
            Ok(ReadSome { read: 0, .. }) => {
                deliver(socket, &mut buf);
                socket.set_failed(Error::new(errno::EEOF, "the remote side closed the connection"));
                return;
            }
            Ok(ReadSome { read, asked }) => {
                turn += read;
                if !deliver(socket, &mut buf) || (short_read_ends && read < asked) {
                    return;
                }
            }
            Err(libc::EINTR) => {}
            Err(libc::EAGAIN) => return,
            Err(code) => {
                let text = format!("fail to read from fd={fd}: {}", errno::describe(code));
                socket.set_failed(Error::new(code, text));
                return;
            }
        }
    }
}

/// Bytes one read returned, and how many it asked for.
struct ReadSome {
    read: usize,
    asked: usize,
}

fn read_some(fd: i32, buf: &mut BytesMut) -> Result<ReadSome, i32> {
    if buf.capacity() - buf.len() < MIN_READ {
        grow(buf, READ_CHUNK);
    }
    // No more than a chunk, though the buffer may have room for more: a
    // turn is one chunk, whatever room its buffer happened to keep.
    let spare = buf.spare_capacity_mut();
    let asked = spare.len().min(READ_CHUNK);
    // SAFETY: reading into the buffer's spare capacity, at most its length;
    // set_len only covers the bytes the kernel reported as written.
    let n = unsafe { libc::read(fd, spare.as_mut_ptr().cast(), asked) };
    if n < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
    }
    let n = n as usize;
    crate::stats::SOCKET_BYTES_READ.add(n as u64);
    // SAFETY: read() initialized `n` bytes of the spare capacity it was given.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(ReadSome { read: n, asked })
}

/// Makes room in a read buffer for `additional` more bytes (a frame's
/// rest, say) and a read's worth beyond them, so the reads that bring them
/// find room without growing the buffer again: growing it mid-frame while
/// the previous frame is still lent to a handler copied the partial frame,
/// up to 1 MiB per 1 MiB message.
pub fn make_room(buf: &mut BytesMut, additional: usize) {
    grow(buf, additional + MIN_READ);
}

/// Room for `additional` more bytes without copying what was already cut
/// off the buffer's front (`BytesMut::reserve` would grow the whole
/// allocation, dead prefix included): the allocation is reused when the
/// live bytes can move to its front, else only they move to a fresh one
/// with room for at least a chunk.
fn grow(buf: &mut BytesMut, additional: usize) {
    if buf.capacity() - buf.len() >= additional || buf.try_reclaim(additional) {
        return;
    }
    let mut fresh = BytesMut::with_capacity(buf.len() + additional.max(READ_CHUNK));
    fresh.extend_from_slice(buf);
    *buf = fresh;
}

/// Hands buffered input to the user; false when the socket failed.
fn deliver(socket: &Socket, buf: &mut BytesMut) -> bool {
    let Some(user) = socket.user() else {
        buf.clear();
        return true;
    };
    if buf.is_empty() {
        return true;
    }
    // What the input makes this thread write leaves once it is handled.
    match super::write::while_handling_input(|| user.on_input(socket, buf)) {
        Ok(()) => true,
        Err(error) => {
            socket.set_failed(error);
            false
        }
    }
}
