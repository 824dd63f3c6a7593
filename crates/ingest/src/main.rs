//! `sluice-ingest` entry point: `.env`, flags, one-line errors, exit codes.

use std::process::ExitCode;

use clap::Parser;
use sluice_core::config::{exit_code, start};
use sluice_ingest::cli::{Cli, run};

// Parsing and packing allocate and free per request on many threads;
// mimalloc keeps that off the profile (as in the writer).
// `--features system-alloc` builds with the system allocator instead, so
// heap profilers that hook malloc (heaptrack, massif) see every allocation.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    start(|| async { exit_code(run(Cli::parse()).await) })
}
