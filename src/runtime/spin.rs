//! Brief spinning before a thread parks. Waking a parked thread onto an idle
//! core costs an inter-processor interrupt and the core's way out of its idle
//! state (on a virtual machine, out of halt through the hypervisor): tens of
//! microseconds, several times what a request/response step costs in code. A
//! thread whose recent waits were short therefore watches for its next piece
//! of work a moment (`BRPC_STREAM_SPIN_US`, 100 µs by default, 0 for never)
//! before it parks, so the step that hands it work finds it running.
//!
//! Spinning costs CPU, so it is bounded three ways: in time; in threads (at
//! most one more than the cores spin at once in a process, the rest park at
//! once); and by history (a thread spins only after three waits in a row
//! ended within two budgets, so work that comes at intervals, or in bursts
//! between pauses, is not spun for in vain). A spinner yields its core
//! every few rounds, so runnable threads are not kept from it.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

const BUDGET_VARIABLE: &str = "BRPC_STREAM_SPIN_US";
const DEFAULT_BUDGET: Duration = Duration::from_micros(100);
/// A wait no longer than this many budgets counts as short.
const SHORT_WAIT_BUDGETS: u32 = 2;
/// Short waits in a row before a thread spins: work that comes in bursts
/// between longer pauses (a request, its stream's CLOSE, then nothing for
/// a while) would otherwise be spun for in vain after every burst.
const SHORT_WAITS_TO_SPIN: u32 = 3;
/// Polls between a look at the clock and a yield of the core.
const ROUNDS_PER_YIELD: u32 = 16;

static SPINNING: AtomicUsize = AtomicUsize::new(0);

/// How long a thread spins before it parks; zero turns spinning off.
fn budget() -> Duration {
    static BUDGET: OnceLock<Duration> = OnceLock::new();
    *BUDGET.get_or_init(|| match std::env::var(BUDGET_VARIABLE) {
        Err(_) => DEFAULT_BUDGET,
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(micros) if micros <= 10_000 => Duration::from_micros(micros),
            _ => {
                log_warning!(
                    "ignoring {BUDGET_VARIABLE}={text:?} (not a number of microseconds from 0 to 10000); \
                     using {}",
                    DEFAULT_BUDGET.as_micros()
                );
                DEFAULT_BUDGET
            }
        },
    })
}

fn max_spinning() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get) + 1)
}

/// One waiting place's memory of how its waits went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spinner {
    /// Waits in a row that were short (within `SHORT_WAIT_BUDGETS`).
    short_waits: u32,
    began: Option<Instant>,
}

impl Default for Spinner {
    fn default() -> Self {
        Spinner { short_waits: SHORT_WAITS_TO_SPIN, began: None }
    }
}

impl Spinner {
    /// Polls `ready` until it holds or the budget ran out, unless a recent
    /// wait was long or enough threads spin already; true when it held.
    /// When false the caller parks and then calls `woke`.
    pub(crate) fn spin(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        let budget = budget();
        let began = Instant::now();
        self.began = Some(began);
        if self.short_waits < SHORT_WAITS_TO_SPIN || budget.is_zero() {
            return false;
        }
        if SPINNING.fetch_add(1, Ordering::AcqRel) >= max_spinning() {
            SPINNING.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let deadline = began + budget;
        let mut rounds = 0u32;
        let held = loop {
            if ready() {
                break true;
            }
            rounds = rounds.wrapping_add(1);
            if rounds % ROUNDS_PER_YIELD != 0 {
                std::hint::spin_loop();
            } else if Instant::now() >= deadline {
                break false;
            } else {
                std::thread::yield_now();
            }
        };
        SPINNING.fetch_sub(1, Ordering::AcqRel);
        if held {
            self.short_waits = self.short_waits.saturating_add(1);
        }
        held
    }

    /// The park after a fruitless `spin` ended: a long wait stops spinning
    /// until enough short ones follow.
    pub(crate) fn woke(&mut self) {
        if let Some(began) = self.began.take() {
            self.short_waits =
                if began.elapsed() <= budget() * SHORT_WAIT_BUDGETS { self.short_waits.saturating_add(1) } else { 0 };
        }
    }
}

/// A value handed from one thread to another that waits for it: the
/// waiter spins a moment (remembering per thread how its waits went)
/// before it parks.
#[derive(Debug)]
pub(crate) struct Handoff<T> {
    slot: Mutex<Option<T>>,
    filled: AtomicBool,
    parked: Condvar,
}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Handoff { slot: Mutex::new(None), filled: AtomicBool::new(false), parked: Condvar::new() }
    }
}

impl<T> Handoff<T> {
    pub(crate) fn put(&self, value: T) {
        *self.slot.lock() = Some(value);
        self.filled.store(true, Ordering::Release);
        self.parked.notify_one();
    }

    /// Waits for `put`'s value.
    pub(crate) fn take(&self) -> T {
        thread_local! {
            static SPINNER: Cell<Spinner> = Cell::new(Spinner::default());
        }
        // A thread whose locals are gone (a call from a destructor at
        // thread exit) starts from a fresh spinner and keeps nothing.
        let mut spinner = SPINNER.try_with(Cell::get).unwrap_or_default();
        let spun = spinner.spin(|| self.filled.load(Ordering::Acquire));
        let mut slot = self.slot.lock();
        let value = loop {
            match slot.take() {
                Some(value) => break value,
                None => self.parked.wait(&mut slot),
            }
        };
        drop(slot);
        if !spun {
            spinner.woke();
        }
        let _ = SPINNER.try_with(|kept| kept.set(spinner));
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_spin_sees_work_that_arrives_while_it_spins() {
        let arrived = Arc::new(AtomicBool::new(false));
        let setter = Arc::clone(&arrived);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_micros(20));
            setter.store(true, Ordering::Release);
        });
        let mut spinner = Spinner::default();
        // The setter may be late on a loaded machine; a miss just parks.
        let seen = (0..1000).any(|_| spinner.spin(|| arrived.load(Ordering::Acquire)));
        thread.join().unwrap();
        assert!(seen);
    }

    /// Whether a wait spins; another test's spinners may fill the cap for
    /// a moment, so a refusal is tried again.
    fn spins(spinner: &mut Spinner) -> bool {
        (0..1000).any(|_| {
            let mut polls = 0;
            spinner.spin(|| {
                polls += 1;
                false
            });
            spinner.woke();
            polls > 0
        })
    }

    #[test]
    fn after_a_long_wait_a_thread_parks_at_once_until_enough_short_waits_followed() {
        let mut spinner = Spinner::default();
        assert!(spins(&mut spinner), "a first wait spins");
        spinner.spin(|| false);
        std::thread::sleep(budget() * (SHORT_WAIT_BUDGETS + 1));
        spinner.woke();
        for wait in 0..SHORT_WAITS_TO_SPIN {
            let mut polls = 0;
            assert!(!spinner.spin(|| {
                polls += 1;
                false
            }));
            // Woken at once: a short wait.
            spinner.woke();
            assert_eq!(polls, 0, "wait {wait} after a long one parks without spinning");
        }
        assert!(spins(&mut spinner), "after enough short waits a wait spins again");
    }
}
