use super::postgres::Postgres;
use super::sqlite::Sqlite;
use super::*;

#[path = "../../tests/common/postgres.rs"]
pub(crate) mod pg_server;

/// A store under test, and a way to ask its database a question the interface has no method
/// for.
trait TestDb: Store {
    /// The single integer `sql` selects.
    fn scalar(&mut self, sql: &str) -> i64;
    /// The text column `sql` selects, one string a row.
    fn strings(&mut self, sql: &str) -> Vec<String>;
}

impl TestDb for Sqlite {
    fn scalar(&mut self, sql: &str) -> i64 {
        self.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }
    fn strings(&mut self, sql: &str) -> Vec<String> {
        let mut st = self.conn().prepare(sql).unwrap();
        let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
        rows.map(|r| r.unwrap()).collect()
    }
}

impl TestDb for Postgres {
    fn scalar(&mut self, sql: &str) -> i64 {
        self.raw().query_one(sql, &[]).unwrap().get(0)
    }
    fn strings(&mut self, sql: &str) -> Vec<String> {
        let rows = self.raw().query(sql, &[]).unwrap();
        rows.iter().map(|r| r.get(0)).collect()
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
        high_value_actions: 0,
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
    // A range reaching the newest memo is walked newest first instead: the same answer.
    let recent = Filter {
        from: parse_bound("2026-03-05", false),
        ..Filter::default()
    };
    assert_eq!(list(db, recent), ["m6", "m5", "m4"]);
    let old = Filter {
        to: parse_bound("2026-03-02", true),
        ..Filter::default()
    };
    assert_eq!(list(db, old), ["m1", "m0"]);
    assert!(matches!(
        db.list(&all, Some("abc"), 3),
        Err(ArchiveError::Invalid(_))
    ));
}

#[test]
fn a_time_range_is_read_first_only_when_it_lies_behind_more_newer_memos() {
    let day = 86_400_000i64;
    let span = Some((0, 730 * day));
    let at = |d: i64| {
        Some(
            DateTime::from_timestamp_millis(d * day)
                .unwrap()
                .fixed_offset(),
        )
    };
    let range = |from: i64, to: i64| Filter {
        from: at(from),
        to: at(to),
        ..Filter::default()
    };
    // The last month: walking finds it at once.
    assert!(!range(700, 730).range_first(span));
    // A month a year ago: behind eleven months of newer memos.
    assert!(range(335, 365).range_first(span));
    // Everything but the last month: walking passes one month, reading would take 23.
    assert!(!range(0, 700).range_first(span));
    // Half of the archive, behind the other half.
    assert!(range(0, 365).range_first(span));
    // No time range, a more selective filter, or an empty archive: never.
    assert!(!Filter::default().range_first(span));
    let by_rep = Filter {
        rep_id: Some("r".into()),
        ..range(335, 365)
    };
    assert!(!by_rep.range_first(span));
    assert!(!range(335, 365).range_first(None));
}

#[test]
fn text_search_answers_exactly_what_reading_every_memo_would() {
    for mut b in backends("search") {
        eprintln!("backend: {}", b.name);
        text_search_on(&mut *b.db);
    }
}

fn text_search_on(db: &mut dyn TestDb) {
    let texts = [
        "张主任提到关节镜手术后患者投诉疼痛管理不到位，希望下周带方案过来",
        "价格太高了，价格谈不下来",
        "库存告急，CT-3 配件缺货",
        "哈哈哈哈，拜访顺利",
        "疼",
        "",
        "ct-3 lowercase and 价 格 spaced",
    ];
    let batch: Vec<NewMemo> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut m = memo(&format!("s{i}"), "c", &[], "2026-03-01T10:00:00+08:00");
            m.text = t.to_string();
            m
        })
        .collect();
    db.store(&batch).unwrap();
    let search = |db: &mut dyn TestDb, q: &str, rep: Option<&str>| -> Vec<String> {
        let f = Filter {
            text: Some(q.into()),
            rep_id: rep.map(str::to_string),
            ..Filter::default()
        };
        let mut out = Vec::new();
        let mut cursor = None;
        // Two per page, so the cursor walks the index too.
        loop {
            let page = db.list(&f, cursor.as_deref(), 2).unwrap();
            out.extend(page.items.into_iter().map(|m| m.memo_id));
            match page.next {
                Some(n) => cursor = Some(n),
                None => break out,
            }
        }
    };
    let scan = |q: &str| -> Vec<String> {
        let mut ids: Vec<String> = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| t.contains(q))
            .map(|(i, _)| format!("s{i}"))
            .collect();
        ids.reverse();
        ids
    };
    // Every fragment of one to four characters of every text, and some that are in none.
    let mut queries: Vec<String> = Vec::new();
    for t in &texts {
        let chars: Vec<char> = t.chars().collect();
        for len in 1..=4 {
            for w in chars.windows(len) {
                queries.push(w.iter().collect());
            }
        }
    }
    queries.extend(
        [
            "量子纠缠",
            "格价",
            "CT-4",
            "Ct",
            "价格太高了，价格谈不下来。",
            "哈哈哈哈哈",
        ]
        .map(String::from),
    );
    for q in &queries {
        assert_eq!(search(db, q, None), scan(q), "q = {q:?}");
    }
    // Beside a filter that drives the query, the text is still checked.
    assert_eq!(search(db, "价格", Some("r-1")), scan("价格"));
    assert!(search(db, "价格", Some("r-2")).is_empty());
    // A deleted memo is not found again.
    assert!(db.delete("s1").unwrap());
    assert!(search(db, "价格", None).is_empty());
    assert_eq!(search(db, "价", None), ["s6"]);
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
    fn metric_counts(&mut self, q: &metrics::MetricsQuery) -> Result<Vec<metrics::CountRow>> {
        self.inner.metric_counts(q)
    }
    fn metric_tags(
        &mut self,
        q: &metrics::MetricsQuery,
        kind: TagKind,
    ) -> Result<Vec<metrics::TagRow>> {
        self.inner.metric_tags(q, kind)
    }
    fn open_urgent(&mut self, q: &metrics::UrgentQuery) -> Result<Vec<metrics::UrgentCustomer>> {
        self.inner.open_urgent(q)
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
        // The current store writes only tables and columns the previous version has (the
        // text index of version 4 is kept by triggers).
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
    // The memo from before is found by its text, through the index built by the migration.
    let found = db
        .list(
            &Filter {
                text: Some("mo befor".into()),
                ..Filter::default()
            },
            None,
            10,
        )
        .unwrap();
    assert_eq!(
        found
            .items
            .iter()
            .map(|m| m.memo_id.as_str())
            .collect::<Vec<_>>(),
        ["before"]
    );
    // The memo from before counts in the rollups next to the one stored after.
    assert_eq!(
        db.scalar("SELECT CAST(SUM(memos) AS BIGINT) FROM metric_memos WHERE period = 'month'"),
        2
    );
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM metric_tags WHERE tag = 'price' AND period = 'week'"),
        1
    );
    assert_eq!(
        db.strings("SELECT memo_id FROM customer_last WHERE customer_id = 'c'"),
        ["after"]
    );
}

/// Every row of the rollups, sorted.
fn rollups(db: &mut dyn TestDb) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        "SELECT period || '|' || bucket || '|' || rep_id || '|' || team || '|' || domain || '|' || memos || '|' || vague || '|' || with_need FROM metric_memos",
        "SELECT period || '|' || kind || '|' || bucket || '|' || rep_id || '|' || team || '|' || domain || '|' || tag || '|' || memos FROM metric_tags",
        "SELECT customer_id || '|' || memo_id || '|' || recorded_ms || '|' || COALESCE(rep_id, '-') FROM customer_last",
    ] {
        out.extend(db.strings(sql));
    }
    out.sort();
    out
}

fn spread() -> Vec<NewMemo> {
    let mut out = Vec::new();
    for i in 0..24 {
        let day = 1 + (i * 3) % 28;
        let month = 1 + i % 3;
        let mut m = memo(
            &format!("s{i}"),
            &format!("c{}", i % 5),
            match i % 4 {
                0 => &["price"],
                1 => &["price", "stock"],
                2 => &[],
                _ => &["stock"],
            },
            &format!("2026-{month:02}-{day:02}T0{}:30:00+08:00", i % 10),
        );
        m.meta.rep_id = (i % 3 != 0).then(|| format!("r-{}", i % 3));
        m.meta.team = Some(if i % 2 == 0 { "east" } else { "west" }.into());
        m.actions = if i % 2 == 0 {
            vec!["meet".into(), "call".into()]
        } else {
            vec!["call".into()]
        };
        m.stored_at = Utc::now() - chrono::Duration::days(40 - i as i64);
        out.push(m);
    }
    out
}

fn query(group_by: metrics::GroupBy, period: metrics::Period) -> metrics::MetricsQuery {
    let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    metrics::MetricsQuery {
        group_by,
        period,
        first: period.start(d("2025-12-01")),
        last: period.start(d("2026-04-30")),
        rep_id: None,
        team: None,
        domain: None,
    }
}

#[test]
fn rollups_count_what_is_stored_and_forget_what_is_deleted() {
    // Each backend is compared with a fresh archive of its own kind.
    for (mut b, mut fresh) in backends("rollups")
        .into_iter()
        .zip(backends("rollups_fresh"))
    {
        eprintln!("backend {}", b.name);
        rollups_count_what_is_stored_and_forget_what_is_deleted_on(
            b.db.as_mut(),
            fresh.db.as_mut(),
        );
    }
}

fn rollups_count_what_is_stored_and_forget_what_is_deleted_on(
    db: &mut dyn TestDb,
    fresh: &mut dyn TestDb,
) {
    use metrics::{GroupBy, Period};
    let memos = spread();
    db.store(&memos[..10]).unwrap();
    db.store(&memos[10..]).unwrap();

    // The counts are those of the memos, whatever the grouping.
    for g in GroupBy::ALL {
        for p in Period::ALL {
            let counts = db.metric_counts(&query(g, p)).unwrap();
            assert_eq!(
                counts.iter().map(|c| c.memos).sum::<i64>(),
                24,
                "{g:?} {p:?}"
            );
            assert_eq!(counts.iter().map(|c| c.vague).sum::<i64>(), 6);
            assert_eq!(counts.iter().map(|c| c.with_need).sum::<i64>(), 18);
            let needs = db.metric_tags(&query(g, p), TagKind::Need).unwrap();
            let price: i64 = needs
                .iter()
                .filter(|n| n.tag == "price")
                .map(|n| n.memos)
                .sum();
            assert_eq!(price, 12);
            let actions = db.metric_tags(&query(g, p), TagKind::Action).unwrap();
            assert_eq!(actions.iter().map(|a| a.memos).sum::<i64>(), 36);
        }
    }
    // Weeks start on Mondays, months on the first.
    let weeks = db
        .metric_counts(&query(GroupBy::Team, Period::Week))
        .unwrap();
    assert!(weeks.iter().all(|w| {
        let d = metrics::local_date(&w.bucket).unwrap();
        chrono::Datelike::weekday(&d) == chrono::Weekday::Mon
    }));
    let months = db
        .metric_counts(&query(GroupBy::Rep, Period::Month))
        .unwrap();
    assert!(months.iter().all(|m| m.bucket.ends_with("-01")));
    assert!(
        months.iter().any(|m| m.group.is_empty()),
        "memos without a rep"
    );

    // Delete, delete a customer, purge: the rollups are those of a fresh archive holding the
    // memos that are left.
    assert!(db.delete("s5").unwrap());
    assert_eq!(db.delete_customer("c1").unwrap(), 5);
    let purged = db.purge(Utc::now() - chrono::Duration::days(35)).unwrap();
    assert!(purged > 0);
    let left: Vec<String> = db
        .list(&Filter::default(), None, 100)
        .unwrap()
        .items
        .into_iter()
        .map(|m| m.memo_id)
        .collect();
    let kept: Vec<NewMemo> = memos
        .iter()
        .filter(|m| left.contains(&m.memo_id))
        .cloned()
        .collect();
    fresh.store(&kept).unwrap();
    assert_eq!(rollups(db), rollups(fresh));
    // Deleting everything leaves empty rollups, not rows of zeros.
    for id in &left {
        db.delete(id).unwrap();
    }
    assert!(rollups(db).is_empty(), "{:?}", rollups(db));
}

/// The statements version 1 stored a memo with.
fn store_v1(db: &Sqlite, m: &NewMemo) {
    let recorded = m.meta.recorded_at.unwrap();
    db.execute_raw(
        "INSERT INTO memos (memo_id, source, rep_id, customer_id, team, domain, recorded_at,
            recorded_ms, stored_at, stored_ms, stored_by, text, library_version, need_count,
            vague, high_value, total_ms, result)
         VALUES (?1, 'text', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'crm', ?10, 'lib', ?11, ?12, 0, 1.0, ?13)",
        &[
            &m.memo_id,
            &m.meta.rep_id,
            &m.meta.customer_id,
            &m.meta.team,
            &m.meta.domain,
            &recorded.to_rfc3339(),
            &recorded.timestamp_millis(),
            &m.stored_at.to_rfc3339(),
            &m.stored_at.timestamp_millis(),
            &m.text,
            &(m.needs.len() as i64),
            &m.vague,
            &m.result,
        ],
    )
    .unwrap();
    for (kind, tags) in [
        ("need", &m.needs),
        ("action", &m.actions),
        ("ruled_out", &m.ruled_out),
    ] {
        for t in tags {
            db.execute_raw(
                "INSERT INTO memo_tags (memo_id, kind, tag) VALUES (?1, ?2, ?3)",
                &[&m.memo_id, &kind, t],
            )
            .unwrap();
        }
    }
}

#[test]
fn a_version_1_file_gets_its_rollups_from_the_memos_it_holds() {
    let dir = std::env::temp_dir().join(format!("needtag-archive-v1-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("archive.sqlite");
    let mut memos = spread();
    // A memo recorded late on a Sunday evening in another offset stays in its own week.
    memos[3].meta.recorded_at = DateTime::parse_from_rfc3339("2026-03-08T23:30:00-05:00").ok();
    {
        let db = Sqlite::open_at_version(&path, 1).unwrap();
        assert_eq!(db.version().unwrap(), 1);
        for m in &memos {
            store_v1(&db, m);
        }
    }
    let mut db = Sqlite::open(&path).unwrap();
    assert_eq!(db.version().unwrap(), sqlite::MIGRATIONS.len() as i64);
    let mut fresh = Sqlite::in_memory().unwrap();
    fresh.store(&memos).unwrap();
    let migrated = rollups(&mut db);
    assert!(!migrated.is_empty());
    assert_eq!(
        migrated,
        rollups(&mut fresh),
        "the backfill counts as storing does"
    );
    assert!(migrated.iter().any(|r| r.starts_with("week|2026-03-02|")));
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);

    // PostgreSQL: the same, and the same rows as SQLite.
    let (Some(pg), Some(pg_fresh)) = (
        pg_server::PgServer::database("v1"),
        pg_server::PgServer::database("v1_fresh"),
    ) else {
        return;
    };
    {
        let mut old = Postgres::open_at(&pg.url, 1).unwrap();
        assert_eq!(old.version().unwrap(), 1);
        for m in &memos {
            store_v1_pg(&mut old, m);
        }
    }
    let mut db = Postgres::open(&pg.url).unwrap();
    assert_eq!(db.version().unwrap(), postgres::MIGRATIONS.len() as i64);
    let mut fresh = Postgres::open(&pg_fresh.url).unwrap();
    fresh.store(&memos).unwrap();
    let pg_migrated = rollups(&mut db);
    assert_eq!(pg_migrated, rollups(&mut fresh));
    assert_eq!(pg_migrated, migrated, "PostgreSQL counts as SQLite does");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM memo_tags WHERE seq IS NULL"),
        0,
        "every tag has its memo's seq"
    );
}

/// The statements version 1 stored a memo with, on PostgreSQL.
fn store_v1_pg(db: &mut Postgres, m: &NewMemo) {
    let recorded = m.meta.recorded_at.unwrap();
    let c = db.raw();
    c.execute(
        "INSERT INTO memos (memo_id, source, rep_id, customer_id, team, domain, recorded_at,
            recorded_ms, stored_at, stored_ms, stored_by, text, library_version, need_count,
            vague, high_value, total_ms, result)
         VALUES ($1, 'text', $2, $3, $4, $5, $6, $7, $8, $9, 'crm', $10, 'lib', $11, $12, false, 1.0, $13)",
        &[
            &m.memo_id,
            &m.meta.rep_id,
            &m.meta.customer_id,
            &m.meta.team,
            &m.meta.domain,
            &recorded.to_rfc3339(),
            &recorded.timestamp_millis(),
            &m.stored_at.to_rfc3339(),
            &m.stored_at.timestamp_millis(),
            &m.text,
            &(m.needs.len() as i32),
            &m.vague,
            &m.result,
        ],
    )
    .unwrap();
    for (kind, tags) in [
        ("need", &m.needs),
        ("action", &m.actions),
        ("ruled_out", &m.ruled_out),
    ] {
        for t in tags {
            c.execute(
                "INSERT INTO memo_tags (memo_id, kind, tag) VALUES ($1, $2, $3)",
                &[&m.memo_id, &kind, t],
            )
            .unwrap();
        }
    }
}

#[test]
fn open_urgent_needs_are_the_customers_latest_memos() {
    for mut b in backends("urgent") {
        eprintln!("backend {}", b.name);
        open_urgent_needs_are_the_customers_latest_memos_on(b.db.as_mut());
    }
}

fn open_urgent_needs_are_the_customers_latest_memos_on(db: &mut dyn TestDb) {
    db.store(&[
        memo("a1", "ca", &["stock"], "2026-03-01T10:00:00+08:00"),
        memo("b1", "cb", &["stock", "price"], "2026-03-02T10:00:00+08:00"),
        memo("b2", "cb", &["price"], "2026-03-05T10:00:00+08:00"),
        memo("c1", "cc", &["stock"], "2026-03-09T10:00:00+08:00"),
        memo("d1", "cd", &["price"], "2026-03-01T10:00:00+08:00"),
    ])
    .unwrap();
    let now = DateTime::parse_from_rfc3339("2026-03-10T12:00:00+08:00")
        .unwrap()
        .timestamp_millis();
    let q = |days: u32| metrics::UrgentQuery {
        needs: vec!["stock".into()],
        now_ms: now,
        days,
        rep_id: None,
        team: None,
        domain: None,
        limit: 10,
    };
    let ids = |db: &mut dyn TestDb, days| -> Vec<(String, i64)> {
        db.open_urgent(&q(days))
            .unwrap()
            .into_iter()
            .map(|u| (u.customer_id, u.days_since))
            .collect()
    };
    // cb was visited again; cc only a day ago.
    assert_eq!(ids(db, 7), [("ca".to_string(), 9)]);
    assert_eq!(ids(db, 1), [("ca".to_string(), 9), ("cc".to_string(), 1)]);
    // Without the follow-up, cb's urgent memo is its latest again.
    assert!(db.delete("b2").unwrap());
    assert_eq!(ids(db, 7), [("ca".to_string(), 9), ("cb".to_string(), 8)]);
    let u = db.open_urgent(&q(7)).unwrap();
    assert_eq!(u[1].needs, ["stock"]);
    assert_eq!(u[1].memo_id, "b1");
    // A later memo stored afterwards but recorded earlier is no follow-up.
    db.store(&[memo("a0", "ca", &[], "2026-02-20T10:00:00+08:00")])
        .unwrap();
    assert_eq!(ids(db, 7).len(), 2);
    assert!(db
        .open_urgent(&metrics::UrgentQuery {
            rep_id: Some("nobody".into()),
            ..q(7)
        })
        .unwrap()
        .is_empty());
}

/// The archive benchmark's probes on a small synthetic archive (the 1 000 000-memo run is
/// `cargo bench --bench archive`): every request answers, and answers what the data holds.
#[test]
fn a_synthetic_archive_answers_every_benchmark_probe() {
    let templates = synthetic::templates().unwrap();
    let plan = synthetic::Plan {
        memos: 3000,
        end: Utc::now(),
    };
    for mut b in backends("probes") {
        eprintln!("backend {}", b.name);
        let db: &mut dyn Store = b.db.as_mut();
        let mut written = 0;
        synthetic::fill(db, &plan, &templates, &mut |n| written = n).unwrap();
        assert_eq!(written, 3000);
        let id = db.list(&Filter::default(), None, 1).unwrap().items[0]
            .memo_id
            .clone();
        for (name, probe) in synthetic::probes(&plan) {
            let rows = synthetic::run(db, &probe, &id).unwrap();
            if name.contains("nobody") || name.contains("no memo has") {
                assert_eq!(rows, 0, "{} {name}", b.name);
            } else {
                assert!(rows > 0, "{} {name} answered nothing", b.name);
            }
        }
    }
}
