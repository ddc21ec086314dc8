//! A fast OpenAI-compatible upstream for the gateway benchmark (bench/gateway/run.sh): it
//! answers `POST /v1/chat/completions` at once (or after `--delay-ms`) with a fixed five-word
//! completion, whole or as SSE chunks, plus `GET /health` and `GET /v1/models`. It parses each
//! request body as a real server would, and answers a body that is not a chat request with 400.
//! `--no-nodelay` leaves Nagle's algorithm on for its connections (axum's default), to see what
//! `TCP_NODELAY` changes for streams.
//!
//! ```sh
//! cargo run --release -p moat-gateway --example fast_upstream -- --port 0 --threads 1
//! ```
//!
//! Listens on 127.0.0.1 only and prints `listening on ADDR` first. It knows nothing of the
//! gateway: it is the "model" the gateway's overhead is measured against.

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bench_common::{Flags, COMPLETION_WORDS};
use futures_util::stream;
use serde_json::{json, Value};

/// The model name the upstream reports and echoes when a request names none.
const MODEL: &str = "fast-model";

struct Upstream {
    delay: Duration,
    served: AtomicU64,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fast_upstream: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let flags = Flags::parse(
        std::env::args().skip(1),
        &["port", "threads", "delay-ms"],
        &["no-nodelay"],
    )?;
    // For comparison only: Nagle's algorithm left on, as `axum::serve` does by default.
    let no_nodelay = flags.switch("no-nodelay");
    let port: u16 = flags.number("port", 0, 0, u16::MAX)?;
    let threads: usize = flags.number("threads", 1, 1, 256)?;
    let delay_ms: u64 = flags.number("delay-ms", 0, 0, 60_000)?;
    let state = Arc::new(Upstream {
        delay: Duration::from_millis(delay_ms),
        served: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .with_state(state);
    bench_common::runtime(threads)?
        .block_on(async move { bench_common::serve(port, app, !no_nodelay).await })
}

async fn chat(State(upstream): State<Arc<Upstream>>, Json(body): Json<Value>) -> Response {
    if !body.get("messages").is_some_and(Value::is_array) {
        let error = json!({"error": {"message": "`messages` must be an array", "type": "invalid_request_error"}});
        return (StatusCode::BAD_REQUEST, Json(error)).into_response();
    }
    let n = upstream.served.fetch_add(1, Ordering::Relaxed);
    if !upstream.delay.is_zero() {
        tokio::time::sleep(upstream.delay).await;
    }
    let id = format!("chatcmpl-fast-{n}");
    let model = body.get("model").and_then(Value::as_str).unwrap_or(MODEL);
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        stream_answer(&id, model)
    } else {
        Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": 1_700_000_000u64,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": COMPLETION_WORDS.concat()},
                "finish_reason": "stop"
            }],
            "usage": {"prompt_tokens": 24, "completion_tokens": 5, "total_tokens": 29}
        }))
        .into_response()
    }
}

/// The answer as SSE: a role chunk, one chunk per word, a finish chunk, then `[DONE]`, each
/// event a separate piece of the body.
fn stream_answer(id: &str, model: &str) -> Response {
    let chunk = |delta: Value, finish: Value| {
        let chunk = json!({
            "id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        });
        format!("data: {chunk}\n\n")
    };
    let mut events = vec![chunk(json!({"role": "assistant"}), Value::Null)];
    for word in COMPLETION_WORDS {
        events.push(chunk(json!({"content": word}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    events.push("data: [DONE]\n\n".to_owned());
    let body = Body::from_stream(stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn models() -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": MODEL, "object": "model", "created": 1_700_000_000u64, "owned_by": "bench"}]
    }))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}
