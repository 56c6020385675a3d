//! The sentence encoder's tokenizer: SentencePiece unigram segmentation, read from the model's
//! `tokenizer.json`.
//!
//! The general `tokenizers` crate builds a trie with a hash map in every node for the 128 000
//! pieces of this vocabulary, about 145 MB resident for a job this small. Here the pieces sit in
//! one hash map (about 10 MB) and the best segmentation is found by looking up every substring up
//! to the longest piece, which for memo-length texts is a few thousand lookups. The steps and the
//! tie-breaking are those of `tokenizers` (normalizer, Metaspace pre-tokenizer, Viterbi with
//! unknown characters fused), so the ids are the same: `tests/embedding_tokenizer.rs` checks
//! that on every text of the library and the evaluation sets.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use spm_precompiled::Precompiled;

use crate::error::{Error, Result};

/// The word-boundary mark that replaces spaces (U+2581).
const SPACE: char = '\u{2581}';
/// Score below the lowest piece given to a character no piece covers (as sentencepiece).
const UNK_PENALTY: f64 = 10.0;

pub struct Pieces {
    normalizer: Precompiled,
    ids: HashMap<String, (u32, f64)>,
    unk_id: u32,
    unk_score: f64,
    longest: usize,
}

#[derive(Deserialize)]
struct File {
    normalizer: serde_json::Value,
    pre_tokenizer: serde_json::Value,
    model: Model,
}

#[derive(Deserialize)]
struct Model {
    #[serde(rename = "type")]
    kind: String,
    unk_id: Option<u32>,
    vocab: Vec<(String, f64)>,
    #[serde(default)]
    byte_fallback: bool,
}

impl Pieces {
    pub fn from_file(path: &Path) -> Result<Pieces> {
        let bad = |why: String| {
            Error::ModelUnavailable(format!(
                "embedding tokenizer {}: {why}; run `python3 models/prepare.py` (or .ci/setup)",
                path.display()
            ))
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        Self::from_json(&text).map_err(bad)
    }

    /// Accepts exactly the layout this tokenizer implements, and says what differs otherwise.
    pub fn from_json(text: &str) -> std::result::Result<Pieces, String> {
        let file: File = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let steps = match (
            &file.normalizer["type"],
            file.normalizer["normalizers"].as_array(),
        ) {
            (t, Some(steps)) if t == "Sequence" => steps.clone(),
            _ => vec![file.normalizer.clone()],
        };
        let mut normalizer = None;
        for step in &steps {
            match step["type"].as_str() {
                Some("Precompiled") if normalizer.is_none() => {
                    // Re-serialised so that the charsmap deserialises from a borrowed string.
                    let json = serde_json::to_string(step).map_err(|e| e.to_string())?;
                    normalizer = Some(
                        serde_json::from_str::<Precompiled>(&json).map_err(|e| e.to_string())?,
                    );
                }
                Some("Replace")
                    if step["pattern"]["Regex"] == " {2,}" && step["content"] == " " => {}
                other => return Err(format!("unsupported normalizer step {other:?}")),
            }
        }
        let normalizer = normalizer.ok_or("no Precompiled normalizer")?;
        let pre = &file.pre_tokenizer;
        if pre["type"] != "Metaspace"
            || pre["replacement"] != "\u{2581}"
            || pre["prepend_scheme"] != "always"
            || pre["split"] != true
        {
            return Err(format!("unsupported pre-tokenizer {pre}"));
        }
        let model = file.model;
        if model.kind != "Unigram" || model.byte_fallback {
            return Err(format!(
                "unsupported model {} (byte fallback {})",
                model.kind, model.byte_fallback
            ));
        }
        let unk_id = model.unk_id.ok_or("no unknown-token id")?;
        let min = model
            .vocab
            .iter()
            .map(|(_, s)| *s)
            .fold(f64::INFINITY, f64::min);
        let longest = model.vocab.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
        let mut ids = HashMap::with_capacity(model.vocab.len());
        for (id, (piece, score)) in model.vocab.into_iter().enumerate() {
            ids.insert(piece, (id as u32, score));
        }
        Ok(Pieces {
            normalizer,
            ids,
            unk_id,
            unk_score: min - UNK_PENALTY,
            longest,
        })
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let normalized = collapse_spaces(&self.normalizer.normalize_string(text));
        if normalized.is_empty() {
            return Vec::new();
        }
        let mut marked: String = normalized
            .chars()
            .map(|c| if c == ' ' { SPACE } else { c })
            .collect();
        if !marked.starts_with(SPACE) {
            marked.insert(0, SPACE);
        }
        let mut out = Vec::new();
        for word in words(&marked) {
            self.viterbi(word, &mut out);
        }
        out
    }

    /// Best-scoring segmentation of one word; runs of characters no piece covers become one
    /// unknown token.
    fn viterbi(&self, word: &str, out: &mut Vec<u32>) {
        #[derive(Clone, Copy)]
        struct Best {
            score: f64,
            start: Option<usize>,
            id: u32,
        }
        let n = word.len();
        let mut best = vec![
            Best {
                score: 0.0,
                start: None,
                id: 0
            };
            n + 1
        ];
        let mut start = 0;
        while start < n {
            let here = best[start].score;
            let first = word[start..].chars().next().map_or(1, char::len_utf8);
            let mut single = false;
            for (offset, c) in word[start..].char_indices() {
                let end = start + offset + c.len_utf8();
                if end - start > self.longest {
                    break;
                }
                if let Some(&(id, score)) = self.ids.get(&word[start..end]) {
                    let cand = here + score;
                    let node = &mut best[end];
                    if node.start.is_none() || cand > node.score {
                        *node = Best {
                            score: cand,
                            start: Some(start),
                            id,
                        };
                    }
                    single |= end - start == first;
                }
            }
            if !single {
                let cand = here + self.unk_score;
                let node = &mut best[start + first];
                if node.start.is_none() || cand > node.score {
                    *node = Best {
                        score: cand,
                        start: Some(start),
                        id: self.unk_id,
                    };
                }
            }
            start += first;
        }
        let mut ids = Vec::new();
        let mut end = n;
        let mut in_unknown = false;
        while end > 0 {
            let node = best[end];
            let Some(s) = node.start else { break };
            if node.id == self.unk_id {
                // Adjacent unknown characters fuse into one token.
                if !in_unknown {
                    ids.push(self.unk_id);
                }
                in_unknown = true;
            } else {
                ids.push(node.id);
                in_unknown = false;
            }
            end = s;
        }
        out.extend(ids.into_iter().rev());
    }
}

/// Runs of two or more spaces become one (the tokenizer's `Replace` step).
fn collapse_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut spaces = 0;
    for c in s.chars() {
        if c == ' ' {
            spaces += 1;
            if spaces == 1 {
                out.push(c);
            }
        } else {
            spaces = 0;
            out.push(c);
        }
    }
    out
}

/// Words start at each boundary mark, which stays with the text after it.
fn words(s: &str) -> impl Iterator<Item = &str> {
    let mut starts: Vec<usize> = s
        .char_indices()
        .filter(|&(i, c)| c == SPACE && i > 0)
        .map(|(i, _)| i)
        .collect();
    starts.insert(0, 0);
    starts.push(s.len());
    (0..starts.len() - 1).map(move |i| &s[starts[i]..starts[i + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_the_mark_with_the_following_text() {
        let s = "\u{2581}ab\u{2581}\u{2581}c";
        let w: Vec<&str> = words(s).collect();
        assert_eq!(w, vec!["\u{2581}ab", "\u{2581}", "\u{2581}c"]);
    }

    #[test]
    fn spaces_collapse() {
        assert_eq!(collapse_spaces("a  b   c d"), "a b c d");
    }

    #[test]
    fn a_foreign_layout_is_refused() {
        let json = r#"{"normalizer": null, "pre_tokenizer": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": []}}"#;
        assert!(Pieces::from_json(json).is_err());
    }
}
