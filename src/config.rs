//! One configuration struct for every interface: defaults, then a TOML file, then `NEEDTAG_*`
//! environment variables, then command-line flags (applied by the CLI).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub models: ModelConfig,
    /// Needs library directory; `None` uses the default library compiled into the binary.
    pub library: Option<PathBuf>,
    pub audio: AudioConfig,
    pub asr: AsrConfig,
    pub matcher: MatcherConfig,
    pub server: ServerConfig,
    pub archive: ArchiveConfig,
    pub jobs: JobsConfig,
    pub webhook: WebhookConfig,
    pub queue: QueueConfig,
}

/// Scale-out of memo jobs (README → Deploying N API replicas and M workers): with `url` set,
/// `needtag serve` stores each job in the PostgreSQL archive (`archive.url`) and publishes its
/// id to a NATS JetStream work-queue stream; `needtag worker` processes take them from there.
/// Unset (the default): the embedded queue in the archive's SQLite file, worked by the
/// service itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// `nats://host:port` (`NEEDTAG_QUEUE_URL`); needs `archive.url`, where the jobs' state
    /// lives.
    pub url: Option<String>,
    /// The work-queue stream (file storage) and the subject job ids are published on.
    pub stream: String,
    pub subject: String,
    /// The durable pull consumer every worker shares.
    pub consumer: String,
    /// Where the ids of jobs that ended `failed` after their last allowed delivery are
    /// published, and the stream that keeps them.
    pub dead_subject: String,
    pub dead_stream: String,
    /// How long a delivery may go without an acknowledgement before JetStream gives the job to
    /// another worker (seconds). A worker sends an in-progress acknowledgement every third of
    /// it while it works, so this only bounds how soon a job held by a dead worker runs again;
    /// it must still exceed one stall of the worker (default 10 minutes, well above the longest
    /// memo's transcription).
    pub ack_wait_s: u64,
    /// Deliveries of one job before it ends `failed` (`internal`) and goes to `dead_subject`.
    pub max_deliver: i64,
    /// Longest `POST /v1/jobs` waits for the stream's acknowledgement of a publish (ms); a job
    /// whose publish failed stays stored and is published again by the sweeper.
    pub publish_timeout_ms: u64,
    /// How often an API replica republishes stored jobs whose publish was never acknowledged
    /// (seconds).
    pub sweep_every_s: u64,
    /// On SIGTERM a worker pulls no more jobs and gives the ones in flight this long to finish
    /// (seconds); then it gives them back to the queue for another worker.
    pub drain_s: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            url: None,
            stream: "NEEDTAG_JOBS".into(),
            subject: "needtag.jobs".into(),
            consumer: "needtag-workers".into(),
            dead_subject: "needtag.jobs.dead".into(),
            dead_stream: "NEEDTAG_JOBS_DEAD".into(),
            ack_wait_s: 600,
            max_deliver: 5,
            publish_timeout_ms: 5_000,
            sweep_every_s: 10,
            drain_s: 60,
        }
    }
}

impl QueueConfig {
    /// The NATS URL when scale-out is on.
    pub fn nats(&self) -> Option<&str> {
        self.url.as_deref().filter(|u| !u.trim().is_empty())
    }
}

/// Memo jobs (`POST /v1/jobs`): uploads stored in the archive's SQLite file (`archive.path`, in
/// tables of their own) and transcribed by the service's workers when they are free.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobsConfig {
    /// Accept jobs at all. Off (or with `archive.enabled = false`): the job routes answer 404
    /// and no job tables are created.
    pub enabled: bool,
    /// Most jobs queued or running at once; more are answered 503 `busy`.
    pub max_pending: u64,
    /// Most bytes of audio held by queued or running jobs; more are answered 503 `busy`.
    pub max_pending_bytes: u64,
    /// Attempts at a job whose failure was on the server's side (an internal error, or the
    /// process dying while it ran) before it ends `failed`. A failure caused by the upload
    /// (corrupt audio, too short…) ends the job at once.
    pub max_attempts: u32,
    /// Transcription workers jobs may use even while `/v1/memos` requests wait for one (at
    /// most `server.workers`). Beyond these, jobs take only idle workers, so synchronous
    /// requests go first; 0 lets a steady stream of them hold jobs back indefinitely.
    pub reserved_workers: usize,
    /// Longest one attempt may take before it counts as a server-side failure (seconds).
    pub attempt_timeout_s: u64,
    /// Finished jobs (with their results) are deleted after this many days (checked hourly);
    /// 0 keeps them. A job whose webhook event is not delivered yet is kept.
    pub retention_days: u32,
}

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_pending: 10_000,
            max_pending_bytes: 4 * 1024 * 1024 * 1024,
            max_attempts: 3,
            reserved_workers: 1,
            attempt_timeout_s: 600,
            retention_days: 7,
        }
    }
}

/// The CRM endpoint that receives every finished job (done or failed) as a signed POST
/// (README → Webhooks).
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://…` (or `http://…`) with a host; none: no events are sent. Also
    /// `NEEDTAG_WEBHOOK_URL`. Logs show a password or query in it as `***`. A redirect is not
    /// followed (it counts as a failed attempt).
    pub url: Option<String>,
    /// The HMAC-SHA256 key of `Needtag-Signature` (at least 16 characters when `url` is set).
    /// Also `NEEDTAG_WEBHOOK_SECRET`, which keeps it out of the file.
    pub secret: String,
    /// Longest an attempt may take, connecting included (milliseconds).
    pub timeout_ms: u64,
    /// Attempts before an event is parked as dead (`GET /v1/webhooks/dead`).
    pub max_attempts: u32,
    /// The wait after the first failed attempt (milliseconds); it doubles after each one, up
    /// to `max_backoff_ms`, with random jitter in its upper half.
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Events sent at once.
    pub concurrency: usize,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url.as_deref().map(shown_url))
            .field("timeout_ms", &self.timeout_ms)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_ms", &self.backoff_ms)
            .field("max_backoff_ms", &self.max_backoff_ms)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

/// A webhook URL as logs may show it: a password and a query (where CRMs put tokens) are
/// replaced by `***`.
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if u.query().is_some() {
                u.set_query(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(not a valid URL)".into(),
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: None,
            secret: String::new(),
            timeout_ms: 10_000,
            max_attempts: 12,
            backoff_ms: 2_000,
            max_backoff_ms: 3_600_000,
            concurrency: 4,
        }
    }
}

/// The memo archive: every memo the service answers is stored with its metadata, text and
/// result, for review, export and deletion (see README → Archive). Memo text is customer data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Store memos at all. Off: answers still carry a `memo_id`, nothing is kept, and the
    /// archive's routes answer 404.
    pub enabled: bool,
    /// The SQLite file (created with its directory; WAL mode, so `-wal` and `-shm` files sit
    /// beside it). Not used when `url` is set.
    pub path: PathBuf,
    /// A PostgreSQL server instead of the SQLite file, for several replicas sharing one
    /// archive: `postgres://user[:password]@host[:port]/database` (`NEEDTAG_ARCHIVE_URL`). The
    /// database must exist; its tables are created and migrated at start-up. Unset: SQLite.
    pub url: Option<String>,
    /// Memos stored longer ago than this are purged (hourly, and at start-up); 0 keeps them.
    pub retention_days: u32,
    /// Days to keep a voice memo's audio (the bytes as uploaded, with their content type) in
    /// the archive, so it can be transcribed again with a better model; 0 (the default) keeps
    /// none. Purged with the memo's other data, and hourly once older than this (the memo
    /// stays). `GET /v1/memos/{id}/audio` (scope `review`) returns it.
    pub keep_audio_days: u32,
    /// Memos waiting to be written. A memo is answered only once it is stored: the handler
    /// hands its record to one writer, which commits every waiting record in one transaction
    /// and then lets their answers go.
    pub queue: usize,
    /// How long a handler waits for room when `queue` records are already waiting; past it the
    /// memo is not stored and its answer is a 503 `archive_unavailable` with `Retry-After`
    /// (counted in `needtag_archive_refused` and logged with its id).
    pub enqueue_wait_ms: u64,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "needtag-archive.sqlite".into(),
            url: None,
            retention_days: 365,
            keep_audio_days: 0,
            queue: 1024,
            enqueue_wait_ms: 100,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Directory of prepared model files (`python3 models/prepare.py` fills it).
    pub dir: PathBuf,
    /// Any whisper.cpp ggml model; relative paths are taken inside `dir`.
    pub whisper: PathBuf,
    pub vad: PathBuf,
    pub embedding: PathBuf,
    pub tokenizer: PathBuf,
    pub onnxruntime: PathBuf,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            dir: default_models_dir(),
            whisper: "ggml-base-q8_0.bin".into(),
            vad: "silero-vad-16k.onnx".into(),
            embedding: "use-multilingual-int8.onnx".into(),
            tokenizer: "use-multilingual-tokenizer.json".into(),
            onnxruntime: "libonnxruntime.so".into(),
        }
    }
}

impl ModelConfig {
    /// A model path: absolute paths as given, relative ones inside `dir`.
    pub fn path(&self, file: &Path) -> PathBuf {
        if file.is_absolute() || file.starts_with(".") {
            file.to_path_buf()
        } else {
            self.dir.join(file)
        }
    }
}

/// `models/prepared` under the working directory when it exists there, else next to the sources
/// the binary was built from (so `target/release/needtag` works from anywhere in a checkout).
fn default_models_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("NEEDTAG_MODELS") {
        return dir.into();
    }
    let local = PathBuf::from("models/prepared");
    if local.is_dir() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/prepared")
}

/// What to do with audio longer than `max_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongAudio {
    /// Refuse it with `audio_too_long`.
    Reject,
    /// Keep the first `max_seconds` and mark the result `truncated`.
    Truncate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AudioConfig {
    /// Largest upload accepted, in bytes.
    pub max_bytes: usize,
    /// Longest audio accepted (decoding stops here, so a huge file never fills memory).
    pub max_seconds: f64,
    pub long_audio: LongAudio,
    /// Shortest audio accepted.
    pub min_seconds: f64,
    /// Gate whisper with voice-activity detection and trim silence.
    pub vad: bool,
    /// Speech probability above which a 32 ms frame counts as speech.
    pub vad_threshold: f32,
    /// Audio kept before and after each stretch of speech the VAD finds (seconds). Whisper
    /// needs some lead-in: with 0.2 s it misheard the first words of short clips that it got
    /// right from the untrimmed audio; 0.4 s is also faster-whisper's default.
    pub vad_pad_s: f64,
    /// Pauses longer than this are shortened before transcription (seconds).
    pub max_pause_s: f64,
}

impl Default for AudioConfig {
    fn default() -> Self {
        Self {
            max_bytes: 32 * 1024 * 1024,
            max_seconds: 120.0,
            long_audio: LongAudio::Reject,
            min_seconds: 1.0,
            vad: true,
            vad_threshold: 0.5,
            vad_pad_s: 0.4,
            max_pause_s: 1.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsrConfig {
    /// Threads per transcription. One is steady on a busy 2-core machine.
    pub threads: usize,
    /// Bias whisper toward the needs library's vocabulary with an initial prompt.
    pub domain_prompt: bool,
    /// The domain assumed for memos sent without one (one of the library's domains). With a
    /// domain the prompt holds that domain's and the general needs' words; without, the whole
    /// library's, as many as fit.
    pub default_domain: Option<String>,
    /// Longest prompt in tokens (whisper allows 223; each token costs decoding time).
    pub prompt_tokens: usize,
    /// The prompt: this head, then library words joined by the separator, then the tail.
    /// Whisper continues its prompt's script and register: a written head ("以下是…备忘录，
    /// 内容涉及：") makes it drop fillers and condense what was said, a spoken one keeps the
    /// transcript verbatim.
    pub prompt_head: String,
    pub prompt_separator: String,
    pub prompt_tail: String,
    /// Beam size; 1 is greedy decoding.
    pub beam_size: usize,
    /// Retry with higher temperature when decoding looks degenerate (slower).
    pub temperature_fallback: bool,
    /// Size the encoder window to the audio instead of always 30 s.
    pub adaptive_audio_ctx: bool,
    /// Encoder frames (20 ms each) kept beyond the audio when the window is sized to it.
    pub audio_ctx_margin: i32,
    /// Speech longer than this is cut at pauses and transcribed chunk by chunk (seconds).
    pub chunk_s: f64,
    pub flash_attn: bool,
    /// Compute the decoder's output only for the tokens a transcript may hold (what the character
    /// rules can let through, Latin words of at most three letters per token, and whisper's
    /// special tokens): the output projection is the largest weight a decoding step reads.
    pub restrict_output: bool,
    /// Keep the encoder's weights in bf16 on a CPU with AVX-512 BF16: its products run about
    /// 1.2x faster, at bf16 precision (docs/transcription.md has what that costs in CER).
    pub encoder_bf16: bool,
    /// Segments whose no-speech probability exceeds this (with low confidence) are dropped.
    pub no_speech_threshold: f32,
    /// A prompted transcript with fewer content characters than this per second of speech
    /// (chunks of 3 s or more) has skipped speech: it is decoded again without the prompt and
    /// the fuller text kept. 0 turns the check off.
    pub min_chars_per_s: f64,
}

impl AsrConfig {
    /// The domain a memo is transcribed for: the one given (checked against the library's
    /// domains), else `default_domain` (checked when the configuration was validated).
    pub fn domain_or_default(&self, given: Option<String>) -> Result<Option<String>> {
        match given {
            Some(d) => {
                crate::library::check_domain(&d)?;
                Ok(Some(d))
            }
            None => Ok(self.default_domain.clone()),
        }
    }
}

impl Default for AsrConfig {
    fn default() -> Self {
        Self {
            threads: 1,
            domain_prompt: true,
            default_domain: None,
            prompt_tokens: 120,
            prompt_head: "嗯，就是说，这次去拜访客户，客户那边呢，聊到了这个".into(),
            prompt_separator: "、".into(),
            prompt_tail: "这些嘛。".into(),
            beam_size: 1,
            temperature_fallback: false,
            adaptive_audio_ctx: true,
            audio_ctx_margin: 128,
            chunk_s: 30.0,
            flash_attn: false,
            restrict_output: true,
            encoder_bf16: true,
            no_speech_threshold: 0.6,
            min_chars_per_s: 2.5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatcherConfig {
    /// Use sentence embeddings besides keywords.
    pub semantic: bool,
    /// ONNX Runtime intra-op threads for the embedding model.
    pub embedding_threads: usize,
    /// Loaded copies of the embedding model: texts are embedded concurrently up to this many at
    /// a time. Each copy holds its own weights (about 60 MB); on two cores one copy tags as many
    /// texts per second as two (measured with benches/load/run.sh).
    pub embedding_sessions: usize,
    /// Decide needs with the library's fitted verifier (`verifier.json`) when it has one;
    /// off: by each need's fused confidence and threshold alone.
    pub verifier: bool,
    /// The verifier's need threshold instead of the one `needtag fit` chose (higher: fewer,
    /// surer tags).
    pub verifier_threshold: Option<f32>,
}

impl Default for MatcherConfig {
    fn default() -> Self {
        Self {
            semantic: true,
            embedding_threads: 1,
            embedding_sessions: 1,
            verifier: true,
            verifier_threshold: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Upload memos and tag text.
    Tag,
    /// Reload the library; delete archived memos.
    Admin,
    /// Read the memo archive, review its tags, export the reviewed memos.
    Review,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Tag => "tag",
            Scope::Admin => "admin",
            Scope::Review => "review",
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub key: String,
    pub scopes: Vec<Scope>,
    /// Who holds the key (shown in logs instead of the key).
    #[serde(default)]
    pub name: String,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub bind: String,
    /// Transcription workers (memos transcribed at once). They share `workers × asr.threads`
    /// whisper states, so a memo that arrives alone uses the idle ones too.
    pub workers: usize,
    /// Uploads that may wait for a worker; more are answered 503 at once.
    pub queue: usize,
    /// Longest a request may take, queueing included.
    pub request_timeout_s: u64,
    /// Longest from a request head's first byte to its end (a client trickling headers gets a
    /// 408 and the connection closes).
    pub header_timeout_s: u64,
    /// Longest a keep-alive connection waits, idle, for its next request.
    pub idle_timeout_s: u64,
    /// Connections open at once; more are answered 503 `busy` and closed.
    pub max_connections: usize,
    /// Most texts in one `/v1/tag/batch` call.
    pub batch_max: usize,
    /// Most characters in all the texts of one `/v1/tag/batch` call.
    pub batch_max_chars: usize,
    /// Most memos in one `/v1/eval` call.
    pub eval_max_memos: usize,
    /// Most characters in all the memos of one `/v1/eval` call (tagging them must finish within
    /// `request_timeout_s` even when several run at once).
    pub eval_max_chars: usize,
    /// Largest `/v1/eval` body, in bytes.
    pub eval_max_bytes: usize,
    /// Memo uploads received at once; more are answered 503 `busy` at once. An upload holds
    /// one of these, not a transcription slot, until its body is complete.
    pub max_uploads: usize,
    /// Bytes per second a request body must average once `body_grace_s` has passed (0: no
    /// minimum); a slower one ends with 408.
    pub min_body_rate: u64,
    pub body_grace_s: u64,
    /// Longest text accepted by the tagging endpoints, in characters.
    pub max_text_chars: usize,
    /// API keys; with none configured the API is open (a warning is logged).
    pub api_keys: Vec<ApiKey>,
    /// Memos one API key may have in flight at once, uploading or transcribing (0: no limit).
    pub per_key_inflight: usize,
    pub idempotency_ttl_s: u64,
    pub idempotency_capacity: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            workers: 2,
            queue: 4,
            request_timeout_s: 120,
            header_timeout_s: 10,
            idle_timeout_s: 60,
            max_connections: 1024,
            batch_max: 100,
            batch_max_chars: 50_000,
            eval_max_memos: 1000,
            eval_max_chars: 50_000,
            eval_max_bytes: 1024 * 1024,
            max_uploads: 16,
            min_body_rate: 4096,
            body_grace_s: 10,
            max_text_chars: 5000,
            api_keys: Vec::new(),
            per_key_inflight: 4,
            idempotency_ttl_s: 24 * 3600,
            idempotency_capacity: 1000,
        }
    }
}

impl Config {
    /// Defaults, overridden by a TOML file (when given) and then by the environment.
    pub fn load(file: Option<&Path>) -> Result<Config> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Error::InvalidInput(format!("config file {}: {e}", path.display()))
                })?;
                toml::from_str(&text).map_err(|e| {
                    Error::InvalidInput(format!("config file {}: {e}", path.display()))
                })?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    /// `NEEDTAG_*` variables; `get` is injectable for tests.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        fn parse<T: std::str::FromStr>(name: &str, v: String) -> Result<T> {
            v.trim()
                .parse()
                .map_err(|_| Error::InvalidInput(format!("{name}={v} is not valid")))
        }
        if let Some(v) = get("NEEDTAG_MODELS") {
            self.models.dir = v.into();
        }
        if let Some(v) = get("NEEDTAG_WHISPER_MODEL") {
            self.models.whisper = v.into();
        }
        if let Some(v) = get("NEEDTAG_LIBRARY") {
            self.library = Some(v.into());
        }
        if let Some(v) = get("NEEDTAG_BIND") {
            self.server.bind = v;
        }
        if let Some(v) = get("NEEDTAG_WORKERS") {
            self.server.workers = parse("NEEDTAG_WORKERS", v)?;
        }
        if let Some(v) = get("NEEDTAG_QUEUE") {
            self.server.queue = parse("NEEDTAG_QUEUE", v)?;
        }
        if let Some(v) = get("NEEDTAG_THREADS") {
            self.asr.threads = parse("NEEDTAG_THREADS", v)?;
        }
        if let Some(v) = get("NEEDTAG_API_KEYS") {
            self.server.api_keys = parse_api_keys(&v)?;
        }
        if let Some(v) = get("NEEDTAG_ARCHIVE") {
            self.archive.path = v.into();
        }
        if let Some(v) = get("NEEDTAG_ARCHIVE_URL") {
            self.archive.url = Some(v).filter(|v| !v.trim().is_empty());
        }
        if let Some(v) = get("NEEDTAG_QUEUE_URL") {
            self.queue.url = Some(v).filter(|v| !v.trim().is_empty());
        }
        if let Some(v) = get("NEEDTAG_WEBHOOK_URL") {
            self.webhook.url = Some(v).filter(|v| !v.trim().is_empty());
        }
        if let Some(v) = get("NEEDTAG_WEBHOOK_SECRET") {
            self.webhook.secret = v;
        }
        Ok(())
    }

    /// Refuse settings that cannot work, with a message naming the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidInput(m.to_string()));
        if self.asr.threads == 0 {
            return bad("asr.threads must be at least 1");
        }
        if self.asr.beam_size == 0 {
            return bad("asr.beam_size must be at least 1");
        }
        if self.server.workers == 0 {
            return bad("server.workers must be at least 1");
        }
        if self.server.max_uploads == 0 || self.server.max_connections == 0 {
            return bad("server.max_uploads and server.max_connections must be at least 1");
        }
        if self.audio.max_seconds <= 0.0
            || self.audio.min_seconds < 0.0
            || self.audio.min_seconds >= self.audio.max_seconds
        {
            return bad("audio.min_seconds must be below audio.max_seconds, both positive");
        }
        if !(0.0..1.0).contains(&self.audio.vad_threshold) {
            return bad("audio.vad_threshold must lie in [0, 1)");
        }
        if !(0.0..=2.0).contains(&self.audio.vad_pad_s)
            || self.audio.max_pause_s.is_nan()
            || self.audio.max_pause_s < 0.0
        {
            return bad("audio.vad_pad_s must lie in [0, 2] and audio.max_pause_s be at least 0");
        }
        if let Some(t) = self.matcher.verifier_threshold {
            if !(t > 0.0 && t < 1.0) {
                return bad("matcher.verifier_threshold must lie in (0, 1)");
            }
        }
        if self.server.api_keys.iter().any(|k| k.key.len() < 16) {
            return bad("every API key must be at least 16 characters");
        }
        // Names are what logs show; two keys with one name could not be told apart there.
        let mut names = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for k in &self.server.api_keys {
            if !k.name.is_empty() && !names.insert(k.name.as_str()) {
                return Err(Error::InvalidInput(format!(
                    "two API keys are named {:?}; each key needs its own name",
                    k.name
                )));
            }
            if !keys.insert(k.key.as_str()) {
                return Err(Error::InvalidInput(format!(
                    "the API key named {:?} is configured twice",
                    k.name
                )));
            }
        }
        if let Some(url) = &self.archive.url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return bad("archive.url must be a postgres:// or postgresql:// URL");
            }
        }
        if self.archive.enabled && self.archive.queue == 0 {
            return bad("archive.queue must be at least 1");
        }
        if self.jobs.enabled && (self.jobs.max_pending == 0 || self.jobs.max_attempts == 0) {
            return bad("jobs.max_pending and jobs.max_attempts must be at least 1");
        }
        if let Some(url) = self.queue.nats() {
            if !(url.starts_with("nats://") || url.starts_with("tls://")) {
                return bad("queue.url must be a nats:// URL");
            }
            if self.archive.url.is_none() || !self.archive.enabled {
                return bad(
                    "queue.url needs archive.url (PostgreSQL): the jobs' shared state lives there",
                );
            }
            if !self.jobs.enabled {
                return bad("queue.url is set but jobs.enabled is false");
            }
            if self.queue.ack_wait_s < 3 || self.queue.max_deliver < 1 {
                return bad("queue.ack_wait_s must be at least 3 and queue.max_deliver at least 1");
            }
            let names = [
                &self.queue.stream,
                &self.queue.consumer,
                &self.queue.dead_stream,
            ];
            if names.iter().any(|n| {
                n.is_empty()
                    || !n
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            }) {
                return bad("queue.stream, queue.consumer and queue.dead_stream must be non-empty names of letters, digits, _ and -");
            }
            if self.queue.subject.is_empty()
                || self.queue.dead_subject.is_empty()
                || self.queue.subject == self.queue.dead_subject
            {
                return bad("queue.subject and queue.dead_subject must be set and differ");
            }
        }
        if let Some(url) = &self.webhook.url {
            // Parsed as the sender will parse it, so a URL it cannot use is refused here, by
            // `needtag check` and before the models load, not later at start.
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| Error::InvalidInput(format!("webhook.url: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return bad("webhook.url must be an http:// or https:// URL with a host");
            }
            if self.webhook.secret.len() < 16 {
                return bad(
                    "webhook.secret must be at least 16 characters when webhook.url is set",
                );
            }
            if self.webhook.max_attempts == 0 || self.webhook.timeout_ms == 0 {
                return bad("webhook.max_attempts and webhook.timeout_ms must be at least 1");
            }
            if self.webhook.backoff_ms == 0 || self.webhook.max_backoff_ms < self.webhook.backoff_ms
            {
                return bad(
                    "webhook.backoff_ms must be at least 1 and at most webhook.max_backoff_ms",
                );
            }
        }
        if let Some(d) = &self.asr.default_domain {
            crate::library::check_domain(d)
                .map_err(|e| Error::InvalidInput(format!("asr.default_domain: {e}")))?;
        }
        Ok(())
    }

    /// The configuration as JSON with API keys masked, for the start-up log.
    pub fn redacted(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(keys) = v
            .pointer_mut("/server/api_keys")
            .and_then(|k| k.as_array_mut())
        {
            for k in keys {
                k["key"] = serde_json::Value::String("***".into());
            }
        }
        if let Some(url) = &self.archive.url {
            v["archive"]["url"] =
                serde_json::Value::String(crate::archive::postgres::redact_url(url));
        }
        if let Some(url) = self.queue.nats() {
            v["queue"]["url"] =
                serde_json::Value::String(crate::archive::postgres::redact_url(url));
        }
        if let Some(secret) = v.pointer_mut("/webhook/secret") {
            *secret = serde_json::Value::String("***".into());
        }
        if let (Some(url), Some(shown)) =
            (self.webhook.url.as_deref(), v.pointer_mut("/webhook/url"))
        {
            *shown = serde_json::Value::String(shown_url(url));
        }
        v
    }
}

/// `key:scope+scope,key:scope` (e.g. `NEEDTAG_API_KEYS=k1…:tag+admin,k2…:tag`).
pub fn parse_api_keys(spec: &str) -> Result<Vec<ApiKey>> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .enumerate()
        .map(|(i, item)| {
            let (key, scopes) = item.trim().split_once(':').ok_or_else(|| {
                Error::InvalidInput(format!(
                    "API key #{} has no scopes (expected key:tag+admin)",
                    i + 1
                ))
            })?;
            let scopes = scopes
                .split('+')
                .map(|s| match s.trim() {
                    "tag" => Ok(Scope::Tag),
                    "admin" => Ok(Scope::Admin),
                    "review" => Ok(Scope::Review),
                    other => Err(Error::InvalidInput(format!(
                        "API key #{}: unknown scope {other:?}",
                        i + 1
                    ))),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(ApiKey {
                key: key.trim().to_string(),
                scopes,
                name: format!("env-key-{}", i + 1),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_file_values() {
        let mut cfg: Config =
            toml::from_str("[server]\nbind = \"0.0.0.0:9000\"\nworkers = 3\n").unwrap();
        assert_eq!(cfg.server.workers, 3);
        cfg.apply_env(|k| match k {
            "NEEDTAG_WORKERS" => Some("1".into()),
            "NEEDTAG_API_KEYS" => Some("aaaaaaaaaaaaaaaa:tag+admin, bbbbbbbbbbbbbbbb:tag".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.server.workers, 1);
        assert_eq!(cfg.server.bind, "0.0.0.0:9000");
        assert_eq!(cfg.server.api_keys.len(), 2);
        assert_eq!(
            cfg.server.api_keys[0].scopes,
            vec![Scope::Tag, Scope::Admin]
        );
        cfg.validate().unwrap();
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(toml::from_str::<Config>("[server]\nbindd = \"x\"\n").is_err());
        let mut cfg = Config::default();
        assert!(cfg
            .apply_env(|k| (k == "NEEDTAG_WORKERS").then(|| "many".into()))
            .is_err());
        let mut cfg = Config::default();
        cfg.server.api_keys = parse_api_keys("short:tag").unwrap();
        assert!(cfg.validate().is_err());
        assert!(parse_api_keys("aaaaaaaaaaaaaaaa:root").is_err());
        let mut cfg: Config = toml::from_str("[asr]\ndefault_domain = \"fmcg\"\n").unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(
            e.contains("asr.default_domain") && e.contains("fmcg_distribution"),
            "{e}"
        );
        cfg.asr.default_domain = Some("fmcg_distribution".into());
        assert!(cfg.validate().is_ok());
        for (pad, pause) in [(-0.1, 1.0), (5.0, 1.0), (0.4, -1.0), (f64::NAN, 1.0)] {
            let mut cfg = Config::default();
            (cfg.audio.vad_pad_s, cfg.audio.max_pause_s) = (pad, pause);
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains("audio.vad_pad_s"), "{e}");
        }
    }

    #[test]
    fn two_keys_with_one_name_or_one_key_twice_are_refused() {
        let cfg: Config = toml::from_str(
            "[server]\napi_keys = [{ key = \"aaaaaaaaaaaaaaaa\", scopes = [\"tag\"], name = \"crm\" },\n{ key = \"bbbbbbbbbbbbbbbb\", scopes = [\"tag\"], name = \"crm\" }]\n",
        )
        .unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("\"crm\""), "{e}");
        let cfg: Config = toml::from_str(
            "[server]\napi_keys = [{ key = \"aaaaaaaaaaaaaaaa\", scopes = [\"tag\"] },\n{ key = \"aaaaaaaaaaaaaaaa\", scopes = [\"admin\"] }]\n",
        )
        .unwrap();
        assert!(cfg.validate().is_err());
        // Unnamed keys are fine: they are told apart by the key itself.
        let cfg: Config = toml::from_str(
            "[server]\napi_keys = [{ key = \"aaaaaaaaaaaaaaaa\", scopes = [\"tag\"] },\n{ key = \"bbbbbbbbbbbbbbbb\", scopes = [\"tag\"] }]\n",
        )
        .unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn a_webhook_needs_an_http_url_and_a_real_secret_and_its_secret_is_never_shown() {
        let mut cfg = Config::default();
        cfg.webhook.url = Some("https://crm.example.com/hook".into());
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("webhook.secret"), "{e}");
        cfg.webhook.secret = "a-secret-of-24-characters".into();
        cfg.validate().unwrap();
        assert!(!cfg.redacted().to_string().contains("a-secret-of-24"));
        assert!(!format!("{:?}", cfg.webhook).contains("a-secret-of-24"));
        cfg.webhook.url = Some("ftp://crm.example.com/hook".into());
        assert!(cfg.validate().is_err());
        // URLs the sender could not use are refused by validation, not at start.
        for bad in [
            "http://",
            "http://exa mple.com/h",
            "file:///etc/passwd",
            "crm.example.com",
        ] {
            cfg.webhook.url = Some(bad.into());
            assert!(cfg.validate().is_err(), "{bad} was accepted");
        }
        // Credentials in the URL (a password, a token in the query) are never shown.
        cfg.webhook.url =
            Some("https://crm:pw-in-url@crm.example.com/hook?token=tok-in-url".into());
        cfg.validate().unwrap();
        let shown = format!("{} {:?}", cfg.redacted(), cfg.webhook);
        assert!(
            !shown.contains("pw-in-url") && !shown.contains("tok-in-url"),
            "{shown}"
        );
        assert!(shown.contains("crm.example.com/hook"), "{shown}");
        cfg.webhook.url = Some("http://crm".into());
        cfg.webhook.max_attempts = 0;
        assert!(cfg.validate().is_err());
        let mut cfg = Config::default();
        cfg.apply_env(|k| match k {
            "NEEDTAG_WEBHOOK_URL" => Some("http://127.0.0.1:9/hook".into()),
            "NEEDTAG_WEBHOOK_SECRET" => Some("from-the-environment-0001".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(cfg.webhook.url.as_deref(), Some("http://127.0.0.1:9/hook"));
        cfg.validate().unwrap();
        assert!(toml::from_str::<Config>("[webhook]\nurll = \"x\"\n").is_err());
        assert!(toml::from_str::<Config>("[jobs]\nmax_pendin = 1\n").is_err());
    }

    #[test]
    fn redacted_config_hides_keys() {
        let mut cfg = Config::default();
        cfg.server.api_keys = parse_api_keys("secretsecretsecret:tag").unwrap();
        let shown = cfg.redacted().to_string();
        assert!(!shown.contains("secretsecretsecret"));
        assert!(shown.contains("***"));
    }

    #[test]
    fn queue_url_needs_the_postgresql_archive_and_sane_settings() {
        let err = |cfg: &Config| cfg.validate().unwrap_err().to_string();
        let mut cfg = Config::default();
        cfg.apply_env(|k| (k == "NEEDTAG_QUEUE_URL").then(|| "nats://127.0.0.1:4222".into()))
            .unwrap();
        assert_eq!(cfg.queue.nats(), Some("nats://127.0.0.1:4222"));
        let e = err(&cfg);
        assert!(e.contains("queue.url") && e.contains("archive.url"), "{e}");
        cfg.archive.url = Some("postgres://needtag@127.0.0.1/needtag".into());
        cfg.validate().unwrap();
        assert_eq!(cfg.queue.ack_wait_s, 600);
        assert_eq!(cfg.queue.max_deliver, 5);
        cfg.queue.max_deliver = 0;
        assert!(err(&cfg).contains("queue.max_deliver"));
        cfg.queue.max_deliver = 5;
        cfg.queue.dead_subject = cfg.queue.subject.clone();
        assert!(err(&cfg).contains("queue.dead_subject"));
        cfg.queue.dead_subject = "needtag.jobs.dead".into();
        cfg.queue.url = Some("http://nats".into());
        assert!(err(&cfg).contains("nats://"));
        cfg.queue.url = Some("nats://user:hunter2hunter2@nats:4222".into());
        let shown = cfg.redacted().to_string();
        assert!(!shown.contains("hunter2hunter2"), "{shown}");
        // An empty variable turns scale-out off again.
        cfg.apply_env(|k| (k == "NEEDTAG_QUEUE_URL").then(String::new))
            .unwrap();
        assert_eq!(cfg.queue.nats(), None);
        assert!(toml::from_str::<Config>("[queue]\nack_wai_s = 1\n").is_err());
    }
}
