//! The call that sets streams up: creating them for a request (client) or
//! accepting those a request carries (server), telling the peer about them,
//! and connecting them when the response goes or comes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::close;
use super::core::{find, AfterEnd, StreamCore, StreamId, StreamOptions};
use super::state::{ConnectAction, ReleaseAction, State};
use super::{frames, hosts, receive};
use crate::error::Error;
use crate::protocol::StreamSettings;
use crate::socket::{check_connected_and_keep_write, Socket, SocketId};

/// Most streams one call may set up. A request asking for more is refused
/// before its method runs, so a peer cannot make this side create streams
/// without bound (brpc sets no bound; calls carry a handful).
pub const MAX_STREAMS_PER_CALL: usize = 1024;

/// A new stream, not connected.
fn spawn(options: StreamOptions) -> Result<(StreamId, Arc<StreamCore>), Error> {
    StreamCore::spawn(options)
}

/// Creates `n` client streams for a call that is yet to be made; `EINVAL`
/// for 0 or more than [`MAX_STREAMS_PER_CALL`].
pub fn create(n: usize, options: &StreamOptions) -> Result<Vec<StreamId>, Error> {
    if n == 0 || n > MAX_STREAMS_PER_CALL {
        return Err(Error::new(libc::EINVAL, format!("a call sets up 1 to {MAX_STREAMS_PER_CALL} streams, not {n}")));
    }
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        match spawn(options.clone()) {
            Ok((id, _)) => ids.push(id),
            Err(error) => {
                close::discard(&ids);
                return Err(error);
            }
        }
    }
    Ok(ids)
}

/// What a request (client) or a response (server) says about `ids`: the
/// first id, the others as extras, and the first stream's wishes.
pub fn settings_for(ids: &[StreamId]) -> Option<StreamSettings> {
    let (first, extra) = ids.split_first()?;
    let (_, core) = find(*first)?;
    Some(StreamSettings {
        stream_id: Some(*first as i64),
        need_feedback: Some(core.options.max_buf_size > 0),
        writable: Some(core.options.handler.is_some()),
        extra_stream_ids: extra.iter().map(|id| *id as i64).collect(),
    })
}

fn remote_ids(settings: &StreamSettings) -> Vec<i64> {
    std::iter::once(settings.stream_id()).chain(settings.extra_stream_ids.iter().copied()).collect()
}

/// The response to the call that carried `ids` arrived on `host` (client
/// side), or the call failed. With the server's settings the streams
/// connect, pairing by position; otherwise each fails with the call's
/// error. A stream that was closed meanwhile stays closed and the server's
/// stream gets RST. `then` runs once this is settled: at once when the
/// streams connected; when they failed, once each of them ended and its
/// last callbacks (`on_failed`, `on_closed`) returned, so the program may
/// destroy their handlers as soon as it learns that the call failed.
pub fn on_setup_response(
    ids: &[StreamId],
    host: Option<SocketId>,
    error: Option<Error>,
    settings: Option<&StreamSettings>,
    then: AfterEnd,
) {
    let host = host.and_then(Socket::address);
    let (settings, host) = match (error, settings, host) {
        (None, Some(settings), Some(host)) => (settings, host),
        (Some(error), _, _) => return close::fail_all_then(ids, &error, then),
        (None, _, _) => {
            let refused = Error::new(libc::ECONNRESET, "the server did not accept the stream");
            return close::fail_all_then(ids, &refused, then);
        }
    };
    let remotes = remote_ids(settings);
    let writable = settings.writable();
    let need_feedback = settings.need_feedback();
    for (position, id) in ids.iter().enumerate() {
        let remote = remotes.get(position).copied();
        match (find(*id), remote) {
            (Some((_, core)), Some(remote)) => {
                if !connect(&core, &host, remote, writable, need_feedback, false) {
                    reset(&host, remote);
                }
            }
            (Some(_), None) => close::fail(*id, Error::new(libc::ECONNRESET, "the server accepted fewer streams")),
            (None, Some(remote)) => reset(&host, remote),
            (None, None) => {}
        }
    }
    then();
}

/// Accepts the streams a request carries (server side), bound to the
/// request's connection. They become connected when the response is about
/// to go ([`before_response`]) and write once it is queued
/// ([`after_response`]), so nothing they write overtakes it.
///
/// A request carrying more than `max` streams is refused with `EINVAL`
/// before any is made, and one that would take its connection past the
/// streams it carries at most (the server's `max_streams_per_connection`)
/// with `ELIMIT`: the peer's streams then fail when the response carries
/// no stream settings, and nothing here calls the handler.
pub fn accept(
    host: SocketId,
    request: &StreamSettings,
    options: &StreamOptions,
    max: usize,
) -> Result<Vec<StreamId>, Error> {
    let remotes = remote_ids(request);
    if remotes.len() > max {
        let text = format!("the request carries {} streams, more than the {max} asked for", remotes.len());
        return Err(Error::new(libc::EINVAL, text));
    }
    if let Some(host) = Socket::address(host) {
        hosts::has_room(&host, remotes.len())?;
    }
    let mut accepted = Vec::with_capacity(remotes.len());
    for remote in remotes {
        match spawn(options.clone()) {
            Ok((id, core)) => {
                {
                    let mut link = core.link.lock();
                    core.host_id.store(host, Ordering::Release);
                    link.set_remote_id(remote);
                    link.remote_writable = request.writable();
                    link.remote_need_feedback = request.need_feedback();
                }
                // Attached now, so the connection failing before the
                // response closes them too.
                accepted.push(id);
                let attached = match Socket::address(host) {
                    Some(host) => hosts::attach(&host, id),
                    None => {
                        close::fail(id, hosts::gone());
                        Ok(())
                    }
                };
                // Concurrent calls on the connection took the room.
                if let Err(error) = attached {
                    close::discard(&accepted);
                    return Err(error);
                }
            }
            Err(error) => {
                close::discard(&accepted);
                return Err(error);
            }
        }
    }
    Ok(accepted)
}

/// The accepted streams' response is about to be queued: from now on,
/// frames for them are theirs (data can only follow the response).
pub fn before_response(ids: &[StreamId]) {
    for id in ids {
        let Some((_, core)) = find(*id) else { continue };
        let (host, remote, writable, need_feedback) = {
            let link = core.link.lock();
            (core.host(), link.remote_id(), link.remote_writable, link.remote_need_feedback)
        };
        match (host.and_then(Socket::address), remote) {
            // Closed meanwhile: the response carries no settings for it.
            (Some(host), Some(remote)) => {
                let _ = connect(&core, &host, remote, writable, need_feedback, true);
            }
            _ => close::fail(*id, hosts::gone()),
        }
    }
}

/// The response carrying `ids` is queued on their host: their writes go;
/// or, when the call failed, they fail with its error.
pub fn after_response(ids: &[StreamId], error: Option<&Error>) {
    for id in ids {
        match (find(*id), error) {
            (Some((_, core)), None) => release(&core),
            (_, Some(error)) => close::fail(*id, error.clone()),
            (None, None) => {}
        }
    }
}

/// Connects the stream to `remote` on `host`. Unless `held`, queued
/// writes go at once; a held stream (a server's, whose response is not
/// queued yet) keeps them until [`release`], so nothing it
/// writes overtakes the response, while frames arriving for it are
/// already taken as a connected stream's. False when the stream was
/// closing or closed already: the caller resets the peer's stream.
#[must_use]
fn connect(core: &StreamCore, host: &Socket, remote: i64, writable: bool, need_feedback: bool, held: bool) -> bool {
    let action = {
        let mut link = core.link.lock();
        let action = link.apply(|state| state.connect(held, writable));
        if let ConnectAction::Attach { .. } = action {
            core.host_id.store(host.id(), Ordering::Release);
            link.set_remote_id(remote);
            link.remote_writable = writable;
            link.remote_need_feedback = need_feedback;
        }
        action
    };
    match action {
        ConnectAction::Attach { release: now } => {
            // A server's stream rides on its host since it was accepted;
            // a client's connection takes any number.
            if let Err(error) = hosts::attach(host, core.id()) {
                close::fail(core.id(), error);
            }
            receive::start_idle_timer(core);
            if now {
                release(core);
            }
            true
        }
        ConnectAction::ResetPeer => false,
    }
}

/// Lets the writes queued while the stream was held (or connecting) go.
fn release(core: &StreamCore) {
    let (action, host) = {
        let mut link = core.link.lock();
        (link.apply(State::release), core.host())
    };
    if let ReleaseAction::Drain(data) = action {
        let fd = host.and_then(Socket::address).map_or(0, |h| h.fd().max(0));
        let _ = check_connected_and_keep_write(fd, 0, data);
    }
}

/// Resets the peer's stream `remote` on `host`.
fn reset(host: &Socket, remote: i64) {
    if let Ok(rst) = frames::rst(remote) {
        let _ = host.write(vec![rst], None);
    }
}
