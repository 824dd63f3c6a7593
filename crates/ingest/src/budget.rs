//! One memory budget for the request bodies of all requests at once.
//!
//! Per-request limits (`INGEST_MAX_BODY`, `INGEST_MAX_DECODED_BODY`) bound one
//! request; without a total, sixteen concurrent gzip bombs each held their
//! own 64 MiB. Every body byte read from the wire and every decompressed
//! byte is room taken from this budget (`INGEST_MAX_BUFFERED_BYTES`) before
//! it is allocated, and given back when the request no longer holds it:
//!
//! - a body of known length waits for its room before it is read (the
//!   client is slowed by TCP, nothing is buffered meanwhile); a chunked body
//!   takes room frame by frame and is refused (503 `overloaded`) when there
//!   is none;
//! - a compressed body is first inflated without keeping the output, only
//!   to learn its size: a bomb is refused (413) having allocated nothing;
//!   then its exact size is taken (503 `overloaded` when there is no room
//!   now) and it is inflated into one allocation of that size.
//!
//! Room is counted in KiB, rounded up. The budget is at least
//! `INGEST_MAX_BODY + INGEST_MAX_DECODED_BODY`, so any request fits alone.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget, shared by all requests.
#[derive(Debug, Clone)]
pub struct Budget {
    room: Arc<Semaphore>,
    total_kib: u32,
}

/// Room held by one request; given back on drop.
#[derive(Debug, Default)]
pub struct Room {
    permits: Vec<OwnedSemaphorePermit>,
}

impl Room {
    fn add(&mut self, permit: OwnedSemaphorePermit) {
        self.permits.push(permit);
    }

    /// Adds `other`'s room to this one.
    pub fn merge(&mut self, other: Room) {
        self.permits.extend(other.permits);
    }
}

impl Budget {
    pub fn new(bytes: usize) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, Semaphore::MAX_PERMITS as u32);
        Self {
            room: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    fn kib(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib)
    }

    /// Waits for room for `bytes`, all at once.
    pub async fn wait(&self, bytes: usize, room: &mut Room) {
        if let Ok(permit) = Arc::clone(&self.room)
            .acquire_many_owned(self.kib(bytes))
            .await
        {
            room.add(permit);
        }
    }

    /// Takes room for `bytes` if there is that much now.
    pub fn try_take(&self, bytes: usize, room: &mut Room) -> bool {
        match Arc::clone(&self.room).try_acquire_many_owned(self.kib(bytes)) {
            Ok(permit) => {
                room.add(permit);
                true
            }
            Err(_) => false,
        }
    }

    /// Room not held by any request, in bytes (for tests and metrics).
    pub fn available(&self) -> usize {
        self.room.available_permits() * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn room_is_taken_and_given_back() {
        let budget = Budget::new(10 * 1024);
        let mut a = Room::default();
        budget.wait(4 * 1024, &mut a).await;
        assert!(budget.try_take(6 * 1024, &mut a));
        let mut b = Room::default();
        assert!(!budget.try_take(1, &mut b));
        drop(a);
        assert_eq!(budget.available(), 10 * 1024);
        // More than the whole budget is clamped to it: it can proceed alone.
        budget.wait(1 << 30, &mut b).await;
        assert_eq!(budget.available(), 0);
    }
}
