//! The memo archive: every memo the service answers, with its metadata, text and result, for
//! the analyst (list, review, export as labeled data) and for the CRM (fetch again, delete).
//!
//! [`Store`] is the interface a database implements ([`sqlite::Sqlite`] is the embedded
//! default). [`Archive`] runs one store on one writer thread: handlers hand it records through
//! a bounded queue and never wait for the disk; reads, reviews and deletions go through the
//! same queue with a reply, so they see every memo answered before them and a deletion can
//! never be overtaken by the store of the memo it deletes.

pub mod blind;
pub mod metrics;
pub mod retag;
pub mod sqlite;
pub mod synthetic;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::ArchiveConfig;
use crate::result::{MemoResult, Tags, TextResult};
use metrics::{CountRow, MetricsQuery, TagRow, UrgentCustomer, UrgentQuery};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The request cannot be applied (a review of a tag the memo does not have, a bad cursor).
    #[error("{0}")]
    Invalid(String),
    #[error("the archive database failed: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("the archive at {path}: {message}")]
    Open { path: String, message: String },
    #[error("a stored result could not be read back: {0}")]
    Corrupt(String),
    #[error("the archive is closed")]
    Closed,
}

pub type Result<T> = std::result::Result<T, ArchiveError>;

/// Where a memo came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A voice memo (`/v1/memos`): the text is its transcript.
    Audio,
    /// A text (`/v1/tag`, `/v1/tag/batch`).
    Text,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Audio => "audio",
            Source::Text => "text",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "audio" => Some(Source::Audio),
            "text" => Some(Source::Text),
            _ => None,
        }
    }
}

/// The metadata a caller sends with a memo.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub rep_id: Option<String>,
    pub customer_id: Option<String>,
    pub team: Option<String>,
    pub domain: Option<String>,
    pub recorded_at: Option<DateTime<FixedOffset>>,
}

/// A memo to store.
#[derive(Debug, Clone)]
pub struct NewMemo {
    pub memo_id: String,
    pub source: Source,
    pub meta: Meta,
    /// The name of the API key that sent it (never the key).
    pub stored_by: String,
    pub stored_at: DateTime<Utc>,
    pub text: String,
    pub library_version: String,
    pub needs: Vec<String>,
    pub actions: Vec<String>,
    pub ruled_out: Vec<String>,
    pub vague: bool,
    pub high_value: bool,
    /// Of `actions`, those of the library's high tier when tagged.
    pub high_value_actions: usize,
    pub total_ms: f64,
    /// The result JSON exactly as it was answered.
    pub result: String,
}

impl NewMemo {
    /// A record with the tags of `tags`; the text, time and result are filled in by the caller.
    fn new(memo_id: String, source: Source, meta: Meta, stored_by: &str, tags: &Tags) -> NewMemo {
        NewMemo {
            memo_id,
            source,
            meta,
            stored_by: stored_by.to_string(),
            stored_at: Utc::now(),
            text: String::new(),
            library_version: tags.library_version.clone(),
            needs: tags.needs.iter().map(|n| n.id.clone()).collect(),
            actions: tags.actions.iter().map(|a| a.id.clone()).collect(),
            ruled_out: tags.ruled_out.iter().map(|r| r.id.clone()).collect(),
            vague: tags.vague.flag,
            high_value: tags.high_value,
            high_value_actions: tags
                .actions
                .iter()
                .filter(|a| a.tier == crate::library::Tier::High)
                .count(),
            total_ms: 0.0,
            result: String::new(),
        }
    }

    /// A voice memo's record; its metadata travels in the result.
    pub fn audio(r: &MemoResult, stored_by: &str) -> serde_json::Result<NewMemo> {
        let meta = Meta {
            rep_id: r.rep_id.clone(),
            customer_id: r.customer_id.clone(),
            team: r.team.clone(),
            domain: r.domain.clone(),
            recorded_at: DateTime::parse_from_rfc3339(&r.recorded_at).ok(),
        };
        Ok(NewMemo {
            text: r.transcript.text.clone(),
            total_ms: r.timings.total_ms,
            result: serde_json::to_string(r)?,
            ..NewMemo::new(r.memo_id.clone(), Source::Audio, meta, stored_by, &r.tags)
        })
    }

    /// A text's record; `r.memo_id` must be set.
    pub fn text(r: &TextResult, meta: Meta, stored_by: &str) -> serde_json::Result<NewMemo> {
        let id = r.memo_id.clone().unwrap_or_default();
        Ok(NewMemo {
            text: r.text.clone(),
            total_ms: r.timings.total_ms,
            result: serde_json::to_string(r)?,
            ..NewMemo::new(id, Source::Text, meta, stored_by, &r.tags)
        })
    }
}

/// A stored result, read back into its type.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum StoredResult {
    Audio(Box<MemoResult>),
    Text(Box<TextResult>),
}

/// One mark of a reviewer on a memo's tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The tag is right.
    Confirm,
    /// The tag is wrong.
    Reject,
    /// The memo expresses a need (or reports an action) the engine missed.
    Add,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Confirm => "confirm",
            Verdict::Reject => "reject",
            Verdict::Add => "add",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "confirm" => Some(Verdict::Confirm),
            "reject" => Some(Verdict::Reject),
            "add" => Some(Verdict::Add),
            _ => None,
        }
    }
}

/// What a mark is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TagKind {
    Need,
    Action,
}

impl TagKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TagKind::Need => "need",
            TagKind::Action => "action",
        }
    }

    pub fn parse(s: &str) -> Option<TagKind> {
        match s {
            "need" => Some(TagKind::Need),
            "action" => Some(TagKind::Action),
            _ => None,
        }
    }
}

/// A reviewer's mark as sent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    pub kind: TagKind,
    /// A need or action id of the library.
    pub id: String,
    pub verdict: Verdict,
}

/// A mark as stored: who made it and when.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewMark {
    pub kind: TagKind,
    pub id: String,
    pub verdict: Verdict,
    /// The name of the reviewer's API key.
    pub reviewer: String,
    /// RFC 3339, UTC.
    pub at: String,
}

/// A memo's tags after its review: the engine's tags, less the rejected ones, plus the added
/// ones. A tag the reviewer did not mark stays as the engine said; for each tag the latest mark
/// counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Labels {
    pub needs: Vec<String>,
    pub actions: Vec<String>,
}

/// A stored memo. Lists leave out `result`; `GET /v1/memos/{id}` includes it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StoredMemo {
    pub memo_id: String,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rep_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// As sent (RFC 3339), or the time it was stored when none was sent.
    pub recorded_at: String,
    /// RFC 3339, UTC.
    pub stored_at: String,
    /// The name of the API key that sent it.
    pub stored_by: String,
    pub library_version: String,
    pub text: String,
    /// The engine's tags.
    pub needs: Vec<String>,
    pub actions: Vec<String>,
    pub vague: bool,
    pub high_value: bool,
    pub reviewed: bool,
    /// The tags after review (only when reviewed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    pub reviews: Vec<ReviewMark>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<StoredResult>,
}

/// Which memos a list or export returns; every given field must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub rep_id: Option<String>,
    pub customer_id: Option<String>,
    pub team: Option<String>,
    pub domain: Option<String>,
    /// Tagged with this need (by the engine).
    pub need: Option<String>,
    /// Tagged with this action (by the engine).
    pub action: Option<String>,
    pub vague: Option<bool>,
    pub high_value: Option<bool>,
    /// True: no need tagged; false: at least one.
    pub no_need: Option<bool>,
    pub reviewed: Option<bool>,
    /// `recorded_at` at or after this.
    pub from: Option<DateTime<FixedOffset>>,
    /// `recorded_at` before this.
    pub to: Option<DateTime<FixedOffset>>,
    /// The text contains this (not indexed: narrow by rep, customer or time for speed).
    pub text: Option<String>,
}

/// One page of a list, newest stored first; `next` is the cursor of the following page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page {
    pub items: Vec<StoredMemo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One line of an export: the labeled-memo format of `need-library/eval/*.jsonl`, which
/// `needtag eval` reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportLine {
    pub id: String,
    pub text: String,
    pub recorded_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub needs: Vec<String>,
    /// Needs the memo denies, as the engine ruled them out (less any the reviewer added).
    pub negated_needs: Vec<String>,
    pub actions: Vec<String>,
    pub planned_actions: Vec<String>,
    pub negated_actions: Vec<String>,
    pub categories: Vec<String>,
}

/// What a database for the archive does. Every method is one transaction.
pub trait Store: Send {
    fn store(&mut self, memos: &[NewMemo]) -> Result<()>;
    fn get(&mut self, memo_id: &str) -> Result<Option<StoredMemo>>;
    /// At most `limit` memos matching `filter`, newest stored first, after `cursor`.
    fn list(&mut self, filter: &Filter, cursor: Option<&str>, limit: usize) -> Result<Page>;
    /// Record `marks` by `reviewer`; None when there is no such memo.
    fn review(
        &mut self,
        memo_id: &str,
        marks: &[Mark],
        reviewer: &str,
    ) -> Result<Option<StoredMemo>>;
    /// The reviewed memos matching `filter`, oldest first, as labeled memos.
    fn export(&mut self, filter: &Filter) -> Result<Vec<ExportLine>>;
    /// True when it existed.
    fn delete(&mut self, memo_id: &str) -> Result<bool>;
    /// The number of memos deleted.
    fn delete_customer(&mut self, customer_id: &str) -> Result<usize>;
    /// Delete memos stored before `before`; the number deleted.
    fn purge(&mut self, before: DateTime<Utc>) -> Result<usize>;

    // The manager's numbers ([`metrics`]). They read rollups that `store`, `delete`,
    // `delete_customer` and `purge` keep up to date in their own transaction (a deleted memo
    // leaves every number), so their cost follows the number of groups and periods asked for,
    // not the number of memos.

    /// Memos, vague memos and memos with a need, per period start (`q.first..=q.last`) and
    /// group, for the memos matching `q`'s rep, team and domain; periods without memos are left
    /// out. A memo's period is the one holding the local date of its `recorded_at`
    /// ([`metrics::local_date`]); a memo without a rep, team or domain is in the group `""`.
    fn metric_counts(&mut self, q: &MetricsQuery) -> Result<Vec<CountRow>>;
    /// Memos tagged with each need (`kind` need) or action (`kind` action) by the engine, per
    /// period start and group, as [`Store::metric_counts`] counts memos.
    fn metric_tags(&mut self, q: &MetricsQuery, kind: TagKind) -> Result<Vec<TagRow>>;
    /// Customers whose latest memo (by `recorded_at`; the later stored one on a tie) states one
    /// of `q.needs` and was recorded at least `q.days` days before `q.now_ms`, narrowed by rep,
    /// team and domain of that memo; the longest waiting first, at most `q.limit`.
    fn open_urgent(&mut self, q: &UrgentQuery) -> Result<Vec<UrgentCustomer>>;
}

/// Open the store the configuration names.
pub fn open_store(cfg: &ArchiveConfig) -> Result<Box<dyn Store>> {
    Ok(Box::new(sqlite::Sqlite::open(&cfg.path)?))
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub stored: AtomicU64,
    /// Memos answered but not stored because the queue stayed full.
    pub dropped: AtomicU64,
    /// Memos the database refused to store (logged).
    pub failed: AtomicU64,
    pub queued: AtomicUsize,
}

type Job = Box<dyn FnOnce(&mut dyn Store) + Send>;

enum Command {
    Store(Box<NewMemo>),
    Run(Job),
}

/// How often the writer purges memos past `retention_days`.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Most memos written in one transaction.
const BATCH: usize = 256;
/// Longest a read, review or deletion waits for room in the queue.
const CALL_WAIT: Duration = Duration::from_secs(10);

/// A store on its own writer thread, fed through a bounded queue.
pub struct Archive {
    tx: Mutex<Option<SyncSender<Command>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Arc<Stats>,
    enqueue_wait: Duration,
}

impl Archive {
    /// Open the configured store (migrating it) and start its writer.
    pub fn start(cfg: &ArchiveConfig) -> Result<Archive> {
        let store = open_store(cfg)?;
        Ok(Archive::with_store(
            store,
            cfg.queue.max(1),
            Duration::from_millis(cfg.enqueue_wait_ms),
            cfg.retention_days,
        ))
    }

    pub fn with_store(
        store: Box<dyn Store>,
        queue: usize,
        enqueue_wait: Duration,
        retention_days: u32,
    ) -> Archive {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue);
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name("archive-writer".into())
            .spawn(move || writer(store, rx, st, retention_days))
            .ok();
        Archive {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(thread),
            stats,
            enqueue_wait,
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn sender(&self) -> Option<SyncSender<Command>> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Hand `memo` to the writer. Returns at once unless the queue is full; then waits up to
    /// `archive.enqueue_wait_ms` for room, and past that gives up on this memo (counted and
    /// logged): the answer is never held for the disk.
    pub async fn submit(&self, memo: NewMemo) {
        let id = memo.memo_id.clone();
        let deadline = Instant::now() + self.enqueue_wait;
        match self.send(Command::Store(Box::new(memo)), deadline).await {
            Ok(()) => {}
            Err(why) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(memo_id = %id, "memo not archived: {why}");
            }
        }
    }

    async fn send(
        &self,
        mut cmd: Command,
        deadline: Instant,
    ) -> std::result::Result<(), &'static str> {
        let Some(tx) = self.sender() else {
            return Err("the archive is closed");
        };
        loop {
            match tx.try_send(cmd) {
                Ok(()) => {
                    self.stats.queued.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(TrySendError::Disconnected(_)) => return Err("the archive writer stopped"),
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        return Err("the archive queue is full");
                    }
                    cmd = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    }

    /// Run `f` on the store after everything queued before it.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |store| {
            let _ = reply.send(f(store));
        });
        self.send(Command::Run(job), Instant::now() + CALL_WAIT)
            .await
            .map_err(|_| ArchiveError::Closed)?;
        answer.await.map_err(|_| ArchiveError::Closed)?
    }

    /// Wait until every memo queued so far is written.
    pub async fn flush(&self) -> Result<()> {
        self.call(|_| Ok(())).await
    }

    /// Stop taking memos, write the queued ones and stop the writer.
    pub fn close(&self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Drop for Archive {
    fn drop(&mut self) {
        self.close();
    }
}

fn purge(store: &mut dyn Store, retention_days: u32) {
    if retention_days == 0 {
        return;
    }
    let before = Utc::now() - chrono::Duration::days(i64::from(retention_days));
    match store.purge(before) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            memos = n,
            retention_days,
            "purged memos past their retention"
        ),
        Err(e) => tracing::error!("archive purge failed: {e}"),
    }
}

/// The writer: memos in batches of up to [`BATCH`] per transaction, other commands in order,
/// the retention purge at start and hourly. Ends when every sender is gone and the queue is
/// empty.
fn writer(
    mut store: Box<dyn Store>,
    rx: Receiver<Command>,
    stats: Arc<Stats>,
    retention_days: u32,
) {
    purge(store.as_mut(), retention_days);
    let mut next_purge = Instant::now() + PURGE_EVERY;
    let mut held: Option<Command> = None;
    loop {
        let cmd = match held.take() {
            Some(c) => c,
            None => match rx.recv_timeout(next_purge.saturating_duration_since(Instant::now())) {
                Ok(c) => c,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    purge(store.as_mut(), retention_days);
                    next_purge = Instant::now() + PURGE_EVERY;
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            },
        };
        // A command leaves the queue's count when it is taken here (a held one was not counted
        // out when it was received).
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        match cmd {
            Command::Run(job) => {
                // A request that panics loses its answer (the caller gets `Closed`), not the
                // writer: the memos queued behind it are still written.
                let run = std::panic::AssertUnwindSafe(|| job(store.as_mut()));
                if std::panic::catch_unwind(run).is_err() {
                    tracing::error!("an archive request panicked; the writer goes on");
                }
            }
            Command::Store(first) => {
                let mut batch = vec![*first];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(Command::Store(m)) => {
                            stats.queued.fetch_sub(1, Ordering::Relaxed);
                            batch.push(*m);
                        }
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let run = std::panic::AssertUnwindSafe(|| write(store.as_mut(), &batch, &stats));
                if std::panic::catch_unwind(run).is_err() {
                    stats
                        .failed
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::error!(
                        memos = batch.len(),
                        "writing memos panicked; they are not archived"
                    );
                }
            }
        }
    }
}

fn write(store: &mut dyn Store, batch: &[NewMemo], stats: &Stats) {
    match store.store(batch) {
        Ok(()) => {
            stats
                .stored
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        Err(e) => {
            // One bad record must not take its batch with it: write them one by one.
            tracing::warn!(
                "archive batch of {} failed ({e}); writing one by one",
                batch.len()
            );
            for m in batch {
                match store.store(std::slice::from_ref(m)) {
                    Ok(()) => {
                        stats.stored.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(memo_id = %m.memo_id, "memo not archived: {e}");
                    }
                }
            }
        }
    }
}

/// A time filter bound: RFC 3339, or a date (`2026-03-04`, midnight at +08:00; as `to`, the
/// end of that day).
pub fn parse_bound(s: &str, end: bool) -> Option<DateTime<FixedOffset>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t);
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let d = if end { d.succ_opt()? } else { d };
    let tz = FixedOffset::east_opt(8 * 3600)?;
    d.and_hms_opt(0, 0, 0)?.and_local_timezone(tz).single()
}

#[cfg(test)]
mod tests;
