//! `sluice-ingest` entry point: `.env`, flags, one-line errors, exit codes.

use std::process::ExitCode;

use clap::Parser;
use sluice_ingest::cli::{Cli, run};

// Parsing and packing allocate and free per request on many threads;
// mimalloc keeps that off the profile (as in the writer).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is reported.
    // The parser's message quotes the offending line, which may hold a
    // secret: say where, not what.
    match dotenvy::dotenv() {
        Err(dotenvy::Error::LineParse(_, index)) => {
            eprintln!(
                "error: .env: a line does not parse (at character {index}); expected NAME=value"
            );
            return ExitCode::from(2);
        }
        Err(e) if !e.not_found() => {
            eprintln!(
                "error: .env: cannot be read ({})",
                e.to_string().lines().next().unwrap_or_default()
            );
            return ExitCode::from(2);
        }
        _ => {}
    }
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
