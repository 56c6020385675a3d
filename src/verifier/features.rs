//! The features the verifier reads about a need candidate. None of them names the need: they
//! say how the topic was found (term kind and strength, embeddings, BM25), what the language
//! cues say about its mentions, how the memo-level classifier rates the need, and which
//! character n-grams stand around the anchor (the mention masked as `#`), in its clause and
//! the clauses on either side. The same candidate therefore reads the same for every need, and
//! weights learned on all needs together apply to each.

use crate::actions::Candidate as ActionCandidate;
use crate::matcher::{Analysis, Matcher, NeedCandidate};
use crate::result::EvidenceKind;
use crate::text::Modality;

use super::linear::logit;
use super::ngrams;

/// The version of the feature definitions below. A verifier file fitted against another
/// version is refused, so a change here requires `needtag fit`.
pub const SCHEMA: u32 = 2;

/// A candidate's features: named values, and n-gram keys (value 1).
#[derive(Debug, Clone, Default)]
pub struct Features {
    pub dense: Vec<(&'static str, f32)>,
    pub ngrams: Vec<String>,
}

/// The memo-level classifier's view of one label (need or action), for the whole memo and for
/// the clauses around the candidate's anchor (the one before it and the three after it).
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoView {
    /// Probability that the memo expresses the need as an open need (an action: done).
    pub open: f32,
    /// Probability that the memo is about it at all (open or closed; an action: mentioned).
    pub topic: f32,
    pub window_open: f32,
    pub window_topic: f32,
}

/// The text the window scores read: clauses `ci - 1 ..= ci + 3`, joined by commas.
pub fn window_text(a: &Analysis, ci: usize) -> String {
    let clauses = &a.text.clauses;
    let from = ci.saturating_sub(1);
    let to = (ci + 4).min(clauses.len());
    clauses
        .get(from..to)
        .unwrap_or(&[])
        .iter()
        .map(|c| c.norm.as_str())
        .collect::<Vec<_>>()
        .join("，")
}

/// Every dense feature name, in a fixed order (for the file and for explanations).
pub const DENSE: &[&str] = &[
    "lexical",
    "semantic",
    "bm25_rel",
    "bm25_log",
    "negated_only",
    "topic_logit",
    "has_evidence",
    "anchor_keyword",
    "anchor_synonym",
    "anchor_homophone",
    "anchor_negated",
    "mentions_open",
    "mentions_negated",
    "negated_before",
    "negated_after",
    "negated_next_clause",
    "negated_resolved_later",
    "cos_anchor",
    "cos_max",
    "p_anchor",
    "rank1_anchor",
    "first_clause",
    "last_clause",
    "clauses_log",
    "memo_open",
    "memo_topic",
    "window_open",
    "window_topic",
];

/// Features of one need candidate. `with_ngrams` adds the context n-grams (the state model
/// reads them; the topic model does not).
pub fn need(a: &Analysis, c: &NeedCandidate, memo: MemoView, with_ngrams: bool) -> Features {
    let f = &c.features;
    let clauses = &a.text.clauses;
    let ci = c.anchor.clause.min(clauses.len().saturating_sub(1));
    let anchor_mention = c.anchor.mention.and_then(|i| c.mentions.get(i));
    let kind = |k: EvidenceKind| anchor_mention.is_some_and(|m| m.kind == k) as u8 as f32;
    let negated_kind = |k: &str| {
        c.mentions
            .iter()
            .any(|m| m.negation.as_ref().is_some_and(|n| n.kind == k)) as u8 as f32
    };
    let open = c.mentions.iter().filter(|m| m.negation.is_none()).count();
    let negated = c.mentions.len() - open;
    let (cos_anchor, cos_max, p_anchor, rank1) = match &a.semantic {
        Some(sem) if !sem.is_empty() => {
            let owner = crate::matcher::Owner::Need(c.need);
            let cos = |s: &crate::matcher::semantic::ClauseSemantics| {
                s.nearest.get(&owner).map(|x| x.0).unwrap_or(0.0)
            };
            let s = &sem[ci];
            let best = s
                .need
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .map(|x| x.0);
            (
                cos(s),
                sem.iter().map(cos).fold(0.0f32, f32::max),
                s.need[c.need],
                (best == Some(c.need)) as u8 as f32,
            )
        }
        _ => (0.0, 0.0, 0.0, 0.0),
    };
    let n = clauses.len().max(1);
    let dense = vec![
        ("lexical", f.lexical),
        ("semantic", f.semantic),
        ("bm25_rel", f.bm25_rel),
        ("bm25_log", f.bm25.ln_1p()),
        ("negated_only", f.negated_only as u8 as f32),
        ("topic_logit", logit(c.topic) / 5.0),
        ("has_evidence", (!c.evidence.is_empty()) as u8 as f32),
        ("anchor_keyword", kind(EvidenceKind::Keyword)),
        ("anchor_synonym", kind(EvidenceKind::Synonym)),
        ("anchor_homophone", kind(EvidenceKind::Homophone)),
        (
            "anchor_negated",
            anchor_mention.is_some_and(|m| m.negation.is_some()) as u8 as f32,
        ),
        ("mentions_open", open.min(3) as f32),
        ("mentions_negated", negated.min(3) as f32),
        ("negated_before", negated_kind("before")),
        ("negated_after", negated_kind("after")),
        ("negated_next_clause", negated_kind("next_clause")),
        ("negated_resolved_later", negated_kind("resolved_later")),
        ("cos_anchor", cos_anchor),
        ("cos_max", cos_max),
        ("p_anchor", p_anchor),
        ("rank1_anchor", rank1),
        ("first_clause", (ci == 0) as u8 as f32),
        ("last_clause", (ci + 1 == n) as u8 as f32),
        ("clauses_log", (n as f32).ln()),
        ("memo_open", logit(memo.open) / 3.0),
        ("memo_topic", logit(memo.topic) / 3.0),
        ("window_open", logit(memo.window_open) / 3.0),
        ("window_topic", logit(memo.window_topic) / 3.0),
    ];
    debug_assert!(dense.iter().map(|d| d.0).eq(DENSE.iter().copied()));
    let mut grams = Vec::new();
    if with_ngrams && !clauses.is_empty() {
        clause_context(&mut grams, a, ci, anchor_mention.map(|m| m.range.clone()));
    }
    Features {
        dense,
        ngrams: grams,
    }
}

/// Every dense feature of an action candidate, in a fixed order.
pub const ACTION_DENSE: &[&str] = &[
    "kind_keyword",
    "kind_pattern",
    "kind_semantic",
    "score",
    "mentions",
    "mentions_done",
    "mentions_planned",
    "mentions_negated",
    "anchor_done",
    "anchor_planned",
    "anchor_negated",
    "semantic",
    "p_anchor",
    "rank1_anchor",
    "agreement_counts",
    "first_clause",
    "last_clause",
    "clauses_log",
    "memo_done",
    "memo_mentioned",
    "window_done",
    "window_mentioned",
];

/// The mention an action's features read around: the strongest one the cues read as done,
/// else the strongest.
pub fn action_anchor<'a>(mine: &[&'a ActionCandidate]) -> Option<&'a ActionCandidate> {
    let strength = |c: &ActionCandidate| match c.kind {
        EvidenceKind::Keyword => 3.0,
        EvidenceKind::Pattern => 2.0,
        _ => c.score,
    };
    let done = |c: &ActionCandidate| c.modality == Modality::Done;
    mine.iter().copied().max_by(|x, y| {
        (done(x), strength(x))
            .partial_cmp(&(done(y), strength(y)))
            .unwrap_or(std::cmp::Ordering::Equal)
    })
}

/// Features of action `ai` from its mentions `mine` (at least one). The anchor is the
/// strongest mention the cues read as done, else the strongest mention. `memo.open` is the
/// memo classifier's "done", `memo.topic` its "mentioned at all".
pub fn action(
    m: &Matcher,
    a: &Analysis,
    ai: usize,
    mine: &[&ActionCandidate],
    memo: MemoView,
    with_ngrams: bool,
) -> Features {
    let done = |c: &ActionCandidate| c.modality == Modality::Done;
    let anchor = action_anchor(mine).expect("an action candidate has a mention");
    let count =
        |f: &dyn Fn(&ActionCandidate) -> bool| mine.iter().filter(|c| f(c)).count().min(3) as f32;
    let planned = |c: &ActionCandidate| matches!(c.modality, Modality::Planned { .. });
    let negated = |c: &ActionCandidate| matches!(c.modality, Modality::Negated { .. });
    let clauses = &a.text.clauses;
    let ci = anchor.clause.min(clauses.len().saturating_sub(1));
    let (semantic, p_anchor, rank1) = match &a.semantic {
        Some(sem) if !sem.is_empty() => {
            let s = &sem[ci];
            let best = s
                .action
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
                .map(|x| x.0);
            (
                sem.iter().map(|s| s.action[ai]).fold(0.0f32, f32::max),
                s.action[ai],
                (best == Some(ai)) as u8 as f32,
            )
        }
        _ => (0.0, 0.0, 0.0),
    };
    let flag = |b: bool| b as u8 as f32;
    let n = clauses.len().max(1);
    let dense = vec![
        ("kind_keyword", flag(anchor.kind == EvidenceKind::Keyword)),
        ("kind_pattern", flag(anchor.kind == EvidenceKind::Pattern)),
        ("kind_semantic", flag(anchor.kind == EvidenceKind::Semantic)),
        ("score", anchor.score),
        ("mentions", mine.len().min(3) as f32),
        ("mentions_done", count(&done)),
        ("mentions_planned", count(&planned)),
        ("mentions_negated", count(&negated)),
        ("anchor_done", flag(done(anchor))),
        ("anchor_planned", flag(planned(anchor))),
        ("anchor_negated", flag(negated(anchor))),
        ("semantic", semantic),
        ("p_anchor", p_anchor),
        ("rank1_anchor", rank1),
        ("agreement_counts", flag(m.lib.actions[ai].agreement_counts)),
        ("first_clause", flag(ci == 0)),
        ("last_clause", flag(ci + 1 == n)),
        ("clauses_log", (n as f32).ln()),
        ("memo_done", logit(memo.open) / 3.0),
        ("memo_mentioned", logit(memo.topic) / 3.0),
        ("window_done", logit(memo.window_open) / 3.0),
        ("window_mentioned", logit(memo.window_topic) / 3.0),
    ];
    debug_assert!(dense.iter().map(|d| d.0).eq(ACTION_DENSE.iter().copied()));
    let mut grams = Vec::new();
    if with_ngrams && !clauses.is_empty() {
        let mask = (anchor.kind != EvidenceKind::Semantic).then(|| anchor.range.clone());
        clause_context(&mut grams, a, ci, mask);
    }
    Features {
        dense,
        ngrams: grams,
    }
}

/// The n-grams of clause `ci` (with `mask`, a character range of the text, written as `#`)
/// and of the clauses before and after it.
fn clause_context(
    out: &mut Vec<String>,
    a: &Analysis,
    ci: usize,
    mask: Option<std::ops::Range<usize>>,
) {
    let clauses = &a.text.clauses;
    let clause = &clauses[ci];
    let mut chars: Vec<char> = clause.norm.chars().collect();
    for k in mask.into_iter().flatten() {
        if let Some(ch) = k
            .checked_sub(clause.range.start)
            .and_then(|i| chars.get_mut(i))
        {
            *ch = '#';
        }
    }
    context_ngrams(out, "C:", &chars);
    if let Some(next) = clauses.get(ci + 1) {
        context_ngrams(out, "N:", &next.norm.chars().collect::<Vec<_>>());
    }
    if ci > 0 {
        context_ngrams(out, "P:", &clauses[ci - 1].norm.chars().collect::<Vec<_>>());
    }
}

/// 1–3-grams of a clause wrapped in `^…$`, each once, prefixed with the clause's role.
fn context_ngrams(out: &mut Vec<String>, prefix: &str, clause: &[char]) {
    let mut wrapped = Vec::with_capacity(clause.len() + 2);
    wrapped.push('^');
    wrapped.extend_from_slice(clause);
    wrapped.push('$');
    let mut grams: Vec<String> = ngrams::counts(&wrapped, 1..=3)
        .into_keys()
        .map(|g| format!("{prefix}{g}"))
        .collect();
    grams.sort();
    out.extend(grams);
}
