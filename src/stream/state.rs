//! A stream's lifecycle as data: where it is ([`State`]), what can happen to
//! it (one method per event) and what must be done about it (the returned
//! action, `#[must_use]`). No I/O, no locks: [`super::core`] keeps a `State`
//! under the stream's lock, applies an event, and performs the action after
//! letting go of the lock. An event that does not apply to the current state
//! is refused with an error or answered with an action that does nothing;
//! none panics.
//!
//! ```text
//!            connect(held)            release
//!  Created ───────────────▶ Connected ───────▶ Connected
//!    │        (path Held)      │ (Held)         (Queued | Direct)
//!    │                         │                      │
//!    │ close: fail now         │ close / peer CLOSE   │
//!    ▼                         ▼                      ▼
//!  Closing ◀───────────────────┴──────────────────────┘   (a CLOSE goes out
//!    │                                                       after every
//!    │ ended (the stream's socket failed, for any reason)    accepted write)
//!    ▼
//!  Closed { ending } ── report: on_failed (when due), then on_closed, once
//! ```

use crate::errno;
use crate::error::Error;
use crate::socket::ConnectData;

/// The code a stream's socket fails with when the stream closed normally.
pub(super) const NORMAL_CLOSE: i32 = errno::ECLOSE;

/// How a write leaves the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WritePath {
    /// Writes wait in the stream's own queue: the stream is not connected
    /// yet, or (a server's stream) the response that connects it is not
    /// queued yet, and nothing may overtake it.
    Held(Held),
    /// Writes go through the stream's queue, which drains onto the host
    /// connection: a write was queued before the stream connected, so every
    /// later one follows it there to keep their order.
    Queued,
    /// Connected with nothing ever queued: each write frames itself straight
    /// onto the host connection.
    Direct,
}

/// The stream's queue while it may not drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Held {
    /// Some write went into the queue.
    pub queued: bool,
    /// The queue asked to connect and waits for the release.
    pub pending: Option<ConnectData>,
}

/// Where a stream is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    /// Created by `StreamCreate`/`StreamAccept`, not connected: writes wait.
    Created(Held),
    /// Connected to the peer's stream; `peer_reads`: the peer has a handler,
    /// so writing makes sense.
    Connected { path: WritePath, peer_reads: bool },
    /// Closed by this side or the peer; a CLOSE is on its way out behind
    /// the writes accepted before it. `why` becomes the ending's text.
    /// `by_peer`: the peer's CLOSE arrived, so the close is normal however
    /// the stream then ends (its connection may go before our CLOSE does).
    Closing { path: WritePath, why: &'static str, by_peer: bool },
    /// The stream's socket failed: nothing happens any more but the last
    /// callbacks. `ending` is how it ended, until they are reported.
    Closed { ending: Option<Ending> },
}

/// How a stream ended. Boxed: every stream keeps a `State`, few keep an
/// ending for long, and an inline `Error` would make every idle stream
/// bigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ending(pub Box<Error>);

/// The four phases, for gauges and quick checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Created,
    Connected,
    Closing,
    Closed,
}

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteRefused {
    /// The window is full (`EAGAIN`): wait for the peer to consume.
    WindowFull,
    /// Closing or closed (`EINVAL`, as brpc).
    Closed,
    /// The peer's stream has no handler (`EBADF`, as brpc).
    PeerDoesNotRead,
}

/// A close of a stream closing or closed already (`EINVAL`, as brpc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AlreadyClosing;

impl From<AlreadyClosing> for Error {
    fn from(_: AlreadyClosing) -> Error {
        Error::new(libc::EINVAL, "the stream is closing or closed already")
    }
}

impl From<WriteRefused> for Error {
    fn from(refused: WriteRefused) -> Error {
        match refused {
            WriteRefused::WindowFull => Error::new(libc::EAGAIN, "the stream's window is full"),
            WriteRefused::Closed => Error::new(libc::EINVAL, "the stream is closing or closed"),
            WriteRefused::PeerDoesNotRead => Error::new(libc::EBADF, "the peer's stream has no handler"),
        }
    }
}

/// Where an accepted write goes.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteRoute {
    /// Into the stream's own queue.
    Queue,
    /// Framed straight onto the host connection.
    Direct,
}

/// What connecting the stream (the setup call answered) asks for.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConnectAction {
    /// Attach to the host, start the idle timer; then, unless held, release
    /// (see [`State::release`]).
    Attach { release: bool },
    /// The stream is closing or closed already: the peer's stream is reset.
    ResetPeer,
}

/// What releasing the held writes asks for.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReleaseAction {
    /// The queue waits for its connection: let it drain onto the host.
    Drain(ConnectData),
    Nothing,
}

/// What the stream's queue asking to connect gets.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QueueConnectAction {
    /// Kept until the stream connects and is released.
    Wait,
    /// Connected: drain onto the host now.
    Drain(ConnectData),
    /// Never connects (closed, or a second attempt): the queued writes fail.
    Refuse,
}

/// What a close (local `StreamClose` or the peer's CLOSE) asks for.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CloseAction {
    /// Not connected: the stream ends now with this error (`ECONNRESET`
    /// when writes were waiting: they can never leave).
    Fail(Error),
    /// Queue a CLOSE behind the writes in the stream's queue; sending it
    /// ends the stream.
    QueueClose,
    /// Send CLOSE on the host once the writers that chose the direct path
    /// have queued their frames there, then end the stream.
    CloseAfterDirectWriters,
}

/// What the peer's RST asks for.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResetAction {
    /// The stream fails with `ECONNRESET`.
    Fail,
    /// Closing already: the RST crossed our CLOSE; the close stays normal.
    Nothing,
}

/// What the end of the stream (its socket failed) asks for.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EndAction {
    /// Detach from the host, stop delivery and waiters; the last callbacks
    /// follow once the writes in flight settled ([`State::take_ending`]).
    Finish,
    /// Ended already (a socket fails once, so this is never expected).
    Nothing,
}

/// The last callbacks of a stream, in the order they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LastCallbacks {
    /// `on_failed` with this error, when the end was abnormal or accepted
    /// writes were not delivered.
    pub failed: Option<Error>,
    // `on_closed` always follows: no field needed.
}

impl Default for State {
    fn default() -> Self {
        State::Created(Held::default())
    }
}

impl State {
    pub(super) fn phase(&self) -> Phase {
        match self {
            State::Created(_) => Phase::Created,
            State::Connected { .. } => Phase::Connected,
            State::Closing { .. } => Phase::Closing,
            State::Closed { .. } => Phase::Closed,
        }
    }

    /// `StreamWrite`; `room`: the window has room for the message.
    pub(super) fn write(&mut self, room: bool) -> Result<WriteRoute, WriteRefused> {
        match self {
            State::Closing { .. } | State::Closed { .. } => Err(WriteRefused::Closed),
            State::Connected { peer_reads: false, .. } => Err(WriteRefused::PeerDoesNotRead),
            _ if !room => Err(WriteRefused::WindowFull),
            State::Created(held) | State::Connected { path: WritePath::Held(held), .. } => {
                held.queued = true;
                Ok(WriteRoute::Queue)
            }
            State::Connected { path: WritePath::Queued, .. } => Ok(WriteRoute::Queue),
            State::Connected { path: WritePath::Direct, .. } => Ok(WriteRoute::Direct),
        }
    }

    /// The setup call connected the stream. A `held` stream (a server's,
    /// whose response is not queued yet) keeps its writes until released.
    pub(super) fn connect(&mut self, held: bool, peer_reads: bool) -> ConnectAction {
        match self {
            State::Created(queue) => {
                *self = State::Connected { path: WritePath::Held(*queue), peer_reads };
                ConnectAction::Attach { release: !held }
            }
            State::Connected { .. } | State::Closing { .. } | State::Closed { .. } => ConnectAction::ResetPeer,
        }
    }

    /// The response that connects the stream is queued: held writes go.
    /// Nothing queued so far means writes may go direct from now on.
    pub(super) fn release(&mut self) -> ReleaseAction {
        let (path, closing) = match self {
            State::Connected { path, .. } => (path, false),
            State::Closing { path, .. } => (path, true),
            State::Created(_) | State::Closed { .. } => return ReleaseAction::Nothing,
        };
        let WritePath::Held(Held { queued, pending }) = *path else { return ReleaseAction::Nothing };
        // A closing stream's CLOSE is in its queue: the queue must drain.
        *path = if queued || pending.is_some() || closing { WritePath::Queued } else { WritePath::Direct };
        pending.map_or(ReleaseAction::Nothing, ReleaseAction::Drain)
    }

    /// The stream's queue has writes and asks to be connected.
    pub(super) fn queue_connect(&mut self, data: ConnectData) -> QueueConnectAction {
        match self {
            State::Created(Held { pending, .. })
            | State::Connected { path: WritePath::Held(Held { pending, .. }), .. }
            | State::Closing { path: WritePath::Held(Held { pending, .. }), .. } => {
                if pending.is_some() {
                    // A socket makes one attempt at a time: not expected.
                    return QueueConnectAction::Refuse;
                }
                *pending = Some(data);
                QueueConnectAction::Wait
            }
            State::Connected { .. } | State::Closing { .. } => QueueConnectAction::Drain(data),
            State::Closed { .. } => QueueConnectAction::Refuse,
        }
    }

    /// `StreamClose` (`why` names it), or the peer's CLOSE. Refused when
    /// closing or closed already.
    pub(super) fn close(&mut self, why: &'static str) -> Result<CloseAction, AlreadyClosing> {
        match self {
            State::Created(held) => {
                let waiting = held.pending.is_some();
                *self = State::Closing { path: WritePath::Held(*held), why, by_peer: false };
                Ok(CloseAction::Fail(match waiting {
                    true => Error::new(libc::ECONNRESET, "the stream was closed before it was connected"),
                    false => Error::new(NORMAL_CLOSE, why),
                }))
            }
            State::Connected { path, .. } => {
                let path = *path;
                *self = State::Closing { path, why, by_peer: false };
                Ok(match path {
                    WritePath::Direct => CloseAction::CloseAfterDirectWriters,
                    WritePath::Held(_) | WritePath::Queued => CloseAction::QueueClose,
                })
            }
            State::Closing { .. } | State::Closed { .. } => Err(AlreadyClosing),
        }
    }

    /// The peer's CLOSE: as [`State::close`], and the stream's end is a
    /// normal close from now on, whatever fails it (see [`State::end`]).
    pub(super) fn peer_close(&mut self, why: &'static str) -> Result<CloseAction, AlreadyClosing> {
        // Closing already (ours crossed it): refused, and both sides are done.
        let action = self.close(why);
        if let State::Closing { by_peer, .. } = self {
            *by_peer = true;
        }
        action
    }

    /// Why the stream is closing, for the code that sends its CLOSE.
    pub(super) fn closing_why(&self) -> Option<&'static str> {
        match self {
            State::Closing { why, .. } => Some(why),
            _ => None,
        }
    }

    /// The peer reset the stream.
    pub(super) fn peer_reset(&self) -> ResetAction {
        match self {
            State::Created(_) | State::Connected { .. } => ResetAction::Fail,
            State::Closing { .. } | State::Closed { .. } => ResetAction::Nothing,
        }
    }

    /// The stream's socket failed with `error`: the one way a stream ends.
    /// A stream the peer closed ends normally even when its connection
    /// failed before our CLOSE went out (both sides were done); the
    /// connection's error is kept as the cause.
    pub(super) fn end(&mut self, error: &Error) -> EndAction {
        let ending = match self {
            State::Closed { .. } => return EndAction::Nothing,
            State::Closing { by_peer: true, why, .. } if error.code() != NORMAL_CLOSE => {
                Error::new(NORMAL_CLOSE, *why).caused_by(error.clone())
            }
            State::Created(_) | State::Connected { .. } | State::Closing { .. } => error.clone(),
        };
        *self = State::Closed { ending: Some(Ending(Box::new(ending))) };
        EndAction::Finish
    }

    /// The ending, once: whoever gets it schedules the last callbacks.
    pub(super) fn take_ending(&mut self) -> Option<Ending> {
        match self {
            State::Closed { ending } => ending.take(),
            _ => None,
        }
    }
}

impl Ending {
    /// The last callbacks, given how many accepted writes (`dropped`
    /// messages, `bytes`) were never delivered.
    pub(super) fn last_callbacks(self, dropped: u64, bytes: u64) -> LastCallbacks {
        let error = *self.0;
        let code = match (error.code() != NORMAL_CLOSE, dropped > 0) {
            (true, _) => error.code(),
            (false, true) => libc::ECONNRESET,
            (false, false) => return LastCallbacks { failed: None },
        };
        let failed = match dropped {
            0 => error,
            n => {
                let text =
                    format!("{}: {n} messages ({bytes} bytes) written to the stream were not delivered", error.text());
                Error::new(code, text).caused_by(error)
            }
        };
        LastCallbacks { failed: Some(failed) }
    }
}

#[cfg(test)]
mod tests {
    //! DESIGN.md's lifecycle table, row by row, and the lifecycle rules,
    //! on the state machine alone: no socket, no TCP, no thread.

    use super::*;

    const ATTEMPT: ConnectData = ConnectData(7);

    /// Every event a stream can meet, and what the machine answered.
    #[derive(Debug, Clone, Copy)]
    enum Event {
        Write,
        WriteWindowFull,
        Connect { held: bool },
        ConnectPeerWithoutHandler,
        Release,
        QueueConnect,
        Close,
        PeerClose,
        PeerReset,
        End(i32),
        TakeEnding,
    }

    fn step(state: &mut State, event: Event) -> String {
        match event {
            Event::Write => format!("{:?}", state.write(true)),
            Event::WriteWindowFull => format!("{:?}", state.write(false)),
            Event::Connect { held } => format!("{:?}", state.connect(held, true)),
            Event::ConnectPeerWithoutHandler => format!("{:?}", state.connect(false, false)),
            Event::Release => format!("{:?}", state.release()),
            Event::QueueConnect => format!("{:?}", state.queue_connect(ATTEMPT)),
            Event::Close => format!("{:?}", state.close("the stream was closed")),
            Event::PeerClose => format!("{:?}", state.peer_close("the stream was closed by the peer")),
            Event::PeerReset => format!("{:?}", state.peer_reset()),
            Event::End(code) => format!("{:?}", state.end(&Error::new(code, "why"))),
            Event::TakeEnding => format!("{:?}", state.take_ending().map(|Ending(e)| e.code())),
        }
    }

    fn created() -> State {
        State::default()
    }
    fn created_with_queued_writes() -> State {
        State::Created(Held { queued: true, pending: Some(ATTEMPT) })
    }
    fn held() -> State {
        State::Connected { path: WritePath::Held(Held::default()), peer_reads: true }
    }
    fn held_with_queued_writes() -> State {
        State::Connected { path: WritePath::Held(Held { queued: true, pending: Some(ATTEMPT) }), peer_reads: true }
    }
    fn queued() -> State {
        State::Connected { path: WritePath::Queued, peer_reads: true }
    }
    fn direct() -> State {
        State::Connected { path: WritePath::Direct, peer_reads: true }
    }
    fn closing() -> State {
        State::Closing { path: WritePath::Queued, why: "the stream was closed", by_peer: false }
    }
    fn closing_by_peer() -> State {
        State::Closing { path: WritePath::Queued, why: "the stream was closed by the peer", by_peer: true }
    }
    fn closed() -> State {
        State::Closed { ending: None }
    }

    /// (what the row checks, start state, events, their answers, end phase)
    type Row = (&'static str, fn() -> State, &'static [Event], &'static [&'static str], Phase);

    const ROWS: &[Row] = &[
        // DESIGN.md, "The seed scenario, as a contract".
        (
            "StreamWrite on a stream created, not connected: accepted and queued",
            created,
            &[Event::Write, Event::QueueConnect],
            &["Ok(Queue)", "Wait"],
            Phase::Created,
        ),
        (
            "StreamWrite with the window full: EAGAIN, and nothing was queued (writes may still go direct)",
            created,
            &[Event::WriteWindowFull, Event::Connect { held: false }, Event::Release, Event::Write],
            &["Err(WindowFull)", "Attach { release: true }", "Nothing", "Ok(Direct)"],
            Phase::Connected,
        ),
        (
            "StreamClose with writes queued: the stream fails with ECONNRESET, StreamWrite afterwards EINVAL",
            created_with_queued_writes,
            &[Event::Close, Event::Write, Event::End(libc::ECONNRESET), Event::TakeEnding, Event::TakeEnding],
            &[
                "Ok(Fail(Error { code: 104, text: \"the stream was closed before it was connected\" }))",
                "Err(Closed)",
                "Finish",
                "Some(104)",
                "None",
            ],
            Phase::Closed,
        ),
        (
            "StreamClose with nothing written: a normal close",
            created,
            &[Event::Close, Event::Close],
            &["Ok(Fail(Error { code: 2005, text: \"the stream was closed\" }))", "Err(AlreadyClosing)"],
            Phase::Closing,
        ),
        (
            "the peer drops the connection during the setup call: the stream ends with the call's code",
            created_with_queued_writes,
            &[Event::End(crate::errno::EEOF), Event::TakeEnding, Event::Write],
            &["Finish", "Some(1014)", "Err(Closed)"],
            Phase::Closed,
        ),
        (
            "the response arrives after the stream was closed: it stays closed, the peer's stream is reset",
            closing,
            &[Event::Connect { held: false }],
            &["ResetPeer"],
            Phase::Closing,
        ),
        (
            "the response arrives after the stream ended: the peer's stream is reset",
            closed,
            &[Event::Connect { held: false }, Event::Release],
            &["ResetPeer", "Nothing"],
            Phase::Closed,
        ),
        (
            "the queue's connection attempt on a closed stream is refused: the queued writes fail",
            closed,
            &[Event::QueueConnect],
            &["Refuse"],
            Phase::Closed,
        ),
        // The write queue keeps its order.
        (
            "writes queued before the connect drain first, and later writes follow them through the queue",
            created_with_queued_writes,
            &[Event::Connect { held: false }, Event::Release, Event::Write],
            &["Attach { release: true }", "Drain(ConnectData(7))", "Ok(Queue)"],
            Phase::Connected,
        ),
        (
            "a write racing the connect (queued, not yet asking to connect) keeps later writes in the queue",
            created,
            &[Event::Write, Event::Connect { held: false }, Event::Release, Event::QueueConnect, Event::Write],
            &["Ok(Queue)", "Attach { release: true }", "Nothing", "Drain(ConnectData(7))", "Ok(Queue)"],
            Phase::Connected,
        ),
        (
            "connected with nothing ever queued: writes go direct",
            created,
            &[Event::Connect { held: false }, Event::Release, Event::Write],
            &["Attach { release: true }", "Nothing", "Ok(Direct)"],
            Phase::Connected,
        ),
        (
            "a server's stream holds writes until its response is queued, so none overtakes it",
            created,
            &[Event::Connect { held: true }, Event::Write, Event::QueueConnect, Event::Release, Event::Write],
            &["Attach { release: false }", "Ok(Queue)", "Wait", "Drain(ConnectData(7))", "Ok(Queue)"],
            Phase::Connected,
        ),
        (
            "a held stream closed before its response: CLOSE queues behind its writes, drained on release",
            held_with_queued_writes,
            &[Event::Close, Event::Release, Event::Write],
            &["Ok(QueueClose)", "Drain(ConnectData(7))", "Err(Closed)"],
            Phase::Closing,
        ),
        (
            "a held stream closed with nothing written still drains its CLOSE through the queue",
            held,
            &[Event::Close, Event::QueueConnect, Event::Release],
            &["Ok(QueueClose)", "Wait", "Drain(ConnectData(7))"],
            Phase::Closing,
        ),
        (
            "a direct stream's CLOSE follows the direct writers",
            direct,
            &[Event::Close, Event::Write],
            &["Ok(CloseAfterDirectWriters)", "Err(Closed)"],
            Phase::Closing,
        ),
        (
            "a queued stream's CLOSE goes behind its writes",
            queued,
            &[Event::Close],
            &["Ok(QueueClose)"],
            Phase::Closing,
        ),
        (
            "a peer without a handler: StreamWrite is EBADF",
            created,
            &[Event::ConnectPeerWithoutHandler, Event::Release, Event::Write],
            &["Attach { release: true }", "Nothing", "Err(PeerDoesNotRead)"],
            Phase::Connected,
        ),
        // Exactly once; on_failed before on_closed; nothing after on_closed.
        (
            "the peer's RST fails a live stream, and a second connect is refused",
            direct,
            &[Event::Connect { held: false }, Event::PeerReset],
            &["ResetPeer", "Fail"],
            Phase::Connected,
        ),
        (
            "an RST crossing our CLOSE leaves the close normal",
            closing,
            &[Event::PeerReset, Event::End(NORMAL_CLOSE), Event::TakeEnding],
            &["Nothing", "Finish", "Some(2005)"],
            Phase::Closed,
        ),
        (
            "a stream ends once; its ending is reported once",
            queued,
            &[Event::End(libc::ECONNRESET), Event::End(NORMAL_CLOSE), Event::TakeEnding, Event::TakeEnding],
            &["Finish", "Nothing", "Some(104)", "None"],
            Phase::Closed,
        ),
        ("nothing is reported before the stream ended", direct, &[Event::TakeEnding], &["None"], Phase::Connected),
        (
            "the peer's CLOSE arrived: the connection failing before our CLOSE went out leaves the close normal",
            direct,
            &[Event::PeerClose, Event::End(crate::errno::EEOF), Event::TakeEnding],
            &["Ok(CloseAfterDirectWriters)", "Finish", "Some(2005)"],
            Phase::Closed,
        ),
        (
            "the peer's CLOSE crossing ours: both sides are done, the close stays normal",
            closing,
            &[Event::PeerClose, Event::End(crate::errno::EEOF), Event::TakeEnding],
            &["Err(AlreadyClosing)", "Finish", "Some(2005)"],
            Phase::Closed,
        ),
        (
            "a stream the peer closed does not come back",
            closing_by_peer,
            &[Event::Write, Event::PeerReset, Event::End(libc::ECONNRESET), Event::TakeEnding],
            &["Err(Closed)", "Nothing", "Finish", "Some(2005)"],
            Phase::Closed,
        ),
    ];

    #[test]
    fn every_row_of_the_lifecycle_table_holds() {
        for (what, start, events, answers, phase) in ROWS {
            assert_eq!(events.len(), answers.len(), "{what}: one answer per event");
            let mut state = start();
            for (event, answer) in events.iter().zip(answers.iter()) {
                assert_eq!(step(&mut state, *event), *answer, "{what}: {event:?} in {state:?}");
            }
            assert_eq!(state.phase(), *phase, "{what}");
        }
    }

    #[test]
    fn every_event_in_every_state_answers_without_panicking() {
        let states = [
            created,
            created_with_queued_writes,
            held,
            held_with_queued_writes,
            queued,
            direct,
            closing,
            closing_by_peer,
            closed,
        ];
        let events = [
            Event::Write,
            Event::WriteWindowFull,
            Event::Connect { held: true },
            Event::Connect { held: false },
            Event::ConnectPeerWithoutHandler,
            Event::Release,
            Event::QueueConnect,
            Event::Close,
            Event::PeerClose,
            Event::PeerReset,
            Event::End(libc::ECONNRESET),
            Event::TakeEnding,
        ];
        for start in states {
            for first in events {
                for second in events {
                    let mut state = start();
                    let _ = step(&mut state, first);
                    let _ = step(&mut state, second);
                    // Once closed, a stream never comes back.
                    if start().phase() == Phase::Closed {
                        assert_eq!(state.phase(), Phase::Closed);
                    }
                }
            }
        }
    }

    #[test]
    fn on_failed_is_due_for_an_abnormal_end_or_undelivered_writes() {
        let ending = |code| Ending(Box::new(Error::new(code, "why")));
        assert_eq!(ending(NORMAL_CLOSE).last_callbacks(0, 0), LastCallbacks { failed: None });
        let undelivered = ending(NORMAL_CLOSE).last_callbacks(2, 10).failed;
        let expected = "why: 2 messages (10 bytes) written to the stream were not delivered";
        assert_eq!(undelivered, Some(Error::new(libc::ECONNRESET, expected)));
        // The ending stays the cause.
        let cause = undelivered.as_ref().and_then(|e| std::error::Error::source(e)?.downcast_ref::<Error>());
        assert_eq!(cause, Some(&Error::new(NORMAL_CLOSE, "why")));
        assert_eq!(ending(crate::errno::EEOF).last_callbacks(0, 0).failed, Some(Error::new(crate::errno::EEOF, "why")));
    }

    #[test]
    fn a_stream_the_peer_closed_ends_normally_and_keeps_its_connections_error_as_the_cause() {
        let mut state = closing_by_peer();
        let lost = Error::new(crate::errno::EEOF, "the remote side closed the connection");
        assert_eq!(state.end(&lost), EndAction::Finish);
        let Some(Ending(ending)) = state.take_ending() else { panic!("no ending") };
        assert_eq!(*ending, Error::new(NORMAL_CLOSE, "the stream was closed by the peer"));
        let cause = std::error::Error::source(&*ending).and_then(|e| e.downcast_ref::<Error>());
        assert_eq!(cause, Some(&lost));
    }
}
