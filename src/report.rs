//! `needtag eval`: runs the evaluation and prints it for analysts (tables) or machines (--json).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};

use needtag::eval::{self, Metrics, Prediction, Report};
use needtag::library::Library;
use needtag::matcher::{Embedder, Matcher};
use needtag::pipeline::TagOptions;
use needtag::Config;

/// The sentence encoder when `semantic`, loaded once and shared by every library compared.
fn embedder(cfg: &Config, semantic: bool) -> Result<Option<Arc<Embedder>>> {
    Ok(if semantic {
        Some(Arc::new(Embedder::from_config(cfg)?))
    } else {
        None
    })
}

fn matcher(dir: Option<&Path>, embedder: Option<Arc<Embedder>>) -> Result<Matcher> {
    let lib = Library::load_or_embedded(dir)?;
    Ok(Matcher::build(Arc::new(lib), embedder)?)
}

fn run(m: &Matcher, memos: &[eval::Memo], how: TagOptions, label: &str) -> Result<Vec<Prediction>> {
    let bar = ProgressBar::new(memos.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} memos, {eta} left")
            .unwrap()
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    if memos.len() < 50 {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let preds = eval::predict(m, memos, how, &|| bar.inc(1))?;
    bar.finish_and_clear();
    Ok(preds)
}

fn load(files: &[PathBuf]) -> Result<Vec<eval::Memo>> {
    let mut memos = Vec::new();
    for f in files {
        memos.extend(eval::load_jsonl(f)?);
    }
    Ok(memos)
}

pub fn eval(
    cfg: &Config,
    files: &[PathBuf],
    compare: Option<&Path>,
    json: bool,
    semantic: bool,
    misses: usize,
    features: Option<&Path>,
) -> Result<ExitCode> {
    let how = TagOptions::from_config(cfg, semantic);
    let memos = load(files)?;
    let embedder = embedder(cfg, semantic)?;
    let base = matcher(cfg.library.as_deref(), embedder.clone())?;
    if let Some(out) = features {
        let rows = eval::features(&base, &memos, semantic)?;
        let mut text = String::new();
        for r in rows {
            text.push_str(&serde_json::to_string(&r)?);
            text.push('\n');
        }
        std::fs::write(out, text)?;
    }
    let preds = run(&base, &memos, how, "evaluating")?;
    let report = eval::report(&base, &memos, &preds, semantic);
    let comparison = match compare {
        Some(dir) => {
            let other = matcher(Some(dir), embedder.clone())?;
            let other_preds = run(&other, &memos, how, "comparing")?;
            let other_report = eval::report(&other, &memos, &other_preds, semantic);
            Some((
                eval::compare(
                    &memos,
                    &preds,
                    &other_preds,
                    &base.lib.version,
                    &other.lib.version,
                ),
                other_report,
            ))
        }
        None => None,
    };
    if json {
        let mut v = serde_json::to_value(&report)?;
        if let Some((c, r)) = &comparison {
            v["compare"] = serde_json::json!({"diff": c, "report": r});
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_report(&report, misses);
    if let Some((c, other)) = comparison {
        println!(
            "\n== compared with {} ({})",
            compare.unwrap().display(),
            c.other_version
        );
        println!(
            "needs micro-F1 {:.3} → {:.3}, macro-F1 {:.3} → {:.3}; actions micro-F1 {:.3} → {:.3}",
            report.needs.micro_f1,
            other.needs.micro_f1,
            report.needs.macro_f1,
            other.needs.macro_f1,
            report.actions.micro_f1,
            other.actions.micro_f1
        );
        println!(
            "gained on {} memos, lost on {}",
            c.gained.len(),
            c.lost.len()
        );
        for (title, list) in [("gained", &c.gained), ("lost", &c.lost)] {
            for d in list {
                println!(
                    "  {title:6} {}: {}\n         before: {}\n         after:  {}",
                    d.id,
                    d.text,
                    join(&d.base_errors),
                    join(&d.other_errors)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Fit the library's verifier on labeled memos and write it into the library directory.
pub fn fit_verifier(
    cfg: &Config,
    files: &[PathBuf],
    out: &Path,
    options: &needtag::verifier::fit::Options,
) -> Result<ExitCode> {
    let memos = load(files)?;
    let lib = Library::load_for_fitting(cfg.library.as_deref())?;
    let m = Matcher::build(Arc::new(lib), embedder(cfg, true)?)?;
    let started = std::time::Instant::now();
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let (verifier, report) = needtag::verifier::fit::fit(&m, &memos, names, options, &|step| {
        eprintln!("[{:>6.1} s] {step}", started.elapsed().as_secs_f64())
    })?;
    std::fs::write(out, verifier.to_json())?;
    eprintln!(
        "wrote {} ({} memos, {:.0} s)",
        out.display(),
        memos.len(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// Refit the scoring weights for both modes and print them for library.toml.
pub fn fit(cfg: &Config, files: &[PathBuf]) -> Result<ExitCode> {
    let memos = load(files)?;
    let mut out = String::from("[scoring]\n");
    let mut thresholds = Vec::new();
    for (mode, semantic) in [("hybrid", true), ("keyword", false)] {
        let m = matcher(cfg.library.as_deref(), embedder(cfg, semantic)?)?;
        let rows = eval::features(&m, &memos, semantic)?;
        let (w, th) = eval::fit_weights(&rows, semantic);
        out.push_str(&format!(
            "{mode} = {{ bias = {:.3}, lexical = {:.3}, semantic = {:.3}, bm25_rel = {:.3}, bm25_log = {:.3}, lexical_semantic = {:.3} }}\n",
            w.bias, w.lexical, w.semantic, w.bm25_rel, w.bm25_log, w.lexical_semantic
        ));
        thresholds.push(format!("{mode}: {th:.2}"));
    }
    println!("{out}");
    println!(
        "# thresholds that maximise micro-F1 on {}: {}",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(" + "),
        thresholds.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn join(v: &[String]) -> String {
    if v.is_empty() {
        "all right".into()
    } else {
        v.join(", ")
    }
}

fn print_metrics(title: &str, m: &Metrics) {
    println!("\n{title}");
    println!(
        "  {:<30} {:>7} {:>6} {:>6} {:>6}   tp  fp  fn",
        "id", "support", "P", "R", "F1"
    );
    for s in &m.labels {
        println!(
            "  {:<30} {:>7} {:>6.3} {:>6.3} {:>6.3}  {:>3} {:>3} {:>3}",
            s.label, s.support, s.precision, s.recall, s.f1, s.counts.tp, s.counts.fp, s.counts.fn_
        );
    }
    println!(
        "  micro P {:.3} R {:.3} F1 {:.3}; macro F1 {:.3}",
        m.micro_precision, m.micro_recall, m.micro_f1, m.macro_f1
    );
}

fn print_report(r: &Report, misses: usize) {
    println!(
        "{} memos, {} mode, library {}",
        r.memos, r.mode, r.library_version
    );
    print_metrics("needs", &r.needs);
    print_metrics("actions (reported as done)", &r.actions);
    println!(
        "\nvague flag: P {:.3} R {:.3} F1 {:.3} (tp {} fp {} fn {})",
        r.vague.precision,
        r.vague.recall,
        r.vague.f1,
        r.vague.counts.tp,
        r.vague.counts.fp,
        r.vague.counts.fn_
    );
    println!(
        "\nby category:\n  {:<16} {:>6} {:>10} {:>12} {:>7}",
        "category", "memos", "needs F1", "actions F1", "exact"
    );
    for c in &r.categories {
        println!(
            "  {:<16} {:>6} {:>10.3} {:>12.3} {:>7}",
            c.category, c.memos, c.needs_micro_f1, c.actions_micro_f1, c.exact
        );
    }
    let list = |v: &[eval::Violation]| {
        v.iter()
            .map(|x| format!("{} {}", x.id, x.label))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "\nnegated needs tagged anyway: {} {}",
        r.negated_needs_tagged.len(),
        list(&r.negated_needs_tagged)
    );
    println!(
        "planned actions counted as done: {} {}",
        r.planned_actions_counted.len(),
        list(&r.planned_actions_counted)
    );
    println!(
        "negated actions counted as done: {} {}",
        r.negated_actions_counted.len(),
        list(&r.negated_actions_counted)
    );
    if !r.confused_pairs.is_empty() {
        println!("\nmost confused (missed → tagged instead):");
        for (a, b, n) in &r.confused_pairs {
            println!("  {n:>3}  {a} → {b}");
        }
    }
    if misses > 0 && !r.misses.is_empty() {
        println!(
            "\nmisses ({} memos; showing {}):",
            r.misses.len(),
            misses.min(r.misses.len())
        );
        for m in r.misses.iter().take(misses) {
            let mut parts = Vec::new();
            if !m.missed_needs.is_empty() {
                parts.push(format!("missed {}", m.missed_needs.join(",")));
            }
            let with_evidence = |ids: &[String]| {
                ids.iter()
                    .map(|x| {
                        format!(
                            "{x}[{}]",
                            m.extra_evidence
                                .get(x)
                                .map(|e| e.join(" "))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            };
            if !m.extra_needs.is_empty() {
                parts.push(format!("extra {}", with_evidence(&m.extra_needs)));
            }
            if !m.missed_actions.is_empty() {
                parts.push(format!("missed action {}", m.missed_actions.join(",")));
            }
            if !m.extra_actions.is_empty() {
                parts.push(format!("extra action {}", with_evidence(&m.extra_actions)));
            }
            if let Some((gold, got)) = m.vague {
                parts.push(format!("vague {got} (should be {gold})"));
            }
            println!("  {}: {}\n      {}", m.id, parts.join("; "), m.text);
        }
    }
    println!(
        "\nlatency per memo: mean {:.2} ms, p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        r.latency_ms.mean, r.latency_ms.p50, r.latency_ms.p95, r.latency_ms.max
    );
}
