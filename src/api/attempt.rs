//! One attempt at a memo job, shared by the service's embedded runner (`api::jobs`) and
//! `needtag worker` (`crate::worker`): the voice memo transcribed on the transcription workers
//! (or the text tagged), and the outcome sorted into a result, a failure caused by the input
//! (typed with the code `/v1/memos` or `/v1/tag` gives it, never retried), or a failure on
//! the server's side (worth another attempt).
//!
//! Storing the result is the caller's: the embedded runner archives it before marking the job
//! done; a worker does both in one PostgreSQL transaction.

use std::sync::Arc;
use std::time::Duration;

use super::error::ApiError;
use super::queue::TranscriptionPool;
use crate::config::Config;
use crate::jobs::{Claimed, JobFailure, JobResult, Outcome};
use crate::pipeline::{Engine, MemoMeta, TagOptions};

/// What one attempt at a job came to.
pub enum Attempt {
    Finished(Outcome),
    /// A failure on the server's side: worth another attempt.
    Transient(String),
}

/// The failure `/v1/memos` would have answered for `e`: the input's fault (a typed failure,
/// final) or the server's (transient).
fn sorted(e: crate::Error) -> Attempt {
    let api = ApiError::from(e);
    if api.status().is_server_error() {
        Attempt::Transient(format!("{}: {}", api.code, api.message))
    } else {
        Attempt::Finished(Outcome::Failed(JobFailure {
            code: api.code.as_str().to_string(),
            message: api.message,
        }))
    }
}

/// Transcribe `audio` (or tag the job's text) once, within `cfg.jobs.attempt_timeout_s`.
pub async fn run(
    cfg: &Config,
    engine: &Arc<Engine>,
    pool: &TranscriptionPool,
    job: &Claimed,
    audio: Vec<u8>,
) -> Attempt {
    let timeout = Duration::from_secs(cfg.jobs.attempt_timeout_s.max(1));
    if let Some(t) = &job.meta.text {
        let engine = engine.clone();
        let (text, recorded_at) = (t.text.clone(), job.meta.recorded_at);
        let how = TagOptions {
            explain: t.explain,
            ..TagOptions::from_config(cfg, t.hybrid)
        };
        let tagged = tokio::time::timeout(
            timeout,
            tokio::task::spawn_blocking(move || engine.tag_text_with(&text, recorded_at, how)),
        )
        .await;
        return match tagged {
            Err(_) => {
                Attempt::Transient("the attempt took longer than jobs.attempt_timeout_s".into())
            }
            Ok(Err(_)) => Attempt::Transient("tagging stopped unexpectedly".into()),
            Ok(Ok(Err(e))) => sorted(e),
            Ok(Ok(Ok(mut r))) => {
                r.memo_id = Some(job.memo_id.clone());
                Attempt::Finished(Outcome::Done(JobResult::Text(Box::new(r))))
            }
        };
    }
    let meta = MemoMeta {
        memo_id: job.memo_id.clone(),
        rep_id: job.meta.rep_id.clone(),
        customer_id: job.meta.customer_id.clone(),
        team: job.meta.team.clone(),
        recorded_at: job.meta.recorded_at,
        domain: job.meta.domain.clone(),
    };
    let bytes = axum::body::Bytes::from(audio);
    match pool.run_unslotted(bytes, meta, timeout).await {
        Err(_) => Attempt::Transient("the attempt took longer than jobs.attempt_timeout_s".into()),
        Ok(Ok(result)) => Attempt::Finished(Outcome::Done(JobResult::Audio(Box::new(result)))),
        Ok(Err(e)) => sorted(e),
    }
}
