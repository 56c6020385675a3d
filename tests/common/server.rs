//! A real needtag server on a loopback port, with the real models and a copy of the library.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use needtag::api::AppState;
use needtag::config::{parse_api_keys, Config};

pub const TAG_KEY: &str = "tag-key-for-tests-0001";
pub const ADMIN_KEY: &str = "admin-key-for-tests-001";

pub struct Server {
    pub base: String,
    pub state: Arc<AppState>,
    pub library_dir: PathBuf,
    pub archive_path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// Remove the directories earlier test processes left behind (a shared server lives in a static
/// and is never dropped, and a killed run cleans nothing): those of processes no longer running.
/// Once per process.
fn sweep_stale_dirs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("needtag-test-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    });
}

/// A private copy of the default library, so tests can change it and reload.
pub fn library_copy(tag: &str) -> PathBuf {
    sweep_stale_dirs();
    let dir = std::env::temp_dir().join(format!("needtag-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&super::root().join("need-library"), &dir);
    dir
}

/// A fresh directory for the archive of the server named `tag`.
pub fn archive_dir(tag: &str) -> PathBuf {
    sweep_stale_dirs();
    let dir =
        std::env::temp_dir().join(format!("needtag-test-{}-{tag}-archive", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The configuration the tests start from: two keys, the library copy, one worker.
pub fn config(tag: &str) -> Config {
    let mut cfg = super::config();
    cfg.library = Some(library_copy(tag));
    cfg.server.api_keys = parse_api_keys(&format!("{TAG_KEY}:tag,{ADMIN_KEY}:tag+admin")).unwrap();
    cfg.server.bind = "127.0.0.1:0".into();
    cfg.archive.enabled = true;
    cfg.archive.path = archive_dir(tag).join("archive.sqlite");
    cfg.jobs.enabled = true;
    cfg.server.workers = 1;
    cfg.server.queue = 2;
    cfg
}

impl Server {
    /// Start a server; with `load` false it stays in the not-ready state until `set_engine`.
    pub fn start(cfg: Config, load: bool) -> Server {
        Server::start_with(cfg, load, axum::Router::new())
    }

    /// Start a server that also serves `extra` routes (under the API's per-request handling).
    pub fn start_with(cfg: Config, load: bool, extra: axum::Router<Arc<AppState>>) -> Server {
        let state = AppState::starting(&cfg);
        if load {
            state
                .load()
                .unwrap_or_else(|e| panic!("models are prepared by .ci/setup: {e}"));
        }
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = needtag::api::router_with(st.clone(), extra);
                needtag::api::serve_router(listener, st, app, async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Server {
            base: format!("http://{addr}"),
            library_dir: cfg.library.clone().unwrap_or_default(),
            archive_path: cfg.archive.path.clone(),
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Ask the server to stop (graceful) without waiting.
    pub fn begin_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// True once the server has stopped serving.
    pub fn has_stopped(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Ask the server to stop (graceful) and wait until it has.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.library_dir);
        if let Some(dir) = self.archive_path.parent() {
            if dir.starts_with(std::env::temp_dir()) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

pub fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}
