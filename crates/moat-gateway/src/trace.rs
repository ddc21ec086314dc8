//! A seam for tracing the router's attempts: the server puts an [`AttemptTracer`] around a
//! request with [`with_tracer`]; the router then asks it for one [`AttemptSpan`] per attempt
//! (each target or replica it tries), tells the span how the attempt ended, sends the span's
//! `traceparent` to an upstream, and drops the span when the attempt's answer has been
//! delivered (a stream's end) or the attempt failed.
//!
//! Without a tracer in scope the router does nothing extra: one task-local lookup per attempt.
//! This module knows nothing of OTLP; the server turns attempts into spans.

use std::future::Future;
use std::sync::Arc;

use crate::provider::ProviderError;

/// One attempt the router is about to make.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The alias the request named.
    pub alias: &'a str,
    /// The target's label (configured name, `MODEL@URL`, or `local:MODEL`).
    pub target: &'a str,
    /// The replica: its base URL for an upstream, the target's label for a local model.
    pub replica: &'a str,
    /// 0 for the first attempt of the request, 1 for the first fallback, and so on.
    pub number: u32,
    /// Whether the target is an external (closed) API.
    pub external: bool,
}

/// How an attempt ended, as far as the router knows.
#[derive(Debug, Clone, Copy)]
pub enum AttemptOutcome<'a> {
    /// It answered (for a stream: its first chunk arrived); the span lives on until the
    /// answer is delivered.
    Answered,
    /// It failed; `fallback` says whether the router moves on to the next candidate.
    Failed {
        error: &'a ProviderError,
        fallback: bool,
    },
}

/// Makes the spans of a request's attempts; implemented by the server.
pub trait AttemptTracer: Send + Sync {
    /// Opens the span of one attempt, started now.
    fn start(&self, attempt: &Attempt<'_>) -> Box<dyn AttemptSpan>;
}

/// One attempt's span. It ends when dropped.
pub trait AttemptSpan: Send + Sync {
    /// The `traceparent` to send upstream (naming this span as the parent), if any.
    fn traceparent(&self) -> Option<String>;
    /// Records how the attempt ended (called once).
    fn outcome(&mut self, outcome: AttemptOutcome<'_>);
}

tokio::task_local! {
    static TRACER: Arc<dyn AttemptTracer>;
}

/// Runs `call` (a `Gateway::chat` or `Gateway::embeddings`) with `tracer` making the spans of
/// its attempts. Only the task that awaits `call` sees it.
pub async fn with_tracer<F: Future>(tracer: Arc<dyn AttemptTracer>, call: F) -> F::Output {
    TRACER.scope(tracer, call).await
}

/// The span of one attempt, when a tracer is in scope.
pub(crate) fn start(attempt: &Attempt<'_>) -> Option<Box<dyn AttemptSpan>> {
    TRACER.try_with(|tracer| tracer.start(attempt)).ok()
}

/// Runs one attempt, sending the span's `traceparent` upstream when there is one.
pub(crate) async fn propagate<F: Future>(span: Option<&dyn AttemptSpan>, call: F) -> F::Output {
    match span.and_then(AttemptSpan::traceparent) {
        Some(traceparent) => moat_upstream::with_traceparent(traceparent, call).await,
        None => call.await,
    }
}
