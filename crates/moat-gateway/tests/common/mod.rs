//! A small OpenAI-compatible server on 127.0.0.1 that counts the requests it gets and can be
//! told to fail, stall or hold requests, for the gateway's tests.

#![allow(dead_code, clippy::unwrap_used)] // shared by several test binaries; a failure should stop the test

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// How the fake answers chat and embedding requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// A normal answer.
    Ok,
    /// This HTTP status with an error body.
    Status(u16),
    /// Sleep this long, then answer normally.
    Sleep(Duration),
    /// Wait until `release` is called, then answer normally.
    Hold,
    /// For streams: one chunk, then the connection ends without `[DONE]`.
    BreakStream,
}

#[derive(Clone)]
pub struct Fake {
    pub name: &'static str,
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    mode: Arc<Mutex<Mode>>,
    healthy: Arc<AtomicBool>,
    gate: Arc<tokio::sync::Semaphore>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Fake {
    pub async fn start(name: &'static str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = Self {
            name,
            addr,
            hits: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Ok)),
            healthy: Arc::new(AtomicBool::new(true)),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            bodies: Arc::default(),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route("/health", get(health))
            .with_state(fake.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Lets every held request (and any later one) answer.
    pub fn release(&self) {
        self.gate.add_permits(10_000);
    }

    pub fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits (up to a generous 10 s) until the fake has seen `n` requests.
    pub async fn wait_for_hits(&self, n: usize) {
        for _ in 0..1000 {
            if self.hits() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} saw {} requests, expected {n}", self.name, self.hits());
    }

    async fn behave(&self) -> Result<Mode, Response> {
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::Status(code) => {
                let status = StatusCode::from_u16(code).unwrap();
                Err((
                    status,
                    Json(json!({"error": {"message": format!("{} says {code}", self.name)}})),
                )
                    .into_response())
            }
            Mode::Sleep(duration) => {
                tokio::time::sleep(duration).await;
                Ok(mode)
            }
            Mode::Hold => {
                let _permit = self.gate.acquire().await.unwrap();
                Ok(mode)
            }
            Mode::Ok | Mode::BreakStream => Ok(mode),
        }
    }
}

async fn chat(State(fake): State<Fake>, Json(body): Json<Value>) -> Response {
    let n = fake.hits.fetch_add(1, Ordering::SeqCst) + 1;
    fake.bodies.lock().unwrap().push(body.clone());
    let mode = match fake.behave().await {
        Ok(mode) => mode,
        Err(response) => return response,
    };
    let id = format!("chatcmpl-{}-{n}", fake.name);
    let content = format!("from {}", fake.name);
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let chunk = |delta: Value, finish: Value| {
            json!({"id": id, "object": "chat.completion.chunk", "model": body["model"],
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        };
        let mut sse = format!(
            "data: {}\n\n",
            chunk(
                json!({"role": "assistant", "content": content}),
                Value::Null
            )
        );
        if mode != Mode::BreakStream {
            sse.push_str(&format!(
                "data: {}\n\ndata: [DONE]\n\n",
                chunk(json!({}), json!("stop"))
            ));
        }
        return ([(header::CONTENT_TYPE, "text/event-stream")], sse).into_response();
    }
    Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": 1_700_000_000u64 + n as u64,
        "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    }))
    .into_response()
}

async fn embeddings(State(fake): State<Fake>, Json(body): Json<Value>) -> Response {
    fake.hits.fetch_add(1, Ordering::SeqCst);
    fake.bodies.lock().unwrap().push(body.clone());
    if let Err(response) = fake.behave().await {
        return response;
    }
    Json(
        json!({"object": "list", "model": body["model"], "served_by": fake.name,
                "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}]}),
    )
    .into_response()
}

async fn health(State(fake): State<Fake>) -> StatusCode {
    if fake.healthy.load(Ordering::SeqCst) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// The text of a whole chat answer.
pub fn content(answer: &Value) -> String {
    answer["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
