//! The verifier with the real library, sentence encoder and fitted weights: it is loaded and
//! decides needs and actions, the configuration switch turns it off, a counter-example an
//! analyst adds takes a tag away (and `library check` lists it, and refuses one that would veto
//! the need's own example), a file fitted against another feature schema is refused with the
//! file named, the API explains what it dropped, and `needtag fit` is reproducible.

mod common;

use std::path::Path;
use std::sync::Arc;

use needtag::library::Library;
use needtag::matcher::{Embedder, Matcher};
use needtag::pipeline::{self, Engine, TagOptions};

fn engine(library: &Path, verifier: bool) -> Engine {
    let mut cfg = common::config();
    cfg.library = Some(library.to_path_buf());
    cfg.matcher.verifier = verifier;
    Engine::load(&cfg, false).unwrap()
}

fn needs(e: &Engine, text: &str) -> Vec<String> {
    e.tag_text(text, None, true)
        .unwrap()
        .tags
        .needs
        .iter()
        .map(|n| n.id.clone())
        .collect()
}

#[test]
fn the_default_library_carries_a_verifier_for_needs_and_actions() {
    let lib = Library::load(&common::root().join("need-library")).unwrap();
    let v = lib.verifier.as_ref().expect("need-library/verifier.json");
    let ids: Vec<&String> = lib.needs.iter().map(|n| &n.id).collect();
    assert_eq!(v.needs.memo.labels.iter().collect::<Vec<_>>(), ids);
    let actions = v.actions.as_ref().expect("an actions part");
    assert_eq!(actions.memo.labels.len(), lib.actions.len());
    assert!(v.info.memos >= 2000, "fitted on {} memos", v.info.memos);
    // The library compiled into the binary is the same library, verifier included.
    assert_eq!(Library::embedded().unwrap().version, lib.version);
}

#[test]
fn the_verifier_decides_and_the_switch_turns_it_off() {
    let dir = common::root().join("need-library");
    let with = engine(&dir, true);
    let without = engine(&dir, false);
    // Satisfied with what they have: the need's words, no need.
    let satisfied = "主任对我们的镇痛方案挺满意，说不用再改了";
    assert!(
        needs(&without, satisfied).contains(&"pain_management".to_string()),
        "the thresholds alone tag it: the case the verifier exists for"
    );
    assert!(!needs(&with, satisfied).contains(&"pain_management".to_string()));
    // An open need stays tagged, with the verifier's reasons.
    let r = with
        .tag_text(
            "李护士长反映新到的吻合器有两台卡钉，要求我们3天内派工程师到科室培训",
            None,
            true,
        )
        .unwrap();
    let tag = r
        .tags
        .needs
        .iter()
        .find(|n| n.id == "clinical_usage_issue")
        .expect("clinical_usage_issue is tagged");
    let why = tag.why.as_ref().expect("decided by the verifier");
    assert!(why.keep && why.probability >= why.threshold);
    assert!((why.probability - why.topic * why.expressed).abs() < 0.01);
    assert!(!why.reasons.is_empty());
    // Without the verifier the same tag carries no verdict.
    let r = without
        .tag_text("李护士长反映新到的吻合器有两台卡钉", None, true)
        .unwrap();
    assert!(r.tags.needs.iter().all(|n| n.why.is_none()));
}

/// The plainest memos a rep speaks are tagged, and the kinds of wrong tags are not:
/// satisfied, completed, routine, another sense of the word, deferred, someone else's.
#[test]
fn plain_complaints_are_tagged_and_closed_topics_are_not() {
    let e = engine(&common::root().join("need-library"), true);
    let open = [
        ("客户说价格太高", "price_concern"),
        ("老板说你们价格太高了", "price_concern"),
        ("客户说最近老缺货", "stock_shortage"),
        ("客户说到货太慢", "delivery_logistics"),
        ("客户说产品质量有问题", "quality_complaint"),
        ("主任说需要我们来培训一下护士", "staff_training"),
        ("客户说账期太短", "payment_terms"),
    ];
    for (text, id) in open {
        assert!(
            needs(&e, text).contains(&id.to_string()),
            "{text}: {id} not tagged"
        );
    }
    let closed = [
        "主任对我们的镇痛方案挺满意，说不用再改了",
        "中标了，下周签合同",
        "货款这个月已经全部结清",
        "顺路去店里转了一圈，价签和堆头都正常",
        "他们对面新开了一家银行",
        "问了下到货时间，说是周五",
        "客户说等卖完了再结账",
        "等明年新院区建好再谈设备",
        "听说隔壁县医院缺货很严重",
    ];
    for text in closed {
        assert_eq!(needs(&e, text), Vec::<String>::new(), "{text}");
    }
}

#[test]
fn explaining_lists_the_candidates_the_verifier_dropped() {
    let e = engine(&common::root().join("need-library"), true);
    let how = TagOptions {
        explain: true,
        ..TagOptions::default()
    };
    let r = e
        .tag_text_with(
            "货款这个月已经全部结清了，店长说陈列位置挺好，不用动",
            None,
            how,
        )
        .unwrap();
    let dropped = r.tags.dropped.expect("explain lists dropped candidates");
    assert!(
        dropped.iter().any(|d| d.id == "payment_terms"),
        "{dropped:?}"
    );
    for d in &dropped {
        let why = d.why.as_ref().expect("the verifier's reasons");
        assert!(!why.keep);
        assert!(!d.clause.is_empty());
    }
    // Without `explain` nothing extra is returned.
    assert!(e
        .tag_text("货款这个月已经全部结清了", None, true)
        .unwrap()
        .tags
        .dropped
        .is_none());
}

/// Insert `counter_examples = [...]` into the need `id` of a library copy.
fn add_counter_examples(dir: &Path, id: &str, sentences: &[&str]) {
    for entry in std::fs::read_dir(dir.join("needs")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let marker = format!("id = \"{id}\"\n");
        if let Some(at) = text.find(&marker) {
            let list = sentences
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut out = text.clone();
            out.insert_str(at + marker.len(), &format!("counter_examples = [{list}]\n"));
            std::fs::write(&path, out).unwrap();
            return;
        }
    }
    panic!("need {id} not found");
}

#[test]
fn a_counter_example_takes_a_tag_away() {
    let memo = "检验科王主任说我们的试剂最近老是结果偏高，复查了好几次，让我们派人来看看";
    let base = engine(&common::root().join("need-library"), true);
    let before = needs(&base, memo);
    assert!(
        before.contains(&"clinical_usage_issue".to_string()),
        "{before:?}"
    );

    let dir = common::server::library_copy("counter");
    // What an analyst writes after a wrong tag: the sentence, in other words.
    add_counter_examples(
        &dir,
        "clinical_usage_issue",
        &["检验科主任说试剂结果老是偏高，复查好几次，让我们派人来看"],
    );
    let lib = Library::load(&dir).unwrap();
    let need = lib.need("clinical_usage_issue").unwrap();
    assert_eq!(need.counter_examples.len(), 1);
    let changed = engine(&dir, true);
    let how = TagOptions {
        explain: true,
        ..TagOptions::default()
    };
    let r = changed.tag_text_with(memo, None, how).unwrap();
    assert!(
        !r.tags.needs.iter().any(|n| n.id == "clinical_usage_issue"),
        "{:?}",
        r.tags.needs
    );
    let dropped = r.tags.dropped.unwrap();
    let d = dropped
        .iter()
        .find(|d| d.id == "clinical_usage_issue")
        .expect("listed as dropped");
    assert!(d
        .why
        .as_ref()
        .unwrap()
        .reasons
        .iter()
        .any(|r| r.feature.starts_with("counter_example:")));
    // Other needs of the memo are untouched.
    for id in before
        .iter()
        .filter(|id| id.as_str() != "clinical_usage_issue")
    {
        assert!(r.tags.needs.iter().any(|n| &n.id == id), "{id} was lost");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn library_check_lists_counter_examples_and_refuses_one_that_vetoes_an_example() {
    let dir = common::server::library_copy("check");
    let lib = Library::load(&dir).unwrap();
    let example = lib.need("stock_shortage").unwrap().examples[0].clone();
    let run = |dir: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_needtag"))
            .args([
                "--models",
                common::root().join("models/prepared").to_str().unwrap(),
            ])
            .args(["library", "check", dir.to_str().unwrap()])
            .output()
            .unwrap()
    };
    add_counter_examples(&dir, "stock_shortage", &["库存还够用到月底，暂时不用补货"]);
    let ok = run(&dir);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{out}");
    assert!(
        out.contains("counter-examples:") && out.contains("库存还够用到月底"),
        "{out}"
    );
    assert!(out.contains("verifier: fitted on"), "{out}");

    // The need's own example, reworded only by punctuation, would veto the need itself.
    let dir2 = common::server::library_copy("check-conflict");
    add_counter_examples(&dir2, "stock_shortage", &[&format!("{example}。")]);
    let bad = run(&dir2);
    let out = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{out}");
    assert!(
        out.contains("conflict: need.stock_shortage.counter_examples"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[test]
fn a_verifier_of_another_feature_schema_is_refused_with_the_file_named() {
    let dir = common::server::library_copy("schema");
    let path = dir.join("verifier.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["schema"] = serde_json::json!(999);
    std::fs::write(&path, v.to_string()).unwrap();
    let err = Library::load(&dir).unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.code(), "invalid_library");
    assert!(
        msg.contains("verifier.json") && msg.contains("schema"),
        "{msg}"
    );
    // `needtag fit` can still load the library to fit a new one.
    let for_fit = Library::load_for_fitting(Some(&dir)).unwrap();
    assert!(for_fit.verifier.is_none());
    std::fs::write(&path, "{not json").unwrap();
    let msg = Library::load(&dir).unwrap_err().to_string();
    assert!(msg.contains("verifier.json"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_api_explains_on_request() {
    let cfg = common::server::config("verifier-api");
    let server = common::server::Server::start(cfg, true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = common::server::client();
        let post = |body: serde_json::Value| {
            c.post(server.url("/v1/tag"))
                .header(
                    "authorization",
                    common::server::bearer(common::server::TAG_KEY),
                )
                .json(&body)
                .send()
        };
        let text = "中标了，下周签合同，主任说镇痛泵现在用得挺好";
        let r: serde_json::Value = post(serde_json::json!({"text": text, "explain": true}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(r["dropped"].is_array(), "{r}");
        let plain: serde_json::Value = post(serde_json::json!({"text": text}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(plain.get("dropped").is_none(), "{plain}");
        let lib: serde_json::Value = c
            .get(server.url("/v1/library"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(lib["verifier"]["memos"].as_u64().unwrap() >= 2000, "{lib}");
        assert_eq!(lib["verifier"]["in_use"], true);
    });
}

#[test]
fn fitting_is_reproducible() {
    let lib = Arc::new(Library::load(&common::root().join("need-library")).unwrap());
    let cfg = common::config();
    let embedder = Arc::new(Embedder::from_config(&cfg).unwrap());
    let matcher = Matcher::build(lib, Some(embedder)).unwrap();
    let memos =
        needtag::eval::load_jsonl(&common::root().join("need-library/eval/dev.jsonl")).unwrap();
    let o = needtag::verifier::fit::Options {
        folds: 2,
        ..Default::default()
    };
    let fit = || {
        needtag::verifier::fit::fit(&matcher, &memos, vec!["dev.jsonl".into()], &o, &|_| {})
            .unwrap()
    };
    let (a, report) = fit();
    let (b, _) = fit();
    let (ja, jb) = (a.to_json(), b.to_json());
    let first_difference = ja.bytes().zip(jb.bytes()).position(|(x, y)| x != y);
    assert!(
        ja == jb,
        "two fits differ (lengths {} and {}, first difference at byte {first_difference:?})",
        ja.len(),
        jb.len()
    );
    assert!(report.needs.hybrid.f1 > 0.5, "{report:?}");
    // The written file reads back to the same verifier.
    let back = needtag::verifier::Verifier::from_json(&ja).unwrap();
    let jback = back.to_json();
    let pos = ja
        .bytes()
        .zip(jback.bytes())
        .position(|(x, y)| x != y)
        .unwrap_or(0);
    assert!(
        jback == ja,
        "the file does not read back to the same verifier: {} vs {}",
        &ja[pos.saturating_sub(100)..(pos + 100).min(ja.len())],
        &jback[pos.saturating_sub(100)..(pos + 100).min(jback.len())]
    );
    // And tags like it.
    let text = "张主任说腹腔镜术后病人疼得睡不着，想让我们带镇痛方案过来";
    let lib2 = {
        let mut l = Library::load(&common::root().join("need-library")).unwrap();
        l.verifier = Some(Arc::new(back));
        Arc::new(l)
    };
    let m2 = Matcher::build(lib2, Some(Arc::new(Embedder::from_config(&cfg).unwrap()))).unwrap();
    let t = pipeline::tag(&m2, text, None, TagOptions::new(true, true)).unwrap();
    assert!(t.needs.iter().all(|n| n.why.is_some()));
}
