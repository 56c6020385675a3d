//! Memo jobs: an upload accepted now and transcribed when a worker is free, and its result
//! pushed to a CRM webhook.
//!
//! Two small interfaces hold the durable state: [`JobQueue`] (jobs from accepted to done or
//! failed) and [`Outbox`] (one webhook event per finished job, until delivered or dead).
//! [`sqlite::SqliteJobs`] implements both in the archive's SQLite file, in tables of its own with
//! their own migration track (`jobs_schema_migrations`), over its own connection. A shared queue
//! server (NATS JetStream) would implement [`JobQueue`] for workers on several machines.
//!
//! What runs the jobs (the service's transcription workers) lives in the API
//! (`api::jobs`); what delivers the events is [`webhook`].

pub mod nats;
pub mod postgres;
pub mod sqlite;
pub mod webhook;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::result::{MemoResult, TextResult};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the job database failed: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("the job database failed: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("the job queue (NATS) failed: {0}")]
    Queue(String),
    #[error("the job's memo could not be archived: {0}")]
    Archive(String),
    #[error("the job database at {path}: {message}")]
    Open { path: String, message: String },
    #[error("a stored job could not be read back: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, JobError>;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted and stored; waiting for a worker.
    Queued,
    /// A worker is transcribing it.
    Running,
    /// Finished: `result` holds the memo's result (also in the archive under `memo_id`).
    Done,
    /// Finished without a result: `error` holds the typed error `/v1/memos` would have given.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Done => "done",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "queued" => Some(Status::Queued),
            "running" => Some(Status::Running),
            "done" => Some(Status::Done),
            "failed" => Some(Status::Failed),
            _ => None,
        }
    }
}

/// The metadata sent with a memo, kept with the job until a worker takes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobMeta {
    pub rep_id: Option<String>,
    pub customer_id: Option<String>,
    pub team: Option<String>,
    pub recorded_at: Option<DateTime<FixedOffset>>,
    pub domain: Option<String>,
    /// A text job (`POST /v1/jobs` with the JSON `/v1/tag` takes): its text and how to tag it.
    /// None for a voice memo, whose bytes are the job's audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextInput>,
}

/// What a text job tags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TextInput {
    pub text: String,
    /// Keywords and sentence embeddings (true, the default) or keywords only.
    pub hybrid: bool,
    pub explain: bool,
}

/// A finished job's result: a voice memo's (`/v1/memos`'s answer) or a text's (`/v1/tag`'s).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum JobResult {
    Audio(Box<MemoResult>),
    Text(Box<TextResult>),
}

impl JobResult {
    /// The archive's record of this result.
    pub fn to_memo(
        &self,
        meta: &JobMeta,
        owner: &str,
    ) -> serde_json::Result<crate::archive::NewMemo> {
        match self {
            JobResult::Audio(r) => crate::archive::NewMemo::audio(r, owner),
            JobResult::Text(r) => crate::archive::NewMemo::text(
                r,
                crate::archive::Meta {
                    rep_id: meta.rep_id.clone(),
                    customer_id: meta.customer_id.clone(),
                    team: meta.team.clone(),
                    domain: meta.domain.clone(),
                    recorded_at: meta.recorded_at,
                },
                owner,
            ),
        }
    }
}

/// A job to store.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub job_id: String,
    /// Minted now: the memo's id in the result and the archive, whichever attempt produces it.
    pub memo_id: String,
    /// Who may read it: the hash of the API key that sent it.
    pub owner: [u8; 32],
    /// The name of that key (for the archive's `stored_by` and logs; never the key).
    pub owner_name: String,
    pub idempotency_key: Option<String>,
    /// What the request was (route, key, audio and metadata), for `Idempotency-Key` reuse.
    pub fingerprint: [u8; 32],
    pub audio: Vec<u8>,
    pub meta: JobMeta,
}

/// What [`JobQueue::submit`] did.
#[derive(Debug)]
pub enum Submitted {
    /// Stored now (committed before this returns).
    Created(Job),
    /// The same key and `Idempotency-Key` sent the same request before: that job.
    Existing(Job),
    /// The same key and `Idempotency-Key` sent a different request before.
    KeyReused,
    /// `max_pending` jobs (or `max_pending_bytes` of audio) are waiting already.
    Full,
}

/// What [`Outbox::resend`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// The dead event is pending again.
    Queued,
    /// No event has this id.
    Unknown,
    /// The event is not dead (still pending, or delivered): nothing to resend.
    NotDead,
}

/// The typed error of a failed job: the code and message `/v1/memos` would have answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobFailure {
    pub code: String,
    pub message: String,
}

/// A job as its owner sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Job {
    pub job_id: String,
    pub status: Status,
    pub memo_id: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Times a worker took it (more than 1 after a restart or a server-side failure).
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobFailure>,
    #[serde(skip)]
    pub owner: [u8; 32],
    #[serde(skip)]
    pub fingerprint: [u8; 32],
}

/// A job a worker took.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub job_id: String,
    pub memo_id: String,
    pub owner_name: String,
    pub audio: Vec<u8>,
    pub meta: JobMeta,
    /// Including this one.
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
}

/// How a job ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Done(JobResult),
    Failed(JobFailure),
}

/// A webhook event to store with a finished job (in the same transaction).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: String,
    /// The exact bytes every attempt sends.
    pub body: String,
}

/// Jobs waiting, running, and the oldest waiting one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    /// Seconds the oldest queued job has waited (0 when none waits).
    pub oldest_queued_s: f64,
    pub pending_bytes: u64,
    /// Deliveries beyond the first of the jobs still kept (shared store only; the embedded
    /// service counts its own).
    pub redelivered: u64,
}

/// The durable job queue.
pub trait JobQueue: Send + Sync {
    /// Store a job (audio included) durably, or say why not.
    fn submit(&self, job: NewJob, max_pending: u64, max_pending_bytes: u64) -> Result<Submitted>;
    fn get(&self, job_id: &str) -> Result<Option<Job>>;
    /// Take the oldest queued job: it becomes `running` and its attempts grow by one.
    fn claim(&self) -> Result<Option<Claimed>>;
    /// Finish a running job (and store its webhook event, when given) in one transaction.
    /// False when the job was not running (finished already): nothing changes then.
    fn finish(
        &self,
        job_id: &str,
        outcome: &Outcome,
        at: DateTime<Utc>,
        event: Option<&NewEvent>,
    ) -> Result<bool>;
    /// Put a running job back in the queue (its attempt failed on the server's side).
    fn requeue(&self, job_id: &str) -> Result<()>;
    /// At start: jobs left `running` by a process that died go back to `queued`.
    fn recover(&self) -> Result<u64>;
    fn counts(&self) -> Result<Counts>;
    /// Fails when the database cannot be reached.
    fn ping(&self) -> Result<()>;
    /// Delete finished jobs older than `before`; the number deleted.
    fn purge(&self, before: DateTime<Utc>) -> Result<u64>;
}

/// A webhook event to deliver.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event_id: String,
    pub job_id: String,
    pub body: String,
    /// Attempts made before this one.
    pub attempts: u32,
}

/// An event parked after its last attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadEvent {
    pub event_id: String,
    pub job_id: String,
    pub attempts: u32,
    /// What the last attempt got (an HTTP status or a connection error).
    pub last_error: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub last_attempt_at: String,
}

/// Webhook events waiting, delivered and dead.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
    /// Failed attempts of the events still kept (shared store only; the embedded service
    /// counts its own).
    pub failed_attempts: u64,
}

/// The durable webhook outbox.
pub trait Outbox: Send + Sync {
    /// Pending events whose next attempt is due at `now`, oldest first.
    fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>>;
    fn delivered(&self, event_id: &str, status: u16) -> Result<()>;
    /// An attempt failed: try again at `retry_at`, or (None) park the event as dead.
    fn attempt_failed(
        &self,
        event_id: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<()>;
    /// Dead events, newest first.
    fn dead(&self, limit: usize) -> Result<Vec<DeadEvent>>;
    /// Make a dead event pending again with fresh attempts, or say why not.
    fn resend(&self, event_id: &str) -> Result<Resend>;
    fn outbox_counts(&self) -> Result<OutboxCounts>;
    /// The earliest time a pending event is due, if any.
    fn next_due(&self) -> Result<Option<DateTime<Utc>>>;
}

/// A job's row as both stores keep it (times in milliseconds, the result as JSON, the hashes
/// as bytes), before it is read back as a [`Job`]. Each store selects these columns in this
/// order (its `JOB_COLUMNS`).
pub(crate) struct JobRow {
    pub job_id: String,
    pub status: String,
    pub memo_id: String,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub attempts: i64,
    pub result: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub owner: Vec<u8>,
    pub fingerprint: Vec<u8>,
}

impl JobRow {
    pub(crate) fn into_job(self) -> Result<Job> {
        let result = match self.result {
            Some(json) => Some(
                serde_json::from_str::<JobResult>(&json)
                    .map_err(|e| JobError::Corrupt(format!("job result: {e}")))?,
            ),
            None => None,
        };
        Ok(Job {
            status: Status::parse(&self.status)
                .ok_or_else(|| JobError::Corrupt(format!("unknown status {:?}", self.status)))?,
            job_id: self.job_id,
            memo_id: self.memo_id,
            created_at: rfc3339(self.created_ms),
            started_at: self.started_ms.map(rfc3339),
            finished_at: self.finished_ms.map(rfc3339),
            attempts: self.attempts.clamp(0, i64::from(u32::MAX)) as u32,
            result,
            error: self.error_code.map(|code| JobFailure {
                code,
                message: self.error_message.unwrap_or_default(),
            }),
            owner: hash32(&self.owner),
            fingerprint: hash32(&self.fingerprint),
        })
    }
}

/// A stored 32-byte hash (zeros if the column holds anything else: it then matches no key).
fn hash32(v: &[u8]) -> [u8; 32] {
    v.try_into().unwrap_or([0u8; 32])
}

/// The columns a job's end sets: status, result JSON, error code and message.
pub(crate) type Ending<'a> = (Status, Option<String>, Option<&'a str>, Option<&'a str>);

impl Outcome {
    /// What a job ending this way stores.
    pub(crate) fn ending(&self) -> Result<Ending<'_>> {
        Ok(match self {
            Outcome::Done(r) => (
                Status::Done,
                Some(
                    serde_json::to_string(r)
                        .map_err(|e| JobError::Invalid(format!("job result: {e}")))?,
                ),
                None,
                None,
            ),
            Outcome::Failed(f) => (
                Status::Failed,
                None,
                Some(f.code.as_str()),
                Some(f.message.as_str()),
            ),
        })
    }
}

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

pub(crate) fn rfc3339(ms: i64) -> String {
    from_millis(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A new job id.
pub fn new_job_id() -> String {
    format!("job_{}", uuid::Uuid::new_v4().simple())
}

/// The id of a job's webhook event: one event per job, whichever attempt finished it.
pub fn event_id(job_id: &str) -> String {
    format!("evt_{}", job_id.strip_prefix("job_").unwrap_or(job_id))
}

/// The webhook event of a finished job, as delivered (the body every attempt sends).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    /// The same for every attempt at this event: receivers de-duplicate on it.
    pub event_id: String,
    /// `job.done` or `job.failed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339, UTC: when the job finished.
    pub created_at: String,
    pub job_id: String,
    pub memo_id: String,
    pub status: Status,
    pub rep_id: Option<String>,
    pub customer_id: Option<String>,
    /// Attempts the job took.
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<JobResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobFailure>,
}

impl Event {
    /// The event of `job` ending with `outcome` at `at`.
    pub fn of(job: &Claimed, outcome: &Outcome, at: DateTime<Utc>) -> Event {
        let (status, result, error) = match outcome {
            Outcome::Done(r) => (Status::Done, Some(r.clone()), None),
            Outcome::Failed(f) => (Status::Failed, None, Some(f.clone())),
        };
        Event {
            event_id: event_id(&job.job_id),
            kind: format!("job.{}", status.as_str()),
            created_at: rfc3339(millis(at)),
            job_id: job.job_id.clone(),
            memo_id: job.memo_id.clone(),
            status,
            rep_id: job.meta.rep_id.clone(),
            customer_id: job.meta.customer_id.clone(),
            attempts: job.attempts,
            result,
            error,
        }
    }

    /// The event to store.
    pub fn to_new(&self) -> serde_json::Result<NewEvent> {
        Ok(NewEvent {
            event_id: self.event_id.clone(),
            body: serde_json::to_string(self)?,
        })
    }

    /// What to store with `job`'s end: its event when webhooks are on, else nothing. An event
    /// that does not serialize is logged and left out: the job still ends.
    pub fn to_store(
        webhook_on: bool,
        job: &Claimed,
        outcome: &Outcome,
        at: DateTime<Utc>,
    ) -> Option<NewEvent> {
        if !webhook_on {
            return None;
        }
        Event::of(job, outcome, at)
            .to_new()
            .map_err(|e| {
                tracing::error!(job_id = %job.job_id, "webhook event did not serialize: {e}");
            })
            .ok()
    }
}

#[cfg(test)]
mod tests;
