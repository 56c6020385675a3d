//! Chinese script helpers shared by the speech and text stages: Traditional → Simplified,
//! full-width → half-width, and Chinese numerals.

use std::sync::OnceLock;

use ferrous_opencc::config::BuiltinConfig;
use ferrous_opencc::OpenCC;

fn t2s() -> Option<&'static OpenCC> {
    static CONVERTER: OnceLock<Option<OpenCC>> = OnceLock::new();
    CONVERTER
        .get_or_init(|| match OpenCC::from_config(BuiltinConfig::T2s) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!("Traditional→Simplified converter unavailable: {e}");
                None
            }
        })
        .as_ref()
}

/// Traditional characters and phrases to Simplified (OpenCC t2s); Simplified text is unchanged.
pub fn to_simplified(text: &str) -> String {
    if text.is_ascii() {
        return text.to_string();
    }
    match t2s() {
        Some(c) => c.convert(text),
        None => text.to_string(),
    }
}

/// Full-width ASCII (ＡＢＣ１２３，％) to half-width, and the ideographic space to a space.
/// Chinese punctuation (，。) is kept: clause splitting relies on it.
pub fn to_halfwidth(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}'
                if !matches!(c, '，' | '！' | '？' | '；' | '：' | '（' | '）') =>
            {
                char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)
            }
            _ => c,
        })
        .collect()
}

/// The value of a Chinese numeral digit or unit character.
pub fn numeral_digit(c: char) -> Option<u32> {
    Some(match c {
        '零' | '〇' => 0,
        '一' | '壹' => 1,
        '二' | '两' | '贰' => 2,
        '三' | '叁' => 3,
        '四' | '肆' => 4,
        '五' | '伍' => 5,
        '六' | '陆' => 6,
        '七' | '柒' => 7,
        '八' | '捌' => 8,
        '九' | '玖' => 9,
        _ => return None,
    })
}

/// Parse a Chinese or Arabic number ("十二", "二十五", "3", "一百零五", "两"); None if not a number.
pub fn parse_number(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    if s.chars().all(|c| c.is_ascii_digit()) {
        return s.parse().ok();
    }
    let mut total: u64 = 0;
    let mut section: u64 = 0;
    let mut digit: Option<u64> = None;
    for c in s.chars() {
        if let Some(d) = numeral_digit(c) {
            digit = Some(d as u64);
            continue;
        }
        let unit = match c {
            '十' | '拾' => 10,
            '百' | '佰' => 100,
            '千' | '仟' => 1000,
            '万' => 10_000,
            _ => return None,
        };
        if unit == 10_000 {
            total += (section + digit.unwrap_or(0)) * unit;
            section = 0;
        } else {
            section += digit.unwrap_or(1) * unit;
        }
        digit = None;
    }
    Some(total + section + digit.unwrap_or(0))
}

/// True for CJK unified ideographs (the characters CER is computed over, with digits and letters).
pub fn is_han(c: char) -> bool {
    matches!(c as u32, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traditional_becomes_simplified() {
        assert_eq!(
            to_simplified("庫存還夠，護士長說設備壞了"),
            "库存还够，护士长说设备坏了"
        );
        assert_eq!(to_simplified("疼痛管理"), "疼痛管理");
    }

    #[test]
    fn halfwidth_keeps_chinese_punctuation() {
        assert_eq!(to_halfwidth("价格高１２％，ＯＫ。"), "价格高12%，OK。");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("十二"), Some(12));
        assert_eq!(parse_number("二十五"), Some(25));
        assert_eq!(parse_number("一百零五"), Some(105));
        assert_eq!(parse_number("两"), Some(2));
        assert_eq!(parse_number("三万五千"), Some(35_000));
        assert_eq!(parse_number("60"), Some(60));
        assert_eq!(parse_number("十"), Some(10));
        assert_eq!(parse_number("下"), None);
    }
}
