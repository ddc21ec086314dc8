//! The gateway as a library: aliases mapped to ordered targets (local models through a
//! resolver the server supplies, or OpenAI-compatible upstreams), fallback before the first
//! byte, per-replica cooldown, active health checks, balancing by least outstanding requests or
//! by prompt-prefix affinity, a privacy rule that keeps private aliases and keys off external
//! upstreams, a response cache for deterministic requests, counters for the metrics layer, and
//! a seam for tracing each attempt (`trace.rs`: the server makes the spans).
//!
//! It knows nothing of HTTP servers, API-key storage or wire formats beyond passing OpenAI JSON
//! bodies through; the server maps [`GatewayError::kind`] to statuses and shows
//! [`CacheStatus`] in a header.
//!
//! ```no_run
//! # async fn demo() -> Result<(), moat_gateway::GatewayError> {
//! use std::sync::Arc;
//! use moat_gateway::{CallContext, Gateway, GatewayConfig, GatewayDeps, SystemClock};
//! let config: GatewayConfig = Default::default(); // from moat.toml in the server
//! let deps = GatewayDeps { local: None, clock: Arc::new(SystemClock) };
//! let gateway = Arc::new(Gateway::new(&config, deps)?);
//! let _health = gateway.spawn_health_checks();
//! let body = serde_json::json!({"model": "fast", "messages": []});
//! let answer = gateway.chat(&CallContext::default(), "fast", body).await?;
//! # let _ = answer; Ok(()) }
//! ```

mod alias;
pub mod balance;
pub mod cache;
pub mod clock;
pub mod config;
mod error;
pub mod metrics;
pub mod provider;
mod router;
pub mod trace;

pub use alias::AliasProvider;
pub use cache::ResponseCache;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    AliasConfig, CacheConfig, GatewayConfig, LocalTarget, RoutingConfig, TargetConfig,
    UpstreamTarget,
};
pub use error::{GatewayError, GatewayErrorKind};
pub use metrics::{AliasMetrics, GatewayMetrics, TargetMetrics};
pub use provider::{ChunkStream, Provider, ProviderError, ProviderReply, UpstreamProvider};
pub use router::{CacheStatus, CallContext, Gateway, GatewayDeps, GatewayReply, LocalResolver};
pub use trace::{with_tracer, Attempt, AttemptOutcome, AttemptSpan, AttemptTracer};
