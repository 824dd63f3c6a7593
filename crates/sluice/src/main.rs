//! `sluice`: the whole pipeline on one machine, for trying Sluice out and for
//! small installations — `sluice up` runs ingest and a writer in one process;
//! `sluice top` watches running services.
//!
//! In production the two run as separate services (`sluice-ingest`,
//! `sluice-writer`) so they scale and fail independently; here one command,
//! one Ctrl-C, and defaults that need no infrastructure: an embedded SQLite
//! queue, a SQLite database and a local PII key file, all under `data/`.

mod top;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice on one machine: ingest and a writer in one process."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start ingest and a writer together until Ctrl-C (or SIGTERM).
    Up(up::UpArgs),
    /// A live view of running services (--ingest URL, --writer URL); q quits.
    Top(top::TopArgs),
}

fn main() -> ExitCode {
    // glibc malloc with two arenas, as in the two services: `sluice_core::malloc` says why.
    if let Err(line) = sluice_core::malloc::cap_arenas() {
        return sluice_core::config::refuse(line);
    }
    sluice_core::config::start(|| async {
        match Cli::parse().command {
            Command::Up(args) => sluice_core::config::exit_code(up::run(args).await),
            Command::Top(args) => sluice_core::config::exit_code(top::run(args).await),
        }
    })
}
