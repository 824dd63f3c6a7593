//! Finding masked values inside stored text.
//!
//! Every value the `encrypt` and `hash` strategies make is a token
//! `enc:<key id>:<base64url>` or `hmac:<key id>:<base64url>`: a whole typed
//! column, a whole JSON string inside `extra` or a masked rejected payload,
//! or a whole rejected payload encrypted as one. Scanning the stored text
//! for tokens — rather than parsing JSON and writing it back — finds them at
//! any depth and changes nothing else: a rejected payload keeps its exact
//! bytes (key order, odd numbers) but for the tokens replaced.

use sluice_core::masking::{ENCRYPTED_PREFIX, HASHED_PREFIX};

/// Which strategy made a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// `enc:`: AES-SIV, recoverable with its key.
    Enc,
    /// `hmac:`: one way.
    Hmac,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Enc => ENCRYPTED_PREFIX,
            Kind::Hmac => HASHED_PREFIX,
        }
    }
}

/// One token found in a text: `text[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    pub kind: Kind,
    pub key_id: &'a str,
    pub text: &'a str,
    pub start: usize,
    pub end: usize,
}

/// Longest key id accepted (ids are 8 hex digits today).
const MAX_KEY_ID: usize = 16;

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// A byte that may sit inside a token, so a prefix right after it is not the
/// start of one (`xenc:…`).
fn continues_word(b: u8) -> bool {
    is_base64url(b) || b == b':'
}

/// Every token in `text`, in order.
pub fn find(text: &str) -> Vec<Token<'_>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let kind = if bytes[i..].starts_with(b"enc:") {
            Some((Kind::Enc, 4))
        } else if bytes[i..].starts_with(b"hmac:") {
            Some((Kind::Hmac, 5))
        } else {
            None
        };
        let Some((kind, prefix)) = kind.filter(|_| i == 0 || !continues_word(bytes[i - 1])) else {
            i += 1;
            continue;
        };
        match parse_at(text, i, prefix, kind) {
            Some(token) => {
                i = token.end;
                out.push(token);
            }
            None => i += prefix,
        }
    }
    out
}

fn parse_at(text: &str, start: usize, prefix: usize, kind: Kind) -> Option<Token<'_>> {
    let bytes = text.as_bytes();
    let id_start = start + prefix;
    let id_len = bytes[id_start..]
        .iter()
        .take_while(|b| b.is_ascii_hexdigit())
        .count();
    if id_len == 0 || id_len > MAX_KEY_ID || bytes.get(id_start + id_len) != Some(&b':') {
        return None;
    }
    let data_start = id_start + id_len + 1;
    let data_len = bytes[data_start..]
        .iter()
        .take_while(|b| is_base64url(**b))
        .count();
    if data_len == 0 {
        return None;
    }
    let end = data_start + data_len;
    Some(Token {
        kind,
        key_id: &text[id_start..id_start + id_len],
        text: &text[start..end],
        start,
        end,
    })
}

/// `text` with some tokens replaced: `replace` returns the new text of a
/// token, or `None` to keep it. `None` when nothing was replaced.
pub fn rewrite(
    text: &str,
    mut replace: impl FnMut(&Token<'_>) -> Option<String>,
) -> Option<String> {
    let mut out = String::new();
    let mut copied = 0;
    let mut changed = false;
    for token in find(text) {
        if let Some(new) = replace(&token) {
            out.push_str(&text[copied..token.start]);
            out.push_str(&new);
            copied = token.end;
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

/// The token `text` is, when it is exactly one (a typed column, a payload
/// encrypted whole).
pub fn whole(text: &str) -> Option<Token<'_>> {
    find(text)
        .into_iter()
        .next()
        .filter(|t| t.start == 0 && t.end == text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tokens_at_any_depth_and_only_whole_ones() {
        let text = r#"{"a":"enc:1a2b3c4d:AAA_-z","b":[{"c":"hmac:0f:xyz"}],"d":"xenc:1a:bb","e":"enc:zz:aa","f":"enc:12:"}"#;
        let found = find(text);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].text, "enc:1a2b3c4d:AAA_-z");
        assert_eq!(found[0].key_id, "1a2b3c4d");
        assert_eq!(found[0].kind, Kind::Enc);
        assert_eq!(found[1].text, "hmac:0f:xyz");
        assert_eq!(found[1].kind, Kind::Hmac);
        assert_eq!(
            whole("enc:1a2b3c4d:AAA").map(|t| t.key_id),
            Some("1a2b3c4d")
        );
        assert!(whole(" enc:1a2b3c4d:AAA").is_none());
    }

    #[test]
    fn rewrite_changes_only_the_tokens_chosen() {
        let text = r#"{"z": 1e400, "a":"enc:01:AA","b":"enc:02:BB"}"#;
        let out = rewrite(text, |t| (t.key_id == "01").then(|| "enc:03:CC".to_owned()));
        assert_eq!(
            out.unwrap(),
            r#"{"z": 1e400, "a":"enc:03:CC","b":"enc:02:BB"}"#
        );
        assert_eq!(rewrite(text, |_| None), None);
    }
}
