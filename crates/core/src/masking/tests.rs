use super::*;
use aes_siv::KeyInit;
use base64::engine::general_purpose::STANDARD;
use hmac::Hmac;
use serde_json::json;
use sha2::Sha256;

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
    let m = test_masker(7);
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
    let m = test_masker(7);
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
    let m = test_masker(7);
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
    let without_old = test_masker(7);
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
    let m = test_masker(7);
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
    let m = test_masker(7);
    let v = m.apply(Strategy::TruncateIp, &json!("nope")).unwrap();
    assert!(v.as_str().unwrap().starts_with("hmac:"));
}

#[test]
fn objects_are_masked_at_any_depth_and_drop_removes() {
    let mut policy = Policy::default();
    policy.fields.insert("secret".into(), Strategy::Drop);
    let m = Masker::new(test_masker(7).keyring, policy);
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
