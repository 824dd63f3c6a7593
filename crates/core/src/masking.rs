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

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use aes_siv::KeyInit;
use aes_siv::siv::Siv;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::config::ConfigError;

/// Prefix of values made with `encrypt`.
pub const ENCRYPTED_PREFIX: &str = "enc";
/// Prefix of values made with `hash`.
pub const HASHED_PREFIX: &str = "hmac";

const HOW_TO_MAKE_A_KEY: &str =
    "expected 32 random bytes in base64; make one with `openssl rand -base64 32`";

/// One PII key and the subkeys derived from it.
#[derive(Clone)]
pub struct PiiKey {
    id: String,
    siv_key: [u8; 64],
    // Keyed once: the HMAC key schedule costs more than hashing a short
    // value, and cloning a prepared instance is a copy.
    mac: Hmac<Sha256>,
}

/// AES-256-SIV (RFC 5297) as `aes_siv::siv::Aes256Siv`, but over
/// [`CtrAes256`]: aes-siv expands the CTR key for every value, and with the
/// full `Aes256` type that included a decryption schedule SIV never uses —
/// together a fifth of the writer's CPU. Same cipher, same bytes (tested
/// against `Aes256Siv` at every length).
type Aes256Siv = Siv<CtrAes256, cmac::Cmac<aes::Aes256Enc>>;

/// The encrypt-only AES-256 for aes-siv's CTR step, whose `new` clones the
/// schedule this thread last expanded for the same key instead of expanding
/// it again. Every block operation is `aes::Aes256Enc`'s own.
#[derive(Clone)]
struct CtrAes256(aes::Aes256Enc);

std::thread_local! {
    static CTR_SCHEDULE: std::cell::RefCell<Option<([u8; 32], aes::Aes256Enc)>> =
        const { std::cell::RefCell::new(None) };
}

impl aes::cipher::BlockSizeUser for CtrAes256 {
    type BlockSize = <aes::Aes256Enc as aes::cipher::BlockSizeUser>::BlockSize;
}

impl aes::cipher::KeySizeUser for CtrAes256 {
    type KeySize = <aes::Aes256Enc as aes::cipher::KeySizeUser>::KeySize;
}

impl aes::cipher::BlockCipher for CtrAes256 {}

impl aes::cipher::BlockEncrypt for CtrAes256 {
    fn encrypt_with_backend(&self, f: impl aes::cipher::BlockClosure<BlockSize = Self::BlockSize>) {
        self.0.encrypt_with_backend(f)
    }
}

impl KeyInit for CtrAes256 {
    fn new(key: &aes::cipher::Key<Self>) -> Self {
        CTR_SCHEDULE.with(|cached| {
            let mut cached = cached.borrow_mut();
            match &*cached {
                Some((k, schedule)) if k[..] == key[..] => Self(schedule.clone()),
                _ => {
                    let schedule = aes::Aes256Enc::new(key);
                    let mut k = [0u8; 32];
                    k.copy_from_slice(key);
                    *cached = Some((k, schedule.clone()));
                    Self(schedule)
                }
            }
        })
    }
}

std::thread_local! {
    // AES-SIV instances are not `Clone` and encrypt through `&mut self`, so
    // each thread keeps one per key instead of re-keying for every value. A
    // short list compared by key beats a HashMap here: hashing the 64-byte
    // key with SipHash cost more than the comparison, on every value.
    static SIV_CIPHERS: std::cell::RefCell<Vec<([u8; 64], Aes256Siv)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Keys whose ciphers a thread keeps; a process uses one or two (current and
/// older), tests make many, so the oldest is dropped past this.
const CACHED_CIPHERS: usize = 8;

/// Plaintexts up to this length are encrypted in a stack buffer, without
/// allocating: every id and address the default policy encrypts fits.
const INLINE_PLAINTEXT: usize = 96;

impl std::fmt::Debug for PiiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiiKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PiiKey {
    /// Parses a base64 key of exactly 32 bytes. `variable` names the setting
    /// in the error.
    pub fn from_base64(variable: &'static str, encoded: &str) -> Result<Self, ConfigError> {
        let bytes = STANDARD.decode(encoded.trim()).map_err(|_| {
            ConfigError::new(
                variable,
                format!("is not valid base64; {HOW_TO_MAKE_A_KEY}"),
            )
        })?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            ConfigError::new(
                variable,
                format!(
                    "decodes to {} bytes, not 32; {HOW_TO_MAKE_A_KEY}",
                    bytes.len()
                ),
            )
        })?;
        Ok(Self::from_bytes(&bytes))
    }

    pub fn from_bytes(secret: &[u8; 32]) -> Self {
        let hkdf = Hkdf::<Sha256>::new(Some(b"sluice pii v1"), secret);
        let mut siv_key = [0u8; 64];
        let mut hmac_key = [0u8; 32];
        let mut id = [0u8; 4];
        // Expanding into these fixed lengths cannot fail (limit is 255 * 32).
        let _ = hkdf.expand(b"encrypt: aes-256-siv", &mut siv_key);
        let _ = hkdf.expand(b"hash: hmac-sha-256", &mut hmac_key);
        let _ = hkdf.expand(b"key id", &mut id);
        let id = id.iter().map(|b| format!("{b:02x}")).collect();
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&hmac_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self { id, siv_key, mac }
    }

    /// Public identifier of the key; travels in every masked value.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs `f` with this thread's AES-SIV instance for the key.
    fn with_cipher<R>(&self, f: impl FnOnce(&mut Aes256Siv) -> R) -> R {
        SIV_CIPHERS.with(|ciphers| {
            let mut ciphers = ciphers.borrow_mut();
            let at = match ciphers.iter().position(|(k, _)| *k == self.siv_key) {
                Some(at) => at,
                None => {
                    if ciphers.len() >= CACHED_CIPHERS {
                        ciphers.remove(0);
                    }
                    ciphers.push((self.siv_key, Aes256Siv::new((&self.siv_key).into())));
                    ciphers.len() - 1
                }
            };
            f(&mut ciphers[at].1)
        })
    }
}

/// The current key, used for new values, and older keys kept for `recover`.
#[derive(Clone, Debug)]
pub struct Keyring {
    current: PiiKey,
    older: Vec<PiiKey>,
}

impl Keyring {
    pub fn new(current: PiiKey, older: Vec<PiiKey>) -> Self {
        Self { current, older }
    }

    pub fn current(&self) -> &PiiKey {
        &self.current
    }

    /// The older keys (`PII_OLD_KEYS`), kept to read values made under them.
    pub fn older(&self) -> &[PiiKey] {
        &self.older
    }

    /// The configured key with this id, current or older.
    pub fn by_id(&self, id: &str) -> Option<&PiiKey> {
        std::iter::once(&self.current)
            .chain(&self.older)
            .find(|k| k.id == id)
    }
}

/// What to do with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Deterministic AES-SIV; recoverable with the key.
    Encrypt,
    /// Keyed HMAC-SHA-256; one way.
    Hash,
    /// Keep the /24 (IPv4) or /48 (IPv6) network.
    TruncateIp,
    /// Remove the field.
    Drop,
    /// Keep as is (lets a policy file switch a default off).
    Keep,
}

/// Field name → strategy. Names match case-insensitively, at any depth.
#[derive(Debug, Clone)]
pub struct Policy {
    fields: HashMap<String, Strategy>,
}

/// Fields masked when no policy file says otherwise. Identifiers that an
/// operator may need back are encrypted; free text that merely fingerprints
/// (user agents) is hashed.
const DEFAULT_POLICY: &[(&str, Strategy)] = &[
    // User-login records.
    ("ip", Strategy::Encrypt),
    ("device_id", Strategy::Encrypt),
    // TUNE/HasOffers events: network addresses, device and advertising ids.
    ("session_ip", Strategy::Encrypt),
    ("user_agent", Strategy::Hash),
    ("ios_ifa", Strategy::Encrypt),
    ("ios_ifv", Strategy::Encrypt),
    ("google_aid", Strategy::Encrypt),
    ("android_id", Strategy::Encrypt),
    ("windows_aid", Strategy::Encrypt),
    ("unknown_id", Strategy::Encrypt),
    ("mac_address", Strategy::Encrypt),
    ("customer_id", Strategy::Encrypt),
    ("browser_id", Strategy::Encrypt),
    ("email", Strategy::Encrypt),
    // Free-text sub ids that publishers and advertisers fill with identifiers.
    ("aff_sub", Strategy::Encrypt),
    ("aff_sub2", Strategy::Encrypt),
    ("aff_sub3", Strategy::Encrypt),
    ("aff_sub4", Strategy::Encrypt),
    ("aff_sub5", Strategy::Encrypt),
    ("adv_sub", Strategy::Encrypt),
    ("adv_sub2", Strategy::Encrypt),
    ("adv_sub3", Strategy::Encrypt),
    ("adv_sub4", Strategy::Encrypt),
    ("adv_sub5", Strategy::Encrypt),
    ("adv_unique1", Strategy::Encrypt),
    ("adv_unique2", Strategy::Encrypt),
    ("adv_unique3", Strategy::Encrypt),
    ("adv_unique4", Strategy::Encrypt),
    ("adv_unique5", Strategy::Encrypt),
    ("affiliate_unique1", Strategy::Encrypt),
    ("affiliate_unique2", Strategy::Encrypt),
    ("affiliate_unique3", Strategy::Encrypt),
    ("affiliate_unique4", Strategy::Encrypt),
    ("affiliate_unique5", Strategy::Encrypt),
    ("affiliate_click_id", Strategy::Encrypt),
    // The affiliate's free-text traffic source, filled like the sub ids
    // (and carried in click_url next to them).
    ("source", Strategy::Encrypt),
    // URLs carry the sub ids above in their query strings.
    ("click_url", Strategy::Encrypt),
    ("referral_url", Strategy::Encrypt),
];

impl Default for Policy {
    fn default() -> Self {
        Self {
            fields: DEFAULT_POLICY
                .iter()
                .map(|(name, strategy)| ((*name).to_owned(), *strategy))
                .collect(),
        }
    }
}

impl Policy {
    /// The defaults with a JSON policy file (`{"field": "strategy", ...}`)
    /// laid over them.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                "PII_POLICY_FILE",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let overrides: HashMap<String, Strategy> = serde_json::from_str(&text).map_err(|e| {
            ConfigError::new(
                "PII_POLICY_FILE",
                format!(
                    "expected a JSON object mapping field names to encrypt, hash, truncate_ip, drop or keep ({e})"
                ),
            )
        })?;
        let mut policy = Self::default();
        for (name, strategy) in overrides {
            policy.fields.insert(name.to_ascii_lowercase(), strategy);
        }
        Ok(policy)
    }

    pub fn strategy(&self, field: &str) -> Strategy {
        if let Some(s) = self.fields.get(field) {
            return *s;
        }
        if field.bytes().any(|b| b.is_ascii_uppercase())
            && let Some(s) = self.fields.get(&field.to_ascii_lowercase())
        {
            return *s;
        }
        Strategy::Keep
    }
}

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
            if let Ok(t) =
                key.with_cipher(|c| c.encrypt_in_place_detached::<[&[u8]; 0], &[u8]>([], text))
            {
                tag.copy_from_slice(&t);
                push_base64(&mut out, &sealed[..TAG_LEN + plaintext.len()]);
            }
        } else if let Ok(sealed) =
            key.with_cipher(|c| c.encrypt::<[&[u8]; 0], &[u8]>([], plaintext))
        {
            push_base64(&mut out, &sealed);
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
mod tests {
    use super::*;
    use serde_json::json;

    fn masker() -> Masker {
        Masker::new(
            Keyring::new(PiiKey::from_bytes(&[7u8; 32]), vec![]),
            Policy::default(),
        )
    }

    #[test]
    fn key_parsing_names_the_variable_and_explains() {
        let err = PiiKey::from_base64("PII_KEY", "short").unwrap_err();
        assert_eq!(err.variable, "PII_KEY");
        assert!(err.to_string().contains("openssl rand -base64 32"));
        let err = PiiKey::from_base64("PII_KEY", &STANDARD.encode([1u8; 16])).unwrap_err();
        assert!(err.to_string().contains("16 bytes"));
        assert!(PiiKey::from_base64("PII_KEY", &STANDARD.encode([1u8; 32])).is_ok());
    }

    #[test]
    fn encrypt_is_deterministic_recoverable_and_labelled() {
        let m = masker();
        let a = m.encrypt(b"199.172.111.135");
        assert_eq!(a, m.encrypt(b"199.172.111.135"));
        assert_ne!(a, m.encrypt(b"199.172.111.136"));
        assert!(a.starts_with(&format!("enc:{}:", m.keyring().current().id())));
        assert!(!a.contains("199.172"));
        assert_eq!(m.recover(&a).unwrap(), b"199.172.111.135");
        assert!(a.len() < 80, "fits varchar(256) with room: {a}");
    }

    #[test]
    fn encrypt_matches_plain_aes_siv_at_every_length() {
        // The in-place encryption must stay byte-identical to what earlier
        // versions stored (`Aes256Siv::encrypt`, no header), inline or not.
        let m = masker();
        let key = m.keyring().current();
        let mut reference = aes_siv::siv::Aes256Siv::new((&key.siv_key).into());
        for len in 0..(INLINE_PLAINTEXT + 80) {
            let text: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
            let sealed = reference.encrypt::<[&[u8]; 0], &[u8]>([], &text).unwrap();
            let expected = format!("enc:{}:{}", key.id(), URL_SAFE_NO_PAD.encode(sealed));
            assert_eq!(m.encrypt(&text), expected, "length {len}");
            assert_eq!(m.recover(&expected).unwrap(), text);
            // Another key in between must not leave its schedule behind.
            let other = Masker::new(
                Keyring::new(PiiKey::from_bytes(&[255 - len as u8; 32]), vec![]),
                Policy::default(),
            );
            let theirs = other.encrypt(&text);
            assert_eq!(other.recover(&theirs).unwrap(), text);
            assert_ne!(theirs, expected);
        }
        let mut mac = key.mac.clone();
        mac.update(b"x");
        let expected = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(m.hash(b"x"), format!("hmac:{}:{expected}", key.id()));
    }

    #[test]
    fn mask_text_agrees_with_apply() {
        let m = masker();
        for strategy in [
            Strategy::Encrypt,
            Strategy::Hash,
            Strategy::TruncateIp,
            Strategy::Drop,
            Strategy::Keep,
        ] {
            for text in ["199.172.111.135", "not an ip", ""] {
                assert_eq!(
                    m.mask_text(strategy, text).map(Value::String),
                    m.apply(strategy, &json!(text))
                );
            }
        }
    }

    #[test]
    fn recover_with_an_older_key_and_reject_tampering() {
        let old = PiiKey::from_bytes(&[1u8; 32]);
        let old_masker = Masker::new(Keyring::new(old.clone(), vec![]), Policy::default());
        let value = old_masker.encrypt(b"593-47-5928");
        let rotated = Masker::new(
            Keyring::new(PiiKey::from_bytes(&[2u8; 32]), vec![old]),
            Policy::default(),
        );
        assert_eq!(rotated.recover(&value).unwrap(), b"593-47-5928");
        let without_old = masker();
        assert!(matches!(
            without_old.recover(&value),
            Err(RecoverError::UnknownKey(_))
        ));
        let mut tampered = value.clone();
        tampered.pop();
        tampered.push(if value.ends_with('A') { 'B' } else { 'A' });
        assert!(matches!(
            rotated.recover(&tampered),
            Err(RecoverError::Corrupt(_))
        ));
        assert_eq!(rotated.recover("plain"), Err(RecoverError::NotEncrypted));
    }

    #[test]
    fn subkeys_differ_per_purpose() {
        let m = masker();
        let h = m.hash(b"x");
        assert!(h.starts_with("hmac:"));
        assert_eq!(h, m.hash(b"x"));
        // The hash key is not (a part of) the encryption key.
        let key = m.keyring().current();
        let mut with_siv_half = <Hmac<Sha256> as Mac>::new_from_slice(&key.siv_key[..32]).unwrap();
        with_siv_half.update(b"x");
        let other = URL_SAFE_NO_PAD.encode(with_siv_half.finalize().into_bytes());
        assert!(!h.ends_with(&other));
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate_ip("199.172.111.135").unwrap(), "199.172.111.0/24");
        assert_eq!(
            truncate_ip("2001:db8:abcd:12::1").unwrap(),
            "2001:db8:abcd::/48"
        );
        assert_eq!(truncate_ip("nope"), None);
        let m = masker();
        let v = m.apply(Strategy::TruncateIp, &json!("nope")).unwrap();
        assert!(v.as_str().unwrap().starts_with("hmac:"));
    }

    #[test]
    fn objects_are_masked_at_any_depth_and_drop_removes() {
        let mut policy = Policy::default();
        policy.fields.insert("secret".into(), Strategy::Drop);
        let m = Masker::new(masker().keyring, policy);
        let masked = m.mask_value(json!({
            "IP": "1.2.3.4", "keep": 1,
            "nested": [{"device_id": "abc", "secret": "x"}],
            "user_agent": {"structured": true}
        }));
        let text = masked.to_string();
        assert!(!text.contains("1.2.3.4") && !text.contains("\"abc\"") && !text.contains("secret"));
        assert_eq!(masked["keep"], 1);
        assert!(
            masked["nested"][0]["device_id"]
                .as_str()
                .unwrap()
                .starts_with("enc:")
        );
        assert!(masked["user_agent"].as_str().unwrap().starts_with("hmac:"));
    }

    #[test]
    fn policy_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        std::fs::write(&path, r#"{"ip": "truncate_ip", "Phone": "hash"}"#).unwrap();
        let p = Policy::from_file(&path).unwrap();
        assert_eq!(p.strategy("ip"), Strategy::TruncateIp);
        assert_eq!(p.strategy("phone"), Strategy::Hash);
        assert_eq!(p.strategy("device_id"), Strategy::Encrypt);
        std::fs::write(&path, r#"{"ip": "rot13"}"#).unwrap();
        let err = Policy::from_file(&path).unwrap_err();
        assert_eq!(err.variable, "PII_POLICY_FILE");
    }
}
