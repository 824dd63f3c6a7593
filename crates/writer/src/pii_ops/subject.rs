//! A data subject, as the database stores them: the stored forms of the
//! values given (under every configured key), and which rows hold one.
//!
//! The plaintexts stay in memory only, to search rejected payloads that were
//! encrypted whole (bytes that did not parse, so no field was masked in
//! them); they are never printed or logged.

use std::collections::HashSet;

use sluice_core::masking::Masker;

use super::store::ColumnKind;
use super::tokens;
use super::{OpsError, stored_forms};

pub struct Subject {
    forms: HashSet<String>,
    /// Forms that are not tokens (truncated networks), as JSON strings.
    quoted: Vec<String>,
    plains: Vec<Vec<u8>>,
}

impl Subject {
    /// `pairs` of (field, value).
    pub fn new(masker: &Masker, pairs: &[(String, String)]) -> Result<Self, OpsError> {
        let mut forms = HashSet::new();
        let mut quoted = Vec::new();
        for (field, value) in pairs {
            for form in stored_forms(masker, field, value)? {
                if tokens::whole(&form).is_none() {
                    quoted.push(format!("\"{form}\""));
                }
                forms.insert(form);
            }
        }
        Ok(Self {
            forms,
            quoted,
            plains: pairs
                .iter()
                .map(|(_, v)| v.as_bytes().to_vec())
                .filter(|v| !v.is_empty())
                .collect(),
        })
    }

    /// Whether a stored cell holds one of the subject's values.
    pub fn matches(&self, masker: &Masker, kind: ColumnKind, cell: &str) -> bool {
        if self.forms.contains(cell) {
            return true;
        }
        match kind {
            ColumnKind::Masked => false,
            ColumnKind::Json | ColumnKind::Payload => {
                if tokens::find(cell)
                    .iter()
                    .any(|t| self.forms.contains(t.text))
                    || self.quoted.iter().any(|q| cell.contains(q.as_str()))
                {
                    return true;
                }
                kind == ColumnKind::Payload && self.in_encrypted_payload(masker, cell)
            }
        }
    }

    /// A payload encrypted whole: decrypted, searched for a value as a whole
    /// word (so `1.2.3.4` does not match `1.2.3.45`).
    fn in_encrypted_payload(&self, masker: &Masker, cell: &str) -> bool {
        let Some(token) = tokens::whole(cell).filter(|t| t.kind == tokens::Kind::Enc) else {
            return false;
        };
        let Ok(plain) = masker.recover(token.text) else {
            return false;
        };
        self.plains.iter().any(|v| contains_word(&plain, v))
    }
}

fn contains_word(haystack: &[u8], needle: &[u8]) -> bool {
    if needle.is_empty() || needle.len() > haystack.len() {
        return false;
    }
    (0..=haystack.len() - needle.len()).any(|i| {
        haystack[i..].starts_with(needle)
            && (i == 0 || !haystack[i - 1].is_ascii_alphanumeric())
            && haystack
                .get(i + needle.len())
                .is_none_or(|b| !b.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_only() {
        assert!(contains_word(br#"{"ip":"1.2.3.4"}"#, b"1.2.3.4"));
        assert!(!contains_word(br#"{"ip":"1.2.3.45"}"#, b"1.2.3.4"));
        assert!(!contains_word(br#"{"ip":"11.2.3.4"}"#, b"1.2.3.4"));
        assert!(contains_word(b"1.2.3.4", b"1.2.3.4"));
    }
}
