//! Every Sluice binary runs on glibc malloc capped at two arenas.
//!
//! Why: memory at full speed is mostly what the allocator keeps around the
//! live heap, not the heap itself. Measured (README, "How ingest's memory
//! scales" and "How the writer's memory scales"):
//!
//! - ingest under `sluice-bench` 64 connections × 100 TUNE events: ~27 MiB
//!   live at its peak (mostly hyper's read buffers); mimalloc's per-thread
//!   heaps held 260–310 MiB of RSS around it, glibc with its default arenas
//!   (eight per core) ~72 MiB, glibc with two arenas 47–62 MiB, at the same
//!   events/s;
//! - the writer draining 200,000 logins: ~25 MiB live at its peak; mimalloc
//!   111–135 MiB (its arenas are backed by transparent huge pages, zeroed
//!   2 MiB at a time), glibc with two arenas 42–61 MiB, at the same rows/s
//!   within the noise.
//!
//! glibc reads `MALLOC_ARENA_MAX` only as a process starts, and setting it
//! from inside (`mallopt`) takes `unsafe`, which the workspace forbids; so
//! a binary executes itself again, once, with the variable set. An
//! operator's own `MALLOC_ARENA_MAX` (or `GLIBC_TUNABLES` arena setting)
//! is kept as it is; a `MALLOC_ARENA_MAX` glibc cannot read, which it would
//! silently ignore, is refused.

/// Arenas unless the operator says otherwise: one per core of the
/// two-core machines Sluice is measured on; more only adds retention.
pub const DEFAULT_ARENAS: &str = "2";

/// Set on the re-executed process, so it never executes itself again: a
/// setuid or capability-carrying binary has `MALLOC_ARENA_MAX` removed by
/// glibc at every start, and would otherwise loop.
const REEXECUTED: &str = "SLUICE_MALLOC_REEXECUTED";

/// Call first thing in `main`. Returns when the process goes on as it is
/// (the arenas are already set, or cannot be); `Err` is the one line to
/// refuse to start with.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn cap_arenas() -> Result<(), String> {
    use std::os::unix::process::CommandExt;

    if let Some(value) = std::env::var_os("MALLOC_ARENA_MAX") {
        // Not UTF-8: `config::start` refuses it with every other such setting.
        let Some(value) = value.to_str() else {
            return Ok(());
        };
        // What glibc reads: decimal digits, nothing around them.
        let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
        return match value.parse::<u32>() {
            Ok(arenas) if digits && arenas > 0 && !value.starts_with('0') => Ok(()),
            _ => Err("MALLOC_ARENA_MAX: must be a whole number above 0".to_owned()),
        };
    }
    let tuned = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("arena_max"));
    if tuned || std::env::var_os(REEXECUTED).is_some() {
        return Ok(());
    }
    let Ok(exe) = std::env::current_exe() else {
        eprintln!(
            "warning: cannot find this program's path to re-execute it with MALLOC_ARENA_MAX={DEFAULT_ARENAS}; running on glibc's default arenas"
        );
        return Ok(());
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // `exec` only returns on failure, and leaves the process with its
    // signal handling reset (SIGPIPE would kill it): refuse to go on.
    let failed = command
        .args(args)
        .env("MALLOC_ARENA_MAX", DEFAULT_ARENAS)
        .env(REEXECUTED, "1")
        .exec();
    Err(format!(
        "MALLOC_ARENA_MAX: cannot re-execute this program with it set ({failed}); set it yourself, e.g. MALLOC_ARENA_MAX={DEFAULT_ARENAS}"
    ))
}

/// Other allocators and C libraries: nothing to cap.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn cap_arenas() -> Result<(), String> {
    Ok(())
}
