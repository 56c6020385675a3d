//! The TOML files as written by analysts. Values that problems can point at are `Spanned`, so
//! every problem is reported with its file and line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibraryFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub defaults: Defaults,
    #[serde(default)]
    pub scoring: Scoring,
}

/// The weights that turn a need's matching features into one confidence (a logistic model),
/// one set for hybrid matching and one for keywords only. `needtag eval --fit` refits them
/// on a labeled set.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scoring {
    pub hybrid: Weights,
    pub keyword: Weights,
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Weights {
    pub bias: f32,
    pub lexical: f32,
    pub semantic: f32,
    pub bm25_rel: f32,
    pub bm25_log: f32,
    pub lexical_semantic: f32,
}

impl Default for Scoring {
    fn default() -> Self {
        Scoring {
            hybrid: Weights {
                bias: -6.88,
                lexical: 1.6,
                semantic: 12.23,
                bm25_rel: 1.87,
                bm25_log: 0.81,
                lexical_semantic: 2.12,
            },
            keyword: Weights {
                bias: -6.92,
                lexical: 1.99,
                semantic: 0.0,
                bm25_rel: 1.98,
                bm25_log: 1.28,
                lexical_semantic: 0.0,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    pub need_threshold: f32,
    pub action_threshold: f32,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            need_threshold: 0.5,
            action_threshold: 0.5,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeedsFile {
    #[serde(default)]
    pub need: Vec<Spanned<RawNeed>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNeed {
    pub id: Spanned<String>,
    pub name: String,
    pub domain: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub keywords: Vec<Spanned<String>>,
    #[serde(default)]
    pub synonyms: Vec<Spanned<String>>,
    #[serde(default)]
    pub examples: Vec<Spanned<String>>,
    /// Sentences that look like this need but are not it.
    #[serde(default)]
    pub counter_examples: Vec<Spanned<String>>,
    #[serde(default)]
    pub exclusions: Vec<Spanned<String>>,
    pub threshold: Option<Spanned<f32>>,
    #[serde(default)]
    pub packs: Vec<Spanned<String>>,
    /// A need that cannot wait (stock running out, a device down): a customer whose latest
    /// memo states it is listed by the manager's numbers until a rep visits again.
    #[serde(default)]
    pub urgent: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacksFile {
    #[serde(default)]
    pub pack: Vec<Spanned<RawPack>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPack {
    pub id: Spanned<String>,
    pub title: String,
    pub kind: Spanned<String>,
    pub link: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsFile {
    #[serde(default)]
    pub action: Vec<Spanned<RawAction>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    pub id: Spanned<String>,
    pub name: String,
    pub tier: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub keywords: Vec<Spanned<String>>,
    #[serde(default)]
    pub patterns: Vec<Spanned<String>>,
    #[serde(default)]
    pub examples: Vec<Spanned<String>>,
    pub threshold: Option<Spanned<f32>>,
    /// The customer agreeing to it counts as done even for a later date (a meeting or a trial
    /// agreed for next week was secured today).
    #[serde(default)]
    pub agreement_counts: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguageFile {
    pub clause: ClauseCues,
    pub negation: NegationCues,
    pub tense: TenseCues,
    pub vague: VagueCues,
    pub contacts: ContactCues,
    #[serde(default)]
    pub holidays: BTreeMap<String, Spanned<[String; 2]>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClauseCues {
    pub breaks: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NegationCues {
    pub before: Vec<String>,
    pub window: usize,
    pub after: Vec<String>,
    pub not_negation: Vec<String>,
    pub standalone: Vec<String>,
    pub double: Vec<String>,
    /// In a clause after a mention: the problem went away ("没再出现", "修好了").
    #[serde(default)]
    pub resolved_later: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenseCues {
    pub plan: Vec<String>,
    pub done: Vec<String>,
    #[serde(default)]
    pub counterfactual: Vec<String>,
    /// Agreement words: for actions marked `agreement_counts`, agreeing now to a later date is done.
    #[serde(default)]
    pub agreement: Vec<String>,
    pub negation: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VagueCues {
    pub phrases: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactCues {
    pub roles: BTreeMap<String, String>,
    #[serde(default)]
    pub departments: BTreeMap<String, String>,
}
