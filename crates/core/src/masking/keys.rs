//! PII keys: the subkeys HKDF derives from `PII_KEY`, the per-thread
//! AES-SIV ciphers they key, and the keyring of current and older keys.

use std::rc::Rc;

use aes_siv::KeyInit;
use aes_siv::siv::Siv;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::ConfigError;

const HOW_TO_MAKE_A_KEY: &str =
    "expected 32 random bytes in base64; make one with `openssl rand -base64 32`";

/// One PII key and the subkeys derived from it.
#[derive(Clone)]
pub struct PiiKey {
    pub(super) id: String,
    pub(super) siv_key: [u8; 64],
    // Keyed once: the HMAC key schedule costs more than hashing a short
    // value, and cloning a prepared instance is a copy.
    pub(super) mac: Hmac<Sha256>,
}

/// AES-256-SIV (RFC 5297) as `aes_siv::siv::Aes256Siv`, but over
/// [`CtrAes256`]: aes-siv expands the CTR key for every value, and with the
/// full `Aes256` type that included a decryption schedule SIV never uses —
/// together a fifth of the writer's CPU. Same cipher, same bytes (tested
/// against `Aes256Siv` at every length).
pub(super) type Aes256Siv = Siv<CtrAes256, cmac::Cmac<aes::Aes256Enc>>;

/// The encrypt-only AES-256 for aes-siv's CTR step, whose `new` shares the
/// schedule this thread last expanded for the same key instead of expanding
/// it again. Shared, not cloned: `Aes256Enc` carries both its AES-NI and
/// its software schedule, and copying that kilobyte twice per login was 5%
/// of the writer's CPU. Every block operation is `aes::Aes256Enc`'s own.
#[derive(Clone)]
pub(super) struct CtrAes256(Rc<aes::Aes256Enc>);

std::thread_local! {
    static CTR_SCHEDULE: std::cell::RefCell<Option<([u8; 32], Rc<aes::Aes256Enc>)>> =
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
                Some((k, schedule)) if k[..] == key[..] => Self(Rc::clone(schedule)),
                _ => {
                    let schedule = Rc::new(aes::Aes256Enc::new(key));
                    let mut k = [0u8; 32];
                    k.copy_from_slice(key);
                    *cached = Some((k, Rc::clone(&schedule)));
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
        // HKDF-SHA-256 refuses only outputs over 255 * 32 bytes.
        for (info, out) in [
            (&b"encrypt: aes-256-siv"[..], &mut siv_key[..]),
            (b"hash: hmac-sha-256", &mut hmac_key),
            (b"key id", &mut id),
        ] {
            hkdf.expand(info, out)
                .unwrap_or_else(|_| unreachable!("HKDF-SHA-256 gives up to 8160 bytes"));
        }
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
    pub(super) fn with_cipher<R>(&self, f: impl FnOnce(&mut Aes256Siv) -> R) -> R {
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
