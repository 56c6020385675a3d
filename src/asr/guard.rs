//! Guards against text whisper invents: subtitle credits it learned from video corpora, the
//! prompt echoed back, and repetition loops.

/// Phrases whisper produces for silence or music in Chinese, learned from subtitled video.
const KNOWN_HALLUCINATIONS: &[&str] = &[
    "字幕由amara",
    "amara.org",
    "请不吝点赞",
    "点赞订阅转发",
    "订阅转发打赏",
    "明镜与点点",
    "优优独播剧场",
    "yoyotelevisionseries",
    "字幕志愿者",
    "字幕提供",
    "谢谢观看",
    "感谢观看",
    "谢谢大家观看",
    "本字幕由",
    "中文字幕",
    "请订阅",
    "以下是普通话的句子",
];

/// Lower-cased text without punctuation, spaces or symbols, for comparisons.
pub fn squash(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(|c| c.to_lowercase())
        .collect()
}

/// Why a segment was dropped, if it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    KnownHallucination,
    PromptEcho,
    NoSpeech,
}

impl Verdict {
    pub fn reason(self) -> &'static str {
        match self {
            Verdict::Keep => "kept",
            Verdict::KnownHallucination => "known_hallucination",
            Verdict::PromptEcho => "prompt_echo",
            Verdict::NoSpeech => "no_speech",
        }
    }
}

/// Judge one segment: `no_speech` is whisper's no-speech probability and `mean_p` the mean
/// probability of its text tokens.
pub fn judge(
    text: &str,
    prompt: &str,
    no_speech: f32,
    mean_p: f32,
    no_speech_threshold: f32,
) -> Verdict {
    let s = squash(text);
    if s.is_empty() {
        return Verdict::Keep;
    }
    if KNOWN_HALLUCINATIONS.iter().any(|h| s.contains(h)) {
        return Verdict::KnownHallucination;
    }
    let p = squash(prompt);
    if s.chars().count() >= 4 && p.contains(&s) {
        return Verdict::PromptEcho;
    }
    if no_speech > no_speech_threshold && mean_p < 0.5 {
        return Verdict::NoSpeech;
    }
    Verdict::Keep
}

/// Characters that carry content (no punctuation, spaces or symbols).
pub fn content_chars(text: &str) -> usize {
    squash(text).chars().count()
}

/// Speech shorter than this is not judged for sparseness: a short clip can hold one word.
const SPARSE_MIN_SPEECH_S: f64 = 3.0;

/// True when a transcript is too sparse for the speech it came from: some text, but fewer than
/// `min_chars_per_s` content characters per second of speech. Mandarin runs at 3.5–6 characters
/// a second even when spoken slowly; whisper with a prompt sometimes jumps over a stretch of
/// speech and writes a short summary of the rest, which shows up as text this sparse. An empty
/// transcript is not sparse: it is whisper saying there was no speech, which stands.
pub fn sparse(text: &str, speech_s: f64, min_chars_per_s: f64) -> bool {
    if min_chars_per_s <= 0.0 || speech_s < SPARSE_MIN_SPEECH_S {
        return false;
    }
    let chars = content_chars(text);
    chars > 0 && (chars as f64) < min_chars_per_s * speech_s
}

/// Clauses of a segment that only list words of the prompt ("配件供货、库存告急、配送时效"): whisper
/// echoing the prompt's list into noise or unclear speech, inside a segment that also holds
/// real text. A clause counts when it is two or more items separated by "、", every one of them
/// a word of `items` (the prompt's list). Returns the text without those clauses, and the
/// clauses removed. A rep's own sentence that names needs ("聊了价格异议、竞品动态") is not
/// an echo: its parts are not bare list words.
pub fn strip_list_echo(text: &str, items: &[&str]) -> (String, Vec<String>) {
    if items.is_empty() {
        return (text.to_string(), Vec::new());
    }
    let known: std::collections::HashSet<String> = items.iter().map(|i| squash(i)).collect();
    let is_break = |c: char| "，,。.！!？?；;：:\n".contains(c);
    let mut kept = String::new();
    let mut echoed = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        // One clause and the punctuation after it.
        let end = rest.find(is_break).unwrap_or(rest.len());
        let mut stop = end;
        for c in rest[end..].chars() {
            if is_break(c) || c.is_whitespace() {
                stop += c.len_utf8();
            } else {
                break;
            }
        }
        let (clause, piece) = (&rest[..end], &rest[..stop]);
        let parts: Vec<String> = clause
            .split(['、', ' '])
            .map(squash)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.len() >= 2 && parts.iter().all(|p| known.contains(p)) {
            echoed.push(clause.trim().to_string());
        } else {
            kept.push_str(piece);
        }
        rest = &rest[stop..];
    }
    (kept, echoed)
}

/// Longest repeated unit looked for, in characters: whisper's loops repeat whole sentences.
const MAX_LOOP_UNIT: usize = 48;

/// Collapse a unit repeated back to back into one copy: "说一句话，说一句话，说一句话，说一句话，"
/// becomes "说一句话，". Natural repetition ("对对对", "好的好的") is left alone: a unit of one
/// character must repeat 5 times, units up to 16 characters 4 times, and a whole sentence (17
/// characters or more, which nobody says three times running) 3 times.
pub fn collapse_repetitions(text: &str) -> (String, bool) {
    let mut chars: Vec<char> = text.chars().collect();
    let mut changed = false;
    let mut unit = 1;
    let times = |unit: usize| match unit {
        1 => 5,
        2..=16 => 4,
        _ => 3,
    };
    while unit <= MAX_LOOP_UNIT && unit * times(unit) <= chars.len() {
        let need = times(unit);
        let mut i = 0;
        let mut out: Vec<char> = Vec::with_capacity(chars.len());
        while i < chars.len() {
            let mut reps = 1;
            if i + unit <= chars.len() {
                while i + (reps + 1) * unit <= chars.len()
                    && chars[i + reps * unit..i + (reps + 1) * unit] == chars[i..i + unit]
                {
                    reps += 1;
                }
            }
            if reps >= need && chars[i..i + unit].iter().any(|c| c.is_alphanumeric()) {
                out.extend_from_slice(&chars[i..i + unit]);
                i += reps * unit;
                changed = true;
            } else {
                out.push(chars[i]);
                i += 1;
            }
        }
        chars = out;
        unit += 1;
    }
    (chars.into_iter().collect(), changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_text_is_told_from_short_speech_and_silence() {
        // 12 s of meeting speech written as 20 characters: a skipped stretch.
        assert!(sparse(
            "首先,我们上场上门年月,先歌舞会报一下,就是夜级。",
            12.2,
            2.5
        ));
        // The same speech transcribed in full.
        assert!(!sparse(
            "首先说一下这个经历说完了这个小朋友们现在说一下咱们的上卡问题首先咱们商场上半年这个先各五会报一下就是夜级",
            12.2,
            2.5
        ));
        // Punctuation does not count as content.
        assert!(sparse(
            "好。。。。。。。。。。。。。。。。。。。。。。。。。。。。",
            10.0,
            2.5
        ));
        // Too short to judge, nothing written, or the check switched off.
        assert!(!sparse("好", 2.0, 2.5));
        assert!(!sparse("", 12.0, 2.5));
        assert!(!sparse("首先", 12.0, 0.0));
    }

    #[test]
    fn known_subtitle_credits_are_dropped() {
        assert_eq!(
            judge("字幕由Amara.org社区提供", "", 0.1, 0.9, 0.6),
            Verdict::KnownHallucination
        );
        assert_eq!(
            judge(
                "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
                "",
                0.1,
                0.9,
                0.6
            ),
            Verdict::KnownHallucination
        );
        assert_eq!(
            judge("张主任说镇痛效果不好", "", 0.1, 0.9, 0.6),
            Verdict::Keep
        );
    }

    #[test]
    fn prompt_echo_is_dropped() {
        let prompt = "以下是销售拜访备忘录，涉及：镇痛方案、铺货率、陈列费。";
        assert_eq!(
            judge("镇痛方案、铺货率", prompt, 0.2, 0.9, 0.6),
            Verdict::PromptEcho
        );
        assert_eq!(judge("镇痛方案不错", prompt, 0.2, 0.9, 0.6), Verdict::Keep);
    }

    #[test]
    fn listed_prompt_words_inside_a_segment_are_an_echo() {
        let items = ["配件供货", "库存告急", "配送时效", "价格异议", "竞品动态"];
        let (t, e) = strip_list_echo(
            "这次去拜访客户,配件供货、库存告急、配送时效。首先说一下价格",
            &items,
        );
        assert_eq!(t, "这次去拜访客户,首先说一下价格");
        assert_eq!(e, vec!["配件供货、库存告急、配送时效"]);
        // A rep naming needs in a sentence of their own is kept.
        for said in [
            "聊了价格异议、竞品动态，下周再去",
            "价格异议、竞品动态都聊了",
            "客户说配送时效太差",
        ] {
            let (t, e) = strip_list_echo(said, &items);
            assert_eq!((t.as_str(), e.len()), (said, 0));
        }
        assert_eq!(
            strip_list_echo("配件供货、库存告急", &[]).0,
            "配件供货、库存告急"
        );
    }

    #[test]
    fn no_speech_needs_both_signals() {
        assert_eq!(judge("嗯", "", 0.9, 0.3, 0.6), Verdict::NoSpeech);
        assert_eq!(judge("好的", "", 0.9, 0.8, 0.6), Verdict::Keep);
    }

    #[test]
    fn loops_collapse_but_natural_repetition_stays() {
        let (t, changed) =
            collapse_repetitions("首先,他说一句话,说一句话,说一句话,说一句话,说一句话.首先");
        assert!(changed);
        assert_eq!(t, "首先,他说一句话,说一句话.首先");
        assert_eq!(
            collapse_repetitions("对对对，好的好的").0,
            "对对对，好的好的"
        );
        assert_eq!(collapse_repetitions("啊啊啊啊啊啊啊啊").0, "啊");
        let sentence = "另外要求我们培训导购怎么介绍新品酸奶；";
        let (t, changed) =
            collapse_repetitions(&format!("赵店长希望增加冷柜陈列位；{}", sentence.repeat(8)));
        assert!(changed);
        assert_eq!(t, format!("赵店长希望增加冷柜陈列位；{sentence}"));
        let twice = format!("{sentence}{sentence}");
        assert_eq!(
            collapse_repetitions(&twice).0,
            twice,
            "said twice is left alone"
        );
    }
}
