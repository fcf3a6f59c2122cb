//! The I/O event loops: each thread waits on its own edge-triggered epoll
//! set and hands each readiness edge to the handler registered for that fd.
//! A registration stays on the loop it was given (a connection is read by
//! one thread only); new ones go to the loop with the fewest.
//!
//! The epoll data of every registration is its [`Token`], never the fd, so an
//! event still in flight for a closed fd whose number was reused can never
//! reach the new owner: its token is not in the handler map any more.

use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::{Mutex, RwLock};

use crate::id::IdMap;

use super::run_contained;
use super::spin::Spinner;
use crate::error::Error;

/// Which readiness a registration asks to be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

/// cbindgen:ignore
impl Interest {
    pub const READ: Interest = Interest { read: true, write: false };
    pub const WRITE: Interest = Interest { read: false, write: true };
    pub const BOTH: Interest = Interest { read: true, write: true };

    fn epoll_flags(self) -> EpollFlags {
        // RDHUP so a half-closed peer is reported even to a writer-only registration.
        let mut flags = EpollFlags::EPOLLET | EpollFlags::EPOLLRDHUP;
        if self.read {
            flags |= EpollFlags::EPOLLIN;
        }
        if self.write {
            flags |= EpollFlags::EPOLLOUT;
        }
        flags
    }
}

/// One readiness edge. `hangup` (peer closed its side or both sides are
/// closed) usually comes with `readable`: the reader still has to read until
/// EOF. `error` means the socket has a pending error (`SO_ERROR`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Events {
    pub readable: bool,
    pub writable: bool,
    pub hangup: bool,
    pub error: bool,
}

impl Events {
    fn from_epoll(flags: EpollFlags) -> Events {
        Events {
            readable: flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLPRI),
            writable: flags.contains(EpollFlags::EPOLLOUT),
            hangup: flags.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLRDHUP),
            error: flags.contains(EpollFlags::EPOLLERR),
        }
    }
}

/// Names one registration; never reused within a process. Its low
/// bits are the index of the event loop it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(u64);

impl Token {
    fn event_loop(self) -> usize {
        (self.0 & LOOP_MASK) as usize
    }
}

/// Called on the dispatcher thread for every edge; must not block.
pub type Handler = Arc<dyn Fn(Events) + Send + Sync>;

/// The epoll data of each loop's wake-up eventfd; registrations are above.
const WAKE_TOKEN: u64 = 0;

/// Bits of a token that name its event loop.
const LOOP_BITS: u32 = 6;
const LOOP_MASK: u64 = (1 << LOOP_BITS) - 1;
/// The most event loops one dispatcher runs.
pub const MAX_EVENT_LOOPS: usize = 1 << LOOP_BITS;

/// Process-wide, so tokens stay unique across dispatcher instances too.
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1 << LOOP_BITS);

/// Edges taken from the kernel per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 256;

/// The process's dispatcher; its threads start on the first call.
pub fn dispatcher() -> &'static Dispatcher {
    // A failed start is retried (and reported) by the next register.
    let _ = PROCESS_DISPATCHER.event_loops();
    &PROCESS_DISPATCHER
}

static PROCESS_DISPATCHER: Dispatcher = Dispatcher::with_loops(0);

/// Event loops of the process dispatcher as set by [`set_event_loops`]; 0:
/// not set (the environment's or the machine's count).
static CONFIGURED_LOOPS: AtomicUsize = AtomicUsize::new(0);

/// Names the process dispatcher's event-loop count.
const EVENT_LOOPS_VARIABLE: &str = "BRPC_STREAM_EVENT_DISPATCHERS";
/// The most loops the default gives (brpc's `event_dispatcher_num` is 1;
/// more than one reads several busy connections in parallel).
const DEFAULT_MAX_EVENT_LOOPS: usize = 4;
/// Cores per event loop in the default: the others run the workers.
const CORES_PER_DEFAULT_LOOP: usize = 2;

/// Sets how many I/O threads (event loops) the process dispatcher runs,
/// as brpc's `-event_dispatcher_num`: 1 to [`MAX_EVENT_LOOPS`]. Only
/// before its first use (the first socket, server or channel): `EPERM`
/// after, its loops are running and connections are on them; `EINVAL` out
/// of range. Either error leaves the count as it was. Unset,
/// `BRPC_STREAM_EVENT_DISPATCHERS` says, else one per two cores, from 1 to
/// 4. Connections stay on the loop they were given, so busy connections
/// share evenly only those on one loop.
pub fn set_event_loops(loops: usize) -> Result<(), Error> {
    if !(1..=MAX_EVENT_LOOPS).contains(&loops) {
        let text = format!("event_dispatcher_num={loops} is not from 1 to {MAX_EVENT_LOOPS}");
        return Err(Error::new(libc::EINVAL, text));
    }
    let _starting = PROCESS_DISPATCHER.starting.lock();
    if let Some(running) = PROCESS_DISPATCHER.running.get() {
        let text = format!(
            "event_dispatcher_num={loops} comes too late: {} event loop(s) already run; \
             set it before the first server, channel or socket",
            running.len()
        );
        return Err(Error::new(libc::EPERM, text));
    }
    CONFIGURED_LOOPS.store(loops, Ordering::Release);
    Ok(())
}

/// The event loops the process dispatcher runs, or, before its first use,
/// the number it will start ([`set_event_loops`], else the environment's,
/// else the default).
pub fn event_loops() -> usize {
    let _starting = PROCESS_DISPATCHER.starting.lock();
    match PROCESS_DISPATCHER.running.get() {
        Some(running) => running.len(),
        None => configured_loops(),
    }
}

/// The event loops the process dispatcher starts with.
fn configured_loops() -> usize {
    let set = CONFIGURED_LOOPS.load(Ordering::Acquire);
    if set > 0 {
        return set;
    }
    let cores = thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let default = (cores / CORES_PER_DEFAULT_LOOP).clamp(1, DEFAULT_MAX_EVENT_LOOPS);
    match std::env::var(EVENT_LOOPS_VARIABLE) {
        Err(_) => default,
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(loops) if (1..=MAX_EVENT_LOOPS).contains(&loops) => loops,
            _ => {
                log_warning!(
                    "ignoring {EVENT_LOOPS_VARIABLE}={text:?} (not a number from 1 to {MAX_EVENT_LOOPS}); using {default}"
                );
                default
            }
        },
    }
}

/// Event loops (each an epoll set and the thread that waits on it),
/// created on first use.
pub struct Dispatcher {
    /// How many loops to start; 0: the process's configuration.
    loops: usize,
    running: OnceLock<Box<[Running]>>,
    starting: Mutex<()>,
}

/// The state shared with one loop's thread.
struct EventLoop {
    epoll: Epoll,
    /// Wakes the thread when its dispatcher is dropped or a handler is resumed.
    wake: EventFd,
    handlers: RwLock<IdMap<u64, Handler>>,
    stopping: AtomicBool,
    /// The errno that ended the thread, or 0 while it runs.
    failure: AtomicI32,
    /// Registrations that stopped reading before EAGAIN to let others
    /// have their turn: called again (as readable) in the next round,
    /// after its new edges.
    again: Mutex<Vec<u64>>,
}

struct Running {
    event_loop: Arc<EventLoop>,
    thread: Option<JoinHandle<()>>,
}

impl Dispatcher {
    /// A dispatcher of one event loop.
    #[cfg(test)]
    pub(crate) const fn new() -> Dispatcher {
        Dispatcher::with_loops(1)
    }

    /// A dispatcher of `loops` event loops (0: the process's
    /// configuration; at most [`MAX_EVENT_LOOPS`]).
    pub(crate) const fn with_loops(loops: usize) -> Dispatcher {
        Dispatcher { loops, running: OnceLock::new(), starting: Mutex::new(()) }
    }

    /// Adds `fd` (EPOLLET | EPOLLRDHUP + interest) to the loop with the
    /// fewest registrations, where it stays. The handler runs on that
    /// loop's thread for every edge, must not block, and may call
    /// register/modify/deregister itself. The caller keeps `fd` open until
    /// after [`Dispatcher::deregister`].
    pub fn register(&self, fd: RawFd, interest: Interest, handler: Handler) -> Result<Token, i32> {
        let loops = self.event_loops()?;
        let borrowed = borrow_fd(fd)?;
        let (index, event_loop) = loops
            .iter()
            .enumerate()
            .filter(|(_, running)| running.event_loop.failure.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, running)| running.event_loop.handlers.read().len())
            .ok_or_else(|| {
                loops.first().map_or(libc::EAGAIN, |first| first.event_loop.failure.load(Ordering::Acquire))
            })?;
        let event_loop = &event_loop.event_loop;
        let token = Token(NEXT_TOKEN.fetch_add(1 << LOOP_BITS, Ordering::Relaxed) | index as u64);
        // In the map before epoll knows the fd, so the very first edge finds its handler.
        event_loop.handlers.write().insert(token.0, handler);
        if let Err(errno) = event_loop.epoll.add(borrowed, EpollEvent::new(interest.epoll_flags(), token.0)) {
            let removed = event_loop.handlers.write().remove(&token.0);
            // Dropped outside the lock: the handler's captures may deregister on drop.
            drop(removed);
            return Err(errno as i32);
        }
        Ok(token)
    }

    /// Switches `fd` to a new interest (`EPOLL_CTL_MOD`). This also re-arms the
    /// edge: a writer that got EAGAIN calls `modify(.., BOTH)` and is told
    /// when the socket is writable again. `ENOENT` if `token` is not registered.
    pub fn modify(&self, token: Token, fd: RawFd, interest: Interest) -> Result<(), i32> {
        let event_loop = self.loop_of(token).ok_or(libc::ENOENT)?;
        let borrowed = borrow_fd(fd)?;
        let handlers = event_loop.handlers.read();
        // Checked under the lock so a concurrent deregister cannot slip between
        // the check and the syscall and leave epoll pointing at a stale token.
        if !handlers.contains_key(&token.0) {
            return Err(libc::ENOENT);
        }
        let mut event = EpollEvent::new(interest.epoll_flags(), token.0);
        event_loop.epoll.modify(borrowed, &mut event).map_err(|errno| errno as i32)
    }

    /// Removes `fd` from epoll and forgets its handler: an edge already taken
    /// from the kernel for this token is dropped, and no later batch calls the
    /// handler. A call already running on the loop's thread may still be
    /// finishing. The owner closes `fd` afterwards.
    pub fn deregister(&self, token: Token, fd: RawFd) {
        let Some(event_loop) = self.loop_of(token) else {
            return;
        };
        let removed = event_loop.handlers.write().remove(&token.0);
        if removed.is_none() {
            // Not ours (any more): the fd number may belong to someone else now.
            return;
        }
        if let Ok(borrowed) = borrow_fd(fd) {
            // ENOENT/EBADF only say the kernel already forgot the fd, which is the goal.
            let _ = event_loop.epoll.delete(borrowed);
        }
        drop(removed);
    }

    /// Asks for `token`'s handler to be called again as readable in the
    /// loop's next round, after that round's new edges (with any of its own
    /// edge merged in): a handler that stopped reading before EAGAIN (its
    /// turn was used up) goes to the back of the line, since no new edge
    /// will come for what is still buffered. Call it from the handler, on
    /// its loop's thread.
    pub fn again(&self, token: Token) {
        if let Some(event_loop) = self.loop_of(token) {
            event_loop.again.lock().push(token.0);
        }
    }

    /// [`again`](Self::again) from any thread, waking the loop: a handler
    /// that stopped reading until something else happened is called again.
    pub fn resume(&self, token: Token) {
        if let Some(event_loop) = self.loop_of(token) {
            event_loop.again.lock().push(token.0);
            // The loop reads the eventfd on waking, so a failed write means
            // its count is already non-zero: the loop wakes anyway.
            let _ = event_loop.wake.write(1);
        }
    }

    /// How many registrations are live (for leak checks).
    pub fn registered(&self) -> usize {
        self.running.get().map_or(0, |loops| loops.iter().map(|l| l.event_loop.handlers.read().len()).sum())
    }

    /// How many event loops (I/O threads) run; 0 before the first use.
    pub fn event_loop_count(&self) -> usize {
        self.running.get().map_or(0, |loops| loops.len())
    }

    /// The live registrations of each event loop, in loop order; empty
    /// before the first use.
    pub fn registrations_per_loop(&self) -> Vec<usize> {
        self.running.get().map_or_else(Vec::new, |loops| {
            loops.iter().map(|running| running.event_loop.handlers.read().len()).collect()
        })
    }

    fn loop_of(&self, token: Token) -> Option<&EventLoop> {
        self.running.get()?.get(token.event_loop()).map(|running| &*running.event_loop)
    }

    /// The running event loops, starting them if this is the first use or
    /// an earlier start failed.
    fn event_loops(&self) -> Result<&[Running], i32> {
        if let Some(loops) = self.running.get() {
            return Ok(loops);
        }
        let _starting = self.starting.lock();
        if self.running.get().is_none() {
            let wanted = if self.loops == 0 { configured_loops() } else { self.loops };
            // Loops started before one failed are stopped as the Vec drops.
            let started =
                (0..wanted.clamp(1, MAX_EVENT_LOOPS)).map(|_| Running::start()).collect::<Result<Vec<_>, i32>>()?;
            // Cannot be taken: every initializer holds `starting`.
            let _ = self.running.set(started.into_boxed_slice());
        }
        self.running.get().map(|loops| &**loops).ok_or(libc::EAGAIN)
    }
}

impl Running {
    fn start() -> Result<Running, i32> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|errno| errno as i32)?;
        let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK).map_err(|errno| errno as i32)?;
        epoll.add(&wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE_TOKEN)).map_err(|errno| errno as i32)?;
        let event_loop = Arc::new(EventLoop {
            epoll,
            wake,
            handlers: RwLock::new(IdMap::default()),
            stopping: AtomicBool::new(false),
            failure: AtomicI32::new(0),
            again: Mutex::new(Vec::new()),
        });
        let for_thread = Arc::clone(&event_loop);
        let thread = thread::Builder::new()
            .name("brpc_dispatcher".into())
            .spawn(move || for_thread.run())
            .map_err(|err| err.raw_os_error().unwrap_or(libc::EAGAIN))?;
        Ok(Running { event_loop, thread: Some(thread) })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.event_loop.stopping.store(true, Ordering::Release);
        if self.event_loop.wake.write(1).is_err() {
            // The thread cannot be woken; leave it parked rather than hang here.
            return;
        }
        if let Some(thread) = self.thread.take() {
            // A handler may hold the last reference to its own dispatcher.
            if thread.thread().id() != thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl EventLoop {
    /// Each round takes the new edges, then gives the handlers that asked
    /// for another turn (in the round before) theirs. A handler gets one
    /// turn a round: an edge for a handler already waiting for its turn
    /// joins that turn (its writability is told at once), and what a
    /// handler asks for during a round waits for the next. Otherwise a
    /// connection whose peer keeps sending, raising an edge every round,
    /// would read twice a round and the others once.
    fn run(&self) {
        let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT];
        let mut turns: Vec<(u64, Events)> = Vec::new();
        let mut waiting: IdMap<u64, usize> = IdMap::default();
        let mut spinner = Spinner::default();
        loop {
            // Handlers waiting for another turn: only look for new edges.
            let timeout = if self.again.lock().is_empty() { EpollTimeout::NONE } else { EpollTimeout::ZERO };
            // Before blocking, edges that come within a spin are taken without sleeping.
            let blocking = timeout == EpollTimeout::NONE;
            let mut polled = 0;
            let spun = blocking
                && spinner.spin(|| {
                    polled = self.epoll.wait(&mut events, EpollTimeout::ZERO).unwrap_or(0);
                    polled > 0
                });
            let waited = if spun { Ok(polled) } else { self.epoll.wait(&mut events, timeout) };
            if blocking && !spun {
                spinner.woke();
            }
            let ready = match waited {
                Ok(ready) => ready,
                Err(Errno::EINTR) => continue,
                Err(errno) => {
                    log_error!("the epoll dispatcher stopped: epoll_wait failed: {errno}");
                    self.failure.store(errno as i32, Ordering::Release);
                    return;
                }
            };
            // This round's turns: asked for before its edges were taken.
            for token in self.again.lock().drain(..) {
                if let std::collections::hash_map::Entry::Vacant(slot) = waiting.entry(token) {
                    slot.insert(turns.len());
                    turns.push((token, Events { readable: true, ..Events::default() }));
                }
            }
            for event in &events[..ready] {
                let token = event.data();
                if token == WAKE_TOKEN {
                    // Level-triggered: drained, or it would wake every wait.
                    let _ = self.wake.read();
                    if self.stopping.load(Ordering::Acquire) {
                        return;
                    }
                    continue;
                }
                let mut edge = Events::from_epoll(event.events());
                if let Some(turn) = waiting.get(&token).and_then(|&index| turns.get_mut(index)) {
                    // Read in its turn, hangup and error with it.
                    turn.1.hangup |= edge.hangup;
                    turn.1.error |= edge.error;
                    if !edge.writable {
                        continue;
                    }
                    edge = Events { writable: true, ..Events::default() };
                }
                self.call(token, edge);
            }
            waiting.clear();
            for (token, edge) in turns.drain(..) {
                self.call(token, edge);
            }
        }
    }

    fn call(&self, token: u64, edge: Events) {
        // Cloned out so the handler runs without the lock and may (de)register.
        let handler = self.handlers.read().get(&token).cloned();
        if let Some(handler) = handler {
            run_contained("an event handler", || handler(edge));
        }
    }
}

fn borrow_fd(fd: RawFd) -> Result<BorrowedFd<'static>, i32> {
    if fd < 0 {
        return Err(libc::EBADF);
    }
    // SAFETY: the caller owns `fd` and keeps it open across the epoll_ctl call
    // (documented on register/modify/deregister); the borrow ends with that call.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::sync::mpsc::{channel, Receiver};
    use std::sync::Weak;
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(5);
    const QUIET: Duration = Duration::from_millis(200);

    fn loopback_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_nonblocking(true).unwrap();
        server.set_nonblocking(true).unwrap();
        (client, server)
    }

    fn forwarding_handler() -> (Handler, Receiver<Events>) {
        let (sender, receiver) = channel();
        let sender = Mutex::new(sender);
        let handler: Handler = Arc::new(move |events| {
            let _ = sender.lock().send(events);
        });
        (handler, receiver)
    }

    fn next_matching(receiver: &Receiver<Events>, wanted: impl Fn(&Events) -> bool) -> Events {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let events = receiver.recv_timeout(left).unwrap();
            if wanted(&events) {
                return events;
            }
        }
    }

    #[test]
    fn readable_edge_then_write_interest_then_deregister_stops_delivery() {
        let dispatcher = Dispatcher::new();
        let (mut client, server) = loopback_pair();
        let (handler, events) = forwarding_handler();
        let token = dispatcher.register(server.as_raw_fd(), Interest::READ, handler).unwrap();
        assert_eq!(dispatcher.registered(), 1);

        client.write_all(b"ping").unwrap();
        let edge = next_matching(&events, |e| e.readable);
        assert!(!edge.writable, "write readiness reported without write interest: {edge:?}");

        // MOD re-arms the edge, so an already writable socket reports it at once.
        dispatcher.modify(token, server.as_raw_fd(), Interest::BOTH).unwrap();
        next_matching(&events, |e| e.writable);

        dispatcher.deregister(token, server.as_raw_fd());
        assert_eq!(dispatcher.registered(), 0);
        while events.try_recv().is_ok() {}
        client.write_all(b"more").unwrap();
        // Disconnected (the handler, holding the sender, was dropped) or silence.
        let late = events.recv_timeout(QUIET);
        assert!(late.is_err(), "delivered after deregister: {late:?}");
        assert_eq!(dispatcher.modify(token, server.as_raw_fd(), Interest::BOTH), Err(libc::ENOENT));
    }

    #[test]
    fn peer_close_reports_hangup() {
        let dispatcher = Dispatcher::new();
        let (client, server) = loopback_pair();
        let (handler, events) = forwarding_handler();
        let token = dispatcher.register(server.as_raw_fd(), Interest::READ, handler).unwrap();
        drop(client);
        let edge = next_matching(&events, |e| e.hangup);
        assert!(edge.readable, "EOF must be readable: {edge:?}");
        dispatcher.deregister(token, server.as_raw_fd());
        assert_eq!(dispatcher.registered(), 0);
    }

    #[test]
    fn handler_may_deregister_itself() {
        let dispatcher = Arc::new(Dispatcher::new());
        let (mut client, server) = loopback_pair();
        let server_fd = server.as_raw_fd();
        let own_token: Arc<OnceLock<Token>> = Arc::new(OnceLock::new());
        let (sender, calls) = channel();
        let sender = Mutex::new(sender);
        let weak: Weak<Dispatcher> = Arc::downgrade(&dispatcher);
        let token_slot = Arc::clone(&own_token);
        let handler: Handler = Arc::new(move |_events| {
            if let (Some(dispatcher), Some(token)) = (weak.upgrade(), token_slot.get()) {
                dispatcher.deregister(*token, server_fd);
            }
            let _ = sender.lock().send(());
        });
        let token = dispatcher.register(server_fd, Interest::READ, handler).unwrap();
        own_token.set(token).unwrap();

        client.write_all(b"one").unwrap();
        calls.recv_timeout(WAIT).unwrap();
        assert_eq!(dispatcher.registered(), 0);
        client.write_all(b"two").unwrap();
        let late = calls.recv_timeout(QUIET);
        assert!(late.is_err(), "called after deregistering itself: {late:?}");
    }

    #[test]
    fn handler_may_register_another_fd() {
        let dispatcher = Arc::new(Dispatcher::new());
        let (mut first_client, first_server) = loopback_pair();
        let (mut second_client, second_server) = loopback_pair();
        let (inner_handler, inner_events) = forwarding_handler();
        let weak = Arc::downgrade(&dispatcher);
        let second_fd = second_server.as_raw_fd();
        let registered_inner = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&registered_inner);
        let outer: Handler = Arc::new(move |_events| {
            let mut slot = slot.lock();
            if slot.is_none() {
                if let Some(dispatcher) = weak.upgrade() {
                    *slot = Some(dispatcher.register(second_fd, Interest::READ, Arc::clone(&inner_handler)));
                }
            }
        });
        let outer_token = dispatcher.register(first_server.as_raw_fd(), Interest::READ, outer).unwrap();
        first_client.write_all(b"go").unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        let inner_token = loop {
            if let Some(result) = *registered_inner.lock() {
                break result.unwrap();
            }
            assert!(std::time::Instant::now() < deadline, "outer handler never ran");
            thread::sleep(Duration::from_millis(5));
        };
        second_client.write_all(b"inner").unwrap();
        next_matching(&inner_events, |e| e.readable);
        assert_eq!(dispatcher.registered(), 2);
        dispatcher.deregister(outer_token, first_server.as_raw_fd());
        dispatcher.deregister(inner_token, second_fd);
        assert_eq!(dispatcher.registered(), 0);
    }

    #[test]
    fn registration_errors_are_errno_values_and_leave_nothing_behind() {
        let dispatcher = Dispatcher::new();
        let (_client, server) = loopback_pair();
        let (handler, _events) = forwarding_handler();
        assert_eq!(dispatcher.register(-1, Interest::READ, Arc::clone(&handler)), Err(libc::EBADF));
        let token = dispatcher.register(server.as_raw_fd(), Interest::READ, Arc::clone(&handler)).unwrap();
        assert_eq!(dispatcher.register(server.as_raw_fd(), Interest::READ, Arc::clone(&handler)), Err(libc::EEXIST));
        assert_eq!(dispatcher.registered(), 1);
        dispatcher.deregister(token, server.as_raw_fd());
        // A second deregister of the same token is a no-op.
        dispatcher.deregister(token, server.as_raw_fd());
        assert_eq!(dispatcher.registered(), 0);
        assert_eq!(Arc::strong_count(&handler), 1, "the dispatcher kept a handler alive");
    }

    #[test]
    fn the_process_dispatcher_delivers_edges() {
        let (mut client, server) = loopback_pair();
        let (handler, events) = forwarding_handler();
        let token = dispatcher().register(server.as_raw_fd(), Interest::READ, handler).unwrap();
        client.write_all(b"x").unwrap();
        next_matching(&events, |e| e.readable);
        dispatcher().deregister(token, server.as_raw_fd());
    }

    #[test]
    fn registrations_spread_over_the_loops_and_each_loop_delivers() {
        let dispatcher = Dispatcher::with_loops(2);
        let pairs: Vec<_> = (0..4).map(|_| loopback_pair()).collect();
        let mut registered = Vec::new();
        for (_, server) in &pairs {
            let (handler, events) = forwarding_handler();
            let token = dispatcher.register(server.as_raw_fd(), Interest::READ, handler).unwrap();
            registered.push((token, events));
        }
        assert_eq!(dispatcher.event_loop_count(), 2);
        let per_loop = |index| registered.iter().filter(|(token, _)| token.event_loop() == index).count();
        assert_eq!((per_loop(0), per_loop(1)), (2, 2), "registrations not spread evenly");
        for ((client, _), (_, events)) in pairs.iter().zip(&registered) {
            (&*client).write_all(b"x").unwrap();
            next_matching(events, |e| e.readable);
        }
        for ((_, server), (token, _)) in pairs.iter().zip(&registered) {
            dispatcher.deregister(*token, server.as_raw_fd());
        }
        assert_eq!(dispatcher.registered(), 0);
    }

    /// A handler asking for another turn every time, as a connection whose
    /// turn keeps running out does: `again` is its own token once known.
    fn turn_taker(
        dispatcher: &Arc<Dispatcher>,
        calls: &Arc<AtomicUsize>,
        on_call: impl Fn(usize) -> bool + Send + Sync + 'static,
    ) -> (Handler, Arc<OnceLock<Token>>) {
        let own: Arc<OnceLock<Token>> = Arc::new(OnceLock::new());
        let (weak, token, calls) = (Arc::downgrade(dispatcher), Arc::clone(&own), Arc::clone(calls));
        let handler: Handler = Arc::new(move |_events| {
            let made = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if let (true, Some(dispatcher), Some(token)) = (on_call(made), weak.upgrade(), token.get()) {
                dispatcher.again(*token);
            }
        });
        (handler, own)
    }

    #[test]
    fn a_handler_gets_one_turn_a_round_however_many_edges_it_raises() {
        const ROUNDS: usize = 200;
        let dispatcher = Arc::new(Dispatcher::new());
        let (noisy_client, noisy_server) = loopback_pair();
        let (mut plain_client, plain_server) = loopback_pair();
        let (noisy_calls, plain_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        // The noisy one's peer sends a byte in every turn of the plain one:
        // a new edge every round on top of the turn it asked for.
        let seen = Arc::new(OnceLock::new());
        let (sender, seen_by_plain) = (Mutex::new(noisy_client), Arc::clone(&seen));
        let noisy_seen = Arc::clone(&noisy_calls);
        let (plain, plain_token) = turn_taker(&dispatcher, &plain_calls, move |made| {
            let _ = (&*sender.lock()).write_all(b"x");
            if made == ROUNDS {
                let _ = seen_by_plain.set(noisy_seen.load(Ordering::SeqCst));
            }
            made < ROUNDS
        });
        let (noisy, noisy_token) = turn_taker(&dispatcher, &noisy_calls, |_| true);
        noisy_token.set(dispatcher.register(noisy_server.as_raw_fd(), Interest::READ, noisy).unwrap()).unwrap();
        plain_token.set(dispatcher.register(plain_server.as_raw_fd(), Interest::READ, plain).unwrap()).unwrap();
        plain_client.write_all(b"go").unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        while seen.get().is_none() {
            assert!(std::time::Instant::now() < deadline, "the plain handler got {plain_calls:?} turns");
            thread::sleep(Duration::from_millis(5));
        }
        let noisy_turns = seen.get().copied().unwrap_or(0);
        // Within a round or two of each other (who went first), not twice.
        assert!(noisy_turns.abs_diff(ROUNDS) <= 2, "{noisy_turns} turns against {ROUNDS}");
        for (token, server) in [(noisy_token, &noisy_server), (plain_token, &plain_server)] {
            dispatcher.deregister(*token.get().unwrap(), server.as_raw_fd());
        }
    }

    #[test]
    fn tokens_are_never_reused() {
        let dispatcher = Dispatcher::new();
        let (_client, server) = loopback_pair();
        let (handler, _events) = forwarding_handler();
        let first = dispatcher.register(server.as_raw_fd(), Interest::READ, Arc::clone(&handler)).unwrap();
        dispatcher.deregister(first, server.as_raw_fd());
        let second = dispatcher.register(server.as_raw_fd(), Interest::READ, handler).unwrap();
        assert_ne!(first, second);
        // The stale token no longer controls the fd.
        assert_eq!(dispatcher.modify(first, server.as_raw_fd(), Interest::BOTH), Err(libc::ENOENT));
        dispatcher.deregister(first, server.as_raw_fd());
        assert_eq!(dispatcher.registered(), 1);
        dispatcher.deregister(second, server.as_raw_fd());
    }
}
