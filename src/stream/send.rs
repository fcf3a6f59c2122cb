//! `StreamWrite`: a message passes the window, then goes the way the
//! stream's state says: into the stream's own queue (not connected yet, or
//! something was queued before), or framed straight onto the host
//! connection.

use bytes::Bytes;

use super::close;
use super::core::{core_of, StreamId};
use super::frames;
use super::state::WriteRoute;
use crate::error::Error;
use crate::socket::{Socket, WriteOptions};
use crate::stats;

/// Queues one message. `EAGAIN` when the window is full, `EINVAL` for a
/// closed or unknown stream, `EBADF` when the peer has no handler.
pub fn write(id: StreamId, message: Bytes, background: bool) -> Result<(), Error> {
    write_message(id, &[&message[..]], Some(std::slice::from_ref(&message)), background)
}

/// [`fn@write`] for a message given in parts (copied), as the C ABI has it.
pub fn write_parts(id: StreamId, parts: &[&[u8]], background: bool) -> Result<(), Error> {
    write_message(id, parts, None, background)
}

/// [`fn@write`] for a message in several chunks, kept as they are (not copied
/// unless small).
pub fn write_chunks(id: StreamId, chunks: Vec<Bytes>, background: bool) -> Result<(), Error> {
    let parts: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
    write_message(id, &parts, Some(&chunks), background)
}

/// The write of a stream that is gone or closing: `EINVAL`, as brpc.
fn closed() -> Error {
    Error::new(libc::EINVAL, "the stream is closed or unknown")
}

/// A write the stream accepted and its host connection refused (it failed
/// meanwhile): `EINVAL` to the caller, as for a closed stream, with the
/// host's reason as the cause.
fn refused_by_host(cause: Error) -> Error {
    Error::new(libc::EINVAL, "the stream's connection refused the write").caused_by(cause)
}

fn write_message(id: StreamId, parts: &[&[u8]], owned: Option<&[Bytes]>, background: bool) -> Result<(), Error> {
    let socket = Socket::address(id).ok_or_else(closed)?;
    let core = core_of(&socket).ok_or_else(closed)?;
    let len = parts.iter().map(|p| p.len()).sum();
    let route = {
        let mut link = core.link.lock();
        // Writers of a stream take its lock, so the room seen here is
        // still there when the bytes are counted (FEEDBACK only adds room).
        let room = core.flow.writable();
        let route = link.apply(|state| state.write(room))?;
        core.flow.produce(len);
        match route {
            WriteRoute::Direct => {
                core.direct_writers.enter();
                Some((core.host(), link.remote_id()))
            }
            WriteRoute::Queue => None,
        }
    };
    let options = WriteOptions { tag: 0, background };
    let Some((host, remote)) = route else {
        let message: Vec<Bytes> = owned.map(<[Bytes]>::to_vec).unwrap_or_else(|| {
            let mut copy = bytes::BytesMut::with_capacity(len);
            parts.iter().for_each(|p| copy.extend_from_slice(p));
            vec![copy.freeze()]
        });
        // A write the socket drops later is counted there and reported at
        // close; one it refuses now (it failed meanwhile) is refused here.
        socket.write_with(message, options, None).map_err(refused_by_host)?;
        stats::STREAM_WRITES.inc();
        return Ok(());
    };
    // Connected, nothing ever queued: frame it straight onto the host.
    let sent = match (host.and_then(Socket::address), remote) {
        (Some(host), Some(remote)) => match frames::data_message(remote, id as i64, parts, owned) {
            Ok(frame) => host.write_with(frame, options, None).map_err(refused_by_host),
            Err(error) => Err(Error::new(libc::EINVAL, "the message cannot be framed").caused_by(error)),
        },
        _ => Err(closed()),
    };
    if core.direct_writers.leave() {
        // The stream closed while this frame was on its way: its CLOSE,
        // handed to the last writer, follows it.
        close::send_direct_close(&socket, core);
    }
    if sent.is_ok() {
        stats::STREAM_WRITES.inc();
        stats::STREAM_MESSAGES_OUT.inc();
        stats::STREAM_EXTRA_SEGMENTS_OUT.add(frames::extra_segments(len) as u64);
        stats::STREAM_BYTES_OUT.add(len as u64);
    }
    sent
}
