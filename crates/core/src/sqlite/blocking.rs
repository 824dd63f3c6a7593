//! Running blocking rusqlite work from async code.
//!
//! rusqlite blocks, so calls go to the blocking pool ([`off_thread`]); on a
//! multi-thread runtime a caller holding borrowed data may instead run it
//! on its own thread ([`in_place`]) and let the runtime move its other
//! tasks, which spares copying the data for a `'static` closure. Either way
//! a panic is caught and reported, never propagated into the service.

/// Why blocking work returned no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupted {
    /// The runtime is shutting down: the work did not run, or not to the end.
    Cancelled,
    /// A bug; any transaction rolled back while unwinding.
    Panicked,
}

/// Runs `f` in the blocking pool.
pub(crate) async fn off_thread<T, F>(f: F) -> Result<T, Interrupted>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        if e.is_cancelled() {
            Interrupted::Cancelled
        } else {
            Interrupted::Panicked
        }
    })
}

/// Runs `f` on this thread, telling a multi-thread runtime to move its other
/// tasks away; `None` on a current-thread runtime, where that is not
/// allowed (use [`off_thread`]).
pub(crate) fn in_place<T>(f: impl FnOnce() -> T) -> Option<Result<T, Interrupted>> {
    if tokio::runtime::Handle::current().runtime_flavor()
        != tokio::runtime::RuntimeFlavor::MultiThread
    {
        return None;
    }
    Some(tokio::task::block_in_place(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| Interrupted::Panicked)
    }))
}
