//! Traces over real sockets, against `FakeEngine` and a loopback collector stub that stores
//! the OTLP/HTTP JSON it is sent: a chat request's SERVER span and its `queue` and `generate`
//! children, a caller's `traceparent` continued, one trace across a gateway node and the moat
//! node behind it, and a collector that is down, failing, hanging or flooded costing client
//! requests nothing but counted drops. Spans are awaited with a bounded poll, never timed.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use common::{promtool_check, serve_on_loopback, SharedBuffer};
use moat_engine::{FakeConfig, FakeEngine, FakeReply};
use moat_gateway::GatewayConfig;
use moat_openai::ModelLimits;
use moat_otlp::{Exporter, ExporterConfig};
use moat_server::{AppState, LogFormat, ServedModel, ServerConfig};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The longest a test waits for spans or counters before it fails.
const WAIT: Duration = Duration::from_secs(20);

/// The stub's store: every span it received, with its service's name.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<(String, Value)>>>);

impl Collector {
    async fn start(status: StatusCode) -> (String, Collector) {
        let collector = Collector::default();
        let app = Router::new()
            .route(
                "/v1/traces",
                post(
                    move |State(store): State<Collector>, body: Bytes| async move {
                        let body: Value = serde_json::from_slice(&body).unwrap();
                        store.keep(&body);
                        status
                    },
                ),
            )
            .with_state(collector.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{address}"), collector)
    }

    fn keep(&self, body: &Value) {
        let mut spans = self.0.lock().unwrap();
        for resource in body["resourceSpans"].as_array().unwrap() {
            let service = resource["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].as_str().unwrap().to_owned())
                .unwrap();
            for scope in resource["scopeSpans"].as_array().unwrap() {
                for span in scope["spans"].as_array().unwrap() {
                    spans.push((service.clone(), span.clone()));
                }
            }
        }
    }

    /// Waits (bounded) until `ready` holds for the spans received so far, and returns them.
    async fn wait_for(&self, ready: impl Fn(&[(String, Value)]) -> bool) -> Vec<(String, Value)> {
        let until = Instant::now() + WAIT;
        loop {
            let spans = self.0.lock().unwrap().clone();
            if ready(&spans) {
                return spans;
            }
            assert!(Instant::now() < until, "spans never arrived: {spans:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An attribute's value as the collector saw it (`stringValue`, `intValue`, ...).
fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    let attribute = span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)?;
    attribute["value"].as_object()?.values().next()
}

fn nanos(span: &Value, field: &str) -> u128 {
    span[field].as_str().unwrap().parse().unwrap()
}

fn exporter(endpoint: &str, service: &str, max_queue: usize, timeout: Duration) -> Exporter {
    let mut config = ExporterConfig::new(endpoint);
    config.service_name = service.into();
    config.flush_interval = Duration::from_millis(20);
    config.max_queue = max_queue;
    config.max_batch = max_queue.min(64);
    config.timeout = timeout;
    Exporter::start(config).unwrap()
}

struct Node {
    address: SocketAddr,
    log: SharedBuffer,
    _stop: oneshot::Sender<()>,
}

/// A moat server with the fake model `fake`, exporting to `exporter`, and routing the
/// gateway's aliases of `gateway` (TOML) when given.
async fn start_node(exporter: Option<Exporter>, gateway: Option<&str>) -> Node {
    let config = ServerConfig {
        log_format: LogFormat::Json,
        otlp: exporter,
        ..ServerConfig::default()
    };
    let state = AppState::new(config);
    let engine = FakeEngine::new(FakeConfig {
        reply: FakeReply::Fixed("the answer is 42".into()),
        ..FakeConfig::default()
    })
    .unwrap();
    state.add_model(
        "fake",
        ServedModel::new(Arc::new(engine), ModelLimits::default()),
    );
    if let Some(text) = gateway {
        let config: GatewayConfig = toml::from_str(text).unwrap();
        state.enable_gateway(&config).unwrap();
    }
    let log = SharedBuffer::default();
    state.set_log_writer(Box::new(log.clone()));
    let (address, stop) = serve_on_loopback(state).await;
    Node {
        address,
        log,
        _stop: stop,
    }
}

async fn chat(
    address: SocketAddr,
    model: &str,
    stream: bool,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("http://{address}/v1/chat/completions"))
        .json(&json!({
            "model": model,
            "stream": stream,
            "messages": [{"role": "user", "content": "hello"}],
        }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The SERVER span of the request with id `request_id`.
fn server_span<'a>(spans: &'a [(String, Value)], request_id: &str) -> Option<&'a Value> {
    spans
        .iter()
        .map(|(_, span)| span)
        .find(|span| span["kind"] == 2 && attr(span, "moat.request_id") == Some(&json!(request_id)))
}

fn children<'a>(spans: &'a [(String, Value)], parent: &Value) -> Vec<&'a Value> {
    spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| span.get("parentSpanId") == parent.get("spanId"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_request_is_a_server_span_with_queue_and_generate_children() {
    let (endpoint, collector) = Collector::start(StatusCode::OK).await;
    let node = start_node(Some(exporter(&endpoint, "moat", 1024, WAIT)), None).await;
    for (request_id, stream) in [("whole-1", false), ("stream-1", true)] {
        let (status, body) = chat(
            node.address,
            "fake",
            stream,
            &[("x-request-id", request_id)],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let spans = collector
            .wait_for(|spans| {
                server_span(spans, request_id)
                    .is_some_and(|server| children(spans, server).len() >= 2)
            })
            .await;
        let server = server_span(&spans, request_id).unwrap();
        assert_eq!(server["name"], "POST /v1/chat/completions");
        assert!(server.get("parentSpanId").is_none(), "{server}");
        assert_eq!(attr(server, "http.request.method"), Some(&json!("POST")));
        assert_eq!(
            attr(server, "http.route"),
            Some(&json!("/v1/chat/completions"))
        );
        assert_eq!(
            attr(server, "http.response.status_code"),
            Some(&json!("200"))
        );
        assert_eq!(attr(server, "gen_ai.request.model"), Some(&json!("fake")));
        assert_eq!(attr(server, "gen_ai.operation.name"), Some(&json!("chat")));
        let input: u64 = attr(server, "gen_ai.usage.input_tokens")
            .unwrap()
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let output: u64 = attr(server, "gen_ai.usage.output_tokens")
            .unwrap()
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(input > 0 && output > 0, "{server}");
        assert!(attr(server, "gen_ai.usage.cache_read.input_tokens").is_some());
        assert_eq!(server["status"]["code"], 0);
        if !stream {
            let answer: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(answer["usage"]["prompt_tokens"], input);
            assert_eq!(answer["usage"]["completion_tokens"], output);
        }
        let kids = children(&spans, server);
        let names: Vec<&str> = kids.iter().map(|s| s["name"].as_str().unwrap()).collect();
        assert!(
            names.contains(&"queue") && names.contains(&"generate"),
            "{names:?}"
        );
        for kid in &kids {
            assert_eq!(kid["traceId"], server["traceId"]);
            assert_eq!(kid["kind"], 1);
            // Children lie within the request.
            assert!(nanos(kid, "startTimeUnixNano") >= nanos(server, "startTimeUnixNano"));
            assert!(nanos(kid, "endTimeUnixNano") <= nanos(server, "endTimeUnixNano"));
        }
        let generate = kids.iter().find(|s| s["name"] == "generate").unwrap();
        assert_eq!(
            attr(generate, "gen_ai.usage.output_tokens"),
            Some(&json!(output.to_string()))
        );
        // The JSON log line joins the trace.
        let log = String::from_utf8(node.log.0.lock().unwrap().clone()).unwrap();
        let line: Value = log
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .find(|line| line["request_id"] == request_id)
            .unwrap();
        assert_eq!(line["trace_id"], server["traceId"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_traceparent_is_continued_and_an_invalid_one_starts_a_new_trace() {
    let (endpoint, collector) = Collector::start(StatusCode::OK).await;
    let node = start_node(Some(exporter(&endpoint, "moat", 1024, WAIT)), None).await;
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (status, _) = chat(
        node.address,
        "fake",
        false,
        &[("x-request-id", "continued"), ("traceparent", caller)],
    )
    .await;
    assert_eq!(status, 200);
    let broken = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
    let (status, _) = chat(
        node.address,
        "fake",
        false,
        &[("x-request-id", "fresh"), ("traceparent", broken)],
    )
    .await;
    assert_eq!(status, 200);
    let spans = collector
        .wait_for(|spans| {
            server_span(spans, "continued").is_some() && server_span(spans, "fresh").is_some()
        })
        .await;
    let continued = server_span(&spans, "continued").unwrap();
    assert_eq!(continued["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(continued["parentSpanId"], "00f067aa0ba902b7");
    assert_ne!(continued["spanId"], "00f067aa0ba902b7");
    let fresh = server_span(&spans, "fresh").unwrap();
    assert_ne!(fresh["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(fresh.get("parentSpanId").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_and_the_moat_node_behind_it_share_one_trace() {
    let (endpoint, collector) = Collector::start(StatusCode::OK).await;
    let node = start_node(Some(exporter(&endpoint, "node", 1024, WAIT)), None).await;
    let routes = format!(
        "[[aliases.fast.targets]]\ntype = \"upstream\"\nname = \"node-b\"\nurl = \"http://{}/v1\"\nmodel = \"fake\"\n",
        node.address
    );
    let gateway = start_node(
        Some(exporter(&endpoint, "gateway", 1024, WAIT)),
        Some(&routes),
    )
    .await;
    for (request_id, stream) in [("via-gateway", false), ("via-gateway-stream", true)] {
        let (status, body) = chat(
            gateway.address,
            "fast",
            stream,
            &[("x-request-id", request_id)],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let spans = collector
            .wait_for(|spans| {
                let Some(front) = server_span(spans, request_id) else {
                    return false;
                };
                children(spans, front).iter().any(|client| {
                    client["kind"] == 3
                        && spans.iter().any(|(service, span)| {
                            service == "node"
                                && span["kind"] == 2
                                && span.get("parentSpanId") == client.get("spanId")
                        })
                })
            })
            .await;
        let front = server_span(&spans, request_id).unwrap();
        let service_of = |span: &Value| {
            spans
                .iter()
                .find(|(_, s)| s == span)
                .map(|(service, _)| service.clone())
        };
        assert_eq!(service_of(front).as_deref(), Some("gateway"));
        assert_eq!(front["name"], "POST /v1/chat/completions");
        assert_eq!(attr(front, "gen_ai.request.model"), Some(&json!("fast")));
        let client = *children(&spans, front)
            .iter()
            .find(|s| s["kind"] == 3)
            .unwrap();
        assert_eq!(client["name"], "upstream node-b");
        assert_eq!(client["traceId"], front["traceId"]);
        assert_eq!(attr(client, "moat.alias"), Some(&json!("fast")));
        assert_eq!(attr(client, "moat.target"), Some(&json!("node-b")));
        assert_eq!(attr(client, "server.address"), Some(&json!("127.0.0.1")));
        assert_eq!(
            attr(client, "server.port"),
            Some(&json!(node.address.port().to_string()))
        );
        assert_eq!(attr(client, "moat.outcome"), Some(&json!("answered")));
        assert_eq!(attr(client, "moat.fallback"), Some(&json!(false)));
        // The attempt lies within the gateway's request.
        assert!(nanos(client, "startTimeUnixNano") >= nanos(front, "startTimeUnixNano"));
        assert!(nanos(client, "endTimeUnixNano") <= nanos(front, "endTimeUnixNano"));
        // The node behind the gateway continued the trace under the attempt's span.
        let behind = spans
            .iter()
            .find(|(service, span)| {
                service == "node"
                    && span["kind"] == 2
                    && span.get("parentSpanId") == client.get("spanId")
            })
            .map(|(_, span)| span)
            .unwrap();
        assert_eq!(behind["traceId"], front["traceId"]);
        assert_eq!(attr(behind, "gen_ai.request.model"), Some(&json!("fake")));
        let spans = collector
            .wait_for(|spans| children(spans, behind).len() >= 2)
            .await;
        for kid in children(&spans, behind) {
            assert_eq!(kid["traceId"], front["traceId"]);
        }
    }
}

/// A collector that accepts connections and never answers.
async fn hanging_collector() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{address}")
}

async fn scrape(address: SocketAddr) -> BTreeMap<String, f64> {
    let text = reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    promtool_check(&text);
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}

/// Waits (bounded) until the exporter counted at least `n` drops.
async fn dropped_at_least(exporter: &Exporter, n: u64) {
    let until = Instant::now() + WAIT;
    while exporter.dropped() < n {
        assert!(
            Instant::now() < until,
            "dropped {} < {n}",
            exporter.dropped()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_failing_or_hanging_costs_requests_nothing() {
    let (failing, collector) = Collector::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    let down = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let hanging = hanging_collector().await;
    for endpoint in [down, failing, hanging.clone()] {
        // Each export attempt to the hanging collector would wait this long: requests that
        // waited on it could not finish within the test's bound.
        let exporter = exporter(&endpoint, "moat", 1024, Duration::from_secs(600));
        let node = start_node(Some(exporter.clone()), None).await;
        let requests = async {
            for i in 0..5 {
                let (status, body) = chat(node.address, "fake", i % 2 == 0, &[]).await;
                assert_eq!(status, 200, "{endpoint}: {body}");
            }
        };
        tokio::time::timeout(WAIT, requests)
            .await
            .unwrap_or_else(|_| panic!("requests hung on the collector at {endpoint}"));
        if endpoint == hanging {
            // Nothing came back yet, and nothing was counted as exported.
            assert_eq!(exporter.exported(), 0);
            continue;
        }
        // Three spans per request (SERVER, queue, generate), all dropped and counted.
        dropped_at_least(&exporter, 15).await;
        assert_eq!(exporter.exported(), 0);
        let samples = scrape(node.address).await;
        assert!(
            samples["moat_otlp_spans_dropped_total"] >= 15.0,
            "{samples:?}"
        );
        assert_eq!(samples["moat_otlp_spans_exported_total"], 0.0);
    }
    assert!(
        !collector.0.lock().unwrap().is_empty(),
        "the failing collector was never called"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_export_queue_is_dropped_never_stored() {
    let exporter = exporter(
        &hanging_collector().await,
        "moat",
        4,
        Duration::from_secs(600),
    );
    let node = start_node(Some(exporter.clone()), None).await;
    let requests = 30;
    for _ in 0..requests {
        let (status, body) = chat(node.address, "fake", false, &[]).await;
        assert_eq!(status, 200, "{body}");
        assert!(exporter.queued() <= 4);
    }
    // 3 spans per request: at most the queue (4) and one batch in flight (4) are held.
    dropped_at_least(&exporter, 3 * requests - 8).await;
    assert!(exporter.queued() <= 4);
    let samples = scrape(node.address).await;
    assert!(samples["moat_otlp_spans_dropped_total"] >= (3 * requests - 8) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_exporter_there_are_no_trace_ids_or_otlp_metrics() {
    let node = start_node(None, None).await;
    let (status, _) = chat(node.address, "fake", false, &[("x-request-id", "untraced")]).await;
    assert_eq!(status, 200);
    let samples = scrape(node.address).await;
    assert!(
        !samples
            .keys()
            .any(|series| series.starts_with("moat_otlp_")),
        "{samples:?}"
    );
    let log = String::from_utf8(node.log.0.lock().unwrap().clone()).unwrap();
    let line: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(line["request_id"], "untraced");
    assert!(line.get("trace_id").is_none(), "{line}");
}
