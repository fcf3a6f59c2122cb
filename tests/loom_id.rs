//! loom models of the id registry: every interleaving of concurrent
//! address / set_failed / release on one slot.
#![cfg(brpc_loom)]

use std::sync::atomic::{AtomicUsize, Ordering};

use brpc_stream::id::{Id, Registry};
use loom::sync::Arc;
use loom::thread;

/// Remembers the id it was created under; counts its drops.
struct Tracked {
    created_as: Id,
    drops: std::sync::Arc<AtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

/// Unbounded runs take over ten minutes; 5 preemptions take seconds and
/// still catch a weakened ordering or a store in place of fetch_add.
const PREEMPTION_BOUND: Option<usize> = Some(5);

fn create(registry: &Registry<Tracked>, drops: &std::sync::Arc<AtomicUsize>) -> Id {
    registry.create_with(|id| Tracked { created_as: id, drops: drops.clone() }).unwrap()
}

/// Checks `f` under every interleaving (up to the preemption bound), and reports
/// how many loom ran.
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = PREEMPTION_BOUND;
    let started = std::time::Instant::now();
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        f();
    });
    eprintln!("{name}: {} interleavings in {:?}", runs.load(Ordering::Relaxed), started.elapsed());
}

#[test]
fn racing_set_failed_has_one_winner_and_one_recycle() {
    model("racing_set_failed_has_one_winner_and_one_recycle", || {
        let registry = Arc::new(Registry::with_capacity_limit(2));
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let id = create(&registry, &drops);
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let registry = registry.clone();
                thread::spawn(move || {
                    let held = registry.address(id);
                    let won = registry.set_failed(id);
                    if let Some(object) = held {
                        assert_eq!(object.created_as, id);
                    }
                    won
                })
            })
            .collect();
        let mut winners = usize::from(registry.set_failed(id));
        for racer in racers {
            winners += usize::from(racer.join().unwrap());
        }
        assert_eq!(winners, 1, "exactly one set_failed wins");
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(registry.live(), 0);
    });
}

#[test]
fn address_races_set_failed_and_last_release() {
    model("address_races_set_failed_and_last_release", || {
        let registry = Arc::new(Registry::with_capacity_limit(2));
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let id = create(&registry, &drops);
        let reader = {
            let registry = registry.clone();
            let drops = drops.clone();
            thread::spawn(move || {
                if let Some(object) = registry.address(id) {
                    // loom flags this read if it can race the recycle.
                    assert_eq!(object.created_as, id);
                    assert_eq!(drops.load(Ordering::SeqCst), 0);
                }
            })
        };
        let late_reader = {
            let registry = registry.clone();
            thread::spawn(move || {
                if let Some(object) = registry.address_failed_as_well(id) {
                    assert_eq!(object.created_as, id);
                }
            })
        };
        let holder = registry.address(id).unwrap();
        assert!(registry.set_failed(id));
        assert!(registry.address(id).is_none());
        drop(holder);
        reader.join().unwrap();
        late_reader.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(registry.live(), 0);
    });
}

#[test]
fn address_failed_as_well_races_the_last_release() {
    model("address_failed_as_well_races_the_last_release", || {
        let registry = Arc::new(Registry::with_capacity_limit(2));
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let id = create(&registry, &drops);
        let holder = registry.address(id).unwrap();
        assert!(registry.set_failed(id));
        let late = {
            let registry = registry.clone();
            thread::spawn(move || {
                if let Some(object) = registry.address_failed_as_well(id) {
                    assert!(object.failed());
                    assert_eq!(object.created_as, id);
                    let copy = object.clone();
                    drop(object);
                    assert_eq!(copy.created_as, id);
                }
            })
        };
        drop(holder);
        late.join().unwrap();
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!(registry.live(), 0);
    });
}

#[test]
fn stale_address_races_reuse_of_the_slot() {
    model("stale_address_races_reuse_of_the_slot", || {
        let registry = Arc::new(Registry::with_capacity_limit(1));
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let stale = create(&registry, &drops);
        assert!(registry.set_failed(stale));
        let prober = {
            let registry = registry.clone();
            thread::spawn(move || {
                // Its transient counts land on the vacant slot, the new or
                // the failed new object; they must reach none of them.
                assert!(registry.address_failed_as_well(stale).is_none());
                assert!(registry.address(stale).is_none());
            })
        };
        let fresh = create(&registry, &drops);
        assert_ne!(fresh, stale);
        let user = {
            let registry = registry.clone();
            thread::spawn(move || {
                if let Some(object) = registry.address(fresh) {
                    assert_eq!(object.created_as, fresh);
                }
            })
        };
        assert!(registry.set_failed(fresh));
        prober.join().unwrap();
        user.join().unwrap();
        // Whoever released last (we or the prober) recycled it, once.
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        assert_eq!(registry.live(), 0);
    });
}

#[test]
fn a_guessed_id_never_reaches_an_unpublished_value() {
    model("a_guessed_id_never_reaches_an_unpublished_value", || {
        let registry = Arc::new(Registry::with_capacity_limit(1));
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let first = create(&registry, &drops);
        assert!(registry.set_failed(first));
        // The next object on the slot will carry version + 2.
        let guessed = first + (2 << 32);
        let guesser = {
            let registry = registry.clone();
            thread::spawn(move || {
                if let Some(object) = registry.address(guessed) {
                    assert_eq!(object.created_as, guessed);
                }
            })
        };
        let next = create(&registry, &drops);
        assert_eq!(next, guessed);
        guesser.join().unwrap();
        assert!(registry.set_failed(next));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    });
}
