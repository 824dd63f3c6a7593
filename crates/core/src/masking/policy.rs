//! The masking policy: which strategy each field name gets, the defaults,
//! and a policy file laid over them.

use std::collections::HashMap;
use std::path::Path;

use crate::config::ConfigError;

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
    pub(super) fields: HashMap<String, Strategy>,
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
