//! Library terms heard wrong: speech recognition writes a word that sounds like the term
//! ("陈列非" for 陈列费, "酷存" for 库存). A stretch of text matches a term when every character
//! has the same toneless reading as the term's character (each character's common reading:
//! rare readings of polyphones, such as shù for 售, would make 术后 sound like 售后) and at
//! least one character is the same, so sound-alike words with nothing in common stay apart.

use std::collections::HashMap;

use pinyin::ToPinyin;

/// The common reading of a character, without and with tone; empty for non-Han characters.
fn readings(c: char) -> Vec<Reading> {
    c.to_pinyin()
        .map(|p| vec![(p.plain(), p.with_tone_num())])
        .unwrap_or_default()
}

/// A reading without and with tone ("shi", "shi4").
type Reading = (&'static str, &'static str);

pub struct HomophoneIndex {
    /// (term characters, term readings per character, caller's id)
    terms: Vec<(Vec<char>, Vec<Vec<Reading>>, usize)>,
    /// First-character reading → indices into `terms`.
    by_first: HashMap<&'static str, Vec<usize>>,
}

/// A homophone match: character range in the text, and the caller's id of the term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    pub start: usize,
    pub end: usize,
    pub id: usize,
}

impl HomophoneIndex {
    /// Index `(term, id)` pairs; terms shorter than two Han characters are skipped.
    pub fn new<'a>(terms: impl IntoIterator<Item = (&'a str, usize)>) -> HomophoneIndex {
        let mut out = HomophoneIndex {
            terms: Vec::new(),
            by_first: HashMap::new(),
        };
        for (term, id) in terms {
            let chars: Vec<char> = term.chars().collect();
            if chars.len() < 2 || !chars.iter().all(|&c| crate::zh::is_han(c)) {
                continue;
            }
            let rs: Vec<Vec<Reading>> = chars.iter().map(|&c| readings(c)).collect();
            if rs.iter().any(|r| r.is_empty()) {
                continue;
            }
            let idx = out.terms.len();
            for &(first, _) in &rs[0] {
                out.by_first.entry(first).or_default().push(idx);
            }
            out.terms.push((chars, rs, id));
        }
        out
    }

    /// Sound-alike matches in `text` that are not exact occurrences of the term. Two-character
    /// terms must match with tones too (试剂 shìjì is not 试机 shìjī).
    pub fn find(&self, text: &[char]) -> Vec<Heard> {
        let text_readings: Vec<Vec<Reading>> = text.iter().map(|&c| readings(c)).collect();
        let mut out = Vec::new();
        for start in 0..text.len() {
            let mut candidates: Vec<usize> = Vec::new();
            for (r, _) in &text_readings[start] {
                if let Some(list) = self.by_first.get(r) {
                    candidates.extend(list);
                }
            }
            candidates.sort_unstable();
            candidates.dedup();
            for t in candidates {
                let (chars, rs, id) = &self.terms[t];
                let end = start + chars.len();
                if end > text.len() {
                    continue;
                }
                let mut same = 0;
                let sounds = (0..chars.len()).all(|k| {
                    if text[start + k] == chars[k] {
                        same += 1;
                        return true;
                    }
                    let toned = chars.len() == 2;
                    text_readings[start + k].iter().any(|&(plain, tone)| {
                        rs[k]
                            .iter()
                            .any(|&(p, t)| p == plain && (!toned || t == tone))
                    })
                });
                if sounds && same > 0 && same < chars.len() {
                    out.push(Heard {
                        start,
                        end,
                        id: *id,
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misheard_terms_are_found_and_exact_ones_left_to_the_keyword_matcher() {
        let idx = HomophoneIndex::new([("陈列费", 0), ("库存", 1), ("补货", 2), ("试机", 3)]);
        let text: Vec<char> = "想追加陈列非用，酷存紧张，不活了，陈列费，试剂"
            .chars()
            .collect();
        let found = idx.find(&text);
        assert!(
            found.contains(&Heard {
                start: 3,
                end: 6,
                id: 0
            }),
            "{found:?}"
        );
        assert!(
            found.contains(&Heard {
                start: 8,
                end: 10,
                id: 1
            }),
            "{found:?}"
        );
        // 不活 sounds like 补货 but shares no character: not a match.
        assert!(!found.iter().any(|h| h.id == 2), "{found:?}");
        // The exact 陈列费 is not reported as a homophone.
        assert!(!found.iter().any(|h| h.start == 17));
        // 试剂 (shìjì) and 试机 (shìjī) differ in tone.
        assert!(!found.iter().any(|h| h.id == 3), "{found:?}");
    }
}
