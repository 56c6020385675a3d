//! The CRM of the jobs tests: a small axum server on loopback that checks every webhook's
//! signature with its own HMAC (not needtag's code), records every request, and answers 500 to
//! its first `fail_first` requests and while `failing` is set, 200 otherwise.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The webhook secret the tests configure.
pub const SECRET: &str = "webhook-secret-for-tests-0001";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub event_id: String,
    pub job_id: String,
    pub status: String,
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub answered: u16,
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub fail_first: usize,
    pub failing: Arc<AtomicBool>,
    pub seen: Arc<AtomicUsize>,
    pub got: Arc<Mutex<Vec<Received>>>,
    pub bad_signatures: Arc<Mutex<Vec<String>>>,
}

fn expected_signature(t: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

async fn hook(
    axum::extract::State(r): axum::extract::State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let sig = headers
        .get("needtag-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let parts: HashMap<&str, &str> = sig.split(',').filter_map(|p| p.split_once('=')).collect();
    let t = parts.get("t").copied().unwrap_or("");
    let fresh = t
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
    if !fresh || parts.get("v1").copied() != Some(expected_signature(t, &body).as_str()) {
        r.bad_signatures.lock().unwrap().push(sig);
        return StatusCode::UNAUTHORIZED;
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let event_id = v["event_id"].as_str().unwrap_or("").to_string();
    assert_eq!(
        headers
            .get("needtag-event-id")
            .and_then(|h| h.to_str().ok()),
        Some(event_id.as_str())
    );
    let n = r.seen.fetch_add(1, Ordering::SeqCst);
    let answered = if n < r.fail_first || r.failing.load(Ordering::SeqCst) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    r.got.lock().unwrap().push(Received {
        event_id,
        job_id: v["job_id"].as_str().unwrap_or("").to_string(),
        status: v["status"].as_str().unwrap_or("").to_string(),
        body: body.to_vec(),
        answered: answered.as_u16(),
    });
    answered
}

/// Serve `r` on a free loopback port; the URL to configure as `webhook.url`.
pub async fn start_receiver(r: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_receiver(r, listener)
}

/// Serve `r` on `listener` (a port a CRM comes back on); the URL of its hook.
pub fn serve_receiver(r: Receiver, listener: tokio::net::TcpListener) -> String {
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(r);
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook")
}
