//! Matching a memo's text against the library: keywords and synonyms (verbatim or heard wrong),
//! BM25 retrieval through tantivy, sentence-embedding similarity to the library's example
//! sentences, clause-level negation, and one calibrated confidence per need.
//!
//! A `Matcher` is compiled once per library version (dictionary, index, automata, embedded
//! prototypes) and shared read-only by every request.

pub mod embed;
pub mod homophone;
pub mod index;
pub mod pieces;
pub mod semantic;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

pub use embed::Embedder;
pub use index::Owner;

use crate::error::{Error, Result};
use crate::library::{normalize_term, Library, Weights};
use crate::result::{DroppedNeed, Evidence, EvidenceKind, NeedTag, RuledOut};
use crate::text::{self, Analyzed, Cues, Segmenter};
use homophone::HomophoneIndex;
use index::LibraryIndex;
use semantic::{ClauseSemantics, Semantic};

/// Need probability from the embeddings shown as evidence for a clause without a term.
const SEMANTIC_EVIDENCE: f32 = 0.3;
/// Cosine similarity of a clause to one of a need's counter-examples above which (and above its
/// similarity to the need's own examples) the need is not tagged from that clause.
pub const COUNTER_SIMILARITY: f32 = 0.8;
/// Need probability from the embeddings that makes a need a candidate without any term.
pub const CANDIDATE_SEMANTIC: f32 = 0.1;
/// Need probability high enough that a negated clause rules the need out.
const SEMANTIC_STRONG: f32 = 0.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TermKind {
    Keyword,
    Synonym,
}

#[derive(Debug, Clone)]
struct TermInfo {
    owner: Owner,
    kind: TermKind,
    text: String,
}

pub struct Matcher {
    pub lib: Arc<Library>,
    pub cues: Cues,
    seg: Segmenter,
    terms: AhoCorasick,
    term_info: Vec<TermInfo>,
    action_terms: AhoCorasick,
    action_term_info: Vec<TermInfo>,
    exclusions: AhoCorasick,
    exclusion_owner: Vec<usize>,
    homophones: HomophoneIndex,
    index: LibraryIndex,
    semantic: Option<Semantic>,
}

/// A library term found in the text (character range in the whole text).
#[derive(Debug, Clone)]
pub struct Hit {
    pub range: Range<usize>,
    pub clause: usize,
    pub owner: Owner,
    pub kind: EvidenceKind,
    pub matched: String,
}

/// Everything computed for one text, shared by need tagging and action classification.
pub struct Analysis {
    pub text: Analyzed,
    /// Need terms, verbatim or heard wrong.
    pub hits: Vec<Hit>,
    /// Action keywords and patterns.
    pub action_hits: Vec<Hit>,
    /// Needs whose exclusions occur, per clause.
    excluded: Vec<Vec<usize>>,
    /// BM25 score per library entry, per clause.
    pub bm25: Vec<HashMap<Owner, f32>>,
    /// Need and action probabilities from the sentence embeddings, per clause.
    pub semantic: Option<Vec<ClauseSemantics>>,
}

/// How needs are decided.
#[derive(Debug, Clone, Copy, Default)]
pub struct Decide {
    /// Use the library's fitted verifier when it has one.
    pub verifier: bool,
    /// Also report the candidates that were not tagged, and why.
    pub explain: bool,
    /// The verifier's threshold instead of the fitted one.
    pub threshold: Option<f32>,
}

/// The needs of a text: tagged, ruled out, and (when explaining) the other candidates.
#[derive(Debug, Clone, Default)]
pub struct NeedOutcome {
    pub tags: Vec<NeedTag>,
    pub ruled_out: Vec<RuledOut>,
    pub dropped: Vec<DroppedNeed>,
}

/// The readable words of a context n-gram feature ("C:满意" → "满意"), if it is one.
fn context_words(feature: &str) -> Option<String> {
    let words = feature
        .strip_prefix("C:")
        .or_else(|| feature.strip_prefix("N:"))
        .or_else(|| feature.strip_prefix("P:"))?;
    let words: String = words
        .chars()
        .filter(|c| !matches!(c, '^' | '$' | '#'))
        .collect();
    (words.chars().count() >= 2).then_some(words)
}

/// A need term found in the text, and whether the language cues negate it there.
#[derive(Debug, Clone)]
pub struct Mention {
    pub clause: usize,
    /// Character range in the whole text.
    pub range: Range<usize>,
    pub kind: EvidenceKind,
    pub matched: String,
    pub negation: Option<text::Negation>,
}

/// The part of the memo a decision about a candidate reads around.
#[derive(Debug, Clone)]
pub struct Anchor {
    pub clause: usize,
    /// Character range in the whole text: the mention, or the whole clause when there is none.
    pub range: Range<usize>,
    /// Index into the candidate's mentions.
    pub mention: Option<usize>,
}

/// A need the text touches, before anyone decides whether the memo expresses it.
#[derive(Debug, Clone)]
pub struct NeedCandidate {
    pub need: usize,
    pub features: NeedFeatures,
    /// How strongly the need's topic is present: the library's fused confidence.
    pub topic: f32,
    /// Unnegated evidence.
    pub evidence: Vec<Evidence>,
    /// The first negated mention and its cue.
    pub negated: Option<(Evidence, String)>,
    pub mentions: Vec<Mention>,
    pub anchor: Anchor,
}

/// Matching features of one need across a memo, before thresholding (for tuning and `eval`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NeedFeatures {
    /// Strongest verbatim evidence: 1 keyword, 0.85 synonym, 0.7 homophone, 0 none.
    pub lexical: f32,
    /// Highest probability of the need in any clause, from the sentence embeddings.
    pub semantic: f32,
    /// Highest BM25 score in any clause.
    pub bm25: f32,
    /// Highest BM25 score relative to the best-scoring entry of the same clause (1 = top).
    pub bm25_rel: f32,
    /// Mentioned, but every mention is negated.
    pub negated_only: bool,
}

fn build_automaton(patterns: &[String], kind: MatchKind) -> Result<AhoCorasick> {
    AhoCorasickBuilder::new()
        .match_kind(kind)
        .build(patterns)
        .map_err(|e| Error::Index(format!("term automaton: {e}")))
}

/// Character ranges of byte-offset matches.
fn char_range(s: &str, start: usize, end: usize) -> Range<usize> {
    let a = s[..start].chars().count();
    a..a + s[start..end].chars().count()
}

impl Matcher {
    /// Compile a library. With an embedder, its example sentences become semantic prototypes.
    pub fn build(lib: Arc<Library>, embedder: Option<Arc<Embedder>>) -> Result<Matcher> {
        let cues = Cues::new(&lib.language)?;
        let mut term_info = Vec::new();
        let mut exclusion_owner = Vec::new();
        let mut exclusions = Vec::new();
        for (i, n) in lib.needs.iter().enumerate() {
            for (kind, list) in [
                (TermKind::Keyword, &n.keywords),
                (TermKind::Synonym, &n.synonyms),
            ] {
                for t in list {
                    term_info.push(TermInfo {
                        owner: Owner::Need(i),
                        kind,
                        text: normalize_term(t),
                    });
                }
            }
            for e in &n.exclusions {
                exclusions.push(normalize_term(e));
                exclusion_owner.push(i);
            }
        }
        let mut action_term_info = Vec::new();
        for (i, a) in lib.actions.iter().enumerate() {
            for k in &a.keywords {
                action_term_info.push(TermInfo {
                    owner: Owner::Action(i),
                    kind: TermKind::Keyword,
                    text: normalize_term(k),
                });
            }
        }
        let patterns = |v: &[TermInfo]| v.iter().map(|t| t.text.clone()).collect::<Vec<_>>();
        let terms = build_automaton(&patterns(&term_info), MatchKind::Standard)?;
        let action_terms = build_automaton(&patterns(&action_term_info), MatchKind::Standard)?;
        let exclusions = build_automaton(&exclusions, MatchKind::Standard)?;
        let homophones = HomophoneIndex::new(
            term_info
                .iter()
                .enumerate()
                .map(|(i, t)| (t.text.as_str(), i)),
        );
        let words = term_info
            .iter()
            .chain(&action_term_info)
            .map(|t| t.text.as_str())
            .chain(lib.packs.iter().map(|p| p.title.as_str()))
            .collect::<Vec<_>>();
        let seg = Segmenter::new(words);
        let index = LibraryIndex::build(&lib, &seg)?;
        let semantic = match embedder {
            Some(e) => Some(Semantic::build(&lib, e)?),
            None => None,
        };
        Ok(Matcher {
            lib,
            cues,
            seg,
            terms,
            term_info,
            action_terms,
            action_term_info,
            exclusions,
            exclusion_owner,
            homophones,
            index,
            semantic,
        })
    }

    pub fn has_semantic(&self) -> bool {
        self.semantic.is_some()
    }

    pub fn embedding_model(&self) -> Option<&str> {
        self.semantic.as_ref().map(|p| p.embedder.name())
    }

    pub fn segmenter(&self) -> &Segmenter {
        &self.seg
    }

    /// Analyse a text: clauses, term hits, BM25 and (when `semantic` and available) similarity.
    pub fn analyze(&self, text: &str, semantic: bool) -> Result<Analysis> {
        let analyzed = text::analyze(text, &self.cues);
        let norm = analyzed.norm_string();
        let clause_of = |r: &Range<usize>| analyzed.clause_of(r.start);

        // Need terms, verbatim. Within one need, a term inside a longer one of the same need
        // is dropped ("镇痛" inside "镇痛方案").
        let mut hits: Vec<Hit> = Vec::new();
        for m in self.terms.find_overlapping_iter(&norm) {
            let info = &self.term_info[m.pattern().as_usize()];
            let range = char_range(&norm, m.start(), m.end());
            let Some(clause) = clause_of(&range) else {
                continue;
            };
            let kind = match info.kind {
                TermKind::Keyword => EvidenceKind::Keyword,
                TermKind::Synonym => EvidenceKind::Synonym,
            };
            hits.push(Hit {
                range,
                clause,
                owner: info.owner,
                kind,
                matched: info.text.clone(),
            });
        }
        let contained = |h: &Hit, all: &[Hit]| {
            all.iter().any(|o| {
                o.owner == h.owner
                    && o.range != h.range
                    && o.range.start <= h.range.start
                    && h.range.end <= o.range.end
            })
        };
        let snapshot = hits.clone();
        hits.retain(|h| !contained(h, &snapshot));

        // Terms heard wrong, where no verbatim term already covers the text.
        let boundaries: std::collections::HashSet<usize> = self.seg.boundaries(&norm);
        for heard in self.homophones.find(&analyzed.norm) {
            let range = heard.start..heard.end;
            let info = &self.term_info[heard.id];
            let heard_text: String = analyzed.norm[range.clone()].iter().collect();
            if self.seg.is_common_word(&heard_text) {
                continue;
            }
            // A misheard word is a word: it must not start or end inside another one ("认识一下"
            // does not contain 试一下).
            if !boundaries.contains(&range.start) || !boundaries.contains(&range.end) {
                continue;
            }
            if hits.iter().any(|h| {
                h.owner == info.owner && h.range.start < range.end && range.start < h.range.end
            }) {
                continue;
            }
            let Some(clause) = clause_of(&range) else {
                continue;
            };
            hits.push(Hit {
                range,
                clause,
                owner: info.owner,
                kind: EvidenceKind::Homophone,
                matched: info.text.clone(),
            });
        }

        let mut excluded = vec![Vec::new(); analyzed.clauses.len()];
        for m in self.exclusions.find_overlapping_iter(&norm) {
            let range = char_range(&norm, m.start(), m.end());
            if let Some(c) = clause_of(&range) {
                excluded[c].push(self.exclusion_owner[m.pattern().as_usize()]);
            }
        }

        let mut action_hits = Vec::new();
        for m in self.action_terms.find_overlapping_iter(&norm) {
            let info = &self.action_term_info[m.pattern().as_usize()];
            let range = char_range(&norm, m.start(), m.end());
            let Some(clause) = clause_of(&range) else {
                continue;
            };
            action_hits.push(Hit {
                range,
                clause,
                owner: info.owner,
                kind: EvidenceKind::Keyword,
                matched: info.text.clone(),
            });
        }
        for (ci, c) in analyzed.clauses.iter().enumerate() {
            for (ai, a) in self.lib.actions.iter().enumerate() {
                for (re, src) in a.regexes.iter().zip(&a.patterns) {
                    for m in re.find_iter(&c.norm) {
                        let r = char_range(&c.norm, m.start(), m.end());
                        let range = c.range.start + r.start..c.range.start + r.end;
                        action_hits.push(Hit {
                            range,
                            clause: ci,
                            owner: Owner::Action(ai),
                            kind: EvidenceKind::Pattern,
                            matched: src.clone(),
                        });
                    }
                }
            }
        }

        let n_needs = self.lib.needs.len();
        let mut bm25 = Vec::with_capacity(analyzed.clauses.len());
        for c in &analyzed.clauses {
            let words: Vec<String> = self
                .seg
                .tokens(&c.norm)
                .into_iter()
                .map(|t| t.text)
                .collect();
            bm25.push(
                self.index
                    .search(&words, n_needs, 10)?
                    .into_iter()
                    .collect::<HashMap<_, _>>(),
            );
        }

        let semantic = match (&self.semantic, semantic && !analyzed.clauses.is_empty()) {
            (Some(sem), true) => {
                let texts: Vec<&str> = analyzed.clauses.iter().map(|c| c.norm.as_str()).collect();
                Some(sem.clauses(&texts)?)
            }
            _ => None,
        };
        Ok(Analysis {
            text: analyzed,
            hits,
            action_hits,
            excluded,
            bm25,
            semantic,
        })
    }

    /// The evidence object for a range of the analysed text.
    pub fn evidence(
        &self,
        a: &Analysis,
        range: Range<usize>,
        kind: EvidenceKind,
        matched: &str,
        score: f32,
    ) -> Evidence {
        Evidence {
            start: range.start,
            end: range.end,
            text: a.text.original_slice(range),
            kind,
            matched: matched.to_string(),
            score,
        }
    }

    /// The scoring weights for how `a` was analysed (with or without embeddings).
    pub fn weights(&self, a: &Analysis) -> &Weights {
        if a.semantic.is_some() {
            &self.lib.scoring.hybrid
        } else {
            &self.lib.scoring.keyword
        }
    }

    /// The example sentence behind a semantic match.
    pub fn prototype_text(&self, idx: usize) -> &str {
        self.semantic
            .as_ref()
            .map(|p| p.text[idx].as_str())
            .unwrap_or("")
    }

    /// Need tags and needs ruled out by negation, decided by the verifier when `how.verifier`
    /// and the library has one, else by each need's fused confidence and threshold.
    pub fn tag_needs(&self, a: &Analysis, how: Decide) -> NeedOutcome {
        let verifier = self.lib.verifier.as_deref().filter(|_| how.verifier);
        let memo = verifier.map(|v| {
            let ids: Vec<&str> = self.lib.needs.iter().map(|n| n.id.as_str()).collect();
            v.needs.memo.scores(&a.text.norm_string(), &ids)
        });
        let mut out = NeedOutcome::default();
        let memo_vector = std::cell::OnceCell::new();
        let candidates = match (verifier, &memo) {
            (Some(v), Some(scores)) => {
                let ids: Vec<&str> = self.lib.needs.iter().map(|n| n.id.as_str()).collect();
                let mut found = self.need_candidates(a);
                let present: Vec<usize> = found.iter().map(|c| c.need).collect();
                let extra =
                    crate::verifier::extra_candidates(&v.needs.memo, scores, a, &ids, &present);
                found.extend(
                    self.need_candidates_with(a, &extra)
                        .into_iter()
                        .filter(|c| !present.contains(&c.need)),
                );
                found
            }
            _ => self.need_candidates(a),
        };
        for c in candidates {
            let need = &self.lib.needs[c.need];
            let view = match (verifier, &memo) {
                (Some(v), Some(s)) => crate::verifier::memo_view(
                    &v.needs.memo,
                    s,
                    a,
                    c.need,
                    &need.id,
                    c.anchor.clause,
                ),
                _ => None,
            };
            let judged = match (verifier, view) {
                (Some(v), Some(view)) => {
                    let heads = v.needs.heads(a.semantic.is_some());
                    let topic = crate::verifier::features::need(a, &c, view, false);
                    let state = crate::verifier::features::need(a, &c, view, true);
                    let mut j = heads.judge(&topic, &state, 6, how.threshold);
                    if let Some(hit) = self.counter_example(a, &c, &memo_vector) {
                        j.keep = false;
                        j.reasons.insert(
                            0,
                            crate::verifier::Reason {
                                feature: format!("counter_example:{}", hit.0),
                                weight: -hit.1,
                            },
                        );
                    }
                    Some(j)
                }
                _ => None,
            };
            let keep = match &judged {
                Some(j) => j.keep,
                None => !c.evidence.is_empty() && c.topic >= self.lib.need_threshold(need),
            };
            let confidence = judged.as_ref().map(|j| j.probability).unwrap_or(c.topic);
            if keep {
                let mut evidence = c.evidence;
                if evidence.is_empty() {
                    // Kept on the learned evidence alone: show the clause it read.
                    evidence.push(self.evidence(
                        a,
                        c.anchor.range.clone(),
                        EvidenceKind::Context,
                        "",
                        confidence,
                    ));
                }
                out.tags.push(NeedTag {
                    id: need.id.clone(),
                    name: need.name.clone(),
                    domain: need.domain.clone(),
                    confidence: (confidence * 1000.0).round() / 1000.0,
                    evidence,
                    packs: need
                        .packs
                        .iter()
                        .filter_map(|p| self.lib.pack(p).cloned())
                        .collect(),
                    why: judged,
                });
                continue;
            }
            let ruled = match (&judged, c.negated) {
                (_, Some((ev, cue))) if c.features.negated_only || judged.is_some() => {
                    Some((ev, cue))
                }
                // The verifier found the topic and not the need: the words that weighed most
                // against it are the cue.
                (Some(j), None) if j.topic >= 0.5 => j
                    .reasons
                    .iter()
                    .filter(|r| r.weight < 0.0)
                    .find_map(|r| context_words(&r.feature))
                    .map(|cue| {
                        (
                            self.evidence(
                                a,
                                c.anchor.range.clone(),
                                c.anchor
                                    .mention
                                    .map(|i| c.mentions[i].kind)
                                    .unwrap_or(EvidenceKind::Context),
                                "",
                                j.topic,
                            ),
                            cue,
                        )
                    }),
                _ => None,
            };
            if let Some((evidence, cue)) = ruled {
                out.ruled_out.push(RuledOut {
                    id: need.id.clone(),
                    name: need.name.clone(),
                    evidence,
                    cue,
                });
            }
            if how.explain {
                out.dropped.push(DroppedNeed {
                    id: need.id.clone(),
                    name: need.name.clone(),
                    confidence: (confidence * 1000.0).round() / 1000.0,
                    clause: a.text.original_slice(
                        a.text
                            .clauses
                            .get(c.anchor.clause)
                            .map(|x| x.range.clone())
                            .unwrap_or(0..0),
                    ),
                    why: judged,
                });
            }
        }
        out.tags
            .sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        out
    }

    /// The closest counter-example of the candidate's need, when the anchor clause or the
    /// whole memo says nearly the same (and is closer to it than to the need's own examples):
    /// (the counter-example, its similarity). `memo` caches the memo's vector.
    fn counter_example(
        &self,
        a: &Analysis,
        c: &NeedCandidate,
        memo: &std::cell::OnceCell<Option<Vec<f32>>>,
    ) -> Option<(String, f32)> {
        let sem = self.semantic.as_ref()?;
        if !sem.has_counter(c.need) {
            return None;
        }
        let clause = a.semantic.as_ref()?.get(c.anchor.clause)?;
        let own = clause
            .nearest
            .get(&Owner::Need(c.need))
            .map(|x| x.0)
            .unwrap_or(0.0);
        let memo = memo
            .get_or_init(|| {
                sem.embedder
                    .embed(&[a.text.norm_string().as_str()])
                    .ok()
                    .and_then(|mut v| v.pop())
            })
            .as_deref();
        [Some(clause.vector.as_slice()), memo]
            .into_iter()
            .flatten()
            .filter_map(|v| sem.nearest_counter(c.need, v))
            .max_by(|x, y| x.0.total_cmp(&y.0))
            .filter(|(sim, _)| *sim >= COUNTER_SIMILARITY && *sim > own)
            .map(|(sim, text)| (text.to_string(), sim))
    }

    /// Every need the text touches: a term of it (negated or not), a clause the embeddings
    /// give it at least `CANDIDATE_SEMANTIC`, or a clause whose BM25 ranks it first.
    pub fn need_candidates(&self, a: &Analysis) -> Vec<NeedCandidate> {
        self.need_candidates_with(a, &[])
    }

    /// The candidates, and for each (need, clause, _) of `extra` that is not one already, that
    /// need anchored at that clause (the verifier's memo classifier proposes them).
    pub fn need_candidates_with(
        &self,
        a: &Analysis,
        extra: &[(usize, usize, f32)],
    ) -> Vec<NeedCandidate> {
        if a.text.clauses.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<NeedCandidate> = (0..self.lib.needs.len())
            .map(|ni| self.need_evidence(a, ni))
            .filter(|c| {
                !c.mentions.is_empty()
                    || !c.evidence.is_empty()
                    || c.negated.is_some()
                    || c.features.semantic >= CANDIDATE_SEMANTIC
            })
            .collect();
        for &(ni, ci, _) in extra {
            if ni >= self.lib.needs.len()
                || ci >= a.text.clauses.len()
                || out.iter().any(|c| c.need == ni)
            {
                continue;
            }
            let mut c = self.need_evidence(a, ni);
            c.anchor = Anchor {
                clause: ci,
                range: a.text.clauses[ci].range.clone(),
                mention: None,
            };
            out.push(c);
        }
        out
    }

    /// Features, evidence, mentions and the anchor clause of one need.
    pub fn need_evidence(&self, a: &Analysis, ni: usize) -> NeedCandidate {
        let owner = Owner::Need(ni);
        let mut f = NeedFeatures::default();
        let mut evidence: Vec<Evidence> = Vec::new();
        let mut negated: Option<(Evidence, String)> = None;
        let mut mentions: Vec<Mention> = Vec::new();
        let mut any_mention = false;
        let mut best_retrieval: Option<(Evidence, usize)> = None;
        // The clause where the embeddings see this need most, among clauses not negated.
        let mut best_semantic: Option<(f32, usize)> = None;
        let n_clauses = a.text.clauses.len();
        for (ci, clause) in a.text.clauses.iter().enumerate() {
            if a.excluded[ci].contains(&ni) {
                continue;
            }
            // Up to two following clauses without need terms of their own may rule this one out.
            let following: Vec<&str> = (ci + 1..n_clauses.min(ci + 3))
                .take_while(|&j| !a.hits.iter().any(|h| h.clause == j))
                .map(|j| a.text.clauses[j].norm.as_str())
                .collect();
            let protected: Vec<Range<usize>> = a
                .hits
                .iter()
                .filter(|h| h.clause == ci)
                .map(|h| h.range.start - clause.range.start..h.range.end - clause.range.start)
                .collect();
            let mut clause_positive = false;
            let mut clause_negated = false;
            for h in a.hits.iter().filter(|h| h.clause == ci && h.owner == owner) {
                any_mention = true;
                let rel = h.range.start - clause.range.start..h.range.end - clause.range.start;
                let strength = lexical_strength(h.kind);
                let negation = self
                    .cues
                    .need_negation(&clause.norm, &rel, &protected, &following);
                match &negation {
                    Some(neg) => {
                        clause_negated = true;
                        if negated.is_none() {
                            negated = Some((
                                self.evidence(a, h.range.clone(), h.kind, &h.matched, strength),
                                neg.cue.clone(),
                            ));
                        }
                    }
                    None => {
                        clause_positive = true;
                        f.lexical = f.lexical.max(strength);
                        evidence.push(self.evidence(
                            a,
                            h.range.clone(),
                            h.kind,
                            &h.matched,
                            strength,
                        ));
                    }
                }
                mentions.push(Mention {
                    clause: ci,
                    range: h.range.clone(),
                    kind: h.kind,
                    matched: h.matched.clone(),
                    negation,
                });
            }
            if clause_negated && !clause_positive {
                continue;
            }
            let sem = a
                .semantic
                .as_ref()
                .map(|s| (s[ci].need[ni], s[ci].nearest.get(&owner).map(|x| x.1)));
            if !clause_positive {
                // Without a verbatim term here, the clause's similarity and BM25 only count when
                // the clause as a whole is not negated.
                if let Some(neg) = self.cues.clause_negation(&clause.norm, &following) {
                    if let Some((p, Some(pi))) = sem {
                        if p >= SEMANTIC_STRONG && negated.is_none() {
                            negated = Some((
                                self.evidence(
                                    a,
                                    clause.range.clone(),
                                    EvidenceKind::Semantic,
                                    self.prototype_text(pi),
                                    p,
                                ),
                                neg.cue,
                            ));
                            any_mention = true;
                        }
                    }
                    continue;
                }
            }
            let bm = a.bm25[ci].get(&owner).copied().unwrap_or(0.0);
            let top = a.bm25[ci]
                .iter()
                .filter(|(o, _)| matches!(o, Owner::Need(_)))
                .map(|(_, s)| *s)
                .fold(0.0f32, f32::max);
            f.bm25 = f.bm25.max(bm);
            if top > 0.0 {
                f.bm25_rel = f.bm25_rel.max(bm / top);
                if !clause_positive
                    && bm >= top
                    && bm > best_retrieval.as_ref().map(|e| e.0.score).unwrap_or(0.0)
                {
                    best_retrieval = Some((
                        self.evidence(a, clause.range.clone(), EvidenceKind::Retrieval, "", bm),
                        ci,
                    ));
                }
            }
            if let Some((p, nearest)) = sem {
                f.semantic = f.semantic.max(p);
                if best_semantic.is_none_or(|(b, _)| p > b) {
                    best_semantic = Some((p, ci));
                }
                if p >= SEMANTIC_EVIDENCE && !clause_positive {
                    let example = nearest.map(|pi| self.prototype_text(pi)).unwrap_or("");
                    evidence.push(self.evidence(
                        a,
                        clause.range.clone(),
                        EvidenceKind::Semantic,
                        example,
                        p,
                    ));
                }
            }
        }
        let retrieval_clause = best_retrieval.as_ref().map(|r| r.1);
        if evidence.is_empty() {
            evidence.extend(best_retrieval.map(|r| r.0));
        }
        f.negated_only = any_mention && f.lexical == 0.0 && negated.is_some();
        if f.negated_only {
            evidence
                .retain(|e| e.kind != EvidenceKind::Semantic && e.kind != EvidenceKind::Retrieval);
        }
        evidence.sort_by(|x, y| x.start.cmp(&y.start).then(y.score.total_cmp(&x.score)));
        let anchor = anchor(a, &mentions, best_semantic, retrieval_clause);
        let topic = fuse(&f, self.weights(a));
        NeedCandidate {
            need: ni,
            features: f,
            topic,
            evidence,
            negated,
            mentions,
            anchor,
        }
    }
}

/// Where the decision about a need reads the memo: the strongest unnegated mention (the first
/// of equals), else the clause the embeddings favour, else the clause BM25 ranks it first in,
/// else the first negated mention.
fn anchor(
    a: &Analysis,
    mentions: &[Mention],
    best_semantic: Option<(f32, usize)>,
    retrieval_clause: Option<usize>,
) -> Anchor {
    let whole = |ci: usize| Anchor {
        clause: ci,
        range: a
            .text
            .clauses
            .get(ci)
            .map(|c| c.range.clone())
            .unwrap_or(0..0),
        mention: None,
    };
    let strongest = mentions
        .iter()
        .enumerate()
        .filter(|(_, m)| m.negation.is_none())
        .max_by(|(i, x), (j, y)| {
            lexical_strength(x.kind)
                .total_cmp(&lexical_strength(y.kind))
                .then(j.cmp(i))
        });
    if let Some((i, m)) = strongest {
        return Anchor {
            clause: m.clause,
            range: m.range.clone(),
            mention: Some(i),
        };
    }
    if let Some((p, ci)) = best_semantic {
        if p >= SEMANTIC_EVIDENCE || retrieval_clause.is_none() && mentions.is_empty() {
            return whole(ci);
        }
    }
    if let Some(ci) = retrieval_clause {
        return whole(ci);
    }
    if let Some(m) = mentions.first() {
        return Anchor {
            clause: m.clause,
            range: m.range.clone(),
            mention: Some(0),
        };
    }
    whole(best_semantic.map(|b| b.1).unwrap_or(0))
}

/// Why each need with any signal did or did not fire (for `needtag tag --explain`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Explained {
    pub id: String,
    pub features: NeedFeatures,
    pub confidence: f32,
    pub threshold: f32,
    pub evidence: Vec<Evidence>,
    pub negated: Option<(Evidence, String)>,
}

impl Matcher {
    pub fn explain(&self, a: &Analysis) -> Vec<Explained> {
        let mut out: Vec<Explained> = (0..self.lib.needs.len())
            .filter_map(|ni| {
                let c = self.need_evidence(a, ni);
                (c.features.lexical > 0.0
                    || c.features.semantic >= 0.05
                    || c.features.bm25 > 0.0
                    || c.negated.is_some())
                .then(|| Explained {
                    id: self.lib.needs[ni].id.clone(),
                    confidence: c.topic,
                    features: c.features,
                    threshold: self.lib.need_threshold(&self.lib.needs[ni]),
                    evidence: c.evidence,
                    negated: c.negated,
                })
            })
            .collect();
        out.sort_by(|x, y| y.confidence.total_cmp(&x.confidence));
        out
    }
}

fn lexical_strength(kind: EvidenceKind) -> f32 {
    match kind {
        EvidenceKind::Keyword => 1.0,
        EvidenceKind::Synonym => 0.85,
        EvidenceKind::Homophone => 0.7,
        _ => 0.0,
    }
}

/// One confidence from the features: a logistic model whose weights come from the library
/// (`[scoring]` in library.toml, fitted on labeled memos by `needtag eval --fit`).
pub fn fuse(f: &NeedFeatures, w: &Weights) -> f32 {
    let z = w.bias
        + w.lexical * f.lexical
        + w.semantic * f.semantic
        + w.bm25_rel * f.bm25_rel
        + w.bm25_log * (1.0 + f.bm25).ln()
        + w.lexical_semantic * f.lexical * f.semantic;
    1.0 / (1.0 + (-z).exp())
}
