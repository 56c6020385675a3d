//! The needs library: needs, solution packs, actions and language cues, loaded from TOML files,
//! validated completely before use (an invalid library is never half-loaded), and versioned by
//! a content hash. Knows nothing about memos.

mod files;
mod schema;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::NaiveDate;
use regex::Regex;
use serde::Serialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

pub use schema::{ClauseCues, Defaults, NegationCues, Scoring, TenseCues, VagueCues, Weights};

use crate::error::{Error, LibraryProblem, LibraryProblems, Result};

include!(concat!(env!("OUT_DIR"), "/embedded_library.rs"));

pub const DOMAINS: &[&str] = &[
    "medical_devices",
    "ivd",
    "pharmacy",
    "fmcg_distribution",
    "auto_aftermarket",
    "industrial",
    "retail_stores",
    "general",
];
/// The domain whose needs apply in every other one.
pub const GENERAL: &str = "general";

/// A domain name a caller gave, checked against [`DOMAINS`].
pub fn check_domain(domain: &str) -> Result<()> {
    if DOMAINS.contains(&domain) {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "unknown domain {}; one of: {}",
            crate::error::excerpt(domain),
            DOMAINS.join(", ")
        )))
    }
}
pub const PACK_KINDS: &[&str] = &[
    "comparison_sheet",
    "video",
    "application_form",
    "checklist",
    "manual",
    "calculator",
    "catalog",
    "policy",
    "service",
    "training",
    "case_study",
];

#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Pack {
    pub id: String,
    pub title: String,
    pub kind: String,
    pub link: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Need {
    pub id: String,
    pub name: String,
    pub domain: String,
    pub description: String,
    pub keywords: Vec<String>,
    pub synonyms: Vec<String>,
    pub examples: Vec<String>,
    /// Sentences that look like this need but are not it ("主任对镇痛方案挺满意，不用换"): a
    /// clause that says nearly the same is not tagged with it.
    pub counter_examples: Vec<String>,
    pub exclusions: Vec<String>,
    /// Confidence a tag needs; the library default when absent.
    pub threshold: Option<f32>,
    pub packs: Vec<String>,
    /// It cannot wait (stock running out, a device down): the manager's numbers list the
    /// customers whose latest memo states it.
    pub urgent: bool,
    /// The file the need is defined in.
    pub file: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    High,
    Standard,
    Low,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ActionDef {
    pub id: String,
    pub name: String,
    pub tier: Tier,
    pub description: String,
    pub keywords: Vec<String>,
    pub patterns: Vec<String>,
    #[serde(skip)]
    #[schema(ignore)]
    pub regexes: Vec<Regex>,
    pub examples: Vec<String>,
    pub threshold: Option<f32>,
    /// Agreeing now to do it later counts as done (meetings, trials).
    pub agreement_counts: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    DecisionMaker,
    Purchaser,
    User,
    Finance,
    Influencer,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "decision_maker" => Role::DecisionMaker,
            "purchaser" => Role::Purchaser,
            "user" => Role::User,
            "finance" => Role::Finance,
            "influencer" => Role::Influencer,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Holiday {
    pub name: String,
    pub first: NaiveDate,
    pub last: NaiveDate,
}

/// Cue words from `language.toml`.
#[derive(Debug, Clone)]
pub struct Language {
    pub clause: ClauseCues,
    pub negation: NegationCues,
    pub tense: TenseCues,
    pub vague: VagueCues,
    pub roles: BTreeMap<String, Role>,
    pub departments: BTreeMap<String, Role>,
    pub holidays: Vec<Holiday>,
}

/// A validated library.
#[derive(Debug, Clone)]
pub struct Library {
    pub name: String,
    pub description: String,
    /// Content hash of every file, reported with every result.
    pub version: String,
    /// Where it was loaded from: a directory, or `embedded`.
    pub source: String,
    pub defaults: Defaults,
    pub scoring: Scoring,
    pub needs: Vec<Need>,
    pub packs: Vec<Pack>,
    pub actions: Vec<ActionDef>,
    pub language: Language,
    /// The fitted verifier (`verifier.json`); without it tags are decided by the scoring
    /// weights and thresholds alone.
    #[allow(clippy::struct_field_names)]
    pub verifier: Option<std::sync::Arc<crate::verifier::Verifier>>,
    pack_index: HashMap<String, usize>,
}

/// The files of the library in `dir`, or of the compiled-in one, and the name of their source.
fn files_of(dir: Option<&Path>) -> Result<(Vec<(String, String)>, String)> {
    Ok(match dir {
        Some(d) => (files::read_dir(d)?, d.display().to_string()),
        None => (
            EMBEDDED_LIBRARY
                .iter()
                .map(|(p, c)| (p.to_string(), c.to_string()))
                .collect(),
            "embedded".into(),
        ),
    })
}

impl Library {
    /// The library compiled into the binary (the files of `need-library/` at build time).
    pub fn embedded() -> Result<Library> {
        Library::load_or_embedded(None)
    }

    /// Load and validate a library directory.
    pub fn load(dir: &Path) -> Result<Library> {
        Library::load_or_embedded(Some(dir))
    }

    /// The library in `dir`, or the compiled-in one when there is no directory.
    pub fn load_or_embedded(dir: Option<&Path>) -> Result<Library> {
        let (files, source) = files_of(dir)?;
        Library::from_files(files, &source)
    }

    /// The library in `dir` (or the compiled-in one) without its verifier: what `needtag fit`
    /// fits a new verifier for, whatever state the old one is in.
    pub fn load_for_fitting(dir: Option<&Path>) -> Result<Library> {
        let (mut files, source) = files_of(dir)?;
        files.retain(|(p, _)| p != crate::verifier::FILE);
        Library::from_files(files, &source)
    }

    /// Validate a set of (relative path, content) files.
    pub fn from_files(mut files: Vec<(String, String)>, source: &str) -> Result<Library> {
        files.sort();
        let version = version_of(&files);
        let mut v = Validator::default();
        let lib = v.build(&files, source, version);
        match lib {
            Some(lib) if v.problems.is_empty() => Ok(lib),
            _ => Err(Error::Library(LibraryProblems(v.problems))),
        }
    }

    pub fn pack(&self, id: &str) -> Option<&Pack> {
        self.pack_index.get(id).map(|&i| &self.packs[i])
    }

    pub fn need(&self, id: &str) -> Option<&Need> {
        self.needs.iter().find(|n| n.id == id)
    }

    pub fn need_threshold(&self, need: &Need) -> f32 {
        need.threshold.unwrap_or(self.defaults.need_threshold)
    }

    pub fn action_threshold(&self, action: &ActionDef) -> f32 {
        action.threshold.unwrap_or(self.defaults.action_threshold)
    }

    /// Words for the speech recogniser's prompt, most useful first: need names, then keywords,
    /// then pack titles; each once. With a domain, only that domain's needs and the general ones
    /// (whisper's prompt holds about ten names, and a word helps only where it is said); without
    /// one, every need in library order.
    pub fn prompt_words(&self, domain: Option<&str>) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let mut push = |w: &str| {
            if seen.insert(w.to_string()) {
                out.push(w.to_string());
            }
        };
        let needs: Vec<&Need> = match domain {
            Some(d) => self
                .needs
                .iter()
                .filter(|n| n.domain == d)
                .chain(
                    self.needs
                        .iter()
                        .filter(|n| n.domain == GENERAL && d != GENERAL),
                )
                .collect(),
            None => self.needs.iter().collect(),
        };
        for n in &needs {
            push(&n.name);
        }
        let longest = needs.iter().map(|n| n.keywords.len()).max().unwrap_or(0);
        for i in 0..longest {
            for n in &needs {
                if let Some(k) = n.keywords.get(i) {
                    push(k);
                }
            }
        }
        for p in &self.packs {
            push(&p.title);
        }
        out
    }
}

fn version_of(files: &[(String, String)]) -> String {
    let mut h = Sha256::new();
    for (p, c) in files {
        h.update(p.as_bytes());
        h.update([0]);
        h.update(c.as_bytes());
        h.update([0]);
    }
    format!("lib-{}", &hex::encode(h.finalize())[..12])
}

/// The form in which terms are compared: Simplified, half-width, lower case, no spaces.
pub fn normalize_term(s: &str) -> String {
    crate::zh::to_halfwidth(&crate::zh::to_simplified(s))
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[derive(Default)]
struct Validator {
    problems: Vec<LibraryProblem>,
}

impl Validator {
    fn problem(
        &mut self,
        file: &str,
        text: &str,
        span: Option<std::ops::Range<usize>>,
        field: Option<String>,
        message: String,
    ) {
        let line = span.map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        self.problems.push(LibraryProblem {
            file: file.to_string(),
            line,
            field,
            message,
        });
    }

    fn parse<T: serde::de::DeserializeOwned>(&mut self, file: &str, text: &str) -> Option<T> {
        match toml::from_str::<T>(text) {
            Ok(v) => Some(v),
            Err(e) => {
                let msg = e.message().to_string();
                self.problem(file, text, e.span(), None, msg);
                None
            }
        }
    }

    fn build(
        &mut self,
        files: &[(String, String)],
        source: &str,
        version: String,
    ) -> Option<Library> {
        let get = |name: &str| files.iter().find(|(p, _)| p == name);
        for (p, _) in files {
            let known = matches!(
                p.as_str(),
                "library.toml" | "language.toml" | "actions.toml" | crate::verifier::FILE
            ) || p.starts_with("needs/")
                || p.starts_with("packs/");
            if !known {
                self.problem(p, "", None, None, "not part of a library (expected library.toml, language.toml, actions.toml, verifier.json, needs/*.toml, packs/*.toml)".into());
            }
        }
        let mut missing = |name: &str| -> Option<&(String, String)> {
            let f = get(name);
            if f.is_none() {
                self.problems.push(LibraryProblem {
                    file: name.into(),
                    line: None,
                    field: None,
                    message: "required file is missing".into(),
                });
            }
            f
        };
        let lib_file = missing("library.toml").cloned();
        let lang_file = missing("language.toml").cloned();
        let actions_file = missing("actions.toml").cloned();

        let meta: Option<schema::LibraryFile> =
            lib_file.as_ref().and_then(|(p, t)| self.parse(p, t));
        let language = lang_file.as_ref().and_then(|(p, t)| self.language(p, t));

        // Ids are unique across needs, packs and actions: (id → where first seen).
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut packs = Vec::new();
        for (p, t) in files.iter().filter(|(p, _)| p.starts_with("packs/")) {
            let Some(file) = self.parse::<schema::PacksFile>(p, t) else {
                continue;
            };
            for raw in file.pack {
                let span = raw.span();
                let raw = raw.into_inner();
                let id = raw.id.get_ref().clone();
                let field = Some(format!("pack.{id}"));
                self.check_id(&mut ids, &id, field.clone(), p, t, raw.id.span());
                if !PACK_KINDS.contains(&raw.kind.get_ref().as_str()) {
                    self.problem(
                        p,
                        t,
                        Some(raw.kind.span()),
                        field.clone(),
                        format!(
                            "kind {:?} is not one of {}",
                            raw.kind.get_ref(),
                            PACK_KINDS.join(", ")
                        ),
                    );
                }
                if raw.title.trim().is_empty() || raw.link.trim().is_empty() {
                    self.problem(
                        p,
                        t,
                        Some(span),
                        field,
                        "a pack needs a title and a link".into(),
                    );
                }
                packs.push(Pack {
                    id,
                    title: raw.title,
                    kind: raw.kind.into_inner(),
                    link: raw.link,
                    description: raw.description,
                });
            }
        }
        let pack_index: HashMap<String, usize> = packs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();

        let mut needs = Vec::new();
        // Normalised keyword/synonym → (need id, file, line) of its first owner.
        let mut terms: HashMap<String, (String, String)> = HashMap::new();
        for (p, t) in files.iter().filter(|(p, _)| p.starts_with("needs/")) {
            let Some(file) = self.parse::<schema::NeedsFile>(p, t) else {
                continue;
            };
            for raw in file.need {
                let span = raw.span();
                let raw = raw.into_inner();
                let id = raw.id.get_ref().clone();
                let field = |f: &str| Some(format!("need.{id}.{f}"));
                self.check_id(&mut ids, &id, field("id"), p, t, raw.id.span());
                if !DOMAINS.contains(&raw.domain.get_ref().as_str()) {
                    self.problem(
                        p,
                        t,
                        Some(raw.domain.span()),
                        field("domain"),
                        format!(
                            "domain {:?} is not one of {}",
                            raw.domain.get_ref(),
                            DOMAINS.join(", ")
                        ),
                    );
                }
                if raw.name.trim().is_empty() {
                    self.problem(
                        p,
                        t,
                        Some(span.clone()),
                        field("name"),
                        "name is empty".into(),
                    );
                }
                if raw.keywords.is_empty() {
                    self.problem(
                        p,
                        t,
                        Some(span.clone()),
                        field("keywords"),
                        "a need needs at least one keyword".into(),
                    );
                }
                if raw.examples.is_empty() {
                    self.problem(
                        p,
                        t,
                        Some(span.clone()),
                        field("examples"),
                        "a need needs at least one example sentence".into(),
                    );
                }
                for (kind, list) in [("keywords", &raw.keywords), ("synonyms", &raw.synonyms)] {
                    for term in list {
                        let norm = normalize_term(term.get_ref());
                        if norm.chars().count() < 2 {
                            self.problem(
                                p,
                                t,
                                Some(term.span()),
                                field(kind),
                                format!(
                                    "{:?} is too short to be evidence (2 characters or more)",
                                    term.get_ref()
                                ),
                            );
                            continue;
                        }
                        let here =
                            format!("{p}:{}", t[..term.span().start].matches('\n').count() + 1);
                        match terms.get(&norm) {
                            Some((owner, at)) if owner == &id => self.problem(
                                p,
                                t,
                                Some(term.span()),
                                field(kind),
                                format!(
                                    "{:?} is listed twice in this need (also at {at})",
                                    term.get_ref()
                                ),
                            ),
                            Some((owner, at)) => self.problem(
                                p,
                                t,
                                Some(term.span()),
                                field(kind),
                                format!(
                                    "{:?} is already claimed by need {owner} ({at})",
                                    term.get_ref()
                                ),
                            ),
                            None => {
                                terms.insert(norm, (id.clone(), here));
                            }
                        }
                    }
                }
                for e in raw.examples.iter().chain(&raw.exclusions) {
                    if e.get_ref().trim().is_empty() {
                        self.problem(p, t, Some(e.span()), field("examples"), "empty text".into());
                    }
                }
                let examples: std::collections::HashSet<String> = raw
                    .examples
                    .iter()
                    .map(|e| normalize_term(e.get_ref()))
                    .collect();
                let mut counters = std::collections::HashSet::new();
                for e in &raw.counter_examples {
                    let norm = normalize_term(e.get_ref());
                    let problem = if norm.chars().count() < 4 {
                        Some("a counter-example is a sentence (4 characters or more)".to_string())
                    } else if examples.contains(&norm) {
                        Some(format!(
                            "{:?} is also one of this need's examples",
                            e.get_ref()
                        ))
                    } else if !counters.insert(norm) {
                        Some(format!("{:?} is listed twice", e.get_ref()))
                    } else {
                        None
                    };
                    if let Some(msg) = problem {
                        self.problem(p, t, Some(e.span()), field("counter_examples"), msg);
                    }
                }
                let threshold = raw.threshold.as_ref().map(|s| *s.get_ref());
                if let Some(th) = &raw.threshold {
                    if !(0.0 < *th.get_ref() && *th.get_ref() < 1.0) {
                        self.problem(
                            p,
                            t,
                            Some(th.span()),
                            field("threshold"),
                            format!("threshold {} must lie in (0, 1)", th.get_ref()),
                        );
                    }
                }
                if raw.packs.is_empty() {
                    self.problem(
                        p,
                        t,
                        Some(span.clone()),
                        field("packs"),
                        "a need links at least one solution pack".into(),
                    );
                }
                for pk in &raw.packs {
                    if !pack_index.contains_key(pk.get_ref()) {
                        self.problem(
                            p,
                            t,
                            Some(pk.span()),
                            field("packs"),
                            format!("unknown solution pack {:?}", pk.get_ref()),
                        );
                    }
                }
                let strings = |v: Vec<Spanned<String>>| {
                    v.into_iter()
                        .map(|s| s.into_inner().trim().to_string())
                        .collect::<Vec<_>>()
                };
                needs.push(Need {
                    id: id.clone(),
                    name: raw.name,
                    domain: raw.domain.into_inner(),
                    description: raw.description,
                    keywords: strings(raw.keywords),
                    synonyms: strings(raw.synonyms),
                    examples: strings(raw.examples),
                    counter_examples: strings(raw.counter_examples),
                    exclusions: strings(raw.exclusions),
                    threshold,
                    packs: strings(raw.packs),
                    urgent: raw.urgent,
                    file: p.clone(),
                });
            }
        }
        if needs.is_empty() && self.problems.is_empty() {
            self.problems.push(LibraryProblem {
                file: "needs/".into(),
                line: None,
                field: None,
                message: "the library defines no needs".into(),
            });
        }

        let mut actions = Vec::new();
        if let Some((p, t)) = &actions_file {
            if let Some(file) = self.parse::<schema::ActionsFile>(p, t) {
                let mut action_terms: HashMap<String, String> = HashMap::new();
                for raw in file.action {
                    let span = raw.span();
                    let raw = raw.into_inner();
                    let id = raw.id.get_ref().clone();
                    let field = |f: &str| Some(format!("action.{id}.{f}"));
                    self.check_id(&mut ids, &id, field("id"), p, t, raw.id.span());
                    let tier = match raw.tier.get_ref().as_str() {
                        "high" => Tier::High,
                        "standard" => Tier::Standard,
                        "low" => Tier::Low,
                        other => {
                            self.problem(
                                p,
                                t,
                                Some(raw.tier.span()),
                                field("tier"),
                                format!("tier {other:?} is not high, standard or low"),
                            );
                            Tier::Low
                        }
                    };
                    if raw.keywords.is_empty() && raw.patterns.is_empty() {
                        self.problem(
                            p,
                            t,
                            Some(span.clone()),
                            field("keywords"),
                            "an action needs keywords or patterns".into(),
                        );
                    }
                    if raw.examples.is_empty() {
                        self.problem(
                            p,
                            t,
                            Some(span.clone()),
                            field("examples"),
                            "an action needs at least one example".into(),
                        );
                    }
                    for k in &raw.keywords {
                        let norm = normalize_term(k.get_ref());
                        if let Some(owner) = action_terms.insert(norm, id.clone()) {
                            self.problem(
                                p,
                                t,
                                Some(k.span()),
                                field("keywords"),
                                format!("{:?} is already a keyword of action {owner}", k.get_ref()),
                            );
                        }
                    }
                    let mut regexes = Vec::new();
                    for pat in &raw.patterns {
                        match Regex::new(pat.get_ref()) {
                            Ok(r) => regexes.push(r),
                            Err(e) => self.problem(
                                p,
                                t,
                                Some(pat.span()),
                                field("patterns"),
                                format!("invalid regular expression: {e}"),
                            ),
                        }
                    }
                    if let Some(th) = &raw.threshold {
                        if !(0.0 < *th.get_ref() && *th.get_ref() < 1.0) {
                            self.problem(
                                p,
                                t,
                                Some(th.span()),
                                field("threshold"),
                                format!("threshold {} must lie in (0, 1)", th.get_ref()),
                            );
                        }
                    }
                    let strings = |v: Vec<Spanned<String>>| {
                        v.into_iter().map(|s| s.into_inner()).collect::<Vec<_>>()
                    };
                    actions.push(ActionDef {
                        id,
                        name: raw.name,
                        tier,
                        description: raw.description,
                        keywords: strings(raw.keywords),
                        patterns: strings(raw.patterns),
                        regexes,
                        examples: strings(raw.examples),
                        threshold: raw.threshold.map(|s| s.into_inner()),
                        agreement_counts: raw.agreement_counts,
                    });
                }
            }
        }

        let meta = meta?;
        let language = language?;
        for (name, th) in [
            ("need_threshold", meta.defaults.need_threshold),
            ("action_threshold", meta.defaults.action_threshold),
        ] {
            if !(0.0 < th && th < 1.0) {
                self.problems.push(LibraryProblem {
                    file: "library.toml".into(),
                    line: None,
                    field: Some(format!("defaults.{name}")),
                    message: format!("{th} must lie in (0, 1)"),
                });
            }
        }
        let verifier = match get(crate::verifier::FILE) {
            Some((p, t)) => match crate::verifier::Verifier::from_json(t) {
                Ok(v) => Some(std::sync::Arc::new(v)),
                Err(e) => {
                    self.problem(p, "", None, None, e);
                    None
                }
            },
            None => None,
        };
        Some(Library {
            verifier,
            name: meta.name,
            description: meta.description,
            version,
            source: source.to_string(),
            defaults: meta.defaults,
            scoring: meta.scoring,
            needs,
            packs,
            actions,
            language,
            pack_index,
        })
    }

    /// An id must be lower snake case and defined once across needs, packs and actions.
    fn check_id(
        &mut self,
        ids: &mut HashMap<String, String>,
        id: &str,
        field: Option<String>,
        file: &str,
        text: &str,
        span: std::ops::Range<usize>,
    ) {
        if !is_id(id) {
            self.problem(
                file,
                text,
                Some(span.clone()),
                field,
                format!("id {id:?} is not lower snake case"),
            );
        }
        let here = format!(
            "{file}:{}",
            text[..span.start.min(text.len())].matches('\n').count() + 1
        );
        if let Some(first) = ids.get(id) {
            self.problem(
                file,
                text,
                Some(span),
                Some(id.to_string()),
                format!("duplicate id {id:?} (first defined at {first})"),
            );
        } else {
            ids.insert(id.to_string(), here);
        }
    }

    fn language(&mut self, p: &str, t: &str) -> Option<Language> {
        let raw: schema::LanguageFile = self.parse(p, t)?;
        let mut role_map = |table: &BTreeMap<String, String>, what: &str| {
            let mut out = BTreeMap::new();
            for (k, v) in table {
                match Role::parse(v) {
                    Some(r) => {
                        out.insert(k.clone(), r);
                    }
                    None => self.problems.push(LibraryProblem {
                        file: p.into(),
                        line: None,
                        field: Some(format!("contacts.{what}.{k}")),
                        message: format!("role {v:?} is not decision_maker, purchaser, user, finance or influencer"),
                    }),
                }
            }
            out
        };
        let roles = role_map(&raw.contacts.roles, "roles");
        let departments = role_map(&raw.contacts.departments, "departments");
        let mut holidays = Vec::new();
        for (name, range) in &raw.holidays {
            let [a, b] = range.get_ref();
            match (
                NaiveDate::parse_from_str(a, "%Y-%m-%d"),
                NaiveDate::parse_from_str(b, "%Y-%m-%d"),
            ) {
                (Ok(first), Ok(last)) if first <= last => {
                    let name = name.split('-').next().unwrap_or(name).to_string();
                    holidays.push(Holiday { name, first, last });
                }
                _ => self.problem(
                    p,
                    t,
                    Some(range.span()),
                    Some(format!("holidays.{name}")),
                    "expected [\"YYYY-MM-DD\", \"YYYY-MM-DD\"], first day not after the last"
                        .into(),
                ),
            }
        }
        holidays.sort_by_key(|h| h.first);
        if raw.negation.window == 0 {
            self.problem(
                p,
                t,
                None,
                Some("negation.window".into()),
                "window must be at least 1".into(),
            );
        }
        Some(Language {
            clause: raw.clause,
            negation: raw.negation,
            tense: raw.tense,
            vague: raw.vague,
            roles,
            departments,
            holidays,
        })
    }
}

#[cfg(test)]
mod tests;
