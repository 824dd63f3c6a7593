//! The PII key kept in a local file (`PII_KEY_FILE`), for one-machine use.
//!
//! A key in `.env` is easy to copy into a chat or a commit; a file that only
//! its owner can read is the usual home for a local secret (as with ssh
//! keys). Every installation makes its own key on first run, so no two
//! users ever share one by accident, and a key file that others can read is
//! refused rather than trusted.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::TryRngCore;
use rand::rngs::OsRng;

use crate::config::ConfigError;

pub const VARIABLE: &str = "PII_KEY_FILE";

/// Reads the base64 key from `path`, refusing a file others can read.
pub fn read(path: &Path) -> Result<String, ConfigError> {
    let shown = path.display();
    let mkdir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => format!("mkdir -p {}; ", dir.display()),
        None => String::new(),
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            VARIABLE,
            format!(
                "cannot read {shown} ({}); `sluice up` creates one, or: ({mkdir}umask 077; openssl rand -base64 32 > {shown})",
                e.kind()
            ),
        )
    })?;
    check_owner_only(path)?;
    Ok(text.trim().to_owned())
}

#[cfg(unix)]
fn check_owner_only(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| ConfigError::new(VARIABLE, format!("{}: {}", path.display(), e.kind())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError::new(
            VARIABLE,
            format!(
                "{} can be read by other users (mode {:o}); run: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_owner_only(_path: &Path) -> Result<(), ConfigError> {
    Ok(())
}

/// Creates `path` with a new random key, readable by its owner only.
/// Returns false, touching nothing, when the file already exists.
pub fn create_if_missing(path: &Path) -> Result<bool, ConfigError> {
    if path.exists() {
        return Ok(false);
    }
    let fail = |what: &str, e: std::io::Error| {
        ConfigError::new(
            VARIABLE,
            format!("cannot {what} {} ({})", path.display(), e.kind()),
        )
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| fail("create the folder of", e))?;
    }
    let mut secret = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut secret)
        .map_err(|e| fail("make a key for", std::io::Error::other(e)))?;
    // Written whole to a private temporary file, then linked into place:
    // a process racing this one, or a crash half-way, never sees a partial key.
    let temporary = path.with_file_name(format!(
        ".{}.{}-{:x}.tmp",
        path.file_name()
            .map_or_else(|| "pii.key".into(), |n| n.to_string_lossy()),
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(format!("{}\n", STANDARD.encode(secret)).as_bytes())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {}
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(fail("create", e)),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_an_owner_only_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/pii.key");
        assert!(create_if_missing(&path).unwrap());
        let key = read(&path).unwrap();
        assert_eq!(STANDARD.decode(&key).unwrap().len(), 32);
        // A second run keeps the first key.
        assert!(!create_if_missing(&path).unwrap());
        assert_eq!(read(&path).unwrap(), key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn racing_first_runs_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/pii.key");
        let results = crate::testing::at_once(
            8,
            || (),
            |()| {
                let created = create_if_missing(&path).unwrap();
                (created, read(&path).unwrap())
            },
        );
        assert_eq!(results.iter().filter(|(created, _)| *created).count(), 1);
        assert!(results.iter().all(|(_, key)| key == &results[0].1));
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_key_others_can_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pii.key");
        create_if_missing(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read(&path).unwrap_err();
        assert_eq!(err.variable, VARIABLE);
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let key = std::fs::read_to_string(&path).unwrap();
        assert!(!err.to_string().contains(key.trim()));
    }

    #[test]
    fn a_missing_file_says_how_to_make_one() {
        let err = read(Path::new("/nonexistent/pii.key")).unwrap_err();
        assert!(err.to_string().starts_with("PII_KEY_FILE: cannot read"));
        assert!(err.to_string().contains("openssl rand -base64 32"));
    }
}
