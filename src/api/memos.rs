//! The memo archive's routes: list, fetch, review, export (scope `review`) and delete (scope
//! `admin`). Storing happens in the tagging routes ([`keep`]); nothing here runs the engine.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{authorize, Caller};
use super::error::{ApiError, Code};
use super::AppState;
use crate::archive::{Archive, ArchiveError, Filter, Mark, NewMemo, Page, StoredMemo, TagKind};
use crate::config::Scope;

type Shared = State<Arc<AppState>>;

/// Largest review body.
const REVIEW_BODY_LIMIT: usize = 64 * 1024;
/// Most marks in one review.
const MAX_MARKS: usize = 100;
/// Memos per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

impl From<ArchiveError> for ApiError {
    fn from(e: ArchiveError) -> ApiError {
        match e {
            ArchiveError::Invalid(m) => ApiError::new(Code::InvalidInput, m),
            ArchiveError::Closed => {
                ApiError::new(Code::NotReady, "the archive is closing").retry_after(5)
            }
            ArchiveError::Unavailable(why) => ApiError::new(
                Code::ArchiveUnavailable,
                format!("the memo could not be stored in the archive ({why}); retry shortly"),
            )
            .retry_after(ARCHIVE_RETRY_AFTER_S),
            e @ (ArchiveError::Database(_)
            | ArchiveError::Postgres(_)
            | ArchiveError::Open { .. }
            | ArchiveError::Corrupt(_)) => {
                tracing::error!(error = %e, "archive request failed on the server side");
                ApiError::new(
                    Code::Internal,
                    "the archive could not answer this request; it has been logged",
                )
            }
        }
    }
}

/// Seconds a client is asked to wait after `archive_unavailable`.
const ARCHIVE_RETRY_AFTER_S: u64 = 2;

/// Store a processed memo before it is answered: Ok once its record is committed (or when the
/// archive is off); otherwise the `archive_unavailable` error its answer becomes.
pub(super) async fn keep(
    state: &AppState,
    memo: serde_json::Result<NewMemo>,
) -> Result<(), ApiError> {
    let Some(archive) = state.loaded.get().and_then(|l| l.archive.clone()) else {
        return Ok(());
    };
    Ok(archive.submit(record(&archive, memo)?).await?)
}

/// Store many processed memos (queued together, so they share transactions); one outcome
/// each, in order.
pub(super) async fn keep_all(
    state: &AppState,
    memos: Vec<serde_json::Result<NewMemo>>,
) -> Vec<Result<(), ApiError>> {
    let Some(archive) = state.loaded.get().and_then(|l| l.archive.clone()) else {
        return memos.iter().map(|_| Ok(())).collect();
    };
    let mut out: Vec<Result<(), ApiError>> = Vec::with_capacity(memos.len());
    let mut ready = Vec::new();
    for m in memos {
        match record(&archive, m) {
            Ok(m) => {
                ready.push(m);
                out.push(Ok(()));
            }
            Err(e) => out.push(Err(e)),
        }
    }
    let mut stored = archive.submit_all(ready).await.into_iter();
    for slot in out.iter_mut().filter(|o| o.is_ok()) {
        if let Some(Err(e)) = stored.next() {
            *slot = Err(e.into());
        }
    }
    out
}

/// A record to store, or (when its result did not serialize) the refusal of its answer.
fn record(archive: &Archive, memo: serde_json::Result<NewMemo>) -> Result<NewMemo, ApiError> {
    memo.map_err(|e| {
        let stats = archive.stats();
        stats
            .failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stats
            .refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(
            "memo not archived, its answer is refused: its result did not serialize: {e}"
        );
        ArchiveError::Unavailable("its result could not be serialized".into()).into()
    })
}

/// The archive, after checking the key for `scope`.
pub(super) fn archive(
    state: &AppState,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<(Arc<Archive>, Caller), ApiError> {
    let caller = authorize(&state.cfg.server.api_keys, headers, scope)?;
    let archive = state.get()?.archive.clone().ok_or_else(|| {
        ApiError::new(
            Code::NotFound,
            "the memo archive is off (archive.enabled = false)",
        )
    })?;
    Ok((archive, caller))
}

fn memo_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(id) = id.map_err(|e| {
        ApiError::new(
            Code::InvalidRequest,
            format!("the id is not valid: {}", e.body_text()),
        )
    })?;
    if id.is_empty() || id.chars().count() > crate::pipeline::MAX_ID_CHARS {
        return Err(ApiError::new(
            Code::InvalidRequest,
            format!(
                "an id has 1 to {} characters",
                crate::pipeline::MAX_ID_CHARS
            ),
        ));
    }
    Ok(id)
}

/// Filters of `GET /v1/memos` and `GET /v1/memos/export`, named like the fields.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub rep_id: Option<String>,
    pub customer_id: Option<String>,
    pub team: Option<String>,
    pub domain: Option<String>,
    /// Tagged with this need id.
    pub need: Option<String>,
    /// Tagged with this action id.
    pub action: Option<String>,
    pub vague: Option<bool>,
    pub high_value: Option<bool>,
    /// true: memos with no need tagged.
    pub no_need: Option<bool>,
    /// true: reviewed memos only; false: not yet reviewed.
    pub reviewed: Option<bool>,
    /// recorded_at at or after: RFC 3339, or a date (midnight, +08:00).
    pub from: Option<String>,
    /// recorded_at before: RFC 3339, or a date (through the end of that day, +08:00).
    pub to: Option<String>,
    /// Text contains this (a substring of one character or more, exact).
    pub q: Option<String>,
    /// Memos per page (default 50, at most 500).
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
}

fn query(req: &Request) -> Result<ListQuery, ApiError> {
    Ok(Query::<ListQuery>::try_from_uri(req.uri())
        .map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?
        .0)
}

impl ListQuery {
    fn filter(&self) -> Result<Filter, ApiError> {
        let bound = |field: &str, v: &Option<String>, end: bool| {
            v.as_deref()
                .map(|s| {
                    crate::archive::parse_bound(s, end).ok_or_else(|| {
                        ApiError::new(
                            Code::InvalidInput,
                            format!(
                                "{field} {} is neither an RFC 3339 time nor a date such as 2026-03-04",
                                crate::error::excerpt(s)
                            ),
                        )
                    })
                })
                .transpose()
        };
        Ok(Filter {
            rep_id: self.rep_id.clone(),
            customer_id: self.customer_id.clone(),
            team: self.team.clone(),
            domain: self.domain.clone(),
            need: self.need.clone(),
            action: self.action.clone(),
            vague: self.vague,
            high_value: self.high_value,
            no_need: self.no_need,
            reviewed: self.reviewed,
            from: bound("from", &self.from, false)?,
            to: bound("to", &self.to, true)?,
            text: self
                .q
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        })
    }
}

/// Stored memos, newest first, filtered; `next` is the cursor of the following page.
#[utoipa::path(get, path = "/v1/memos", tag = "archive", params(
        ("rep_id" = Option<String>, Query), ("customer_id" = Option<String>, Query), ("team" = Option<String>, Query),
        ("domain" = Option<String>, Query), ("need" = Option<String>, Query), ("action" = Option<String>, Query),
        ("vague" = Option<bool>, Query), ("high_value" = Option<bool>, Query), ("no_need" = Option<bool>, Query),
        ("reviewed" = Option<bool>, Query), ("from" = Option<String>, Query, description = "RFC 3339 or a date"),
        ("to" = Option<String>, Query, description = "RFC 3339 or a date (inclusive)"),
        ("q" = Option<String>, Query, description = "the text contains this (a substring of one character or more, exact)"),
        ("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page), (status = 400, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(State(state): Shared, req: Request) -> Result<Json<Page>, ApiError> {
    let (archive, _) = archive(&state, req.headers(), Scope::Review)?;
    let q = query(&req)?;
    let filter = q.filter()?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::new(
            Code::InvalidInput,
            format!("limit must lie in 1..={MAX_LIMIT}"),
        ));
    }
    let cursor = q.cursor;
    Ok(Json(
        archive
            .call(move |s| s.list(&filter, cursor.as_deref(), limit))
            .await?,
    ))
}

/// One stored memo with its result and reviews.
#[utoipa::path(get, path = "/v1/memos/{id}", tag = "archive", params(("id" = String, Path)),
    responses((status = 200, body = StoredMemo), (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_one(
    State(state): Shared,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<StoredMemo>, ApiError> {
    let (archive, _) = archive(&state, &headers, Scope::Review)?;
    let id = memo_id(id)?;
    let key = id.clone();
    archive
        .call(move |s| s.get(&key))
        .await?
        .map(Json)
        .ok_or_else(|| no_memo(&id))
}

/// A voice memo's audio as it was uploaded, while `archive.keep_audio_days` keeps it.
#[utoipa::path(get, path = "/v1/memos/{id}/audio", tag = "archive", params(("id" = String, Path)),
    responses((status = 200, description = "the audio bytes as uploaded, with their content type", content_type = "application/octet-stream"),
        (status = 404, description = "no such memo, or its audio is not kept", body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn audio(
    State(state): Shared,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (archive, _) = archive(&state, &headers, Scope::Review)?;
    let id = memo_id(id)?;
    let key = id.clone();
    let audio = archive.call(move |s| s.audio(&key)).await?.ok_or_else(|| {
        ApiError::new(
            Code::NotFound,
            format!(
                "no audio of memo {} in the archive (archive.keep_audio_days keeps it; text memos have none)",
                crate::error::excerpt(&id)
            ),
        )
    })?;
    let content_type = header::HeaderValue::from_str(&audio.content_type)
        .unwrap_or(header::HeaderValue::from_static("application/octet-stream"));
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from(audio.bytes),
    )
        .into_response())
}

fn no_memo(id: &str) -> ApiError {
    ApiError::new(
        Code::NotFound,
        format!("no memo {} in the archive", crate::error::excerpt(id)),
    )
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    /// Memos deleted.
    pub deleted: usize,
}

/// Delete one memo (its text, result and reviews).
#[utoipa::path(delete, path = "/v1/memos/{id}", tag = "archive", params(("id" = String, Path)),
    responses((status = 200, body = Deleted), (status = 404, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_one(
    State(state): Shared,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Deleted>, ApiError> {
    let (archive, caller) = archive(&state, &headers, Scope::Admin)?;
    let id = memo_id(id)?;
    let key = id.clone();
    if !archive.call(move |s| s.delete(&key)).await? {
        return Err(no_memo(&id));
    }
    tracing::info!(caller = %caller.name, memo_id = %id, "memo deleted");
    Ok(Json(Deleted { deleted: 1 }))
}

/// Delete every memo of a customer.
#[utoipa::path(delete, path = "/v1/customers/{id}/memos", tag = "archive", params(("id" = String, Path)),
    responses((status = 200, body = Deleted)),
    security(("api_key" = [])))]
pub async fn delete_customer(
    State(state): Shared,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Deleted>, ApiError> {
    let (archive, caller) = archive(&state, &headers, Scope::Admin)?;
    let id = memo_id(id)?;
    let key = id.clone();
    let deleted = archive.call(move |s| s.delete_customer(&key)).await?;
    // The customer id is the CRM's key, not memo text: it may be logged.
    tracing::info!(caller = %caller.name, customer_id = %id, deleted, "customer's memos deleted");
    Ok(Json(Deleted { deleted }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// Confirm or reject the memo's tags, add the ones it missed; the latest mark of a tag
    /// counts.
    pub marks: Vec<Mark>,
}

/// Mark a memo's needs and actions right or wrong, or add missed ones; answers the memo with
/// its reviews and labels.
#[utoipa::path(post, path = "/v1/memos/{id}/review", tag = "archive", params(("id" = String, Path)), request_body = ReviewRequest,
    responses((status = 200, body = StoredMemo), (status = 404, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn review(
    State(state): Shared,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Json<StoredMemo>, ApiError> {
    let (archive, caller) = archive(&state, &headers, Scope::Review)?;
    let id = memo_id(id)?;
    let pace = super::body::Pace {
        min_rate: state.cfg.server.min_body_rate,
        grace: Duration::from_secs(state.cfg.server.body_grace_s),
    };
    let bytes = super::body::read(body, &headers, REVIEW_BODY_LIMIT, pace).await?;
    let req: ReviewRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(Code::InvalidJson, e.to_string()))?;
    if req.marks.is_empty() || req.marks.len() > MAX_MARKS {
        return Err(ApiError::new(
            Code::InvalidInput,
            format!("a review has 1 to {MAX_MARKS} marks"),
        ));
    }
    let lib = state.get()?.engine.library();
    for m in &req.marks {
        let known = match m.kind {
            TagKind::Need => lib.need(&m.id).is_some(),
            TagKind::Action => lib.actions.iter().any(|a| a.id == m.id),
        };
        // A tag of an older library may still be confirmed or rejected; one added must exist.
        if !known && m.verdict == crate::archive::Verdict::Add {
            return Err(ApiError::new(
                Code::InvalidInput,
                format!(
                    "the library {} has no {} {}",
                    lib.version,
                    m.kind.as_str(),
                    crate::error::excerpt(&m.id)
                ),
            ));
        }
    }
    let (key, reviewer) = (id.clone(), caller.name.clone());
    archive
        .call(move |s| s.review(&key, &req.marks, &reviewer))
        .await?
        .map(Json)
        .ok_or_else(|| no_memo(&id))
}

/// The reviewed memos (filtered as the list is) as labeled JSONL, oldest first: each line is a
/// memo in the format of `need-library/eval/*.jsonl`, which `needtag eval` reads.
#[utoipa::path(get, path = "/v1/memos/export", tag = "archive",
    responses((status = 200, description = "JSONL, one labeled memo per line", content_type = "application/x-ndjson")),
    security(("api_key" = [])))]
pub async fn export(State(state): Shared, req: Request) -> Result<Response, ApiError> {
    let (archive, _) = archive(&state, req.headers(), Scope::Review)?;
    let q = query(&req)?;
    if q.limit.is_some() || q.cursor.is_some() {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "an export has every matching reviewed memo: limit and cursor do not apply",
        ));
    }
    let filter = q.filter()?;
    let lines = archive.call(move |s| s.export(&filter)).await?;
    let mut out = String::new();
    for l in &lines {
        let line = serde_json::to_string(l).map_err(|e| {
            tracing::error!("export line did not serialize: {e}");
            ApiError::new(Code::Internal, "the export failed; it has been logged")
        })?;
        out.push_str(&line);
        out.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response())
}

/// Memos read for the blind spots, newest first.
const BLIND_SCAN: usize = 1000;
/// Groups of blind spots shown.
const BLIND_GROUPS: usize = 20;

/// The library's blind spots: the newest memos (at most 1000, filtered as the list is) that are
/// not vague yet got no need, grouped by the words they share most (jieba, the library's
/// dictionary).
#[utoipa::path(get, path = "/v1/memos/blind-spots", tag = "archive",
    params(("rep_id" = Option<String>, Query), ("team" = Option<String>, Query), ("domain" = Option<String>, Query),
        ("from" = Option<String>, Query), ("to" = Option<String>, Query)),
    responses((status = 200, body = crate::archive::blind::BlindSpots), (status = 403, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn blind_spots(
    State(state): Shared,
    req: Request,
) -> Result<Json<crate::archive::blind::BlindSpots>, ApiError> {
    use crate::archive::blind::{self, BlindMemo};
    let (archive, _) = archive(&state, req.headers(), Scope::Review)?;
    let q = query(&req)?;
    if q.limit.is_some() || q.cursor.is_some() || q.vague.is_some() || q.no_need.is_some() {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "blind spots are the newest non-vague memos without a need: limit, cursor, vague and no_need do not apply",
        ));
    }
    let filter = Filter {
        vague: Some(false),
        no_need: Some(true),
        ..q.filter()?
    };
    let page = archive
        .call(move |s| s.list(&filter, None, BLIND_SCAN))
        .await?;
    let memos: Vec<BlindMemo> = page
        .items
        .into_iter()
        .map(|m| BlindMemo {
            memo_id: m.memo_id,
            recorded_at: m.recorded_at,
            text: m.text,
        })
        .collect();
    let engine = state.get()?.engine.current();
    let spots = tokio::task::spawn_blocking(move || {
        let seg = engine.matcher.segmenter();
        blind::group(
            memos,
            |t| seg.words(t).into_iter().map(str::to_string).collect(),
            BLIND_GROUPS,
        )
    })
    .await
    .map_err(|_| ApiError::new(Code::Internal, "grouping the blind spots failed"))?;
    Ok(Json(spots))
}

/// Memos re-tagged by one request unless `limit` says otherwise, and the most it may say.
const RETAG_DEFAULT: usize = 300;
const RETAG_MAX: usize = 2000;
/// Memos listed in each list of a re-tag report.
const RETAG_KEEP: usize = 200;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetagRequest {
    /// Only memos recorded on or after this (RFC 3339 or a date).
    #[serde(default)]
    pub since: Option<String>,
    /// The newest this many memos (default 300, at most 2000).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Re-tag the newest stored memos with the library on disk at the configured path (what
/// `POST /v1/library/reload` would load) and compare with what is stored: memo by memo gains
/// and losses, and precision, recall and F1 before and after on the reviewed ones. Nothing is
/// changed, and no other library path can be named.
#[utoipa::path(post, path = "/v1/memos/retag", tag = "archive", request_body = RetagRequest,
    responses((status = 200, body = crate::archive::retag::RetagReport), (status = 403, body = super::error::ErrorBody),
        (status = 422, description = "invalid input, or the library on disk is invalid (its problems listed)", body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn retag(
    State(state): Shared,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<crate::archive::retag::RetagReport>, ApiError> {
    use crate::archive::retag;
    let (archive, caller) = archive(&state, &headers, Scope::Review)?;
    let pace = super::body::Pace {
        min_rate: state.cfg.server.min_body_rate,
        grace: Duration::from_secs(state.cfg.server.body_grace_s),
    };
    let bytes = super::body::read(body, &headers, REVIEW_BODY_LIMIT, pace).await?;
    let req: RetagRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        RetagRequest::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::new(Code::InvalidJson, e.to_string()))?
    };
    let limit = req.limit.unwrap_or(RETAG_DEFAULT);
    if limit == 0 || limit > RETAG_MAX {
        return Err(ApiError::new(
            Code::InvalidInput,
            format!("limit must lie in 1..={RETAG_MAX}"),
        ));
    }
    let since = req
        .since
        .as_deref()
        .map(|s| {
            crate::archive::parse_bound(s, false).ok_or_else(|| {
                ApiError::new(
                    Code::InvalidInput,
                    format!(
                        "since {} is neither an RFC 3339 time nor a date such as 2026-03-04",
                        crate::error::excerpt(s)
                    ),
                )
            })
        })
        .transpose()?;
    let engine = state.get()?.engine.clone();
    let filter = Filter {
        from: since,
        ..Filter::default()
    };
    let memos = archive
        .call(move |s| retag::memos(s, &filter, limit))
        .await?;
    let cfg = state.cfg.clone();
    let report = tokio::task::spawn_blocking(move || {
        let matcher = engine.candidate()?;
        let version = matcher.lib.version.clone();
        let how = crate::pipeline::TagOptions::from_config(&cfg, matcher.has_semantic());
        let mut tag = retag::tagger(&matcher, how);
        let report = retag::compare(&memos, &version, &mut tag, RETAG_KEEP);
        drop(tag);
        report
    })
    .await
    .map_err(|_| ApiError::new(Code::Internal, "the re-tag failed; it has been logged"))??;
    tracing::info!(caller = %caller.name, memos = report.memos, candidate = %report.candidate_version, "archive re-tagged (nothing changed)");
    Ok(Json(report))
}
