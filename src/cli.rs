//! Command-line interface: parses flags, builds the configuration, calls the library, prints JSON.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use needtag::pipeline::{Engine, MemoMeta, Speech};
use needtag::Config;

#[derive(Parser)]
#[command(
    name = "needtag",
    version,
    about = "Mandarin sales memos in, customer needs and sales actions out"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Configuration file (TOML); environment variables NEEDTAG_* and flags override it.
    #[arg(long, global = true, env = "NEEDTAG_CONFIG")]
    config: Option<PathBuf>,
    /// Directory of prepared model files.
    #[arg(long, global = true)]
    models: Option<PathBuf>,
    /// Whisper model: any whisper.cpp ggml file (default: the prepared base Q8_0 model).
    #[arg(long, global = true)]
    model: Option<PathBuf>,
    /// Threads per transcription.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Needs library directory (default: the library compiled into the binary).
    #[arg(long, global = true, env = "NEEDTAG_LIBRARY")]
    library: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Transcribe an audio file (any supported format) and print the transcript as JSON.
    Transcribe {
        file: PathBuf,
        /// Do not bias whisper with the needs library's vocabulary.
        #[arg(long)]
        no_prompt: bool,
        /// Do not gate with voice-activity detection.
        #[arg(long)]
        no_vad: bool,
        /// The rep's industry, one of the library's domains: whisper is prompted with its words.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Tag a text: needs, actions, next steps, contacts, vague flag (JSON). Reads stdin without --text.
    Tag {
        #[arg(long)]
        text: Option<String>,
        /// When the memo was recorded (RFC 3339), for resolving "下周三" and the like.
        #[arg(long)]
        recorded_at: Option<String>,
        /// Keywords and BM25 only, without sentence embeddings.
        #[arg(long)]
        keyword_only: bool,
        /// Add every need's matching features and evidence, fired or not, and the candidates
        /// the verifier dropped with its reasons.
        #[arg(long)]
        explain: bool,
        /// Decide needs by the scoring weights and thresholds alone, without the verifier.
        #[arg(long)]
        no_verifier: bool,
    },
    /// Transcribe and tag a voice memo (JSON).
    Memo {
        file: PathBuf,
        #[arg(long)]
        recorded_at: Option<String>,
        #[arg(long)]
        rep_id: Option<String>,
        #[arg(long)]
        customer_id: Option<String>,
        /// The rep's industry, one of the library's domains: whisper is prompted with its words.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Evaluate the library on labeled memos (JSONL): precision, recall and F1 per need and action.
    Eval {
        /// One or more JSONL files, evaluated together.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Compare with the library in this directory, memo by memo.
        #[arg(long)]
        compare: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        keyword_only: bool,
        /// How many misses to list (default 30; 0 for none).
        #[arg(long, default_value_t = 30)]
        misses: usize,
        /// Also write every (memo, need) pair's matching features and label to this JSONL file.
        #[arg(long)]
        features: Option<PathBuf>,
        /// Fit the library's scoring weights on this file and print them as TOML for library.toml.
        #[arg(long)]
        fit: bool,
        /// Decide needs by the scoring weights and thresholds alone, without the verifier.
        #[arg(long)]
        no_verifier: bool,
        /// The verifier's need threshold instead of the fitted one.
        #[arg(long)]
        threshold: Option<f32>,
    },
    /// Fit the library's verifier on labeled memos (JSONL) and write it to the library
    /// directory's verifier.json; prints the cross-validated scores.
    Fit {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to write the verifier (default: verifier.json in --library, or need-library/).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Folds for out-of-fold features, the threshold and the cross-validated scores.
        #[arg(long, default_value_t = 5)]
        folds: usize,
        /// Tagging threshold instead of the one that maximises out-of-fold micro-F1.
        #[arg(long)]
        threshold: Option<f32>,
        /// Inverse regularisation of the memo classifier.
        #[arg(long)]
        memo_c: Option<f32>,
        /// Inverse regularisation of the topic and state models.
        #[arg(long)]
        head_c: Option<f32>,
        /// Weights kept per memo-classifier head.
        #[arg(long)]
        memo_keep: Option<usize>,
        /// Memos an n-gram must occur in to enter the memo classifier's vocabulary.
        #[arg(long)]
        memo_min_df: Option<usize>,
        /// Largest vocabulary of the memo classifier (the most frequent n-grams).
        #[arg(long)]
        memo_max_terms: Option<usize>,
        /// Leave out state weights of a smaller magnitude.
        #[arg(long)]
        min_weight: Option<f32>,
    },
    /// Run the HTTP service (see README: endpoints, configuration).
    Serve {
        /// Address to listen on (overrides server.bind / NEEDTAG_BIND).
        #[arg(long)]
        bind: Option<String>,
        /// Transcription workers (each has its own whisper state).
        #[arg(long)]
        workers: Option<usize>,
        /// Memos that may wait for a worker before new uploads get 503.
        #[arg(long)]
        queue: Option<usize>,
    },
    /// Run memo jobs from NATS JetStream (`queue.url`) on this machine's transcription
    /// workers, storing results in the PostgreSQL archive (`archive.url`) and delivering their
    /// webhooks (README: Deploying N API replicas and M workers).
    Worker {
        /// Transcription workers, and so jobs run at once (overrides server.workers).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Needs library tools.
    #[command(subcommand)]
    Library(LibraryCommand),
    /// The memo archive (`archive.url` or `archive.path`; `--archive FILE|URL` overrides it).
    /// Safe while the service runs: the database serialises the writers.
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// Re-tag the archived memos with a candidate library, without changing them: memo by memo
    /// what it adds and drops against the stored tags, and precision, recall and F1 before and
    /// after on the reviewed memos (their labels are the truth).
    Retag {
        /// The candidate library directory.
        #[arg(long)]
        library: PathBuf,
        /// Only memos recorded on or after this date (YYYY-MM-DD, or RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// The archive file (default: archive.path).
        #[arg(long)]
        archive: Option<PathBuf>,
        /// Write the whole report as JSON to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Most memos re-tagged, newest first.
        #[arg(long, default_value_t = 100_000)]
        limit: usize,
        /// Match with keywords only (no sentence encoder).
        #[arg(long)]
        keyword_only: bool,
        /// Print the report as JSON instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Process a memo repeatedly with the models loaded once, and print the time of each run
    /// (end to end, bytes to result JSON) and the median.
    Time {
        file: PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Decode audio files and print what was found (container, codec, duration) and how long
    /// decoding and resampling took, one JSON line per file.
    Probe { files: Vec<PathBuf> },
    /// Character error rate of the transcriber over a directory of labeled recordings
    /// (`manifest.tsv` with file and reference_text columns, or `scripts.tsv` with id and text).
    AsrEval {
        dir: PathBuf,
        #[arg(long)]
        no_prompt: bool,
        #[arg(long)]
        no_vad: bool,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Also tag each transcript and its reference text, and report how far the needs and
        /// actions found in the transcript agree with those found in the reference (micro-F1).
        #[arg(long)]
        tags: bool,
        /// Give whisper each recording's domain (the `domain` column of scripts.tsv or
        /// manifest.tsv), as a caller that knows its rep's industry would.
        #[arg(long)]
        by_domain: bool,
        /// Only the recordings of one part of a split (`benches/asr-split.tsv`: part,
        /// collection = the directory's name, file relative to it); needs --part.
        #[arg(long, requires = "part")]
        split: Option<PathBuf>,
        /// The part of --split to evaluate (`dev` or `test`).
        #[arg(long, requires = "split")]
        part: Option<String>,
        /// Score these transcripts (JSON lines with `file`, relative to DIR, and `text`) instead
        /// of transcribing: another system's output, measured the same way.
        #[arg(long)]
        transcripts: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum LibraryCommand {
    /// Validate a library directory and list every problem; exits non-zero on any.
    Check { dir: Option<PathBuf> },
    /// Summarise a library: version, counts per domain.
    Show { dir: Option<PathBuf> },
    /// Print the prompt whisper is given for a library: the configured head, the library's
    /// words (with `--domain`, that domain's and the general ones) as far as
    /// `asr.prompt_tokens` allows, and the tail.
    Prompt {
        dir: Option<PathBuf>,
        #[arg(long)]
        domain: Option<String>,
    },
}

#[derive(Subcommand)]
enum ArchiveCommand {
    /// Print the reviewed memos as labeled JSONL (the format `needtag eval` reads).
    Export {
        #[arg(long)]
        archive: Option<PathBuf>,
        /// Only this customer's memos.
        #[arg(long)]
        customer: Option<String>,
        /// Only this rep's memos.
        #[arg(long)]
        rep: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Delete one memo (`--memo ID`) or every memo of a customer (`--customer ID`).
    Delete {
        #[arg(long)]
        archive: Option<PathBuf>,
        #[arg(
            long,
            conflicts_with = "customer",
            required_unless_present = "customer"
        )]
        memo: Option<String>,
        #[arg(long)]
        customer: Option<String>,
    },
    /// Delete the memos stored more than `--days` (default: `archive.retention_days`) ago.
    Purge {
        #[arg(long)]
        archive: Option<PathBuf>,
        #[arg(long)]
        days: Option<u32>,
    },
}

/// The configured archive, or the one `--archive` names (a SQLite file, or a postgres:// URL).
fn open_archive(cfg: &Config, at: Option<PathBuf>) -> Result<Box<dyn needtag::archive::Store>> {
    let mut archive = cfg.archive.clone();
    if let Some(at) = at {
        let url = at
            .to_str()
            .filter(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"));
        match url {
            Some(url) => archive.url = Some(url.to_string()),
            None => {
                archive.path = at;
                archive.url = None;
            }
        }
    }
    let location = needtag::archive::location(&archive);
    needtag::archive::open_store(&archive).with_context(|| format!("archive {location}"))
}

fn retag(
    cfg: &Config,
    library: &std::path::Path,
    since: Option<String>,
    archive: Option<PathBuf>,
    out: Option<PathBuf>,
    limit: usize,
    json: bool,
) -> Result<ExitCode> {
    use needtag::archive::retag;
    let since = since
        .map(|s| {
            needtag::archive::parse_bound(&s, false).with_context(|| {
                format!("--since {s:?} is neither a date (YYYY-MM-DD) nor RFC 3339")
            })
        })
        .transpose()?;
    let lib = needtag::library::Library::load(library)?;
    let embedder = if cfg.matcher.semantic {
        Some(std::sync::Arc::new(
            needtag::matcher::Embedder::from_config(cfg)?,
        ))
    } else {
        None
    };
    let semantic = embedder.is_some();
    let version = lib.version.clone();
    let matcher = needtag::matcher::Matcher::build(std::sync::Arc::new(lib), embedder)?;
    let mut db = open_archive(cfg, archive)?;
    let filter = needtag::archive::Filter {
        from: since,
        ..Default::default()
    };
    let memos = retag::memos(db.as_mut(), &filter, limit)?;
    let how = needtag::pipeline::TagOptions::from_config(cfg, semantic);
    let mut tag = retag::tagger(&matcher, how);
    let report = retag::compare(&memos, &version, &mut tag, usize::MAX)?;
    drop(tag);
    if let Some(path) = &out {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let stored: Vec<String> = report
        .stored_versions
        .iter()
        .map(|(v, n)| format!("{v} ({n})"))
        .collect();
    println!(
        "{} memos re-tagged with {} (stored with {}); {} change, {} reviewed",
        report.memos,
        report.candidate_version,
        stored.join(", "),
        report.changed,
        report.reviewed
    );
    for (name, s) in [("needs", &report.needs), ("actions", &report.actions)] {
        println!(
            "  {name:8} on reviewed memos: P {:.3} → {:.3}  R {:.3} → {:.3}  F1 {:.3} → {:.3}",
            s.before.precision,
            s.after.precision,
            s.before.recall,
            s.after.recall,
            s.before.f1,
            s.after.f1
        );
    }
    for (title, list) in [
        ("gained (fewer errors against the review)", &report.gained),
        ("lost (more errors against the review)", &report.lost),
        ("other changes", &report.other_changes),
    ] {
        if list.is_empty() {
            continue;
        }
        println!("{title}: {}", list.len());
        for c in list.iter().take(30) {
            let text: String = c.text.chars().take(40).collect();
            println!(
                "  {}  +[{}] -[{}]  {text}",
                c.memo_id,
                c.added.join(" "),
                c.removed.join(" ")
            );
        }
        if list.len() > 30 {
            println!("  … {} more (--out FILE has them all)", list.len() - 30);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn archive_command(cfg: &Config, cmd: ArchiveCommand) -> Result<ExitCode> {
    match cmd {
        ArchiveCommand::Export {
            archive,
            customer,
            rep,
            out,
        } => {
            let mut db = open_archive(cfg, archive)?;
            let filter = needtag::archive::Filter {
                customer_id: customer,
                rep_id: rep,
                ..Default::default()
            };
            let mut text = String::new();
            let lines = db.export(&filter)?;
            for l in &lines {
                text.push_str(&serde_json::to_string(l)?);
                text.push('\n');
            }
            match out {
                Some(p) => {
                    std::fs::write(&p, text).with_context(|| p.display().to_string())?;
                    eprintln!("{} reviewed memos written to {}", lines.len(), p.display());
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        ArchiveCommand::Delete {
            archive,
            memo,
            customer,
        } => {
            let mut db = open_archive(cfg, archive)?;
            let (deleted, missing) = match (memo, customer) {
                (Some(id), _) => {
                    let found = db.delete(&id)?;
                    (usize::from(found), !found)
                }
                (None, Some(c)) => (db.delete_customer(&c)?, false),
                (None, None) => anyhow::bail!("give --memo ID or --customer ID"),
            };
            println!("{}", serde_json::json!({ "deleted": deleted }));
            // A memo id that is not there exits 1; a customer with no memos is not an error.
            Ok(if missing {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        ArchiveCommand::Purge { archive, days } => {
            let days = days.unwrap_or(cfg.archive.retention_days);
            if days == 0 {
                anyhow::bail!("a retention of 0 days keeps every memo; give --days N");
            }
            let mut db = open_archive(cfg, archive)?;
            let before = chrono::Utc::now() - chrono::Duration::days(i64::from(days));
            let purged = db.purge(before)?;
            println!("{}", serde_json::json!({ "purged": purged, "days": days }));
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let code = e
                .downcast_ref::<needtag::Error>()
                .map(|e| e.code())
                .unwrap_or("error");
            eprintln!("error [{code}]: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NEEDTAG_LOG")
        .unwrap_or_else(|_| "warn,needtag=info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    whisper_rs::install_logging_hooks();
}

fn config(g: &Global) -> Result<Config> {
    let mut cfg = Config::load(g.config.as_deref())?;
    if let Some(d) = &g.models {
        cfg.models.dir = d.clone();
    }
    if let Some(m) = &g.model {
        cfg.models.whisper = std::path::absolute(m).unwrap_or_else(|_| m.clone());
    }
    if let Some(t) = g.threads {
        cfg.asr.threads = t;
    }
    if let Some(l) = &g.library {
        cfg.library = Some(l.clone());
    }
    cfg.validate()?;
    Ok(cfg)
}

fn read_file(path: &PathBuf) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Transcribe {
            file,
            no_prompt,
            no_vad,
            domain,
        } => {
            let mut cfg = config(&cli.global)?;
            // The flags turn the prompt and the VAD off; they never turn on what the
            // configuration turned off.
            cfg.asr.domain_prompt &= !no_prompt;
            cfg.audio.vad &= !no_vad;
            let domain = cfg.asr.domain_or_default(domain)?;
            let bytes = read_file(&file)?;
            let speech = Speech::load(&cfg)?;
            let mut worker = speech.worker()?;
            let prompt = cfg
                .asr
                .domain_prompt
                .then(|| library(&cfg))
                .transpose()?
                .map(|lib| {
                    speech
                        .asr()
                        .build_prompt(&lib.prompt_words(domain.as_deref()))
                });
            let out = speech.transcribe(&mut worker, &bytes, prompt.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Tag {
            text,
            recorded_at,
            keyword_only,
            explain,
            no_verifier,
        } => {
            let mut cfg = config(&cli.global)?;
            cfg.matcher.semantic = !keyword_only;
            cfg.matcher.verifier &= !no_verifier;
            let text = match text {
                Some(t) => t,
                None => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s
                }
            };
            let engine = Engine::load(&cfg, false)?;
            let how = needtag::pipeline::TagOptions {
                explain,
                ..needtag::pipeline::TagOptions::from_config(&cfg, !keyword_only)
            };
            let out = engine.tag_text_with(&text, parse_time(recorded_at.as_deref())?, how)?;
            let mut v = serde_json::to_value(&out)?;
            if explain {
                let loaded = engine.current();
                let analysis = loaded.matcher.analyze(text.trim(), !keyword_only)?;
                v["explain"] = serde_json::to_value(loaded.matcher.explain(&analysis))?;
                v["clauses"] = serde_json::to_value(
                    analysis
                        .text
                        .clauses
                        .iter()
                        .map(|c| &c.norm)
                        .collect::<Vec<_>>(),
                )?;
            }
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Memo {
            file,
            recorded_at,
            rep_id,
            customer_id,
            domain,
        } => {
            let cfg = config(&cli.global)?;
            let bytes = read_file(&file)?;
            let engine = Engine::load(&cfg, true)?;
            let mut worker = engine.speech().expect("speech loaded").worker()?;
            let meta = MemoMeta {
                memo_id: needtag::result::new_memo_id(),
                rep_id,
                customer_id,
                team: None,
                recorded_at: parse_time(recorded_at.as_deref())?,
                domain,
            };
            let out = engine.process_memo(&mut worker, &bytes, meta)?;
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval {
            files,
            compare,
            json,
            keyword_only,
            misses,
            features,
            fit,
            no_verifier,
            threshold,
        } => {
            let mut cfg = config(&cli.global)?;
            cfg.matcher.semantic = !keyword_only;
            cfg.matcher.verifier &= !no_verifier;
            cfg.matcher.verifier_threshold = threshold.or(cfg.matcher.verifier_threshold);
            if fit {
                return crate::report::fit(&cfg, &files);
            }
            crate::report::eval(
                &cfg,
                &files,
                compare.as_deref(),
                json,
                !keyword_only,
                misses,
                features.as_deref(),
            )
        }
        Command::Fit {
            files,
            out,
            folds,
            threshold,
            memo_c,
            head_c,
            memo_keep,
            memo_min_df,
            memo_max_terms,
            min_weight,
        } => {
            let cfg = config(&cli.global)?;
            let mut o = needtag::verifier::fit::Options {
                folds,
                threshold,
                ..Default::default()
            };
            o.memo_c = memo_c.unwrap_or(o.memo_c);
            o.head_c = head_c.unwrap_or(o.head_c);
            o.memo_keep = memo_keep.unwrap_or(o.memo_keep);
            o.memo_min_df = memo_min_df.unwrap_or(o.memo_min_df);
            o.memo_max_terms = memo_max_terms.unwrap_or(o.memo_max_terms);
            o.min_weight = min_weight.unwrap_or(o.min_weight);
            let out = out.unwrap_or_else(|| {
                cfg.library
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("need-library"))
                    .join(needtag::verifier::FILE)
            });
            crate::report::fit_verifier(&cfg, &files, &out, &o)
        }
        Command::Serve {
            bind,
            workers,
            queue,
        } => {
            let mut cfg = config(&cli.global)?;
            if let Some(b) = bind {
                cfg.server.bind = b;
            }
            if let Some(w) = workers {
                cfg.server.workers = w;
            }
            if let Some(q) = queue {
                cfg.server.queue = q;
            }
            cfg.validate()?;
            serve(cfg)
        }
        Command::Worker { workers } => {
            let mut cfg = config(&cli.global)?;
            if let Some(w) = workers {
                cfg.server.workers = w;
            }
            cfg.validate()?;
            tracing::info!(config = %cfg.redacted(), "starting needtag worker {}", env!("CARGO_PKG_VERSION"));
            needtag::worker::run(cfg, needtag::api::shutdown_signal())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Archive(cmd) => {
            let cfg = config(&cli.global)?;
            archive_command(&cfg, cmd)
        }
        Command::Retag {
            library,
            since,
            archive,
            out,
            limit,
            keyword_only,
            json,
        } => {
            let mut cfg = config(&cli.global)?;
            cfg.matcher.semantic = !keyword_only;
            retag(&cfg, &library, since, archive, out, limit, json)
        }
        Command::Library(LibraryCommand::Check { dir }) => {
            let dir = dir
                .or_else(|| cli.global.library.clone())
                .unwrap_or_else(|| PathBuf::from("need-library"));
            match needtag::library::Library::load(&dir) {
                Ok(lib) => {
                    println!(
                        "{}: valid, version {} ({} needs, {} actions, {} packs)",
                        dir.display(),
                        lib.version,
                        lib.needs.len(),
                        lib.actions.len(),
                        lib.packs.len()
                    );
                    let conflicts = check_notes(&cli.global, &lib)?;
                    Ok(if conflicts > 0 {
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    })
                }
                Err(needtag::Error::Library(problems)) => {
                    for p in &problems.0 {
                        let base = if p.file.starts_with('/') {
                            String::new()
                        } else {
                            format!("{}/", dir.display())
                        };
                        println!("{base}{p}");
                    }
                    eprintln!("{} problem(s); the library is not valid", problems.0.len());
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Library(LibraryCommand::Show { dir }) => {
            let lib = needtag::library::Library::load_or_embedded(
                dir.or_else(|| cli.global.library.clone()).as_deref(),
            )?;
            let mut domains = std::collections::BTreeMap::<&str, usize>::new();
            for n in &lib.needs {
                *domains.entry(n.domain.as_str()).or_default() += 1;
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "name": lib.name, "version": lib.version, "source": lib.source,
                    "needs": lib.needs.len(), "actions": lib.actions.len(), "packs": lib.packs.len(),
                    "needs_per_domain": domains,
                }))?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Library(LibraryCommand::Prompt { dir, domain }) => {
            let mut cfg = config(&cli.global)?;
            if let Some(d) = dir {
                cfg.library = Some(d);
            }
            let domain = cfg.asr.domain_or_default(domain)?;
            let speech = Speech::load(&cfg)?;
            let lib = library(&cfg)?;
            println!(
                "{}",
                speech
                    .asr()
                    .build_prompt(&lib.prompt_words(domain.as_deref()))
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Time { file, runs } => {
            let cfg = config(&cli.global)?;
            let bytes = read_file(&file)?;
            let engine = Engine::load(&cfg, true)?;
            let mut worker = engine.speech().expect("speech loaded").worker()?;
            let mut totals = Vec::new();
            for i in 0..runs.max(1) {
                let t = std::time::Instant::now();
                let meta = MemoMeta {
                    memo_id: needtag::result::new_memo_id(),
                    ..MemoMeta::default()
                };
                let r = engine.process_memo(&mut worker, &bytes, meta)?;
                let _json = serde_json::to_string(&r)?;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                totals.push(ms);
                println!(
                    "run {}: {ms:.0} ms (decode {:.0}, vad {:.0}, asr {:.0}, tag {:.1}) for {:.1} s of audio{}",
                    i + 1,
                    r.timings.decode_ms,
                    r.timings.vad_ms,
                    r.timings.asr_ms,
                    r.timings.tag_ms,
                    r.duration_s,
                    if r.speech_detected { "" } else { ", no speech" }
                );
                if i == 0 {
                    println!("  text: {}", r.transcript.text);
                }
            }
            totals.sort_by(f64::total_cmp);
            println!(
                "median {:.0} ms, min {:.0} ms over {} runs (threads {})",
                totals[totals.len() / 2],
                totals[0],
                totals.len(),
                cfg.asr.threads
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe { files } => {
            let cfg = config(&cli.global)?;
            let mut failed = false;
            for file in &files {
                let bytes = read_file(file)?;
                let t = std::time::Instant::now();
                let line = match needtag::audio::decode(&bytes, &cfg.audio) {
                    Ok(a) => serde_json::json!({"file": file, "ok": true, "info": a.info,
                        "decode_ms": t.elapsed().as_secs_f64() * 1000.0}),
                    Err(e) => {
                        failed = true;
                        serde_json::json!({"file": file, "ok": false, "error": {"code": e.code(), "message": e.to_string()}})
                    }
                };
                println!("{line}");
            }
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::AsrEval {
            dir,
            no_prompt,
            no_vad,
            json,
            tags,
            by_domain,
            split,
            part,
            transcripts,
        } => {
            let mut cfg = config(&cli.global)?;
            // The flags turn the prompt and the VAD off; they never turn on what the
            // configuration turned off.
            cfg.asr.domain_prompt &= !no_prompt;
            cfg.audio.vad &= !no_vad;
            let mut refs = references(&dir)?;
            if let (Some(split), Some(part)) = (split, part) {
                refs = in_split(refs, &dir, &split, &part)?;
            }
            let given = transcripts.map(|f| given_transcripts(&f)).transpose()?;
            asr_eval(&cfg, &dir, refs, given, json, tags, by_domain)
        }
    }
}

/// What `library check` says beyond validity: the verifier, the needs it was not fitted on,
/// and each need's counter-examples; with the sentence encoder available, a counter-example
/// as close to one of the need's own examples as a vetoing clause would be is a conflict.
/// Returns the number of conflicts.
fn check_notes(global: &Global, lib: &needtag::library::Library) -> Result<usize> {
    match &lib.verifier {
        Some(v) => {
            let cv = |mode: &str| {
                v.info
                    .cross_validation
                    .as_ref()
                    .and_then(|c| c.pointer(&format!("/needs/{mode}/f1")))
                    .and_then(|f| f.as_f64())
                    .map(|f| format!(", cross-validated F1 {f:.3}"))
                    .unwrap_or_default()
            };
            println!(
                "verifier: fitted on {} memos ({}); threshold hybrid {:.2}{}, keyword {:.2}{}",
                v.info.memos,
                v.info.files.join(", "),
                v.needs.hybrid.threshold,
                cv("hybrid"),
                v.needs.keyword.threshold,
                cv("keyword"),
            );
            let missing: Vec<&str> = lib
                .needs
                .iter()
                .filter(|n| !v.needs.memo.labels.contains(&n.id))
                .map(|n| n.id.as_str())
                .collect();
            if !missing.is_empty() {
                println!(
                    "  not fitted on, decided by their thresholds until `needtag fit` runs again: {}",
                    missing.join(", ")
                );
            }
        }
        None => {
            println!("verifier: none (no verifier.json); needs are decided by their thresholds")
        }
    }
    let with_counter: Vec<&needtag::library::Need> = lib
        .needs
        .iter()
        .filter(|n| !n.counter_examples.is_empty())
        .collect();
    if with_counter.is_empty() {
        return Ok(0);
    }
    println!("counter-examples:");
    for n in &with_counter {
        println!("  {} ({}):", n.id, n.counter_examples.len());
        for c in &n.counter_examples {
            println!("    - {c}");
        }
    }
    let cfg = config(global)?;
    let embedder = match needtag::matcher::Embedder::from_config(&cfg) {
        Ok(e) => e,
        Err(e) => {
            println!("  (not compared with the needs' examples: the sentence encoder is unavailable: {e})");
            return Ok(0);
        }
    };
    let mut conflicts = 0;
    for n in &with_counter {
        let norm = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|t| needtag::text::normalize(t).into_iter().collect())
                .collect()
        };
        let (ex, co) = (norm(&n.examples), norm(&n.counter_examples));
        fn refs(v: &[String]) -> Vec<&str> {
            v.iter().map(String::as_str).collect()
        }
        let (ev, cv) = (embedder.embed(&refs(&ex))?, embedder.embed(&refs(&co))?);
        for (ci, c) in cv.iter().enumerate() {
            for (ei, e) in ev.iter().enumerate() {
                let sim = needtag::matcher::embed::dot(c, e);
                if sim >= needtag::matcher::COUNTER_SIMILARITY {
                    conflicts += 1;
                    println!(
                        "  conflict: need.{}.counter_examples {:?} is as close to its example {:?} ({sim:.2}) as a clause it vetoes; reword one of them",
                        n.id, n.counter_examples[ci], n.examples[ei]
                    );
                }
            }
        }
    }
    Ok(conflicts)
}

/// A labeled recording: audio file, reference text, and its domain when the list gives one.
type Labeled = (PathBuf, String, Option<String>);

/// The labeled recordings of a directory.
fn references(dir: &std::path::Path) -> Result<Vec<Labeled>> {
    let rows = |name: &str| -> Result<Option<Vec<std::collections::HashMap<String, String>>>> {
        let path = dir.join(name);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)?;
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap_or_default()
            .split('\t')
            .map(String::from)
            .collect();
        Ok(Some(
            lines
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    header
                        .iter()
                        .cloned()
                        .zip(l.split('\t').map(String::from))
                        .collect()
                })
                .collect(),
        ))
    };
    let mut out = Vec::new();
    for r in rows("manifest.tsv")?.unwrap_or_default() {
        let (Some(file), Some(text)) = (r.get("file"), r.get("reference_text").or(r.get("text")))
        else {
            continue;
        };
        if !text.is_empty() && !text.starts_with('(') && dir.join(file).is_file() {
            out.push((dir.join(file), text.clone(), r.get("domain").cloned()));
        }
    }
    if let Some(rows) = rows("scripts.tsv")? {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for r in rows {
            let (Some(id), Some(text)) = (r.get("id"), r.get("text")) else {
                continue;
            };
            for f in &files {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if name.starts_with(&format!("{id}_")) && !name.ends_with(".tsv") {
                    out.push((f.clone(), text.clone(), r.get("domain").cloned()));
                }
            }
        }
    }
    if out.is_empty() {
        anyhow::bail!(
            "{} has no labeled recordings (manifest.tsv or scripts.tsv)",
            dir.display()
        );
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

/// The recordings of `refs` that `split` puts in `part` (see `benches/asr-split.tsv`).
fn in_split(
    refs: Vec<Labeled>,
    dir: &std::path::Path,
    split: &std::path::Path,
    part: &str,
) -> Result<Vec<Labeled>> {
    let collection = std::fs::canonicalize(dir)?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let text = std::fs::read_to_string(split)
        .with_context(|| format!("cannot read the split {}", split.display()))?;
    let files: std::collections::HashSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("part\t"))
        .filter_map(|l| match l.split('\t').collect::<Vec<_>>()[..] {
            [p, c, f, ..] if p == part && c == collection => Some(f),
            _ => None,
        })
        .collect();
    let kept: Vec<Labeled> = refs
        .into_iter()
        .filter(|(f, _, _)| {
            f.strip_prefix(dir)
                .is_ok_and(|r| files.contains(r.to_string_lossy().as_ref()))
        })
        .collect();
    if kept.is_empty() {
        anyhow::bail!(
            "{} puts none of the recordings of {} in part {part:?}",
            split.display(),
            dir.display()
        );
    }
    Ok(kept)
}

/// Transcripts from another system: file (relative to the evaluated directory) → text.
fn given_transcripts(path: &std::path::Path) -> Result<std::collections::HashMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = std::collections::HashMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        let (Some(file), Some(t)) = (v["file"].as_str(), v["text"].as_str()) else {
            anyhow::bail!("{}:{}: needs `file` and `text`", path.display(), i + 1);
        };
        out.insert(file.to_string(), t.to_string());
    }
    Ok(out)
}

/// Need and action ids a text is tagged with.
fn tag_ids(engine: &Engine, text: &str) -> Result<std::collections::BTreeSet<String>> {
    if text.trim().is_empty() {
        return Ok(Default::default());
    }
    let r = engine.tag_text(text, None, true)?;
    Ok(r.tags
        .needs
        .iter()
        .map(|n| n.id.clone())
        .chain(r.tags.actions.iter().map(|a| a.id.clone()))
        .collect())
}

fn asr_eval(
    cfg: &Config,
    dir: &std::path::Path,
    refs: Vec<Labeled>,
    given: Option<std::collections::HashMap<String, String>>,
    json: bool,
    tags: bool,
    by_domain: bool,
) -> Result<ExitCode> {
    let engine = if tags {
        Some(Engine::load(cfg, false)?)
    } else {
        None
    };
    // Tags of each transcript scored against the tags of its reference text.
    let mut tag_counts = needtag::eval::Counts::default();
    let speech = Speech::load(cfg)?;
    let mut worker = speech.worker()?;
    // The engine (with --tags) has the library loaded already.
    let library = match &engine {
        Some(e) => e.library(),
        None => std::sync::Arc::new(library(cfg)?),
    };
    let prompts = if cfg.asr.domain_prompt {
        needtag::pipeline::Prompts::build(&library, speech.asr())
    } else {
        Default::default()
    };
    let mut rows = Vec::new();
    for (file, reference, domain) in &refs {
        let domain = cfg
            .asr
            .domain_or_default(domain.clone().filter(|_| by_domain))?;
        let prompt = prompts.get(domain.as_deref());
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let transcribed = match &given {
            Some(given) => {
                let rel = file.strip_prefix(dir).unwrap_or(file).to_string_lossy();
                let text = given
                    .get(rel.as_ref())
                    .with_context(|| format!("no transcript given for {rel}"))?;
                Ok((text.clone(), serde_json::json!({})))
            }
            None => speech
                .transcribe(&mut worker, read_file(file)?, prompt)
                .map(|t| {
                    let timing = serde_json::json!({"ms": t.timings.total_ms, "asr_ms": t.timings.asr_ms, "seconds": t.duration_s});
                    (t.transcript.text, timing)
                }),
        };
        match transcribed {
            Ok((text, timing)) => {
                let cer = needtag::asr::cer(&text, reference);
                let problems: Vec<String> = needtag::asr::chars::problems(&text)
                    .iter()
                    .map(|p| p.to_string())
                    .collect();
                if !json {
                    println!(
                        "{cer:6.3}  {:7.0} ms  {:5.1} s  {name}  {text}{}",
                        timing["ms"].as_f64().unwrap_or(0.0),
                        timing["seconds"].as_f64().unwrap_or(0.0),
                        if problems.is_empty() {
                            String::new()
                        } else {
                            format!("  [{}]", problems.join("; "))
                        }
                    );
                }
                let mut row = serde_json::json!({"file": name, "cer": cer, "text": text, "reference": reference, "problems": problems});
                for (k, v) in timing.as_object().into_iter().flatten() {
                    row[k] = v.clone();
                }
                if let Some(engine) = &engine {
                    let hyp = tag_ids(engine, &text)?;
                    let want = tag_ids(engine, reference)?;
                    let agree = hyp.intersection(&want).count();
                    tag_counts.tp += agree;
                    tag_counts.fp += hyp.len() - agree;
                    tag_counts.fn_ += want.len() - agree;
                    row["tags"] = serde_json::json!(hyp);
                    row["reference_tags"] = serde_json::json!(want);
                }
                rows.push(row);
            }
            Err(e) => {
                if !json {
                    println!("{:>6}  {name}: {e}", e.code());
                }
                rows.push(serde_json::json!({"file": name, "error": e.code()}));
            }
        }
    }
    let cers: Vec<f64> = rows.iter().filter_map(|r| r["cer"].as_f64()).collect();
    let mean = cers.iter().sum::<f64>() / cers.len().max(1) as f64;
    let ms: f64 = rows.iter().filter_map(|r| r["ms"].as_f64()).sum();
    let audio: f64 = rows.iter().filter_map(|r| r["seconds"].as_f64()).sum();
    let with_problems = rows
        .iter()
        .filter(|r| r["problems"].as_array().is_some_and(|p| !p.is_empty()))
        .count();
    let reference_tags = tag_counts.tp + tag_counts.fn_;
    let agreement = engine.is_some().then(|| {
        serde_json::json!({"precision": tag_counts.precision(), "recall": tag_counts.recall(),
            "f1": tag_counts.f1(), "reference_tags": reference_tags})
    });
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"clips": rows, "mean_cer": mean, "total_ms": ms,
            "audio_seconds": audio, "prompt": cfg.asr.domain_prompt, "model": speech.asr().model_name(),
            "tag_agreement": agreement, "transcripts_with_problems": with_problems})
            )?
        );
    } else {
        if let Some(a) = &agreement {
            println!(
                "tags from transcripts vs tags from references: P {:.3} R {:.3} F1 {:.3} over {} reference tags",
                a["precision"].as_f64().unwrap_or(0.0),
                a["recall"].as_f64().unwrap_or(0.0),
                a["f1"].as_f64().unwrap_or(0.0),
                reference_tags
            );
        }
        println!(
            "mean CER {mean:.4} over {} clips, {with_problems} with text a rep should not see; {:.1} s of audio in {:.1} s ({}; prompt {})",
            cers.len(),
            audio,
            ms / 1000.0,
            speech.asr().model_name(),
            if cfg.asr.domain_prompt { "on" } else { "off" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn serve(cfg: Config) -> Result<ExitCode> {
    tracing::info!(config = %cfg.redacted(), "starting needtag {}", env!("CARGO_PKG_VERSION"));
    if cfg.server.api_keys.is_empty() {
        tracing::warn!(
            "no API keys configured: the API is open to anyone who can reach {}",
            cfg.server.bind
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&cfg.server.bind).await.with_context(|| format!("cannot listen on {}", cfg.server.bind))?;
        let address = listener.local_addr()?;
        let state = needtag::api::AppState::starting(&cfg);
        // Listen at once (health checks pass, /readyz says not_ready) and load the models.
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
        let loader = state.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            match loader.load() {
                Ok(()) => {
                    let lib = loader.get().map(|l| l.engine.library()).ok();
                    tracing::info!(
                        %address, library = %lib.as_ref().map(|l| l.version.clone()).unwrap_or_default(),
                        workers = loader.cfg.server.workers, queue = loader.cfg.server.queue,
                        load_ms = started.elapsed().as_millis() as u64, "needtag is ready"
                    );
                    println!("needtag ready on http://{address}");
                }
                Err(e) => {
                    let _ = failed_tx.send(format!("[{}] {e}", e.code()));
                }
            }
        });
        println!("needtag listening on http://{address} (loading models)");
        let failed = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
        let f2 = failed.clone();
        let shutdown = async move {
            tokio::select! {
                _ = needtag::api::shutdown_signal() => {}
                Ok(msg) = failed_rx => { *f2.lock().unwrap() = Some(msg); }
            }
        };
        needtag::api::serve(listener, state, shutdown).await?;
        if let Some(msg) = failed.lock().unwrap().take() {
            anyhow::bail!("could not start: {msg}");
        }
        tracing::info!("stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The configured library.
fn library(cfg: &Config) -> Result<needtag::library::Library> {
    Ok(needtag::library::Library::load_or_embedded(
        cfg.library.as_deref(),
    )?)
}

fn parse_time(s: Option<&str>) -> Result<Option<chrono::DateTime<chrono::FixedOffset>>> {
    s.map(|s| {
        chrono::DateTime::parse_from_rfc3339(s).map_err(|e| {
            anyhow::anyhow!(needtag::Error::InvalidInput(format!(
                "recorded_at {s:?} is not RFC 3339: {e}"
            )))
        })
    })
    .transpose()
}
