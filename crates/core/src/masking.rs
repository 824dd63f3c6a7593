//! PII masking: one key, four strategies, a policy that maps fields to them.
//!
//! `PII_KEY` (32 random bytes, base64) is never used directly: HKDF-SHA-256
//! derives one subkey for AES-SIV encryption, one for HMAC hashing and a public
//! key id, so no key serves two purposes. Every masked value carries the key
//! id, which is what makes rotation possible: values made under an older key
//! still say which key `recover` needs.
//!
//! AES-SIV is deterministic on purpose: equal inputs give equal outputs, so
//! duplicates and joins survive masking while the value stays recoverable for
//! whoever holds the key.

use std::net::IpAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use serde_json::{Map, Value};

mod keys;
mod policy;
pub use keys::{Keyring, PiiKey};
pub use policy::{Policy, Strategy};

/// Prefix of values made with `encrypt`.
pub const ENCRYPTED_PREFIX: &str = "enc";
/// Prefix of values made with `hash`.
pub const HASHED_PREFIX: &str = "hmac";

/// Plaintexts up to this length are encrypted in a stack buffer, without
/// allocating: every id and address the default policy encrypts fits.
const INLINE_PLAINTEXT: usize = 96;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecoverError {
    #[error(
        "not a value made by the encrypt strategy (expected {ENCRYPTED_PREFIX}:<key id>:<data>)"
    )]
    NotEncrypted,
    #[error("made with key id {0}, which is not configured (set it in PII_KEY or PII_OLD_KEYS)")]
    UnknownKey(String),
    #[error("the value is corrupt or was not made with key id {0}")]
    Corrupt(String),
}

/// Applies a [`Policy`] with a [`Keyring`].
#[derive(Debug, Clone)]
pub struct Masker {
    keyring: Keyring,
    policy: Policy,
    /// The strategies of `ip` and `device_id`, looked up once: every login
    /// needs both, and the lookup hashes the name.
    login_strategies: (Strategy, Strategy),
}

impl Masker {
    pub fn new(keyring: Keyring, policy: Policy) -> Self {
        let login_strategies = (policy.strategy("ip"), policy.strategy("device_id"));
        Self {
            keyring,
            policy,
            login_strategies,
        }
    }

    /// The strategies of the login fields `ip` and `device_id`.
    pub fn login_strategies(&self) -> (Strategy, Strategy) {
        self.login_strategies
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// `enc:<key id>:<base64url(AES-SIV(value))>`.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let key = self.keyring.current();
        // Built in place: this runs twice per login, and format! plus the
        // intermediate buffers cost more than the cipher itself.
        let mut out = labelled(ENCRYPTED_PREFIX, &key.id, TAG_LEN + plaintext.len());
        // No associated data: the key id only selects the key, and a value
        // relabelled to another key fails authentication under it anyway; an
        // extra header would cost one more CMAC per value.
        if plaintext.len() <= INLINE_PLAINTEXT {
            // tag ‖ ciphertext, exactly what `Aes256Siv::encrypt` returns.
            let mut sealed = [0u8; TAG_LEN + INLINE_PLAINTEXT];
            let (tag, text) = sealed.split_at_mut(TAG_LEN);
            let text = &mut text[..plaintext.len()];
            text.copy_from_slice(plaintext);
            let t = key.with_cipher(|c| c.encrypt_in_place_detached::<[&[u8]; 0], &[u8]>([], text));
            tag.copy_from_slice(&sealed_or_unreachable(t));
            push_base64(&mut out, &sealed[..TAG_LEN + plaintext.len()]);
        } else {
            let sealed = key.with_cipher(|c| c.encrypt::<[&[u8]; 0], &[u8]>([], plaintext));
            push_base64(&mut out, &sealed_or_unreachable(sealed));
        }
        out
    }

    /// `hmac:<key id>:<base64url(HMAC-SHA-256(value))>`.
    pub fn hash(&self, value: &[u8]) -> String {
        let key = self.keyring.current();
        let mut mac = key.mac.clone();
        mac.update(value);
        let mut out = labelled(HASHED_PREFIX, &key.id, 32);
        push_base64(&mut out, &mac.finalize().into_bytes());
        out
    }

    /// Decrypts a value made by [`Masker::encrypt`] under any configured key.
    pub fn recover(&self, masked: &str) -> Result<Vec<u8>, RecoverError> {
        let mut parts = masked.trim().splitn(3, ':');
        let (Some(ENCRYPTED_PREFIX), Some(id), Some(data)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(RecoverError::NotEncrypted);
        };
        let key = self
            .keyring
            .by_id(id)
            .ok_or_else(|| RecoverError::UnknownKey(id.to_owned()))?;
        let sealed = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| RecoverError::Corrupt(id.to_owned()))?;
        key.with_cipher(|c| c.decrypt::<[&[u8]; 0], &[u8]>([], &sealed))
            .map_err(|_| RecoverError::Corrupt(id.to_owned()))
    }

    /// Masks one scalar with a strategy. `None` means the field is dropped.
    pub fn apply(&self, strategy: Strategy, value: &Value) -> Option<Value> {
        let text = match value {
            Value::Null => return Some(Value::Null),
            Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
            other => std::borrow::Cow::Owned(other.to_string()),
        };
        match strategy {
            Strategy::Keep => Some(value.clone()),
            _ => self.mask_text(strategy, &text).map(Value::String),
        }
    }

    /// Masks one text value with a strategy, as [`Masker::apply`] does a JSON
    /// string. `None` means the field is dropped.
    pub fn mask_text(&self, strategy: Strategy, text: &str) -> Option<String> {
        Some(match strategy {
            Strategy::Keep => text.to_owned(),
            Strategy::Drop => return None,
            Strategy::Encrypt => self.encrypt(text.as_bytes()),
            Strategy::Hash => self.hash(text.as_bytes()),
            // Something that is not an address cannot be truncated; hashing it
            // is the safe fallback that still groups equal values.
            Strategy::TruncateIp => truncate_ip(text).unwrap_or_else(|| self.hash(text.as_bytes())),
        })
    }

    /// Masks a named field's value by the policy.
    pub fn mask_field(&self, field: &str, value: &Value) -> Option<Value> {
        match self.policy.strategy(field) {
            Strategy::Keep => Some(self.mask_value(value.clone())),
            strategy => match value {
                // A structured value under a PII name is masked whole.
                Value::Object(_) | Value::Array(_) => {
                    self.apply(strategy, &Value::String(value.to_string()))
                }
                _ => self.apply(strategy, value),
            },
        }
    }

    /// Masks every policy field of an object, at any depth.
    pub fn mask_object(&self, object: Map<String, Value>) -> Map<String, Value> {
        object
            .into_iter()
            .filter_map(|(k, v)| self.mask_field(&k, &v).map(|v| (k, v)))
            .collect()
    }

    /// Masks objects nested anywhere inside a value.
    pub fn mask_value(&self, value: Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(self.mask_object(map)),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.mask_value(v)).collect())
            }
            other => other,
        }
    }
}

/// The result of sealing with AES-SIV. It fails only when given more than
/// 126 associated-data headers, and Sluice gives none: a failure here is a
/// bug, not an input, and must not pass for an encrypted value (an empty
/// `enc:<key id>:` could never be recovered).
fn sealed_or_unreachable<T>(result: Result<T, aes_siv::Error>) -> T {
    result.unwrap_or_else(|_| unreachable!("AES-SIV without headers cannot fail"))
}

/// Length of the AES-SIV tag that precedes the ciphertext.
const TAG_LEN: usize = 16;

/// `<prefix>:<key id>:` with room for `payload` bytes in base64.
fn labelled(prefix: &str, id: &str, payload: usize) -> String {
    let mut out = String::with_capacity(prefix.len() + id.len() + 2 + payload.div_ceil(3) * 4);
    out.push_str(prefix);
    out.push(':');
    out.push_str(id);
    out.push(':');
    out
}

/// Appends base64url (no padding). Short values go through a stack buffer:
/// `encode_string`'s chunked writer cost more than the cipher here.
fn push_base64(out: &mut String, bytes: &[u8]) {
    let mut buf = [0u8; (TAG_LEN + INLINE_PLAINTEXT).div_ceil(3) * 4];
    let encoded = URL_SAFE_NO_PAD.encode_slice(bytes, &mut buf).ok();
    // base64 output is ASCII, so the text is always there.
    match encoded.and_then(|n| std::str::from_utf8(&buf[..n]).ok()) {
        Some(text) => out.push_str(text),
        None => URL_SAFE_NO_PAD.encode_string(bytes, out),
    }
}

/// A masker with the default policy and one key of 32 bytes `byte`, for
/// tests.
#[cfg(test)]
pub(crate) fn test_masker(byte: u8) -> Masker {
    Masker::new(
        Keyring::new(PiiKey::from_bytes(&[byte; 32]), vec![]),
        Policy::default(),
    )
}

/// Keeps the /24 of an IPv4 address or the /48 of an IPv6 address.
pub fn truncate_ip(text: &str) -> Option<String> {
    match text.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Some(format!("{a}.{b}.{c}.0/24"))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
            Some(format!("{net}/48"))
        }
    }
}

#[cfg(test)]
mod tests;
