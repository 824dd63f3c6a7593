//! One gate for the CPU work of all requests and flushes (decompressing,
//! parsing, packing): at most as many run at once as there are cores.
//!
//! `spawn_blocking` alone starts a new thread whenever none is idle, up to
//! 512: under 64 concurrent requests ingest ran dozens of blocking threads,
//! each with its own stack and allocator caches, for no more throughput than
//! the cores give. Waiting here is asynchronous and holds nothing but what
//! the caller already holds (its body, inside the memory budget).

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;
use tokio::task::JoinError;

fn gate() -> &'static Arc<Semaphore> {
    static GATE: OnceLock<Arc<Semaphore>> = OnceLock::new();
    GATE.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(Semaphore::new(cores.max(2)))
    })
}

/// Runs `work` on the blocking pool once a core is free for it.
pub(crate) async fn run<T, F>(work: F) -> Result<T, JoinError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // The gate is never closed, so acquiring only waits.
    let permit = Arc::clone(gate()).acquire_owned().await.ok();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
}
