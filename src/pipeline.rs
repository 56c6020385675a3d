//! The one entry point: audio bytes or text in, one result out. Owns the loaded models and the
//! current needs library (swapped atomically on reload); parses no flags and speaks no HTTP.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use crate::actions;
use crate::asr::{Asr, AsrWorker, Transcript};
use crate::audio::{self, AudioInfo, Vad};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::library::Library;
use crate::matcher::{Embedder, Matcher};
use crate::result::{MemoResult, Models, TagMode, Tags, TextResult};

pub use crate::result::Timings;

fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e5).round() / 100.0
}

/// What the speech half produces for one upload.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Transcription {
    pub duration_s: f64,
    pub speech_detected: bool,
    /// Seconds of audio whisper was given after silence was cut.
    pub speech_s: f64,
    pub transcript: Transcript,
    pub audio: AudioInfo,
    pub model: String,
    pub timings: Timings,
}

/// Whisper and the VAD, loaded once.
pub struct Speech {
    asr: Asr,
    vad: Option<Vad>,
    cfg: Config,
}

impl Speech {
    pub fn load(cfg: &Config) -> Result<Speech> {
        let asr = Asr::load(&cfg.models.path(&cfg.models.whisper), &cfg.asr)?;
        let vad = if cfg.audio.vad {
            crate::onnx::init(&cfg.models.path(&cfg.models.onnxruntime))?;
            Some(Vad::load(
                &cfg.models.path(&cfg.models.vad),
                cfg.audio.vad_threshold,
                cfg.server.workers.max(1),
            )?)
        } else {
            None
        };
        Ok(Speech {
            asr,
            vad,
            cfg: cfg.clone(),
        })
    }

    pub fn asr(&self) -> &Asr {
        &self.asr
    }

    pub fn worker(&self) -> Result<AsrWorker> {
        self.asr.worker()
    }

    /// `n` whisper states for the service's workers to share; `queued` counts memos waiting
    /// for a worker.
    pub fn state_pool(
        &self,
        n: usize,
        queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> Result<std::sync::Arc<crate::asr::StatePool>> {
        self.asr.state_pool(n, queued)
    }

    pub fn shared_worker(&self, pool: std::sync::Arc<crate::asr::StatePool>) -> AsrWorker {
        self.asr.shared_worker(pool)
    }

    /// Decode, gate with the VAD, and transcribe one upload. Given the bytes by value (the
    /// service's queue does), they are decoded without a copy and freed as soon as the PCM is
    /// out of them, and the decoded audio once the speech is cut out of it: only what whisper
    /// needs is held while it runs.
    pub fn transcribe(
        &self,
        worker: &mut AsrWorker,
        bytes: impl audio::AudioBytes,
        prompt: Option<&str>,
    ) -> Result<Transcription> {
        let total = Instant::now();
        let mut timings = Timings::default();
        let t = Instant::now();
        let decoded = audio::decode(bytes, &self.cfg.audio)?;
        timings.decode_ms = ms(t);
        let duration_s = decoded.duration_s();
        let (samples, info) = (decoded.samples, decoded.info);

        let t = Instant::now();
        let (speech, to_original): (Vec<f32>, Box<dyn Fn(f64) -> f64 + Sync>) = match &self.vad {
            Some(vad) => {
                let map = vad.detect(&samples)?;
                let (speech, timeline) = map.compact(
                    &samples,
                    self.cfg.audio.vad_pad_s,
                    self.cfg.audio.max_pause_s,
                );
                drop(samples);
                (speech, Box::new(move |t| timeline.original_time(t)))
            }
            None => (samples, Box::new(|t| t)),
        };
        timings.vad_ms = ms(t);

        let t = Instant::now();
        let transcript = if speech.is_empty() {
            Transcript {
                language: "zh".into(),
                ..Default::default()
            }
        } else {
            worker.transcribe(&self.asr, &speech, prompt, &*to_original)?
        };
        timings.asr_ms = ms(t);
        timings.total_ms = ms(total);
        Ok(Transcription {
            duration_s,
            speech_detected: !transcript.text.is_empty(),
            speech_s: speech.len() as f64 / audio::SAMPLE_RATE as f64,
            transcript,
            audio: info,
            model: self.asr.model_name().to_string(),
            timings,
        })
    }
}

/// The current library, compiled, with the whisper prompt made from its words.
pub struct Loaded {
    pub matcher: Matcher,
    pub prompts: Prompts,
}

/// Whisper prompts of the current library: one per domain, and one for memos of no known
/// domain (the whole library's words). None when the domain prompt is off.
#[derive(Debug, Default)]
pub struct Prompts {
    by_domain: std::collections::HashMap<String, String>,
    any: Option<String>,
}

impl Prompts {
    pub fn build(library: &Library, asr: &crate::asr::Asr) -> Prompts {
        Prompts {
            by_domain: crate::library::DOMAINS
                .iter()
                .map(|d| {
                    (
                        d.to_string(),
                        asr.build_prompt(&library.prompt_words(Some(d))),
                    )
                })
                .collect(),
            any: Some(asr.build_prompt(&library.prompt_words(None))),
        }
    }

    /// The prompt for a memo of `domain` (already checked), or of no known domain.
    pub fn get(&self, domain: Option<&str>) -> Option<&str> {
        match domain {
            Some(d) => self.by_domain.get(d).map(String::as_str),
            None => self.any.as_deref(),
        }
    }
}

/// Optional facts about a memo sent with it.
#[derive(Debug, Clone, Default)]
pub struct MemoMeta {
    /// The memo's id, minted by the caller ([`crate::result::new_memo_id`]) so that the id
    /// answered is the id stored.
    pub memo_id: String,
    pub rep_id: Option<String>,
    pub customer_id: Option<String>,
    /// The rep's team, as the caller names it.
    pub team: Option<String>,
    pub recorded_at: Option<DateTime<FixedOffset>>,
    /// The rep's industry, one of the library's domains: whisper's prompt then holds that
    /// domain's words. None falls back to `asr.default_domain`.
    pub domain: Option<String>,
}

/// Longest `rep_id` / `customer_id`, in characters: ids, not documents.
pub const MAX_ID_CHARS: usize = 128;

impl MemoMeta {
    /// Refuse ids too long to be ids, ids with control characters (they would reach logs,
    /// exports and the CRM's webhook as they are) and domains the library does not have.
    pub fn check(&self) -> Result<()> {
        for (field, v) in [
            ("rep_id", &self.rep_id),
            ("customer_id", &self.customer_id),
            ("team", &self.team),
        ] {
            if let Some(v) = v {
                let n = v.chars().count();
                if n > MAX_ID_CHARS {
                    return Err(Error::InvalidInput(format!(
                        "{field} has {n} characters; at most {MAX_ID_CHARS}"
                    )));
                }
                if v.chars().any(char::is_control) {
                    return Err(Error::InvalidInput(format!(
                        "{field} has a control character (such as a newline or NUL)"
                    )));
                }
            }
        }
        if let Some(d) = &self.domain {
            crate::library::check_domain(d)?;
        }
        Ok(())
    }
}

/// Everything loaded: models, the current library, configuration.
pub struct Engine {
    cfg: Config,
    embedder: Option<Arc<Embedder>>,
    speech: Option<Speech>,
    current: ArcSwap<Loaded>,
    /// Held while a reload validates, compiles and swaps: reloads never overlap.
    reloading: std::sync::Mutex<()>,
}

/// The result of a library reload.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reloaded {
    pub version: String,
    pub previous_version: String,
    pub changed: bool,
    pub needs: usize,
    pub actions: usize,
    pub packs: usize,
}

impl Engine {
    /// Load the library and the text models; with `speech`, also whisper and the VAD.
    pub fn load(cfg: &Config, speech: bool) -> Result<Engine> {
        let embedder = if cfg.matcher.semantic {
            Some(Arc::new(Embedder::from_config(cfg)?))
        } else {
            None
        };
        let speech = if speech {
            Some(Speech::load(cfg)?)
        } else {
            None
        };
        let library = Library::load_or_embedded(cfg.library.as_deref())?;
        let loaded = Self::compile(library, embedder.clone(), speech.as_ref(), cfg)?;
        crate::release_free_memory();
        Ok(Engine {
            cfg: cfg.clone(),
            embedder,
            speech,
            current: ArcSwap::from_pointee(loaded),
            reloading: std::sync::Mutex::new(()),
        })
    }

    fn compile(
        library: Library,
        embedder: Option<Arc<Embedder>>,
        speech: Option<&Speech>,
        cfg: &Config,
    ) -> Result<Loaded> {
        let prompts = match speech {
            Some(s) if cfg.asr.domain_prompt => Prompts::build(&library, s.asr()),
            _ => Prompts::default(),
        };
        Ok(Loaded {
            matcher: Matcher::build(Arc::new(library), embedder)?,
            prompts,
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn current(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    pub fn library(&self) -> Arc<Library> {
        self.current.load().matcher.lib.clone()
    }

    pub fn speech(&self) -> Option<&Speech> {
        self.speech.as_ref()
    }

    pub fn has_semantic(&self) -> bool {
        self.embedder.is_some()
    }

    pub fn models(&self) -> Models {
        Models {
            asr: self
                .speech
                .as_ref()
                .map(|s| s.asr().model_name().to_string())
                .unwrap_or_default(),
            embedding: self.embedder.as_ref().map(|e| e.name().to_string()),
            vad: self
                .speech
                .as_ref()
                .filter(|_| self.cfg.audio.vad)
                .map(|_| "silero-vad-16k.onnx".to_string()),
        }
    }

    /// The configured library as it is on disk now (or the compiled-in one), validated and
    /// compiled with this engine's sentence encoder but not swapped in: what a reload would
    /// serve.
    pub fn candidate(&self) -> Result<Matcher> {
        let library = Library::load_or_embedded(self.cfg.library.as_deref())?;
        Matcher::build(Arc::new(library), self.embedder.clone())
    }

    /// Validate the library at `dir` (or the configured one) and swap it in. An invalid library
    /// is refused with its problems and the current one keeps serving. Reloads are serialized:
    /// while one runs, another is refused with [`Error::ReloadInProgress`] (so each reports the
    /// version it really replaced). Every swap is logged with both versions, whether or not the
    /// caller is still waiting for the answer.
    pub fn reload(&self, dir: Option<&Path>) -> Result<Reloaded> {
        let _serial = match self.reloading.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(Error::ReloadInProgress),
        };
        let dir = dir
            .map(Path::to_path_buf)
            .or_else(|| self.cfg.library.clone());
        let library = Library::load_or_embedded(dir.as_deref())?;
        let previous = self.library();
        let summary = |lib: &Library, changed| Reloaded {
            version: lib.version.clone(),
            previous_version: previous.version.clone(),
            changed,
            needs: lib.needs.len(),
            actions: lib.actions.len(),
            packs: lib.packs.len(),
        };
        if library.version == previous.version {
            return Ok(summary(&library, false));
        }
        let out = summary(&library, true);
        let loaded = Self::compile(
            library,
            self.embedder.clone(),
            self.speech.as_ref(),
            &self.cfg,
        )?;
        self.current.store(Arc::new(loaded));
        tracing::info!(
            previous_version = %out.previous_version,
            version = %out.version,
            needs = out.needs,
            actions = out.actions,
            packs = out.packs,
            "library swapped"
        );
        crate::release_free_memory();
        Ok(out)
    }

    /// Tag a text with the current library.
    pub fn tag_text(
        &self,
        text: &str,
        recorded_at: Option<DateTime<FixedOffset>>,
        semantic: bool,
    ) -> Result<TextResult> {
        self.tag_text_with(
            text,
            recorded_at,
            TagOptions::from_config(&self.cfg, semantic),
        )
    }

    /// Tag a text with the current library, as `how` says (`semantic` only when the engine
    /// has the sentence encoder).
    pub fn tag_text_with(
        &self,
        text: &str,
        recorded_at: Option<DateTime<FixedOffset>>,
        how: TagOptions,
    ) -> Result<TextResult> {
        let loaded = self.current();
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::InvalidInput("text is empty".into()));
        }
        let chars = text.chars().count();
        if chars > self.cfg.server.max_text_chars {
            return Err(Error::TextTooLong {
                chars,
                limit: self.cfg.server.max_text_chars,
            });
        }
        let t = Instant::now();
        let semantic = how.semantic && loaded.matcher.has_semantic();
        let how = TagOptions { semantic, ..how };
        let tags = tag(&loaded.matcher, text, recorded_at, how)?;
        let tag_ms = ms(t);
        Ok(TextResult {
            text: text.to_string(),
            tags,
            mode: if semantic {
                TagMode::Hybrid
            } else {
                TagMode::Keyword
            },
            timings: Timings {
                tag_ms,
                total_ms: tag_ms,
                ..Timings::default()
            },
            memo_id: None,
        })
    }

    /// Transcribe and tag one voice memo.
    pub fn process_memo(
        &self,
        worker: &mut AsrWorker,
        bytes: impl audio::AudioBytes,
        meta: MemoMeta,
    ) -> Result<MemoResult> {
        let speech = self
            .speech
            .as_ref()
            .ok_or_else(|| Error::ModelUnavailable("speech models are not loaded".into()))?;
        meta.check()?;
        let domain = meta.domain.or_else(|| self.cfg.asr.default_domain.clone());
        let total = Instant::now();
        let loaded = self.current();
        let tr = speech.transcribe(worker, bytes, loaded.prompts.get(domain.as_deref()))?;
        let t = Instant::now();
        let recorded_at = meta.recorded_at.unwrap_or_else(now);
        let tags = tag(
            &loaded.matcher,
            &tr.transcript.text,
            Some(recorded_at),
            TagOptions::from_config(&self.cfg, loaded.matcher.has_semantic()),
        )?;
        let mut timings = tr.timings;
        timings.tag_ms = ms(t);
        timings.total_ms = ms(total);
        Ok(MemoResult {
            memo_id: meta.memo_id,
            rep_id: meta.rep_id,
            customer_id: meta.customer_id,
            team: meta.team,
            domain,
            recorded_at: recorded_at.to_rfc3339(),
            duration_s: tr.duration_s,
            speech_detected: tr.speech_detected,
            transcript: tr.transcript,
            audio: tr.audio,
            tags,
            models: self.models(),
            timings,
        })
    }
}

/// Now, in China Standard Time (the product's reps work in +08:00).
pub fn now() -> DateTime<FixedOffset> {
    Utc::now().with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
}

/// How a text is tagged.
#[derive(Debug, Clone, Copy)]
pub struct TagOptions {
    /// Sentence embeddings besides keywords (when the engine has them).
    pub semantic: bool,
    /// Decide needs with the library's verifier (when it has one).
    pub verifier: bool,
    /// Report the candidates that were not tagged, and why.
    pub explain: bool,
    /// The verifier's need threshold instead of the fitted one (`matcher.verifier_threshold`).
    pub threshold: Option<f32>,
}

impl Default for TagOptions {
    fn default() -> Self {
        TagOptions {
            semantic: true,
            verifier: true,
            explain: false,
            threshold: None,
        }
    }
}

impl TagOptions {
    pub fn new(semantic: bool, verifier: bool) -> TagOptions {
        TagOptions {
            semantic,
            verifier,
            ..TagOptions::default()
        }
    }

    /// The options the configuration asks for.
    pub fn from_config(cfg: &Config, semantic: bool) -> TagOptions {
        TagOptions {
            semantic,
            verifier: cfg.matcher.verifier,
            threshold: cfg.matcher.verifier_threshold,
            ..TagOptions::default()
        }
    }
}

/// Needs, actions, next steps, contacts and the vague flag of a text.
pub fn tag(
    matcher: &Matcher,
    text: &str,
    recorded_at: Option<DateTime<FixedOffset>>,
    how: TagOptions,
) -> Result<Tags> {
    let analysis = matcher.analyze(text, how.semantic)?;
    let outcome = matcher.tag_needs(
        &analysis,
        crate::matcher::Decide {
            verifier: how.verifier,
            explain: how.explain,
            threshold: how.threshold,
        },
    );
    let needs = outcome.tags;
    let today = recorded_at.unwrap_or_else(now).date_naive();
    let report = actions::classify(matcher, &analysis, &needs, today, how.verifier);
    Ok(Tags {
        dropped: how.explain.then_some(outcome.dropped),
        needs,
        ruled_out: outcome.ruled_out,
        actions: report.actions,
        high_value: report.high_value,
        next_steps: report.next_steps,
        contacts: report.contacts,
        vague: report.vague,
        library_version: matcher.lib.version.clone(),
    })
}
