//! loom models of the write queue: producers racing an owner that drains
//! and releases, under every interleaving.
#![cfg(brpc_loom)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use brpc_stream::socket::write_queue::WriteQueue;
use loom::sync::Arc;
use loom::thread;

/// Unbounded runs of three threads take too long; this bound keeps each
/// model within seconds.
const PREEMPTION_BOUND: Option<usize> = Some(4);

struct Shared {
    queue: WriteQueue<(usize, usize)>,
    /// Threads that hold the ownership right now: never above 1.
    owners: AtomicUsize,
    delivered: Mutex<Vec<(usize, usize)>>,
}

/// Pushes `count` items tagged `producer`; whenever a push hands over the
/// ownership, drains until the release succeeds.
fn produce(shared: &Shared, producer: usize, count: usize) {
    let mut out = VecDeque::new();
    for seq in 0..count {
        let Some(mut owner) = shared.queue.push((producer, seq)) else {
            continue;
        };
        assert_eq!(shared.owners.fetch_add(1, Ordering::SeqCst), 0, "two owners");
        loop {
            shared.queue.take_pending(&mut owner, &mut out);
            shared.delivered.lock().unwrap().extend(out.drain(..));
            shared.owners.fetch_sub(1, Ordering::SeqCst);
            match shared.queue.try_release(owner) {
                Ok(()) => break,
                Err(still) => {
                    assert_eq!(shared.owners.fetch_add(1, Ordering::SeqCst), 0, "two owners");
                    owner = still;
                }
            }
        }
    }
}

fn model(name: &str, counts: &'static [usize]) {
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = PREEMPTION_BOUND;
    let started = std::time::Instant::now();
    builder.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            queue: WriteQueue::new(),
            owners: AtomicUsize::new(0),
            delivered: Mutex::new(Vec::new()),
        });
        let producers: Vec<_> = counts
            .iter()
            .enumerate()
            .skip(1)
            .map(|(producer, &count)| {
                let shared = shared.clone();
                thread::spawn(move || produce(&shared, producer, count))
            })
            .collect();
        produce(&shared, 0, counts[0]);
        for producer in producers {
            producer.join().unwrap();
        }
        assert!(shared.queue.is_idle());
        assert_eq!(shared.owners.load(Ordering::SeqCst), 0);
        let delivered = shared.delivered.lock().unwrap();
        assert_eq!(delivered.len(), counts.iter().sum::<usize>(), "an item lost or doubled");
        let mut next = vec![0; counts.len()];
        for &(producer, seq) in delivered.iter() {
            assert_eq!(seq, next[producer], "producer {producer} out of order");
            next[producer] += 1;
        }
    });
    eprintln!("{name}: {} interleavings in {:?}", runs.load(Ordering::Relaxed), started.elapsed());
}

#[test]
fn two_producers_three_items_each() {
    model("two_producers_three_items_each", &[3, 3]);
}

#[test]
fn three_producers() {
    model("three_producers", &[2, 2, 1]);
}
