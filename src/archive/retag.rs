//! Re-tag stored memos with a candidate library, without changing them: what the candidate
//! adds and drops memo by memo against the stored tags, and, on the reviewed memos, precision,
//! recall and F1 of the stored tags and of the candidate's against the reviewer's labels.

use std::collections::BTreeSet;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Filter, Result, Store, StoredMemo};
use crate::eval::Counts;

/// Memos read from the store per page.
const PAGE: usize = 500;

/// Needs and actions of one memo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagSet {
    pub needs: BTreeSet<String>,
    pub actions: BTreeSet<String>,
}

/// Precision, recall and F1 of one kind of tag.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Score {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl From<Counts> for Score {
    fn from(c: Counts) -> Score {
        Score {
            precision: c.precision(),
            recall: c.recall(),
            f1: c.f1(),
            tp: c.tp,
            fp: c.fp,
            fn_: c.fn_,
        }
    }
}

/// Scores of the stored tags and of the candidate's on the reviewed memos.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BeforeAfter {
    pub before: Score,
    pub after: Score,
}

/// What the candidate changes on one memo.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemoChange {
    pub memo_id: String,
    pub recorded_at: String,
    pub text: String,
    /// Tags the candidate adds, as `need:id` or `action:id`.
    pub added: Vec<String>,
    /// Stored tags the candidate drops.
    pub removed: Vec<String>,
    /// On a reviewed memo: wrong or missing tags against the labels, stored and candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors_before: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors_after: Option<Vec<String>>,
}

/// The outcome of a re-tag.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetagReport {
    pub candidate_version: String,
    /// The library versions the memos were stored with, and how many memos each.
    pub stored_versions: std::collections::BTreeMap<String, usize>,
    pub memos: usize,
    /// Memos whose tags the candidate changes.
    pub changed: usize,
    /// Memos with a review: scored.
    pub reviewed: usize,
    pub needs: BeforeAfter,
    pub actions: BeforeAfter,
    /// Reviewed memos the candidate gets more right (fewer errors against the labels).
    pub gained: Vec<MemoChange>,
    /// Reviewed memos it gets more wrong.
    pub lost: Vec<MemoChange>,
    /// Other memos it tags differently (reviewed ones with as many errors, and unreviewed ones).
    pub other_changes: Vec<MemoChange>,
    /// True when a list was cut at the limit asked for.
    pub truncated: bool,
}

fn count(gold: &BTreeSet<String>, pred: &BTreeSet<String>, c: &mut Counts) {
    c.tp += gold.intersection(pred).count();
    c.fp += pred.difference(gold).count();
    c.fn_ += gold.difference(pred).count();
}

fn errors(gold: &TagSet, pred: &TagSet) -> Vec<String> {
    let mut e = Vec::new();
    for (kind, g, p) in [
        ("need", &gold.needs, &pred.needs),
        ("action", &gold.actions, &pred.actions),
    ] {
        e.extend(g.difference(p).map(|x| format!("missed {kind}:{x}")));
        e.extend(p.difference(g).map(|x| format!("extra {kind}:{x}")));
    }
    e
}

fn diff(from: &TagSet, to: &TagSet) -> Vec<String> {
    to.needs
        .difference(&from.needs)
        .map(|x| format!("need:{x}"))
        .chain(
            to.actions
                .difference(&from.actions)
                .map(|x| format!("action:{x}")),
        )
        .collect()
}

fn set(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

/// Tags a text recorded at a time.
pub type Tagger<'a> = dyn FnMut(&str, Option<DateTime<FixedOffset>>) -> crate::Result<TagSet> + 'a;

/// Compare the stored tags of `memos` with `candidate`'s (`tag` runs it on a text and its
/// recording time); at most `keep` memos in each list of the report.
pub fn compare(
    memos: &[StoredMemo],
    candidate_version: &str,
    tag: &mut Tagger<'_>,
    keep: usize,
) -> crate::Result<RetagReport> {
    let mut versions: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut nb, mut na, mut ab, mut aa) = (
        Counts::default(),
        Counts::default(),
        Counts::default(),
        Counts::default(),
    );
    let (mut gained, mut lost, mut other) = (Vec::new(), Vec::new(), Vec::new());
    let (mut changed, mut reviewed) = (0, 0);
    for m in memos {
        *versions.entry(m.library_version.clone()).or_default() += 1;
        let stored = TagSet {
            needs: set(&m.needs),
            actions: set(&m.actions),
        };
        let at = DateTime::parse_from_rfc3339(&m.recorded_at).ok();
        let after = tag(&m.text, at)?;
        let labels = m.labels.as_ref().map(|l| TagSet {
            needs: set(&l.needs),
            actions: set(&l.actions),
        });
        let (errors_before, errors_after) = match &labels {
            Some(gold) => {
                reviewed += 1;
                count(&gold.needs, &stored.needs, &mut nb);
                count(&gold.needs, &after.needs, &mut na);
                count(&gold.actions, &stored.actions, &mut ab);
                count(&gold.actions, &after.actions, &mut aa);
                (Some(errors(gold, &stored)), Some(errors(gold, &after)))
            }
            None => (None, None),
        };
        if after == stored {
            continue;
        }
        changed += 1;
        let change = MemoChange {
            memo_id: m.memo_id.clone(),
            recorded_at: m.recorded_at.clone(),
            text: m.text.clone(),
            added: diff(&stored, &after),
            removed: diff(&after, &stored),
            errors_before,
            errors_after,
        };
        let list = match (&change.errors_before, &change.errors_after) {
            (Some(b), Some(a)) if a.len() < b.len() => &mut gained,
            (Some(b), Some(a)) if a.len() > b.len() => &mut lost,
            _ => &mut other,
        };
        list.push(change);
    }
    let truncated = [&gained, &lost, &other].iter().any(|l| l.len() > keep);
    for l in [&mut gained, &mut lost, &mut other] {
        l.truncate(keep);
    }
    Ok(RetagReport {
        candidate_version: candidate_version.to_string(),
        stored_versions: versions,
        memos: memos.len(),
        changed,
        reviewed,
        needs: BeforeAfter {
            before: nb.into(),
            after: na.into(),
        },
        actions: BeforeAfter {
            before: ab.into(),
            after: aa.into(),
        },
        gained,
        lost,
        other_changes: other,
        truncated,
    })
}

/// The newest memos matching `filter`, at most `limit`, newest first.
pub fn memos(store: &mut dyn Store, filter: &Filter, limit: usize) -> Result<Vec<StoredMemo>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    while out.len() < limit {
        let page = store.list(filter, cursor.as_deref(), PAGE.min(limit - out.len()))?;
        out.extend(page.items);
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    Ok(out)
}

/// The tags `matcher` gives a text, as a [`TagSet`].
pub fn tagger(
    matcher: &crate::matcher::Matcher,
    how: crate::pipeline::TagOptions,
) -> impl FnMut(&str, Option<DateTime<FixedOffset>>) -> crate::Result<TagSet> + '_ {
    move |text, at| {
        let t = crate::pipeline::tag(matcher, text, at, how)?;
        Ok(TagSet {
            needs: t.needs.into_iter().map(|n| n.id).collect(),
            actions: t.actions.into_iter().map(|a| a.id).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{Labels, Source};

    fn stored(id: &str, needs: &[&str], labels: Option<&[&str]>) -> StoredMemo {
        StoredMemo {
            memo_id: id.into(),
            source: Source::Text,
            rep_id: None,
            customer_id: None,
            team: None,
            domain: None,
            recorded_at: "2026-03-04T10:00:00+08:00".into(),
            stored_at: "2026-03-04T02:00:00+00:00".into(),
            stored_by: "k".into(),
            library_version: "lib-old".into(),
            text: id.into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            actions: vec![],
            vague: false,
            high_value: false,
            reviewed: labels.is_some(),
            labels: labels.map(|l| Labels {
                needs: l.iter().map(|s| s.to_string()).collect(),
                actions: vec![],
            }),
            reviews: vec![],
            result: None,
        }
    }

    #[test]
    fn gains_losses_and_scores_against_the_labels() {
        let memos = vec![
            // The candidate finds the missed need: a gain.
            stored("gain", &[], Some(&["price"])),
            // It drops a right one: a loss.
            stored("loss", &["stock"], Some(&["stock"])),
            // Unreviewed and changed.
            stored("new", &[], None),
            // Unchanged.
            stored("same", &["price"], Some(&["price"])),
        ];
        let mut tag = |text: &str, _| {
            Ok(TagSet {
                needs: match text {
                    "gain" | "new" | "same" => ["price".to_string()].into(),
                    _ => BTreeSet::new(),
                },
                actions: BTreeSet::new(),
            })
        };
        let r = compare(&memos, "lib-new", &mut tag, 10).unwrap();
        assert_eq!((r.memos, r.changed, r.reviewed), (4, 3, 3));
        assert_eq!(r.gained[0].memo_id, "gain");
        assert_eq!(r.gained[0].added, ["need:price"]);
        assert_eq!(r.lost[0].memo_id, "loss");
        assert_eq!(r.lost[0].removed, ["need:stock"]);
        assert_eq!(r.other_changes[0].memo_id, "new");
        assert!(r.other_changes[0].errors_before.is_none());
        // Before: tp 2 (loss, same), fn 1 (gain); after: tp 2 (gain, same), fn 1 (loss).
        assert_eq!((r.needs.before.tp, r.needs.before.fn_), (2, 1));
        assert_eq!((r.needs.after.tp, r.needs.after.fn_), (2, 1));
        assert_eq!(r.stored_versions.get("lib-old"), Some(&4));
        let cut = compare(&memos, "lib-new", &mut tag, 0).unwrap();
        assert!(cut.truncated && cut.gained.is_empty());
    }
}
