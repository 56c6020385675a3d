//! Memo jobs end to end: the real `needtag serve` process on loopback with a real SQLite file,
//! killed with SIGKILL while jobs are queued and running, restarted on the same file; and a
//! webhook receiver (a small axum server here) that answers 500 for a while and checks every
//! signature itself.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::receiver::{serve_receiver, start_receiver, Receiver, SECRET};
use common::server::{bearer, client, library_copy, ADMIN_KEY, TAG_KEY};

const OTHER_KEY: &str = "other-tag-key-for-tests";

/// A `needtag serve` child process.
struct Service {
    child: Child,
    base: String,
}

impl Service {
    fn start(config: &Path, log: &Path) -> Service {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_needtag"))
            .arg("--config")
            .arg(config)
            .arg("serve")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .expect("start needtag serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = line.strip_prefix("needtag listening on ") {
                    let addr = addr.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the service printed its address");
        Service { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Ok(r) = client().get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the service never became ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn kill(&mut self) {
        // std's kill is SIGKILL on Unix: no drain, no destructor, nothing flushed.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, hook: &str, library: &Path) -> PathBuf {
    let models = common::root().join("models/prepared");
    let text = format!(
        r#"library = "{library}"
[models]
dir = "{models}"
[server]
bind = "127.0.0.1:0"
workers = 2
queue = 2
api_keys = [
  {{ key = "{TAG_KEY}", scopes = ["tag"], name = "crm" }},
  {{ key = "{OTHER_KEY}", scopes = ["tag"], name = "other" }},
  {{ key = "{ADMIN_KEY}", scopes = ["tag", "admin"], name = "ops" }},
]
[archive]
path = "{archive}"
[jobs]
max_attempts = 3
reserved_workers = 1
[webhook]
url = "{hook}"
secret = "{SECRET}"
timeout_ms = 2000
max_attempts = 100
backoff_ms = 100
max_backoff_ms = 1000
"#,
        library = library.display(),
        models = models.display(),
        archive = dir.join("archive.sqlite").display(),
    );
    let path = dir.join("needtag.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn submit(s: &Service, fixture: &str, idem: Option<&str>) -> Value {
    let mut req = client()
        .post(s.url("/v1/jobs?rep_id=rep-7&customer_id=cust-3"))
        .header("authorization", bearer(TAG_KEY))
        .header("content-type", "audio/wav")
        .body(common::fixture_bytes(fixture));
    if let Some(k) = idem {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 202, "{fixture}: {body}");
    body
}

async fn job(s: &Service, id: &str, key: &str) -> (u16, Value) {
    let resp = client()
        .get(s.url(&format!("/v1/jobs/{id}")))
        .header("authorization", bearer(key))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn metric(s: &Service, name: &str) -> f64 {
    let text = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("/metrics has no {name}"))
}

/// Poll until every job is finished; their final views.
async fn wait_finished(s: &Service, ids: &[String], limit: Duration) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + limit;
    let mut done = BTreeMap::new();
    while done.len() < ids.len() {
        let open: Vec<&String> = ids.iter().filter(|id| !done.contains_key(*id)).collect();
        for id in open {
            let (code, v) = job(s, id, TAG_KEY).await;
            assert_eq!(code, 200, "{v}");
            if matches!(v["status"].as_str(), Some("done" | "failed")) {
                done.insert(id.clone(), v);
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} jobs finished in time",
            done.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    done
}

/// Fixture audio in the mix: speech, silence, too short, and corrupt (with the code
/// `/v1/memos` gives it).
const MIX: &[(&str, Option<&str>)] = &[
    ("audio/aishell_S0724W0121.wav", None),
    ("audio/aishell_S0764W0121.wav", None),
    ("audio/silence_10s.wav", None),
    ("audio/s0764_clipped.wav", None),
    ("audio/s0764_truncated.m4a", Some("corrupt_audio")),
    ("audio/s0764_dc_offset.wav", None),
    ("audio/s0764_too_short_0.4s.wav", Some("audio_too_short")),
    ("audio/hum_8s.wav", None),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_service_finishes_every_job_once_and_delivers_each_once() {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("needtag-jobs-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let library = library_copy("jobs-kill");
    let receiver = Receiver::default();
    receiver.failing.store(true, Ordering::SeqCst);
    let hook = start_receiver(receiver.clone()).await;
    let config = write_config(&dir, &hook, &library);
    let log = dir.join("service.log");

    let mut service = Service::start(&config, &log);
    service.wait_ready().await;

    // 32 jobs: the mix four times over. One Idempotency-Key is sent twice.
    let mut ids: Vec<String> = Vec::new();
    let mut expected_code: HashMap<String, Option<&str>> = HashMap::new();
    let mut memo_of: HashMap<String, String> = HashMap::new();
    for round in 0..4 {
        for (i, (fixture, code)) in MIX.iter().enumerate() {
            let idem = (round == 0 && i == 0).then_some("same-upload-1");
            let v = submit(&service, fixture, idem).await;
            let id = v["job_id"].as_str().unwrap().to_string();
            assert_eq!(v["status_url"], format!("/v1/jobs/{id}"));
            memo_of.insert(id.clone(), v["memo_id"].as_str().unwrap().to_string());
            expected_code.insert(id.clone(), *code);
            ids.push(id);
        }
    }
    let replay = submit(&service, MIX[0].0, Some("same-upload-1")).await;
    assert_eq!(
        replay["job_id"].as_str(),
        Some(ids[0].as_str()),
        "Idempotency-Key replays the job"
    );
    // The same key with another upload is refused.
    let reused = client()
        .post(service.url("/v1/jobs"))
        .header("authorization", bearer(TAG_KEY))
        .header("idempotency-key", "same-upload-1")
        .header("content-type", "audio/wav")
        .body(common::fixture_bytes("audio/hum_8s.wav"))
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), 422);
    // Up-front checks answer at once, as /v1/memos does.
    let bad = client()
        .post(service.url("/v1/jobs"))
        .header("authorization", bearer(TAG_KEY))
        .header("content-type", "audio/wav")
        .body(b"\x89PNG\r\n\x1a\n0000000000000000".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 415);
    let v: Value = bad.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unsupported_format");

    // With a backlog of jobs, a synchronous memo is still answered (jobs never take its slots).
    let sync = client()
        .post(service.url("/v1/memos"))
        .header("authorization", bearer(TAG_KEY))
        .header("content-type", "audio/wav")
        .body(common::fixture_bytes("audio/aishell_S0724W0121.wav"))
        .send()
        .await
        .unwrap();
    assert_eq!(sync.status(), 200, "/v1/memos beside 32 queued jobs");
    let (code, _) = job(&service, "job_nothing", TAG_KEY).await;
    assert_eq!(code, 404);

    // Wait until some jobs are done and some running, then kill the service outright.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = metric(&service, "needtag_jobs_done").await;
        let running = metric(&service, "needtag_jobs_running").await;
        if done >= 4.0 && running >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "jobs never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queued_at_kill = metric(&service, "needtag_jobs_queued").await;
    service.kill();
    assert!(queued_at_kill >= 1.0, "the kill should leave jobs queued");
    let delivered_before_restart = receiver
        .got
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.answered == 200)
        .count();
    assert_eq!(delivered_before_restart, 0, "the receiver was failing");

    // Restart on the same file; the receiver recovers a little later.
    let service = Service::start(&config, &log);
    service.wait_ready().await;
    // A corrupt upload accepted after the restart: failed at once, never retried.
    let late = submit(&service, "audio/s0764_truncated.m4a", None).await;
    let late_id = late["job_id"].as_str().unwrap().to_string();
    memo_of.insert(
        late_id.clone(),
        late["memo_id"].as_str().unwrap().to_string(),
    );
    expected_code.insert(late_id.clone(), Some("corrupt_audio"));
    ids.push(late_id.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    receiver.failing.store(false, Ordering::SeqCst);

    let finished = wait_finished(&service, &ids, Duration::from_secs(600)).await;
    for (id, v) in &finished {
        let want = expected_code[id];
        match want {
            None => {
                assert_eq!(v["status"], "done", "{id}: {v}");
                assert_eq!(v["result"]["memo_id"].as_str(), Some(memo_of[id].as_str()));
                assert_eq!(v["result"]["rep_id"], "rep-7");
            }
            Some(code) => {
                assert_eq!(v["status"], "failed", "{id}: {v}");
                assert_eq!(v["error"]["code"], code, "{id}: {v}");
                assert!(v.get("result").is_none());
            }
        }
    }
    assert_eq!(
        finished[&late_id]["attempts"], 1,
        "a corrupt upload is not retried"
    );
    let redelivered = metric(&service, "needtag_jobs_redelivered").await;
    assert!(
        redelivered >= 1.0,
        "jobs running at the kill were taken again"
    );

    // Each job's owner sees it; another tag key does not; an admin key does.
    let (code, _) = job(&service, &ids[0], OTHER_KEY).await;
    assert_eq!(code, 404);
    let (code, _) = job(&service, &ids[0], ADMIN_KEY).await;
    assert_eq!(code, 200);

    // Every job reaches the receiver exactly once (one request answered 200 per job), each
    // event id belongs to one job, and every attempt at an event sent the same bytes.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = receiver.got.lock().unwrap().clone();
        let accepted: HashSet<String> = got
            .iter()
            .filter(|r| r.answered == 200)
            .map(|r| r.job_id.clone())
            .collect();
        if accepted.len() == ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} jobs delivered",
            accepted.len(),
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Give a duplicate the chance to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = receiver.got.lock().unwrap().clone();
    assert!(receiver.bad_signatures.lock().unwrap().is_empty());
    let mut accepted_per_job: HashMap<&str, usize> = HashMap::new();
    let mut body_of: HashMap<&str, &[u8]> = HashMap::new();
    let mut job_of_event: HashMap<&str, &str> = HashMap::new();
    for r in &got {
        if r.answered == 200 {
            *accepted_per_job.entry(&r.job_id).or_default() += 1;
        }
        assert_eq!(*body_of.entry(&r.event_id).or_insert(&r.body), &r.body[..]);
        assert_eq!(
            *job_of_event.entry(&r.event_id).or_insert(&r.job_id),
            r.job_id
        );
        let want = if expected_code[&r.job_id].is_some() {
            "failed"
        } else {
            "done"
        };
        assert_eq!(r.status, want);
    }
    for id in &ids {
        assert_eq!(accepted_per_job.get(id.as_str()), Some(&1), "job {id}");
    }
    let failed_attempts = got.iter().filter(|r| r.answered == 500).count();
    assert!(failed_attempts > 0, "the receiver's 500s were retried");

    // The archive holds each done job's memo exactly once, and nothing for failed ones.
    let conn = rusqlite::Connection::open(dir.join("archive.sqlite")).unwrap();
    for (id, v) in &finished {
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM memos WHERE memo_id = ?1",
                [&memo_of[id]],
                |r| r.get(0),
            )
            .unwrap();
        let want = if v["status"] == "done" { 1 } else { 0 };
        assert_eq!(n, want, "job {id}");
    }
    let total: i64 = conn
        .query_row("SELECT COUNT(*) FROM memos", [], |r| r.get(0))
        .unwrap();
    let done = finished.values().filter(|v| v["status"] == "done").count() as i64;
    assert_eq!(
        total,
        done + 1,
        "each done job once, and the one synchronous memo"
    );
    let track: i64 = conn
        .query_row("SELECT MAX(version) FROM jobs_schema_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(track, 1);
    eprintln!(
        "{} jobs ({} done), {} webhook requests ({} answered 500), {} redelivered, in {:.0} s",
        ids.len(),
        done,
        got.len(),
        failed_attempts,
        redelivered,
        started.elapsed().as_secs_f64()
    );
    drop(service);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&library);
}

/// A loopback port nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_webhook_parks_events_as_dead_for_an_admin_to_resend() {
    let port = free_port();
    let mut cfg = common::server::config("jobs-dead");
    cfg.webhook.url = Some(format!("http://127.0.0.1:{port}/hook"));
    cfg.webhook.secret = SECRET.into();
    cfg.webhook.max_attempts = 2;
    cfg.webhook.backoff_ms = 50;
    cfg.webhook.max_backoff_ms = 100;
    cfg.webhook.timeout_ms = 500;
    let server = common::server::Server::start(cfg, true);
    let post = |fixture: &str, route: &str| {
        client()
            .post(server.url(route))
            .header("authorization", bearer(TAG_KEY))
            .header("content-type", "audio/wav")
            .body(common::fixture_bytes(fixture))
    };
    // Nothing listens on the webhook's port: transcription goes on regardless.
    let speech: Value = post("audio/aishell_S0764W0121.wav", "/v1/jobs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let corrupt: Value = post("audio/s0764_truncated.m4a", "/v1/jobs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<String> = [&speech, &corrupt]
        .iter()
        .map(|v| v["job_id"].as_str().unwrap().to_string())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut views = Vec::new();
    for id in &ids {
        loop {
            let v: Value = client()
                .get(server.url(&format!("/v1/jobs/{id}")))
                .header("authorization", bearer(TAG_KEY))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if matches!(v["status"].as_str(), Some("done" | "failed")) {
                views.push(v);
                break;
            }
            assert!(Instant::now() < deadline, "job {id} never finished: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(views[0]["status"], "done");
    // The failed job carries the code /v1/memos answers for the same bytes.
    let sync = post("audio/s0764_truncated.m4a", "/v1/memos")
        .send()
        .await
        .unwrap();
    assert_eq!(sync.status(), 422);
    let sync: Value = sync.json().await.unwrap();
    assert_eq!(views[1]["status"], "failed");
    assert_eq!(views[1]["error"]["code"], sync["error"]["code"]);
    assert_eq!(views[1]["attempts"], 1);

    // Both events end dead after their two attempts; only an admin sees them.
    let dead = |key: &'static str| {
        client()
            .get(server.url("/v1/webhooks/dead"))
            .header("authorization", bearer(key))
            .send()
    };
    assert_eq!(dead(TAG_KEY).await.unwrap().status(), 403);
    let deadline = Instant::now() + Duration::from_secs(30);
    let items = loop {
        let v: Value = dead(ADMIN_KEY).await.unwrap().json().await.unwrap();
        let items = v["items"].as_array().cloned().unwrap_or_default();
        if items.len() == 2 {
            break items;
        }
        assert!(Instant::now() < deadline, "events never parked: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for item in &items {
        assert_eq!(item["attempts"], 2);
        assert_eq!(item["last_error"], "could not connect");
        assert!(ids.contains(&item["job_id"].as_str().unwrap().to_string()));
    }

    // The CRM comes back; the admin resends one event and it arrives, signed.
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    serve_receiver(receiver.clone(), listener);
    let event = items[0]["event_id"].as_str().unwrap();
    let retry = |key: &'static str, id: String| {
        client()
            .post(server.url(&format!("/v1/webhooks/dead/{id}/retry")))
            .header("authorization", bearer(key))
            .send()
    };
    assert_eq!(retry(TAG_KEY, event.into()).await.unwrap().status(), 403);
    assert_eq!(
        retry(ADMIN_KEY, "evt_nothing".into())
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(retry(ADMIN_KEY, event.into()).await.unwrap().status(), 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.got.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the resent event never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event_id, event);
    assert!(receiver.bad_signatures.lock().unwrap().is_empty());
    let v: Value = dead(ADMIN_KEY).await.unwrap().json().await.unwrap();
    assert_eq!(v["items"].as_array().map(Vec::len), Some(1));
    // Resent and delivered (or about to be recorded so): not dead, so a second resend is a
    // typed 409, not the 404 of an unknown event.
    let again = retry(ADMIN_KEY, event.into()).await.unwrap();
    assert_eq!(again.status(), 409);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["error"]["code"], "event_not_dead", "{again}");
    assert_eq!(
        receiver.got.lock().unwrap().len(),
        1,
        "a delivered event was sent again"
    );

    let metrics = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "needtag_webhook_failures 4",
        "needtag_webhook_dead 1",
        "needtag_webhook_delivered 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in /metrics"
        );
    }

    let spec: Value = client()
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/webhooks/dead",
        "/v1/webhooks/dead/{event_id}/retry",
    ] {
        assert!(spec["paths"][path].is_object(), "openapi lacks {path}");
    }
    // A job is a voice memo upload or /v1/tag's JSON.
    let content = &spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"];
    for kind in ["application/json", "multipart/form-data", "audio/*"] {
        assert!(
            content[kind].is_object(),
            "POST /v1/jobs lacks {kind}: {content}"
        );
    }

    // Without its database the service cannot accept jobs: not ready.
    assert_eq!(
        client()
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    std::fs::remove_file(&server.archive_path).unwrap();
    let r = client().get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_job_is_tagged_archived_and_replayed_by_its_idempotency_key() {
    let server = common::server::Server::start(common::server::config("jobs-text"), true);
    let post = |body: Value, idem: Option<&'static str>| {
        let mut req = client()
            .post(server.url("/v1/jobs"))
            .header("authorization", bearer(TAG_KEY))
            .json(&body);
        if let Some(k) = idem {
            req = req.header("idempotency-key", k);
        }
        req.send()
    };
    let body = serde_json::json!({
        "text": "客户说下周三想看一下报价，预算大概五十万",
        "rep_id": "rep-9",
        "customer_id": "cust-5",
        "recorded_at": "2026-03-04T17:20:00+08:00",
    });
    let resp = post(body.clone(), Some("text-1")).await.unwrap();
    assert_eq!(resp.status(), 202);
    let accepted: Value = resp.json().await.unwrap();
    let id = accepted["job_id"].as_str().unwrap().to_string();
    let memo_id = accepted["memo_id"].as_str().unwrap().to_string();
    let replay = post(body.clone(), Some("text-1")).await.unwrap();
    assert_eq!(replay.status(), 202);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["job_id"].as_str(), Some(id.as_str()));
    // Checked at once as /v1/tag checks it.
    let empty = post(serde_json::json!({"text": "  "}), None).await.unwrap();
    assert_eq!(empty.status(), 422);
    let unknown = post(serde_json::json!({"txt": "x"}), None).await.unwrap();
    assert_eq!(unknown.status(), 400);

    let deadline = Instant::now() + Duration::from_secs(60);
    let v = loop {
        let v: Value = client()
            .get(server.url(&format!("/v1/jobs/{id}")))
            .header("authorization", bearer(TAG_KEY))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if matches!(v["status"].as_str(), Some("done" | "failed")) {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the text job never finished: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(v["status"], "done", "{v}");
    assert_eq!(v["result"]["memo_id"].as_str(), Some(memo_id.as_str()));
    assert_eq!(v["result"]["text"], body["text"]);
    assert!(v["result"]["needs"].is_array(), "{v}");
    // Archived under the job's memo id, as a text memo with its metadata.
    let conn = rusqlite::Connection::open(&server.archive_path).unwrap();
    let (n, customer, source): (i64, Option<String>, Option<String>) = conn
        .query_row(
            "SELECT COUNT(*), MAX(customer_id), MAX(source) FROM memos WHERE memo_id = ?1",
            [&memo_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(customer.as_deref(), Some("cust-5"));
    assert_eq!(source.as_deref(), Some("text"));
}
