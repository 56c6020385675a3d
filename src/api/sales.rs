//! `GET /v1/metrics/sales`: the manager's numbers per rep, team or domain and per week or month
//! (scope `review`), as JSON or one table as CSV.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::{ApiError, Code};
use super::AppState;
use crate::archive::metrics::{
    self, GroupBy, MetricsQuery, Period, SalesMetrics, Shape, Table, UrgentQuery,
};
use crate::config::Scope;

/// Periods in a report unless `from` says otherwise.
const DEFAULT_PERIODS: u32 = 12;
/// Most periods in one report: a year of weeks, two years of months.
const MAX_WEEKS: i64 = 53;
const MAX_MONTHS: i64 = 24;
/// Top needs per group and period unless `top` says otherwise, and the most it may say.
const DEFAULT_TOP: usize = 5;
const MAX_TOP: usize = 20;
/// Days without a visit after an urgent need unless `days` says otherwise, and the most.
const DEFAULT_DAYS: u32 = 7;
const MAX_DAYS: u32 = 365;
/// Customers with an open urgent need listed.
const URGENT_LIMIT: usize = 500;

/// The query of `GET /v1/metrics/sales`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SalesQuery {
    /// rep (default), team or domain.
    pub group_by: Option<String>,
    /// week (default; Monday to Sunday) or month.
    pub period: Option<String>,
    /// The first period is the one holding this date (RFC 3339 or a date); default: 12
    /// periods back from `to`.
    pub from: Option<String>,
    /// The last period is the one holding this date (default: today, +08:00); the urgent list
    /// is as of the end of this day.
    pub to: Option<String>,
    pub rep_id: Option<String>,
    pub team: Option<String>,
    pub domain: Option<String>,
    /// Days without a memo for a customer with an urgent need (default 7, 1–365).
    pub days: Option<u32>,
    /// Top needs per group and period (default 5, 1–20).
    pub top: Option<usize>,
    /// json (default) or csv (also chosen by `Accept: text/csv`).
    pub format: Option<String>,
    /// With csv: rows (default), needs or urgent.
    pub table: Option<String>,
}

fn invalid(message: String) -> ApiError {
    ApiError::new(Code::InvalidInput, message)
}

/// A date parameter: the local date of an RFC 3339 time, or a date.
fn date(field: &str, s: &str) -> Result<NaiveDate, ApiError> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.date_naive());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        invalid(format!(
            "{field} {} is neither an RFC 3339 time nor a date such as 2026-03-04",
            crate::error::excerpt(s)
        ))
    })
}

fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("+08:00 is a valid offset")
}

/// What a request asks for, checked.
struct Asked {
    query: MetricsQuery,
    days: u32,
    top: usize,
    now_ms: i64,
    csv: Option<Table>,
}

fn asked(q: SalesQuery, wants_csv: bool) -> Result<Asked, ApiError> {
    let group_by = match q.group_by.as_deref() {
        None => GroupBy::Rep,
        Some(s) => GroupBy::parse(s).ok_or_else(|| {
            invalid(format!(
                "group_by {} is not one of rep, team, domain",
                crate::error::excerpt(s)
            ))
        })?,
    };
    let period = match q.period.as_deref() {
        None => Period::Week,
        Some(s) => Period::parse(s).ok_or_else(|| {
            invalid(format!(
                "period {} is not one of week, month",
                crate::error::excerpt(s)
            ))
        })?,
    };
    let (to, now_ms) = match q.to.as_deref() {
        Some(s) => {
            let d = date("to", s)?;
            let end = d
                .succ_opt()
                .and_then(|n| n.and_hms_opt(0, 0, 0))
                .and_then(|t| t.and_local_timezone(china()).single())
                .ok_or_else(|| invalid("to is out of range".into()))?;
            (d, end.timestamp_millis())
        }
        None => {
            let now = Utc::now();
            (
                now.with_timezone(&china()).date_naive(),
                now.timestamp_millis(),
            )
        }
    };
    let last = period.start(to);
    let first = match q.from.as_deref() {
        Some(s) => period.start(date("from", s)?),
        None => (1..DEFAULT_PERIODS).fold(last, |d, _| period.previous(d)),
    };
    if first > last {
        return Err(invalid("from is after to".into()));
    }
    let periods = match period {
        Period::Week => (last - first).num_days() / 7 + 1,
        Period::Month => {
            use chrono::Datelike;
            i64::from(last.year() - first.year()) * 12 + i64::from(last.month())
                - i64::from(first.month())
                + 1
        }
    };
    let max = match period {
        Period::Week => MAX_WEEKS,
        Period::Month => MAX_MONTHS,
    };
    if periods > max {
        return Err(invalid(format!(
            "from..to spans {periods} {}s; at most {max} in one report",
            period.as_str()
        )));
    }
    let days = q.days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(invalid(format!("days must lie in 1..={MAX_DAYS}")));
    }
    let top = q.top.unwrap_or(DEFAULT_TOP);
    if !(1..=MAX_TOP).contains(&top) {
        return Err(invalid(format!("top must lie in 1..={MAX_TOP}")));
    }
    let csv = match q.format.as_deref() {
        None => wants_csv,
        Some("json") => false,
        Some("csv") => true,
        Some(s) => {
            return Err(invalid(format!(
                "format {} is not one of json, csv",
                crate::error::excerpt(s)
            )))
        }
    };
    let table = match q.table.as_deref() {
        None => Table::Rows,
        Some(s) => Table::parse(s).ok_or_else(|| {
            invalid(format!(
                "table {} is not one of rows, needs, urgent",
                crate::error::excerpt(s)
            ))
        })?,
    };
    if q.table.is_some() && !csv {
        return Err(ApiError::new(
            Code::InvalidRequest,
            "table chooses the CSV table: add format=csv",
        ));
    }
    Ok(Asked {
        query: MetricsQuery {
            group_by,
            period,
            first,
            last,
            rep_id: q.rep_id,
            team: q.team,
            domain: q.domain,
        },
        days,
        top,
        now_ms,
        csv: csv.then_some(table),
    })
}

/// The manager's numbers per group (rep, team or domain) and period (week or month): memos,
/// the share of high-value actions among all reported actions, the share of vague memos and of
/// memos with a need, the top needs with their trend against the period before, and the
/// customers whose latest memo states an urgent need and who had no memo since for `days`
/// days. `format=csv` (or `Accept: text/csv`) answers one table (`table`) as CSV.
#[utoipa::path(get, path = "/v1/metrics/sales", tag = "archive", params(
        ("group_by" = Option<String>, Query, description = "rep (default), team or domain"),
        ("period" = Option<String>, Query, description = "week (default) or month"),
        ("from" = Option<String>, Query, description = "RFC 3339 or a date: the first period holds it (default: 12 periods before to)"),
        ("to" = Option<String>, Query, description = "RFC 3339 or a date: the last period holds it (default: today)"),
        ("rep_id" = Option<String>, Query), ("team" = Option<String>, Query), ("domain" = Option<String>, Query),
        ("days" = Option<u32>, Query, description = "days without a visit after an urgent need (default 7)"),
        ("top" = Option<usize>, Query, description = "top needs per group and period (default 5)"),
        ("format" = Option<String>, Query, description = "json (default) or csv"),
        ("table" = Option<String>, Query, description = "with csv: rows (default), needs or urgent")),
    responses((status = 200, body = SalesMetrics, content_type = "application/json"),
        (status = 200, description = "one table as CSV (format=csv)", content_type = "text/csv"),
        (status = 400, body = super::error::ErrorBody), (status = 403, body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)),
    security(("api_key" = [])))]
pub async fn sales(State(state): State<Arc<AppState>>, req: Request) -> Result<Response, ApiError> {
    let (archive, _) = super::memos::archive(&state, req.headers(), Scope::Review)?;
    let q = Query::<SalesQuery>::try_from_uri(req.uri())
        .map_err(|e| ApiError::new(Code::InvalidRequest, e.body_text()))?
        .0;
    let wants_csv = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/csv"));
    let asked = asked(q, wants_csv)?;
    let lib = state.get()?.engine.library();
    let urgent_needs: Vec<String> = lib
        .needs
        .iter()
        .filter(|n| n.urgent)
        .map(|n| n.id.clone())
        .collect();
    let query = asked.query.clone();
    let urgent = UrgentQuery {
        needs: urgent_needs.clone(),
        now_ms: asked.now_ms,
        days: asked.days,
        rep_id: query.rep_id.clone(),
        team: query.team.clone(),
        domain: query.domain.clone(),
        limit: URGENT_LIMIT,
    };
    let counts = archive
        .call(move |s| metrics::read(s, &query, &urgent))
        .await?;
    let report = metrics::report(
        &Shape {
            query: &asked.query,
            urgent_needs,
            top: asked.top,
            days: asked.days,
        },
        counts,
    );
    Ok(match asked.csv {
        Some(table) => {
            let name = format!(
                "attachment; filename=\"sales-{}-{}-{}.csv\"",
                report.group_by.as_str(),
                report.period.as_str(),
                table.as_str()
            );
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (header::CONTENT_DISPOSITION, name),
                ],
                metrics::csv(&report, table),
            )
                .into_response()
        }
        None => Json::<SalesMetrics>(report).into_response(),
    })
}
