//! The exporter against real loopback sockets: a collector stub that stores what it is sent
//! (or answers 500), a port nobody listens on, and a collector that accepts and never answers.
//! No test asserts on time; waits are bounded so a bug fails instead of hanging.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use moat_otlp::{Exporter, ExporterConfig, Span, SpanContext, SpanKind};
use serde_json::Value;

/// What the stub received: each request's headers and JSON body.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, Value)>>>);

async fn start_collector(status: StatusCode) -> (SocketAddr, Received) {
    let received = Received::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                move |State(received): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    let body: Value = serde_json::from_slice(&body).unwrap();
                    received.0.lock().unwrap().push((headers, body));
                    status
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, received)
}

fn span(name: &str) -> Span {
    let mut span = Span::new(SpanContext::new_root(), None, name, SpanKind::Internal, 1);
    span.end_at(2);
    span
}

fn config(address: SocketAddr) -> ExporterConfig {
    let mut config = ExporterConfig::new(format!("http://{address}"));
    config.service_name = "otlp-test".into();
    config.flush_interval = Duration::from_millis(50);
    config.timeout = Duration::from_secs(5);
    config
}

/// Flushes on a blocking thread (flush blocks its caller).
async fn flush(exporter: &Exporter) -> bool {
    let exporter = exporter.clone();
    tokio::task::spawn_blocking(move || exporter.flush(Duration::from_secs(20)))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_arrive_as_otlp_json_with_the_configured_headers() {
    let (address, received) = start_collector(StatusCode::OK).await;
    let mut config = config(address);
    config.headers = vec![("x-collector-key".into(), "secret".into())];
    let exporter = Exporter::start(config).unwrap();
    for name in ["a", "b", "c"] {
        exporter.record(span(name));
    }
    assert!(flush(&exporter).await);
    assert_eq!(exporter.exported(), 3);
    assert_eq!(exporter.dropped(), 0);
    let received = received.0.lock().unwrap().clone();
    let mut names = Vec::new();
    for (headers, body) in &received {
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["x-collector-key"], "secret");
        let resource = &body["resourceSpans"][0];
        assert_eq!(
            resource["resource"]["attributes"][0]["value"]["stringValue"],
            "otlp-test"
        );
        for span in resource["scopeSpans"][0]["spans"].as_array().unwrap() {
            names.push(span["name"].as_str().unwrap().to_owned());
        }
    }
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_no_larger_than_max_batch() {
    let (address, received) = start_collector(StatusCode::OK).await;
    let mut config = config(address);
    config.max_batch = 4;
    let exporter = Exporter::start(config).unwrap();
    for i in 0..10 {
        exporter.record(span(&format!("s{i}")));
    }
    assert!(flush(&exporter).await);
    assert_eq!(exporter.exported(), 10);
    let sizes: Vec<usize> = received
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| {
            body["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .unwrap()
                .len()
        })
        .collect();
    assert!(sizes.iter().all(|n| *n <= 4), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_answering_500_costs_the_batch_and_is_counted() {
    let (address, received) = start_collector(StatusCode::INTERNAL_SERVER_ERROR).await;
    let exporter = Exporter::start(config(address)).unwrap();
    for name in ["a", "b"] {
        exporter.record(span(name));
    }
    assert!(flush(&exporter).await);
    assert_eq!(exporter.exported(), 0);
    assert_eq!(exporter.dropped(), 2);
    // Sent once, never retried.
    let bodies = received.0.lock().unwrap().len();
    assert!(flush(&exporter).await);
    assert_eq!(received.0.lock().unwrap().len(), bodies);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_the_batch_and_is_counted() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let exporter = Exporter::start(config(address)).unwrap();
    exporter.record(span("lost"));
    assert!(flush(&exporter).await);
    assert_eq!(exporter.exported(), 0);
    assert_eq!(exporter.dropped(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_past_the_queue_is_dropped_not_stored() {
    // A collector that accepts connections and never answers: the export thread is stuck on
    // its first batch while the flood comes in.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = Arc::clone(&held);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            holder.lock().unwrap().push(socket);
        }
    });
    let mut config = config(address);
    config.max_queue = 16;
    config.max_batch = 4;
    config.timeout = Duration::from_secs(60);
    let exporter = Exporter::start(config).unwrap();
    let flood = 10_000u64;
    for i in 0..flood {
        exporter.record(span(&format!("s{i}")));
        assert!(exporter.queued() <= 16);
    }
    // At most the queue and one batch in flight were kept; everything else was counted.
    assert!(
        exporter.dropped() >= flood - 16 - 4,
        "{}",
        exporter.dropped()
    );
    assert_eq!(exporter.exported(), 0);
}
