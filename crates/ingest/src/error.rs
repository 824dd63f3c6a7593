//! Every way a request can fail, and its answer: status, a short code and a
//! sentence, as `{"error": …, "detail": …}`.
//!
//! The mapping lives here and nowhere else. Details name positions, limits
//! and headers, never event content (it carries personal data).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::enqueue::EnqueueError;
use crate::parse::ParseError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("the body is not a valid {0} stream")]
    BrokenEncoding(&'static str),
    #[error("the body could not be read to its end")]
    BodyRead,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("the Idempotency-Key header must be one value of 1 to 255 printable ASCII characters")]
    BadIdempotencyKey,
    #[error("the body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the decompressed body is larger than the limit of {limit} bytes")]
    DecodedTooLarge { limit: usize },
    #[error(
        "event {index} (counting from 0) is larger than one queue message of at most {limit} bytes once compressed"
    )]
    EventTooLarge { index: usize, limit: usize },
    #[error("event {index} (counting from 0) is larger than the queue accepts in one message")]
    EventTooLargeForQueue { index: usize },
    #[error(
        "this Content-Type is not accepted; send application/json or application/x-ndjson (UTF-8)"
    )]
    UnsupportedMediaType,
    #[error("this Content-Encoding is not accepted; send gzip, deflate or none")]
    UnsupportedEncoding,
    #[error("the body did not arrive within {seconds} s")]
    Timeout { seconds: u64 },
    #[error(
        "the queue did not accept every event in time; some may be queued: retry later with the same Idempotency-Key"
    )]
    QueueUnavailable { retry_after: u64 },
    #[error(
        "the queue is full until the writers drain it; not all of the events are stored, retry later"
    )]
    QueueFull { retry_after: u64 },
    #[error("too many events are waiting for the queue; retry later")]
    Overloaded { retry_after: u64 },
    #[error("the service is shutting down; retry later")]
    ShuttingDown { retry_after: u64 },
    #[error("the request could not be processed")]
    Internal,
    #[error("no such endpoint; events go to POST /events")]
    NotFound,
    #[error("this method is not allowed here")]
    MethodNotAllowed,
}

impl ApiError {
    /// From a failure to enqueue, with the `Retry-After` to suggest.
    pub fn enqueue(e: EnqueueError, retry_after: u64) -> Self {
        match e {
            EnqueueError::Unavailable => ApiError::QueueUnavailable { retry_after },
            EnqueueError::Full => ApiError::QueueFull { retry_after },
            EnqueueError::Overloaded => ApiError::Overloaded { retry_after },
            EnqueueError::Closed => ApiError::ShuttingDown { retry_after },
            EnqueueError::TooLarge { index } => ApiError::EventTooLargeForQueue { index },
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Parse(_)
            | ApiError::BrokenEncoding(_)
            | ApiError::BodyRead
            | ApiError::BadIdempotencyKey => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::BodyTooLarge { .. }
            | ApiError::DecodedTooLarge { .. }
            | ApiError::EventTooLarge { .. }
            | ApiError::EventTooLargeForQueue { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType | ApiError::UnsupportedEncoding => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::QueueUnavailable { .. }
            | ApiError::QueueFull { .. }
            | ApiError::Overloaded { .. }
            | ApiError::ShuttingDown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The short, stable code clients can match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Parse(ParseError::InvalidJson { .. } | ParseError::DuplicateEvents) => {
                "invalid_json"
            }
            ApiError::Parse(ParseError::NotAnObject { .. }) => "not_an_object",
            ApiError::Parse(ParseError::TooDeep { .. }) => "too_deep",
            ApiError::Parse(ParseError::Empty) => "empty_body",
            ApiError::BrokenEncoding(_) => "bad_encoding",
            ApiError::BodyRead => "bad_body",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::BadIdempotencyKey => "bad_idempotency_key",
            ApiError::BodyTooLarge { .. } | ApiError::DecodedTooLarge { .. } => "body_too_large",
            ApiError::EventTooLarge { .. } | ApiError::EventTooLargeForQueue { .. } => {
                "event_too_large"
            }
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::UnsupportedEncoding => "unsupported_encoding",
            ApiError::Timeout { .. } => "request_timeout",
            ApiError::QueueUnavailable { .. } => "queue_unavailable",
            ApiError::QueueFull { .. } => "queue_full",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::ShuttingDown { .. } => "shutting_down",
            ApiError::Internal => "internal",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::QueueUnavailable { retry_after }
            | ApiError::QueueFull { retry_after }
            | ApiError::Overloaded { retry_after }
            | ApiError::ShuttingDown { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.code(), "detail": self.to_string()}));
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let ApiError::Unauthorized(_) = self {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let ApiError::BodyTooLarge { .. }
        | ApiError::DecodedTooLarge { .. }
        | ApiError::Overloaded { .. }
        | ApiError::Timeout { .. } = self
        {
            // The rest of the body was not read: do not reuse the connection.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        let e = ApiError::QueueUnavailable { retry_after: 5 };
        let r = e.into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        let e = ApiError::Unauthorized("no token");
        assert_eq!(
            e.into_response().headers()[header::WWW_AUTHENTICATE],
            "Bearer"
        );
        assert_eq!(
            ApiError::EventTooLarge {
                index: 2,
                limit: 262_144
            }
            .to_string(),
            "event 2 (counting from 0) is larger than one queue message of at most 262144 bytes once compressed"
        );
    }
}
