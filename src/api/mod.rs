//! The HTTP service (axum): routes, API keys, limits, the transcription queue, idempotency,
//! metrics, OpenAPI and graceful shutdown. No pipeline logic lives here: handlers call
//! [`crate::pipeline::Engine`].

pub mod attempt;
mod auth;
mod body;
mod conn;
pub mod console;
pub mod error;
mod idempotency;
mod jobs;
mod memos;
mod metrics;
pub mod openapi;
mod panics;
mod queue;
mod request;
mod routes;
mod sales;
mod serve;
mod upload;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::routing::{delete, get, post};
use axum::Router;

pub use error::{ApiError, Code};
use idempotency::IdempotencyStore;
use metrics::Metrics;
pub use queue::TranscriptionPool;
pub use serve::{serve, serve_router};

use crate::config::Config;
use crate::pipeline::Engine;

/// Everything the handlers share. The server answers from the moment it listens; until the
/// models are loaded, `/readyz` and the API say `not_ready`.
pub struct AppState {
    pub cfg: Config,
    loaded: OnceLock<Loaded>,
    metrics: Metrics,
    idempotency: IdempotencyStore,
    shutting_down: AtomicBool,
    in_flight: Mutex<HashMap<auth::CallerId, usize>>,
    /// Requests being handled (health, readiness and metrics aside): the drain waits for 0.
    requests: AtomicUsize,
    /// Memo uploads being received.
    uploads: Arc<tokio::sync::Semaphore>,
    /// This state, for the tasks it starts (the job runner).
    me: std::sync::Weak<AppState>,
}

/// The loaded engine, its transcription workers and the memo archive.
pub struct Loaded {
    pub engine: Arc<Engine>,
    pub pool: TranscriptionPool,
    /// None when `archive.enabled` is false.
    pub archive: Option<Arc<crate::archive::Archive>>,
    /// Memo jobs and their webhook; None when `jobs.enabled` is false.
    pub jobs: Option<Arc<jobs::Jobs>>,
}

impl AppState {
    /// A state that is not ready yet; call [`AppState::load`] or [`AppState::set_engine`].
    pub fn starting(cfg: &Config) -> Arc<AppState> {
        Arc::new_cyclic(|me| AppState {
            me: me.clone(),
            idempotency: IdempotencyStore::new(
                cfg.server.idempotency_capacity,
                Duration::from_secs(cfg.server.idempotency_ttl_s),
            ),
            metrics: Metrics::default(),
            loaded: OnceLock::new(),
            shutting_down: AtomicBool::new(false),
            in_flight: Mutex::new(HashMap::new()),
            requests: AtomicUsize::new(0),
            uploads: Arc::new(tokio::sync::Semaphore::new(cfg.server.max_uploads)),
            cfg: cfg.clone(),
        })
    }

    /// Load the models and library (blocking) and start the workers.
    pub fn load(&self) -> crate::Result<()> {
        let engine = Arc::new(Engine::load(&self.cfg, true)?);
        self.set_engine(engine)
    }

    /// Serve with an engine loaded elsewhere. Opens (and migrates) the archive first: a
    /// service that cannot store memos refuses to start rather than forget them.
    pub fn set_engine(&self, engine: Arc<Engine>) -> crate::Result<()> {
        let archive = if self.cfg.archive.enabled {
            let a = crate::archive::Archive::start(&self.cfg.archive)
                .map_err(|e| crate::Error::InvalidInput(format!("archive: {e}")))?;
            tracing::info!(at = %crate::archive::location(&self.cfg.archive), "memo archive open");
            Some(Arc::new(a))
        } else {
            None
        };
        let pool = TranscriptionPool::start(
            engine.clone(),
            self.cfg.server.workers,
            self.cfg.server.queue,
        )?;
        // The jobs' tables live in the archive's file, beside (never inside) its tables.
        // With the archive off nothing is written to disk, jobs included: they need its file,
        // and its copy of each result is what keeps a job from being stored twice.
        if self.cfg.jobs.enabled && !self.cfg.archive.enabled {
            tracing::info!("memo jobs are off because the archive is (archive.enabled = false)");
        }
        let jobs = if self.cfg.jobs.enabled && self.cfg.archive.enabled {
            let j = jobs::Jobs::open(&self.cfg).map_err(crate::Error::InvalidInput)?;
            Some(Arc::new(j))
        } else {
            None
        };
        let _ = self.loaded.set(Loaded {
            engine,
            pool,
            archive,
            jobs: jobs.clone(),
        });
        if let Some(j) = jobs {
            j.start(self.me.clone(), &self.cfg)
                .map_err(crate::Error::InvalidInput)?;
        }
        Ok(())
    }

    /// The engine and workers, or `not_ready`.
    pub fn get(&self) -> Result<&Loaded, ApiError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(
                ApiError::new(Code::NotReady, "the service is shutting down").retry_after(5),
            );
        }
        self.loaded.get().ok_or_else(|| {
            ApiError::new(
                Code::NotReady,
                "the service is starting: models are loading",
            )
            .retry_after(2)
        })
    }

    /// Count a request being handled until the returned guard drops.
    fn count_request(&self) -> Counted<'_> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        Counted(&self.requests)
    }

    /// An upload slot, if one is free, held until the upload's body is complete.
    fn begin_upload(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.uploads.clone().try_acquire_owned().ok()
    }

    pub fn uploads_in_progress(&self) -> usize {
        self.cfg
            .server
            .max_uploads
            .saturating_sub(self.uploads.available_permits())
    }

    pub fn requests_in_flight(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Count a request of `caller` in flight; `None` when the caller is over its limit.
    fn enter(&self, caller: &auth::CallerId) -> Option<InFlight<'_>> {
        // An open API has no keys to limit: its callers are one anonymous caller.
        let limit = if self.cfg.server.api_keys.is_empty() {
            0
        } else {
            self.cfg.server.per_key_inflight
        };
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(*caller).or_default();
        if limit > 0 && *n >= limit {
            return None;
        }
        *n += 1;
        Some(InFlight {
            state: self,
            caller: *caller,
        })
    }
}

/// A request counted as being handled until dropped.
struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request counted against its caller's in-flight limit until dropped.
struct InFlight<'a> {
    state: &'a AppState,
    caller: auth::CallerId,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut map = self
            .state
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.caller) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.caller);
            }
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, Router::new())
}

/// The API with `extra` routes beside it, under the same per-request handling (ids, time
/// limit, panics, JSON errors, metrics).
pub fn router_with(state: Arc<AppState>, extra: Router<Arc<AppState>>) -> Router {
    let timeout = Duration::from_secs(state.cfg.server.request_timeout_s);
    Router::new()
        .route("/", get(console::index))
        .route("/console/{*file}", get(console::asset))
        .route("/v1/memos", post(routes::memos).get(memos::list))
        .route("/v1/memos/export", get(memos::export))
        .route("/v1/memos/blind-spots", get(memos::blind_spots))
        .route("/v1/memos/retag", post(memos::retag))
        .route(
            "/v1/memos/{id}",
            get(memos::get_one).delete(memos::delete_one),
        )
        .route("/v1/memos/{id}/review", post(memos::review))
        .route("/v1/memos/{id}/audio", get(memos::audio))
        .route("/v1/customers/{id}/memos", delete(memos::delete_customer))
        .route("/v1/metrics/sales", get(sales::sales))
        .route("/v1/jobs", post(jobs::submit))
        .route("/v1/jobs/{id}", get(jobs::get_one))
        .route("/v1/webhooks/dead", get(jobs::dead))
        .route("/v1/webhooks/dead/{event_id}/retry", post(jobs::retry_dead))
        .route("/v1/tag", post(routes::tag))
        .route("/v1/tag/batch", post(routes::tag_batch))
        .route("/v1/library", get(routes::library))
        .route("/v1/library/reload", post(routes::reload))
        .route("/v1/needs", get(routes::needs))
        .route("/v1/needs/{id}", get(routes::need))
        .route("/v1/actions", get(routes::actions))
        .route("/v1/packs", get(routes::packs))
        .route("/v1/eval", post(routes::eval))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/openapi.json", get(openapi::spec))
        .merge(extra)
        .fallback(|| async { ApiError::new(Code::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                Code::MethodNotAllowed,
                "this route does not accept that method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            (state.clone(), timeout),
            request::observe,
        ))
        .with_state(state)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: no new requests; finishing the ones in flight");
}
