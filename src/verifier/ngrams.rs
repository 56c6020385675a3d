//! Character n-grams: the words a memo uses, without a segmenter's opinion of where words end
//! (misheard words, Traditional characters and dialect survive as partial matches), and
//! TF-IDF rows over a fixed vocabulary (sublinear term frequency, smoothed idf, unit length:
//! the weighting scikit-learn's `TfidfVectorizer(analyzer="char", sublinear_tf=True)` uses).

use std::collections::HashMap;

use super::linear::Row;

/// Every n-gram of `chars` with `n` in `lens`, with how often it occurs.
pub fn counts(chars: &[char], lens: std::ops::RangeInclusive<usize>) -> HashMap<String, u32> {
    let mut out: HashMap<String, u32> = HashMap::new();
    for n in lens {
        if n == 0 || n > chars.len() {
            continue;
        }
        for w in chars.windows(n) {
            *out.entry(w.iter().collect()).or_default() += 1;
        }
    }
    out
}

/// A memo's text as the n-gram models read it: whitespace runs become one space.
pub fn prepare(text: &str) -> Vec<char> {
    let mut out: Vec<char> = Vec::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_whitespace() { ' ' } else { c };
        if c == ' ' && out.last() == Some(&' ') {
            continue;
        }
        out.push(c);
    }
    out
}

/// A TF-IDF vectoriser with a fixed vocabulary.
#[derive(Debug, Clone)]
pub struct Tfidf {
    pub vocab: HashMap<String, u32>,
    pub idf: Vec<f32>,
    pub max_n: usize,
}

impl Tfidf {
    /// The vocabulary of `texts`: n-grams of 1..=`max_n` characters found in at least
    /// `min_df` of them, at most `max_terms` (the most frequent); ordered by string so that a
    /// refit is reproducible.
    pub fn fit(texts: &[Vec<char>], max_n: usize, min_df: usize, max_terms: usize) -> Tfidf {
        let mut df: HashMap<String, u32> = HashMap::new();
        for t in texts {
            for g in counts(t, 1..=max_n).into_keys() {
                *df.entry(g).or_default() += 1;
            }
        }
        let mut kept: Vec<(String, u32)> = df
            .into_iter()
            .filter(|(_, d)| *d as usize >= min_df)
            .collect();
        if kept.len() > max_terms {
            kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            kept.truncate(max_terms);
        }
        kept.sort();
        let n = texts.len() as f32;
        let idf = kept
            .iter()
            .map(|(_, d)| ((1.0 + n) / (1.0 + *d as f32)).ln() + 1.0)
            .collect();
        let vocab = kept
            .into_iter()
            .enumerate()
            .map(|(i, (g, _))| (g, i as u32))
            .collect();
        Tfidf { vocab, idf, max_n }
    }

    /// The vocabulary in index order.
    pub fn terms(&self) -> Vec<&str> {
        let mut v: Vec<(&str, u32)> = self.vocab.iter().map(|(k, &i)| (k.as_str(), i)).collect();
        v.sort_by_key(|x| x.1);
        v.into_iter().map(|x| x.0).collect()
    }

    pub fn transform(&self, chars: &[char]) -> Row {
        let mut row: Row = counts(chars, 1..=self.max_n)
            .into_iter()
            .filter_map(|(g, tf)| {
                self.vocab
                    .get(&g)
                    .map(|&i| (i, (1.0 + (tf as f32).ln()) * self.idf[i as usize]))
            })
            .collect();
        // By index first: the norm's sum, and every dot product after it, in a fixed order.
        row.sort_by_key(|x| x.0);
        let norm = row.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|(_, v)| *v /= norm);
        }
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_length() {
        let c: Vec<char> = "缺货缺".chars().collect();
        let m = counts(&c, 1..=2);
        assert_eq!(m["缺"], 2);
        assert_eq!(m["缺货"], 1);
        assert_eq!(m["货缺"], 1);
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn tfidf_rows_have_unit_length_and_rare_terms_weigh_more() {
        let texts: Vec<Vec<char>> = ["库存告急", "库存还够", "价格太高"]
            .iter()
            .map(|t| prepare(t))
            .collect();
        let v = Tfidf::fit(&texts, 2, 1, usize::MAX);
        let row = v.transform(&prepare("库存告急"));
        let norm: f32 = row.iter().map(|(_, x)| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        let w = |g: &str| row.iter().find(|(i, _)| *i == v.vocab[g]).unwrap().1;
        assert!(w("告急") > w("库存"));
        assert!(v.transform(&prepare("完全无关")).is_empty());
    }

    #[test]
    fn whitespace_runs_collapse() {
        assert_eq!(prepare("a \t b"), vec!['a', ' ', 'b']);
    }
}
