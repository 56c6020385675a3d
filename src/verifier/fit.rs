//! Fitting the verifier on labeled memos (`needtag fit`), once for needs and once for
//! actions: the memo classifier, then the topic and state models on every candidate of every
//! memo, pooled over all labels, and the most precise threshold within [`F1_SLACK`] of the
//! best out-of-fold micro-F1. Cross-validation by memo reports how well each part does on memos it was not
//! fitted on.
//!
//! The candidates' memo-classifier features are always out-of-fold: the memo classifier that
//! rates a memo never saw it, so the models downstream learn how far to trust it on unseen
//! memos, not on memorised ones.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::features::{self, Features, MemoView};
use super::linear::{self, FitOptions, Row};
use super::memo::{Head, MemoClassifier};
use super::ngrams::{prepare, Tfidf};
use super::{FitInfo, Heads, Named, Part, Verifier};
use crate::error::Result;
use crate::eval::Memo;
use crate::matcher::Matcher;

/// How much out-of-fold F1 a higher, more precise threshold may give up against the best one.
pub const F1_SLACK: f64 = 0.005;

/// Settings of a fit; the defaults were chosen by cross-validation on the training memos and
/// checked on the development set `hard.jsonl` (see docs/accuracy.md).
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// Inverse regularisation of the memo classifier's heads.
    pub memo_c: f32,
    pub memo_max_n: usize,
    /// An n-gram enters the memo classifier's vocabulary when this many memos contain it.
    pub memo_min_df: usize,
    /// The memo classifier's vocabulary holds at most this many n-grams (the most frequent).
    pub memo_max_terms: usize,
    /// Weights kept per memo-classifier head (largest magnitude first).
    pub memo_keep: usize,
    /// Inverse regularisation of the topic and state models.
    pub head_c: f32,
    /// A context n-gram becomes a state feature when this many candidates contain it.
    pub ngram_min_count: usize,
    /// State n-gram weights of a smaller magnitude are left out of the file.
    pub min_weight: f32,
    /// Folds for out-of-fold features, threshold choice and cross-validated scores.
    pub folds: usize,
    /// Fixed tagging threshold for needs instead of the one that maximises out-of-fold F1.
    pub threshold: Option<f32>,
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            memo_c: 30.0,
            memo_max_n: 3,
            memo_min_df: 2,
            memo_max_terms: 20_000,
            memo_keep: 2_000,
            head_c: 0.3,
            ngram_min_count: 2,
            min_weight: 0.02,
            folds: 5,
            threshold: None,
            threads: 2,
        }
    }
}

/// What a fit measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub memos: usize,
    pub needs: PartReport,
    pub actions: PartReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartReport {
    pub hybrid: ModeReport,
    pub keyword: ModeReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    pub candidates: usize,
    /// Share of labeled needs (or done actions) that have a candidate at all: the ceiling of
    /// recall.
    pub candidate_recall: f64,
    pub threshold: f32,
    /// Out-of-fold micro scores over the training memos at the threshold.
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Labels marked as not to be tagged (negated needs; planned or negated actions) that were
    /// tagged, out of fold.
    pub forbidden_tagged: usize,
    /// Out-of-fold (threshold, precision, recall, F1) at other thresholds.
    pub curve: Vec<(f32, f64, f64, f64)>,
}

/// One candidate's features and labels.
pub struct Example {
    memo: usize,
    label: usize,
    topic: Features,
    state: Features,
    /// Labeled as to be tagged (an open need, a done action).
    positive: bool,
    /// Labeled at all (also negated needs; planned and negated actions).
    mentioned: bool,
}

/// What is fitted: needs or actions.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Needs,
    Actions,
}

impl Kind {
    fn positive(self, m: &Memo) -> Vec<&String> {
        match self {
            Kind::Needs => m.needs.iter().collect(),
            Kind::Actions => m.actions.iter().collect(),
        }
    }
    fn forbidden(self, m: &Memo) -> Vec<&String> {
        match self {
            Kind::Needs => m.negated_needs.iter().collect(),
            Kind::Actions => m.planned_actions.iter().chain(&m.negated_actions).collect(),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Needs => "needs",
            Kind::Actions => "actions",
        }
    }
}

fn fold_of(i: usize, folds: usize) -> usize {
    // A fixed shuffle (multiplicative hash), so folds mix files and authors.
    (i.wrapping_mul(2_654_435_761) >> 7) % folds
}

/// Fit the memo classifier on the `train` memos.
fn fit_memo(
    texts: &[Vec<char>],
    positive: &[Vec<bool>],
    mentioned: &[Vec<bool>],
    labels: &[String],
    train: &[usize],
    o: &Options,
) -> MemoClassifier {
    let train_texts: Vec<Vec<char>> = train.iter().map(|&i| texts[i].clone()).collect();
    let tfidf = Tfidf::fit(&train_texts, o.memo_max_n, o.memo_min_df, o.memo_max_terms);
    let rows: Vec<Row> = train_texts.iter().map(|t| tfidf.transform(t)).collect();
    let dim = tfidf.idf.len();
    let opts = FitOptions {
        c: o.memo_c,
        max_iter: 300,
        tolerance: 1e-3,
    };
    // Heads: "positive" for every label, then "mentioned" for every label.
    let jobs: Vec<(bool, usize)> = (0..labels.len())
        .map(|n| (true, n))
        .chain((0..labels.len()).map(|n| (false, n)))
        .collect();
    let heads: Vec<Head> = parallel(&jobs, o.threads, |&(pos, n)| {
        let y: Vec<bool> = train
            .iter()
            .map(|&i| if pos { positive[i][n] } else { mentioned[i][n] })
            .collect();
        if !y.iter().any(|&b| b) {
            return Head {
                bias: -10.0,
                weights: Vec::new(),
            };
        }
        let m = linear::fit(&rows, &y, dim, opts);
        let mut w: Vec<(u32, f32)> = m
            .weights
            .iter()
            .enumerate()
            .filter(|(_, w)| **w != 0.0)
            .map(|(i, w)| (i as u32, *w))
            .collect();
        w.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        w.truncate(o.memo_keep);
        w.sort_by_key(|x| x.0);
        Head {
            bias: m.bias,
            weights: w,
        }
    });
    let (open, topic) = heads.split_at(labels.len());
    MemoClassifier::new(tfidf, labels.to_vec(), open.to_vec(), topic.to_vec())
}

/// `f` over `jobs` on up to `threads` threads, results in order.
fn parallel<J: Sync, R: Send>(jobs: &[J], threads: usize, f: impl Fn(&J) -> R + Sync) -> Vec<R> {
    let threads = threads.max(1).min(jobs.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<Option<R>> = (0..jobs.len()).map(|_| None).collect();
    let results = std::sync::Mutex::new(&mut out);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= jobs.len() {
                    break;
                }
                let r = f(&jobs[i]);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    out.into_iter().map(|r| r.expect("every job ran")).collect()
}

/// The topic and state models on `examples[idx]`, over the dense features `dense`.
fn fit_heads(examples: &[Example], idx: &[usize], dense: &[&str], o: &Options) -> (Named, Named) {
    let opts = FitOptions {
        c: o.head_c,
        max_iter: 500,
        tolerance: 1e-4,
    };
    let dense_names: Vec<String> = dense.iter().map(|s| s.to_string()).collect();
    let to_row = |f: &Features, index: &HashMap<&str, u32>| -> Row {
        let mut r: Row = f
            .dense
            .iter()
            .filter_map(|(n, v)| index.get(n).map(|&i| (i, *v)))
            .collect();
        r.extend(
            f.ngrams
                .iter()
                .filter_map(|g| index.get(g.as_str()).map(|&i| (i, 1.0))),
        );
        r
    };
    // Topic: dense features only, on every candidate.
    let topic_index: HashMap<&str, u32> = dense
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, i as u32))
        .collect();
    let rows: Vec<Row> = idx
        .iter()
        .map(|&i| to_row(&examples[i].topic, &topic_index))
        .collect();
    let y: Vec<bool> = idx.iter().map(|&i| examples[i].mentioned).collect();
    let topic = linear::fit(&rows, &y, dense.len(), opts);

    // State: dense features and the context n-grams seen often enough, on labeled candidates.
    let mentioned: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| examples[i].mentioned)
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for &i in &mentioned {
        for g in &examples[i].state.ngrams {
            *counts.entry(g.as_str()).or_default() += 1;
        }
    }
    let mut grams: Vec<&str> = counts
        .into_iter()
        .filter(|(_, c)| *c >= o.ngram_min_count)
        .map(|(g, _)| g)
        .collect();
    grams.sort_unstable();
    let mut names = dense_names.clone();
    names.extend(grams.iter().map(|g| g.to_string()));
    let state_index: HashMap<&str, u32> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i as u32))
        .collect();
    let rows: Vec<Row> = mentioned
        .iter()
        .map(|&i| to_row(&examples[i].state, &state_index))
        .collect();
    let y: Vec<bool> = mentioned.iter().map(|&i| examples[i].positive).collect();
    let mut state = linear::fit(&rows, &y, names.len(), opts);
    // Drop the n-grams whose weights are too small to matter (the dense features stay).
    let (mut kept_names, mut kept_weights) = (Vec::new(), Vec::new());
    for (i, (n, w)) in names.into_iter().zip(state.weights).enumerate() {
        if i < dense.len() || w.abs() >= o.min_weight {
            kept_names.push(n);
            kept_weights.push(w);
        }
    }
    state.weights = kept_weights;
    (
        Named::new(dense_names, topic),
        Named::new(kept_names, state),
    )
}

/// Micro precision, recall, F1 and forbidden labels tagged, over memos, from kept candidates.
fn score(
    memos: &[Memo],
    kind: Kind,
    labels: &[String],
    examples: &[Example],
    keep: &[bool],
) -> (f64, f64, f64, usize) {
    let mut tagged: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); memos.len()];
    for (e, &k) in examples.iter().zip(keep) {
        if k {
            tagged[e.memo].insert(labels[e.label].as_str());
        }
    }
    let (mut tp, mut fp, mut fn_, mut forbidden) = (0usize, 0usize, 0usize, 0usize);
    for (m, t) in memos.iter().zip(&tagged) {
        let gold: BTreeSet<&str> = kind.positive(m).into_iter().map(String::as_str).collect();
        tp += t.intersection(&gold).count();
        fp += t.difference(&gold).count();
        fn_ += gold.difference(t).count();
        forbidden += kind
            .forbidden(m)
            .into_iter()
            .filter(|n| t.contains(n.as_str()) && !gold.contains(n.as_str()))
            .count();
    }
    let p = tp as f64 / (tp + fp).max(1) as f64;
    let r = tp as f64 / (tp + fn_).max(1) as f64;
    let f = if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    };
    (p, r, f, forbidden)
}

/// The candidates of one memo for `kind`, as examples with their labels; `classifier` is the
/// memo classifier that did not see this memo (it proposes candidates as at run time).
#[allow(clippy::too_many_arguments)]
fn examples_of(
    kind: Kind,
    matcher: &Matcher,
    memo: &Memo,
    mi: usize,
    semantic: bool,
    views: &[MemoView],
    classifier: &MemoClassifier,
    labels: &[String],
) -> Result<Vec<Example>> {
    let a = matcher.analyze(&memo.text, semantic)?;
    let ids: Vec<&str> = labels.iter().map(String::as_str).collect();
    let scores = super::memo::MemoScores {
        open: views.iter().map(|v| Some(v.open)).collect(),
        topic: views.iter().map(|v| Some(v.topic)).collect(),
    };
    let mut out = Vec::new();
    match kind {
        Kind::Needs => {
            let found: Vec<usize> = matcher.need_candidates(&a).iter().map(|c| c.need).collect();
            let extra = super::extra_candidates(classifier, &scores, &a, &ids, &found);
            for c in matcher.need_candidates_with(&a, &extra) {
                let id = &matcher.lib.needs[c.need].id;
                let view = super::memo_view(classifier, &scores, &a, c.need, id, c.anchor.clause)
                    .unwrap_or_default();
                out.push(Example {
                    memo: mi,
                    label: c.need,
                    topic: features::need(&a, &c, view, false),
                    state: features::need(&a, &c, view, true),
                    positive: memo.needs.contains(id),
                    mentioned: memo.needs.contains(id) || memo.negated_needs.contains(id),
                });
            }
        }
        Kind::Actions => {
            let today = memo
                .recorded_at
                .as_deref()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .unwrap_or_else(crate::pipeline::now)
                .date_naive();
            let found: Vec<usize> = crate::actions::candidates(
                matcher,
                &a,
                today,
                crate::actions::CANDIDATE_SEMANTIC,
                &[],
            )
            .iter()
            .map(|c| c.action)
            .collect();
            let extra = super::extra_candidates(classifier, &scores, &a, &ids, &found);
            let cands = crate::actions::candidates(
                matcher,
                &a,
                today,
                crate::actions::CANDIDATE_SEMANTIC,
                &extra,
            );
            for (ai, def) in matcher.lib.actions.iter().enumerate() {
                let mine: Vec<&crate::actions::Candidate> =
                    cands.iter().filter(|c| c.action == ai).collect();
                if mine.is_empty() {
                    continue;
                }
                let id = &def.id;
                let clause = features::action_anchor(&mine)
                    .map(|c| c.clause)
                    .unwrap_or(0);
                let view =
                    super::memo_view(classifier, &scores, &a, ai, id, clause).unwrap_or_default();
                out.push(Example {
                    memo: mi,
                    label: ai,
                    topic: features::action(matcher, &a, ai, &mine, view, false),
                    state: features::action(matcher, &a, ai, &mine, view, true),
                    positive: memo.actions.contains(id),
                    mentioned: memo.actions.contains(id)
                        || memo.planned_actions.contains(id)
                        || memo.negated_actions.contains(id),
                });
            }
        }
    }
    Ok(out)
}

/// Fit one part (needs or actions).
fn fit_part(
    kind: Kind,
    matcher: &Matcher,
    memos: &[Memo],
    texts: &[Vec<char>],
    o: &Options,
    progress: &dyn Fn(&str),
) -> Result<(Part, PartReport)> {
    let labels: Vec<String> = match kind {
        Kind::Needs => matcher.lib.needs.iter().map(|n| n.id.clone()).collect(),
        Kind::Actions => matcher.lib.actions.iter().map(|a| a.id.clone()).collect(),
    };
    let dense = match kind {
        Kind::Needs => features::DENSE,
        Kind::Actions => features::ACTION_DENSE,
    };
    let label_sets = |f: &dyn Fn(&Memo) -> Vec<&String>| -> Vec<Vec<bool>> {
        memos
            .iter()
            .map(|m| {
                let set = f(m);
                labels.iter().map(|n| set.contains(&n)).collect()
            })
            .collect()
    };
    let positive = label_sets(&|m| kind.positive(m));
    let mentioned = label_sets(&|m| {
        let mut v = kind.positive(m);
        v.extend(kind.forbidden(m));
        v
    });

    // Out-of-fold memo-classifier scores for every memo.
    let folds = o.folds.max(2);
    let fold: Vec<usize> = (0..memos.len()).map(|i| fold_of(i, folds)).collect();
    let mut views: Vec<Vec<MemoView>> = vec![Vec::new(); memos.len()];
    let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
    let mut fold_models = Vec::with_capacity(folds);
    for k in 0..folds {
        progress(&format!(
            "{}: memo classifier, fold {}/{folds}",
            kind.name(),
            k + 1
        ));
        let train: Vec<usize> = (0..memos.len()).filter(|&i| fold[i] != k).collect();
        let m = fit_memo(texts, &positive, &mentioned, &labels, &train, o);
        for i in (0..memos.len()).filter(|&i| fold[i] == k) {
            let s = m.scores(&texts[i].iter().collect::<String>(), &label_refs);
            views[i] = s
                .open
                .iter()
                .zip(&s.topic)
                .map(|(&open, &topic)| MemoView {
                    open: open.unwrap_or(0.0),
                    topic: topic.unwrap_or(0.0),
                    ..MemoView::default()
                })
                .collect();
        }
        fold_models.push(m);
    }
    progress(&format!("{}: memo classifier, all memos", kind.name()));
    let all: Vec<usize> = (0..memos.len()).collect();
    let memo = fit_memo(texts, &positive, &mentioned, &labels, &all, o);

    let mut modes = Vec::new();
    for semantic in [true, false] {
        let mode = if semantic { "hybrid" } else { "keyword" };
        progress(&format!("{}: candidates ({mode})", kind.name()));
        let mut examples = Vec::new();
        for (mi, m) in memos.iter().enumerate() {
            examples.extend(examples_of(
                kind,
                matcher,
                m,
                mi,
                semantic,
                &views[mi],
                &fold_models[fold[mi]],
                &labels,
            )?);
        }
        let covered = examples.iter().filter(|e| e.positive).count();
        let labeled: usize = memos.iter().map(|m| kind.positive(m).len()).sum();
        // Out-of-fold probabilities of the topic × state product.
        let mut p = vec![0f32; examples.len()];
        for k in 0..folds {
            progress(&format!(
                "{}: verifier ({mode}), fold {}/{folds}",
                kind.name(),
                k + 1
            ));
            let train: Vec<usize> = (0..examples.len())
                .filter(|&i| fold[examples[i].memo] != k)
                .collect();
            let (t, s) = fit_heads(&examples, &train, dense, o);
            for i in (0..examples.len()).filter(|&i| fold[examples[i].memo] == k) {
                p[i] = t.prob(&examples[i].topic) * s.prob(&examples[i].state);
            }
        }
        let at = |th: f32| {
            let keep: Vec<bool> = p.iter().map(|&x| x >= th).collect();
            score(memos, kind, &labels, &examples, &keep)
        };
        let fixed = if kind == Kind::Needs {
            o.threshold
        } else {
            None
        };
        // The highest threshold whose out-of-fold F1 is within F1_SLACK of the best: a wrong tag
        // costs a manager's trust more than a missed one, so among equally good thresholds the
        // more precise one is taken.
        let threshold = fixed.unwrap_or_else(|| {
            let f1s: Vec<(f32, f64)> = (10..=70)
                .map(|i| i as f32 / 100.0)
                .map(|th| (th, at(th).2))
                .collect();
            let best = f1s.iter().map(|x| x.1).fold(0.0, f64::max);
            f1s.iter()
                .rev()
                .find(|x| x.1 >= best - F1_SLACK)
                .map_or(0.4, |x| x.0)
        });
        let (precision, recall, f1, forbidden_tagged) = at(threshold);
        // Four decimals: enough for a report, and they read back from JSON unchanged.
        let r4 = |x: f64| (x * 10_000.0).round() / 10_000.0;
        let (precision, recall, f1) = (r4(precision), r4(recall), r4(f1));
        let curve = (4..=12)
            .map(|i| {
                let th = i as f32 * 0.05;
                let (p, r, f, _) = at(th);
                (th, r4(p), r4(r), r4(f))
            })
            .collect();
        let (t, s) = fit_heads(
            &examples,
            &(0..examples.len()).collect::<Vec<_>>(),
            dense,
            o,
        );
        modes.push((
            Heads {
                topic: t,
                state: s,
                threshold,
            },
            ModeReport {
                candidates: examples.len(),
                candidate_recall: r4(covered as f64 / labeled.max(1) as f64),
                threshold,
                precision,
                recall,
                f1,
                forbidden_tagged,
                curve,
            },
        ));
    }
    let (keyword, keyword_report) = modes.pop().expect("two modes");
    let (hybrid, hybrid_report) = modes.pop().expect("two modes");
    Ok((
        Part {
            memo,
            hybrid,
            keyword,
        },
        PartReport {
            hybrid: hybrid_report,
            keyword: keyword_report,
        },
    ))
}

/// Fit a verifier for `matcher`'s library on `memos`. `matcher` must have the sentence
/// encoder; the keyword-only models are fitted on the same memos without it.
pub fn fit(
    matcher: &Matcher,
    memos: &[Memo],
    files: Vec<String>,
    o: &Options,
    progress: &dyn Fn(&str),
) -> Result<(Verifier, Report)> {
    let texts: Vec<Vec<char>> = memos
        .iter()
        .map(|m| {
            prepare(
                &crate::text::normalize(&m.text)
                    .into_iter()
                    .collect::<String>(),
            )
        })
        .collect();
    let (needs, needs_report) = fit_part(Kind::Needs, matcher, memos, &texts, o, progress)?;
    let (actions, actions_report) = fit_part(Kind::Actions, matcher, memos, &texts, o, progress)?;
    let report = Report {
        memos: memos.len(),
        needs: needs_report,
        actions: actions_report,
    };
    let info = FitInfo {
        files,
        memos: memos.len(),
        candidates: report.needs.hybrid.candidates,
        library_version: matcher.lib.version.clone(),
        options: serde_json::to_value(o).unwrap_or_default(),
        cross_validation: serde_json::to_value(&report).ok(),
    };
    Ok((
        Verifier {
            info,
            needs,
            actions: Some(actions),
        },
        report,
    ))
}
