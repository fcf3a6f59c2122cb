//! The synchronization primitives the lock-free core is built on, switched
//! to loom's model-checked versions under `--cfg brpc_loom` (a name of our own, so dependencies that know `loom` are unaffected).

#[cfg(brpc_loom)]
pub(crate) use loom::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
#[cfg(not(brpc_loom))]
pub(crate) use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

#[cfg(brpc_loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(not(brpc_loom))]
pub(crate) use std::hint::spin_loop;

/// `UnsafeCell` with loom's closure API in both builds, so loom can check
/// every access for data races.
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(
    #[cfg(brpc_loom)] loom::cell::UnsafeCell<T>,
    #[cfg(not(brpc_loom))] std::cell::UnsafeCell<T>,
);

impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        #[cfg(brpc_loom)]
        return Self(loom::cell::UnsafeCell::new(value));
        #[cfg(not(brpc_loom))]
        return Self(std::cell::UnsafeCell::new(value));
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(brpc_loom)]
        return self.0.with(f);
        #[cfg(not(brpc_loom))]
        return f(self.0.get());
    }

    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(brpc_loom)]
        return self.0.with_mut(f);
        #[cfg(not(brpc_loom))]
        return f(self.0.get());
    }
}
