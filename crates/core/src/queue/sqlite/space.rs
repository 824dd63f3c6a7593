//! Headroom: sends stop before the disk is full, so draining never does.
//!
//! Why: every receive, visibility change and delete is a write transaction,
//! and SQLite needs room in the WAL (and the file) to commit one. A queue
//! that let sends fill the disk would leave the writers unable to receive
//! the very messages whose deletion would free the space. So a send is
//! refused (`QueueFull`, which ingest answers 503 `queue_full`) while the
//! messages take more than `QUEUE_MAX_BYTES`, or while less than
//! `QUEUE_MIN_FREE_BYTES` would be left for draining; receives and deletes
//! always go on, and sends are accepted again as the writers free room.
//!
//! Sizes are measured where SQLite keeps them: the queue's bytes are its
//! pages in use (page count less free pages), and the room left is the
//! filesystem's free space (statvfs), plus the file's own free pages
//! (reused before the file grows — it never shrinks, so a drained queue
//! would otherwise look full for good), less what the next checkpoint adds
//! to the main file (pages the WAL holds beyond its end): a checkpoint
//! that cannot write them would keep the WAL from being reused, and then
//! nothing commits. The WAL file itself is not counted as room: it is
//! reused from its start after each checkpoint, so it stays at its largest
//! size (the auto-checkpoint's 4 MiB and a transaction, in steady use), and
//! draining needs only `QUEUE_MIN_FREE_BYTES` beyond it. The check runs inside the send's write transaction, so
//! concurrent senders cannot both slip past it. Once refusing, a send needs
//! room for a full batch call to be accepted again, so a small send that
//! fits does not flip the state (and the log) back and forth.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::Connection;

use crate::config::{ConfigError, Env};

/// `QUEUE_MAX_BYTES`'s default: the messages may take 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// `QUEUE_MIN_FREE_BYTES`'s default: 64 MiB kept free for draining (WAL
/// growth between checkpoints, with room to spare).
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 << 20;

const EXPECTED: &str =
    "expected a size in bytes, such as 1073741824 or 1GiB (KiB, MiB and GiB are understood)";

/// How far the embedded queue may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sends are refused while the messages take more than this.
    pub max_bytes: u64,
    /// Sends are refused while less than this would stay free.
    pub min_free_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
        }
    }
}

impl Limits {
    /// `QUEUE_MAX_BYTES` and `QUEUE_MIN_FREE_BYTES` from `env`, or their
    /// defaults: read by a service's loader ([`crate::queue::QueueSettings`]).
    pub fn load(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            max_bytes: env_bytes(env, "QUEUE_MAX_BYTES", DEFAULT_MAX_BYTES)?,
            min_free_bytes: env_bytes(env, "QUEUE_MIN_FREE_BYTES", DEFAULT_MIN_FREE_BYTES)?,
        })
    }
}

fn env_bytes(env: &Env, name: &'static str, default: u64) -> Result<u64, ConfigError> {
    match env.var(name) {
        None => Ok(default),
        Some(raw) => parse_bytes(&raw).ok_or_else(|| ConfigError::new(name, EXPECTED)),
    }
}

/// A size in bytes: a whole number, optionally with KiB, MiB or GiB.
fn parse_bytes(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    let (digits, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => raw.split_at(at),
        None => (raw, ""),
    };
    let factor: u64 = match unit.trim() {
        "" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

/// What the queue takes and what is left, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Pages holding messages (and the schema).
    pub queue_bytes: u64,
    /// Room for new pages: the filesystem's free space plus the file's
    /// free pages. `None` when the filesystem does not say.
    pub free_bytes: Option<u64>,
}

/// Measures the queue on `conn` (its file at `path`).
pub(super) fn measure(conn: &Connection, path: &Path) -> rusqlite::Result<Space> {
    let pragma = |name: &str| conn.pragma_query_value(None, name, |row| row.get::<_, i64>(0));
    let page = pragma("page_size")?.max(0) as u64;
    let pages = pragma("page_count")?.max(0) as u64;
    let free_pages = pragma("freelist_count")?.max(0) as u64;
    let main_len = std::fs::metadata(path).map_or(0, |m| m.len());
    // Pages the WAL holds beyond the main file's end, written there at the
    // next checkpoint.
    let pending_growth = (pages * page).saturating_sub(main_len);
    let reusable = free_pages * page;
    Ok(Space {
        queue_bytes: pages.saturating_sub(free_pages) * page,
        free_bytes: filesystem_free(path)
            .map(|free| free.saturating_add(reusable).saturating_sub(pending_growth)),
    })
}

/// Bytes an unprivileged writer may still allocate on `path`'s filesystem.
fn filesystem_free(path: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Why a send of `incoming` body bytes must wait, if it must. A body is
/// written twice before a checkpoint frees its WAL frames (the WAL, then
/// the file), hence the double. While `resuming` (sends are being refused),
/// the room asked for is that of a full batch call (at most a quarter of
/// `QUEUE_MAX_BYTES` or of `QUEUE_MIN_FREE_BYTES`), so one small send that
/// fits does not end the refusal only for the next to start it again.
pub(super) fn refusal(
    limits: &Limits,
    space: &Space,
    incoming: u64,
    resuming: bool,
) -> Option<String> {
    let (for_size, for_free) = if resuming {
        let call = super::MAX_BATCH_BYTES as u64;
        (
            incoming.max(call.min(limits.max_bytes / 4)),
            incoming.max(call.min(limits.min_free_bytes / 4)),
        )
    } else {
        (incoming, incoming)
    };
    if space.queue_bytes.saturating_add(for_size) > limits.max_bytes {
        return Some(format!(
            "the queue holds {} bytes of messages and QUEUE_MAX_BYTES is {}",
            space.queue_bytes, limits.max_bytes
        ));
    }
    let free = space.free_bytes?;
    if free
        < limits
            .min_free_bytes
            .saturating_add(for_free.saturating_mul(2))
    {
        return Some(format!(
            "{free} bytes are free for the queue file and QUEUE_MIN_FREE_BYTES keeps {} for draining",
            limits.min_free_bytes
        ));
    }
    None
}

/// Publishes the sizes as gauges (described here: they are the queue's own,
/// in whichever service opened it).
pub(super) fn record(space: &Space) {
    metrics::describe_gauge!(
        "sluice_queue_bytes",
        metrics::Unit::Bytes,
        "Bytes the embedded queue's messages take in its file."
    );
    metrics::describe_gauge!(
        "sluice_queue_free_bytes",
        metrics::Unit::Bytes,
        "Bytes left for the embedded queue: its filesystem's free space plus the file's free pages."
    );
    metrics::gauge!("sluice_queue_bytes").set(space.queue_bytes as f64);
    if let Some(free) = space.free_bytes {
        metrics::gauge!("sluice_queue_free_bytes").set(free as f64);
    }
}

/// Whether sends are being refused, so the log gets one line when that
/// starts and one when it ends, not one per request.
#[derive(Debug, Default)]
pub(super) struct Refusing(AtomicBool);

impl Refusing {
    pub(super) fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    pub(super) fn started(&self, path: &Path, reason: &str) {
        if !self.0.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                path = %path.display(),
                reason,
                "the embedded queue is full: refusing sends (503 queue_full) until the writers drain it; receives and deletes go on"
            );
        }
    }

    pub(super) fn ended(&self, path: &Path) {
        if self.0.swap(false, Ordering::AcqRel) {
            tracing::warn!(path = %path.display(), "the embedded queue has room again: accepting sends");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_refuse_garbage() {
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes(" 8MiB "), Some(8 << 20));
        assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("3KiB"), Some(3 << 10));
        for bad in ["", "MiB", "1.5MiB", "-1", "1MB", "99999999999999999999GiB"] {
            assert_eq!(parse_bytes(bad), None, "{bad}");
        }
    }

    #[test]
    fn refuses_over_the_size_or_under_the_reserve() {
        let limits = Limits {
            max_bytes: 1000,
            min_free_bytes: 100,
        };
        let space = |queue_bytes, free| Space {
            queue_bytes,
            free_bytes: Some(free),
        };
        assert_eq!(refusal(&limits, &space(500, 10_000), 400, false), None);
        assert!(refusal(&limits, &space(700, 10_000), 400, false).is_some());
        assert_eq!(refusal(&limits, &space(0, 300), 100, false), None);
        assert!(refusal(&limits, &space(0, 299), 100, false).is_some());
        let unknown = Space {
            queue_bytes: 0,
            free_bytes: None,
        };
        assert_eq!(refusal(&limits, &unknown, 100, false), None);
        // Once refusing, a send that fits is not enough: a full call must.
        let roomy = Limits {
            max_bytes: 1 << 30,
            min_free_bytes: 64 << 20,
        };
        let free = (64 << 20) + 1_000;
        assert_eq!(refusal(&roomy, &space(0, free), 100, false), None);
        assert!(refusal(&roomy, &space(0, free), 100, true).is_some());
        assert_eq!(refusal(&roomy, &space(0, 66 << 20), 100, true), None);
    }
}
