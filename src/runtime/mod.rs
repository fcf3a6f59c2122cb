//! The threads everything else runs on, each started on first use: epoll
//! event loops for socket readiness (one per two cores up to 4, a
//! connection staying on one), one timer thread, and a worker pool
//! for user callbacks (which may block, so it grows instead of deadlocking),
//! with serialized executors on top of it for per-stream ordering.

pub mod dispatcher;
pub mod serial;
pub(crate) mod spin;
pub mod timer;
pub mod workers;

pub use dispatcher::{dispatcher, event_loops, set_event_loops, Dispatcher, Events, Interest, Token, MAX_EVENT_LOOPS};
pub use serial::SerialExecutor;
pub use timer::{timers, TimerId, TimerService};
pub use workers::{raise_core_threads, spawn, worker_stats, WorkerStats};

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `task` on the worker pool, or on this thread when the pool cannot
/// take it, so a callback that must run is never lost.
pub fn spawn_or_run(task: impl FnOnce() + Send + 'static) {
    // Shared so the task can still run here when spawn refuses it.
    let task = std::sync::Arc::new(parking_lot::Mutex::new(Some(task)));
    let queued = std::sync::Arc::clone(&task);
    let spawned = spawn(move || {
        if let Some(task) = queued.lock().take() {
            task();
        }
    });
    if spawned.is_err() {
        if let Some(task) = task.lock().take() {
            task();
        }
    }
}

/// Runs `work`, and if it panics, reports the panic on stderr instead of
/// letting it end a runtime thread that other sockets and callbacks share.
pub(crate) fn run_contained(what: &str, work: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(work)) {
        log_error!("{what} panicked: {}", panic_message(payload.as_ref()));
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(non-string panic payload)"
    }
}
