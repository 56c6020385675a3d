//! The memo archive at scale: fills an archive with synthetic memos (1 000 000 unless
//! `NEEDTAG_BENCH_MEMOS` says otherwise) through `Store::store`, then times, at one thread, each
//! list filter of `GET /v1/memos`, a fetch by id and each read of `GET /v1/metrics/sales`, and
//! reports the file size per memo.
//!
//!     nice -n 10 cargo bench --bench archive
//!     NEEDTAG_BENCH_MEMOS=100000 cargo bench --bench archive
//!
//! The filled file is kept in target/archive-bench/ and reused by the next run (delete it to
//! fill again). Everything runs against `Box<dyn Store>`, so another store runs the same probes.

use std::path::PathBuf;
use std::time::Instant;

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
    let path = dir.join(format!("memos-{memos}.sqlite"));
    let done = path.with_extension("done");
    // The archive's time line: a fixed end, so a reused file and a new one agree.
    let end_s = std::fs::read_to_string(&done)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok());
    let end = match end_s {
        Some(s) if path.exists() => chrono::DateTime::from_timestamp(s, 0).unwrap(),
        _ => {
            for ext in ["sqlite", "sqlite-wal", "sqlite-shm", "done"] {
                let _ = std::fs::remove_file(path.with_extension(ext));
            }
            let end = chrono::Utc::now();
            let plan = Plan { memos, end };
            let templates = synthetic::templates().unwrap();
            let mut store: Box<dyn Store> = Box::new(Sqlite::open(&path).unwrap());
            let t = Instant::now();
            let mut last = Instant::now();
            synthetic::fill(store.as_mut(), &plan, &templates, &mut |n| {
                if last.elapsed().as_secs() >= 10 || n == memos {
                    last = Instant::now();
                    eprintln!("  {n} memos written in {:.0} s", t.elapsed().as_secs_f64());
                }
            })
            .unwrap();
            let fill_s = t.elapsed().as_secs_f64();
            println!(
                "filled {memos} memos from {} templates in {fill_s:.0} s ({:.0} memos/s through Store::store, rollups included)",
                templates.len(),
                memos as f64 / fill_s
            );
            drop(store);
            std::fs::write(&done, end.timestamp().to_string()).unwrap();
            end
        }
    };
    let plan = Plan { memos, end };
    let mut store: Box<dyn Store> = Box::new(Sqlite::open(&path).unwrap());
    // Checkpoint the WAL so the main file holds everything before it is measured.
    drop(store);
    {
        let c = rusqlite_checkpoint(&path);
        if let Err(e) = c {
            eprintln!("checkpoint: {e}");
        }
    }
    store = Box::new(Sqlite::open(&path).unwrap());
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "archive: {memos} memos, {:.1} MB, {:.0} bytes per memo ({})",
        bytes as f64 / 1e6,
        bytes as f64 / memos as f64,
        path.display()
    );
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

/// Move the write-ahead log into the main file (so its size is the archive's).
fn rusqlite_checkpoint(path: &std::path::Path) -> Result<(), String> {
    let db = Sqlite::open(path).map_err(|e| e.to_string())?;
    db.checkpoint().map_err(|e| e.to_string())
}
