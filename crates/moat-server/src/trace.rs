//! Traces, when `ServerConfig::otlp` names an exporter: the spans of one request, made from
//! what observation already measures, so traces and metrics never disagree about times.
//!
//! - A SERVER span per request (`METHOD route`), from arrival to the answer's last byte (the
//!   moment `observe.rs` writes the log line), with the HTTP and GenAI attributes; error status
//!   on a 5xx. A valid incoming `traceparent` continues the caller's trace; an invalid one
//!   starts a new trace.
//! - Per generated choice, `queue` (arrival to the engine taking the prompt) and `generate`
//!   (first token to last), from the probe's timings.
//! - Per gateway attempt, a CLIENT span `upstream TARGET` (or an INTERNAL `local TARGET`
//!   for a model of this node) whose id travels upstream in `traceparent`.
//!
//! Without an exporter no [`RequestTrace`] exists and nothing here runs.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderMap, Uri};
use moat_gateway::{Attempt, AttemptOutcome, AttemptSpan, AttemptTracer, ProviderError};
use moat_otlp::{now_unix_nanos, Exporter, Span, SpanContext, SpanId, SpanKind, Status};

use crate::trust::Caller;

/// The incoming trace header.
const TRACEPARENT: &str = "traceparent";

/// One traced request: its SERVER span's place in the trace and where spans go.
pub(crate) struct RequestTrace {
    exporter: Exporter,
    /// The SERVER span's context (trace id, span id, flags).
    context: SpanContext,
    /// The caller's span, when the request continued a trace.
    parent: Option<SpanId>,
    clock: RequestClock,
}

/// When a request arrived, on both clocks: every span of the request takes its times from
/// the monotonic clock, placed on the Unix clock's reading at arrival, so spans stay in order
/// whatever the wall clock does meanwhile.
#[derive(Clone, Copy)]
struct RequestClock {
    accepted: Instant,
    accepted_unix_nanos: u64,
}

impl RequestClock {
    /// `instant` in Unix nanoseconds.
    fn unix_nanos(&self, instant: Instant) -> u64 {
        let since = instant.saturating_duration_since(self.accepted).as_nanos();
        self.accepted_unix_nanos
            .saturating_add(u64::try_from(since).unwrap_or(u64::MAX))
    }

    fn now(&self) -> u64 {
        self.unix_nanos(Instant::now())
    }
}

/// What the SERVER span says, gathered when the answer's last byte went out.
pub(crate) struct ServerSpan<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub request_id: &'a str,
    pub model: Option<&'a str>,
    pub operation: Option<&'static str>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

impl RequestTrace {
    /// The trace of a request that arrived at `accepted`, continuing the caller's when its
    /// headers carry exactly one valid `traceparent`.
    pub(crate) fn begin(exporter: &Exporter, headers: &HeaderMap, accepted: Instant) -> Self {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let caller = match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok().and_then(SpanContext::parse_traceparent),
            _ => None,
        };
        let context = caller.map_or_else(SpanContext::new_root, |caller| caller.child());
        Self {
            exporter: exporter.clone(),
            context,
            parent: caller.map(|caller| caller.span_id),
            clock: RequestClock {
                accepted,
                accepted_unix_nanos: now_unix_nanos(),
            },
        }
    }

    /// The trace id, for the log line.
    pub(crate) fn trace_id(&self) -> String {
        self.context.trace_id.to_string()
    }

    /// A span under the request's SERVER span.
    fn child(&self, name: &str, kind: SpanKind, start: Instant) -> Span {
        Span::new(
            self.context.child(),
            Some(self.context.span_id),
            name,
            kind,
            self.clock.unix_nanos(start),
        )
    }

    /// Records the SERVER span, ending now.
    pub(crate) fn finish(&self, server: &ServerSpan<'_>) {
        let name = if server.route == crate::metrics::OTHER {
            server.method.to_owned()
        } else {
            format!("{} {}", server.method, server.route)
        };
        let mut span = Span::new(
            self.context,
            self.parent,
            name,
            SpanKind::Server,
            self.clock.accepted_unix_nanos,
        );
        span.set("http.request.method", server.method)
            .set("url.path", server.path)
            .set("http.response.status_code", i64::from(server.status))
            .set("moat.request_id", server.request_id);
        if server.route != crate::metrics::OTHER {
            span.set("http.route", server.route);
        }
        if let Some(model) = server.model {
            span.set("gen_ai.request.model", model)
                .set("gen_ai.usage.input_tokens", server.prompt_tokens)
                .set("gen_ai.usage.output_tokens", server.completion_tokens)
                .set("gen_ai.usage.cache_read.input_tokens", server.cached_tokens);
            if let Some(operation) = server.operation {
                span.set("gen_ai.operation.name", operation);
            }
        }
        if server.status >= 500 {
            span.status = Status::error(format!("HTTP {}", server.status));
        }
        span.end_at(self.clock.now());
        self.exporter.record(span);
    }

    /// Records a choice's `queue` span: arrival to the engine taking its prompt.
    pub(crate) fn queue(&self, model: &str, started: Instant) {
        let mut span = self.child("queue", SpanKind::Internal, self.clock.accepted);
        span.set("gen_ai.request.model", model)
            .end_at(self.clock.unix_nanos(started));
        self.exporter.record(span);
    }

    /// Records a choice's `generate` span: its first token to its last; `finished` is false
    /// when the generation stopped before its end (the client left, or the engine failed).
    pub(crate) fn generate(&self, generation: &Generation<'_>) {
        let mut span = self.child("generate", SpanKind::Internal, generation.first_token);
        span.set("gen_ai.request.model", generation.model)
            .set("gen_ai.usage.output_tokens", generation.tokens)
            .end_at(self.clock.unix_nanos(generation.last_token));
        if !generation.finished {
            span.status = Status::error("the generation did not finish");
        }
        self.exporter.record(span);
    }

    /// The tracer for the gateway's attempts of this request.
    fn attempts(&self, alias: &str) -> Arc<dyn AttemptTracer> {
        Arc::new(AttemptSpans {
            exporter: self.exporter.clone(),
            context: self.context,
            clock: self.clock,
            alias: alias.to_owned(),
        })
    }
}

/// One choice's generation, as the probe saw it.
pub(crate) struct Generation<'a> {
    pub model: &'a str,
    pub first_token: Instant,
    pub last_token: Instant,
    pub tokens: u64,
    pub finished: bool,
}

/// Runs a gateway call with one span per attempt when the request is traced; otherwise just
/// runs it.
pub(crate) async fn gateway_attempts<F: Future>(
    caller: &Caller,
    alias: &str,
    call: F,
) -> F::Output {
    let tracer = caller
        .ticket
        .record()
        .and_then(|record| record.trace().map(|trace| trace.attempts(alias)));
    match tracer {
        Some(tracer) => moat_gateway::with_tracer(tracer, call).await,
        None => call.await,
    }
}

/// Makes the attempt spans of one request.
struct AttemptSpans {
    exporter: Exporter,
    /// The request's SERVER span.
    context: SpanContext,
    clock: RequestClock,
    alias: String,
}

impl AttemptTracer for AttemptSpans {
    fn start(&self, attempt: &Attempt<'_>) -> Box<dyn AttemptSpan> {
        let context = self.context.child();
        let address = upstream_address(attempt.replica);
        let (name, kind) = match address {
            Some(_) => (format!("upstream {}", attempt.target), SpanKind::Client),
            None => (format!("local {}", attempt.target), SpanKind::Internal),
        };
        let mut span = Span::new(
            context,
            Some(self.context.span_id),
            name,
            kind,
            self.clock.now(),
        );
        span.set("moat.alias", self.alias.as_str())
            .set("moat.target", attempt.target)
            .set("moat.attempt", i64::from(attempt.number))
            .set("moat.fallback", attempt.number > 0)
            .set("moat.external", attempt.external);
        if let Some((host, port)) = address {
            span.set("server.address", host);
            if let Some(port) = port {
                span.set("server.port", i64::from(port));
            }
        }
        Box::new(AttemptRecord {
            exporter: self.exporter.clone(),
            context,
            clock: self.clock,
            span: Some(span),
        })
    }
}

/// An attempt's span, recorded when the router drops it.
struct AttemptRecord {
    exporter: Exporter,
    context: SpanContext,
    clock: RequestClock,
    span: Option<Span>,
}

impl AttemptSpan for AttemptRecord {
    fn traceparent(&self) -> Option<String> {
        Some(self.context.traceparent())
    }

    fn outcome(&mut self, outcome: AttemptOutcome<'_>) {
        let Some(span) = &mut self.span else {
            return;
        };
        match outcome {
            AttemptOutcome::Answered => {
                span.set("moat.outcome", "answered");
            }
            AttemptOutcome::Failed { error, fallback } => {
                span.set("moat.outcome", if fallback { "fallback" } else { "failed" });
                if let Some(status) = upstream_status(error) {
                    span.set("http.response.status_code", i64::from(status));
                }
                span.status = Status::error(error.to_string());
            }
        }
    }
}

impl Drop for AttemptRecord {
    fn drop(&mut self) {
        if let Some(mut span) = self.span.take() {
            span.end_at(self.clock.now());
            self.exporter.record(span);
        }
    }
}

/// The HTTP status an upstream answered with, when its failure was one.
fn upstream_status(error: &ProviderError) -> Option<u16> {
    use moat_upstream::UpstreamError;
    match error {
        ProviderError::Upstream(UpstreamError::Server { status, .. })
        | ProviderError::Upstream(UpstreamError::Client { status, .. }) => Some(*status),
        ProviderError::Upstream(UpstreamError::RateLimited { .. }) => Some(429),
        _ => None,
    }
}

/// The host and port of an upstream replica's base URL; `None` for a local target (whose
/// replica is its label, not a URL).
fn upstream_address(replica: &str) -> Option<(String, Option<u16>)> {
    let uri: Uri = replica.parse().ok()?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return None;
    }
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), uri.port_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_addresses_come_from_urls_and_local_targets_have_none() {
        assert_eq!(
            upstream_address("http://10.0.0.5:8000/v1"),
            Some(("10.0.0.5".to_owned(), Some(8000)))
        );
        assert_eq!(
            upstream_address("https://api.example/v1"),
            Some(("api.example".to_owned(), None))
        );
        assert_eq!(
            upstream_address("http://[::1]:9/v1"),
            Some(("::1".to_owned(), Some(9)))
        );
        assert_eq!(upstream_address("local:smollm2:latest"), None);
    }

    #[test]
    fn a_valid_traceparent_is_continued_and_anything_else_starts_a_trace() {
        let exporter = Exporter::start(moat_otlp::ExporterConfig::new("http://127.0.0.1:9"))
            .unwrap_or_else(|error| unreachable!("{error}"));
        let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let headers = |values: &[&str]| {
            let mut map = HeaderMap::new();
            for value in values {
                map.append(
                    TRACEPARENT,
                    value
                        .parse()
                        .unwrap_or_else(|_| unreachable!("test values are valid header values")),
                );
            }
            map
        };
        let now = Instant::now();
        let continued = RequestTrace::begin(&exporter, &headers(&[valid]), now);
        assert_eq!(continued.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            continued.parent.map(|p| p.to_string()).as_deref(),
            Some("00f067aa0ba902b7")
        );
        for values in [&[][..], &["garbage"][..], &[valid, valid][..]] {
            let fresh = RequestTrace::begin(&exporter, &headers(values), now);
            assert_ne!(fresh.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(fresh.parent, None);
        }
    }
}
