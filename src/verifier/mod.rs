//! Whether the memo *expresses* a need, for each need the matcher found a trace of.
//!
//! The matcher's terms, BM25 and embeddings say that a need's topic is present. A sales
//! manager needs more: the customer has this need now, it is not resolved, satisfied, done,
//! routine, deferred, somebody else's, or another sense of the word. The verifier decides
//! that from labeled memos:
//!
//! - a memo-level classifier ([`memo`]) rates every need from the memo's character n-grams:
//!   open need, and topic at all;
//! - two logistic models read each candidate's need-independent features ([`features`]):
//!   is the topic really there (`topic`), and is it expressed as an open need (`state`, with
//!   the n-grams around the mention); their product is the tag's probability;
//! - a counter-example the analysts wrote into the library ("not this need") vetoes a tag
//!   whose clause says nearly the same thing.
//!
//! The weights are data: `verifier.json` in the library, fitted by `needtag fit` on labeled
//! memos pooled over all needs, and refused when fitted against another feature schema.

pub mod features;
pub mod fit;
pub mod linear;
pub mod memo;
pub mod ngrams;

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use features::Features;
use linear::{Linear, Row};
use memo::{Head, MemoClassifier};
use ngrams::Tfidf;

/// The file name of the fitted weights inside a library directory.
pub const FILE: &str = "verifier.json";

/// The memo classifier's "mentioned" probability from which a label nothing else found becomes
/// a candidate of its own.
pub const MEMO_CANDIDATE: f32 = 0.3;

/// The memo classifier's view of label `label` (library order, id `id`) for a candidate
/// anchored at clause `clause`: the whole memo's scores from `scores`, and the window's.
/// `None` when the classifier was not fitted on this label.
pub fn memo_view(
    memo: &MemoClassifier,
    scores: &memo::MemoScores,
    a: &crate::matcher::Analysis,
    label: usize,
    id: &str,
    clause: usize,
) -> Option<features::MemoView> {
    let open = (*scores.open.get(label)?)?;
    let topic = (*scores.topic.get(label)?)?;
    let head = memo.labels.iter().position(|x| x == id)?;
    let (window_open, window_topic) = memo.label_scores(&features::window_text(a, clause), head);
    Some(features::MemoView {
        open,
        topic,
        window_open,
        window_topic,
    })
}

/// Candidates the memo classifier proposes: (label, clause, probability) for every label in
/// `ids` (library order) not in `found` whose "mentioned" probability reaches
/// [`MEMO_CANDIDATE`], anchored at the clause its open head rates highest.
pub fn extra_candidates(
    memo: &MemoClassifier,
    scores: &memo::MemoScores,
    a: &crate::matcher::Analysis,
    ids: &[&str],
    found: &[usize],
) -> Vec<(usize, usize, f32)> {
    let wanted: Vec<(usize, f32)> = (0..ids.len())
        .filter(|i| !found.contains(i))
        .filter_map(|i| {
            scores.topic[i]
                .filter(|&p| p >= MEMO_CANDIDATE)
                .map(|p| (i, p))
        })
        .collect();
    if wanted.is_empty() || a.text.clauses.is_empty() {
        return Vec::new();
    }
    let per_clause: Vec<Vec<f32>> = a
        .text
        .clauses
        .iter()
        .map(|c| memo.clause_logits(&c.norm))
        .collect();
    wanted
        .into_iter()
        .filter_map(|(i, p)| {
            let head = memo.labels.iter().position(|x| x == ids[i])?;
            let best = (0..per_clause.len())
                .max_by(|&x, &y| per_clause[x][head].total_cmp(&per_clause[y][head]))?;
            Some((i, best, p))
        })
        .collect()
}

/// A logistic model whose features have names.
#[derive(Debug, Clone)]
pub struct Named {
    names: Vec<String>,
    index: HashMap<String, u32>,
    pub model: Linear,
}

impl Named {
    pub fn new(names: Vec<String>, model: Linear) -> Named {
        let index = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        Named {
            names,
            index,
            model,
        }
    }

    /// The row of `f`; features the model does not know are left out.
    pub fn row(&self, f: &Features) -> Row {
        let mut row: Row = f
            .dense
            .iter()
            .filter_map(|(n, v)| self.index.get(*n).map(|&i| (i, *v)))
            .collect();
        row.extend(
            f.ngrams
                .iter()
                .filter_map(|g| self.index.get(g).map(|&i| (i, 1.0))),
        );
        row
    }

    pub fn prob(&self, f: &Features) -> f32 {
        self.model.prob(&self.row(f))
    }

    /// The `k` largest contributions to the logit, by name.
    pub fn reasons(&self, f: &Features, k: usize) -> Vec<Reason> {
        self.model
            .contributions(&self.row(f))
            .into_iter()
            .take(k)
            .map(|(i, c)| Reason {
                feature: self.names[i as usize].clone(),
                weight: (c * 100.0).round() / 100.0,
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// One feature's share of a decision (positive: for the tag).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reason {
    pub feature: String,
    pub weight: f32,
}

/// The models for one way of matching (with sentence embeddings, or keywords only).
#[derive(Debug, Clone)]
pub struct Heads {
    pub topic: Named,
    pub state: Named,
    /// A candidate is tagged when topic × state reaches this.
    pub threshold: f32,
}

/// How a verifier was fitted (kept in the file, shown by `library check`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FitInfo {
    pub files: Vec<String>,
    pub memos: usize,
    pub candidates: usize,
    pub library_version: String,
    #[serde(default)]
    pub options: serde_json::Value,
    /// Cross-validated scores on the training memos, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_validation: Option<serde_json::Value>,
}

/// The fitted models for one kind of tag (needs, or actions).
#[derive(Debug, Clone)]
pub struct Part {
    pub memo: MemoClassifier,
    pub hybrid: Heads,
    pub keyword: Heads,
}

impl Part {
    pub fn heads(&self, semantic: bool) -> &Heads {
        if semantic {
            &self.hybrid
        } else {
            &self.keyword
        }
    }
}

/// The fitted verifier of a library: for needs (open need of the customer?) and for actions
/// (reported as done?).
#[derive(Debug, Clone)]
pub struct Verifier {
    pub info: FitInfo,
    pub needs: Part,
    pub actions: Option<Part>,
}

/// What the verifier says about one candidate.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Judgement {
    /// topic × expressed: the tag's probability.
    pub probability: f32,
    /// The need's topic is really present.
    pub topic: f32,
    /// It is expressed as an open need of the customer (given the topic).
    pub expressed: f32,
    pub threshold: f32,
    pub keep: bool,
    /// The strongest reasons, for and against, from both models.
    pub reasons: Vec<Reason>,
}

impl Heads {
    /// The verdict on a candidate; `threshold` replaces the fitted one when given.
    pub fn judge(
        &self,
        topic: &Features,
        state: &Features,
        reasons: usize,
        threshold: Option<f32>,
    ) -> Judgement {
        let threshold = threshold.unwrap_or(self.threshold);
        let pt = self.topic.prob(topic);
        let ps = self.state.prob(state);
        let p = pt * ps;
        let mut why = Vec::new();
        if reasons > 0 {
            why = self.state.reasons(state, reasons);
            for r in self.topic.reasons(topic, reasons) {
                if !why.iter().any(|w| w.feature == r.feature) {
                    why.push(Reason {
                        feature: format!("topic:{}", r.feature),
                        weight: r.weight,
                    });
                }
            }
            why.sort_by(|a, b| b.weight.abs().total_cmp(&a.weight.abs()));
            why.truncate(reasons);
        }
        let round = |x: f32| (x * 1000.0).round() / 1000.0;
        Judgement {
            probability: round(p),
            topic: round(pt),
            expressed: round(ps),
            threshold,
            keep: p >= threshold,
            reasons: why,
        }
    }
}

impl Verifier {
    /// Parse and check a verifier file.
    pub fn from_json(text: &str) -> std::result::Result<Verifier, String> {
        let file: VerifierFile =
            serde_json::from_str(text).map_err(|e| format!("not a verifier file: {e}"))?;
        if file.schema != features::SCHEMA {
            return Err(format!(
                "fitted against feature schema {}, this needtag reads schema {}: run `needtag fit`",
                file.schema,
                features::SCHEMA
            ));
        }
        let vocabulary = file.vocabulary.decode()?;
        Ok(Verifier {
            info: file.fitted,
            needs: file.needs.decode("needs", &vocabulary)?,
            actions: file
                .actions
                .map(|a| a.decode("actions", &vocabulary))
                .transpose()?,
        })
    }

    pub fn to_json(&self) -> String {
        let file = VerifierFile {
            schema: features::SCHEMA,
            fitted: self.info.clone(),
            vocabulary: VocabFile::encode(&self.needs.memo.tfidf),
            needs: PartFile::encode(&self.needs),
            actions: self.actions.as_ref().map(PartFile::encode),
        };
        // One line: the file is data (some megabytes), read through `library check`.
        let mut s = serde_json::to_string(&file).expect("serialisable");
        s.push('\n');
        s
    }
}

// ---- the file ----

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifierFile {
    /// The feature schema the weights were fitted against.
    schema: u32,
    fitted: FitInfo,
    /// The memo classifiers' n-gram vocabulary (both parts are fitted on the same memos).
    vocabulary: VocabFile,
    needs: PartFile,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    actions: Option<PartFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartFile {
    memo: MemoFile,
    hybrid: HeadsFile,
    keyword: HeadsFile,
}

impl PartFile {
    fn encode(p: &Part) -> PartFile {
        PartFile {
            memo: MemoFile::encode(&p.memo),
            hybrid: HeadsFile::encode(&p.hybrid),
            keyword: HeadsFile::encode(&p.keyword),
        }
    }

    fn decode(self, what: &str, vocabulary: &Tfidf) -> std::result::Result<Part, String> {
        Ok(Part {
            memo: self.memo.decode(what, vocabulary)?,
            hybrid: self.hybrid.decode(&format!("{what}.hybrid"))?,
            keyword: self.keyword.decode(&format!("{what}.keyword"))?,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadsFile {
    threshold: f32,
    topic: LinearFile,
    state: LinearFile,
}

/// A logistic model as `{"bias": b, "weights": {"feature": w, …}}`: readable, diffable.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinearFile {
    bias: f32,
    weights: BTreeMap<String, f32>,
}

/// The n-gram vocabulary and its idf (f16, little-endian base64).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VocabFile {
    max_n: usize,
    terms: Vec<String>,
    idf: String,
}

/// A memo classifier: per label the nonzero weights of each head, as little-endian base64
/// (term indices u32, weights f16).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoFile {
    labels: Vec<String>,
    open: Vec<HeadFile>,
    topic: Vec<HeadFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadFile {
    bias: f32,
    terms: String,
    weights: String,
}

fn round4(x: f32) -> f32 {
    (x * 10_000.0).round() / 10_000.0
}

impl LinearFile {
    fn encode(m: &Named) -> LinearFile {
        LinearFile {
            bias: round4(m.model.bias),
            weights: m
                .names
                .iter()
                .zip(&m.model.weights)
                .filter(|(_, w)| round4(**w) != 0.0)
                .map(|(n, w)| (n.clone(), round4(*w)))
                .collect(),
        }
    }

    fn decode(self) -> Named {
        let (names, weights): (Vec<String>, Vec<f32>) = self.weights.into_iter().unzip();
        Named::new(
            names,
            Linear {
                weights,
                bias: self.bias,
            },
        )
    }
}

impl HeadsFile {
    fn encode(h: &Heads) -> HeadsFile {
        HeadsFile {
            threshold: h.threshold,
            topic: LinearFile::encode(&h.topic),
            state: LinearFile::encode(&h.state),
        }
    }

    fn decode(self, what: &str) -> std::result::Result<Heads, String> {
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(format!("{what}.threshold must lie in (0, 1)"));
        }
        let known = |n: &str| {
            features::DENSE.contains(&n)
                || features::ACTION_DENSE.contains(&n)
                || n.starts_with("C:")
                || n.starts_with("N:")
                || n.starts_with("P:")
        };
        for (head, m) in [("topic", &self.topic), ("state", &self.state)] {
            if let Some(bad) = m.weights.keys().find(|n| !known(n)) {
                return Err(format!("{what}.{head}: unknown feature {bad:?}"));
            }
            if !m.bias.is_finite() || m.weights.values().any(|w| !w.is_finite()) {
                return Err(format!("{what}.{head}: weights must be finite numbers"));
            }
        }
        Ok(Heads {
            threshold: self.threshold,
            topic: self.topic.decode(),
            state: self.state.decode(),
        })
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn f16s(v: &[f32]) -> String {
    let bytes: Vec<u8> = v
        .iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect();
    b64().encode(bytes)
}

fn unf16s(s: &str, what: &str) -> std::result::Result<Vec<f32>, String> {
    let bytes = b64()
        .decode(s)
        .map_err(|e| format!("{what}: not base64: {e}"))?;
    if bytes.len() % 2 != 0 {
        return Err(format!("{what}: odd number of bytes for f16 values"));
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect())
}

fn u32s(v: &[u32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    b64().encode(bytes)
}

fn unu32s(s: &str, what: &str) -> std::result::Result<Vec<u32>, String> {
    let bytes = b64()
        .decode(s)
        .map_err(|e| format!("{what}: not base64: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err(format!("{what}: byte count is not a multiple of 4"));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

impl VocabFile {
    fn encode(t: &Tfidf) -> VocabFile {
        VocabFile {
            max_n: t.max_n,
            terms: t.terms().into_iter().map(String::from).collect(),
            idf: f16s(&t.idf),
        }
    }

    fn decode(self) -> std::result::Result<Tfidf, String> {
        let idf = unf16s(&self.idf, "vocabulary.idf")?;
        if idf.len() != self.terms.len() {
            return Err(format!(
                "vocabulary: {} terms but {} idf values",
                self.terms.len(),
                idf.len()
            ));
        }
        if !(1..=4).contains(&self.max_n) {
            return Err("vocabulary.max_n must be 1 to 4".into());
        }
        let n_terms = self.terms.len();
        let vocab: HashMap<String, u32> = self
            .terms
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        if vocab.len() != n_terms {
            return Err("vocabulary.terms has duplicates".into());
        }
        Ok(Tfidf {
            vocab,
            idf,
            max_n: self.max_n,
        })
    }
}

impl MemoFile {
    fn encode(m: &MemoClassifier) -> MemoFile {
        let head = |h: &Head| HeadFile {
            bias: round4(h.bias),
            terms: u32s(&h.weights.iter().map(|x| x.0).collect::<Vec<_>>()),
            weights: f16s(&h.weights.iter().map(|x| x.1).collect::<Vec<_>>()),
        };
        MemoFile {
            labels: m.labels.clone(),
            open: m.open.iter().map(head).collect(),
            topic: m.topic.iter().map(head).collect(),
        }
    }

    fn decode(self, part: &str, vocabulary: &Tfidf) -> std::result::Result<MemoClassifier, String> {
        let n_terms = vocabulary.idf.len() as u32;
        let heads = |v: Vec<HeadFile>, what: &str| -> std::result::Result<Vec<Head>, String> {
            v.into_iter()
                .enumerate()
                .map(|(i, h)| {
                    let terms = unu32s(&h.terms, &format!("{part}.memo.{what}[{i}].terms"))?;
                    let weights = unf16s(&h.weights, &format!("{part}.memo.{what}[{i}].weights"))?;
                    if terms.len() != weights.len() || terms.iter().any(|&t| t >= n_terms) {
                        return Err(format!(
                            "{part}.memo.{what}[{i}]: terms and weights do not match"
                        ));
                    }
                    Ok(Head {
                        bias: h.bias,
                        weights: terms.into_iter().zip(weights).collect(),
                    })
                })
                .collect()
        };
        let open = heads(self.open, "open")?;
        let topic = heads(self.topic, "topic")?;
        if open.len() != self.labels.len() || topic.len() != self.labels.len() {
            return Err(format!(
                "{part}.memo: one open and one topic head per label"
            ));
        }
        Ok(MemoClassifier::new(
            vocabulary.clone(),
            self.labels,
            open,
            topic,
        ))
    }
}
