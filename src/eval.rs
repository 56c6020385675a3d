//! Evaluation of a library against labeled memos: per-need and per-action precision, recall and
//! F1, micro and macro averages, results per category, negation and plan violations, the most
//! confused pairs, every miss, and a memo-by-memo comparison of two libraries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use chrono::DateTime;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::matcher::Matcher;
use crate::pipeline;

/// One labeled memo (a line of an evaluation JSONL file).
#[derive(Debug, Clone, Deserialize)]
pub struct Memo {
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub recorded_at: Option<String>,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default)]
    pub negated_needs: Vec<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub planned_actions: Vec<String>,
    #[serde(default)]
    pub negated_actions: Vec<String>,
    #[serde(default)]
    pub vague: Option<bool>,
    #[serde(default)]
    pub categories: Vec<String>,
}

/// The development set of the default library, compiled in (the console's evaluation view).
pub const BUNDLED_DEV_SET: &str = include_str!("../need-library/eval/dev.jsonl");

pub fn load_jsonl(path: &Path) -> Result<Vec<Memo>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?;
    parse_jsonl(&text, &path.display().to_string())
}

/// Labeled memos from JSONL text; errors name the line.
pub fn parse_jsonl(text: &str, source: &str) -> Result<Vec<Memo>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let memo: Memo = serde_json::from_str(line)
            .map_err(|e| Error::InvalidInput(format!("{source}:{}: {e}", i + 1)))?;
        out.push(memo);
    }
    Ok(out)
}

/// What the engine said about one memo.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub id: String,
    pub needs: BTreeSet<String>,
    pub actions: BTreeSet<String>,
    pub planned: BTreeSet<String>,
    pub vague: bool,
    /// The words that fired each predicted need and action.
    pub evidence: BTreeMap<String, Vec<String>>,
    pub ms: f64,
}

/// Run the matcher over every memo; `progress` is called after each.
pub fn predict(
    matcher: &Matcher,
    memos: &[Memo],
    how: pipeline::TagOptions,
    progress: &dyn Fn(),
) -> Result<Vec<Prediction>> {
    let mut out = Vec::with_capacity(memos.len());
    for m in memos {
        let recorded = m
            .recorded_at
            .as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
        let t = Instant::now();
        let tags = pipeline::tag(matcher, &m.text, recorded, how)?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        out.push(Prediction {
            id: m.id.clone(),
            needs: tags.needs.iter().map(|n| n.id.clone()).collect(),
            actions: tags.actions.iter().map(|a| a.id.clone()).collect(),
            planned: tags
                .next_steps
                .iter()
                .filter_map(|s| s.action.clone())
                .collect(),
            vague: tags.vague.flag,
            evidence: tags
                .needs
                .iter()
                .map(|n| {
                    (
                        n.id.clone(),
                        n.evidence
                            .iter()
                            .map(|e| format!("{}:{}", kind_name(e.kind), e.text))
                            .collect(),
                    )
                })
                .chain(tags.actions.iter().map(|a| {
                    (
                        a.id.clone(),
                        a.evidence
                            .iter()
                            .map(|e| format!("{}:{}", kind_name(e.kind), e.text))
                            .collect(),
                    )
                }))
                .collect(),
            ms,
        });
        progress();
    }
    Ok(out)
}

fn kind_name(k: crate::result::EvidenceKind) -> &'static str {
    use crate::result::EvidenceKind::*;
    match k {
        Keyword => "kw",
        Synonym => "syn",
        Homophone => "sound",
        Pattern => "re",
        Semantic => "sem",
        Retrieval => "bm25",
        Context => "context",
    }
}

/// One (memo, need) pair with any signal, with its features and label (for fitting the fusion).
#[derive(Debug, Clone, Serialize)]
pub struct FeatureRow {
    pub memo: String,
    pub need: String,
    pub gold: bool,
    pub negated_gold: bool,
    pub features: crate::matcher::NeedFeatures,
}

pub fn features(matcher: &Matcher, memos: &[Memo], semantic: bool) -> Result<Vec<FeatureRow>> {
    let mut rows = Vec::new();
    for m in memos {
        let a = matcher.analyze(&m.text, semantic)?;
        for (ni, need) in matcher.lib.needs.iter().enumerate() {
            let c = matcher.need_evidence(&a, ni);
            rows.push(FeatureRow {
                memo: m.id.clone(),
                need: need.id.clone(),
                gold: m.needs.contains(&need.id),
                negated_gold: m.negated_needs.contains(&need.id),
                features: c.features,
            });
        }
    }
    Ok(rows)
}

/// Fit the scoring weights (logistic regression on standardised features, L2-regularised,
/// full-batch gradient descent) and the threshold that maximises micro-F1 on the rows.
pub fn fit_weights(rows: &[FeatureRow], semantic: bool) -> (crate::library::Weights, f32) {
    let feats = |f: &crate::matcher::NeedFeatures| -> [f32; 5] {
        let s = if semantic { f.semantic } else { 0.0 };
        [f.lexical, s, f.bm25_rel, (1.0 + f.bm25).ln(), f.lexical * s]
    };
    let xs: Vec<[f32; 5]> = rows.iter().map(|r| feats(&r.features)).collect();
    let ys: Vec<f32> = rows
        .iter()
        .map(|r| if r.gold { 1.0 } else { 0.0 })
        .collect();
    let n = xs.len().max(1) as f32;
    let mut mean = [0f32; 5];
    let mut sd = [0f32; 5];
    for j in 0..5 {
        mean[j] = xs.iter().map(|x| x[j]).sum::<f32>() / n;
        sd[j] = (xs.iter().map(|x| (x[j] - mean[j]).powi(2)).sum::<f32>() / n).sqrt();
    }
    let z: Vec<[f32; 5]> = xs
        .iter()
        .map(|x| {
            std::array::from_fn(|j| {
                if sd[j] > 1e-6 {
                    (x[j] - mean[j]) / sd[j]
                } else {
                    0.0
                }
            })
        })
        .collect();
    let (mut beta, mut b0) = ([0f32; 5], 0f32);
    for _ in 0..4000 {
        let mut g = [0f32; 5];
        let mut g0 = 0f32;
        for (x, y) in z.iter().zip(&ys) {
            let p = 1.0 / (1.0 + (-(b0 + (0..5).map(|j| beta[j] * x[j]).sum::<f32>())).exp());
            for j in 0..5 {
                g[j] += (p - y) * x[j];
            }
            g0 += p - y;
        }
        for j in 0..5 {
            beta[j] -= 0.5 * (g[j] / n + 1e-3 * beta[j]);
        }
        b0 -= 0.5 * g0 / n;
    }
    let w: [f32; 5] = std::array::from_fn(|j| if sd[j] > 1e-6 { beta[j] / sd[j] } else { 0.0 });
    let bias = b0 - (0..5).map(|j| w[j] * mean[j]).sum::<f32>();
    let weights = crate::library::Weights {
        bias,
        lexical: w[0],
        semantic: w[1],
        bm25_rel: w[2],
        bm25_log: w[3],
        lexical_semantic: w[4],
    };
    let probs: Vec<f32> = xs
        .iter()
        .map(|x| 1.0 / (1.0 + (-(bias + (0..5).map(|j| w[j] * x[j]).sum::<f32>())).exp()))
        .collect();
    let f1_at = |th: f32| {
        let mut c = Counts::default();
        for (p, y) in probs.iter().zip(&ys) {
            match (*p >= th, *y > 0.5) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                _ => {}
            }
        }
        c.f1()
    };
    let threshold = (5..=80)
        .map(|i| i as f32 / 100.0)
        .max_by(|a, b| f1_at(*a).total_cmp(&f1_at(*b)))
        .unwrap_or(0.5);
    (weights, threshold)
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl Counts {
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    fn add(&mut self, o: Counts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LabelScore {
    pub label: String,
    pub support: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    pub micro_precision: f64,
    pub micro_recall: f64,
    pub micro_f1: f64,
    pub macro_f1: f64,
    pub labels: Vec<LabelScore>,
}

fn metrics(labels: &[String], gold: &[BTreeSet<String>], pred: &[BTreeSet<String>]) -> Metrics {
    let mut per: BTreeMap<&str, Counts> = labels
        .iter()
        .map(|l| (l.as_str(), Counts::default()))
        .collect();
    for (g, p) in gold.iter().zip(pred) {
        for l in g.union(p) {
            let c = per.entry(l.as_str()).or_default();
            match (g.contains(l), p.contains(l)) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (true, false) => c.fn_ += 1,
                _ => {}
            }
        }
    }
    let mut total = Counts::default();
    let mut scores = Vec::new();
    for (l, c) in &per {
        total.add(*c);
        scores.push(LabelScore {
            label: l.to_string(),
            support: c.tp + c.fn_,
            precision: c.precision(),
            recall: c.recall(),
            f1: c.f1(),
            counts: *c,
        });
    }
    let with_support: Vec<&LabelScore> = scores
        .iter()
        .filter(|s| s.support > 0 || s.counts.fp > 0)
        .collect();
    let macro_f1 =
        with_support.iter().map(|s| s.f1).sum::<f64>() / with_support.len().max(1) as f64;
    Metrics {
        micro_precision: total.precision(),
        micro_recall: total.recall(),
        micro_f1: total.f1(),
        macro_f1,
        labels: scores,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CategoryScore {
    pub category: String,
    pub memos: usize,
    pub needs_micro_f1: f64,
    pub actions_micro_f1: f64,
    /// Memos whose needs and actions are all exactly right.
    pub exact: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub id: String,
    pub text: String,
    pub missed_needs: Vec<String>,
    pub extra_needs: Vec<String>,
    pub missed_actions: Vec<String>,
    pub extra_actions: Vec<String>,
    pub vague: Option<(bool, bool)>,
    /// Evidence of the extra tags.
    pub extra_evidence: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub id: String,
    pub label: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub memos: usize,
    pub mode: &'static str,
    pub library_version: String,
    pub needs: Metrics,
    pub actions: Metrics,
    /// Vague-flag precision and recall over memos that carry a `vague` label.
    pub vague: VagueScore,
    pub categories: Vec<CategoryScore>,
    /// Needs labeled as negated that were tagged anyway.
    pub negated_needs_tagged: Vec<Violation>,
    /// Actions labeled as planned or negated that were counted as done.
    pub planned_actions_counted: Vec<Violation>,
    pub negated_actions_counted: Vec<Violation>,
    /// (missed need, need tagged instead, memos) — most frequent first.
    pub confused_pairs: Vec<(String, String, usize)>,
    pub misses: Vec<Miss>,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct VagueScore {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub max: f64,
}

pub fn report(matcher: &Matcher, memos: &[Memo], preds: &[Prediction], semantic: bool) -> Report {
    let set = |v: &Vec<String>| v.iter().cloned().collect::<BTreeSet<String>>();
    let need_labels: Vec<String> = matcher.lib.needs.iter().map(|n| n.id.clone()).collect();
    let action_labels: Vec<String> = matcher.lib.actions.iter().map(|a| a.id.clone()).collect();
    let gold_needs: Vec<_> = memos.iter().map(|m| set(&m.needs)).collect();
    let gold_actions: Vec<_> = memos.iter().map(|m| set(&m.actions)).collect();
    let pred_needs: Vec<_> = preds.iter().map(|p| p.needs.clone()).collect();
    let pred_actions: Vec<_> = preds.iter().map(|p| p.actions.clone()).collect();

    let mut vague = Counts::default();
    for (m, p) in memos.iter().zip(preds) {
        match (m.vague, p.vague) {
            (Some(true), true) => vague.tp += 1,
            (Some(false), true) => vague.fp += 1,
            (Some(true), false) => vague.fn_ += 1,
            _ => {}
        }
    }

    let mut categories: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, m) in memos.iter().enumerate() {
        for c in &m.categories {
            categories.entry(c.clone()).or_default().push(i);
        }
    }
    let categories = categories
        .into_iter()
        .map(|(c, idx)| {
            let pick =
                |v: &[BTreeSet<String>]| idx.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
            let exact = idx
                .iter()
                .filter(|&&i| gold_needs[i] == pred_needs[i] && gold_actions[i] == pred_actions[i])
                .count();
            CategoryScore {
                category: c,
                memos: idx.len(),
                needs_micro_f1: metrics(&need_labels, &pick(&gold_needs), &pick(&pred_needs))
                    .micro_f1,
                actions_micro_f1: metrics(
                    &action_labels,
                    &pick(&gold_actions),
                    &pick(&pred_actions),
                )
                .micro_f1,
                exact,
            }
        })
        .collect();

    let mut negated_needs_tagged = Vec::new();
    let mut planned_actions_counted = Vec::new();
    let mut negated_actions_counted = Vec::new();
    let mut confused: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut misses = Vec::new();
    for ((m, p), (gn, ga)) in memos
        .iter()
        .zip(preds)
        .zip(gold_needs.iter().zip(&gold_actions))
    {
        for n in &m.negated_needs {
            if p.needs.contains(n) {
                negated_needs_tagged.push(Violation {
                    id: m.id.clone(),
                    label: n.clone(),
                });
            }
        }
        for a in &m.planned_actions {
            if p.actions.contains(a) {
                planned_actions_counted.push(Violation {
                    id: m.id.clone(),
                    label: a.clone(),
                });
            }
        }
        for a in &m.negated_actions {
            if p.actions.contains(a) {
                negated_actions_counted.push(Violation {
                    id: m.id.clone(),
                    label: a.clone(),
                });
            }
        }
        let missed_needs: Vec<String> = gn.difference(&p.needs).cloned().collect();
        let extra_needs: Vec<String> = p.needs.difference(gn).cloned().collect();
        let missed_actions: Vec<String> = ga.difference(&p.actions).cloned().collect();
        let extra_actions: Vec<String> = p.actions.difference(ga).cloned().collect();
        for g in &missed_needs {
            for x in &extra_needs {
                *confused.entry((g.clone(), x.clone())).or_default() += 1;
            }
        }
        let vague_wrong = m.vague.filter(|&v| v != p.vague).map(|v| (v, p.vague));
        if !missed_needs.is_empty()
            || !extra_needs.is_empty()
            || !missed_actions.is_empty()
            || !extra_actions.is_empty()
            || vague_wrong.is_some()
        {
            let extra_evidence = extra_needs
                .iter()
                .chain(&extra_actions)
                .filter_map(|x| p.evidence.get(x).map(|e| (x.clone(), e.clone())))
                .collect();
            misses.push(Miss {
                id: m.id.clone(),
                text: m.text.clone(),
                missed_needs,
                extra_needs,
                missed_actions,
                extra_actions,
                vague: vague_wrong,
                extra_evidence,
            });
        }
    }
    let mut confused_pairs: Vec<(String, String, usize)> =
        confused.into_iter().map(|((a, b), n)| (a, b, n)).collect();
    confused_pairs.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    confused_pairs.truncate(15);

    let mut ms: Vec<f64> = preds.iter().map(|p| p.ms).collect();
    ms.sort_by(f64::total_cmp);
    let q = |f: f64| {
        ms.get(((ms.len() as f64 - 1.0) * f).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let latency_ms = Latency {
        mean: ms.iter().sum::<f64>() / ms.len().max(1) as f64,
        p50: q(0.5),
        p95: q(0.95),
        max: q(1.0),
    };

    Report {
        memos: memos.len(),
        mode: if semantic { "hybrid" } else { "keyword" },
        library_version: matcher.lib.version.clone(),
        needs: metrics(&need_labels, &gold_needs, &pred_needs),
        actions: metrics(&action_labels, &gold_actions, &pred_actions),
        vague: VagueScore {
            precision: vague.precision(),
            recall: vague.recall(),
            f1: vague.f1(),
            counts: vague,
        },
        categories,
        negated_needs_tagged,
        planned_actions_counted,
        negated_actions_counted,
        confused_pairs,
        misses,
        latency_ms,
    }
}

/// How two libraries differ on the same memos.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub base_version: String,
    pub other_version: String,
    /// Memos the other library gets more right (fewer wrong labels).
    pub gained: Vec<MemoDiff>,
    /// Memos it gets more wrong.
    pub lost: Vec<MemoDiff>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoDiff {
    pub id: String,
    pub text: String,
    pub base_errors: Vec<String>,
    pub other_errors: Vec<String>,
}

fn errors(m: &Memo, p: &Prediction) -> Vec<String> {
    let gn: BTreeSet<String> = m.needs.iter().cloned().collect();
    let ga: BTreeSet<String> = m.actions.iter().cloned().collect();
    let mut e = Vec::new();
    e.extend(gn.difference(&p.needs).map(|x| format!("missed need {x}")));
    e.extend(p.needs.difference(&gn).map(|x| format!("extra need {x}")));
    e.extend(
        ga.difference(&p.actions)
            .map(|x| format!("missed action {x}")),
    );
    e.extend(
        p.actions
            .difference(&ga)
            .map(|x| format!("extra action {x}")),
    );
    if let Some(v) = m.vague.filter(|&v| v != p.vague) {
        e.push(format!("vague should be {v}"));
    }
    e
}

pub fn compare(
    memos: &[Memo],
    base: &[Prediction],
    other: &[Prediction],
    base_version: &str,
    other_version: &str,
) -> Comparison {
    let mut gained = Vec::new();
    let mut lost = Vec::new();
    for ((m, b), o) in memos.iter().zip(base).zip(other) {
        let (eb, eo) = (errors(m, b), errors(m, o));
        if eb == eo {
            continue;
        }
        let diff = MemoDiff {
            id: m.id.clone(),
            text: m.text.clone(),
            base_errors: eb.clone(),
            other_errors: eo.clone(),
        };
        if eo.len() < eb.len() {
            gained.push(diff);
        } else {
            lost.push(diff);
        }
    }
    Comparison {
        base_version: base_version.into(),
        other_version: other_version.into(),
        gained,
        lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn micro_and_macro_averages() {
        let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let gold = vec![set(&["a"]), set(&["a", "b"]), set(&[])];
        let pred = vec![set(&["a"]), set(&["a", "c"]), set(&["b"])];
        let m = metrics(&labels, &gold, &pred);
        // a: tp 2; b: fn 1, fp 1; c: fp 1 → micro P 2/4, R 2/3.
        assert!((m.micro_precision - 0.5).abs() < 1e-9);
        assert!((m.micro_recall - 2.0 / 3.0).abs() < 1e-9);
        let a = m.labels.iter().find(|l| l.label == "a").unwrap();
        assert_eq!((a.counts.tp, a.counts.fp, a.counts.fn_), (2, 0, 0));
        assert!((m.macro_f1 - (1.0 + 0.0 + 0.0) / 3.0).abs() < 1e-9);
    }

    #[test]
    fn comparison_sorts_memos_into_gained_and_lost() {
        let memos = parse_jsonl(
            "{\"id\":\"m1\",\"text\":\"x\",\"needs\":[\"a\"]}\n{\"id\":\"m2\",\"text\":\"y\",\"needs\":[]}\n",
            "t",
        )
        .unwrap();
        let p = |id: &str, needs: &[&str]| Prediction {
            id: id.into(),
            needs: set(needs),
            actions: set(&[]),
            planned: set(&[]),
            vague: false,
            evidence: BTreeMap::new(),
            ms: 0.0,
        };
        let base = vec![p("m1", &[]), p("m2", &[])];
        let other = vec![p("m1", &["a"]), p("m2", &["b"])];
        let c = compare(&memos, &base, &other, "v1", "v2");
        assert_eq!(c.gained.len(), 1);
        assert_eq!(c.gained[0].id, "m1");
        assert_eq!(c.lost.len(), 1);
        assert_eq!(c.lost[0].other_errors, vec!["extra need b".to_string()]);
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let e = parse_jsonl("{\"id\":\"a\",\"text\":\"x\"}\nnot json\n", "f.jsonl").unwrap_err();
        assert!(e.to_string().contains("f.jsonl:2"), "{e}");
    }

    #[test]
    fn fitted_weights_separate_positives() {
        use crate::matcher::NeedFeatures;
        let row = |lexical: f32, gold: bool| FeatureRow {
            memo: "m".into(),
            need: "n".into(),
            gold,
            negated_gold: false,
            features: NeedFeatures {
                lexical,
                ..Default::default()
            },
        };
        let rows: Vec<FeatureRow> = (0..50)
            .map(|i| row(if i % 2 == 0 { 1.0 } else { 0.0 }, i % 2 == 0))
            .collect();
        let (w, th) = fit_weights(&rows, false);
        assert!(w.lexical > 0.0);
        let p = |x: f32| 1.0 / (1.0 + (-(w.bias + w.lexical * x)).exp());
        assert!(
            p(1.0) > th && p(0.0) < th,
            "p(1)={} p(0)={} th={th}",
            p(1.0),
            p(0.0)
        );
    }
}
