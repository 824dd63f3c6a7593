//! `sluice-ingest` entry point: `.env`, flags, one-line errors, exit codes.

use std::process::ExitCode;

use clap::Parser;
use sluice_core::config::{exit_code, refuse, start};
use sluice_ingest::cli::{Cli, run};

fn main() -> ExitCode {
    if let Err(line) = cap_malloc_arenas() {
        return refuse(line);
    }
    start(|| async { exit_code(run(Cli::parse()).await) })
}

/// Ingest runs on the system allocator (glibc malloc) with at most two
/// arenas, because that is what keeps it small at full speed.
///
/// Under `sluice-bench` 64 connections × 100 TUNE events, heaptrack puts
/// ingest's live heap at ~27 MiB at its peak (mostly hyper's read buffers),
/// yet mimalloc's per-thread heaps held 260–310 MiB of RSS around it, glibc
/// with its default arenas (eight per core) ~72 MiB, and glibc with two
/// arenas 55–59 MiB at the same events/s (README, "Ingest memory").
///
/// glibc reads `MALLOC_ARENA_MAX` only as a process starts, and setting it
/// from inside (`mallopt`) takes `unsafe`, which the workspace forbids; so
/// ingest executes itself again, once, with the variable set. An operator's
/// own `MALLOC_ARENA_MAX` is kept as it is (one glibc cannot read, which it
/// would silently ignore, is refused), and should the re-execution fail
/// ingest simply runs on with glibc's default.
fn cap_malloc_arenas() -> Result<(), &'static str> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;

        if let Some(value) = std::env::var_os("MALLOC_ARENA_MAX") {
            // Not UTF-8: `start` refuses it with every other such setting.
            let Some(value) = value.to_str() else {
                return Ok(());
            };
            return match value.trim().parse::<u32>() {
                Ok(arenas) if arenas > 0 => Ok(()),
                _ => Err("MALLOC_ARENA_MAX: must be a whole number above 0"),
            };
        }
        let Ok(exe) = std::env::current_exe() else {
            return Ok(());
        };
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        // `exec` only returns on failure; the process then goes on as it is.
        let _failed = command.args(args).env("MALLOC_ARENA_MAX", "2").exec();
    }
    Ok(())
}
