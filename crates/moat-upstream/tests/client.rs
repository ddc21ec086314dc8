//! The client against a real loopback HTTP server: whole and streamed answers, pass-through
//! bodies, the API key header, and every error class (connect, timeouts, 429, 5xx, 4xx,
//! malformed streams, oversized bodies).

#![allow(clippy::unwrap_used)] // test helpers: a failure should stop the test

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use moat_upstream::{
    ErrorKind, Reply, TimeoutPhase, UpstreamClient, UpstreamConfig, UpstreamError,
};
use serde_json::{json, Value};

/// Answers according to the request's `"behaviour"` field.
async fn chat(headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let sse = |text: String| ([(header::CONTENT_TYPE, "text/event-stream")], text).into_response();
    match body["behaviour"].as_str().unwrap_or("echo") {
        "echo" => Json(json!({"echo": body, "auth": auth})).into_response(),
        "429" => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "7")],
            "slow down",
        )
            .into_response(),
        "503" => (StatusCode::SERVICE_UNAVAILABLE, "overloaded").into_response(),
        "404" => (StatusCode::NOT_FOUND, "no such model").into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Json(json!({})).into_response()
        }
        "big" => "x".repeat(4096).into_response(),
        "not-json" => "<html>".into_response(),
        "stream" => {
            let pieces: Vec<Result<String, std::io::Error>> = vec![
                Ok(": comment\n\nda".into()),
                Ok("ta: {\"n\": 1}\n".into()),
                Ok("\ndata: {\"n\": 2}\r\n\r\n".into()),
                Ok("data: [DONE]\n\n".into()),
            ];
            Body::from_stream(futures_util::stream::iter(pieces)).into_response()
        }
        "stream-stall" => {
            let first = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
                "data: {\"n\": 1}\n\n".to_owned(),
            )]);
            let stall = futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<_, std::io::Error>("data: [DONE]\n\n".to_owned())
            });
            Body::from_stream(first.chain(stall)).into_response()
        }
        "stream-endless" => {
            let ticks = futures_util::stream::unfold(0u64, |n| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((
                    Ok::<_, std::io::Error>(format!("data: {{\"n\": {n}}}\n\n")),
                    n + 1,
                ))
            });
            Body::from_stream(ticks).into_response()
        }
        "drip" => {
            // A whole answer that never completes: a byte now and then, forever.
            let drip = futures_util::stream::unfold((), |()| async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((Ok::<_, std::io::Error>(" ".to_owned()), ()))
            });
            Body::from_stream(drip).into_response()
        }
        "stream-garbage" => sse("data: {\"n\": 1}\n\ndata: not json\n\n".into()),
        "stream-cut" => sse("data: {\"n\": 1}\n\n".into()),
        "stream-error" => sse("data: {\"error\": {\"message\": \"boom\"}}\n\n".into()),
        "stream-endless-line" => sse(format!("data: {}", "y".repeat(10_000))),
        other => (
            StatusCode::BAD_REQUEST,
            format!("unknown behaviour {other}"),
        )
            .into_response(),
    }
}

async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route(
            "/v1/embeddings",
            post(|Json(body): Json<Value>| async move {
                Json(json!({"model": body["model"], "data": []}))
            }),
        )
        .route("/health", get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

fn client(url: &str) -> UpstreamClient {
    let mut config = UpstreamConfig::new(url);
    config.timeouts.first_byte = Duration::from_millis(300);
    config.timeouts.idle = Duration::from_millis(300);
    config.max_body_bytes = 1024;
    config.sse_limits.max_line_bytes = 1024;
    UpstreamClient::new(config).unwrap()
}

async fn ask(
    client: &UpstreamClient,
    behaviour: &str,
    stream: bool,
) -> Result<Reply, UpstreamError> {
    let body = json!({"model": "alias", "behaviour": behaviour, "stream": stream, "extra": {"kept": true}});
    client.chat(body, "real-model").await
}

async fn collect(reply: Reply) -> Vec<Result<Value, UpstreamError>> {
    match reply {
        Reply::Stream(events) => events.collect().await,
        Reply::Full(_) => panic!("expected a stream"),
    }
}

#[tokio::test]
async fn whole_answers_pass_unknown_fields_and_rewrite_only_the_model() {
    let url = start().await;
    let mut config = UpstreamConfig::new(url.clone());
    config.api_key = Some("sk-test".into());
    let client = UpstreamClient::new(config).unwrap();
    let Reply::Full(answer) = ask(&client, "echo", false).await.unwrap() else {
        panic!()
    };
    assert_eq!(answer["echo"]["model"], "real-model");
    assert_eq!(answer["echo"]["extra"], json!({"kept": true}));
    assert_eq!(answer["auth"], "Bearer sk-test");
    let embedded = client
        .embeddings(json!({"model": "a", "input": "x"}), "emb")
        .await
        .unwrap();
    assert_eq!(embedded["model"], "emb");
    client.health().await.unwrap();
}

#[tokio::test]
async fn streams_are_parsed_across_arbitrary_piece_boundaries() {
    let url = start().await;
    let events = collect(ask(&client(&url), "stream", true).await.unwrap()).await;
    let values: Vec<Value> = events.into_iter().map(Result::unwrap).collect();
    assert_eq!(values, vec![json!({"n": 1}), json!({"n": 2})]);
}

#[tokio::test]
async fn http_errors_are_classified() {
    let url = start().await;
    let client = client(&url);
    match ask(&client, "429", false).await.unwrap_err() {
        UpstreamError::RateLimited { retry_after } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("{other:?}"),
    }
    let server = ask(&client, "503", false).await.unwrap_err();
    assert!(
        matches!(&server, UpstreamError::Server { status: 503, message } if message == "overloaded"),
        "{server:?}"
    );
    assert!(server.is_retryable());
    let not_found = ask(&client, "404", false).await.unwrap_err();
    assert_eq!(not_found.kind(), ErrorKind::Client);
    assert!(!not_found.is_retryable());
    assert_eq!(
        ask(&client, "big", false).await.unwrap_err().kind(),
        ErrorKind::Malformed
    );
    assert_eq!(
        ask(&client, "not-json", false).await.unwrap_err().kind(),
        ErrorKind::Malformed
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = ask(&client(&format!("http://{addr}/v1")), "echo", false)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_silent_upstream_times_out_before_the_first_byte_and_mid_stream() {
    let url = start().await;
    let client = client(&url);
    let err = ask(&client, "slow", false).await.unwrap_err();
    assert!(
        matches!(
            err,
            UpstreamError::Timeout {
                phase: TimeoutPhase::FirstByte,
                ..
            }
        ),
        "{err:?}"
    );
    let events = collect(ask(&client, "stream-stall", true).await.unwrap()).await;
    assert_eq!(events[0].as_ref().unwrap(), &json!({"n": 1}));
    assert!(
        matches!(
            events[1],
            Err(UpstreamError::Timeout {
                phase: TimeoutPhase::Idle,
                ..
            })
        ),
        "{:?}",
        events[1]
    );
    assert_eq!(events.len(), 2, "the stream ends after its error");
}

#[tokio::test]
async fn an_answer_that_keeps_arriving_ends_at_the_total_deadline() {
    let url = start().await;
    let mut config = UpstreamConfig::new(url);
    config.timeouts.idle = Duration::from_secs(5);
    config.timeouts.total = Some(Duration::from_millis(400));
    let client = UpstreamClient::new(config).unwrap();
    let total_timeout = |err: &UpstreamError| {
        matches!(
            err,
            UpstreamError::Timeout {
                phase: TimeoutPhase::Total,
                after,
            } if *after == Duration::from_millis(400)
        )
    };
    let started = std::time::Instant::now();
    let events = collect(ask(&client, "stream-endless", true).await.unwrap()).await;
    let (last, before) = events.split_last().unwrap();
    assert!(total_timeout(last.as_ref().unwrap_err()), "{last:?}");
    assert!(
        before.len() >= 2,
        "events flowed until the deadline: {}",
        before.len()
    );
    assert!(before.iter().all(Result::is_ok));
    let err = ask(&client, "drip", false).await.unwrap_err();
    assert!(total_timeout(&err), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Timeout);
    // Both calls ended near their deadline, far before the idle timeout could end them.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // Without a total bound the same stream is still going when the reader stops.
    let mut config = UpstreamConfig::new(start().await);
    config.timeouts.idle = Duration::from_secs(5);
    let client = UpstreamClient::new(config).unwrap();
    let Reply::Stream(events) = ask(&client, "stream-endless", true).await.unwrap() else {
        panic!("expected a stream")
    };
    let taken: Vec<_> = events.take(30).collect().await;
    assert!(taken.iter().all(Result::is_ok), "{taken:?}");
}

#[tokio::test]
async fn malformed_streams_end_with_an_error() {
    let url = start().await;
    let client = client(&url);
    for behaviour in ["stream-garbage", "stream-cut", "stream-endless-line"] {
        let events = collect(ask(&client, behaviour, true).await.unwrap()).await;
        let last = events.last().unwrap();
        assert!(
            matches!(last, Err(UpstreamError::MalformedStream { .. })),
            "{behaviour}: {last:?}"
        );
    }
    let events = collect(ask(&client, "stream-error", true).await.unwrap()).await;
    assert!(
        matches!(&events[0], Err(UpstreamError::Server { message, .. }) if message.contains("boom")),
        "{events:?}"
    );
}
