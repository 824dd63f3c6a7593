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
        return sluice_core::config::refuse(line);
    }
    let cli = Cli::parse();
    sluice_core::config::exit_code(run(cli).await)
}
