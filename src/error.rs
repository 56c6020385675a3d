//! The crate-wide error type. Every variant has a stable machine code (`Error::code`) that the CLI
//! prints and the HTTP API maps to a status in one table (`api::error`).

use std::fmt;

/// A problem in a needs library file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct LibraryProblem {
    /// File path relative to the library directory (or `<embedded>/…`).
    pub file: String,
    /// 1-based line, when the problem points at one place in a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The field or id concerned, e.g. `need.pain_management.packs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for LibraryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, " [{field}]")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found while loading a library; an invalid library is never half-loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryProblems(pub Vec<LibraryProblem>);

impl fmt::Display for LibraryProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s)", self.0.len())?;
        for p in &self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the upload is empty (0 bytes)")]
    EmptyAudio,
    #[error("unsupported audio format: {0}")]
    UnsupportedFormat(String),
    #[error("corrupt or truncated audio: {0}")]
    CorruptAudio(String),
    /// `seconds` is the audio's length where it is known (its header declares it); decoding
    /// stops at the limit, so it never measures more than the limit itself.
    #[error("audio is longer than {limit:.0} s{}", measured(.seconds))]
    AudioTooLong { seconds: Option<f64>, limit: f64 },
    #[error("audio is {seconds:.2} s long; at least {limit:.2} s is needed")]
    AudioTooShort { seconds: f64, limit: f64 },
    #[error("upload is {bytes} bytes; the limit is {limit} bytes")]
    PayloadTooLarge { bytes: usize, limit: usize },
    #[error("text is {chars} characters long; the limit is {limit}")]
    TextTooLong { chars: usize, limit: usize },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("invalid needs library: {0}")]
    Library(LibraryProblems),
    #[error("another library reload is running; retry when it has finished")]
    ReloadInProgress,
    #[error("{0}")]
    ModelUnavailable(String),
    #[error("speech recognition failed: {0}")]
    Asr(String),
    #[error("sentence embedding failed: {0}")]
    Embedding(String),
    #[error("search index error: {0}")]
    Index(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn measured(seconds: &Option<f64>) -> String {
    match seconds {
        Some(s) => format!(" (it is {s:.1} s long)"),
        None => String::new(),
    }
}

impl Error {
    /// The stable, documented code of this error (part of the API contract).
    pub fn code(&self) -> &'static str {
        match self {
            Error::EmptyAudio => "empty_audio",
            Error::UnsupportedFormat(_) => "unsupported_format",
            Error::CorruptAudio(_) => "corrupt_audio",
            Error::AudioTooLong { .. } => "audio_too_long",
            Error::AudioTooShort { .. } => "audio_too_short",
            Error::PayloadTooLarge { .. } => "payload_too_large",
            Error::TextTooLong { .. } => "text_too_long",
            Error::InvalidInput(_) => "invalid_input",
            Error::Library(_) => "invalid_library",
            Error::ReloadInProgress => "reload_in_progress",
            Error::ModelUnavailable(_) => "model_unavailable",
            Error::Asr(_) => "asr_failed",
            Error::Embedding(_) => "embedding_failed",
            Error::Index(_) => "index_failed",
            Error::Io(_) => "io_error",
        }
    }

    /// True when the error is about what the client sent (as opposed to the server's state).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Error::EmptyAudio
                | Error::UnsupportedFormat(_)
                | Error::CorruptAudio(_)
                | Error::AudioTooLong { .. }
                | Error::AudioTooShort { .. }
                | Error::PayloadTooLarge { .. }
                | Error::TextTooLong { .. }
                | Error::InvalidInput(_)
                | Error::Library(_)
                | Error::ReloadInProgress
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A value a client sent, quoted for an error message: enough to recognise it (40 characters,
/// then "…"), not whatever the client managed to send.
pub fn excerpt(value: &str) -> String {
    let shown: String = value.chars().take(40).collect();
    let more = if shown.len() < value.len() { "…" } else { "" };
    format!("{shown:?}{more}")
}
