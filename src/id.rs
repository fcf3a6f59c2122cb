//! The versioned, reference-counted registry behind `SocketId` and
//! `StreamId` (brpc's `VersionedRefWithId`, written afresh).
//!
//! An [`Id`] is `version << 32 | slot`. Every slot has one atomic word, the
//! *vref*: `version << 32 | PUBLISHED | count`. A live object has an even
//! version `v`; [`Registry::set_failed`] moves it to `v + 1`; the release of
//! the last reference to a failed object moves it to `v + 2` (the next
//! object's version), drops the object and frees the slot. Ids with an odd
//! version are never valid, and a stale id never reaches the slot's next
//! object because the versions differ.
//!
//! `PUBLISHED` (bit 31) is set by `create` together with the creator's
//! reference and cleared by the recycle: it tells a published object from a
//! vacant slot whose version the next object will carry, so a guessed id can
//! never reach a value that is not written yet.
//!
//! Addressing is lock-free: slots live in segments allocated on first use and
//! never moved nor freed before the registry. Only create and recycle take
//! the free-list lock.
//!
//! Footprint: segments stay at the high-water mark of live objects, reused
//! (brpc's resource pools do the same); a slot is 8 bytes plus the object
//! (sockets: 144 bytes, so a peer that once had 65 536 streams open leaves
//! 9 MiB here). The capacity limit bounds it: 4 Mi slots by default, 576 MiB
//! of sockets at most.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::Deref;
use std::ptr;

use crate::sync::{AtomicPtr, AtomicU64, Ordering, UnsafeCell};

pub type Id = u64;
pub const INVALID_ID: Id = u64::MAX;

/// The hasher of the library's own maps, keyed by ids and by the servers a
/// program names (never by bytes a peer chose): a multiply-rotate per word,
/// a few instructions where std's SipHash takes about a hundred (a setup +
/// close spent some 3 000 instructions of 37 000 hashing a handful of keys).
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl IdHasher {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(Self::K);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    /// The product's high bits folded down: the table indexes by the low ones.
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

/// A map or set keyed by ids (or other keys of this process's making).
pub type IdMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;
pub type IdSet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<IdHasher>>;

/// What [`Registry::status`] reports about an object that is not recycled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// References held, the creator's included until `set_failed`.
    pub nref: u32,
    pub failed: bool,
}

const PUBLISHED: u64 = 1 << 31;
const COUNT_MASK: u64 = PUBLISHED - 1;
const LOW_HALF: u64 = u32::MAX as u64;

// Small under loom so a model allocates few loom objects.
#[cfg(not(brpc_loom))]
const SEGMENT_LEN: usize = 256;
#[cfg(brpc_loom)]
const SEGMENT_LEN: usize = 2;
#[cfg(not(brpc_loom))]
const DEFAULT_MAX_SLOTS: usize = 1 << 22;
#[cfg(brpc_loom)]
const DEFAULT_MAX_SLOTS: usize = 8;

// The free list: loom must see its lock, since it orders the recycler's
// taking of the value before the next creator's writing of it.
#[cfg(not(brpc_loom))]
type Lock<T> = parking_lot::Mutex<T>;
#[cfg(brpc_loom)]
type Lock<T> = loom::sync::Mutex<T>;

fn version_of(word: u64) -> u32 {
    (word >> 32) as u32
}

fn slot_of(id: Id) -> u32 {
    id as u32
}

fn make_id(version: u32, slot: u32) -> Id {
    (u64::from(version) << 32) | u64::from(slot)
}

fn make_vref(version: u32, low: u64) -> u64 {
    (u64::from(version) << 32) | (low & LOW_HALF)
}

fn is_odd(version: u32) -> bool {
    version & 1 == 1
}

struct Slot<T> {
    vref: AtomicU64,
    /// Initialized exactly while `PUBLISHED` is set in `vref`.
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written only by the creator before publication and
// taken only by the single thread that wins the recycle; in between it is
// only read through `Ref`s, which needs `T: Sync`, and it may be dropped on
// any thread, which needs `T: Send`.
unsafe impl<T: Send + Sync> Sync for Slot<T> {}

impl<T> Slot<T> {
    fn vacant() -> Self {
        Self { vref: AtomicU64::new(0), value: UnsafeCell::new(MaybeUninit::uninit()) }
    }
}

/// Slots not holding an object: recycled ones first (their segments are
/// warm), then never-used ones up to the capacity limit.
struct Vacancies {
    recycled: Vec<u32>,
    next_fresh: usize,
    max_slots: usize,
}

impl Vacancies {
    fn take(&mut self) -> Option<u32> {
        if let Some(slot) = self.recycled.pop() {
            return Some(slot);
        }
        if self.next_fresh >= self.max_slots {
            return None;
        }
        let slot = self.next_fresh as u32;
        self.next_fresh += 1;
        Some(slot)
    }
}

pub struct Registry<T: Send + Sync> {
    /// Each entry null or a leaked `Box<[Slot<T>]>` of `SEGMENT_LEN` slots.
    segments: Box<[AtomicPtr<Slot<T>>]>,
    vacancies: Lock<Vacancies>,
    /// A statistic only: loom need not see it.
    live: std::sync::atomic::AtomicUsize,
    _owns: PhantomData<T>,
}

impl<T: Send + Sync> Default for Registry<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + Sync> Registry<T> {
    pub fn new() -> Self {
        Self::with_capacity_limit(DEFAULT_MAX_SLOTS)
    }

    /// A registry holding at most `max_slots` objects at once; `create`
    /// fails with `EAGAIN` past it.
    pub fn with_capacity_limit(max_slots: usize) -> Self {
        // Slot indexes are 32 bits.
        let max_slots = max_slots.min(u32::MAX as usize);
        let segments = (0..max_slots.div_ceil(SEGMENT_LEN)).map(|_| AtomicPtr::new(ptr::null_mut())).collect();
        Self {
            segments,
            vacancies: Lock::new(Vacancies { recycled: Vec::new(), next_fresh: 0, max_slots }),
            live: std::sync::atomic::AtomicUsize::new(0),
            _owns: PhantomData,
        }
    }

    /// Stores `value` with one reference, the creator's, which only the
    /// successful [`set_failed`](Self::set_failed) releases.
    pub fn create(&self, value: T) -> Result<Id, i32> {
        self.create_with(|_| value)
    }

    /// Like [`create`](Self::create), but `make` learns the id before the
    /// object becomes addressable.
    pub fn create_with(&self, make: impl FnOnce(Id) -> T) -> Result<Id, i32> {
        let index = self.with_vacancies(Vacancies::take).ok_or(libc::EAGAIN)?;
        // Gives the slot back if `make` unwinds.
        let vacancy = Vacancy { registry: self, index };
        let slot = self.slot_or_allocate(index).ok_or(libc::EAGAIN)?;
        // A vacant slot's version is stable (stale increments leave it alone)
        // and the free-list lock ordered us after the recycle that set it.
        let version = version_of(slot.vref.load(Ordering::Relaxed));
        let id = make_id(version, index);
        let value = make(id);
        std::mem::forget(vacancy);
        // SAFETY: the slot is vacant and ours: no reference can exist before
        // PUBLISHED is set below, and the recycler that took the previous
        // value is ordered before us by the free-list lock.
        slot.value.with_mut(|cell| unsafe { (*cell).write(value) });
        self.live.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // fetch_add, not store: a stale `address` may hold a transient count
        // on this vacant slot, and it will take it back itself.
        // Release: whoever acquires the published word sees the value.
        slot.vref.fetch_add(PUBLISHED | 1, Ordering::Release);
        Ok(id)
    }

    /// A reference to the object `id` names, or `None` if it is failed,
    /// recycled, or was never created.
    pub fn address(&self, id: Id) -> Option<Ref<'_, T>> {
        self.acquire(id, false)
    }

    /// Like [`address`](Self::address), but also reaches an object that is
    /// failed and not yet recycled.
    pub fn address_failed_as_well(&self, id: Id) -> Option<Ref<'_, T>> {
        self.acquire(id, true)
    }

    /// Marks the object failed so that `address` no longer reaches it, and
    /// releases the creator's reference: it is recycled when the last
    /// reference goes. Exactly one caller per object gets `true`.
    pub fn set_failed(&self, id: Id) -> bool {
        let version = version_of(id);
        if is_odd(version) {
            return false;
        }
        let index = slot_of(id);
        let Some(slot) = self.slot(index) else {
            return false;
        };
        let mut current = slot.vref.load(Ordering::Relaxed);
        loop {
            if version_of(current) != version || current & PUBLISHED == 0 {
                return false;
            }
            // Release: what the caller did to the object before failing it
            // is visible to whoever sees it failed.
            match slot.vref.compare_exchange_weak(
                current,
                make_vref(version.wrapping_add(1), current),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        self.release(slot, index);
        true
    }

    /// References and failure of the object `id` names; `None` when it is
    /// recycled or was never created.
    pub fn status(&self, id: Id) -> Option<Status> {
        let version = version_of(id);
        if is_odd(version) {
            return None;
        }
        let current = self.slot(slot_of(id))?.vref.load(Ordering::Relaxed);
        if current & PUBLISHED == 0 {
            return None;
        }
        let failed = match version_of(current) {
            now if now == version => false,
            now if now == version.wrapping_add(1) => true,
            _ => return None,
        };
        Some(Status { nref: (current & COUNT_MASK) as u32, failed })
    }

    /// Objects created and not yet recycled.
    pub fn live(&self) -> usize {
        self.live.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn acquire(&self, id: Id, failed_as_well: bool) -> Option<Ref<'_, T>> {
        let version = version_of(id);
        if is_odd(version) {
            return None;
        }
        let index = slot_of(id);
        let slot = self.slot(index)?;
        // Increment first, check after: while our count is on the word the
        // object cannot be recycled, so a matching version stays matching.
        // Acquire: pairs with create's Release, making the value visible.
        let seen = slot.vref.fetch_add(1, Ordering::Acquire);
        let seen_version = version_of(seen);
        // A failed object whose last reference just went (count 0, recycle
        // CAS pending) is still reachable here: our count makes that CAS
        // fail, and our own release recycles it later.
        let reachable = seen & PUBLISHED != 0
            && (seen_version == version || (failed_as_well && seen_version == version.wrapping_add(1)));
        if reachable {
            return Some(Ref { registry: self, slot, id });
        }
        // Stale: take the transient count back. It may have been the last
        // thing holding a failed object, in which case we recycle it.
        self.release(slot, index);
        None
    }

    /// Drops one count from the slot's word, recycling a failed object
    /// whose count this brings to zero.
    fn release(&self, slot: &Slot<T>, index: u32) {
        // Release: our uses of the value happen before the recycler's
        // Acquire (every write to the word is a read-modify-write, so each
        // such release heads a sequence that reaches the recycle CAS).
        let before = slot.vref.fetch_sub(1, Ordering::Release);
        if before & COUNT_MASK != 1 {
            return;
        }
        let version = version_of(before);
        // An even version with count 0 is a vacant slot a stale `address`
        // just left: a live object still holds its creator's reference.
        if !is_odd(version) {
            return;
        }
        // Several threads may see 1 → 0 for one failed object (a stale
        // `address`'s transient count on top of the last real reference);
        // the exact CAS picks one. If a concurrent `address_failed_as_well`
        // raised the count again, the CAS fails for all, and that
        // reference's own release retries. No retry loop here: a changed
        // version means someone else already recycled.
        let zero = before - 1;
        let recycled = make_vref(version.wrapping_add(1), 0);
        if slot.vref.compare_exchange(zero, recycled, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            self.recycle(slot, index);
        }
    }

    fn recycle(&self, slot: &Slot<T>, index: u32) {
        // SAFETY: we won the CAS that cleared PUBLISHED at count 0: no
        // reference exists, none can be made (the version matches no id),
        // and every earlier use of the value happens before our Acquire.
        let value = slot.value.with_mut(|cell| unsafe { (*cell).assume_init_read() });
        drop(value);
        self.live.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.with_vacancies(|vacancies| vacancies.recycled.push(index));
    }

    fn slot(&self, index: u32) -> Option<&Slot<T>> {
        let index = index as usize;
        let segment = self.segments.get(index / SEGMENT_LEN)?.load(Ordering::Acquire);
        if segment.is_null() {
            return None;
        }
        // SAFETY: a non-null entry is a segment of SEGMENT_LEN slots that
        // lives as long as the registry.
        Some(unsafe { &*segment.add(index % SEGMENT_LEN) })
    }

    fn slot_or_allocate(&self, index: u32) -> Option<&Slot<T>> {
        let index = index as usize;
        let entry = self.segments.get(index / SEGMENT_LEN)?;
        let mut segment = entry.load(Ordering::Acquire);
        if segment.is_null() {
            let fresh: Box<[Slot<T>]> = (0..SEGMENT_LEN).map(|_| Slot::vacant()).collect();
            let fresh = Box::into_raw(fresh).cast::<Slot<T>>();
            // Creators of neighbouring slots may race to allocate the same
            // segment: the first CAS wins, the others free theirs.
            segment = match entry.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => fresh,
                Err(winner) => {
                    // SAFETY: `fresh` was never published.
                    drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, SEGMENT_LEN)) });
                    winner
                }
            };
        }
        // SAFETY: as in `slot`.
        Some(unsafe { &*segment.add(index % SEGMENT_LEN) })
    }

    fn with_vacancies<R>(&self, f: impl FnOnce(&mut Vacancies) -> R) -> R {
        #[cfg(not(brpc_loom))]
        let mut vacancies = self.vacancies.lock();
        #[cfg(brpc_loom)]
        let mut vacancies = self.vacancies.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut vacancies)
    }
}

impl<T: Send + Sync> Drop for Registry<T> {
    fn drop(&mut self) {
        for entry in self.segments.iter() {
            let segment = entry.load(Ordering::Acquire);
            if segment.is_null() {
                continue;
            }
            // SAFETY: a non-null entry is a leaked segment of SEGMENT_LEN
            // slots; `&mut self` means no reference into it remains.
            let slots = unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(segment, SEGMENT_LEN)) };
            for slot in slots.iter() {
                if slot.vref.load(Ordering::Relaxed) & PUBLISHED != 0 {
                    // SAFETY: PUBLISHED means the value is initialized.
                    slot.value.with_mut(|cell| unsafe { (*cell).assume_init_drop() });
                }
            }
        }
    }
}

/// A slot taken from the free list but not yet published.
struct Vacancy<'a, T: Send + Sync> {
    registry: &'a Registry<T>,
    index: u32,
}

impl<T: Send + Sync> Drop for Vacancy<'_, T> {
    fn drop(&mut self) {
        let index = self.index;
        self.registry.with_vacancies(|vacancies| vacancies.recycled.push(index));
    }
}

/// One counted reference to an object of a [`Registry`]; the object is
/// recycled on the thread that drops the last one after it failed.
pub struct Ref<'a, T: Send + Sync> {
    registry: &'a Registry<T>,
    slot: &'a Slot<T>,
    id: Id,
}

impl<T: Send + Sync> Ref<'_, T> {
    pub fn id(&self) -> Id {
        self.id
    }

    /// Whether the object was failed (a hint: it may fail right after).
    pub fn failed(&self) -> bool {
        version_of(self.slot.vref.load(Ordering::Relaxed)) != version_of(self.id)
    }
}

impl<T: Send + Sync> Deref for Ref<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: our count keeps the value initialized and in place.
        self.slot.value.with(|cell| unsafe { (*cell).assume_init_ref() })
    }
}

impl<T: Send + Sync> Clone for Ref<'_, T> {
    fn clone(&self) -> Self {
        // Relaxed, no version check: the count we hold keeps the object.
        self.slot.vref.fetch_add(1, Ordering::Relaxed);
        Self { registry: self.registry, slot: self.slot, id: self.id }
    }
}

impl<T: Send + Sync> Drop for Ref<'_, T> {
    fn drop(&mut self) {
        self.registry.release(self.slot, slot_of(self.id));
    }
}

impl<T: Send + Sync> std::fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ref").field("id", &self.id).finish_non_exhaustive()
    }
}

#[cfg(all(test, not(brpc_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Counts its drops, and remembers the id it was created under.
    struct Tracked {
        created_as: Id,
        drops: Arc<AtomicUsize>,
    }

    impl Drop for Tracked {
        fn drop(&mut self) {
            self.drops.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn tracked(registry: &Registry<Tracked>, drops: &Arc<AtomicUsize>) -> Id {
        registry.create_with(|id| Tracked { created_as: id, drops: drops.clone() }).unwrap()
    }

    fn dropped(drops: &AtomicUsize) -> usize {
        drops.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[test]
    fn refs_cross_threads() {
        fn send_sync<X: Send + Sync>() {}
        send_sync::<Registry<Tracked>>();
        send_sync::<Ref<'static, Tracked>>();
        static REGISTRY: std::sync::LazyLock<Registry<u32>> = std::sync::LazyLock::new(Registry::new);
        let id = REGISTRY.create(5).unwrap();
        let object: Ref<'static, u32> = REGISTRY.address(id).unwrap();
        assert_eq!(std::thread::spawn(move || *object).join().unwrap(), 5);
        assert_eq!(REGISTRY.status(id), Some(Status { nref: 1, failed: false }));
    }

    #[test]
    fn create_address_fail_recycle() {
        let registry = Registry::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let id = tracked(&registry, &drops);
        assert_eq!(version_of(id) % 2, 0);
        {
            let object = registry.address(id).unwrap();
            assert_eq!(object.created_as, id);
            assert_eq!(object.id(), id);
            assert!(!object.failed());
            assert_eq!(registry.status(id), Some(Status { nref: 2, failed: false }));
            assert!(registry.set_failed(id));
            assert!(object.failed());
            assert!(registry.address(id).is_none());
            assert_eq!(registry.status(id), Some(Status { nref: 1, failed: true }));
            assert_eq!(dropped(&drops), 0, "a held reference keeps the object");
        }
        assert_eq!(dropped(&drops), 1);
        assert_eq!(registry.status(id), None);
        assert!(!registry.set_failed(id));
        assert_eq!(registry.live(), 0);

        let next = tracked(&registry, &drops);
        assert_eq!(slot_of(next), slot_of(id), "the slot is reused");
        assert_eq!(version_of(next), version_of(id) + 2);
    }

    #[test]
    fn stale_id_never_reaches_the_next_object() {
        let registry = Registry::with_capacity_limit(1);
        let drops = Arc::new(AtomicUsize::new(0));
        let first = tracked(&registry, &drops);
        assert!(registry.set_failed(first));
        let second = tracked(&registry, &drops);
        assert_eq!(slot_of(first), slot_of(second));
        assert!(registry.address(first).is_none());
        assert!(registry.address_failed_as_well(first).is_none());
        assert!(!registry.set_failed(first));
        assert_eq!(registry.status(first), None);
        assert_eq!(registry.address(second).unwrap().created_as, second);
        assert_eq!(registry.status(second), Some(Status { nref: 1, failed: false }));
    }

    #[test]
    fn ids_that_were_never_created_reach_nothing() {
        let registry: Registry<u32> = Registry::with_capacity_limit(4);
        assert!(registry.address(0).is_none());
        let id = registry.create(7).unwrap();
        // The slot next to it is allocated in the same segment but vacant.
        let neighbour = make_id(version_of(id), slot_of(id) + 1);
        assert!(registry.address(neighbour).is_none());
        assert!(!registry.set_failed(neighbour));
        assert_eq!(registry.status(neighbour), None);
        assert!(registry.address(INVALID_ID).is_none());
        assert!(registry.address(id | (1 << 32)).is_none(), "odd versions are never valid");
        assert!(!registry.set_failed(INVALID_ID));
        assert_eq!(*registry.address(id).unwrap(), 7);
    }

    #[test]
    fn address_failed_as_well_reaches_failed_objects_until_recycled() {
        let registry = Registry::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let id = tracked(&registry, &drops);
        let held = registry.address(id).unwrap();
        assert!(registry.set_failed(id));
        let failed = registry.address_failed_as_well(id).unwrap();
        assert!(failed.failed());
        assert_eq!(failed.created_as, id);
        let copy = failed.clone();
        assert_eq!(registry.status(id), Some(Status { nref: 3, failed: true }));
        drop((held, failed));
        assert_eq!(dropped(&drops), 0);
        drop(copy);
        assert_eq!(dropped(&drops), 1);
        assert!(registry.address_failed_as_well(id).is_none());
    }

    #[test]
    fn live_counts_and_capacity_limit() {
        let registry = Registry::with_capacity_limit(3);
        let ids: Vec<Id> = (0..3).map(|n| registry.create(n).unwrap()).collect();
        assert_eq!(registry.live(), 3);
        assert_eq!(registry.create(3), Err(libc::EAGAIN));
        assert!(registry.set_failed(ids[1]));
        assert_eq!(registry.live(), 2);
        let again = registry.create(4).unwrap();
        assert_eq!(slot_of(again), slot_of(ids[1]));
        assert_eq!(registry.live(), 3);
        assert_eq!(registry.create(5), Err(libc::EAGAIN));
    }

    #[test]
    fn a_panicking_constructor_gives_its_slot_back() {
        let registry: Registry<u32> = Registry::with_capacity_limit(1);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            registry.create_with(|_| panic!("constructor failed"))
        }));
        assert!(outcome.is_err());
        assert_eq!(registry.live(), 0);
        let id = registry.create(1).unwrap();
        assert_eq!(*registry.address(id).unwrap(), 1);
    }

    #[test]
    fn dropping_the_registry_drops_live_objects() {
        let drops = Arc::new(AtomicUsize::new(0));
        let registry = Registry::new();
        let failed = tracked(&registry, &drops);
        tracked(&registry, &drops);
        assert!(registry.set_failed(failed));
        assert_eq!(dropped(&drops), 1);
        drop(registry);
        assert_eq!(dropped(&drops), 2);
    }

    #[test]
    fn concurrent_set_failed_has_one_winner_and_one_recycle() {
        for _ in 0..200 {
            let registry = Registry::new();
            let drops = Arc::new(AtomicUsize::new(0));
            let id = tracked(&registry, &drops);
            let winners = AtomicUsize::new(0);
            std::thread::scope(|scope| {
                for _ in 0..8 {
                    scope.spawn(|| {
                        let held = registry.address(id);
                        if registry.set_failed(id) {
                            winners.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        if let Some(held) = held {
                            assert_eq!(held.created_as, id);
                        }
                    });
                }
            });
            assert_eq!(winners.into_inner(), 1);
            assert_eq!(dropped(&drops), 1);
            assert_eq!(registry.live(), 0);
        }
    }

    #[test]
    fn stale_ids_never_reach_new_objects_under_churn() {
        const THREADS: usize = 8;
        const ROUNDS: usize = 20_000;
        // Few slots, so stale ids keep meeting reused slots.
        let registry: Registry<Tracked> = Registry::with_capacity_limit(8);
        let drops = Arc::new(AtomicUsize::new(0));
        let created = AtomicUsize::new(0);
        let recent: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(INVALID_ID)).collect();
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let (registry, drops, created, recent) = (&registry, &drops, &created, &recent);
                scope.spawn(move || {
                    for round in 0..ROUNDS {
                        let pick = &recent[(thread * 7 + round) % recent.len()];
                        let old = pick.load(std::sync::atomic::Ordering::Relaxed);
                        if let Some(object) = registry.address_failed_as_well(old) {
                            assert_eq!(object.created_as, old, "an id reached another object");
                            let copy = object.clone();
                            drop(object);
                            assert_eq!(copy.created_as, old);
                        }
                        if round % 3 == 0 {
                            registry.set_failed(old);
                        } else if let Ok(id) =
                            registry.create_with(|id| Tracked { created_as: id, drops: drops.clone() })
                        {
                            created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let previous = pick.swap(id, std::sync::atomic::Ordering::Relaxed);
                            registry.set_failed(previous);
                        }
                    }
                });
            }
        });
        for pick in &recent {
            registry.set_failed(pick.load(std::sync::atomic::Ordering::Relaxed));
        }
        assert_eq!(registry.live(), 0);
        let created = created.into_inner();
        assert_eq!(dropped(&drops), created);
    }
}
