//! `needtag worker`: runs memo jobs taken from NATS JetStream (`queue.url`) on this machine's
//! transcription workers, and delivers the webhook events of the shared PostgreSQL outbox.
//!
//! One job, start to end:
//! 1. A job id arrives on the durable pull consumer (explicit ack). Only as many are pulled as
//!    there are idle transcription workers (`server.workers`).
//! 2. The job's row is claimed in PostgreSQL (`running`, one more attempt, this worker's name).
//!    A job that ended already (a redelivery after its end) is acknowledged and skipped.
//! 3. The attempt runs ([`crate::api::attempt`], the embedded runner's code), with an
//!    in-progress acknowledgement every third of `queue.ack_wait_s`, so a long memo keeps its
//!    delivery while a dead worker's job goes to another worker after `ack_wait_s`.
//! 4. A result or a failure caused by the input (typed, never retried): the memo is stored in
//!    the archive, the job marked done or failed and its webhook event stored, in one
//!    transaction ([`PgJobs::complete`]); then the message is acknowledged. A redelivered job
//!    that another worker finished meanwhile changes nothing there.
//! 5. A failure on the server's side: the job goes back to `queued` and the message is
//!    negatively acknowledged with a delay, until its last allowed delivery
//!    (`queue.max_deliver`); then it ends `failed` (`internal`) and its id is published to
//!    `queue.dead_subject`. A job whose worker died on its last delivery is ended the same way
//!    by whichever worker gets JetStream's MAX_DELIVERIES advisory.
//!
//! SIGTERM: no more jobs are pulled; the jobs in flight get `queue.drain_s` to finish, then are
//! given back (`queued`, negative acknowledgement) for another worker.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use chrono::Utc;
use futures_util::StreamExt;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use crate::api::attempt::{self, Attempt};
use crate::api::{Code, TranscriptionPool};
use crate::config::Config;
use crate::jobs::nats::Nats;
use crate::jobs::postgres::{Claim, PgJobs};
use crate::jobs::webhook::{self, Sender};
use crate::jobs::{Claimed, Event, JobError, JobFailure, Outcome};
use crate::pipeline::Engine;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Jobs(#[from] JobError),
    #[error("the archive: {0}")]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    Engine(#[from] crate::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, WorkerError>;

/// Counters since start, logged every minute and at the end.
#[derive(Debug, Default)]
pub struct Stats {
    pub done: AtomicU64,
    pub failed: AtomicU64,
    /// Deliveries beyond a job's first.
    pub redelivered: AtomicU64,
    /// Deliveries of jobs that had ended already (skipped).
    pub skipped: AtomicU64,
    /// Attempts that failed on the server's side and were given back.
    pub retried: AtomicU64,
    /// Jobs ended `failed` after their last allowed delivery (dead-lettered).
    pub dead: AtomicU64,
}

struct Ctx {
    cfg: Config,
    engine: Arc<Engine>,
    pool: TranscriptionPool,
    pg: Arc<PgJobs>,
    nats: Nats,
    /// `host:pid`, in the job's `worker` column.
    name: String,
    webhook_on: bool,
    events: Arc<Notify>,
    stats: Stats,
}

/// This worker's name: `host:pid`.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".into());
    format!("{host}:{}", std::process::id())
}

fn blocking_err(_: tokio::task::JoinError) -> JobError {
    JobError::Queue("a database call stopped unexpectedly".into())
}

/// Run until `shutdown` resolves (then drain, see the module docs). Blocks; builds its own
/// runtime.
pub fn run(cfg: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    if cfg.queue.nats().is_none() {
        return Err(WorkerError::Config(
            "needtag worker needs queue.url (NATS) and archive.url (PostgreSQL)".into(),
        ));
    }
    let Some(url) = cfg.archive.url.clone() else {
        return Err(WorkerError::Config(
            "queue.url needs archive.url (PostgreSQL): the jobs' shared state lives there".into(),
        ));
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("worker")
        .enable_all()
        .build()?;
    let ran = runtime.block_on(async move {
        let started = Instant::now();
        // The archive's tables (a job's memo is stored in them) and the jobs' own.
        let u = url.clone();
        // (The connection is closed on the blocking thread too: not on the runtime's.)
        tokio::task::spawn_blocking(move || crate::archive::postgres::Postgres::open(&u).map(drop))
            .await
            .map_err(blocking_err)??;
        let lease = webhook::lease_ms(&cfg.webhook);
        let pg = Arc::new(
            tokio::task::spawn_blocking(move || PgJobs::open(&url, lease))
                .await
                .map_err(blocking_err)??,
        );
        let nats = Nats::connect(&cfg.queue).await?;
        let c = cfg.clone();
        let engine = Arc::new(
            tokio::task::spawn_blocking(move || Engine::load(&c, true))
                .await
                .map_err(|_| WorkerError::Config("loading the models stopped".into()))??,
        );
        let pool = TranscriptionPool::start(engine.clone(), cfg.server.workers, cfg.server.queue)?;
        let events = Arc::new(Notify::new());
        let webhook_stats = Arc::new(webhook::Stats::default());
        if let Some(sender) = Sender::new(&cfg.webhook, pg.clone(), webhook_stats.clone(), events.clone())
            .map_err(WorkerError::Config)?
        {
            tokio::spawn(Arc::new(sender).run());
        }
        let ctx = Arc::new(Ctx {
            webhook_on: cfg.webhook.url.as_deref().is_some_and(|u| !u.is_empty()),
            name: worker_name(),
            cfg,
            engine,
            pool,
            pg,
            nats,
            events,
            stats: Stats::default(),
        });
        tokio::spawn(advisories(ctx.clone()));
        tokio::spawn(strays(ctx.clone()));
        tokio::spawn(report(ctx.clone(), webhook_stats.clone()));
        tracing::info!(worker = %ctx.name, workers = ctx.cfg.server.workers, stream = %ctx.cfg.queue.stream,
            consumer = %ctx.cfg.queue.consumer, load_ms = started.elapsed().as_millis() as u64, "needtag worker is ready");
        println!("needtag worker ready ({})", ctx.name);
        consume(ctx.clone(), shutdown).await?;
        log_stats(&ctx, &webhook_stats, "worker stopped");
        Ok(())
    });
    // The webhook sender and the counters' task end with the runtime; a database call in
    // flight gets a moment.
    runtime.shutdown_timeout(Duration::from_secs(5));
    ran
}

/// Pull one job per idle transcription worker until `shutdown`; then drain.
async fn consume(ctx: Arc<Ctx>, shutdown: impl Future<Output = ()>) -> Result<()> {
    let consumer = ctx.nats.consumer().await?;
    let slots = Arc::new(Semaphore::new(ctx.cfg.server.workers.max(1)));
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let batch = tokio::select! {
            b = consumer.batch().max_messages(1).expires(Duration::from_secs(5)).messages() => b,
            _ = &mut shutdown => break,
        };
        let mut batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("could not pull from the job stream: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Not interrupted by the shutdown: a message pulled is always handed to a task (the
        // wait ends within the pull's 5 s expiry).
        match batch.next().await {
            Some(Ok(msg)) => {
                tasks.spawn(handle(ctx.clone(), msg, cancel_rx.clone(), permit));
            }
            Some(Err(e)) => {
                tracing::warn!("pulling a job failed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None => {}
        }
        while tasks.try_join_next().is_some() {}
        if futures_util::FutureExt::now_or_never(&mut shutdown).is_some() {
            break;
        }
    }
    let drain = Duration::from_secs(ctx.cfg.queue.drain_s);
    tracing::info!(
        in_flight = tasks.len(),
        drain_s = drain.as_secs(),
        "stopping: no more jobs pulled; finishing the ones in flight"
    );
    let all = async { while tasks.join_next().await.is_some() {} };
    let mut all = std::pin::pin!(all);
    if tokio::time::timeout(drain, &mut all).await.is_err() {
        tracing::warn!("jobs still running after queue.drain_s: giving them back to the queue");
        let _ = cancel_tx.send(true);
        all.await;
    }
    Ok(())
}

async fn nak(msg: &jetstream::Message, delay: Duration) {
    if let Err(e) = msg.ack_with(AckKind::Nak(Some(delay))).await {
        tracing::warn!(
            "negative acknowledgement not sent (the job comes back after ack_wait): {e}"
        );
    }
}

async fn ack(msg: &jetstream::Message, job_id: &str) {
    // Double ack: the server confirms it, so a lost acknowledgement is seen (the job would
    // come back after ack_wait, and be skipped then as finished).
    if let Err(e) = msg.double_ack().await {
        tracing::warn!(job_id, "acknowledgement not confirmed: {e}");
    }
}

/// The wait before a job given back runs again: 2 s, doubling per delivery, at most a minute.
fn retry_delay(delivered: i64) -> Duration {
    let exp = (delivered.max(1) - 1).min(5) as u32;
    Duration::from_secs((2u64 << exp).min(60))
}

/// Run one delivered job to its end, or give it back.
async fn handle(
    ctx: Arc<Ctx>,
    msg: jetstream::Message,
    mut cancel: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let job_id = String::from_utf8_lossy(&msg.payload).trim().to_string();
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    let pg = ctx.pg.clone();
    let (id, name) = (job_id.clone(), ctx.name.clone());
    let claim = tokio::task::spawn_blocking(move || pg.claim_id(&id, &name))
        .await
        .map_err(blocking_err)
        .and_then(|r| r);
    let mut job = match claim {
        Ok(Claim::Run(job)) => *job,
        Ok(Claim::Finished) => {
            ctx.stats.skipped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(job_id, delivered, "job ended already; delivery skipped");
            ack(&msg, &job_id).await;
            return;
        }
        Ok(Claim::Unknown) => {
            tracing::warn!(
                job_id,
                "no such job in the database (purged?); dropped from the stream"
            );
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
        Err(e) => {
            tracing::error!(job_id, "could not take the job: {e}");
            nak(&msg, Duration::from_secs(5)).await;
            return;
        }
    };
    if delivered > 1 {
        ctx.stats.redelivered.fetch_add(1, Ordering::Relaxed);
    }
    tracing::info!(job_id, delivered, attempt = job.attempts, "job started");
    let began = Instant::now();
    let audio = std::mem::take(&mut job.audio);
    let msg = Arc::new(msg);
    // Keeps the delivery while the attempt runs.
    let beat = Duration::from_secs((ctx.cfg.queue.ack_wait_s / 3).max(1));
    let keep = msg.clone();
    let (pg, id) = (ctx.pg.clone(), job_id.clone());
    let progress = tokio::spawn(async move {
        loop {
            tokio::time::sleep(beat).await;
            if let Err(e) = keep.ack_with(AckKind::Progress).await {
                tracing::warn!("in-progress acknowledgement not sent: {e}");
            }
            // And in the database, so that a job whose worker died is told from a long one.
            let (pg, id) = (pg.clone(), id.clone());
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || pg.alive(&id)).await {
                tracing::warn!("the job's alive time not recorded: {e}");
            }
        }
    });
    let run = attempt::run(&ctx.cfg, &ctx.engine, &ctx.pool, &job, audio);
    let outcome = tokio::select! {
        a = run => Some(a),
        _ = cancel.wait_for(|c| *c) => None,
    };
    progress.abort();
    let Some(outcome) = outcome else {
        give_back(&ctx, &msg, &job_id, Duration::ZERO).await;
        return;
    };
    let last = delivered >= ctx.cfg.queue.max_deliver;
    let (outcome, dead) = match outcome {
        Attempt::Finished(o) => (o, false),
        Attempt::Transient(why) if last => {
            tracing::error!(
                job_id,
                delivered,
                "job failed on the server's side at its last allowed delivery: {why}"
            );
            (exhausted(delivered), true)
        }
        Attempt::Transient(why) => {
            ctx.stats.retried.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                job_id,
                delivered,
                "job attempt failed, given back to the queue: {why}"
            );
            give_back(&ctx, &msg, &job_id, retry_delay(delivered)).await;
            return;
        }
    };
    if end(&ctx, &job, outcome, dead).await {
        ack(&msg, &job_id).await;
        tracing::info!(
            job_id,
            ms = began.elapsed().as_millis() as u64,
            "job finished"
        );
    } else {
        // Not recorded (the database is unreachable): it runs again on its next delivery.
        nak(&msg, Duration::from_secs(5)).await;
    }
}

/// The failure of a job delivered `delivered` times without an end.
fn exhausted(delivered: i64) -> Outcome {
    Outcome::Failed(JobFailure {
        code: Code::Internal.as_str().into(),
        message: format!(
            "the server could not process this job in {delivered} deliveries (queue.max_deliver); it has been logged"
        ),
    })
}

async fn give_back(ctx: &Ctx, msg: &jetstream::Message, job_id: &str, delay: Duration) {
    let pg = ctx.pg.clone();
    let id = job_id.to_string();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || pg.release(&id)).await {
        tracing::warn!(
            job_id,
            "job not marked queued again (its next delivery takes it anyway): {e}"
        );
    }
    nak(msg, delay).await;
}

/// Record a job's end (memo, status, event in one transaction) and, when `dead`, publish its
/// id to the dead-letter subject. False when it could not be recorded.
async fn end(ctx: &Ctx, job: &Claimed, outcome: Outcome, dead: bool) -> bool {
    let at = Utc::now();
    let event = Event::to_store(ctx.webhook_on, job, &outcome, at);
    let failed = matches!(outcome, Outcome::Failed(_));
    let pg = ctx.pg.clone();
    let j = job.clone();
    let done = tokio::task::spawn_blocking(move || pg.complete(&j, &outcome, at, event.as_ref()))
        .await
        .map_err(blocking_err)
        .and_then(|r| r);
    match done {
        Ok(true) => {
            let counter = if failed {
                &ctx.stats.failed
            } else {
                &ctx.stats.done
            };
            counter.fetch_add(1, Ordering::Relaxed);
            ctx.events.notify_one();
        }
        // Another worker finished it first: its memo and event are the ones kept.
        Ok(false) => {
            tracing::info!(job_id = %job.job_id, "job ended by another delivery first; this result is dropped");
        }
        Err(e) => {
            tracing::error!(job_id = %job.job_id, "job end not recorded: {e}");
            return false;
        }
    }
    if dead {
        ctx.stats.dead.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = ctx.nats.dead_letter(&job.job_id).await {
            tracing::error!(job_id = %job.job_id, "job failed but its id was not dead-lettered: {e}");
        }
    }
    true
}

/// End the jobs whose last allowed delivery went unacknowledged (their worker died on them):
/// JetStream announces each once; one worker of the group takes each announcement.
async fn advisories(ctx: Arc<Ctx>) {
    let subject = ctx.nats.max_deliveries_subject();
    let mut sub = match ctx
        .nats
        .client()
        .queue_subscribe(subject.clone(), "needtag-workers".into())
        .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%subject, "not subscribed to the MAX_DELIVERIES advisory: {e}");
            return;
        }
    };
    while let Some(m) = sub.next().await {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
        let (Some(seq), deliveries) = (v["stream_seq"].as_u64(), v["deliveries"].as_i64()) else {
            continue;
        };
        let deliveries = deliveries.unwrap_or(ctx.cfg.queue.max_deliver);
        let job_id = match ctx.nats.job_at(seq).await {
            Ok(Some(id)) => id,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(seq, "a job past its last delivery could not be read: {e}");
                continue;
            }
        };
        let pg = ctx.pg.clone();
        let id = job_id.clone();
        let open = tokio::task::spawn_blocking(move || pg.open_job(&id))
            .await
            .map_err(blocking_err)
            .and_then(|r| r);
        match open {
            Ok(Some(job)) => {
                tracing::error!(
                    job_id,
                    deliveries,
                    "job reached queue.max_deliver without an end (its worker stopped); failed"
                );
                if !end(&ctx, &job, exhausted(deliveries), true).await {
                    continue;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(job_id, "job past its last delivery not ended: {e}");
                continue;
            }
        }
        ctx.nats.remove(seq).await;
    }
}

/// Jobs left `running` by a worker that died with no delivery of their message to take them
/// again: the advisory of their last delivery came while no worker listened, or the message
/// was lost. Every `ack_wait_s`, once this worker has run for two of them (so that a delivery
/// still due has had its time), a running job whose worker has not said it was alive for two
/// `ack_wait_s` (it acknowledges progress every third) is failed and dead-lettered when it had
/// its `max_deliver` attempts, and queued and published again otherwise. Several workers may
/// find the same job: its end is recorded once, and a second run of a requeued job is stored
/// once.
async fn strays(ctx: Arc<Ctx>) {
    let wait = Duration::from_secs(ctx.cfg.queue.ack_wait_s.max(1));
    tokio::time::sleep(wait * 2).await;
    loop {
        let before = crate::jobs::millis(Utc::now()) - 2 * wait.as_millis() as i64;
        let pg = ctx.pg.clone();
        let found = tokio::task::spawn_blocking(move || pg.stranded(before, 100))
            .await
            .map_err(blocking_err)
            .and_then(|r| r);
        match found {
            Err(e) => tracing::warn!("stranded jobs not looked for: {e}"),
            Ok(jobs) => {
                for (job_id, attempts) in jobs {
                    stray(&ctx, &job_id, attempts, before).await;
                }
            }
        }
        tokio::time::sleep(wait).await;
    }
}

async fn stray(ctx: &Ctx, job_id: &str, attempts: i32, before: i64) {
    if i64::from(attempts) >= ctx.cfg.queue.max_deliver {
        let pg = ctx.pg.clone();
        let id = job_id.to_string();
        let open = tokio::task::spawn_blocking(move || pg.open_job(&id))
            .await
            .map_err(blocking_err)
            .and_then(|r| r);
        if let Ok(Some(job)) = open {
            tracing::error!(
                job_id,
                attempts,
                "job left running by a worker that stopped, after queue.max_deliver attempts; failed"
            );
            end(ctx, &job, exhausted(i64::from(attempts)), true).await;
        }
        return;
    }
    let pg = ctx.pg.clone();
    let id = job_id.to_string();
    let requeued = tokio::task::spawn_blocking(move || pg.requeue_stranded(&id, before))
        .await
        .map_err(blocking_err)
        .and_then(|r| r);
    match requeued {
        Ok(true) => {
            tracing::warn!(
                job_id,
                attempts,
                "job left running by a worker that stopped; queued and published again"
            );
            match ctx.nats.republish(job_id, attempts).await {
                Ok(()) => {
                    let (pg, id) = (ctx.pg.clone(), job_id.to_string());
                    let _ = tokio::task::spawn_blocking(move || pg.mark_published(&id)).await;
                }
                // Left unpublished: the replicas' sweeper publishes it.
                Err(e) => tracing::warn!(job_id, "stranded job not published again: {e}"),
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(job_id, "stranded job not requeued: {e}"),
    }
}

fn log_stats(ctx: &Ctx, w: &webhook::Stats, what: &str) {
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let s = &ctx.stats;
    tracing::info!(
        worker = %ctx.name,
        done = n(&s.done), failed = n(&s.failed), redelivered = n(&s.redelivered),
        skipped = n(&s.skipped), retried = n(&s.retried), dead_lettered = n(&s.dead),
        webhook_delivered = n(&w.delivered), webhook_failures = n(&w.failed_attempts),
        webhook_dead = n(&w.dead),
        "{what}"
    );
}

async fn report(ctx: Arc<Ctx>, w: Arc<webhook::Stats>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        log_stats(&ctx, &w, "worker counters since start");
    }
}
