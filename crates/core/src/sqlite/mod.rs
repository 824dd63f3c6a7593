//! SQLite plumbing shared by the embedded queue and the SQLite sink.
//!
//! Why one place: both keep one blocking rusqlite connection per handle,
//! opened the same way (folder created, busy timeout, WAL, `synchronous`),
//! guarded by a mutex that a panic may poison, and used from the async
//! threads through the blocking pool. Written twice, the two copies drifted
//! (one forgot the WAL retry, the other the rollback after a panic); here
//! each rule is written once and the queue and the sink only say how they
//! differ (the queue's private file, `secure_delete`, the errors each
//! reports).
//!
//! Files: `open` (opening with pragmas), `wal` (the WAL switch, retried),
//! `lock` (the poison-safe connection lock that rolls back an abandoned
//! transaction), `blocking` (running the work off the async threads).

mod blocking;
mod lock;
mod open;
mod wal;

pub(crate) use blocking::{Interrupted, in_place, off_thread};
pub(crate) use lock::SharedConnection;
pub(crate) use open::{OpenOptions, Synchronous, create_folder, open};
