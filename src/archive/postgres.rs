//! The archive on a PostgreSQL server, for several replicas sharing one archive: the same
//! tables, columns and numbered migrations as [`super::sqlite`] (each step written for
//! PostgreSQL, with the same version number), applied at start-up under an advisory lock so
//! that replicas starting together migrate once. A lost connection is opened again on the next
//! request.

use ::postgres::types::ToSql;
use std::collections::HashMap;

use ::postgres::{Client, GenericClient, NoTls, Row};
use chrono::{DateTime, Utc};

use super::metrics::{self, CountRow, MetricsQuery, TagRow, UrgentCustomer, UrgentQuery};
use super::sqlite::{labels, need_list, recorded, NewGroup, Rollup, Tally};
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
    (
        3,
        "rollups for the manager's numbers",
        r#"
-- Memos per period (week, month), period start and (rep, team, domain); '' where a memo did not
-- say. Kept by store, delete and purge in their own transaction.
CREATE TABLE metric_memos (
    period       TEXT NOT NULL,
    bucket       TEXT NOT NULL,
    rep_id       TEXT NOT NULL,
    team         TEXT NOT NULL,
    domain       TEXT NOT NULL,
    memos        BIGINT NOT NULL,
    vague        BIGINT NOT NULL,
    with_need    BIGINT NOT NULL,
    actions      BIGINT NOT NULL,
    high_actions BIGINT NOT NULL,
    PRIMARY KEY (period, bucket, rep_id, team, domain)
);
-- Memos tagged with each need and action (kind), likewise.
CREATE TABLE metric_tags (
    period TEXT NOT NULL,
    kind   TEXT NOT NULL,
    bucket TEXT NOT NULL,
    rep_id TEXT NOT NULL,
    team   TEXT NOT NULL,
    domain TEXT NOT NULL,
    tag    TEXT NOT NULL,
    memos  BIGINT NOT NULL,
    PRIMARY KEY (period, kind, bucket, rep_id, team, domain, tag)
);
-- Each customer's latest memo (by recorded_at, then by storing order) and its needs
-- (' a b ': space-separated, spaces around). seq is the memo's: replicas storing for the same
-- customer at once compare it, so the row never goes back to an older memo.
CREATE TABLE customer_last (
    customer_id TEXT PRIMARY KEY,
    memo_id     TEXT NOT NULL,
    recorded_ms BIGINT NOT NULL,
    recorded_at TEXT NOT NULL,
    rep_id      TEXT,
    team        TEXT,
    domain      TEXT,
    needs       TEXT NOT NULL,
    seq         BIGINT NOT NULL
);
-- A memo's actions of the library's high tier when it was tagged.
ALTER TABLE memos ADD COLUMN high_actions INTEGER NOT NULL DEFAULT 0;
UPDATE memos SET high_actions = (
    SELECT COUNT(*) FROM json_array_elements(
        CASE WHEN json_typeof(memos.result::json -> 'actions') = 'array'
            THEN memos.result::json -> 'actions' ELSE '[]'::json END) AS a
    WHERE a ->> 'tier' = 'high');
CREATE INDEX customer_last_recorded ON customer_last (recorded_ms);
-- A tag filter of the list walks this index newest first instead of every memo.
ALTER TABLE memo_tags ADD COLUMN seq BIGINT;
UPDATE memo_tags t SET seq = m.seq FROM memos m WHERE m.memo_id = t.memo_id;
DROP INDEX memo_tags_tag;
CREATE INDEX memo_tags_seq ON memo_tags (kind, tag, seq);
CREATE INDEX memos_customer_recorded ON memos (customer_id, recorded_ms, seq);
-- The memos stored before this version. A period starts on the local date of recorded_at:
-- the Monday of its week, the first of its month.
CREATE TEMP TABLE rollup_source AS
    SELECT memo_id, COALESCE(rep_id, '') AS rep_id, COALESCE(team, '') AS team,
        COALESCE(domain, '') AS domain, vague::int AS vague, (need_count > 0)::int AS with_need,
        high_actions,
        (SELECT COUNT(*) FROM memo_tags t WHERE t.memo_id = memos.memo_id AND t.kind = 'action') AS actions,
        to_char(date_trunc('week', substr(recorded_at, 1, 10)::date), 'YYYY-MM-DD') AS week,
        to_char(date_trunc('month', substr(recorded_at, 1, 10)::date), 'YYYY-MM-DD') AS month
    FROM memos WHERE substr(recorded_at, 1, 10) ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$';
INSERT INTO metric_memos (period, bucket, rep_id, team, domain, memos, vague, with_need, actions, high_actions)
    SELECT 'week', week, rep_id, team, domain, COUNT(*), SUM(vague), SUM(with_need), SUM(actions), SUM(high_actions)
    FROM rollup_source GROUP BY week, rep_id, team, domain;
INSERT INTO metric_memos (period, bucket, rep_id, team, domain, memos, vague, with_need, actions, high_actions)
    SELECT 'month', month, rep_id, team, domain, COUNT(*), SUM(vague), SUM(with_need), SUM(actions), SUM(high_actions)
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
INSERT INTO customer_last (customer_id, memo_id, recorded_ms, recorded_at, rep_id, team, domain, needs, seq)
    SELECT customer_id, memo_id, recorded_ms, recorded_at, rep_id, team, domain,
        ' ' || COALESCE((SELECT string_agg(t.tag, ' ' ORDER BY t.pos) FROM memo_tags t
            WHERE t.memo_id = latest.memo_id AND t.kind = 'need'), '') || ' ', seq
    FROM (SELECT DISTINCT ON (customer_id) customer_id, memo_id, recorded_ms, recorded_at,
            rep_id, team, domain, seq
        FROM memos WHERE customer_id IS NOT NULL
        ORDER BY customer_id, recorded_ms DESC, seq DESC) AS latest;
"#,
    ),
    (
        4,
        "the text search index",
        r#"
-- Every character and adjacent pair of a text (archive::grams), indexed for each memo so that
-- `q` is looked up instead of read through every memo.
CREATE FUNCTION needtag_grams(t text) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
    SELECT COALESCE(array_agg(DISTINCT g), '{}')
    FROM (SELECT string_to_array(t, NULL) AS c) AS s,
        LATERAL (SELECT c[i] FROM generate_series(1, cardinality(c)) AS i
            UNION ALL
            SELECT c[i] || c[i + 1] FROM generate_series(1, cardinality(c) - 1) AS i) AS grams (g)
$fn$;
CREATE INDEX memos_text_grams ON memos USING gin (needtag_grams(text));
-- A time range alone is answered from the index (the page is chosen by seq).
CREATE INDEX memos_recorded_seq ON memos (recorded_ms, seq);
DROP INDEX memos_recorded;
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
        let mut client = connect(url).map_err(|e| open_err(e.to_string()))?;
        // Text search and the character counts of memos need the server to see characters.
        let encoding: String = client
            .query_one("SHOW server_encoding", &[])
            .map_err(|e| open_err(e.to_string()))?
            .get(0);
        if encoding != "UTF8" {
            return Err(open_err(format!(
                "the database's encoding is {encoding}; needtag needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')"
            )));
        }
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
        Ok(Postgres::complete_page(c, std::slice::from_mut(memo))?
            .pop()
            .unwrap_or_default())
    }

    /// Fill in the tags, reviews and labels of a page of memos in two queries (their tags,
    /// their reviews), not two per memo; each memo's ruled-out needs.
    fn complete_page(
        c: &mut impl GenericClient,
        memos: &mut [StoredMemo],
    ) -> Result<Vec<Vec<String>>> {
        let ids: Vec<&str> = memos.iter().map(|m| m.memo_id.as_str()).collect();
        let at: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let tags = c.query(
            "SELECT memo_id, kind, tag FROM memo_tags WHERE memo_id = ANY($1) ORDER BY memo_id, pos",
            &[&ids],
        )?;
        let reviews = c.query(
            "SELECT memo_id, kind, tag, verdict, reviewer, at FROM reviews WHERE memo_id = ANY($1) ORDER BY id",
            &[&ids],
        )?;
        let mut needs: Vec<Vec<String>> = vec![Vec::new(); memos.len()];
        let mut actions: Vec<Vec<String>> = vec![Vec::new(); memos.len()];
        let mut ruled_out: Vec<Vec<String>> = vec![Vec::new(); memos.len()];
        for row in &tags {
            let Some(&i) = at.get(row.get::<_, &str>(0)) else {
                continue;
            };
            match row.get::<_, &str>(1) {
                "need" => needs[i].push(row.get(2)),
                "action" => actions[i].push(row.get(2)),
                _ => ruled_out[i].push(row.get(2)),
            }
        }
        let mut marks: Vec<Vec<ReviewMark>> = vec![Vec::new(); memos.len()];
        for row in &reviews {
            let id: &str = row.get(0);
            let Some(&i) = at.get(id) else {
                continue;
            };
            marks[i].push(review_mark(id, row, 1)?);
        }
        drop(at);
        for (i, memo) in memos.iter_mut().enumerate() {
            memo.needs = std::mem::take(&mut needs[i]);
            memo.actions = std::mem::take(&mut actions[i]);
            memo.reviews = std::mem::take(&mut marks[i]);
            memo.reviewed = !memo.reviews.is_empty();
            if memo.reviewed {
                memo.labels = Some(labels(&memo.needs, &memo.actions, &memo.reviews));
            }
        }
        Ok(ruled_out)
    }

    /// The FROM and WHERE clauses, the column to order by and the parameters for `filter`.
    /// With `drive` and a need or action filter the memos are read through that tag's index of
    /// `(kind, tag, seq)` newest first, so a rare tag costs as little as a common one.
    fn conditions(filter: &Filter, drive: bool) -> (String, &'static str, Params) {
        let mut args: Params = Vec::new();
        let driving = match (&filter.need, &filter.action) {
            (Some(v), _) if drive => Some(("need", v)),
            (None, Some(v)) if drive => Some(("action", v)),
            _ => None,
        };
        let (mut sql, order) = match driving {
            Some((kind, v)) => {
                args.push(Box::new(v.clone()));
                (
                    format!(
                        " memo_tags d JOIN memos m ON m.seq = d.seq WHERE d.kind = '{kind}' AND d.tag = $1"
                    ),
                    "d.seq",
                )
            }
            None => (" memos m WHERE TRUE".to_string(), "m.seq"),
        };
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
            if driving.map(|d| d.0) == Some(kind) {
                continue;
            }
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
        if let Some(t) = filter.text.as_deref().filter(|t| !t.is_empty()) {
            // The memos holding every gram of the text (through its index), then those that
            // really contain it.
            args.push(Box::new(super::grams::query_grams(t)));
            sql.push_str(&format!(" AND needtag_grams(m.text) @> ${}", args.len()));
            args.push(Box::new(t.to_string()));
            sql.push_str(&format!(" AND strpos(m.text, ${}) > 0", args.len()));
        }
        if let Some(t) = filter.from {
            args.push(Box::new(t.timestamp_millis()));
            sql.push_str(&format!(" AND m.recorded_ms >= ${}", args.len()));
        }
        if let Some(t) = filter.to {
            args.push(Box::new(t.timestamp_millis()));
            sql.push_str(&format!(" AND m.recorded_ms < ${}", args.len()));
        }
        (sql, order, args)
    }
}

fn connect(url: &str) -> std::result::Result<Client, ::postgres::Error> {
    let mut config: ::postgres::Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    config.application_name("needtag").connect(NoTls)
}

/// A review mark from `row`'s columns kind, tag, verdict, reviewer, at (from column `first`).
fn review_mark(memo_id: &str, row: &Row, first: usize) -> Result<ReviewMark> {
    let (kind, verdict): (String, String) = (row.get(first), row.get(first + 2));
    let (Some(k), Some(v)) = (TagKind::parse(&kind), Verdict::parse(&verdict)) else {
        return Err(ArchiveError::Corrupt(format!(
            "review of {memo_id} has kind {kind:?}, verdict {verdict:?}"
        )));
    };
    Ok(ReviewMark {
        kind: k,
        id: row.get(first + 1),
        verdict: v,
        reviewer: row.get(first + 3),
        at: row.get(first + 4),
    })
}

/// Store `memos` (with their tags, audio, rollups and customers' latest memo) in `tx`, which
/// the caller commits: the archive's own writer, or a job's worker storing a job's memo with
/// its end and webhook event in one transaction (`jobs::postgres`).
pub(crate) fn store_in(tx: &mut ::postgres::Transaction<'_>, memos: &[NewMemo]) -> Result<()> {
    let memo = tx.prepare(
            "INSERT INTO memos (memo_id, source, rep_id, customer_id, team, domain, recorded_at,
                recorded_ms, stored_at, stored_ms, stored_by, text, library_version, need_count,
                vague, high_value, total_ms, result, high_actions)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
             RETURNING seq",
        )?;
    let tag = tx.prepare(
            "INSERT INTO memo_tags (memo_id, kind, tag, seq) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )?;
    let mut rollup = Rollup::default();
    // (customer, seq, memo, recorded_at, recorded_ms)
    let mut latest: Vec<(&str, i64, &NewMemo, String, i64)> = Vec::new();
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
        let seq: i64 = tx
            .query_one(
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
                    &(m.high_value_actions as i32),
                ],
            )?
            .get(0);
        for (kind, tags) in [
            ("need", &m.needs),
            ("action", &m.actions),
            ("ruled_out", &m.ruled_out),
        ] {
            for t in tags {
                tx.execute(&tag, &[&m.memo_id, &kind, t, &seq])?;
            }
        }
        if let Some(c) = &m.meta.customer_id {
            latest.push((c, seq, m, recorded_at, recorded_ms));
        }
        if let Some(a) = &m.audio {
            tx.execute(
                    "INSERT INTO memo_audio (memo_id, content_type, stored_ms, audio) VALUES ($1, $2, $3, $4)",
                    &[&m.memo_id, &a.content_type, &m.stored_at.timestamp_millis(), &&a.bytes[..]],
                )?;
        }
    }
    apply(tx, rollup)?;
    // Rows are taken in one order (rollups, then customers by id) by every writer, so two
    // replicas never wait on each other in a circle.
    latest.sort_by(|a, b| a.0.cmp(b.0));
    let upsert = tx.prepare(
            "INSERT INTO customer_last (customer_id, memo_id, recorded_ms, recorded_at, rep_id, team, domain, needs, seq)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (customer_id) DO UPDATE SET memo_id = EXCLUDED.memo_id,
                recorded_ms = EXCLUDED.recorded_ms, recorded_at = EXCLUDED.recorded_at,
                rep_id = EXCLUDED.rep_id, team = EXCLUDED.team, domain = EXCLUDED.domain,
                needs = EXCLUDED.needs, seq = EXCLUDED.seq
             WHERE (EXCLUDED.recorded_ms, EXCLUDED.seq) > (customer_last.recorded_ms, customer_last.seq)",
        )?;
    for (c, seq, m, recorded_at, recorded_ms) in &latest {
        tx.execute(
            &upsert,
            &[
                c,
                &m.memo_id,
                recorded_ms,
                recorded_at,
                &m.meta.rep_id,
                &m.meta.team,
                &m.meta.domain,
                &need_list(&m.needs),
                seq,
            ],
        )?;
    }
    Ok(())
}

impl Store for Postgres {
    fn store(&mut self, memos: &[NewMemo]) -> Result<()> {
        let mut tx = self.client()?.transaction()?;
        store_in(&mut tx, memos)?;
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
        let (mut sql, order, mut args) = Postgres::conditions(filter, true);
        if let Some(c) = cursor {
            let seq: i64 = c.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                ArchiveError::Invalid(format!("the cursor {c:?} is not one this archive gave"))
            })?;
            args.push(Box::new(seq));
            sql.push_str(&format!(" AND {order} < ${}", args.len()));
        }
        args.push(Box::new(limit as i64 + 1));
        // A time range that lies behind many newer memos is read from the (recorded_ms, seq)
        // index first and only then ordered (OFFSET 0 keeps the planner from walking every memo
        // newest first in the hope of meeting the range soon).
        let span = if filter.from.is_some() || filter.to.is_some() {
            let row = self.client()?.query_one(super::RECORDED_SPAN, &[])?;
            row.get::<_, Option<i64>>(0)
                .zip(row.get::<_, Option<i64>>(1))
        } else {
            None
        };
        let choose = if filter.range_first(span) {
            format!(
                "SELECT seq FROM (SELECT m.seq AS seq FROM{sql} OFFSET 0) AS r ORDER BY seq DESC LIMIT ${}",
                args.len()
            )
        } else {
            format!(
                "SELECT {order} FROM{sql} ORDER BY {order} DESC LIMIT ${}",
                args.len()
            )
        };
        // The page's memos are chosen by seq alone, then read.
        let query =
            format!("SELECT {COLUMNS} FROM memos WHERE seq IN ({choose}) ORDER BY seq DESC");
        let c = self.client()?;
        let rows = c.query(&query, &refs(&args))?;
        let more = rows.len() > limit;
        let mut items = Vec::new();
        let mut last = None;
        for row in rows.iter().take(limit) {
            let (seq, memo) = Postgres::memo_from_row(row);
            items.push(memo);
            last = Some(seq);
        }
        Postgres::complete_page(c, &mut items)?;
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
        let (sql, _, args) = Postgres::conditions(&filter, false);
        let query = format!("SELECT {COLUMNS} FROM{sql} ORDER BY m.seq ASC");
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
        Ok(self.remove("memo_id = $1", &memo_id)? > 0)
    }

    fn delete_customer(&mut self, customer_id: &str) -> Result<usize> {
        self.remove("customer_id = $1", &customer_id)
    }

    fn purge(&mut self, before: DateTime<Utc>) -> Result<usize> {
        self.remove("stored_ms < $1", &before.timestamp_millis())
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

    fn metric_counts(&mut self, q: &MetricsQuery) -> Result<Vec<CountRow>> {
        let col = q.group_by.column();
        let (cond, args) = rollup_conditions(q, None);
        let sql = format!(
            "SELECT bucket, {col}, SUM(memos)::BIGINT, SUM(vague)::BIGINT, SUM(with_need)::BIGINT,
                SUM(actions)::BIGINT, SUM(high_actions)::BIGINT
             FROM metric_memos WHERE {cond} GROUP BY bucket, {col}"
        );
        let rows = self.client()?.query(&sql, &refs(&args))?;
        Ok(rows
            .iter()
            .map(|r| CountRow {
                bucket: r.get(0),
                group: r.get(1),
                memos: r.get(2),
                vague: r.get(3),
                with_need: r.get(4),
                actions: r.get(5),
                high_value_actions: r.get(6),
            })
            .collect())
    }

    fn metric_tags(&mut self, q: &MetricsQuery, kind: TagKind) -> Result<Vec<TagRow>> {
        let col = q.group_by.column();
        let (cond, args) = rollup_conditions(q, Some(kind));
        let sql = format!(
            "SELECT bucket, {col}, tag, SUM(memos)::BIGINT FROM metric_tags
             WHERE {cond} GROUP BY bucket, {col}, tag"
        );
        let rows = self.client()?.query(&sql, &refs(&args))?;
        Ok(rows
            .iter()
            .map(|r| TagRow {
                bucket: r.get(0),
                group: r.get(1),
                tag: r.get(2),
                memos: r.get(3),
            })
            .collect())
    }

    fn open_urgent(&mut self, q: &UrgentQuery) -> Result<Vec<UrgentCustomer>> {
        if q.needs.is_empty() || q.limit == 0 {
            return Ok(Vec::new());
        }
        let mut args: Params = vec![Box::new(q.cutoff_ms())];
        let mut sql = String::from(
            "SELECT c.customer_id, c.memo_id, c.rep_id, c.team, c.domain, c.recorded_at, c.recorded_ms, c.needs
             FROM customer_last c WHERE c.recorded_ms <= $1",
        );
        let any: Vec<String> = q
            .needs
            .iter()
            .map(|n| {
                args.push(Box::new(format!(" {n} ")));
                format!("strpos(c.needs, ${}) > 0", args.len())
            })
            .collect();
        sql.push_str(&format!(" AND ({})", any.join(" OR ")));
        for (column, v) in q.filters() {
            args.push(Box::new(v.to_string()));
            sql.push_str(&format!(" AND c.{column} = ${}", args.len()));
        }
        args.push(Box::new(q.limit as i64));
        sql.push_str(&format!(
            " ORDER BY c.recorded_ms, c.customer_id LIMIT ${}",
            args.len()
        ));
        let rows = self.client()?.query(&sql, &refs(&args))?;
        Ok(rows
            .iter()
            .map(|r| {
                let needs: String = r.get(7);
                q.customer(
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                    &needs,
                )
            })
            .collect())
    }
}

/// The WHERE clause of a rollup read.
fn rollup_conditions(q: &MetricsQuery, kind: Option<TagKind>) -> (String, Params) {
    let mut args: Params = vec![
        Box::new(q.period.as_str().to_string()),
        Box::new(metrics::bucket(q.first)),
        Box::new(metrics::bucket(q.last)),
    ];
    let mut sql = String::from("period = $1 AND bucket >= $2 AND bucket <= $3");
    if let Some(k) = kind {
        args.push(Box::new(k.as_str().to_string()));
        sql.push_str(&format!(" AND kind = ${}", args.len()));
    }
    for (column, v) in q.filters() {
        args.push(Box::new(v.to_string()));
        sql.push_str(&format!(" AND {column} = ${}", args.len()));
    }
    (sql, args)
}

/// Write the changes summed in `rollup`: one upsert per row, in key order (so that replicas
/// writing the same rows at once take their locks in the same order), and rows counting no
/// memo any more deleted.
fn apply(tx: &mut ::postgres::Transaction<'_>, rollup: Rollup) -> Result<()> {
    let memos = tx.prepare(
        "INSERT INTO metric_memos (period, bucket, rep_id, team, domain, memos, vague, with_need, actions, high_actions)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (period, bucket, rep_id, team, domain) DO UPDATE SET
            memos = metric_memos.memos + EXCLUDED.memos,
            vague = metric_memos.vague + EXCLUDED.vague,
            with_need = metric_memos.with_need + EXCLUDED.with_need,
            actions = metric_memos.actions + EXCLUDED.actions,
            high_actions = metric_memos.high_actions + EXCLUDED.high_actions",
    )?;
    let empty_memos = tx.prepare(
        "DELETE FROM metric_memos WHERE period = $1 AND bucket = $2 AND rep_id = $3
            AND team = $4 AND domain = $5 AND memos <= 0",
    )?;
    let mut rows: Vec<_> = rollup
        .memos
        .into_iter()
        .filter(|(_, v)| v[0] != 0)
        .map(|((p, bucket, group), v)| ((p.as_str(), bucket, group), v))
        .collect();
    rows.sort();
    for ((period, bucket, [rep, team, domain]), [n, vague, with_need, actions, high]) in &rows {
        tx.execute(
            &memos,
            &[
                period, bucket, rep, team, domain, n, vague, with_need, actions, high,
            ],
        )?;
        if *n < 0 {
            tx.execute(&empty_memos, &[period, bucket, rep, team, domain])?;
        }
    }
    let tags = tx.prepare(
        "INSERT INTO metric_tags (period, kind, bucket, rep_id, team, domain, tag, memos)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (period, kind, bucket, rep_id, team, domain, tag) DO UPDATE SET
            memos = metric_tags.memos + EXCLUDED.memos",
    )?;
    let empty_tags = tx.prepare(
        "DELETE FROM metric_tags WHERE period = $1 AND kind = $2 AND bucket = $3
            AND rep_id = $4 AND team = $5 AND domain = $6 AND tag = $7 AND memos <= 0",
    )?;
    let mut rows: Vec<_> = rollup
        .tags
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .map(|(((p, bucket, [rep, team, domain]), kind, tag), n)| {
            ((p.as_str(), kind, bucket, rep, team, domain, tag), n)
        })
        .collect();
    rows.sort();
    for ((period, kind, bucket, rep, team, domain, tag), n) in &rows {
        tx.execute(&tags, &[period, kind, bucket, rep, team, domain, tag, n])?;
        if *n < 0 {
            tx.execute(&empty_tags, &[period, kind, bucket, rep, team, domain, tag])?;
        }
    }
    Ok(())
}

impl Postgres {
    /// Delete the memos matching `cond` (one parameter, `$1`) with their tags and reviews, take
    /// them out of the rollups and find their customers' latest memo again: one transaction.
    /// The memos are locked first, so a replica deleting the same memos at once waits and then
    /// finds them gone instead of counting them out twice.
    fn remove(&mut self, cond: &str, arg: &(dyn ToSql + Sync)) -> Result<usize> {
        let mut tx = self.client()?.transaction()?;
        let rows = tx.query(
            &format!(
                "SELECT memo_id, rep_id, team, domain, recorded_at, vague, customer_id, high_actions
                 FROM memos WHERE {cond} ORDER BY seq FOR UPDATE"
            ),
            &[arg],
        )?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut memos: Vec<(String, NewGroup, String, bool, i64)> = Vec::new();
        let mut customers = std::collections::BTreeSet::new();
        for r in &rows {
            memos.push((
                r.get(0),
                [r.get(1), r.get(2), r.get(3)],
                r.get(4),
                r.get(5),
                i64::from(r.get::<_, i32>(7)),
            ));
            if let Some(c) = r.get::<_, Option<String>>(6) {
                customers.insert(c);
            }
        }
        let ids: Vec<&str> = memos.iter().map(|m| m.0.as_str()).collect();
        let mut tags: std::collections::HashMap<String, (Vec<String>, Vec<String>)> =
            std::collections::HashMap::new();
        for r in tx.query(
            "SELECT memo_id, kind, tag FROM memo_tags
             WHERE kind IN ('need', 'action') AND memo_id = ANY($1)",
            &[&ids],
        )? {
            let e = tags.entry(r.get(0)).or_default();
            let kind: String = r.get(1);
            if kind == "need" {
                e.0.push(r.get(2));
            } else {
                e.1.push(r.get(2));
            }
        }
        let mut rollup = Rollup::default();
        let none = (Vec::new(), Vec::new());
        for (id, [rep, team, domain], recorded_at, vague, high) in &memos {
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
        apply(&mut tx, rollup)?;
        let deleted = tx.execute("DELETE FROM memos WHERE memo_id = ANY($1)", &[&ids])? as usize;
        // Forgetting the row first waits for a replica storing for the customer at this moment;
        // the next statement then sees its memo. One storing later still only moves the row to
        // a newer memo.
        let forget = tx.prepare("DELETE FROM customer_last WHERE customer_id = $1")?;
        let latest = tx.prepare(
            "INSERT INTO customer_last (customer_id, memo_id, recorded_ms, recorded_at, rep_id, team, domain, needs, seq)
             SELECT customer_id, memo_id, recorded_ms, recorded_at, rep_id, team, domain,
                ' ' || COALESCE((SELECT string_agg(t.tag, ' ' ORDER BY t.pos) FROM memo_tags t
                    WHERE t.memo_id = m.memo_id AND t.kind = 'need'), '') || ' ', seq
             FROM memos m WHERE customer_id = $1 ORDER BY recorded_ms DESC, seq DESC LIMIT 1
             ON CONFLICT (customer_id) DO UPDATE SET memo_id = EXCLUDED.memo_id,
                recorded_ms = EXCLUDED.recorded_ms, recorded_at = EXCLUDED.recorded_at,
                rep_id = EXCLUDED.rep_id, team = EXCLUDED.team, domain = EXCLUDED.domain,
                needs = EXCLUDED.needs, seq = EXCLUDED.seq
             WHERE (EXCLUDED.recorded_ms, EXCLUDED.seq) > (customer_last.recorded_ms, customer_last.seq)",
        )?;
        for c in &customers {
            tx.execute(&forget, &[c])?;
            tx.execute(&latest, &[c])?;
        }
        tx.commit()?;
        Ok(deleted)
    }
}
