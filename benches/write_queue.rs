//! The socket's multi-producer write queue: what one message costs to
//! queue and hand to the owner, alone and with producers contending.
//!
//!     cargo bench --bench write_queue -- --quick

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use brpc_stream::socket::write_queue::{Owner, WriteQueue};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Drains until the queue is released; returns how many items it took.
fn drain(queue: &WriteQueue<u64>, mut owner: Owner, out: &mut VecDeque<u64>) -> usize {
    let mut taken = 0;
    loop {
        queue.take_pending(&mut owner, out);
        taken += out.len();
        out.clear();
        match queue.try_release(owner) {
            Ok(()) => return taken,
            Err(still_owner) => owner = still_owner,
        }
    }
}

fn single_thread(c: &mut Criterion) {
    let queue = WriteQueue::new();
    let mut out = VecDeque::new();
    let mut group = c.benchmark_group("write_queue");
    group.throughput(Throughput::Elements(1));
    // Each push finds the queue idle, so it also takes ownership and drains.
    group.bench_function("push+take, one thread", |b| {
        b.iter(|| {
            if let Some(owner) = queue.push(black_box(7u64)) {
                black_box(drain(&queue, owner, &mut out));
            }
        })
    });
    group.finish();
}

/// Items per producer in one contended round.
const PER_PRODUCER: u64 = 10_000;
const PRODUCERS: usize = 4;

/// One round: PRODUCERS threads push PER_PRODUCER items each; whoever gets
/// ownership hands it to the owner thread (as the socket hands it to the
/// I/O thread), which drains. Returns the time from the start signal until
/// every item was taken.
fn contended_round() -> Duration {
    let queue = Arc::new(WriteQueue::<u64>::new());
    let (handoff_tx, handoff_rx) = std::sync::mpsc::channel::<Owner>();
    let start = Arc::new(Barrier::new(PRODUCERS + 1));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let queue = Arc::clone(&queue);
            let handoff = handoff_tx.clone();
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                for i in 0..PER_PRODUCER {
                    if let Some(owner) = queue.push(((p as u64) << 32) | i) {
                        let _ = handoff.send(owner);
                    }
                }
            })
        })
        .collect();
    drop(handoff_tx);
    let expected = PER_PRODUCER as usize * PRODUCERS;
    start.wait();
    let began = Instant::now();
    let mut out = VecDeque::new();
    let mut taken = 0;
    while taken < expected {
        match handoff_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(owner) => taken += drain(&queue, owner, &mut out),
            Err(_) => panic!("write queue bench: {taken} of {expected} items after 10 s"),
        }
    }
    let elapsed = began.elapsed();
    for producer in producers {
        let _ = producer.join();
    }
    elapsed
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("write_queue");
    group.throughput(Throughput::Elements(PER_PRODUCER * PRODUCERS as u64));
    group.sample_size(20);
    group.bench_function("4 producers, one owner", |b| {
        b.iter_custom(|rounds| (0..rounds).map(|_| contended_round()).sum())
    });
    group.finish();
}

criterion_group!(benches, single_thread, contended);
criterion_main!(benches);
