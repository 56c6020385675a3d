//! Jobs and webhook events in the PostgreSQL archive's database (`archive.url`), shared by
//! every API replica and every `needtag worker` when jobs go through NATS (`queue.url`).
//!
//! The tables mirror [`super::sqlite`]'s (`jobs`, `webhook_events`, the job's audio as
//! `bytea`), on a migration track of their own (`jobs_schema_migrations`, under an advisory
//! lock of their own): the archive's numbered steps are kept identical for SQLite and
//! PostgreSQL, and the jobs' tables are not part of the archive, so they do not join its track.
//!
//! What sharing adds to the embedded store:
//! - [`PgJobs::complete`] stores a finished job's memo in the archive's tables, marks the job
//!   done (or failed) and stores its webhook event in ONE transaction, after taking the job's
//!   row lock: a job finished twice (a redelivery racing a slow worker) is stored once.
//! - [`Outbox::due`] leases the events it returns (`FOR UPDATE SKIP LOCKED`, then their next
//!   attempt moved past the lease), so several workers never send one event at once.
//! - `published`: whether the stream acknowledged the job's id; the API's sweeper publishes
//!   again the jobs whose publish failed.
//!
//! The client is the blocking `postgres` crate (as the archive's): call it off the async
//! runtime (`spawn_blocking`).

use std::sync::{Mutex, MutexGuard};

use ::postgres::{Client, NoTls, Row};
use chrono::{DateTime, Utc};

use super::{
    from_millis, millis, rfc3339, Claimed, Counts, DeadEvent, Delivery, Job, JobError, JobMeta,
    JobQueue, JobRow, NewEvent, NewJob, Outbox, OutboxCounts, Outcome, Resend, Result, Submitted,
};
use crate::archive::postgres::redact_url;

/// The jobs' schema for PostgreSQL, applied in order and recorded in
/// `jobs_schema_migrations`.
pub(crate) const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "jobs and webhook events, shared by replicas and workers",
        "CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        memo_id TEXT NOT NULL UNIQUE,
        owner BYTEA NOT NULL,
        owner_name TEXT NOT NULL,
        idempotency_key TEXT,
        fingerprint BYTEA NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
        audio BYTEA,
        audio_bytes BIGINT NOT NULL,
        meta TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_ms BIGINT NOT NULL,
        started_ms BIGINT,
        finished_ms BIGINT,
        result TEXT,
        error_code TEXT,
        error_message TEXT,
        published BOOLEAN NOT NULL DEFAULT FALSE,
        worker TEXT
    );
    CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_by_status ON jobs (status, created_ms);
    CREATE INDEX jobs_unpublished ON jobs (created_ms) WHERE NOT published AND status = 'queued';
    CREATE TABLE webhook_events (
        event_id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_ms BIGINT NOT NULL,
        last_error TEXT,
        last_attempt_ms BIGINT,
        created_ms BIGINT NOT NULL,
        delivered_ms BIGINT
    );
    CREATE INDEX webhook_events_due ON webhook_events (state, next_ms);",
    ),
    (
        2,
        "when a running job's worker last said it was alive",
        "ALTER TABLE jobs ADD COLUMN alive_ms BIGINT;",
    ),
];

/// The advisory lock taken while migrating the jobs' track ("ntjobs01" in ASCII); the
/// archive's is another.
const MIGRATION_LOCK: i64 = 0x6e74_6a6f_6273_3031;
/// The advisory lock `submit` takes so that the limit check and the insert see one queue.
const SUBMIT_LOCK: i64 = 0x6e74_6a6f_6273_3032;

/// What [`PgJobs::claim_id`] found.
#[derive(Debug)]
pub enum Claim {
    /// The job is this worker's now (`running`, attempts + 1).
    Run(Box<Claimed>),
    /// Done or failed already (a redelivery after its end): nothing to do.
    Finished,
    /// No such job (purged, or never stored).
    Unknown,
}

pub struct PgJobs {
    url: String,
    conn: Mutex<Option<Client>>,
    /// How long an event handed out by `due` stays with its sender (ms).
    lease_ms: i64,
}

fn connect(url: &str) -> std::result::Result<Client, ::postgres::Error> {
    let mut config: ::postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    config.application_name("needtag-jobs").connect(NoTls)
}

impl Drop for PgJobs {
    /// The blocking client closes its connection by blocking on a runtime of its own, which
    /// panics on a thread that drives async tasks: closed on a thread of its own there.
    fn drop(&mut self) {
        let client = self
            .conn
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(c) = client {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("jobs-db-close".into())
                    .spawn(move || drop(c));
            } else {
                drop(c);
            }
        }
    }
}

/// The guarded connection, connected again when it was lost.
struct Conn<'a>(MutexGuard<'a, Option<Client>>);

impl Conn<'_> {
    fn get(&mut self) -> &mut Client {
        self.0.as_mut().expect("connected before use")
    }
}

const JOB_COLUMNS: &str = "job_id, status, memo_id, created_ms, started_ms, finished_ms, \
    attempts, result, error_code, error_message, owner, fingerprint";

fn job_from_row(r: &Row) -> Result<Job> {
    JobRow {
        job_id: r.get(0),
        status: r.get(1),
        memo_id: r.get(2),
        created_ms: r.get(3),
        started_ms: r.get(4),
        finished_ms: r.get(5),
        attempts: i64::from(r.get::<_, i32>(6)),
        result: r.get(7),
        error_code: r.get(8),
        error_message: r.get(9),
        owner: r.get(10),
        fingerprint: r.get(11),
    }
    .into_job()
}

fn get_job(c: &mut impl ::postgres::GenericClient, job_id: &str) -> Result<Option<Job>> {
    c.query_opt(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = $1"),
        &[&job_id],
    )?
    .map(|r| job_from_row(&r))
    .transpose()
}

/// Which jobs an ending may still change.
#[derive(Clone, Copy)]
enum Open {
    /// A worker's ending, which also fails a job past its last delivery that a stopping
    /// worker had put back in the queue.
    QueuedOrRunning,
    /// The embedded runner's ending: only the attempt it is running.
    Running,
}

/// End job `job_id` with `outcome` inside `tx`, if it is still `open`: status, result or error,
/// and its audio dropped. False when it had ended already (nothing changed).
fn end_in(
    tx: &mut ::postgres::Transaction<'_>,
    job_id: &str,
    outcome: &Outcome,
    at: DateTime<Utc>,
    open: Open,
) -> Result<bool> {
    let (status, result, code, message) = outcome.ending()?;
    let sql = match open {
        Open::QueuedOrRunning => {
            "UPDATE jobs SET status = $2, result = $3, error_code = $4, error_message = $5,
                finished_ms = $6, audio = NULL, audio_bytes = 0
             WHERE job_id = $1 AND status IN ('queued', 'running')"
        }
        Open::Running => {
            "UPDATE jobs SET status = $2, result = $3, error_code = $4, error_message = $5,
                finished_ms = $6, audio = NULL, audio_bytes = 0
             WHERE job_id = $1 AND status = 'running'"
        }
    };
    let changed = tx.execute(
        sql,
        &[
            &job_id,
            &status.as_str(),
            &result,
            &code,
            &message,
            &millis(at),
        ],
    )?;
    Ok(changed > 0)
}

/// Queue a job's webhook event inside `tx` (once: a second insert of the event is a no-op).
fn queue_event_in(
    tx: &mut ::postgres::Transaction<'_>,
    job_id: &str,
    event: &NewEvent,
    at: DateTime<Utc>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO webhook_events (event_id, job_id, body, state, next_ms, created_ms)
         VALUES ($1, $2, $3, 'pending', $4, $4) ON CONFLICT DO NOTHING",
        &[&event.event_id, &job_id, &event.body, &millis(at)],
    )?;
    Ok(())
}

fn claimed_from_row(r: &Row) -> Result<Claimed> {
    let job_id: String = r.get(0);
    let meta: String = r.get(4);
    let meta: JobMeta = serde_json::from_str(&meta)
        .map_err(|e| JobError::Corrupt(format!("job {job_id}'s metadata: {e}")))?;
    let attempts: i32 = r.get(5);
    Ok(Claimed {
        memo_id: r.get(1),
        owner_name: r.get(2),
        audio: r.get::<_, Option<Vec<u8>>>(3).unwrap_or_default(),
        meta,
        attempts: attempts.max(0) as u32,
        created_at: from_millis(r.get(6)),
        job_id,
    })
}

const CLAIMED_COLUMNS: &str = "job_id, memo_id, owner_name, audio, meta, attempts, created_ms";

impl PgJobs {
    /// Connect to `url` and migrate the jobs' track. `lease_ms`: how long a webhook event
    /// handed to a sender stays with it (at least its attempt's timeout).
    pub fn open(url: &str, lease_ms: u64) -> Result<PgJobs> {
        let open_err = |e: &dyn std::fmt::Display| JobError::Open {
            path: redact_url(url),
            message: e.to_string(),
        };
        let client = connect(url).map_err(|e| open_err(&e))?;
        let db = PgJobs {
            url: url.to_string(),
            conn: Mutex::new(Some(client)),
            lease_ms: lease_ms.min(i64::MAX as u64) as i64,
        };
        db.migrate().map_err(|e| match e {
            e @ JobError::Invalid(_) => e,
            e => open_err(&e),
        })?;
        Ok(db)
    }

    fn conn(&self) -> Result<Conn<'_>> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            tracing::warn!(url = %redact_url(&self.url), "the job database's connection was lost; connecting again");
            *guard = None;
            *guard = Some(connect(&self.url)?);
        }
        Ok(Conn(guard))
    }

    /// The jobs' schema version.
    pub fn version(&self) -> Result<i64> {
        Ok(self
            .conn()?
            .get()
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM jobs_schema_migrations",
                &[],
            )?
            .get(0))
    }

    fn migrate(&self) -> Result<()> {
        let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        let mut conn = self.conn()?;
        loop {
            let mut tx = conn.get().transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS jobs_schema_migrations (
                    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
            )?;
            let current: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM jobs_schema_migrations",
                    &[],
                )?
                .get(0);
            if current > known {
                return Err(JobError::Invalid(format!(
                    "the jobs' schema is version {current}, newer than this needtag knows ({known}); use a newer needtag"
                )));
            }
            let Some((version, name, sql)) = MIGRATIONS.iter().find(|m| m.0 > current) else {
                tx.commit()?;
                return Ok(());
            };
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO jobs_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[version, name, &Utc::now().to_rfc3339()],
            )?;
            tx.commit()?;
            tracing::info!(version, name, "jobs schema migrated (PostgreSQL)");
        }
    }

    /// The stream acknowledged the job's id.
    pub fn mark_published(&self, job_id: &str) -> Result<()> {
        self.conn()?.get().execute(
            "UPDATE jobs SET published = TRUE WHERE job_id = $1",
            &[&job_id],
        )?;
        Ok(())
    }

    /// Queued jobs whose publish was never acknowledged and that are older than `min_age_ms`
    /// (so a publish in progress is left alone), oldest first.
    pub fn unpublished(&self, min_age_ms: i64, limit: i64) -> Result<Vec<String>> {
        let before = millis(Utc::now()) - min_age_ms;
        Ok(self
            .conn()?
            .get()
            .query(
                "SELECT job_id FROM jobs WHERE NOT published AND status = 'queued'
                   AND created_ms < $1 ORDER BY created_ms LIMIT $2",
                &[&before, &limit],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Take the job `job_id` for `worker` (its name in the `worker` column): `running`, one
    /// more attempt. A job that ended already is not taken again.
    pub fn claim_id(&self, job_id: &str, worker: &str) -> Result<Claim> {
        let mut conn = self.conn()?;
        let c = conn.get();
        let row = c.query_opt(
            &format!(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_ms = $2,
                    alive_ms = $2, worker = $3, published = TRUE
                 WHERE job_id = $1 AND status IN ('queued', 'running')
                 RETURNING {CLAIMED_COLUMNS}"
            ),
            &[&job_id, &millis(Utc::now()), &worker],
        )?;
        if let Some(r) = row {
            return Ok(Claim::Run(Box::new(claimed_from_row(&r)?)));
        }
        let known = c.query_opt("SELECT 1 FROM jobs WHERE job_id = $1", &[&job_id])?;
        Ok(if known.is_some() {
            Claim::Finished
        } else {
            Claim::Unknown
        })
    }

    /// The worker running `job_id` is alive (with each in-progress acknowledgement).
    pub fn alive(&self, job_id: &str) -> Result<()> {
        self.conn()?.get().execute(
            "UPDATE jobs SET alive_ms = $2 WHERE job_id = $1 AND status = 'running'",
            &[&job_id, &millis(Utc::now())],
        )?;
        Ok(())
    }

    /// Running jobs whose worker has not said it was alive since `before_ms` (it died, and no
    /// delivery of the job's message took it since), with their attempts so far.
    pub fn stranded(&self, before_ms: i64, limit: i64) -> Result<Vec<(String, i32)>> {
        Ok(self
            .conn()?
            .get()
            .query(
                "SELECT job_id, attempts FROM jobs WHERE status = 'running'
                   AND COALESCE(alive_ms, started_ms, created_ms) < $1
                 ORDER BY created_ms LIMIT $2",
                &[&before_ms, &limit],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
    }

    /// Put a stranded job back to `queued` and not published, unless a worker took it
    /// meanwhile (true when it did go back).
    pub fn requeue_stranded(&self, job_id: &str, before_ms: i64) -> Result<bool> {
        Ok(self.conn()?.get().execute(
            "UPDATE jobs SET status = 'queued', worker = NULL, published = FALSE
             WHERE job_id = $1 AND status = 'running'
               AND COALESCE(alive_ms, started_ms, created_ms) < $2",
            &[&job_id, &before_ms],
        )? == 1)
    }

    /// Put a job a worker gave up (stopping, or a failed attempt to be tried again) back to
    /// `queued`.
    pub fn release(&self, job_id: &str) -> Result<()> {
        self.conn()?.get().execute(
            "UPDATE jobs SET status = 'queued', worker = NULL WHERE job_id = $1 AND status = 'running'",
            &[&job_id],
        )?;
        Ok(())
    }

    /// End `job` with `outcome` in one transaction: its memo stored in the archive (when done
    /// and not stored yet), the job done or failed, its webhook event (when given). False
    /// when the job had ended already: nothing changes then.
    pub fn complete(
        &self,
        job: &Claimed,
        outcome: &Outcome,
        at: DateTime<Utc>,
        event: Option<&NewEvent>,
    ) -> Result<bool> {
        let memo = match outcome {
            Outcome::Done(r) => Some(
                r.to_memo(&job.meta, &job.owner_name)
                    .map_err(|e| JobError::Invalid(format!("job result: {e}")))?,
            ),
            Outcome::Failed(_) => None,
        };
        let mut conn = self.conn()?;
        let mut tx = conn.get().transaction()?;
        // The row lock: a second worker finishing the same job waits here, then finds it
        // ended and changes nothing.
        if !end_in(&mut tx, &job.job_id, outcome, at, Open::QueuedOrRunning)? {
            return Ok(false);
        }
        if let Some(memo) = memo {
            let stored =
                tx.query_opt("SELECT 1 FROM memos WHERE memo_id = $1", &[&memo.memo_id])?;
            if stored.is_none() {
                crate::archive::postgres::store_in(&mut tx, std::slice::from_ref(&memo))
                    .map_err(|e| JobError::Archive(e.to_string()))?;
            }
        }
        if let Some(e) = event {
            queue_event_in(&mut tx, &job.job_id, e, at)?;
        }
        tx.commit()?;
        Ok(true)
    }

    /// The claimed view of a job (for ending one whose worker died), if it has not ended.
    pub fn open_job(&self, job_id: &str) -> Result<Option<Claimed>> {
        let mut conn = self.conn()?;
        conn.get()
            .query_opt(
                &format!(
                    "SELECT {CLAIMED_COLUMNS} FROM jobs
                     WHERE job_id = $1 AND status IN ('queued', 'running')"
                ),
                &[&job_id],
            )?
            .map(|r| claimed_from_row(&r))
            .transpose()
    }
}

impl JobQueue for PgJobs {
    fn submit(&self, job: NewJob, max_pending: u64, max_pending_bytes: u64) -> Result<Submitted> {
        let meta = serde_json::to_string(&job.meta)
            .map_err(|e| JobError::Invalid(format!("job metadata: {e}")))?;
        let mut conn = self.conn()?;
        let mut tx = conn.get().transaction()?;
        // Replicas accept one job at a time (a short lock): the limit holds across them.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SUBMIT_LOCK])?;
        if let Some(key) = &job.idempotency_key {
            let existing = tx.query_opt(
                "SELECT job_id FROM jobs WHERE owner = $1 AND idempotency_key = $2",
                &[&&job.owner[..], key],
            )?;
            if let Some(row) = existing {
                let id: String = row.get(0);
                let found = get_job(&mut tx, &id)?
                    .ok_or_else(|| JobError::Corrupt(format!("job {id} vanished")))?;
                return Ok(if found.fingerprint == job.fingerprint {
                    Submitted::Existing(found)
                } else {
                    Submitted::KeyReused
                });
            }
        }
        let row = tx.query_one(
            "SELECT COUNT(*), COALESCE(SUM(audio_bytes), 0)::BIGINT FROM jobs
             WHERE status IN ('queued', 'running')",
            &[],
        )?;
        let (pending, bytes): (i64, i64) = (row.get(0), row.get(1));
        if pending as u64 >= max_pending
            || bytes as u64 + job.audio.len() as u64 > max_pending_bytes
        {
            return Ok(Submitted::Full);
        }
        tx.execute(
            "INSERT INTO jobs (job_id, memo_id, owner, owner_name, idempotency_key, fingerprint,
                status, audio, audio_bytes, meta, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9, $10)",
            &[
                &job.job_id,
                &job.memo_id,
                &&job.owner[..],
                &job.owner_name,
                &job.idempotency_key,
                &&job.fingerprint[..],
                &job.audio,
                &(job.audio.len() as i64),
                &meta,
                &millis(Utc::now()),
            ],
        )?;
        let created = get_job(&mut tx, &job.job_id)?
            .ok_or_else(|| JobError::Corrupt(format!("job {} vanished", job.job_id)))?;
        tx.commit()?;
        Ok(Submitted::Created(created))
    }

    fn get(&self, job_id: &str) -> Result<Option<Job>> {
        get_job(self.conn()?.get(), job_id)
    }

    fn claim(&self) -> Result<Option<Claimed>> {
        let mut conn = self.conn()?;
        conn.get()
            .query_opt(
                &format!(
                    "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_ms = $1
                     WHERE job_id = (SELECT job_id FROM jobs WHERE status = 'queued'
                                     ORDER BY created_ms, job_id LIMIT 1 FOR UPDATE SKIP LOCKED)
                     RETURNING {CLAIMED_COLUMNS}"
                ),
                &[&millis(Utc::now())],
            )?
            .map(|r| claimed_from_row(&r))
            .transpose()
    }

    fn finish(
        &self,
        job_id: &str,
        outcome: &Outcome,
        at: DateTime<Utc>,
        event: Option<&NewEvent>,
    ) -> Result<bool> {
        let mut conn = self.conn()?;
        let mut tx = conn.get().transaction()?;
        if !end_in(&mut tx, job_id, outcome, at, Open::Running)? {
            return Ok(false);
        }
        if let Some(e) = event {
            queue_event_in(&mut tx, job_id, e, at)?;
        }
        tx.commit()?;
        Ok(true)
    }

    fn requeue(&self, job_id: &str) -> Result<()> {
        self.release(job_id)
    }

    /// Shared state: a job `running` here may belong to a live worker on another machine. The
    /// queue (JetStream's ack wait) gives a dead worker's job to another; nothing to do.
    fn recover(&self) -> Result<u64> {
        Ok(0)
    }

    fn counts(&self) -> Result<Counts> {
        let mut conn = self.conn()?;
        let c = conn.get();
        let mut counts = Counts::default();
        // Finished jobs are kept for jobs.retention_days: counting them reads those rows.
        for row in c.query(
            "SELECT status, COUNT(*), COALESCE(SUM(audio_bytes), 0)::BIGINT FROM jobs GROUP BY status",
            &[],
        )? {
            let (status, n, bytes): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
            let n = n.max(0) as u64;
            match status.as_str() {
                "queued" => counts.queued = n,
                "running" => counts.running = n,
                "done" => counts.done = n,
                _ => counts.failed = n,
            }
            counts.pending_bytes += bytes.max(0) as u64;
        }
        let oldest: Option<i64> = c
            .query_one(
                "SELECT MIN(created_ms) FROM jobs WHERE status = 'queued'",
                &[],
            )?
            .get(0);
        counts.oldest_queued_s = oldest
            .map(|t| ((millis(Utc::now()) - t).max(0)) as f64 / 1000.0)
            .unwrap_or(0.0);
        let redelivered: i64 = c
            .query_one(
                "SELECT COALESCE(SUM(attempts - 1), 0)::BIGINT FROM jobs WHERE attempts > 1",
                &[],
            )?
            .get(0);
        counts.redelivered = redelivered.max(0) as u64;
        Ok(counts)
    }

    fn ping(&self) -> Result<()> {
        self.conn()?
            .get()
            .query_one("SELECT COUNT(*) FROM jobs_schema_migrations", &[])?;
        Ok(())
    }

    fn purge(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut conn = self.conn()?;
        let mut tx = conn.get().transaction()?;
        let cutoff = millis(before);
        tx.execute(
            "DELETE FROM webhook_events WHERE state = 'delivered' AND created_ms < $1",
            &[&cutoff],
        )?;
        let n = tx.execute(
            "DELETE FROM jobs WHERE status IN ('done', 'failed') AND finished_ms < $1
               AND NOT EXISTS (SELECT 1 FROM webhook_events e WHERE e.job_id = jobs.job_id)",
            &[&cutoff],
        )?;
        tx.commit()?;
        Ok(n)
    }
}

impl Outbox for PgJobs {
    /// Leased: the events returned are due again only after the lease, so another sender
    /// (another worker) does not take them meanwhile.
    fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>> {
        let mut conn = self.conn()?;
        let rows = conn.get().query(
            "UPDATE webhook_events SET next_ms = $3
             WHERE event_id IN (SELECT event_id FROM webhook_events
                                WHERE state = 'pending' AND next_ms <= $1
                                ORDER BY next_ms, event_id LIMIT $2 FOR UPDATE SKIP LOCKED)
             RETURNING event_id, job_id, body, attempts",
            &[
                &millis(now),
                &(limit as i64),
                &(millis(now) + self.lease_ms),
            ],
        )?;
        Ok(rows
            .iter()
            .map(|r| Delivery {
                event_id: r.get(0),
                job_id: r.get(1),
                body: r.get(2),
                attempts: r.get::<_, i32>(3).max(0) as u32,
            })
            .collect())
    }

    fn delivered(&self, event_id: &str, status: u16) -> Result<()> {
        let now = millis(Utc::now());
        self.conn()?.get().execute(
            "UPDATE webhook_events SET state = 'delivered', attempts = attempts + 1,
                delivered_ms = $2, last_attempt_ms = $2, last_error = $3
             WHERE event_id = $1 AND state = 'pending'",
            &[&event_id, &now, &format!("HTTP {status}")],
        )?;
        Ok(())
    }

    fn attempt_failed(
        &self,
        event_id: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let now = millis(Utc::now());
        let (state, next) = match retry_at {
            Some(t) => ("pending", millis(t)),
            None => ("dead", now),
        };
        self.conn()?.get().execute(
            "UPDATE webhook_events SET state = $2, attempts = attempts + 1, next_ms = $3,
                last_error = $4, last_attempt_ms = $5
             WHERE event_id = $1 AND state = 'pending'",
            &[&event_id, &state, &next, &error, &now],
        )?;
        Ok(())
    }

    fn dead(&self, limit: usize) -> Result<Vec<DeadEvent>> {
        let rows = self.conn()?.get().query(
            "SELECT event_id, job_id, attempts, last_error, created_ms, last_attempt_ms
             FROM webhook_events WHERE state = 'dead'
             ORDER BY last_attempt_ms DESC, event_id LIMIT $1",
            &[&(limit as i64)],
        )?;
        Ok(rows
            .iter()
            .map(|r| DeadEvent {
                event_id: r.get(0),
                job_id: r.get(1),
                attempts: r.get::<_, i32>(2).max(0) as u32,
                last_error: r.get::<_, Option<String>>(3).unwrap_or_default(),
                created_at: rfc3339(r.get(4)),
                last_attempt_at: rfc3339(r.get::<_, Option<i64>>(5).unwrap_or(0)),
            })
            .collect())
    }

    fn resend(&self, event_id: &str) -> Result<Resend> {
        let mut conn = self.conn()?;
        let c = conn.get();
        let n = c.execute(
            "UPDATE webhook_events SET state = 'pending', attempts = 0, next_ms = $2
             WHERE event_id = $1 AND state = 'dead'",
            &[&event_id, &millis(Utc::now())],
        )?;
        if n == 1 {
            return Ok(Resend::Queued);
        }
        let known = c.query_opt(
            "SELECT 1 FROM webhook_events WHERE event_id = $1",
            &[&event_id],
        )?;
        Ok(if known.is_some() {
            Resend::NotDead
        } else {
            Resend::Unknown
        })
    }

    fn outbox_counts(&self) -> Result<OutboxCounts> {
        let mut c = OutboxCounts::default();
        // A delivered event's attempts all failed but its last; the others' all failed.
        for row in self.conn()?.get().query(
            "SELECT state, COUNT(*),
                COALESCE(SUM(CASE WHEN state = 'delivered' THEN attempts - 1 ELSE attempts END), 0)::BIGINT
             FROM webhook_events GROUP BY state",
            &[],
        )? {
            let (state, n, failed): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
            match state.as_str() {
                "pending" => c.pending = n as u64,
                "delivered" => c.delivered = n as u64,
                _ => c.dead = n as u64,
            }
            c.failed_attempts += failed.max(0) as u64;
        }
        Ok(c)
    }

    fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let t: Option<i64> = self
            .conn()?
            .get()
            .query_one(
                "SELECT MIN(next_ms) FROM webhook_events WHERE state = 'pending'",
                &[],
            )?
            .get(0);
        Ok(t.map(from_millis))
    }
}
