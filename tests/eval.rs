//! Accuracy floors on the labeled development sets, with the real library, jieba, tantivy and the
//! real sentence-embedding model. The floors sit a little under the measured numbers (see the
//! README's evaluation table) so that a library or engine change that loses accuracy fails here
//! instead of reaching the CRM. The held-out set (`test.jsonl`) is deliberately not asserted on:
//! it is only ever reported, so nothing gets tuned to it.

mod common;

use std::sync::Arc;

use needtag::eval::{self, Report};
use needtag::library::Library;
use needtag::matcher::{Embedder, Matcher};

fn matcher(semantic: bool) -> Matcher {
    let cfg = common::config();
    let embedder = semantic.then(|| {
        needtag::onnx::init(&cfg.models.path(&cfg.models.onnxruntime)).unwrap();
        Arc::new(
            Embedder::load(
                &cfg.models.path(&cfg.models.embedding),
                &cfg.models.path(&cfg.models.tokenizer),
                1,
                1,
            )
            .unwrap(),
        )
    });
    let lib = Library::load(&common::root().join("need-library")).unwrap();
    Matcher::build(Arc::new(lib), embedder).unwrap()
}

fn run(m: &Matcher, file: &str, semantic: bool) -> Report {
    let memos = eval::load_jsonl(&common::root().join("need-library/eval").join(file)).unwrap();
    let preds = eval::predict(m, &memos, semantic, &|| {}).unwrap();
    let r = eval::report(m, &memos, &preds, semantic);
    eprintln!(
        "{file} ({}): needs micro-F1 {:.3}, actions micro-F1 {:.3}, vague P {:.3} R {:.3}",
        r.mode, r.needs.micro_f1, r.actions.micro_f1, r.vague.precision, r.vague.recall
    );
    r
}

fn no_violations(r: &Report) {
    assert!(
        r.negated_needs_tagged.is_empty(),
        "negated needs tagged: {:?}",
        r.negated_needs_tagged
    );
    assert!(
        r.negated_actions_counted.is_empty(),
        "negated actions counted as done: {:?}",
        r.negated_actions_counted
    );
    assert!(
        r.planned_actions_counted.is_empty(),
        "planned actions counted as done: {:?}",
        r.planned_actions_counted
    );
}

#[test]
fn development_set_hybrid() {
    let m = matcher(true);
    let r = run(&m, "dev.jsonl", true);
    assert!(r.memos >= 200);
    assert!(
        r.needs.micro_f1 >= 0.92,
        "needs micro-F1 {}",
        r.needs.micro_f1
    );
    assert!(
        r.needs.macro_f1 >= 0.92,
        "needs macro-F1 {}",
        r.needs.macro_f1
    );
    assert!(
        r.actions.micro_f1 >= 0.92,
        "actions micro-F1 {}",
        r.actions.micro_f1
    );
    assert!(
        r.vague.precision >= 0.95,
        "vague precision {}",
        r.vague.precision
    );
    assert!(r.vague.recall >= 0.9, "vague recall {}", r.vague.recall);
    no_violations(&r);

    // The second development set (written later, harder paraphrases and negations).
    let r2 = run(&m, "dev2.jsonl", true);
    assert!(
        r2.needs.micro_f1 >= 0.83,
        "dev2 needs micro-F1 {}",
        r2.needs.micro_f1
    );
    assert!(
        r2.actions.micro_f1 >= 0.88,
        "dev2 actions micro-F1 {}",
        r2.actions.micro_f1
    );
}

#[test]
fn development_set_keyword_only() {
    let m = matcher(false);
    let r = run(&m, "dev.jsonl", false);
    assert!(
        r.needs.micro_f1 >= 0.91,
        "needs micro-F1 {}",
        r.needs.micro_f1
    );
    assert!(
        r.actions.micro_f1 >= 0.92,
        "actions micro-F1 {}",
        r.actions.micro_f1
    );
    assert!(
        r.vague.precision >= 0.95,
        "vague precision {}",
        r.vague.precision
    );
    no_violations(&r);
}
