//! Text analysis: normalisation (Simplified, half-width, lower case — one character for one, so
//! evidence spans point into the text as sent), clause splitting, jieba segmentation with the
//! library's words as a user dictionary, and the scopes of negation, plans and completion.
//! Pure functions over strings: no I/O.

pub mod cues;
pub mod segment;

use std::ops::Range;

pub use cues::{Cues, Modality, Negation};
pub use segment::{JiebaTokenizer, Segmenter};

/// A memo's text, normalised and split into clauses.
#[derive(Debug, Clone)]
pub struct Analyzed {
    /// The text as sent.
    pub original: String,
    /// Normalised text with exactly one character per original character.
    pub norm: Vec<char>,
    pub clauses: Vec<Clause>,
}

/// A clause: a stretch between punctuation or discourse breaks, in character offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub range: Range<usize>,
    /// The clause's normalised text.
    pub norm: String,
}

impl Analyzed {
    /// Characters `range` of the original text.
    pub fn original_slice(&self, range: Range<usize>) -> String {
        self.original
            .chars()
            .skip(range.start)
            .take(range.len())
            .collect()
    }

    /// The clause containing character `at`.
    pub fn clause_of(&self, at: usize) -> Option<usize> {
        self.clauses.iter().position(|c| c.range.contains(&at))
    }

    pub fn norm_string(&self) -> String {
        self.norm.iter().collect()
    }
}

/// Normalise one-for-one: Traditional → Simplified, full-width → half-width, lower case.
pub fn normalize(text: &str) -> Vec<char> {
    let chars: Vec<char> = text.chars().collect();
    let whole: Vec<char> = crate::zh::to_simplified(text).chars().collect();
    let simplified = if whole.len() == chars.len() {
        whole
    } else {
        // A phrase conversion changed the length: convert character by character instead.
        chars
            .iter()
            .map(|c| {
                crate::zh::to_simplified(&c.to_string())
                    .chars()
                    .next()
                    .unwrap_or(*c)
            })
            .collect()
    };
    simplified
        .into_iter()
        .map(|c| {
            let c = crate::zh::to_halfwidth(&c.to_string())
                .chars()
                .next()
                .unwrap_or(c);
            if c.is_ascii_uppercase() {
                c.to_ascii_lowercase()
            } else {
                c
            }
        })
        .collect()
}

/// Punctuation that ends a clause.
fn is_break(c: char) -> bool {
    matches!(
        c,
        '，' | '。'
            | '！'
            | '？'
            | '；'
            | ','
            | '.'
            | '!'
            | '?'
            | ';'
            | '\n'
            | '\r'
            | '…'
            | '：'
            | ':'
            | '（'
            | '）'
            | '('
            | ')'
    )
}

/// Normalise and split into clauses at punctuation, at spaces between Chinese characters
/// (speech recognisers often put a space where a comma belongs) and before discourse markers
/// such as 但是 / 另外 (which speech often runs on without a comma).
pub fn analyze(text: &str, cues: &Cues) -> Analyzed {
    let norm = normalize(text);
    let mut cuts = vec![false; norm.len() + 1];
    let mut skip = vec![false; norm.len()];
    for (i, &c) in norm.iter().enumerate() {
        if is_break(c) {
            cuts[i] = true;
            skip[i] = true;
        } else if c.is_whitespace() {
            let han = |j: Option<&char>| j.is_some_and(|c| crate::zh::is_han(*c));
            if han(i.checked_sub(1).and_then(|j| norm.get(j))) && han(norm.get(i + 1)) {
                cuts[i] = true;
            }
            skip[i] = true;
        }
    }
    let norm_str: String = norm.iter().collect();
    for m in cues.clause_breaks(&norm_str) {
        if m.start > 0 {
            cuts[m.start] = true;
        }
    }
    let mut clauses = Vec::new();
    let mut start = 0;
    for (i, &cut) in cuts.iter().enumerate() {
        if i == norm.len() || cut {
            // Trim skipped characters at both ends.
            let mut a = start;
            let mut b = i;
            while a < b && skip[a] {
                a += 1;
            }
            while b > a && skip[b - 1] {
                b -= 1;
            }
            if a < b {
                clauses.push(Clause {
                    range: a..b,
                    norm: norm[a..b].iter().collect(),
                });
            }
            start = i;
        }
    }
    Analyzed {
        original: text.to_string(),
        norm,
        clauses,
    }
}

#[cfg(test)]
mod tests;
