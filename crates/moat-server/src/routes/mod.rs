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
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::{ApiError, AppState};

/// The whole HTTP app over `state`.
pub fn app(state: AppState) -> Router {
    let limit = state.config().body_limit_bytes;
    let cors = cors(&state.config().cors_origins);
    let router = Router::new()
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
        .layer(middleware::from_fn_with_state(state.clone(), gate))
        // Outermost: every request, refused or not, gets its id, log line and metrics.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::observe::observe,
        ))
        .with_state(state);
    match cors {
        // Outside everything: a browser's preflight carries no key and is answered here.
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// Cross-origin access for the configured origins: the API's methods, the headers clients
/// send (`Authorization`, `Content-Type`, `traceparent`) and those they may read back.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("traceparent"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static(crate::gateway::CACHE_HEADER),
            HeaderName::from_static("x-moat-limit"),
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(3600));
    Some(layer)
}

/// Around every route, in one layer (each layer costs every request its boxing): once shutdown
/// began, new requests get 503 while those in flight finish (`/health` answers for itself:
/// 503, `draining`); an answer sent before its request's body was read says `Connection:
/// close` (`extract::run_noting_body`); an error under `/api/` takes Ollama's shape
/// (`ollama::error_shape`).
async fn gate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let ollama = request.uri().path().starts_with("/api/");
    let response = if state.is_draining() && request.uri().path() != "/health" {
        crate::extract::answer_unread(&request, ApiError::draining().into_response())
    } else {
        crate::extract::run_noting_body(request, next).await
    };
    if ollama && !response.status().is_success() {
        ollama::error_shape(response).await
    } else {
        response
    }
}
