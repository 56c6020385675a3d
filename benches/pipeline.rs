//! A ~30 s memo: transcription alone, and the whole pipeline from bytes to result JSON, with the
//! models loaded once and warm (as in the service). Threads: NEEDTAG_THREADS (default 1).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use needtag::pipeline::{Engine, MemoMeta};

fn pipeline(c: &mut Criterion) {
    let mut cfg = common::config();
    if let Some(t) = std::env::var("NEEDTAG_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
    {
        cfg.asr.threads = t;
    }
    let (memo, source) = common::memo_30s();
    eprintln!(
        "memo: {source}, {} bytes, threads {}",
        memo.len(),
        cfg.asr.threads
    );
    let engine = Engine::load(&cfg, true).unwrap();
    let speech = engine.speech().unwrap();
    let mut worker = speech.worker().unwrap();
    let prompt = engine.current().prompts.get(None).map(String::from);
    let mut g = c.benchmark_group("memo_30s");
    g.sample_size(10);
    g.bench_function("transcribe", |b| {
        b.iter(|| {
            speech
                .transcribe(&mut worker, &memo, prompt.as_deref())
                .unwrap()
        })
    });
    g.bench_function("bytes_to_json", |b| {
        b.iter(|| {
            serde_json::to_vec(
                &engine
                    .process_memo(
                        &mut worker,
                        &memo,
                        MemoMeta {
                            memo_id: needtag::result::new_memo_id(),
                            ..MemoMeta::default()
                        },
                    )
                    .unwrap(),
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
