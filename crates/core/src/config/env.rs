//! Where settings come from: variables looked up by name.
//!
//! Loaders take an [`Env`] instead of reading the process environment, so a
//! binary lays its flags over the real environment (and `sluice up` its
//! first-run defaults under it) without forging anything, and tests build
//! settings from a plain list — no `set_var`, no races between tests.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use super::ConfigError;

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// A source of settings. A value that is empty or blank counts as unset.
#[derive(Clone)]
pub struct Env {
    lookup: Arc<Lookup>,
}

impl fmt::Debug for Env {
    /// Never the values: some are secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Env(..)")
    }
}

const SIZE: &str = "expected a size in bytes, such as 10485760 or 10MiB";

impl Env {
    /// The process environment (after `.env`). A value that is not UTF-8
    /// reads as unset here: [`super::check_utf8_env`] refuses it first.
    pub fn process() -> Self {
        Self::from_fn(|name| std::env::var(name).ok())
    }

    /// Variables from a list, for tests and tools: nothing else is set.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let map: HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::from_fn(move |name| map.get(name).cloned())
    }

    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            lookup: Arc::new(lookup),
        }
    }

    /// `value`, when given (a command-line flag), wins over `name`.
    #[must_use]
    pub fn with(self, name: &'static str, value: Option<String>) -> Self {
        let Some(value) = value else { return self };
        let inner = self.lookup;
        Self::from_fn(move |n| {
            if n == name {
                Some(value.clone())
            } else {
                inner(n)
            }
        })
    }

    /// `value` where `name` is unset: a default of one binary only.
    #[must_use]
    pub fn or(self, name: &'static str, value: &'static str) -> Self {
        let inner = self.lookup;
        Self::from_fn(move |n| {
            let found = inner(n).filter(|v| !v.trim().is_empty());
            if found.is_none() && n == name {
                Some(value.to_owned())
            } else {
                found
            }
        })
    }

    /// The value of `name`, untrimmed; `None` when unset or blank.
    pub fn var(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    pub fn is_set(&self, name: &str) -> bool {
        self.var(name).is_some()
    }

    /// A secret, trimmed, kept where it cannot be logged by mistake.
    pub fn secret(&self, name: &str) -> Option<SecretString> {
        self.var(name).map(|v| SecretString::from(v.trim()))
    }

    /// A parsed value, or `default` when unset; `expected` says what a bad
    /// value should have been (the value itself is never echoed).
    pub fn parse<T: FromStr>(
        &self,
        name: &'static str,
        default: T,
        expected: &str,
    ) -> Result<T, ConfigError> {
        match self.var(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| ConfigError::new(name, expected)),
        }
    }

    /// Whole milliseconds.
    pub fn millis(
        &self,
        name: &'static str,
        default: Duration,
        expected: &str,
    ) -> Result<Duration, ConfigError> {
        let ms = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        self.parse(name, ms, expected).map(Duration::from_millis)
    }

    /// Whole seconds.
    pub fn secs(
        &self,
        name: &'static str,
        default: Duration,
        expected: &str,
    ) -> Result<Duration, ConfigError> {
        self.parse(name, default.as_secs(), expected)
            .map(Duration::from_secs)
    }

    /// A size in bytes ([`parse_bytes`]).
    pub fn bytes(&self, name: &'static str, default: usize) -> Result<usize, ConfigError> {
        match self.var(name) {
            None => Ok(default),
            Some(v) => parse_bytes(&v).ok_or_else(|| ConfigError::new(name, SIZE)),
        }
    }
}

/// A size in bytes: a whole number, optionally with KiB, MiB or GiB.
pub fn parse_bytes(raw: &str) -> Option<usize> {
    let raw = raw.trim();
    let digits = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(digits);
    let number: usize = number.parse().ok()?;
    let multiplier = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1024,
        "mib" | "m" => 1024 * 1024,
        "gib" | "g" => 1024 * 1024 * 1024,
        _ => return None,
    };
    number.checked_mul(multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("10485760"), Some(10 * 1024 * 1024));
        assert_eq!(parse_bytes("10MiB"), Some(10 * 1024 * 1024));
        assert_eq!(parse_bytes(" 256 KiB "), Some(256 * 1024));
        assert_eq!(parse_bytes("1g"), Some(1024 * 1024 * 1024));
        assert_eq!(parse_bytes("ten"), None);
        assert_eq!(parse_bytes("-5"), None);
        assert_eq!(parse_bytes("5 MB"), None);
        assert_eq!(parse_bytes(""), None);
        assert_eq!(parse_bytes("99999999999999999999GiB"), None);
    }

    #[test]
    fn layers() {
        let env = Env::from_pairs([("A", "1"), ("B", " "), ("S", " s3cret ")])
            .with("A", Some("2".to_owned()))
            .with("C", None)
            .or("B", "3")
            .or("A", "4");
        assert_eq!(env.var("A").as_deref(), Some("2"));
        assert_eq!(env.var("B").as_deref(), Some("3"));
        assert!(!env.is_set("C"));
        assert_eq!(env.secret("S").unwrap().expose_secret(), "s3cret");
        assert!(!format!("{env:?}").contains("s3cret"));
        assert_eq!(env.parse("A", 0u8, "a number"), Ok(2));
        let err = Env::from_pairs([("N", "x")]).parse("N", 0u8, "a number");
        assert_eq!(err, Err(ConfigError::new("N", "a number")));
        assert_eq!(
            Env::from_pairs([("M", "9")]).millis("M", Duration::ZERO, "ms"),
            Ok(Duration::from_millis(9))
        );
    }
}
