//! What an adversarial client can do to a real server on loopback (issue 17): one test per
//! class of defect, each with bounded time and request counts. Every test failed against the
//! service before the hardening and passes after it.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::server::{client, Server, ADMIN_KEY};
use needtag::config::{ApiKey, Config, Scope};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Two tag keys without names (as a config file may have them) and a named admin key.
const KEY_A: &str = "adversarial-key-a-000001";
const KEY_B: &str = "adversarial-key-b-000002";

/// Everything the servers of this binary log, for the tests that check log lines.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        // Whatever reaches the process's panic hook (the server installs its own over it) is
        // kept too, to see that a request's panic never gets here with its message.
        let hooked = buf.clone();
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            hooked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(format!("DEFAULT PANIC HOOK: {message}\n").as_bytes());
            default(info);
        }));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,needtag=info")
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .try_init();
        buf
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

fn keys() -> Vec<ApiKey> {
    let key = |k: &str, scopes: Vec<Scope>, name: &str| ApiKey {
        key: k.into(),
        scopes,
        name: name.into(),
    };
    vec![
        key(KEY_A, vec![Scope::Tag], ""),
        key(KEY_B, vec![Scope::Tag], ""),
        key(ADMIN_KEY, vec![Scope::Tag, Scope::Admin], "ops"),
    ]
}

/// A configuration of this binary's servers: the keys above, a library copy, one worker.
fn config(tag: &str) -> Config {
    let mut cfg = common::server::config(tag);
    cfg.server.api_keys = keys();
    cfg
}

/// A route that panics with a message quoting "memo text", to see what the log keeps of it.
async fn panicking() -> &'static str {
    let memo = String::from("客户说价格太高");
    panic!("failed on {memo}");
}

/// The server most tests share (audio limited to 20 s).
fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        logs();
        let mut cfg = config("adv-shared");
        cfg.audio.max_seconds = 20.0;
        cfg.server.queue = 4;
        Server::start_with(
            cfg,
            true,
            axum::Router::new().route("/test/panic", axum::routing::get(panicking)),
        )
    })
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn addr(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_string()
}

/// A response read off a socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The documented error: this status, JSON, and this code.
    fn assert_error(&self, status: u16, code: &str, what: &str) {
        assert_eq!(self.status, status, "{what}: {self:?}");
        assert!(
            self.head
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{what}: not JSON: {self:?}"
        );
        assert_eq!(self.json()["error"]["code"], code, "{what}: {self:?}");
    }
}

fn parse_response(bytes: &[u8]) -> Option<Raw> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut body = bytes[end + 4..].to_vec();
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    if let Some(n) = length {
        if body.len() < n {
            return None;
        }
        body.truncate(n);
    }
    Some(Raw { status, head, body })
}

/// Send `request` as bytes and read one response (None: closed or `wait` passed without one).
async fn exchange(addr: &str, request: &[u8], wait: Duration) -> Option<Raw> {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let _ = sock.write_all(request).await;
    read_response(&mut sock, wait).await
}

async fn read_response(sock: &mut TcpStream, wait: Duration) -> Option<Raw> {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(r) = parse_response(&got) {
            return Some(r);
        }
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return parse_response(&got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A client that sends `head`, then one byte of `trickle` per `every` until it is answered (or
/// `max` has passed): the answer, and when it came.
fn trickler(
    addr: String,
    head: Vec<u8>,
    every: Duration,
    max: Duration,
) -> tokio::task::JoinHandle<Option<(Raw, Duration)>> {
    tokio::spawn(async move {
        let started = Instant::now();
        let sock = TcpStream::connect(&addr).await.ok()?;
        let (mut rd, mut wr) = sock.into_split();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                if let Some(r) = parse_response(&got) {
                    return Some((r, started.elapsed()));
                }
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return parse_response(&got).map(|r| (r, started.elapsed())),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        let mut i = 0;
        while !reader.is_finished() && started.elapsed() < max {
            let byte = if i < head.len() { head[i] } else { b'x' };
            if wr.write_all(&[byte]).await.is_err() {
                break;
            }
            i += 1;
            if i >= head.len() || !head.ends_with(b"\r\n\r\n") {
                tokio::time::sleep(every).await;
            }
        }
        drop(wr);
        tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .ok()?
            .ok()?
    })
}

/// Aborts its tasks when dropped: declared after a test's server, so that a failing test's
/// clients go away before the server is stopped and waited for.
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// Removes files and empty directories when dropped, so that a failing test leaves the shared
/// library as it found it.
struct RemoveOnDrop(Vec<std::path::PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p).or_else(|_| std::fs::remove_dir(p));
        }
    }
}

/// Head of an upload that declares a megabyte, for the tricklers.
fn upload_head(key: &str) -> Vec<u8> {
    format!(
        "POST /v1/memos HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: audio/wav\r\nContent-Length: 1000000\r\n\r\n"
    )
    .into_bytes()
}

async fn metric(s: &Server, name: &str) -> f64 {
    let text = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .parse()
        .unwrap()
}

async fn tag(key: &str, body: Value) -> reqwest::Response {
    client()
        .post(shared().url("/v1/tag"))
        .header("authorization", bearer(key))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn wav(parts: usize) -> Vec<u8> {
    common::concat_wav(&vec!["audio/thchs30_test.wav"; parts], 0)
}

/// An 8-bit mono WAV of `frames` samples declaring `rate`.
fn tiny_wav(rate: u32, frames: u32) -> Vec<u8> {
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + frames).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&8u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&frames.to_le_bytes());
    w.extend((0..frames).map(|i| (128 + (i % 7) * 10) as u8));
    w
}

/// Reloads of the shared library are one test's at a time.
fn reload_lock() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

async fn reload(timeout: Duration) -> reqwest::Result<(u16, Value)> {
    let resp = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap()
        .post(shared().url("/v1/library/reload"))
        .header("authorization", bearer(ADMIN_KEY))
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

// ------------------------------------------------------------------------------------------

/// 1. Any number in a date or duration phrase, on any recording date: a 200, never a 500.
#[tokio::test]
async fn numbers_in_date_phrases_never_give_a_500() {
    shared();
    let texts = [
        "999999999天内派工程师",
        "9999999999999999999天后再来",
        "4294967297个月内签合同",
        "99999999个工作日内回复",
        "99999周内上门",
        "4294967297月4294967297日前交货",
        "九千九百九十九万天内安排培训",
        "2147483648个星期以后复查",
    ];
    for text in texts {
        for recorded_at in [
            None,
            Some("9999-12-31T23:59:59+08:00"),
            Some("0001-01-01T00:00:00+08:00"),
        ] {
            let resp = tag(
                KEY_A,
                json!({"text": text, "recorded_at": recorded_at, "mode": "keyword"}),
            )
            .await;
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            assert_eq!(status, 200, "{text} at {recorded_at:?}: {body}");
        }
    }
    let items: Vec<Value> = texts.iter().map(|t| json!({"text": t})).collect();
    let batch: Value = client()
        .post(shared().url("/v1/tag/batch"))
        .header("authorization", bearer(KEY_A))
        .json(&json!({"items": items, "mode": "keyword"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for r in batch["results"].as_array().unwrap() {
        assert!(r["error"].is_null(), "{r}");
    }
}

/// 2. Library files that cannot be library files are refused by name, never a 500 or a hang.
#[tokio::test]
async fn reload_names_unreadable_files_and_never_hangs() {
    let s = shared();
    let _one = reload_lock().lock().await;
    let needs = s.library_dir.join("needs");
    let _cleanup = RemoveOnDrop(
        ["zz_bytes.toml", "zz_dir.toml", "zz_pipe.toml"]
            .iter()
            .map(|n| needs.join(n))
            .collect(),
    );
    let refused = |name: &'static str, what: &'static str| async move {
        let started = Instant::now();
        let (status, body) = reload(Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{what}: reload did not answer: {e}"));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            (status, &body["error"]["code"]),
            (422, &json!("invalid_library")),
            "{what}: {body}"
        );
        let file = format!("needs/{name}");
        assert!(
            body["error"]["problems"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["file"] == file.as_str()),
            "{what}: {body}"
        );
    };
    std::fs::write(needs.join("zz_bytes.toml"), b"[[need]]\nid = \"x\xff\"\n").unwrap();
    refused("zz_bytes.toml", "a byte that is not UTF-8").await;
    std::fs::remove_file(needs.join("zz_bytes.toml")).unwrap();
    std::fs::create_dir(needs.join("zz_dir.toml")).unwrap();
    refused("zz_dir.toml", "a directory").await;
    std::fs::remove_dir(needs.join("zz_dir.toml")).unwrap();
    let fifo = std::ffi::CString::new(needs.join("zz_pipe.toml").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo only creates a file system entry from a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    refused("zz_pipe.toml", "a FIFO").await;
    std::fs::remove_file(needs.join("zz_pipe.toml")).unwrap();
    let (status, body) = reload(Duration::from_secs(60)).await.unwrap();
    assert_eq!(status, 200, "{body}");
}

/// 3. Slow uploads hold upload slots, not transcription slots: under 6 and then 20 trickling
/// uploads of one key, another key's memo gets a 200, and /metrics and /readyz show the held
/// slots. The trickling ones end with 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_do_not_take_the_transcription_slots() {
    logs();
    let s = Server::start(config("adv-slow"), true);
    let started = Instant::now();
    let mut tricklers: Vec<_> = (0..6)
        .map(|_| {
            trickler(
                addr(&s),
                upload_head(KEY_A),
                Duration::from_secs(1),
                Duration::from_secs(40),
            )
        })
        .collect();
    let memo = || async {
        client()
            .post(s.url("/v1/memos"))
            .header("authorization", bearer(KEY_B))
            .header("content-type", "audio/wav")
            .body(common::fixture_bytes("audio/aishell_S0724W0121.wav"))
            .send()
            .await
            .unwrap()
    };
    let mut _clients = AbortOnDrop(tricklers.iter().map(|t| t.abort_handle()).collect());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resp = memo().await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    assert_eq!(
        metric(&s, "needtag_uploads_in_progress").await,
        4.0,
        "held by 6 tricklers"
    );
    tricklers.extend((0..20).map(|_| {
        trickler(
            addr(&s),
            upload_head(KEY_A),
            Duration::from_secs(1),
            Duration::from_secs(40),
        )
    }));
    _clients
        .0
        .extend(tricklers[6..].iter().map(|t| t.abort_handle()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resp = memo().await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    assert_eq!(
        metric(&s, "needtag_uploads_in_progress").await,
        4.0,
        "held by 26 tricklers"
    );
    let ready: Value = client()
        .get(s.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["uploads_in_progress"], 4, "{ready}");
    let mut by_status = std::collections::BTreeMap::new();
    for t in tricklers {
        let (raw, at) = t.await.unwrap().expect("every trickler is answered");
        let code = raw.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            at < Duration::from_secs(25),
            "answered after {at:?}: {raw:?}"
        );
        *by_status.entry((raw.status, code)).or_insert(0) += 1;
    }
    let expect = std::collections::BTreeMap::from([
        ((408, "request_timeout".to_string()), 4),
        ((429, "too_many_requests".to_string()), 22),
    ]);
    assert_eq!(by_status, expect);
    assert_eq!(metric(&s, "needtag_uploads_in_progress").await, 0.0);
    assert!(started.elapsed() < Duration::from_secs(40));
}

/// 4. A request head trickled a byte at a time is answered 408 within the header timeout.
#[tokio::test]
async fn request_heads_must_arrive_within_the_header_timeout() {
    let s = shared();
    let t = trickler(
        addr(s),
        b"GET /healthz HTTP/1.1\r\nHost: example\r\nX-Slow: ".to_vec(),
        Duration::from_millis(300),
        Duration::from_secs(30),
    );
    let (raw, at) = t.await.unwrap().expect("the server answers");
    raw.assert_error(408, "request_timeout", "trickled head");
    assert!(at < Duration::from_secs(14), "after {at:?}");
}

/// 5. /v1/eval obeys the text limit of every route and its own memo-count and body limits.
#[tokio::test]
async fn eval_obeys_the_text_limit_and_its_own_limits() {
    let s = shared();
    let eval = |jsonl: String| async move {
        let started = Instant::now();
        let resp = client()
            .post(s.url("/v1/eval"))
            .header("authorization", bearer(KEY_A))
            .json(&json!({"jsonl": jsonl, "mode": "keyword"}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        (status, body, started.elapsed())
    };
    let long = json!({"id": "m1", "text": "客户说价格太高".repeat(715), "needs": []}).to_string();
    let (status, body, took) = eval(long).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!("text_too_long")),
        "{body}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    let many: Vec<String> = (0..1001)
        .map(|i| json!({"id": format!("m{i}"), "text": "库存还够", "needs": []}).to_string())
        .collect();
    let (status, body, took) = eval(many.join("\n")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!("batch_too_large")),
        "{body}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Each text within the limit, but more characters in all than an evaluation may tag.
    let heavy: Vec<String> = (0..21)
        .map(|i| {
            json!({"id": format!("h{i}"), "text": "客户说价格太高".repeat(714), "needs": []})
                .to_string()
        })
        .collect();
    let (status, body, took) = eval(heavy.join("\n")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!("batch_too_large")),
        "{body}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    // A body declared larger than the limit is refused before it is sent.
    let head = format!(
        "POST /v1/eval HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_A}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        2 * 1024 * 1024
    );
    let raw = exchange(&addr(s), head.as_bytes(), Duration::from_secs(3))
        .await
        .expect("answered before the body");
    raw.assert_error(413, "payload_too_large", "declared 2 MiB");
}

/// 6. A batch is bounded in its total characters, not only in its count and each text.
#[tokio::test]
async fn batches_are_bounded_in_total_characters() {
    let s = shared();
    let text = "客户反映价格太高，希望下周三带方案过来，".repeat(250);
    assert_eq!(text.chars().count(), 5000);
    let items: Vec<Value> = (0..11)
        .map(|i| json!({"id": i.to_string(), "text": text}))
        .collect();
    let started = Instant::now();
    let resp = client()
        .post(s.url("/v1/tag/batch"))
        .header("authorization", bearer(KEY_A))
        .json(&json!({"items": items, "mode": "keyword"}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (413, &json!("batch_too_large")),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// 7. A WAV declaring an implausible rate is corrupt audio, refused without inflating memory.
#[tokio::test]
async fn implausible_sample_rates_are_corrupt_audio() {
    let s = shared();
    for (rate, frames) in [(1, 10), (100, 1000), (3_999, 8_000)] {
        let resp = client()
            .post(s.url("/v1/memos"))
            .header("authorization", bearer(KEY_A))
            .header("content-type", "audio/wav")
            .body(tiny_wav(rate, frames))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            (status, &body["error"]["code"]),
            (422, &json!("corrupt_audio")),
            "{rate} Hz: {body}"
        );
    }
}

/// 8. Whatever methods clients send, /metrics keeps a closed set of labels.
#[tokio::test]
async fn metric_labels_come_from_a_closed_set() {
    let s = shared();
    let size = || async {
        client()
            .get(s.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let before = size().await.len();
    let c = client();
    for i in 0..300 {
        let method = reqwest::Method::from_bytes(format!("M{i:039}").as_bytes()).unwrap();
        let resp = c
            .request(method, s.url(&format!("/p{i}")))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error());
    }
    let text = size().await;
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(!text.contains("M0000"), "a client's method became a label");
    assert!(
        text.len() < before + 8 * 1024,
        "/metrics grew from {before} to {} bytes",
        text.len()
    );
}

/// 9. Idempotency entries belong to the API key, not to its (missing) name; a configuration
/// with two keys of one name is refused.
#[tokio::test]
async fn idempotency_belongs_to_the_key_itself() {
    shared();
    let send = |key: &'static str, text: &'static str| async move {
        client()
            .post(shared().url("/v1/tag"))
            .header("authorization", bearer(key))
            .header("idempotency-key", "adversarial-idem-1")
            .json(&json!({"text": text, "mode": "keyword"}))
            .send()
            .await
            .unwrap()
    };
    let a = send(KEY_A, "客户说价格太高").await;
    assert_eq!(a.status(), 200);
    // Another key, same Idempotency-Key and body: its own first use, not A's stored answer.
    let b = send(KEY_B, "客户说价格太高").await;
    assert_eq!(b.status(), 200);
    assert!(
        b.headers().get("idempotency-replayed").is_none(),
        "B got A's response"
    );
    // Another key, same Idempotency-Key, another body: not a reuse of A's.
    let b2 = send(KEY_B, "库存还够，暂时不用补货").await;
    let status = b2.status().as_u16();
    let body: Value = b2.json().await.unwrap();
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("idempotency_key_reused")),
        "B's own earlier use is what a different body conflicts with: {body}"
    );
    let mut cfg = Config::default();
    cfg.server.api_keys = keys();
    cfg.server.api_keys[1].name = "crm".into();
    cfg.server.api_keys[0].name = "crm".into();
    assert!(cfg.validate().is_err(), "two keys named crm were accepted");
}

/// 10. Reloads never overlap (a second one is told 409), and every swap is logged with both
/// versions, also when the client that asked for it has gone.
#[tokio::test]
async fn reloads_are_serialized_and_every_swap_is_logged() {
    let s = shared();
    let _one = reload_lock().lock().await;
    let file = s.library_dir.join("needs").join("pharmacy.toml");
    let change = |word: &str| {
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(
            &file,
            text.replacen("synonyms = [", &format!("synonyms = [\"{word}\", "), 1),
        )
        .unwrap();
    };
    let version = || async {
        client()
            .get(s.url("/v1/library"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = version().await;
    change("对抗测试词一");
    let (a, b) = tokio::join!(
        reload(Duration::from_secs(60)),
        reload(Duration::from_secs(60))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "two overlapping reloads: {a:?} {b:?}");
    let done = if a.0 == 200 { &a.1 } else { &b.1 };
    let refused = if a.0 == 409 { &a.1 } else { &b.1 };
    assert_eq!(refused["error"]["code"], "reload_in_progress");
    assert_eq!(done["previous_version"], before.as_str());
    let after = done["version"].as_str().unwrap().to_string();
    let swap = format!("previous_version={before} version={after}");
    assert!(
        log_text()
            .lines()
            .any(|l| l.contains("library swapped") && l.contains(&swap)),
        "no log line with {swap}"
    );
    // The client leaves at once; the swap still happens and is logged.
    change("对抗测试词二");
    assert!(reload(Duration::from_millis(100)).await.is_err());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut newest = after.clone();
    while Instant::now() < deadline && newest == after {
        tokio::time::sleep(Duration::from_millis(200)).await;
        newest = version().await;
    }
    assert_ne!(newest, after, "the abandoned reload did not swap");
    let swap = format!("previous_version={after} version={newest}");
    assert!(
        log_text()
            .lines()
            .any(|l| l.contains("library swapped") && l.contains(&swap)),
        "no log line with {swap}"
    );
}

/// 11. Whatever is wrong with a request, the answer is the documented JSON error.
#[tokio::test]
async fn every_refusal_is_the_documented_json_error() {
    let s = shared();
    let many_headers: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(String, u16, &str)> = vec![
        ("POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}".into(), 400, "invalid_request"),
        ("POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2\r\n\r\n{}".into(), 400, "invalid_request"),
        ("POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Length: two\r\n\r\n".into(), 400, "invalid_request"),
        ("POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n".into(), 400, "invalid_request"),
        ("POST /v1/tag HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".into(), 400, "invalid_request"),
        (format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(40_000)), 431, "headers_too_large"),
        (format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"), 431, "headers_too_large"),
        ("GET /a b HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400, "invalid_request"),
        ("GET /v1/needs/%ff HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400, "invalid_request"),
        ("POST /v1/memos?rep_id=a&rep_id=b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".into(), 401, "unauthorized"),
        (format!("POST /v1/memos?rep_id=a&rep_id=b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY_A}\r\nContent-Type: audio/wav\r\nContent-Length: 0\r\n\r\n"), 400, "invalid_request"),
        ("BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n".into(), 405, "method_not_allowed"),
        ("GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n".into(), 404, "not_found"),
    ];
    for (request, status, code) in cases {
        let what: String = request.chars().take(60).collect();
        let raw = exchange(&addr(s), request.as_bytes(), Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{what:?}: no response"));
        raw.assert_error(status, code, &what);
    }
}

/// 12. Under more parallel uploads than slots, every client reads its answer (503 with
/// Retry-After, or 200): none sees its connection reset while it is still sending.
#[tokio::test]
async fn overloaded_uploads_read_their_503_instead_of_a_reset() {
    logs();
    let mut cfg = common::config();
    cfg.library = Some(common::server::library_copy("adv-overload"));
    cfg.server.workers = 1;
    cfg.server.queue = 1;
    let s = Server::start(cfg, true);
    // 25 s of speech and then 6 MB the WAV's header does not count: a client still sending
    // when it is answered.
    let mut body = wav(3);
    body.resize(body.len() + 6 * 1024 * 1024, 0);
    let body = bytes::Bytes::from(body);
    let mut counts = std::collections::BTreeMap::new();
    let mut errors = Vec::new();
    for _round in 0..2 {
        let tasks: Vec<_> = (0..30)
            .map(|_| {
                let req = client()
                    .post(s.url("/v1/memos"))
                    .header("content-type", "audio/wav")
                    .body(body.clone());
                tokio::spawn(async move {
                    match req.send().await {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let retry = r.headers().get("retry-after").is_some();
                            let body: Value = r.json().await.unwrap_or(Value::Null);
                            Ok((status, retry, body))
                        }
                        Err(e) => Err(format!("{e:?}")),
                    }
                })
            })
            .collect();
        for t in tasks {
            match t.await.unwrap() {
                Ok((200, _, _)) => *counts.entry("200").or_insert(0) += 1,
                Ok((503, retry, body)) => {
                    assert!(retry, "a 503 without Retry-After");
                    assert_eq!(body["error"]["code"], "busy", "{body}");
                    *counts.entry("503").or_insert(0) += 1;
                }
                Ok((status, _, body)) => panic!("unexpected {status}: {body}"),
                Err(e) => errors.push(e),
            }
        }
    }
    assert!(
        errors.is_empty(),
        "{} of 60 saw no answer: {errors:?}",
        errors.len()
    );
    assert!(counts.get("200").is_some_and(|&n| n >= 2), "{counts:?}");
}

/// 13. Too long audio is "longer than" the limit, with the length where the file declares it.
#[tokio::test]
async fn too_long_audio_says_longer_than_the_limit() {
    let s = shared();
    for parts in [3, 6] {
        let audio = wav(parts);
        let seconds = (audio.len() - 44) as f64 / 32_000.0;
        let resp = client()
            .post(s.url("/v1/memos"))
            .header("authorization", bearer(KEY_A))
            .header("content-type", "audio/wav")
            .body(audio)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            (status, &body["error"]["code"]),
            (413, &json!("audio_too_long")),
            "{body}"
        );
        assert_eq!(
            body["error"]["message"],
            format!("audio is longer than 20 s (it is {seconds:.1} s long)"),
            "{body}"
        );
    }
}

/// 14. A form that sends the audio twice, another file, or a field twice is refused naming it.
#[tokio::test]
async fn duplicate_multipart_fields_are_refused_by_name() {
    let s = shared();
    let audio =
        || Part::bytes(common::fixture_bytes("audio/aishell_S0724W0121.wav")).file_name("m.wav");
    let cases: Vec<(Form, &str)> = vec![
        (
            Form::new().part("audio", audio()).part("audio", audio()),
            "\"audio\"",
        ),
        (
            Form::new().part("audio", audio()).part("file", audio()),
            "\"file\"",
        ),
        (
            Form::new()
                .part("audio", audio())
                .part("attachment", audio()),
            "\"attachment\"",
        ),
        (
            Form::new()
                .part("audio", audio())
                .text("rep_id", "r-1")
                .text("rep_id", "r-2"),
            "\"rep_id\"",
        ),
    ];
    for (form, field) in cases {
        let resp = client()
            .post(s.url("/v1/memos"))
            .header("authorization", bearer(KEY_A))
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("invalid_request")),
            "{field}: {body}"
        );
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{field}: {body}"
        );
    }
}

/// 15a. During the graceful drain /healthz answers and /readyz says not_ready, and a client
/// trickling a request head does not delay the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_during_the_drain() {
    logs();
    let mut cfg = common::config();
    cfg.library = Some(common::server::library_copy("adv-drain"));
    cfg.server.workers = 1;
    let mut s = Server::start(cfg, true);
    let c = client();
    let memo = tokio::spawn(
        c.post(s.url("/v1/memos"))
            .header("content-type", "audio/wav")
            .body(wav(4))
            .send(),
    );
    let slow_head = trickler(
        addr(&s),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec(),
        Duration::from_millis(500),
        Duration::from_secs(60),
    );
    let _clients = AbortOnDrop(vec![memo.abort_handle(), slow_head.abort_handle()]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.begin_stop();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health = c
        .get(s.url("/healthz"))
        .send()
        .await
        .expect("health during the drain");
    assert_eq!(health.status(), 200);
    let ready = c.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["error"]["code"], "not_ready");
    let memo = memo.await.unwrap().unwrap();
    assert_eq!(memo.status(), 200, "the memo in flight was cut off");
    let finished = Instant::now();
    while !s.has_stopped() && finished.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        finished.elapsed() < Duration::from_secs(5),
        "exit waited {:?} for a trickling client",
        finished.elapsed()
    );
}

/// 15b. The console's pages send the security headers.
#[tokio::test]
async fn console_pages_send_security_headers() {
    let s = shared();
    for path in ["/", "/console/app.js", "/console/app.css"] {
        let resp = client().get(s.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        let csp = h
            .get("content-security-policy")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            csp.as_deref().is_some_and(
                |c| c.contains("default-src 'self'") && c.contains("frame-ancestors 'none'")
            ),
            "{path}: {csp:?}"
        );
        assert_eq!(
            h.get("x-content-type-options").map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{path}"
        );
        assert_eq!(
            h.get("x-frame-options").map(|v| v.to_str().unwrap()),
            Some("DENY"),
            "{path}"
        );
        assert_eq!(
            h.get("referrer-policy").map(|v| v.to_str().unwrap()),
            Some("no-referrer"),
            "{path}"
        );
    }
}

/// 15c. A panic is one log line with the request id and route, never the text it quotes, and
/// the client gets the documented 500.
#[tokio::test]
async fn a_panic_is_one_log_line_with_the_request_id_and_route() {
    let s = shared();
    let resp = client()
        .get(s.url("/test/panic"))
        .header("x-request-id", "adversarial-panic-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(
        resp.headers().get("x-request-id").unwrap(),
        "adversarial-panic-1"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "internal");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("adversarial-panic-1"));
    let logs = log_text();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("adversarial-panic-1") && l.contains("location="))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("route=\"/test/panic\"") || lines[0].contains("route=/test/panic"),
        "{}",
        lines[0]
    );
    assert!(
        !logs.contains("客户说价格太高"),
        "the panic's text reached the log"
    );
    assert!(!logs.contains("DEFAULT PANIC HOOK"), "{logs}");
    // The server keeps serving.
    assert_eq!(
        client()
            .get(s.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// 16. Every error the service answers has a documented code with its documented status.
#[tokio::test]
async fn every_error_code_is_documented_with_its_status() {
    let s = shared();
    let readme = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let table = readme.split("| code | status | when |").nth(1).unwrap();
    let mut documented = std::collections::HashMap::new();
    for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        for code in cells[1].split(',') {
            documented.insert(
                code.trim().trim_matches('`').to_string(),
                cells[2].parse::<u16>().unwrap(),
            );
        }
    }
    let c = client();
    let post = |path: &str, key: &str| c.post(s.url(path)).header("authorization", bearer(key));
    let requests = vec![
        post("/v1/tag", KEY_A).json(&json!({"text": "99999999个工作日内回复"})),
        post("/v1/tag", KEY_A).body("{"),
        post("/v1/tag", "nope-nope-nope-nope").json(&json!({"text": "x"})),
        post("/v1/library/reload", KEY_A),
        post("/v1/tag", KEY_A).json(&json!({"text": ""})),
        post("/v1/tag", KEY_A).json(&json!({"text": "很".repeat(5001)})),
        post("/v1/memos", KEY_A)
            .header("content-type", "text/plain")
            .body("x"),
        post("/v1/memos", KEY_A)
            .header("content-type", "audio/wav")
            .body(vec![0u8; 100]),
        post("/v1/memos", KEY_A)
            .header("content-type", "audio/wav")
            .body(Vec::<u8>::new()),
        post("/v1/memos", KEY_A)
            .header("content-type", "audio/wav")
            .body(tiny_wav(1, 10)),
        c.get(s.url("/v1/needs/%ff")),
        c.delete(s.url("/v1/tag")),
    ];
    for req in requests {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            continue;
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let code = body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{status}: no code in {body}"));
        assert_eq!(
            documented.get(code),
            Some(&status),
            "{code} answered with {status}"
        );
        assert!(status < 500, "{status}: {body}");
    }
}

/// 17. Metadata with control characters (a newline that forges a log or CSV line, a NUL) is a
/// 422 `invalid_input` on `/v1/memos` and `/v1/jobs` alike, before anything is stored.
#[tokio::test]
async fn metadata_with_control_characters_is_refused() {
    let s = shared();
    for route in ["/v1/memos", "/v1/jobs"] {
        for query in [
            "rep_id=r-1%0Aforged",
            "customer_id=c%00d",
            "team=t%1B%5B31m",
        ] {
            let resp = client()
                .post(s.url(&format!("{route}?{query}")))
                .header("authorization", bearer(KEY_A))
                .header("content-type", "audio/wav")
                .body(tiny_wav(16_000, 16_000))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            assert_eq!(
                (status, &body["error"]["code"]),
                (422, &json!("invalid_input")),
                "{route}?{query}: {body}"
            );
        }
        // The same field through a multipart form.
        let form = Form::new().text("rep_id", "r-1\r\nforged").part(
            "audio",
            Part::bytes(tiny_wav(16_000, 16_000)).file_name("m.wav"),
        );
        let resp = client()
            .post(s.url(route))
            .header("authorization", bearer(KEY_A))
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{route} multipart");
    }
}

/// 18. Jobs belong to the key that sent them: the same Idempotency-Key from two keys makes two
/// jobs, neither key reads the other's, concurrent identical submissions make exactly one
/// job, and odd job ids are typed errors, never a 500.
#[tokio::test]
async fn jobs_are_private_to_their_key_and_idempotent_under_races() {
    let s = shared();
    let submit = |key: &'static str, idem: &'static str| {
        client()
            .post(s.url("/v1/jobs"))
            .header("authorization", bearer(key))
            .header("content-type", "audio/wav")
            .header("idempotency-key", idem)
            .body(tiny_wav(16_000, 8_000))
            .send()
    };
    let a: Value = submit(KEY_A, "adv-jobs-1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b = submit(KEY_B, "adv-jobs-1").await.unwrap();
    assert_eq!(b.status(), 202);
    assert!(
        b.headers().get("idempotency-replayed").is_none(),
        "B got A's job"
    );
    let b: Value = b.json().await.unwrap();
    assert_ne!(a["job_id"], b["job_id"]);
    let get = |key: &'static str, id: String| {
        client()
            .get(s.url(&format!("/v1/jobs/{id}")))
            .header("authorization", bearer(key))
            .send()
    };
    let a_id = a["job_id"].as_str().unwrap().to_string();
    assert_eq!(get(KEY_A, a_id.clone()).await.unwrap().status(), 200);
    let other = get(KEY_B, a_id.clone()).await.unwrap();
    assert_eq!(other.status(), 404, "B read A's job");
    let other: Value = other.json().await.unwrap();
    assert_eq!(other["error"]["code"], "not_found");
    assert_eq!(get(ADMIN_KEY, a_id).await.unwrap().status(), 200);

    // Eight identical submissions at once: one job, the others its replay (or a 429 for the
    // key's in-flight limit), nothing else.
    let racing: Vec<_> = (0..8)
        .map(|_| tokio::spawn(submit(KEY_A, "adv-jobs-race")))
        .collect();
    let mut ids = std::collections::HashSet::new();
    for r in racing {
        let r = r.await.unwrap().unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        match status {
            202 => {
                ids.insert(body["job_id"].as_str().unwrap().to_string());
            }
            429 => assert_eq!(body["error"]["code"], "too_many_requests"),
            _ => panic!("a racing submission got {status}: {body}"),
        }
    }
    assert_eq!(
        ids.len(),
        1,
        "racing submissions made several jobs: {ids:?}"
    );

    let long = "j".repeat(5_000);
    for (id, want) in [
        ("..%2F..%2Fetc%2Fpasswd", 404),
        ("job_x'%20OR%201=1--", 404),
        ("%FF%FE", 400),
        (long.as_str(), 400),
    ] {
        let r = get(KEY_A, id.to_string()).await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        assert_eq!(status, want, "{id}: {body}");
        assert!(body["error"]["code"].is_string(), "{id}: {body}");
    }
}
