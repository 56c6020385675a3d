//! Word segmentation with jieba, the needs library's words added as a user dictionary so that
//! "镇痛方案" or "铺货率" come out as one word. One dictionary is shared (behind an `Arc`) by
//! segmentation and by the tantivy tokenizer; tantivy clones tokenizers per query, and cloning
//! an `Arc` costs nothing where cloning the dictionary would cost tens of milliseconds.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;

use jieba_rs::{Jieba, TokenizeMode};

/// Words that carry no evidence on their own.
const STOP_WORDS: &[&str] = &[
    "的",
    "了",
    "是",
    "在",
    "我",
    "我们",
    "你",
    "你们",
    "他",
    "他们",
    "她",
    "她们",
    "它",
    "说",
    "和",
    "与",
    "也",
    "就",
    "都",
    "还",
    "这",
    "那",
    "个",
    "有",
    "要",
    "把",
    "给",
    "让",
    "跟",
    "对",
    "吧",
    "呢",
    "啊",
    "嗯",
    "哦",
    "呀",
    "吗",
    "一个",
    "这个",
    "那个",
    "这边",
    "那边",
    "然后",
    "就是",
    "一下",
    "一些",
    "一点",
    "可以",
    "能",
    "会",
    "想",
    "去",
    "来",
    "过",
    "上",
    "下",
    "里",
    "中",
    "又",
    "再",
    "很",
    "太",
    "比较",
    "今天",
    "客户",
    "他说",
    "说是",
    "现在",
    "目前",
    "之前",
    "之后",
    "已经",
    "还是",
    "但是",
    "不过",
    "而且",
    "因为",
    "所以",
    "如果",
    "的话",
    "我们的",
    "他们的",
    "着",
    "得",
    "地",
    "被",
    "从",
    "到",
    "为",
    "以",
    "及",
];

/// A token: its text and character range in the segmented string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    pub range: Range<usize>,
}

#[derive(Clone)]
pub struct Segmenter {
    jieba: Arc<Jieba>,
    /// The words added to the default dictionary.
    added: Arc<HashSet<String>>,
}

impl Segmenter {
    /// The default dictionary plus `words` (each kept whole).
    pub fn new<'a>(words: impl IntoIterator<Item = &'a str>) -> Segmenter {
        // One dictionary per library version (built fresh, ~0.1 s): no second copy is kept.
        let mut jieba = Jieba::new();
        let mut added = HashSet::new();
        for w in words {
            let w = w.trim();
            if w.chars().count() >= 2 && !w.contains(char::is_whitespace) {
                if !jieba.has_word(w) {
                    added.insert(w.to_string());
                }
                let freq = jieba.suggest_freq(w).max(50_000);
                jieba.add_word(w, Some(freq), None);
            }
        }
        Segmenter {
            jieba: Arc::new(jieba),
            added: Arc::new(added),
        }
    }

    /// Words of `text` in search mode (long words also yield their parts), without punctuation
    /// and stop words.
    pub fn tokens(&self, text: &str) -> Vec<Token> {
        self.jieba
            .tokenize(text, TokenizeMode::Search, false)
            .into_iter()
            .filter(|t| keep(t.word))
            .map(|t| Token {
                text: t.word.to_string(),
                range: t.start..t.end,
            })
            .collect()
    }

    /// Plain words of `text` (default mode), punctuation dropped.
    pub fn words<'a>(&self, text: &'a str) -> Vec<&'a str> {
        self.jieba
            .cut(text, false)
            .into_iter()
            .map(|t| t.word)
            .filter(|w| w.chars().any(char::is_alphanumeric))
            .collect()
    }

    /// True when `word` is in jieba's own dictionary (not the library's additions): a real
    /// word, so a sound-alike of a library term that is one is not a recognition error.
    pub fn is_common_word(&self, word: &str) -> bool {
        self.jieba.has_word(word) && !self.added.contains(word)
    }

    /// Character offsets where jieba's words (default mode) start and end.
    pub fn boundaries(&self, text: &str) -> std::collections::HashSet<usize> {
        let mut b = std::collections::HashSet::new();
        for t in self.jieba.tokenize(text, TokenizeMode::Default, false) {
            b.insert(t.start);
            b.insert(t.end);
        }
        b
    }

    pub fn tokenizer(&self) -> JiebaTokenizer {
        JiebaTokenizer {
            seg: self.clone(),
            token: tantivy::tokenizer::Token::default(),
        }
    }
}

fn keep(word: &str) -> bool {
    let mut chars = word.chars();
    let single_non_han =
        matches!((chars.next(), chars.next()), (Some(c), None) if !crate::zh::is_han(c));
    word.chars().any(char::is_alphanumeric) && !STOP_WORDS.contains(&word) && !single_non_han
}

/// tantivy tokenizer over the shared dictionary.
#[derive(Clone)]
pub struct JiebaTokenizer {
    seg: Segmenter,
    token: tantivy::tokenizer::Token,
}

pub struct JiebaTokenStream<'a> {
    tokens: Vec<tantivy::tokenizer::Token>,
    index: usize,
    token: &'a mut tantivy::tokenizer::Token,
}

impl tantivy::tokenizer::Tokenizer for JiebaTokenizer {
    type TokenStream<'a> = JiebaTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> JiebaTokenStream<'a> {
        let tokens = self
            .seg
            .jieba
            .tokenize(text, TokenizeMode::Search, false)
            .into_iter()
            .filter(|t| keep(t.word))
            .enumerate()
            .map(|(i, t)| tantivy::tokenizer::Token {
                offset_from: t.byte_start,
                offset_to: t.byte_end,
                position: i,
                text: t.word.to_lowercase(),
                position_length: 1,
            })
            .collect();
        JiebaTokenStream {
            tokens,
            index: 0,
            token: &mut self.token,
        }
    }
}

impl tantivy::tokenizer::TokenStream for JiebaTokenStream<'_> {
    fn advance(&mut self) -> bool {
        if self.index < self.tokens.len() {
            *self.token = std::mem::take(&mut self.tokens[self.index]);
            self.index += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &tantivy::tokenizer::Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut tantivy::tokenizer::Token {
        self.token
    }
}
