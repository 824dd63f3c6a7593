//! The optional bearer token (`INGEST_TOKEN`) on `POST /events`.
//!
//! Both sides are hashed with SHA-256 and the digests compared in constant
//! time, so neither the content nor the length of the token leaks through
//! response timing. The token itself is not kept, nor ever printed.

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

#[derive(Clone)]
pub struct Token {
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    pub fn new(secret: &str) -> Self {
        Self {
            digest: Sha256::digest(secret.as_bytes()).into(),
        }
    }

    /// Checks `Authorization: Bearer <token>`.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(ApiError::Unauthorized(
                "the Authorization header is missing; send Authorization: Bearer <token>",
            ));
        };
        let value = value.as_bytes();
        let given = match value.split_at_checked(7) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest.trim_ascii(),
            _ => {
                return Err(ApiError::Unauthorized(
                    "the Authorization header is not a bearer token; send Authorization: Bearer <token>",
                ));
            }
        };
        let digest: [u8; 32] = Sha256::digest(given).into();
        if bool::from(digest.ct_eq(&self.digest)) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized("the bearer token is not valid"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_tokens() {
        let token = Token::new("s3cret");
        assert!(token.check(&with("Bearer s3cret")).is_ok());
        assert!(token.check(&with("bearer  s3cret ")).is_ok());
        assert!(token.check(&with("Bearer s3cre")).is_err());
        assert!(token.check(&with("Bearer s3cret2")).is_err());
        assert!(token.check(&with("Basic s3cret")).is_err());
        assert!(token.check(&with("Bearer")).is_err());
        assert!(token.check(&HeaderMap::new()).is_err());
        assert_eq!(format!("{token:?}"), "Token(..)");
    }
}
