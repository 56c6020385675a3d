//! Semantic matching. The library's example sentences are embedded once per library version;
//! two small linear classifiers are trained on them at load time (softmax regression, about a
//! hundred full-batch steps): one over the needs, one over the actions, each with a "none"
//! class made of the other kind's examples. A clause's class probabilities are the semantic
//! signal; raw nearest-example similarity is not, because it mostly measures the setting
//! (a pharmacy memo resembles every pharmacy example) rather than the need.

use std::collections::HashMap;
use std::sync::Arc;

use ndarray::{Array1, Array2, Axis};

use super::embed::{dot, Embedder, DIM};
use super::index::Owner;
use crate::error::Result;
use crate::library::Library;
use crate::text;

/// Library texts embedded per call while the library compiles. With ONNX Runtime's arena off,
/// a call's buffers come from the process allocator, and 64 texts at once needed buffers past
/// glibc's 32 MB mmap ceiling: mapped, faulted in and unmapped per call, 2.7 M page faults per
/// start. At 32 a text-only start (`needtag tag --text …`) takes 4.7 s instead of 8.0–8.4 s
/// (5.3–5.6 s at 16), with the same tags (`needtag eval` on the development set identical).
const LIBRARY_TEXTS_PER_CALL: usize = 32;

/// Clauses embedded in one call. The encoder's working memory grows with the clauses of a call
/// (one call for a whole 5 000-character memo raised peak RSS by ~300 MB); in calls of a few,
/// a memo's cost grows with its clauses and stays small.
const CLAUSES_PER_CALL: usize = 8;

/// Inputs are scaled before the linear layer (unit vectors make small logits).
const SCALE: f32 = 5.0;
const STEPS: usize = 120;
const LEARNING_RATE: f32 = 1.0;
const L2: f32 = 0.01;

/// A softmax regression over embedding vectors.
pub struct Probe {
    w: Array2<f32>,
    b: Array1<f32>,
}

impl Probe {
    /// Train on `x` (rows are unit vectors) with labels `y` in `0..classes`.
    pub fn train(x: &Array2<f32>, y: &[usize], classes: usize) -> Probe {
        let n = x.nrows();
        let xs = x * SCALE;
        let mut w = Array2::<f32>::zeros((x.ncols(), classes));
        let mut b = Array1::<f32>::zeros(classes);
        let mut onehot = Array2::<f32>::zeros((n, classes));
        for (i, &c) in y.iter().enumerate() {
            onehot[[i, c]] = 1.0;
        }
        for _ in 0..STEPS {
            let mut p = xs.dot(&w) + &b;
            softmax_rows(&mut p);
            let g = (p - &onehot) / n as f32;
            let gw = xs.t().dot(&g) + &(&w * L2);
            let gb = g.sum_axis(Axis(0));
            w = w - gw * LEARNING_RATE;
            b = b - gb * LEARNING_RATE;
        }
        Probe { w, b }
    }

    /// Class probabilities of one unit vector.
    pub fn probs(&self, v: &[f32]) -> Vec<f32> {
        let x = ndarray::ArrayView1::from(v);
        let mut logits = (x.dot(&self.w) * SCALE) + &self.b;
        let max = logits.fold(f32::MIN, |a, &b| a.max(b));
        logits.mapv_inplace(|z| (z - max).exp());
        let sum = logits.sum();
        logits.iter().map(|z| z / sum).collect()
    }
}

fn softmax_rows(p: &mut Array2<f32>) {
    for mut row in p.rows_mut() {
        let max = row.fold(f32::MIN, |a, &b| a.max(b));
        row.mapv_inplace(|z| (z - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|z| z / sum);
    }
}

/// What the embeddings say about one clause.
#[derive(Debug, Clone)]
pub struct ClauseSemantics {
    /// Probability of each need (library order).
    pub need: Vec<f32>,
    /// Probability of each action (library order).
    pub action: Vec<f32>,
    /// The closest example sentence of each library entry: (cosine, prototype index).
    pub nearest: HashMap<Owner, (f32, usize)>,
    /// The clause's sentence vector (unit length).
    pub vector: Vec<f32>,
}

pub struct Semantic {
    pub embedder: Arc<Embedder>,
    vectors: Vec<Vec<f32>>,
    owner: Vec<Owner>,
    pub text: Vec<String>,
    /// Each need's counter-examples: (need, vector, sentence).
    counter: Vec<(usize, Vec<f32>, String)>,
    needs: Probe,
    actions: Probe,
}

impl Semantic {
    pub fn build(lib: &Library, embedder: Arc<Embedder>) -> Result<Semantic> {
        let mut owner = Vec::new();
        let mut text = Vec::new();
        for (i, n) in lib.needs.iter().enumerate() {
            for e in n
                .examples
                .iter()
                .chain(std::iter::once(&n.description))
                .filter(|s| !s.trim().is_empty())
            {
                owner.push(Owner::Need(i));
                text.push(e.clone());
            }
        }
        for (i, a) in lib.actions.iter().enumerate() {
            for e in &a.examples {
                owner.push(Owner::Action(i));
                text.push(e.clone());
            }
        }
        let norm: Vec<String> = text
            .iter()
            .map(|t| text::normalize(t).into_iter().collect())
            .collect();
        let mut vectors = Vec::with_capacity(norm.len());
        for chunk in norm.chunks(LIBRARY_TEXTS_PER_CALL) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            vectors.extend(embedder.embed(&refs)?);
        }
        let x = Array2::from_shape_vec(
            (vectors.len(), DIM),
            vectors.iter().flatten().copied().collect(),
        )
        .expect("embedding rows have DIM columns");
        let (n_needs, n_actions) = (lib.needs.len(), lib.actions.len());
        // Needs against "none" (action examples), and actions against "none" (need examples).
        let need_labels: Vec<usize> = owner
            .iter()
            .map(|o| if let Owner::Need(i) = o { *i } else { n_needs })
            .collect();
        let action_labels: Vec<usize> = owner
            .iter()
            .map(|o| {
                if let Owner::Action(i) = o {
                    *i
                } else {
                    n_actions
                }
            })
            .collect();
        let needs = Probe::train(&x, &need_labels, n_needs + 1);
        let actions = Probe::train(&x, &action_labels, n_actions + 1);
        let mut counter = Vec::new();
        for (i, n) in lib.needs.iter().enumerate() {
            if n.counter_examples.is_empty() {
                continue;
            }
            let norm: Vec<String> = n
                .counter_examples
                .iter()
                .map(|t| text::normalize(t).into_iter().collect())
                .collect();
            let refs: Vec<&str> = norm.iter().map(String::as_str).collect();
            for (v, t) in embedder.embed(&refs)?.into_iter().zip(&n.counter_examples) {
                counter.push((i, v, t.clone()));
            }
        }
        Ok(Semantic {
            embedder,
            vectors,
            owner,
            text,
            counter,
            needs,
            actions,
        })
    }

    pub fn has_counter(&self, need: usize) -> bool {
        self.counter.iter().any(|(n, _, _)| *n == need)
    }

    /// The counter-example of `need` closest to `v`: (cosine, sentence).
    pub fn nearest_counter(&self, need: usize, v: &[f32]) -> Option<(f32, &str)> {
        self.counter
            .iter()
            .filter(|(n, _, _)| *n == need)
            .map(|(_, cv, t)| (dot(v, cv), t.as_str()))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// Semantics of each clause, embedded [`CLAUSES_PER_CALL`] at a time.
    pub fn clauses(&self, clauses: &[&str]) -> Result<Vec<ClauseSemantics>> {
        let mut vecs = Vec::with_capacity(clauses.len());
        for part in clauses.chunks(CLAUSES_PER_CALL) {
            vecs.extend(self.embedder.embed(part)?);
        }
        Ok(vecs
            .into_iter()
            .map(|v| {
                let mut nearest: HashMap<Owner, (f32, usize)> = HashMap::new();
                for (pi, pv) in self.vectors.iter().enumerate() {
                    let s = dot(&v, pv);
                    let e = nearest.entry(self.owner[pi]).or_insert((f32::MIN, pi));
                    if s > e.0 {
                        *e = (s, pi);
                    }
                }
                let mut need = self.needs.probs(&v);
                need.pop();
                let mut action = self.actions.probs(&v);
                action.pop();
                ClauseSemantics {
                    need,
                    action,
                    nearest,
                    vector: v,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_learns_separable_classes() {
        // Two clusters of unit vectors along different axes.
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for i in 0..20 {
            let mut v = vec![0.0f32; DIM];
            let c = i % 2;
            v[c] = 1.0;
            v[2 + i] = 0.3;
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            rows.extend(v.iter().map(|x| x / n));
            y.push(c);
        }
        let x = Array2::from_shape_vec((20, DIM), rows).unwrap();
        let p = Probe::train(&x, &y, 2);
        let mut q = vec![0.0f32; DIM];
        q[1] = 1.0;
        let probs = p.probs(&q);
        assert!(probs[1] > 0.8, "{probs:?}");
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
}
