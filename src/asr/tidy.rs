//! The one normalisation pass over what whisper wrote: the text a rep reads.
//!
//! [`normalise`] maps a segment's text onto the characters of [`super::chars`]: Chinese
//! punctuation used one way throughout (half-width marks only inside numbers and Latin words),
//! no control, zero-width or stray full-width characters, brackets and quotes only in pairs,
//! at most one mark between two clauses, and no clause written twice back to back. The
//! decoder's rules ([`super::bytes`]) keep most of this from being written at all; this pass
//! cleans the rest and is what every transcript goes through last.

use super::chars::{is_break, is_hanzi, is_latin};

/// Shortest clause, run of clauses or stretch of characters (in content characters) that is
/// taken out when written twice back to back. People do say short things twice ("不是，不是",
/// "对对对", "好的好的") and restart a phrase ("这个，这个"); a clause of six characters or more
/// said twice running is not speech but the decoder going round. Units that are themselves a
/// repetition ("好的好的好的") are left alone.
pub const MIN_REPEAT_CHARS: usize = 6;

/// A piece of text after the characters are mapped.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Piece {
    /// A Chinese character, Latin letter or digit.
    Content(char),
    Space,
    /// A half-width mark that is kept only between two Latin letters or digits: `. , : ' -`.
    Inner(char),
    Percent,
    /// A clause break, already the Chinese mark.
    Break(char),
    Open(char),
    Close(char),
    /// `"`, which opens or closes depending on how many came before.
    Quote,
}

/// How strongly a mark ends what precedes it; of marks in a row the strongest is kept.
fn strength(c: char) -> u8 {
    match c {
        '、' => 0,
        '，' => 1,
        '：' | '；' => 2,
        '。' => 3,
        _ => 4, // ？！
    }
}

fn stronger(a: Option<char>, b: char) -> char {
    match a {
        Some(a) if strength(a) >= strength(b) => a,
        _ => b,
    }
}

fn closing(open: char) -> char {
    match open {
        '（' => '）',
        '《' => '》',
        _ => '”',
    }
}

/// One character as a piece, or None when it is dropped.
fn piece(c: char) -> Option<Piece> {
    // Full-width forms of ASCII other than the Chinese punctuation become ASCII first.
    let c = match c {
        '，' | '！' | '？' | '：' | '；' | '（' | '）' => c,
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' => ' ',
        _ => c,
    };
    Some(match c {
        c if is_hanzi(c) || is_latin(c) => Piece::Content(c),
        c if c.is_whitespace() => Piece::Space,
        '.' | ',' | ':' | '\'' | '-' => Piece::Inner(c),
        '%' => Piece::Percent,
        '，' | '。' | '？' | '！' | '、' | '：' | '；' => Piece::Break(c),
        '?' => Piece::Break('？'),
        '!' => Piece::Break('！'),
        ';' => Piece::Break('；'),
        '｡' => Piece::Break('。'),
        '､' => Piece::Break('、'),
        // Whisper writes these where the speaker paused: a comma is what was meant.
        '…' | '⋯' | '/' | '\\' | '=' | '^' | '~' | '～' | '—' | '–' | '|' | '·' => {
            Piece::Break('，')
        }
        '(' | '（' | '[' | '【' | '〔' => Piece::Open('（'),
        ')' | '）' | ']' | '】' | '〕' => Piece::Close('）'),
        '《' | '〈' => Piece::Open('《'),
        '》' | '〉' => Piece::Close('》'),
        '“' | '「' | '『' | '‘' => Piece::Open('“'),
        '”' | '」' | '』' | '’' => Piece::Close('”'),
        '"' => Piece::Quote,
        // Control and zero-width characters, U+FFFD, symbols, other scripts: not speech.
        _ => return None,
    })
}

/// Keep only brackets and quotes that have a partner and hold some text.
fn pair_brackets(pieces: &mut [Option<Piece>]) {
    let mut quotes = 0;
    for p in pieces.iter_mut() {
        if *p == Some(Piece::Quote) {
            *p = Some(if quotes % 2 == 0 {
                Piece::Open('“')
            } else {
                Piece::Close('”')
            });
            quotes += 1;
        }
    }
    let mut stack: Vec<usize> = Vec::new();
    let mut pairs = Vec::new();
    for i in 0..pieces.len() {
        match pieces[i] {
            Some(Piece::Open(_)) => stack.push(i),
            Some(Piece::Close(c)) => {
                // A closing mark pairs with the innermost open one of its kind; anything opened
                // inside it and not closed is unmatched.
                match stack
                    .iter()
                    .rposition(|&o| matches!(pieces[o], Some(Piece::Open(k)) if closing(k) == c))
                {
                    Some(at) => {
                        for &o in &stack[at + 1..] {
                            pieces[o] = None;
                        }
                        pairs.push((stack[at], i));
                        stack.truncate(at);
                    }
                    None => pieces[i] = None,
                }
            }
            _ => {}
        }
    }
    for o in stack {
        pieces[o] = None;
    }
    for (o, c) in pairs {
        if !pieces[o..c]
            .iter()
            .any(|p| matches!(p, Some(Piece::Content(_))))
        {
            pieces[o] = None;
            pieces[c] = None;
        }
    }
}

/// Map the characters and write the text back with consistent punctuation.
fn clean(text: &str) -> String {
    let mut pieces: Vec<Option<Piece>> = text.chars().map(piece).collect();
    pair_brackets(&mut pieces);
    let pieces: Vec<Piece> = pieces.into_iter().flatten().collect();
    let mut out = String::with_capacity(text.len());
    let mut pending: Option<char> = None;
    // A mark may follow text or a closing bracket, never the start or an opening bracket.
    let can_break = |out: &String| matches!(out.chars().last(), Some(c) if c.is_alphanumeric() || matches!(c, '）' | '》' | '”' | '%'));
    for (i, &p) in pieces.iter().enumerate() {
        let last = out.chars().last();
        let next = pieces.get(i + 1).copied();
        let latin_before = pending.is_none() && last.is_some_and(is_latin);
        let latin_after = matches!(next, Some(Piece::Content(c)) if is_latin(c));
        match p {
            Piece::Content(c) | Piece::Open(c) => {
                if let Some(b) = pending.take() {
                    if can_break(&out) {
                        out.push(b);
                    }
                }
                out.push(c);
            }
            Piece::Close(c) => out.push(c),
            Piece::Space => {
                if latin_before && latin_after {
                    out.push(' ');
                } else if pending.is_none()
                    && !last.is_some_and(is_latin)
                    && matches!(next, Some(Piece::Content(c)) if is_hanzi(c))
                {
                    // A pause between Chinese clauses, written as a space.
                    pending = Some('，');
                }
            }
            Piece::Inner(c) => {
                if latin_before && latin_after {
                    out.push(c);
                } else {
                    let b = match c {
                        '.' => '。',
                        ':' => '：',
                        '\'' => continue,
                        _ => '，',
                    };
                    pending = Some(stronger(pending, b));
                }
            }
            Piece::Percent => {
                if pending.is_none() && last.is_some_and(|c| c.is_ascii_digit()) {
                    out.push('%');
                }
            }
            Piece::Break(b) => pending = Some(stronger(pending, b)),
            Piece::Quote => {}
        }
    }
    if let Some(b) = pending {
        if strength(b) >= 3 && can_break(&out) {
            out.push(b);
        }
    }
    out
}

/// A clause: its text up to and including the marks that end it.
struct Clause<'a> {
    text: &'a str,
    /// Its content characters (no punctuation, brackets or spaces).
    content: String,
    /// The mark that ends it, if any.
    end: Option<char>,
}

fn clauses(text: &str) -> Vec<Clause<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let at_end = chars.peek().is_none_or(|&(_, n)| !is_break(n));
        if is_break(c) && at_end {
            let end = i + c.len_utf8();
            out.push(clause(&text[start..end]));
            start = end;
        }
    }
    if start < text.len() {
        out.push(clause(&text[start..]));
    }
    out
}

fn clause(text: &str) -> Clause<'_> {
    Clause {
        text,
        content: text.chars().filter(|c| c.is_alphanumeric()).collect(),
        end: text.chars().last().filter(|&c| is_break(c)),
    }
}

/// True when `s` is a shorter string repeated ("好的好的", "对对对").
fn is_power(s: &[char]) -> bool {
    let n = s.len();
    (1..n).any(|p| n % p == 0 && s.chunks(p).all(|c| c == &s[..p]))
}

fn long_enough(content: &[char]) -> bool {
    content.len() >= MIN_REPEAT_CHARS && !is_power(content)
}

/// Where a run of clauses is written twice back to back: (first clause, run length).
fn repeated_clauses(cl: &[Clause<'_>]) -> Option<(usize, usize)> {
    for k in 1..=cl.len() / 2 {
        for i in 0..=cl.len() - 2 * k {
            let a: String = cl[i..i + k].iter().map(|c| c.content.as_str()).collect();
            let b: String = cl[i + k..i + 2 * k]
                .iter()
                .map(|c| c.content.as_str())
                .collect();
            let chars: Vec<char> = a.chars().collect();
            if a == b && long_enough(&chars) {
                return Some((i, k));
            }
        }
    }
    None
}

/// Where, inside one clause, a stretch of characters is written twice with nothing between:
/// (char offset, length in chars).
fn repeated_stretch(chars: &[char]) -> Option<(usize, usize)> {
    let n = chars.len();
    for len in MIN_REPEAT_CHARS..=n / 2 {
        for i in 0..=n - 2 * len {
            let unit = &chars[i..i + len];
            if unit == &chars[i + len..i + 2 * len]
                && unit.iter().all(|c| c.is_alphanumeric())
                && !is_power(unit)
            {
                return Some((i, len));
            }
        }
    }
    None
}

/// The first clause, run of clauses or stretch written twice back to back, if any.
pub fn first_repeat(text: &str) -> Option<String> {
    let cl = clauses(text);
    if let Some((i, k)) = repeated_clauses(&cl) {
        return Some(cl[i..i + k].iter().map(|c| c.text).collect());
    }
    cl.iter().find_map(|c| {
        let chars: Vec<char> = c.text.chars().collect();
        repeated_stretch(&chars).map(|(i, len)| chars[i..i + len].iter().collect())
    })
}

/// Take out the second copy of everything written twice back to back; the first copy keeps
/// the stronger of the two copies' final marks.
fn dedupe(text: &str) -> String {
    let mut text = text.to_string();
    loop {
        let cl = clauses(&text);
        let next = if let Some((i, k)) = repeated_clauses(&cl) {
            let mut out: String = cl[..i + k - 1].iter().map(|c| c.text).collect();
            let last = &cl[i + k - 1];
            let end = match (last.end, cl[i + 2 * k - 1].end) {
                (Some(a), Some(b)) => Some(stronger(Some(a), b)),
                (a, b) => a.or(b),
            };
            out.push_str(last.text.trim_end_matches(is_break));
            out.extend(end);
            out.extend(cl[i + 2 * k..].iter().map(|c| c.text));
            out
        } else {
            let mut found = None;
            for (n, c) in cl.iter().enumerate() {
                let chars: Vec<char> = c.text.chars().collect();
                if let Some((i, len)) = repeated_stretch(&chars) {
                    let mut fixed: String = chars[..i + len].iter().collect();
                    fixed.extend(&chars[i + 2 * len..]);
                    let mut out: String = cl[..n].iter().map(|c| c.text).collect();
                    out.push_str(&fixed);
                    out.extend(cl[n + 1..].iter().map(|c| c.text));
                    found = Some(out);
                    break;
                }
            }
            match found {
                Some(out) => out,
                None => return text,
            }
        };
        text = next;
    }
}

/// The text a rep reads: see the module documentation. Idempotent.
pub fn normalise(text: &str) -> String {
    let once = clean(text);
    let deduped = dedupe(&once);
    if deduped == once {
        once
    } else {
        clean(&deduped)
    }
}

/// The clauses at the start of `next` that repeat the end of `prev` (whisper starting a new
/// segment or chunk with what it has just written): `next` without them, and what was taken
/// out (empty when nothing was).
pub fn drop_repeated_head(prev: &str, next: &str) -> (String, String) {
    let (p, n) = (clauses(prev), clauses(next));
    for k in (1..=p.len().min(n.len())).rev() {
        let a: String = p[p.len() - k..]
            .iter()
            .map(|c| c.content.as_str())
            .collect();
        let b: String = n[..k].iter().map(|c| c.content.as_str()).collect();
        let chars: Vec<char> = a.chars().collect();
        if a == b && long_enough(&chars) {
            let head: String = n[..k].iter().map(|c| c.text).collect();
            return (next[head.len()..].to_string(), head);
        }
    }
    (next.to_string(), String::new())
}

#[cfg(test)]
mod tests {
    use super::super::chars::problems;
    use super::*;

    fn check(raw: &str, want: &str) {
        let got = normalise(raw);
        assert_eq!(got, want, "from {raw:?}");
        assert_eq!(problems(&got), vec![], "{got}");
        assert_eq!(normalise(&got), got, "normalising twice changes {got:?}");
    }

    #[test]
    fn stray_full_width_forms_become_the_comma_they_stood_for() {
        check(
            "兄弟场陈经理抱怨记由栗心到货慢／均要等五天／希望我们在本地是一个前置仓月。",
            "兄弟场陈经理抱怨记由栗心到货慢，均要等五天，希望我们在本地是一个前置仓月。",
        );
        check(
            "如果能给到60天仗期呢＼可以考虑换我们．",
            "如果能给到60天仗期呢，可以考虑换我们。",
        );
        check("价格＝竞品＾高", "价格，竞品，高");
        check("的话呢Ｇ当时１２％", "的话呢G当时12%");
    }

    #[test]
    fn half_width_marks_stay_only_inside_numbers_and_latin_words() {
        check(
            "修理场陈经理抱怨机由力心到货慢,平均要等五天,希望我们在本地设一个前置仓.",
            "修理场陈经理抱怨机由力心到货慢，平均要等五天，希望我们在本地设一个前置仓。",
        );
        check(
            "早晨7.5到9.5的直播,一共1,000台,3:30开会",
            "早晨7.5到9.5的直播，一共1,000台，3:30开会",
        );
        check(
            "拿到更多的offer嘛?New York的e-mail!",
            "拿到更多的offer嘛？New York的e-mail！",
        );
        check("比竞品高了12%。百分%之", "比竞品高了12%。百分之");
        check("客户说,车片的价格", "客户说，车片的价格");
    }

    #[test]
    fn spaces_between_chinese_clauses_are_pauses() {
        check(
            "首先说一下 经历说完了 这个小伙伴",
            "首先说一下，经历说完了，这个小伙伴",
        );
        check("高了10% 如果能给到", "高了10%，如果能给到");
        check("用 iPhone 拍的 照片", "用iPhone拍的，照片");
        check("  你好  ", "你好");
    }

    #[test]
    fn control_and_zero_width_characters_and_other_scripts_go() {
        check(
            "希望\u{200D}\u{200D}我们\u{200B}在\u{FEFF}本地\u{FFFD}设\u{0007}一个",
            "希望我们在本地设一个",
        );
        check("好的\n明天见\t再说", "好的，明天见，再说");
        check("はい好的😀", "好的");
    }

    #[test]
    fn marks_in_a_row_become_the_strongest_one() {
        check("，好的，，明天。，再说、。", "好的，明天。再说。");
        check("是吗？。对！", "是吗？对！");
        check("然后……我们", "然后，我们");
        check("结束了，", "结束了");
        check("：开始", "开始");
    }

    #[test]
    fn brackets_and_quotes_only_in_pairs() {
        check("前置仓（本地", "前置仓本地");
        check("前置仓）本地（", "前置仓本地");
        check("看了(新版)的手册", "看了（新版）的手册");
        check("他说\"价格太高\"，还有\"再说", "他说“价格太高”，还有再说");
        check("《产品手册》到了（）吗", "《产品手册》到了吗");
        check("（《手册）》", "（手册）");
        check("[音乐]好的", "（音乐）好的");
    }

    #[test]
    fn a_clause_written_twice_is_kept_once() {
        check(
            "希望我们在本地设一个前置仓，希望我们在本地设一个前置仓。",
            "希望我们在本地设一个前置仓。",
        );
        check(
            "到货慢，平均要等五天。到货慢，平均要等五天。希望",
            "到货慢，平均要等五天。希望",
        );
        check(
            "希望我们在本地设一个前置仓希望我们在本地设一个前置仓",
            "希望我们在本地设一个前置仓",
        );
        check(
            "平均要等五天，平均要等五天，平均要等五天。",
            "平均要等五天。",
        );
        // Said twice, short: kept.
        check("不是，不是。对对对，对对对", "不是，不是。对对对，对对对");
        check("好的好的好的，好的好的好的", "好的好的好的，好的好的好的");
        check("这个这个客户", "这个这个客户");
    }

    /// Characters whisper writes or could write, the ones a rep must not see among them.
    const ALPHABET: &[char] = &[
        '希', '望', '我', '们', '设', '仓', '等', '五', '天', '好', '的', 'a', 'B', 'x', '1', '2',
        '0', '，', '。', '？', '！', '、', '：', '；', '“', '”', '（', '）', '《', '》', ',', '.',
        '?', '!', ':', ';', '\'', '-', '%', ' ', '"', '(', ')', '[', ']', '／', '＼', '．', '＝',
        '＂', '＾', '－', '％', 'Ｇ', '１', '\u{200D}', '\u{200B}', '\u{FEFF}', '\u{FFFD}', '\n',
        '\t', '\u{0007}', '…', '～', '—', '·', '「', '」', '‘', '’', 'は', '😀', '\u{3000}',
    ];

    proptest::proptest! {
        /// Whatever whisper writes, the text a rep reads has no problem and is stable.
        #[test]
        fn any_text_normalises_to_readable_text(
            picks in proptest::collection::vec(0..ALPHABET.len(), 0..60),
            copies in 1usize..3,
        ) {
            let unit: String = picks.iter().map(|&i| ALPHABET[i]).collect();
            let raw = unit.repeat(copies);
            let got = normalise(&raw);
            proptest::prop_assert_eq!(problems(&got), vec![], "{:?} -> {:?}", raw, got);
            proptest::prop_assert_eq!(normalise(&got), got.clone(), "{:?}", raw);
        }
    }

    #[test]
    fn a_segment_does_not_begin_with_what_the_last_one_ended_with() {
        assert_eq!(
            drop_repeated_head("到货慢，平均要等五天。", "平均要等五天。希望我们设仓。"),
            ("希望我们设仓。".to_string(), "平均要等五天。".to_string())
        );
        assert_eq!(
            drop_repeated_head("不是。", "不是，现在"),
            ("不是，现在".to_string(), String::new())
        );
    }
}
