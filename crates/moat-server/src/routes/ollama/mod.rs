//! Ollama's API (`/api/chat`, `/api/generate`, `/api/embed`, `/api/tags`, `/api/show`,
//! `/api/ps`, `/api/version`) over the same models as the OpenAI routes, so tools written for
//! Ollama (its Python and JavaScript clients, Open WebUI, LangChain's `ChatOllama`) work
//! against `moat serve` unchanged.
//!
//! Each request is translated into the OpenAI request moat already answers and goes down the
//! same path: keys and their limits, guardrails, metering, metrics, knowledge-base aliases and
//! gateway aliases all apply as on `/v1`. The answer is translated back: Ollama's JSON, or its
//! stream of newline-delimited JSON objects (streaming is Ollama's default), the last one with
//! `done: true`, the stop reason, token counts and durations. Errors are Ollama's shape,
//! `{"error": "message"}`, with the status moat gives the same error on `/v1`.
//!
//! Models are not managed over this API (`/api/pull`, `/api/create`, `/api/copy`,
//! `/api/delete`, `/api/push` answer 501): `moat pull` does that, with the license gate.
//! docs/ollama.md lists every field and option and what moat does with it.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::extract::RawBody;
use crate::state::ModelCard;
use crate::stream::{Answer, Piece, Pieces};
use crate::trust::Caller;
use crate::{ApiError, AppState};

mod answer;
mod chat;
mod embed;
mod listings;
mod request;
#[cfg(test)]
mod tests;

use answer::*;
use chat::*;
use embed::*;
use listings::*;
use request::*;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(root).head(root))
        .route("/api/version", get(version))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/show", post(show))
        .route("/api/chat", post(chat))
        .route("/api/generate", post(generate))
        .route("/api/embed", post(embed))
        .route("/api/embeddings", post(embeddings))
        .route("/api/pull", post(not_managed_here))
        .route("/api/push", post(not_managed_here))
        .route("/api/create", post(not_managed_here))
        .route("/api/copy", post(not_managed_here))
        .route("/api/delete", delete(not_managed_here))
}

/// Ollama's clients read an error as `{"error": "message"}`. Every error answer under `/api/`
/// (from these routes, and from the key check, the body limit, the draining gate and the
/// unknown-route fallback around them) is re-shaped here from OpenAI's
/// `{"error": {"message": ...}}`, keeping its status and headers (`Retry-After`); the router's
/// outer layer (`gate`) calls this.
pub(super) async fn error_shape(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    // Error bodies are a few hundred bytes; the bound only guards against a surprise.
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let body = match openai_error_message(&bytes) {
        Some(message) => Body::from(json!({ "error": message }).to_string()),
        None => Body::from(bytes),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body)
}

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// `GET /` and `HEAD /`: what Ollama's clients check to see that a server is up.
async fn root() -> &'static str {
    "moat is running (OpenAI API under /v1, Ollama API under /api)"
}

async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// The body is read first, though nothing in it matters: answering before it arrived would
/// make hyper close the connection after the answer, under a client that may already be
/// reusing it for its next request.
async fn not_managed_here(RawBody(_body): RawBody) -> ApiError {
    ApiError {
        status: StatusCode::NOT_IMPLEMENTED,
        ..ApiError::invalid_request(
            "moat does not manage models over the Ollama API: pull them with `moat pull` (which \
             checks their license) and serve them with `moat serve`",
        )
    }
}

/// The body as JSON of type `T`, or a 400 naming what is wrong.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid_request(format!("invalid request body: {error}")))
}

// ---------------------------------------------------------------------------------------------
// Names

/// What a name the server answers to stands for.
enum Named {
    /// A chat model, ready or still loading.
    Chat,
    Embedding,
    /// A `[aliases]` entry of moat.toml for a chat model (by its name).
    Alias(String),
    /// A gateway alias, routed to targets.
    Gateway,
}

/// The name a request means: Ollama's clients say `smollm2` for `smollm2:latest` and the other
/// way round, so a name the server does not know is tried with and without `:latest`.
fn resolve(state: &AppState, name: &str) -> String {
    let mut candidates = vec![name.to_owned()];
    match name.strip_suffix(":latest") {
        Some(bare) => candidates.push(bare.to_owned()),
        None if !name.contains(':') => candidates.push(format!("{name}:latest")),
        None => {}
    }
    candidates
        .iter()
        .find(|candidate| named(state, candidate).is_some())
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

/// Whether `name` is a gateway alias with a target other than this node's engines: its
/// requests get none of moat's own fields (see `request::Common::openai_body`).
fn reaches_upstreams(state: &AppState, name: &str) -> bool {
    matches!(named(state, name), Some(Named::Gateway))
        && state
            .gateway()
            .is_some_and(|gateway| !gateway.local_only(name))
}

fn named(state: &AppState, name: &str) -> Option<Named> {
    if state.model_names().iter().any(|(served, _)| served == name) {
        return Some(Named::Chat);
    }
    let knowledge = &state.knowledge().config;
    if knowledge.embedding_models.iter().any(|model| model == name) {
        return Some(Named::Embedding);
    }
    if let Some(alias) = knowledge.aliases.get(name) {
        return Some(Named::Alias(alias.model.clone()));
    }
    if state
        .gateway()
        .is_some_and(|gateway| gateway.has_alias(name))
    {
        return Some(Named::Gateway);
    }
    None
}
