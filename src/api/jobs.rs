//! Memo jobs over HTTP (`POST /v1/jobs`, `GET /v1/jobs/{id}`), the runner that feeds them to
//! the service's transcription workers, and the admin's view of dead webhook events.
//!
//! Sharing the workers with `/v1/memos`: a job never takes one of the synchronous requests'
//! slots (so jobs never make `/v1/memos` answer 503), and the runner hands a job to the
//! workers only when one is idle and no synchronous request waits, except for
//! `jobs.reserved_workers` jobs, which run even then (so a steady stream of synchronous
//! requests cannot hold jobs back for ever). A synchronous request therefore waits at most for
//! the jobs already running on the workers.
//!
//! Exactly once: a job's memo id is minted when it is accepted. A worker's result is stored in
//! the archive under that id (unless an earlier attempt stored it: then that result is used
//! without transcribing again), and only then is the job marked done, with its webhook event,
//! in one transaction. A process killed at any point leaves the job `running`; at the next
//! start it is queued again, and the archive and the outbox still get it once.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Serialize;
use tokio::sync::Notify;
use utoipa::ToSchema;

use super::attempt::Attempt;
use super::auth::{authorize, Caller};
use super::error::{ApiError, Code};
use super::routes::{read_upload, upload_head, Upload};
use super::AppState;
use crate::config::{Config, Scope};
use crate::jobs::nats::Nats;
use crate::jobs::postgres::PgJobs;
use crate::jobs::sqlite::SqliteJobs;
use crate::jobs::webhook::{self, Sender};
use crate::jobs::{
    Claimed, DeadEvent, Event, Job, JobError, JobFailure, JobMeta, JobQueue, JobResult, NewJob,
    Outbox, Outcome, Resend, Status, Submitted,
};

type Shared = State<Arc<AppState>>;

/// How often finished jobs past their retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Counters for `/metrics`, since start.
#[derive(Debug, Default)]
pub struct JobStats {
    pub accepted: AtomicU64,
    pub done: AtomicU64,
    pub failed: AtomicU64,
    /// Jobs taken again after an interrupted or failed attempt.
    pub redelivered: AtomicU64,
    /// Jobs whose result an earlier attempt had already archived (not transcribed again).
    pub deduplicated: AtomicU64,
    /// Jobs with a worker now.
    pub running: AtomicUsize,
    /// Scale-out: publishes to the job stream that failed or went unacknowledged (the job
    /// stays stored; the sweeper publishes it again).
    pub publish_failed: AtomicU64,
    /// Scale-out: jobs the sweeper published again.
    pub republished: AtomicU64,
}

/// The job store, the runner's and webhook sender's tasks (on a small runtime of their own, so
/// they start with the engine whatever runtime the server uses), and their counters.
pub struct Jobs {
    pub queue: Arc<dyn JobQueue>,
    pub outbox: Arc<dyn Outbox>,
    pub stats: Arc<JobStats>,
    pub webhook_stats: Arc<webhook::Stats>,
    /// Wakes the runner (a job was accepted or finished).
    work: Arc<Notify>,
    /// Wakes the webhook sender (an event was stored).
    events: Arc<Notify>,
    webhook_on: bool,
    /// Scale-out (`queue.url`): the stream accepted jobs are published to. `needtag worker`
    /// processes run them (and deliver their webhooks); this service's runner does not run.
    pub(super) nats: Option<Nats>,
    /// Scale-out: the shared store (for the publish bookkeeping).
    pg: Option<Arc<PgJobs>>,
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
}

impl Drop for Jobs {
    fn drop(&mut self) {
        if let Some(rt) = self
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            rt.shutdown_background();
        }
    }
}

fn job_error(e: JobError) -> ApiError {
    tracing::error!(error = %e, "job database request failed");
    ApiError::new(
        Code::NotReady,
        "the job database cannot be reached; retry shortly",
    )
    .retry_after(5)
}

impl Jobs {
    /// Open the job tables in `archive.path` (migrating them) and put the jobs a killed
    /// process left running back in the queue. The tasks start with [`Jobs::start`].
    pub fn open(cfg: &Config) -> Result<Jobs, String> {
        if cfg.queue.nats().is_some() {
            return Jobs::open_shared(cfg);
        }
        let store = Arc::new(
            SqliteJobs::open(&cfg.archive.path).map_err(|e| format!("job database: {e}"))?,
        );
        let recovered = store.recover().map_err(|e| format!("job database: {e}"))?;
        if recovered > 0 {
            tracing::warn!(
                jobs = recovered,
                "jobs interrupted by the previous process are queued again"
            );
        }
        let runtime = jobs_runtime()?;
        Ok(Jobs {
            queue: store.clone(),
            outbox: store,
            stats: Arc::default(),
            webhook_stats: Arc::default(),
            work: Arc::default(),
            events: Arc::default(),
            webhook_on: cfg.webhook.url.as_deref().is_some_and(|u| !u.is_empty()),
            nats: None,
            pg: None,
            runtime: std::sync::Mutex::new(Some(runtime)),
        })
    }

    /// Scale-out: the jobs' tables in the PostgreSQL archive (`archive.url`) and the NATS
    /// stream (`queue.url`), both reached before the service says it is ready.
    fn open_shared(cfg: &Config) -> Result<Jobs, String> {
        let url = cfg
            .archive
            .url
            .as_deref()
            .ok_or("queue.url needs archive.url (PostgreSQL)")?;
        let pg = Arc::new(
            PgJobs::open(url, webhook::lease_ms(&cfg.webhook))
                .map_err(|e| format!("job database: {e}"))?,
        );
        let runtime = jobs_runtime()?;
        let nats = runtime
            .block_on(Nats::connect(&cfg.queue))
            .map_err(|e| format!("queue.url: {e}"))?;
        tracing::info!(stream = %cfg.queue.stream, subject = %cfg.queue.subject,
            "memo jobs go to NATS JetStream; `needtag worker` processes run them");
        Ok(Jobs {
            queue: pg.clone(),
            outbox: pg.clone(),
            stats: Arc::default(),
            webhook_stats: Arc::default(),
            work: Arc::default(),
            events: Arc::default(),
            webhook_on: cfg.webhook.url.as_deref().is_some_and(|u| !u.is_empty()),
            nats: Some(nats),
            pg: Some(pg),
            runtime: std::sync::Mutex::new(Some(runtime)),
        })
    }

    /// Start the runner (feeding `state`'s workers) and the webhook sender.
    pub fn start(&self, state: std::sync::Weak<AppState>, cfg: &Config) -> Result<(), String> {
        let guard = self.runtime.lock().unwrap_or_else(|p| p.into_inner());
        let Some(rt) = guard.as_ref() else {
            return Err("the jobs runtime has stopped".into());
        };
        if let (Some(nats), Some(pg)) = (&self.nats, &self.pg) {
            // The workers run the jobs and deliver their events; this replica publishes again
            // what it stored but could not publish.
            rt.spawn(sweeper(
                nats.clone(),
                pg.clone(),
                self.stats.clone(),
                Duration::from_secs(cfg.queue.sweep_every_s.max(1)),
                cfg.jobs.retention_days,
            ));
            return Ok(());
        }
        if let Some(sender) = Sender::new(
            &cfg.webhook,
            self.outbox.clone(),
            self.webhook_stats.clone(),
            self.events.clone(),
        )? {
            rt.spawn(Arc::new(sender).run());
        }
        rt.spawn(runner(state, self.work.clone()));
        Ok(())
    }

    /// Fails when the job database cannot be reached.
    pub fn ping(&self) -> Result<(), JobError> {
        self.queue.ping()
    }

    /// Scale-out: fails when NATS cannot be reached (Ok without NATS).
    pub async fn ping_queue(&self) -> Result<(), JobError> {
        match &self.nats {
            Some(n) => n.ping().await,
            None => Ok(()),
        }
    }

    /// Scale-out: publish an accepted job's id and record the stream's acknowledgement. A
    /// failure is logged and counted: the job stays stored, and the sweeper publishes it.
    async fn publish(&self, job_id: &str) {
        let (Some(nats), Some(pg)) = (&self.nats, &self.pg) else {
            return;
        };
        match nats.publish(job_id).await {
            Ok(()) => {
                let pg = pg.clone();
                let id = job_id.to_string();
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || pg.mark_published(&id)).await
                {
                    tracing::warn!(job_id, "publish not recorded (the sweeper may publish it again; workers take it once): {e}");
                }
            }
            Err(e) => {
                self.stats.publish_failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    job_id,
                    "job stored but not published yet (the sweeper retries): {e}"
                );
            }
        }
    }
}

/// The one-thread runtime the jobs' background tasks (runner, webhook sender, sweeper) run on.
fn jobs_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("jobs")
        .enable_all()
        .build()
        .map_err(|e| format!("jobs runtime: {e}"))
}

/// Scale-out: publish again, every `every`, the stored jobs whose publish failed; hourly,
/// delete finished jobs past `retention_days` (0 keeps them).
async fn sweeper(
    nats: Nats,
    pg: Arc<PgJobs>,
    stats: Arc<JobStats>,
    every: Duration,
    retention_days: u32,
) {
    // Left alone while a request may still be publishing it.
    let min_age_ms = (nats.config().publish_timeout_ms as i64).saturating_mul(2);
    let mut next_purge = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(every).await;
        if retention_days > 0 && tokio::time::Instant::now() >= next_purge {
            next_purge = tokio::time::Instant::now() + PURGE_EVERY;
            let before = Utc::now() - chrono::Duration::days(i64::from(retention_days));
            let store = pg.clone();
            match tokio::task::spawn_blocking(move || store.purge(before)).await {
                Ok(Ok(0)) | Err(_) => {}
                Ok(Ok(n)) => tracing::info!(
                    jobs = n,
                    days = retention_days,
                    "purged finished jobs past their retention"
                ),
                Ok(Err(e)) => tracing::warn!("job purge failed: {e}"),
            }
        }
        let store = pg.clone();
        let ids =
            match tokio::task::spawn_blocking(move || store.unpublished(min_age_ms, 500)).await {
                Ok(Ok(ids)) => ids,
                Ok(Err(e)) => {
                    tracing::warn!("sweeper: the job database: {e}");
                    continue;
                }
                Err(_) => continue,
            };
        for id in ids {
            match nats.publish(&id).await {
                Ok(()) => {
                    stats.republished.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(job_id = %id, "stored job published by the sweeper");
                    let store = pg.clone();
                    let _ = tokio::task::spawn_blocking(move || store.mark_published(&id)).await;
                }
                Err(e) => {
                    tracing::warn!("sweeper: NATS still refuses publishes: {e}");
                    break;
                }
            }
        }
    }
}

/// AppState → its jobs, or why not.
fn jobs_of(state: &AppState) -> Result<Arc<Jobs>, ApiError> {
    let loaded = state.get()?;
    loaded
        .jobs
        .clone()
        .ok_or_else(|| ApiError::new(Code::NotFound, "memo jobs are off (jobs.enabled = false)"))
}

/// True when the runner may hand one more job to the workers now.
fn may_take(state: &AppState, reserved: usize) -> bool {
    let Ok(loaded) = state.get() else {
        return false;
    };
    let Some(jobs) = &loaded.jobs else {
        return false;
    };
    let pool = &loaded.pool;
    let running = jobs.stats.running.load(Ordering::SeqCst);
    if running >= pool.workers() {
        return false;
    }
    running < reserved.min(pool.workers()) || pool.busy() + pool.waiting() < pool.workers()
}

/// Hand queued jobs to idle workers until the process ends.
async fn runner(state: std::sync::Weak<AppState>, work: Arc<Notify>) {
    let mut next_purge = tokio::time::Instant::now();
    // After an empty claim, wait for a new job (or a few seconds) before asking again.
    let mut maybe_queued = true;
    loop {
        let Some(st) = state.upgrade() else { return };
        let reserved = st.cfg.jobs.reserved_workers;
        if tokio::time::Instant::now() >= next_purge {
            next_purge = tokio::time::Instant::now() + PURGE_EVERY;
            purge(&st).await;
        }
        while maybe_queued && may_take(&st, reserved) {
            let Ok(jobs) = jobs_of(&st) else { break };
            let queue = jobs.queue.clone();
            match tokio::task::spawn_blocking(move || queue.claim()).await {
                Ok(Ok(Some(job))) => {
                    jobs.stats.running.fetch_add(1, Ordering::SeqCst);
                    if job.attempts > 1 {
                        jobs.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::spawn(run_job(st.clone(), jobs, job));
                }
                Ok(Ok(None)) => maybe_queued = false,
                Ok(Err(e)) => {
                    tracing::error!("could not take a job: {e}");
                    break;
                }
                Err(_) => break,
            }
        }
        drop(st);
        if maybe_queued {
            // Jobs wait, but no worker is free for one: look again shortly.
            tokio::select! {
                _ = work.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        } else {
            tokio::select! {
                _ = work.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            maybe_queued = true;
        }
    }
}

async fn purge(state: &AppState) {
    let days = state.cfg.jobs.retention_days;
    let Ok(jobs) = jobs_of(state) else { return };
    if days == 0 {
        return;
    }
    let before = Utc::now() - chrono::Duration::days(i64::from(days));
    let queue = jobs.queue.clone();
    match tokio::task::spawn_blocking(move || queue.purge(before)).await {
        Ok(Ok(0)) | Err(_) => {}
        Ok(Ok(n)) => tracing::info!(jobs = n, days, "purged finished jobs past their retention"),
        Ok(Err(e)) => tracing::error!("job purge failed: {e}"),
    }
}

/// The result an earlier attempt archived under this job's memo id, if any.
async fn archived(state: &AppState, memo_id: &str) -> Option<JobResult> {
    let archive = state.loaded.get().and_then(|l| l.archive.clone())?;
    let id = memo_id.to_string();
    match archive.call(move |s| s.get(&id)).await {
        Ok(Some(m)) => match m.result {
            Some(crate::archive::StoredResult::Audio(r)) => Some(JobResult::Audio(r)),
            Some(crate::archive::StoredResult::Text(r)) => Some(JobResult::Text(r)),
            None => None,
        },
        _ => None,
    }
}

/// Store the result in the archive (waiting for the commit), unless it is there already.
async fn archive_result(state: &AppState, result: &JobResult, job: &Claimed) -> Result<(), String> {
    let Some(archive) = state.loaded.get().and_then(|l| l.archive.clone()) else {
        return Ok(());
    };
    let memo = result
        .to_memo(&job.meta, &job.owner_name)
        .map_err(|e| e.to_string())?;
    archive
        .call(move |s| {
            if s.get(&memo.memo_id)?.is_none() {
                s.store(std::slice::from_ref(&memo))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| e.to_string())
}

async fn attempt(state: &Arc<AppState>, job: &Claimed, audio: Vec<u8>) -> Attempt {
    if let Some(r) = archived(state, &job.memo_id).await {
        // An earlier attempt got this far before the process died.
        if let Ok(jobs) = jobs_of(state) {
            jobs.stats.deduplicated.fetch_add(1, Ordering::Relaxed);
        }
        return Attempt::Finished(Outcome::Done(r));
    }
    let Ok(loaded) = state.get() else {
        return Attempt::Transient("the service is stopping".into());
    };
    match super::attempt::run(&state.cfg, &loaded.engine, &loaded.pool, job, audio).await {
        Attempt::Finished(Outcome::Done(result)) => {
            if let JobResult::Audio(r) = &result {
                super::routes::record_stages(state, r);
            }
            match archive_result(state, &result, job).await {
                Ok(()) => Attempt::Finished(Outcome::Done(result)),
                Err(e) => Attempt::Transient(format!("the result could not be archived: {e}")),
            }
        }
        other => other,
    }
}

/// Run one claimed job to its end (or back to the queue).
async fn run_job(state: Arc<AppState>, jobs: Arc<Jobs>, mut job: Claimed) {
    // The audio goes to the worker without a copy; the rest of the job stays for its event.
    let audio = std::mem::take(&mut job.audio);
    let max = state.cfg.jobs.max_attempts;
    let attempt = if job.attempts > max {
        // Taken more often than allowed: earlier attempts died with the process.
        Attempt::Finished(Outcome::Failed(JobFailure {
            code: Code::Internal.as_str().into(),
            message: format!(
                "the job was interrupted {} times; it is not tried again",
                job.attempts - 1
            ),
        }))
    } else {
        attempt(&state, &job, audio).await
    };
    let outcome = match attempt {
        Attempt::Finished(o) => o,
        Attempt::Transient(why) if job.attempts >= max => {
            tracing::error!(job_id = %job.job_id, attempts = job.attempts, "job failed on the server's side: {why}");
            Outcome::Failed(JobFailure {
                code: Code::Internal.as_str().into(),
                message: format!(
                    "the server could not process this job in {} attempts; it has been logged",
                    job.attempts
                ),
            })
        }
        Attempt::Transient(why) => {
            tracing::warn!(job_id = %job.job_id, attempts = job.attempts, "job attempt failed, queued again: {why}");
            let queue = jobs.queue.clone();
            let id = job.job_id.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || queue.requeue(&id)).await {
                tracing::error!(job_id = %job.job_id, "job not queued again (the next start will): {e}");
            }
            jobs.stats.running.fetch_sub(1, Ordering::SeqCst);
            jobs.work.notify_one();
            return;
        }
    };
    let at = Utc::now();
    let event = Event::to_store(jobs.webhook_on, &job, &outcome, at);
    let failed = matches!(outcome, Outcome::Failed(_));
    let queue = jobs.queue.clone();
    let id = job.job_id.clone();
    let finished =
        tokio::task::spawn_blocking(move || queue.finish(&id, &outcome, at, event.as_ref())).await;
    match finished {
        Ok(Ok(true)) => {
            let counter = if failed {
                &jobs.stats.failed
            } else {
                &jobs.stats.done
            };
            counter.fetch_add(1, Ordering::Relaxed);
            jobs.events.notify_one();
        }
        Ok(Ok(false)) => {}
        Ok(Err(e)) => {
            // Left running: the next start queues it again, and the archive has its result.
            tracing::error!(job_id = %job.job_id, "job end not recorded: {e}");
        }
        Err(_) => tracing::error!(job_id = %job.job_id, "job end not recorded"),
    }
    jobs.stats.running.fetch_sub(1, Ordering::SeqCst);
    jobs.work.notify_one();
}

/// The answer to an accepted job.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub job_id: String,
    pub status: Status,
    /// Where to ask for the job's status and result (relative to the service).
    pub status_url: String,
    /// The memo id its result and archive entry will have.
    pub memo_id: String,
}

fn accepted(job: &Job, replayed: bool) -> Response {
    let url = format!("/v1/jobs/{}", job.job_id);
    let mut resp = (
        StatusCode::ACCEPTED,
        Json(Accepted {
            job_id: job.job_id.clone(),
            status: job.status,
            status_url: url.clone(),
            memo_id: job.memo_id.clone(),
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&url) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if replayed {
        resp.headers_mut()
            .insert("idempotency-replayed", HeaderValue::from_static("true"));
    }
    resp
}

/// Accept a voice memo for transcription later: stored durably, answered at once.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    params(("rep_id" = Option<String>, Query), ("customer_id" = Option<String>, Query), ("team" = Option<String>, Query), ("recorded_at" = Option<String>, Query, description = "RFC 3339"),
        ("domain" = Option<String>, Query, description = "the rep's industry, one of the library's domains"),
        ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key (and the same upload) returns the same job")),
    request_body(description = "A voice memo: the same upload as POST /v1/memos (multipart/form-data with an `audio` field, or the audio itself with its audio/* content type). Or a text memo: the JSON body POST /v1/tag takes, with Content-Type application/json; its result is /v1/tag's.",
        content((super::routes::TagRequest = "application/json"), (String = "multipart/form-data"), (Vec<u8> = "audio/*"))),
    responses((status = 202, description = "stored (committed to disk, or to the shared PostgreSQL database when scaled out); poll status_url or wait for the webhook", body = Accepted),
        (status = 400, body = super::error::ErrorBody), (status = 401, body = super::error::ErrorBody), (status = 404, description = "jobs are off", body = super::error::ErrorBody),
        (status = 413, body = super::error::ErrorBody), (status = 415, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody),
        (status = 429, body = super::error::ErrorBody), (status = 503, description = "jobs.max_pending jobs wait already, or the job database is unreachable; see Retry-After", body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn submit(State(state): Shared, req: Request) -> Response {
    submit_inner(state, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn submit_inner(state: Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    let caller = authorize(&state.cfg.server.api_keys, req.headers(), Scope::Tag)?;
    let jobs = jobs_of(&state)?;
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if json {
        // A text memo: the body /v1/tag takes.
        let t = super::routes::read_text_job(&state, &caller, req).await?;
        let new = NewJob {
            job_id: crate::jobs::new_job_id(),
            memo_id: crate::result::new_memo_id(),
            owner: caller.id,
            owner_name: caller.name.clone(),
            idempotency_key: t.idem,
            fingerprint: t.fp,
            audio: Vec::new(),
            meta: JobMeta {
                text: Some(t.input),
                ..t.meta
            },
        };
        return store(&state, &jobs, &caller, new).await;
    }
    let (query, idem) = upload_head(&state, &req)?;
    // The upload counts against the key's in-flight limit while it arrives.
    let counted = state.enter(&caller.id).ok_or_else(|| {
        ApiError::new(
            Code::TooManyRequests,
            format!(
                "this API key already has {} memos in flight",
                state.cfg.server.per_key_inflight
            ),
        )
        .retry_after(1)
    })?;
    let Upload { bytes, meta, fp } = read_upload(&state, &caller, "jobs", req, query).await?;
    drop(counted);
    // What can be told from the bytes at once is told now, as /v1/memos would.
    if bytes.is_empty() {
        return Err(crate::Error::EmptyAudio.into());
    }
    crate::audio::sniff(&bytes)?;
    let new = NewJob {
        job_id: crate::jobs::new_job_id(),
        memo_id: meta.memo_id,
        owner: caller.id,
        owner_name: caller.name.clone(),
        idempotency_key: idem,
        fingerprint: fp,
        audio: bytes.to_vec(),
        meta: JobMeta {
            rep_id: meta.rep_id,
            customer_id: meta.customer_id,
            team: meta.team,
            recorded_at: meta.recorded_at,
            domain: meta.domain,
            text: None,
        },
    };
    drop(bytes);
    store(&state, &jobs, &caller, new).await
}

/// Store an accepted job (and, scaled out, publish it), then answer.
async fn store(
    state: &AppState,
    jobs: &Arc<Jobs>,
    caller: &Caller,
    new: NewJob,
) -> Result<Response, ApiError> {
    let (max, max_bytes) = (state.cfg.jobs.max_pending, state.cfg.jobs.max_pending_bytes);
    let queue = jobs.queue.clone();
    let submitted = tokio::task::spawn_blocking(move || queue.submit(new, max, max_bytes))
        .await
        .map_err(|_| ApiError::new(Code::Internal, "the job could not be stored"))?
        .map_err(job_error)?;
    match submitted {
        Submitted::Created(job) => {
            jobs.stats.accepted.fetch_add(1, Ordering::Relaxed);
            // Committed: the job is durable. Scaled out, its id goes to the stream now (and
            // by the sweeper if this publish fails).
            jobs.publish(&job.job_id).await;
            jobs.work.notify_one();
            tracing::info!(job_id = %job.job_id, memo_id = %job.memo_id, caller = %caller.name, "job accepted");
            Ok(accepted(&job, false))
        }
        Submitted::Existing(job) => Ok(accepted(&job, true)),
        Submitted::KeyReused => Err(ApiError::new(
            Code::IdempotencyKeyReused,
            "this Idempotency-Key was used with a different request",
        )),
        Submitted::Full => Err(ApiError::new(
            Code::Busy,
            format!(
                "{} jobs (or {} bytes of audio) are waiting already (jobs.max_pending, jobs.max_pending_bytes); retry later",
                state.cfg.jobs.max_pending, state.cfg.jobs.max_pending_bytes
            ),
        )
        .retry_after(60)),
    }
}

fn path_id(id: Result<Path<String>, PathRejection>, what: &str) -> Result<String, ApiError> {
    let Path(id) = id.map_err(|e| {
        ApiError::new(
            Code::InvalidRequest,
            format!("the {what} id is not valid: {}", e.body_text()),
        )
    })?;
    if id.is_empty() || id.len() > 64 {
        return Err(ApiError::new(
            Code::InvalidRequest,
            format!("the {what} id has 1 to 64 characters"),
        ));
    }
    Ok(id)
}

/// The caller, and whether it may see every job (an admin key).
fn reader(state: &AppState, headers: &HeaderMap) -> Result<(Caller, bool), ApiError> {
    let keys = &state.cfg.server.api_keys;
    if let Ok(admin) = authorize(keys, headers, Scope::Admin) {
        return Ok((admin, true));
    }
    Ok((authorize(keys, headers, Scope::Tag)?, false))
}

/// A job's status, with its result once done or its typed error once failed. A key sees the
/// jobs it sent; an admin key sees every job.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Job), (status = 401, body = super::error::ErrorBody), (status = 404, description = "no such job for this key", body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_one(
    State(state): Shared,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Job>, ApiError> {
    let (caller, admin) = reader(&state, &headers)?;
    let id = path_id(id, "job")?;
    let jobs = jobs_of(&state)?;
    let queue = jobs.queue.clone();
    let lookup = id.clone();
    let job = tokio::task::spawn_blocking(move || queue.get(&lookup))
        .await
        .map_err(|_| ApiError::new(Code::Internal, "the job could not be read"))?
        .map_err(job_error)?;
    // Another key's job is answered exactly as a missing one.
    match job {
        Some(j) if admin || j.owner == caller.id => Ok(Json(j)),
        _ => Err(ApiError::new(Code::NotFound, format!("no job {id:?}"))),
    }
}

/// Webhook events parked after their last attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadList {
    pub items: Vec<DeadEvent>,
}

/// Most dead events listed.
const DEAD_LIMIT: usize = 500;

/// Dead webhook events, newest first (admin).
#[utoipa::path(get, path = "/v1/webhooks/dead", tag = "jobs",
    responses((status = 200, body = DeadList), (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn dead(State(state): Shared, headers: HeaderMap) -> Result<Json<DeadList>, ApiError> {
    authorize(&state.cfg.server.api_keys, &headers, Scope::Admin)?;
    let jobs = jobs_of(&state)?;
    let outbox = jobs.outbox.clone();
    let items = tokio::task::spawn_blocking(move || outbox.dead(DEAD_LIMIT))
        .await
        .map_err(|_| ApiError::new(Code::Internal, "the outbox could not be read"))?
        .map_err(job_error)?;
    Ok(Json(DeadList { items }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Resent {
    pub event_id: String,
    /// `pending`: it is sent again at once, with a fresh count of attempts.
    pub state: &'static str,
}

/// Send a dead webhook event again (admin).
#[utoipa::path(post, path = "/v1/webhooks/dead/{event_id}/retry", tag = "jobs", params(("event_id" = String, Path)),
    responses((status = 202, body = Resent), (status = 401, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 404, description = "no event with this id", body = super::error::ErrorBody),
        (status = 409, description = "the event is pending or delivered, not dead", body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn retry_dead(
    State(state): Shared,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let caller = authorize(&state.cfg.server.api_keys, &headers, Scope::Admin)?;
    let id = path_id(id, "event")?;
    let jobs = jobs_of(&state)?;
    let outbox = jobs.outbox.clone();
    let event = id.clone();
    let resent = tokio::task::spawn_blocking(move || outbox.resend(&event))
        .await
        .map_err(|_| ApiError::new(Code::Internal, "the outbox could not be written"))?
        .map_err(job_error)?;
    match resent {
        Resend::Queued => {}
        Resend::Unknown => {
            return Err(ApiError::new(
                Code::NotFound,
                format!("no webhook event {id:?}"),
            ))
        }
        Resend::NotDead => {
            return Err(ApiError::new(
                Code::EventNotDead,
                format!(
                    "webhook event {id:?} is pending or delivered, not dead; it is not sent again"
                ),
            ))
        }
    }
    tracing::info!(event_id = %id, caller = %caller.name, "dead webhook event queued again");
    jobs.events.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(Resent {
            event_id: id,
            state: "pending",
        }),
    )
        .into_response())
}

/// The jobs' gauges and counters for `/metrics` (empty when jobs are off or unreadable).
pub(super) fn gauges(state: &AppState) -> Vec<(&'static str, &'static str, f64)> {
    let Some(jobs) = state.loaded.get().and_then(|l| l.jobs.clone()) else {
        return Vec::new();
    };
    let counts = jobs.queue.counts().unwrap_or_default();
    let outbox = jobs.outbox.outbox_counts().unwrap_or_default();
    let (s, w) = (&jobs.stats, &jobs.webhook_stats);
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    // Scaled out, the workers redeliver and send: the shared database's counts stand in for
    // this replica's own (kept jobs and events, not since start).
    let shared = jobs.nats.is_some();
    let kept_or_own = |kept: u64, own: &AtomicU64| if shared { kept as f64 } else { n(own) };
    let redelivered = kept_or_own(counts.redelivered, &s.redelivered);
    let delivered = kept_or_own(outbox.delivered, &w.delivered);
    let done = kept_or_own(counts.done, &s.done);
    let failed = kept_or_own(counts.failed, &s.failed);
    let failures = kept_or_own(outbox.failed_attempts, &w.failed_attempts);
    vec![
        ("needtag_jobs_queued", "Memo jobs stored and waiting for a worker.", counts.queued as f64),
        ("needtag_jobs_running", "Memo jobs a worker has taken.", counts.running as f64),
        ("needtag_jobs_oldest_queued_age_seconds", "How long the oldest queued job has waited.", counts.oldest_queued_s),
        ("needtag_jobs_pending_bytes", "Audio bytes held by queued and running jobs.", counts.pending_bytes as f64),
        ("needtag_jobs_accepted", "Jobs accepted since start.", n(&s.accepted)),
        ("needtag_jobs_done", "Jobs finished with a result since start (scaled out: those kept in the shared database).", done),
        ("needtag_jobs_failed", "Jobs finished with an error since start (scaled out: those kept in the shared database).", failed),
        ("needtag_jobs_redelivered", "Job attempts beyond the first since start (after a restart or a server-side failure).", redelivered),
        ("needtag_jobs_deduplicated", "Jobs whose result an interrupted attempt had archived already (not transcribed again).", n(&s.deduplicated)),
        ("needtag_jobs_publish_failed", "Scaled out: job publishes to NATS that failed since start (the job stays stored; the sweeper publishes it).", n(&s.publish_failed)),
        ("needtag_jobs_republished", "Scaled out: stored jobs the sweeper published since start.", n(&s.republished)),
        ("needtag_webhook_pending", "Webhook events waiting for delivery or a retry.", outbox.pending as f64),
        ("needtag_webhook_dead", "Webhook events parked after their last attempt.", outbox.dead as f64),
        ("needtag_webhook_delivered", "Webhook events delivered since start.", delivered),
        ("needtag_webhook_failures", "Failed webhook attempts (error status, timeout, no connection) since start.", failures),
        ("needtag_webhook_retries", "Webhook attempts beyond an event's first since start.", n(&w.retries)),
        ("needtag_webhook_parked", "Webhook events parked as dead since start.", n(&w.dead)),
    ]
}

/// Scaled out: the stream's and the consumer's gauges (empty without NATS, or when NATS does
/// not answer: `needtag_queue_up` says which).
pub(super) async fn queue_gauges(state: &AppState) -> Vec<(&'static str, &'static str, f64)> {
    let Some(jobs) = state.loaded.get().and_then(|l| l.jobs.clone()) else {
        return Vec::new();
    };
    let Some(nats) = &jobs.nats else {
        return Vec::new();
    };
    let depth = tokio::time::timeout(Duration::from_secs(2), nats.depth()).await;
    let Ok(Ok(d)) = depth else {
        return vec![("needtag_queue_up", "1 when NATS answered this scrape.", 0.0)];
    };
    vec![
        ("needtag_queue_up", "1 when NATS answered this scrape.", 1.0),
        (
            "needtag_queue_pending",
            "Job ids in the stream not yet delivered to a worker (queue depth).",
            d.pending as f64,
        ),
        (
            "needtag_queue_ack_pending",
            "Job ids delivered to a worker and not acknowledged yet.",
            d.ack_pending as f64,
        ),
        (
            "needtag_queue_redelivered",
            "Unacknowledged job ids delivered more than once (a worker died or gave one back).",
            d.redelivered as f64,
        ),
        (
            "needtag_queue_dead",
            "Job ids in the dead-letter stream (failed after their last allowed delivery).",
            d.dead as f64,
        ),
    ]
}
