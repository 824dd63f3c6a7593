//! One flush: pack a batch of requests into envelopes, send them with
//! `SendMessageBatch`, retry what failed, and answer each request.
//!
//! - Packing is CPU work (gzip): it runs on the blocking pool, the batch cut
//!   into groups of a few envelopes' worth that compress in parallel.
//! - Calls hold at most ten entries and 1 MiB; `send_concurrency` calls are
//!   in flight at once across all flushes.
//! - SQS answers a batch call with HTTP 200 and a per-entry `Failed` list:
//!   each failed entry is retried with backoff. A call refused as too long
//!   is split in half; a message refused as too large is re-packed into
//!   smaller ones, and the smaller size is remembered (the queue's
//!   `MaximumMessageSize` is below `INGEST_MAX_MESSAGE_BYTES`).
//! - A request is answered as soon as every message holding one of its
//!   events is acknowledged; when the batch's deadline passes, every request
//!   still waiting is told the queue is unavailable.
//!
//! A call whose answer never came (a timeout) may still have been stored;
//! its retry sends the same body with the same envelope id, which the
//! writer's receipts make harmless.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sluice_core::backoff::Backoff;
use sluice_core::queue::{MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, Queue, QueueError, SendOutcome};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::enqueue::{BatchSettings, EnqueueError, Submission};
use crate::events::Events;
use crate::metrics;
use crate::pack;

mod parts;
use parts::{PackResult, Packed, Part, Unpacked, pack_parts};

/// Shared by all flushes.
pub(crate) struct Sender {
    queue: Arc<dyn Queue>,
    calls: Arc<Semaphore>,
    /// `INGEST_MAX_MESSAGE_BYTES`, lowered when the queue refuses a message
    /// as too large.
    max_message_bytes: AtomicUsize,
    warned_message_size: AtomicBool,
    /// Moving average of the JSON bytes in a full envelope.
    message_json: AtomicUsize,
}

/// A message of a flush.
struct Message {
    /// Empty while a call holds it.
    body: String,
    parts: Vec<Part>,
    json_bytes: usize,
    events: usize,
}

/// What a flush task reports back.
enum Done {
    /// Packing of `parts` finished; `merged` when they were the tails of
    /// other packings.
    Packed {
        parts: Vec<Part>,
        result: PackResult,
        merged: bool,
    },
    /// A call returned (or timed out: `None`).
    Called {
        messages: Vec<usize>,
        bodies: Vec<String>,
        result: Option<Result<SendOutcome, QueueError>>,
    },
    /// A backoff delay passed: send these again.
    Retry {
        messages: Vec<usize>,
        bodies: Vec<String>,
    },
}

/// A request of the flush.
struct Waiter {
    reply: Option<tokio::sync::oneshot::Sender<Result<(), EnqueueError>>>,
    /// Events not yet acknowledged.
    remaining: usize,
}

impl Waiter {
    fn answer(&mut self, result: Result<(), EnqueueError>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }
}

impl Sender {
    pub(crate) fn new(queue: Arc<dyn Queue>, settings: &BatchSettings) -> Self {
        Self {
            queue,
            calls: Arc::new(Semaphore::new(settings.send_concurrency.max(1))),
            max_message_bytes: AtomicUsize::new(settings.max_message_bytes),
            warned_message_size: AtomicBool::new(false),
            // Until measured, assume JSON compresses about 4:1.
            message_json: AtomicUsize::new(settings.max_message_bytes * 3),
        }
    }

    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes.load(Ordering::Relaxed)
    }

    fn messages_per_call(&self) -> usize {
        (MAX_BATCH_BYTES / self.max_message_bytes()).clamp(1, MAX_BATCH_ENTRIES)
    }

    /// JSON bytes that fill one `SendMessageBatch` call.
    pub(crate) fn full_batch_bytes(&self) -> usize {
        self.message_json.load(Ordering::Relaxed) * self.messages_per_call()
    }

    /// Packs, sends and answers `batch`.
    pub(crate) async fn flush(self: Arc<Self>, batch: Vec<Submission>) {
        let deadline = batch
            .iter()
            .map(|s| s.deadline)
            .max()
            .unwrap_or_else(Instant::now);
        let mut waiters = Vec::with_capacity(batch.len());
        let mut events = Vec::with_capacity(batch.len());
        // The submissions (and their room in the pending budget) live until
        // the flush ends.
        let mut rooms = Vec::with_capacity(batch.len());
        for s in batch {
            waiters.push(Waiter {
                reply: Some(s.reply),
                remaining: s.events.len(),
            });
            events.push(s.events);
            rooms.push(s.room);
        }
        let events = Arc::new(events);
        let mut flush = Flush {
            sender: Arc::clone(&self),
            events: Arc::clone(&events),
            waiters,
            messages: Vec::new(),
            unsent: Vec::new(),
            packing: 0,
            tails: Vec::new(),
            tasks: JoinSet::new(),
            backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(1)),
            deadline,
            last_error: None,
            full: false,
        };
        for group in self.groups(&events) {
            flush.pack(group, self.max_message_bytes(), false);
        }
        flush.run().await;
        drop(rooms);
    }

    /// Cuts a batch into groups of about four envelopes' JSON, packed in
    /// parallel.
    fn groups(&self, events: &[Events]) -> Vec<Vec<Part>> {
        let target = 4 * self.message_json.load(Ordering::Relaxed).max(1);
        let mut groups = Vec::new();
        let mut group: Vec<Part> = Vec::new();
        let mut bytes = 0;
        for (request, evs) in events.iter().enumerate() {
            let mut start = 0;
            for i in 0..evs.len() {
                bytes += evs.get(i).len() + 1;
                if bytes >= target {
                    group.push((request, start..i + 1));
                    groups.push(std::mem::take(&mut group));
                    start = i + 1;
                    bytes = 0;
                }
            }
            if start < evs.len() {
                group.push((request, start..evs.len()));
            }
        }
        if !group.is_empty() {
            groups.push(group);
        }
        groups
    }

    fn learn_message_json(&self, json_bytes: usize) {
        let old = self.message_json.load(Ordering::Relaxed);
        self.message_json
            .store((old * 3 + json_bytes) / 4, Ordering::Relaxed);
    }

    /// The queue refused a body of `len` bytes as too large: pack smaller
    /// from now on. Returns the new limit.
    fn refused_size(&self, len: usize) -> usize {
        let smaller = (len * 3 / 4).max(pack::MIN_MESSAGE_BYTES);
        let before = self.max_message_bytes.fetch_min(smaller, Ordering::Relaxed);
        if smaller < before && !self.warned_message_size.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                refused_bytes = len,
                now_packing_at_most = smaller,
                "the queue refused a message as too large: its MaximumMessageSize is below INGEST_MAX_MESSAGE_BYTES"
            );
        }
        self.max_message_bytes()
    }
}

struct Flush {
    sender: Arc<Sender>,
    events: Arc<Vec<Events>>,
    waiters: Vec<Waiter>,
    messages: Vec<Message>,
    /// Packed messages not yet in a call.
    unsent: Vec<usize>,
    /// Packing tasks under way.
    packing: usize,
    /// The last, partly filled, message of each finished packing, while
    /// others are under way: packed together once all are done, so a
    /// flush cut into groups leaves one partial message, not one per group.
    tails: Vec<Packed>,
    tasks: JoinSet<Done>,
    backoff: Backoff,
    deadline: Instant,
    /// Why the last send failed, for the one warning at the deadline.
    last_error: Option<String>,
    /// The queue refused a call as full: answer at once, not at the deadline.
    full: bool,
}

impl Flush {
    fn pack(&mut self, parts: Vec<Part>, max: usize, merged: bool) {
        let events = Arc::clone(&self.events);
        self.packing += 1;
        self.tasks.spawn(async move {
            let task = {
                let parts = parts.clone();
                crate::cpu::run(move || pack_parts(&events, &parts, max))
            };
            // A packing that panicked: none of its requests can be told yes.
            // The panic's payload is not repeated: it could quote an event.
            let result = task
                .await
                .unwrap_or_else(|_| Err(Unpacked::Failed("the packing task panicked".into())));
            Done::Packed {
                parts,
                result,
                merged,
            }
        });
    }

    async fn run(&mut self) {
        loop {
            self.dispatch();
            if self.tasks.is_empty() {
                break;
            }
            let done = tokio::select! {
                done = self.tasks.join_next() => done,
                () = tokio::time::sleep_until(self.deadline) => {
                    metrics::queue_error("deadline");
                    tracing::warn!(
                        last_error = self.last_error.as_deref().unwrap_or("none: still sending"),
                        "the queue did not accept a batch before its deadline; its requests get 503"
                    );
                    self.tasks.abort_all();
                    break;
                }
            };
            match done {
                Some(Ok(done)) => {
                    self.handle(done);
                    if self.full {
                        // Retrying would not help until the writers drain
                        // the queue; the client's retry will.
                        self.tasks.abort_all();
                        break;
                    }
                }
                Some(Err(e)) => {
                    // A packing task panicked: its requests cannot be answered yes.
                    tracing::error!(error = %e, "a flush task failed");
                    break;
                }
                None => break,
            }
        }
        let error = if self.full {
            EnqueueError::Full
        } else {
            EnqueueError::Unavailable
        };
        for w in &mut self.waiters {
            w.answer(Err(error.clone()));
        }
    }

    /// Starts calls with the unsent messages: full calls at once, a partial
    /// one only when no packing is under way that could fill it.
    fn dispatch(&mut self) {
        let per_call = self.sender.messages_per_call();
        loop {
            let mut take = 0;
            let mut bytes = 0;
            while take < self.unsent.len().min(per_call) {
                let len = self.messages[self.unsent[take]].body.len();
                if take > 0 && bytes + len > MAX_BATCH_BYTES {
                    break;
                }
                bytes += len;
                take += 1;
            }
            let full = take == per_call || take < self.unsent.len();
            if take == 0 || (!full && self.packing > 0) {
                return;
            }
            let call: Vec<usize> = self.unsent.drain(..take).collect();
            self.call(call);
        }
    }

    fn call(&mut self, messages: Vec<usize>) {
        let bodies = messages
            .iter()
            .map(|&m| std::mem::take(&mut self.messages[m].body))
            .collect();
        self.start_call(messages, bodies);
    }

    fn start_call(&mut self, messages: Vec<usize>, bodies: Vec<String>) {
        let queue = Arc::clone(&self.sender.queue);
        let calls = Arc::clone(&self.sender.calls);
        let deadline = self.deadline;
        self.tasks.spawn(async move {
            let _permit = calls.acquire_owned().await;
            let started = Instant::now();
            let result = tokio::time::timeout_at(deadline, queue.send_batch(&bodies))
                .await
                .ok();
            let outcome = match &result {
                None => "timeout",
                Some(Err(_)) => "error",
                Some(Ok(o)) if o.failed.is_empty() => "ok",
                Some(Ok(_)) => "partial",
            };
            metrics::sqs_call(outcome, started.elapsed());
            Done::Called {
                messages,
                bodies,
                result,
            }
        });
    }

    fn retry_later(&mut self, messages: Vec<usize>, bodies: Vec<String>) {
        if messages.is_empty() {
            return;
        }
        let delay = self.backoff.next_delay();
        self.tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            Done::Retry { messages, bodies }
        });
    }

    fn handle(&mut self, done: Done) {
        match done {
            Done::Packed {
                parts,
                result,
                merged,
            } => self.packed(parts, result, merged),
            Done::Retry { messages, bodies } => self.start_call(messages, bodies),
            Done::Called {
                messages,
                bodies,
                result,
            } => match result {
                Some(Ok(outcome)) => self.called(messages, bodies, outcome),
                Some(Err(e)) if e.is_too_large() && messages.len() > 1 => {
                    metrics::queue_error("call_too_large");
                    tracing::debug!(error = %e, entries = messages.len(), "batch call too large; splitting it");
                    let half = messages.len() / 2;
                    let mut messages = messages;
                    let mut bodies = bodies;
                    let later_messages = messages.split_off(half);
                    let later_bodies = bodies.split_off(half);
                    self.start_call(messages, bodies);
                    self.start_call(later_messages, later_bodies);
                }
                Some(Err(e)) if e.is_too_large() => {
                    metrics::queue_error("message_too_large");
                    for (m, body) in messages.into_iter().zip(bodies) {
                        self.split(m, body.len());
                    }
                }
                Some(Err(e)) if e.is_full() => {
                    metrics::queue_error("queue_full");
                    self.full = true;
                }
                Some(Err(e)) => {
                    metrics::queue_error("call_failed");
                    tracing::debug!(error = %e, "SendMessageBatch failed; retrying");
                    self.last_error = Some(e.to_string());
                    self.retry_later(messages, bodies);
                }
                None => {
                    metrics::queue_error("call_timeout");
                    self.last_error = Some("SendMessageBatch timed out".to_owned());
                    self.retry_later(messages, bodies);
                }
            },
        }
    }

    fn packed(&mut self, parts: Vec<Part>, result: PackResult, merged: bool) {
        self.packing -= 1;
        match result {
            Ok(packed) => {
                let count = packed.len();
                for (i, p) in packed.into_iter().enumerate() {
                    if i + 1 < count {
                        self.sender.learn_message_json(p.json_bytes);
                        self.add(p);
                    } else if merged {
                        self.add(p);
                    } else {
                        self.tails.push(p);
                    }
                }
            }
            Err(Unpacked::Failed(reason)) => {
                tracing::error!(error = %reason, "packing events failed; their requests get 503");
                for (request, _) in &parts {
                    self.waiters[*request].answer(Err(EnqueueError::Unavailable));
                }
            }
            Err(Unpacked::TooLarge { request, index }) => {
                // Only when the queue's limit turned out lower than ours.
                self.waiters[request].answer(Err(EnqueueError::TooLarge { index }));
                let rest: Vec<Part> = parts.into_iter().filter(|(r, _)| *r != request).collect();
                if !rest.is_empty() {
                    self.pack(rest, self.sender.max_message_bytes(), merged);
                }
            }
        }
        if self.packing == 0 {
            match self.tails.len() {
                0 => {}
                1 => {
                    let tail = self.tails.remove(0);
                    self.add(tail);
                }
                _ => {
                    let parts = std::mem::take(&mut self.tails)
                        .into_iter()
                        .flat_map(|t| t.parts)
                        .collect();
                    self.pack(parts, self.sender.max_message_bytes(), true);
                }
            }
        }
    }

    fn add(&mut self, p: Packed) {
        self.unsent.push(self.messages.len());
        self.messages.push(Message {
            events: p.parts.iter().map(|(_, r)| r.len()).sum(),
            body: p.body,
            parts: p.parts,
            json_bytes: p.json_bytes,
        });
    }

    fn called(&mut self, messages: Vec<usize>, bodies: Vec<String>, outcome: SendOutcome) {
        let mut answered = vec![false; messages.len()];
        for (entry, _message_id) in &outcome.sent {
            if let Some(&m) = messages.get(*entry) {
                answered[*entry] = true;
                self.acknowledged(m, bodies[*entry].len());
            }
        }
        let mut retry = (Vec::new(), Vec::new());
        for failure in &outcome.failed {
            let Some(&m) = messages.get(failure.index) else {
                continue;
            };
            answered[failure.index] = true;
            // Any spelling: LocalStack says `InvalidParameterValueException`.
            if failure.is_too_large() {
                metrics::queue_error("message_too_large");
                self.split(m, bodies[failure.index].len());
            } else {
                metrics::queue_error("entry_failed");
                tracing::debug!(code = %failure.code, "SQS refused a message; retrying");
                self.last_error = Some(format!("entry failed: {}", failure.code));
                retry.0.push(m);
                retry.1.push(bodies[failure.index].clone());
            }
        }
        // An entry the answer does not mention is retried too.
        for (entry, done) in answered.iter().enumerate() {
            if !done {
                retry.0.push(messages[entry]);
                retry.1.push(bodies[entry].clone());
            }
        }
        self.retry_later(retry.0, retry.1);
    }

    fn acknowledged(&mut self, m: usize, encoded_bytes: usize) {
        let message = &self.messages[m];
        metrics::message_sent(message.events, message.json_bytes, encoded_bytes);
        for (request, range) in &message.parts {
            let waiter = &mut self.waiters[*request];
            waiter.remaining = waiter.remaining.saturating_sub(range.len());
            if waiter.remaining == 0 {
                waiter.answer(Ok(()));
            }
        }
    }

    /// Re-packs a message the queue refused as too large into smaller ones.
    fn split(&mut self, m: usize, len: usize) {
        let max = self.sender.refused_size(len);
        let parts = std::mem::take(&mut self.messages[m].parts);
        if let [(request, range)] = &parts[..]
            && range.len() == 1
        {
            self.waiters[*request].answer(Err(EnqueueError::TooLarge { index: range.start }));
            return;
        }
        self.pack(parts, max, false);
    }
}
