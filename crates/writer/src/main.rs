//! `sluice-writer` entry point: `.env`, flags, one-line errors, exit codes.

use std::process::ExitCode;

use clap::Parser;
use sluice_writer::cli::{Cli, run};

// Decoding allocates a JSON tree per envelope and frees it on another thread;
// glibc malloc spent ~40% of the writer's CPU on that in the drain benchmark.
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
