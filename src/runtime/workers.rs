//! The pool that runs user callbacks. Callbacks may block (brpc's users
//! block freely on bthreads), so the pool grows past its core size when
//! queued work stops moving: if the task at the front of the queue is still
//! there a moment (`GROWTH_DELAY`) later, every worker is stuck and one
//! more starts. Busy workers that keep taking tasks get no extra threads
//! (on two cores they would only add context switches). Growth stops at a
//! bound, reported once on stderr, past which tasks wait in the queue;
//! workers above the core size retire when idle.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::run_contained;
use super::spin::Spinner;

type Task = Box<dyn FnOnce() + Send>;

/// Threads the process pool may grow to unless `BRPC_STREAM_MAX_WORKERS` says otherwise.
const DEFAULT_MAX_THREADS: usize = 256;
const MAX_THREADS_VARIABLE: &str = "BRPC_STREAM_MAX_WORKERS";
/// How long a worker above the core size waits for work before it exits.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A snapshot of the process pool.
#[derive(Debug, Clone, Copy)]
pub struct WorkerStats {
    pub threads: usize,
    pub idle: usize,
    pub queued: usize,
    /// Workers kept however long they are idle.
    pub core_threads: usize,
    pub max_threads: usize,
}

/// Queues `task` on the process pool. `Err` (an errno) only when no worker
/// exists and none can be started; the task is then dropped unrun.
pub fn spawn(task: impl FnOnce() + Send + 'static) -> Result<(), i32> {
    process_pool().spawn(task)
}

pub fn worker_stats() -> WorkerStats {
    process_pool().stats()
}

/// Keeps at least `threads` workers in the process pool (brpc's
/// `ServerOptions::num_threads`, a hint that, like bthread's concurrency,
/// only ever grows), up to the pool's bound; returns the core size now.
pub fn raise_core_threads(threads: usize) -> usize {
    process_pool().raise_core_threads(threads)
}

fn process_pool() -> &'static WorkerPool {
    static POOL: OnceLock<WorkerPool> = OnceLock::new();
    POOL.get_or_init(|| WorkerPool::new(WorkerConfig::from_environment()))
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct WorkerConfig {
    /// Workers kept however long they are idle.
    pub(crate) core_threads: usize,
    pub(crate) max_threads: usize,
    pub(crate) idle_timeout: Duration,
}

impl WorkerConfig {
    /// Core size from the machine (at least 2), bound from the environment.
    fn from_environment() -> WorkerConfig {
        let parallelism = thread::available_parallelism().map_or(2, std::num::NonZero::get).max(2);
        let max_threads = match std::env::var(MAX_THREADS_VARIABLE) {
            Err(_) => DEFAULT_MAX_THREADS,
            Ok(text) => match text.trim().parse::<usize>() {
                Ok(bound) if bound > 0 => bound,
                _ => {
                    log_warning!(
                        "ignoring {MAX_THREADS_VARIABLE}={text:?} (not a positive number); \
                         using {DEFAULT_MAX_THREADS}"
                    );
                    DEFAULT_MAX_THREADS
                }
            },
        };
        WorkerConfig { core_threads: parallelism.min(max_threads), max_threads, idle_timeout: DEFAULT_IDLE_TIMEOUT }
    }
}

pub(crate) struct WorkerPool {
    shared: Arc<Shared>,
}

struct Shared {
    config: WorkerConfig,
    state: Mutex<State>,
    work_queued: Condvar,
    /// Tasks ever queued: the next task's sequence number, taken with the
    /// state locked, and what a spinning worker watches without the lock.
    queued_ever: AtomicU64,
}

struct State {
    /// Starts as the config's; raised by `raise_core_threads`.
    core_threads: usize,
    /// Tasks with the sequence number that lets a failed spawn take its own back.
    queue: VecDeque<(u64, Task)>,
    /// A growth check is scheduled on the timer.
    growth_check: bool,
    /// Every worker, including those still starting.
    threads: usize,
    /// Started but not yet looking at the queue: each will take a task.
    starting: usize,
    /// Waiting for work.
    idle: usize,
    /// Watching `queued_ever` before they wait: each takes a task unasked.
    spinning: usize,
    bound_reported: bool,
    stopping: bool,
}

impl WorkerPool {
    /// A pool with no threads yet; they start as tasks arrive.
    pub(crate) fn new(config: WorkerConfig) -> WorkerPool {
        WorkerPool {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(State {
                    core_threads: config.core_threads,
                    queue: VecDeque::new(),
                    growth_check: false,
                    threads: 0,
                    starting: 0,
                    idle: 0,
                    spinning: 0,
                    bound_reported: false,
                    stopping: false,
                }),
                work_queued: Condvar::new(),
                queued_ever: AtomicU64::new(0),
            }),
        }
    }

    pub(crate) fn spawn(&self, task: impl FnOnce() + Send + 'static) -> Result<(), i32> {
        let mut state = self.shared.state.lock();
        let sequence = self.shared.queued_ever.fetch_add(1, Ordering::Release);
        state.queue.push_back((sequence, Box::new(task)));
        if state.queue.len() <= state.spinning {
            return Ok(());
        }
        if state.queue.len() <= state.idle + state.starting + state.spinning {
            self.shared.work_queued.notify_one();
            return Ok(());
        }
        if state.threads >= self.shared.config.max_threads {
            if !state.bound_reported {
                state.bound_reported = true;
                log_warning!(
                    "worker pool at its bound of {} threads; callbacks are queued",
                    self.shared.config.max_threads
                );
            }
            return Ok(());
        }
        if state.threads >= state.core_threads {
            // Busy workers usually free up within moments; a thread is added
            // only when the queue stops moving (its workers are blocked).
            Shared::check_growth_later(&self.shared, &mut state);
            return Ok(());
        }
        state.threads += 1;
        state.starting += 1;
        drop(state);
        self.start_worker(sequence)
    }

    pub(crate) fn stats(&self) -> WorkerStats {
        let state = self.shared.state.lock();
        WorkerStats {
            threads: state.threads,
            idle: state.idle,
            queued: state.queue.len(),
            core_threads: state.core_threads,
            max_threads: self.shared.config.max_threads,
        }
    }

    pub(crate) fn raise_core_threads(&self, threads: usize) -> usize {
        let mut state = self.shared.state.lock();
        let raised = threads.min(self.shared.config.max_threads);
        if raised > state.core_threads {
            state.core_threads = raised;
        }
        state.core_threads
    }

    /// Starts the worker `spawn` already counted; if that fails and no other
    /// worker exists, nothing would ever run the task `sequence`, so it is
    /// taken back and the failure returned.
    fn start_worker(&self, sequence: u64) -> Result<(), i32> {
        let shared = Arc::clone(&self.shared);
        let Err(err) = thread::Builder::new().name("brpc_worker".into()).spawn(move || shared.work()) else {
            return Ok(());
        };
        let errno = err.raw_os_error().unwrap_or(libc::EAGAIN);
        let mut state = self.shared.state.lock();
        state.threads -= 1;
        state.starting -= 1;
        if state.threads > 0 {
            log_error!("cannot start a worker thread ({err}); the task waits for a running one");
            return Ok(());
        }
        let position = state.queue.iter().position(|(queued, _)| *queued == sequence);
        let task = position.and_then(|index| state.queue.remove(index));
        drop(state);
        // Dropped without the lock: its captures may spawn again on drop.
        drop(task);
        Err(errno)
    }
}

impl Drop for WorkerPool {
    /// Workers finish the queue, then exit; they are not joined because a
    /// task may still be blocked.
    fn drop(&mut self) {
        self.shared.state.lock().stopping = true;
        self.shared.work_queued.notify_all();
    }
}

/// How long queued work may stand still before the pool adds a thread.
const GROWTH_DELAY: Duration = Duration::from_millis(1);

impl Shared {
    fn check_growth_later(shared: &Arc<Shared>, state: &mut State) {
        if std::mem::replace(&mut state.growth_check, true) {
            return;
        }
        let front = state.queue.front().map(|(sequence, _)| *sequence);
        let shared = Arc::clone(shared);
        let at = std::time::Instant::now() + GROWTH_DELAY;
        super::timer::timers().schedule(at, Box::new(move || Shared::check_growth(&shared, front)));
    }

    /// On the timer: when the task at the front is the one seen before,
    /// every worker is stuck: add one, and look again later.
    fn check_growth(shared: &Arc<Shared>, front_before: Option<u64>) {
        let mut state = shared.state.lock();
        state.growth_check = false;
        if state.stopping || state.queue.len() <= state.idle + state.starting {
            return;
        }
        let stuck = state.queue.front().map(|(sequence, _)| *sequence) == front_before;
        if stuck && state.threads < shared.config.max_threads {
            state.threads += 1;
            state.starting += 1;
            let worker = Arc::clone(shared);
            if let Err(err) = thread::Builder::new().name("brpc_worker".into()).spawn(move || worker.work()) {
                state.threads -= 1;
                state.starting -= 1;
                log_error!("cannot start a worker thread ({err}); the task waits for a running one");
            }
        } else if stuck && !state.bound_reported {
            state.bound_reported = true;
            log_warning!("worker pool at its bound of {} threads; callbacks are queued", shared.config.max_threads);
        }
        if state.queue.len() > state.idle + state.starting {
            Shared::check_growth_later(shared, &mut state);
        }
    }

    fn work(&self) {
        let mut spinner = Spinner::default();
        let mut state = self.state.lock();
        state.starting -= 1;
        loop {
            if let Some((_, task)) = state.queue.pop_front() {
                MutexGuard::unlocked(&mut state, || run_contained("a worker task", task));
                continue;
            }
            if state.stopping {
                break;
            }
            if self.spin(&mut state, &mut spinner) {
                continue;
            }
            let may_retire = state.threads > state.core_threads;
            state.idle += 1;
            let timed_out = if may_retire {
                self.work_queued.wait_for(&mut state, self.config.idle_timeout).timed_out()
            } else {
                self.work_queued.wait(&mut state);
                false
            };
            state.idle -= 1;
            spinner.woke();
            if timed_out && state.queue.is_empty() && state.threads > state.core_threads {
                break;
            }
        }
        state.threads -= 1;
    }

    /// Watches a moment for the next task before the worker waits; true when
    /// one came or the pool is stopping.
    fn spin(&self, state: &mut MutexGuard<'_, State>, spinner: &mut Spinner) -> bool {
        let seen = self.queued_ever.load(Ordering::Acquire);
        state.spinning += 1;
        MutexGuard::unlocked(state, || spinner.spin(|| self.queued_ever.load(Ordering::Acquire) != seen));
        state.spinning -= 1;
        // A stop told while spinning was told to the parked workers only.
        !state.queue.is_empty() || state.stopping
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::sync::Barrier;
    use std::time::Instant;

    const WAIT: Duration = Duration::from_secs(5);

    fn test_pool(core_threads: usize, max_threads: usize) -> WorkerPool {
        WorkerPool::new(WorkerConfig { core_threads, max_threads, idle_timeout: Duration::from_millis(200) })
    }

    fn wait_for(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_raised_core_size_keeps_that_many_idle_workers_and_stops_at_the_bound() {
        let pool = test_pool(1, 4);
        assert_eq!(pool.raise_core_threads(3), 3);
        let barrier = Arc::new(Barrier::new(4));
        for _ in 0..3 {
            let barrier = Arc::clone(&barrier);
            pool.spawn(move || {
                barrier.wait();
            })
            .unwrap();
        }
        wait_for("three workers", || pool.stats().threads == 3);
        barrier.wait();
        wait_for("three idle workers", || pool.stats().idle == 3);
        // Workers above a core size of 1 would retire after 200 ms idle.
        thread::sleep(Duration::from_millis(600));
        assert_eq!(pool.stats().threads, 3, "core workers stay however long they are idle");
        assert_eq!(pool.raise_core_threads(10), 4, "the core size stops at the bound");
        assert_eq!(pool.raise_core_threads(2), 4, "the core size never shrinks");
        assert_eq!(pool.stats().core_threads, 4);
    }

    #[test]
    fn runs_every_task() {
        let pool = test_pool(2, 8);
        let (sender, done) = channel();
        for index in 0..200 {
            let sender = sender.clone();
            pool.spawn(move || sender.send(index).unwrap()).unwrap();
        }
        let mut seen: Vec<i32> = (0..200).map(|_| done.recv_timeout(WAIT).unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn a_single_worker_runs_tasks_in_fifo_order() {
        let pool = test_pool(1, 1);
        let (sender, done) = channel();
        for index in 0..50 {
            let sender = sender.clone();
            pool.spawn(move || sender.send(index).unwrap()).unwrap();
        }
        let order: Vec<i32> = (0..50).map(|_| done.recv_timeout(WAIT).unwrap()).collect();
        assert_eq!(order, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn grows_while_tasks_block_and_shrinks_back_when_idle() {
        const CORE: usize = 2;
        const BLOCKED: usize = 2 * CORE + 2;
        let pool = test_pool(CORE, 64);
        // Every task blocks until all of them run at once, so passing the
        // barrier proves the pool grew to BLOCKED threads.
        let barrier = Arc::new(Barrier::new(BLOCKED));
        let (sender, done) = channel();
        for _ in 0..BLOCKED {
            let barrier = Arc::clone(&barrier);
            let sender = sender.clone();
            pool.spawn(move || {
                barrier.wait();
                sender.send(()).unwrap();
            })
            .unwrap();
        }
        for _ in 0..BLOCKED {
            done.recv_timeout(WAIT).unwrap();
        }
        wait_for("the pool to shrink to its core size", || pool.stats().threads == CORE);
        let stats = pool.stats();
        assert_eq!((stats.idle, stats.queued), (CORE, 0));
    }

    #[test]
    fn at_the_bound_tasks_queue_and_run_once_a_worker_frees() {
        let pool = test_pool(1, 3);
        let (release_sender, release) = channel::<()>();
        let release = Arc::new(Mutex::new(release));
        let (sender, done) = channel();
        for index in 0..5 {
            let release = Arc::clone(&release);
            let sender = sender.clone();
            pool.spawn(move || {
                if index < 3 {
                    release.lock().recv_timeout(WAIT).unwrap();
                }
                sender.send(index).unwrap();
            })
            .unwrap();
        }
        wait_for("three blocked workers and two queued tasks", || {
            let stats = pool.stats();
            stats.threads == 3 && stats.queued == 2
        });
        assert_eq!(pool.stats().max_threads, 3);
        for _ in 0..3 {
            release_sender.send(()).unwrap();
        }
        let mut finished: Vec<i32> = (0..5).map(|_| done.recv_timeout(WAIT).unwrap()).collect();
        finished.sort_unstable();
        assert_eq!(finished, vec![0, 1, 2, 3, 4]);
        assert!(pool.stats().threads <= 3, "{:?}", pool.stats());
    }

    #[test]
    fn a_panicking_task_leaves_the_worker_running() {
        let pool = test_pool(1, 1);
        pool.spawn(|| panic!("deliberate test panic in a worker task")).unwrap();
        let (sender, done) = channel();
        pool.spawn(move || sender.send(()).unwrap()).unwrap();
        done.recv_timeout(WAIT).unwrap();
        assert_eq!(pool.stats().threads, 1);
    }

    #[test]
    fn dropping_a_pool_lets_its_workers_exit() {
        let pool = test_pool(2, 4);
        let (sender, done) = channel();
        pool.spawn(move || sender.send(()).unwrap()).unwrap();
        done.recv_timeout(WAIT).unwrap();
        let shared = Arc::clone(&pool.shared);
        drop(pool);
        wait_for("the workers to exit", || shared.state.lock().threads == 0);
    }

    #[test]
    fn the_process_pool_runs_tasks_and_reports_its_size() {
        let (sender, done) = channel();
        spawn(move || sender.send(()).unwrap()).unwrap();
        done.recv_timeout(WAIT).unwrap();
        let stats = worker_stats();
        assert!(stats.threads >= 1 && stats.threads <= stats.max_threads, "{stats:?}");
    }
}
