//! Library terms heard wrong: speech recognition writes a word that sounds like the term
//! ("陈列非" for 陈列费, "酷存" for 库存, "进品" for 竞品). A stretch of text matches a term when
//! every character either is the term's character or sounds like it, and at least one character
//! is the same, so sound-alike words with nothing in common stay apart.
//!
//! "Sounds like" is, per character:
//! - the same toneless reading (each character's common reading: rare readings of polyphones,
//!   such as shù for 售, would make 术后 sound like 售后);
//! - or, for one character of the term at most, a near reading: the pairs Mandarin speakers and
//!   recognisers confuse (front and back nasals an/ang, en/eng, in/ing; z/zh, c/ch, s/sh; n/l),
//!   or, in terms of three characters or more with two of them written the same, another reading
//!   of a polyphone (shā for 刹 in 刹车片, heard as 杀车片).
//!
//! Two-character terms must match with tones too (试剂 shìjì is not 试机 shìjī).

use std::collections::HashMap;

use pinyin::{ToPinyin, ToPinyinMulti};

/// One reading of a character.
#[derive(Debug, Clone)]
struct Reading {
    /// Toneless ("shi").
    plain: &'static str,
    /// With the tone number at the end ("shi4").
    toned: &'static str,
    /// Toneless with the confusable pairs folded together ("si" for shi, "jin" for jing).
    near: String,
}

impl Reading {
    fn new(p: pinyin::Pinyin) -> Reading {
        Reading {
            plain: p.plain(),
            toned: p.with_tone_num_end(),
            near: near_key(p.plain()),
        }
    }

    fn tone(&self) -> &str {
        self.toned
            .trim_start_matches(|c: char| c.is_ascii_alphabetic())
    }
}

/// A character's readings: the common one, and the others a polyphone has.
#[derive(Debug, Clone, Default)]
struct Readings {
    common: Option<Reading>,
    other: Vec<Reading>,
}

fn readings(c: char) -> Readings {
    let common = c.to_pinyin().map(Reading::new);
    let other = match (c.to_pinyin_multi(), &common) {
        (Some(multi), Some(first)) => multi
            .into_iter()
            .map(Reading::new)
            .filter(|r| r.toned != first.toned)
            .collect(),
        _ => Vec::new(),
    };
    Readings { common, other }
}

/// Fold a toneless syllable's confusable parts: retroflex initials to flat ones, n to l, back
/// nasal finals to front ones.
fn near_key(plain: &str) -> String {
    let (initial, rest) = if let Some(r) = plain.strip_prefix("zh") {
        ("z", r)
    } else if let Some(r) = plain.strip_prefix("ch") {
        ("c", r)
    } else if let Some(r) = plain.strip_prefix("sh") {
        ("s", r)
    } else if let Some(r) = plain
        .strip_prefix('n')
        .filter(|r| !r.is_empty() && *r != "g")
    {
        ("l", r)
    } else {
        ("", plain)
    };
    let fin = rest
        .strip_suffix("ng")
        .filter(|f| f.ends_with(['a', 'e', 'i']))
        .map(|f| format!("{f}n"))
        .unwrap_or_else(|| rest.to_string());
    format!("{initial}{fin}")
}

/// How a text character matched a term character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sound {
    Same,
    Reading,
    Near,
    No,
}

/// How a text character (its common reading) sounds against a term character.
fn sound(text: Option<&Reading>, term: &Readings, toned: bool, polyphones: bool) -> Sound {
    let (Some(t), Some(c)) = (text, &term.common) else {
        return Sound::No;
    };
    let tone_ok = |a: &Reading, b: &Reading| !toned || a.tone() == b.tone();
    if t.plain == c.plain && tone_ok(t, c) {
        return Sound::Reading;
    }
    if t.near == c.near && tone_ok(t, c) {
        return Sound::Near;
    }
    if polyphones
        && term
            .other
            .iter()
            .any(|o| o.plain == t.plain && tone_ok(t, o))
    {
        return Sound::Near;
    }
    Sound::No
}

pub struct HomophoneIndex {
    /// (term characters, term readings per character, caller's id)
    terms: Vec<(Vec<char>, Vec<Readings>, usize)>,
    /// First character's near key → indices into `terms`.
    by_first: HashMap<String, Vec<usize>>,
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
            let rs: Vec<Readings> = chars.iter().map(|&c| readings(c)).collect();
            let Some(first) = rs
                .iter()
                .map(|r| r.common.as_ref())
                .collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            let idx = out.terms.len();
            let mut keys = vec![first[0].near.clone()];
            keys.extend(rs[0].other.iter().map(|o| o.near.clone()));
            keys.sort();
            keys.dedup();
            for k in keys {
                out.by_first.entry(k).or_default().push(idx);
            }
            out.terms.push((chars, rs, id));
        }
        out
    }

    /// Sound-alike matches in `text` that are not exact occurrences of the term.
    pub fn find(&self, text: &[char]) -> Vec<Heard> {
        // Only a term's characters have their other readings tried; the text's have the common one.
        let text_readings: Vec<Option<Reading>> = text
            .iter()
            .map(|&c| c.to_pinyin().map(Reading::new))
            .collect();
        let mut out = Vec::new();
        for start in 0..text.len() {
            let Some(first) = &text_readings[start] else {
                continue;
            };
            let Some(candidates) = self.by_first.get(&first.near) else {
                continue;
            };
            for &t in candidates {
                let (chars, rs, id) = &self.terms[t];
                let end = start + chars.len();
                if end > text.len() {
                    continue;
                }
                let same = (0..chars.len())
                    .filter(|&k| text[start + k] == chars[k])
                    .count();
                if same == 0 || same == chars.len() {
                    continue;
                }
                let toned = chars.len() == 2;
                let polyphones = chars.len() >= 3 && same >= 2;
                let mut near = 0;
                let sounds = (0..chars.len()).all(|k| {
                    let s = if text[start + k] == chars[k] {
                        Sound::Same
                    } else {
                        sound(text_readings[start + k].as_ref(), &rs[k], toned, polyphones)
                    };
                    near += usize::from(s == Sound::Near);
                    s != Sound::No
                });
                if sounds && near <= 1 {
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

    #[test]
    fn near_readings_are_folded() {
        assert_eq!(near_key("jing"), "jin");
        assert_eq!(near_key("zhang"), "zan");
        assert_eq!(near_key("shi"), "si");
        assert_eq!(near_key("chuang"), "cuan");
        assert_eq!(near_key("nan"), "lan");
        assert_eq!(near_key("ong"), "ong");
        assert_eq!(near_key("kong"), "kong");
        assert_eq!(near_key("er"), "er");
    }

    #[test]
    fn near_homophones_match_one_character_at_most() {
        let idx = HomophoneIndex::new([("竞品", 0), ("刹车片", 1), ("售后", 2), ("陈列费", 3)]);
        let find = |t: &str| idx.find(&t.chars().collect::<Vec<_>>());
        // jìn for jìng, same tone: a front/back nasal slip.
        assert_eq!(find("价格比进品高").len(), 1);
        // jīng has another tone: 精品 is not 竞品.
        assert!(find("价格比精品高").is_empty());
        // shā is another reading of 刹; two characters of three are written the same.
        assert_eq!(find("杀车片的价格").len(), 1);
        // A polyphone's other reading is not enough when only one character is the same.
        assert!(find("术后疼痛").is_empty());
        // One near reading is a slip (cén for chén); two are another word (cén niē for chén liè).
        let idx = HomophoneIndex::new([("陈列费用", 0)]);
        assert!(idx.find(&"岑列费用".chars().collect::<Vec<_>>()).len() == 1);
        assert!(idx.find(&"岑捏费用".chars().collect::<Vec<_>>()).is_empty());
    }
}
