//! Scaled-out memo jobs end to end, with real processes and no mocks: Debian's `nats-server -js`
//! on a free loopback port with a temporary store, a real PostgreSQL (tests/common/postgres.rs),
//! ONE `needtag serve` with `queue.url` and TWO `needtag worker` processes, and a webhook
//! receiver here that answers 500 to its first deliveries and checks every signature itself.
//!
//! Where `nats-server` or PostgreSQL is not installed the tests print SKIP and pass (as the
//! archive's PostgreSQL tests do); `.ci/setup` installs both.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::postgres::{PgDb, PgServer};
use common::receiver::{start_receiver, Receiver, SECRET};
use common::server::{bearer, client, library_copy, ADMIN_KEY, TAG_KEY};

const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A child process killed (SIGKILL) and reaped when dropped, whatever the test's outcome.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        // std's kill is SIGKILL on Unix: no drain, no destructor, nothing flushed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            eprintln!("stopping {} (pid {})", self.name, self.child.id());
        }
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `nats-server -js` on a free loopback port with its store in `dir`; None (SKIP) when absent.
fn start_nats(dir: &Path) -> Option<(Proc, String)> {
    if !Path::new(NATS_SERVER).exists() {
        eprintln!("SKIP: {NATS_SERVER} is not installed (`apt-get install nats-server`, as .ci/setup does)");
        return None;
    }
    Some(nats_on(dir, free_port()))
}

/// `nats-server -js` on `port` with its store in `dir/jetstream` (kept across restarts).
fn nats_on(dir: &Path, port: u16) -> (Proc, String) {
    let store = dir.join("jetstream");
    std::fs::create_dir_all(&store).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("nats.log"))
        .unwrap();
    let child = Command::new(NATS_SERVER)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&store)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start nats-server");
    let proc = Proc {
        child,
        name: "nats-server",
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    (proc, format!("nats://127.0.0.1:{port}"))
}

/// One request the receiver got.
struct Settings {
    max_deliver: i64,
    ack_wait_s: u64,
}

fn write_config(
    dir: &Path,
    library: &Path,
    pg: &str,
    nats: &str,
    hook: &str,
    s: &Settings,
) -> PathBuf {
    let models = common::root().join("models/prepared");
    let text = format!(
        r#"library = "{library}"
[models]
dir = "{models}"
[server]
bind = "127.0.0.1:0"
workers = 1
queue = 4
api_keys = [
  {{ key = "{TAG_KEY}", scopes = ["tag"], name = "crm" }},
  {{ key = "{ADMIN_KEY}", scopes = ["tag", "admin"], name = "ops" }},
]
[archive]
url = "{pg}"
[jobs]
attempt_timeout_s = 120
[queue]
url = "{nats}"
ack_wait_s = {ack_wait}
max_deliver = {max_deliver}
drain_s = 5
sweep_every_s = 1
[webhook]
url = "{hook}"
secret = "{SECRET}"
timeout_ms = 2000
max_attempts = 100
backoff_ms = 100
max_backoff_ms = 500
"#,
        library = library.display(),
        models = models.display(),
        ack_wait = s.ack_wait_s,
        max_deliver = s.max_deliver,
    );
    let path = dir.join("needtag.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Start `needtag <command>` and wait for the line starting with `ready`; the rest of that
/// line.
fn start(
    config: &Path,
    log: &Path,
    command: &str,
    ready: &str,
    name: &'static str,
) -> (Proc, String) {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_needtag"))
        .arg("--config")
        .arg(config)
        .arg(command)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("start needtag {command}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let proc = Proc { child, name };
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(rest) = line.strip_prefix(&ready) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let rest = rx
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| {
            panic!(
                "needtag {command} never said {:?}; see {}",
                name,
                log.display()
            )
        });
    (proc, rest)
}

async fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(r) = client().get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the service never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A blocking PostgreSQL query on a thread of its own (the client must not run on tokio's).
async fn pg<T: Send + 'static>(
    url: &str,
    f: impl FnOnce(&mut postgres::Client) -> T + Send + 'static,
) -> T {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        f(&mut c)
    })
    .await
    .unwrap()
}

async fn submit_audio(base: &str, fixture: &str) -> (u16, Value) {
    let resp = client()
        .post(format!("{base}/v1/jobs?rep_id=rep-7&customer_id=cust-3"))
        .header("authorization", bearer(TAG_KEY))
        .header("content-type", "audio/wav")
        .body(common::fixture_bytes(fixture))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn submit_text(base: &str, text: &str) -> (u16, Value) {
    let resp = client()
        .post(format!("{base}/v1/jobs"))
        .header("authorization", bearer(TAG_KEY))
        .json(&json!({"text": text, "rep_id": "rep-9", "customer_id": "cust-5", "mode": "keyword"}))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn job(base: &str, id: &str) -> Value {
    client()
        .get(format!("{base}/v1/jobs/{id}"))
        .header("authorization", bearer(TAG_KEY))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn metrics(base: &str) -> String {
    client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

const AUDIO: &[&str] = &[
    "audio/aishell_S0724W0121.wav",
    "audio/aishell_S0764W0121.wav",
    "audio/s0764_dc_offset.wav",
    "audio/s0764_clipped.wav",
];

const TEXTS: &[&str] = &[
    "客户说下周三想看一下报价，预算大概五十万",
    "王总对交付周期不满意，希望我们月底前给一个新的排期",
    "他们现在用的系统太慢了，想了解一下我们的云方案",
    "客户要求安排一次现场演示，最好是下周",
    "对方采购说价格还是偏高，希望能再打个折",
];

struct Stack {
    dir: PathBuf,
    library: PathBuf,
    db: PgDb,
    nats: Proc,
    nats_url: String,
    api: Proc,
    base: String,
    workers: Vec<Proc>,
    config: PathBuf,
}

impl Drop for Stack {
    fn drop(&mut self) {
        // Children first (their Drop kills them), then the files.
        for w in &mut self.workers {
            w.kill();
        }
        self.api.kill();
        self.nats.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.library);
    }
}

/// NATS, PostgreSQL, one API and two workers; None when NATS or PostgreSQL is not installed.
async fn stack(tag: &str, hook: &str, s: Settings) -> Option<Stack> {
    let dir = std::env::temp_dir().join(format!("needtag-nats-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (nats, nats_url) = start_nats(&dir)?;
    let db = PgServer::database(tag)?;
    let library = library_copy(&format!("nats-{tag}"));
    let config = write_config(&dir, &library, &db.url, &nats_url, hook, &s);
    let (api, base) = start(
        &config,
        &dir.join("api.log"),
        "serve",
        "needtag listening on ",
        "needtag serve",
    );
    wait_ready(&base).await;
    let mut workers = Vec::new();
    for i in 0..2 {
        let log = dir.join(format!("worker{i}.log"));
        let (w, _) = start(
            &config,
            &log,
            "worker",
            "needtag worker ready",
            "needtag worker",
        );
        workers.push(w);
    }
    Some(Stack {
        dir,
        library,
        db,
        nats,
        nats_url,
        api,
        base,
        workers,
        config,
    })
}

/// Wait until every job in `ids` has ended (read from the shared database).
async fn wait_ended(url: &str, ids: &[String], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let list = ids.to_vec();
        let ended: i64 = pg(url, move |c| {
            c.query_one(
                "SELECT COUNT(*) FROM jobs WHERE job_id = ANY($1) AND status IN ('done', 'failed')",
                &[&list],
            )
            .unwrap()
            .get(0)
        })
        .await;
        if ended as usize == ids.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ended} of {} jobs ended in time",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_one_killed_every_job_done_once_and_delivered_once() {
    let started = Instant::now();
    // 500 to the first 40 requests, and until the worker is killed: a worker killed after the
    // receiver's 200 but before recording it would send that event again (delivery is at
    // least once; receivers de-duplicate on event_id), which is not what this test counts.
    let receiver = Receiver {
        fail_first: 40,
        ..Receiver::default()
    };
    receiver.failing.store(true, Ordering::SeqCst);
    let hook = start_receiver(receiver.clone()).await;
    let Some(mut st) = stack(
        "kill",
        &hook,
        Settings {
            max_deliver: 5,
            ack_wait_s: 4,
        },
    )
    .await
    else {
        return;
    };
    let base = st.base.clone();
    let url = st.db.url.clone();

    // 200 jobs: every fifth is fixture audio, the rest text.
    let mut ids: Vec<String> = Vec::new();
    let mut memo_of: HashMap<String, String> = HashMap::new();
    let mut is_audio: HashSet<String> = HashSet::new();
    for i in 0..200 {
        let (code, v) = if i % 5 == 0 {
            submit_audio(&base, AUDIO[(i / 5) % AUDIO.len()]).await
        } else {
            submit_text(&base, &format!("{}（第{i}条）", TEXTS[i % TEXTS.len()])).await
        };
        assert_eq!(code, 202, "job {i}: {v}");
        let id = v["job_id"].as_str().unwrap().to_string();
        assert_eq!(v["status_url"], format!("/v1/jobs/{id}"));
        memo_of.insert(id.clone(), v["memo_id"].as_str().unwrap().to_string());
        if i % 5 == 0 {
            is_audio.insert(id.clone());
        }
        ids.push(id);
    }
    eprintln!(
        "200 jobs accepted in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Kill the first worker in the middle of an audio job it is running.
    let victim = st.workers[0].pid();
    let deadline = Instant::now() + Duration::from_secs(120);
    let killed_job = loop {
        let running: Option<String> = pg(&url, move |c| {
            c.query_opt(
                "SELECT job_id FROM jobs WHERE status = 'running' AND worker LIKE $1
                   AND meta NOT LIKE '%\"text\":{%' LIMIT 1",
                &[&format!("%:{victim}")],
            )
            .unwrap()
            .map(|r| r.get(0))
        })
        .await;
        if let Some(id) = running {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "worker {victim} never ran an audio job"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    st.workers[0].kill();
    eprintln!("killed worker {victim} while it ran {killed_job}");
    receiver.failing.store(false, Ordering::SeqCst);

    // The synchronous route works unchanged on the API replica.
    let sync = client()
        .post(format!("{base}/v1/memos"))
        .header("authorization", bearer(TAG_KEY))
        .header("content-type", "audio/wav")
        .body(common::fixture_bytes(AUDIO[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(sync.status(), 200, "/v1/memos on the API replica");
    let tag = client()
        .post(format!("{base}/v1/tag"))
        .header("authorization", bearer(TAG_KEY))
        .json(&json!({"text": TEXTS[0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(tag.status(), 200, "/v1/tag on the API replica");

    let text = metrics(&base).await;
    assert_eq!(metric(&text, "needtag_queue_up"), Some(1.0), "{text}");
    for name in [
        "needtag_queue_pending",
        "needtag_queue_ack_pending",
        "needtag_queue_redelivered",
        "needtag_jobs_oldest_queued_age_seconds",
        "needtag_webhook_failures",
    ] {
        assert!(metric(&text, name).is_some(), "/metrics has no {name}");
    }

    wait_ended(&url, &ids, Duration::from_secs(150)).await;
    eprintln!(
        "every job ended at {:.1} s",
        started.elapsed().as_secs_f64()
    );

    for id in &ids {
        let v = job(&base, id).await;
        assert_eq!(v["status"], "done", "{id}: {v}");
        if is_audio.contains(id) {
            assert_eq!(
                v["result"]["memo_id"].as_str(),
                Some(memo_of[id].as_str()),
                "{v}"
            );
            assert_eq!(v["result"]["rep_id"], "rep-7");
        } else {
            assert_eq!(
                v["result"]["memo_id"].as_str(),
                Some(memo_of[id].as_str()),
                "{v}"
            );
            assert!(
                v["result"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("第")),
                "{v}"
            );
        }
    }
    let killed = job(&base, &killed_job).await;
    assert!(
        killed["attempts"].as_u64().unwrap_or(0) >= 2,
        "the killed worker's job ran again: {killed}"
    );

    // Exactly once in the archive: one memo per job, none twice.
    let memos: Vec<String> = ids.iter().map(|id| memo_of[id].clone()).collect();
    let (stored, twice): (i64, i64) = pg(&url, move |c| {
        let stored = c
            .query_one("SELECT COUNT(*) FROM memos WHERE memo_id = ANY($1)", &[&memos])
            .unwrap()
            .get(0);
        let twice = c
            .query_one(
                "SELECT COUNT(*) FROM (SELECT memo_id FROM memos GROUP BY memo_id HAVING COUNT(*) > 1) d",
                &[],
            )
            .unwrap()
            .get(0);
        (stored, twice)
    })
    .await;
    assert_eq!(stored, 200);
    assert_eq!(twice, 0);
    let text = metrics(&base).await;
    assert_eq!(metric(&text, "needtag_jobs_done"), Some(200.0), "{text}");
    assert!(
        metric(&text, "needtag_jobs_redelivered").is_some_and(|n| n >= 1.0),
        "the killed worker's job was delivered again: {text}"
    );

    // Exactly one 200-answered delivery per job, every signature valid.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let accepted: HashSet<String> = receiver
            .got
            .lock()
            .unwrap()
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
    assert!(receiver.bad_signatures.lock().unwrap().is_empty());
    let got = receiver.got.lock().unwrap().clone();
    let mut per_job: HashMap<&str, usize> = HashMap::new();
    let mut job_of_event: HashMap<&str, &str> = HashMap::new();
    for r in &got {
        if r.answered == 200 {
            *per_job.entry(&r.job_id).or_default() += 1;
        }
        assert_eq!(
            *job_of_event.entry(&r.event_id).or_insert(&r.job_id),
            r.job_id
        );
        assert_eq!(r.status, "done");
    }
    for id in &ids {
        assert_eq!(per_job.get(id.as_str()), Some(&1), "job {id}");
    }
    let failed = got.iter().filter(|r| r.answered == 500).count();
    assert!(failed >= 40, "the receiver's 500s were retried");
    eprintln!(
        "200 jobs done once, {} webhook requests ({failed} answered 500), in {:.0} s",
        got.len(),
        started.elapsed().as_secs_f64()
    );

    // SIGTERM to the remaining worker in the middle of a job: it pulls nothing more, finishes
    // the job within queue.drain_s and exits cleanly.
    let (code, v) = submit_audio(&base, AUDIO[1]).await;
    assert_eq!(code, 202, "{v}");
    let last = v["job_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let id = last.clone();
        let running: bool = pg(&url, move |c| {
            c.query_opt(
                "SELECT 1 FROM jobs WHERE job_id = $1 AND status = 'running'",
                &[&id],
            )
            .unwrap()
            .is_some()
        })
        .await;
        if running {
            break;
        }
        assert!(Instant::now() < deadline, "the last job never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(st.workers[1].pid() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = st.workers[1].child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "worker exit: {status}");
    let v = job(&base, &last).await;
    assert_eq!(v["status"], "done", "the job in flight finished: {v}");
    assert_eq!(v["attempts"], 1, "{v}");
    let _ = &st.config;
    let _ = &st.nats_url;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_audio_fails_once_and_a_job_past_max_deliver_is_dead_lettered() {
    let receiver = Receiver::default();
    let hook = start_receiver(receiver.clone()).await;
    // One delivery allowed: a job whose worker dies on it is failed and dead-lettered.
    let Some(mut st) = stack(
        "dead",
        &hook,
        Settings {
            max_deliver: 1,
            ack_wait_s: 3,
        },
    )
    .await
    else {
        return;
    };
    let base = st.base.clone();
    let url = st.db.url.clone();

    // Corrupt audio: failed with the code /v1/memos gives the same bytes, in one attempt.
    let (code, v) = submit_audio(&base, "audio/s0764_truncated.m4a").await;
    assert_eq!(code, 202, "{v}");
    let corrupt = v["job_id"].as_str().unwrap().to_string();
    let (code, v) = submit_text(&base, TEXTS[1]).await;
    assert_eq!(code, 202, "{v}");
    let text_job = v["job_id"].as_str().unwrap().to_string();
    wait_ended(
        &url,
        &[corrupt.clone(), text_job.clone()],
        Duration::from_secs(60),
    )
    .await;
    let sync = client()
        .post(format!("{base}/v1/memos"))
        .header("authorization", bearer(TAG_KEY))
        .header("content-type", "audio/wav")
        .body(common::fixture_bytes("audio/s0764_truncated.m4a"))
        .send()
        .await
        .unwrap();
    assert_eq!(sync.status(), 422);
    let sync: Value = sync.json().await.unwrap();
    let v = job(&base, &corrupt).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["code"], sync["error"]["code"], "{v}");
    assert_eq!(v["attempts"], 1, "a corrupt upload is not retried: {v}");
    let v = job(&base, &text_job).await;
    assert_eq!(v["status"], "done", "{v}");
    assert!(v["result"]["text"].is_string(), "{v}");

    // An audio job whose worker is killed on its only delivery.
    let (code, v) = submit_audio(&base, AUDIO[1]).await;
    assert_eq!(code, 202, "{v}");
    let doomed = v["job_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let pids: Vec<u32> = st.workers.iter().map(Proc::pid).collect();
    let holder = loop {
        let id = doomed.clone();
        let worker: Option<String> = pg(&url, move |c| {
            c.query_opt(
                "SELECT worker FROM jobs WHERE job_id = $1 AND status = 'running'",
                &[&id],
            )
            .unwrap()
            .and_then(|r| r.get(0))
        })
        .await;
        if let Some(w) = worker {
            break pids
                .iter()
                .position(|p| w.ends_with(&format!(":{p}")))
                .expect("one of our workers runs it");
        }
        assert!(Instant::now() < deadline, "the job never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    st.workers[holder].kill();
    // After ack_wait JetStream announces it reached max_deliver; the other worker ends it.
    wait_ended(&url, std::slice::from_ref(&doomed), Duration::from_secs(60)).await;
    let v = job(&base, &doomed).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["code"], "internal", "{v}");

    // Its id is on the dead-letter subject (kept by the dead-letter stream).
    let nats = async_nats::connect(st.nats_url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(nats);
    let dead = js.get_stream("NEEDTAG_JOBS_DEAD").await.unwrap();
    let msg = dead.get_raw_message(1).await.unwrap();
    assert_eq!(msg.subject.as_str(), "needtag.jobs.dead");
    assert_eq!(std::str::from_utf8(&msg.payload).unwrap(), doomed);
    assert_eq!(dead.get_info().await.unwrap().state.messages, 1);
    let text = metrics(&base).await;
    assert_eq!(metric(&text, "needtag_queue_dead"), Some(1.0), "{text}");

    // A job whose worker dies on its last delivery while no other worker runs, and whose
    // message is then lost (the stream purged): no delivery and no advisory will come. A
    // worker started later finds it left running and ends it.
    let (code, v) = submit_audio(&base, AUDIO[2]).await;
    assert_eq!(code, 202, "{v}");
    let stranded = v["job_id"].as_str().unwrap().to_string();
    let id = stranded.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let id = id.clone();
        let running: bool = pg(&url, move |c| {
            c.query_opt(
                "SELECT 1 FROM jobs WHERE job_id = $1 AND status = 'running'",
                &[&id],
            )
            .unwrap()
            .is_some()
        })
        .await;
        if running {
            break;
        }
        assert!(Instant::now() < deadline, "the job never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for w in &mut st.workers {
        w.kill();
    }
    js.get_stream("NEEDTAG_JOBS")
        .await
        .unwrap()
        .purge()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let v = job(&base, &stranded).await;
    assert_eq!(v["status"], "running", "no worker runs: {v}");
    let (w, _) = start(
        &st.config,
        &st.dir.join("worker-late.log"),
        "worker",
        "needtag worker ready",
        "needtag worker",
    );
    st.workers = vec![w];
    // Two ack_wait of its own run, then a look every ack_wait.
    wait_ended(
        &url,
        std::slice::from_ref(&stranded),
        Duration::from_secs(60),
    )
    .await;
    let v = job(&base, &stranded).await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["code"], "internal", "{v}");
    assert_eq!(dead.get_info().await.unwrap().state.messages, 2);
    let log = std::fs::read_to_string(st.dir.join("worker-late.log")).unwrap();
    assert!(
        log.contains("job left running by a worker that stopped"),
        "ended by the late worker's look for stranded jobs: {log}"
    );

    // Every job got its webhook event, the failed ones as job.failed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = receiver.got.lock().unwrap().clone();
        let jobs: HashMap<String, String> = got
            .iter()
            .map(|r| (r.job_id.clone(), r.status.clone()))
            .collect();
        if jobs.len() == 4 {
            assert_eq!(jobs[&corrupt], "failed");
            assert_eq!(jobs[&doomed], "failed");
            assert_eq!(jobs[&stranded], "failed");
            assert_eq!(jobs[&text_job], "done");
            break;
        }
        assert!(Instant::now() < deadline, "events: {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(receiver.bad_signatures.lock().unwrap().is_empty());

    // Without NATS the API replica is not ready.
    st.nats.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client().get(format!("{base}/readyz")).send().await.unwrap();
        if r.status() == 503 {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"]["code"], "not_ready");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed ready without NATS"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A job accepted while NATS is down is stored (202 after the publish times out); when NATS
    // is back (same port, same store) the replica's sweeper publishes it and a worker runs it.
    let (code, v) = submit_text(&base, TEXTS[2]).await;
    assert_eq!(code, 202, "{v}");
    let late = v["job_id"].as_str().unwrap().to_string();
    let port: u16 = st.nats_url.rsplit(':').next().unwrap().parse().unwrap();
    let (nats, _) = nats_on(&st.dir, port);
    st.nats = nats;
    wait_ended(&url, std::slice::from_ref(&late), Duration::from_secs(90)).await;
    let v = job(&base, &late).await;
    assert_eq!(v["status"], "done", "{v}");
    let text = metrics(&base).await;
    assert!(
        metric(&text, "needtag_jobs_publish_failed").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    let _ = ADMIN_KEY;
}
