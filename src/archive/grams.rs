//! The text search index (`q` on `GET /v1/memos`): every character and every pair of adjacent
//! characters of a memo's text, so that any query of one character or more can be looked up.
//!
//! Chinese has no spaces to split words on, and a rep searches for a fragment ("价格", "库存",
//! "张主任") that the segmenter may or may not have made a word. A memo that contains the query
//! contains each of its adjacent pairs (or, for one character, that character), so the memos
//! holding all of them are a superset of the answer, found through an index; the stores then keep
//! only those whose text really contains the query (`instr` / `strpos`), so the answer is exactly
//! what a scan would give.
//!
//! SQLite keeps the grams in an FTS5 table, each gram spelled as an ASCII token
//! ([`index_terms`], [`fts_query`]); PostgreSQL keeps them in a GIN index over an expression
//! computed by SQL (`needtag_grams(text)`), queried with the grams themselves ([`query_grams`]).

use std::collections::BTreeSet;
use std::fmt::Write;

/// At most this many grams of a long query are looked up (spread over the query); the text
/// check afterwards keeps the answer exact.
const MAX_QUERY_GRAMS: usize = 24;

/// The grams a memo containing `q` must contain: its one character, or its distinct adjacent
/// pairs (at most [`MAX_QUERY_GRAMS`], evenly spread). Empty when `q` is empty.
pub fn query_grams(q: &str) -> Vec<String> {
    let chars: Vec<char> = q.chars().collect();
    match chars.len() {
        0 => Vec::new(),
        1 => vec![chars[0].to_string()],
        _ => {
            let mut seen = BTreeSet::new();
            let pairs: Vec<String> = chars
                .windows(2)
                .map(|w| w.iter().collect::<String>())
                .filter(|p| seen.insert(p.clone()))
                .collect();
            if pairs.len() <= MAX_QUERY_GRAMS {
                return pairs;
            }
            let step = pairs.len() as f64 / MAX_QUERY_GRAMS as f64;
            (0..MAX_QUERY_GRAMS)
                .map(|i| pairs[(i as f64 * step) as usize].clone())
                .collect()
        }
    }
}

/// One gram (one or two characters) as an FTS5 token: `u` and six hex digits for a character,
/// `b` and twelve for a pair. Only ASCII letters and digits, so no tokenizer splits or folds it
/// and no query syntax applies to it.
fn token(gram: &str, out: &mut String) {
    let mut chars = gram.chars();
    match (chars.next(), chars.next()) {
        (Some(a), None) => {
            let _ = write!(out, "u{:06x}", a as u32);
        }
        (Some(a), Some(b)) => {
            let _ = write!(out, "b{:06x}{:06x}", a as u32, b as u32);
        }
        _ => {}
    }
}

/// What the FTS5 table indexes for a memo's text: each distinct character and each distinct
/// adjacent pair, as tokens separated by spaces.
pub fn index_terms(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut terms = BTreeSet::new();
    for c in &chars {
        terms.insert(c.to_string());
    }
    for w in chars.windows(2) {
        terms.insert(w.iter().collect::<String>());
    }
    let mut out = String::with_capacity(terms.len() * 14);
    for g in &terms {
        if !out.is_empty() {
            out.push(' ');
        }
        token(g, &mut out);
    }
    out
}

/// The FTS5 query for memos that may contain `q` (all its grams), or None when `q` is empty.
pub fn fts_query(q: &str) -> Option<String> {
    let grams = query_grams(q);
    if grams.is_empty() {
        return None;
    }
    let mut out = String::new();
    for g in &grams {
        if !out.is_empty() {
            out.push(' ');
        }
        token(g, &mut out);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_needs_its_pairs_or_its_character() {
        assert_eq!(query_grams(""), Vec::<String>::new());
        assert_eq!(query_grams("价"), vec!["价"]);
        assert_eq!(query_grams("价格"), vec!["价格"]);
        assert_eq!(query_grams("哈哈哈"), vec!["哈哈"]);
        assert_eq!(query_grams("张主任"), vec!["张主", "主任"]);
    }

    #[test]
    fn a_long_query_looks_up_a_bounded_spread_of_pairs() {
        let q: String = ('一'..).take(200).collect();
        let g = query_grams(&q);
        assert_eq!(g.len(), MAX_QUERY_GRAMS);
        assert_eq!(g[0], "一丁");
    }

    #[test]
    fn tokens_are_ascii_words() {
        assert_eq!(fts_query("价格").unwrap(), "b004ef700683c");
        assert_eq!(fts_query("A").unwrap(), "u000041");
        assert!(fts_query("").is_none());
        let terms = index_terms("价格高，价格");
        assert!(terms
            .split(' ')
            .all(|t| t.chars().all(|c| c.is_ascii_alphanumeric())));
        // 价 格 高 ， and 价格 格高 高， ，价: each once.
        assert_eq!(terms.split(' ').count(), 8);
    }

    #[test]
    fn every_query_gram_of_a_contained_fragment_is_indexed() {
        let text = "张主任提到关节镜手术后患者投诉疼痛管理不到位，希望下周带方案 CT-3 过来";
        let terms: BTreeSet<&str> = index_terms(text).leak().split(' ').collect();
        for q in ["张", "主任", "疼痛管理", "位，希", "CT-3", " CT", "过来"] {
            assert!(text.contains(q));
            for t in fts_query(q).unwrap().split(' ') {
                assert!(terms.contains(t), "{q}: {t} missing");
            }
        }
    }
}
