//! Text tagging per memo, keyword-only and hybrid (one thread), with the library's verifier
//! (the default) and with thresholds alone: the development set's memos, one after another.

mod common;

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use needtag::library::Library;
use needtag::matcher::{Embedder, Matcher};

fn tagging(c: &mut Criterion) {
    let cfg = common::config();
    let texts = common::dev_texts();
    let lib = Arc::new(Library::embedded().unwrap());
    needtag::onnx::init(&cfg.models.path(&cfg.models.onnxruntime)).unwrap();
    let embedder = Arc::new(
        Embedder::load(
            &cfg.models.path(&cfg.models.embedding),
            &cfg.models.path(&cfg.models.tokenizer),
            1,
            1,
        )
        .unwrap(),
    );
    let keyword = Matcher::build(lib.clone(), None).unwrap();
    let hybrid = Matcher::build(lib.clone(), Some(embedder)).unwrap();
    let mut g = c.benchmark_group("tag_memo");
    g.throughput(Throughput::Elements(1));
    for (name, m, semantic, verifier) in [
        ("keyword", &keyword, false, true),
        ("hybrid", &hybrid, true, true),
        ("keyword_thresholds_only", &keyword, false, false),
        ("hybrid_thresholds_only", &hybrid, true, false),
    ] {
        let mut i = 0;
        let how = needtag::pipeline::TagOptions::new(semantic, verifier);
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % texts.len();
                needtag::pipeline::tag(m, &texts[i], None, how).unwrap()
            })
        });
    }
    g.finish();
    c.bench_function("library_load_and_compile_hybrid", |b| {
        b.iter(|| {
            Matcher::build(
                Arc::new(Library::embedded().unwrap()),
                Some(Arc::new(
                    Embedder::load(
                        &cfg.models.path(&cfg.models.embedding),
                        &cfg.models.path(&cfg.models.tokenizer),
                        1,
                        1,
                    )
                    .unwrap(),
                )),
            )
            .unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = tagging
}
criterion_main!(benches);
