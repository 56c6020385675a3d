//! Whole characters from whisper's byte-level tokens.
//!
//! Whisper's vocabulary has no token for many Chinese characters and for the full-width comma:
//! they are written one byte token at a time (，is three tokens: EF, BC, 8C). The decoder then
//! chooses each byte on its own, and sometimes completes a character wrongly: a lead byte
//! followed by a token that cannot continue it (the text gets U+FFFD), or the comma's EF BC
//! completed as a full-width letter ("的话呢Ｇ当时"). These rules run as whisper's logits filter:
//! at each step, tokens that would make the text invalid UTF-8, or spell a full-width letter or
//! digit (never what a speaker says; whisper writes Latin letters and digits half-width), are
//! ruled out, and a segment may not end inside a character, so the decoder takes its best
//! valid choice.

use std::os::raw::{c_int, c_void};

use whisper_rs::{WhisperContext, WhisperTokenData};

/// One vocabulary entry, as far as the rules need it.
#[derive(Debug, Clone, Copy)]
struct Tok {
    id: i32,
    /// Leading UTF-8 continuation bytes (0x80–0xBF) before anything else, at most 3 counted.
    lead_cont: u8,
    len: u8,
    /// The first three bytes (zero-padded).
    head: [u8; 3],
}

/// The token rules for one model's vocabulary.
#[derive(Debug)]
pub struct ByteRules {
    /// Text tokens that begin with a continuation byte.
    continuing: Vec<Tok>,
    /// Text tokens that begin a character (or are ASCII).
    beginning: Vec<i32>,
    /// First special token: ids from here on are not text.
    eot: i32,
    n_vocab: usize,
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

/// A full-width Latin letter or digit (U+FF10–FF19, FF21–FF3A, FF41–FF5A).
fn full_width_alnum(c: char) -> bool {
    matches!(c, '\u{FF10}'..='\u{FF19}' | '\u{FF21}'..='\u{FF3A}' | '\u{FF41}'..='\u{FF5A}')
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
        for (id, b) in bytes.iter().enumerate() {
            if b.is_empty() {
                continue;
            }
            if is_cont(b[0]) {
                let mut head = [0u8; 3];
                for (h, &x) in head.iter_mut().zip(b.iter()) {
                    *h = x;
                }
                continuing.push(Tok {
                    id: id as i32,
                    lead_cont: b.iter().take(3).take_while(|&&x| is_cont(x)).count() as u8,
                    len: b.len().min(255) as u8,
                    head,
                });
            } else {
                beginning.push(id as i32);
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
            eot,
            n_vocab,
            ends,
        }
    }

    /// The unfinished character at the end of the decoded text tokens: its bytes so far and
    /// how many more it needs. Empty when the text ends on a whole character.
    fn unfinished(&self, decoded: &[i32]) -> (Vec<u8>, usize) {
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
        // The last byte that is not a continuation byte starts the last character.
        let Some(p) = tail.iter().rposition(|&b| !is_cont(b)) else {
            return (Vec::new(), 0);
        };
        let Some(need) = trailing(tail[p]) else {
            return (Vec::new(), 0);
        };
        let have = tail.len() - p - 1;
        if have >= need {
            (Vec::new(), 0)
        } else {
            (tail[p..].to_vec(), need - have)
        }
    }

    /// Rule out, in `logits`, the tokens that cannot come next after `decoded`.
    pub fn apply(&self, decoded: &[i32], logits: &mut [f32]) {
        let mut ban = |id: i32| {
            if let Some(l) = logits.get_mut(id as usize) {
                *l = f32::NEG_INFINITY;
            }
        };
        let (prefix, pending) = self.unfinished(decoded);
        if pending == 0 {
            for t in &self.continuing {
                ban(t.id);
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
                lead == pending
            };
            if !valid {
                ban(t.id);
                continue;
            }
            if len >= pending && pending <= 3 {
                let mut ch = prefix.clone();
                ch.extend_from_slice(&t.head[..pending]);
                if let Some(c) = std::str::from_utf8(&ch).ok().and_then(|s| s.chars().next()) {
                    if full_width_alnum(c) {
                        ban(t.id);
                    }
                }
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
        assert!(ok.contains(&0x9E), "～");
    }

    #[test]
    fn a_special_token_ends_the_text_so_far() {
        let r = rules();
        let ok = allowed(&r, &[0xEF, 300]);
        assert!(ok.contains(&(b'a' as i32)));
        assert!(!ok.contains(&0xBC));
    }
}
