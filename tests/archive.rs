//! The memo archive end to end: a real server on a loopback port with the real models and a
//! temporary SQLite file, or a database on a real PostgreSQL server started by the test. Memos are stored through `/v1/tag`, `/v1/tag/batch` and `/v1/memos`,
//! then listed, fetched, reviewed, exported (and read back by `needtag eval`), deleted and
//! purged; scopes and bad input are checked on every archive route.

mod common;

use std::sync::OnceLock;

use common::server::{bearer, client, config, Server};
use needtag::archive::sqlite::Sqlite;
use needtag::archive::{Filter, Meta, NewMemo, Source, Store};
use needtag::config::parse_api_keys;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

const TAG: &str = "archive-tag-key-000001";
const REVIEW: &str = "archive-review-key-0001";
const ADMIN: &str = "archive-admin-key-00001";

const MEMO: &str = "张主任提到关节镜手术后患者投诉疼痛管理不到位，希望我们下周三带镇痛方案对比表过来，另外库存还够，暂时不用补货";
const VAGUE: &str = "已沟通，持续跟进";
const PRICE: &str = "客户说价格太高，竞品便宜了百分之十，希望我们给个特价";

fn with_keys(tag: &str) -> needtag::Config {
    let mut cfg = config(tag);
    cfg.server.api_keys =
        parse_api_keys(&format!("{TAG}:tag,{REVIEW}:review,{ADMIN}:admin")).unwrap();
    cfg.server.per_key_inflight = 0;
    cfg
}

fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server::start(with_keys("archive"), true))
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The error code of an error answer (and a check that it has the documented shape).
fn code(body: &Value) -> &str {
    assert!(body["error"]["message"].is_string(), "{body}");
    body["error"]["code"].as_str().unwrap_or("")
}

async fn tag(s: &Server, body: Value) -> Value {
    let (st, r) = send(
        client()
            .post(s.url("/v1/tag"))
            .header("authorization", bearer(TAG))
            .json(&body),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert!(r["memo_id"].is_string(), "{r}");
    r
}

async fn list(s: &Server, query: &str) -> Value {
    let (st, r) = send(
        client()
            .get(s.url(&format!("/v1/memos?{query}")))
            .header("authorization", bearer(REVIEW)),
    )
    .await;
    assert_eq!(st, 200, "{query}: {r}");
    r
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["memo_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn memos_are_stored_listed_fetched_reviewed_exported_and_deleted() {
    stored_listed_fetched_reviewed_exported_and_deleted(shared()).await;
}

#[tokio::test]
async fn the_same_on_postgresql() {
    let Some(pg) = common::postgres::PgServer::database("archive_flow") else {
        return;
    };
    let mut cfg = with_keys("archive-pg");
    cfg.archive.url = Some(pg.url.clone());
    let s = Server::start(cfg, true);
    stored_listed_fetched_reviewed_exported_and_deleted(&s).await;
    each_route_asks_for_its_scope_on(&s).await;
    managers_numbers_count_memos_and_forget_deleted_ones(&s).await;
    drop(s);
    drop(pg);
}

async fn stored_listed_fetched_reviewed_exported_and_deleted(s: &Server) {
    let c = client();
    let rep = "rep-flow";
    let first = tag(
        s,
        json!({"text": MEMO, "recorded_at": "2026-03-04T10:00:00+08:00", "rep_id": rep,
               "customer_id": "hosp-1", "team": "east", "domain": "medical_devices"}),
    )
    .await;
    let (st, batch) = send(
        c.post(s.url("/v1/tag/batch"))
            .header("authorization", bearer(TAG))
            .json(&json!({"items": [
                {"id": "b1", "text": VAGUE, "recorded_at": "2026-03-05T10:00:00+08:00", "rep_id": rep, "customer_id": "shop-2", "team": "west"},
                {"id": "b2", "text": PRICE, "recorded_at": "2026-03-06T10:00:00+08:00", "rep_id": rep, "customer_id": "shop-2", "team": "west"},
                {"id": "b3", "text": PRICE, "rep_id": "x".repeat(200)}
            ]})),
    )
    .await;
    assert_eq!(st, 200, "{batch}");
    let results = batch["results"].as_array().unwrap();
    assert!(results[0]["result"]["memo_id"].is_string(), "{batch}");
    assert!(results[1]["result"]["memo_id"].is_string(), "{batch}");
    assert_eq!(results[2]["error"]["code"], "invalid_input", "{batch}");
    let form = Form::new()
        .part(
            "audio",
            Part::bytes(common::fixture_bytes("audio/aishell_S0764W0121.wav")).file_name("m.wav"),
        )
        .text("rep_id", rep)
        .text("customer_id", "hosp-9")
        .text("team", "east")
        .text("recorded_at", "2026-03-07T17:20:00+08:00");
    let (st, audio) = send(
        c.post(s.url("/v1/memos"))
            .header("authorization", bearer(TAG))
            .multipart(form),
    )
    .await;
    assert_eq!(st, 200, "{audio}");
    let audio_id = audio["memo_id"].as_str().unwrap().to_string();

    // Everything answered is listed, newest first, and pages join up without gaps or repeats.
    let all = list(s, &format!("rep_id={rep}")).await;
    let every = ids(&all);
    assert_eq!(every.len(), 4, "{all}");
    assert_eq!(every[0], audio_id);
    assert!(all.get("next").is_none(), "{all}");
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = list(s, &format!("rep_id={rep}&limit=3{cursor}")).await;
        paged.extend(ids(&page));
        match page["next"].as_str() {
            Some(n) => cursor = format!("&cursor={n}"),
            None => break,
        }
    }
    assert_eq!(paged, every);

    let first_id = first["memo_id"].as_str().unwrap().to_string();
    let need = first["needs"][0]["id"].as_str().unwrap().to_string();
    for (query, expected) in [
        (format!("rep_id={rep}&customer_id=shop-2"), 2),
        (format!("rep_id={rep}&team=east"), 2),
        (format!("rep_id={rep}&domain=medical_devices"), 1),
        (format!("rep_id={rep}&need={need}"), 1),
        (format!("rep_id={rep}&from=2026-03-05&to=2026-03-06"), 2),
        (format!("rep_id={rep}&from=2026-03-06T00:00:00%2B08:00"), 2),
        (format!("rep_id={rep}&reviewed=true"), 0),
    ] {
        let page = list(s, &query).await;
        assert_eq!(ids(&page).len(), expected, "{query}: {page}");
    }
    let vague_id = results[0]["result"]["memo_id"]
        .as_str()
        .unwrap()
        .to_string();
    let vague = list(s, &format!("rep_id={rep}&vague=true")).await;
    assert!(
        ids(&vague).contains(&vague_id) && !ids(&vague).contains(&first_id),
        "{vague}"
    );
    let no_need = list(s, &format!("rep_id={rep}&no_need=true")).await;
    assert!(ids(&no_need).contains(
        &results[0]["result"]["memo_id"]
            .as_str()
            .unwrap()
            .to_string()
    ));
    assert!(!ids(&no_need).contains(&first_id));

    // A stored memo is the answer that was given, read back.
    let (st, got) = send(
        c.get(s.url(&format!("/v1/memos/{first_id}")))
            .header("authorization", bearer(REVIEW)),
    )
    .await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["result"], first, "the stored result is the answer");
    assert_eq!(got["source"], "text");
    assert_eq!(got["customer_id"], "hosp-1");
    assert_eq!(got["stored_by"], "env-key-1");
    let (_, got_audio) = send(
        c.get(s.url(&format!("/v1/memos/{audio_id}")))
            .header("authorization", bearer(REVIEW)),
    )
    .await;
    assert_eq!(
        got_audio["result"], audio,
        "the stored voice memo is the answer"
    );
    assert_eq!(got_audio["source"], "audio");

    // Review: reject a need, add a missed one, confirm an action.
    let action = first["actions"][0]["id"].as_str().map(str::to_string);
    let mut marks = vec![
        json!({"kind": "need", "id": need, "verdict": "reject"}),
        json!({"kind": "need", "id": "equipment_maintenance", "verdict": "add"}),
    ];
    if let Some(a) = &action {
        marks.push(json!({"kind": "action", "id": a, "verdict": "confirm"}));
    }
    let review = |id: &str, body: Value| {
        c.post(s.url(&format!("/v1/memos/{id}/review")))
            .header("authorization", bearer(REVIEW))
            .json(&body)
    };
    let (st, reviewed) = send(review(&first_id, json!({ "marks": marks }))).await;
    assert_eq!(st, 200, "{reviewed}");
    assert_eq!(reviewed["reviewed"], true);
    assert_eq!(reviewed["reviews"][0]["reviewer"], "env-key-2");
    let labels: Vec<&str> = reviewed["labels"]["needs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !labels.contains(&need.as_str()) && labels.contains(&"equipment_maintenance"),
        "{reviewed}"
    );
    for (body, status, expected) in [
        (
            json!({"marks": [{"kind": "need", "id": "no_such_need", "verdict": "add"}]}),
            422,
            "invalid_input",
        ),
        (
            json!({"marks": [{"kind": "need", "id": "display_fee", "verdict": "confirm"}]}),
            422,
            "invalid_input",
        ),
        (json!({"marks": []}), 422, "invalid_input"),
        (
            json!({"marks": [{"kind": "mood", "id": "x", "verdict": "add"}]}),
            400,
            "invalid_json",
        ),
    ] {
        let (st, e) = send(review(&first_id, body.clone())).await;
        assert_eq!((st, code(&e)), (status, expected), "{body}: {e}");
    }
    let (st, e) = send(review("no-such-memo", json!({"marks": marks}))).await;
    assert_eq!((st, code(&e)), (404, "not_found"));

    // The export is labeled JSONL that needtag's evaluation reads as it is.
    let export = |query: &str| {
        c.get(s.url(&format!("/v1/memos/export?{query}")))
            .header("authorization", bearer(REVIEW))
            .send()
    };
    let resp = export(&format!("rep_id={rep}")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let jsonl = resp.text().await.unwrap();
    let memos = needtag::eval::parse_jsonl(&jsonl, "export").unwrap();
    assert_eq!(memos.len(), 1, "only reviewed memos: {jsonl}");
    assert_eq!(memos[0].id, first_id);
    assert_eq!(memos[0].text, MEMO);
    assert!(memos[0]
        .needs
        .contains(&"equipment_maintenance".to_string()));
    let file = std::env::temp_dir().join(format!("needtag-export-{}.jsonl", std::process::id()));
    std::fs::write(&file, &jsonl).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_needtag"))
        .args(["eval", "--json", "--keyword-only"])
        .arg(&file)
        .env("NEEDTAG_MODELS", common::root().join("models/prepared"))
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["memos"], 1, "{report}");

    // Deleting needs admin; a deleted memo is gone from get, list and export.
    let delete =
        |path: String, key: &str| c.delete(s.url(&path)).header("authorization", bearer(key));
    let (st, e) = send(delete(format!("/v1/memos/{first_id}"), REVIEW)).await;
    assert_eq!((st, code(&e)), (403, "forbidden"));
    let (st, d) = send(delete(format!("/v1/memos/{first_id}"), ADMIN)).await;
    assert_eq!((st, d["deleted"].as_u64()), (200, Some(1)), "{d}");
    let (st, e) = send(delete(format!("/v1/memos/{first_id}"), ADMIN)).await;
    assert_eq!((st, code(&e)), (404, "not_found"));
    let (st, _) = send(
        c.get(s.url(&format!("/v1/memos/{first_id}")))
            .header("authorization", bearer(REVIEW)),
    )
    .await;
    assert_eq!(st, 404);
    assert!(!ids(&list(s, &format!("rep_id={rep}")).await).contains(&first_id));
    let jsonl = export(&format!("rep_id={rep}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(jsonl.trim().is_empty(), "{jsonl}");

    // By customer.
    let (st, d) = send(delete("/v1/customers/shop-2/memos".into(), ADMIN)).await;
    assert_eq!((st, d["deleted"].as_u64()), (200, Some(2)), "{d}");
    assert!(ids(&list(s, &format!("rep_id={rep}&customer_id=shop-2")).await).is_empty());
    assert_eq!(ids(&list(s, &format!("rep_id={rep}")).await), [audio_id]);
}

#[tokio::test]
async fn each_route_asks_for_its_scope() {
    each_route_asks_for_its_scope_on(shared()).await;
}

async fn each_route_asks_for_its_scope_on(s: &Server) {
    let c = client();
    let stored = tag(s, json!({"text": PRICE, "rep_id": "rep-scopes"})).await;
    let id = stored["memo_id"].as_str().unwrap();
    let review_body = json!({"marks": [{"kind": "need", "id": "display_fee", "verdict": "add"}]});
    let routes: Vec<(reqwest::Method, String, Option<Value>, &str)> = vec![
        (reqwest::Method::GET, "/v1/memos".into(), None, "review"),
        (
            reqwest::Method::GET,
            format!("/v1/memos/{id}"),
            None,
            "review",
        ),
        (
            reqwest::Method::GET,
            "/v1/memos/export".into(),
            None,
            "review",
        ),
        (
            reqwest::Method::POST,
            format!("/v1/memos/{id}/review"),
            Some(review_body),
            "review",
        ),
        (
            reqwest::Method::GET,
            "/v1/metrics/sales".into(),
            None,
            "review",
        ),
        (
            reqwest::Method::GET,
            "/v1/memos/blind-spots".into(),
            None,
            "review",
        ),
        (
            reqwest::Method::DELETE,
            "/v1/customers/nobody-at-all/memos".into(),
            None,
            "admin",
        ),
        (
            reqwest::Method::DELETE,
            "/v1/memos/not-there".into(),
            None,
            "admin",
        ),
    ];
    for (method, path, body, scope) in &routes {
        let req = |key: Option<&str>| {
            let mut r = c.request(method.clone(), s.url(path));
            if let Some(k) = key {
                r = r.header("authorization", bearer(k));
            }
            if let Some(b) = body {
                r = r.json(b);
            }
            r
        };
        let (st, e) = send(req(None)).await;
        assert_eq!((st, code(&e)), (401, "unauthorized"), "{method} {path}");
        for key in [TAG, REVIEW, ADMIN] {
            let (st, e) = send(req(Some(key))).await;
            let allowed =
                (key == REVIEW && *scope == "review") || (key == ADMIN && *scope == "admin");
            if allowed {
                assert_ne!(st, 403, "{method} {path} with the {scope} key: {e}");
                assert!(st < 500, "{method} {path}: {e}");
            } else {
                assert_eq!(
                    (st, code(&e)),
                    (403, "forbidden"),
                    "{method} {path} with {key}"
                );
            }
        }
    }
    // Reading and reviewing do not tag.
    let (st, e) = send(
        c.post(s.url("/v1/tag"))
            .header("authorization", bearer(REVIEW))
            .json(&json!({"text": PRICE})),
    )
    .await;
    assert_eq!((st, code(&e)), (403, "forbidden"));
}

#[tokio::test]
async fn bad_queries_and_metadata_are_typed_errors() {
    let s = shared();
    let c = client();
    for (query, status, expected) in [
        ("vague=maybe", 400, "invalid_request"),
        ("needs=price", 400, "invalid_request"),
        ("limit=0", 422, "invalid_input"),
        ("limit=100000", 422, "invalid_input"),
        ("cursor=abc", 422, "invalid_input"),
        ("cursor=-4", 422, "invalid_input"),
        ("from=yesterday", 422, "invalid_input"),
        ("to=2026-13-01", 422, "invalid_input"),
    ] {
        let (st, e) = send(
            c.get(s.url(&format!("/v1/memos?{query}")))
                .header("authorization", bearer(REVIEW)),
        )
        .await;
        assert_eq!((st, code(&e)), (status, expected), "{query}: {e}");
    }
    let (st, e) = send(
        c.get(s.url("/v1/memos/export?limit=3"))
            .header("authorization", bearer(REVIEW)),
    )
    .await;
    assert_eq!((st, code(&e)), (400, "invalid_request"));
    let (st, e) = send(
        c.get(s.url("/v1/memos/%ff%fe"))
            .header("authorization", bearer(REVIEW)),
    )
    .await;
    assert_eq!((st, code(&e)), (400, "invalid_request"), "{e}");
    let (st, e) = send(
        c.get(s.url(&format!("/v1/memos/{}", "a".repeat(300))))
            .header("authorization", bearer(REVIEW)),
    )
    .await;
    assert_eq!((st, code(&e)), (400, "invalid_request"), "{e}");
    let (st, e) = send(
        c.post(s.url("/v1/memos/some-id/review"))
            .header("authorization", bearer(REVIEW))
            .body("{not json"),
    )
    .await;
    assert_eq!((st, code(&e)), (400, "invalid_json"));
    for body in [
        json!({"text": PRICE, "customer_id": "c".repeat(129)}),
        json!({"text": PRICE, "team": "t".repeat(129)}),
        json!({"text": PRICE, "domain": "fmcg"}),
    ] {
        let (st, e) = send(
            c.post(s.url("/v1/tag"))
                .header("authorization", bearer(TAG))
                .json(&body),
        )
        .await;
        assert_eq!((st, code(&e)), (422, "invalid_input"), "{body}: {e}");
    }
    let (st, e) = send(
        c.post(s.url("/v1/tag"))
            .header("authorization", bearer(TAG))
            .json(&json!({"text": PRICE, "teem": "x"})),
    )
    .await;
    assert_eq!((st, code(&e)), (400, "invalid_json"), "{e}");
}

#[tokio::test]
async fn the_openapi_document_has_the_archive() {
    let s = shared();
    let (_, spec) = send(client().get(s.url("/openapi.json"))).await;
    for path in [
        "/v1/memos",
        "/v1/memos/{id}",
        "/v1/memos/{id}/review",
        "/v1/memos/{id}/audio",
        "/v1/memos/export",
        "/v1/customers/{id}/memos",
        "/v1/metrics/sales",
        "/v1/memos/blind-spots",
        "/v1/memos/retag",
    ] {
        assert!(spec["paths"][path].is_object(), "openapi lacks {path}");
    }
    assert!(spec["paths"]["/v1/memos"]["get"].is_object());
    assert!(spec["paths"]["/v1/memos"]["post"].is_object());
    assert!(spec["components"]["schemas"]["StoredMemo"].is_object());
}

fn old_memo(id: &str, days_ago: i64) -> NewMemo {
    NewMemo {
        memo_id: id.into(),
        source: Source::Text,
        meta: Meta {
            customer_id: Some("c-old".into()),
            ..Meta::default()
        },
        stored_by: "crm".into(),
        stored_at: chrono::Utc::now() - chrono::Duration::days(days_ago),
        text: "客户说价格太高".into(),
        library_version: "lib-old".into(),
        needs: vec![],
        actions: vec![],
        ruled_out: vec![],
        vague: false,
        high_value: false,
        high_value_actions: 0,
        total_ms: 1.0,
        result: r#"{"text":"客户说价格太高","needs":[],"ruled_out":[],"actions":[],"high_value":false,"next_steps":[],"contacts":[],"vague":{"flag":false},"library_version":"lib-old","mode":"keyword","timings":{"decode_ms":0.0,"vad_ms":0.0,"asr_ms":0.0,"tag_ms":0.0,"total_ms":0.0}}"#.into(),
        audio: None,
    }
}

#[tokio::test]
async fn memos_past_retention_are_purged_at_start_and_the_rest_survive_a_restart() {
    let mut cfg = with_keys("archive-retention");
    cfg.archive.retention_days = 30;
    {
        let mut db = Sqlite::open(&cfg.archive.path).unwrap();
        db.store(&[old_memo("expired", 31), old_memo("recent", 29)])
            .unwrap();
    }
    let mut s = Server::start(cfg.clone(), true);
    let c = client();
    let get = |id: &str| {
        c.get(s.url(&format!("/v1/memos/{id}")))
            .header("authorization", bearer(REVIEW))
    };
    let (st, _) = send(get("expired")).await;
    assert_eq!(st, 404, "purged at start-up");
    let (st, _) = send(get("recent")).await;
    assert_eq!(st, 200);
    let answered = tag(&s, json!({"text": PRICE, "customer_id": "c-new"})).await;
    let id = answered["memo_id"].as_str().unwrap().to_string();
    // A graceful stop writes every memo it answered.
    s.stop();
    let mut db = Sqlite::open(&cfg.archive.path).unwrap();
    let kept = db.get(&id).unwrap().expect("the answered memo is stored");
    assert_eq!(kept.customer_id.as_deref(), Some("c-new"));
    assert_eq!(
        db.list(&Filter::default(), None, 10).unwrap().items.len(),
        2
    );
    drop(s);
}

#[tokio::test]
async fn with_the_archive_off_answers_still_carry_an_id_and_its_routes_say_so() {
    let mut cfg = with_keys("archive-off");
    cfg.archive.enabled = false;
    let s = Server::start(cfg.clone(), true);
    tag(&s, json!({"text": PRICE})).await;
    let (st, e) = send(
        client()
            .get(s.url("/v1/memos"))
            .header("authorization", bearer(REVIEW)),
    )
    .await;
    assert_eq!((st, code(&e)), (404, "not_found"));
    assert!(!cfg.archive.path.exists(), "no file is created");
}

#[test]
fn the_command_line_exports_deletes_and_purges() {
    let dir = common::server::archive_dir("archive-cli");
    let path = dir.join("archive.sqlite");
    {
        let mut db = Sqlite::open(&path).unwrap();
        db.store(&[
            old_memo("cli-old", 400),
            old_memo("cli-a", 1),
            NewMemo {
                meta: Meta {
                    customer_id: Some("c-keep".into()),
                    ..Meta::default()
                },
                needs: vec!["price_concern".into()],
                ..old_memo("cli-b", 1)
            },
        ])
        .unwrap();
        db.review(
            "cli-b",
            &[needtag::archive::Mark {
                kind: needtag::archive::TagKind::Need,
                id: "price_concern".into(),
                verdict: needtag::archive::Verdict::Confirm,
            }],
            "ann",
        )
        .unwrap();
    }
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_needtag"))
            .arg("archive")
            .args(args)
            .arg("--archive")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (status, jsonl) = run(&["export"]);
    assert_eq!(status, Some(0));
    let memos = needtag::eval::parse_jsonl(&jsonl, "cli export").unwrap();
    assert_eq!(memos.len(), 1, "{jsonl}");
    assert_eq!(memos[0].id, "cli-b");
    assert_eq!(memos[0].needs, ["price_concern"]);
    assert_eq!(
        run(&["purge", "--days", "30"]),
        (Some(0), "{\"days\":30,\"purged\":1}\n".into())
    );
    assert_eq!(run(&["delete", "--memo", "cli-b"]).0, Some(0));
    assert_eq!(run(&["delete", "--memo", "cli-b"]).0, Some(1), "gone");
    assert_eq!(
        run(&["delete", "--customer", "c-old"]),
        (Some(0), "{\"deleted\":1}\n".into())
    );
    let (status, jsonl) = run(&["export"]);
    assert_eq!((status, jsonl.as_str()), (Some(0), ""));
    let mut db = Sqlite::open(&path).unwrap();
    assert!(db
        .list(&Filter::default(), None, 10)
        .unwrap()
        .items
        .is_empty());
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

const STOCK_OUT: &str = "城南几家超市我们的矿泉水断货两天了，老板催着今天必须补上";
const MEETING: &str = "今天终于见到了分管副院长，聊了二十分钟设备更新的事";

async fn sales(s: &Server, query: &str) -> (u16, Value) {
    send(
        client()
            .get(s.url(&format!("/v1/metrics/sales?{query}")))
            .header("authorization", bearer(REVIEW)),
    )
    .await
}

#[tokio::test]
async fn the_managers_numbers_count_memos_and_forget_deleted_ones() {
    managers_numbers_count_memos_and_forget_deleted_ones(shared()).await;
}

async fn managers_numbers_count_memos_and_forget_deleted_ones(s: &Server) {
    let team = "mgr-team";
    let mut answers = Vec::new();
    for (text, rep, customer, at) in [
        (MEMO, "mgr-r1", "mgr-c1", "2026-02-02T10:00:00+08:00"),
        (VAGUE, "mgr-r1", "mgr-c2", "2026-02-03T10:00:00+08:00"),
        (MEETING, "mgr-r1", "mgr-c1", "2026-02-12T10:00:00+08:00"),
        (PRICE, "mgr-r2", "mgr-c3", "2026-02-10T10:00:00+08:00"),
        (STOCK_OUT, "mgr-r2", "mgr-c4", "2026-02-11T10:00:00+08:00"),
    ] {
        let r = tag(
            s,
            json!({"text": text, "rep_id": rep, "customer_id": customer, "team": team,
                   "domain": "fmcg_distribution", "recorded_at": at}),
        )
        .await;
        answers.push((rep, r));
    }
    let stock_id = answers[4].1["memo_id"].as_str().unwrap().to_string();
    assert!(
        answers[4].1["needs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == "stock_shortage"),
        "{}",
        answers[4].1
    );
    let q = format!("group_by=rep&period=week&team={team}&from=2026-02-01&to=2026-02-28");
    let (st, m) = sales(s, &q).await;
    assert_eq!(st, 200, "{m}");
    let rows = m["rows"].as_array().unwrap();
    let total = |f: &str| rows.iter().map(|r| r[f].as_i64().unwrap()).sum::<i64>();
    assert_eq!(total("memos"), 5, "{m}");
    // The counts are those of the answers.
    let actions: usize = answers
        .iter()
        .map(|(_, a)| a["actions"].as_array().unwrap().len())
        .sum();
    let high: usize = answers
        .iter()
        .map(|(_, a)| {
            a["actions"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|x| x["tier"] == "high")
                .count()
        })
        .sum();
    let with_need = answers
        .iter()
        .filter(|(_, a)| !a["needs"].as_array().unwrap().is_empty())
        .count();
    let vague = answers
        .iter()
        .filter(|(_, a)| a["vague"]["flag"] == true)
        .count();
    assert_eq!(total("actions"), actions as i64);
    assert_eq!(total("high_value_actions"), high as i64);
    assert!(
        high >= 1,
        "the meeting with the vice-president is high-value"
    );
    assert_eq!(total("with_need"), with_need as i64);
    assert_eq!(total("vague"), vague as i64);
    // rep 1's first week: the pain memo and the vague one.
    let first = rows
        .iter()
        .find(|r| r["group"] == "mgr-r1" && r["period"] == "2026-02-02")
        .expect("rep 1, week of 2 February");
    assert_eq!(first["memos"], 2);
    assert_eq!(first["vague_share"].as_f64(), Some(0.5), "{first}");
    assert!(rows
        .iter()
        .all(|r| r["period"].as_str().unwrap() >= "2026-01-26"));
    // The top needs are those of the last period: rep 2's week of 9 February, new that week.
    let (_, feb9) = sales(
        s,
        &format!("group_by=rep&period=week&team={team}&from=2026-02-01&to=2026-02-15"),
    )
    .await;
    let needs = feb9["needs"].as_array().unwrap();
    assert!(needs.iter().all(|n| n["period"] == "2026-02-09"), "{feb9}");
    assert!(
        needs.iter().any(|n| n["group"] == "mgr-r2"
            && n["period"] == "2026-02-09"
            && n["need"] == "stock_shortage"
            && n["trend"] == "new"),
        "{feb9}"
    );
    // The stock-out customer had no visit since, 17 days before the end of `to`.
    let urgent = m["urgent"].as_array().unwrap();
    let u = urgent
        .iter()
        .find(|u| u["customer_id"] == "mgr-c4")
        .expect("mgr-c4 is listed");
    assert_eq!(u["needs"], json!(["stock_shortage"]));
    assert_eq!(u["days_since"], 17);
    assert!(m["urgent_needs"]
        .as_array()
        .unwrap()
        .contains(&json!("equipment_maintenance")));
    let (_, later) = sales(s, &format!("{q}&days=30")).await;
    assert!(later["urgent"].as_array().unwrap().is_empty(), "{later}");

    // Each table as CSV, by parameter or by Accept.
    for table in ["rows", "needs", "urgent"] {
        let resp = client()
            .get(s.url(&format!("/v1/metrics/sales?{q}&format=csv&table={table}")))
            .header("authorization", bearer(REVIEW))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let csv = resp.text().await.unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        let expected = m[table].as_array().unwrap().len();
        assert_eq!(lines.len(), expected + 1, "{table}: {csv}");
    }
    let resp = client()
        .get(s.url(&format!("/v1/metrics/sales?{q}")))
        .header("authorization", bearer(REVIEW))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    let csv = resp.text().await.unwrap();
    assert!(csv.starts_with("rep,week,memos,actions,"), "{csv}");
    assert!(csv.contains("mgr-r1,2026-02-02,2,"), "{csv}");

    // By team and by month, the same memos.
    let (_, by_team) = sales(
        s,
        &format!("group_by=team&period=month&team={team}&from=2026-02-01&to=2026-02-28"),
    )
    .await;
    assert_eq!(by_team["rows"][0]["group"], team);
    assert_eq!(by_team["rows"][0]["period"], "2026-02-01");
    assert_eq!(by_team["rows"][0]["memos"], 5);

    // A deleted memo leaves the numbers and the urgent list.
    let (st, _) = send(
        client()
            .delete(s.url(&format!("/v1/memos/{stock_id}")))
            .header("authorization", bearer(ADMIN)),
    )
    .await;
    assert_eq!(st, 200);
    let (_, m) = sales(s, &q).await;
    let rows = m["rows"].as_array().unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| r["memos"].as_i64().unwrap())
            .sum::<i64>(),
        4
    );
    assert!(!m["urgent"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["customer_id"] == "mgr-c4"));
    let (_, feb9) = sales(
        s,
        &format!("group_by=rep&period=week&team={team}&from=2026-02-01&to=2026-02-15"),
    )
    .await;
    assert!(!feb9["needs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["need"] == "stock_shortage" && n["group"] == "mgr-r2"));
}

#[tokio::test]
async fn bad_metrics_queries_are_typed_errors() {
    let s = shared();
    for (query, status, expected) in [
        ("group_by=day", 422, "invalid_input"),
        ("period=year", 422, "invalid_input"),
        ("from=yesterday", 422, "invalid_input"),
        ("to=2026-02-30", 422, "invalid_input"),
        ("from=2026-03-01&to=2026-02-01", 422, "invalid_input"),
        (
            "period=week&from=2024-01-01&to=2026-01-01",
            422,
            "invalid_input",
        ),
        (
            "period=month&from=2020-01-01&to=2026-01-01",
            422,
            "invalid_input",
        ),
        ("days=0", 422, "invalid_input"),
        ("days=1000", 422, "invalid_input"),
        ("top=0", 422, "invalid_input"),
        ("format=xml", 422, "invalid_input"),
        ("format=csv&table=everything", 422, "invalid_input"),
        ("table=rows", 400, "invalid_request"),
        ("group=rep", 400, "invalid_request"),
        ("days=-1", 400, "invalid_request"),
    ] {
        let (st, e) = sales(s, query).await;
        assert_eq!((st, code(&e)), (status, expected), "{query}: {e}");
    }
    let (st, ok) = sales(s, "period=month&from=2024-02-01&to=2026-01-31").await;
    assert_eq!(st, 200, "24 months is allowed: {ok}");
}

#[tokio::test]
async fn blind_spots_group_concrete_memos_without_a_need() {
    let s = shared();
    let team = "blind-team";
    let texts = [
        "客户想安排质检团队下周来工厂参观产线",
        "经销商老板说下个月想带几个店长来工厂参观产线",
        VAGUE,
        PRICE,
    ];
    let mut blind = Vec::new();
    for t in texts {
        let r = tag(s, json!({"text": t, "team": team})).await;
        if r["needs"].as_array().unwrap().is_empty() && r["vague"]["flag"] == false {
            blind.push(r["memo_id"].as_str().unwrap().to_string());
        }
    }
    let (st, b) = send(
        client()
            .get(s.url(&format!("/v1/memos/blind-spots?team={team}")))
            .header("authorization", bearer(REVIEW)),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["scanned"], blind.len(), "{b}");
    let grouped: Vec<&str> = b["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["examples"].as_array().unwrap())
        .map(|e| e["memo_id"].as_str().unwrap())
        .collect();
    for id in &blind {
        assert!(grouped.contains(&id.as_str()), "{id} in {b}");
    }
    if blind.len() == 2 {
        let word = b["groups"][0]["word"].as_str().unwrap();
        assert!(["参观", "工厂", "产线"].contains(&word), "{b}");
    }
    let (st, e) = send(
        client()
            .get(s.url("/v1/memos/blind-spots?vague=true"))
            .header("authorization", bearer(REVIEW)),
    )
    .await;
    assert_eq!((st, code(&e)), (400, "invalid_request"));
}

#[tokio::test]
async fn retag_compares_the_library_on_disk_without_changing_the_archive() {
    let cfg = with_keys("archive-retag");
    let lib = cfg.library.clone().unwrap();
    let s = Server::start(cfg.clone(), true);
    let stored = tag(&s, json!({"text": PRICE, "rep_id": "rt"})).await;
    let id = stored["memo_id"].as_str().unwrap().to_string();
    let need = stored["needs"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(need, "price_concern");
    let (st, _) = send(
        client()
            .post(s.url(&format!("/v1/memos/{id}/review")))
            .header("authorization", bearer(REVIEW))
            .json(&json!({"marks": [{"kind": "need", "id": need, "verdict": "confirm"}]})),
    )
    .await;
    assert_eq!(st, 200);
    let retag = |body: Value, key: &str| {
        client()
            .post(s.url("/v1/memos/retag"))
            .header("authorization", bearer(key))
            .json(&body)
    };
    // The library on disk as loaded: nothing changes.
    let (st, r) = send(retag(json!({}), REVIEW)).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["memos"], 1);
    assert_eq!(r["changed"], 0);
    assert_eq!(r["reviewed"], 1);
    assert_eq!(r["needs"]["before"]["f1"], 1.0);
    // Take the price need's words away on disk: the reviewed memo is lost, before any reload.
    let general = lib.join("needs/general.toml");
    let text = std::fs::read_to_string(&general).unwrap();
    let start = text.find("id = \"price_concern\"").unwrap();
    let kw = start + text[start..].find("keywords = [").unwrap();
    let end = kw + text[kw..].find(']').unwrap();
    let syn = end + text[end..].find("synonyms = [").unwrap();
    let syn_end = syn + text[syn..].find(']').unwrap();
    let changed = format!(
        "{}keywords = [\"价格异议专用词\"]{}synonyms = []{}",
        &text[..kw],
        &text[end + 1..syn],
        &text[syn_end + 1..]
    );
    std::fs::write(&general, changed).unwrap();
    let (st, r) = send(retag(json!({"since": "2020-01-01", "limit": 10}), REVIEW)).await;
    assert_eq!(st, 200, "{r}");
    if r["changed"] == 1 {
        assert_eq!(r["lost"][0]["memo_id"], id, "{r}");
        assert_eq!(r["lost"][0]["removed"], json!(["need:price_concern"]));
        assert!(r["needs"]["after"]["recall"].as_f64().unwrap() < 1.0);
    }
    assert_ne!(r["candidate_version"], stored["library_version"]);
    // Nothing stored changed.
    let (_, got) = send(
        client()
            .get(s.url(&format!("/v1/memos/{id}")))
            .header("authorization", bearer(REVIEW)),
    )
    .await;
    let answered: Vec<&Value> = stored["needs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["id"])
        .collect();
    assert_eq!(got["needs"], json!(answered));
    for (body, status, expected) in [
        (json!({"limit": 0}), 422, "invalid_input"),
        (json!({"limit": 100000}), 422, "invalid_input"),
        (json!({"since": "soon"}), 422, "invalid_input"),
        (json!({"library": "/etc"}), 400, "invalid_json"),
    ] {
        let (st, e) = send(retag(body.clone(), REVIEW)).await;
        assert_eq!((st, code(&e)), (status, expected), "{body}: {e}");
    }
    let (st, e) = send(retag(json!({}), TAG)).await;
    assert_eq!((st, code(&e)), (403, "forbidden"));
    drop(s);
}

#[tokio::test]
async fn audio_is_kept_when_configured_and_read_back_with_the_review_scope() {
    let mut cfg = with_keys("archive-audio");
    cfg.archive.keep_audio_days = 30;
    let s = Server::start(cfg, true);
    let c = client();
    let wav = common::fixture_bytes("audio/aishell_S0764W0121.wav");
    let (st, memo) = send(
        c.post(s.url("/v1/memos"))
            .header("authorization", bearer(TAG))
            .header("content-type", "audio/wav")
            .body(wav.clone()),
    )
    .await;
    assert_eq!(st, 200, "{memo}");
    let id = memo["memo_id"].as_str().unwrap().to_string();
    let audio = |key: &str, id: &str| {
        c.get(s.url(&format!("/v1/memos/{id}/audio")))
            .header("authorization", bearer(key))
            .send()
    };
    let resp = audio(REVIEW, &id).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/wav");
    assert_eq!(
        resp.bytes().await.unwrap().as_ref(),
        &wav[..],
        "as uploaded"
    );
    let (st, e) = send(
        c.get(s.url(&format!("/v1/memos/{id}/audio")))
            .header("authorization", bearer(TAG)),
    )
    .await;
    assert_eq!(
        (st, code(&e)),
        (403, "forbidden"),
        "a tag key cannot read it"
    );
    let text = tag(&s, json!({"text": PRICE})).await;
    let (st, e) = send(
        c.get(s.url(&format!(
            "/v1/memos/{}/audio",
            text["memo_id"].as_str().unwrap()
        )))
        .header("authorization", bearer(REVIEW)),
    )
    .await;
    assert_eq!((st, code(&e)), (404, "not_found"), "a text has no audio");
    // Deleted with its memo.
    let (st, _) = send(
        c.delete(s.url(&format!("/v1/memos/{id}")))
            .header("authorization", bearer(ADMIN)),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(audio(REVIEW, &id).await.unwrap().status(), 404);
}

#[tokio::test]
async fn audio_is_not_kept_by_default() {
    let s = shared();
    let c = client();
    let (st, memo) = send(
        c.post(s.url("/v1/memos"))
            .header("authorization", bearer(TAG))
            .header("content-type", "audio/wav")
            .body(common::fixture_bytes("audio/aishell_S0764W0121.wav")),
    )
    .await;
    assert_eq!(st, 200, "{memo}");
    let (st, e) = send(
        c.get(s.url(&format!(
            "/v1/memos/{}/audio",
            memo["memo_id"].as_str().unwrap()
        )))
        .header("authorization", bearer(REVIEW)),
    )
    .await;
    assert_eq!((st, code(&e)), (404, "not_found"), "{e}");
}
