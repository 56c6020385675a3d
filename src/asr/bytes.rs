//! Whole characters from whisper's byte-level tokens, and only characters speech can produce.
//!
//! Whisper's vocabulary has no token for many Chinese characters and for any full-width form:
//! they are written one byte token at a time (，is three tokens: EF, BC, 8C). The decoder then
//! chooses each byte on its own, and sometimes completes a character wrongly: a lead byte
//! followed by a token that cannot continue it (the text gets U+FFFD), or the comma's EF BC
//! completed as another full-width form ("的话呢Ｇ当时", "到货慢／均要等五天"). These rules run as
//! whisper's logits filter. At each step they rule out every token that would make the text
//! invalid UTF-8 or write a character a transcript may not hold (see [`super::chars`]): after
//! EF BC only `，？！` may follow (`8C`, `9F`, `81`), never `：；（）／＼．` or a full-width letter;
//! no control or zero-width character, symbol or other script; `:'-%` only inside numbers and
//! Latin words. Whisper's half-width clause marks (`,.?!`, and a space for a pause) stay
//! allowed: each stands for one Chinese mark, which the normalisation pass ([`super::tidy`])
//! writes. A segment may not end inside a character. The decoder then takes its best choice
//! among what is left.

use std::os::raw::{c_int, c_void};

use whisper_rs::{WhisperContext, WhisperTokenData};

use super::chars::{is_hanzi, DECODER_PUNCTUATION};

/// Latin-only tokens longer than this (spaces aside) are never written: a memo's Latin is
/// acronyms and short brand names (`CT`, `PPT`, `KPI`), which whisper spells in tokens of up to
/// three letters, while the 30 000 longer English word tokens made up most of the output
/// projection every decoding step computes.
pub const LONGEST_LATIN_TOKEN: usize = 3;

/// What the text so far ends with, as far as the next character's rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Before {
    /// Nothing yet in this segment.
    Start = 0,
    Digit = 1,
    Letter = 2,
    /// A Chinese character or mark.
    Other = 3,
}

impl Before {
    fn of(c: char) -> Before {
        if c.is_ascii_digit() {
            Before::Digit
        } else if c.is_ascii_alphabetic() {
            Before::Letter
        } else {
            Before::Other
        }
    }
}

/// May `c` be written after `before`, when `next` (if known) follows it?
fn admissible(c: char, before: Before, next: Option<char>) -> bool {
    if is_hanzi(c) || c.is_ascii_alphanumeric() || DECODER_PUNCTUATION.contains(c) {
        return true;
    }
    let latin_before = matches!(before, Before::Digit | Before::Letter);
    let latin_after = next.is_none_or(|n| n.is_ascii_alphanumeric());
    match c {
        // Whisper's own spelling of a clause break (and a space for a pause): the
        // normalisation writes the Chinese mark one for one. Ruling them out here made the
        // decoder drop the break instead, and words with it ("经销商希望" → "相希望"; real-clip
        // CER on the development part 0.177 → 0.193).
        ',' | '.' | '?' | '!' => before != Before::Start,
        ' ' => true,
        ':' | '\'' | '-' => latin_before && latin_after,
        '%' => before == Before::Digit,
        _ => false,
    }
}

/// The code point a UTF-8 sequence spells, with missing continuation bytes filled by `fill`
/// (0x80 for the lowest completion, 0xBF for the highest).
fn code_point(bytes: &[u8], fill: u8) -> Option<u32> {
    let need = trailing(*bytes.first()?)?;
    let mut cp = match need {
        0 => return Some(bytes[0] as u32),
        1 => bytes[0] as u32 & 0x1F,
        2 => bytes[0] as u32 & 0x0F,
        _ => bytes[0] as u32 & 0x07,
    };
    for i in 1..=need {
        cp = (cp << 6) | (bytes.get(i).copied().unwrap_or(fill) as u32 & 0x3F);
    }
    Some(cp)
}

/// Can the start of a character, `partial` (a lead byte and fewer continuation bytes than it
/// needs), still become a character the decoder may write?
fn viable(partial: &[u8]) -> bool {
    let (Some(lo), Some(hi)) = (code_point(partial, 0x80), code_point(partial, 0xBF)) else {
        return false;
    };
    // The shortest form only: F0 80 … would spell U+0000, but is not UTF-8.
    let shortest = match trailing(partial[0]) {
        Some(3) => 0x10000,
        Some(2) => 0x800,
        _ => 0x80,
    };
    let lo = lo.max(shortest);
    let hit = |a: u32, b: u32| a <= hi && lo <= b;
    hit(0x4E00, 0x9FFF)
        || hit(0x3400, 0x4DBF)
        || hit(0x3007, 0x3007)
        || DECODER_PUNCTUATION.chars().any(|c| hit(c as u32, c as u32))
}

/// May these bytes, which begin at a character boundary, follow `before`? Every whole
/// character in them must be admissible, and bytes left unfinished at the end must still be
/// able to become one.
fn admissible_bytes(bytes: &[u8], mut before: Before) -> bool {
    let (text, rest) = match std::str::from_utf8(bytes) {
        Ok(t) => (t, &[][..]),
        Err(e) if e.error_len().is_none() => {
            let (a, b) = bytes.split_at(e.valid_up_to());
            (std::str::from_utf8(a).unwrap_or_default(), b)
        }
        Err(_) => return false,
    };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        if !admissible(c, before, next) {
            return false;
        }
        // A mark at the end of a token is judged without what follows it; if no Latin letter
        // or digit comes, the normalisation pass writes the Chinese mark instead.
        before = Before::of(c);
    }
    rest.is_empty() || viable(rest)
}

/// One vocabulary entry that begins with continuation bytes, as far as the rules need it.
#[derive(Debug, Clone, Copy)]
struct Tok {
    id: i32,
    /// Leading UTF-8 continuation bytes (0x80–0xBF) before anything else, at most 3 counted.
    lead_cont: u8,
    len: u8,
    /// The first three bytes (zero-padded).
    head: [u8; 3],
    /// What follows the leading continuation bytes may come after a Chinese character.
    rest_ok: bool,
}

/// The token rules for one model's vocabulary.
#[derive(Debug)]
pub struct ByteRules {
    /// Text tokens that begin with a continuation byte.
    continuing: Vec<Tok>,
    /// Text tokens that begin a character (or are ASCII).
    beginning: Vec<i32>,
    /// Beginning tokens ruled out after each kind of text ([`Before`] as index).
    banned_after: [Vec<i32>; 4],
    /// First special token: ids from here on are not text.
    eot: i32,
    n_vocab: usize,
    /// The text tokens some decoding step may write (see [`ByteRules::writable`]).
    writable: Vec<i32>,
    /// The last (up to) four bytes of each text token and how many there are: all it takes
    /// to read the end of the decoded text.
    ends: Vec<([u8; 4], u8)>,
}

fn is_cont(b: u8) -> bool {
    (0x80..0xC0).contains(&b)
}

/// Bytes a character with this lead byte takes after it; None for a byte that cannot lead.
fn trailing(lead: u8) -> Option<usize> {
    match lead {
        0x00..=0x7F => Some(0),
        0xC2..=0xDF => Some(1),
        0xE0..=0xEF => Some(2),
        0xF0..=0xF4 => Some(3),
        _ => None,
    }
}

/// Where the decoded text stands: the unfinished character at its end (bytes so far and how
/// many more it needs; empty when it ends on a whole character) and what it ends with.
struct Tail {
    prefix: Vec<u8>,
    pending: usize,
    before: Before,
}

impl ByteRules {
    pub fn build(ctx: &WhisperContext) -> ByteRules {
        let eot = ctx.token_eot();
        let vocab: Vec<Vec<u8>> = (0..eot)
            .map(|id| {
                ctx.token_to_bytes(id)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default()
            })
            .collect();
        Self::from_vocab(vocab, eot, ctx.n_vocab().max(0) as usize)
    }

    fn from_vocab(bytes: Vec<Vec<u8>>, eot: i32, n_vocab: usize) -> ByteRules {
        let mut continuing = Vec::new();
        let mut beginning = Vec::new();
        let mut banned_after: [Vec<i32>; 4] = Default::default();
        let mut writable = Vec::new();
        for (id, b) in bytes.iter().enumerate() {
            if b.is_empty() {
                continue;
            }
            if is_cont(b[0]) {
                let mut head = [0u8; 3];
                for (h, &x) in head.iter_mut().zip(b.iter()) {
                    *h = x;
                }
                let lead_cont = b.iter().take(3).take_while(|&&x| is_cont(x)).count();
                let tok = Tok {
                    id: id as i32,
                    lead_cont: lead_cont as u8,
                    len: b.len().min(255) as u8,
                    head,
                    rest_ok: admissible_bytes(&b[lead_cont..], Before::Other),
                };
                // It can finish a character (all continuation bytes) or finish one and go on.
                if tok.lead_cont == tok.len || tok.rest_ok {
                    writable.push(tok.id);
                }
                continuing.push(tok);
            } else {
                beginning.push(id as i32);
                let latin_word =
                    b.is_ascii() && b.iter().filter(|&&c| c != b' ').count() > LONGEST_LATIN_TOKEN;
                let mut anywhere = false;
                for before in [Before::Start, Before::Digit, Before::Letter, Before::Other] {
                    if admissible_bytes(b, before) {
                        anywhere = true;
                    } else {
                        banned_after[before as usize].push(id as i32);
                    }
                }
                if anywhere && !latin_word {
                    writable.push(id as i32);
                }
            }
        }
        let ends = bytes
            .iter()
            .map(|b| {
                let tail = &b[b.len().saturating_sub(4)..];
                let mut end = [0u8; 4];
                end[..tail.len()].copy_from_slice(tail);
                (end, tail.len() as u8)
            })
            .collect();
        ByteRules {
            continuing,
            beginning,
            banned_after,
            eot,
            n_vocab,
            writable,
            ends,
        }
    }

    /// Rules for a vocabulary read from a model file (`bytes[id]` is text token `id`).
    pub fn from_text_tokens(bytes: Vec<Vec<u8>>) -> ByteRules {
        let eot = bytes.len() as i32;
        Self::from_vocab(bytes, eot, eot as usize)
    }

    /// The text tokens some decoding step may write: every token these rules let through in
    /// some state, except Latin words of more than [`LONGEST_LATIN_TOKEN`] letters (whisper
    /// spells a longer word in shorter pieces). Every other token is ruled out at every step, so
    /// whisper.cpp need not compute its logit at all (`asr.restrict_output`).
    pub fn writable(&self) -> &[i32] {
        &self.writable
    }

    fn tail(&self, decoded: &[i32]) -> Tail {
        let mut tail: Vec<u8> = Vec::new();
        for &t in decoded.iter().rev() {
            if t >= self.eot || t < 0 {
                break;
            }
            let Some((end, n)) = self.ends.get(t as usize) else {
                break;
            };
            let mut joined = end[..*n as usize].to_vec();
            joined.extend_from_slice(&tail);
            tail = joined;
            if tail.len() >= 4 {
                break;
            }
        }
        let whole = |before| Tail {
            prefix: Vec::new(),
            pending: 0,
            before,
        };
        // The last byte that is not a continuation byte starts the last character.
        let Some(p) = tail.iter().rposition(|&b| !is_cont(b)) else {
            return whole(if tail.is_empty() {
                Before::Start
            } else {
                Before::Other
            });
        };
        let Some(need) = trailing(tail[p]) else {
            return whole(Before::Other);
        };
        let have = tail.len() - p - 1;
        if have >= need {
            let last = std::str::from_utf8(&tail[p..])
                .ok()
                .and_then(|s| s.chars().next());
            whole(last.map_or(Before::Other, Before::of))
        } else {
            Tail {
                prefix: tail[p..].to_vec(),
                pending: need - have,
                before: Before::Other,
            }
        }
    }

    /// Rule out, in `logits`, the tokens that cannot come next after `decoded`.
    pub fn apply(&self, decoded: &[i32], logits: &mut [f32]) {
        let mut ban = |id: i32| {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        };
        let Tail {
            prefix,
            pending,
            before,
        } = self.tail(decoded);
        if pending == 0 {
            for t in &self.continuing {
                ban(t.id);
            }
            for &id in &self.banned_after[before as usize] {
                ban(id);
            }
            return;
        }
        for &id in &self.beginning {
            ban(id);
        }
        // Nor may the segment or the text end in the middle of a character.
        for id in self.eot..self.n_vocab as i32 {
            ban(id);
        }
        for t in &self.continuing {
            let len = t.len as usize;
            let lead = t.lead_cont as usize;
            // It must continue the character for as long as it needs, then begin a new one.
            let valid = if len <= pending {
                lead == len
            } else {
                lead == pending && t.rest_ok
            };
            if !valid {
                ban(t.id);
                continue;
            }
            let mut ch = prefix.clone();
            ch.extend_from_slice(&t.head[..pending.min(len).min(3)]);
            let ok = if len >= pending {
                std::str::from_utf8(&ch)
                    .ok()
                    .and_then(|s| s.chars().next())
                    .is_some_and(|c| admissible(c, before, None))
            } else {
                viable(&ch)
            };
            if !ok {
                ban(t.id);
            }
        }
    }
}
/// The logits filter whisper.cpp calls at each decoding step; `user_data` is a `&ByteRules`
/// that outlives the decode.
///
/// # Safety
/// whisper.cpp passes `n_tokens` token records and one logit per vocabulary entry.
pub(crate) unsafe extern "C" fn filter_logits(
    _ctx: *mut whisper_rs::WhisperSysContext,
    _state: *mut whisper_rs::WhisperSysState,
    tokens: *const WhisperTokenData,
    n_tokens: c_int,
    logits: *mut f32,
    user_data: *mut c_void,
) {
    if user_data.is_null() || logits.is_null() {
        return;
    }
    without_unwinding(|| {
        let rules = &*(user_data as *const ByteRules);
        let logits = std::slice::from_raw_parts_mut(logits, rules.n_vocab);
        let decoded: Vec<i32> = if tokens.is_null() || n_tokens <= 0 {
            Vec::new()
        } else {
            std::slice::from_raw_parts(tokens, n_tokens as usize)
                .iter()
                .rev()
                .take(8)
                .rev()
                .map(|t| t.id)
                .collect()
        };
        rules.apply(&decoded, logits);
    });
}

/// Run `f` for whisper.cpp, which called us: a panic must not unwind into C (across
/// `extern "C"` it aborts the whole process). The logits are then left as whisper computed
/// them; the rules refine the decoding, it does not need them.
fn without_unwinding(f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        tracing::error!("the logits filter panicked; this decoding step is unfiltered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_the_filter_does_not_unwind_into_whisper() {
        let mut ran = false;
        without_unwinding(|| {
            ran = true;
            panic!("a bug in the rules");
        });
        assert!(ran);
    }

    /// A vocabulary of single bytes (ids 0–255, as the byte), a few merged tokens, then
    /// special tokens from 300.
    fn rules() -> ByteRules {
        let mut vocab: Vec<Vec<u8>> = (0u16..256).map(|b| vec![b as u8]).collect();
        vocab.push("的话".as_bytes().to_vec()); // 256
        vocab.push(vec![0x8C, 0xE5]); // 257: ends ，and begins another character
        vocab.push(vec![0x8C, 0x8C]); // 258: one continuation byte too many
        vocab.push(",我".as_bytes().to_vec()); // 259
        vocab.push(b"3.5".to_vec()); // 260
        vocab.push(b" ab".to_vec()); // 261
        vocab.push(vec![0xE7, 0x9A, 0x84, 0xEF]); // 262: 的 and the start of a full-width form
        vocab.push(vec![0xE7, 0x9A, 0x84, 0xF0]); // 263: 的 and the start of an emoji
        vocab.push(vec![0x8C, b':']); // 264: ends ， and writes a half-width colon
        while vocab.len() < 300 {
            vocab.push(Vec::new());
        }
        ByteRules::from_vocab(vocab, 300, 310)
    }

    fn allowed(r: &ByteRules, decoded: &[i32]) -> Vec<i32> {
        let mut logits = vec![0.0f32; 310];
        r.apply(decoded, &mut logits);
        (0..310)
            .filter(|&i| logits[i as usize].is_finite())
            .collect()
    }

    #[test]
    fn writable_tokens_are_those_some_step_lets_through() {
        let mut vocab: Vec<Vec<u8>> = (0u16..256).map(|b| vec![b as u8]).collect();
        vocab.push("的话".as_bytes().to_vec()); // 256
        vocab.push(b" KPI".to_vec()); // 257: three letters
        vocab.push(b" the".to_vec()); // 258: three letters and a space
        vocab.push(b"hello".to_vec()); // 259: a Latin word
        vocab.push("Привет".as_bytes().to_vec()); // 260: another script
        vocab.push("\u{200D}".as_bytes().to_vec()); // 261: zero-width joiner
        vocab.push(vec![0x8C, 0xE5]); // 262: ends ，and begins another character
        vocab.push(vec![0x8C, 0x8C, 0x8C, 0x8C]); // 263: continues no character
        vocab.push(Vec::new()); // 264
        let r = ByteRules::from_text_tokens(vocab);
        let w = r.writable();
        for id in [
            b'a' as i32,
            b'7' as i32,
            b',' as i32,
            b' ' as i32,
            0xE7,
            0x9A,
            256,
            257,
            258,
            262,
        ] {
            assert!(w.contains(&id), "{id} may be written");
        }
        for id in [0x07, 0xFF, 259, 260, 261, 263, 264] {
            assert!(!w.contains(&id), "{id} is never written");
        }
        // Every token some step allows is writable (the rules are the authority).
        let sequences: [&[i32]; 6] = [
            &[],
            &[256],
            &[0xE7],
            &[0xE7, 0x9A],
            &[b'3' as i32],
            &[b'a' as i32],
        ];
        for decoded in sequences {
            let mut logits = vec![0.0f32; 265];
            r.apply(decoded, &mut logits);
            for (id, l) in logits.iter().enumerate() {
                if l.is_finite() && ![259, 260].contains(&id) {
                    assert!(
                        w.contains(&(id as i32)) || id == 264,
                        "{id} after {decoded:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn after_a_whole_character_nothing_may_continue_it() {
        let r = rules();
        let ok = allowed(&r, &[256]);
        assert!(ok.contains(&(b'a' as i32)) && ok.contains(&0xE5) && ok.contains(&256));
        assert!(!ok.contains(&0x8C) && !ok.contains(&257));
        assert!(ok.contains(&300), "special tokens are left alone");
    }

    #[test]
    fn an_unfinished_character_must_be_completed() {
        let r = rules();
        let ok = allowed(&r, &[256, 0xEF]);
        assert!(ok.contains(&0xBC));
        assert!(!ok.contains(&(b'a' as i32)) && !ok.contains(&256) && !ok.contains(&0xE5));
        assert!(
            !ok.contains(&300),
            "nor may the text end or a timestamp come"
        );
    }

    #[test]
    fn the_full_width_comma_may_not_become_a_letter() {
        let r = rules();
        let ok = allowed(&r, &[256, 0xEF, 0xBC]);
        assert!(ok.contains(&0x8C), "，");
        assert!(ok.contains(&257), "， then a new character");
        assert!(!ok.contains(&0xA7), "Ｇ");
        assert!(!ok.contains(&0x91), "１");
        assert!(!ok.contains(&258), "， then a stray continuation byte");
        let ok = allowed(&r, &[0xEF, 0xBD]);
        assert!(!ok.contains(&0x81), "ａ");
        // Nor any other form of the EF BD block (～ included): none is speech, so EF BD is
        // never begun (below).
        assert!(!ok.contains(&0x9E), "～");
        assert!(!allowed(&r, &[0xEF]).contains(&0xBD));
    }

    /// Of the single continuation bytes, exactly these may follow `decoded`.
    fn next_bytes(r: &ByteRules, decoded: &[i32]) -> Vec<i32> {
        allowed(r, decoded)
            .into_iter()
            .filter(|&t| (0x80..0xC0).contains(&t))
            .collect()
    }

    #[test]
    fn after_ef_bc_only_the_comma_question_and_exclamation_marks() {
        let r = rules();
        // ，！？; never ：；（）／＼．＝＂＾－ or anything else of the block.
        assert_eq!(next_bytes(&r, &[256, 0xEF, 0xBC]), vec![0x81, 0x8C, 0x9F]);
        assert!(!allowed(&r, &[256, 0xEF, 0xBC]).contains(&264));
        // After EF only BC: the rest of U+F000–FFFF (compatibility ideographs, variation
        // selectors, the byte-order mark, U+FFFD) is not speech.
        assert_eq!(next_bytes(&r, &[256, 0xEF]), vec![0xBC]);
    }

    #[test]
    fn quotes_but_no_zero_width_or_other_punctuation_from_e2() {
        let r = rules();
        assert_eq!(next_bytes(&r, &[256, 0xE2]), vec![0x80]);
        // “ ” only: not the zero-width space, joiners, marks or the ellipsis.
        assert_eq!(next_bytes(&r, &[256, 0xE2, 0x80]), vec![0x9C, 0x9D]);
    }

    #[test]
    fn no_other_scripts_controls_or_symbols() {
        let r = rules();
        for before in [&[256][..], &[], &[b'3' as i32]] {
            let ok = allowed(&r, before);
            for bad in [
                0x00, 0x07, b'\n', b'\t', b'/', b'=', b'^', b'"', b'(', b'*', b'#',
            ] {
                assert!(!ok.contains(&(bad as i32)), "{bad:#x} after {before:?}");
            }
            for lead in [0xC3, 0xD0, 0xE1, 0xEA, 0xED, 0xF0] {
                assert!(!ok.contains(&lead), "{lead:#x} begins no allowed character");
            }
            for lead in [0xE3, 0xE4, 0xE5, 0xE9, 0xEF, 0xE2] {
                assert!(ok.contains(&lead), "{lead:#x}");
            }
            assert!(ok.contains(&262) && !ok.contains(&263));
        }
    }

    #[test]
    fn half_width_marks_only_after_latin_letters_and_digits() {
        let r = rules();
        let after_chinese = allowed(&r, &[256]);
        for mark in [b':', b'-', b'%', b';', b'\''] {
            assert!(!after_chinese.contains(&(mark as i32)), "{}", mark as char);
        }
        // Whisper's clause marks are left to the normalisation (one for one).
        for mark in [b',', b'.', b'?', b'!', b' '] {
            assert!(after_chinese.contains(&(mark as i32)), "{}", mark as char);
        }
        assert!(after_chinese.contains(&259) && after_chinese.contains(&261));
        assert!(after_chinese.contains(&260) && after_chinese.contains(&(b'a' as i32)));
        let after_digit = allowed(&r, &[b'3' as i32]);
        for mark in [b',', b'.', b':', b'-', b'%', b' '] {
            assert!(after_digit.contains(&(mark as i32)), "{}", mark as char);
        }
        let after_letter = allowed(&r, &[b'a' as i32]);
        assert!(after_letter.contains(&(b'-' as i32)) && after_letter.contains(&261));
        assert!(!after_letter.contains(&(b'%' as i32)));
        // A segment may begin with a space (whisper's word-initial tokens), not with a mark.
        let at_start = allowed(&r, &[]);
        assert!(at_start.contains(&261) && !at_start.contains(&(b',' as i32)));
    }

    #[test]
    fn a_special_token_ends_the_text_so_far() {
        let r = rules();
        let ok = allowed(&r, &[0xEF, 300]);
        assert!(ok.contains(&(b'a' as i32)));
        assert!(!ok.contains(&0xBC));
    }
}
