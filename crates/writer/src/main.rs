//! `sluice-writer` entry point: `.env`, flags, one-line errors, exit codes.

use std::process::ExitCode;

use clap::Parser;
use sluice_core::config::{exit_code, start};
use sluice_writer::cli::{Cli, run};

// Decoding allocates a JSON tree per envelope and frees it on another thread;
// glibc malloc spent ~40% of the writer's CPU on that in the drain benchmark.
// `--features system-alloc` builds with the system allocator instead, so
// heap profilers that hook malloc (heaptrack, massif) see every allocation.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    start(|| async { exit_code(run(Cli::parse()).await) })
}
