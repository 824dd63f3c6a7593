//! Rejected rows of bounded size.
//!
//! A rejected record keeps its payload so nothing is lost: masked JSON when
//! it parsed, encrypted whole when it did not. Unbounded, that is a lever to
//! fill a disk — a small gzip body of spaces expands a thousandfold — so a
//! payload beyond `WRITER_MAX_REJECTED_BYTES` keeps only a prefix, and the
//! reason says so with the full size and the SHA-256 of the whole, so the
//! original can still be matched when it is found elsewhere. (Bodies that
//! arrived compressed are kept compressed by the decoder, so the bound
//! rarely bites for them.)

use sha2::{Digest, Sha256};

use crate::masking::Masker;
use crate::records::{PayloadFormat, RejectedRow};

/// A masked-JSON payload, cut to `max` bytes (at a character boundary).
pub fn masked_json(reason: String, text: String, max: usize) -> RejectedRow {
    if text.len() <= max {
        return RejectedRow {
            reason,
            payload: text,
            payload_format: PayloadFormat::MaskedJson,
        };
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    RejectedRow {
        reason: cut_reason(reason, " of masked JSON", cut, text.as_bytes()),
        payload: text[..cut].to_owned(),
        payload_format: PayloadFormat::MaskedJson,
    }
}

/// `bytes` encrypted whole when that fits in `max`, else its longest prefix
/// that does (the prefix is encrypted, never stored plain).
pub fn encrypted(reason: String, bytes: &[u8], masker: &Masker, max: usize) -> RejectedRow {
    // `enc:<key id>:` then base64url without padding of a 16-byte tag and
    // the ciphertext, as long as the plaintext.
    let header = masker.encrypt(&[]).len() - 22;
    let room = max.saturating_sub(header) / 4 * 3;
    let fits = room.saturating_sub(16);
    if bytes.len() <= fits {
        return RejectedRow {
            reason,
            payload: masker.encrypt(bytes),
            payload_format: PayloadFormat::Encrypted,
        };
    }
    RejectedRow {
        reason: cut_reason(reason, "", fits, bytes),
        payload: masker.encrypt(&bytes[..fits]),
        payload_format: PayloadFormat::Encrypted,
    }
}

fn cut_reason(reason: String, what: &str, kept: usize, whole: &[u8]) -> String {
    let digest = Sha256::digest(whole);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{reason}; payload cut to its first {kept} of {} bytes{what} (WRITER_MAX_REJECTED_BYTES), sha256 of the whole {hex}",
        whole.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::test_masker;

    #[test]
    fn small_payloads_are_kept_whole() {
        let m = test_masker(5);
        let row = encrypted("r".into(), b"abc", &m, 1024);
        assert_eq!(row.reason, "r");
        assert_eq!(m.recover(&row.payload).unwrap(), b"abc");
        let row = masked_json("r".into(), "{\"a\":1}".into(), 1024);
        assert_eq!(
            (row.reason.as_str(), row.payload.as_str()),
            ("r", "{\"a\":1}")
        );
    }

    #[test]
    fn large_payloads_keep_a_prefix_within_the_bound() {
        let m = test_masker(5);
        for max in [1024, 1025, 1026, 1027, 4096, 65_536] {
            for len in [max / 2, max - 100, max, max * 3] {
                let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let row = encrypted("bad".into(), &bytes, &m, max);
                assert!(row.payload.len() <= max, "{len} into {max}");
                let back = m.recover(&row.payload).unwrap();
                assert!(bytes.starts_with(&back));
                if back.len() < len {
                    // Nothing wasted: one more byte would not fit.
                    assert!(m.encrypt(&bytes[..back.len() + 3]).len() > max);
                    let hex: String = Sha256::digest(&bytes)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    assert!(row.reason.starts_with("bad; payload cut to its first"));
                    assert!(row.reason.contains(&format!("of {len} bytes")));
                    assert!(row.reason.ends_with(&hex));
                } else {
                    assert_eq!(row.reason, "bad");
                }
            }
        }
        let text = format!("\"{}\"", "é".repeat(1000));
        let row = masked_json("r".into(), text.clone(), 1001);
        assert!(row.payload.len() <= 1001 && text.starts_with(&row.payload));
        assert!(
            row.reason
                .contains(&format!("of {} bytes of masked JSON", text.len()))
        );
    }
}
