//! A real PostgreSQL server for tests: Debian's binaries (`initdb`, `postgres`), a fresh data
//! directory under the temporary directory, a free loopback port, trust authentication; one
//! server shared by the tests of a process while any of them holds it, stopped (fast shutdown)
//! and its directory removed when the last lets go. Each test gets its own database.
//!
//! PostgreSQL refuses to run as root: as root the server runs as the `postgres` user (which
//! Debian's package creates), on a directory that user owns. Where the binaries are absent,
//! [`PgServer::shared`] prints why and returns None, and the test skips.
//!
//! Used by the integration tests (`mod common`) and, through `#[path]`, by the archive's unit
//! tests, so it needs nothing beyond std, libc and the `postgres` crate.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

pub struct PgServer {
    dir: PathBuf,
    port: u16,
    child: Mutex<Child>,
}

/// A database of its own on the shared server; holds the server up.
pub struct PgDb {
    pub url: String,
    pub name: String,
    server: Arc<PgServer>,
}

static SHARED: Mutex<Weak<PgServer>> = Mutex::new(Weak::new());
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The directory of Debian's PostgreSQL binaries (newest version), or one on PATH.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("postgres").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop().or_else(|| {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .find(|d| d.join("initdb").exists() && d.join("postgres").exists())
        })
    })
}

/// The uid and gid to run the server as: ours, or `postgres`'s when we are root.
fn server_user() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| e.to_string())?;
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == "postgres")
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        })
        .flatten()
        .map(Some)
        .ok_or_else(|| {
            "running as root and there is no `postgres` user to run the server as".into()
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid).env("HOME", "/tmp");
    }
}

fn chown(path: &Path, user: Option<(u32, u32)>) -> Result<(), String> {
    let Some((uid, gid)) = user else {
        return Ok(());
    };
    let c =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::chown(c.as_ptr(), uid, gid) } != 0 {
        return Err(format!(
            "chown {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

impl PgServer {
    /// The server the tests of this process share, started when none is running; None (with a
    /// SKIP line on stderr) when PostgreSQL is not installed.
    pub fn shared() -> Option<Arc<PgServer>> {
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.upgrade() {
            return Some(s);
        }
        let Some(bin) = bin_dir() else {
            eprintln!(
                "SKIP: PostgreSQL is not installed (no initdb and postgres in /usr/lib/postgresql/*/bin or on PATH; \
                 `apt-get install postgresql`, as .ci/setup does): the PostgreSQL part of this test did not run"
            );
            return None;
        };
        let server = Arc::new(
            PgServer::start(&bin)
                .unwrap_or_else(|e| panic!("starting PostgreSQL from {}: {e}", bin.display())),
        );
        *slot = Arc::downgrade(&server);
        Some(server)
    }

    fn start(bin: &Path) -> Result<PgServer, String> {
        let user = server_user()?;
        let dir =
            std::env::temp_dir().join(format!("needtag-pg-{}-{}", std::process::id(), free_port()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        chown(&dir, user)?;
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_user(&mut initdb, user);
        let out = initdb.output().map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = free_port();
        let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
        chown(&dir.join("server.log"), user)?;
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            // A test server: no fsync (the tests kill needtag, never this server).
            .args([
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ])
            .stdout(Stdio::null())
            .stderr(log);
        as_user(&mut postgres, user);
        let child = postgres.spawn().map_err(|e| format!("postgres: {e}"))?;
        let server = PgServer {
            dir,
            port,
            child: Mutex::new(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = server.child.lock().unwrap().try_wait() {
                return Err(format!(
                    "postgres exited ({status}): {}",
                    std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default()
                ));
            }
            if ::postgres::Client::connect(&server.url("postgres"), ::postgres::NoTls).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err("postgres did not accept connections within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A new empty database on the shared server (None when PostgreSQL is not installed).
    /// Safe to call from async code: the work runs on a thread of its own, as the blocking
    /// PostgreSQL client must.
    pub fn database(tag: &str) -> Option<PgDb> {
        let tag = tag.to_string();
        std::thread::spawn(move || PgServer::database_here(&tag))
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    fn database_here(tag: &str) -> Option<PgDb> {
        let server = PgServer::shared()?;
        let clean: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let name = format!(
            "t{}_{}_{clean}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = ::postgres::Client::connect(&server.url("postgres"), ::postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to the test server: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        Some(PgDb {
            url: server.url(&name),
            name,
            server,
        })
    }
}

impl PgDb {
    pub fn server(&self) -> &PgServer {
        &self.server
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        // SIGINT is PostgreSQL's fast shutdown; SIGKILL if it takes too long.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
