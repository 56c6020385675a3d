//! The result JSON reads back as itself: serialize → deserialize → serialize gives the same
//! bytes, for a text tagged by the real engine (with the verifier's reasons and the dropped
//! candidates) and for a real voice memo (transcript, audio, timings). The archive stores
//! results and serves them again; a field that did not survive would silently disappear.

mod common;

use needtag::pipeline::{Engine, MemoMeta, TagOptions};
use needtag::result::{MemoResult, TextResult};

const MEMO: &str = "张主任提到关节镜手术后患者投诉疼痛管理不到位，希望我们下周三带镇痛方案对比表过来，另外库存还够，暂时不用补货。昨天已经给科室做了产品演示，李护士长说下个月试用";

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> String {
    let first = serde_json::to_string_pretty(value).unwrap();
    let back: T = serde_json::from_str(&first).unwrap();
    let second = serde_json::to_string_pretty(&back).unwrap();
    assert_eq!(first, second, "the JSON changed on its way back");
    first
}

#[test]
fn a_tagged_text_round_trips() {
    let mut cfg = common::config();
    cfg.library = Some(common::root().join("need-library"));
    let engine = Engine::load(&cfg, false).unwrap();
    let recorded = chrono::DateTime::parse_from_rfc3339("2026-03-04T10:00:00+08:00").ok();
    for explain in [false, true] {
        let how = TagOptions {
            explain,
            ..TagOptions::from_config(&cfg, true)
        };
        let mut r = engine.tag_text_with(MEMO, recorded, how).unwrap();
        r.memo_id = Some(needtag::result::new_memo_id());
        let json = round_trip(&r);
        // The memo must exercise what is easy to lose: needs with evidence and packs, a ruled-out
        // need, actions, dated next steps, contacts.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for field in ["needs", "ruled_out", "actions", "next_steps", "contacts"] {
            assert!(
                v[field].as_array().is_some_and(|a| !a.is_empty()),
                "{field} is empty in {json}"
            );
        }
        assert!(v["needs"][0]["packs"]
            .as_array()
            .is_some_and(|p| !p.is_empty()));
        if explain {
            assert!(v["dropped"].is_array(), "{json}");
        }
        let _typed: TextResult = serde_json::from_str(&json).unwrap();
    }
}

#[test]
fn a_voice_memo_round_trips() {
    let mut cfg = common::config();
    cfg.library = Some(common::root().join("need-library"));
    let engine = Engine::load(&cfg, true).unwrap();
    let mut worker = engine.speech().unwrap().worker().unwrap();
    let bytes = common::fixture_bytes("audio/aishell_S0764W0121.wav");
    let meta = MemoMeta {
        memo_id: needtag::result::new_memo_id(),
        rep_id: Some("r-17".into()),
        customer_id: Some("hosp-3".into()),
        team: Some("east".into()),
        recorded_at: chrono::DateTime::parse_from_rfc3339("2026-03-04T17:20:00+08:00").ok(),
        domain: Some("medical_devices".into()),
    };
    let id = meta.memo_id.clone();
    let r = engine.process_memo(&mut worker, bytes, meta).unwrap();
    assert_eq!(r.memo_id, id, "the caller's id is the memo's id");
    let json = round_trip(&r);
    let back: MemoResult = serde_json::from_str(&json).unwrap();
    assert_eq!(back.team.as_deref(), Some("east"));
    assert!(!back.transcript.text.is_empty());
    assert_eq!(back.audio.container, "wav");
}
