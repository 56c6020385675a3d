//! Webhook delivery: each finished job's event is POSTed to the configured URL, signed, and
//! retried with exponential backoff and jitter until the receiver answers 2xx or
//! `webhook.max_attempts` is reached; then it is parked as dead for an admin to see and resend.
//!
//! The signature: `Needtag-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! The event id is in the body (`event_id`) and in `Needtag-Event-Id`; it is the same on every
//! attempt, so a receiver that has seen it can answer 2xx and ignore the repeat. Delivery is at
//! least once: a process killed after the receiver answered but before the answer was recorded
//! sends the event again.
//!
//! Delivery runs on its own task with a bounded number of requests at once: a slow or
//! unreachable receiver delays only other events, never transcription.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::Notify;

use super::{Delivery, Outbox};
use crate::config::WebhookConfig;

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "Needtag-Signature";
/// The event id header's name.
pub const EVENT_ID_HEADER: &str = "Needtag-Event-Id";

/// Hex HMAC-SHA256 of `"<t>.<body>"` under `secret`.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The `Needtag-Signature` value for `body` sent at `t` (unix seconds).
pub fn signature_header(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", sign(secret, t, body))
}

/// Check a `Needtag-Signature` value: a `v1` that matches (compared in constant time) and a
/// timestamp within `tolerance_s` of `now` (unix seconds).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_s: i64) -> bool {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v.to_string()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now - t).abs() > tolerance_s {
        return false;
    }
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return false;
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    sigs.iter().any(|s| {
        hex::decode(s)
            .map(|given| {
                use subtle::ConstantTimeEq;
                given.len() == expected.len() && bool::from(given.ct_eq(&expected))
            })
            .unwrap_or(false)
    })
}

/// The wait before attempt `n + 1` after `n` failed attempts: `backoff_ms × 2^(n−1)`, at most
/// `max_backoff_ms`, then a random point in its upper half (so receivers coming back are not
/// hit by every sender at once).
pub fn backoff(cfg: &WebhookConfig, failed: u32) -> Duration {
    let exp = failed.saturating_sub(1).min(30);
    let full = cfg
        .backoff_ms
        .saturating_mul(1u64 << exp)
        .min(cfg.max_backoff_ms)
        .max(1);
    Duration::from_millis(full / 2 + fastrand::u64(0..=full - full / 2))
}

/// How long an event handed to a sender stays with it in a shared outbox (ms): twice its
/// attempt's timeout and 5 s, so that another sender takes it only once this one has given up
/// (or died: then the event waits this long).
pub fn lease_ms(cfg: &WebhookConfig) -> u64 {
    cfg.timeout_ms.saturating_mul(2).saturating_add(5_000)
}

/// Counters for `/metrics`, since start.
#[derive(Debug, Default)]
pub struct Stats {
    pub delivered: AtomicU64,
    /// Attempts that failed (an error status, a timeout, no connection).
    pub failed_attempts: AtomicU64,
    /// Events parked as dead.
    pub dead: AtomicU64,
    /// Attempts beyond the first (a retry of an event).
    pub retries: AtomicU64,
}

/// Delivers the outbox's events on a task of its own.
pub struct Sender {
    cfg: WebhookConfig,
    url: reqwest::Url,
    client: reqwest::Client,
    outbox: Arc<dyn Outbox>,
    stats: Arc<Stats>,
    wake: Arc<Notify>,
}

/// What one attempt got.
enum Attempt {
    Delivered(u16),
    Failed(String),
}

impl Sender {
    /// A sender for `cfg` (whose `url` must be set); None when no URL is configured.
    pub fn new(
        cfg: &WebhookConfig,
        outbox: Arc<dyn Outbox>,
        stats: Arc<Stats>,
        wake: Arc<Notify>,
    ) -> Result<Option<Sender>, String> {
        let Some(url) = cfg.url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let url = reqwest::Url::parse(url).map_err(|e| format!("webhook.url: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("needtag/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("webhook client: {e}"))?;
        Ok(Some(Sender {
            cfg: cfg.clone(),
            url,
            client,
            outbox,
            stats,
            wake,
        }))
    }

    async fn attempt(&self, d: &Delivery) -> Attempt {
        let t = Utc::now().timestamp();
        let sig = signature_header(self.cfg.secret.as_bytes(), t, d.body.as_bytes());
        let sent = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sig)
            .header(EVENT_ID_HEADER, &d.event_id)
            .body(d.body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => Attempt::Delivered(resp.status().as_u16()),
            Ok(resp) => Attempt::Failed(format!("HTTP {}", resp.status().as_u16())),
            Err(e) if e.is_timeout() => {
                Attempt::Failed(format!("no answer within {} ms", self.cfg.timeout_ms))
            }
            Err(e) if e.is_connect() => Attempt::Failed("could not connect".into()),
            // Without the URL: it may carry credentials, and this text is stored and listed.
            Err(e) => Attempt::Failed(format!("request failed: {}", e.without_url())),
        }
    }

    /// Record one attempt's outcome.
    fn record(&self, d: &Delivery, outcome: Attempt) {
        if d.attempts > 0 {
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        let stored = match outcome {
            Attempt::Delivered(status) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                self.outbox.delivered(&d.event_id, status)
            }
            Attempt::Failed(why) => {
                self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                let made = d.attempts + 1;
                let retry_at = (made < self.cfg.max_attempts).then(|| {
                    Utc::now()
                        + chrono::Duration::from_std(backoff(&self.cfg, made))
                            .unwrap_or_else(|_| chrono::Duration::seconds(60))
                });
                if retry_at.is_none() {
                    self.stats.dead.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(event_id = %d.event_id, job_id = %d.job_id, attempts = made, error = %why,
                        "webhook event parked as dead after its last attempt");
                } else {
                    tracing::info!(event_id = %d.event_id, attempts = made, error = %why, "webhook attempt failed; will retry");
                }
                self.outbox.attempt_failed(&d.event_id, &why, retry_at)
            }
        };
        if let Err(e) = stored {
            tracing::error!(event_id = %d.event_id, "webhook delivery state not recorded: {e}");
        }
    }

    /// Deliver due events until the process ends.
    pub async fn run(self: Arc<Self>) {
        let limit = self.cfg.concurrency.max(1);
        loop {
            let outbox = self.outbox.clone();
            let due = tokio::task::spawn_blocking(move || outbox.due(Utc::now(), limit))
                .await
                .unwrap_or_else(|_| Ok(Vec::new()));
            let due = match due {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!("webhook outbox unreadable: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if due.is_empty() {
                let outbox = self.outbox.clone();
                let next: Option<DateTime<Utc>> =
                    tokio::task::spawn_blocking(move || outbox.next_due())
                        .await
                        .ok()
                        .and_then(|r| r.ok())
                        .flatten();
                let wait = next
                    .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                    .unwrap_or(Duration::from_secs(1))
                    .clamp(Duration::from_millis(10), Duration::from_secs(1));
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            // Up to `concurrency` attempts at once; the next round starts when they are all in.
            let mut set = tokio::task::JoinSet::new();
            for d in due {
                let me = self.clone();
                set.spawn(async move {
                    let outcome = me.attempt(&d).await;
                    tokio::task::spawn_blocking(move || me.record(&d, outcome)).await
                });
            }
            while set.join_next().await.is_some() {}
        }
    }
}
