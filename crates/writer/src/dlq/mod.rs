//! `sluice-writer dlq status | peek [N] | redrive [--max N]`: the
//! dead-letter queue, looked at and emptied without hand-written SQS calls.
//!
//! Why: every message the writers could not load after the redrive policy's
//! receives ends there, and an operator needs to know how many, what they
//! are (without seeing the PII they carry) and, once the cause is fixed, to
//! send them back. The same commands work on SQS (the dead-letter queue is
//! the one the source's `RedrivePolicy` names) and on the embedded queue
//! (its dead-letter half), through [`sluice_core::queue::dead_letter`].
//!
//! Files: `peek` (holding messages without consuming them, and the masked
//! view), `redrive` (send, then delete).

mod peek;
mod redrive;
mod view;

use std::io::Write;

use clap::{Args, Subcommand};
use sluice_core::classify::Classifier;
use sluice_core::config::{ConfigError, StartError};
use sluice_core::queue::QueueError;
use sluice_core::queue::dead_letter::{self, WithDeadLetter};

use crate::configuration::Config;

pub use peek::peek;
pub use redrive::redrive;

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Messages waiting and in flight in the queue and its dead-letter queue.
    Status,
    /// Print the first N dead-lettered messages as the rows the writer would
    /// make of them, PII masked by the policy; nothing is consumed.
    Peek {
        /// How many messages (default 10).
        #[arg(default_value_t = 10)]
        n: usize,
    },
    /// Move dead-lettered messages back to the queue, where the writers load
    /// them (send, then delete: an interruption leaves a duplicate, never a loss).
    Redrive {
        /// Move at most this many (default: until the dead-letter queue is empty).
        #[arg(long)]
        max: Option<u64>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// A setting, or the queue that cannot be opened.
    #[error("{0}")]
    Start(#[from] StartError),
    #[error("dlq {doing}: {reason}")]
    Queue { doing: &'static str, reason: String },
    #[error("dlq: cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl From<ConfigError> for DlqError {
    fn from(e: ConfigError) -> Self {
        Self::Start(e.into())
    }
}

impl DlqError {
    fn queue(doing: &'static str) -> impl FnOnce(QueueError) -> Self {
        move |e| Self::Queue {
            doing,
            reason: e.to_string(),
        }
    }
}

/// Runs one `dlq` subcommand, printing its result on stdout.
pub async fn run(config: &Config, args: DlqArgs) -> Result<(), DlqError> {
    let settings = config.queue()?;
    // Settings are checked before anything is opened.
    let classifier = match args.command {
        DlqCommand::Peek { .. } => {
            let tuning = &config.tuning;
            Some(
                Classifier::new(config.pii.masker()?, tuning.max_record_bytes)
                    .with_max_rejected_bytes(tuning.max_rejected_bytes),
            )
        }
        _ => None,
    };
    let queues = dead_letter::open(settings)
        .await
        .map_err(StartError::queue(
            "open the queue and its dead-letter queue",
            settings,
        ))?;
    // Printed whole at the end: the output is short, and a buffer keeps
    // the future `Send` (a stdout lock is not).
    let mut out = Vec::new();
    match (args.command, classifier) {
        (DlqCommand::Peek { n }, Some(classifier)) => {
            peek(queues.dead_letter.as_ref(), &classifier, n, &mut out).await?;
        }
        (DlqCommand::Redrive { max }, _) => {
            let moved = redrive(&queues, max)
                .await
                .map_err(DlqError::queue("redrive"))?;
            writeln!(
                out,
                "moved {moved} message(s) from {} to {}",
                queues.dead_letter.describe(),
                queues.source.describe()
            )?;
        }
        _ => status(&queues, &mut out).await?,
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(())
}

/// Two lines: the queue's and the dead-letter queue's counts.
pub async fn status(queues: &WithDeadLetter, out: &mut impl Write) -> Result<(), DlqError> {
    for (name, queue) in [
        ("queue", &queues.source),
        ("dead-letter queue", &queues.dead_letter),
    ] {
        let counts = queue.counts().await.map_err(DlqError::queue("status"))?;
        writeln!(
            out,
            "{name:<17}  visible {:>8}  in flight {:>8}  {}",
            counts.visible,
            counts.in_flight,
            queue.describe()
        )?;
    }
    Ok(())
}
