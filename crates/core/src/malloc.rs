//! Every Sluice binary runs on glibc malloc capped at two arenas.
//!
//! Why: memory at full speed is mostly what the allocator keeps around the
//! live heap, not the heap itself. Measured (README, "How memory scales"):
//!
//! - ingest under `sluice-bench` 64 connections × 100 TUNE events: ~27 MiB
//!   live at its peak (mostly hyper's read buffers); mimalloc's per-thread
//!   heaps held 260–310 MiB of RSS around it, glibc with its default arenas
//!   (eight per core) ~72 MiB, glibc with two arenas 55–59 MiB, at the same
//!   events/s;
//! - the writer draining 200,000 logins: mimalloc 113–175 MiB (its arenas
//!   are backed by transparent huge pages, zeroed 2 MiB at a time), glibc
//!   with two arenas 51–66 MiB, at the same rows/s within the noise.
//!
//! glibc reads `MALLOC_ARENA_MAX` only as a process starts, and setting it
//! from inside (`mallopt`) takes `unsafe`, which the workspace forbids; so
//! a binary executes itself again, once, with the variable set. An
//! operator's own `MALLOC_ARENA_MAX` is kept as it is (one glibc cannot
//! read, which it would silently ignore, is refused), and should the
//! re-execution fail the program simply runs on with glibc's default.

/// Arenas unless the operator says otherwise: one per core of the
/// two-core machines Sluice is measured on; more only adds retention.
pub const DEFAULT_ARENAS: &str = "2";

/// Call first thing in `main`. Returns only if the process goes on as it
/// is (the variable was already set, or re-executing failed); `Err` is the
/// one line to refuse a `MALLOC_ARENA_MAX` glibc cannot read.
pub fn cap_arenas() -> Result<(), &'static str> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;

        if let Some(value) = std::env::var_os("MALLOC_ARENA_MAX") {
            // Not UTF-8: `config::start` refuses it with every other such setting.
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
        let _failed = command
            .args(args)
            .env("MALLOC_ARENA_MAX", DEFAULT_ARENAS)
            .exec();
    }
    Ok(())
}
