//! Receipt keys every database can store.
//!
//! A message's receipt key is its envelope `id`, else the queue's message
//! id, and both can come from whoever writes to the queue. PostgreSQL
//! refuses a NUL in `text` (SQLSTATE 22021) and a B-tree entry of more than
//! about 2.7 kB: one such key used to fail the whole receipt insert and send
//! good rows to the dead-letter queue. Such keys are stored as a SHA-256
//! instead — deterministic, so a redelivery of the message still finds its
//! receipt. Ordinary keys (UUIDs, message ids) are stored as they are.

use sha2::{Digest, Sha256};

/// Keys longer than this (in bytes) are stored hashed.
pub const MAX_PLAIN_LEN: usize = 200;

/// Prefix of a hashed key. A key that itself starts with it is hashed too,
/// so no plain key can equal another key's hash.
pub const HASHED_PREFIX: &str = "sha256:";

/// The form of `raw` a receipt (and a rejected row) stores: `raw` itself
/// when it is non-empty, at most [`MAX_PLAIN_LEN`] bytes and free of control
/// characters; otherwise `sha256:` and the hex SHA-256 of its bytes.
pub fn storable(raw: &str) -> String {
    let plain = !raw.is_empty()
        && raw.len() <= MAX_PLAIN_LEN
        && !raw.starts_with(HASHED_PREFIX)
        && !raw.chars().any(char::is_control);
    if plain {
        return raw.to_owned();
    }
    let digest = Sha256::digest(raw.as_bytes());
    let mut out = String::with_capacity(HASHED_PREFIX.len() + 64);
    out.push_str(HASHED_PREFIX);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_keys_are_kept() {
        for key in [
            "0190f0c4-8a0b-7cc1-9b9e-3f1f4b3c2d1e",
            "m-1",
            &"k".repeat(200),
        ] {
            assert_eq!(storable(key), key);
        }
    }

    #[test]
    fn unstorable_keys_are_hashed_deterministically() {
        let long = "k".repeat(201);
        for key in ["a\0b", "", "tab\there", long.as_str(), "sha256:abc"] {
            let stored = storable(key);
            assert!(stored.starts_with(HASHED_PREFIX), "{key:?}");
            assert_eq!(stored.len(), HASHED_PREFIX.len() + 64);
            assert!(!stored.contains('\0'));
            assert_eq!(storable(key), stored, "deterministic");
        }
        assert_ne!(storable("a\0b"), storable("a\0c"));
    }
}
