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
//! **Durability.** A send returns only after its commit is synced
//! (`synchronous=FULL`): ingest answers 202 on it. Receives, deletes and
//! visibility changes commit with `synchronous=NORMAL` (safe against
//! corruption, not synced at every commit): after a power cut one may be
//! lost, which means a redelivery, and the writer's receipts already make
//! redeliveries harmless.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::sqs_error::codes;
use super::{
    EntryFailure, MAX_BATCH_ENTRIES, Queue, QueueCounts, QueueError, QueueMessage, SendOutcome,
};

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
/// Written in the meta table; a file of another format is refused.
const FORMAT: &str = "sluice-queue-1";

const SCHEMA: &str = "
CREATE TABLE sluice_queue_meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE sluice_queue_messages (
    seq           INTEGER PRIMARY KEY,
    queue         INTEGER NOT NULL,           -- 0 the queue, 1 its dead-letter queue
    visible_at    INTEGER NOT NULL,           -- Unix milliseconds
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       INTEGER,                    -- nonce of the latest receive
    message_id    TEXT NOT NULL,
    sent_at       INTEGER NOT NULL,
    body          TEXT NOT NULL               -- last: scans skip its overflow pages
);
CREATE INDEX sluice_queue_ready ON sluice_queue_messages (queue, visible_at, seq);
";

/// Which of the two queues in the file a handle reads and writes.
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
                Some(codes::INVALID_PARAMETER_VALUE.into()),
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
fn notifier(path: &Path) -> Arc<Notify> {
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

/// Creates a missing queue file readable by its owner only: it holds events
/// as ingest sent them, PII not yet masked. SQLite gives its `-wal` and
/// `-shm` files the same permissions.
fn create_private(path: &Path) -> Result<(), QueueError> {
    // A first run names a folder that does not exist yet (data/queue.db).
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            QueueError::new(
                None,
                format!(
                    "queue file {}: cannot create its folder: {}",
                    path.display(),
                    e.kind()
                ),
            )
        })?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            warn_if_shared(path);
            Ok(())
        }
        Err(e) => {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "its directory does not exist".to_owned(),
                std::io::ErrorKind::PermissionDenied => {
                    "this user may not write in its directory".to_owned()
                }
                _ => e.to_string(),
            };
            Err(QueueError::new(
                None,
                format!("queue file {}: cannot be created: {why}", path.display()),
            ))
        }
    }
}

/// The queue holds events before masking: say so when others can read it.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = %format!("{:o}", meta.permissions().mode() & 0o777),
                "the queue file holds unmasked events and other users can read it; chmod 600 it"
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn open_connection(path: &Path) -> Result<Connection, QueueError> {
    create_private(path)?;
    let err = |e| sqlite_error(path, "opening", e);
    // No URI flag: the path is a file name, whatever it looks like.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(err)?;
    // Busy timeout first: switching to WAL needs a lock another process may hold.
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    let mode = crate::sqlite_wal::switch_to_wal(&conn, BUSY_TIMEOUT).map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), journal_mode = %mode, "SQLite WAL mode unavailable for the queue file");
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    // A deleted message's pages are zeroed rather than left in the free
    // list, so raw events do not linger once the writer has stored them.
    conn.pragma_update(None, "secure_delete", "ON")
        .map_err(err)?;
    // After a burst the WAL is cut back to this size at each checkpoint
    // instead of keeping its largest size on disk for good.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
        .map_err(err)?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

/// Creates the schema in an empty file; checks a file that has one.
fn init_schema(conn: &mut Connection, path: &Path) -> Result<(), QueueError> {
    let err = |e| sqlite_error(path, "reading the schema", e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let tables: Vec<String> = {
        let mut stmt = tx
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .map_err(err)?;
        stmt.query_map([], |row| row.get(0))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?
    };
    if tables.iter().any(|t| t == "sluice_queue_meta") {
        let format: Option<String> = tx
            .query_row(
                "SELECT value FROM sluice_queue_meta WHERE key = 'format'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(err)?;
        return match format.as_deref() {
            Some(FORMAT) => Ok(()),
            other => Err(QueueError::new(
                None,
                format!(
                    "queue file {}: has queue format {}, this build reads {FORMAT}",
                    path.display(),
                    other.unwrap_or("none")
                ),
            )),
        };
    }
    if !tables.is_empty() {
        return Err(QueueError::new(
            None,
            format!(
                "queue file {}: is a SQLite database but not a Sluice queue; the queue needs a file of its own",
                path.display()
            ),
        ));
    }
    tx.execute_batch(SCHEMA).map_err(err)?;
    tx.execute(
        "INSERT INTO sluice_queue_meta (key, value) VALUES ('format', ?1), ('max_receive_count', ?2)",
        params![FORMAT, DEFAULT_MAX_RECEIVE_COUNT.to_string()],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

/// One line naming the file and what failed. SQLite's messages never carry
/// bound values, so no message body can leak into it.
fn sqlite_error(path: &Path, doing: &str, e: rusqlite::Error) -> QueueError {
    let what = match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => format!(
            "busy: another connection held the file for longer than {} s",
            BUSY_TIMEOUT.as_secs()
        ),
        Some(ErrorCode::NotADatabase) => "is not a SQLite database".to_owned(),
        Some(ErrorCode::CannotOpen) => {
            "cannot be opened (does its directory exist, and may this user write there?)".to_owned()
        }
        _ => e
            .to_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" "),
    };
    QueueError::new(
        None,
        format!("queue file {}: {doing}: {what}", path.display()),
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn read_max_receive_count(conn: &Connection) -> rusqlite::Result<u32> {
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM sluice_queue_meta WHERE key = 'max_receive_count'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(value
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_RECEIVE_COUNT))
}

fn handle(seq: i64, nonce: i64) -> String {
    format!("{seq}.{nonce:x}")
}

fn parse_handle(handle: &str) -> Option<(i64, i64)> {
    let (seq, nonce) = handle.split_once('.')?;
    let nonce = u64::from_str_radix(nonce, 16).ok()?;
    Some((seq.parse().ok()?, i64::try_from(nonce).ok()?))
}

fn invalid_handle(index: usize) -> EntryFailure {
    EntryFailure {
        index,
        code: codes::RECEIPT_HANDLE_IS_INVALID.into(),
        sender_fault: true,
    }
}

/// Checks the size and count of a batch call, as SQS does before anything else.
fn check_batch_len(len: usize) -> Result<(), QueueError> {
    if len == 0 {
        return Err(QueueError::new(
            Some(codes::EMPTY_BATCH_REQUEST.into()),
            "EmptyBatchRequest: the batch has no entries",
        ));
    }
    if len > MAX_BATCH_ENTRIES {
        return Err(QueueError::new(
            Some(codes::TOO_MANY_ENTRIES_IN_BATCH_REQUEST.into()),
            format!("TooManyEntriesInBatchRequest: {len} entries, at most {MAX_BATCH_ENTRIES}"),
        ));
    }
    Ok(())
}

/// Why SQS would refuse this body, if it would.
fn refusal(body: &str) -> Option<&'static str> {
    if body.is_empty() {
        return Some(codes::MISSING_PARAMETER);
    }
    if body.len() > MAX_MESSAGE_BYTES {
        return Some(codes::MESSAGE_TOO_LONG);
    }
    // SQS accepts the characters XML allows: #x9 | #xA | #xD | #x20-#xD7FF |
    // #xE000-#xFFFD | #x10000-#x10FFFF (Rust strings hold no surrogates).
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
            || c >= '\u{10000}'
    };
    (!body.chars().all(allowed)).then_some(codes::INVALID_MESSAGE_CONTENTS)
}

/// What one receive attempt found.
struct Attempt {
    messages: Vec<QueueMessage>,
    /// Messages moved to the dead-letter queue.
    moved: usize,
    /// When the next hidden message becomes visible (Unix ms), if any.
    next_visible_at: Option<i64>,
    data_version: i64,
}

fn data_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA data_version", [], |row| row.get(0))
}

fn try_receive(
    conn: &mut Connection,
    which: Which,
    max: usize,
    visibility_ms: i64,
) -> rusqlite::Result<Attempt> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let now = now_ms();
    let max_receives = match which {
        Which::Main => Some(i64::from(read_max_receive_count(&tx)?)),
        Which::DeadLetter => None,
    };
    let mut messages = Vec::new();
    let mut moved = 0;
    loop {
        // Each row found is delivered (hidden) or moved to the dead-letter
        // queue, so it is not found again: every round makes progress.
        let candidates: Vec<(i64, i64)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, receive_count FROM sluice_queue_messages
                 WHERE queue = ?1 AND visible_at <= ?2 ORDER BY visible_at, seq LIMIT ?3",
            )?;
            stmt.query_map(
                params![which.code(), now, (max - messages.len()) as i64],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?
            .collect::<Result<_, _>>()?
        };
        if candidates.is_empty() {
            break;
        }
        for (seq, receive_count) in candidates {
            if max_receives.is_some_and(|limit| receive_count >= limit) {
                tx.prepare_cached(
                    "UPDATE sluice_queue_messages
                     SET queue = ?2, visible_at = ?3, receive_count = 0, receipt = NULL
                     WHERE seq = ?1",
                )?
                .execute(params![seq, Which::DeadLetter.code(), now])?;
                moved += 1;
                continue;
            }
            let nonce = (rand::random::<u64>() >> 1) as i64;
            let message = tx
                .prepare_cached(
                    "UPDATE sluice_queue_messages
                     SET visible_at = ?2, receive_count = receive_count + 1, receipt = ?3
                     WHERE seq = ?1 RETURNING message_id, body, receive_count",
                )?
                .query_row(params![seq, now + visibility_ms, nonce], |row| {
                    Ok(QueueMessage {
                        message_id: row.get(0)?,
                        receipt_handle: handle(seq, nonce),
                        body: row.get(1)?,
                        receive_count: row.get(2)?,
                    })
                })?;
            messages.push(message);
        }
        if messages.len() >= max {
            break;
        }
    }
    let next_visible_at = if messages.is_empty() {
        tx.prepare_cached(
            "SELECT MIN(visible_at) FROM sluice_queue_messages WHERE queue = ?1 AND visible_at > ?2",
        )?
        .query_row(params![which.code(), now], |row| row.get(0))?
    } else {
        None
    };
    // Read before the commit: a commit by another process right after ours
    // must count as unseen, or the wait that follows would sleep through it.
    let version = data_version(&tx)?;
    tx.commit()?;
    Ok(Attempt {
        messages,
        moved,
        next_visible_at,
        data_version: version,
    })
}

/// Deletes or re-times the messages of `handles` whose receipt is current.
fn by_handles(
    conn: &mut Connection,
    sql: &str,
    which: Which,
    handles: &[Option<(i64, i64)>],
    visible_at: Option<i64>,
) -> rusqlite::Result<(Vec<EntryFailure>, usize)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut failures = Vec::new();
    let mut changed = 0;
    {
        let mut stmt = tx.prepare_cached(sql)?;
        for (index, parsed) in handles.iter().enumerate() {
            let hit = match parsed {
                Some((seq, nonce)) => {
                    let changed = match visible_at {
                        Some(at) => stmt.execute(params![seq, nonce, which.code(), at])?,
                        None => stmt.execute(params![seq, nonce, which.code()])?,
                    };
                    changed == 1
                }
                None => false,
            };
            if hit {
                changed += 1;
            } else {
                failures.push(invalid_handle(index));
            }
        }
    }
    tx.commit()?;
    Ok((failures, changed))
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
                Some(codes::BATCH_REQUEST_TOO_LONG.into()),
                format!(
                    "BatchRequestTooLong: the bodies total {total} bytes, at most {MAX_BATCH_BYTES}"
                ),
            ));
        }
        if rows.is_empty() {
            return Ok(outcome);
        }
        let sent = self
            .run(true, "sending", move |conn, which| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = now_ms();
                {
                    let mut stmt = tx.prepare_cached(
                        "INSERT INTO sluice_queue_messages (queue, visible_at, message_id, sent_at, body)
                         VALUES (?1, ?2, ?3, ?2, ?4)",
                    )?;
                    for (_, id, body) in &rows {
                        stmt.execute(params![which.code(), now, id, body])?;
                    }
                }
                tx.commit()?;
                Ok(rows
                    .into_iter()
                    .map(|(index, id, _)| (index, id))
                    .collect::<Vec<_>>())
            })
            .await?;
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
        self.run(false, "counting", |conn, which| {
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

    fn describe(&self) -> String {
        match self.which {
            Which::Main => self.shared.path.display().to_string(),
            Which::DeadLetter => format!("{} (dead-letter queue)", self.shared.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_round_trip_and_garbage_is_refused() {
        assert_eq!(
            parse_handle(&handle(42, 0x7fff_0001)),
            Some((42, 0x7fff_0001))
        );
        for bad in ["", "42", ".", "x.1", "1.zz", "1.ffffffffffffffff", "1.2.3"] {
            assert_eq!(parse_handle(bad), None, "{bad}");
        }
    }

    #[test]
    fn refusals_follow_sqs() {
        assert_eq!(refusal("{}"), None);
        assert_eq!(refusal("tab\tand\nlines\r and ünïcode 🦀"), None);
        assert_eq!(refusal(""), Some("MissingParameter"));
        assert_eq!(refusal("nul\u{0}"), Some("InvalidMessageContents"));
        assert_eq!(refusal("\u{FFFF}"), Some("InvalidMessageContents"));
        assert_eq!(refusal(&"x".repeat(MAX_MESSAGE_BYTES)), None);
        assert_eq!(
            refusal(&"x".repeat(MAX_MESSAGE_BYTES + 1)),
            Some("MessageTooLong")
        );
    }
}
