//! Jobs and webhook events in an SQLite file (the archive's, by default), beside the archive's
//! tables and never touching them: tables `jobs` and `webhook_events`, migrated on their own
//! track (`jobs_schema_migrations`), over a connection of their own in WAL mode with
//! `synchronous = FULL`, so a job is on disk (power cut included) before its 202 is sent.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{
    from_millis, millis, rfc3339, Claimed, Counts, DeadEvent, Delivery, Job, JobError, JobMeta,
    JobQueue, JobRow, NewEvent, NewJob, Outbox, OutboxCounts, Outcome, Resend, Result, Submitted,
};

/// The jobs' schema, one migration per entry, applied in order and recorded in
/// `jobs_schema_migrations` (never in the archive's `schema_migrations`).
const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "jobs and webhook events",
    "CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        memo_id TEXT NOT NULL UNIQUE,
        owner BLOB NOT NULL,
        owner_name TEXT NOT NULL,
        idempotency_key TEXT,
        fingerprint BLOB NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
        audio BLOB,
        audio_bytes INTEGER NOT NULL,
        meta TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        result TEXT,
        error_code TEXT,
        error_message TEXT
    );
    CREATE UNIQUE INDEX jobs_idempotency ON jobs (owner, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX jobs_by_status ON jobs (status, created_at);
    CREATE TABLE webhook_events (
        event_id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at INTEGER NOT NULL,
        last_error TEXT,
        last_attempt_at INTEGER,
        created_at INTEGER NOT NULL,
        delivered_at INTEGER
    );
    CREATE INDEX webhook_events_due ON webhook_events (state, next_at);",
)];

pub struct SqliteJobs {
    conn: Mutex<Connection>,
    path: Option<PathBuf>,
}

fn open_error(path: &Path, e: impl ToString) -> JobError {
    JobError::Open {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl SqliteJobs {
    /// Open (creating the file and its directory) and migrate the jobs' tables.
    pub fn open(path: &Path) -> Result<SqliteJobs> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_error(path, e))?;
        }
        let conn = Connection::open(path).map_err(|e| open_error(path, e))?;
        let db = SqliteJobs::setup(conn, Some(path.to_path_buf())).map_err(|e| match e {
            e @ JobError::Invalid(_) => e,
            e => open_error(path, e),
        })?;
        Ok(db)
    }

    /// A private database in memory (tests).
    pub fn in_memory() -> Result<SqliteJobs> {
        SqliteJobs::setup(Connection::open_in_memory()?, None)
    }

    fn setup(conn: Connection, path: Option<PathBuf>) -> Result<SqliteJobs> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // An accepted job must survive a power cut, not only a crash: every commit is synced.
        conn.pragma_update(None, "synchronous", "FULL")?;
        // Audio is customer data: deleted pages are overwritten.
        conn.pragma_update(None, "secure_delete", "ON")?;
        let db = SqliteJobs {
            conn: Mutex::new(conn),
            path,
        };
        db.migrate()?;
        Ok(db)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The jobs' schema version after migration.
    pub fn version(&self) -> Result<i64> {
        Ok(self.conn().query_row(
            "SELECT COALESCE(MAX(version), 0) FROM jobs_schema_migrations",
            [],
            |r| r.get(0),
        )?)
    }

    fn migrate(&self) -> Result<()> {
        self.conn().execute_batch(
            "CREATE TABLE IF NOT EXISTS jobs_schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )?;
        let current = self.version()?;
        let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        if current > known {
            return Err(JobError::Invalid(format!(
                "the jobs' schema is version {current}, newer than this needtag knows ({known}); use a newer needtag"
            )));
        }
        let mut conn = self.conn();
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO jobs_schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![version, name, Utc::now().to_rfc3339()],
            )?;
            tx.commit()?;
            tracing::info!(version, name, "jobs schema migrated");
        }
        Ok(())
    }
}

const JOB_COLUMNS: &str = "job_id, status, memo_id, created_at, started_at, finished_at, \
    attempts, result, error_code, error_message, owner, fingerprint";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        job_id: r.get(0)?,
        status: r.get(1)?,
        memo_id: r.get(2)?,
        created_ms: r.get(3)?,
        started_ms: r.get(4)?,
        finished_ms: r.get(5)?,
        attempts: r.get(6)?,
        result: r.get(7)?,
        error_code: r.get(8)?,
        error_message: r.get(9)?,
        owner: r.get(10)?,
        fingerprint: r.get(11)?,
    })
}

fn get_job(conn: &Connection, job_id: &str) -> Result<Option<Job>> {
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?1"),
        [job_id],
        job_from_row,
    )
    .optional()?
    .map(JobRow::into_job)
    .transpose()
}

impl JobQueue for SqliteJobs {
    fn submit(&self, job: NewJob, max_pending: u64, max_pending_bytes: u64) -> Result<Submitted> {
        let mut conn = self.conn();
        // IMMEDIATE: the limit check and the insert see the same queue.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        if let Some(key) = &job.idempotency_key {
            let existing: Option<String> = tx
                .query_row(
                    "SELECT job_id FROM jobs WHERE owner = ?1 AND idempotency_key = ?2",
                    params![&job.owner[..], key],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = existing {
                let found = get_job(&tx, &id)?
                    .ok_or_else(|| JobError::Corrupt(format!("job {id} vanished")))?;
                return Ok(if found.fingerprint == job.fingerprint {
                    Submitted::Existing(found)
                } else {
                    Submitted::KeyReused
                });
            }
        }
        let (pending, bytes): (u64, u64) = tx.query_row(
            "SELECT COUNT(*), COALESCE(SUM(audio_bytes), 0) FROM jobs
             WHERE status IN ('queued', 'running')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if pending >= max_pending || bytes + job.audio.len() as u64 > max_pending_bytes {
            return Ok(Submitted::Full);
        }
        let meta = serde_json::to_string(&job.meta)
            .map_err(|e| JobError::Invalid(format!("job metadata: {e}")))?;
        tx.execute(
            "INSERT INTO jobs (job_id, memo_id, owner, owner_name, idempotency_key, fingerprint,
                status, audio, audio_bytes, meta, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7, ?8, ?9, ?10)",
            params![
                job.job_id,
                job.memo_id,
                &job.owner[..],
                job.owner_name,
                job.idempotency_key,
                &job.fingerprint[..],
                job.audio,
                job.audio.len() as i64,
                meta,
                millis(Utc::now()),
            ],
        )?;
        let created = get_job(&tx, &job.job_id)?
            .ok_or_else(|| JobError::Corrupt(format!("job {} vanished", job.job_id)))?;
        tx.commit()?;
        Ok(Submitted::Created(created))
    }

    fn get(&self, job_id: &str) -> Result<Option<Job>> {
        get_job(&self.conn(), job_id)
    }

    fn claim(&self) -> Result<Option<Claimed>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?1
                 WHERE job_id = (SELECT job_id FROM jobs WHERE status = 'queued'
                                 ORDER BY created_at, job_id LIMIT 1)
                 RETURNING job_id, memo_id, owner_name, audio, meta, attempts, created_at",
                [millis(Utc::now())],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<Vec<u8>>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, u32>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                },
            )
            .optional()?;
        let Some((job_id, memo_id, owner_name, audio, meta, attempts, created)) = row else {
            return Ok(None);
        };
        let meta: JobMeta = serde_json::from_str(&meta)
            .map_err(|e| JobError::Corrupt(format!("job {job_id}'s metadata: {e}")))?;
        Ok(Some(Claimed {
            job_id,
            memo_id,
            owner_name,
            audio: audio.unwrap_or_default(),
            meta,
            attempts,
            created_at: from_millis(created),
        }))
    }

    fn finish(
        &self,
        job_id: &str,
        outcome: &Outcome,
        at: DateTime<Utc>,
        event: Option<&NewEvent>,
    ) -> Result<bool> {
        let (status, result, code, message) = outcome.ending()?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // The audio is not needed any more: a finished job keeps its result only.
        let changed = tx.execute(
            "UPDATE jobs SET status = ?2, result = ?3, error_code = ?4, error_message = ?5,
                finished_at = ?6, audio = NULL, audio_bytes = 0
             WHERE job_id = ?1 AND status = 'running'",
            params![job_id, status.as_str(), result, code, message, millis(at)],
        )?;
        if changed == 0 {
            return Ok(false);
        }
        if let Some(e) = event {
            tx.execute(
                "INSERT OR IGNORE INTO webhook_events (event_id, job_id, body, state, next_at, created_at)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
                params![e.event_id, job_id, e.body, millis(at)],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    fn requeue(&self, job_id: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE jobs SET status = 'queued' WHERE job_id = ?1 AND status = 'running'",
            [job_id],
        )?;
        Ok(())
    }

    fn recover(&self) -> Result<u64> {
        Ok(self.conn().execute(
            "UPDATE jobs SET status = 'queued' WHERE status = 'running'",
            [],
        )? as u64)
    }

    fn counts(&self) -> Result<Counts> {
        let conn = self.conn();
        let mut counts = Counts::default();
        // Counted from the status index alone; only waiting jobs' rows are read for their bytes.
        let mut stmt = conn.prepare_cached("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
        for row in rows {
            let (status, n) = row?;
            match status.as_str() {
                "queued" => counts.queued = n,
                "running" => counts.running = n,
                "done" => counts.done = n,
                _ => counts.failed = n,
            }
        }
        counts.pending_bytes = conn.query_row(
            "SELECT COALESCE(SUM(audio_bytes), 0) FROM jobs WHERE status IN ('queued', 'running')",
            [],
            |r| r.get(0),
        )?;
        let oldest: Option<i64> = conn.query_row(
            "SELECT MIN(created_at) FROM jobs WHERE status = 'queued'",
            [],
            |r| r.get(0),
        )?;
        counts.oldest_queued_s = oldest
            .map(|t| ((millis(Utc::now()) - t).max(0)) as f64 / 1000.0)
            .unwrap_or(0.0);
        Ok(counts)
    }

    fn ping(&self) -> Result<()> {
        if let Some(path) = &self.path {
            if !path.exists() {
                return Err(open_error(path, "the file is gone"));
            }
        }
        self.conn()
            .query_row("SELECT COUNT(*) FROM jobs_schema_migrations", [], |r| {
                r.get::<_, i64>(0)
            })?;
        Ok(())
    }

    fn purge(&self, before: DateTime<Utc>) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let cutoff = millis(before);
        // An event still to be delivered keeps its job.
        tx.execute(
            "DELETE FROM webhook_events WHERE state = 'delivered' AND created_at < ?1",
            [cutoff],
        )?;
        let n = tx.execute(
            "DELETE FROM jobs WHERE status IN ('done', 'failed') AND finished_at < ?1
               AND job_id NOT IN (SELECT job_id FROM webhook_events)",
            [cutoff],
        )?;
        tx.commit()?;
        Ok(n as u64)
    }
}

impl Outbox for SqliteJobs {
    fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT event_id, job_id, body, attempts FROM webhook_events
             WHERE state = 'pending' AND next_at <= ?1 ORDER BY next_at, event_id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![millis(now), limit as i64], |r| {
            Ok(Delivery {
                event_id: r.get(0)?,
                job_id: r.get(1)?,
                body: r.get(2)?,
                attempts: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn delivered(&self, event_id: &str, status: u16) -> Result<()> {
        let now = millis(Utc::now());
        self.conn().execute(
            "UPDATE webhook_events SET state = 'delivered', attempts = attempts + 1,
                delivered_at = ?2, last_attempt_at = ?2, last_error = ?3
             WHERE event_id = ?1 AND state = 'pending'",
            params![event_id, now, format!("HTTP {status}")],
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
        self.conn().execute(
            "UPDATE webhook_events SET state = ?2, attempts = attempts + 1, next_at = ?3,
                last_error = ?4, last_attempt_at = ?5
             WHERE event_id = ?1 AND state = 'pending'",
            params![event_id, state, next, error, now],
        )?;
        Ok(())
    }

    fn dead(&self, limit: usize) -> Result<Vec<DeadEvent>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT event_id, job_id, attempts, last_error, created_at, last_attempt_at
             FROM webhook_events WHERE state = 'dead'
             ORDER BY last_attempt_at DESC, event_id LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok(DeadEvent {
                event_id: r.get(0)?,
                job_id: r.get(1)?,
                attempts: r.get(2)?,
                last_error: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                created_at: rfc3339(r.get(4)?),
                last_attempt_at: rfc3339(r.get::<_, Option<i64>>(5)?.unwrap_or(0)),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn resend(&self, event_id: &str) -> Result<Resend> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE webhook_events SET state = 'pending', attempts = 0, next_at = ?2
             WHERE event_id = ?1 AND state = 'dead'",
            params![event_id, millis(Utc::now())],
        )?;
        if n == 1 {
            return Ok(Resend::Queued);
        }
        let known = conn
            .query_row(
                "SELECT 1 FROM webhook_events WHERE event_id = ?1",
                [event_id],
                |_| Ok(()),
            )
            .optional()?;
        Ok(if known.is_some() {
            Resend::NotDead
        } else {
            Resend::Unknown
        })
    }

    fn outbox_counts(&self) -> Result<OutboxCounts> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT state, COUNT(*) FROM webhook_events GROUP BY state")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
        let mut c = OutboxCounts::default();
        for row in rows {
            let (state, n) = row?;
            match state.as_str() {
                "pending" => c.pending = n,
                "delivered" => c.delivered = n,
                _ => c.dead = n,
            }
        }
        Ok(c)
    }

    fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let t: Option<i64> = self.conn().query_row(
            "SELECT MIN(next_at) FROM webhook_events WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?;
        Ok(t.map(from_millis))
    }
}
