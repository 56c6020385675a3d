//! Scopes of negation, plans and completion, from the cue words in the library's
//! `language.toml`. All offsets are in characters of a clause's normalised text.

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::error::{Error, Result};
use crate::library::Language;

/// Compiled cue sets.
pub struct Cues {
    breaks: AhoCorasick,
    neg_before: AhoCorasick,
    neg_after: AhoCorasick,
    not_negation: AhoCorasick,
    double: AhoCorasick,
    resolved_later: AhoCorasick,
    standalone: Vec<String>,
    window: usize,
    plan: AhoCorasick,
    done: AhoCorasick,
    agreement: AhoCorasick,
    counterfactual: AhoCorasick,
    tense_negation: AhoCorasick,
    vague: AhoCorasick,
}

/// Why a need mention does not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negation {
    /// The cue word that negated it.
    pub cue: String,
    /// `before` ("不需要培训"), `after` ("库存还够") or `next_clause` ("培训的事，暂时不需要").
    pub kind: &'static str,
}

/// Whether an action a memo mentions was done, is planned, or did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modality {
    Done,
    Planned { cue: String },
    Negated { cue: String },
}

fn automaton(words: &[String], kind: MatchKind) -> Result<AhoCorasick> {
    let words: Vec<String> = words
        .iter()
        .map(|w| crate::library::normalize_term(w))
        .filter(|w| !w.is_empty())
        .collect();
    AhoCorasickBuilder::new()
        .match_kind(kind)
        .build(&words)
        .map_err(|e| Error::Index(format!("cue automaton: {e}")))
}

/// Character ranges of the matches of `ac` in `s` (all overlapping matches when the automaton
/// allows it).
fn find(ac: &AhoCorasick, s: &str) -> Vec<Range<usize>> {
    let to_char = |byte: usize| s[..byte].chars().count();
    if ac.match_kind() == MatchKind::Standard {
        ac.find_overlapping_iter(s)
            .map(|m| to_char(m.start())..to_char(m.end()))
            .collect()
    } else {
        ac.find_iter(s)
            .map(|m| to_char(m.start())..to_char(m.end()))
            .collect()
    }
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

fn chars(s: &str, r: &Range<usize>) -> String {
    s.chars().skip(r.start).take(r.len()).collect()
}

impl Cues {
    pub fn new(lang: &Language) -> Result<Cues> {
        let n = &lang.negation;
        Ok(Cues {
            breaks: automaton(&lang.clause.breaks, MatchKind::LeftmostLongest)?,
            neg_before: automaton(&n.before, MatchKind::Standard)?,
            neg_after: automaton(&n.after, MatchKind::Standard)?,
            not_negation: automaton(&n.not_negation, MatchKind::Standard)?,
            double: automaton(&n.double, MatchKind::Standard)?,
            resolved_later: automaton(&n.resolved_later, MatchKind::Standard)?,
            standalone: n
                .standalone
                .iter()
                .map(|w| strip_fillers(&crate::library::normalize_term(w)))
                .filter(|w| !w.is_empty())
                .collect(),
            window: n.window,
            plan: automaton(&lang.tense.plan, MatchKind::Standard)?,
            done: automaton(&lang.tense.done, MatchKind::Standard)?,
            counterfactual: automaton(&lang.tense.counterfactual, MatchKind::Standard)?,
            agreement: automaton(&lang.tense.agreement, MatchKind::Standard)?,
            tense_negation: automaton(&lang.tense.negation, MatchKind::Standard)?,
            vague: automaton(&lang.vague.phrases, MatchKind::LeftmostLongest)?,
        })
    }

    /// Where discourse markers start new clauses.
    pub fn clause_breaks(&self, s: &str) -> Vec<Range<usize>> {
        find(&self.breaks, s)
    }

    /// Vague follow-up phrases ("已沟通，持续跟进") in a text.
    pub fn vague_phrases(&self, s: &str) -> Vec<Range<usize>> {
        find(&self.vague, s)
    }

    /// Cue matches of `ac` in `clause` that are real cues: not inside a protected span (the
    /// evidence terms themselves) nor part of a phrase that only looks negative ("不到位").
    fn live(
        &self,
        ac: &AhoCorasick,
        clause: &str,
        protected: &[Range<usize>],
    ) -> Vec<Range<usize>> {
        let masks: Vec<Range<usize>> = find(&self.not_negation, clause)
            .into_iter()
            .chain(protected.iter().cloned())
            .collect();
        find(ac, clause)
            .into_iter()
            .filter(|m| !masks.iter().any(|k| overlaps(m, k)))
            .collect()
    }

    /// Is the need mentioned at `term` (within `clause`) negated or declared resolved?
    /// `protected` are the spans of all evidence terms in the clause; `next` is the following
    /// clause, which can negate this one on its own ("培训的事，暂时不需要").
    pub fn need_negation(
        &self,
        clause: &str,
        term: &Range<usize>,
        protected: &[Range<usize>],
        following: &[&str],
    ) -> Option<Negation> {
        let doubles = find(&self.double, clause);
        // Other terms mask cues inside them; this term does not, so "不缺货" (不缺 over 缺货) counts.
        let others: Vec<Range<usize>> = protected.iter().filter(|p| *p != term).cloned().collect();
        let before = self
            .live(&self.neg_before, clause, &others)
            .into_iter()
            .filter(|c| {
                c.start < term.start
                    && ((c.end <= term.start && term.start - c.end <= self.window)
                        || c.end <= term.end)
            })
            .filter(|c| !doubles.iter().any(|d| overlaps(c, d)))
            .max_by_key(|c| (c.end, c.len()));
        if let Some(c) = before {
            return Some(Negation {
                cue: chars(clause, &c),
                kind: "before",
            });
        }
        let after = self
            .live(&self.neg_after, clause, protected)
            .into_iter()
            .filter(|c| c.start >= term.end && c.start - term.end <= self.window + 2)
            .filter(|c| !doubles.iter().any(|d| overlaps(c, d)))
            .min_by_key(|c| (c.start, std::cmp::Reverse(c.len())));
        if let Some(c) = after {
            return Some(Negation {
                cue: chars(clause, &c),
                kind: "after",
            });
        }
        self.later_clauses_negate(following)
    }

    /// The clauses after a mention (up to two, without terms of their own) can rule it out: one
    /// that is only a negation ("培训的事，暂时不需要"), or one that says the problem went away
    /// ("换了货以后没再出现了").
    pub fn later_clauses_negate(&self, following: &[&str]) -> Option<Negation> {
        if let Some(n) = following.first().and_then(|n| self.next_clause_negates(n)) {
            return Some(n);
        }
        following.iter().take(2).find_map(|f| {
            self.live(&self.resolved_later, f, &[])
                .first()
                .map(|c| Negation {
                    cue: chars(f, c),
                    kind: "resolved_later",
                })
        })
    }

    /// A following clause that is nothing but a negation ("暂时不需要") negates the clause before.
    fn next_clause_negates(&self, next: &str) -> Option<Negation> {
        let core = strip_fillers(next);
        let core = core
            .strip_prefix("但是")
            .or_else(|| core.strip_prefix("不过"))
            .or_else(|| core.strip_prefix("可是"))
            .unwrap_or(&core);
        self.standalone
            .iter()
            .find(|s| !core.is_empty() && core == s.as_str())
            .map(|cue| Negation {
                cue: cue.clone(),
                kind: "next_clause",
            })
    }

    /// Is a whole clause negated, for evidence without a term to anchor on (semantic matches):
    /// any live negation cue in it, or a negating next clause.
    pub fn clause_negation(&self, clause: &str, following: &[&str]) -> Option<Negation> {
        let doubles = find(&self.double, clause);
        let n = clause.chars().count();
        let live = |ac: &AhoCorasick| {
            self.live(ac, clause, &[])
                .into_iter()
                .find(|c| !doubles.iter().any(|d| overlaps(c, d)) && c.end < n.max(1) + 1)
        };
        if let Some(c) = live(&self.neg_before).filter(|c| c.end < n) {
            return Some(Negation {
                cue: chars(clause, &c),
                kind: "before",
            });
        }
        if let Some(c) = live(&self.neg_after).filter(|c| c.start > 0) {
            return Some(Negation {
                cue: chars(clause, &c),
                kind: "after",
            });
        }
        self.later_clauses_negate(following)
    }

    /// Done, planned or negated, for an action mentioned at `span` within `clause`.
    /// `future` says the clause names a date after the memo's day ("周四下午去拿审批单").
    pub fn action_modality(&self, clause: &str, span: &Range<usize>, future: bool) -> Modality {
        let negation = self
            .live(&self.tense_negation, clause, &[])
            .into_iter()
            .filter(|c| {
                (c.start < span.end && c.end > span.start)
                    || (c.end <= span.start && span.start - c.end <= 4)
                    || (c.start >= span.end && c.start - span.end <= 6)
            })
            .min_by_key(|c| c.start);
        if let Some(c) = negation {
            return Modality::Negated {
                cue: chars(clause, &c),
            };
        }
        // Completion markers count inside the action, right after it, or shortly before it.
        let done = find(&self.done, clause)
            .into_iter()
            .filter(|c| {
                (c.start >= span.start && c.start <= span.end + 1)
                    || (c.end <= span.start && span.start - c.end <= 6)
            })
            .map(|c| c.start)
            .min();
        let plan = find(&self.plan, clause)
            .into_iter()
            .filter(|c| {
                (c.end <= span.start && span.start - c.end <= 12)
                    || (c.start >= span.start && c.start < span.end)
            })
            .min_by_key(|c| c.start);
        match (plan, done) {
            // "已经约好了下周三见院长": the meeting is secured, the date is in the future.
            (Some(p), Some(d)) if d < p.start => Modality::Done,
            (Some(p), _) => Modality::Planned {
                cue: chars(clause, &p),
            },
            (None, None) if future => Modality::Planned {
                cue: "将来的日期".into(),
            },
            _ => Modality::Done,
        }
    }

    /// An expectation that did not come true: a counterfactual cue ("本来", "原定") in this
    /// clause and a negation in one of the next two ("结果……没见到").
    pub fn disappointed(&self, clause: &str, following: &[&str]) -> Option<String> {
        let first = find(&self.counterfactual, clause)
            .into_iter()
            .map(|c| c.end)
            .min()?;
        // A negation later in the same clause ("原定今天的科室会因为……没开成") or in the next two.
        if let Some(c) = self
            .live(&self.tense_negation, clause, &[])
            .into_iter()
            .find(|c| c.start >= first)
        {
            return Some(chars(clause, &c));
        }
        following.iter().take(2).find_map(|f| {
            self.live(&self.tense_negation, f, &[])
                .first()
                .map(|c| chars(f, c))
        })
    }

    /// A short clause that only says something did not happen ("还没给", "没批下来").
    pub fn short_negation(&self, clause: &str) -> Option<String> {
        let core = strip_fillers(clause);
        if core.chars().count() > 8 {
            return None;
        }
        // It must start with the negation, and not be "没什么…" / "没意见" (nothing to report).
        let cue = self
            .live(&self.tense_negation, &core, &[])
            .into_iter()
            .find(|c| c.start == 0)?;
        let rest: String = core.chars().skip(cue.end).collect();
        let nothing = [
            "什么",
            "啥",
            "有什么",
            "多大",
            "意见",
            "异议",
            "问题",
            "事",
            "关系",
            "情况",
            "特别",
        ];
        if nothing.iter().any(|n| rest.starts_with(n)) {
            return None;
        }
        Some(chars(&core, &cue))
    }

    /// An agreement word ("同意", "答应", "松口", "确认") before `before` in a clause.
    pub fn agreement(&self, clause: &str, before: usize) -> bool {
        find(&self.agreement, clause)
            .iter()
            .any(|c| c.start < before)
    }

    /// Plan cues anywhere in a clause (for next steps).
    pub fn has_plan(&self, clause: &str) -> bool {
        !find(&self.plan, clause).is_empty()
    }
}

/// A clause without the reporting and filler words around its content ("客户说暂时不需要了" →
/// "暂时不需要").
fn strip_fillers(s: &str) -> String {
    let mut t = s.to_string();
    for f in [
        "客户说",
        "他们说",
        "他说",
        "她说",
        "老板说",
        "对方说",
        "说",
        "目前",
        "现在",
        "这块",
        "这方面",
        "这个",
        "那个",
        "的话",
        "倒是",
        "确实",
        "其实",
        "也",
        "都",
        "就",
        "嗯",
        "啊",
        "呢",
        "吧",
        "了",
        "的",
    ] {
        t = t.replace(f, "");
    }
    t
}
