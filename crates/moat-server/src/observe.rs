//! Watching requests: the outermost middleware gives every request an id (the client's
//! `x-request-id` when it is printable ASCII of at most 128 bytes, else a new one), returns it
//! in the `x-request-id` header, and, when the answer's last byte went out (or the client went
//! away), counts the request in the metrics and writes one log line: text by default, or a JSON
//! object per line. The line has the id, method, path, status, model, duration, the API key's
//! public prefix and the token counts; never prompt or answer text.
//!
//! Handlers reach the request's [`RequestRecord`] through its trust ticket: the ticket names
//! the model and key and, when it closes, the token counts; the generation path times each
//! choice with a [`Probe`] (queue time, time to first token, inter-token latency, tokens).
//!
//! When the server exports traces (`ServerConfig::otlp`), the record also holds the request's
//! [`RequestTrace`]: the probe's timings become `queue` and `generate` spans, and the moment
//! the log line is written ends the request's SERVER span (`trace.rs`), whose trace id the log
//! line then carries.
//!
//! Knows nothing of how metrics are rendered (`metrics.rs`) or of what a ticket audits.

use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use moat_engine::GenerationEvent;
use moat_guard::Hit;
use serde_json::json;

use crate::config::LogFormat;
use crate::metrics::{action_label, status_class, Metrics, OTHER};
use crate::trace::{Generation, RequestTrace, ServerSpan};
use crate::AppState;

/// The header that carries a request's id, both ways.
pub(crate) const REQUEST_ID: &str = "x-request-id";
/// The longest client request id kept; a longer one is replaced.
pub(crate) const MAX_REQUEST_ID_BYTES: usize = 128;
/// Longer model names and paths are cut in log lines.
const MAX_LOGGED_CHARS: usize = 256;
/// The model label of a request that named no model (`/health`, `/metrics`, `/v1/models`).
const NO_MODEL: &str = "none";

/// The metrics and the request log of one server.
pub(crate) struct Observability {
    pub metrics: Metrics,
    log: RequestLog,
}

impl Observability {
    pub(crate) fn new(format: LogFormat) -> Self {
        Self {
            metrics: Metrics::default(),
            log: RequestLog {
                format,
                writer: Mutex::new(Box::new(std::io::stderr())),
            },
        }
    }
}

/// Where log lines go (stderr unless a test or embedder says otherwise).
struct RequestLog {
    format: LogFormat,
    writer: Mutex<Box<dyn Write + Send>>,
}

impl AppState {
    /// Sends the request log's lines to `writer` instead of stderr (for tests, or a caller
    /// that keeps its own log file). One line is written with one call, whole.
    pub fn set_log_writer(&self, writer: Box<dyn Write + Send>) {
        let log = &self.observability().log;
        *log.writer.lock().unwrap_or_else(PoisonError::into_inner) = writer;
    }

    /// The bounded label for a model name: a served model, an embedding model or a configured
    /// alias keeps its name; anything else is `other`.
    pub(crate) fn model_label(&self, name: &str) -> String {
        let knowledge = &self.knowledge().config;
        let known = knowledge.aliases.contains_key(name)
            || knowledge.embedding_models.iter().any(|m| m == name)
            || self.model_names().iter().any(|(model, _)| model == name)
            || self
                .gateway()
                .is_some_and(|gateway| gateway.has_alias(name));
        if known {
            name.to_owned()
        } else {
            OTHER.to_owned()
        }
    }
}

/// The client's request id if it is acceptable: 1 to 128 bytes of printable ASCII.
pub(crate) fn client_request_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(REQUEST_ID)?.as_bytes();
    let printable = value.iter().all(|byte| (0x20..=0x7e).contains(byte));
    (printable && !value.is_empty() && value.len() <= MAX_REQUEST_ID_BYTES)
        .then(|| String::from_utf8_lossy(value).into_owned())
}

/// One request's shared account for observation: its id, when it arrived, and what the
/// handler learns (model, key, tokens).
pub(crate) struct RequestRecord {
    pub id: String,
    accepted: Instant,
    state: AppState,
    fields: Mutex<Fields>,
    /// The request's trace, when the server exports traces.
    trace: Option<RequestTrace>,
}

#[derive(Default)]
struct Fields {
    model: Option<String>,
    key_prefix: Option<String>,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Prompt tokens whose KV entries were reused (local generations).
    cached_tokens: u64,
}

impl RequestRecord {
    fn fields(&self) -> std::sync::MutexGuard<'_, Fields> {
        self.fields.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The model (or alias) the request named.
    pub(crate) fn set_model(&self, model: &str) {
        self.fields().model = Some(model.chars().take(MAX_LOGGED_CHARS).collect());
    }

    /// The public prefix of the request's API key.
    pub(crate) fn set_key_prefix(&self, prefix: &str) {
        self.fields().key_prefix = Some(prefix.chars().take(MAX_LOGGED_CHARS).collect());
    }

    /// The request's token counts, as its ticket settled them.
    pub(crate) fn set_tokens(&self, prompt: u64, completion: u64) {
        let mut fields = self.fields();
        fields.prompt_tokens = prompt;
        fields.completion_tokens = completion;
    }

    fn metrics(&self) -> &Metrics {
        &self.state.observability().metrics
    }

    /// The request's trace, when the server exports traces.
    pub(crate) fn trace(&self) -> Option<&RequestTrace> {
        self.trace.as_ref()
    }

    fn model_label(&self) -> String {
        match self.fields().model.clone() {
            Some(model) => self.state.model_label(&model),
            None => NO_MODEL.to_owned(),
        }
    }

    /// Counts what a guard rail found (`rail` is `input` or `output`).
    pub(crate) fn count_guard_hits(&self, rail: &str, hits: &[Hit]) {
        for hit in hits {
            let detector = crate::guarding::rail_name(hit);
            self.metrics()
                .guard_hits
                .add(&[rail, &detector, action_label(hit.action)], 1);
        }
    }

    /// Counts a classifier rail that acted (flagged or blocked).
    pub(crate) fn count_classifier(&self, action: moat_guard::Action) {
        if action != moat_guard::Action::Allow {
            self.metrics()
                .guard_hits
                .add(&["input", "classifier", action_label(action)], 1);
        }
    }

    /// A probe for one choice whose `Started` event arrived at `started_at`.
    pub(crate) fn probe(self: &Arc<Self>, started_at: Instant) -> Probe {
        Probe {
            model: self.model_label(),
            record: Arc::clone(self),
            started_at,
            first_token: None,
            last_token: None,
            tokens: 0,
            finished: false,
        }
    }
}

/// Times one choice of a generation as its events pass: queue time (arrival to `Started`),
/// time to first token, the gaps between tokens, and its token counts when it finishes.
pub(crate) struct Probe {
    record: Arc<RequestRecord>,
    model: String,
    started_at: Instant,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    /// Tokens seen, and whether `Finished` came (for the `generate` span).
    tokens: u64,
    finished: bool,
}

impl Probe {
    /// Observes one engine event of the choice; `first_of_prompt` says whether its prompt's
    /// tokens count (once per prompt, whatever `n`).
    pub(crate) fn on_event(&mut self, first_of_prompt: bool, event: &GenerationEvent) {
        let metrics = self.record.metrics();
        let model = [self.model.as_str()];
        match event {
            GenerationEvent::Started { .. } => {
                let queued = self
                    .started_at
                    .saturating_duration_since(self.record.accepted);
                metrics.queue_time.observe(&model, queued);
                if let Some(trace) = self.record.trace() {
                    trace.queue(&self.model, self.started_at);
                }
            }
            GenerationEvent::Token(_) => {
                let now = Instant::now();
                match self.last_token {
                    None => metrics
                        .time_to_first_token
                        .observe(&model, now.saturating_duration_since(self.record.accepted)),
                    Some(last) => metrics
                        .inter_token_latency
                        .observe(&model, now.saturating_duration_since(last)),
                }
                self.first_token.get_or_insert(now);
                self.last_token = Some(now);
                self.tokens += 1;
            }
            GenerationEvent::Finished { usage, .. } => {
                if first_of_prompt {
                    metrics
                        .prompt_tokens
                        .add(&model, u64::from(usage.prompt_tokens));
                    metrics
                        .cached_prompt_tokens
                        .add(&model, u64::from(usage.cached_tokens));
                    let mut fields = self.record.fields();
                    fields.cached_tokens = fields
                        .cached_tokens
                        .saturating_add(u64::from(usage.cached_tokens));
                }
                metrics
                    .completion_tokens
                    .add(&model, u64::from(usage.completion_tokens));
                self.tokens = u64::from(usage.completion_tokens);
                self.finished = true;
                self.record_generation();
            }
        }
    }

    /// Records the `generate` span once (first token to last), when the request is traced and
    /// the choice produced a token.
    fn record_generation(&mut self) {
        let (Some(trace), Some(first_token)) = (self.record.trace(), self.first_token.take())
        else {
            return;
        };
        trace.generate(&Generation {
            model: &self.model,
            first_token,
            last_token: self.last_token.unwrap_or(first_token),
            tokens: self.tokens,
            finished: self.finished,
        });
    }
}

impl Drop for Probe {
    /// A choice that stopped before `Finished` (the client left, the engine failed) still gets
    /// its `generate` span, marked unfinished.
    fn drop(&mut self) {
        self.record_generation();
    }
}

/// The outermost middleware: see the module documentation.
pub(crate) async fn observe(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let id = client_request_id(request.headers()).unwrap_or_else(|| state.trust().request_id());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(OTHER, |path| path.as_str())
        .to_owned();
    let method = request.method().to_string();
    let accepted = Instant::now();
    let trace = state
        .config()
        .otlp
        .as_ref()
        .map(|exporter| RequestTrace::begin(exporter, request.headers(), accepted));
    let path: String = request
        .uri()
        .path()
        .chars()
        .take(MAX_LOGGED_CHARS)
        .collect();
    let record = Arc::new(RequestRecord {
        id: id.clone(),
        accepted,
        state,
        fields: Mutex::new(Fields::default()),
        trace,
    });
    request.extensions_mut().insert(Arc::clone(&record));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), value);
    }
    let done = Done {
        record,
        route,
        method,
        path,
        status: response.status().as_u16(),
    };
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::new(ObservedBody { body, _done: done }))
}

/// The response body, passed through; when it is dropped (sent, or the client went away),
/// the request is counted and logged. The body is dropped first, so a stream's ticket has
/// already put the token counts in the record.
struct ObservedBody {
    body: Body,
    /// Held only for its `Drop`; declared after `body`, so dropped after it.
    _done: Done,
}

impl HttpBody for ObservedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

struct Done {
    record: Arc<RequestRecord>,
    route: String,
    method: String,
    path: String,
    status: u16,
}

impl Drop for Done {
    fn drop(&mut self) {
        let duration = self.record.accepted.elapsed();
        let model = self.record.model_label();
        let metrics = self.record.metrics();
        metrics.requests.add(
            &[
                self.route.as_str(),
                model.as_str(),
                status_class(self.status),
            ],
            1,
        );
        metrics
            .request_duration
            .observe(&[self.route.as_str(), model.as_str()], duration);
        let line = self.line(duration);
        let log = &self.record.state.observability().log;
        let mut writer = log.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // A log that cannot be written must not fail the request; there is nowhere to say so.
        let _ = writer.write_all(line.as_bytes());
        let _ = writer.flush();
        drop(writer);
        if let Some(trace) = self.record.trace() {
            self.finish_trace(trace);
        }
    }
}

impl Done {
    /// Records the request's SERVER span, ending now (as the log line is written).
    fn finish_trace(&self, trace: &RequestTrace) {
        let fields = self.record.fields();
        trace.finish(&ServerSpan {
            method: &self.method,
            route: &self.route,
            path: &self.path,
            status: self.status,
            request_id: &self.record.id,
            model: fields.model.as_deref(),
            operation: operation(&self.route),
            prompt_tokens: fields.prompt_tokens,
            completion_tokens: fields.completion_tokens,
            cached_tokens: fields.cached_tokens,
        });
    }

    /// One log line, newline included, in the configured format.
    fn line(&self, duration: Duration) -> String {
        let fields = self.record.fields();
        let level = match self.status {
            500.. => "error",
            400..=499 => "warn",
            _ => "info",
        };
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let duration_ms = (duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        let trace_id = self.record.trace().map(RequestTrace::trace_id);
        match self.record.state.observability().log.format {
            LogFormat::Json => {
                let mut line = json!({
                    "ts": ts,
                    "level": level,
                    "request_id": self.record.id,
                    "method": self.method,
                    "path": self.path,
                    "status": self.status,
                    "model": fields.model,
                    "duration_ms": duration_ms,
                    "key_prefix": fields.key_prefix,
                    "prompt_tokens": fields.prompt_tokens,
                    "completion_tokens": fields.completion_tokens,
                });
                if let (Some(trace_id), Some(object)) = (trace_id, line.as_object_mut()) {
                    object.insert("trace_id".into(), trace_id.into());
                }
                format!("{line}\n")
            }
            LogFormat::Text => format!(
                "{ts} {level} {id} {method} {path} {status} model={model} {duration_ms}ms \
                 key={key} prompt_tokens={prompt} completion_tokens={completion}{trace}\n",
                id = plain(&self.record.id),
                method = plain(&self.method),
                path = plain(&self.path),
                status = self.status,
                model = plain(fields.model.as_deref().unwrap_or("-")),
                key = plain(fields.key_prefix.as_deref().unwrap_or("-")),
                prompt = fields.prompt_tokens,
                completion = fields.completion_tokens,
                trace = trace_id
                    .map(|id| format!(" trace_id={id}"))
                    .unwrap_or_default(),
            ),
        }
    }
}

/// The GenAI operation of a model route (`gen_ai.operation.name`).
fn operation(route: &str) -> Option<&'static str> {
    match route {
        "/v1/chat/completions" => Some("chat"),
        "/v1/completions" => Some("text_completion"),
        "/v1/embeddings" => Some("embeddings"),
        _ => None,
    }
}

/// Text-log form of a value a client chose: spaces and control characters become `_`, so a
/// line always splits into its fields.
fn plain(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static(REQUEST_ID),
            HeaderValue::from_bytes(value)
                .unwrap_or_else(|_| unreachable!("test values are valid header bytes")),
        );
        headers
    }

    #[test]
    fn client_request_ids_are_kept_only_when_printable_and_short() {
        assert_eq!(
            client_request_id(&headers(b"abc-123 x")).as_deref(),
            Some("abc-123 x")
        );
        assert_eq!(
            client_request_id(&headers(&[b'a'; 128])).map(|s| s.len()),
            Some(128)
        );
        assert_eq!(client_request_id(&headers(&[b'a'; 129])), None);
        assert_eq!(client_request_id(&headers("é".as_bytes())), None);
        assert_eq!(client_request_id(&headers(b"a\tb")), None);
        assert_eq!(client_request_id(&HeaderMap::new()), None);
    }

    #[test]
    fn plain_keeps_text_fields_whole() {
        assert_eq!(plain("a b\nc"), "a_b_c");
    }
}
