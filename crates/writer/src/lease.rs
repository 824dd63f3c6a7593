//! Keeps held messages invisible for as long as the writer holds them.
//!
//! A message is held from receive until it is deleted or released. SQS would
//! hand it to another consumer once its visibility timeout passes, so the
//! keeper extends each held message shortly before its own deadline — per
//! message, not on a fixed timer, and only while it is held, so a backlog can
//! never make the writer extend handles that already expired.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_core::queue::{MAX_BATCH_ENTRIES, Queue};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics;

#[derive(Debug, Clone)]
pub struct Leases {
    held: Arc<Mutex<HashMap<String, Instant>>>,
    visibility: Duration,
}

impl Leases {
    pub fn new(visibility: Duration) -> Self {
        Self {
            held: Arc::default(),
            visibility,
        }
    }

    /// Starts tracking a just-received message.
    pub fn hold(&self, receipt_handle: &str) {
        let deadline = Instant::now() + self.visibility;
        self.lock().insert(receipt_handle.to_owned(), deadline);
    }

    /// Stops tracking messages (deleted or released).
    pub fn forget<'a>(&self, receipt_handles: impl IntoIterator<Item = &'a String>) {
        let mut held = self.lock();
        for handle in receipt_handles {
            held.remove(handle);
        }
    }

    pub fn held_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Handles whose deadline is within half a visibility timeout.
    fn due(&self) -> Vec<String> {
        let soon = Instant::now() + self.visibility / 2;
        self.lock()
            .iter()
            .filter(|(_, deadline)| **deadline <= soon)
            .map(|(handle, _)| handle.clone())
            .collect()
    }

    /// Extends due leases until `stop` fires and nothing is held any more.
    pub async fn keep_alive(self, queue: Arc<dyn Queue>, stop: CancellationToken) {
        let tick = (self.visibility / 6).max(Duration::from_millis(250));
        loop {
            tokio::select! {
                () = tokio::time::sleep(tick) => {}
                () = stop.cancelled() => return,
            }
            for chunk in self.due().chunks(MAX_BATCH_ENTRIES) {
                let started = Instant::now();
                match queue.change_visibility_batch(chunk, self.visibility).await {
                    Ok(failures) => {
                        let mut held = self.lock();
                        for (i, handle) in chunk.iter().enumerate() {
                            if let Some(f) = failures.iter().find(|f| f.index == i) {
                                tracing::warn!(code = %f.code, kind = %f.kind(), "could not extend a message's visibility");
                                metrics::error("queue_visibility", 1);
                                // A handle that is gone (deleted, or the message
                                // received again elsewhere) is let go: the
                                // receipt in the database keeps its rows from
                                // landing twice. Any other refusal (throttled,
                                // a server error) is tried again next tick.
                                if f.kind().handle_is_gone() || !f.kind().is_transient() {
                                    held.remove(handle);
                                }
                            } else if let Some(deadline) = held.get_mut(handle) {
                                *deadline = started + self.visibility;
                            }
                        }
                        metrics::extended(chunk.len() - failures.len());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "visibility extension failed; will retry");
                        metrics::error("queue_visibility", 1);
                    }
                }
            }
        }
    }
}
