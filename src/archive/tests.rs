use super::sqlite::Sqlite;
use super::*;

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
    let mut db = Sqlite::in_memory().unwrap();
    assert_eq!(db.version().unwrap(), sqlite::MIGRATIONS.len() as i64);
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

    let list = |db: &mut Sqlite, f: Filter| -> Vec<String> {
        db.list(&f, None, 100)
            .unwrap()
            .items
            .into_iter()
            .map(|m| m.memo_id)
            .collect()
    };
    assert_eq!(
        list(
            &mut db,
            Filter {
                customer_id: Some("c-odd".into()),
                ..Filter::default()
            }
        ),
        ["m5", "m3", "m1"]
    );
    assert_eq!(
        list(
            &mut db,
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
            &mut db,
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
            &mut db,
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
    let mut db = Sqlite::in_memory().unwrap();
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
    let mut db = Sqlite::in_memory().unwrap();
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
    let orphans: i64 = db
        .conn()
        .query_row(
            "SELECT (SELECT COUNT(*) FROM memo_tags) + (SELECT COUNT(*) FROM reviews)",
            [],
            |r| r.get(0),
        )
        .unwrap();
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

#[tokio::test]
async fn the_writer_stores_in_order_and_reads_see_every_earlier_memo() {
    let archive = Archive::with_store(
        Box::new(Sqlite::in_memory().unwrap()),
        4,
        Duration::from_millis(500),
        0,
    );
    for i in 0..20 {
        archive
            .submit(memo(
                &format!("w{i}"),
                "c",
                &[],
                "2026-03-01T10:00:00+08:00",
            ))
            .await;
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
    assert_eq!(archive.stats().dropped.load(Ordering::Relaxed), 0);
    // A request that panics does not stop the writer.
    let r = archive
        .call(|_| -> Result<()> { panic!("a faulty request") })
        .await;
    assert!(matches!(r, Err(ArchiveError::Closed)));
    archive
        .submit(memo("after", "c", &[], "2026-03-01T10:00:00+08:00"))
        .await;
    assert!(archive.call(|s| s.get("after")).await.unwrap().is_some());
    archive.close();
    assert!(matches!(archive.flush().await, Err(ArchiveError::Closed)));
}

/// Every row of the rollups, sorted.
fn rollups(db: &Sqlite) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        "SELECT period || '|' || bucket || '|' || rep_id || '|' || team || '|' || domain || '|' || memos || '|' || vague || '|' || with_need FROM metric_memos",
        "SELECT period || '|' || kind || '|' || bucket || '|' || rep_id || '|' || team || '|' || domain || '|' || tag || '|' || memos FROM metric_tags",
        "SELECT customer_id || '|' || memo_id || '|' || recorded_ms || '|' || COALESCE(rep_id, '-') FROM customer_last",
    ] {
        let mut st = db.conn().prepare(sql).unwrap();
        let rows = st.query_map([], |r| r.get::<_, String>(0)).unwrap();
        out.extend(rows.map(|r| r.unwrap()));
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
    use metrics::{GroupBy, Period};
    let memos = spread();
    let mut db = Sqlite::in_memory().unwrap();
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
    let mut fresh = Sqlite::in_memory().unwrap();
    let kept: Vec<NewMemo> = memos
        .iter()
        .filter(|m| left.contains(&m.memo_id))
        .cloned()
        .collect();
    fresh.store(&kept).unwrap();
    assert_eq!(rollups(&db), rollups(&fresh));
    // Deleting everything leaves empty rollups, not rows of zeros.
    for id in &left {
        db.delete(id).unwrap();
    }
    assert!(rollups(&db).is_empty(), "{:?}", rollups(&db));
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
    let db = Sqlite::open(&path).unwrap();
    assert_eq!(db.version().unwrap(), sqlite::MIGRATIONS.len() as i64);
    let mut fresh = Sqlite::in_memory().unwrap();
    fresh.store(&memos).unwrap();
    let migrated = rollups(&db);
    assert!(!migrated.is_empty());
    assert_eq!(
        migrated,
        rollups(&fresh),
        "the backfill counts as storing does"
    );
    assert!(migrated.iter().any(|r| r.starts_with("week|2026-03-02|")));
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn open_urgent_needs_are_the_customers_latest_memos() {
    let mut db = Sqlite::in_memory().unwrap();
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
    let ids = |db: &mut Sqlite, days| -> Vec<(String, i64)> {
        db.open_urgent(&q(days))
            .unwrap()
            .into_iter()
            .map(|u| (u.customer_id, u.days_since))
            .collect()
    };
    // cb was visited again; cc only a day ago.
    assert_eq!(ids(&mut db, 7), [("ca".to_string(), 9)]);
    assert_eq!(
        ids(&mut db, 1),
        [("ca".to_string(), 9), ("cc".to_string(), 1)]
    );
    // Without the follow-up, cb's urgent memo is its latest again.
    assert!(db.delete("b2").unwrap());
    assert_eq!(
        ids(&mut db, 7),
        [("ca".to_string(), 9), ("cb".to_string(), 8)]
    );
    let u = db.open_urgent(&q(7)).unwrap();
    assert_eq!(u[1].needs, ["stock"]);
    assert_eq!(u[1].memo_id, "b1");
    // A later memo stored afterwards but recorded earlier is no follow-up.
    db.store(&[memo("a0", "ca", &[], "2026-02-20T10:00:00+08:00")])
        .unwrap();
    assert_eq!(ids(&mut db, 7).len(), 2);
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
    let mut db = Sqlite::in_memory().unwrap();
    let mut written = 0;
    synthetic::fill(&mut db, &plan, &templates, &mut |n| written = n).unwrap();
    assert_eq!(written, 3000);
    let id = db.list(&Filter::default(), None, 1).unwrap().items[0]
        .memo_id
        .clone();
    for (name, probe) in synthetic::probes(&plan) {
        let rows = synthetic::run(&mut db, &probe, &id).unwrap();
        if name.contains("nobody") || name.contains("no memo has") {
            assert_eq!(rows, 0, "{name}");
        } else {
            assert!(rows > 0, "{name} answered nothing");
        }
    }
}
