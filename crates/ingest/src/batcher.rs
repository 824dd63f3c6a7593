//! Group commit: the events of concurrent requests share envelopes and
//! `SendMessageBatch` calls, and each request is answered when every message
//! holding one of its events is acknowledged.
//!
//! One task owns the pending submissions and decides when to flush them.
//! A batch goes out when
//! - it holds enough JSON to fill one `SendMessageBatch` call, or
//! - its oldest request has waited `linger` and no other request is still
//!   being read or parsed (nothing more is about to join), or
//! - its oldest request has waited `max_linger` (under steady load there is
//!   always a request being read; this bounds the wait), or
//! - shutdown has begun,
//!
//! and a flush slot is free: while `flush_concurrency` flushes are under way
//! the batch keeps growing, which is what makes envelopes hold thousands of
//! events under load while a lone request waits only `linger`.
//!
//! Memory is bounded by `max_pending_bytes` of event JSON held at once (from
//! submission until answered); a request that finds no room is refused at
//! once (503 `overloaded`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sluice_core::queue::Queue;
use tokio::sync::{Notify, Semaphore, TryAcquireError, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::enqueue::Submission;
pub use crate::enqueue::{BatchSettings, EnqueueError};
use crate::events::Events;
use crate::sender::Sender;

struct Shared {
    settings: BatchSettings,
    /// Requests between [`Batcher::arrival`] and their submission.
    arriving: AtomicUsize,
    /// Signalled when `arriving` drops to zero.
    arrived: Notify,
    /// Room for pending event JSON, in KiB.
    room: Arc<Semaphore>,
    room_kib: u32,
}

/// Handle for request handlers; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Submission>,
    shared: Arc<Shared>,
}

/// Marks a request as on its way to the batcher; dropping it says it arrived
/// (or gave up).
pub struct Arrival {
    shared: Arc<Shared>,
}

impl Drop for Arrival {
    fn drop(&mut self) {
        if self.shared.arriving.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.arrived.notify_one();
        }
    }
}

impl Batcher {
    /// Starts the batching task. It runs until every handle is dropped or
    /// `close` is cancelled, then flushes what is pending and waits for the
    /// flushes under way. `shutdown` ends lingering: from then on batches go
    /// out at once.
    pub fn start(
        queue: Arc<dyn Queue>,
        settings: BatchSettings,
        shutdown: CancellationToken,
        close: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let room_kib = u32::try_from(settings.max_pending_bytes / 1024)
            .unwrap_or(u32::MAX)
            .clamp(1, Semaphore::MAX_PERMITS as u32);
        let shared = Arc::new(Shared {
            room: Arc::new(Semaphore::new(room_kib as usize)),
            room_kib,
            arriving: AtomicUsize::new(0),
            arrived: Notify::new(),
            settings: settings.clone(),
        });
        let (tx, rx) = mpsc::channel(1024);
        let sender = Arc::new(Sender::new(queue, &settings));
        let task = tokio::spawn(run(rx, Arc::clone(&shared), sender, shutdown, close));
        (Self { tx, shared }, task)
    }

    /// Call when a request starts; hand the result to [`Batcher::submit`].
    pub fn arrival(&self) -> Arrival {
        self.shared.arriving.fetch_add(1, Ordering::AcqRel);
        Arrival {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Queues `events` and waits until the queue holds every one of them, or
    /// until `enqueue_timeout` has passed.
    pub async fn submit(&self, events: Events, arrival: Arrival) -> Result<(), EnqueueError> {
        let deadline = Instant::now() + self.shared.settings.enqueue_timeout;
        let kib = u32::try_from(events.json_bytes().div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.shared.room_kib);
        // No waiting for room: when this much is already held, the queue is
        // slow or down, and the client is better told at once.
        let room = match Arc::clone(&self.shared.room).try_acquire_many_owned(kib) {
            Ok(room) => room,
            Err(TryAcquireError::NoPermits) => return Err(EnqueueError::Overloaded),
            Err(TryAcquireError::Closed) => return Err(EnqueueError::Closed),
        };
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            events,
            reply,
            deadline,
            queued_at: Instant::now(),
            room,
        };
        match tokio::time::timeout_at(deadline, self.tx.send(submission)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(EnqueueError::Closed),
            Err(_) => return Err(EnqueueError::Overloaded),
        }
        drop(arrival);
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            // The flush ended without answering (its deadline passed), or
            // our own deadline did. Dropping `answer` tells a batch that has
            // not gone out yet to leave these events behind.
            Ok(Err(_)) | Err(_) => Err(EnqueueError::Unavailable),
        }
    }
}

/// The batching task.
async fn run(
    mut rx: mpsc::Receiver<Submission>,
    shared: Arc<Shared>,
    sender: Arc<Sender>,
    shutdown: CancellationToken,
    close: CancellationToken,
) {
    let settings = &shared.settings;
    let mut pending = Pending::default();
    let mut flushes = JoinSet::new();
    let mut open = true;
    loop {
        while open {
            match rx.try_recv() {
                Ok(s) => pending.push(s),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        let hurry = !open || shutdown.is_cancelled();
        let full = sender.full_batch_bytes();
        while flushes.len() < settings.flush_concurrency {
            let Some(oldest) = pending.oldest() else {
                break;
            };
            let age = oldest.elapsed();
            let quiet = shared.arriving.load(Ordering::Acquire) == 0;
            let due = hurry
                || pending.bytes >= full
                || age >= settings.max_linger
                || (quiet && age >= settings.linger);
            if !due {
                break;
            }
            let batch = pending.take(full);
            if !batch.is_empty() {
                flushes.spawn(Arc::clone(&sender).flush(batch));
            }
        }
        if !open && pending.is_empty() && flushes.is_empty() {
            break;
        }
        // When to look again if nothing else happens first.
        let wake = match pending.oldest() {
            Some(oldest) if flushes.len() < settings.flush_concurrency => {
                let quiet = shared.arriving.load(Ordering::Acquire) == 0;
                Some(
                    oldest
                        + if quiet {
                            settings.linger
                        } else {
                            settings.max_linger
                        },
                )
            }
            _ => None,
        };
        tokio::select! {
            biased;
            Some(_) = flushes.join_next(), if !flushes.is_empty() => {}
            received = rx.recv(), if open => match received {
                Some(s) => pending.push(s),
                None => open = false,
            },
            () = close.cancelled(), if open => {
                // Take what is already queued; later senders get `Closed`.
                rx.close();
            }
            () = shared.arrived.notified() => {}
            () = sleep_until(wake) => {}
            () = shutdown.cancelled(), if !shutdown.is_cancelled() => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Submissions waiting for a flush, oldest first.
#[derive(Default)]
struct Pending {
    queue: std::collections::VecDeque<Submission>,
    bytes: usize,
}

impl Pending {
    fn push(&mut self, s: Submission) {
        self.bytes += s.events.json_bytes();
        self.queue.push_back(s);
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn oldest(&self) -> Option<Instant> {
        self.queue.front().map(|s| s.queued_at)
    }

    /// Whole submissions from the front, up to about `bytes` of JSON (at
    /// least one). Requests that gave up (their handler is gone) are dropped
    /// here: nobody would be told their events were accepted.
    fn take(&mut self, bytes: usize) -> Vec<Submission> {
        let mut batch = Vec::new();
        let mut taken = 0;
        while let Some(s) = self.queue.front() {
            if taken > 0 && taken + s.events.json_bytes() > bytes {
                break;
            }
            let Some(s) = self.queue.pop_front() else {
                break;
            };
            self.bytes -= s.events.json_bytes();
            if s.reply.is_closed() {
                continue;
            }
            taken += s.events.json_bytes();
            batch.push(s);
        }
        batch
    }
}
