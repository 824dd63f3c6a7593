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
//! Files: `file` (opening, schema), `send` (SQS's checks), `space`
//! (headroom), `receive` (receive, redrive, quarantine, delete), `wait`
//! (long-poll wake-ups).
//!
//! **Durability.** A send returns only after its commit is synced
//! (`synchronous=FULL`): ingest answers 202 on it. Receives, deletes and
//! visibility changes commit with `synchronous=NORMAL` (safe against
//! corruption, not synced at every commit): after a power cut one may be
//! lost, which means a redelivery, and the writer's receipts already make
//! redeliveries harmless.

mod file;
mod receive;
mod send;
mod space;
#[cfg(test)]
mod tests;
mod wait;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    EntryFailure, MAX_BATCH_ENTRIES, Queue, QueueCounts, QueueError, QueueMessage, SendOutcome,
};
use file::{init_schema, open_connection, read_max_receive_count, sqlite_error};
use receive::{by_handles, data_version, fresh_nonce, parse_handle, try_receive};
use send::{check_batch_len, refusal};
use wait::{Leading, Waiting, notifier};

pub use space::{DEFAULT_MAX_BYTES, DEFAULT_MIN_FREE_BYTES, Limits};

/// Receives before a message goes to the dead-letter queue, for a file that
/// `setup` has not configured (the default of `WRITER_MAX_RECEIVE_COUNT`).
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 5;
/// Largest message body in bytes, SQS's maximum (1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;
/// Largest total of the bodies of one send, as in SQS.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
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
struct Conn {
    conn: Connection,
    /// Whether `synchronous=FULL` is set (else NORMAL).
    durable: bool,
}

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    conn: Mutex<Conn>,
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
        // A panic while the lock was held leaves it poisoned, but the
        // connection is fine once an abandoned transaction is rolled back.
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        if !conn.conn.is_autocommit() {
            conn.conn.execute_batch("ROLLBACK")?;
        }
        if conn.durable != durable {
            let level = if durable { "FULL" } else { "NORMAL" };
            conn.conn.pragma_update(None, "synchronous", level)?;
            conn.durable = durable;
        }
        f(&mut conn.conn)
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
                conn: Mutex::new(Conn {
                    conn,
                    durable: true,
                }),
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

    /// Polls `data_version` if no other receive of this handle does; true
    /// when another connection committed since the last reading, after
    /// waking every receive waiting on this file in this process.
    async fn poll_for_commits<'a>(
        &'a self,
        leading: &mut Option<Leading<'a>>,
    ) -> Result<bool, QueueError> {
        if leading.is_none() {
            *leading = Leading::take(&self.shared.polling);
        }
        if leading.is_none() {
            return Ok(false);
        }
        let version = self
            .run(false, "polling", |conn, _| data_version(conn))
            .await?;
        if self.version().swap(version, Ordering::AcqRel) == version {
            return Ok(false);
        }
        self.shared.notify.notify_waiters();
        Ok(true)
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
        super::spawn_blocking(move || {
            shared
                .with_conn(durable, |conn| f(conn, which))
                .map_err(|e| sqlite_error(&shared.path, doing, e))
        })
        .await
    }
}
#[async_trait]
impl Queue for SqliteQueue {
    async fn send_batch(&self, bodies: &[String]) -> Result<SendOutcome, QueueError> {
        check_batch_len(bodies.len())?;
        let mut outcome = SendOutcome::default();
        let mut rows = Vec::with_capacity(bodies.len());
        let mut total = 0;
        for (index, body) in bodies.iter().enumerate() {
            if let Some(code) = refusal(body) {
                outcome.failed.push(EntryFailure {
                    index,
                    code: code.into(),
                    sender_fault: true,
                });
                continue;
            }
            total += body.len();
            rows.push((index, uuid::Uuid::now_v7().to_string(), body.clone()));
        }
        if total > MAX_BATCH_BYTES {
            return Err(QueueError::new(
                Some("BatchRequestTooLong".into()),
                format!(
                    "BatchRequestTooLong: the bodies total {total} bytes, at most {MAX_BATCH_BYTES}"
                ),
            ));
        }
        if rows.is_empty() {
            return Ok(outcome);
        }
        let path = self.shared.path.clone();
        let limits = self.shared.limits;
        let resuming = self.shared.refusing.is_set();
        let sent = self
            .run(true, "sending", move |conn, which| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                // Measured under the write lock: no other send can slip
                // between the check and the insert.
                let space = space::measure(&tx, &path)?;
                space::record(&space);
                if let Some(reason) = space::refusal(&limits, &space, total as u64, resuming) {
                    return Ok(Err(reason));
                }
                let now = now_ms();
                {
                    // The receipt starts as a nonce of a receive's size, so
                    // a receive rewrites the row in place (same length)
                    // instead of copying its body: receiving then needs a
                    // few pages of WAL, not the message's size.
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO sluice_queue_messages (queue, visible_at, message_id, sent_at, body, receipt)
                         VALUES (?1, ?2, ?3, ?2, ?4, ?5)",
                    )?;
                    for (_, id, body) in &rows {
                        stmt.execute(params![which.code(), now, id, body, fresh_nonce()])?;
                    }
                }
                tx.commit()?;
                Ok(Ok(rows
                    .into_iter()
                    .map(|(index, id, _)| (index, id))
                    .collect::<Vec<_>>()))
            })
            .await;
        let sent = match sent {
            Ok(Ok(sent)) => sent,
            Ok(Err(reason)) => {
                self.shared.refusing.started(&self.shared.path, &reason);
                return Err(QueueError::new(
                    Some(super::QUEUE_FULL.into()),
                    format!("queue file {}: full: {reason}", self.shared.path.display()),
                ));
            }
            Err(e) => {
                if e.is_full() {
                    self.shared.refusing.started(&self.shared.path, &e.message);
                }
                return Err(e);
            }
        };
        self.shared.refusing.ended(&self.shared.path);
        self.shared.notify.notify_waiters();
        outcome.sent = sent;
        Ok(outcome)
    }

    async fn receive(
        &self,
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
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let attempt = self
                .run(false, "receiving", move |conn, which| {
                    try_receive(conn, which, max, visibility_ms)
                })
                .await?;
            // Later polls compare against the newest reading.
            self.version()
                .store(attempt.data_version, Ordering::Release);
            if attempt.moved > 0 || attempt.messages.len() == max {
                // The dead-letter queue has news, or more may be waiting
                // here: let the other receives look.
                self.shared.notify.notify_waiters();
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
            let _waiting = Waiting::enter(&self.shared.waiting);
            let mut leading = Leading::take(&self.shared.polling);
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
                if Instant::now() >= wake || self.poll_for_commits(&mut leading).await? {
                    break;
                }
            }
        }
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
