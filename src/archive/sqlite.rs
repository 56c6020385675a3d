//! The embedded archive: one SQLite file in WAL mode, its schema brought up to date at open by
//! the numbered migrations below (each applied once, in its own transaction, and recorded in
//! `schema_migrations`). Deleted memos are overwritten on disk (`secure_delete`): memo text is
//! customer data.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, FixedOffset, Utc};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};

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
];

pub struct Sqlite {
    conn: Connection,
}

const COLUMNS: &str = "seq, memo_id, source, rep_id, customer_id, team, domain, recorded_at, \
    stored_at, stored_by, text, library_version, vague, high_value";

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
        let mut db = Sqlite { conn };
        db.migrate_to(target)?;
        Ok(db)
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

    /// The WHERE clause and its parameters for `filter`.
    fn conditions(filter: &Filter) -> (String, Vec<Value>) {
        let mut sql = String::from(" WHERE 1 = 1");
        let mut args: Vec<Value> = Vec::new();
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
                " AND EXISTS (SELECT 1 FROM reviews r WHERE r.memo_id = m.memo_id)"
            } else {
                " AND NOT EXISTS (SELECT 1 FROM reviews r WHERE r.memo_id = m.memo_id)"
            });
        }
        if let Some(t) = filter.from {
            args.push(Value::Integer(t.timestamp_millis()));
            sql.push_str(&format!(" AND m.recorded_ms >= ?{}", args.len()));
        }
        if let Some(t) = filter.to {
            args.push(Value::Integer(t.timestamp_millis()));
            sql.push_str(&format!(" AND m.recorded_ms < ?{}", args.len()));
        }
        (sql, args)
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

impl Store for Sqlite {
    fn store(&mut self, memos: &[NewMemo]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut memo = tx.prepare_cached(
                "INSERT INTO memos (memo_id, source, rep_id, customer_id, team, domain, recorded_at,
                    recorded_ms, stored_at, stored_ms, stored_by, text, library_version, need_count,
                    vague, high_value, total_ms, result)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            )?;
            let mut tag = tx.prepare_cached(
                "INSERT OR IGNORE INTO memo_tags (memo_id, kind, tag) VALUES (?1, ?2, ?3)",
            )?;
            for m in memos {
                let (recorded_at, recorded_ms) = recorded(m);
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
                ])?;
                for (kind, tags) in [
                    ("need", &m.needs),
                    ("action", &m.actions),
                    ("ruled_out", &m.ruled_out),
                ] {
                    for t in tags {
                        tag.execute(params![m.memo_id, kind, t])?;
                    }
                }
                if let Some(a) = &m.audio {
                    tx.execute(
                        "INSERT INTO memo_audio (memo_id, content_type, stored_ms, audio) VALUES (?1, ?2, ?3, ?4)",
                        params![m.memo_id, a.content_type, m.stored_at.timestamp_millis(), &a.bytes[..]],
                    )?;
                }
            }
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
        let (mut sql, mut args) = Sqlite::conditions(filter);
        if let Some(c) = cursor {
            let seq: i64 = c.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                ArchiveError::Invalid(format!("the cursor {c:?} is not one this archive gave"))
            })?;
            args.push(Value::Integer(seq));
            sql.push_str(&format!(" AND m.seq < ?{}", args.len()));
        }
        args.push(Value::Integer(limit as i64 + 1));
        let query = format!(
            "SELECT {COLUMNS} FROM memos m{sql} ORDER BY m.seq DESC LIMIT ?{}",
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
        let (sql, args) = Sqlite::conditions(&filter);
        let query = format!("SELECT {COLUMNS} FROM memos m{sql} ORDER BY m.seq ASC");
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
        Ok(self
            .conn
            .execute("DELETE FROM memos WHERE memo_id = ?1", [memo_id])?
            > 0)
    }

    fn delete_customer(&mut self, customer_id: &str) -> Result<usize> {
        Ok(self
            .conn
            .execute("DELETE FROM memos WHERE customer_id = ?1", [customer_id])?)
    }

    fn purge(&mut self, before: DateTime<Utc>) -> Result<usize> {
        Ok(self.conn.execute(
            "DELETE FROM memos WHERE stored_ms < ?1",
            [before.timestamp_millis()],
        )?)
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
