//! `GET /metrics`: the server's metrics in Prometheus's text format 0.0.4. Once API keys exist
//! it needs an admin key (403 for another key; the trust middleware already answered 401
//! without one), unless `ServerConfig::metrics_public` says anyone may scrape. Engine gauges
//! are read from each served model's `Engine::stats` at scrape time; the trace exporter's
//! counters (`moat_otlp_*`) appear when the server exports traces.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use moat_gateway::GatewayMetrics;

use crate::metrics::EngineGauges;
use crate::trust::Caller;
use crate::{ApiError, AppState};

/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Result<Response, ApiError> {
    if let Some(Extension(caller)) = &caller {
        if let Some(key) = caller.key.as_ref().filter(|key| !key.scopes.admin) {
            caller.ticket.deny("auth.admin_required");
            return Err(ApiError::admin_required(format!(
                "API key {} is not an admin key; /metrics needs one (or `moat serve --metrics-public`)",
                key.prefix
            )));
        }
    }
    // The gateway's counters (moat_gateway_*), when this server routes aliases.
    let gateway: Option<GatewayMetrics> = state.gateway().map(|gateway| gateway.metrics());
    let text = scrape(&state, gateway.as_ref());
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response())
}

/// Renders every metric: the stored ones, each ready model's engine gauges, and the
/// gateway's counters when given.
pub(crate) fn scrape(state: &AppState, gateway: Option<&GatewayMetrics>) -> String {
    let engines: Vec<EngineGauges> = state
        .model_names()
        .into_iter()
        .filter_map(|(name, _)| {
            let model = state.model(&name).ok()?;
            let stats = model.engine.stats()?;
            Some(EngineGauges { model: name, stats })
        })
        .collect();
    let mut text = state.observability().metrics.render(&engines, gateway);
    if let Some(exporter) = &state.config().otlp {
        crate::metrics::render_otlp(exporter, &mut text);
    }
    text
}
