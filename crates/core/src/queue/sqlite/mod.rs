//! The embedded queue: SQS's semantics in one SQLite file
//! (`QUEUE_URL=sqlite:///path/queue.db`).
//!
//! Why: running Sluice on one machine should not need an AWS account or an
//! emulator. The embedded queue keeps the [`Queue`] contract — batches of ten,
//! long polling, visibility timeouts, receive counts, per-entry failures, a
//! dead-letter queue — so ingest and the writers cannot tell it from SQS, and
//! moving to SQS when one machine is not enough is a change of `QUEUE_URL`.
//! It is for one host: the file must be on a local disk (WAL needs shared
//! memory, which network file systems do not give).
//!
//! **Layout.** One table holds the messages of the queue and of its
//! dead-letter queue (a column says which), ordered by an index on
//! `(queue, visible_at, seq)`: receiving takes the first rows whose
//! `visible_at` has passed — the oldest visible first — and counting is a
//! range scan of the same index. A meta table holds the file's format and the
//! redrive rule. A file holding other tables (a Sluice database, say) is
//! refused: the queue wants a file of its own, so the writer's long
//! transactions never stall a send.
//!
//! **Several processes.** WAL mode, a busy timeout, and `BEGIN IMMEDIATE`
//! for every read-modify-write, so two receivers (threads or processes) never
//! take the same message: the second waits for the first's commit and then no
//! longer sees the message as visible. Still busy after [`BUSY_TIMEOUT`] is a
//! [`QueueError`], which the writer and ingest retry with backoff. Each
//! [`SqliteQueue::open`] has one connection behind a mutex, used from
//! [`tokio::task::spawn_blocking`]; a handle is cheap to clone and share.
//!
//! **Receipt handles** are `<row>.<random nonce>`, the nonce new on every
//! receive: a holder whose visibility ran out and whose message another
//! consumer received since can no longer delete or extend it
//! (`ReceiptHandleIsInvalid`), as in SQS.
//!
//! **Long polling.** With nothing visible, a receive waits (up to `wait`,
//! at most 20 s like SQS) for whichever comes first: a send through any
//! handle of this file in this process (a [`Notify`] shared per file), a
//! commit by another process (`PRAGMA data_version`, which changes when
//! another connection commits, checked every [`POLL_INTERVAL`] by one of the
//! receives waiting on a handle for all of them — cheap: it reads the WAL
//! index, no disk I/O), or the earliest visibility expiry.
//!
//! A receive whose future is dropped while its transaction runs may still
//! hide the messages it took; they come back after the visibility timeout,
//! as with an SQS call cut off in flight.
//!
//! **Redrive.** The maximum receive count is stored in the file (`setup`
//! sets it; a file created by [`SqliteQueue::open`] starts at
//! [`DEFAULT_MAX_RECEIVE_COUNT`], `WRITER_MAX_RECEIVE_COUNT`'s default, so a
//! first run works without `setup`). A message that would be delivered for
//! the (max + 1)-th time is moved to the dead-letter queue instead, as SQS
//! does, with its receive count reset; [`SqliteQueue::dead_letter_queue`]
//! reads it like any queue.
//!
//! **PII.** The file holds events as ingest sent them, before masking (as
//! SQS does): it is created readable by its owner only, and deleted messages
//! are overwritten (`secure_delete`) rather than left in free pages (the
//! WAL's older frames go as it is reused after each checkpoint).
//!
//! **Room to drain.** Sends are refused (`QueueFull`) before the file and
//! its disk fill up, so receives and deletes — write transactions too —
//! always commit and the queue drains by itself (see `space.rs`). A receive
//! rewrites its row in place: the receipt nonce is stored at send time in
//! the same 8 bytes a receive's takes, so the row keeps its length and
//! SQLite does not copy the body into the WAL.
//!
//! **Unreadable rows.** A row whose id or body is not UTF-8 text (another
//! program wrote it) is moved to the dead-letter queue with a warning naming
//! its message id, instead of failing every receive behind it.
//!
//! Files: `file` (the file and its permissions), `schema` (tables and
//! format check), `rules` (SQS's refusal rules), `send` (the send
//! transaction), `space` (headroom), `receive` (receive, redrive,
//! quarantine, delete), `wait` (long polling), `error`; the connection,
//! its lock and the blocking calls are [`crate::sqlite`]'s.
//!
//! **Durability.** A send returns only after its commit is synced
//! (`synchronous=FULL`): ingest answers 202 on it. Receives, deletes and
//! visibility changes commit with `synchronous=NORMAL` (safe against
//! corruption, not synced at every commit): after a power cut one may be
//! lost, which means a redelivery, and the writer's receipts already make
//! redeliveries harmless.

mod error;
mod file;
mod receive;
mod rules;
mod schema;
mod send;
mod space;
#[cfg(test)]
mod tests;
mod wait;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, params};
use tokio::sync::Notify;

use super::{EntryFailure, Queue, QueueCounts, QueueError, QueueMessage, SendOutcome};
use crate::sqlite::{SharedConnection, Synchronous};
use error::sqlite_error;
use file::open_connection;
use receive::{by_handles, parse_handle};
use rules::check_batch_len;
use schema::{init_schema, read_max_receive_count};
use wait::notifier;

pub use space::{DEFAULT_MAX_BYTES, DEFAULT_MIN_FREE_BYTES, Limits};

/// Receives before a message goes to the dead-letter queue, for a file that
/// `setup` has not configured (the default of `WRITER_MAX_RECEIVE_COUNT`).
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 5;
/// SQS's limits on a message body and on one send's bodies, kept here too.
pub use crate::queue::{MAX_BATCH_BYTES, MAX_MESSAGE_BYTES};
/// How long a statement waits for another process's write lock before the
/// call fails (and is retried by its caller).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a waiting receive looks for commits of other processes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How often a waiting receive that is not the handle's poller checks
/// whether the poller has gone (its own wait ended), to take over.
const FOLLOWER_INTERVAL: Duration = Duration::from_millis(250);
/// SQS's longest long poll.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// SQS's longest visibility timeout.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Main,
    DeadLetter,
}

impl Which {
    fn code(self) -> i64 {
        match self {
            Which::Main => 0,
            Which::DeadLetter => 1,
        }
    }
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    conn: SharedConnection,
    /// Shared by every handle on this file in this process: sends and
    /// visibility resets wake waiting receives at once.
    notify: Arc<Notify>,
    /// The latest `PRAGMA data_version` each queue's receives saw (the
    /// queue, its dead-letter queue), so a dead-letter receive cannot mark
    /// as seen a commit that the queue's receives have not looked at.
    versions: [AtomicI64; 2],
    /// Set while one waiting receive of this handle polls `data_version`
    /// for all of them; the others wait for its wake-up.
    polling: AtomicBool,
    /// Receives of this handle now waiting for a message.
    waiting: AtomicUsize,
    /// How far sends may fill the file and its disk.
    limits: Limits,
    /// Whether sends are being refused for lack of room.
    refusing: space::Refusing,
}

impl Shared {
    /// Runs `f` on the connection (blocking), with the durability asked for.
    fn with_conn<T>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let mut conn = self.conn.lock()?;
        conn.set_synchronous(if durable {
            Synchronous::Full
        } else {
            Synchronous::Normal
        })?;
        f(&mut conn)
    }
}

/// A queue (or its dead-letter queue) stored in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    shared: Arc<Shared>,
    which: Which,
}

impl SqliteQueue {
    /// Opens (creating the file and schema when missing) the queue stored at
    /// `path` (and its folder). Blocking: call it from
    /// `spawn_blocking` in async code ([`super::connect`] does).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, QueueError> {
        Self::open_with(path, Limits::default())
    }

    /// [`open`](Self::open) with the sends bounded by `limits`
    /// (`QUEUE_MAX_BYTES`, `QUEUE_MIN_FREE_BYTES`). Blocking.
    pub fn open_with(path: impl AsRef<Path>, limits: Limits) -> Result<Self, QueueError> {
        let path = path.as_ref().to_owned();
        let mut conn = open_connection(&path)?;
        init_schema(&mut conn, &path)?;
        let notify = notifier(&path);
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                conn: SharedConnection::new(conn, Synchronous::Full),
                notify,
                versions: [AtomicI64::new(i64::MIN), AtomicI64::new(i64::MIN)],
                polling: AtomicBool::new(false),
                waiting: AtomicUsize::new(0),
                limits,
                refusing: space::Refusing::default(),
            }),
            which: Which::Main,
        })
    }

    /// The dead-letter queue in the same file, as a Queue of its own
    /// (receive/delete/counts work on it). It has no redrive of its own.
    pub fn dead_letter_queue(&self) -> SqliteQueue {
        SqliteQueue {
            shared: Arc::clone(&self.shared),
            which: Which::DeadLetter,
        }
    }

    /// Sets the redrive rule: after this many receives a message goes to the
    /// dead-letter queue instead of being delivered. At least 1. Blocking.
    pub fn set_max_receive_count(&self, n: u32) -> Result<(), QueueError> {
        if n == 0 {
            return Err(QueueError::new(
                Some("InvalidParameterValue".into()),
                "the maximum receive count must be at least 1",
            ));
        }
        self.shared
            .with_conn(true, |conn| {
                conn.execute(
                    "INSERT INTO sluice_queue_meta (key, value) VALUES ('max_receive_count', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [n.to_string()],
                )
                .map(|_| ())
            })
            .map_err(|e| sqlite_error(&self.shared.path, "setting the redrive rule", e))
    }

    /// The redrive rule stored in the file. Blocking.
    pub fn max_receive_count(&self) -> Result<u32, QueueError> {
        self.shared
            .with_conn(false, |conn| read_max_receive_count(conn))
            .map_err(|e| sqlite_error(&self.shared.path, "reading the redrive rule", e))
    }

    /// The queue file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// How many receives of this handle (and its clones) are waiting for a
    /// message right now; lets tests act once a receive really waits.
    pub fn waiting_receives(&self) -> usize {
        self.shared.waiting.load(Ordering::Acquire)
    }

    /// The last `data_version` this handle's queue looked at.
    fn version(&self) -> &AtomicI64 {
        &self.shared.versions[self.which.code() as usize]
    }

    /// Runs `f` on the connection in the blocking pool.
    async fn run<T, F>(&self, durable: bool, doing: &'static str, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, Which) -> rusqlite::Result<T> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let which = self.which;
        crate::sqlite::off_thread(move || {
            shared
                .with_conn(durable, |conn| f(conn, which))
                .map_err(|e| sqlite_error(&shared.path, doing, e))
        })
        .await
        .map_err(|_| QueueError::new(None, "queue task cancelled or panicked"))?
    }
}
/// What a receive returns.
type Received = Result<Vec<QueueMessage>, QueueError>;

#[async_trait]
impl Queue for SqliteQueue {
    async fn send_batch(&self, bodies: &[String]) -> Result<SendOutcome, QueueError> {
        send::send_batch(self, bodies).await
    }

    async fn receive(&self, max: usize, wait: Duration, visibility: Duration) -> Received {
        wait::receive(self, max, wait, visibility).await
    }

    async fn delete_batch(
        &self,
        receipt_handles: &[String],
    ) -> Result<Vec<EntryFailure>, QueueError> {
        check_batch_len(receipt_handles.len())?;
        let parsed: Vec<_> = receipt_handles.iter().map(|h| parse_handle(h)).collect();
        let (failures, _) = self
            .run(false, "deleting", move |conn, which| {
                by_handles(
                    conn,
                    "DELETE FROM sluice_queue_messages
                     WHERE seq = ?1 AND receipt = ?2 AND queue = ?3",
                    which,
                    &parsed,
                    None,
                )
            })
            .await?;
        Ok(failures)
    }

    async fn change_visibility_batch(
        &self,
        receipt_handles: &[String],
        timeout: Duration,
    ) -> Result<Vec<EntryFailure>, QueueError> {
        check_batch_len(receipt_handles.len())?;
        let parsed: Vec<_> = receipt_handles.iter().map(|h| parse_handle(h)).collect();
        let timeout_ms = millis(timeout.min(MAX_VISIBILITY));
        let (failures, changed) = self
            .run(false, "changing visibility", move |conn, which| {
                by_handles(
                    conn,
                    "UPDATE sluice_queue_messages SET visible_at = ?4
                     WHERE seq = ?1 AND receipt = ?2 AND queue = ?3",
                    which,
                    &parsed,
                    Some(now_ms() + timeout_ms),
                )
            })
            .await?;
        if timeout_ms == 0 && changed > 0 {
            self.shared.notify.notify_waiters();
        }
        Ok(failures)
    }

    async fn depth(&self) -> Result<u64, QueueError> {
        Ok(self.counts().await?.visible)
    }

    async fn counts(&self) -> Result<QueueCounts, QueueError> {
        let path = self.shared.path.clone();
        self.run(false, "counting", move |conn, which| {
            // Readiness checks count: the gauges stay fresh in the writer
            // too, which never sends.
            if which == Which::Main {
                space::record(&space::measure(conn, &path)?);
            }
            conn.prepare_cached(
                "SELECT COALESCE(SUM(visible_at <= ?2), 0), COALESCE(SUM(visible_at > ?2), 0)
                 FROM sluice_queue_messages WHERE queue = ?1",
            )?
            .query_row(params![which.code(), now_ms()], |row| {
                Ok(QueueCounts {
                    visible: row.get::<_, i64>(0)?.max(0) as u64,
                    in_flight: row.get::<_, i64>(1)?.max(0) as u64,
                })
            })
        })
        .await
    }

    async fn dead_letter_counts(&self) -> Result<Option<QueueCounts>, QueueError> {
        match self.which {
            Which::Main => self.dead_letter_queue().counts().await.map(Some),
            Which::DeadLetter => Ok(None),
        }
    }

    fn describe(&self) -> String {
        match self.which {
            Which::Main => self.shared.path.display().to_string(),
            Which::DeadLetter => format!("{} (dead-letter queue)", self.shared.path.display()),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}
