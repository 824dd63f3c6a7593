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
    // A missing .env is normal; a malformed one stops the program.
    if let Err(line) = sluice_core::config::load_dotenv() {
        eprintln!("error: {line}");
        return ExitCode::from(2);
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
