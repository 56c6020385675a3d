//! The result types: one JSON shape that the CLI prints, the API returns and the CRM stores.
//! Field names here are a contract; add fields, do not rename them.

//!
//! Every type here reads back what it wrote (`Serialize` and `Deserialize`, owned fields): a
//! stored result is the same JSON when it is served again. `result` depends on no stage that
//! produces it except for the plain data types those stages define.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::asr::Transcript;
use crate::audio::AudioInfo;
use crate::library::{Pack, Role, Tier};
use crate::verifier::Judgement;

/// A new memo id. Minted by the caller (the API handler or the CLI) before the memo is
/// processed, so the id that is answered is the id that is stored.
pub fn new_memo_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Milliseconds spent in each stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Timings {
    pub decode_ms: f64,
    pub vad_ms: f64,
    pub asr_ms: f64,
    pub tag_ms: f64,
    pub total_ms: f64,
}

/// How a text was matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TagMode {
    /// Keywords and sentence embeddings.
    Hybrid,
    /// Keywords and BM25 only.
    Keyword,
}

impl TagMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TagMode::Hybrid => "hybrid",
            TagMode::Keyword => "keyword",
        }
    }
}

impl std::fmt::Display for TagMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a piece of evidence was found.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// A library keyword, verbatim.
    Keyword,
    /// A library synonym, verbatim.
    Synonym,
    /// A library term that sounds the same (a likely speech-recognition error: 陈列非 for 陈列费).
    Homophone,
    /// An action's regular expression.
    Pattern,
    /// Sentence-embedding similarity to the library's example sentences.
    Semantic,
    /// BM25 word overlap with the need's keywords, synonyms and examples (no verbatim term).
    Retrieval,
    /// The clause the verifier read when the memo-level classifier, learned from labeled
    /// memos, carried the tag without a term or a close example.
    Context,
}

/// The text that fired a tag: a character span of the memo's text (Unicode scalar values,
/// end exclusive), the words, and why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Evidence {
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub kind: EvidenceKind,
    /// The library term, pattern or example sentence it matched.
    pub matched: String,
    pub score: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NeedTag {
    pub id: String,
    pub name: String,
    pub domain: String,
    /// 0–1; the tag is returned when it reaches the need's threshold.
    pub confidence: f32,
    pub evidence: Vec<Evidence>,
    pub packs: Vec<Pack>,
    /// Why the verifier kept it: its probability, the topic and expressed parts, and the
    /// strongest reasons; absent when the need was decided by its threshold alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<Judgement>,
}

/// A need the text touched that was not tagged, and why (with `explain`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DroppedNeed {
    pub id: String,
    pub name: String,
    pub confidence: f32,
    /// The clause the decision read.
    pub clause: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<Judgement>,
}

/// A need the memo mentions only to deny it or call it solved ("库存还够"): not tagged, reported
/// so nobody sends a solution pack for it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RuledOut {
    pub id: String,
    pub name: String,
    pub evidence: Evidence,
    /// The words that negate it ("还够", "不需要").
    pub cue: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActionTag {
    pub id: String,
    pub name: String,
    pub tier: Tier,
    pub confidence: f32,
    pub evidence: Vec<Evidence>,
    /// Why the verifier counted it as done; absent when decided by the cues alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<Judgement>,
}

/// A commitment with its due date range (inclusive), resolved against `recorded_at`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NextStep {
    /// The clause that states it.
    pub text: String,
    /// The time expression as spoken ("下周三", "月底前"); absent when none was said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    #[schema(value_type = Option<String>, format = Date)]
    pub due_from: Option<NaiveDate>,
    #[schema(value_type = Option<String>, format = Date)]
    pub due_to: Option<NaiveDate>,
    /// The planned action it continues, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub evidence: Evidence,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Contact {
    /// As spoken: "张主任", "采购部刘经理", "赵店长".
    pub mention: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Vague {
    /// True when the memo has no concrete need, action, contact, number or dated next step.
    pub flag: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Everything the text of a memo yields.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tags {
    pub needs: Vec<NeedTag>,
    pub ruled_out: Vec<RuledOut>,
    pub actions: Vec<ActionTag>,
    /// True when a high-tier action was done.
    pub high_value: bool,
    pub next_steps: Vec<NextStep>,
    pub contacts: Vec<Contact>,
    pub vague: Vague,
    pub library_version: String,
    /// Candidates not tagged, and why (only when explaining).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<Vec<DroppedNeed>>,
}

/// The result for a text (`needtag tag`, `POST /v1/tag`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TextResult {
    pub text: String,
    #[serde(flatten)]
    pub tags: Tags,
    /// `keyword` or `hybrid` (keywords and sentence embeddings).
    pub mode: TagMode,
    pub timings: Timings,
    /// The archive's id for this text, when the service stored it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo_id: Option<String>,
}

/// Names of the models that produced a result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Models {
    pub asr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vad: Option<String>,
}

/// The result for a voice memo (`needtag memo`, `POST /v1/memos`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MemoResult {
    pub memo_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rep_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// The rep's team, as the caller names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The domain whose words whisper's prompt held (sent with the memo, or the configured
    /// default); absent when none was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub recorded_at: String,
    pub duration_s: f64,
    pub speech_detected: bool,
    pub transcript: Transcript,
    pub audio: AudioInfo,
    #[serde(flatten)]
    pub tags: Tags,
    pub models: Models,
    pub timings: Timings,
}
