//! A minimal gateway node over the moat-gateway library, for the gateway benchmark: the HTTP
//! hop a gateway adds, with the library's routing, before `moat serve` serves aliases itself.
//!
//! It reads the `[aliases]`, `[routing]` and `[cache]` tables of a moat.toml (nothing else may
//! be in the file), runs the active health checks, and serves `POST /v1/chat/completions` for
//! the aliases (whole answers and SSE), `GET /v1/models` (the aliases) and `GET /health`.
//! Errors are OpenAI-shaped with the status of [`moat_gateway::GatewayErrorKind`]; the
//! cache's verdict is the `x-moat-cache` header.
//!
//! ```sh
//! cargo run --release -p moat-gateway --example gateway_node -- --config moat.toml --port 0 --threads 1
//! ```
//!
//! What it leaves out compared with `moat serve` (so the real node costs somewhat more per
//! request): API keys and limits, guardrails, metering and the audit log, metrics, logs, body
//! validation beyond "JSON with a `model`", graceful drain. Listens on 127.0.0.1 only.

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bench_common::Flags;
use futures_util::stream::{self, StreamExt};
use moat_gateway::{
    CacheStatus, CallContext, Gateway, GatewayConfig, GatewayDeps, GatewayError, GatewayErrorKind,
    ProviderReply, SystemClock,
};
use serde_json::{json, Value};

/// The largest moat.toml read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gateway_node: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let flags = Flags::parse(
        std::env::args().skip(1),
        &["config", "port", "threads"],
        &[],
    )?;
    let path = flags.text("config").ok_or("--config FILE is required")?;
    let port: u16 = flags.number("port", 0, 0, u16::MAX)?;
    let threads: usize = flags.number("threads", 1, 1, 256)?;
    let config = read_config(path)?;
    bench_common::runtime(threads)?.block_on(async move {
        let deps = GatewayDeps {
            local: None,
            clock: Arc::new(SystemClock),
        };
        let gateway =
            Arc::new(Gateway::new(&config, deps).map_err(|err| format!("{path}: {err}"))?);
        let _health = gateway.spawn_health_checks();
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .route("/health", get(health))
            .with_state(gateway);
        bench_common::serve(port, app, true).await
    })
}

fn read_config(path: &str) -> Result<GatewayConfig, String> {
    let size = std::fs::metadata(path)
        .map_err(|err| format!("{path}: {err}"))?
        .len();
    if size > MAX_CONFIG_BYTES {
        return Err(format!(
            "{path}: {size} bytes, more than the {MAX_CONFIG_BYTES} read"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|err| format!("{path}: {err}"))?;
    toml::from_str(&text).map_err(|err| format!("{path}: {err}"))
}

async fn chat(State(gateway): State<Arc<Gateway>>, Json(body): Json<Value>) -> Response {
    let Some(alias) = body.get("model").and_then(Value::as_str).map(str::to_owned) else {
        return error_response(StatusCode::BAD_REQUEST, "`model` must be a string");
    };
    let answer = match gateway.chat(&CallContext::default(), &alias, body).await {
        Ok(answer) => answer,
        Err(err) => return gateway_error(&err),
    };
    let mut response = match answer.reply {
        ProviderReply::Full(value) => Json(value).into_response(),
        ProviderReply::Stream(chunks) => sse(chunks),
    };
    let cache = match answer.cache {
        CacheStatus::Hit => "hit",
        CacheStatus::Miss => "miss",
        CacheStatus::Bypass => "bypass",
    };
    response
        .headers_mut()
        .insert("x-moat-cache", HeaderValue::from_static(cache));
    response
}

/// Chunks as SSE events, then `[DONE]`; an error after the first chunk becomes an error event
/// and the stream ends without `[DONE]`, so the client can tell it was cut.
fn sse(chunks: moat_gateway::ChunkStream) -> Response {
    let events = chunks.map(|item| match item {
        Ok(chunk) => Ok(format!("data: {chunk}\n\n")),
        Err(err) => {
            let error = json!({"error": {"message": err.to_string(), "type": "upstream_error"}});
            Err(format!("data: {error}\n\n"))
        }
    });
    let body = stream::unfold((events, false), |(mut events, finished)| async move {
        if finished {
            return None;
        }
        match events.next().await {
            Some(Ok(event)) => Some((event, (events, false))),
            Some(Err(error_event)) => Some((error_event, (events, true))),
            None => Some(("data: [DONE]\n\n".to_owned(), (events, true))),
        }
    })
    .map(|event| Ok::<_, Infallible>(Bytes::from(event)));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

fn gateway_error(err: &GatewayError) -> Response {
    let status = match err.kind() {
        GatewayErrorKind::Config => StatusCode::INTERNAL_SERVER_ERROR,
        GatewayErrorKind::NotFound => StatusCode::NOT_FOUND,
        GatewayErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        GatewayErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        GatewayErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        GatewayErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        GatewayErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
    };
    error_response(status, &err.to_string())
}

fn error_response(status: StatusCode, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": "gateway_error"}});
    (status, Json(body)).into_response()
}

async fn models(State(gateway): State<Arc<Gateway>>) -> Json<Value> {
    let data: Vec<Value> = gateway
        .aliases()
        .into_iter()
        .map(|alias| json!({"id": alias, "object": "model", "created": 0, "owned_by": "moat"}))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}
