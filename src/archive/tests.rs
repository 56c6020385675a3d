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
