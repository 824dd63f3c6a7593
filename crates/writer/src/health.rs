//! What the writer's own loops know about its readiness, for `/readyz`.
//!
//! Why: a database that answers a ping may still be unable to commit (its
//! disk is full), and a queue that answers its counts may still fail every
//! receive. Pings cannot see either; the loops that retry them can. They
//! report here, and `/readyz` answers 503 with the reason while a batch is
//! being retried or receives keep failing.

use std::sync::Mutex;

/// Consecutive failed receives after which the writer says it is not ready:
/// one failure is a blip the retry absorbs; three in a row is an outage.
pub const RECEIVE_FAILURES_NOT_READY: u32 = 3;

#[derive(Debug, Default)]
struct Failing {
    consecutive: u32,
    last: String,
}

impl Failing {
    fn failed(&mut self, reason: &str) {
        self.consecutive = self.consecutive.saturating_add(1);
        reason.clone_into(&mut self.last);
    }
}

/// Shared by the consumers, the committer and the health listener.
#[derive(Debug, Default)]
pub struct Health {
    receive: Mutex<Failing>,
    commit: Mutex<Failing>,
}

impl Health {
    pub fn receive_succeeded(&self) {
        lock(&self.receive).consecutive = 0;
    }

    pub fn receive_failed(&self, reason: &str) {
        lock(&self.receive).failed(reason);
    }

    pub fn commit_succeeded(&self) {
        lock(&self.commit).consecutive = 0;
    }

    /// A batch was not committed for a reason worth retrying (the database
    /// is down, or its disk is full).
    pub fn commit_failed(&self, reason: &str) {
        lock(&self.commit).failed(reason);
    }

    /// Why the writer is not ready, as sentences (empty when it is). Carry
    /// no row values: sink and queue errors never do.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let commit = lock(&self.commit);
        if commit.consecutive > 0 {
            problems.push(format!(
                "batches cannot be committed ({} attempts so far; retrying, nothing is deleted): {}",
                commit.consecutive, commit.last
            ));
        }
        let receive = lock(&self.receive);
        if receive.consecutive >= RECEIVE_FAILURES_NOT_READY {
            problems.push(format!(
                "the last {} receives failed: {}",
                receive.consecutive, receive.last
            ));
        }
        problems
    }
}

fn lock(m: &Mutex<Failing>) -> std::sync::MutexGuard<'_, Failing> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failed_receive_is_a_blip_three_are_an_outage_and_success_clears() {
        let health = Health::default();
        assert!(health.problems().is_empty());
        health.receive_failed("busy");
        health.receive_failed("busy");
        assert!(health.problems().is_empty());
        health.receive_failed("disk full");
        assert_eq!(health.problems(), ["the last 3 receives failed: disk full"]);
        health.receive_succeeded();
        assert!(health.problems().is_empty());
        health.commit_failed("SQLite DiskFull");
        assert!(health.problems()[0].contains("SQLite DiskFull"));
        health.commit_succeeded();
        assert!(health.problems().is_empty());
    }
}
