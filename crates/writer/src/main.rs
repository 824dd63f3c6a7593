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
        return sluice_core::config::refuse(line);
    }
    let cli = Cli::parse();
    sluice_core::config::exit_code(run(cli).await)
}
