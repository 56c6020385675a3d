//! The archive on a PostgreSQL server, for several replicas sharing one archive: the same
//! tables, columns and numbered migrations as [`super::sqlite`] (each step written for
//! PostgreSQL, with the same version number), applied at start-up under an advisory lock so
//! that replicas starting together migrate once. A lost connection is opened again on the next
//! request.

use ::postgres::types::ToSql;
use ::postgres::{Client, GenericClient, NoTls, Row};
use chrono::{DateTime, Utc};

use super::sqlite::{labels, recorded};
use super::{
    ArchiveError, Audio, ExportLine, Filter, Mark, NewMemo, Page, Result, ReviewMark, Source,
    Store, StoredMemo, StoredResult, TagKind, Verdict,
};

/// The schema for PostgreSQL, one step per entry, numbered as [`super::sqlite::MIGRATIONS`]:
/// never edit a released step, add the next one to both lists.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "memos, their tags and reviews",
        r#"
CREATE TABLE memos (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    memo_id         TEXT NOT NULL UNIQUE,
    source          TEXT NOT NULL,
    rep_id          TEXT,
    customer_id     TEXT,
    team            TEXT,
    domain          TEXT,
    recorded_at     TEXT NOT NULL,
    recorded_ms     BIGINT NOT NULL,
    stored_at       TEXT NOT NULL,
    stored_ms       BIGINT NOT NULL,
    stored_by       TEXT NOT NULL,
    text            TEXT NOT NULL,
    library_version TEXT NOT NULL,
    need_count      INTEGER NOT NULL,
    vague           BOOLEAN NOT NULL,
    high_value      BOOLEAN NOT NULL,
    total_ms        DOUBLE PRECISION NOT NULL,
    result          TEXT NOT NULL
);
CREATE INDEX memos_rep ON memos (rep_id, seq);
CREATE INDEX memos_customer ON memos (customer_id, seq);
CREATE INDEX memos_team ON memos (team, seq);
CREATE INDEX memos_domain ON memos (domain, seq);
CREATE INDEX memos_recorded ON memos (recorded_ms);
CREATE INDEX memos_stored ON memos (stored_ms);
-- kind: need, action, ruled_out (the engine's tags); pos keeps the engine's order (SQLite's
-- rowid does it there)
CREATE TABLE memo_tags (
    memo_id TEXT NOT NULL REFERENCES memos (memo_id) ON DELETE CASCADE,
    kind    TEXT NOT NULL,
    tag     TEXT NOT NULL,
    pos     BIGINT GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (memo_id, kind, tag)
);
CREATE INDEX memo_tags_tag ON memo_tags (kind, tag, memo_id);
CREATE TABLE reviews (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
    stored_ms    BIGINT NOT NULL,
    audio        BYTEA NOT NULL
);
CREATE INDEX memo_audio_stored ON memo_audio (stored_ms);
"#,
    ),
];

/// The advisory lock replicas take while migrating (any constant; "needtag" in ASCII).
const MIGRATION_LOCK: i64 = 0x006e_6565_6474_6167;

const COLUMNS: &str = "seq, memo_id, source, rep_id, customer_id, team, domain, recorded_at, \
    stored_at, stored_by, text, library_version, vague, high_value";

pub struct Postgres {
    url: String,
    client: Client,
}

/// The URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

type Params = Vec<Box<dyn ToSql + Sync>>;

fn refs(p: &Params) -> Vec<&(dyn ToSql + Sync)> {
    p.iter().map(|b| b.as_ref()).collect()
}

impl Postgres {
    /// Connect to `url` (`postgres://user[:password]@host[:port]/database`) and migrate.
    pub fn open(url: &str) -> Result<Postgres> {
        let open_err = |message: String| ArchiveError::Open {
            path: redact_url(url),
            message,
        };
        let client = connect(url).map_err(|e| open_err(e.to_string()))?;
        let mut db = Postgres {
            url: url.to_string(),
            client,
        };
        db.migrate().map_err(|e| open_err(e.to_string()))?;
        Ok(db)
    }

    /// Connect and apply the migrations up to `target` only (tests build older schemas with
    /// it).
    pub fn open_at(url: &str, target: i64) -> Result<Postgres> {
        let mut db = Postgres {
            url: url.to_string(),
            client: connect(url)?,
        };
        db.migrate_to(target)?;
        Ok(db)
    }

    /// The connection, opened again when the last one was lost.
    fn client(&mut self) -> Result<&mut Client> {
        if self.client.is_closed() {
            tracing::warn!(url = %redact_url(&self.url), "the archive's connection was lost; connecting again");
            self.client = connect(&self.url)?;
        }
        Ok(&mut self.client)
    }

    #[cfg(test)]
    pub(crate) fn raw(&mut self) -> &mut Client {
        &mut self.client
    }

    /// The schema version after migration.
    pub fn version(&mut self) -> Result<i64> {
        let row = self.client()?.query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?;
        Ok(row.get(0))
    }

    fn migrate(&mut self) -> Result<()> {
        self.migrate_to(i64::MAX)
    }

    /// Apply the migrations up to `target`.
    fn migrate_to(&mut self, target: i64) -> Result<()> {
        let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        loop {
            let mut tx = self.client()?.transaction()?;
            // One replica migrates at a time; the others wait here, then find nothing to do.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
            )?;
            let current: i64 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    &[],
                )?
                .get(0);
            if current > known {
                return Err(ArchiveError::Invalid(format!(
                    "the archive's schema is version {current}, newer than this needtag knows ({known}); use a newer needtag"
                )));
            }
            let Some((version, name, sql)) =
                MIGRATIONS.iter().find(|m| m.0 > current && m.0 <= target)
            else {
                tx.commit()?;
                return Ok(());
            };
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                &[version, name, &Utc::now().to_rfc3339()],
            )?;
            tx.commit()?;
            tracing::info!(version, name, "archive schema migrated");
        }
    }

    fn memo_from_row(r: &Row) -> (i64, StoredMemo) {
        let source: String = r.get(2);
        (
            r.get(0),
            StoredMemo {
                memo_id: r.get(1),
                source: Source::parse(&source).unwrap_or(Source::Text),
                rep_id: r.get(3),
                customer_id: r.get(4),
                team: r.get(5),
                domain: r.get(6),
                recorded_at: r.get(7),
                stored_at: r.get(8),
                stored_by: r.get(9),
                text: r.get(10),
                library_version: r.get(11),
                needs: Vec::new(),
                actions: Vec::new(),
                vague: r.get(12),
                high_value: r.get(13),
                reviewed: false,
                labels: None,
                reviews: Vec::new(),
                result: None,
            },
        )
    }

    /// Fill in the tags, reviews and labels of `memo`; its ruled-out needs.
    fn complete(c: &mut impl GenericClient, memo: &mut StoredMemo) -> Result<Vec<String>> {
        let mut ruled_out = Vec::new();
        for row in c.query(
            "SELECT kind, tag FROM memo_tags WHERE memo_id = $1 ORDER BY pos",
            &[&memo.memo_id],
        )? {
            let (kind, tag): (String, String) = (row.get(0), row.get(1));
            match kind.as_str() {
                "need" => memo.needs.push(tag),
                "action" => memo.actions.push(tag),
                _ => ruled_out.push(tag),
            }
        }
        memo.reviews = reviews(c, &memo.memo_id)?;
        memo.reviewed = !memo.reviews.is_empty();
        if memo.reviewed {
            memo.labels = Some(labels(&memo.needs, &memo.actions, &memo.reviews));
        }
        Ok(ruled_out)
    }

    /// The WHERE clause and its parameters for `filter` (as the SQLite store builds it).
    fn conditions(filter: &Filter) -> (String, Params) {
        let mut sql = String::from(" WHERE TRUE");
        let mut args: Params = Vec::new();
        for (column, v) in [
            ("rep_id", &filter.rep_id),
            ("customer_id", &filter.customer_id),
            ("team", &filter.team),
            ("domain", &filter.domain),
        ] {
            if let Some(v) = v {
                args.push(Box::new(v.clone()));
                sql.push_str(&format!(" AND m.{column} = ${}", args.len()));
            }
        }
        for (kind, v) in [("need", &filter.need), ("action", &filter.action)] {
            if let Some(v) = v {
                args.push(Box::new(v.clone()));
                sql.push_str(&format!(
                    " AND EXISTS (SELECT 1 FROM memo_tags t WHERE t.memo_id = m.memo_id AND t.kind = '{kind}' AND t.tag = ${})",
                    args.len()
                ));
            }
        }
        for (column, v) in [("vague", filter.vague), ("high_value", filter.high_value)] {
            if let Some(v) = v {
                args.push(Box::new(v));
                sql.push_str(&format!(" AND m.{column} = ${}", args.len()));
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
            args.push(Box::new(t.timestamp_millis()));
            sql.push_str(&format!(" AND m.recorded_ms >= ${}", args.len()));
        }
        if let Some(t) = filter.to {
            args.push(Box::new(t.timestamp_millis()));
            sql.push_str(&format!(" AND m.recorded_ms < ${}", args.len()));
        }
        (sql, args)
    }
}

fn connect(url: &str) -> std::result::Result<Client, ::postgres::Error> {
    let mut config: ::postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    config.application_name("needtag").connect(NoTls)
}

fn reviews(c: &mut impl GenericClient, memo_id: &str) -> Result<Vec<ReviewMark>> {
    let mut out = Vec::new();
    for row in c.query(
        "SELECT kind, tag, verdict, reviewer, at FROM reviews WHERE memo_id = $1 ORDER BY id",
        &[&memo_id],
    )? {
        let (kind, verdict): (String, String) = (row.get(0), row.get(2));
        let (Some(k), Some(v)) = (TagKind::parse(&kind), Verdict::parse(&verdict)) else {
            return Err(ArchiveError::Corrupt(format!(
                "review of {memo_id} has kind {kind:?}, verdict {verdict:?}"
            )));
        };
        out.push(ReviewMark {
            kind: k,
            id: row.get(1),
            verdict: v,
            reviewer: row.get(3),
            at: row.get(4),
        });
    }
    Ok(out)
}

impl Store for Postgres {
    fn store(&mut self, memos: &[NewMemo]) -> Result<()> {
        let mut tx = self.client()?.transaction()?;
        let memo = tx.prepare(
            "INSERT INTO memos (memo_id, source, rep_id, customer_id, team, domain, recorded_at,
                recorded_ms, stored_at, stored_ms, stored_by, text, library_version, need_count,
                vague, high_value, total_ms, result)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )?;
        let tag = tx.prepare(
            "INSERT INTO memo_tags (memo_id, kind, tag) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )?;
        for m in memos {
            let (recorded_at, recorded_ms) = recorded(m);
            tx.execute(
                &memo,
                &[
                    &m.memo_id,
                    &m.source.as_str(),
                    &m.meta.rep_id,
                    &m.meta.customer_id,
                    &m.meta.team,
                    &m.meta.domain,
                    &recorded_at,
                    &recorded_ms,
                    &m.stored_at.to_rfc3339(),
                    &m.stored_at.timestamp_millis(),
                    &m.stored_by,
                    &m.text,
                    &m.library_version,
                    &(m.needs.len() as i32),
                    &m.vague,
                    &m.high_value,
                    &m.total_ms,
                    &m.result,
                ],
            )?;
            for (kind, tags) in [
                ("need", &m.needs),
                ("action", &m.actions),
                ("ruled_out", &m.ruled_out),
            ] {
                for t in tags {
                    tx.execute(&tag, &[&m.memo_id, &kind, t])?;
                }
            }
            if let Some(a) = &m.audio {
                tx.execute(
                    "INSERT INTO memo_audio (memo_id, content_type, stored_ms, audio) VALUES ($1, $2, $3, $4)",
                    &[&m.memo_id, &a.content_type, &m.stored_at.timestamp_millis(), &&a.bytes[..]],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn get(&mut self, memo_id: &str) -> Result<Option<StoredMemo>> {
        let c = self.client()?;
        let Some(row) = c.query_opt(
            &format!("SELECT {COLUMNS}, result FROM memos m WHERE memo_id = $1"),
            &[&memo_id],
        )?
        else {
            return Ok(None);
        };
        let (_, mut memo) = Postgres::memo_from_row(&row);
        let result: String = row.get(14);
        Postgres::complete(c, &mut memo)?;
        let corrupt = |e: serde_json::Error| ArchiveError::Corrupt(format!("{memo_id}: {e}"));
        memo.result = Some(match memo.source {
            Source::Audio => StoredResult::Audio(serde_json::from_str(&result).map_err(corrupt)?),
            Source::Text => StoredResult::Text(serde_json::from_str(&result).map_err(corrupt)?),
        });
        Ok(Some(memo))
    }

    fn list(&mut self, filter: &Filter, cursor: Option<&str>, limit: usize) -> Result<Page> {
        let (mut sql, mut args) = Postgres::conditions(filter);
        if let Some(c) = cursor {
            let seq: i64 = c.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                ArchiveError::Invalid(format!("the cursor {c:?} is not one this archive gave"))
            })?;
            args.push(Box::new(seq));
            sql.push_str(&format!(" AND m.seq < ${}", args.len()));
        }
        args.push(Box::new(limit as i64 + 1));
        let query = format!(
            "SELECT {COLUMNS} FROM memos m{sql} ORDER BY m.seq DESC LIMIT ${}",
            args.len()
        );
        let c = self.client()?;
        let rows = c.query(&query, &refs(&args))?;
        let more = rows.len() > limit;
        let mut items = Vec::new();
        let mut last = None;
        for row in rows.iter().take(limit) {
            let (seq, mut memo) = Postgres::memo_from_row(row);
            Postgres::complete(c, &mut memo)?;
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
        {
            let mut tx = self.client()?.transaction()?;
            // The memo's row is locked until the marks are in: a deletion on another replica
            // waits, and cannot leave marks without their memo.
            if tx
                .query_opt(
                    "SELECT 1 FROM memos WHERE memo_id = $1 FOR UPDATE",
                    &[&memo_id],
                )?
                .is_none()
            {
                return Ok(None);
            }
            let at = Utc::now().to_rfc3339();
            for m in marks {
                let has = tx
                    .query_opt(
                        "SELECT 1 FROM memo_tags WHERE memo_id = $1 AND kind = $2 AND tag = $3",
                        &[&memo_id, &m.kind.as_str(), &m.id],
                    )?
                    .is_some();
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
                    "INSERT INTO reviews (memo_id, kind, tag, verdict, reviewer, at) VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&memo_id, &m.kind.as_str(), &m.id, &m.verdict.as_str(), &reviewer, &at],
                )?;
            }
            tx.commit()?;
        }
        self.get(memo_id)
    }

    fn export(&mut self, filter: &Filter) -> Result<Vec<ExportLine>> {
        let filter = Filter {
            reviewed: Some(true),
            ..filter.clone()
        };
        let (sql, args) = Postgres::conditions(&filter);
        let query = format!("SELECT {COLUMNS} FROM memos m{sql} ORDER BY m.seq ASC");
        let c = self.client()?;
        let rows = c.query(&query, &refs(&args))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let (_, mut memo) = Postgres::memo_from_row(row);
            let ruled_out = Postgres::complete(c, &mut memo)?;
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
            .client()?
            .execute("DELETE FROM memos WHERE memo_id = $1", &[&memo_id])?
            > 0)
    }

    fn delete_customer(&mut self, customer_id: &str) -> Result<usize> {
        Ok(self
            .client()?
            .execute("DELETE FROM memos WHERE customer_id = $1", &[&customer_id])?
            as usize)
    }

    fn purge(&mut self, before: DateTime<Utc>) -> Result<usize> {
        Ok(self.client()?.execute(
            "DELETE FROM memos WHERE stored_ms < $1",
            &[&before.timestamp_millis()],
        )? as usize)
    }

    fn audio(&mut self, memo_id: &str) -> Result<Option<Audio>> {
        Ok(self
            .client()?
            .query_opt(
                "SELECT content_type, audio FROM memo_audio WHERE memo_id = $1",
                &[&memo_id],
            )?
            .map(|r| Audio {
                content_type: r.get(0),
                bytes: r.get::<_, Vec<u8>>(1).into(),
            }))
    }

    fn purge_audio(&mut self, before: DateTime<Utc>) -> Result<usize> {
        Ok(self.client()?.execute(
            "DELETE FROM memo_audio WHERE stored_ms < $1",
            &[&before.timestamp_millis()],
        )? as usize)
    }

    fn metric_counts(
        &mut self,
        _q: &super::metrics::MetricsQuery,
    ) -> Result<Vec<super::metrics::CountRow>> {
        Err(ArchiveError::Invalid(
            "the manager's numbers are not kept on PostgreSQL yet".into(),
        ))
    }

    fn metric_tags(
        &mut self,
        _q: &super::metrics::MetricsQuery,
        _kind: TagKind,
    ) -> Result<Vec<super::metrics::TagRow>> {
        Err(ArchiveError::Invalid(
            "the manager's numbers are not kept on PostgreSQL yet".into(),
        ))
    }

    fn open_urgent(
        &mut self,
        _q: &super::metrics::UrgentQuery,
    ) -> Result<Vec<super::metrics::UrgentCustomer>> {
        Err(ArchiveError::Invalid(
            "the manager's numbers are not kept on PostgreSQL yet".into(),
        ))
    }
}
