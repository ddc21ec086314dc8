//! `ApiError`: every failure the server answers, in OpenAI's error shape with its status. The
//! mappings from `EngineError` and `WireError` are here and exhaustive, so a new variant must
//! decide its status in this one place.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use moat_engine::{EngineError, TemplateError};
use moat_openai::{ErrorBody, ErrorResponse, WireError};
use moat_rag::RagError;
use moat_vector::VectorError;

use crate::EmbedderLoadError;

/// How long a client should wait before retrying while a model loads or the server drains.
const RETRY_AFTER_UNAVAILABLE: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `rate_limit_error`, `server_error`, ….
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Sent as `Retry-After` (whole seconds, at least 1).
    pub retry_after: Option<Duration>,
    /// The per-key limit that turned the request away, sent as `x-moat-limit`.
    pub limit: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
            limit: None,
        }
    }

    pub(crate) fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub(crate) fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model '{model}' does not exist or is not served here; GET /v1/models lists the models"),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// An embedding model named where a chat model is needed.
    pub fn not_a_chat_model(model: &str) -> Self {
        Self::invalid_request(format!(
            "The model '{model}' is an embedding model (for /v1/embeddings), not a chat model; \
             GET /v1/models lists the chat models (\"type\": \"chat\")"
        ))
        .with_param("model")
        .with_code("not_a_chat_model")
    }

    pub fn model_loading(model: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            format!("The model '{model}' is still loading; retry shortly"),
        )
        .with_code("model_loading")
        .with_retry_after(RETRY_AFTER_UNAVAILABLE)
    }

    pub fn model_failed(model: &str, reason: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            format!("The model '{model}' failed to load: {reason}"),
        )
        .with_code("model_unavailable")
    }

    /// A chat request to a model whose chat template is missing or broken.
    pub fn chat_template(model: &str, error: &TemplateError) -> Self {
        Self::invalid_request(format!("model '{model}': {error}"))
            .with_param("messages")
            .with_code(match error {
                TemplateError::Missing => "no_chat_template",
                _ => "chat_template_error",
            })
    }

    pub fn body_too_large(limit_bytes: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body is larger than this server's limit of {limit_bytes} bytes"),
        )
        .with_code("request_too_large")
    }

    /// The request body stopped arriving.
    pub fn request_timeout(after: Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            format!(
                "No byte of the request body arrived for {} s; the request was dropped",
                after.as_secs_f64()
            ),
        )
        .with_code("request_timeout")
    }

    pub fn draining() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "The server is shutting down and takes no new requests",
        )
        .with_code("shutting_down")
        .with_retry_after(RETRY_AFTER_UNAVAILABLE)
    }

    pub fn route_not_found(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Unknown route: {path}"),
        )
        .with_code("unknown_url")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "This route does not take that HTTP method",
        )
        .with_code("method_not_allowed")
    }

    /// Something the request names that does not exist (not a model: see `model_not_found`).
    pub fn not_found(message: impl Into<String>, code: &'static str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message).with_code(code)
    }

    /// A knowledge-base route on a server configured without a knowledge store.
    pub fn knowledge_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "This server has no knowledge store configured",
        )
        .with_code("knowledge_unavailable")
    }

    /// An embedding model that could not be had: 404 unknown, 400 not an embedding model,
    /// 403 its license forbids the deployment, 503 failed to load.
    pub fn embedder_load(model: &str, error: EmbedderLoadError) -> Self {
        match error {
            EmbedderLoadError::NotFound(_) => Self::model_not_found(model),
            EmbedderLoadError::NotAnEmbedder(reason) => Self::invalid_request(format!(
                "The model '{model}' is not an embedding model: {reason}"
            ))
            .with_param("model")
            .with_code("not_an_embedding_model"),
            EmbedderLoadError::Failed(reason) => Self::model_failed(model, &reason),
            EmbedderLoadError::Forbidden(reason) => {
                Self::new(StatusCode::FORBIDDEN, "permission_error", reason)
                    .with_param("model")
                    .with_code("license_forbidden")
            }
        }
    }

    /// No usable API key (absent, malformed, unknown or revoked): 401, as OpenAI answers it.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
            .with_code("invalid_api_key")
    }

    /// A key whose scopes do not include the model it asked for.
    pub fn model_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message)
            .with_param("model")
            .with_code("model_not_allowed")
    }

    /// An admin-only route asked with a key that is not admin.
    pub fn admin_required(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_error", message).with_code("admin_required")
    }

    /// A per-key limit turned the request away: 429 naming the limit in the message and in
    /// `x-moat-limit`, with `Retry-After` when waiting can help.
    pub fn limit_exceeded(denied: &moat_auth::Denied) -> Self {
        let name = denied.limit.as_str();
        let message = match denied.retry_after {
            Some(after) => format!(
                "Rate limit reached for this API key: {name}; retry in {} s",
                after.as_secs_f64().ceil().max(1.0) as u64
            ),
            None => format!(
                "This request alone exceeds this API key's {name} limit; waiting will not help"
            ),
        };
        let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
            .with_code("rate_limit_exceeded");
        error.retry_after = denied.retry_after;
        error.limit = Some(name);
        error
    }

    /// Nothing can answer now (every gateway target is cooling down or unhealthy): 503.
    pub fn unavailable(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        let error = Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
            .with_code("unavailable");
        error.with_retry_after(retry_after.unwrap_or(RETRY_AFTER_UNAVAILABLE))
    }

    /// Every target that could answer was full: 429.
    pub fn overloaded(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        let error = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
            .with_code("rate_limit_exceeded");
        match retry_after {
            Some(after) => error.with_retry_after(after),
            None => error,
        }
    }

    /// An upstream did not answer in time: 504.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "server_error", message).with_code("timeout")
    }

    /// An upstream failed or answered garbage: 502.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "server_error", message).with_code("bad_gateway")
    }

    /// The request was refused by a target: the upstream's own 4xx status when it gave one,
    /// else 400.
    pub fn upstream_rejected(message: impl Into<String>, status: Option<u16>) -> Self {
        let status = status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .filter(StatusCode::is_client_error)
            .unwrap_or(StatusCode::BAD_REQUEST);
        Self::new(status, "invalid_request_error", message)
    }

    /// A storage failure behind the trust layer (keys, limits, audit).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
            .with_code("internal_error")
    }

    /// The body OpenAI clients parse.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            error: ErrorBody {
                message: self.message.clone(),
                kind: self.kind.to_string(),
                param: self.param.clone(),
                code: self.code.map(str::to_string),
            },
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        let message = error.to_string();
        match error {
            EngineError::Overloaded { retry_after } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
                    .with_code("rate_limit_exceeded")
                    .with_retry_after(retry_after)
            }
            EngineError::PromptTooLong { .. } => Self::invalid_request(message)
                .with_param("messages")
                .with_code("context_length_exceeded"),
            EngineError::InvalidRequest(_) => Self::invalid_request(message),
            EngineError::InvalidGrammar(_) => {
                Self::invalid_request(message).with_param("response_format")
            }
            EngineError::Loading => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
                    .with_code("model_loading")
                    .with_retry_after(RETRY_AFTER_UNAVAILABLE)
            }
            EngineError::ShuttingDown => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
                    .with_code("shutting_down")
                    .with_retry_after(RETRY_AFTER_UNAVAILABLE)
            }
            EngineError::ModelLoad(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
                    .with_code("model_unavailable")
            }
            EngineError::Internal(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
                    .with_code("internal_error")
            }
        }
    }
}

impl From<WireError> for ApiError {
    fn from(error: WireError) -> Self {
        let mut api = Self::invalid_request(error.to_string());
        api.param = error.param().map(str::to_string);
        api.code = error.code();
        api
    }
}

impl From<RagError> for ApiError {
    fn from(error: RagError) -> Self {
        match error {
            RagError::Store(store) => store.into(),
            RagError::Embed(engine) => engine.into(),
            other @ (RagError::EmbedderMismatch { .. }
            | RagError::Invalid(_)
            | RagError::Unsplittable { .. }) => Self::invalid_request(other.to_string()),
        }
    }
}

impl From<VectorError> for ApiError {
    fn from(error: VectorError) -> Self {
        let message = error.to_string();
        match error {
            VectorError::NoSuchKb(_) => {
                Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
                    .with_code("knowledge_base_not_found")
            }
            VectorError::KbExists(_) => {
                Self::new(StatusCode::CONFLICT, "invalid_request_error", message)
                    .with_param("name")
                    .with_code("knowledge_base_exists")
            }
            VectorError::InvalidName(_) => Self::invalid_request(message).with_param("name"),
            VectorError::DimensionMismatch { .. } => Self::invalid_request(message)
                .with_param("vector")
                .with_code("wrong_dimension"),
            VectorError::Invalid(_) => Self::invalid_request(message),
            VectorError::Storage(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
                    .with_code("storage_error")
            }
        }
    }
}

impl From<moat_auth::AuthError> for ApiError {
    fn from(error: moat_auth::AuthError) -> Self {
        use moat_auth::{AuthError, AuthErrorKind};
        let message = error.to_string();
        match error.kind() {
            AuthErrorKind::Unauthenticated => Self::unauthenticated(message),
            AuthErrorKind::Forbidden => match error {
                AuthError::NotAdmin { .. } => Self::admin_required(message),
                _ => Self::model_not_allowed(message),
            },
            AuthErrorKind::InvalidInput => Self::invalid_request(message),
            AuthErrorKind::NotFound => Self::not_found(message, "api_key_not_found"),
            AuthErrorKind::Internal => Self::internal(message),
        }
    }
}

impl From<moat_guard::GuardError> for ApiError {
    fn from(error: moat_guard::GuardError) -> Self {
        use moat_guard::GuardErrorKind;
        let message = error.to_string();
        match error.kind() {
            GuardErrorKind::PolicyViolation => {
                Self::invalid_request(message).with_code("content_policy_violation")
            }
            GuardErrorKind::TooLarge => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                message,
            )
            .with_code("request_too_large"),
            GuardErrorKind::Config => Self::internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body()).unwrap_or_default();
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if let Some(after) = self.retry_after {
            let seconds = after.as_secs_f64().ceil().max(1.0) as u64;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(limit) = self.limit {
            response
                .headers_mut()
                .insert("x-moat-limit", HeaderValue::from_static(limit));
        }
        response
    }
}
