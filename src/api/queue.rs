//! Transcription runs on a fixed pool of worker threads sharing a pool of whisper states (see
//! [`crate::asr::StatePool`]), behind a bounded number of slots (workers + queue). A request that finds no free slot is told to
//! come back later at once; a client that goes away gives its slot back immediately (the slot is
//! held by the waiting request, and the worker skips jobs nobody waits for).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};
use crate::pipeline::{Engine, MemoMeta};
use crate::result::MemoResult;

struct Job {
    bytes: Bytes,
    meta: MemoMeta,
    /// The request the memo came with, for the log line of a panic.
    ctx: Option<super::panics::RequestContext>,
    reply: oneshot::Sender<Result<MemoResult>>,
}

pub struct TranscriptionPool {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    slots: Arc<Semaphore>,
    capacity: usize,
    workers: usize,
    waiting: Arc<AtomicUsize>,
    busy: Arc<AtomicUsize>,
    /// Exponential moving average of a job's processing time, in milliseconds.
    avg_ms: Arc<AtomicUsize>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl TranscriptionPool {
    /// Start `workers` threads and create the shared whisper states now, so the first request is
    /// warm.
    pub fn start(engine: Arc<Engine>, workers: usize, queue: usize) -> Result<TranscriptionPool> {
        let speech = engine
            .speech()
            .ok_or_else(|| Error::ModelUnavailable("speech models are not loaded".into()))?;
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let waiting = Arc::new(AtomicUsize::new(0));
        let busy = Arc::new(AtomicUsize::new(0));
        let avg_ms = Arc::new(AtomicUsize::new(3000));
        let mut handles = Vec::new();
        // All workers share the states: a memo alone uses every core, concurrent memos one each.
        let states = speech.state_pool(
            workers.max(1) * engine.config().asr.threads.max(1),
            waiting.clone(),
        )?;
        for i in 0..workers.max(1) {
            let mut worker = speech.shared_worker(states.clone());
            let (engine, rx, waiting, busy, avg_ms) = (
                engine.clone(),
                rx.clone(),
                waiting.clone(),
                busy.clone(),
                avg_ms.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("transcribe-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
                        Ok(job) => job,
                        Err(_) => return, // pool shut down
                    };
                    waiting.fetch_sub(1, Ordering::SeqCst);
                    if job.reply.is_closed() {
                        continue; // the client went away while queued
                    }
                    busy.fetch_add(1, Ordering::SeqCst);
                    let t = Instant::now();
                    let (bytes, meta) = (job.bytes, job.meta);
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        super::panics::scope(job.ctx, || {
                            engine.process_memo(&mut worker, bytes, meta)
                        })
                    }))
                    .unwrap_or_else(|_| {
                        // The borrowed states went back to the pool while unwinding; whisper
                        // resets a state at the start of every transcription.
                        tracing::error!("transcription panicked; the worker continues");
                        Err(Error::Asr("transcription failed".into()))
                    });
                    let ms = t.elapsed().as_millis() as usize;
                    let old = avg_ms.load(Ordering::Relaxed);
                    avg_ms.store((old * 4 + ms) / 5, Ordering::Relaxed);
                    busy.fetch_sub(1, Ordering::SeqCst);
                    let _ = job.reply.send(result);
                })
                .map_err(Error::Io)?;
            handles.push(handle);
        }
        let capacity = workers.max(1) + queue;
        Ok(TranscriptionPool {
            tx: Mutex::new(Some(tx)),
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            workers: workers.max(1),
            waiting,
            busy,
            avg_ms,
            handles: Mutex::new(handles),
        })
    }

    /// A slot, if one is free right now.
    pub fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// True when every slot is taken.
    pub fn is_full(&self) -> bool {
        self.slots.available_permits() == 0
    }

    /// Seconds until a slot is likely free, for Retry-After.
    pub fn retry_after(&self) -> u64 {
        let avg = self.avg_ms.load(Ordering::Relaxed) as u64;
        let ahead = (self.waiting() + self.busy()) as u64;
        ((avg * ahead / self.workers as u64).div_ceil(1000) / 2).clamp(1, 120)
    }

    /// Run a job in the slot `_permit` holds; dropping this future (client gone) frees the slot.
    pub async fn run(
        &self,
        _permit: OwnedSemaphorePermit,
        bytes: Bytes,
        meta: MemoMeta,
        timeout: Duration,
    ) -> std::result::Result<Result<MemoResult>, Elapsed> {
        self.run_unslotted(bytes, meta, timeout).await
    }

    /// Run a memo job (`/v1/jobs`) without taking one of the synchronous requests' slots: the
    /// job runner decides itself when a worker is free for it (see `api::jobs`).
    pub async fn run_unslotted(
        &self,
        bytes: Bytes,
        meta: MemoMeta,
        timeout: Duration,
    ) -> std::result::Result<Result<MemoResult>, Elapsed> {
        let (reply, rx) = oneshot::channel();
        {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            let Some(tx) = tx.as_ref() else {
                return Ok(Err(Error::ModelUnavailable(
                    "the service is shutting down".into(),
                )));
            };
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let ctx = super::panics::current();
            if tx
                .send(Job {
                    bytes,
                    meta,
                    ctx,
                    reply,
                })
                .is_err()
            {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return Ok(Err(Error::ModelUnavailable(
                    "the transcription workers have stopped".into(),
                )));
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Ok(Err(Error::Asr("the transcription worker stopped".into()))),
            Err(_) => Err(Elapsed),
        }
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Stop taking jobs, let the workers finish what they have, and join them.
    pub fn shutdown(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let handles: Vec<_> = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        for h in handles {
            let _ = h.join();
        }
    }
}

/// The request took longer than the configured limit.
#[derive(Debug)]
pub struct Elapsed;
