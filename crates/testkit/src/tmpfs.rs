//! A small filesystem of a test's own, to fill up: what the full-disk tests
//! stand on. Mounting needs root (as in CI); elsewhere the test is skipped,
//! or fails under `SLUICE_REQUIRE_SERVICES=1`.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A tmpfs mounted on a fresh folder, unmounted on drop.
pub struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `size` (as `mount -o size=` takes it: `8m`, `256m`), or
    /// `None` (skip) when it cannot be mounted.
    pub fn mount(size: &str) -> Option<Self> {
        let parent = tempfile::tempdir().expect("a temporary folder");
        let dir = parent.path().join("small");
        std::fs::create_dir(&dir).expect("a mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output();
        let why = match out {
            Ok(o) if o.status.success() => {
                return Some(Self {
                    dir,
                    _parent: parent,
                });
            }
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        };
        if crate::require_services() {
            panic!("cannot mount a tmpfs ({why}) and SLUICE_REQUIRE_SERVICES=1");
        }
        eprintln!("skipped: cannot mount a tmpfs ({why}); the full-disk tests need root, as in CI");
        None
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a child still dying must not leave the mount behind.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// Fills the filesystem of `dir` with one file until nothing more fits;
/// removing the file gives the space back.
pub fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create the filler");
    for chunk in [1 << 20, 64 << 10, 4 << 10, 512] {
        let block = vec![0x5au8; chunk];
        while file.write_all(&block).and_then(|()| file.flush()).is_ok() {}
    }
    let _ = file.sync_all();
    path
}
