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
//!
//! Frames are cut from the read buffer without copies, so a handler may
//! still hold part of a buffer when the next read needs room. A new buffer
//! then comes from the reading thread's few spares (`SPARES`): buffers
//! given up earlier whose lent parts have all been released since. Their
//! pages stay mapped, where a fresh allocation is paged in anew by the
//! kernel during `read()` (a page fault per 4 KiB, after the allocator gave
//! the last one's pages back).

use std::cell::RefCell;

use bytes::BytesMut;

use super::Socket;
use crate::errno;
use crate::error::Error;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 64 * 1024;
/// A buffer with less room than this grows before the next read.
const MIN_READ: usize = READ_CHUNK / 4;
/// The longest unfinished frame the reader carries over into a reused
/// buffer itself when a read needs room (`make_room` leaves shorter ones
/// to it: growing a buffer with lent parts allocates anew, which is what
/// the reused buffers avoid).
const PARTIAL_FRAME_MOVED: usize = READ_CHUNK - MIN_READ;
/// Buffers one thread keeps for reuse, `READ_CHUNK` bytes each: enough for
/// a handler that holds messages of the last few reads.
const SPARES: usize = 4;

thread_local! {
    static SPARE_BUFS: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A connection's read buffer.
#[derive(Default)]
pub(super) struct ReadBuf {
    bytes: BytesMut,
    /// Where the buffer's room ends when it is one of the reusable
    /// `READ_CHUNK`-byte buffers (0 when not): growing it for a long
    /// frame (`make_room`) changes that end, and the buffer is not reused.
    reusable_end: usize,
}

impl ReadBuf {
    fn end(&self) -> usize {
        self.bytes.as_ptr() as usize + self.bytes.capacity()
    }

    fn reusable(&self) -> bool {
        self.reusable_end != 0 && self.end() == self.reusable_end
    }

    /// Room for at least a quarter chunk after what is buffered.
    fn make_room(&mut self) {
        if self.bytes.capacity() - self.bytes.len() >= MIN_READ {
            return;
        }
        let reusable = self.reusable();
        // Nothing lent from this buffer is held any more: start it over.
        if self.bytes.try_reclaim(MIN_READ) {
            self.reusable_end = if reusable { self.end() } else { 0 };
            return;
        }
        if self.bytes.len() <= PARTIAL_FRAME_MOVED {
            let mut fresh = SPARE_BUFS.with(|spares| take_spare(&mut spares.borrow_mut()));
            // The unfinished frame moves over, as `grow` would move it.
            fresh.extend_from_slice(&self.bytes);
            let old = std::mem::replace(&mut self.bytes, fresh);
            self.reusable_end = self.end();
            if reusable {
                SPARE_BUFS.with(|spares| give_back(&mut spares.borrow_mut(), old));
            }
            return;
        }
        grow(&mut self.bytes, READ_CHUNK);
        self.reusable_end = 0;
    }
}

/// An empty `READ_CHUNK`-byte buffer: a spare whose lent parts are all
/// released, or a new one.
fn take_spare(spares: &mut Vec<BytesMut>) -> BytesMut {
    match spares.iter_mut().position(|spare| spare.try_reclaim(READ_CHUNK)) {
        Some(at) => spares.swap_remove(at),
        None => BytesMut::with_capacity(READ_CHUNK),
    }
}

/// Keeps a buffer given up while parts of it are lent, unless the thread
/// keeps `SPARES` already (then it is freed when its last part is).
fn give_back(spares: &mut Vec<BytesMut>, mut buf: BytesMut) {
    if spares.len() < SPARES {
        buf.clear();
        spares.push(buf);
    }
}

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
                deliver(socket, &mut buf.bytes);
                socket.set_failed(Error::new(errno::EEOF, "the remote side closed the connection"));
                return;
            }
            Ok(ReadSome { read, asked }) => {
                turn += read;
                if !deliver(socket, &mut buf.bytes) || (short_read_ends && read < asked) {
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

fn read_some(fd: i32, buf: &mut ReadBuf) -> Result<ReadSome, i32> {
    buf.make_room();
    let buf = &mut buf.bytes;
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
/// up to 1 MiB per 1 MiB message. A short frame's rest is left to the
/// reader, which finds room for it in a reused buffer.
pub fn make_room(buf: &mut BytesMut, additional: usize) {
    if buf.len() + additional > PARTIAL_FRAME_MOVED {
        grow(buf, additional + MIN_READ);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Lends the first `lent` bytes of a full buffer, as a cut frame does.
    fn fill_and_lend(buf: &mut ReadBuf, lent: usize) -> bytes::Bytes {
        buf.make_room();
        let room = buf.bytes.capacity() - buf.bytes.len();
        buf.bytes.extend_from_slice(&vec![7u8; room]);
        buf.bytes.split_to(lent).freeze()
    }

    #[test]
    fn a_buffer_given_up_while_lent_is_reused_once_released() {
        let mut buf = ReadBuf::default();
        let first = fill_and_lend(&mut buf, READ_CHUNK - 100);
        let first_at = first.as_ptr();
        // Full and lent: the next read's room is another buffer, with the
        // unfinished frame's 100 bytes carried over.
        let second = fill_and_lend(&mut buf, READ_CHUNK - 100);
        assert_ne!(second.as_ptr(), first_at);
        drop(first);
        // The first buffer's last part is released: it is the next one.
        let third = fill_and_lend(&mut buf, 10);
        assert_eq!(third.as_ptr(), first_at);
        assert_eq!(&third[..], &[7u8; 10][..]);
        drop(second);
        drop(third);
        SPARE_BUFS.with(|spares| assert!(spares.borrow().len() <= SPARES));
    }

    #[test]
    fn a_thread_keeps_at_most_spares_buffers() {
        let mut buf = ReadBuf::default();
        let held: Vec<_> = (0..SPARES + 3).map(|_| fill_and_lend(&mut buf, READ_CHUNK)).collect();
        SPARE_BUFS.with(|spares| assert_eq!(spares.borrow().len(), SPARES));
        drop(held);
    }
}
