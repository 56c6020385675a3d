use super::postgres::Postgres;
use super::sqlite::Sqlite;
use super::*;

#[path = "../../tests/common/postgres.rs"]
mod pg_server;

/// A store under test, and a way to ask its database a question the interface has no method
/// for.
trait TestDb: Store {
    /// The single integer `sql` selects.
    fn scalar(&mut self, sql: &str) -> i64;
}

impl TestDb for Sqlite {
    fn scalar(&mut self, sql: &str) -> i64 {
        self.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

impl TestDb for Postgres {
    fn scalar(&mut self, sql: &str) -> i64 {
        self.raw().query_one(sql, &[]).unwrap().get(0)
    }
}

/// One backend: its name, the store, and what keeps its database up.
struct Backend {
    name: &'static str,
    db: Box<dyn TestDb>,
    _server: Option<pg_server::PgDb>,
}

/// The stores each test runs against: SQLite in memory, and a fresh database on a real
/// PostgreSQL server (skipped with a message where PostgreSQL is not installed).
fn backends(tag: &str) -> Vec<Backend> {
    let mut out = vec![Backend {
        name: "sqlite",
        db: Box::new(Sqlite::in_memory().unwrap()),
        _server: None,
    }];
    if let Some(pg) = pg_server::PgServer::database(tag) {
        out.push(Backend {
            name: "postgres",
            db: Box::new(Postgres::open(&pg.url).unwrap()),
            _server: Some(pg),
        });
    }
    out
}

/// The smallest stored result that reads back as a [`TextResult`].
pub(crate) const TEXT_RESULT: &str = r#"{"text":"t","needs":[],"ruled_out":[],"actions":[],"high_value":false,"next_steps":[],"contacts":[],"vague":{"flag":false},"library_version":"lib-test","mode":"keyword","timings":{"decode_ms":0.0,"vad_ms":0.0,"asr_ms":0.0,"tag_ms":0.0,"total_ms":0.0}}"#;

fn memo(id: &str, customer: &str, needs: &[&str], recorded: &str) -> NewMemo {
    NewMemo {
        memo_id: id.into(),
        source: Source::Text,
        meta: Meta {
            rep_id: Some("r-1".into()),
            customer_id: Some(customer.into()),
            team: Some("east".into()),
            domain: Some("pharmacy".into()),
            recorded_at: DateTime::parse_from_rfc3339(recorded).ok(),
        },
        stored_by: "crm".into(),
        stored_at: Utc::now(),
        text: format!("memo {id}"),
        library_version: "lib-test".into(),
        needs: needs.iter().map(|s| s.to_string()).collect(),
        actions: vec!["visit".into()],
        ruled_out: vec!["restock".into()],
        vague: needs.is_empty(),
        high_value: false,
        total_ms: 1.0,
        result: TEXT_RESULT.into(),
        audio: None,
    }
}

fn mark(kind: TagKind, id: &str, verdict: Verdict) -> Mark {
    Mark {
        kind,
        id: id.into(),
        verdict,
    }
}

#[test]
fn lists_filter_and_page() {
    for mut b in backends("lists") {
        eprintln!("backend: {}", b.name);
        lists_filter_and_page_on(&mut *b.db);
    }
}

fn lists_filter_and_page_on(db: &mut dyn TestDb) {
    assert_eq!(
        db.scalar("SELECT MAX(version) FROM schema_migrations"),
        sqlite::MIGRATIONS.len() as i64,
        "migrated from empty to the newest version"
    );
    let batch: Vec<NewMemo> = (0..7)
        .map(|i| {
            memo(
                &format!("m{i}"),
                if i % 2 == 0 { "c-even" } else { "c-odd" },
                if i < 3 { &["price"] } else { &[] },
                &format!("2026-03-0{}T10:00:00+08:00", i + 1),
            )
        })
        .collect();
    db.store(&batch).unwrap();
    let all = Filter::default();
    let p1 = db.list(&all, None, 3).unwrap();
    let ids: Vec<&str> = p1.items.iter().map(|m| m.memo_id.as_str()).collect();
    assert_eq!(ids, ["m6", "m5", "m4"], "newest stored first");
    let p2 = db.list(&all, p1.next.as_deref(), 3).unwrap();
    let p3 = db.list(&all, p2.next.as_deref(), 3).unwrap();
    assert_eq!(p3.items.len(), 1);
    assert!(p3.next.is_none());
    let exact = db.list(&all, None, 7).unwrap();
    assert_eq!(exact.items.len(), 7);
    assert!(exact.next.is_none(), "no empty last page");

    let list = |db: &mut dyn TestDb, f: Filter| -> Vec<String> {
        db.list(&f, None, 100)
            .unwrap()
            .items
            .into_iter()
            .map(|m| m.memo_id)
            .collect()
    };
    assert_eq!(
        list(
            db,
            Filter {
                customer_id: Some("c-odd".into()),
                ..Filter::default()
            }
        ),
        ["m5", "m3", "m1"]
    );
    assert_eq!(
        list(
            db,
            Filter {
                need: Some("price".into()),
                customer_id: Some("c-even".into()),
                ..Filter::default()
            }
        ),
        ["m2", "m0"]
    );
    assert_eq!(
        list(
            db,
            Filter {
                no_need: Some(true),
                vague: Some(true),
                ..Filter::default()
            }
        )
        .len(),
        4
    );
    assert_eq!(
        list(
            db,
            Filter {
                from: parse_bound("2026-03-02", false),
                to: parse_bound("2026-03-03", true),
                ..Filter::default()
            }
        ),
        ["m2", "m1"]
    );
    assert!(matches!(
        db.list(&all, Some("abc"), 3),
        Err(ArchiveError::Invalid(_))
    ));
}

#[test]
fn reviews_make_labels_and_exports() {
    for mut b in backends("reviews") {
        eprintln!("backend: {}", b.name);
        reviews_make_labels_and_exports_on(&mut *b.db);
    }
}

fn reviews_make_labels_and_exports_on(db: &mut dyn TestDb) {
    db.store(&[
        memo("a", "c", &["price", "stock"], "2026-03-01T10:00:00+08:00"),
        memo("b", "c", &[], "2026-03-01T11:00:00+08:00"),
    ])
    .unwrap();
    assert!(
        db.export(&Filter::default()).unwrap().is_empty(),
        "nothing reviewed"
    );
    let err = db
        .review(
            "a",
            &[mark(TagKind::Need, "delivery", Verdict::Reject)],
            "ann",
        )
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Invalid(_)), "{err}");
    let err = db
        .review("a", &[mark(TagKind::Need, "price", Verdict::Add)], "ann")
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Invalid(_)), "{err}");
    assert!(db.review("nope", &[], "ann").unwrap().is_none());
    let r = db
        .review(
            "a",
            &[
                mark(TagKind::Need, "stock", Verdict::Reject),
                mark(TagKind::Need, "delivery", Verdict::Add),
                mark(TagKind::Action, "visit", Verdict::Confirm),
            ],
            "ann",
        )
        .unwrap()
        .unwrap();
    assert!(r.reviewed);
    assert_eq!(r.reviews.len(), 3);
    assert_eq!(r.reviews[0].reviewer, "ann");
    let labels = r.labels.unwrap();
    assert_eq!(labels.needs, ["price", "delivery"]);
    assert_eq!(labels.actions, ["visit"]);
    // A later mark overrides an earlier one.
    let r = db
        .review(
            "a",
            &[mark(TagKind::Need, "stock", Verdict::Confirm)],
            "bob",
        )
        .unwrap()
        .unwrap();
    assert_eq!(r.labels.unwrap().needs, ["price", "stock", "delivery"]);
    let lines = db.export(&Filter::default()).unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].id, "a");
    assert_eq!(lines[0].negated_needs, ["restock"]);
    let jsonl: String = lines
        .iter()
        .map(|l| serde_json::to_string(l).unwrap() + "\n")
        .collect();
    let parsed = crate::eval::parse_jsonl(&jsonl, "export").unwrap();
    assert_eq!(parsed[0].needs, ["price", "stock", "delivery"]);
}

#[test]
fn deletion_and_purge_remove_everything() {
    for mut b in backends("deletion") {
        eprintln!("backend: {}", b.name);
        deletion_and_purge_remove_everything_on(&mut *b.db);
    }
}

fn deletion_and_purge_remove_everything_on(db: &mut dyn TestDb) {
    let mut old = memo("old", "c1", &["price"], "2025-01-01T10:00:00+08:00");
    old.stored_at = Utc::now() - chrono::Duration::days(400);
    db.store(&[
        old,
        memo("x", "c1", &["price"], "2026-03-01T10:00:00+08:00"),
        memo("y", "c2", &["price"], "2026-03-01T10:00:00+08:00"),
        memo("z", "c2", &["price"], "2026-03-01T10:00:00+08:00"),
    ])
    .unwrap();
    db.review(
        "y",
        &[mark(TagKind::Need, "price", Verdict::Confirm)],
        "ann",
    )
    .unwrap();
    assert_eq!(
        db.purge(Utc::now() - chrono::Duration::days(365)).unwrap(),
        1
    );
    assert!(db.get("old").unwrap().is_none());
    assert!(db.delete("x").unwrap());
    assert!(!db.delete("x").unwrap());
    assert_eq!(db.delete_customer("c2").unwrap(), 2);
    assert!(db
        .list(&Filter::default(), None, 10)
        .unwrap()
        .items
        .is_empty());
    assert!(db.export(&Filter::default()).unwrap().is_empty());
    let orphans =
        db.scalar("SELECT (SELECT COUNT(*) FROM memo_tags) + (SELECT COUNT(*) FROM reviews)");
    assert_eq!(orphans, 0, "tags and reviews go with their memo");
}

#[test]
fn a_file_is_migrated_once_and_a_newer_schema_is_refused() {
    let dir = std::env::temp_dir().join(format!("needtag-archive-unit-{}", std::process::id()));
    let path = dir.join("sub/archive.sqlite");
    let _ = std::fs::remove_dir_all(&dir);
    {
        let mut db = Sqlite::open(&path).unwrap();
        db.store(&[memo("k", "c", &[], "2026-03-01T10:00:00+08:00")])
            .unwrap();
    }
    {
        let mut db = Sqlite::open(&path).unwrap();
        assert_eq!(db.version().unwrap(), sqlite::MIGRATIONS.len() as i64);
        assert!(db.get("k").unwrap().is_some(), "kept across opens");
        db.conn()
            .execute(
                "INSERT INTO schema_migrations VALUES (999, 'future', 'now')",
                [],
            )
            .unwrap();
    }
    let err = Sqlite::open(&path).err().unwrap().to_string();
    assert!(err.contains("newer"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_postgres_database_is_migrated_once_even_by_replicas_starting_together() {
    let Some(pg) = pg_server::PgServer::database("migrate") else {
        return;
    };
    // Four replicas start at once on an empty database: one migrates, the others wait for it
    // and find nothing left to do.
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = pg.url.clone();
            std::thread::spawn(move || Postgres::open(&url).map(|_| ()))
        })
        .collect();
    for t in opened {
        t.join().unwrap().unwrap();
    }
    {
        let mut db = Postgres::open(&pg.url).unwrap();
        assert_eq!(db.version().unwrap(), postgres::MIGRATIONS.len() as i64);
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM schema_migrations"),
            postgres::MIGRATIONS.len() as i64,
            "each step recorded once"
        );
        db.store(&[memo("k", "c", &[], "2026-03-01T10:00:00+08:00")])
            .unwrap();
    }
    {
        let mut db = Postgres::open(&pg.url).unwrap();
        assert!(db.get("k").unwrap().is_some(), "kept across opens");
        db.raw()
            .execute(
                "INSERT INTO schema_migrations VALUES (999, 'future', 'now')",
                &[],
            )
            .unwrap();
    }
    let err = Postgres::open(&pg.url).err().unwrap().to_string();
    assert!(err.contains("newer"), "{err}");
}

#[test]
fn both_backends_have_the_same_numbered_migrations() {
    let versions = |m: &[(i64, &str, &str)]| -> Vec<(i64, String)> {
        m.iter().map(|(v, n, _)| (*v, n.to_string())).collect()
    };
    assert_eq!(versions(sqlite::MIGRATIONS), versions(postgres::MIGRATIONS));
    for (i, (v, _, _)) in sqlite::MIGRATIONS.iter().enumerate() {
        assert_eq!(*v, i as i64 + 1, "numbered 1, 2, 3… without gaps");
    }
}

#[test]
fn a_postgres_url_loses_its_password_in_logs() {
    assert_eq!(
        postgres::redact_url("postgres://needtag:s3cret@db.internal:5432/archive"),
        "postgres://needtag:***@db.internal:5432/archive"
    );
    assert_eq!(
        postgres::redact_url("postgres://needtag@127.0.0.1/archive"),
        "postgres://needtag@127.0.0.1/archive"
    );
}

#[tokio::test]
async fn the_writer_stores_in_order_and_reads_see_every_earlier_memo() {
    let archive = Archive::with_store(
        Box::new(Sqlite::in_memory().unwrap()),
        4,
        Duration::from_millis(500),
        Retention::default(),
    );
    for i in 0..20 {
        archive
            .submit(memo(
                &format!("w{i}"),
                "c",
                &[],
                "2026-03-01T10:00:00+08:00",
            ))
            .await
            .unwrap();
    }
    // A deletion queued after a store is applied after it.
    let gone = archive.call(|s| s.delete("w3")).await.unwrap();
    assert!(gone);
    let page = archive
        .call(|s| s.list(&Filter::default(), None, 100))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 19);
    assert_eq!(archive.stats().stored.load(Ordering::Relaxed), 20);
    assert_eq!(archive.stats().refused.load(Ordering::Relaxed), 0);
    // A request that panics does not stop the writer.
    let r = archive
        .call(|_| -> Result<()> { panic!("a faulty request") })
        .await;
    assert!(matches!(r, Err(ArchiveError::Closed)));
    archive
        .submit(memo("after", "c", &[], "2026-03-01T10:00:00+08:00"))
        .await
        .unwrap();
    assert!(archive.call(|s| s.get("after")).await.unwrap().is_some());
    archive.close();
    assert!(matches!(archive.flush().await, Err(ArchiveError::Closed)));
}

/// A store whose writes wait while the test holds `gate`, and fail while `fail` is set.
struct Gated {
    inner: Sqlite,
    gate: Arc<Mutex<()>>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl Store for Gated {
    fn store(&mut self, memos: &[NewMemo]) -> Result<()> {
        let _open = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        if self.fail.load(Ordering::SeqCst) {
            return Err(ArchiveError::Invalid("the disk is full".into()));
        }
        self.inner.store(memos)
    }
    fn get(&mut self, memo_id: &str) -> Result<Option<StoredMemo>> {
        self.inner.get(memo_id)
    }
    fn list(&mut self, filter: &Filter, cursor: Option<&str>, limit: usize) -> Result<Page> {
        self.inner.list(filter, cursor, limit)
    }
    fn review(&mut self, id: &str, marks: &[Mark], reviewer: &str) -> Result<Option<StoredMemo>> {
        self.inner.review(id, marks, reviewer)
    }
    fn export(&mut self, filter: &Filter) -> Result<Vec<ExportLine>> {
        self.inner.export(filter)
    }
    fn delete(&mut self, memo_id: &str) -> Result<bool> {
        self.inner.delete(memo_id)
    }
    fn delete_customer(&mut self, customer_id: &str) -> Result<usize> {
        self.inner.delete_customer(customer_id)
    }
    fn purge(&mut self, before: DateTime<Utc>) -> Result<usize> {
        self.inner.purge(before)
    }
    fn audio(&mut self, memo_id: &str) -> Result<Option<Audio>> {
        self.inner.audio(memo_id)
    }
    fn purge_audio(&mut self, before: DateTime<Utc>) -> Result<usize> {
        self.inner.purge_audio(before)
    }
}

fn gated(queue: usize) -> (Archive, Arc<Mutex<()>>, Arc<std::sync::atomic::AtomicBool>) {
    let gate = Arc::new(Mutex::new(()));
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let store = Gated {
        inner: Sqlite::in_memory().unwrap(),
        gate: gate.clone(),
        fail: fail.clone(),
    };
    let archive = Archive::with_store(
        Box::new(store),
        queue,
        Duration::from_millis(50),
        Retention::default(),
    );
    (archive, gate, fail)
}

#[tokio::test]
// The held guard stops the writer, another OS thread, on purpose; no task waits for it.
#[allow(clippy::await_holding_lock)]
async fn submit_returns_only_once_the_memo_is_committed() {
    let (archive, gate, _) = gated(8);
    let archive = Arc::new(archive);
    let held = gate.lock().unwrap();
    let a = archive.clone();
    let mut pending = tokio::spawn(async move {
        a.submit(memo("slow", "c", &[], "2026-03-01T10:00:00+08:00"))
            .await
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut pending)
            .await
            .is_err(),
        "submit returned while the write was still held"
    );
    drop(held);
    pending.await.unwrap().unwrap();
    assert!(archive.call(|s| s.get("slow")).await.unwrap().is_some());
}

#[tokio::test]
// The held guard stops the writer, another OS thread, on purpose; no task waits for it.
#[allow(clippy::await_holding_lock)]
async fn a_memo_that_cannot_be_stored_is_refused_never_dropped_silently() {
    let (archive, gate, fail) = gated(1);
    // A failing database: every memo of the batch is refused, and counted.
    fail.store(true, Ordering::SeqCst);
    let out = archive
        .submit_all(vec![
            memo("f1", "c", &[], "2026-03-01T10:00:00+08:00"),
            memo("f2", "c", &[], "2026-03-01T10:00:00+08:00"),
        ])
        .await;
    assert!(
        out.iter()
            .all(|r| matches!(r, Err(ArchiveError::Unavailable(m)) if m.contains("disk is full"))),
        "{out:?}"
    );
    assert_eq!(archive.stats().refused.load(Ordering::Relaxed), 2);
    assert_eq!(archive.stats().failed.load(Ordering::Relaxed), 2);
    fail.store(false, Ordering::SeqCst);

    // A full queue: the writer is held inside one write, one memo waits in the queue, so a
    // third finds no room within enqueue_wait and is refused.
    let archive = Arc::new(archive);
    let held = gate.lock().unwrap();
    let mut waiting = Vec::new();
    for id in ["q1", "q2"] {
        let a = archive.clone();
        waiting.push(tokio::spawn(async move {
            a.submit(memo(id, "c", &[], "2026-03-01T10:00:00+08:00"))
                .await
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = archive
        .submit(memo("q3", "c", &[], "2026-03-01T10:00:00+08:00"))
        .await;
    assert!(
        matches!(&r, Err(ArchiveError::Unavailable(m)) if m.contains("full")),
        "{r:?}"
    );
    drop(held);
    for w in waiting {
        w.await.unwrap().unwrap();
    }
    assert_eq!(archive.stats().refused.load(Ordering::Relaxed), 3);
    let page = archive
        .call(|s| s.list(&Filter::default(), None, 10))
        .await
        .unwrap();
    let ids: Vec<&str> = page.items.iter().map(|m| m.memo_id.as_str()).collect();
    assert_eq!(
        ids,
        ["q2", "q1"],
        "what was refused is not stored, the rest is"
    );
}

fn with_audio(id: &str, customer: &str, days_ago: i64, bytes: &[u8]) -> NewMemo {
    // The store keeps audio whatever the source says (the result here is a text's, so the
    // record says text and reads back).
    NewMemo {
        stored_at: Utc::now() - chrono::Duration::days(days_ago),
        audio: Some(Audio {
            content_type: "audio/wav".into(),
            bytes: bytes.to_vec().into(),
        }),
        ..memo(id, customer, &[], "2026-03-01T10:00:00+08:00")
    }
}

#[test]
fn audio_is_kept_read_back_purged_alone_and_deleted_with_its_memo() {
    for mut b in backends("audio") {
        eprintln!("backend: {}", b.name);
        let db = &mut *b.db;
        let wav: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        db.store(&[
            with_audio("a-old", "c1", 10, b"RIFF old"),
            with_audio("a-new", "c1", 1, &wav),
            with_audio("a-gone", "c2", 1, b"RIFF gone"),
            memo("t", "c1", &[], "2026-03-01T10:00:00+08:00"),
        ])
        .unwrap();
        let got = db.audio("a-new").unwrap().expect("kept");
        assert_eq!(got.content_type, "audio/wav");
        assert_eq!(&got.bytes[..], &wav[..], "the bytes as uploaded");
        assert!(db.audio("t").unwrap().is_none(), "a text has no audio");
        assert!(db.audio("nope").unwrap().is_none());
        // Audio past its days goes; its memo stays.
        assert_eq!(
            db.purge_audio(Utc::now() - chrono::Duration::days(7))
                .unwrap(),
            1
        );
        assert!(db.audio("a-old").unwrap().is_none());
        assert!(db.get("a-old").unwrap().is_some(), "the memo stays");
        assert!(db.audio("a-new").unwrap().is_some());
        // Deleting the memo or its customer deletes its audio.
        assert!(db.delete("a-new").unwrap());
        assert_eq!(db.delete_customer("c2").unwrap(), 1);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM memo_audio"), 0);
    }
}

#[test]
fn a_database_of_the_previous_version_is_migrated_and_keeps_its_memos() {
    let previous = sqlite::MIGRATIONS.len() as i64 - 1;
    assert!(previous >= 1, "there is a previous version to migrate from");
    // SQLite: a file at the previous version, written as that version could.
    let dir = std::env::temp_dir().join(format!("needtag-archive-prev-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("archive.sqlite");
    {
        let mut old = Sqlite::open_at(&path, previous).unwrap();
        assert_eq!(old.version().unwrap(), previous);
        old.store(&[memo("before", "c", &["price"], "2026-03-01T10:00:00+08:00")])
            .unwrap();
        old.review(
            "before",
            &[mark(TagKind::Need, "price", Verdict::Confirm)],
            "ann",
        )
        .unwrap();
    }
    let mut db = Sqlite::open(&path).unwrap();
    check_migrated(&mut db, previous);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);

    // PostgreSQL: the same.
    let Some(pg) = pg_server::PgServer::database("previous") else {
        return;
    };
    {
        let mut old = Postgres::open_at(&pg.url, previous).unwrap();
        assert_eq!(old.version().unwrap(), previous);
        old.store(&[memo("before", "c", &["price"], "2026-03-01T10:00:00+08:00")])
            .unwrap();
        old.review(
            "before",
            &[mark(TagKind::Need, "price", Verdict::Confirm)],
            "ann",
        )
        .unwrap();
    }
    let mut db = Postgres::open(&pg.url).unwrap();
    check_migrated(&mut db, previous);
}

fn check_migrated(db: &mut dyn TestDb, previous: i64) {
    assert_eq!(
        db.scalar("SELECT MAX(version) FROM schema_migrations"),
        previous + 1
    );
    let m = db
        .get("before")
        .unwrap()
        .expect("kept through the migration");
    assert_eq!(m.labels.unwrap().needs, ["price"]);
    db.store(&[with_audio("after", "c", 0, b"RIFF")]).unwrap();
    assert!(db.audio("after").unwrap().is_some(), "the new step works");
}
