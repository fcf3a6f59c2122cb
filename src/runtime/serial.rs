//! Serialized execution on the worker pool: tasks submitted to one
//! [`SerialExecutor`] run one at a time, in submission order, on whichever
//! worker is free; different executors run in parallel. A stream's
//! callbacks go through one of these.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;

use super::workers::spawn;

type Task = Box<dyn FnOnce() + Send>;

#[derive(Clone, Default)]
pub struct SerialExecutor {
    inner: Arc<Mutex<Queue>>,
}

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    /// A worker is draining the queue.
    running: bool,
    /// The task running asked for the worker to be handed back after it.
    end_turn: bool,
}

/// Tasks run per turn before the worker is handed back, so one busy
/// executor cannot hold a worker forever.
const TASKS_PER_TURN: usize = 64;

impl SerialExecutor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `task` after every task submitted before it.
    pub fn submit(&self, task: impl FnOnce() + Send + 'static) {
        drop(self.enqueue(task));
    }

    /// Queues `task` after every task submitted before it, like
    /// [`SerialExecutor::submit`], but starts a worker for the queue only
    /// when the returned [`Queued`] is dropped. A caller may fix a task's
    /// place in the order while holding a lock of its own (the task itself
    /// may take that lock) and start the worker once the lock is released.
    pub fn enqueue(&self, task: impl FnOnce() + Send + 'static) -> Queued {
        let start = {
            let mut queue = self.inner.lock();
            queue.tasks.push_back(Box::new(task));
            !std::mem::replace(&mut queue.running, true)
        };
        Queued { to_start: start.then(|| self.clone()) }
    }

    /// Like [`SerialExecutor::enqueue`], called from a task of this
    /// executor: the worker goes back to the pool once the calling task
    /// returns, and the queue (`task` last) continues on a fresh turn,
    /// behind the pool's other work.
    pub fn enqueue_next_turn(&self, task: impl FnOnce() + Send + 'static) -> Queued {
        self.inner.lock().end_turn = true;
        self.enqueue(task)
    }

    fn schedule(&self) {
        let inner = Arc::clone(&self.inner);
        if spawn(move || run(&inner)).is_err() {
            // No worker at all: run here rather than lose the tasks.
            run(&self.inner);
        }
    }
}

/// A task queued by [`SerialExecutor::enqueue`]; dropping this starts a
/// worker for its queue if none runs it yet.
#[must_use = "dropping it starts the task's worker; drop it once your locks are released"]
pub struct Queued {
    to_start: Option<SerialExecutor>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(executor) = self.to_start.take() {
            executor.schedule();
        }
    }
}

thread_local! {
    /// Inside [`batch_starts`]: the queues whose workers start at its end.
    static BATCHED: Cell<Option<Vec<Queued>>> = const { Cell::new(None) };
}

impl Queued {
    /// Starts the queue's worker when this thread's [`batch_starts`] ends,
    /// or now outside one.
    pub fn start_after_batch(self) {
        let mut pending = Some(self);
        let _ = BATCHED.try_with(|batched| {
            if let Some(mut starts) = batched.take() {
                starts.extend(pending.take());
                batched.set(Some(starts));
            }
        });
        drop(pending);
    }
}

/// Runs `work`; the workers it starts with [`Queued::start_after_batch`]
/// start when it returns or unwinds, each once. An event loop cutting one
/// read's frames thereby hands a stream all the messages of the read in
/// one turn, rather than a worker waking for the first while the rest are
/// still being cut (a turn, and a FEEDBACK, per few messages).
pub fn batch_starts<R>(work: impl FnOnce() -> R) -> R {
    struct StartAtEnd;
    impl Drop for StartAtEnd {
        fn drop(&mut self) {
            // Dropping each Queued starts its worker.
            drop(BATCHED.try_with(Cell::take));
        }
    }
    let outermost = BATCHED
        .try_with(|batched| {
            let current = batched.take();
            let outermost = current.is_none();
            batched.set(Some(current.unwrap_or_default()));
            outermost
        })
        .unwrap_or(false);
    if !outermost {
        return work();
    }
    let _start_at_end = StartAtEnd;
    work()
}

fn run(inner: &Arc<Mutex<Queue>>) {
    for _ in 0..TASKS_PER_TURN {
        let task = {
            let mut queue = inner.lock();
            match queue.tasks.pop_front() {
                Some(task) => task,
                None => {
                    queue.running = false;
                    return;
                }
            }
        };
        super::run_contained("a serialized task", task);
        if std::mem::take(&mut inner.lock().end_turn) {
            break;
        }
    }
    // More work left: continue on a fresh turn of the pool.
    let executor = SerialExecutor { inner: Arc::clone(inner) };
    executor.schedule();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn tasks_of_one_executor_run_in_order_and_never_together() {
        let executor = SerialExecutor::new();
        let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        for i in 0..500 {
            let active = Arc::clone(&active);
            let tx = tx.clone();
            executor.submit(move || {
                assert_eq!(active.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0);
                let _ = tx.send(i);
                active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        let got: Vec<i32> = (0..500).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        assert_eq!(got, (0..500).collect::<Vec<_>>());
    }

    #[test]
    fn a_batch_starts_the_queues_it_touched_when_it_ends_and_not_before() {
        let (tx, rx) = mpsc::channel();
        let executors = [SerialExecutor::new(), SerialExecutor::new()];
        batch_starts(|| {
            batch_starts(|| {
                for (index, executor) in executors.iter().enumerate() {
                    let tx = tx.clone();
                    executor.enqueue(move || tx.send(index).unwrap()).start_after_batch();
                }
            });
            // The inner batch ended, the outer one has not: nothing started.
            assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        });
        let mut ran: Vec<usize> = (0..2).map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        ran.sort_unstable();
        assert_eq!(ran, vec![0, 1]);
        // Outside a batch a queue starts at once.
        let tx = tx.clone();
        executors[0].enqueue(move || tx.send(7).unwrap()).start_after_batch();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 7);
    }

    #[test]
    fn a_batch_that_unwinds_still_starts_what_it_queued() {
        let (tx, rx) = mpsc::channel();
        let executor = SerialExecutor::new();
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            batch_starts(|| {
                executor.enqueue(move || tx.send(()).unwrap()).start_after_batch();
                panic!("deliberate test panic inside a batch");
            })
        }));
        assert!(unwound.is_err());
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
}
