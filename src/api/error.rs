//! One error shape for every route — `{"error": {"code": "...", "message": "..."}}` — and the one
//! table that maps every error code to its HTTP status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 503 and 429.
    pub retry_after: Option<u64>,
    /// Library problems, for `invalid_library`.
    pub problems: Vec<crate::error::LibraryProblem>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (see the README's table).
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<crate::error::LibraryProblem>,
}

/// Every code the API returns, with its status: the contract in one place.
pub const CODES: &[(&str, u16, &str)] = &[
    (
        "invalid_json",
        400,
        "the body is not valid JSON for this endpoint",
    ),
    (
        "invalid_request",
        400,
        "a required field or header is missing or malformed",
    ),
    ("empty_audio", 400, "the upload has no bytes"),
    ("unauthorized", 401, "no API key, or an unknown one"),
    (
        "forbidden",
        403,
        "the API key lacks the scope this endpoint needs",
    ),
    ("not_found", 404, "no such route or need"),
    (
        "method_not_allowed",
        405,
        "the route exists but not for this method",
    ),
    (
        "request_timeout",
        408,
        "the request took longer than the configured limit",
    ),
    (
        "payload_too_large",
        413,
        "the body is larger than the configured limit",
    ),
    (
        "audio_too_long",
        413,
        "the audio is longer than the configured limit",
    ),
    (
        "text_too_long",
        413,
        "the text is longer than the configured limit",
    ),
    (
        "batch_too_large",
        413,
        "more texts than the configured batch limit",
    ),
    (
        "unsupported_media_type",
        415,
        "the content type is not one this endpoint accepts",
    ),
    (
        "unsupported_format",
        415,
        "the audio container or codec is not supported",
    ),
    ("corrupt_audio", 422, "the audio is damaged or truncated"),
    (
        "audio_too_short",
        422,
        "the audio is shorter than the configured minimum",
    ),
    ("invalid_input", 422, "a field has an invalid value"),
    (
        "invalid_library",
        422,
        "the needs library on disk is invalid; the current one keeps serving",
    ),
    (
        "idempotency_key_reused",
        422,
        "the Idempotency-Key was used before with a different request",
    ),
    (
        "too_many_requests",
        429,
        "this API key has too many requests in flight",
    ),
    (
        "busy",
        503,
        "every transcription worker and queue slot is taken; retry after the given seconds",
    ),
    (
        "not_ready",
        503,
        "the service is starting or its models are not loaded",
    ),
    (
        "model_unavailable",
        503,
        "a model file is missing or damaged",
    ),
    ("internal", 500, "an error on the server's side"),
];

fn status_of(code: &str) -> StatusCode {
    CODES
        .iter()
        .find(|(c, _, _)| *c == code)
        .and_then(|(_, s, _)| StatusCode::from_u16(*s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl ApiError {
    pub fn new(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: status_of(code),
            code,
            message: message.into(),
            retry_after: None,
            problems: Vec::new(),
        }
    }

    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after = Some(seconds);
        self
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let code = match &e {
            // Faults of the server, not of the request: logged, reported without internals.
            Error::Asr(_) | Error::Embedding(_) | Error::Index(_) | Error::Io(_) => {
                tracing::error!(error = %e, "request failed on the server side");
                return ApiError::new(
                    "internal",
                    "the server could not process this request; it has been logged",
                );
            }
            other => other.code(),
        };
        let mut err = ApiError::new(code, e.to_string());
        if let Error::Library(p) = e {
            err.message = format!(
                "the library has {} problem(s); the current library keeps serving",
                p.0.len()
            );
            err.problems = p.0;
        }
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                problems: self.problems,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_error_code_has_a_client_status() {
        for e in [
            Error::EmptyAudio,
            Error::UnsupportedFormat("x".into()),
            Error::CorruptAudio("x".into()),
            Error::AudioTooLong {
                seconds: 1.0,
                limit: 1.0,
            },
            Error::AudioTooShort {
                seconds: 1.0,
                limit: 1.0,
            },
            Error::PayloadTooLarge { bytes: 1, limit: 1 },
            Error::TextTooLong { chars: 1, limit: 1 },
            Error::InvalidInput("x".into()),
            Error::Library(crate::error::LibraryProblems(vec![])),
        ] {
            let api = ApiError::from(e);
            assert!(
                api.status.is_client_error(),
                "{} → {}",
                api.code,
                api.status
            );
        }
        assert_eq!(
            ApiError::from(Error::ModelUnavailable("x".into())).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::from(Error::Asr("x".into())).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        assert!(CODES.iter().all(|(c, _, _)| seen.insert(*c)));
    }
}
