//! Speech recognition with whisper.cpp (through whisper-rs): one loaded model shared by all
//! workers, one reusable state per worker, Simplified Chinese always, a domain prompt, and guards
//! against invented text.

pub mod bytes;
pub mod chars;
pub mod guard;
pub mod tidy;

use std::io::Read;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use serde::{Deserialize, Serialize};
use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

use crate::config::AsrConfig;
use crate::error::{Error, Result};
use crate::zh;

/// Whisper's decoder context is 448 tokens; at most half of it may be prompt.
pub const MAX_PROMPT_TOKENS: usize = 223;

/// A loaded whisper model.
pub struct Asr {
    ctx: WhisperContext,
    name: String,
    cfg: AsrConfig,
    /// Keeps each decoded character whole (see [`bytes`]).
    byte_rules: bytes::ByteRules,
}

/// One worker's whisper states (buffers, KV cache), created once and reused for every memo.
pub struct AsrWorker {
    /// One whisper state per thread: chunks of a long memo run in parallel, each on one thread.
    states: Vec<WhisperState>,
    /// In the service, the states live in a pool shared by every worker instead.
    shared: Option<Arc<StatePool>>,
}

/// Whisper states shared by all transcription workers of a service. A memo takes one state
/// (waiting while none is free); when no other memo is queued or waiting, it also takes every
/// idle state its chunks can use. A memo that arrives alone runs on all cores. Memos that arrive
/// together run side by side on one core each, so nothing is lost to extra chunking.
pub struct StatePool {
    inner: Mutex<PoolInner>,
    returned: Condvar,
    /// Memos accepted by the service but not yet picked up by a worker.
    queued: Arc<std::sync::atomic::AtomicUsize>,
}

struct PoolInner {
    free: Vec<WhisperState>,
    /// Workers blocked in `take`.
    takers: usize,
}

impl StatePool {
    fn take(&self, useful: usize) -> Vec<WhisperState> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.takers += 1;
        while inner.free.is_empty() {
            inner = self.returned.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
        inner.takers -= 1;
        let others = inner.takers > 0 || self.queued.load(std::sync::atomic::Ordering::SeqCst) > 0;
        let n = if others { 1 } else { useful.max(1) }.min(inner.free.len());
        let keep = inner.free.len() - n;
        inner.free.split_off(keep)
    }

    fn give(&self, states: Vec<WhisperState>) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .free
            .extend(states);
        self.returned.notify_all();
    }

    /// States not lent out right now.
    pub fn idle(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .free
            .len()
    }
}

/// States borrowed from a [`StatePool`], given back when dropped (also when a panic unwinds).
struct Borrowed<'a> {
    pool: &'a StatePool,
    states: Vec<WhisperState>,
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.states));
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Segment {
    /// Start and end in seconds of the uploaded audio.
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// Text whisper produced that the guards removed, kept for transparency.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dropped {
    pub text: String,
    /// `known_hallucination` (a subtitle credit), `prompt_echo`, `no_speech`; or, when a sparse
    /// chunk was decoded again without the prompt, the decode not kept: `sparse_with_prompt`
    /// (the prompted text, which skipped speech) or `sparser_without_prompt` (the second decode,
    /// which was no fuller); `repeated`, clauses a segment began with that the one before it
    /// had just ended with.
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transcript {
    pub text: String,
    pub segments: Vec<Segment>,
    pub language: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<Dropped>,
}

impl Asr {
    /// Load a ggml model. A missing or damaged file gives a one-line error naming the command
    /// that prepares it.
    pub fn load(path: &Path, cfg: &AsrConfig) -> Result<Asr> {
        let tokens = read_model_file(path)?;
        single_threaded_blas();
        let mut params = WhisperContextParameters::default();
        params.flash_attn(cfg.flash_attn);
        // The tokens the decoder may write (empty: all).
        let writable = if cfg.restrict_output {
            bytes::ByteRules::from_text_tokens(tokens)
                .writable()
                .to_vec()
        } else {
            Vec::new()
        };
        let ctx = {
            // whisper.cpp takes the list for the next model it loads: one load at a time.
            static LOADING: Mutex<()> = Mutex::new(());
            let _one = LOADING.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: whisper.cpp copies `writable` before returning.
            unsafe {
                whisper_needtag_next_load(
                    writable.as_ptr(),
                    writable.len() as c_int,
                    cfg.encoder_bf16,
                )
            };
            let ctx = WhisperContext::new_with_params(path, params);
            // SAFETY: a null list with no tokens clears it.
            unsafe { whisper_needtag_next_load(std::ptr::null(), 0, false) };
            ctx
        }
        .map_err(|e| {
            Error::ModelUnavailable(format!(
                "whisper model {} failed to load ({e}); re-create it with `python3 models/prepare.py`",
                path.display()
            ))
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Asr {
            byte_rules: bytes::ByteRules::build(&ctx),
            ctx,
            name,
            cfg: cfg.clone(),
        })
    }

    pub fn model_name(&self) -> &str {
        &self.name
    }

    fn states(&self, n: usize) -> Result<Vec<WhisperState>> {
        (0..n.max(1))
            .map(|_| {
                self.ctx
                    .create_state()
                    .map_err(|e| Error::Asr(format!("cannot create whisper state: {e}")))
            })
            .collect()
    }

    /// A worker with its own `asr.threads` states.
    pub fn worker(&self) -> Result<AsrWorker> {
        Ok(AsrWorker {
            states: self.states(self.cfg.threads)?,
            shared: None,
        })
    }

    /// `n` states for workers to share (see [`StatePool`]); `queued` counts the memos waiting
    /// for a worker.
    pub fn state_pool(
        &self,
        n: usize,
        queued: Arc<std::sync::atomic::AtomicUsize>,
    ) -> Result<Arc<StatePool>> {
        Ok(Arc::new(StatePool {
            inner: Mutex::new(PoolInner {
                free: self.states(n)?,
                takers: 0,
            }),
            returned: Condvar::new(),
            queued,
        }))
    }

    /// A worker that borrows its states from `pool` for each memo.
    pub fn shared_worker(&self, pool: Arc<StatePool>) -> AsrWorker {
        AsrWorker {
            states: Vec::new(),
            shared: Some(pool),
        }
    }

    /// The words listed in a prompt made by [`Asr::build_prompt`] (between head and tail).
    pub fn prompt_items<'p>(&self, prompt: &'p str) -> Vec<&'p str> {
        let list = prompt
            .strip_prefix(self.cfg.prompt_head.as_str())
            .unwrap_or(prompt);
        let list = list
            .strip_suffix(self.cfg.prompt_tail.as_str())
            .unwrap_or(list);
        if self.cfg.prompt_separator.is_empty() {
            return vec![list];
        }
        list.split(self.cfg.prompt_separator.as_str())
            .filter(|w| !w.trim().is_empty())
            .collect()
    }

    /// An initial prompt in Simplified Chinese built from domain words, as many as fit the budget.
    /// Whisper continues in the script and vocabulary of its prompt, so this both keeps the output
    /// Simplified and biases it toward the product and customer words reps say.
    pub fn build_prompt(&self, words: &[String]) -> String {
        let mut prompt = self.cfg.prompt_head.clone();
        let mut first = true;
        for w in words {
            let candidate = format!(
                "{prompt}{}{w}",
                if first {
                    ""
                } else {
                    &self.cfg.prompt_separator
                }
            );
            let budget = self.cfg.prompt_tokens.min(MAX_PROMPT_TOKENS);
            match self.ctx.tokenize(&candidate, budget + 8) {
                Ok(tokens) if tokens.len() < budget => {
                    prompt = candidate;
                    first = false;
                }
                _ => break,
            }
        }
        prompt.push_str(&self.cfg.prompt_tail);
        prompt
    }
}

extern "C" {
    /// From libopenblas, which whisper.cpp's BLAS backend links.
    fn openblas_set_num_threads(n: c_int);
    /// From the vendored whisper.cpp (vendor/README.md): how the next model loads: the text
    /// tokens its decoder may write (null or 0 for all), and bf16 encoder weights.
    fn whisper_needtag_next_load(ids: *const i32, n_ids: c_int, bf16_encoder: bool);
}

/// The text tokens of a whisper.cpp ggml model file, by id: the bytes each one writes.
pub fn text_tokens(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    use std::io::{Error as IoError, ErrorKind};
    let mut f = std::io::BufReader::new(std::fs::File::open(path)?);
    let i32_at = |f: &mut std::io::BufReader<std::fs::File>| -> std::io::Result<i32> {
        let mut b = [0u8; 4];
        f.read_exact(&mut b)?;
        Ok(i32::from_le_bytes(b))
    };
    let bad = |what: &str| IoError::new(ErrorKind::InvalidData, what.to_string());
    if i32_at(&mut f)? as u32 != 0x6767_6d6c {
        return Err(bad("bad magic"));
    }
    // hyperparameters: n_vocab, audio ctx/state/head/layer, text ctx/state/head/layer, n_mels, ftype
    for _ in 0..11 {
        i32_at(&mut f)?;
    }
    let (n_mel, n_fft) = (i32_at(&mut f)?, i32_at(&mut f)?);
    if !(0..=1024).contains(&n_mel) || !(0..=4096).contains(&n_fft) {
        return Err(bad("implausible mel filter size"));
    }
    std::io::copy(
        &mut (&mut f).take(n_mel as u64 * n_fft as u64 * 4),
        &mut std::io::sink(),
    )?;
    let n = i32_at(&mut f)?;
    if !(0..=1_000_000).contains(&n) {
        return Err(bad("implausible vocabulary size"));
    }
    let mut tokens = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let len = i32_at(&mut f)?;
        if !(0..=1024).contains(&len) {
            return Err(bad("implausible token length"));
        }
        let mut t = vec![0u8; len as usize];
        f.read_exact(&mut t)?;
        tokens.push(t);
    }
    // The weights follow: a file that ends here is truncated.
    i32_at(&mut f)?;
    Ok(tokens)
}

/// whisper.cpp runs the encoder's large matrix products through OpenBLAS. OpenBLAS would split
/// each product over every core, which fights the parallelism needtag already has (one chunk or
/// one memo per thread) and measured slower under load; every transcription thread therefore
/// calls OpenBLAS single-threaded.
fn single_threaded_blas() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: sets a global thread count inside OpenBLAS; no pointers are involved.
    ONCE.call_once(|| unsafe { openblas_set_num_threads(1) });
}

/// Check a whisper model file and read its vocabulary (the text tokens, by id). A missing,
/// truncated or damaged file gives a one-line error naming the command that prepares it; a file
/// cut short inside its vocabulary loaded as a model without weights, and crashed whisper.cpp
/// at the first token asked for.
fn read_model_file(path: &Path) -> Result<Vec<Vec<u8>>> {
    use std::io::ErrorKind;
    let hint = "prepare it with `python3 models/prepare.py` (or .ci/setup), or pass --model with any whisper.cpp ggml file";
    text_tokens(path).map_err(|e| {
        Error::ModelUnavailable(match e.kind() {
            ErrorKind::UnexpectedEof => {
                format!("whisper model {} is truncated; {hint}", path.display())
            }
            ErrorKind::InvalidData => format!(
                "{} is not a whisper.cpp ggml model ({e}); {hint}",
                path.display()
            ),
            _ => format!("whisper model {}: {e}; {hint}", path.display()),
        })
    })
}

/// Encoder frames (20 ms each) for a clip: the clip plus a margin, whole 30 s for long audio.
pub fn audio_ctx_for(seconds: f64, margin_frames: i32) -> i32 {
    if seconds >= 28.0 {
        return 0; // full window
    }
    let frames = (seconds * 50.0).ceil() as i32 + margin_frames;
    ((frames + 63) / 64 * 64).min(1500)
}

/// Shortest chunk worth transcribing on its own thread (shorter speech runs in one piece).
const MIN_PARALLEL_CHUNK_S: f64 = 6.0;

/// How many states the speech can keep busy at once.
fn useful_lanes(samples: &[f32]) -> usize {
    let seconds = samples.len() as f64 / crate::audio::SAMPLE_RATE as f64;
    (seconds / MIN_PARALLEL_CHUNK_S).floor().max(1.0) as usize
}

impl AsrWorker {
    /// Transcribe 16 kHz mono speech. `to_original` maps a time in these samples to the time in
    /// the uploaded audio (the VAD may have cut silence out).
    ///
    /// Speech longer than `asr.chunk_s` is cut at pauses into chunks, each with an encoder window
    /// sized to it; with `asr.threads` > 1 the speech is cut into at least that many chunks
    /// (if each is long enough) and they run in parallel, one thread each. Within one chunk
    /// whisper always runs single-threaded: ggml's spinning thread pool slows down by an order of
    /// magnitude on a 2-core machine that is doing anything else.
    pub fn transcribe(
        &mut self,
        asr: &Asr,
        samples: &[f32],
        prompt: Option<&str>,
        to_original: &(dyn Fn(f64) -> f64 + Sync),
    ) -> Result<Transcript> {
        match &self.shared {
            Some(pool) => {
                let mut borrowed = Borrowed {
                    pool,
                    states: pool.take(useful_lanes(samples)),
                };
                transcribe_on(&mut borrowed.states, asr, samples, prompt, to_original)
            }
            None => transcribe_on(&mut self.states, asr, samples, prompt, to_original),
        }
    }
}

/// Transcribe on the given states: speech longer than `asr.chunk_s`, or long enough to share
/// between several states, is cut at pauses and the chunks run in parallel, one thread each.
fn transcribe_on(
    states: &mut [WhisperState],
    asr: &Asr,
    samples: &[f32],
    prompt: Option<&str>,
    to_original: &(dyn Fn(f64) -> f64 + Sync),
) -> Result<Transcript> {
    let sr = crate::audio::SAMPLE_RATE as f64;
    let seconds = samples.len() as f64 / sr;
    let by_length = (seconds / asr.cfg.chunk_s).ceil().max(1.0) as usize;
    let parallel = states.len().min(useful_lanes(samples));
    let n = by_length.div_ceil(parallel) * parallel;
    let chunks = crate::audio::split(samples, n);
    let mut parts: Vec<Option<Result<Transcript>>> = (0..chunks.len()).map(|_| None).collect();
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (lane, state) in states.iter_mut().take(parallel).enumerate() {
            let mine: Vec<(usize, std::ops::Range<usize>)> = chunks
                .iter()
                .cloned()
                .enumerate()
                .filter(|(i, _)| i % parallel == lane)
                .collect();
            handles.push(scope.spawn(move || {
                mine.into_iter()
                    .map(|(i, r)| {
                        let offset = r.start as f64 / sr;
                        let map = |t: f64| to_original(t + offset);
                        (i, transcribe_chunk(state, asr, &samples[r], prompt, &map))
                    })
                    .collect::<Vec<_>>()
            }));
        }
        for h in handles {
            for (i, r) in h.join().unwrap_or_default() {
                parts[i] = Some(r);
            }
        }
    });
    let mut out = Transcript {
        language: "zh".into(),
        ..Default::default()
    };
    for part in parts {
        let part = part.ok_or_else(|| Error::Asr("a transcription thread failed".into()))??;
        out.segments.extend(part.segments);
        out.dropped.extend(part.dropped);
    }
    drop_repeated_heads(&mut out);
    out.text = join_segments(&out.segments);
    Ok(out)
}

/// A segment (or chunk) that begins with the clauses the one before it ended with: whisper
/// wrote them twice. The second copy is taken out (and listed in `dropped` as `repeated`);
/// a segment left empty goes.
fn drop_repeated_heads(t: &mut Transcript) {
    let mut kept: Vec<Segment> = Vec::with_capacity(t.segments.len());
    for mut seg in std::mem::take(&mut t.segments) {
        if let Some(prev) = kept.last() {
            let (rest, head) = tidy::drop_repeated_head(&prev.text, &seg.text);
            if !head.is_empty() {
                t.dropped.push(Dropped {
                    text: head,
                    reason: "repeated".to_string(),
                });
                seg.text = tidy::normalise(&rest);
            }
        }
        if !guard::squash(&seg.text).is_empty() {
            kept.push(seg);
        }
    }
    t.segments = kept;
}

/// Transcribe one chunk on one state, single-threaded. A prompted transcript too sparse for its
/// speech (see [`guard::sparse`]) is decoded again without the prompt, and the fuller of the two
/// is kept; the other is listed in `dropped`, so nothing disappears without a trace.
fn transcribe_chunk(
    state: &mut WhisperState,
    asr: &Asr,
    samples: &[f32],
    prompt: Option<&str>,
    to_original: &dyn Fn(f64) -> f64,
) -> Result<Transcript> {
    let first = decode_chunk(state, asr, samples, prompt, to_original)?;
    let seconds = samples.len() as f64 / crate::audio::SAMPLE_RATE as f64;
    if prompt.is_none() || !guard::sparse(&first.text, seconds, asr.cfg.min_chars_per_s) {
        return Ok(first);
    }
    let plain = decode_chunk(state, asr, samples, None, to_original)?;
    let (prompted_chars, plain_chars) = (
        guard::content_chars(&first.text),
        guard::content_chars(&plain.text),
    );
    tracing::debug!(
        prompted = prompted_chars,
        plain = plain_chars,
        seconds,
        "prompted transcript was sparse; decoded again without the prompt"
    );
    let (mut kept, other, reason) = if plain_chars > prompted_chars {
        (plain, first, "sparse_with_prompt")
    } else {
        (first, plain, "sparser_without_prompt")
    };
    kept.dropped.extend(other.dropped);
    kept.dropped.push(Dropped {
        text: other.text,
        reason: reason.to_string(),
    });
    Ok(kept)
}

/// One whisper pass over a chunk, with the segment guards applied.
fn decode_chunk(
    state: &mut WhisperState,
    asr: &Asr,
    samples: &[f32],
    prompt: Option<&str>,
    to_original: &dyn Fn(f64) -> f64,
) -> Result<Transcript> {
    let cfg = &asr.cfg;
    if samples.is_empty() {
        return Ok(Transcript {
            language: "zh".into(),
            ..Default::default()
        });
    }
    let strategy = if cfg.beam_size > 1 {
        SamplingStrategy::BeamSearch {
            beam_size: cfg.beam_size as i32,
            patience: -1.0,
        }
    } else {
        SamplingStrategy::Greedy { best_of: 1 }
    };
    let mut params = FullParams::new(strategy);
    params.set_language(Some("zh"));
    params.set_translate(false);
    params.set_n_threads(1);
    params.set_no_context(true);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_special(false);
    params.set_print_timestamps(false);
    params.set_suppress_blank(true);
    params.set_suppress_nst(true);
    params.set_temperature(0.0);
    params.set_temperature_inc(if cfg.temperature_fallback { 0.2 } else { 0.0 });
    params.set_no_speech_thold(cfg.no_speech_threshold);
    let seconds = samples.len() as f64 / crate::audio::SAMPLE_RATE as f64;
    if cfg.adaptive_audio_ctx {
        params.set_audio_ctx(audio_ctx_for(seconds, cfg.audio_ctx_margin));
    }
    if let Some(p) = prompt {
        params.set_initial_prompt(p);
    }
    // SAFETY: the rules live in `asr`, which outlives this call; whisper.cpp only reads them
    // from the filter during `full`.
    unsafe {
        params.set_filter_logits_callback(Some(bytes::filter_logits));
        params.set_filter_logits_callback_user_data(
            &asr.byte_rules as *const bytes::ByteRules as *mut std::ffi::c_void,
        );
    }
    state
        .full(params, samples)
        .map_err(|e| Error::Asr(e.to_string()))?;
    let items = prompt.map(|p| asr.prompt_items(p)).unwrap_or_default();

    let mut out = Transcript {
        language: "zh".into(),
        ..Default::default()
    };
    for seg in state.as_iter() {
        let raw = seg
            .to_str_lossy()
            .map(|s| s.into_owned())
            .unwrap_or_default();
        // A segment whisper cut off inside a character (its token limit, or the tokens after its
        // last timestamp dropped) ends in bytes that are no character: they carry no text.
        let text = zh::to_simplified(raw.trim()).replace('\u{FFFD}', "");
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let n = seg.n_tokens();
        let (mut sum_p, mut count) = (0f32, 0usize);
        for i in 0..n {
            if let Some(tok) = seg.get_token(i) {
                if tok.token_id() < 50257 {
                    sum_p += tok.token_probability();
                    count += 1;
                }
            }
        }
        let mean_p = if count > 0 { sum_p / count as f32 } else { 0.0 };
        let verdict = guard::judge(
            text,
            prompt.unwrap_or(""),
            seg.no_speech_probability(),
            mean_p,
            cfg.no_speech_threshold,
        );
        if verdict != guard::Verdict::Keep {
            out.dropped.push(Dropped {
                text: tidy::normalise(text),
                reason: verdict.reason().to_string(),
            });
            continue;
        }
        let (text, looped) = guard::collapse_repetitions(text);
        if looped {
            tracing::debug!("collapsed a repetition loop in a segment");
        }
        let (text, echoed) = guard::strip_list_echo(&text, &items);
        out.dropped.extend(echoed.into_iter().map(|text| Dropped {
            text: tidy::normalise(&text),
            reason: "prompt_echo".to_string(),
        }));
        // Last, the text a rep reads (see `tidy`).
        let text = tidy::normalise(&text);
        if guard::squash(&text).is_empty() {
            continue;
        }
        let start = to_original(seg.start_timestamp() as f64 / 100.0);
        let end = to_original((seg.end_timestamp() as f64 / 100.0).min(seconds));
        out.segments.push(Segment {
            start,
            end: end.max(start),
            text,
        });
    }
    out.text = join_segments(&out.segments);
    Ok(out)
}

/// Segments joined into one text; Chinese needs no spaces, but a missing sentence break between
/// segments is supplied so clause splitting downstream sees it.
pub fn join_segments(segments: &[Segment]) -> String {
    let mut text = String::new();
    for s in segments {
        if !text.is_empty()
            && !text.ends_with(['。', '，', '！', '？', '；', '：', '、', ',', '.', '!', '?'])
        {
            text.push('，');
        }
        text.push_str(&s.text);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_ctx_fits_the_clip() {
        assert_eq!(audio_ctx_for(8.0, 128), 576);
        assert_eq!(audio_ctx_for(29.0, 128), 0);
        assert!(audio_ctx_for(27.0, 128) <= 1500);
    }

    #[test]
    fn missing_and_bogus_models_are_named() {
        let e = read_model_file(Path::new("/nonexistent/model.bin")).unwrap_err();
        assert_eq!(e.code(), "model_unavailable");
        assert!(e.to_string().contains("models/prepare.py"));
        let dir = std::env::temp_dir().join(format!("needtag-bogus-{}", std::process::id()));
        std::fs::write(&dir, b"not a model at all").unwrap();
        let e = read_model_file(&dir).unwrap_err();
        assert!(e.to_string().contains("bad magic"), "{e}");
        std::fs::remove_file(&dir).ok();
    }

    #[test]
    fn segments_join_with_breaks() {
        let s = |t: &str| Segment {
            start: 0.0,
            end: 1.0,
            text: t.into(),
        };
        assert_eq!(
            join_segments(&[s("你好"), s("再见。"), s("好")]),
            "你好，再见。好"
        );
    }
}

/// Character error rate of a hypothesis against a reference: edit distance over the characters
/// that carry content (punctuation and spaces dropped, Traditional mapped to Simplified,
/// letters lower-cased), divided by the reference length.
pub fn cer(hypothesis: &str, reference: &str) -> f64 {
    let norm = |s: &str| -> Vec<char> { guard::squash(&zh::to_simplified(s)).chars().collect() };
    let (h, r) = (norm(hypothesis), norm(reference));
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    let mut cur = vec![0; h.len() + 1];
    for (i, rc) in r.iter().enumerate() {
        cur[0] = i + 1;
        for (j, hc) in h.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(rc != hc))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[h.len()] as f64 / r.len() as f64
}

#[cfg(test)]
mod cer_tests {
    use super::cer;

    #[test]
    fn cer_counts_edits_over_content_characters() {
        assert_eq!(
            cer("甚至出现交易几乎停滞的情况。", "甚至出现交易几乎停滞的情况"),
            0.0
        );
        assert!(
            (cer("甚至出现交易几乎停制的情况", "甚至出现交易几乎停滞的情况") - 1.0 / 13.0).abs()
                < 1e-9
        );
        assert_eq!(cer("", "你好"), 1.0);
        assert_eq!(cer("庫存", "库存"), 0.0);
    }
}
