//! Route handlers: read and check the request, call the engine, shape the response.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::auth::{authorize, Caller};
use super::body::{self, Pace};
use super::error::{ApiError, Code};
use super::idempotency::{Begin, Stored};
use super::upload;
use super::AppState;
use crate::config::Scope;
use crate::library::{ActionDef, Need, Pack};
use crate::pipeline::{MemoMeta, Reloaded};
use crate::result::{MemoResult, TextResult};

type Shared = State<Arc<AppState>>;

/// Largest JSON body of a single tagging request.
const TAG_BODY_LIMIT: usize = 256 * 1024;

fn parse_time(field: &str, s: Option<&str>) -> Result<Option<DateTime<FixedOffset>>, ApiError> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s).map(Some).map_err(|_| {
            ApiError::new(
                Code::InvalidInput,
                format!(
                    "{field} {} is not an RFC 3339 time such as 2026-03-04T17:20:00+08:00",
                    crate::error::excerpt(s)
                ),
            )
        }),
    }
}

/// Blocking work for the current request, on tokio's blocking pool (a panic in it is logged with
/// the request's id and route).
fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> tokio::task::JoinHandle<R> {
    let ctx = super::panics::current();
    tokio::task::spawn_blocking(move || super::panics::scope(ctx, f))
}

fn json<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::new(Code::InvalidJson, e.to_string()))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| {
                    ApiError::new(
                        Code::InvalidRequest,
                        "Idempotency-Key must be visible ASCII",
                    )
                })?
                .trim();
            if k.is_empty() || k.len() > 200 {
                return Err(ApiError::new(
                    Code::InvalidRequest,
                    "Idempotency-Key must be 1–200 characters",
                ));
            }
            Ok(Some(k.to_string()))
        }
    }
}

fn fingerprint(route: &str, caller: &Caller, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(caller.id);
    for p in parts {
        h.update([0]);
        h.update(p);
    }
    h.finalize().into()
}

/// The response for a stored idempotent result.
fn replay(stored: Stored) -> Response {
    let mut resp = Response::new(Body::from(stored.body));
    *resp.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert("idempotency-replayed", HeaderValue::from_static("true"));
    resp
}

/// Run `work` once per (caller, Idempotency-Key, request); retries get the stored response.
async fn idempotent<F, Fut>(
    state: &AppState,
    caller: &Caller,
    key: Option<String>,
    fp: [u8; 32],
    work: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let Some(key) = key else {
        return work().await.unwrap_or_else(IntoResponse::into_response);
    };
    // Entries are scoped by the API key: another client's use of the same Idempotency-Key
    // neither replays this one's response nor counts as a reuse.
    let key = (caller.id, key);
    loop {
        match state.idempotency.begin(&key, fp) {
            Begin::Replay(stored) => return replay(stored),
            Begin::Mismatch => {
                return ApiError::new(
                    Code::IdempotencyKeyReused,
                    "this Idempotency-Key was used with a different request",
                )
                .into_response()
            }
            Begin::Wait(done) => {
                let notified = done.notified();
                // The first attempt may have finished between `begin` and now.
                if let Begin::Replay(stored) = state.idempotency.begin(&key, fp) {
                    return replay(stored);
                }
                let _ = tokio::time::timeout(
                    Duration::from_secs(state.cfg.server.request_timeout_s),
                    notified,
                )
                .await;
                continue;
            }
            Begin::New => break,
        }
    }
    let resp = work().await.unwrap_or_else(IntoResponse::into_response);
    let status = resp.status();
    // Retryable outcomes are not remembered: a retry should run again.
    let retryable = status.is_server_error() || matches!(status.as_u16(), 408 | 429);
    if retryable {
        state.idempotency.abandon(&key);
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    state.idempotency.finish(
        &key,
        fp,
        Stored {
            status: parts.status.as_u16(),
            body: bytes.clone(),
        },
    );
    Response::from_parts(parts, Body::from(bytes))
}

/// Metadata of a memo upload, as query parameters (raw bodies) or multipart fields.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct MemoQuery {
    pub rep_id: Option<String>,
    pub customer_id: Option<String>,
    /// The rep's team, as the CRM names it (kept in the archive for per-team numbers).
    pub team: Option<String>,
    /// RFC 3339; next-step dates are resolved against it (default: now, +08:00).
    pub recorded_at: Option<String>,
    /// The rep's industry, one of the library's domains (medical_devices, ivd, pharmacy,
    /// fmcg_distribution, auto_aftermarket, industrial, retail_stores, general): whisper is
    /// then prompted with that domain's words. Default: the configured asr.default_domain.
    pub domain: Option<String>,
}

/// Transcribe and tag a voice memo.
#[utoipa::path(post, path = "/v1/memos", tag = "memos",
    params(("rep_id" = Option<String>, Query), ("customer_id" = Option<String>, Query), ("team" = Option<String>, Query), ("recorded_at" = Option<String>, Query, description = "RFC 3339"),
        ("domain" = Option<String>, Query, description = "the rep's industry, one of the library's domains; whisper is prompted with its words"),
        ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the stored result")),
    request_body(description = "multipart/form-data with an `audio` file field (and optional rep_id, customer_id, recorded_at, domain fields), or the audio itself with its content type (audio/*, application/octet-stream, video/webm)", content_type = "multipart/form-data"),
    responses((status = 200, body = MemoResult), (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody), (status = 415, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody),
        (status = 429, body = super::error::ErrorBody), (status = 503, description = "busy: every worker and queue slot is taken; see Retry-After", body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn memos(State(state): Shared, req: Request) -> Response {
    match memos_inner(state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// How fast bodies must arrive.
pub(super) fn pace(state: &AppState) -> Pace {
    Pace {
        min_rate: state.cfg.server.min_body_rate,
        grace: Duration::from_secs(state.cfg.server.body_grace_s),
    }
}

async fn memos_inner(state: Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    // The key first: a request without one learns nothing else about the service.
    let caller = authorize(&state.cfg.server.api_keys, req.headers(), Scope::Tag)?;
    let (query, idem) = upload_head(&state, &req)?;
    let loaded = state.get()?;
    let _counted = state.enter(&caller.id).ok_or_else(|| {
        ApiError::new(
            Code::TooManyRequests,
            format!(
                "this API key already has {} memos in flight",
                state.cfg.server.per_key_inflight
            ),
        )
        .retry_after(loaded.pool.retry_after())
    })?;
    // With every transcription slot taken, say so before the upload is read.
    if loaded.pool.is_full() {
        return Err(busy(loaded));
    }
    // Kept for the archive only when configured: a second handle on the same buffer (no copy),
    // which holds the upload (at most audio.max_bytes) until the memo is stored.
    let kept_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|t| {
            if upload::is_multipart(t) {
                "application/octet-stream".to_string()
            } else {
                t.to_string()
            }
        })
        .unwrap_or_default();
    let Upload { bytes, meta, fp } = read_upload(&state, &caller, "memos", req, query).await?;
    let keep_audio = (state.cfg.archive.keep_audio_days > 0).then(|| crate::archive::Audio {
        content_type: kept_type,
        bytes: bytes.clone(),
    });
    let state2 = state.clone();
    let caller2 = caller.clone();
    Ok(idempotent(&state, &caller, idem, fp, move || async move {
        let loaded = state2.get()?;
        // A transcription slot is taken only now that the whole upload is here.
        let permit = loaded.pool.try_admit().ok_or_else(|| busy(loaded))?;
        let timeout = Duration::from_secs(state2.cfg.server.request_timeout_s);
        let result = loaded
            .pool
            .run(permit, bytes, meta, timeout)
            .await
            .map_err(|_| {
                ApiError::new(
                    Code::RequestTimeout,
                    "transcription did not finish within the time limit",
                )
            })??;
        record_stages(&state2, &result);
        let record = crate::archive::NewMemo::audio(&result, &caller2.name).map(|mut m| {
            m.audio = keep_audio;
            m
        });
        super::memos::keep(&state2, record).await?;
        Ok(Json(result).into_response())
    })
    .await)
}

/// Check a memo upload's head (`/v1/memos` and `/v1/jobs`): query parameters, content type,
/// declared length and Idempotency-Key, before a byte of the body is read.
pub(super) fn upload_head(
    state: &AppState,
    req: &Request,
) -> Result<(MemoQuery, Option<String>), ApiError> {
    let query = Query::<MemoQuery>::try_from_uri(req.uri())
        .map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?
        .0;
    state.get()?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let multipart = upload::is_multipart(&content_type);
    if !multipart && !upload::is_audio_type(&content_type) {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            format!("send multipart/form-data with an `audio` field, or the audio with an audio/* content type (got {:?})", content_type),
        ));
    }
    // A declared length over the limit is refused before a byte is read.
    body::refuse_declared(
        req.headers(),
        upload::limit(state.cfg.audio.max_bytes, multipart),
    )?;
    let idem = idempotency_key(req.headers())?;
    Ok((query, idem))
}

/// A memo upload read and checked, with a fresh memo id.
pub(super) struct Upload {
    pub bytes: axum::body::Bytes,
    pub meta: MemoMeta,
    /// What the request was, for Idempotency-Key reuse (`route`, key, audio and metadata).
    pub fp: [u8; 32],
}

/// Read a memo upload's body (holding an upload slot, not a transcription slot, while it
/// arrives: a slow client cannot keep the workers from others) and check its metadata.
pub(super) async fn read_upload(
    state: &AppState,
    caller: &Caller,
    route: &str,
    req: Request,
    query: MemoQuery,
) -> Result<Upload, ApiError> {
    let uploading = state.begin_upload().ok_or_else(|| {
        ApiError::new(
            Code::Busy,
            format!(
                "all {} upload slots are taken; retry shortly",
                state.cfg.server.max_uploads
            ),
        )
        .retry_after(1)
    })?;
    let (bytes, meta) = upload::read(req, query, state.cfg.audio.max_bytes, pace(state)).await?;
    drop(uploading);
    let recorded_at = parse_time("recorded_at", meta.recorded_at.as_deref())?;
    let domain = meta
        .domain
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    let meta = MemoMeta {
        memo_id: crate::result::new_memo_id(),
        rep_id: meta.rep_id,
        customer_id: meta.customer_id,
        team: meta.team,
        recorded_at,
        domain,
    };
    meta.check()?;
    let fp = fingerprint(
        route,
        caller,
        &[
            &bytes,
            meta.rep_id.as_deref().unwrap_or("").as_bytes(),
            meta.customer_id.as_deref().unwrap_or("").as_bytes(),
            meta.team.as_deref().unwrap_or("").as_bytes(),
            recorded_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_default()
                .as_bytes(),
            meta.domain.as_deref().unwrap_or("").as_bytes(),
        ],
    );
    Ok(Upload { bytes, meta, fp })
}

fn busy(loaded: &super::Loaded) -> ApiError {
    ApiError::new(
        Code::Busy,
        format!(
            "all {} transcription slots are taken ({} workers); retry shortly",
            loaded.pool.capacity(),
            loaded.pool.workers()
        ),
    )
    .retry_after(loaded.pool.retry_after())
}

pub(super) fn record_stages(state: &AppState, r: &MemoResult) {
    let t = &r.timings;
    for (stage, ms) in [
        ("decode", t.decode_ms),
        ("vad", t.vad_ms),
        ("asr", t.asr_ms),
        ("tag", t.tag_ms),
    ] {
        state.metrics.stage(stage, ms / 1000.0);
    }
    for d in &r.transcript.dropped {
        state.metrics.dropped(&d.reason);
    }
}

/// How to match: keywords and embeddings (default) or keywords only.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Hybrid,
    Keyword,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    pub text: String,
    /// RFC 3339; next-step dates are resolved against it (default: now, +08:00).
    #[serde(default)]
    pub recorded_at: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    /// Also list the candidates that were not tagged, with the verifier's reasons.
    #[serde(default)]
    pub explain: bool,
    /// Stored with the memo in the archive (as for `/v1/memos`).
    #[serde(default)]
    pub rep_id: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    /// The rep's industry, one of the library's domains.
    #[serde(default)]
    pub domain: Option<String>,
}

/// The archive metadata sent with a text.
#[derive(Debug, Default)]
struct TextMeta {
    rep_id: Option<String>,
    customer_id: Option<String>,
    team: Option<String>,
    domain: Option<String>,
}

/// Check a text's metadata as a voice memo's is checked.
fn checked_meta(
    m: TextMeta,
    recorded_at: Option<DateTime<FixedOffset>>,
) -> Result<crate::archive::Meta, ApiError> {
    let meta = MemoMeta {
        memo_id: String::new(),
        rep_id: m.rep_id,
        customer_id: m.customer_id,
        team: m.team,
        recorded_at,
        domain: m
            .domain
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty()),
    };
    meta.check()?;
    Ok(crate::archive::Meta {
        rep_id: meta.rep_id,
        customer_id: meta.customer_id,
        team: meta.team,
        domain: meta.domain,
        recorded_at,
    })
}

/// Tag one text and give it a memo id; the record to store comes with it.
async fn tag_one(
    state: &Arc<AppState>,
    caller: &Caller,
    text: String,
    recorded_at: Option<&str>,
    mode: Mode,
    explain: bool,
    meta: TextMeta,
) -> Result<(TextResult, serde_json::Result<crate::archive::NewMemo>), ApiError> {
    let recorded_at = parse_time("recorded_at", recorded_at)?;
    let meta = checked_meta(meta, recorded_at)?;
    let engine = state.get()?.engine.clone();
    let how = crate::pipeline::TagOptions {
        explain,
        ..crate::pipeline::TagOptions::from_config(&state.cfg, mode == Mode::Hybrid)
    };
    let mut result = blocking(move || engine.tag_text_with(&text, recorded_at, how))
        .await
        .map_err(|_| ApiError::new(Code::Internal, "tagging failed"))??;
    state.metrics.stage("tag", result.timings.tag_ms / 1000.0);
    result.memo_id = Some(crate::result::new_memo_id());
    let record = crate::archive::NewMemo::text(&result, meta, &caller.name);
    Ok((result, record))
}

/// A text job (`POST /v1/jobs` with the JSON `/v1/tag` takes), read and checked as `/v1/tag`
/// checks it: its input, metadata, request fingerprint and `Idempotency-Key`.
pub(super) struct TextJob {
    pub input: crate::jobs::TextInput,
    pub meta: crate::jobs::JobMeta,
    pub fp: [u8; 32],
    pub idem: Option<String>,
}

pub(super) async fn read_text_job(
    state: &AppState,
    caller: &Caller,
    req: axum::extract::Request,
) -> Result<TextJob, ApiError> {
    let (parts, body) = req.into_parts();
    let idem = idempotency_key(&parts.headers)?;
    let bytes = body::read(body, &parts.headers, TAG_BODY_LIMIT, pace(state)).await?;
    let req: TagRequest = json(&bytes)?;
    let recorded_at = parse_time("recorded_at", req.recorded_at.as_deref())?;
    let meta = checked_meta(
        TextMeta {
            rep_id: req.rep_id,
            customer_id: req.customer_id,
            team: req.team,
            domain: req.domain,
        },
        recorded_at,
    )?;
    // What the engine would refuse is refused now, as /v1/tag does.
    let text = req.text.trim();
    if text.is_empty() {
        return Err(crate::Error::InvalidInput("text is empty".into()).into());
    }
    let chars = text.chars().count();
    if chars > state.cfg.server.max_text_chars {
        return Err(crate::Error::TextTooLong {
            chars,
            limit: state.cfg.server.max_text_chars,
        }
        .into());
    }
    Ok(TextJob {
        input: crate::jobs::TextInput {
            text: req.text,
            hybrid: req.mode == Mode::Hybrid,
            explain: req.explain,
        },
        meta: crate::jobs::JobMeta {
            rep_id: meta.rep_id,
            customer_id: meta.customer_id,
            team: meta.team,
            recorded_at,
            domain: meta.domain,
            text: None,
        },
        fp: fingerprint("jobs-text", caller, &[&bytes]),
        idem,
    })
}

/// Tag a text the CRM already has.
#[utoipa::path(post, path = "/v1/tag", tag = "tagging", request_body = TagRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = TextResult), (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn tag(State(state): Shared, headers: HeaderMap, body: Body) -> Response {
    let run = async {
        let caller = authorize(&state.cfg.server.api_keys, &headers, Scope::Tag)?;
        let idem = idempotency_key(&headers)?;
        let bytes = body::read(body, &headers, TAG_BODY_LIMIT, pace(&state)).await?;
        let req: TagRequest = json(&bytes)?;
        let fp = fingerprint("tag", &caller, &[&bytes]);
        let st = state.clone();
        let caller2 = caller.clone();
        Ok::<_, ApiError>(
            idempotent(&state, &caller, idem, fp, move || async move {
                let meta = TextMeta {
                    rep_id: req.rep_id,
                    customer_id: req.customer_id,
                    team: req.team,
                    domain: req.domain,
                };
                let (r, record) = tag_one(
                    &st,
                    &caller2,
                    req.text,
                    req.recorded_at.as_deref(),
                    req.mode,
                    req.explain,
                    meta,
                )
                .await?;
                // The answer goes out only once its memo is stored.
                super::memos::keep(&st, record).await?;
                Ok(Json(r).into_response())
            })
            .await,
        )
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub items: Vec<BatchItem>,
    #[serde(default)]
    pub mode: Mode,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    /// The caller's id for the text, echoed back.
    #[serde(default)]
    pub id: Option<String>,
    pub text: String,
    #[serde(default)]
    pub recorded_at: Option<String>,
    #[serde(default)]
    pub rep_id: Option<String>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchResult>,
}

/// One item's result, or its error (the other items are unaffected).
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<TextResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<super::error::ErrorDetail>,
}

/// Largest batch body: every character of the texts escaped as `\\uXXXX` (six bytes, as
/// Python's json.dumps writes Chinese), plus 1 KiB per item for its id, time and syntax.
fn batch_body_limit(server: &crate::config::ServerConfig) -> usize {
    server.batch_max_chars * 6 + server.batch_max.max(1) * 1024
}

/// Tag many texts in one call (up to the configured batch limits).
#[utoipa::path(post, path = "/v1/tag/batch", tag = "tagging", request_body = BatchRequest,
    responses((status = 200, body = BatchResponse), (status = 400, body = super::error::ErrorBody), (status = 413, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn tag_batch(State(state): Shared, headers: HeaderMap, body: Body) -> Response {
    let run = async {
        let caller = authorize(&state.cfg.server.api_keys, &headers, Scope::Tag)?;
        let server = &state.cfg.server;
        let bytes = body::read(body, &headers, batch_body_limit(server), pace(&state)).await?;
        let req: BatchRequest = json(&bytes)?;
        drop(bytes);
        if req.items.len() > server.batch_max {
            return Err(ApiError::new(
                Code::BatchTooLarge,
                format!(
                    "{} texts; the limit is {}",
                    req.items.len(),
                    server.batch_max
                ),
            ));
        }
        let chars: usize = req.items.iter().map(|i| i.text.chars().count()).sum();
        if chars > server.batch_max_chars {
            return Err(ApiError::new(
                Code::BatchTooLarge,
                format!(
                    "the texts have {chars} characters in all; the limit is {} (server.batch_max_chars)",
                    server.batch_max_chars
                ),
            ));
        }
        let mut tagged_items = Vec::with_capacity(req.items.len());
        for item in req.items {
            let tagged = match item.id.as_ref().map(|id| id.chars().count()) {
                Some(n) if n > crate::pipeline::MAX_ID_CHARS => Err(ApiError::new(
                    Code::InvalidInput,
                    format!(
                        "id has {n} characters; at most {}",
                        crate::pipeline::MAX_ID_CHARS
                    ),
                )),
                _ => {
                    let meta = TextMeta {
                        rep_id: item.rep_id,
                        customer_id: item.customer_id,
                        team: item.team,
                        domain: item.domain,
                    };
                    tag_one(
                        &state,
                        &caller,
                        item.text,
                        item.recorded_at.as_deref(),
                        req.mode,
                        false,
                        meta,
                    )
                    .await
                }
            };
            let id = item
                .id
                .filter(|id| id.chars().count() <= crate::pipeline::MAX_ID_CHARS);
            tagged_items.push((id, tagged));
        }
        // Every tagged item is stored (together, in as few transactions as the writer takes)
        // before the answer; an item that could not be stored is answered as an error.
        let mut records = Vec::new();
        let mut items = Vec::with_capacity(tagged_items.len());
        for (id, tagged) in tagged_items {
            items.push((
                id,
                tagged.map(|(r, record)| {
                    records.push(record);
                    r
                }),
            ));
        }
        let mut stored = super::memos::keep_all(&state, records).await.into_iter();
        let mut results = Vec::with_capacity(items.len());
        for (id, tagged) in items {
            let outcome = match tagged {
                Ok(r) => match stored.next() {
                    Some(Err(e)) => Err(e),
                    _ => Ok(r),
                },
                Err(e) => Err(e),
            };
            match outcome {
                Ok(r) => results.push(BatchResult {
                    id,
                    result: Some(r),
                    error: None,
                }),
                Err(e) => results.push(BatchResult {
                    id,
                    result: None,
                    error: Some(super::error::ErrorDetail {
                        code: e.code,
                        message: e.message,
                        problems: Vec::new(),
                    }),
                }),
            }
        }
        let resp = Json(BatchResponse { results }).into_response();
        // Give back what tagging many texts left free in the allocator.
        let _ = blocking(crate::release_free_memory).await;
        Ok(resp)
    };
    run.await.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LibraryInfo {
    pub name: String,
    pub description: String,
    pub version: String,
    pub source: String,
    pub needs: usize,
    pub actions: usize,
    pub packs: usize,
    pub needs_per_domain: std::collections::BTreeMap<String, usize>,
    /// The fitted verifier, when the library has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verifier: Option<VerifierInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifierInfo {
    /// Labeled memos it was fitted on.
    pub memos: usize,
    pub threshold_hybrid: f32,
    pub threshold_keyword: f32,
    /// Cross-validated needs micro-F1 on those memos (hybrid), when measured.
    pub cross_validated_f1: Option<f64>,
    /// Whether the service decides needs with it (`matcher.verifier`).
    pub in_use: bool,
}

/// The library in service: version and counts.
#[utoipa::path(get, path = "/v1/library", tag = "library", responses((status = 200, body = LibraryInfo)))]
pub async fn library(State(state): Shared) -> Result<Json<LibraryInfo>, ApiError> {
    let lib = state.get()?.engine.library();
    let mut per = std::collections::BTreeMap::new();
    for n in &lib.needs {
        *per.entry(n.domain.clone()).or_default() += 1;
    }
    Ok(Json(LibraryInfo {
        name: lib.name.clone(),
        description: lib.description.clone(),
        version: lib.version.clone(),
        source: lib.source.clone(),
        needs: lib.needs.len(),
        actions: lib.actions.len(),
        packs: lib.packs.len(),
        needs_per_domain: per,
        verifier: lib.verifier.as_ref().map(|v| VerifierInfo {
            memos: v.info.memos,
            threshold_hybrid: v.needs.hybrid.threshold,
            threshold_keyword: v.needs.keyword.threshold,
            cross_validated_f1: v
                .info
                .cross_validation
                .as_ref()
                .and_then(|c| c.pointer("/needs/hybrid/f1"))
                .and_then(|f| f.as_f64()),
            in_use: state.cfg.matcher.verifier,
        }),
    }))
}

/// A need with its solution packs spelled out.
#[derive(Debug, Serialize, ToSchema)]
pub struct NeedView {
    #[serde(flatten)]
    pub need: Need,
    pub threshold_in_use: f32,
    pub pack_details: Vec<Pack>,
}

fn need_view(lib: &crate::library::Library, n: &Need) -> NeedView {
    NeedView {
        need: n.clone(),
        threshold_in_use: lib.need_threshold(n),
        pack_details: n
            .packs
            .iter()
            .filter_map(|p| lib.pack(p).cloned())
            .collect(),
    }
}

/// Every need of the library in service.
#[utoipa::path(get, path = "/v1/needs", tag = "library", responses((status = 200, body = Vec<NeedView>)))]
pub async fn needs(State(state): Shared) -> Result<Json<Vec<NeedView>>, ApiError> {
    let lib = state.get()?.engine.library();
    Ok(Json(lib.needs.iter().map(|n| need_view(&lib, n)).collect()))
}

/// One need.
#[utoipa::path(get, path = "/v1/needs/{id}", tag = "library", params(("id" = String, Path)),
    responses((status = 200, body = NeedView), (status = 404, body = super::error::ErrorBody)))]
pub async fn need(
    State(state): Shared,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<NeedView>, ApiError> {
    // A path that is not UTF-8 once decoded (`%ff`) names no need; say so as JSON.
    let Path(id) = id.map_err(|e| {
        ApiError::new(
            Code::InvalidRequest,
            format!("the need id is not valid: {}", e.body_text()),
        )
    })?;
    let lib = state.get()?.engine.library();
    lib.need(&id)
        .map(|n| Json(need_view(&lib, n)))
        .ok_or_else(|| {
            ApiError::new(
                Code::NotFound,
                format!("no need {id:?} in library {}", lib.version),
            )
        })
}

/// Every action definition.
#[utoipa::path(get, path = "/v1/actions", tag = "library", responses((status = 200, body = Vec<ActionDef>)))]
pub async fn actions(State(state): Shared) -> Result<Json<Vec<ActionDef>>, ApiError> {
    Ok(Json(state.get()?.engine.library().actions.clone()))
}

/// Every solution pack.
#[utoipa::path(get, path = "/v1/packs", tag = "library", responses((status = 200, body = Vec<Pack>)))]
pub async fn packs(State(state): Shared) -> Result<Json<Vec<Pack>>, ApiError> {
    Ok(Json(state.get()?.engine.library().packs.clone()))
}

/// Validate the library on disk and swap it in; an invalid library is refused with its
/// problems and the current one keeps serving.
#[utoipa::path(post, path = "/v1/library/reload", tag = "library",
    responses((status = 200, body = Reloaded), (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 422, description = "invalid library; `problems` lists each with file and line", body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn reload(State(state): Shared, headers: HeaderMap) -> Result<Json<Reloaded>, ApiError> {
    let caller = authorize(&state.cfg.server.api_keys, &headers, Scope::Admin)?;
    let engine = state.get()?.engine.clone();
    let result = blocking(move || engine.reload(None))
        .await
        .map_err(|_| ApiError::new(Code::Internal, "reload failed"))?;
    match result {
        Ok(r) => {
            tracing::info!(caller = %caller.name, version = %r.version, changed = r.changed, "library reloaded");
            Ok(Json(r))
        }
        Err(e) => {
            tracing::warn!(caller = %caller.name, "library reload refused: {e}");
            Err(e.into())
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalRequest {
    /// Labeled memos as JSONL (the format of need-library/eval/*.jsonl); absent: the bundled
    /// development set.
    #[serde(default)]
    pub jsonl: Option<String>,
    #[serde(default)]
    pub mode: Mode,
}

/// Memos evaluated per blocking call.
const EVAL_STEP: usize = 16;

/// Evaluate the library in service on labeled memos.
#[utoipa::path(post, path = "/v1/eval", tag = "library", request_body = EvalRequest,
    responses((status = 200, description = "precision, recall and F1 per need and action, confusions and misses"), (status = 422, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn eval(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    authorize(&state.cfg.server.api_keys, &headers, Scope::Tag)?;
    let server = &state.cfg.server;
    let bytes = body::read(body, &headers, server.eval_max_bytes, pace(&state)).await?;
    let req: EvalRequest = if bytes.is_empty() {
        EvalRequest {
            jsonl: None,
            mode: Mode::Hybrid,
        }
    } else {
        json(&bytes)?
    };
    drop(bytes);
    let jsonl = req
        .jsonl
        .unwrap_or_else(|| crate::eval::BUNDLED_DEV_SET.to_string());
    let memos = crate::eval::parse_jsonl(&jsonl, "request")?;
    drop(jsonl);
    if memos.is_empty() {
        return Err(ApiError::new(Code::InvalidInput, "no memos in the JSONL"));
    }
    if memos.len() > server.eval_max_memos {
        return Err(ApiError::new(
            Code::BatchTooLarge,
            format!(
                "{} memos; the limit is {} (server.eval_max_memos)",
                memos.len(),
                server.eval_max_memos
            ),
        ));
    }
    let chars: usize = memos.iter().map(|m| m.text.chars().count()).sum();
    if chars > server.eval_max_chars {
        return Err(ApiError::new(
            Code::BatchTooLarge,
            format!(
                "the memos have {chars} characters in all; the limit is {} (server.eval_max_chars)",
                server.eval_max_chars
            ),
        ));
    }
    // Every text on every route obeys the same limit.
    for (i, m) in memos.iter().enumerate() {
        let chars = m.text.chars().count();
        if chars > server.max_text_chars {
            return Err(ApiError::new(
                Code::TextTooLong,
                format!(
                    "memo {} ({}) has {chars} characters; the limit is {}",
                    i + 1,
                    crate::error::excerpt(&m.id),
                    server.max_text_chars
                ),
            ));
        }
    }
    let loaded = state.get()?.engine.current();
    let semantic = req.mode == Mode::Hybrid && loaded.matcher.has_semantic();
    let how = crate::pipeline::TagOptions::from_config(&state.cfg, semantic);
    let memos = Arc::new(memos);
    // A few memos per blocking call: a client that goes away (or the time limit) stops the
    // evaluation between calls instead of leaving it to run to the end.
    let mut preds = Vec::with_capacity(memos.len());
    for start in (0..memos.len()).step_by(EVAL_STEP) {
        let (loaded, memos) = (loaded.clone(), memos.clone());
        let end = (start + EVAL_STEP).min(memos.len());
        let part = blocking(move || {
            crate::eval::predict(&loaded.matcher, &memos[start..end], how, &|| {})
        })
        .await
        .map_err(|_| ApiError::new(Code::Internal, "evaluation failed"))??;
        preds.extend(part);
    }
    let report = blocking(move || {
        let report = crate::eval::report(&loaded.matcher, &memos, &preds, semantic);
        crate::release_free_memory();
        report
    })
    .await
    .map_err(|_| ApiError::new(Code::Internal, "evaluation failed"))?;
    Ok(Json(report).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub ready: bool,
    pub library_version: String,
    pub models: crate::result::Models,
    pub workers: usize,
    pub queue_capacity: usize,
    pub queue_depth: usize,
    pub busy_workers: usize,
    /// Memo uploads being received: each holds an upload slot, not a transcription slot.
    pub uploads_in_progress: usize,
    pub upload_slots: usize,
}

/// Readiness: models loaded, library valid, workers running.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, body = Ready), (status = 503, body = super::error::ErrorBody)))]
pub async fn readyz(State(state): Shared) -> Response {
    let loaded = match state.get() {
        Ok(l) => l,
        Err(e) => return e.into_response(),
    };
    // Accepted jobs must be storable: without their database the service is not ready.
    if let Some(jobs) = loaded.jobs.clone() {
        let ping = blocking(move || jobs.ping()).await;
        if !matches!(ping, Ok(Ok(()))) {
            if let Ok(Err(e)) = ping {
                tracing::error!("readiness: {e}");
            }
            return ApiError::new(Code::NotReady, "the job database cannot be reached")
                .retry_after(5)
                .into_response();
        }
        // Scaled out, accepted jobs are published to NATS: without it, not ready either.
        if let Some(jobs) = loaded.jobs.clone() {
            if let Err(e) = jobs.ping_queue().await {
                tracing::error!("readiness: {e}");
                return ApiError::new(Code::NotReady, "the job queue (NATS) cannot be reached")
                    .retry_after(5)
                    .into_response();
            }
        }
    }
    Json(Ready {
        ready: true,
        library_version: loaded.engine.library().version.clone(),
        models: loaded.engine.models(),
        workers: loaded.pool.workers(),
        queue_capacity: loaded.pool.capacity(),
        queue_depth: loaded.pool.waiting(),
        busy_workers: loaded.pool.busy(),
        uploads_in_progress: state.uploads_in_progress(),
        upload_slots: state.cfg.server.max_uploads,
    })
    .into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): Shared) -> Response {
    let (waiting, busy, capacity) = state
        .get()
        .map(|l| (l.pool.waiting(), l.pool.busy(), l.pool.capacity()))
        .unwrap_or_default();
    let archive = state.loaded.get().and_then(|l| l.archive.clone());
    let archived = |f: fn(&crate::archive::Stats) -> f64| {
        archive.as_ref().map(|a| f(a.stats())).unwrap_or(0.0)
    };
    use std::sync::atomic::Ordering::Relaxed;
    let st = state.clone();
    let mut jobs = blocking(move || super::jobs::gauges(&st))
        .await
        .unwrap_or_default();
    jobs.extend(super::jobs::queue_gauges(&state).await);
    let mut gauges = vec![
        (
            "needtag_up",
            "1 when models are loaded and the service is ready.",
            if state.get().is_ok() { 1.0 } else { 0.0 },
        ),
        (
            "needtag_queue_depth",
            "Memos waiting for a transcription worker.",
            waiting as f64,
        ),
        (
            "needtag_workers_busy",
            "Transcription workers processing a memo.",
            busy as f64,
        ),
        (
            "needtag_queue_capacity",
            "Transcription slots (workers + queue).",
            capacity as f64,
        ),
        (
            "needtag_uploads_in_progress",
            "Memo uploads being received (each holds an upload slot until its body is complete).",
            state.uploads_in_progress() as f64,
        ),
        (
            "needtag_upload_slots",
            "Memo uploads that may be received at once (server.max_uploads).",
            state.cfg.server.max_uploads as f64,
        ),
        (
            "needtag_archive_queue_depth",
            "Memos and archive requests waiting for the archive's writer.",
            archived(|s| s.queued.load(Relaxed) as f64),
        ),
        (
            "needtag_archive_stored",
            "Memos written to the archive since start.",
            archived(|s| s.stored.load(Relaxed) as f64),
        ),
        (
            "needtag_archive_refused",
            "Memos processed but refused with 503 archive_unavailable because the archive could not store them (queue full past archive.enqueue_wait_ms, write failed, or commit too slow; logged with their ids).",
            archived(|s| s.refused.load(Relaxed) as f64),
        ),
        (
            "needtag_archive_failed",
            "Memos the archive's database failed to write (logged; their answers were refused).",
            archived(|s| s.failed.load(Relaxed) as f64),
        ),
        (
            "needtag_idempotency_entries",
            "Stored idempotent responses.",
            state.idempotency.len() as f64,
        ),
    ];
    gauges.extend(jobs);
    let text = state.metrics.render(&gauges);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
