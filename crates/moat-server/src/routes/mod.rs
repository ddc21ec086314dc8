//! The router: one small router per feature, merged, with the body limit, the draining gate,
//! request observation (ids, log lines, metrics) and JSON answers for unknown routes and
//! methods.

pub(crate) mod chat;
mod completions;
mod embeddings;
mod health;
pub(crate) mod knowledge;
mod metrics;
mod models;
mod moderations;
mod ollama;
mod usage;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::Uri;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;

use crate::{ApiError, AppState};

/// The whole HTTP app over `state`.
pub fn app(state: AppState) -> Router {
    let limit = state.config().body_limit_bytes;
    Router::new()
        .merge(chat::router())
        .merge(completions::router())
        .merge(models::router())
        .merge(embeddings::router())
        .merge(knowledge::router())
        .merge(moderations::router())
        .merge(usage::router())
        .merge(health::router())
        .merge(metrics::router())
        .merge(ollama::router())
        .fallback(|uri: Uri| async move { ApiError::route_not_found(uri.path()) })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::trust::authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_while_draining,
        ))
        .layer(middleware::from_fn(ollama::error_shape))
        .layer(middleware::from_fn(crate::extract::close_when_body_unread))
        // Outermost: every request, refused or not, gets its id, log line and metrics.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::observe::observe,
        ))
        .with_state(state)
}

/// Once shutdown began, new requests get 503 while those in flight finish. `/health` answers
/// for itself (503, `draining`).
async fn refuse_while_draining(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if state.is_draining() && request.uri().path() != "/health" {
        return Err(ApiError::draining());
    }
    Ok(next.run(request).await)
}
