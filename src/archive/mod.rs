//! The memo archive: every memo the service answers, with its metadata, text and result, for
//! the analyst (list, review, export as labeled data) and for the CRM (fetch again, delete).
//!
//! [`Store`] is the interface a database implements ([`sqlite::Sqlite`] is the embedded
//! default, [`postgres::Postgres`] the server several replicas share). [`Archive`] runs one store on one writer thread: handlers hand it records through
//! a bounded queue and wait until the transaction holding theirs is committed (group commit:
//! the writer commits every record waiting in one transaction, then acknowledges each), so an
//! answer is only sent for a memo that is stored. Reads, reviews and deletions go through the
//! same queue with a reply, so they see every memo answered before them and a deletion can
//! never be overtaken by the store of the memo it deletes.

pub mod blind;
pub mod grams;
pub mod metrics;
pub mod postgres;
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
    #[error("the archive's PostgreSQL server failed: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("the archive at {path}: {message}")]
    Open { path: String, message: String },
    #[error("a stored result could not be read back: {0}")]
    Corrupt(String),
    #[error("the archive is closed")]
    Closed,
    /// A memo could not be stored (the queue stayed full, the database failed or is too
    /// slow); its answer is refused so that nothing answered is lost.
    #[error("the memo could not be stored: {0}")]
    Unavailable(String),
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
    /// The uploaded audio, when `archive.keep_audio_days` > 0 (voice memos only).
    pub audio: Option<Audio>,
}

/// A voice memo's audio as it was uploaded (the bytes and the content type they came with).
#[derive(Debug, Clone)]
pub struct Audio {
    pub content_type: String,
    pub bytes: bytes::Bytes,
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
            audio: None,
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
    /// The text contains this (a substring, exact; looked up in the text index, see [`grams`]).
    pub text: Option<String>,
}

/// The archive's first and last `recorded_ms` for [`Filter::range_first`] (two index lookups
/// on either store; one `MIN` with one `MAX` in a single select scans on SQLite).
pub(crate) const RECORDED_SPAN: &str =
    "SELECT (SELECT MIN(recorded_ms) FROM memos), (SELECT MAX(recorded_ms) FROM memos)";

impl Filter {
    /// Whether a list page under this filter is best found by reading the memos in the time
    /// range first (then ordering them), rather than by walking every memo newest first until
    /// the page is full. `span` is the archive's first and last `recorded_ms`. Memos are stored
    /// in about the order they were recorded, so the walk first passes every memo newer than the
    /// range, while reading the range costs its size in index entries, each about a sixth of a
    /// memo walked past (1M memos on PostgreSQL: 958 000 entries in 113 ms, 500 000 memos walked
    /// in 367 ms). Time stands in for counts (memos arrive about evenly). Only for a time range
    /// with no more selective filter.
    pub fn range_first(&self, span: Option<(i64, i64)>) -> bool {
        if self.from.is_none() && self.to.is_none() {
            return false;
        }
        if self.need.is_some()
            || self.action.is_some()
            || self.rep_id.is_some()
            || self.customer_id.is_some()
            || self.text.as_deref().is_some_and(|t| !t.is_empty())
        {
            return false;
        }
        let Some((first, last)) = span.filter(|(a, b)| b > a) else {
            return false;
        };
        let from = self.from.map_or(first, |t| t.timestamp_millis()).max(first);
        let to = self.to.map_or(last, |t| t.timestamp_millis()).min(last);
        let newer = last - to;
        let inside = (to - from).max(0);
        inside < newer.saturating_mul(6)
    }
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
    /// A memo's stored audio; None when the memo or its audio is not there.
    fn audio(&mut self, memo_id: &str) -> Result<Option<Audio>>;
    /// Delete the audio stored before `before` (the memos stay); the number deleted.
    fn purge_audio(&mut self, before: DateTime<Utc>) -> Result<usize>;

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

/// Open the store the configuration names: the PostgreSQL server at `archive.url` when it is
/// set, else the SQLite file at `archive.path`.
pub fn open_store(cfg: &ArchiveConfig) -> Result<Box<dyn Store>> {
    match &cfg.url {
        Some(url) => Ok(Box::new(postgres::Postgres::open(url)?)),
        None => Ok(Box::new(sqlite::Sqlite::open(&cfg.path)?)),
    }
}

/// Where the configured archive is, for logs (a URL without its password).
pub fn location(cfg: &ArchiveConfig) -> String {
    match &cfg.url {
        Some(url) => postgres::redact_url(url),
        None => cfg.path.display().to_string(),
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub stored: AtomicU64,
    /// Memos whose answer was refused (503 `archive_unavailable`) because they could not be
    /// stored: the queue stayed full, the write failed, or the commit took too long.
    pub refused: AtomicU64,
    /// Memos the database refused to store (logged; each is also counted in `refused`).
    pub failed: AtomicU64,
    pub queued: AtomicUsize,
}

type Job = Box<dyn FnOnce(&mut dyn Store) + Send>;

/// The writer's word on one memo: stored (committed), or why not.
type Ack = tokio::sync::oneshot::Sender<std::result::Result<(), String>>;

enum Command {
    Store(Box<NewMemo>, Ack),
    Run(Job),
}

/// How often the writer purges memos past `retention_days`.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Most memos written in one transaction.
const BATCH: usize = 256;
/// Longest a read, review or deletion waits for room in the queue.
const CALL_WAIT: Duration = Duration::from_secs(10);
/// Longest an answer waits for its memo's commit once the memo is queued. Past it the answer
/// is refused; the memo may still be written afterwards (a retry then stores it again).
const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// A memo handed to the writer (or refused at the queue), not yet acknowledged.
struct Pending {
    id: String,
    done: std::result::Result<
        tokio::sync::oneshot::Receiver<std::result::Result<(), String>>,
        String,
    >,
}

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
        // Opened on a thread of its own: the PostgreSQL client runs its own small runtime,
        // which cannot start inside the caller's async runtime.
        let owned = cfg.clone();
        let store = std::thread::spawn(move || open_store(&owned))
            .join()
            .map_err(|_| ArchiveError::Open {
                path: location(cfg),
                message: "opening the archive panicked".into(),
            })??;
        Ok(Archive::with_store(
            store,
            cfg.queue.max(1),
            Duration::from_millis(cfg.enqueue_wait_ms),
            Retention {
                memos_days: cfg.retention_days,
                audio_days: cfg.keep_audio_days,
            },
        ))
    }

    pub fn with_store(
        store: Box<dyn Store>,
        queue: usize,
        enqueue_wait: Duration,
        retention: Retention,
    ) -> Archive {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue);
        let stats = Arc::new(Stats::default());
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name("archive-writer".into())
            .spawn(move || writer(store, rx, st, retention))
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

    /// Store `memo`: returns once the transaction holding it is committed. Waits up to
    /// `archive.enqueue_wait_ms` for room in a full queue; when there is none, or the write
    /// fails, the memo is not stored and the error says why (counted in `refused`; the caller
    /// refuses the answer).
    pub async fn submit(&self, memo: NewMemo) -> Result<()> {
        let pending = self.enqueue(memo).await;
        self.settle(pending).await
    }

    /// Store many memos, all queued before any is waited for (so they share transactions);
    /// one outcome per memo, in order.
    pub async fn submit_all(&self, memos: Vec<NewMemo>) -> Vec<Result<()>> {
        let mut pending = Vec::with_capacity(memos.len());
        for m in memos {
            pending.push(self.enqueue(m).await);
        }
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(self.settle(p).await);
        }
        out
    }

    async fn enqueue(&self, memo: NewMemo) -> Pending {
        let id = memo.memo_id.clone();
        let (ack, done) = tokio::sync::oneshot::channel();
        let deadline = Instant::now() + self.enqueue_wait;
        match self
            .send(Command::Store(Box::new(memo), ack), deadline)
            .await
        {
            Ok(()) => Pending { id, done: Ok(done) },
            Err(why) => Pending {
                id,
                done: Err(why.to_string()),
            },
        }
    }

    async fn settle(&self, p: Pending) -> Result<()> {
        let outcome = match p.done {
            Err(why) => Err(why),
            Ok(done) => match tokio::time::timeout(COMMIT_WAIT, done).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => Err("the archive writer stopped before writing it".to_string()),
                Err(_) => Err(format!(
                    "the archive did not commit it within {} s",
                    COMMIT_WAIT.as_secs()
                )),
            },
        };
        outcome.map_err(|why| {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::error!(memo_id = %p.id, "memo not archived, its answer is refused: {why}");
            ArchiveError::Unavailable(why)
        })
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

    /// Wait until every request queued so far is done.
    pub async fn flush(&self) -> Result<()> {
        self.call(|_| Ok(())).await
    }

    /// Stop taking memos, write the queued ones (acknowledging them) and stop the writer.
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

/// How long the writer keeps memos (0: forever) and their audio (0: not at all).
#[derive(Debug, Clone, Copy, Default)]
pub struct Retention {
    pub memos_days: u32,
    pub audio_days: u32,
}

fn purge(store: &mut dyn Store, retention: Retention) {
    let ago = |days: u32| Utc::now() - chrono::Duration::days(i64::from(days));
    if retention.memos_days > 0 {
        match store.purge(ago(retention.memos_days)) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                memos = n,
                retention_days = retention.memos_days,
                "purged memos past their retention"
            ),
            Err(e) => tracing::error!("archive purge failed: {e}"),
        }
    }
    // With 0 days, audio kept under an earlier setting goes at once.
    match store.purge_audio(ago(retention.audio_days)) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            memos = n,
            keep_audio_days = retention.audio_days,
            "purged audio past its retention"
        ),
        Err(e) => tracing::error!("archive audio purge failed: {e}"),
    }
}

/// The writer: memos in batches of up to [`BATCH`] per transaction (each acknowledged after the
/// commit), other commands in order,
/// the retention purge at start and hourly. Ends when every sender is gone and the queue is
/// empty.
fn writer(
    mut store: Box<dyn Store>,
    rx: Receiver<Command>,
    stats: Arc<Stats>,
    retention: Retention,
) {
    purge(store.as_mut(), retention);
    let mut next_purge = Instant::now() + PURGE_EVERY;
    let mut held: Option<Command> = None;
    loop {
        let cmd = match held.take() {
            Some(c) => c,
            None => match rx.recv_timeout(next_purge.saturating_duration_since(Instant::now())) {
                Ok(c) => c,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    purge(store.as_mut(), retention);
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
            Command::Store(first, ack) => {
                let mut batch = vec![*first];
                let mut acks = vec![ack];
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(Command::Store(m, a)) => {
                            stats.queued.fetch_sub(1, Ordering::Relaxed);
                            batch.push(*m);
                            acks.push(a);
                        }
                        Ok(other) => {
                            held = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let run = std::panic::AssertUnwindSafe(|| write(store.as_mut(), &batch, &stats));
                let outcomes = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                    stats
                        .failed
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::error!(
                        memos = batch.len(),
                        "writing memos panicked; they are not archived"
                    );
                    vec![Err("writing it panicked".to_string()); batch.len()]
                });
                // Only now, after the commit, may their answers go out.
                for (ack, outcome) in acks.into_iter().zip(outcomes) {
                    let _ = ack.send(outcome);
                }
            }
        }
    }
}

/// Write `batch` in one transaction; when that fails, one by one, so that one bad record does
/// not take the others with it. One outcome per memo.
fn write(
    store: &mut dyn Store,
    batch: &[NewMemo],
    stats: &Stats,
) -> Vec<std::result::Result<(), String>> {
    match store.store(batch) {
        Ok(()) => {
            stats
                .stored
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            vec![Ok(()); batch.len()]
        }
        Err(e) if batch.len() == 1 => {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            vec![Err(e.to_string())]
        }
        Err(e) => {
            tracing::warn!(
                "archive batch of {} failed ({e}); writing one by one",
                batch.len()
            );
            batch
                .iter()
                .map(|m| match store.store(std::slice::from_ref(m)) {
                    Ok(()) => {
                        stats.stored.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(e) => {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        Err(e.to_string())
                    }
                })
                .collect()
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
pub(crate) mod tests;
