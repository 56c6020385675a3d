//! The library's blind spots: memos that say something concrete (not vague) yet got no need,
//! grouped by the words they share most, so an analyst sees which topics the library misses.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use utoipa::ToSchema;

/// Words every memo has; they name no topic.
const FILLER: &[&str] = &[
    "客户", "今天", "昨天", "明天", "我们", "他们", "你们", "这个", "那个", "一下", "就是", "还是",
    "已经", "那边", "这边", "比较", "可以", "没有", "什么", "现在", "然后", "因为", "所以", "但是",
    "觉得", "表示", "说是", "一个", "这次", "上次", "下次", "时候", "事情", "情况", "问题", "东西",
    "主任", "老板", "经理", "一起", "目前", "另外", "还有", "需要", "希望", "准备", "过来", "回去",
];

/// A memo in a blind spot.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BlindMemo {
    pub memo_id: String,
    pub recorded_at: String,
    pub text: String,
}

/// Memos with no need that share a frequent word.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BlindGroup {
    /// The word (empty: memos that share none of the frequent words).
    pub word: String,
    /// Memos in the group.
    pub memos: usize,
    /// Other frequent words of the group's memos, most frequent first.
    pub also: Vec<String>,
    /// The newest memos of the group (at most 5).
    pub examples: Vec<BlindMemo>,
}

/// `GET /v1/memos/blind-spots`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BlindSpots {
    /// Memos read: the newest non-vague memos with no need that match the filters.
    pub scanned: usize,
    pub groups: Vec<BlindGroup>,
}

fn topical(w: &str) -> bool {
    w.chars().count() >= 2
        && !w
            .chars()
            .all(|c| c.is_ascii_digit() || !c.is_alphanumeric())
        && !FILLER.contains(&w)
}

/// Group `memos` (newest first) by their most frequent words, `words` segmenting a text: each
/// memo joins the group of its word that the most memos share (a word counts once per memo);
/// at most `max_groups` groups, the largest first, then one of the memos left over.
pub fn group(
    memos: Vec<BlindMemo>,
    words: impl Fn(&str) -> Vec<String>,
    max_groups: usize,
) -> BlindSpots {
    let scanned = memos.len();
    let sets: Vec<HashSet<String>> = memos
        .iter()
        .map(|m| words(&m.text).into_iter().filter(|w| topical(w)).collect())
        .collect();
    let mut df: HashMap<&str, usize> = HashMap::new();
    for s in &sets {
        for w in s {
            *df.entry(w.as_str()).or_default() += 1;
        }
    }
    let rank = |w: &str| {
        (
            std::cmp::Reverse(df.get(w).copied().unwrap_or(0)),
            w.to_string(),
        )
    };
    // Each memo's word: the one most memos share (a word only one memo has is no group).
    let mut members: HashMap<String, Vec<usize>> = HashMap::new();
    let mut rest = Vec::new();
    for (i, s) in sets.iter().enumerate() {
        match s
            .iter()
            .filter(|w| df.get(w.as_str()).copied().unwrap_or(0) >= 2)
            .min_by_key(|w| rank(w))
        {
            Some(w) => members.entry(w.clone()).or_default().push(i),
            None => rest.push(i),
        }
    }
    let mut groups: Vec<(String, Vec<usize>)> = members.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
    for (_, idx) in groups.iter().skip(max_groups) {
        rest.extend(idx);
    }
    groups.truncate(max_groups);
    rest.sort_unstable();
    if !rest.is_empty() {
        groups.push((String::new(), rest));
    }
    let out = groups
        .into_iter()
        .map(|(word, idx)| {
            let mut also: HashMap<&str, usize> = HashMap::new();
            for &i in &idx {
                for w in &sets[i] {
                    if *w != word {
                        *also.entry(w.as_str()).or_default() += 1;
                    }
                }
            }
            let mut also: Vec<(&str, usize)> = also.into_iter().filter(|(_, n)| *n >= 2).collect();
            also.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            BlindGroup {
                memos: idx.len(),
                also: also
                    .into_iter()
                    .take(5)
                    .map(|(w, _)| w.to_string())
                    .collect(),
                examples: idx.iter().take(5).map(|&i| memos[i].clone()).collect(),
                word,
            }
        })
        .collect();
    BlindSpots {
        scanned,
        groups: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, text: &str) -> BlindMemo {
        BlindMemo {
            memo_id: id.into(),
            recorded_at: "2026-03-04T10:00:00+08:00".into(),
            text: text.into(),
        }
    }

    #[test]
    fn memos_join_the_group_of_their_most_shared_word() {
        let memos = vec![
            m("a", "冷链 运输 温度"),
            m("b", "冷链 温度 客户"),
            m("c", "冷链 包装"),
            m("d", "包装 破损 温度"),
            m("e", "发票 抬头"),
        ];
        let words = |t: &str| t.split(' ').map(String::from).collect();
        let b = group(memos, words, 10);
        assert_eq!(b.scanned, 5);
        let g: Vec<(&str, usize)> = b
            .groups
            .iter()
            .map(|g| (g.word.as_str(), g.memos))
            .collect();
        // 冷链 and 温度 are in three memos each (冷链 first by name); d has 温度 and 包装.
        assert_eq!(g, [("冷链", 3), ("温度", 1), ("", 1)]);
        assert_eq!(b.groups[0].also[0], "温度");
        assert_eq!(
            b.groups[2].examples[0].memo_id, "e",
            "no shared word: left over"
        );
        let few = group(
            vec![
                m("a", "冷链 温度"),
                m("b", "冷链 温度"),
                m("c", "包装 纸箱"),
                m("d", "包装 纸箱"),
            ],
            |t: &str| t.split(' ').map(String::from).collect(),
            1,
        );
        assert_eq!(few.groups.len(), 2, "one group and the rest");
        assert_eq!(few.groups[1].memos, 2);
    }
}
