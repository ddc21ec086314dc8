//! Optional OTLP traces for moat: trace and span ids, the W3C `traceparent` header
//! ([`SpanContext`]), a plain [`Span`] record, and an [`Exporter`] that sends spans to an
//! OpenTelemetry collector as OTLP/HTTP JSON in batches from a bounded queue.
//!
//! Recording a span never blocks on the network and never grows memory without bound: a full
//! queue drops the span and counts it ([`Exporter::dropped`]); a collector that fails costs
//! the batch, counted the same way, and one line on stderr at most once a minute.
//!
//! It knows nothing of HTTP servers, requests or models: the server decides which spans exist
//! and what they say.
//!
//! ```no_run
//! use moat_otlp::{Exporter, ExporterConfig, Span, SpanContext, SpanKind, now_unix_nanos};
//! # fn demo() -> Result<(), moat_otlp::OtlpError> {
//! let exporter = Exporter::start(ExporterConfig::new("http://127.0.0.1:4318"))?;
//! let parent = SpanContext::parse_traceparent(
//!     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
//! );
//! let context = parent.map_or_else(SpanContext::new_root, |p| p.child());
//! let mut span = Span::new(context, parent.map(|p| p.span_id), "GET /health", SpanKind::Server, now_unix_nanos());
//! span.set("http.response.status_code", 200i64).end_at(now_unix_nanos());
//! exporter.record(span);
//! exporter.flush(std::time::Duration::from_secs(5));
//! # Ok(()) }
//! ```

mod context;
mod export;
mod json;
mod span;

pub use context::{SpanContext, SpanId, TraceId, FLAG_SAMPLED};
pub use export::{traces_url, Exporter, ExporterConfig, OtlpError};
pub use json::{export_request, SCOPE_NAME};
pub use span::{
    now_unix_nanos, unix_nanos, AttributeValue, Span, SpanKind, Status, MAX_ATTRIBUTE_BYTES,
    MAX_NAME_BYTES,
};
