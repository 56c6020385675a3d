//! The HTTP service end to end: a real server on a loopback port, the real models, the real
//! library, real audio from fixtures/.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::server::{bearer, client, config, Server, ADMIN_KEY, TAG_KEY};
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

const THCHS: &str = "近几年不但我用书给女儿压岁也劝说亲朋不要给女儿压岁钱而改送压岁书";
const S0764: &str = "甚至出现交易几乎停滞的情况";
const MEMO: &str = "张主任提到关节镜手术后患者投诉疼痛管理不到位，希望我们下周三带镇痛方案对比表过来，另外库存还够，暂时不用补货";

/// The server most tests share: keys, a library copy, tight limits to reach every error.
fn shared() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mut cfg = config("shared");
        cfg.audio.max_bytes = 3 * 1024 * 1024;
        cfg.audio.max_seconds = 20.0;
        cfg.server.batch_max = 3;
        cfg.server.max_text_chars = 500;
        cfg.server.queue = 4;
        Server::start(cfg, true)
    })
}

async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error shape in {body}"))
        .to_string();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    (status, code)
}

fn wav_repeated(name: &str, times: usize) -> Vec<u8> {
    common::concat_wav(&vec![name; times], 0)
}

#[tokio::test]
async fn operational_routes_are_open() {
    let s = shared();
    let c = client();
    let h: Value = c
        .get(s.url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    let r: Value = c
        .get(s.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["ready"], true);
    assert_eq!(r["models"]["asr"], "ggml-base-q8_0.bin");
    assert!(r["library_version"].as_str().unwrap().starts_with("lib-"));
    let m = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("needtag_queue_depth"), "{m}");
    assert!(m.contains("needtag_up 1"));
    let spec: Value = c
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/memos",
        "/v1/tag",
        "/v1/tag/batch",
        "/v1/library",
        "/v1/library/reload",
        "/v1/needs",
        "/v1/needs/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(spec["paths"][path].is_object(), "openapi lacks {path}");
    }
    assert!(spec["components"]["schemas"]["MemoResult"].is_object());
}

#[tokio::test]
async fn api_keys_and_scopes_are_enforced() {
    let s = shared();
    let c = client();
    let body = json!({"text": MEMO});
    let (st, code) = error_code(c.post(s.url("/v1/tag")).json(&body).send().await.unwrap()).await;
    assert_eq!((st, code.as_str()), (401, "unauthorized"));
    let (st, code) = error_code(
        c.post(s.url("/v1/tag"))
            .header("authorization", "Bearer not-a-key-at-all")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code.as_str()), (401, "unauthorized"));
    let ok = c
        .post(s.url("/v1/tag"))
        .header("x-api-key", TAG_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let (st, code) = error_code(
        c.post(s.url("/v1/library/reload"))
            .header("authorization", bearer(TAG_KEY))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code.as_str()), (403, "forbidden"));
    let (st, code) = error_code(
        c.post(s.url("/v1/memos"))
            .header("content-type", "audio/wav")
            .body(vec![1u8; 10])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code.as_str()), (401, "unauthorized"));
}

#[tokio::test]
async fn text_tagging_returns_needs_evidence_dates_and_contacts() {
    let s = shared();
    let c = client();
    let r: Value = c
        .post(s.url("/v1/tag"))
        .header("authorization", bearer(TAG_KEY))
        .json(&json!({"text": MEMO, "recorded_at": "2026-03-04T17:20:00+08:00"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let needs: Vec<&str> = r["needs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert!(needs.contains(&"pain_management"), "{r}");
    assert!(
        !needs.contains(&"stock_shortage"),
        "a negated need was tagged: {r}"
    );
    assert!(
        r["ruled_out"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == "stock_shortage"),
        "{r}"
    );
    let pain = r["needs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "pain_management")
        .unwrap();
    let chars: Vec<char> = MEMO.chars().collect();
    for e in pain["evidence"].as_array().unwrap() {
        let (a, b) = (
            e["start"].as_u64().unwrap() as usize,
            e["end"].as_u64().unwrap() as usize,
        );
        assert_eq!(
            e["text"].as_str().unwrap(),
            chars[a..b].iter().collect::<String>()
        );
    }
    assert!(
        pain["packs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["title"] == "镇痛方案对比表"),
        "{pain}"
    );
    assert!(
        r["next_steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["due_from"] == "2026-03-11" && n["due_to"] == "2026-03-11"),
        "{r}"
    );
    assert!(
        r["contacts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["mention"] == "张主任" && p["role"] == "decision_maker"),
        "{r}"
    );
    assert_eq!(r["vague"]["flag"], false);
    assert_eq!(r["mode"], "hybrid");
    assert!(r["library_version"].as_str().unwrap().starts_with("lib-"));

    let kw: Value = c
        .post(s.url("/v1/tag"))
        .header("authorization", bearer(TAG_KEY))
        .json(&json!({"text": "今天去了趟医院，跟科室已沟通，后续持续跟进", "mode": "keyword"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kw["mode"], "keyword");
    assert_eq!(kw["vague"]["flag"], true, "{kw}");
    assert!(kw["needs"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn batches_tag_each_text_and_report_errors_per_item() {
    let s = shared();
    let c = client();
    let r: Value = c
        .post(s.url("/v1/tag/batch"))
        .header("authorization", bearer(TAG_KEY))
        .json(&json!({"items": [{"id": "a", "text": MEMO}, {"id": "b", "text": "   "}, {"id": "c", "text": "客户说刹车片价格太高，要求打九折"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let results = r["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["id"], "a");
    assert!(results[0]["result"]["needs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["id"] == "pain_management"));
    assert_eq!(results[1]["error"]["code"], "invalid_input");
    assert!(
        results[2]["result"]["needs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == "price_concern"),
        "{}",
        results[2]
    );
}

#[tokio::test]
async fn memos_upload_as_multipart_or_raw_body_in_phone_formats() {
    let s = shared();
    let c = client();
    let form = Form::new()
        .part(
            "audio",
            Part::bytes(common::fixture_bytes("audio/s0764_amrnb.3gp")).file_name("memo.3gp"),
        )
        .text("rep_id", "rep-7")
        .text("customer_id", "hosp-12")
        .text("recorded_at", "2026-03-04T17:20:00+08:00")
        .text("domain", "medical_devices");
    let r: Value = c
        .post(s.url("/v1/memos"))
        .header("authorization", bearer(TAG_KEY))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["speech_detected"], true, "{r}");
    assert_eq!(r["rep_id"], "rep-7");
    assert_eq!(r["customer_id"], "hosp-12");
    assert_eq!(r["domain"], "medical_devices");
    assert!(r["recorded_at"]
        .as_str()
        .unwrap()
        .starts_with("2026-03-04T17:20:00"));
    assert_eq!(r["audio"]["codec"], "amr_nb");
    let text = r["transcript"]["text"].as_str().unwrap();
    assert!(needtag::asr::cer(text, S0764) <= 0.2, "{text}");
    common::assert_readable("s0764_amrnb.3gp", text);
    assert_eq!(needtag::zh::to_simplified(text), text);
    for key in [
        "memo_id",
        "duration_s",
        "transcript",
        "needs",
        "actions",
        "high_value",
        "next_steps",
        "contacts",
        "vague",
        "library_version",
        "models",
        "timings",
    ] {
        assert!(!r[key].is_null(), "result lacks {key}: {r}");
    }
    assert!(r["timings"]["asr_ms"].as_f64().unwrap() > 0.0);

    for (file, ct) in [
        ("audio/s0764_opus.webm", "audio/webm"),
        ("audio/s0764_mp3_misnamed.wav", "application/octet-stream"),
    ] {
        let r: Value = c
            .post(s.url("/v1/memos?rep_id=rep-8"))
            .header("authorization", bearer(TAG_KEY))
            .header("content-type", ct)
            .body(common::fixture_bytes(file))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["rep_id"], "rep-8");
        assert!(r.get("domain").is_none(), "no domain was sent: {r}");
        let text = r["transcript"]["text"].as_str().unwrap_or_default();
        assert!(needtag::asr::cer(text, S0764) <= 0.2, "{file}: {r}");
        common::assert_readable(file, text);
    }

    let silence: Value = c
        .post(s.url("/v1/memos"))
        .header("authorization", bearer(TAG_KEY))
        .header("content-type", "audio/wav")
        .body(common::fixture_bytes("audio/roomtone_10s.wav"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(silence["speech_detected"], false);
    assert_eq!(silence["transcript"]["text"], "");
    assert_eq!(silence["vague"]["flag"], true);
}

#[tokio::test]
async fn every_client_error_code_is_reachable_and_none_is_a_500() {
    let s = shared();
    let c = client();
    let auth = bearer(TAG_KEY);
    let post = |path: &str| c.post(s.url(path)).header("authorization", auth.clone());
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            post("/v1/tag")
                .header("content-type", "application/json")
                .body("{not json"),
            400,
            "invalid_json",
        ),
        (
            post("/v1/tag").json(&json!({"txt": "x"})),
            400,
            "invalid_json",
        ),
        (
            post("/v1/memos").multipart(Form::new().text("rep_id", "r")),
            400,
            "invalid_request",
        ),
        (
            post("/v1/memos")
                .header("content-type", "audio/wav")
                .body(Vec::<u8>::new()),
            400,
            "empty_audio",
        ),
        (
            post("/v1/memos")
                .header("content-type", "text/plain")
                .body("hello"),
            415,
            "unsupported_media_type",
        ),
        (
            post("/v1/memos")
                .header("content-type", "audio/mpeg")
                .body(png),
            415,
            "unsupported_format",
        ),
        (
            post("/v1/memos")
                .header("content-type", "audio/mp4")
                .body(common::fixture_bytes("audio/s0764_truncated.m4a")),
            422,
            "corrupt_audio",
        ),
        (
            post("/v1/memos")
                .header("content-type", "audio/wav")
                .body(common::fixture_bytes("audio/s0764_too_short_0.4s.wav")),
            422,
            "audio_too_short",
        ),
        (
            post("/v1/memos")
                .header("content-type", "audio/wav")
                .body(wav_repeated("audio/thchs30_test.wav", 3)),
            413,
            "audio_too_long",
        ),
        (
            post("/v1/memos")
                .header("content-type", "audio/wav")
                .body(vec![0u8; 3 * 1024 * 1024 + 10]),
            413,
            "payload_too_large",
        ),
        (
            post("/v1/tag").json(&json!({"text": "很".repeat(501)})),
            413,
            "text_too_long",
        ),
        (
            post("/v1/tag/batch").json(
                &json!({"items": [{"text": "a"}, {"text": "b"}, {"text": "c"}, {"text": "d"}]}),
            ),
            413,
            "batch_too_large",
        ),
        (
            post("/v1/tag").json(&json!({"text": MEMO, "recorded_at": "last tuesday"})),
            422,
            "invalid_input",
        ),
        (
            post("/v1/tag").json(&json!({"text": ""})),
            422,
            "invalid_input",
        ),
        (
            post("/v1/memos").multipart(
                Form::new()
                    .part(
                        "audio",
                        Part::bytes(common::fixture_bytes("audio/aishell_S0724W0121.wav"))
                            .file_name("m.wav"),
                    )
                    .text("rep_id", "r".repeat(10_000)),
            ),
            422,
            "invalid_input",
        ),
        (
            post("/v1/memos?domain=pharma")
                .header("content-type", "audio/wav")
                .body(common::fixture_bytes("audio/aishell_S0724W0121.wav")),
            422,
            "invalid_input",
        ),
        (c.get(s.url("/v1/nowhere")), 404, "not_found"),
        (c.get(s.url("/v1/needs/no_such_need")), 404, "not_found"),
        (c.delete(s.url("/v1/tag")), 405, "method_not_allowed"),
    ];
    for (req, status, code) in cases {
        let resp = req.send().await.unwrap();
        assert_ne!(resp.status().as_u16(), 500);
        let (st, got) = error_code(resp).await;
        assert_eq!((st, got.as_str()), (status, code));
    }

    // The same Idempotency-Key with a different request.
    let send = |text: &str| {
        post("/v1/tag")
            .header("idempotency-key", "reuse-test-1")
            .json(&json!({"text": text}))
            .send()
    };
    assert_eq!(send("客户说价格太高").await.unwrap().status(), 200);
    let (st, code) = error_code(send("客户说库存告急").await.unwrap()).await;
    assert_eq!((st, code.as_str()), (422, "idempotency_key_reused"));
}

#[tokio::test]
async fn idempotent_retries_return_the_stored_result() {
    let s = shared();
    let c = client();
    let upload = || {
        c.post(s.url("/v1/memos"))
            .header("authorization", bearer(TAG_KEY))
            .header("idempotency-key", "memo-upload-42")
            .header("content-type", "audio/wav")
            .body(common::fixture_bytes("audio/aishell_S0724W0121.wav"))
            .send()
    };
    let first = upload().await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotency-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let second = upload().await.unwrap();
    assert_eq!(
        second.headers().get("idempotency-replayed").unwrap(),
        "true"
    );
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["memo_id"], second["memo_id"], "processed twice");
    // Another key gets its own processing.
    let other: Value = c
        .post(s.url("/v1/memos"))
        .header("authorization", bearer(TAG_KEY))
        .header("idempotency-key", "memo-upload-43")
        .header("content-type", "audio/wav")
        .body(common::fixture_bytes("audio/aishell_S0724W0121.wav"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(other["memo_id"], first["memo_id"]);
}

#[tokio::test]
async fn library_endpoints_and_reload_good_and_bad() {
    let s = shared();
    let c = client();
    let lib: Value = c
        .get(s.url("/v1/library"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(lib["needs"].as_u64().unwrap() >= 28);
    let before = lib["version"].as_str().unwrap().to_string();
    let needs: Value = c
        .get(s.url("/v1/needs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(needs
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["id"] == "tender_support"));
    let pain: Value = c
        .get(s.url("/v1/needs/pain_management"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pain["name"], "术后疼痛管理");
    assert!(pain["pack_details"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["title"] == "镇痛方案对比表"));

    // A good change: a new synonym, picked up by reload.
    let file = s.library_dir.join("needs").join("pharmacy.toml");
    let original = std::fs::read_to_string(&file).unwrap();
    let changed = original.replacen("synonyms = [", "synonyms = [\"孕期营养咨询台\", ", 1);
    assert_ne!(changed, original);
    std::fs::write(&file, &changed).unwrap();
    let r: Value = c
        .post(s.url("/v1/library/reload"))
        .header("authorization", bearer(ADMIN_KEY))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["changed"], true, "{r}");
    assert_eq!(r["previous_version"], before.as_str());
    let after = r["version"].as_str().unwrap().to_string();
    assert_ne!(after, before);
    let lib: Value = c
        .get(s.url("/v1/library"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(lib["version"], after.as_str());

    // A bad change: refused with its problems, and the good version keeps serving.
    std::fs::write(
        s.library_dir.join("needs").join("broken.toml"),
        "[[need]]\nid = \"pain_management\"\nname = \"x\"\n",
    )
    .unwrap();
    let resp = c
        .post(s.url("/v1/library/reload"))
        .header("authorization", bearer(ADMIN_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_library");
    let problems = body["error"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["file"] == "needs/broken.toml" && p["line"].as_u64().is_some()),
        "{body}"
    );
    let lib: Value = c
        .get(s.url("/v1/library"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        lib["version"],
        after.as_str(),
        "an invalid library replaced the good one"
    );
    std::fs::remove_file(s.library_dir.join("needs").join("broken.toml")).unwrap();
    let r = c
        .post(s.url("/v1/library/reload"))
        .header("authorization", bearer(ADMIN_KEY))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn not_ready_until_the_models_are_loaded() {
    let cfg = config("notready");
    let s = Server::start(cfg, false);
    let c = client();
    assert_eq!(c.get(s.url("/healthz")).send().await.unwrap().status(), 200);
    let resp = c.get(s.url("/readyz")).send().await.unwrap();
    assert!(resp.headers().get("retry-after").is_some());
    let (st, code) = error_code(resp).await;
    assert_eq!((st, code.as_str()), (503, "not_ready"));
    let (st, code) = error_code(
        c.post(s.url("/v1/tag"))
            .header("authorization", bearer(TAG_KEY))
            .json(&json!({"text": MEMO}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code.as_str()), (503, "not_ready"));
    let state = s.state.clone();
    tokio::task::spawn_blocking(move || state.load().unwrap())
        .await
        .unwrap();
    assert_eq!(c.get(s.url("/readyz")).send().await.unwrap().status(), 200);
}

/// More concurrent uploads than one worker and one queue slot hold: the extra ones get a fast
/// 503 with Retry-After, none gets a 500, and every 200 is a correct transcript.
#[tokio::test]
async fn load_beyond_the_queue_gives_fast_503s_and_correct_200s() {
    let mut cfg = config("load");
    cfg.server.workers = 1;
    cfg.server.queue = 1;
    // One key sends all eight: this is about the queue, not the per-key limit (default 4).
    cfg.server.per_key_inflight = 0;
    let s = Server::start(cfg, true);
    let c = client();
    let audio = common::fixture_bytes("audio/thchs30_test.wav");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let req = c
            .post(s.url("/v1/memos"))
            .header("authorization", bearer(TAG_KEY))
            .header("content-type", "audio/wav")
            .body(audio.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = resp.json().await.unwrap();
            (status, t.elapsed(), retry, body)
        }));
    }
    let mut ok = 0;
    let mut busy = 0;
    for t in tasks {
        let (status, elapsed, retry, body) = t.await.unwrap();
        match status {
            200 => {
                ok += 1;
                let text = body["transcript"]["text"].as_str().unwrap();
                assert!(needtag::asr::cer(text, THCHS) <= 0.15, "{text}");
                common::assert_readable("thchs30_test.wav under load", text);
            }
            503 => {
                busy += 1;
                assert_eq!(body["error"]["code"], "busy");
                assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
                assert!(elapsed < Duration::from_secs(1), "a 503 took {elapsed:?}");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert!(ok >= 2, "{ok} succeeded");
    assert!(busy >= 1, "no request was refused");
    assert_eq!(ok + busy, 8);
    let m = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("status=\"503\""));
    assert!(!m.contains("status=\"500\""));
    assert!(m.contains("needtag_stage_duration_seconds_count{stage=\"asr\"}"));
}

#[tokio::test]
async fn a_client_that_disconnects_frees_its_queued_slot() {
    let mut cfg = config("disconnect");
    cfg.server.workers = 1;
    cfg.server.queue = 1;
    let s = Server::start(cfg, true);
    // About 34 s of speech: several seconds of work for A on any machine, so B really queues.
    let audio = wav_repeated("audio/thchs30_test.wav", 4);
    let upload = |timeout: Duration| {
        reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap()
            .post(s.url("/v1/memos"))
            .header("authorization", bearer(TAG_KEY))
            .header("content-type", "audio/wav")
            .body(audio.clone())
            .send()
    };
    // A takes the worker; B waits in the queue and gives up; C must then find B's slot free.
    let a = tokio::spawn(upload(Duration::from_secs(60)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = upload(Duration::from_millis(400)).await;
    assert!(b.is_err(), "B should have timed out on the client side");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = upload(Duration::from_secs(60)).await.unwrap();
    assert_eq!(c.status(), 200, "the abandoned slot was not freed");
    assert_eq!(a.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn per_key_limit_gives_429_and_slow_requests_408() {
    let mut cfg = config("limits");
    cfg.server.per_key_inflight = 1;
    cfg.server.request_timeout_s = 1;
    let s = Server::start(cfg, true);
    let c = client();
    // About 34 s of speech, so the first request outlasts the 1 s limit by a wide margin even on
    // a fast machine (an 8 s clip finished in 0.94 s on a CI runner).
    let audio = wav_repeated("audio/thchs30_test.wav", 4);
    let req = || {
        c.post(s.url("/v1/memos"))
            .header("authorization", bearer(TAG_KEY))
            .header("content-type", "audio/wav")
            .body(audio.clone())
            .send()
    };
    let (first, second) = tokio::join!(req(), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        req().await
    });
    // The first takes longer than the 1 s limit.
    let (st, code) = error_code(first.unwrap()).await;
    assert_eq!((st, code.as_str()), (408, "request_timeout"));
    let second = second.unwrap();
    assert!(second.headers().get("retry-after").is_some());
    let (st, code) = error_code(second).await;
    assert_eq!((st, code.as_str()), (429, "too_many_requests"));
}

#[tokio::test]
async fn shutdown_finishes_work_in_flight() {
    let cfg = config("shutdown");
    let mut s = Server::start(cfg, true);
    let req = client()
        .post(s.url("/v1/memos"))
        .header("authorization", bearer(TAG_KEY))
        .header("content-type", "audio/wav")
        .body(common::fixture_bytes("audio/thchs30_test.wav"));
    let in_flight = tokio::spawn(req.send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = s.base.clone();
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap();
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200, "in-flight work was cut off");
    let body: Value = resp.json().await.unwrap();
    assert!(needtag::asr::cer(body["transcript"]["text"].as_str().unwrap(), THCHS) <= 0.15);
    assert!(
        client()
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err(),
        "still accepting after shutdown"
    );
}
