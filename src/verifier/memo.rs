//! The memo-level classifier: for each need, two logistic models over the memo's character
//! n-grams (TF-IDF): does the memo express this need as an open need, and is it about this
//! need at all (open or closed). Learned from labeled memos, it knows how reps say a need
//! without the library's words; the verifier reads its two probabilities as features.

use super::linear::{sigmoid, Row};
use super::ngrams::{prepare, Tfidf};

/// One head per need: sparse weights over the vocabulary, and a bias.
#[derive(Debug, Clone)]
pub struct Head {
    pub bias: f32,
    /// (term index, weight), by term index.
    pub weights: Vec<(u32, f32)>,
}

#[derive(Debug, Clone)]
pub struct MemoClassifier {
    pub tfidf: Tfidf,
    /// Label ids (needs or actions), one per head.
    pub labels: Vec<String>,
    pub open: Vec<Head>,
    pub topic: Vec<Head>,
    /// Per term: (head, weight) of every open head, then every topic head (head + labels).
    postings: Vec<Vec<(u16, f32)>>,
}

/// The classifier's probabilities for every need of the library, in library order; `None`
/// for a need it was not fitted on.
#[derive(Debug, Clone, Default)]
pub struct MemoScores {
    pub open: Vec<Option<f32>>,
    pub topic: Vec<Option<f32>>,
}

impl MemoClassifier {
    pub fn new(tfidf: Tfidf, labels: Vec<String>, open: Vec<Head>, topic: Vec<Head>) -> Self {
        let mut postings = vec![Vec::new(); tfidf.idf.len()];
        let n = labels.len();
        for (h, head) in open.iter().chain(&topic).enumerate() {
            for &(t, w) in &head.weights {
                if let Some(p) = postings.get_mut(t as usize) {
                    p.push((h as u16, w));
                }
            }
        }
        debug_assert!(open.len() == n && topic.len() == n);
        MemoClassifier {
            tfidf,
            labels,
            open,
            topic,
            postings,
        }
    }

    pub fn row(&self, text: &str) -> Row {
        self.tfidf.transform(&prepare(text))
    }

    /// (open, mentioned) probabilities of the label at `head` for a piece of text.
    pub fn label_scores(&self, text: &str, head: usize) -> (f32, f32) {
        let (Some(open), Some(topic)) = (self.open.get(head), self.topic.get(head)) else {
            return (0.0, 0.0);
        };
        let n = self.labels.len();
        let (mut zo, mut zt) = (open.bias, topic.bias);
        for (t, v) in self.row(text) {
            for &(h, w) in &self.postings[t as usize] {
                if h as usize == head {
                    zo += w * v;
                } else if h as usize == head + n {
                    zt += w * v;
                }
            }
        }
        (sigmoid(zo), sigmoid(zt))
    }

    /// The open heads' logits for one clause, in the classifier's label order.
    pub fn clause_logits(&self, clause: &str) -> Vec<f32> {
        let mut z: Vec<f32> = self.open.iter().map(|h| h.bias).collect();
        for (t, v) in self.row(clause) {
            for &(h, w) in &self.postings[t as usize] {
                if let Some(x) = z.get_mut(h as usize) {
                    *x += w * v;
                }
            }
        }
        z
    }

    /// Probabilities for the labels in `library_ids` order (library needs or actions).
    pub fn scores(&self, text: &str, library_ids: &[&str]) -> MemoScores {
        let row = self.row(text);
        let n = self.labels.len();
        let mut z: Vec<f32> = self
            .open
            .iter()
            .chain(&self.topic)
            .map(|h| h.bias)
            .collect();
        for (t, v) in row {
            for &(h, w) in &self.postings[t as usize] {
                z[h as usize] += w * v;
            }
        }
        let pick = |offset: usize| {
            library_ids
                .iter()
                .map(|id| {
                    self.labels
                        .iter()
                        .position(|x| x == id)
                        .map(|i| sigmoid(z[offset + i]))
                })
                .collect()
        };
        MemoScores {
            open: pick(0),
            topic: pick(n),
        }
    }
}
