//! Observation over a real socket, against `FakeEngine`: `/metrics` counters that move with
//! requests (exact where the fake makes them deterministic), bounded labels, the admin-key
//! rule for `/metrics`, `x-request-id` round trips (and the same id in the audit log), the
//! JSON request log's shape, and the exposition checked by Prometheus's own `promtool`.
//! `promtool` (Debian's `prometheus` package) must be installed: without it the check fails.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{promtool_check, serve_on_loopback, SharedBuffer};
use moat_auth::{Auth, Limits, NewKey, Scopes};
use moat_engine::{FakeConfig, FakeEngine, FakeReply};
use moat_guard::GuardConfig;
use moat_meter::{AuditConfig, AuditFilter, Meter};
use moat_openai::ModelLimits;
use moat_server::{
    Alias, AppState, Knowledge, LogFormat, ServedModel, ServerConfig, Trust, TrustConfig,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(10);

/// What a test server needs configured.
#[derive(Default)]
struct Options {
    keys: bool,
    metrics_public: bool,
    guard: Option<&'static str>,
    json_log: bool,
}

struct Server {
    address: SocketAddr,
    auth: Option<Arc<Auth>>,
    meter: Option<Arc<Meter>>,
    log: SharedBuffer,
    _stop: oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start(options: Options) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut trust = TrustConfig::default();
    let (mut auth, mut meter) = (None, None);
    if options.keys {
        let db = dir.path().join("moat.db");
        let opened = Arc::new(Auth::open(&db).unwrap());
        let audit = Arc::new(Meter::open(&db, AuditConfig::default()).unwrap());
        trust.auth = Some(Arc::clone(&opened));
        trust.meter = Some(Arc::clone(&audit));
        auth = Some(opened);
        meter = Some(audit);
    }
    if let Some(policy) = options.guard {
        let policy: GuardConfig = toml::from_str(policy).unwrap();
        trust.policies = BTreeMap::from([("p".to_owned(), policy)]);
        trust.default_guard = Some("p".into());
    }
    let knowledge = Knowledge {
        aliases: BTreeMap::from([(
            "fast".to_owned(),
            Alias {
                model: "fake".into(),
                knowledge_base: None,
            },
        )]),
        ..Knowledge::default()
    };
    let config = ServerConfig {
        metrics_public: options.metrics_public,
        log_format: if options.json_log {
            LogFormat::Json
        } else {
            LogFormat::Text
        },
        ..ServerConfig::default()
    };
    let state = AppState::with_trust(config, knowledge, Trust::new(trust).unwrap());
    let engine = FakeEngine::new(FakeConfig {
        reply: FakeReply::Fixed("the answer is 42".into()),
        ..FakeConfig::default()
    })
    .unwrap();
    state.add_model(
        "fake",
        ServedModel::new(Arc::new(engine), ModelLimits::default()),
    );
    let log = SharedBuffer::default();
    state.set_log_writer(Box::new(log.clone()));
    let (address, stop) = serve_on_loopback(state).await;
    Server {
        address,
        auth,
        meter,
        log,
        _stop: stop,
        _dir: dir,
    }
}

fn create_key(auth: &Auth, name: &str, admin: bool) -> (String, String) {
    let created = auth
        .create_key(&NewKey {
            name: name.into(),
            scopes: Scopes {
                models: vec!["*".into()],
                admin,
            },
            limits: Limits::default(),
            guard: None,
            private: false,
        })
        .unwrap();
    (created.secret.expose().to_owned(), created.key.prefix)
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request on a new connection (`Connection: close`), read to the end.
async fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return body;
        }
        body.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

async fn chat(address: SocketAddr, model: &str, extra: Value, headers: &[(&str, &str)]) -> Reply {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hello"}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    http(address, "POST", "/v1/chat/completions", headers, Some(body)).await
}

/// The scrape's samples: `name{labels}` (as printed) to value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

async fn scrape(address: SocketAddr, headers: &[(&str, &str)]) -> BTreeMap<String, f64> {
    let reply = http(address, "GET", "/metrics", headers, None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    samples(&reply.body)
}

/// Scrapes until `series` has `value`: a request is counted once its answer's last byte has
/// left the server, which may be just after the client read it.
async fn until_series(address: SocketAddr, series: &str, value: f64) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let samples = scrape(address, &[]).await;
        if samples.get(series) == Some(&value) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never became {value}: {samples:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn usage_of_stream(body: &str) -> Value {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .map(|data| serde_json::from_str::<Value>(data).unwrap())
        .find(|chunk| !chunk["usage"].is_null())
        .map(|chunk| chunk["usage"].clone())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_with_requests() {
    let server = start(Options::default()).await;
    let whole = chat(server.address, "fake", json!({"n": 2}), &[]).await;
    assert_eq!(whole.status, 200, "{}", whole.body);
    let streamed = chat(
        server.address,
        "fast",
        json!({"stream": true, "stream_options": {"include_usage": true}}),
        &[],
    )
    .await;
    assert_eq!(streamed.status, 200, "{}", streamed.body);
    let whole_usage = whole.json()["usage"].clone();
    let stream_usage = usage_of_stream(&streamed.body);

    let samples = until_series(
        server.address,
        r#"moat_http_requests_total{route="/v1/chat/completions",model="fast",status="2xx"}"#,
        1.0,
    )
    .await;
    let samples = if samples
        .get(r#"moat_http_requests_total{route="/v1/chat/completions",model="fake",status="2xx"}"#)
        == Some(&1.0)
    {
        samples
    } else {
        until_series(
            server.address,
            r#"moat_http_requests_total{route="/v1/chat/completions",model="fake",status="2xx"}"#,
            1.0,
        )
        .await
    };
    let get = |series: &str| samples.get(series).copied().unwrap_or(-1.0);
    let n = |v: &Value| v.as_u64().unwrap() as f64;
    // The whole answer's prompt counts once for its two choices.
    assert_eq!(
        get(r#"moat_prompt_tokens_total{model="fake"}"#),
        n(&whole_usage["prompt_tokens"])
    );
    assert_eq!(
        get(r#"moat_completion_tokens_total{model="fake"}"#),
        n(&whole_usage["completion_tokens"])
    );
    assert_eq!(
        get(r#"moat_prompt_tokens_total{model="fast"}"#),
        n(&stream_usage["prompt_tokens"])
    );
    assert_eq!(
        get(r#"moat_completion_tokens_total{model="fast"}"#),
        n(&stream_usage["completion_tokens"])
    );
    assert!(get(r#"moat_cached_prompt_tokens_total{model="fake"}"#) >= 0.0);
    // One queue time and one first token per choice; the rest of the tokens are gaps.
    assert_eq!(get(r#"moat_queue_time_seconds_count{model="fake"}"#), 2.0);
    assert_eq!(
        get(r#"moat_time_to_first_token_seconds_count{model="fake"}"#),
        2.0
    );
    assert_eq!(
        get(r#"moat_time_to_first_token_seconds_count{model="fast"}"#),
        1.0
    );
    assert!(get(r#"moat_inter_token_latency_seconds_count{model="fast"}"#) >= 1.0);
    assert_eq!(
        get(
            r#"moat_http_request_duration_seconds_count{route="/v1/chat/completions",model="fake"}"#
        ),
        1.0
    );
    // The fake engine reports its load; idle now, with its KV cells counted.
    assert_eq!(get(r#"moat_engine_running_sequences{model="fake"}"#), 0.0);
    assert_eq!(get(r#"moat_engine_queue_depth{model="fake"}"#), 0.0);
    assert!(get(r#"moat_engine_kv_cells_capacity{model="fake"}"#) > 0.0);
    assert!(get(r#"moat_engine_kv_cells_used{model="fake"}"#) >= 0.0);
    assert!(
        get(r#"moat_engine_decode_steps_total{model="fake"}"#) >= 1.0,
        "the answer took at least one step"
    );

    // A second whole answer moves the counters by exactly its usage.
    let again = chat(server.address, "fake", json!({}), &[]).await;
    let usage = again.json()["usage"].clone();
    let after = until_series(
        server.address,
        r#"moat_http_requests_total{route="/v1/chat/completions",model="fake",status="2xx"}"#,
        2.0,
    )
    .await;
    assert_eq!(
        after[r#"moat_completion_tokens_total{model="fake"}"#],
        n(&whole_usage["completion_tokens"]) + n(&usage["completion_tokens"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_does_not_create_a_series() {
    let server = start(Options::default()).await;
    for name in ["no-such-model", "another\"one", "x\ny"] {
        let reply = chat(server.address, name, json!({}), &[]).await;
        assert!((400..500).contains(&reply.status), "{}", reply.body);
    }
    let missing = http(server.address, "GET", "/no/such/route", &[], None).await;
    assert_eq!(missing.status, 404);
    let samples = until_series(
        server.address,
        r#"moat_http_requests_total{route="/v1/chat/completions",model="other",status="4xx"}"#,
        3.0,
    )
    .await;
    let samples = if samples
        .contains_key(r#"moat_http_requests_total{route="other",model="none",status="4xx"}"#)
    {
        samples
    } else {
        until_series(
            server.address,
            r#"moat_http_requests_total{route="other",model="none",status="4xx"}"#,
            1.0,
        )
        .await
    };
    for series in samples.keys() {
        assert!(
            !series.contains("no-such") && !series.contains("another") && !series.contains("/no/"),
            "{series}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_an_admin_key_once_keys_exist() {
    let server = start(Options {
        keys: true,
        ..Options::default()
    })
    .await;
    let auth = server.auth.as_ref().unwrap();
    // Before any key exists, the server is open, /metrics included.
    assert_eq!(
        http(server.address, "GET", "/metrics", &[], None)
            .await
            .status,
        200
    );
    let (user, _) = create_key(auth, "user", false);
    let (admin, _) = create_key(auth, "ops", true);
    let user = format!("Bearer {user}");
    let admin = format!("Bearer {admin}");
    assert_eq!(
        http(server.address, "GET", "/metrics", &[], None)
            .await
            .status,
        401
    );
    let refused = http(
        server.address,
        "GET",
        "/metrics",
        &[("Authorization", &user)],
        None,
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "admin_required");
    let scraped = http(
        server.address,
        "GET",
        "/metrics",
        &[("Authorization", &admin)],
        None,
    )
    .await;
    assert_eq!(scraped.status, 200);
    assert!(scraped
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert!(scraped
        .body
        .contains("# TYPE moat_http_requests_total counter"));
    assert_eq!(
        http(server.address, "GET", "/health", &[], None)
            .await
            .status,
        200
    );

    let public = start(Options {
        keys: true,
        metrics_public: true,
        ..Options::default()
    })
    .await;
    create_key(public.auth.as_ref().unwrap(), "user", false);
    assert_eq!(
        http(public.address, "GET", "/metrics", &[], None)
            .await
            .status,
        200
    );
    // Only /metrics is public; the API still needs a key.
    assert_eq!(
        chat(public.address, "fake", json!({}), &[]).await.status,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_round_trip_into_the_audit_log() {
    let server = start(Options {
        keys: true,
        ..Options::default()
    })
    .await;
    let (secret, _) = create_key(server.auth.as_ref().unwrap(), "user", false);
    let bearer = format!("Bearer {secret}");
    let mine = "client-id 0123/abc";
    let reply = chat(
        server.address,
        "fake",
        json!({}),
        &[("Authorization", &bearer), ("x-request-id", mine)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-request-id"), Some(mine));

    let too_long = "a".repeat(129);
    let replaced = chat(
        server.address,
        "fake",
        json!({}),
        &[("Authorization", &bearer), ("x-request-id", &too_long)],
    )
    .await;
    let generated = replaced.header("x-request-id").unwrap().to_owned();
    assert_ne!(generated, too_long);
    assert!(!generated.is_empty() && generated.len() <= 128);

    let plain = http(server.address, "GET", "/health", &[], None).await;
    let health_id = plain.header("x-request-id").unwrap().to_owned();
    assert_ne!(health_id, generated);

    let meter = server.meter.as_ref().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let ids: Vec<String> = meter
            .audit_query(&AuditFilter::default())
            .unwrap()
            .into_iter()
            .map(|record| record.entry.request_id)
            .collect();
        if ids.contains(&mine.to_owned()) && ids.contains(&generated) {
            break;
        }
        assert!(Instant::now() < deadline, "audit ids: {ids:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_log_has_one_line_per_request_and_no_prompt_text() {
    let server = start(Options {
        keys: true,
        json_log: true,
        ..Options::default()
    })
    .await;
    let (secret, prefix) = create_key(server.auth.as_ref().unwrap(), "user", false);
    let bearer = format!("Bearer {secret}");
    let body =
        json!({"model": "fake", "messages": [{"role": "user", "content": "my secret prompt"}]});
    let reply = http(
        server.address,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", &bearer), ("x-request-id", "log-1")],
        Some(body),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let usage = reply.json()["usage"].clone();
    let unauthenticated = http(server.address, "GET", "/v1/models", &[], None).await;
    assert_eq!(unauthenticated.status, 401);

    let deadline = Instant::now() + WAIT;
    let lines = loop {
        let lines = server.log.lines();
        if lines.len() >= 2 {
            break lines;
        }
        assert!(Instant::now() < deadline, "log: {lines:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    let entries: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let chat_line = entries.iter().find(|e| e["request_id"] == "log-1").unwrap();
    assert_eq!(chat_line["level"], "info");
    assert_eq!(chat_line["method"], "POST");
    assert_eq!(chat_line["path"], "/v1/chat/completions");
    assert_eq!(chat_line["status"], 200);
    assert_eq!(chat_line["model"], "fake");
    assert_eq!(chat_line["key_prefix"], prefix.as_str());
    assert_eq!(chat_line["prompt_tokens"], usage["prompt_tokens"]);
    assert_eq!(chat_line["completion_tokens"], usage["completion_tokens"]);
    assert!(chat_line["duration_ms"].as_f64().unwrap() >= 0.0);
    let ts = chat_line["ts"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.contains('T'), "{ts}");
    let refused = entries.iter().find(|e| e["status"] == 401).unwrap();
    assert_eq!(refused["level"], "warn");
    assert!(refused["model"].is_null() && refused["key_prefix"].is_null());
    for line in &lines {
        assert!(!line.contains("secret prompt"), "{line}");
        assert!(!line.contains(&secret), "{line}");
    }
}

/// A scrape with every family the server renders by itself holding samples (gateway families
/// are checked by the crate's unit test, which renders them from a synthetic snapshot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_exposition() {
    let server = start(Options {
        guard: Some("[input.actions]\npii = \"flag\"\n"),
        ..Options::default()
    })
    .await;
    let flagged = chat(
        server.address,
        "fake",
        json!({"messages": [{"role": "user", "content": "mail me at jane.doe@example.com"}]}),
        &[],
    )
    .await;
    assert_eq!(flagged.status, 200, "{}", flagged.body);
    let samples = until_series(
        server.address,
        r#"moat_http_requests_total{route="/v1/chat/completions",model="fake",status="2xx"}"#,
        1.0,
    )
    .await;
    assert_eq!(
        samples.get(r#"moat_guard_hits_total{rail="input",detector="pii.email",action="flag"}"#),
        Some(&1.0),
        "{samples:#?}"
    );
    let text = http(server.address, "GET", "/metrics", &[], None)
        .await
        .body;
    for family in [
        "moat_http_requests_total",
        "moat_http_request_duration_seconds",
        "moat_time_to_first_token_seconds",
        "moat_inter_token_latency_seconds",
        "moat_queue_time_seconds",
        "moat_prompt_tokens_total",
        "moat_completion_tokens_total",
        "moat_cached_prompt_tokens_total",
        "moat_guard_hits_total",
        "moat_engine_running_sequences",
        "moat_engine_prefilling_sequences",
        "moat_engine_queue_depth",
        "moat_engine_kv_cells_used",
        "moat_engine_kv_cells_capacity",
        "moat_engine_kv_cache_usage_ratio",
        "moat_engine_decode_steps_total",
    ] {
        assert!(
            text.lines()
                .any(|line| line.starts_with(family) && !line.starts_with('#')),
            "no sample of {family}:\n{text}"
        );
    }
    promtool_check(&text);
}
