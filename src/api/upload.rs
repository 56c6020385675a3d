//! A memo upload's body: the raw audio with its content type, or a multipart form with one
//! `audio` (or `file`) field and optional metadata fields. Read within the limits of
//! [`super::body`]; a form that sends a field twice, or a second file, is refused naming the
//! field rather than letting the last one win.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::StatusCode;

use super::body::{self, Buffer, Pace, Paced, TooSlow};
use super::error::{ApiError, Code};
use super::routes::MemoQuery;

/// Extra bytes allowed around the audio in a multipart body (boundaries, other fields).
pub const MULTIPART_OVERHEAD: usize = 64 * 1024;
/// Longest metadata field read (ids are at most 128 characters).
const FIELD_LIMIT: usize = 4 * 1024;

/// Audio types accepted as a raw body.
pub fn is_audio_type(ct: &str) -> bool {
    let ct = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    ct.starts_with("audio/")
        || matches!(
            ct.as_str(),
            "application/octet-stream"
                | "video/webm"
                | "video/mp4"
                | "video/3gpp"
                | "application/ogg"
        )
}

pub fn is_multipart(ct: &str) -> bool {
    ct.to_ascii_lowercase().starts_with("multipart/form-data")
}

/// The largest body a memo upload may declare.
pub fn limit(max_audio: usize, multipart: bool) -> usize {
    if multipart {
        max_audio + MULTIPART_OVERHEAD
    } else {
        max_audio
    }
}

fn multipart_error(
    e: axum::extract::multipart::MultipartError,
    limit: usize,
    slow: &TooSlow,
    pace: &Pace,
) -> ApiError {
    if slow.happened() {
        TooSlow::error(pace)
    } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        body::too_large(limit)
    } else {
        ApiError::new(
            Code::InvalidRequest,
            format!("malformed multipart body: {}", e.body_text()),
        )
    }
}

/// Read a memo upload: its audio, and the metadata (query parameters, then form fields).
pub async fn read(
    req: Request,
    mut meta: MemoQuery,
    max_audio: usize,
    pace: Pace,
) -> Result<(Bytes, MemoQuery), ApiError> {
    let content_type = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !is_multipart(&content_type) {
        let (parts, b) = req.into_parts();
        let audio = body::read(b, &parts.headers, max_audio, pace).await?;
        return Ok((audio, meta));
    }
    let limit = limit(max_audio, true);
    body::refuse_declared(req.headers(), limit)?;
    let declared = body::declared_length(req.headers());
    let (parts, b) = req.into_parts();
    let (paced, slow) = Paced::wrap(b, pace);
    let limited = Request::from_parts(parts, Body::new(http_body_util::Limited::new(paced, limit)));
    let mut form = Multipart::from_request(limited, &())
        .await
        .map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?;
    let mut audio: Option<Bytes> = None;
    let mut audio_field = String::new();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error(e, limit, &slow, &pace)),
        };
        let name = field.name().unwrap_or("").to_string();
        let is_file = field.file_name().is_some();
        if matches!(name.as_str(), "audio" | "file") {
            if audio.is_some() {
                return Err(ApiError::new(
                    Code::InvalidRequest,
                    format!(
                        "the form has a second audio field {name:?} (after {audio_field:?}); send one memo per request"
                    ),
                ));
            }
            let mut field = field;
            let mut buf = Buffer::new(declared, max_audio);
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| multipart_error(e, limit, &slow, &pace))?
            {
                if !buf.push(&chunk) {
                    return Err(ApiError::new(
                        Code::PayloadTooLarge,
                        format!("the audio is larger than {max_audio} bytes, the limit"),
                    ));
                }
            }
            audio = Some(buf.into_bytes());
            audio_field = name;
            continue;
        }
        if is_file {
            return Err(ApiError::new(
                Code::InvalidRequest,
                format!(
                    "the form has a file field {name:?}; the audio goes in the field \"audio\""
                ),
            ));
        }
        let known = matches!(
            name.as_str(),
            "rep_id" | "customer_id" | "team" | "recorded_at" | "domain"
        );
        if !known {
            // Fields this version does not know are skipped, not read.
            continue;
        }
        if seen.contains(&name) {
            return Err(ApiError::new(
                Code::InvalidRequest,
                format!("the form has the field {name:?} twice"),
            ));
        }
        seen.push(name.clone());
        let mut field = field;
        let mut text = Vec::new();
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| multipart_error(e, limit, &slow, &pace))?
        {
            if text.len() + chunk.len() > FIELD_LIMIT {
                return Err(ApiError::new(
                    Code::InvalidInput,
                    format!("the field {name:?} is longer than {FIELD_LIMIT} bytes"),
                ));
            }
            text.extend_from_slice(&chunk);
        }
        let value = Some(String::from_utf8_lossy(&text).into_owned());
        match name.as_str() {
            "rep_id" => meta.rep_id = value,
            "customer_id" => meta.customer_id = value,
            "team" => meta.team = value,
            "recorded_at" => meta.recorded_at = value,
            _ => meta.domain = value,
        }
    }
    let audio = audio.ok_or_else(|| {
        ApiError::new(
            Code::InvalidRequest,
            "the multipart body has no `audio` field",
        )
    })?;
    Ok((audio, meta))
}
