use chrono::{Duration, Utc};

use super::sqlite::SqliteJobs;
use super::webhook::{backoff, sign, signature_header, verify};
use super::*;
use crate::config::WebhookConfig;

fn new_job(owner: u8, idem: Option<&str>, fp: u8, audio: &[u8]) -> NewJob {
    NewJob {
        job_id: new_job_id(),
        memo_id: crate::result::new_memo_id(),
        owner: [owner; 32],
        owner_name: format!("key-{owner}"),
        idempotency_key: idem.map(String::from),
        fingerprint: [fp; 32],
        audio: audio.to_vec(),
        meta: JobMeta {
            rep_id: Some("rep-1".into()),
            ..JobMeta::default()
        },
    }
}

fn created(s: Submitted) -> Job {
    match s {
        Submitted::Created(j) => j,
        other => panic!("expected a new job, got {other:?}"),
    }
}

fn failure() -> Outcome {
    Outcome::Failed(JobFailure {
        code: "corrupt_audio".into(),
        message: "bad".into(),
    })
}

#[test]
fn a_job_goes_from_queued_to_running_to_failed_once() {
    let db = SqliteJobs::in_memory().unwrap();
    let job = created(
        db.submit(new_job(1, None, 1, b"RIFF...."), 10, 1 << 20)
            .unwrap(),
    );
    assert_eq!(job.status, Status::Queued);
    assert_eq!(job.attempts, 0);
    let c = db.claim().unwrap().unwrap();
    assert_eq!((c.job_id.as_str(), c.attempts), (job.job_id.as_str(), 1));
    assert_eq!(c.audio, b"RIFF....");
    assert_eq!(c.meta.rep_id.as_deref(), Some("rep-1"));
    assert!(db.claim().unwrap().is_none(), "one job, claimed once");
    assert_eq!(
        db.get(&job.job_id).unwrap().unwrap().status,
        Status::Running
    );
    let ev = NewEvent {
        event_id: event_id(&job.job_id),
        body: "{}".into(),
    };
    assert!(db
        .finish(&job.job_id, &failure(), Utc::now(), Some(&ev))
        .unwrap());
    // A second end (a duplicate attempt) changes nothing and stores no second event.
    assert!(!db
        .finish(&job.job_id, &failure(), Utc::now(), Some(&ev))
        .unwrap());
    let got = db.get(&job.job_id).unwrap().unwrap();
    assert_eq!(got.status, Status::Failed);
    assert_eq!(got.error.unwrap().code, "corrupt_audio");
    assert_eq!(db.outbox_counts().unwrap().pending, 1);
    let c = db.counts().unwrap();
    assert_eq!(
        (c.queued, c.running, c.failed, c.pending_bytes),
        (0, 0, 1, 0)
    );
}

#[test]
fn running_jobs_are_queued_again_at_start_and_oldest_goes_first() {
    let db = SqliteJobs::in_memory().unwrap();
    let a = created(db.submit(new_job(1, None, 1, b"a"), 10, 100).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(3));
    let b = created(db.submit(new_job(1, None, 2, b"b"), 10, 100).unwrap());
    assert_eq!(db.claim().unwrap().unwrap().job_id, a.job_id);
    assert_eq!(db.recover().unwrap(), 1);
    let again = db.claim().unwrap().unwrap();
    assert_eq!(
        (again.job_id.as_str(), again.attempts),
        (a.job_id.as_str(), 2)
    );
    db.requeue(&again.job_id).unwrap();
    assert_eq!(db.claim().unwrap().unwrap().attempts, 3);
    assert_eq!(db.claim().unwrap().unwrap().job_id, b.job_id);
}

#[test]
fn idempotency_key_returns_the_same_job_or_refuses_a_different_request() {
    let db = SqliteJobs::in_memory().unwrap();
    let first = created(db.submit(new_job(1, Some("k"), 7, b"x"), 10, 100).unwrap());
    match db.submit(new_job(1, Some("k"), 7, b"x"), 10, 100).unwrap() {
        Submitted::Existing(j) => assert_eq!(j.job_id, first.job_id),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        db.submit(new_job(1, Some("k"), 8, b"x"), 10, 100).unwrap(),
        Submitted::KeyReused
    ));
    // Another key's use of the same Idempotency-Key is its own job.
    let other = created(db.submit(new_job(2, Some("k"), 7, b"x"), 10, 100).unwrap());
    assert_ne!(other.job_id, first.job_id);
}

#[test]
fn the_queue_is_bounded_by_jobs_and_by_bytes() {
    let db = SqliteJobs::in_memory().unwrap();
    created(db.submit(new_job(1, None, 1, b"aaaa"), 2, 10).unwrap());
    assert!(matches!(
        db.submit(new_job(1, None, 2, b"bbbbbbb"), 2, 10).unwrap(),
        Submitted::Full
    ));
    created(db.submit(new_job(1, None, 3, b"cc"), 2, 10).unwrap());
    assert!(matches!(
        db.submit(new_job(1, None, 4, b"d"), 2, 10).unwrap(),
        Submitted::Full
    ));
    // A finished job frees its place and its bytes.
    let c = db.claim().unwrap().unwrap();
    db.finish(&c.job_id, &failure(), Utc::now(), None).unwrap();
    created(db.submit(new_job(1, None, 4, b"d"), 2, 10).unwrap());
}

#[test]
fn outbox_retries_parks_and_resends() {
    let db = SqliteJobs::in_memory().unwrap();
    let job = created(db.submit(new_job(1, None, 1, b"a"), 10, 100).unwrap());
    db.claim().unwrap();
    let ev = NewEvent {
        event_id: event_id(&job.job_id),
        body: "{\"x\":1}".into(),
    };
    db.finish(&job.job_id, &failure(), Utc::now(), Some(&ev))
        .unwrap();
    let due = db.due(Utc::now(), 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].attempts, due[0].body.as_str()), (0, "{\"x\":1}"));
    let later = Utc::now() + Duration::seconds(30);
    db.attempt_failed(&ev.event_id, "HTTP 500", Some(later))
        .unwrap();
    assert!(
        db.due(Utc::now(), 10).unwrap().is_empty(),
        "not due before its time"
    );
    assert_eq!(db.due(later, 10).unwrap()[0].attempts, 1);
    assert!(db.next_due().unwrap().is_some());
    db.attempt_failed(&ev.event_id, "HTTP 503", None).unwrap();
    let dead = db.dead(10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].attempts, dead[0].last_error.as_str()),
        (2, "HTTP 503")
    );
    assert!(db.due(later, 10).unwrap().is_empty());
    // Purging keeps a job whose event is not delivered.
    assert_eq!(db.purge(Utc::now() + Duration::days(1)).unwrap(), 0);
    assert_eq!(db.resend(&ev.event_id).unwrap(), Resend::Queued);
    assert_eq!(
        db.resend(&ev.event_id).unwrap(),
        Resend::NotDead,
        "pending now, not dead"
    );
    assert_eq!(db.resend("evt_none").unwrap(), Resend::Unknown);
    let due = db.due(Utc::now(), 10).unwrap();
    assert_eq!(due[0].attempts, 0);
    db.delivered(&ev.event_id, 200).unwrap();
    assert_eq!(
        db.outbox_counts().unwrap(),
        OutboxCounts {
            pending: 0,
            delivered: 1,
            dead: 0,
            failed_attempts: 0,
        }
    );
    assert_eq!(db.purge(Utc::now() + Duration::days(1)).unwrap(), 1);
    assert!(db.get(&job.job_id).unwrap().is_none());
}

#[test]
fn jobs_and_archive_share_a_file_on_separate_migration_tracks() {
    let dir = std::env::temp_dir().join(format!("needtag-jobs-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("archive.sqlite");
    let archive = crate::archive::sqlite::Sqlite::open(&path).unwrap();
    let archive_version = archive.version().unwrap();
    let jobs = SqliteJobs::open(&path).unwrap();
    assert_eq!(jobs.version().unwrap(), 1);
    created(jobs.submit(new_job(1, None, 1, b"a"), 10, 100).unwrap());
    drop((archive, jobs));
    // Reopened in the other order, each finds its own schema as it left it.
    let jobs = SqliteJobs::open(&path).unwrap();
    let archive = crate::archive::sqlite::Sqlite::open(&path).unwrap();
    assert_eq!(archive.version().unwrap(), archive_version);
    assert_eq!(jobs.counts().unwrap().queued, 1);
    jobs.ping().unwrap();
    drop((archive, jobs));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn signatures_verify_only_with_the_right_secret_body_and_time() {
    let body = br#"{"event_id":"evt_1"}"#;
    let h = signature_header(b"0123456789abcdef", 1_700_000_000, body);
    assert!(h.starts_with("t=1700000000,v1="));
    assert_eq!(h.len(), "t=1700000000,v1=".len() + 64);
    assert!(verify(b"0123456789abcdef", &h, body, 1_700_000_010, 300));
    assert!(!verify(b"0123456789abcdeX", &h, body, 1_700_000_010, 300));
    assert!(!verify(b"0123456789abcdef", &h, b"{}", 1_700_000_010, 300));
    assert!(!verify(b"0123456789abcdef", &h, body, 1_700_001_000, 300));
    assert!(!verify(
        b"0123456789abcdef",
        "v1=00",
        body,
        1_700_000_000,
        300
    ));
    // What the README's openssl command prints for t=1, body "x", secret "secret":
    // printf '%s' '1.x' | openssl dgst -sha256 -hmac secret
    assert_eq!(
        sign(b"secret", 1, b"x"),
        "33270e99f50e3d3ec295e0d7185dc323a6231c2739f396d70e6b71ea6a435486"
    );
}

#[test]
fn backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() {
    let cfg = WebhookConfig {
        backoff_ms: 1000,
        max_backoff_ms: 10_000,
        ..WebhookConfig::default()
    };
    for _ in 0..50 {
        let first = backoff(&cfg, 1).as_millis();
        assert!((500..=1000).contains(&first), "{first}");
        let third = backoff(&cfg, 3).as_millis();
        assert!((2000..=4000).contains(&third), "{third}");
        let capped = backoff(&cfg, 40).as_millis();
        assert!((5000..=10_000).contains(&capped), "{capped}");
    }
}

// The archive's tests hold the PostgreSQL test server (one per test binary).
use crate::archive::tests::pg_server;

#[test]
fn the_shared_store_ends_a_job_once_and_leases_its_event_to_one_sender() {
    let Some(pg) = pg_server::PgServer::database("jobs_shared") else {
        return;
    };
    use super::postgres::{Claim, PgJobs};
    let db = PgJobs::open(&pg.url, 60_000).unwrap();
    assert_eq!(
        db.version().unwrap(),
        super::postgres::MIGRATIONS.len() as i64
    );
    // A second replica starting on the same database finds nothing to migrate.
    let other = PgJobs::open(&pg.url, 60_000).unwrap();
    let job = created(
        db.submit(new_job(1, Some("k"), 7, b"RIFF"), 10, 1 << 20)
            .unwrap(),
    );
    assert!(matches!(
        other.submit(new_job(1, Some("k"), 7, b"RIFF"), 10, 1 << 20).unwrap(),
        Submitted::Existing(j) if j.job_id == job.job_id
    ));
    assert!(matches!(
        other
            .submit(new_job(1, Some("k"), 8, b"RIFF"), 10, 1 << 20)
            .unwrap(),
        Submitted::KeyReused
    ));
    assert!(matches!(
        db.submit(new_job(2, None, 1, b"RIFF"), 1, 1 << 20).unwrap(),
        Submitted::Full
    ));
    assert_eq!(db.unpublished(-1000, 10).unwrap(), vec![job.job_id.clone()]);
    db.mark_published(&job.job_id).unwrap();
    assert!(db.unpublished(-1000, 10).unwrap().is_empty());

    // Two workers got the same job (a redelivery): both run it, one end is kept.
    let Claim::Run(a) = db.claim_id(&job.job_id, "host-a:1").unwrap() else {
        panic!("not claimed")
    };
    let Claim::Run(b) = other.claim_id(&job.job_id, "host-b:2").unwrap() else {
        panic!("not claimed again")
    };
    assert_eq!((a.attempts, b.attempts), (1, 2));
    assert_eq!(a.audio, b"RIFF");
    let event = |c: &Claimed| Event::of(c, &failure(), Utc::now()).to_new().unwrap();
    assert!(db
        .complete(&b, &failure(), Utc::now(), Some(&event(&b)))
        .unwrap());
    assert!(!other
        .complete(&a, &failure(), Utc::now(), Some(&event(&a)))
        .unwrap());
    assert!(matches!(
        db.claim_id(&job.job_id, "host-c:3").unwrap(),
        Claim::Finished
    ));
    assert!(matches!(
        db.claim_id("job_none", "host-c:3").unwrap(),
        Claim::Unknown
    ));
    let view = db.get(&job.job_id).unwrap().unwrap();
    assert_eq!(view.status, Status::Failed);
    assert_eq!(view.attempts, 2);
    assert_eq!(view.error.unwrap().code, "corrupt_audio");

    // One event; the first sender leases it, the second finds nothing due.
    let due = db.due(Utc::now(), 10).unwrap();
    assert_eq!(due.len(), 1);
    assert!(other.due(Utc::now(), 10).unwrap().is_empty());
    db.attempt_failed(&due[0].event_id, "HTTP 500", Some(Utc::now()))
        .unwrap();
    let again = other.due(Utc::now(), 10).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    other.delivered(&again[0].event_id, 200).unwrap();
    let c = db.outbox_counts().unwrap();
    assert_eq!(
        (c.pending, c.delivered, c.dead, c.failed_attempts),
        (0, 1, 0, 1)
    );
    assert_eq!(db.counts().unwrap().redelivered, 1);
    db.ping().unwrap();
    assert_eq!(db.purge(Utc::now() + Duration::days(1)).unwrap(), 1);
}
