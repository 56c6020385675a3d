//! Synthetic archives for the archive benchmark (`benches/archive.rs`) and its smoke test: many
//! memos from a few real tagged texts, spread over reps, teams, domains, customers and two
//! years, written through [`Store::store`] like the service writes them (so the rollups are
//! kept the same way), with a few reviewed.
//!
//! Deterministic: the same size gives the same archive.

use chrono::{DateTime, Duration, FixedOffset, Utc};

use super::{Mark, Meta, NewMemo, Result, Source, Store, TagKind, Verdict};
use crate::result::TextResult;

/// Reps per memo: a rep speaks about 2 500 memos in two years (5 a working day).
const MEMOS_PER_REP: usize = 2_500;
const REPS_PER_TEAM: usize = 10;
const CUSTOMERS_PER_REP: usize = 50;
/// One memo in this many is reviewed.
const REVIEW_EVERY: usize = 200;
/// Memos written per transaction.
const BATCH: usize = 1_000;

/// A small, fast, seeded generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The shape of a synthetic archive.
#[derive(Debug, Clone)]
pub struct Plan {
    pub memos: usize,
    /// The newest memo is recorded at this time; the oldest two years before.
    pub end: DateTime<Utc>,
}

impl Plan {
    pub fn reps(&self) -> usize {
        (self.memos / MEMOS_PER_REP).max(4)
    }

    pub fn rep(&self, i: usize) -> String {
        format!("rep-{i:04}")
    }

    pub fn team(&self, rep: usize) -> String {
        format!("team-{:03}", rep / REPS_PER_TEAM)
    }

    pub fn domain(&self, rep: usize) -> &'static str {
        crate::library::DOMAINS[rep % crate::library::DOMAINS.len()]
    }

    pub fn customer(&self, rep: usize, i: usize) -> String {
        format!("cust-{rep:04}-{i:02}")
    }
}

/// Write `plan.memos` memos made from `templates` (real results of real texts) into `store`;
/// `progress` is called with the number written after each transaction.
pub fn fill(
    store: &mut dyn Store,
    plan: &Plan,
    templates: &[TextResult],
    progress: &mut dyn FnMut(usize),
) -> Result<()> {
    assert!(!templates.is_empty(), "synthetic memos need templates");
    let mut rng = Rng(0x005E_ED0F_A2C4_1BE5);
    let china = FixedOffset::east_opt(8 * 3600).expect("+08:00");
    let span_ms = Duration::days(730).num_milliseconds();
    let start = plan.end - Duration::days(730);
    let templates: Vec<(String, &TextResult)> = templates
        .iter()
        .map(|t| (serde_json::to_string(t).unwrap_or_default(), t))
        .collect();
    let mut written = 0;
    while written < plan.memos {
        let n = BATCH.min(plan.memos - written);
        let mut batch = Vec::with_capacity(n);
        let mut reviews = Vec::new();
        for i in written..written + n {
            // Memos are stored in the order they were recorded, a few minutes after.
            let at = start
                + Duration::milliseconds(span_ms * i as i64 / plan.memos as i64)
                + Duration::seconds(rng.below(600) as i64);
            let rep = rng.below(plan.reps());
            let (json, t) = &templates[rng.below(templates.len())];
            let id = format!("syn-{i:08}-{:016x}", rng.next());
            let tags = &t.tags;
            batch.push(NewMemo {
                memo_id: id.clone(),
                source: Source::Text,
                meta: Meta {
                    rep_id: Some(plan.rep(rep)),
                    customer_id: Some(plan.customer(rep, rng.below(CUSTOMERS_PER_REP))),
                    team: Some(plan.team(rep)),
                    domain: Some(plan.domain(rep).to_string()),
                    recorded_at: Some(at.with_timezone(&china)),
                },
                stored_by: "synthetic".into(),
                stored_at: at + Duration::minutes(3),
                text: t.text.clone(),
                library_version: tags.library_version.clone(),
                needs: tags.needs.iter().map(|x| x.id.clone()).collect(),
                actions: tags.actions.iter().map(|x| x.id.clone()).collect(),
                ruled_out: tags.ruled_out.iter().map(|x| x.id.clone()).collect(),
                vague: tags.vague.flag,
                high_value: tags.high_value,
                high_value_actions: tags
                    .actions
                    .iter()
                    .filter(|a| a.tier == crate::library::Tier::High)
                    .count(),
                total_ms: 12.0,
                result: json.clone(),
                audio: None,
            });
            if i % REVIEW_EVERY == 7 {
                let marks: Vec<Mark> = match tags.needs.first() {
                    Some(n) => vec![Mark {
                        kind: TagKind::Need,
                        id: n.id.clone(),
                        verdict: Verdict::Confirm,
                    }],
                    None => vec![Mark {
                        kind: TagKind::Need,
                        id: "price_concern".into(),
                        verdict: Verdict::Add,
                    }],
                };
                reviews.push((id, marks));
            }
        }
        store.store(&batch)?;
        for (id, marks) in reviews {
            store.review(&id, &marks, "synthetic-reviewer")?;
        }
        written += n;
        progress(written);
    }
    Ok(())
}

/// Real results to copy: the development set's texts tagged by the embedded library with
/// keywords only (no model files needed).
pub fn templates() -> crate::Result<Vec<TextResult>> {
    let lib = std::sync::Arc::new(crate::library::Library::embedded()?);
    let matcher = crate::matcher::Matcher::build(lib, None)?;
    let how = crate::pipeline::TagOptions::new(false, true);
    let mut out = Vec::new();
    for m in crate::eval::parse_jsonl(crate::eval::BUNDLED_DEV_SET, "dev")? {
        let at = m
            .recorded_at
            .as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
        let tags = crate::pipeline::tag(&matcher, &m.text, at, how)?;
        out.push(TextResult {
            text: m.text,
            tags,
            mode: crate::result::TagMode::Keyword,
            timings: crate::result::Timings::default(),
            memo_id: None,
        });
    }
    Ok(out)
}

/// One request the benchmark times.
#[derive(Debug, Clone)]
pub enum Probe {
    /// The first page (50 memos) of a list, or the page after `cursor`.
    List(super::Filter, Option<String>),
    /// One memo with its result.
    Get(String),
    /// Everything `GET /v1/metrics/sales` reads.
    Metrics(super::metrics::MetricsQuery, super::metrics::UrgentQuery),
}

/// The requests to time on an archive filled by [`fill`] with `plan`: each filter of
/// `GET /v1/memos`, a deep page, a fetch by id, and the manager's numbers per rep, team and
/// domain, per week and month, over the default 12 periods and the longest range allowed.
pub fn probes(plan: &Plan) -> Vec<(String, Probe)> {
    use super::metrics::{GroupBy, MetricsQuery, Period, UrgentQuery};
    use super::Filter;
    let china = FixedOffset::east_opt(8 * 3600).expect("+08:00");
    let end = plan.end.with_timezone(&china);
    let at = |days: i64| Some(end - Duration::days(days));
    let s = |v: &str| Some(v.to_string());
    let f = Filter::default;
    let mut out: Vec<(String, Probe)> = vec![
        ("list: no filter".into(), Probe::List(f(), None)),
        (
            "list: rep_id".into(),
            Probe::List(
                Filter {
                    rep_id: Some(plan.rep(1)),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: customer_id".into(),
            Probe::List(
                Filter {
                    customer_id: Some(plan.customer(1, 3)),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: team".into(),
            Probe::List(
                Filter {
                    team: Some(plan.team(0)),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: domain".into(),
            Probe::List(
                Filter {
                    domain: s("pharmacy"),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: need (price_concern)".into(),
            Probe::List(
                Filter {
                    need: s("price_concern"),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: need (equipment_maintenance)".into(),
            Probe::List(
                Filter {
                    need: s("equipment_maintenance"),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: need nobody has".into(),
            Probe::List(
                Filter {
                    need: s("no_such_need"),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: action (decision_maker_meeting)".into(),
            Probe::List(
                Filter {
                    action: s("decision_maker_meeting"),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: vague=true".into(),
            Probe::List(
                Filter {
                    vague: Some(true),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: vague=false".into(),
            Probe::List(
                Filter {
                    vague: Some(false),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: high_value=true".into(),
            Probe::List(
                Filter {
                    high_value: Some(true),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: high_value=false".into(),
            Probe::List(
                Filter {
                    high_value: Some(false),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: no_need=true".into(),
            Probe::List(
                Filter {
                    no_need: Some(true),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: no_need=false".into(),
            Probe::List(
                Filter {
                    no_need: Some(false),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: reviewed=true".into(),
            Probe::List(
                Filter {
                    reviewed: Some(true),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: reviewed=false".into(),
            Probe::List(
                Filter {
                    reviewed: Some(false),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: from..to (last month)".into(),
            Probe::List(
                Filter {
                    from: at(30),
                    to: at(0),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: from..to (a month a year ago)".into(),
            Probe::List(
                Filter {
                    from: at(395),
                    to: at(365),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: from..to (before last month: 23 of the 24 months)".into(),
            Probe::List(
                Filter {
                    from: at(800),
                    to: at(30),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: vague=false, no_need=true (blind spots)".into(),
            Probe::List(
                Filter {
                    vague: Some(false),
                    no_need: Some(true),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: rep_id + need".into(),
            Probe::List(
                Filter {
                    rep_id: Some(plan.rep(2)),
                    need: s("price_concern"),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: page in the middle (cursor)".into(),
            Probe::List(f(), Some((plan.memos / 2).max(1).to_string())),
        ),
        (
            "list: q (text contains 价格)".into(),
            Probe::List(
                Filter {
                    text: s("价格"),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: q (one character, 疼)".into(),
            Probe::List(
                Filter {
                    text: s("疼"),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: q + from..to (价格, a month a year ago)".into(),
            Probe::List(
                Filter {
                    text: s("价格"),
                    from: at(395),
                    to: at(365),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: q (text contains a word no memo has)".into(),
            Probe::List(
                Filter {
                    text: s("量子纠缠"),
                    ..f()
                },
                None,
            ),
        ),
        (
            "list: rep_id + q (text nobody wrote)".into(),
            Probe::List(
                Filter {
                    rep_id: Some(plan.rep(3)),
                    text: s("量子纠缠"),
                    ..f()
                },
                None,
            ),
        ),
        ("get one memo".into(), Probe::Get(String::new())),
    ];
    let to = end.date_naive();
    let urgent = |q: &MetricsQuery| UrgentQuery {
        needs: vec![
            "stock_shortage".into(),
            "equipment_maintenance".into(),
            "clinical_usage_issue".into(),
            "quality_complaint".into(),
        ],
        now_ms: plan.end.timestamp_millis(),
        days: 7,
        rep_id: q.rep_id.clone(),
        team: q.team.clone(),
        domain: q.domain.clone(),
        limit: 500,
    };
    let mut metrics =
        |name: String, group_by, period: Period, periods: u32, team: Option<String>| {
            let last = period.start(to);
            let first = (1..periods).fold(last, |d, _| period.previous(d));
            let q = MetricsQuery {
                group_by,
                period,
                first,
                last,
                rep_id: None,
                team,
                domain: None,
            };
            let u = urgent(&q);
            out.push((name, Probe::Metrics(q, u)));
        };
    for g in GroupBy::ALL {
        for p in Period::ALL {
            metrics(
                format!("metrics: {} × {}, 12 periods", g.as_str(), p.as_str()),
                g,
                p,
                12,
                None,
            );
        }
    }
    metrics(
        "metrics: rep × week, 53 weeks".into(),
        GroupBy::Rep,
        Period::Week,
        53,
        None,
    );
    metrics(
        "metrics: rep × month, 24 months".into(),
        GroupBy::Rep,
        Period::Month,
        24,
        None,
    );
    metrics(
        "metrics: rep × week, one team, 12 weeks".into(),
        GroupBy::Rep,
        Period::Week,
        12,
        Some(plan.team(0)),
    );
    out
}

/// Run one probe; the number of rows it answered.
pub fn run(store: &mut dyn Store, probe: &Probe, memo_id: &str) -> Result<usize> {
    Ok(match probe {
        Probe::List(f, cursor) => store.list(f, cursor.as_deref(), 50)?.items.len(),
        Probe::Get(_) => usize::from(store.get(memo_id)?.is_some()),
        Probe::Metrics(q, u) => {
            let c = super::metrics::read(store, q, u)?;
            c.memos.len() + c.needs.len() + c.urgent.len()
        }
    })
}
