//! One error shape for every route — `{"error": {"code": "...", "message": "..."}}` — and the one
//! table that maps every error code to its HTTP status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;

/// Declares [`Code`] with, for every variant, its string, HTTP status and meaning: a code
/// cannot exist without a status, so "no 500 from a typo" holds at compile time.
macro_rules! codes {
    ($($variant:ident => ($name:literal, $status:ident, $meaning:literal),)+) => {
        /// Every error code the API returns (the contract: README's error table lists them all).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum Code {
            $($variant,)+
        }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)+];

            /// The stable machine-readable string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)+
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $(Code::$variant => StatusCode::$status,)+
                }
            }

            /// When a client gets it.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(Code::$variant => $meaning,)+
                }
            }
        }
    };
}

codes! {
    InvalidJson => ("invalid_json", BAD_REQUEST, "the body is not valid JSON for this endpoint"),
    InvalidRequest => ("invalid_request", BAD_REQUEST, "a required field or header is missing, duplicated or malformed"),
    EmptyAudio => ("empty_audio", BAD_REQUEST, "the upload has no bytes"),
    Unauthorized => ("unauthorized", UNAUTHORIZED, "no API key, or an unknown one"),
    Forbidden => ("forbidden", FORBIDDEN, "the API key lacks the scope this endpoint needs"),
    NotFound => ("not_found", NOT_FOUND, "no such route or need"),
    MethodNotAllowed => ("method_not_allowed", METHOD_NOT_ALLOWED, "the route exists but not for this method"),
    RequestTimeout => ("request_timeout", REQUEST_TIMEOUT, "the request took longer than the configured limit, or its headers or body arrived too slowly"),
    EventNotDead => ("event_not_dead", CONFLICT, "the webhook event is pending or delivered, not dead: only a dead event is sent again"),
    ReloadInProgress => ("reload_in_progress", CONFLICT, "another library reload is running; retry after it"),
    PayloadTooLarge => ("payload_too_large", PAYLOAD_TOO_LARGE, "the body is larger than the configured limit (refused as soon as Content-Length says so)"),
    AudioTooLong => ("audio_too_long", PAYLOAD_TOO_LARGE, "the audio is longer than the configured limit"),
    TextTooLong => ("text_too_long", PAYLOAD_TOO_LARGE, "a text is longer than the configured limit"),
    BatchTooLarge => ("batch_too_large", PAYLOAD_TOO_LARGE, "more texts, or more characters in all, than the configured batch or evaluation limits"),
    UnsupportedMediaType => ("unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "the content type is not one this endpoint accepts"),
    UnsupportedFormat => ("unsupported_format", UNSUPPORTED_MEDIA_TYPE, "the audio container or codec is not supported"),
    HeadersTooLarge => ("headers_too_large", REQUEST_HEADER_FIELDS_TOO_LARGE, "the request line and headers are larger than the server reads (32 KiB), or more than 100 headers"),
    CorruptAudio => ("corrupt_audio", UNPROCESSABLE_ENTITY, "the audio is damaged, truncated or implausible (such as a sample rate below 4 kHz)"),
    AudioTooShort => ("audio_too_short", UNPROCESSABLE_ENTITY, "the audio is shorter than the configured minimum"),
    InvalidInput => ("invalid_input", UNPROCESSABLE_ENTITY, "a field has an invalid value"),
    InvalidLibrary => ("invalid_library", UNPROCESSABLE_ENTITY, "the needs library on disk is invalid; the current one keeps serving"),
    IdempotencyKeyReused => ("idempotency_key_reused", UNPROCESSABLE_ENTITY, "the Idempotency-Key was used before by this API key with a different request"),
    TooManyRequests => ("too_many_requests", TOO_MANY_REQUESTS, "this API key has server.per_key_inflight memos in flight"),
    Internal => ("internal", INTERNAL_SERVER_ERROR, "an error on the server's side (logged); never caused by what a request contains"),
    Busy => ("busy", SERVICE_UNAVAILABLE, "every transcription slot, or every upload slot, is taken; retry after the given seconds"),
    NotReady => ("not_ready", SERVICE_UNAVAILABLE, "the service is starting, stopping, or its models are not loaded"),
    ModelUnavailable => ("model_unavailable", SERVICE_UNAVAILABLE, "a model file is missing or damaged"),
    ArchiveUnavailable => ("archive_unavailable", SERVICE_UNAVAILABLE, "the memo was processed but the archive could not store it (its queue stayed full, or the database failed), so no result is given; nothing was kept under its memo_id: retry after the given seconds"),
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
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
    pub code: Code,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<crate::error::LibraryProblem>,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> ApiError {
        ApiError {
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

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message.clone(),
                problems: self.problems.clone(),
            },
        }
    }
}

/// The API code of a crate error: every variant is named, so a new one cannot go unmapped.
fn code_of(e: &Error) -> Code {
    match e {
        Error::EmptyAudio => Code::EmptyAudio,
        Error::UnsupportedFormat(_) => Code::UnsupportedFormat,
        Error::CorruptAudio(_) => Code::CorruptAudio,
        Error::AudioTooLong { .. } => Code::AudioTooLong,
        Error::AudioTooShort { .. } => Code::AudioTooShort,
        Error::PayloadTooLarge { .. } => Code::PayloadTooLarge,
        Error::TextTooLong { .. } => Code::TextTooLong,
        Error::InvalidInput(_) => Code::InvalidInput,
        Error::Library(_) => Code::InvalidLibrary,
        Error::ReloadInProgress => Code::ReloadInProgress,
        Error::ModelUnavailable(_) => Code::ModelUnavailable,
        Error::Asr(_) | Error::Embedding(_) | Error::Index(_) | Error::Io(_) => Code::Internal,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        let code = code_of(&e);
        if code == Code::Internal {
            // Faults of the server, not of the request: logged, reported without internals.
            tracing::error!(error = %e, "request failed on the server side");
            return ApiError::new(
                Code::Internal,
                "the server could not process this request; it has been logged",
            );
        }
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
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                problems: self.problems,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
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
    fn every_client_error_has_a_client_status_and_the_cli_code() {
        for e in [
            Error::EmptyAudio,
            Error::UnsupportedFormat("x".into()),
            Error::CorruptAudio("x".into()),
            Error::AudioTooLong {
                seconds: Some(1.0),
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
            Error::ReloadInProgress,
        ] {
            assert!(e.is_client_error());
            let cli = e.code();
            let api = ApiError::from(e);
            assert!(
                api.status().is_client_error(),
                "{} → {}",
                api.code,
                api.status()
            );
            assert_eq!(api.code.as_str(), cli, "the CLI and the API name it alike");
        }
        assert_eq!(
            ApiError::from(Error::ModelUnavailable("x".into())).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        for e in [
            Error::Asr("x".into()),
            Error::Embedding("x".into()),
            Error::Index("x".into()),
            Error::Io(std::io::Error::other("x")),
        ] {
            assert!(!e.is_client_error());
            assert_eq!(
                ApiError::from(e).status(),
                StatusCode::INTERNAL_SERVER_ERROR
            );
        }
    }

    #[test]
    fn codes_are_unique_and_serialize_as_their_string() {
        let mut seen = std::collections::HashSet::new();
        for &c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert!(!c.meaning().is_empty());
        }
        // Only `internal` is a server fault.
        for &c in Code::ALL {
            assert_eq!(
                c.status().is_server_error() && c.status() != StatusCode::SERVICE_UNAVAILABLE,
                c == Code::Internal,
                "{c}"
            );
        }
    }

    /// README's error table lists every code with its status, and nothing else.
    #[test]
    fn the_readme_table_is_the_code_table() {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("| code | status | when |")
            .nth(1)
            .expect("README has the error table");
        let mut documented = std::collections::BTreeMap::new();
        for line in table.lines().skip(2) {
            if !line.starts_with('|') {
                break;
            }
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let status: u16 = cells[2].parse().expect("a status");
            for code in cells[1].split(',') {
                documented.insert(code.trim().trim_matches('`').to_string(), status);
            }
        }
        let actual: std::collections::BTreeMap<String, u16> = Code::ALL
            .iter()
            .map(|c| (c.as_str().to_string(), c.status().as_u16()))
            .collect();
        assert_eq!(documented, actual);
    }
}
