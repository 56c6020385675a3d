//! ONNX Runtime, shared by the VAD (audio stage) and the sentence encoder (matcher stage).
//!
//! The runtime is a shared library prepared from the `onnxruntime` wheel and loaded once per
//! process. `ort` sessions need `&mut` to run, so each model is a small pool of sessions that
//! concurrent callers share without waiting on each other.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};

use ort::session::Session;

use crate::error::{Error, Result};

static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> =
    OnceLock::new();

/// Load ONNX Runtime from `lib` (first call wins; later calls reuse it).
pub fn init(lib: &Path) -> Result<()> {
    environment(lib).map(|_| ())
}

fn environment(lib: &Path) -> Result<&'static ort::environment::Environment> {
    ENVIRONMENT
        .get_or_init(|| {
            if !lib.is_file() {
                return Err(format!(
                    "ONNX Runtime library {} is missing; run `python3 models/prepare.py` (or .ci/setup)",
                    lib.display()
                ));
            }
            let builder = ort::init_from(lib).map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", lib.display()))?;
            builder.with_name("needtag").build().map_err(|e| format!("ONNX Runtime environment: {e}"))
        })
        .as_ref()
        .map_err(|e| Error::ModelUnavailable(e.clone()))
}

/// A few sessions of one model.
pub struct SessionPool {
    sessions: Vec<Mutex<Session>>,
}

impl SessionPool {
    /// Load `model` `size` times with `threads` intra-op threads each ([`init`] must have run).
    pub fn load(model: &Path, size: usize, threads: usize) -> Result<SessionPool> {
        let env = ENVIRONMENT
            .get()
            .and_then(|e| e.as_ref().ok())
            .ok_or_else(|| Error::ModelUnavailable("ONNX Runtime is not loaded".into()))?;
        if !model.is_file() {
            return Err(Error::ModelUnavailable(format!(
                "model {} is missing; run `python3 models/prepare.py` (or .ci/setup)",
                model.display()
            )));
        }
        let bad = |e: &dyn std::fmt::Display| {
            Error::ModelUnavailable(format!(
                "cannot load {}: {e}; run `python3 models/prepare.py` to re-create it",
                model.display()
            ))
        };
        let mut sessions = Vec::with_capacity(size.max(1));
        for _ in 0..size.max(1) {
            // No arena: what a run allocates goes back to the process allocator, where whisper's
            // buffers can reuse it, instead of staying reserved for the next text.
            let session = Session::builder(env)
                .map_err(|e| bad(&e))?
                .with_intra_threads(threads.max(1))
                .map_err(|e| bad(&e))?
                .with_inter_threads(1)
                .map_err(|e| bad(&e))?
                .with_execution_providers([ort::ep::CPU::default()
                    .with_arena_allocator(false)
                    .build()])
                .map_err(|e| bad(&e))?
                .with_memory_pattern(false)
                .map_err(|e| bad(&e))?
                .commit_from_file(model)
                .map_err(|e| bad(&e))?;
            sessions.push(Mutex::new(session));
        }
        Ok(SessionPool { sessions })
    }

    /// A session: a free one if any, else wait for the first.
    pub fn get(&self) -> MutexGuard<'_, Session> {
        for s in &self.sessions {
            if let Ok(guard) = s.try_lock() {
                return guard;
            }
        }
        self.sessions[0]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
