//! The wait-free multi-producer write queue in front of a socket (brpc's
//! `_write_head` idea, written afresh).
//!
//! Producers push with one swap of `head` and one store; the producer that
//! finds the queue idle becomes its [`Owner`], the only writer to the fd,
//! and drains until [`WriteQueue::try_release`] succeeds. Pushes form a
//! list from `head` back to older nodes; the owner keeps the newest node it
//! took (its item already taken) as a marker, so `head` stays non-null while
//! owned and giving ownership up is one CAS of `head` from the marker to null.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use crate::sync::{spin_loop, AtomicPtr, Ordering, UnsafeCell};

/// Gives each queue a number, so an `Owner` only works on its own queue.
static NEXT_SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Spins before yielding the CPU to a producer preempted between its swap
/// and its link store.
#[cfg(not(brpc_loom))]
const SPINS_BEFORE_YIELD: u32 = 64;

struct Node<T> {
    item: UnsafeCell<Option<T>>,
    /// The next older node, `not_linked()` until the producer stores it.
    /// Once the owner took the node it links the next newer one instead.
    next: AtomicPtr<Node<T>>,
}

/// A value no node can have: the link a producer has not stored yet.
fn not_linked<T>() -> *mut Node<T> {
    NonNull::dangling().as_ptr()
}

pub struct WriteQueue<T> {
    head: AtomicPtr<Node<T>>,
    /// The owner's marker: the newest node it took, or null before its first
    /// take. Touched only by the owner.
    taken_up_to: UnsafeCell<*mut Node<T>>,
    serial: u64,
    _owns: PhantomData<Box<Node<T>>>,
}

// SAFETY: items move from producers to the owner and are never shared, so
// `T: Send` suffices; the owner-only cell is guarded by ownership, which
// passes between threads through `head`'s acquire/release operations.
unsafe impl<T: Send> Send for WriteQueue<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for WriteQueue<T> {}

/// Proof that its holder is the only writer of one queue.
#[must_use = "an owner must drain the queue until try_release succeeds"]
#[derive(Debug)]
pub struct Owner {
    queue: u64,
}

impl<T> Default for WriteQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> WriteQueue<T> {
    pub fn new() -> Self {
        Self {
            head: AtomicPtr::new(ptr::null_mut()),
            taken_up_to: UnsafeCell::new(ptr::null_mut()),
            serial: NEXT_SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            _owns: PhantomData,
        }
    }

    /// Appends `item`, wait-free. Returns the ownership when the queue was
    /// idle: the caller is then the only writer and must drain (possibly on
    /// another thread) until [`try_release`](Self::try_release) succeeds.
    pub fn push(&self, item: T) -> Option<Owner> {
        let node =
            Box::into_raw(Box::new(Node { item: UnsafeCell::new(Some(item)), next: AtomicPtr::new(not_linked()) }));
        // Release publishes the node; Acquire, when the queue was idle,
        // orders us after the previous owner's release (and its writes to
        // `taken_up_to`).
        let older = self.head.swap(node, Ordering::AcqRel);
        // SAFETY: the owner frees a node only after reading its link, which
        // we store last.
        let next = unsafe { &(*node).next };
        if older.is_null() {
            // The first node of this ownership: null ends the owner's walk.
            // Relaxed: the owner is us, or got the Owner from us.
            next.store(ptr::null_mut(), Ordering::Relaxed);
            return Some(Owner { queue: self.serial });
        }
        // Release: the owner frees this node once it has read the link; its
        // Acquire orders this last access of ours before that.
        next.store(older, Ordering::Release);
        None
    }

    /// Owner only: moves every item pushed so far and not yet taken onto
    /// `out`, oldest first. May briefly wait for a producer between its swap
    /// and its link store. An owner of another queue takes nothing.
    pub fn take_pending(&self, owner: &mut Owner, out: &mut VecDeque<T>) {
        if owner.queue != self.serial {
            return;
        }
        // SAFETY: the cell is only touched by the owner, which we are.
        let taken_up_to = self.taken_up_to.with(|cell| unsafe { *cell });
        // Acquire: pairs with push's swap, making the newest node visible.
        let newest = self.head.load(Ordering::Acquire);
        if newest == taken_up_to {
            return;
        }
        // Reverse newest → taken_up_to into oldest-first order, reusing
        // `next` as the forward link: a producer is done with its node once
        // the link is stored.
        let mut forward = ptr::null_mut();
        let mut cursor = newest;
        while cursor != taken_up_to {
            let older = Self::wait_for_link(cursor);
            // SAFETY: nodes between head and the marker are alive and,
            // once linked, only the owner's.
            unsafe { (*cursor).next.store(forward, Ordering::Relaxed) };
            forward = cursor;
            cursor = older;
        }
        while !forward.is_null() {
            // SAFETY: as above.
            let node = unsafe { &*forward };
            // SAFETY: the item was written before the node was published,
            // which the link acquires ordered before us.
            if let Some(item) = node.item.with_mut(|cell| unsafe { (*cell).take() }) {
                out.push_back(item);
            }
            let newer = node.next.load(Ordering::Relaxed);
            if forward != newest {
                // SAFETY: taken, and no producer links to it any more (the
                // newer node's link was read above).
                drop(unsafe { Box::from_raw(forward) });
            }
            forward = newer;
        }
        if !taken_up_to.is_null() {
            // SAFETY: the old marker was linked to by the oldest node just
            // taken, which was the last thing that could reach it.
            drop(unsafe { Box::from_raw(taken_up_to) });
        }
        // SAFETY: owner only.
        self.taken_up_to.with_mut(|cell| unsafe { *cell = newest });
    }

    /// Owner only: gives the ownership up if nothing arrived since the last
    /// [`take_pending`](Self::take_pending). `Err(owner)` means new items
    /// are pending: take them and try again. An owner of another queue owns
    /// nothing here and is consumed with `Ok`.
    pub fn try_release(&self, owner: Owner) -> Result<(), Owner> {
        if owner.queue != self.serial {
            return Ok(());
        }
        // SAFETY: owner only.
        let marker = self.taken_up_to.with(|cell| unsafe { *cell });
        if marker.is_null() {
            // Nothing taken yet, so the node that gave us ownership is pending.
            return Err(owner);
        }
        // Reset before the CAS: the next owner may read it right after.
        // SAFETY: owner only.
        self.taken_up_to.with_mut(|cell| unsafe { *cell = ptr::null_mut() });
        // Release: the next owner (whose swap acquires null) sees the reset.
        match self.head.compare_exchange(marker, ptr::null_mut(), Ordering::Release, Ordering::Relaxed) {
            Ok(_) => {
                // SAFETY: head no longer points at the marker and the nodes
                // linking to it were taken: nothing reaches it.
                drop(unsafe { Box::from_raw(marker) });
                Ok(())
            }
            Err(_) => {
                // SAFETY: still the owner: head never became null.
                self.taken_up_to.with_mut(|cell| unsafe { *cell = marker });
                Err(owner)
            }
        }
    }

    /// Whether nobody owns the queue right now; a relaxed hint for
    /// statistics and tests.
    pub fn is_idle(&self) -> bool {
        self.head.load(Ordering::Relaxed).is_null()
    }

    fn wait_for_link(node: *mut Node<T>) -> *mut Node<T> {
        #[cfg(not(brpc_loom))]
        let mut spins = 0;
        loop {
            // Acquire: pairs with push's Release link store, so the
            // producer is done with the node before we may free it.
            // SAFETY: the node is alive until the owner (us) frees it.
            let older = unsafe { (*node).next.load(Ordering::Acquire) };
            if older != not_linked() {
                return older;
            }
            #[cfg(not(brpc_loom))]
            {
                if spins >= SPINS_BEFORE_YIELD {
                    std::thread::yield_now();
                    continue;
                }
                spins += 1;
            }
            spin_loop();
        }
    }
}

impl<T> Drop for WriteQueue<T> {
    fn drop(&mut self) {
        // With `&mut self` no push is midway, so every node is linked and
        // the chain from head ends at null (past the marker, if any).
        let mut cursor = self.head.load(Ordering::Acquire);
        while !cursor.is_null() {
            // SAFETY: every node reachable from head is alive and ours now.
            let node = unsafe { Box::from_raw(cursor) };
            cursor = node.next.load(Ordering::Relaxed);
        }
    }
}

#[cfg(all(test, not(brpc_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    fn drain<T>(queue: &WriteQueue<T>, mut owner: Owner, out: &mut VecDeque<T>) {
        loop {
            queue.take_pending(&mut owner, out);
            match queue.try_release(owner) {
                Ok(()) => return,
                Err(still) => owner = still,
            }
        }
    }

    #[test]
    fn queue_is_shared_and_owner_sent_across_threads() {
        fn send_sync<X: Send + Sync>() {}
        fn send<X: Send>() {}
        send_sync::<WriteQueue<std::cell::Cell<u8>>>();
        send::<Owner>();
    }

    #[test]
    fn single_thread_keeps_push_order() {
        let queue = WriteQueue::new();
        assert!(queue.is_idle());
        let mut owner = queue.push(0).unwrap();
        assert!(!queue.is_idle());
        for n in 1..5 {
            assert!(queue.push(n).is_none(), "only the first push owns");
        }
        let mut out = VecDeque::new();
        queue.take_pending(&mut owner, &mut out);
        assert_eq!(out, [0, 1, 2, 3, 4]);
        queue.push(5);
        queue.push(6);
        queue.take_pending(&mut owner, &mut out);
        assert_eq!(out, [0, 1, 2, 3, 4, 5, 6]);
        assert!(queue.try_release(owner).is_ok());
        assert!(queue.is_idle());
    }

    #[test]
    fn release_fails_while_items_are_pending() {
        let queue = WriteQueue::new();
        let owner = queue.push("a").unwrap();
        let mut owner = queue.try_release(owner).unwrap_err();
        let mut out = VecDeque::new();
        queue.take_pending(&mut owner, &mut out);
        assert!(queue.push("b").is_none());
        let mut owner = queue.try_release(owner).unwrap_err();
        queue.take_pending(&mut owner, &mut out);
        assert!(queue.try_release(owner).is_ok());
        assert_eq!(out, ["a", "b"]);
    }

    #[test]
    fn ownership_passes_to_the_next_pusher() {
        let queue = WriteQueue::new();
        let mut out = VecDeque::new();
        drain(&queue, queue.push(1).unwrap(), &mut out);
        let owner = std::thread::scope(|scope| scope.spawn(|| queue.push(2)).join().unwrap()).unwrap();
        // Drained on another thread than the one that got the ownership.
        std::thread::scope(|scope| {
            scope.spawn(|| drain(&queue, owner, &mut out));
        });
        assert_eq!(out, [1, 2]);
        assert!(queue.is_idle());
    }

    #[test]
    fn a_foreign_owner_touches_nothing() {
        let (mine, theirs) = (WriteQueue::new(), WriteQueue::new());
        let mut foreign = theirs.push(1).unwrap();
        let mut owner = mine.push(2).unwrap();
        let mut out = VecDeque::new();
        mine.take_pending(&mut foreign, &mut out);
        assert!(out.is_empty());
        assert!(mine.try_release(foreign).is_ok());
        mine.take_pending(&mut owner, &mut out);
        assert_eq!(out, [2]);
        assert!(mine.try_release(owner).is_ok());
        assert!(!theirs.is_idle(), "their owner was consumed without releasing");
    }

    #[test]
    fn dropping_the_queue_drops_pending_items() {
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let queue = WriteQueue::new();
        let mut owner = queue.push(Counted(drops.clone())).unwrap();
        let mut out = VecDeque::new();
        queue.take_pending(&mut owner, &mut out);
        queue.push(Counted(drops.clone()));
        queue.push(Counted(drops.clone()));
        drop(queue);
        assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 2);
        drop(out);
        assert_eq!(drops.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn producers_race_with_draining_owners() {
        const PRODUCERS: usize = 8;
        const ITEMS: usize = 100_000;
        let queue = WriteQueue::new();
        let owners = AtomicUsize::new(0);
        let received: parking_lot::Mutex<Vec<(usize, usize)>> =
            parking_lot::Mutex::new(Vec::with_capacity(PRODUCERS * ITEMS));
        std::thread::scope(|scope| {
            for producer in 0..PRODUCERS {
                let (queue, owners, received) = (&queue, &owners, &received);
                scope.spawn(move || {
                    let mut out = VecDeque::new();
                    for seq in 0..ITEMS {
                        let Some(mut owner) = queue.push((producer, seq)) else {
                            continue;
                        };
                        assert_eq!(owners.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0);
                        loop {
                            queue.take_pending(&mut owner, &mut out);
                            received.lock().extend(out.drain(..));
                            owners.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                            match queue.try_release(owner) {
                                Ok(()) => break,
                                Err(still) => {
                                    assert_eq!(owners.fetch_add(1, std::sync::atomic::Ordering::SeqCst), 0);
                                    owner = still;
                                }
                            }
                        }
                    }
                });
            }
        });
        assert!(queue.is_idle());
        let received = received.into_inner();
        assert_eq!(received.len(), PRODUCERS * ITEMS);
        let mut next = [0; PRODUCERS];
        for (producer, seq) in received {
            assert_eq!(seq, next[producer], "producer {producer} out of order");
            next[producer] += 1;
        }
    }
}
