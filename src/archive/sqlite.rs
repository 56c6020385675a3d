//! The embedded archive: one SQLite file in WAL mode, its schema brought up to date at open by
//! the numbered migrations below (each applied once, in its own transaction, and recorded in
//! `schema_migrations`). Deleted memos are overwritten on disk (`secure_delete`): memo text is
//! customer data.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, FixedOffset, Utc};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};

use super::grams;
use super::metrics::{self, CountRow, MetricsQuery, Period, TagRow, UrgentCustomer, UrgentQuery};
use super::{
    ArchiveError, Audio, ExportLine, Filter, Labels, Mark, NewMemo, Page, Result, ReviewMark,
    Source, Store, StoredMemo, StoredResult, TagKind, Verdict,
};

/// The schema, one step per entry: never edit a released step, add the next one.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "memos, their tags and reviews",
        r#"
CREATE TABLE memos (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    memo_id         TEXT NOT NULL UNIQUE,
    source          TEXT NOT NULL,
    rep_id          TEXT,
    customer_id     TEXT,
    team            TEXT,
    domain          TEXT,
    recorded_at     TEXT NOT NULL,
    recorded_ms     INTEGER NOT NULL,
    stored_at       TEXT NOT NULL,
    stored_ms       INTEGER NOT NULL,
    stored_by       TEXT NOT NULL,
    text            TEXT NOT NULL,
    library_version TEXT NOT NULL,
    need_count      INTEGER NOT NULL,
    vague           INTEGER NOT NULL,
    high_value      INTEGER NOT NULL,
    total_ms        REAL NOT NULL,
    result          TEXT NOT NULL
);
CREATE INDEX memos_rep ON memos (rep_id, seq);
CREATE INDEX memos_customer ON memos (customer_id, seq);
CREATE INDEX memos_team ON memos (team, seq);
CREATE INDEX memos_domain ON memos (domain, seq);
CREATE INDEX memos_recorded ON memos (recorded_ms);
CREATE INDEX memos_stored ON memos (stored_ms);
-- kind: need, action, ruled_out (the engine's tags)
CREATE TABLE memo_tags (
    memo_id TEXT NOT NULL REFERENCES memos (memo_id) ON DELETE CASCADE,
    kind    TEXT NOT NULL,
    tag     TEXT NOT NULL,
    PRIMARY KEY (memo_id, kind, tag)
);
CREATE INDEX memo_tags_tag ON memo_tags (kind, tag, memo_id);
CREATE TABLE reviews (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    memo_id  TEXT NOT NULL REFERENCES memos (memo_id) ON DELETE CASCADE,
    kind     TEXT NOT NULL,
    tag      TEXT NOT NULL,
    verdict  TEXT NOT NULL,
    reviewer TEXT NOT NULL,
    at       TEXT NOT NULL
);
CREATE INDEX reviews_memo ON reviews (memo_id, id);
"#,
    ),
    (
        2,
        "audio kept for archive.keep_audio_days",
        r#"
CREATE TABLE memo_audio (
    memo_id      TEXT PRIMARY KEY REFERENCES memos (memo_id) ON DELETE CASCADE,
    content_type TEXT NOT NULL,
    stored_ms    INTEGER NOT NULL,
    audio        BLOB NOT NULL
);
CREATE INDEX memo_audio_stored ON memo_audio (stored_ms);
"#,
    ),
    (
        3,
        "rollups for the manager's numbers",
        r#"
-- Memos per period (week, month), period start and (rep, team, domain); '' where a memo did not
-- say. Kept by store, delete and purge in their own transaction.
CREATE TABLE metric_memos (
    period    TEXT NOT NULL,
    bucket    TEXT NOT NULL,
    rep_id    TEXT NOT NULL,
    team      TEXT NOT NULL,
    domain    TEXT NOT NULL,
    memos     INTEGER NOT NULL,
    vague     INTEGER NOT NULL,
    with_need INTEGER NOT NULL,
    actions   INTEGER NOT NULL,
    high_actions INTEGER NOT NULL,
    PRIMARY KEY (period, bucket, rep_id, team, domain)
) WITHOUT ROWID;
-- Memos tagged with each need and action (kind), likewise.
CREATE TABLE metric_tags (
    period TEXT NOT NULL,
    kind   TEXT NOT NULL,
    bucket TEXT NOT NULL,
    rep_id TEXT NOT NULL,
    team   TEXT NOT NULL,
    domain TEXT NOT NULL,
    tag    TEXT NOT NULL,
    memos  INTEGER NOT NULL,
    PRIMARY KEY (period, kind, bucket, rep_id, team, domain, tag)
) WITHOUT ROWID;
-- Each customer's latest memo (by recorded_at, then by storing order) and its needs
-- (' a b ': space-separated, spaces around).
CREATE TABLE customer_last (
    customer_id TEXT PRIMARY KEY,
    memo_id     TEXT NOT NULL,
    recorded_ms INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    rep_id      TEXT,
    team        TEXT,
    domain      TEXT,
    needs       TEXT NOT NULL
);
-- A memo's actions of the library's high tier when it was tagged.
ALTER TABLE memos ADD COLUMN high_actions INTEGER NOT NULL DEFAULT 0;
UPDATE memos SET high_actions = (SELECT COUNT(*) FROM json_each(memos.result, '$.actions')
    WHERE json_extract(json_each.value, '$.tier') = 'high');
CREATE INDEX customer_last_recorded ON customer_last (recorded_ms);
-- A tag filter of the list walks this index newest first instead of every memo.
ALTER TABLE memo_tags ADD COLUMN seq INTEGER;
UPDATE memo_tags SET seq = (SELECT m.seq FROM memos m WHERE m.memo_id = memo_tags.memo_id);
DROP INDEX memo_tags_tag;
CREATE INDEX memo_tags_seq ON memo_tags (kind, tag, seq);
CREATE INDEX memos_customer_recorded ON memos (customer_id, recorded_ms, seq);
-- The memos stored before this version. A period starts on the local date of recorded_at:
-- the Monday of its week, the first of its month.
CREATE TEMP TABLE rollup_source AS
    SELECT memo_id, COALESCE(rep_id, '') AS rep_id, COALESCE(team, '') AS team,
        COALESCE(domain, '') AS domain, vague, need_count, high_actions,
        (SELECT COUNT(*) FROM memo_tags t WHERE t.memo_id = memos.memo_id AND t.kind = 'action') AS actions,
        date(substr(recorded_at, 1, 10), 'weekday 0', '-6 days') AS week,
        date(substr(recorded_at, 1, 10), 'start of month') AS month
    FROM memos WHERE date(substr(recorded_at, 1, 10)) IS NOT NULL;
INSERT INTO metric_memos (period, bucket, rep_id, team, domain, memos, vague, with_need, actions, high_actions)
    SELECT 'week', week, rep_id, team, domain, COUNT(*), SUM(vague), SUM(need_count > 0), SUM(actions), SUM(high_actions)
    FROM rollup_source GROUP BY week, rep_id, team, domain;
INSERT INTO metric_memos (period, bucket, rep_id, team, domain, memos, vague, with_need, actions, high_actions)
    SELECT 'month', month, rep_id, team, domain, COUNT(*), SUM(vague), SUM(need_count > 0), SUM(actions), SUM(high_actions)
    FROM rollup_source GROUP BY month, rep_id, team, domain;
INSERT INTO metric_tags (period, kind, bucket, rep_id, team, domain, tag, memos)
    SELECT 'week', t.kind, s.week, s.rep_id, s.team, s.domain, t.tag, COUNT(*)
    FROM rollup_source s JOIN memo_tags t ON t.memo_id = s.memo_id
    WHERE t.kind IN ('need', 'action')
    GROUP BY t.kind, s.week, s.rep_id, s.team, s.domain, t.tag;
INSERT INTO metric_tags (period, kind, bucket, rep_id, team, domain, tag, memos)
    SELECT 'month', t.kind, s.month, s.rep_id, s.team, s.domain, t.tag, COUNT(*)
    FROM rollup_source s JOIN memo_tags t ON t.memo_id = s.memo_id
    WHERE t.kind IN ('need', 'action')
    GROUP BY t.kind, s.month, s.rep_id, s.team, s.domain, t.tag;
DROP TABLE rollup_source;
INSERT INTO customer_last (customer_id, memo_id, recorded_ms, recorded_at, rep_id, team, domain, needs)
    SELECT customer_id, memo_id, recorded_ms, recorded_at, rep_id, team, domain,
        ' ' || COALESCE((SELECT group_concat(t.tag, ' ') FROM memo_tags t
            WHERE t.memo_id = latest.memo_id AND t.kind = 'need'), '') || ' ' FROM (
        SELECT customer_id, memo_id, recorded_ms, recorded_at, rep_id, team, domain,
            ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY recorded_ms DESC, seq DESC) AS n
        FROM memos WHERE customer_id IS NOT NULL) AS latest
    WHERE n = 1;
"#,
    ),
    (
        4,
        "the text search index",
        r#"
-- Every character and adjacent pair of each memo's text (archive::grams), so that `q` is looked
-- up instead of read through every memo. Contentless: the text stays only in memos.
CREATE VIRTUAL TABLE memo_text USING fts5(
    grams, content = '', contentless_delete = 1, detail = none, tokenize = 'ascii');
INSERT INTO memo_text (rowid, grams) SELECT seq, needtag_grams(text) FROM memos;
CREATE TRIGGER memo_text_insert AFTER INSERT ON memos BEGIN
    INSERT INTO memo_text (rowid, grams) VALUES (new.seq, needtag_grams(new.text));
END;
CREATE TRIGGER memo_text_delete AFTER DELETE ON memos BEGIN
    DELETE FROM memo_text WHERE rowid = old.seq;
END;
CREATE TRIGGER memo_text_update AFTER UPDATE OF text ON memos BEGIN
    DELETE FROM memo_text WHERE rowid = old.seq;
    INSERT INTO memo_text (rowid, grams) VALUES (new.seq, needtag_grams(new.text));
END;
"#,
    ),
];

pub struct Sqlite {
    conn: Connection,
}

/// The SQL functions the schema's triggers call: `needtag_grams(text)`, the text search
/// index's terms ([`grams::index_terms`]). Every connection that writes memos registers them.
fn functions(conn: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "needtag_grams",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let text: Option<String> = ctx.get(0)?;
            Ok(grams::index_terms(text.as_deref().unwrap_or("")))
        },
    )
}

const COLUMNS: &str = "m.seq, m.memo_id, m.source, m.rep_id, m.customer_id, m.team, m.domain, \
    m.recorded_at, m.stored_at, m.stored_by, m.text, m.library_version, m.vague, m.high_value";

impl Sqlite {
    /// Open (creating the file and its directory) and migrate.
    pub fn open(path: &Path) -> Result<Sqlite> {
        let open_err = |message: String| ArchiveError::Open {
            path: path.display().to_string(),
            message,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(e.to_string()))?;
        }
        let conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        Sqlite::setup(conn).map_err(|e| open_err(e.to_string()))
    }

    /// A private database in memory (tests).
    pub fn in_memory() -> Result<Sqlite> {
        Sqlite::setup(Connection::open_in_memory()?)
    }

    fn setup(conn: Connection) -> Result<Sqlite> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // With WAL, NORMAL loses nothing when the process dies; only a power cut may lose the
        // last transactions.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "secure_delete", "ON")?;
        functions(&conn)?;
        let mut db = Sqlite { conn };
        db.migrate()?;
        Ok(db)
    }

    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The schema version after migration.
    pub fn version(&self) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?)
    }

    fn migrate(&mut self) -> Result<()> {
        self.migrate_to(i64::MAX)
    }

    /// Open `path` and apply the migrations up to `target` only (tests build older schemas
    /// with it).
    pub fn open_at(path: &Path, target: i64) -> Result<Sqlite> {
        let conn = Connection::open(path)?;
        functions(&conn)?;
        let mut db = Sqlite { conn };
        db.migrate_to(target)?;
        Ok(db)
    }

    /// Write the write-ahead log into the main file and truncate it.
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// A file brought only up to schema `version` (tests of the migrations).
    #[doc(hidden)]
    pub fn open_at_version(path: &Path, version: i64) -> Result<Sqlite> {
        let conn = Connection::open(path)?;
        functions(&conn)?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut db = Sqlite { conn };
        db.migrate_to(version)?;
        Ok(db)
    }

    /// Run a statement on a file opened with [`Sqlite::open_at_version`] (tests).
    #[doc(hidden)]
    pub fn execute_raw(&self, sql: &str, args: &[&dyn rusqlite::ToSql]) -> Result<usize> {
        Ok(self.conn.execute(sql, args)?)
    }

    fn migrate_to(&mut self, target: i64) -> Result<()> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )?;
        let current = self.version()?;
        let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        if current > known {
            return Err(ArchiveError::Invalid(format!(
                "the archive's schema is version {current}, newer than this needtag knows ({known}); use a newer needtag"
            )));
        }
        for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current && m.0 <= target) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![version, name, Utc::now().to_rfc3339()],
            )?;
            tx.commit()?;
            tracing::info!(version, name, "archive schema migrated");
        }
        Ok(())
    }

    fn memo_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, StoredMemo)> {
        let source: String = r.get(2)?;
        Ok((
            r.get(0)?,
            StoredMemo {
                memo_id: r.get(1)?,
                source: Source::parse(&source).unwrap_or(Source::Text),
                rep_id: r.get(3)?,
                customer_id: r.get(4)?,
                team: r.get(5)?,
                domain: r.get(6)?,
                recorded_at: r.get(7)?,
                stored_at: r.get(8)?,
                stored_by: r.get(9)?,
                text: r.get(10)?,
                library_version: r.get(11)?,
                needs: Vec::new(),
                actions: Vec::new(),
                vague: r.get(12)?,
                high_value: r.get(13)?,
                reviewed: false,
                labels: None,
                reviews: Vec::new(),
                result: None,
            },
        ))
    }

    /// Fill in the tags, reviews and labels of `memo`.
    fn complete(conn: &Connection, memo: &mut StoredMemo) -> Result<Vec<String>> {
        let mut ruled_out = Vec::new();
        let mut st = conn
            .prepare_cached("SELECT kind, tag FROM memo_tags WHERE memo_id = ?1 ORDER BY rowid")?;
        let rows = st.query_map([&memo.memo_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        for row in rows {
            let (kind, tag) = row?;
            match kind.as_str() {
                "need" => memo.needs.push(tag),
                "action" => memo.actions.push(tag),
                _ => ruled_out.push(tag),
            }
        }
        memo.reviews = reviews(conn, &memo.memo_id)?;
        memo.reviewed = !memo.reviews.is_empty();
        if memo.reviewed {
            memo.labels = Some(labels(&memo.needs, &memo.actions, &memo.reviews));
        }
        Ok(ruled_out)
    }

    fn exists(&self, memo_id: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT 1 FROM memos WHERE memo_id = ?1", [memo_id], |_| {
                Ok(())
            })
            .optional()?
            .is_some())
    }

    /// The FROM and WHERE clauses, the column to order by and the parameters for `filter`.
    /// With a need or action filter the memos are read through that tag's index (newest
    /// first), so a rare tag costs as little as a common one.
    /// Without `range_first` ([`Filter::range_first`]) the time range is only checked on the
    /// memos walked (`+` keeps SQLite from reading the range through its index).
    fn conditions(filter: &Filter, range_first: bool) -> (String, &'static str, Vec<Value>) {
        let time = if range_first {
            "m.recorded_ms"
        } else {
            "+m.recorded_ms"
        };
        let mut args: Vec<Value> = Vec::new();
        let search = filter.text.as_deref().filter(|t| !t.is_empty());
        let (mut sql, order, driving) = match (&filter.need, &filter.action) {
            (Some(v), _) | (None, Some(v)) => {
                let kind = if filter.need.is_some() {
                    "need"
                } else {
                    "action"
                };
                args.push(Value::Text(v.clone()));
                (
                    format!(
                        " memo_tags d JOIN memos m ON m.seq = d.seq WHERE d.kind = '{kind}' AND d.tag = ?1"
                    ),
                    "d.seq",
                    Some(kind),
                )
            }
            // A text search with nothing more selective walks the text index newest first; the
            // `instr` below keeps only the memos that really contain the text. (CROSS JOIN: SQLite
            // keeps the index as the outer loop.)
            (None, None) => match search.and_then(grams::fts_query) {
                Some(terms) if filter.rep_id.is_none() && filter.customer_id.is_none() => {
                    args.push(Value::Text(terms));
                    (
                        " memo_text CROSS JOIN memos m ON m.seq = memo_text.rowid WHERE memo_text MATCH ?1"
                            .to_string(),
                        "memo_text.rowid",
                        None,
                    )
                }
                _ => (" memos m WHERE 1 = 1".to_string(), "m.seq", None),
            },
        };
        let text = |v: &String| Value::Text(v.clone());
        for (column, v) in [
            ("rep_id", &filter.rep_id),
            ("customer_id", &filter.customer_id),
            ("team", &filter.team),
            ("domain", &filter.domain),
        ] {
            if let Some(v) = v {
                args.push(text(v));
                sql.push_str(&format!(" AND m.{column} = ?{}", args.len()));
            }
        }
        for (kind, v) in [("need", &filter.need), ("action", &filter.action)] {
            if driving == Some(kind) {
                continue;
            }
            if let Some(v) = v {
                args.push(text(v));
                sql.push_str(&format!(
                    " AND EXISTS (SELECT 1 FROM memo_tags t WHERE t.memo_id = m.memo_id AND t.kind = '{kind}' AND t.tag = ?{})",
                    args.len()
                ));
            }
        }
        for (column, v) in [("vague", filter.vague), ("high_value", filter.high_value)] {
            if let Some(v) = v {
                args.push(Value::Integer(i64::from(v)));
                sql.push_str(&format!(" AND m.{column} = ?{}", args.len()));
            }
        }
        if let Some(none) = filter.no_need {
            sql.push_str(if none {
                " AND m.need_count = 0"
            } else {
                " AND m.need_count > 0"
            });
        }
        if let Some(reviewed) = filter.reviewed {
            sql.push_str(if reviewed {
                // Reviewed memos are few: start from them.
                " AND m.seq IN (SELECT s.seq FROM reviews r JOIN memos s ON s.memo_id = r.memo_id)"
            } else {
                " AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.memo_id = m.memo_id)"
            });
        }
        if let Some(t) = search {
            args.push(Value::Text(t.to_string()));
            sql.push_str(&format!(" AND instr(m.text, ?{}) > 0", args.len()));
        }
        if let Some(t) = filter.from {
            args.push(Value::Integer(t.timestamp_millis()));
            sql.push_str(&format!(" AND {time} >= ?{}", args.len()));
        }
        if let Some(t) = filter.to {
            args.push(Value::Integer(t.timestamp_millis()));
            sql.push_str(&format!(" AND {time} < ?{}", args.len()));
        }
        (sql, order, args)
    }
}

fn reviews(conn: &Connection, memo_id: &str) -> Result<Vec<ReviewMark>> {
    let mut st = conn.prepare_cached(
        "SELECT kind, tag, verdict, reviewer, at FROM reviews WHERE memo_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([memo_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, id, verdict, reviewer, at) = row?;
        let (Some(kind), Some(verdict)) = (TagKind::parse(&kind), Verdict::parse(&verdict)) else {
            return Err(ArchiveError::Corrupt(format!(
                "review of {memo_id} has kind {kind:?}, verdict {verdict:?}"
            )));
        };
        out.push(ReviewMark {
            kind,
            id,
            verdict,
            reviewer,
            at,
        });
    }
    Ok(out)
}

/// The engine's tags with the latest mark of each tag applied.
pub fn labels(needs: &[String], actions: &[String], marks: &[ReviewMark]) -> Labels {
    let apply = |kind: TagKind, tagged: &[String]| {
        let mut last: BTreeMap<&str, Verdict> = BTreeMap::new();
        for m in marks.iter().filter(|m| m.kind == kind) {
            last.insert(&m.id, m.verdict);
        }
        let mut out: Vec<String> = tagged
            .iter()
            .filter(|t| last.get(t.as_str()) != Some(&Verdict::Reject))
            .cloned()
            .collect();
        for (id, v) in &last {
            if *v != Verdict::Reject && !out.iter().any(|t| t == id) {
                out.push(id.to_string());
            }
        }
        out
    };
    Labels {
        needs: apply(TagKind::Need, needs),
        actions: apply(TagKind::Action, actions),
    }
}

/// `recorded_at` as stored (the time it was stored when none was sent) and in milliseconds.
pub(super) fn recorded(m: &NewMemo) -> (String, i64) {
    match m.meta.recorded_at {
        Some(t) => (t.to_rfc3339(), t.timestamp_millis()),
        None => {
            let t: DateTime<FixedOffset> = m.stored_at.into();
            (t.to_rfc3339(), t.timestamp_millis())
        }
    }
}

/// The WHERE clause of a rollup read.
fn rollup_conditions(q: &MetricsQuery, kind: Option<TagKind>) -> (String, Vec<Value>) {
    let mut args = vec![
        Value::Text(q.period.as_str().into()),
        Value::Text(metrics::bucket(q.first)),
        Value::Text(metrics::bucket(q.last)),
    ];
    let mut sql = String::from("period = ?1 AND bucket >= ?2 AND bucket <= ?3");
    if let Some(k) = kind {
        args.push(Value::Text(k.as_str().into()));
        sql.push_str(&format!(" AND kind = ?{}", args.len()));
    }
    for (column, v) in q.filters() {
        args.push(Value::Text(v.to_string()));
        sql.push_str(&format!(" AND {column} = ?{}", args.len()));
    }
    (sql, args)
}

pub(super) type RollupKey = (Period, String, [String; 3]);

/// What the rollups count of one memo.
pub(super) struct Tally<'a> {
    pub recorded_at: &'a str,
    pub group: [&'a Option<String>; 3],
    pub vague: bool,
    pub needs: &'a [String],
    pub actions: &'a [String],
    pub high_actions: i64,
}

/// Changes to the rollups, summed in memory and written once per key.
#[derive(Default)]
pub(super) struct Rollup {
    /// (memos, vague, with_need, actions, high_actions)
    pub memos: HashMap<RollupKey, [i64; 5]>,
    pub tags: HashMap<(RollupKey, &'static str, String), i64>,
}

impl Rollup {
    /// Count (`sign` 1) or uncount (-1) one memo.
    pub(super) fn add(&mut self, memo: Tally<'_>, sign: i64) {
        let Tally {
            recorded_at,
            group,
            vague,
            needs,
            actions,
            high_actions,
        } = memo;
        let Some(day) = metrics::local_date(recorded_at) else {
            return;
        };
        let group = group.map(|g| g.clone().unwrap_or_default());
        for period in Period::ALL {
            let key = (period, metrics::bucket(period.start(day)), group.clone());
            let m = self.memos.entry(key.clone()).or_default();
            m[0] += sign;
            m[1] += sign * i64::from(vague);
            m[2] += sign * i64::from(!needs.is_empty());
            m[3] += sign * actions.len() as i64;
            m[4] += sign * high_actions;
            for (kind, tags) in [("need", needs), ("action", actions)] {
                // A tag once per memo, as memo_tags holds it.
                let unique: std::collections::BTreeSet<&String> = tags.iter().collect();
                for t in unique {
                    *self.tags.entry((key.clone(), kind, t.clone())).or_default() += sign;
                }
            }
        }
    }

    fn apply(self, tx: &Connection) -> Result<()> {
        let mut memos = tx.prepare_cached(
            "INSERT INTO metric_memos (period, bucket, rep_id, team, domain, memos, vague, with_need, actions, high_actions)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (period, bucket, rep_id, team, domain) DO UPDATE SET
                memos = metric_memos.memos + excluded.memos,
                vague = metric_memos.vague + excluded.vague,
                with_need = metric_memos.with_need + excluded.with_need,
                actions = metric_memos.actions + excluded.actions,
                high_actions = metric_memos.high_actions + excluded.high_actions",
        )?;
        let mut empty_memos = tx.prepare_cached(
            "DELETE FROM metric_memos WHERE period = ?1 AND bucket = ?2 AND rep_id = ?3
                AND team = ?4 AND domain = ?5 AND memos <= 0",
        )?;
        for ((period, bucket, [rep, team, domain]), [n, vague, with_need, actions, high]) in
            &self.memos
        {
            if *n == 0 {
                continue;
            }
            memos.execute(params![
                period.as_str(),
                bucket,
                rep,
                team,
                domain,
                n,
                vague,
                with_need,
                actions,
                high
            ])?;
            if *n < 0 {
                empty_memos.execute(params![period.as_str(), bucket, rep, team, domain])?;
            }
        }
        let mut tags = tx.prepare_cached(
            "INSERT INTO metric_tags (period, kind, bucket, rep_id, team, domain, tag, memos)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (period, kind, bucket, rep_id, team, domain, tag) DO UPDATE SET
                memos = metric_tags.memos + excluded.memos",
        )?;
        let mut empty_tags = tx.prepare_cached(
            "DELETE FROM metric_tags WHERE period = ?1 AND kind = ?2 AND bucket = ?3
                AND rep_id = ?4 AND team = ?5 AND domain = ?6 AND tag = ?7 AND memos <= 0",
        )?;
        for (((period, bucket, [rep, team, domain]), kind, tag), n) in &self.tags {
            if *n == 0 {
                continue;
            }
            tags.execute(params![
                period.as_str(),
                kind,
                bucket,
                rep,
                team,
                domain,
                tag,
                n
            ])?;
            if *n < 0 {
                empty_tags.execute(params![
                    period.as_str(),
                    kind,
                    bucket,
                    rep,
                    team,
                    domain,
                    tag
                ])?;
            }
        }
        Ok(())
    }
}

impl Sqlite {
    /// Delete the memos matching `cond` (one parameter, `?1`) with their tags and reviews, take
    /// them out of the rollups and find their customers' latest memo again: one transaction.
    fn remove(&mut self, cond: &str, arg: Value) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let deleted;
        {
            let mut memos: HashMap<String, (NewGroup, String, bool, i64)> = HashMap::new();
            let mut customers = std::collections::BTreeSet::new();
            {
                let mut st = tx.prepare(&format!(
                    "SELECT memo_id, rep_id, team, domain, recorded_at, vague, customer_id, high_actions
                     FROM memos WHERE {cond}"
                ))?;
                let mut rows = st.query([&arg])?;
                while let Some(r) = rows.next()? {
                    memos.insert(
                        r.get(0)?,
                        (
                            [r.get(1)?, r.get(2)?, r.get(3)?],
                            r.get(4)?,
                            r.get(5)?,
                            r.get(7)?,
                        ),
                    );
                    if let Some(c) = r.get::<_, Option<String>>(6)? {
                        customers.insert(c);
                    }
                }
            }
            if memos.is_empty() {
                return Ok(0);
            }
            let mut tags: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
            {
                let mut st = tx.prepare(&format!(
                    "SELECT memo_id, kind, tag FROM memo_tags
                     WHERE kind IN ('need', 'action')
                        AND memo_id IN (SELECT memo_id FROM memos WHERE {cond})"
                ))?;
                let mut rows = st.query([&arg])?;
                while let Some(r) = rows.next()? {
                    let e = tags.entry(r.get(0)?).or_default();
                    let kind: String = r.get(1)?;
                    if kind == "need" {
                        e.0.push(r.get(2)?);
                    } else {
                        e.1.push(r.get(2)?);
                    }
                }
            }
            let mut rollup = Rollup::default();
            let none = (Vec::new(), Vec::new());
            for (id, ([rep, team, domain], recorded_at, vague, high)) in &memos {
                let (needs, actions) = tags.get(id).unwrap_or(&none);
                rollup.add(
                    Tally {
                        recorded_at,
                        group: [rep, team, domain],
                        vague: *vague,
                        needs,
                        actions,
                        high_actions: *high,
                    },
                    -1,
                );
            }
            rollup.apply(&tx)?;
            deleted = tx.execute(&format!("DELETE FROM memos WHERE {cond}"), [&arg])?;
            let mut forget =
                tx.prepare_cached("DELETE FROM customer_last WHERE customer_id = ?1")?;
            let mut latest = tx.prepare_cached(
                "INSERT INTO customer_last (customer_id, memo_id, recorded_ms, recorded_at, rep_id, team, domain, needs)
                 SELECT customer_id, memo_id, recorded_ms, recorded_at, rep_id, team, domain, ''
                 FROM memos WHERE customer_id = ?1 ORDER BY recorded_ms DESC, seq DESC LIMIT 1",
            )?;
            let mut needs = tx.prepare_cached(
                "SELECT t.tag FROM customer_last c JOIN memo_tags t ON t.memo_id = c.memo_id
                 WHERE c.customer_id = ?1 AND t.kind = 'need' ORDER BY t.tag",
            )?;
            let mut set_needs =
                tx.prepare_cached("UPDATE customer_last SET needs = ?2 WHERE customer_id = ?1")?;
            for c in &customers {
                forget.execute([c])?;
                if latest.execute([c])? > 0 {
                    let tags = needs
                        .query_map([c], |r| r.get::<_, String>(0))?
                        .collect::<rusqlite::Result<Vec<String>>>()?;
                    set_needs.execute(params![c, need_list(&tags)])?;
                }
            }
        }
        tx.commit()?;
        Ok(deleted)
    }
}

/// A memo's rep, team and domain.
pub(super) type NewGroup = [Option<String>; 3];

/// Need ids as `customer_last.needs` holds them: space-separated, with a space around.
pub(super) fn need_list(needs: &[String]) -> String {
    format!(" {} ", needs.join(" "))
}

impl Store for Sqlite {
    fn store(&mut self, memos: &[NewMemo]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut memo = tx.prepare_cached(
                "INSERT INTO memos (memo_id, source, rep_id, customer_id, team, domain, recorded_at,
                    recorded_ms, stored_at, stored_ms, stored_by, text, library_version, need_count,
                    vague, high_value, total_ms, result, high_actions)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            )?;
            let mut tag = tx.prepare_cached(
                "INSERT OR IGNORE INTO memo_tags (memo_id, kind, tag, seq) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut rollup = Rollup::default();
            for m in memos {
                let (recorded_at, recorded_ms) = recorded(m);
                rollup.add(
                    Tally {
                        recorded_at: &recorded_at,
                        group: [&m.meta.rep_id, &m.meta.team, &m.meta.domain],
                        vague: m.vague,
                        needs: &m.needs,
                        actions: &m.actions,
                        high_actions: m.high_value_actions as i64,
                    },
                    1,
                );
                if let Some(c) = &m.meta.customer_id {
                    tx.prepare_cached(
                        "INSERT INTO customer_last (customer_id, memo_id, recorded_ms, recorded_at, rep_id, team, domain, needs)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                         ON CONFLICT (customer_id) DO UPDATE SET memo_id = excluded.memo_id,
                            recorded_ms = excluded.recorded_ms, recorded_at = excluded.recorded_at,
                            rep_id = excluded.rep_id, team = excluded.team, domain = excluded.domain,
                            needs = excluded.needs
                         WHERE excluded.recorded_ms >= customer_last.recorded_ms",
                    )?
                    .execute(params![
                        c,
                        m.memo_id,
                        recorded_ms,
                        recorded_at,
                        m.meta.rep_id,
                        m.meta.team,
                        m.meta.domain,
                        need_list(&m.needs),
                    ])?;
                }
                memo.execute(params![
                    m.memo_id,
                    m.source.as_str(),
                    m.meta.rep_id,
                    m.meta.customer_id,
                    m.meta.team,
                    m.meta.domain,
                    recorded_at,
                    recorded_ms,
                    m.stored_at.to_rfc3339(),
                    m.stored_at.timestamp_millis(),
                    m.stored_by,
                    m.text,
                    m.library_version,
                    m.needs.len() as i64,
                    m.vague,
                    m.high_value,
                    m.total_ms,
                    m.result,
                    m.high_value_actions as i64,
                ])?;
                let seq = tx.last_insert_rowid();
                for (kind, tags) in [
                    ("need", &m.needs),
                    ("action", &m.actions),
                    ("ruled_out", &m.ruled_out),
                ] {
                    for t in tags {
                        tag.execute(params![m.memo_id, kind, t, seq])?;
                    }
                }
                if let Some(a) = &m.audio {
                    tx.execute(
                        "INSERT INTO memo_audio (memo_id, content_type, stored_ms, audio) VALUES (?1, ?2, ?3, ?4)",
                        params![m.memo_id, a.content_type, m.stored_at.timestamp_millis(), &a.bytes[..]],
                    )?;
                }
            }
            rollup.apply(&tx)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn get(&mut self, memo_id: &str) -> Result<Option<StoredMemo>> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {COLUMNS}, result FROM memos m WHERE memo_id = ?1"),
                [memo_id],
                |r| Ok((Sqlite::memo_from_row(r)?, r.get::<_, String>(14)?)),
            )
            .optional()?;
        let Some(((_, mut memo), result)) = row else {
            return Ok(None);
        };
        Sqlite::complete(&self.conn, &mut memo)?;
        let corrupt = |e: serde_json::Error| ArchiveError::Corrupt(format!("{memo_id}: {e}"));
        memo.result = Some(match memo.source {
            Source::Audio => StoredResult::Audio(serde_json::from_str(&result).map_err(corrupt)?),
            Source::Text => StoredResult::Text(serde_json::from_str(&result).map_err(corrupt)?),
        });
        Ok(Some(memo))
    }

    fn list(&mut self, filter: &Filter, cursor: Option<&str>, limit: usize) -> Result<Page> {
        let span = if filter.from.is_some() || filter.to.is_some() {
            self.conn.query_row(super::RECORDED_SPAN, [], |r| {
                Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?))
            })?
        } else {
            None
        };
        let (mut sql, order, mut args) = Sqlite::conditions(filter, filter.range_first(span));
        if let Some(c) = cursor {
            let seq: i64 = c.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                ArchiveError::Invalid(format!("the cursor {c:?} is not one this archive gave"))
            })?;
            args.push(Value::Integer(seq));
            sql.push_str(&format!(" AND {order} < ?{}", args.len()));
        }
        args.push(Value::Integer(limit as i64 + 1));
        // The page's memos are chosen by their storing order alone, then read: a filter that
        // is not in storing order (a time range) sorts numbers, not whole memos.
        let query = format!(
            "SELECT {COLUMNS} FROM memos m WHERE m.seq IN (SELECT {order} FROM{sql} ORDER BY {order} DESC LIMIT ?{}) ORDER BY m.seq DESC",
            args.len()
        );
        let mut st = self.conn.prepare(&query)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), Sqlite::memo_from_row)?;
        let mut items = Vec::new();
        let mut last = None;
        let mut more = false;
        for row in rows {
            let (seq, mut memo) = row?;
            if items.len() == limit {
                // The query asked for one row more than a page: there is a next page.
                more = true;
                break;
            }
            Sqlite::complete(&self.conn, &mut memo)?;
            items.push(memo);
            last = Some(seq);
        }
        Ok(Page {
            next: last.filter(|_| more).map(|s| s.to_string()),
            items,
        })
    }

    fn review(
        &mut self,
        memo_id: &str,
        marks: &[Mark],
        reviewer: &str,
    ) -> Result<Option<StoredMemo>> {
        if !self.exists(memo_id)? {
            return Ok(None);
        }
        let tx = self.conn.transaction()?;
        {
            let tagged = |kind: TagKind, id: &str| -> Result<bool> {
                Ok(tx
                    .query_row(
                        "SELECT 1 FROM memo_tags WHERE memo_id = ?1 AND kind = ?2 AND tag = ?3",
                        params![memo_id, kind.as_str(), id],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some())
            };
            let at = Utc::now().to_rfc3339();
            for m in marks {
                let has = tagged(m.kind, &m.id)?;
                match (m.verdict, has) {
                    (Verdict::Add, true) => {
                        return Err(ArchiveError::Invalid(format!(
                            "the memo is already tagged with the {} {:?}; confirm or reject it",
                            m.kind.as_str(),
                            m.id
                        )))
                    }
                    (Verdict::Confirm | Verdict::Reject, false) => {
                        return Err(ArchiveError::Invalid(format!(
                            "the memo is not tagged with the {} {:?}; add it instead",
                            m.kind.as_str(),
                            m.id
                        )))
                    }
                    _ => {}
                }
                tx.execute(
                    "INSERT INTO reviews (memo_id, kind, tag, verdict, reviewer, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![memo_id, m.kind.as_str(), m.id, m.verdict.as_str(), reviewer, at],
                )?;
            }
        }
        tx.commit()?;
        self.get(memo_id)
    }

    fn export(&mut self, filter: &Filter) -> Result<Vec<ExportLine>> {
        let filter = Filter {
            reviewed: Some(true),
            ..filter.clone()
        };
        let (sql, order, args) = Sqlite::conditions(&filter, false);
        let query = format!("SELECT {COLUMNS} FROM{sql} ORDER BY {order} ASC");
        let mut st = self.conn.prepare(&query)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), Sqlite::memo_from_row)?;
        let mut out = Vec::new();
        for row in rows {
            let (_, mut memo) = row?;
            let ruled_out = Sqlite::complete(&self.conn, &mut memo)?;
            let labels = memo.labels.clone().unwrap_or_default();
            out.push(ExportLine {
                negated_needs: ruled_out
                    .into_iter()
                    .filter(|n| !labels.needs.contains(n))
                    .collect(),
                id: memo.memo_id,
                text: memo.text,
                recorded_at: memo.recorded_at,
                domain: memo.domain,
                needs: labels.needs,
                actions: labels.actions,
                planned_actions: Vec::new(),
                negated_actions: Vec::new(),
                categories: vec!["archive".into()],
            });
        }
        Ok(out)
    }

    fn delete(&mut self, memo_id: &str) -> Result<bool> {
        Ok(self.remove("memo_id = ?1", Value::Text(memo_id.into()))? > 0)
    }

    fn delete_customer(&mut self, customer_id: &str) -> Result<usize> {
        self.remove("customer_id = ?1", Value::Text(customer_id.into()))
    }

    fn purge(&mut self, before: DateTime<Utc>) -> Result<usize> {
        self.remove("stored_ms < ?1", Value::Integer(before.timestamp_millis()))
    }

    fn metric_counts(&mut self, q: &MetricsQuery) -> Result<Vec<CountRow>> {
        let col = q.group_by.column();
        let (cond, args) = rollup_conditions(q, None);
        let sql = format!(
            "SELECT bucket, {col}, SUM(memos), SUM(vague), SUM(with_need), SUM(actions), SUM(high_actions)
             FROM metric_memos WHERE {cond} GROUP BY bucket, {col}"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
            Ok(CountRow {
                bucket: r.get(0)?,
                group: r.get(1)?,
                memos: r.get(2)?,
                vague: r.get(3)?,
                with_need: r.get(4)?,
                actions: r.get(5)?,
                high_value_actions: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn metric_tags(&mut self, q: &MetricsQuery, kind: TagKind) -> Result<Vec<TagRow>> {
        let col = q.group_by.column();
        let (cond, args) = rollup_conditions(q, Some(kind));
        let sql = format!(
            "SELECT bucket, {col}, tag, SUM(memos) FROM metric_tags
             WHERE {cond} GROUP BY bucket, {col}, tag"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
            Ok(TagRow {
                bucket: r.get(0)?,
                group: r.get(1)?,
                tag: r.get(2)?,
                memos: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn open_urgent(&mut self, q: &UrgentQuery) -> Result<Vec<UrgentCustomer>> {
        if q.needs.is_empty() || q.limit == 0 {
            return Ok(Vec::new());
        }
        let mut args = vec![Value::Integer(q.cutoff_ms())];
        let mut sql = String::from(
            "SELECT c.customer_id, c.memo_id, c.rep_id, c.team, c.domain, c.recorded_at, c.recorded_ms, c.needs
             FROM customer_last c WHERE c.recorded_ms <= ?1",
        );
        let any: Vec<String> = q
            .needs
            .iter()
            .map(|n| {
                args.push(Value::Text(format!("% {n} %")));
                format!("c.needs LIKE ?{}", args.len())
            })
            .collect();
        sql.push_str(&format!(" AND ({})", any.join(" OR ")));
        for (column, v) in q.filters() {
            args.push(Value::Text(v.to_string()));
            sql.push_str(&format!(" AND c.{column} = ?{}", args.len()));
        }
        args.push(Value::Integer(q.limit as i64));
        sql.push_str(&format!(
            " ORDER BY c.recorded_ms, c.customer_id LIMIT ?{}",
            args.len()
        ));
        let mut st = self.conn.prepare(&sql)?;
        let mut rows = st.query(rusqlite::params_from_iter(args))?;
        let mut out: Vec<UrgentCustomer> = Vec::new();
        while let Some(r) = rows.next()? {
            let needs: String = r.get(7)?;
            out.push(q.customer(
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                &needs,
            ));
        }
        Ok(out)
    }

    fn audio(&mut self, memo_id: &str) -> Result<Option<Audio>> {
        Ok(self
            .conn
            .query_row(
                "SELECT content_type, audio FROM memo_audio WHERE memo_id = ?1",
                [memo_id],
                |r| {
                    Ok(Audio {
                        content_type: r.get(0)?,
                        bytes: r.get::<_, Vec<u8>>(1)?.into(),
                    })
                },
            )
            .optional()?)
    }

    fn purge_audio(&mut self, before: DateTime<Utc>) -> Result<usize> {
        Ok(self.conn.execute(
            "DELETE FROM memo_audio WHERE stored_ms < ?1",
            [before.timestamp_millis()],
        )?)
    }
}
