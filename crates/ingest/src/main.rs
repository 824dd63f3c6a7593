//! `sluice-ingest`: the HTTP front door (skeleton).
//!
//! The service that accepts `POST /events` and makes events durable in the
//! queue is the next piece of work; until then the binary says so plainly
//! instead of pretending to accept events.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "error: sluice-ingest is not implemented yet; producers can send to the queue directly (see README)"
    );
    ExitCode::from(2)
}
