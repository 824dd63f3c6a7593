//! The embedded SQLite queue against SQS's semantics: batches, long polling,
//! visibility, receipt handles, redrive, counts, and several receivers —
//! tasks, handles and processes — sharing one file. No services needed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sluice_core::config::QueueUrl;
use sluice_core::queue::sqlite::{MAX_MESSAGE_BYTES, SqliteQueue};
use sluice_core::queue::{self, Queue, QueueCounts, QueueMessage, QueueSettings};

const LONG: Duration = Duration::from_secs(30);

fn fresh(dir: &tempfile::TempDir) -> SqliteQueue {
    SqliteQueue::open(dir.path().join("queue.db")).expect("open queue")
}

fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

async fn send_all(queue: &SqliteQueue, all: &[String]) {
    for chunk in all.chunks(10) {
        let out = queue.send_batch(chunk).await.expect("send");
        assert!(out.failed.is_empty(), "{:?}", out.failed);
        assert_eq!(out.sent.len(), chunk.len());
    }
}

/// A fresh queue holding `n` messages `prefix-0`, `prefix-1`, …
async fn filled(prefix: &str, n: usize) -> (tempfile::TempDir, SqliteQueue) {
    let dir = tempfile::tempdir().expect("temp dir");
    let queue = fresh(&dir);
    send_all(&queue, &bodies(prefix, n)).await;
    (dir, queue)
}

/// A fresh queue of `n` messages, all received with `visibility`.
async fn in_flight(
    prefix: &str,
    n: usize,
    visibility: Duration,
) -> (tempfile::TempDir, SqliteQueue, Vec<QueueMessage>) {
    let (dir, queue) = filled(prefix, n).await;
    let got = queue
        .receive(n, Duration::ZERO, visibility)
        .await
        .expect("receive");
    assert_eq!(got.len(), n);
    (dir, queue, got)
}

/// Receives up to `max` (visibility [`LONG`]) waiting up to `wait`; returns
/// the messages and how long it took.
async fn timed_receive(
    queue: &SqliteQueue,
    max: usize,
    wait: Duration,
) -> (Vec<QueueMessage>, Duration) {
    let started = Instant::now();
    let got = queue.receive(max, wait, LONG).await.expect("receive");
    (got, started.elapsed())
}

/// A receive of up to ten messages long-polling up to 10 s, in a task.
fn spawn_long_poll(queue: &SqliteQueue) -> tokio::task::JoinHandle<(Vec<QueueMessage>, Duration)> {
    let queue = queue.clone();
    tokio::spawn(async move { timed_receive(&queue, 10, Duration::from_secs(10)).await })
}

async fn counts(queue: &dyn Queue) -> (u64, u64) {
    let c = queue.counts().await.expect("counts");
    (c.visible, c.in_flight)
}

fn handles(messages: &[QueueMessage]) -> Vec<String> {
    messages.iter().map(|m| m.receipt_handle.clone()).collect()
}

#[tokio::test]
async fn send_receive_delete() {
    let dir = tempfile::tempdir().unwrap();
    let queue = fresh(&dir);
    let sent = queue.send_batch(&bodies("a", 3)).await.unwrap();
    assert_eq!(sent.sent.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 1, 2]);
    let ids: Vec<&String> = sent.sent.iter().map(|s| &s.1).collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2], "message ids unique");
    assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()));
    assert_eq!(queue.depth().await.unwrap(), 3);

    let got = queue.receive(10, Duration::ZERO, LONG).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["a-0", "a-1", "a-2"],
        "oldest first"
    );
    assert!(got.iter().all(|m| m.receive_count == 1));
    assert_eq!(
        got.iter().map(|m| &m.message_id).collect::<Vec<_>>(),
        ids,
        "ids as sent"
    );
    assert_eq!(counts(&queue).await, (0, 3));

    let failures = queue.delete_batch(&handles(&got)).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(counts(&queue).await, (0, 0));
    // A deleted message's handle is no longer valid.
    let again = queue.delete_batch(&handles(&got[..1])).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].code, "ReceiptHandleIsInvalid");
}

#[tokio::test]
async fn receive_takes_at_most_ten() {
    let (_dir, queue) = filled("m", 25).await;
    let first = queue.receive(25, Duration::ZERO, LONG).await.unwrap();
    assert_eq!(first.len(), 10);
    let second = queue.receive(3, Duration::ZERO, LONG).await.unwrap();
    assert_eq!(second.len(), 3);
    assert_eq!(second[0].body, "m-10");
    assert_eq!(
        queue.counts().await.unwrap(),
        QueueCounts {
            visible: 12,
            in_flight: 13
        }
    );
    assert_eq!(queue.depth().await.unwrap(), 12);
}

#[tokio::test]
async fn visibility_hides_then_redelivers_with_a_new_handle() {
    let (_dir, queue, first) = in_flight("v", 1, Duration::from_millis(300)).await;
    assert!(
        queue
            .receive(1, Duration::ZERO, LONG)
            .await
            .unwrap()
            .is_empty(),
        "hidden while in flight"
    );
    assert_eq!(counts(&queue).await, (0, 1));

    // A long poll wakes when the visibility timeout runs out.
    let (second, waited) = timed_receive(&queue, 1, Duration::from_secs(5)).await;
    assert_eq!(second.len(), 1, "redelivered after the timeout");
    assert!(waited < Duration::from_secs(3));
    assert_eq!(second[0].message_id, first[0].message_id);
    assert_eq!(second[0].body, "v-0");
    assert_eq!(second[0].receive_count, 2);
    assert_ne!(second[0].receipt_handle, first[0].receipt_handle);

    // The first receiver's handle is stale: it can neither extend nor delete.
    let stale = handles(&first);
    let f = queue
        .change_visibility_batch(&stale, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((f.len(), f[0].code.as_str()), (1, "ReceiptHandleIsInvalid"));
    let f = queue.delete_batch(&stale).await.unwrap();
    assert_eq!((f.len(), f[0].code.as_str()), (1, "ReceiptHandleIsInvalid"));
    assert!(f[0].sender_fault);
    assert_eq!(counts(&queue).await, (0, 1), "still held by the second");
    assert!(
        queue
            .delete_batch(&handles(&second))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(counts(&queue).await, (0, 0));
}

#[tokio::test]
async fn change_visibility_extends_and_releases() {
    let (_dir, queue, got) = in_flight("c", 2, Duration::from_millis(200)).await;
    // Extend both well past the original 200 ms.
    let f = queue
        .change_visibility_batch(&handles(&got), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(f.is_empty(), "{f:?}");
    let (none, waited) = timed_receive(&queue, 2, Duration::from_millis(700)).await;
    assert!(none.is_empty(), "the extension keeps them hidden");
    assert!(waited >= Duration::from_millis(650));

    // Zero makes one visible at once, and wakes a waiting receive.
    let waiter = spawn_long_poll(&queue);
    wait_until_waiting(&queue).await;
    let f = queue
        .change_visibility_batch(&handles(&got[..1]), Duration::ZERO)
        .await
        .unwrap();
    assert!(f.is_empty());
    let (released, waited) = waiter.await.unwrap();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].body, got[0].body);
    assert_eq!(released[0].receive_count, 2);
    assert!(waited < Duration::from_secs(2), "woken early: {waited:?}");
    // A garbled handle is refused per entry, the others still apply.
    let f = queue
        .change_visibility_batch(
            &["garbage".to_owned(), got[1].receipt_handle.clone()],
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].index, f[0].code.as_str()),
        (0, "ReceiptHandleIsInvalid")
    );
    assert_eq!(counts(&queue).await, (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_returns_when_a_message_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let queue = fresh(&dir);
    // Another handle on the same file, as another component of this process would have.
    let other = SqliteQueue::open(queue.path()).unwrap();
    for sender in [queue.clone(), other] {
        let waiter = spawn_long_poll(&queue);
        wait_until_waiting(&queue).await;
        let sent_at = Instant::now();
        sender.send_batch(&bodies("late", 1)).await.unwrap();
        let (got, waited) = waiter.await.unwrap();
        assert_eq!(got.len(), 1);
        assert!(waited < Duration::from_secs(2), "waited {waited:?}");
        assert!(
            sent_at.elapsed() < Duration::from_secs(2),
            "latency {:?}",
            sent_at.elapsed()
        );
        queue.delete_batch(&handles(&got)).await.unwrap();
    }
}

#[tokio::test]
async fn long_poll_returns_empty_after_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let queue = fresh(&dir);
    let (got, waited) = timed_receive(&queue, 10, Duration::from_millis(600)).await;
    assert!(got.is_empty());
    assert!(
        waited >= Duration::from_millis(580) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test]
async fn redrive_moves_to_the_dead_letter_queue_after_max_receives() {
    let dir = tempfile::tempdir().unwrap();
    let queue = fresh(&dir);
    assert_eq!(queue.max_receive_count().unwrap(), 5, "the default");
    queue.set_max_receive_count(2).unwrap();
    assert_eq!(queue.max_receive_count().unwrap(), 2);
    assert!(queue.set_max_receive_count(0).is_err());
    let dlq = queue.dead_letter_queue();
    let sent = queue.send_batch(&bodies("poison", 1)).await.unwrap();
    let short = Duration::from_millis(50);
    for n in 1..=2 {
        let got = queue
            .receive(1, Duration::from_secs(5), short)
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].receive_count, n);
    }
    // The third delivery would exceed the maximum: it goes to the DLQ instead.
    let got = queue
        .receive(1, Duration::from_millis(500), short)
        .await
        .unwrap();
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(counts(&queue).await, (0, 0));
    assert_eq!(counts(&dlq).await, (1, 0));
    let dead = dlq.receive(10, Duration::ZERO, LONG).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, sent.sent[0].1);
    assert_eq!(dead[0].body, "poison-0");
    assert_eq!(dead[0].receive_count, 1);
    assert!(dlq.describe().contains("dead-letter"));
    // Handles belong to their queue.
    let f = queue.delete_batch(&handles(&dead)).await.unwrap();
    assert_eq!(f.len(), 1);
    assert!(dlq.delete_batch(&handles(&dead)).await.unwrap().is_empty());
    assert_eq!(counts(&dlq).await, (0, 0));
}

#[tokio::test]
async fn sizes_and_batch_limits_follow_sqs() {
    let dir = tempfile::tempdir().unwrap();
    let queue = fresh(&dir);
    let batch = vec![
        "small".to_owned(),
        "x".repeat(MAX_MESSAGE_BYTES + 1),
        "y".repeat(1000),
    ];
    let out = queue.send_batch(&batch).await.unwrap();
    assert_eq!(
        out.sent.iter().map(|s| s.0).collect::<Vec<_>>(),
        [0, 2],
        "the others go"
    );
    assert_eq!(out.failed.len(), 1);
    assert_eq!(out.failed[0].index, 1);
    assert_eq!(out.failed[0].code, "MessageTooLong");
    assert!(out.failed[0].sender_fault);

    // Exactly the maximum is accepted and comes back whole.
    let max = vec!["z".repeat(MAX_MESSAGE_BYTES)];
    assert_eq!(queue.send_batch(&max).await.unwrap().sent.len(), 1);
    // Two halves-and-a-bit are too long together: the whole call fails, as
    // SQS's BatchRequestTooLong, which ingest answers by splitting the call.
    let pair = vec!["p".repeat(600_000), "q".repeat(600_000)];
    let err = queue.send_batch(&pair).await.unwrap_err();
    assert!(err.is_too_large(), "{err}");
    let err = queue.send_batch(&bodies("many", 11)).await.unwrap_err();
    assert_eq!(err.code.as_deref(), Some("TooManyEntriesInBatchRequest"));
    assert!(queue.send_batch(&[]).await.is_err());
    // Characters SQS refuses are refused per entry too.
    let out = queue.send_batch(&["nul \u{0}".to_owned()]).await.unwrap();
    assert_eq!(out.failed[0].code, "InvalidMessageContents");

    let got = queue.receive(10, Duration::ZERO, LONG).await.unwrap();
    let lens: Vec<usize> = got.iter().map(|m| m.body.len()).collect();
    assert_eq!(lens, [5, 1000, MAX_MESSAGE_BYTES]);
}

#[tokio::test]
async fn messages_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.db");
    {
        let queue = SqliteQueue::open(&path).unwrap();
        queue.set_max_receive_count(7).unwrap();
        send_all(&queue, &bodies("keep", 4)).await;
    }
    let queue = SqliteQueue::open(&path).unwrap();
    assert_eq!(queue.max_receive_count().unwrap(), 7);
    assert_eq!(counts(&queue).await, (4, 0));
    assert_eq!(queue.path(), path.as_path());
    assert_eq!(queue.describe(), path.display().to_string());
}

#[cfg(unix)]
#[tokio::test]
async fn the_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, queue) = filled("pii", 1).await;
    for suffix in ["", "-wal"] {
        let file = format!("{}{suffix}", queue.path().display());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{file}: {mode:o}");
    }
}

#[tokio::test]
async fn connect_and_setup_through_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    let url = QueueSettings::from(QueueUrl::Sqlite(path.clone()));
    // A first run needs no setup: connect creates the file and its schema.
    let queue = queue::connect(&url).await.unwrap();
    assert_eq!(queue.counts().await.unwrap(), QueueCounts::default());
    assert_eq!(
        SqliteQueue::open(&path)
            .unwrap()
            .max_receive_count()
            .unwrap(),
        5
    );
    let (queue, dlq) = queue::setup(&url, 3, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(dlq.contains("dead-letter") && dlq.contains("3"), "{dlq}");
    // Idempotent.
    queue::setup(&url, 3, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        SqliteQueue::open(&path)
            .unwrap()
            .max_receive_count()
            .unwrap(),
        3
    );
    queue.send_batch(&bodies("u", 1)).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 1);
}

#[tokio::test]
async fn files_that_are_not_queues_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(
        &garbage,
        b"this is not a database, just some bytes ".repeat(100),
    )
    .unwrap();
    let other = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&other).unwrap();
        conn.execute_batch("CREATE TABLE user_logins (user_id TEXT)")
            .unwrap();
    }
    // A folder cannot be made under a file.
    let missing = garbage.join("q.db");
    for path in [&garbage, &other, &missing] {
        let err = SqliteQueue::open(path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    let err = SqliteQueue::open(&other).unwrap_err().to_string();
    assert!(err.contains("not a Sluice queue"), "{err}");
    let err = queue::connect(&QueueUrl::Sqlite(missing).into())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("garbage.db"), "{err}");
    // A missing folder, though, is a first run: it is made.
    let fresh_path = dir.path().join("data").join("q.db");
    let queue = queue::connect(&QueueUrl::Sqlite(fresh_path.clone()).into())
        .await
        .unwrap();
    assert_eq!(queue.counts().await.unwrap(), QueueCounts::default());
    assert!(fresh_path.is_file());
}

/// Receives and deletes until the queue is empty; the bodies received.
async fn drain(queue: &SqliteQueue) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let batch = queue
            .receive(10, Duration::from_millis(100), LONG)
            .await
            .expect("receive");
        if batch.is_empty() {
            if queue.counts().await.expect("counts") == QueueCounts::default() {
                return got;
            }
            continue;
        }
        let failures = queue.delete_batch(&handles(&batch)).await.expect("delete");
        assert!(failures.is_empty(), "{failures:?}");
        got.extend(batch.into_iter().map(|m| m.body));
    }
}

fn assert_exactly_once(expected: &[String], got: impl IntoIterator<Item = String>) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for body in got {
        *seen.entry(body).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "received more than once: {twice:?}");
    let missing: Vec<_> = expected.iter().filter(|b| !seen.contains_key(*b)).collect();
    assert!(
        missing.is_empty(),
        "never received: {} of them",
        missing.len()
    );
    assert_eq!(seen.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_handles_share_one_file_and_each_message_goes_once() {
    let (_dir, queue) = filled("c", 2000).await;
    let all = bodies("c", 2000);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let handle = SqliteQueue::open(queue.path()).unwrap();
        tasks.push(tokio::spawn(async move { drain(&handle).await }));
    }
    let mut got = Vec::new();
    let mut per_task = Vec::new();
    for task in tasks {
        let bodies = task.await.unwrap();
        per_task.push(bodies.len());
        got.extend(bodies);
    }
    assert_exactly_once(&all, got);
    assert_eq!(counts(&queue).await, (0, 0));
    eprintln!("received per handle: {per_task:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumers_lose_their_messages_to_others_and_cannot_delete_them() {
    let dir = tempfile::tempdir().unwrap();
    let queue = fresh(&dir);
    queue.set_max_receive_count(1000).unwrap();
    let all = bodies("s", 400);
    send_all(&queue, &all).await;
    let visibility = Duration::from_millis(150);
    let mut tasks = Vec::new();
    for task in 0..4 {
        let handle = SqliteQueue::open(queue.path()).unwrap();
        tasks.push(tokio::spawn(async move {
            let (mut deleted, mut refused, mut batches) = (Vec::new(), 0, 0);
            loop {
                let batch = handle
                    .receive(10, Duration::from_millis(100), visibility)
                    .await
                    .unwrap();
                if batch.is_empty() {
                    if handle.counts().await.unwrap() == QueueCounts::default() {
                        return (deleted, refused);
                    }
                    continue;
                }
                batches += 1;
                // Half the batches of two consumers outlive their visibility:
                // the messages go to someone else meanwhile.
                if task < 2 && batches % 2 == 0 {
                    tokio::time::sleep(visibility * 3).await;
                }
                let failures = handle.delete_batch(&handles(&batch)).await.unwrap();
                refused += failures.len();
                for (i, m) in batch.into_iter().enumerate() {
                    if !failures.iter().any(|f| f.index == i) {
                        deleted.push(m.body);
                    }
                }
            }
        }));
    }
    let (mut deleted, mut refused) = (Vec::new(), 0);
    for task in tasks {
        let (d, r) = task.await.unwrap();
        deleted.extend(d);
        refused += r;
    }
    // Every message was deleted exactly once: a stale handle never deleted
    // a message someone else had received since.
    assert_exactly_once(&all, deleted);
    assert!(refused > 0, "some batches were received again while held");
    eprintln!("stale deletes refused: {refused}");
}

/// Set in a child process of this binary: the queue file to drain.
const CHILD_QUEUE: &str = "SLUICE_TEST_QUEUE_CHILD";
/// Set in a child process of this binary: send one message to this file.
const CHILD_SENDER: &str = "SLUICE_TEST_QUEUE_SENDER";

/// Markers of a child's output lines (libtest may print its own text first
/// on the same line).
const GOT: &str = "@@got ";
const SENT_AT: &str = "@@sent-at ";

fn run_child(test: &str, var: &str, path: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().expect("the test binary's path"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(var, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn a child test process")
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis()
}

/// Runs `role` on the queue file named by `var`, in a child process of the
/// multi-process tests; does nothing in a normal run (`var` unset).
fn child_role<F: std::future::Future<Output = ()>>(var: &str, role: impl FnOnce(SqliteQueue) -> F) {
    let Some(path) = std::env::var_os(var).map(PathBuf::from) else {
        return;
    };
    let queue = SqliteQueue::open(&path).expect("open the queue");
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(role(queue));
}

/// The child role of the multi-process tests: drain, print each body.
#[test]
fn child_receiver() {
    child_role(CHILD_QUEUE, |queue| async move {
        for body in drain(&queue).await {
            println!("{GOT}{body}");
        }
    });
}

/// The child role that sends one message and says when the send returned.
#[test]
fn child_sender() {
    child_role(CHILD_SENDER, |queue| async move {
        queue
            .send_batch(&["from a child".to_owned()])
            .await
            .unwrap();
        println!("{SENT_AT}{}", unix_ms());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_share_one_file_and_each_message_goes_once() {
    let (_dir, queue) = filled("p", 1500).await;
    let all = bodies("p", 1500);
    let children: Vec<_> = (0..3)
        .map(|_| run_child("child_receiver", CHILD_QUEUE, queue.path()))
        .collect();
    // This process drains too, at the same time.
    let own = drain(&queue).await;
    let mut got = own.clone();
    let mut per_process = vec![own.len()];
    for child in children {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(out.status.success(), "child failed: {:?}", out.status);
        let text = String::from_utf8(out.stdout).unwrap();
        let bodies: Vec<String> = text
            .lines()
            .filter_map(|l| l.split_once(GOT).map(|(_, body)| body.to_owned()))
            .collect();
        per_process.push(bodies.len());
        got.extend(bodies);
    }
    assert_exactly_once(&all, got);
    eprintln!("received per process: {per_process:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_a_send_from_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Arc::new(fresh(&dir));
    // Three receives wait on one handle (as the writer's consumers do); one
    // of them polls for the others.
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let receiver = Arc::clone(&queue);
            tokio::spawn(async move {
                let got = receiver
                    .receive(10, Duration::from_secs(4), LONG)
                    .await
                    .unwrap();
                (got, unix_ms())
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue.waiting_receives() < 3 {
        assert!(Instant::now() < deadline, "the receives never all waited");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let child = run_child("child_sender", CHILD_SENDER, queue.path());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    let sent_at: u128 = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| l.split_once(SENT_AT).map(|(_, t)| t.parse().unwrap()))
        .expect("the child reports its send");
    let mut received = Vec::new();
    for waiter in waiters {
        let (got, at) = waiter.await.unwrap();
        if !got.is_empty() {
            received.push((got, at));
        }
    }
    assert_eq!(received.len(), 1, "one receive got it");
    let (got, received_at) = &received[0];
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "from a child");
    // The child prints after its send returned, so this may even be negative.
    let latency = received_at.saturating_sub(sent_at);
    eprintln!("another process's send to receive: {latency} ms");
    assert!(latency < 2000, "send to receive took {latency} ms");
}

/// Polls until a receive of `queue` is waiting, so a test exercises the
/// wake-up and not a receive that had not started yet.
async fn wait_until_waiting(queue: &SqliteQueue) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue.waiting_receives() == 0 {
        assert!(Instant::now() < deadline, "no receive started waiting");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
