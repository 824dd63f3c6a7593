//! `sluice-ingest` entry point: `.env`, flags, one-line errors, exit codes.

use std::process::ExitCode;

use clap::Parser;
use sluice_core::config::{exit_code, refuse, start};
use sluice_core::malloc;
use sluice_ingest::cli::{Cli, run};

fn main() -> ExitCode {
    // glibc malloc with two arenas: `sluice_core::malloc` says why.
    if let Err(line) = malloc::cap_arenas() {
        return refuse(line);
    }
    start(|| async { exit_code(run(Cli::parse()).await) })
}
