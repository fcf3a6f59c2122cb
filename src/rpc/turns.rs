//! The order a server's calls run in: each connection's calls wait in its
//! own queue, and the workers take one call from each connection with calls
//! waiting in turn. Run first come first served, a quiet client's call
//! waited behind every call the busy connections had queued (up to 1024
//! each, [`super::admission::MAX_UNANSWERED_CALLS_PER_CONNECTION`]): half a
//! second behind three flooders of a method computing 0.2 ms. Now it waits
//! for one call of each.
//!
//! Every call queued spawns one worker task, and each task runs whichever
//! call is next in turn, not its own: the worker pool sees as many tasks as
//! before (and grows when they block, as before); only their order changes.
//! A connection's calls start in the order they were read.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::runtime::spawn;

type Call = Box<dyn FnOnce() + Send>;

/// One connection's calls not yet started.
#[derive(Default)]
pub(super) struct CallQueue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    calls: VecDeque<Call>,
    /// In the line (changed only with the line locked).
    in_line: bool,
}

/// The connections with calls waiting, in the order they get their turn.
pub(super) struct Turns {
    line: Mutex<VecDeque<Arc<CallQueue>>>,
}

/// The process's line: every server's connections take turns in it.
static TURNS: Turns = Turns::new();

/// Queues `call` behind its connection's others, in the process's line.
pub(super) fn run_in_turn(queue: &Arc<CallQueue>, call: Call) {
    TURNS.run_in_turn(queue, call);
}

impl Turns {
    const fn new() -> Turns {
        Turns { line: Mutex::new(VecDeque::new()) }
    }

    /// Queues `call` behind `queue`'s others and has a worker run the next
    /// call in turn. When no worker can be started the next call in turn is
    /// dropped unrun (a server call dropped answers `EINTERNAL`), as a
    /// refused spawn drops its task.
    fn run_in_turn(&'static self, queue: &Arc<CallQueue>, call: Call) {
        self.queue(queue, call);
        if spawn(move || self.run_next()).is_err() {
            drop(self.next());
        }
    }

    fn queue(&self, queue: &Arc<CallQueue>, call: Call) {
        // The line, then a queue, here and in `next`: a worker taking a call
        // holds the line throughout, so another never finds it empty while
        // a connection with calls is out of it.
        let mut line = self.line.lock();
        let mut state = queue.state.lock();
        state.calls.push_back(call);
        if !state.in_line {
            state.in_line = true;
            line.push_back(Arc::clone(queue));
        }
    }

    fn run_next(&self) {
        if let Some(call) = self.next() {
            call();
        }
    }

    /// The first call of the connection whose turn it is; the connection
    /// goes to the back of the line if it has more.
    fn next(&self) -> Option<Call> {
        let mut line = self.line.lock();
        let queue = line.pop_front()?;
        let mut state = queue.state.lock();
        let call = state.calls.pop_front();
        if state.calls.is_empty() {
            state.in_line = false;
        } else {
            drop(state);
            line.push_back(queue);
        }
        call
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    fn own_line() -> &'static Turns {
        Box::leak(Box::new(Turns::new()))
    }

    #[test]
    fn calls_of_several_queues_run_in_turn_and_each_queue_in_order() {
        // Taken by hand (no worker runs them): the order is the line's.
        let turns = own_line();
        let queues: Vec<Arc<CallQueue>> = (0..3).map(|_| Arc::default()).collect();
        let (sender, ran) = channel();
        for (index, queue) in queues.iter().enumerate() {
            for call in 0..if index == 0 { 4 } else { 2 } {
                let sender = sender.clone();
                turns.queue(queue, Box::new(move || sender.send((index, call)).unwrap()));
            }
        }
        while let Some(call) = turns.next() {
            call();
        }
        let order: Vec<(usize, i32)> = ran.try_iter().collect();
        assert_eq!(order, vec![(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2), (0, 3)]);
        assert!(queues.iter().all(|queue| !queue.state.lock().in_line));
    }

    #[test]
    fn every_call_queued_runs_once_on_the_workers_while_others_queue_and_take() {
        const THREADS: usize = 4;
        const CALLS: usize = 2000;
        let turns = own_line();
        let queues: Arc<Vec<Arc<CallQueue>>> = Arc::new((0..2).map(|_| Arc::default()).collect());
        let (sender, ran) = channel();
        let queuers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (queues, sender) = (Arc::clone(&queues), sender.clone());
                std::thread::spawn(move || {
                    for call in (thread..CALLS).step_by(THREADS) {
                        let sender = sender.clone();
                        turns.run_in_turn(&queues[call % queues.len()], Box::new(move || sender.send(call).unwrap()));
                    }
                })
            })
            .collect();
        for queuer in queuers {
            queuer.join().unwrap();
        }
        let mut seen: Vec<usize> =
            (0..CALLS).map(|_| ran.recv_timeout(Duration::from_secs(10)).expect("a call left unrun")).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..CALLS).collect::<Vec<_>>());
        assert!(turns.line.lock().is_empty());
    }
}
