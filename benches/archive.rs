//! The memo archive at scale: fills an archive with synthetic memos (1 000 000 unless
//! `NEEDTAG_BENCH_MEMOS` says otherwise) through `Store::store`, then times, at one thread, each
//! list filter of `GET /v1/memos`, a fetch by id and each read of `GET /v1/metrics/sales`, and
//! reports the file size per memo.
//!
//!     nice -n 10 cargo bench --bench archive
//!     NEEDTAG_BENCH_MEMOS=100000 cargo bench --bench archive
//!
//! The filled file is kept in target/archive-bench/ and reused by the next run (delete it to
//! fill again). Everything runs against `Box<dyn Store>`: with `NEEDTAG_BENCH_ARCHIVE_URL` set
//! to a PostgreSQL database the same probes run there (`benches/archive_pg.sh` starts a server
//! of Debian's PostgreSQL in target/archive-bench/pg and runs this against it).

use std::path::PathBuf;
use std::time::Instant;

use needtag::archive::postgres::Postgres;
use needtag::archive::sqlite::Sqlite;
use needtag::archive::synthetic::{self, Plan, Probe};
use needtag::archive::{Filter, Store};

const RUNS: usize = 15;

fn main() {
    let memos: usize = std::env::var("NEEDTAG_BENCH_MEMOS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/archive-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let url = std::env::var("NEEDTAG_BENCH_ARCHIVE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let (mut store, end) = match &url {
        Some(url) => postgres(&dir, url, memos),
        None => sqlite(&dir, memos),
    };
    let plan = Plan { memos, end };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before timing: {}", load.trim());
    let some_id = store
        .list(&Filter::default(), Some(&(memos / 3).max(1).to_string()), 1)
        .unwrap()
        .items
        .first()
        .map(|m| m.memo_id.clone())
        .unwrap_or_default();
    println!();
    println!("| request | rows | median ms | p90 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, probe) in synthetic::probes(&plan) {
        let mut times = Vec::with_capacity(RUNS);
        let mut rows = 0;
        // One run to warm the page cache, then the timed ones.
        synthetic::run(store.as_mut(), &probe, &some_id).unwrap();
        for _ in 0..RUNS {
            let t = Instant::now();
            rows = synthetic::run(store.as_mut(), &probe, &some_id).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let over = if times[RUNS / 2] > 100.0 {
            " **over 100 ms**"
        } else {
            ""
        };
        println!(
            "| {name}{over} | {rows} | {:.2} | {:.2} | {:.2} |",
            times[RUNS / 2],
            times[RUNS * 9 / 10],
            times[RUNS - 1]
        );
        if matches!(probe, Probe::Get(_)) && rows == 0 {
            eprintln!("the memo to fetch was not found");
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!();
    println!("load average after timing: {}", load.trim());
}

type Filled = (Box<dyn Store>, chrono::DateTime<chrono::Utc>);

/// The archive's time line: a fixed end, so a reused archive and a new one agree. Read from the
/// `done` marker of a filled archive, or None (fill it).
fn filled_end(done: &std::path::Path) -> Option<chrono::DateTime<chrono::Utc>> {
    std::fs::read_to_string(done)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
}

fn fill(
    store: &mut dyn Store,
    memos: usize,
    done: &std::path::Path,
) -> chrono::DateTime<chrono::Utc> {
    let end = chrono::Utc::now();
    let plan = Plan { memos, end };
    let templates = synthetic::templates().unwrap();
    let t = Instant::now();
    let mut last = Instant::now();
    synthetic::fill(store, &plan, &templates, &mut |n| {
        if last.elapsed().as_secs() >= 10 || n == memos {
            last = Instant::now();
            eprintln!("  {n} memos written in {:.0} s", t.elapsed().as_secs_f64());
        }
    })
    .unwrap();
    let fill_s = t.elapsed().as_secs_f64();
    println!(
        "filled {memos} memos from {} templates in {fill_s:.0} s ({:.0} memos/s through Store::store, rollups and text index included)",
        templates.len(),
        memos as f64 / fill_s
    );
    std::fs::write(done, end.timestamp().to_string()).unwrap();
    end
}

/// The SQLite file in target/archive-bench/, filled when missing.
fn sqlite(dir: &std::path::Path, memos: usize) -> Filled {
    let path = dir.join(format!("memos-{memos}.sqlite"));
    let done = path.with_extension("done");
    let end = match filled_end(&done) {
        Some(end) if path.exists() => end,
        _ => {
            for ext in ["sqlite", "sqlite-wal", "sqlite-shm", "done"] {
                let _ = std::fs::remove_file(path.with_extension(ext));
            }
            let mut store = Sqlite::open(&path).unwrap();
            fill(&mut store, memos, &done)
        }
    };
    // Checkpoint the WAL so the main file holds everything before it is measured.
    if let Err(e) = rusqlite_checkpoint(&path) {
        eprintln!("checkpoint: {e}");
    }
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    report_size(memos, bytes, &path.display().to_string());
    (Box::new(Sqlite::open(&path).unwrap()), end)
}

/// The PostgreSQL database at `url` (benches/archive_pg.sh starts a server for it), filled
/// when its marker in target/archive-bench/ is missing; vacuumed and analyzed before timing.
fn postgres(dir: &std::path::Path, url: &str, memos: usize) -> Filled {
    let done = dir.join(format!("pg-{memos}.done"));
    let mut store = Postgres::open(url).unwrap();
    let count = {
        let mut c = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
        c.query_one("SELECT count(*) FROM memos", &[])
            .unwrap()
            .get::<_, i64>(0)
    };
    let end = match filled_end(&done) {
        Some(end) if count == memos as i64 => end,
        _ => {
            assert_eq!(
                count, 0,
                "the benchmark database holds {count} memos, not {memos}: drop it first"
            );
            fill(&mut store, memos, &done)
        }
    };
    let mut c = ::postgres::Client::connect(url, ::postgres::NoTls).unwrap();
    c.batch_execute("VACUUM ANALYZE").unwrap();
    let bytes: i64 = c
        .query_one("SELECT pg_database_size(current_database())", &[])
        .unwrap()
        .get(0);
    report_size(
        memos,
        bytes as u64,
        &needtag::archive::postgres::redact_url(url),
    );
    (Box::new(store), end)
}

fn report_size(memos: usize, bytes: u64, place: &str) {
    println!(
        "archive: {memos} memos, {:.1} MB, {:.0} bytes per memo ({place})",
        bytes as f64 / 1e6,
        bytes as f64 / memos as f64,
    );
}

/// Move the write-ahead log into the main file (so its size is the archive's).
fn rusqlite_checkpoint(path: &std::path::Path) -> Result<(), String> {
    let db = Sqlite::open(path).map_err(|e| e.to_string())?;
    db.checkpoint().map_err(|e| e.to_string())
}
