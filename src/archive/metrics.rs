//! The sales manager's numbers, per rep, team or domain and per week or month: memos, the
//! share of high-value actions among all reported actions, the share of vague memos, the share
//! of memos that capture a need, the top needs and their trend, and the customers with an open
//! urgent need and no visit since.
//!
//! A store keeps the counts in rollups updated in the same transaction as every store, delete
//! and purge ([`Store::metric_counts`](super::Store::metric_counts) and friends read them); this
//! module turns them into the report with the library's view of which actions are high-value
//! and which needs are urgent, so every store gives the same report from the same counts.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, Duration, NaiveDate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The length of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// Monday to Sunday.
    Week,
    /// A calendar month.
    Month,
}

impl Period {
    pub const ALL: [Period; 2] = [Period::Week, Period::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    pub fn parse(s: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// The first day of the period holding `d`.
    pub fn start(self, d: NaiveDate) -> NaiveDate {
        match self {
            Period::Week => d - Duration::days(i64::from(d.weekday().num_days_from_monday())),
            Period::Month => d.with_day(1).unwrap_or(d),
        }
    }

    /// The first day of the period after the one starting at `start`.
    pub fn next(self, start: NaiveDate) -> NaiveDate {
        match self {
            Period::Week => start + Duration::days(7),
            Period::Month => start
                .checked_add_months(chrono::Months::new(1))
                .unwrap_or(start),
        }
    }

    /// The first day of the period before the one starting at `start`.
    pub fn previous(self, start: NaiveDate) -> NaiveDate {
        match self {
            Period::Week => start - Duration::days(7),
            Period::Month => start
                .checked_sub_months(chrono::Months::new(1))
                .unwrap_or(start),
        }
    }
}

/// What the rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Rep,
    Team,
    Domain,
}

impl GroupBy {
    pub const ALL: [GroupBy; 3] = [GroupBy::Rep, GroupBy::Team, GroupBy::Domain];

    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::Rep => "rep",
            GroupBy::Team => "team",
            GroupBy::Domain => "domain",
        }
    }

    pub fn parse(s: &str) -> Option<GroupBy> {
        GroupBy::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// The column of the memo (and of the rollups) it groups by.
    pub fn column(self) -> &'static str {
        match self {
            GroupBy::Rep => "rep_id",
            GroupBy::Team => "team",
            GroupBy::Domain => "domain",
        }
    }
}

/// The local date a memo was recorded on: the date its `recorded_at` (RFC 3339) states, in the
/// memo's own offset, so a memo spoken on Monday morning in Shanghai counts for that Monday.
pub fn local_date(recorded_at: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(recorded_at.get(..10)?, "%Y-%m-%d").ok()
}

/// A period start as the rollups store it.
pub fn bucket(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Which rollups a store reads: one period length, its starts from `first` through `last`
/// (inclusive, both period starts), grouped by one field, optionally narrowed to one rep, team
/// or domain.
#[derive(Debug, Clone)]
pub struct MetricsQuery {
    pub group_by: GroupBy,
    pub period: Period,
    pub first: NaiveDate,
    pub last: NaiveDate,
    pub rep_id: Option<String>,
    pub team: Option<String>,
    pub domain: Option<String>,
}

impl MetricsQuery {
    /// The rep, team and domain it narrows by, as (column, value).
    pub fn filters(&self) -> impl Iterator<Item = (&'static str, &str)> {
        filters(&self.rep_id, &self.team, &self.domain)
    }
}

/// The given ones of rep, team and domain, as (column, value), in that order.
fn filters<'a>(
    rep_id: &'a Option<String>,
    team: &'a Option<String>,
    domain: &'a Option<String>,
) -> impl Iterator<Item = (&'static str, &'a str)> {
    [("rep_id", rep_id), ("team", team), ("domain", domain)]
        .into_iter()
        .filter_map(|(column, v)| Some((column, v.as_deref()?)))
}

const DAY_MS: i64 = 86_400_000;

/// Memos of one group in one period (from [`Store::metric_counts`](super::Store::metric_counts)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountRow {
    /// The period's first day, `YYYY-MM-DD`.
    pub bucket: String,
    /// The rep, team or domain; empty for memos that did not say.
    pub group: String,
    pub memos: i64,
    pub vague: i64,
    /// Memos with at least one need.
    pub with_need: i64,
    /// Actions reported (each action of each memo once).
    pub actions: i64,
    /// Of those, actions of the library's high tier when the memo was tagged.
    pub high_value_actions: i64,
}

/// Memos of one group in one period tagged with one need or action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    pub bucket: String,
    pub group: String,
    pub tag: String,
    pub memos: i64,
}

/// Which customers [`Store::open_urgent`](super::Store::open_urgent) lists.
#[derive(Debug, Clone)]
pub struct UrgentQuery {
    /// The needs that count as urgent (the library's `urgent = true`).
    pub needs: Vec<String>,
    /// The report's reference time (ms since the epoch).
    pub now_ms: i64,
    /// Listed when the customer's latest memo is at least this many days before `now_ms`.
    pub days: u32,
    pub rep_id: Option<String>,
    pub team: Option<String>,
    pub domain: Option<String>,
    /// Most customers listed.
    pub limit: usize,
}

impl UrgentQuery {
    /// The rep, team and domain it narrows by, as (column, value).
    pub fn filters(&self) -> impl Iterator<Item = (&'static str, &str)> {
        filters(&self.rep_id, &self.team, &self.domain)
    }

    /// The latest `recorded_ms` a customer's last memo may have to be listed.
    pub fn cutoff_ms(&self) -> i64 {
        self.now_ms - i64::from(self.days) * DAY_MS
    }

    /// A listed customer from its `customer_last` row; `needs` is that row's ' a b ' list.
    #[allow(clippy::too_many_arguments)]
    pub fn customer(
        &self,
        customer_id: String,
        memo_id: String,
        rep_id: Option<String>,
        team: Option<String>,
        domain: Option<String>,
        recorded_at: String,
        recorded_ms: i64,
        needs: &str,
    ) -> UrgentCustomer {
        UrgentCustomer {
            customer_id,
            memo_id,
            rep_id,
            team,
            domain,
            recorded_at,
            needs: needs
                .split_whitespace()
                .filter(|n| self.needs.iter().any(|u| u == n))
                .map(str::to_string)
                .collect(),
            days_since: (self.now_ms - recorded_ms).div_euclid(DAY_MS),
        }
    }
}

/// A customer whose latest memo states an urgent need.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UrgentCustomer {
    pub customer_id: String,
    /// The latest memo: the one with the urgent need.
    pub memo_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rep_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// RFC 3339, as sent with the memo.
    pub recorded_at: String,
    /// The urgent needs it states.
    pub needs: Vec<String>,
    /// Whole days from that memo to the report's reference time.
    pub days_since: i64,
}

/// One group in one period.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SalesRow {
    /// The rep, team or domain; null for memos that did not say.
    pub group: Option<String>,
    /// The period's first day.
    pub period: String,
    pub memos: i64,
    /// Actions reported (each action of each memo once).
    pub actions: i64,
    /// Of those, actions of the library's `tier = "high"` (as tagged).
    pub high_value_actions: i64,
    /// high_value_actions / actions; null without actions.
    pub high_value_share: Option<f64>,
    pub vague: i64,
    /// vague / memos.
    pub vague_share: Option<f64>,
    /// Memos with at least one need.
    pub with_need: i64,
    /// with_need / memos.
    pub need_capture_share: Option<f64>,
}

/// Whether a need was said more or less often than in the period before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    /// Not said in the period before.
    New,
    Rising,
    Steady,
    Falling,
}

impl Trend {
    pub fn as_str(self) -> &'static str {
        match self {
            Trend::New => "new",
            Trend::Rising => "rising",
            Trend::Steady => "steady",
            Trend::Falling => "falling",
        }
    }
}

/// One of the most frequent needs of a group in a period.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TopNeed {
    pub group: Option<String>,
    pub period: String,
    pub need: String,
    /// Memos stating it in the period.
    pub memos: i64,
    /// Memos stating it in the period before.
    pub previous: i64,
    pub trend: Trend,
}

/// `GET /v1/metrics/sales`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SalesMetrics {
    pub group_by: GroupBy,
    pub period: Period,
    /// The first period's first day.
    pub from: String,
    /// The last period's first day.
    pub to: String,
    /// Per group and period, oldest period first, then by group.
    pub rows: Vec<SalesRow>,
    /// The top needs of each group in the last period, most memos first, with their count in
    /// the period before.
    pub needs: Vec<TopNeed>,
    /// Customers with an open urgent need and no memo since for at least `days` days, the
    /// longest waiting first.
    pub urgent: Vec<UrgentCustomer>,
    /// The needs counted as urgent.
    pub urgent_needs: Vec<String>,
    pub days: u32,
}

fn share(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn group(g: &str) -> Option<String> {
    (!g.is_empty()).then(|| g.to_string())
}

/// The inputs of a report, read from a store.
pub struct Counts {
    pub memos: Vec<CountRow>,
    /// Need rows of `needs_period` and the one before (for the trend).
    pub needs: Vec<TagRow>,
    /// The period the top needs are of: the last one of the range that holds memos (the
    /// range's last period when none does), so a range reaching past today still shows them.
    pub needs_period: NaiveDate,
    pub urgent: Vec<UrgentCustomer>,
}

/// Read what a report needs from `store`: the counts of `q`, the needs of its last period and
/// the one before (for the trend), and the urgent list.
pub fn read(
    store: &mut dyn super::Store,
    q: &MetricsQuery,
    urgent: &UrgentQuery,
) -> super::Result<Counts> {
    let memos = store.metric_counts(q)?;
    let needs_period = memos
        .iter()
        .filter_map(|c| local_date(&c.bucket))
        .max()
        .unwrap_or(q.last);
    let needs = store.metric_tags(
        &MetricsQuery {
            first: q.period.previous(needs_period),
            last: needs_period,
            ..q.clone()
        },
        super::TagKind::Need,
    )?;
    let urgent = store.open_urgent(urgent)?;
    Ok(Counts {
        memos,
        needs,
        needs_period,
        urgent,
    })
}

/// How the report reads its counts.
pub struct Shape<'a> {
    pub query: &'a MetricsQuery,
    pub urgent_needs: Vec<String>,
    pub top: usize,
    pub days: u32,
}

/// The report from the counts.
pub fn report(shape: &Shape<'_>, counts: Counts) -> SalesMetrics {
    let q = shape.query;
    let mut memo_rows = counts.memos;
    memo_rows.sort_by(|a, b| (&a.bucket, &a.group).cmp(&(&b.bucket, &b.group)));
    let rows = memo_rows
        .iter()
        .map(|c| {
            let (n, hv) = (c.actions, c.high_value_actions);
            SalesRow {
                group: group(&c.group),
                period: c.bucket.clone(),
                memos: c.memos,
                actions: n,
                high_value_actions: hv,
                high_value_share: share(hv, n),
                vague: c.vague,
                vague_share: share(c.vague, c.memos),
                with_need: c.with_need,
                need_capture_share: share(c.with_need, c.memos),
            }
        })
        .collect();

    let first = bucket(q.first);
    let last = bucket(q.last);
    let needs_last = bucket(counts.needs_period);
    let mut per: BTreeMap<(&str, &str), Vec<(&str, i64)>> = BTreeMap::new();
    let mut count: HashMap<(&str, &str, &str), i64> = HashMap::new();
    for n in &counts.needs {
        count.insert(
            (n.bucket.as_str(), n.group.as_str(), n.tag.as_str()),
            n.memos,
        );
        if n.bucket == needs_last {
            per.entry((n.bucket.as_str(), n.group.as_str()))
                .or_default()
                .push((n.tag.as_str(), n.memos));
        }
    }
    let mut needs = Vec::new();
    for ((b, g), mut tags) in per {
        tags.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let prev = local_date(b)
            .map(|d| bucket(q.period.previous(d)))
            .unwrap_or_default();
        for (tag, memos) in tags.into_iter().take(shape.top) {
            let previous = count.get(&(prev.as_str(), g, tag)).copied().unwrap_or(0);
            let trend = if previous == 0 {
                Trend::New
            } else if memos > previous {
                Trend::Rising
            } else if memos < previous {
                Trend::Falling
            } else {
                Trend::Steady
            };
            needs.push(TopNeed {
                group: group(g),
                period: b.to_string(),
                need: tag.to_string(),
                memos,
                previous,
                trend,
            });
        }
    }
    SalesMetrics {
        group_by: q.group_by,
        period: q.period,
        from: first,
        to: last,
        rows,
        needs,
        urgent: counts.urgent,
        urgent_needs: shape.urgent_needs.clone(),
        days: shape.days,
    }
}

/// The tables of a report, each downloadable as CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Rows,
    Needs,
    Urgent,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Rows, Table::Needs, Table::Urgent];

    pub fn as_str(self) -> &'static str {
        match self {
            Table::Rows => "rows",
            Table::Needs => "needs",
            Table::Urgent => "urgent",
        }
    }

    pub fn parse(s: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A CSV field (RFC 4180): quoted when it holds a comma, quote or line break. A field that a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) gets a leading apostrophe.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) && s.parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn ratio(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_default()
}

/// One table of `m` as CSV, with a header line.
pub fn csv(m: &SalesMetrics, table: Table) -> String {
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let cells: Vec<String> = cells.iter().map(|c| field(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    };
    let g = |v: &Option<String>| v.clone().unwrap_or_default();
    match table {
        Table::Rows => {
            line(
                [
                    m.group_by.as_str(),
                    m.period.as_str(),
                    "memos",
                    "actions",
                    "high_value_actions",
                    "high_value_share",
                    "vague",
                    "vague_share",
                    "with_need",
                    "need_capture_share",
                ]
                .map(String::from)
                .to_vec(),
            );
            for r in &m.rows {
                line(vec![
                    g(&r.group),
                    r.period.clone(),
                    r.memos.to_string(),
                    r.actions.to_string(),
                    r.high_value_actions.to_string(),
                    ratio(r.high_value_share),
                    r.vague.to_string(),
                    ratio(r.vague_share),
                    r.with_need.to_string(),
                    ratio(r.need_capture_share),
                ]);
            }
        }
        Table::Needs => {
            line(
                [
                    m.group_by.as_str(),
                    m.period.as_str(),
                    "need",
                    "memos",
                    "previous",
                    "trend",
                ]
                .map(String::from)
                .to_vec(),
            );
            for n in &m.needs {
                line(vec![
                    g(&n.group),
                    n.period.clone(),
                    n.need.clone(),
                    n.memos.to_string(),
                    n.previous.to_string(),
                    n.trend.as_str().to_string(),
                ]);
            }
        }
        Table::Urgent => {
            line(
                [
                    "customer_id",
                    "memo_id",
                    "rep_id",
                    "team",
                    "domain",
                    "recorded_at",
                    "needs",
                    "days_since",
                ]
                .map(String::from)
                .to_vec(),
            );
            for u in &m.urgent {
                line(vec![
                    u.customer_id.clone(),
                    u.memo_id.clone(),
                    g(&u.rep_id),
                    g(&u.team),
                    g(&u.domain),
                    u.recorded_at.clone(),
                    u.needs.join(" "),
                    u.days_since.to_string(),
                ]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn periods_start_on_monday_and_the_first_of_the_month() {
        assert_eq!(Period::Week.start(d("2026-03-04")), d("2026-03-02"));
        assert_eq!(Period::Week.start(d("2026-03-02")), d("2026-03-02"));
        assert_eq!(Period::Week.start(d("2026-03-08")), d("2026-03-02"));
        assert_eq!(Period::Month.start(d("2026-03-31")), d("2026-03-01"));
        assert_eq!(Period::Month.previous(d("2026-01-01")), d("2025-12-01"));
        assert_eq!(Period::Week.next(d("2026-12-28")), d("2027-01-04"));
        assert_eq!(
            local_date("2026-03-02T07:00:00+08:00"),
            Some(d("2026-03-02"))
        );
        assert_eq!(local_date("garbage"), None);
    }

    fn row(b: &str, g: &str, tag: &str, memos: i64) -> TagRow {
        TagRow {
            bucket: b.into(),
            group: g.into(),
            tag: tag.into(),
            memos,
        }
    }

    #[test]
    fn shares_top_needs_and_trends() {
        let q = MetricsQuery {
            group_by: GroupBy::Rep,
            period: Period::Week,
            first: d("2026-03-09"),
            last: d("2026-03-09"),
            rep_id: None,
            team: None,
            domain: None,
        };
        let m = report(
            &Shape {
                query: &q,
                urgent_needs: vec!["stock".into()],
                top: 2,
                days: 7,
            },
            Counts {
                needs_period: d("2026-03-09"),
                memos: vec![
                    CountRow {
                        bucket: "2026-03-09".into(),
                        group: "r1".into(),
                        memos: 4,
                        vague: 1,
                        with_need: 3,
                        actions: 4,
                        high_value_actions: 1,
                    },
                    CountRow {
                        bucket: "2026-03-09".into(),
                        group: String::new(),
                        memos: 1,
                        vague: 1,
                        with_need: 0,
                        actions: 0,
                        high_value_actions: 0,
                    },
                ],
                needs: vec![
                    row("2026-03-02", "r1", "price", 3),
                    row("2026-03-02", "r1", "stock", 1),
                    row("2026-03-09", "r1", "price", 1),
                    row("2026-03-09", "r1", "stock", 2),
                    row("2026-03-09", "r1", "promo", 2),
                    row("2026-03-09", "r1", "rare", 1),
                ],
                urgent: vec![],
            },
        );
        assert_eq!(m.rows.len(), 2);
        let r1 = m
            .rows
            .iter()
            .find(|r| r.group.as_deref() == Some("r1"))
            .unwrap();
        assert_eq!((r1.actions, r1.high_value_actions), (4, 1));
        assert_eq!(r1.high_value_share, Some(0.25));
        assert_eq!(r1.vague_share, Some(0.25));
        assert_eq!(r1.need_capture_share, Some(0.75));
        let none = m.rows.iter().find(|r| r.group.is_none()).unwrap();
        assert_eq!(none.high_value_share, None, "no actions: no share");
        // Top 2 of the week: promo and stock (2 each; ties by id), none from the week before.
        let top: Vec<(&str, i64, Trend)> = m
            .needs
            .iter()
            .map(|n| (n.need.as_str(), n.previous, n.trend))
            .collect();
        assert_eq!(top, [("promo", 0, Trend::New), ("stock", 1, Trend::Rising)]);
        let csv = csv(&m, Table::Rows);
        assert!(csv.starts_with("rep,week,memos,"), "{csv}");
        assert!(
            csv.contains("r1,2026-03-09,4,4,1,0.2500,1,0.2500,3,0.7500\r\n"),
            "{csv}"
        );
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=cmd()"), "'=cmd()");
        assert_eq!(field("-3"), "-3");
        assert_eq!(field("张三"), "张三");
    }
}
