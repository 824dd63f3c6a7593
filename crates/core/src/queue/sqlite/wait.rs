//! Waiting for a message (long polling): who polls for other processes'
//! commits, and the per-file wake-up of sends in this process.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::receive::{data_version, try_receive};
use super::{
    FOLLOWER_INTERVAL, MAX_VISIBILITY, MAX_WAIT, POLL_INTERVAL, SqliteQueue, millis, now_ms,
};
use crate::queue::{MAX_BATCH_ENTRIES, QueueError, QueueMessage};

/// Receives up to `max` messages, waiting up to `wait` (at most 20 s) for
/// one when none is visible.
pub(super) async fn receive(
    queue: &SqliteQueue,
    max: usize,
    wait: Duration,
    visibility: Duration,
) -> Result<Vec<QueueMessage>, QueueError> {
    let max = max.clamp(1, MAX_BATCH_ENTRIES);
    let deadline = Instant::now() + wait.min(MAX_WAIT);
    // At least 1 ms, so a message just received is not visible within
    // the same transaction (SQS allows 0, which is as good as 1 ms).
    let visibility_ms = millis(visibility.min(MAX_VISIBILITY)).max(1);
    loop {
        // Registered before looking, so a send between the look and the
        // wait still wakes this receive.
        let notified = queue.shared.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let attempt = queue
            .run(false, "receiving", move |conn, which| {
                try_receive(conn, which, max, visibility_ms)
            })
            .await?;
        // Later polls compare against the newest reading.
        queue
            .version()
            .store(attempt.data_version, Ordering::Release);
        if attempt.moved > 0 || attempt.messages.len() == max {
            // The dead-letter queue has news, or more may be waiting
            // here: let the other receives look.
            queue.shared.notify.notify_waiters();
        }
        if !attempt.messages.is_empty() || Instant::now() >= deadline {
            return Ok(attempt.messages);
        }
        let mut wake = deadline;
        if let Some(at) = attempt.next_visible_at {
            let ms = u64::try_from(at - now_ms()).unwrap_or(0);
            wake = wake.min(Instant::now() + Duration::from_millis(ms));
        }
        // Wait for a send here, a commit elsewhere, or the wake-up time.
        // One waiting receive per handle polls; a change it sees wakes
        // the rest through `notify`.
        let _waiting = Waiting::enter(&queue.shared.waiting);
        let mut leading = Leading::take(&queue.shared.polling);
        loop {
            let every = if leading.is_some() {
                POLL_INTERVAL
            } else {
                FOLLOWER_INTERVAL
            };
            let tick = (Instant::now() + every).min(wake);
            tokio::select! {
                () = &mut notified => break,
                () = tokio::time::sleep_until(tick) => {}
            }
            if Instant::now() >= wake || poll_for_commits(queue, &mut leading).await? {
                break;
            }
        }
    }
}

/// Polls `data_version` if no other receive of this handle does; true
/// when another connection committed since the last reading, after
/// waking every receive waiting on this file in this process.
async fn poll_for_commits<'a>(
    queue: &'a SqliteQueue,
    leading: &mut Option<Leading<'a>>,
) -> Result<bool, QueueError> {
    if leading.is_none() {
        *leading = Leading::take(&queue.shared.polling);
    }
    if leading.is_none() {
        return Ok(false);
    }
    let version = queue
        .run(false, "polling", |conn, _| data_version(conn))
        .await?;
    if queue.version().swap(version, Ordering::AcqRel) == version {
        return Ok(false);
    }
    queue.shared.notify.notify_waiters();
    Ok(true)
}

/// Counts a waiting receive until dropped (also when it is cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
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
struct Leading<'a>(&'a AtomicBool);

impl<'a> Leading<'a> {
    fn take(flag: &'a AtomicBool) -> Option<Self> {
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
