//! moat's HTTP server: the OpenAI-compatible routes (`/v1/chat/completions`,
//! `/v1/completions`, `/v1/models`), `/health`, request-body limits, draining on shutdown and
//! the one mapping from engine and wire errors to HTTP answers. Handlers are thin: parse the
//! body into a validated request (moat-openai), find the model, render and tokenize the prompt,
//! start the engine's generations, and stream or collect their events. It knows nothing of the
//! command line, signals, the model store or how a model is loaded: the caller hands it engines.
//!
//! Trust (`trust.rs`, `guarding.rs`): once any API key exists every route but `/health` needs
//! one; keys are scoped to models and limited per minute and per day or month (tokens are
//! reserved at admission and settled with the real count when the answer ends, however it
//! ends); guard policies run on requests and, as tokens flow, on answers; `/v1/moderations`
//! reports the detectors' findings; every request leaves one audit entry.
//!
//! Observation (`observe.rs`, `metrics.rs`): every request gets an id (`x-request-id`, the
//! client's if it is acceptable), one log line (text or JSON) and its place in the metrics
//! that `GET /metrics` renders in Prometheus's text format. With an OTLP exporter in the config
//! (`trace.rs`), every request is also a trace: a SERVER span, its generation's `queue` and
//! `generate` spans, and one span per gateway attempt, continuing the caller's `traceparent`.

mod classify;
mod config;
mod error;
mod extract;
mod format;
mod gateway;
mod generate;
mod guarding;
mod knowledge;
mod metrics;
mod observe;
mod prompt;
mod routes;
mod shutdown;
mod state;
mod stream;
mod trace;
mod trust;

pub use config::{valid_origin, LogFormat, ServerConfig};
pub use error::ApiError;
pub use gateway::CACHE_HEADER;
pub use knowledge::{
    Alias, EmbedderLoadError, EmbedderSource, GroundingRequest, Knowledge,
    DEFAULT_GROUNDING_MIN_SCORE, DEFAULT_GROUNDING_TOP_K, MAX_TOP_K,
};
pub use routes::app;
pub use shutdown::{serve, ShutdownOutcome};
pub use state::{AppState, ModelCard, ServedModel};
pub use trust::{Trust, TrustConfig};
