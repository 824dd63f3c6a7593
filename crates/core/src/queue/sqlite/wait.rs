//! Waiting for a message: who polls for other processes' commits, and
//! the per-file wake-up of sends in this process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use tokio::sync::Notify;

/// Counts a waiting receive until dropped (also when it is cancelled).
pub(super) struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    pub(super) fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The poller role of a handle, given back when dropped — also when the
/// receive holding it is cancelled.
pub(super) struct Leading<'a>(&'a AtomicBool);

impl<'a> Leading<'a> {
    pub(super) fn take(flag: &'a AtomicBool) -> Option<Self> {
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            .then_some(Leading(flag))
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The process-wide wake-up of one file, keyed by its canonical path.
pub(super) fn notifier(path: &Path) -> Arc<Notify> {
    static REGISTRY: OnceLock<Mutex<HashMap<PathBuf, Weak<Notify>>>> = OnceLock::new();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mut map = REGISTRY
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    map.retain(|_, weak| weak.strong_count() > 0);
    if let Some(notify) = map.get(&key).and_then(Weak::upgrade) {
        return notify;
    }
    let notify = Arc::new(Notify::new());
    map.insert(key, Arc::downgrade(&notify));
    notify
}
