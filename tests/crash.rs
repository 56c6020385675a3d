//! A memo answered is a memo stored, even when the service is killed: the real binary
//! (`needtag serve`) under concurrent `/v1/tag` load gets SIGKILL, is started again on the same
//! archive, and every `memo_id` that was answered 200 must be there.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::server::{archive_dir, bearer, client};
use serde_json::{json, Value};

const TAG: &str = "crash-tag-key-000000001";
const REVIEW: &str = "crash-review-key-000001";

const TEXTS: &[&str] = &[
    "张主任提到关节镜手术后患者投诉疼痛管理不到位，希望我们下周三带镇痛方案对比表过来",
    "客户说价格太高，竞品便宜了百分之十，希望我们给个特价",
    "已沟通，持续跟进",
    "门店说下个月要做端午促销，堆头费还没谈下来，让我周五带合同过去",
    "设备三号机又停机了，科室很着急，明天一早安排工程师上门",
];

/// A free loopback port (bound and released; the server binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `needtag serve` with `archive_toml` as its `[archive]` section, ready to answer.
struct Service {
    child: Child,
    base: String,
}

impl Service {
    fn start(dir: &std::path::Path, archive_toml: &str) -> Service {
        let port = free_port();
        let config = dir.join("needtag.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nbind = \"127.0.0.1:{port}\"\nworkers = 1\nper_key_inflight = 0\n\
                 api_keys = [{{ key = \"{TAG}\", scopes = [\"tag\"], name = \"crm\" }}, \
                 {{ key = \"{REVIEW}\", scopes = [\"review\"], name = \"analyst\" }}]\n\
                 [archive]\n{archive_toml}\n"
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join(format!("server-{port}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_needtag"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("NEEDTAG_MODELS", common::root().join("models/prepared"))
            .env_remove("NEEDTAG_ARCHIVE")
            .env_remove("NEEDTAG_API_KEYS")
            .env_remove("NEEDTAG_BIND")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut s = Service {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "needtag serve exited ({status}) before it was ready; see {}",
                    dir.display()
                );
            }
            if answers_200(port, "/readyz") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "needtag serve never became ready"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn kill9(&mut self) {
        // Child::kill sends SIGKILL on Unix: no drain, no flush, no destructor runs.
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

/// True when `GET path` on `port` answers 200 (a blocking probe over a raw socket, as the
/// service starts).
fn answers_200(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

/// Run `clients` concurrent `/v1/tag` loops against `s` until it is killed once `kill_after`
/// memos were answered; the memo ids answered 200 and the number of requests the kill cut off.
async fn load_then_kill(
    s: &mut Service,
    clients: usize,
    kill_after: usize,
) -> (Vec<String>, usize) {
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let cut_off = Arc::new(AtomicUsize::new(0));
    let dead = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (answered, cut_off, dead) = (answered.clone(), cut_off.clone(), dead.clone());
        let url = format!("{}/v1/tag", s.base);
        tasks.push(tokio::spawn(async move {
            let http = client();
            let mut i = c;
            while !dead.load(Ordering::SeqCst) {
                i += clients;
                let body = json!({"text": TEXTS[i % TEXTS.len()], "rep_id": format!("rep-{c}"),
                                  "customer_id": format!("cust-{}", i % 7)});
                match http
                    .post(&url)
                    .header("authorization", bearer(TAG))
                    .json(&body)
                    .send()
                    .await
                {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        match resp.json::<Value>().await {
                            Ok(v) if status == 200 => {
                                let id = v["memo_id"].as_str().expect("an answer has a memo_id");
                                answered.lock().unwrap().push(id.to_string());
                            }
                            Ok(v) => {
                                // The only refusal the archive may give is a typed 503.
                                assert_eq!(status, 503, "{v}");
                                assert_eq!(v["error"]["code"], "archive_unavailable", "{v}");
                            }
                            Err(_) => {
                                cut_off.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    Err(_) => {
                        cut_off.fetch_add(1, Ordering::SeqCst);
                        if dead.load(Ordering::SeqCst) {
                            break;
                        }
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered.lock().unwrap().len() < kill_after {
        assert!(
            Instant::now() < deadline,
            "the service answered too few memos"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Kill while every client has a request in flight.
    s.kill9();
    dead.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let ids = answered.lock().unwrap().clone();
    (ids, cut_off.load(Ordering::SeqCst))
}

/// Every id of `answered` can be fetched from `s`, with the text that was tagged.
async fn all_stored(s: &Service, answered: &[String]) {
    let http = client();
    let mut missing = Vec::new();
    for id in answered {
        let resp = http
            .get(format!("{}/v1/memos/{id}", s.base))
            .header("authorization", bearer(REVIEW))
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            200 => {
                let m: Value = resp.json().await.unwrap();
                assert!(TEXTS.contains(&m["text"].as_str().unwrap()), "{m}");
                assert_eq!(m["result"]["memo_id"], id.as_str());
            }
            404 => missing.push(id.clone()),
            other => panic!("GET /v1/memos/{id}: {other}"),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} memos answered 200 are not in the archive after kill -9: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(10)]
    );
}

async fn crash_and_check(dir: &std::path::Path, archive_toml: &str) {
    let mut s = Service::start(dir, archive_toml);
    let (answered, cut_off) = load_then_kill(&mut s, 16, 400).await;
    assert!(answered.len() >= 400);
    assert!(
        cut_off > 0,
        "the kill should have cut off requests in flight"
    );
    drop(s);
    let s = Service::start(dir, archive_toml);
    all_stored(&s, &answered).await;
    eprintln!(
        "{} memos answered before kill -9 ({} requests cut off): all stored",
        answered.len(),
        cut_off
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_memo_answered_before_a_kill_is_in_the_sqlite_archive() {
    let dir = archive_dir("crash-sqlite");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("archive.sqlite");
    crash_and_check(&dir, &format!("path = {:?}", path.display().to_string())).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_memo_answered_before_a_kill_is_in_the_postgresql_archive() {
    let Some(pg) = common::postgres::PgServer::database("crash") else {
        return;
    };
    let dir = archive_dir("crash-postgres");
    std::fs::create_dir_all(&dir).unwrap();
    crash_and_check(&dir, &format!("url = {:?}", pg.url)).await;
    let _ = std::fs::remove_dir_all(&dir);
    drop(pg);
}
