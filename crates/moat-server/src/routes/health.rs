//! `GET /health`: 200 when every model is ready, 503 while one loads, failed, or the server
//! drains. The body says which.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::state::Readiness;
use crate::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (status, text) = match state.readiness() {
        Readiness::Ready => (StatusCode::OK, "ok"),
        Readiness::Loading => (StatusCode::SERVICE_UNAVAILABLE, "loading"),
        Readiness::Failed => (StatusCode::SERVICE_UNAVAILABLE, "failed"),
        Readiness::Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
    };
    (status, Json(json!({ "status": text })))
}
