//! Usage recording and `GET /v1/usage` over a real socket, against `FakeEngine` with keys and
//! usage records in a real SQLite file: the rows match the usage the answers reported (whole,
//! streamed, completions), busy time is measured and priced from the machine's price per
//! hour, each key sees only its own usage (an admin key sees all), an unpriced model is
//! `null` + `unpriced`, never $0, and bad parameters are 400s that name them.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::serve_on_loopback;
use moat_auth::{Auth, NewKey, Scopes};
use moat_engine::{FakeConfig, FakeEngine, FakeReply};
use moat_meter::{AuditConfig, CostConfig, Meter, UsageEvent};
use moat_openai::ModelLimits;
use moat_server::{AppState, Knowledge, ServedModel, ServerConfig, Trust, TrustConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

struct Server {
    _dir: tempfile::TempDir,
    address: std::net::SocketAddr,
    auth: Arc<Auth>,
    meter: Arc<Meter>,
    _stop: oneshot::Sender<()>,
}

/// A server on 127.0.0.1 (a port the OS picks) with `moat.db` in a temporary folder.
async fn start(cost: CostConfig) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("moat.db");
    let auth = Arc::new(Auth::open(&db).unwrap());
    let meter = Arc::new(Meter::open(&db, AuditConfig::default()).unwrap());
    let trust = Trust::new(TrustConfig {
        auth: Some(Arc::clone(&auth)),
        meter: Some(Arc::clone(&meter)),
        cost,
        ..TrustConfig::default()
    })
    .unwrap();
    let engine = FakeEngine::new(FakeConfig {
        reply: FakeReply::ReversePrompt,
        // Every step takes at least this long, so every request has measurable busy time.
        step_delay: Duration::from_millis(1),
        ..FakeConfig::default()
    })
    .unwrap();
    let state = AppState::with_trust(ServerConfig::default(), Knowledge::default(), trust);
    state.add_model(
        "fake",
        ServedModel::new(Arc::new(engine), ModelLimits::default()),
    );
    let (address, stop) = serve_on_loopback(state).await;
    Server {
        _dir: dir,
        address,
        auth,
        meter,
        _stop: stop,
    }
}

/// Decodes a chunked HTTP/1.1 body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 2 + size + 2..];
    }
}

/// One request on its own connection: the status and the body.
async fn call(
    server: &Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Vec<u8>) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let split = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let body = &answer[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_vec()
    };
    (status, body)
}

async fn json_call(
    server: &Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, body) = call(server, method, path, key, body).await;
    (status, serde_json::from_slice(&body).unwrap())
}

/// Prompt and completion tokens a whole answer reported.
fn reported(answer: &Value) -> (u64, u64) {
    let usage = &answer["usage"];
    (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    )
}

/// The usage report, once it counts `requests` requests in total (a ticket closes when the
/// answer's last holder lets go, which for a stream can be just after the client has it).
async fn report_when(server: &Server, query: &str, key: Option<&str>, requests: u64) -> Value {
    let path = format!("/v1/usage{query}");
    for _ in 0..500 {
        let (status, report) = json_call(server, "GET", &path, key, None).await;
        assert_eq!(status, 200, "{report}");
        if report["total"]["requests"].as_u64() == Some(requests) {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the usage report never counted {requests} requests");
}

fn chat(content: &str, stream: bool) -> Value {
    let mut body = json!({
        "model": "fake",
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
    });
    if stream {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_rows_match_what_the_answers_reported() {
    let server = start(CostConfig {
        machine_usd_per_hour: Some(3.6),
        monthly_hardware_usd: None,
    })
    .await;
    // A request for a model the server does not serve is not usage.
    let (status, _) = json_call(
        &server,
        "POST",
        "/v1/chat/completions",
        None,
        Some(json!({
            "model": "made-up", "messages": [{"role": "user", "content": "hi"}]
        })),
    )
    .await;
    assert_eq!(status, 404);
    let mut expected = (0, 0);
    let mut add = |(p, c): (u64, u64)| {
        expected.0 += p;
        expected.1 += c;
    };

    let (status, whole) = json_call(
        &server,
        "POST",
        "/v1/chat/completions",
        None,
        Some(chat("hello there", false)),
    )
    .await;
    assert_eq!(status, 200, "{whole}");
    add(reported(&whole));

    let (status, streamed) = call(
        &server,
        "POST",
        "/v1/chat/completions",
        None,
        Some(chat("a stream", true)),
    )
    .await;
    assert_eq!(status, 200);
    let text = String::from_utf8(streamed).unwrap();
    let usage_chunk: Value = text
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str::<Value>(data).unwrap())
        .find(|chunk| chunk["usage"].is_object())
        .expect("a usage chunk");
    add(reported(&usage_chunk));

    let completion = json!({"model": "fake", "prompt": "abc", "max_tokens": 5, "n": 2});
    let (status, completed) =
        json_call(&server, "POST", "/v1/completions", None, Some(completion)).await;
    assert_eq!(status, 200, "{completed}");
    add(reported(&completed));
    assert!(expected.0 > 0 && expected.1 > 0);

    let report = report_when(&server, "?group_by=model", None, 3).await;
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    let row = &rows[0];
    assert_eq!(row["group"], "fake");
    assert_eq!(row["period"], "total");
    assert_eq!(row["requests"], 3);
    assert_eq!(
        (
            row["prompt_tokens"].as_u64().unwrap(),
            row["completion_tokens"].as_u64().unwrap()
        ),
        expected
    );
    assert_eq!(
        row["total_tokens"].as_u64().unwrap(),
        expected.0 + expected.1
    );
    // Each request ran at least one engine step of at least 1 ms alone.
    let busy = row["busy_seconds"].as_f64().unwrap();
    assert!(busy >= 0.003, "{row}");
    // $3.60 an hour is $0.001 a second.
    assert_eq!(row["unpriced"], false);
    let cost = row["cost_usd"].as_f64().unwrap();
    assert!((cost - busy * 0.001).abs() < 1e-12, "{row}");
    assert_eq!(report["machine_usd_per_hour"], 3.6);

    // Per day: today's row, the same numbers.
    let by_day = report_when(&server, "?group_by=alias&period=day", None, 3).await;
    let rows = by_day["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["period"].as_str().unwrap().len(), 10);
    assert_eq!(rows[0]["requests"], 3);

    // The request for the report itself is not usage.
    let again = report_when(&server, "", None, 3).await;
    assert_eq!(again["total"]["requests"], 3);
}

fn new_key(auth: &Auth, name: &str, admin: bool) -> String {
    let created = auth
        .create_key(&NewKey {
            name: name.into(),
            scopes: Scopes {
                admin,
                ..Scopes::all_models()
            },
            limits: Default::default(),
            guard: None,
            private: false,
        })
        .unwrap();
    created.secret.expose().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_sees_only_its_own_usage_and_an_admin_sees_all() {
    let server = start(CostConfig::default()).await;
    let admin = new_key(&server.auth, "ops", true);
    let alice = new_key(&server.auth, "alice", false);
    let bob = new_key(&server.auth, "bob", false);
    for (key, times) in [(&alice, 1), (&bob, 2)] {
        for _ in 0..times {
            let (status, body) = json_call(
                &server,
                "POST",
                "/v1/chat/completions",
                Some(key),
                Some(chat("hi", false)),
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }
    }
    let all = report_when(&server, "?group_by=key", Some(&admin), 3).await;
    let groups: Vec<&str> = all["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups.len(), 2, "{all}");
    assert!(groups.iter().any(|g| g.ends_with(" alice")));
    assert!(groups.iter().any(|g| g.ends_with(" bob")));

    let mine = report_when(&server, "?group_by=key", Some(&alice), 1).await;
    let rows = mine["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{mine}");
    assert!(rows[0]["group"].as_str().unwrap().ends_with(" alice"));
    assert_eq!(rows[0]["requests"], 1);
    // Grouped by model, bob still sees only his own requests.
    let his = report_when(&server, "?group_by=model", Some(&bob), 2).await;
    assert_eq!(his["rows"][0]["requests"], 2);

    let (status, body) = json_call(&server, "GET", "/v1/usage", None, None).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpriced_model_is_reported_as_unpriced_never_as_zero() {
    // No machine price: local traffic cannot be priced.
    let server = start(CostConfig::default()).await;
    let (status, _) = json_call(
        &server,
        "POST",
        "/v1/chat/completions",
        None,
        Some(chat("hi", false)),
    )
    .await;
    assert_eq!(status, 200);
    // Upstream traffic as the gateway records it: one model with a list price, one without.
    report_when(&server, "", None, 1).await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for (model, tokens) in [("gpt-4o", 1_000_000), ("someones-api", 500)] {
        server
            .meter
            .record_usage(&UsageEvent {
                at_ms: now_ms,
                key: "anonymous".into(),
                alias: "remote".into(),
                model: model.into(),
                local: false,
                prompt_tokens: tokens,
                completion_tokens: tokens,
                busy_ms: 0,
                requests: 1,
            })
            .unwrap();
    }
    let report = report_when(&server, "?group_by=model", None, 3).await;
    let row = |name: &str| {
        report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["group"] == name)
            .unwrap()
            .clone()
    };
    let local = row("fake");
    assert!(local["cost_usd"].is_null(), "{local}");
    assert_eq!(local["unpriced"], true);
    assert_eq!(local["unpriced_models"], json!(["fake"]));
    let unknown = row("someones-api");
    assert!(unknown["cost_usd"].is_null(), "{unknown}");
    assert_eq!(unknown["unpriced_tokens"], 1_000);
    // gpt-4o at its default list price: 1M in at $2.50 + 1M out at $10.
    let priced = row("gpt-4o");
    assert_eq!(priced["unpriced"], false);
    assert!(
        (priced["cost_usd"].as_f64().unwrap() - 12.5).abs() < 1e-9,
        "{priced}"
    );
    // The total is unpriced too, with the priced part beside it.
    assert!(report["total"]["cost_usd"].is_null());
    assert!((report["total"]["priced_usd"].as_f64().unwrap() - 12.5).abs() < 1e-9);
    let notes = report["notes"].as_array().unwrap();
    assert!(notes
        .iter()
        .any(|n| n.as_str().unwrap().contains("machine_usd_per_hour")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_400s_that_name_them() {
    let server = start(CostConfig::default()).await;
    for (query, param) in [
        ("?group_by=team", "group_by"),
        ("?period=week", "period"),
        ("?since=last-week", "since"),
        ("?since=2026-11-30&until=2026-11-01", "until"),
        ("?limit=3", "limit"),
    ] {
        let (status, body) =
            json_call(&server, "GET", &format!("/v1/usage{query}"), None, None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["param"], param, "{query}: {body}");
    }
    // Shaped like a day but not one.
    let (status, body) = json_call(&server, "GET", "/v1/usage?since=2026-02-30", None, None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("2026-02-30"));
}
