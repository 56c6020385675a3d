//! What a transcript may contain: the characters speech can produce in written Mandarin.
//!
//! Chinese characters, Latin letters and digits, and Chinese punctuation (`，。？！、：；“”（）《》`);
//! half-width marks only inside numbers and Latin words ("3.5", "1,000", "e-mail", "12%") and a
//! space only between two Latin words. Nothing else: no control or zero-width characters, no
//! full-width forms other than the Chinese punctuation, no symbols, no other scripts.
//! [`super::bytes`] keeps whisper from writing anything else, [`super::tidy`] cleans what is
//! left, and [`problems`] is the check both are tested against.

/// Chinese punctuation a transcript may hold.
pub const CHINESE_PUNCTUATION: &str = "，。？！、：；“”（）《》";

/// Chinese punctuation whisper's decoder may write itself. Whisper base spells the full-width
/// forms (`，？！：；（）`) one byte at a time, and its choice of the third byte is unreliable:
/// `：` and `；` where a comma belongs, `（` that is never closed. A spoken memo needs neither, so
/// after `EF BC` only `，？！` may follow; `：；（）` come only from the normalisation of
/// half-width marks.
pub const DECODER_PUNCTUATION: &str = "，。？！、“”《》";

/// A Chinese character: the CJK Unified Ideographs, Extension A, and 〇 (the zero of written
/// numbers).
pub fn is_hanzi(c: char) -> bool {
    matches!(c, '\u{4E00}'..='\u{9FFF}' | '\u{3400}'..='\u{4DBF}' | '〇')
}

/// A Latin letter or digit (ASCII; whisper writes both half-width).
pub fn is_latin(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// Characters that carry what was said.
pub fn is_content(c: char) -> bool {
    is_hanzi(c) || is_latin(c)
}

/// Half-width marks that may stand between two Latin letters or digits ("3.5", "1,000",
/// "3:30", "don't", "e-mail", "New York").
pub fn is_inner_mark(c: char) -> bool {
    matches!(c, '.' | ',' | ':' | '\'' | '-' | ' ')
}

/// One problem a transcript has, for tests and evaluation reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A character outside the allowed set (with its code point, since it may be invisible).
    Character(char),
    /// Half-width `,` between clauses beside full-width `，`.
    MixedCommas,
    /// A bracket or quote without its partner.
    Unmatched(char),
    /// The same clause (or run of clauses) written twice back to back.
    Repeated(String),
    /// Two punctuation marks in a row, or one at the start.
    Punctuation(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Character(c) => write!(f, "character {c:?} (U+{:04X})", *c as u32),
            Problem::MixedCommas => write!(f, "half-width and full-width commas mixed"),
            Problem::Unmatched(c) => write!(f, "unmatched {c}"),
            Problem::Repeated(s) => write!(f, "written twice: {s}"),
            Problem::Punctuation(s) => write!(f, "punctuation {s:?}"),
        }
    }
}

/// Everything wrong with a transcript's text; empty when a rep could read it as is.
pub fn problems(text: &str) -> Vec<Problem> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut half_comma = false;
    for (i, &c) in chars.iter().enumerate() {
        let before = i.checked_sub(1).map(|j| chars[j]);
        let after = chars.get(i + 1).copied();
        let ok = if is_content(c) || CHINESE_PUNCTUATION.contains(c) {
            true
        } else if c == '%' {
            before.is_some_and(|b| b.is_ascii_digit())
        } else if is_inner_mark(c) {
            let inside = before.is_some_and(is_latin) && after.is_some_and(is_latin);
            if c == ',' && !inside {
                half_comma = true;
            }
            inside
        } else {
            false
        };
        if !ok && !out.contains(&Problem::Character(c)) {
            out.push(Problem::Character(c));
        }
    }
    if half_comma && text.contains('，') {
        out.push(Problem::MixedCommas);
    }
    for c in unmatched(&chars) {
        out.push(Problem::Unmatched(c));
    }
    let marks: Vec<char> = chars
        .iter()
        .copied()
        .filter(|c| !matches!(c, '“' | '”' | '（' | '）' | '《' | '》'))
        .collect();
    if marks.first().is_some_and(|&c| is_break(c)) {
        out.push(Problem::Punctuation(marks[0].to_string()));
    }
    for w in marks.windows(2) {
        if is_break(w[0]) && is_break(w[1]) {
            out.push(Problem::Punctuation(w.iter().collect()));
        }
    }
    if let Some(unit) = super::tidy::first_repeat(text) {
        out.push(Problem::Repeated(unit));
    }
    out
}

/// A mark that ends a clause (Chinese or half-width).
pub fn is_break(c: char) -> bool {
    matches!(
        c,
        '，' | '。' | '？' | '！' | '、' | '：' | '；' | ',' | '.' | '?' | '!' | ':' | ';'
    )
}

/// Brackets and quotes without a partner, in order of appearance.
fn unmatched(chars: &[char]) -> Vec<char> {
    let mut stack: Vec<char> = Vec::new();
    let mut out = Vec::new();
    for &c in chars {
        match c {
            '（' | '《' | '“' => stack.push(c),
            '）' | '》' | '”' => {
                let open = match c {
                    '）' => '（',
                    '》' => '《',
                    _ => '“',
                };
                if stack.last() == Some(&open) {
                    stack.pop();
                } else {
                    out.push(c);
                }
            }
            _ => {}
        }
    }
    out.extend(stack);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_text_has_no_problems() {
        for t in [
            "客户说刹车片的价格比竞品高了12%，如果能给到60天账期，可以考虑换我们。",
            "周一到周五每天早晨7.5到9.5的直播片段。",
            "大家肯定都会争取拿到更多的offer嘛，比如New York的e-mail，一共1,000台。",
            "他问：“你们的《产品手册》（新版）到了吗？”对，对。",
            "",
        ] {
            assert_eq!(problems(t), vec![], "{t}");
        }
    }

    #[test]
    fn what_speech_cannot_produce_is_named() {
        let p = problems("到货慢／均要等五天＼希望\u{200D}我们");
        assert!(p.contains(&Problem::Character('／')), "{p:?}");
        assert!(p.contains(&Problem::Character('＼')), "{p:?}");
        assert!(p.contains(&Problem::Character('\u{200D}')), "{p:?}");
        assert!(problems("六十天账期 可以").contains(&Problem::Character(' ')));
        assert!(problems("高了%").contains(&Problem::Character('%')));
        assert!(problems("ｏｆｆｅｒ").contains(&Problem::Character('ｏ')));
        assert!(problems("はい").contains(&Problem::Character('は')));
        assert!(problems("好\n的").contains(&Problem::Character('\n')));
    }

    #[test]
    fn mixed_commas_brackets_runs_and_repeats_are_named() {
        let p = problems("客户说,价格太高，要等五天");
        assert!(p.contains(&Problem::MixedCommas), "{p:?}");
        assert!(p.contains(&Problem::Character(',')), "{p:?}");
        assert_eq!(problems("前置仓（本地"), vec![Problem::Unmatched('（')]);
        assert_eq!(problems("前置仓》"), vec![Problem::Unmatched('》')]);
        assert_eq!(
            problems("，好的。。"),
            vec![
                Problem::Punctuation("，".into()),
                Problem::Punctuation("。。".into())
            ]
        );
        assert!(matches!(
            problems("希望我们在本地设一个前置仓，希望我们在本地设一个前置仓。")[..],
            [Problem::Repeated(_)]
        ));
    }
}
