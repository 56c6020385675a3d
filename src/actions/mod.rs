//! Sales actions a memo reports, on the matcher's evidence (action keywords, patterns and
//! example sentences) plus tense and modality: done actions are tagged, planned ones become
//! next steps, negated ones are dropped. Also next steps with dates, contacts with role hints,
//! and the vague-follow-up flag.

pub mod contacts;
pub mod dates;

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::NaiveDate;

use crate::library::Tier;
use crate::matcher::{Analysis, Matcher, Owner};
use crate::result::{ActionTag, Contact, Evidence, EvidenceKind, NeedTag, NextStep, Vague};
use crate::text::Modality;

/// Action probability from the embeddings that counts as evidence on its own.
const SEMANTIC_ACTION: f32 = 0.6;

pub struct ActionReport {
    pub actions: Vec<ActionTag>,
    pub high_value: bool,
    pub next_steps: Vec<NextStep>,
    pub contacts: Vec<Contact>,
    pub vague: Vague,
    /// Action ids mentioned only as plans / as not having happened (for evaluation).
    pub planned: Vec<String>,
    pub negated: Vec<String>,
}

/// An action the text mentions, with whether the cues say it was done.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub action: usize,
    pub clause: usize,
    pub range: Range<usize>,
    pub kind: EvidenceKind,
    pub matched: String,
    pub score: f32,
    pub modality: Modality,
}

/// Action probability from the embeddings that makes a clause a candidate for the verifier.
pub const CANDIDATE_SEMANTIC: f32 = 0.2;

/// Every action mention: keywords and patterns, clauses the embeddings give an action at least
/// `min_semantic`, and the `extra` (action, clause, score) the verifier's memo classifier
/// proposes for actions nothing else found; each with its modality from the language cues.
pub fn candidates(
    m: &Matcher,
    a: &Analysis,
    today: NaiveDate,
    min_semantic: f32,
    extra: &[(usize, usize, f32)],
) -> Vec<Candidate> {
    let lib = &m.lib;
    let clauses = &a.text.clauses;
    // Per clause: does it name a future date, and did an expectation in it not come true?
    let future: Vec<bool> = clauses
        .iter()
        .map(|c| {
            dates::resolve(&c.norm, today, &lib.language.holidays).is_some_and(|d| d.from > today)
        })
        .collect();
    let disappointed: Vec<Option<String>> = (0..clauses.len())
        .map(|i| {
            let following: Vec<&str> = clauses[i + 1..].iter().map(|c| c.norm.as_str()).collect();
            m.cues.disappointed(&clauses[i].norm, &following)
        })
        .collect();
    let action_clause = |j: usize| a.action_hits.iter().any(|h| h.clause == j);
    let modality_of = |ai: usize, ci: usize, rel: &Range<usize>| {
        if let Some(cue) = &disappointed[ci] {
            return Modality::Negated { cue: cue.clone() };
        }
        // "问采购要准入流程，对方说要等领导批，还没给": a short negation in the next two clauses.
        let later = (ci + 1..clauses.len().min(ci + 3))
            .take_while(|&j| !action_clause(j))
            .find_map(|j| m.cues.short_negation(&clauses[j].norm));
        if let Some(cue) = later {
            return Modality::Negated { cue };
        }
        let base = m.cues.action_modality(&clauses[ci].norm, rel, future[ci]);
        // A meeting or trial the customer agreed to today, for next week, was secured today.
        if matches!(base, Modality::Planned { .. }) && lib.actions[ai].agreement_counts {
            let here = m.cues.agreement(&clauses[ci].norm, rel.start);
            let before =
                (ci.saturating_sub(2)..ci).any(|j| m.cues.agreement(&clauses[j].norm, usize::MAX));
            if here || before {
                return Modality::Done;
            }
        }
        base
    };
    let mut candidates: Vec<Candidate> = Vec::new();
    for h in &a.action_hits {
        let Owner::Action(ai) = h.owner else { continue };
        let clause = &a.text.clauses[h.clause];
        let rel = h.range.start - clause.range.start..h.range.end - clause.range.start;
        let modality = modality_of(ai, h.clause, &rel);
        let score = if h.kind == EvidenceKind::Keyword {
            0.9
        } else {
            0.85
        };
        candidates.push(Candidate {
            action: ai,
            clause: h.clause,
            range: h.range.clone(),
            kind: h.kind,
            matched: h.matched.clone(),
            score,
            modality,
        });
    }
    if let Some(sem) = &a.semantic {
        for (ci, s) in sem.iter().enumerate() {
            let Some((ai, &p)) = s
                .action
                .iter()
                .enumerate()
                .max_by(|x, y| x.1.total_cmp(y.1))
            else {
                continue;
            };
            if p < min_semantic || candidates.iter().any(|c| c.clause == ci && c.action == ai) {
                continue;
            }
            let clause = &a.text.clauses[ci];
            let modality = modality_of(ai, ci, &(0..clause.norm.chars().count()));
            let example = s
                .nearest
                .get(&Owner::Action(ai))
                .map(|&(_, pi)| m.prototype_text(pi))
                .unwrap_or("");
            candidates.push(Candidate {
                action: ai,
                clause: ci,
                range: clause.range.clone(),
                kind: EvidenceKind::Semantic,
                matched: example.to_string(),
                score: p,
                modality,
            });
        }
    }
    for &(ai, ci, score) in extra {
        let Some(clause) = a.text.clauses.get(ci) else {
            continue;
        };
        if ai >= lib.actions.len() || candidates.iter().any(|c| c.action == ai) {
            continue;
        }
        let modality = modality_of(ai, ci, &(0..clause.norm.chars().count()));
        candidates.push(Candidate {
            action: ai,
            clause: ci,
            range: clause.range.clone(),
            kind: EvidenceKind::Context,
            matched: String::new(),
            score,
            modality,
        });
    }
    candidates
}

/// Whether the mentions of one action report it as done (the verifier's judgement).
type ActionJudge<'a> = &'a dyn Fn(usize, &[&Candidate]) -> crate::verifier::Judgement;

/// The action tags of `candidates`, the planned and negated action ids, and the clauses of
/// planned actions; decided by the verifier when given one (`judge` says whether an action's
/// mentions report it as done), else by the cues alone.
fn decide(
    m: &Matcher,
    a: &Analysis,
    candidates: &[Candidate],
    judge: Option<ActionJudge<'_>>,
) -> (
    Vec<ActionTag>,
    Vec<String>,
    Vec<String>,
    BTreeMap<usize, usize>,
) {
    let lib = &m.lib;
    let mut actions = Vec::new();
    let mut planned = Vec::new();
    let mut negated = Vec::new();
    let mut plan_clauses: BTreeMap<usize, usize> = BTreeMap::new();
    for (ai, def) in lib.actions.iter().enumerate() {
        let mine: Vec<&Candidate> = candidates.iter().filter(|c| c.action == ai).collect();
        if mine.is_empty() {
            continue;
        }
        // In one clause, a negated mention outweighs a done one ("见了但院长没见到" is rare; "院长
        // 这次没见到" matched by two patterns is common).
        let negated_clauses: Vec<usize> = mine
            .iter()
            .filter(|c| matches!(c.modality, Modality::Negated { .. }))
            .map(|c| c.clause)
            .collect();
        let done: Vec<&&Candidate> = mine
            .iter()
            .filter(|c| c.modality == Modality::Done && !negated_clauses.contains(&c.clause))
            .collect();
        let verdict = judge.map(|j| j(ai, &mine));
        let (is_done, confidence, evidence_from): (bool, f32, Vec<&Candidate>) = match &verdict {
            Some(v) => {
                // The evidence: the mentions the cues read as done, else every mention.
                let shown: Vec<&Candidate> = if done.is_empty() {
                    mine.clone()
                } else {
                    done.iter().map(|c| **c).collect()
                };
                (v.keep, v.probability, shown)
            }
            None => {
                let confidence = done.iter().map(|c| c.score).fold(0.0f32, f32::max);
                (
                    !done.is_empty() && confidence >= lib.action_threshold(def),
                    confidence,
                    done.iter().map(|c| **c).collect(),
                )
            }
        };
        if is_done {
            let mut evidence: Vec<Evidence> = Vec::new();
            for c in &evidence_from {
                if !evidence
                    .iter()
                    .any(|e| e.start < c.range.end && c.range.start < e.end)
                {
                    evidence.push(m.evidence(a, c.range.clone(), c.kind, &c.matched, c.score));
                }
            }
            evidence.sort_by_key(|e| e.start);
            actions.push(ActionTag {
                id: def.id.clone(),
                name: def.name.clone(),
                tier: def.tier,
                confidence: (confidence * 1000.0).round() / 1000.0,
                evidence,
                why: verdict,
            });
            continue;
        }
        // Plans and failures are read from the cues, on the mentions strong enough to count
        // without the verifier (weak semantic candidates exist only for it).
        let strong =
            |c: &&&Candidate| c.kind != EvidenceKind::Semantic || c.score >= SEMANTIC_ACTION;
        let planned_here: Vec<&&Candidate> = mine
            .iter()
            .filter(strong)
            .filter(|c| matches!(c.modality, Modality::Planned { .. }))
            .collect();
        if !planned_here.is_empty() {
            planned.push(def.id.clone());
            for c in planned_here {
                plan_clauses.entry(c.clause).or_insert(ai);
            }
        } else if !negated_clauses.is_empty() {
            negated.push(def.id.clone());
        }
    }
    (actions, planned, negated, plan_clauses)
}

pub fn classify(
    m: &Matcher,
    a: &Analysis,
    needs: &[NeedTag],
    today: NaiveDate,
    verifier: bool,
) -> ActionReport {
    let lib = &m.lib;
    let part = lib
        .verifier
        .as_deref()
        .filter(|_| verifier)
        .and_then(|v| v.actions.as_ref());
    let ids: Vec<&str> = lib.actions.iter().map(|x| x.id.as_str()).collect();
    let memo = part.map(|p| p.memo.scores(&a.text.norm_string(), &ids));
    let candidates = match (part, &memo) {
        (Some(part), Some(memo)) => {
            let found: Vec<usize> = candidates(m, a, today, CANDIDATE_SEMANTIC, &[])
                .iter()
                .map(|c| c.action)
                .collect();
            let extra = crate::verifier::extra_candidates(&part.memo, memo, a, &ids, &found);
            candidates(m, a, today, CANDIDATE_SEMANTIC, &extra)
        }
        _ => candidates(m, a, today, SEMANTIC_ACTION, &[]),
    };
    let (mut actions, planned, negated, plan_clauses) = match (part, memo) {
        (Some(part), Some(memo)) => {
            let heads = part.heads(a.semantic.is_some());
            let judge = |ai: usize, mine: &[&Candidate]| {
                let view = crate::verifier::features::MemoView {
                    open: memo.open[ai].unwrap_or(0.0),
                    topic: memo.topic[ai].unwrap_or(0.0),
                };
                let topic = crate::verifier::features::action(m, a, ai, mine, view, false);
                let state = crate::verifier::features::action(m, a, ai, mine, view, true);
                heads.judge(&topic, &state, 6)
            };
            decide(m, a, &candidates, Some(&judge))
        }
        _ => decide(m, a, &candidates, None),
    };
    actions.sort_by(|x, y| {
        tier_rank(x.tier)
            .cmp(&tier_rank(y.tier))
            .then(y.confidence.total_cmp(&x.confidence))
    });
    let high_value = actions.iter().any(|x| x.tier == Tier::High);

    // Next steps: planned actions, and clauses that commit to something at a stated time.
    let mut next_steps = Vec::new();
    for (ci, clause) in a.text.clauses.iter().enumerate() {
        let due = dates::resolve(&clause.norm, today, &lib.language.holidays);
        let action = plan_clauses.get(&ci).map(|&ai| lib.actions[ai].id.clone());
        let commits = due.is_some() && m.cues.has_plan(&clause.norm);
        if action.is_none() && !commits {
            continue;
        }
        let text = a.text.original_slice(clause.range.clone());
        next_steps.push(NextStep {
            text: text.clone(),
            when: due.as_ref().map(|d| d.text.clone()),
            due_from: due.as_ref().map(|d| d.from),
            due_to: due.as_ref().map(|d| d.to),
            action,
            evidence: m.evidence(
                a,
                clause.range.clone(),
                EvidenceKind::Pattern,
                due.as_ref().map(|d| d.text.as_str()).unwrap_or(""),
                1.0,
            ),
        });
    }

    let mut contacts = contacts::find(&a.text.norm, &lib.language.roles, &lib.language.departments);
    for c in &mut contacts {
        c.mention = a.text.original_slice(c.start..c.end);
    }

    // A planned or failed concrete action ("院长没见到", "下周去拿审批单") is concrete content too.
    let concrete = |id: &String| id != "routine_visit" && id != "vague_followup";
    let concrete_action =
        actions.iter().any(|x| concrete(&x.id)) || planned.iter().chain(&negated).any(concrete);
    let has_number = has_number(&a.text.norm);
    let dated_step = next_steps.iter().any(|s| s.due_from.is_some());
    let vague = if a.text.clauses.is_empty() {
        Vague {
            flag: true,
            reason: Some("没有内容：备忘录为空或没有识别到语音".into()),
        }
    } else if needs.is_empty()
        && !concrete_action
        && contacts.is_empty()
        && !has_number
        && !dated_step
    {
        let phrases: Vec<String> = m
            .cues
            .vague_phrases(&a.text.norm_string())
            .into_iter()
            .map(|r| a.text.original_slice(r))
            .collect();
        let mut reason = "没有具体的客户需求、销售动作、联系人、数字或带日期的下一步".to_string();
        if !phrases.is_empty() {
            reason.push_str(&format!("；只有空泛的说法：{}", phrases.join("、")));
        }
        Vague {
            flag: true,
            reason: Some(reason),
        }
    } else {
        Vague {
            flag: false,
            reason: None,
        }
    };
    ActionReport {
        actions,
        high_value,
        next_steps,
        contacts,
        vague,
        planned,
        negated,
    }
}

fn tier_rank(t: Tier) -> u8 {
    match t {
        Tier::High => 0,
        Tier::Standard => 1,
        Tier::Low => 2,
    }
}

/// A quantity: Arabic digits, 百分之…, or a Chinese numeral followed by a measure word.
fn has_number(text: &[char]) -> bool {
    const MEASURES: &str = "个台家天箱件盒支瓶包套成万千百元块点号月周年次位人把条张吨公斤斤米批期";
    text.iter().any(|c| c.is_ascii_digit())
        || text.windows(3).any(|w| w == ['百', '分', '之'])
        || text.windows(2).any(|w| {
            crate::zh::numeral_digit(w[0]).is_some() && w[0] != '一' && MEASURES.contains(w[1])
        })
        || text.windows(3).any(|w| {
            w[0] == '一' && w[1] != '下' && MEASURES.contains(w[1]) && w[1] != '点' && w[2] != '儿'
        })
}

#[cfg(test)]
mod tests {
    use super::has_number;

    fn n(s: &str) -> bool {
        has_number(&s.chars().collect::<Vec<_>>())
    }

    #[test]
    fn numbers_in_memos() {
        assert!(n("铺货率只有六成"));
        assert!(n("要等5天"));
        assert!(n("追加百分之三的陈列费"));
        assert!(n("两台卡钉"));
        assert!(!n("聊了一下，持续跟进"));
        assert!(!n("已沟通"));
    }
}
