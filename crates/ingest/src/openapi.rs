//! The OpenAPI 3.1 document of ingest's HTTP API, served at
//! `GET /openapi.json`.
//!
//! Written by hand and kept in the repository (`crates/ingest/openapi.json`)
//! rather than generated, so the contract is reviewed as a contract: every
//! route, request form, header, status and error code, each with its JSON
//! body. It is compiled in, so the binary serves exactly the document it was
//! built with. The tests here and in `tests/it/openapi.rs` hold it to the
//! code: every error [`ApiError`](crate::error::ApiError) can answer, and
//! every route the router registers, is documented; `.ci/run` runs
//! schemathesis against a running ingest with it.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, as kept in the repository.
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// `GET /openapi.json`.
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use crate::parse::{ParseError, Place};
    use serde_json::Value;

    /// One of every error, each variant named so that a new one does not
    /// compile until it is listed here (and so checked against the document).
    fn every_error() -> Vec<ApiError> {
        let all = vec![
            ApiError::Parse(ParseError::InvalidJson {
                reason: String::new(),
                line: 1,
                column: 1,
            }),
            ApiError::Parse(ParseError::NotAnObject { place: Place::Body }),
            ApiError::Parse(ParseError::TooDeep { place: Place::Body }),
            ApiError::Parse(ParseError::DuplicateEvents),
            ApiError::Parse(ParseError::Empty),
            ApiError::BrokenEncoding("gzip"),
            ApiError::BodyRead,
            ApiError::Unauthorized(""),
            ApiError::BadIdempotencyKey,
            ApiError::BodyTooLarge { limit: 1 },
            ApiError::DecodedTooLarge { limit: 1 },
            ApiError::EventTooLarge { index: 0, limit: 1 },
            ApiError::EventTooLargeForQueue { index: 0 },
            ApiError::UnsupportedMediaType,
            ApiError::UnsupportedEncoding,
            ApiError::Timeout { seconds: 1 },
            ApiError::QueueUnavailable { retry_after: 1 },
            ApiError::QueueFull { retry_after: 1 },
            ApiError::Overloaded { retry_after: 1 },
            ApiError::ShuttingDown { retry_after: 1 },
            ApiError::Internal,
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
        ];
        for e in &all {
            // Exhaustive on purpose: no `_` arm.
            match e {
                ApiError::Parse(
                    ParseError::InvalidJson { .. }
                    | ParseError::NotAnObject { .. }
                    | ParseError::TooDeep { .. }
                    | ParseError::DuplicateEvents
                    | ParseError::Empty,
                )
                | ApiError::BrokenEncoding(_)
                | ApiError::BodyRead
                | ApiError::Unauthorized(_)
                | ApiError::BadIdempotencyKey
                | ApiError::BodyTooLarge { .. }
                | ApiError::DecodedTooLarge { .. }
                | ApiError::EventTooLarge { .. }
                | ApiError::EventTooLargeForQueue { .. }
                | ApiError::UnsupportedMediaType
                | ApiError::UnsupportedEncoding
                | ApiError::Timeout { .. }
                | ApiError::QueueUnavailable { .. }
                | ApiError::QueueFull { .. }
                | ApiError::Overloaded { .. }
                | ApiError::ShuttingDown { .. }
                | ApiError::Internal
                | ApiError::NotFound
                | ApiError::MethodNotAllowed => {}
            }
        }
        all
    }

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")
    }

    /// The codes a documented response allows for `error`.
    fn codes(doc: &Value, response: &Value) -> Vec<String> {
        let schema = &response["content"]["application/json"]["schema"];
        let parts = schema["allOf"]
            .as_array()
            .expect("an error response's allOf");
        assert!(
            parts
                .iter()
                .any(|p| p["$ref"] == "#/components/schemas/Error"),
            "error responses use the Error schema: {response}"
        );
        assert!(doc["components"]["schemas"]["Error"].is_object());
        parts
            .iter()
            .flat_map(|p| p["properties"]["error"]["enum"].as_array())
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn it_is_openapi_3_1() {
        assert_eq!(document()["openapi"], "3.1.0");
    }

    /// Every error POST /events can answer is documented with its status and
    /// code — except `not_found`, which only an undocumented path gets.
    #[test]
    fn every_error_of_post_events_is_documented() {
        let doc = document();
        let responses = &doc["paths"]["/events"]["post"]["responses"];
        for e in every_error() {
            if matches!(e, ApiError::NotFound) {
                continue;
            }
            let status = e.status().as_u16().to_string();
            let response = &responses[&status];
            assert!(
                response.is_object(),
                "status {status} of {e:?} undocumented"
            );
            let codes = codes(&doc, response);
            assert!(
                codes.iter().any(|c| c == e.code()),
                "code {} not documented under {status}: {codes:?}",
                e.code()
            );
            if e.status().as_u16() == 503 {
                assert!(response["headers"]["Retry-After"]["required"] == true);
            }
        }
    }

    /// No documented code that the service never sends: each one a status
    /// documents is the code of some error with that status (`/readyz`'s
    /// `not_ready` is its own, checked against a running service).
    #[test]
    fn every_documented_code_exists() {
        let doc = document();
        let known: Vec<(String, &'static str)> = every_error()
            .iter()
            .map(|e| (e.status().as_u16().to_string(), e.code()))
            .chain([("503".to_owned(), "not_ready")])
            .collect();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if !status.starts_with(['4', '5']) {
                        continue;
                    }
                    for code in codes(&doc, response) {
                        assert!(
                            known.iter().any(|(s, c)| s == status && *c == code),
                            "{method} {path} documents {status} {code}, which nothing answers"
                        );
                    }
                }
            }
        }
    }
}
