//! A client for remote OpenAI-compatible endpoints: another moat node, vLLM, llama.cpp's
//! server, or a closed API.
//!
//! Request bodies travel as `serde_json::Value` so fields this crate does not know pass through
//! untouched; only `model` is rewritten to the upstream's model name. Answers come back either
//! whole (one JSON value, size-bounded) or as a stream of the JSON payloads of SSE events, parsed
//! incrementally with bounded line and event sizes. Every failure is an [`UpstreamError`] whose
//! [`kind`](UpstreamError::kind) tells a router whether falling back can help.
//!
//! It knows nothing of aliases, routing, caching or keys of moat's own clients.

mod error;
pub mod sse;

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use serde_json::Value;

pub use error::{ErrorKind, TimeoutPhase, UpstreamError};
use sse::{SseDecoder, SseLimits};

/// The waits of one upstream call. Defaults in [`Timeouts::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the connection.
    pub connect: Duration,
    /// From sending the request to the response headers (for a streamed answer, that is when the
    /// upstream starts answering).
    pub first_byte: Duration,
    /// Between two pieces of a body once it started.
    pub idle: Duration,
    /// The whole call, from sending the request to the answer's last byte; `None` puts no
    /// bound on an answer that keeps arriving (a stream that never ends goes on for as long as
    /// the caller reads it).
    pub total: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            total: None,
        }
    }
}

/// Everything a client needs to reach one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The base URL, up to and including `/v1` (for example `http://10.0.0.5:8000/v1`).
    pub base_url: String,
    /// The bearer token sent as `Authorization`, already read from its environment variable.
    pub api_key: Option<String>,
    /// The waits.
    pub timeouts: Timeouts,
    /// Bounds on streamed answers.
    pub sse_limits: SseLimits,
    /// The largest non-streamed answer accepted, in bytes.
    pub max_body_bytes: usize,
}

impl UpstreamConfig {
    /// A config with default timeouts and limits and no API key.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            timeouts: Timeouts::default(),
            sse_limits: SseLimits::default(),
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
}

/// A stream of the JSON payloads of an SSE answer, ending before `[DONE]`.
pub type EventStream = BoxStream<'static, Result<Value, UpstreamError>>;

/// An answer: whole, or streamed as it comes.
pub enum Reply {
    /// The whole JSON body.
    Full(Value),
    /// The events' JSON payloads.
    Stream(EventStream),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(value) => f.debug_tuple("Full").field(value).finish(),
            Self::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

tokio::task_local! {
    /// The W3C `traceparent` to send with the upstream calls made inside
    /// [`with_traceparent`].
    static TRACEPARENT: String;
}

/// Runs `call` so that every request it sends upstream carries `traceparent` (the caller's
/// span for the attempt), so a traced upstream (another moat node) continues the same trace.
/// Only the task that awaits `call` sees it.
pub async fn with_traceparent<F: std::future::Future>(traceparent: String, call: F) -> F::Output {
    TRACEPARENT.scope(traceparent, call).await
}

/// The most of an error body kept for the error message.
const MAX_ERROR_BODY_BYTES: usize = 16 * 1024;

/// A client for one OpenAI-compatible endpoint. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    http: reqwest::Client,
    config: UpstreamConfig,
    base: String,
}

/// How long an idle pooled connection to an upstream is kept.
const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

impl UpstreamClient {
    /// Builds the client; a base URL that is not http(s) is an `Invalid` error.
    pub fn new(config: UpstreamConfig) -> Result<Self, UpstreamError> {
        let base = config.base_url.trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base).map_err(|err| UpstreamError::Invalid {
            reason: format!("base URL {base:?}: {err}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(UpstreamError::Invalid {
                reason: format!("base URL {base:?} is not http or https"),
            });
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            // Below the 30 s that a moat node keeps an idle keep-alive connection open, so a
            // pooled connection to another node is not one that node has just closed.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()
            .map_err(|err| UpstreamError::Invalid {
                reason: format!("HTTP client: {err}"),
            })?;
        Ok(Self { http, config, base })
    }

    /// The base URL this client talks to.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /chat/completions`. A body with `"stream": true` gets a [`Reply::Stream`], any other
    /// a [`Reply::Full`]. Only `model` is rewritten.
    pub async fn chat(&self, body: Value, model: &str) -> Result<Reply, UpstreamError> {
        let streamed = body.get("stream").and_then(Value::as_bool) == Some(true);
        let deadline = self.deadline();
        let response = self
            .post("chat/completions", with_model(body, model)?, deadline)
            .await?;
        if streamed {
            Ok(Reply::Stream(self.event_stream(response, deadline)))
        } else {
            Ok(Reply::Full(self.read_json(response, deadline).await?))
        }
    }

    /// `POST /embeddings`, whole answer. Only `model` is rewritten.
    pub async fn embeddings(&self, body: Value, model: &str) -> Result<Value, UpstreamError> {
        let deadline = self.deadline();
        let response = self
            .post("embeddings", with_model(body, model)?, deadline)
            .await?;
        self.read_json(response, deadline).await
    }

    /// `GET /health` at the server root (the base URL without a trailing `/v1`): any 2xx is
    /// healthy. moat, vLLM and llama.cpp's server all answer it.
    pub async fn health(&self) -> Result<(), UpstreamError> {
        let root = self.base.strip_suffix("/v1").unwrap_or(&self.base);
        let request = self.http.get(format!("{root}/health"));
        let response = self.send(request, None).await?;
        drop(response);
        Ok(())
    }

    /// When the call that starts now must be over, under [`Timeouts::total`].
    fn deadline(&self) -> Option<Deadline> {
        self.config.timeouts.total.map(Deadline::after)
    }

    async fn post(
        &self,
        path: &str,
        body: Value,
        deadline: Option<Deadline>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut request = self.http.post(format!("{}/{path}", self.base)).json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        if let Ok(traceparent) = TRACEPARENT.try_with(String::clone) {
            request = request.header("traceparent", traceparent);
        }
        self.send(request, deadline).await
    }

    /// Sends and waits for the headers, then turns a non-2xx status into its error class.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        deadline: Option<Deadline>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let (wait, phase) = wait_for(
            self.config.timeouts.first_byte,
            TimeoutPhase::FirstByte,
            deadline,
        );
        let response = match tokio::time::timeout(wait, request.send()).await {
            Err(_) => return Err(timed_out(phase, wait, deadline)),
            Ok(Err(err)) => return Err(self.classify_send_error(&err)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let message = self.read_error_body(response).await;
        let status = status.as_u16();
        Err(match status {
            429 => UpstreamError::RateLimited { retry_after },
            500..=599 => UpstreamError::Server { status, message },
            _ => UpstreamError::Client { status, message },
        })
    }

    fn classify_send_error(&self, err: &reqwest::Error) -> UpstreamError {
        if err.is_timeout() {
            UpstreamError::Timeout {
                phase: TimeoutPhase::Connect,
                after: self.config.timeouts.connect,
            }
        } else if err.is_connect() {
            UpstreamError::Connect {
                url: self.base.clone(),
                reason: error_chain(err),
            }
        } else {
            UpstreamError::Transport {
                reason: error_chain(err),
            }
        }
    }

    /// Reads at most a few KiB of an error body, for the message; a failure to read gives an
    /// empty message rather than hiding the status.
    async fn read_error_body(&self, response: reqwest::Response) -> String {
        let bytes = self
            .read_bounded(response, MAX_ERROR_BODY_BYTES, true, None)
            .await
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    async fn read_json(
        &self,
        response: reqwest::Response,
        deadline: Option<Deadline>,
    ) -> Result<Value, UpstreamError> {
        let bytes = self
            .read_bounded(response, self.config.max_body_bytes, false, deadline)
            .await?;
        serde_json::from_slice(&bytes).map_err(|err| UpstreamError::MalformedBody {
            reason: format!("not JSON: {err}"),
        })
    }

    /// Reads a body piece by piece under the idle timeout and the deadline, refusing (or, with
    /// `truncate`, cutting) past `limit` bytes.
    async fn read_bounded(
        &self,
        response: reqwest::Response,
        limit: usize,
        truncate: bool,
        deadline: Option<Deadline>,
    ) -> Result<Vec<u8>, UpstreamError> {
        let idle = self.config.timeouts.idle;
        let mut body = response.bytes_stream();
        let mut out = Vec::new();
        while let Some(piece) = next_piece(&mut body, idle, deadline).await? {
            if out.len() + piece.len() > limit {
                if truncate {
                    out.extend_from_slice(&piece[..limit - out.len()]);
                    return Ok(out);
                }
                return Err(UpstreamError::MalformedBody {
                    reason: format!("body larger than {limit} bytes"),
                });
            }
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }

    fn event_stream(&self, response: reqwest::Response, deadline: Option<Deadline>) -> EventStream {
        let state = StreamState {
            body: Box::pin(response.bytes_stream()),
            decoder: SseDecoder::new(self.config.sse_limits),
            pending: VecDeque::new(),
            idle: self.config.timeouts.idle,
            deadline,
            finished: false,
        };
        stream::unfold(state, |mut state| async move {
            let item = state.next_event().await?;
            Some((item, state))
        })
        .boxed()
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// The state of one streamed answer between two events.
struct StreamState {
    body: ByteStream,
    decoder: SseDecoder,
    pending: VecDeque<String>,
    idle: Duration,
    deadline: Option<Deadline>,
    finished: bool,
}

impl StreamState {
    /// The next event's payload; `None` after `[DONE]` or after an error was reported.
    async fn next_event(&mut self) -> Option<Result<Value, UpstreamError>> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(data) = self.pending.pop_front() {
                return self.parse_event(&data);
            }
            let mut events = Vec::new();
            let step = match next_piece(&mut self.body, self.idle, self.deadline).await {
                Ok(Some(piece)) => self.decoder.push(&piece, &mut events),
                Ok(None) => self.decoder.finish(&mut events).and_then(|()| {
                    if events.is_empty() {
                        Err(UpstreamError::MalformedStream {
                            reason: "the stream ended before [DONE]".to_owned(),
                        })
                    } else {
                        Ok(())
                    }
                }),
                Err(err) => Err(err),
            };
            if let Err(err) = step {
                self.finished = true;
                return Some(Err(err));
            }
            self.pending.extend(events);
        }
    }

    fn parse_event(&mut self, data: &str) -> Option<Result<Value, UpstreamError>> {
        if data.trim() == "[DONE]" {
            self.finished = true;
            return None;
        }
        let parsed =
            serde_json::from_str::<Value>(data).map_err(|err| UpstreamError::MalformedStream {
                reason: format!("an event is not JSON: {err}"),
            });
        let result = parsed.and_then(|value| match value.get("error") {
            // OpenAI-compatible servers report a failure mid-stream as an `error` event.
            Some(error) => Err(UpstreamError::Server {
                status: 500,
                message: error.to_string(),
            }),
            None => Ok(value),
        });
        if result.is_err() {
            self.finished = true;
        }
        Some(result)
    }
}

/// When a whole call must be over, and how long it was given.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    total: Duration,
}

impl Deadline {
    fn after(total: Duration) -> Self {
        Self {
            at: tokio::time::Instant::now() + total,
            total,
        }
    }
}

/// How long the next wait may last: `limit`, or less when the deadline comes first (the phase
/// is then [`TimeoutPhase::Total`]).
fn wait_for(
    limit: Duration,
    phase: TimeoutPhase,
    deadline: Option<Deadline>,
) -> (Duration, TimeoutPhase) {
    match deadline {
        Some(deadline) => {
            let left = deadline
                .at
                .saturating_duration_since(tokio::time::Instant::now());
            if left < limit {
                (left, TimeoutPhase::Total)
            } else {
                (limit, phase)
            }
        }
        None => (limit, phase),
    }
}

/// The error for a wait of `waited` in `phase` that ran out.
fn timed_out(phase: TimeoutPhase, waited: Duration, deadline: Option<Deadline>) -> UpstreamError {
    let after = match (phase, deadline) {
        (TimeoutPhase::Total, Some(deadline)) => deadline.total,
        _ => waited,
    };
    UpstreamError::Timeout { phase, after }
}

/// The next piece of a body, or `None` at its end, under the idle timeout and the deadline.
async fn next_piece<S>(
    body: &mut S,
    idle: Duration,
    deadline: Option<Deadline>,
) -> Result<Option<Bytes>, UpstreamError>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    let (wait, phase) = wait_for(idle, TimeoutPhase::Idle, deadline);
    match tokio::time::timeout(wait, body.next()).await {
        Err(_) => Err(timed_out(phase, wait, deadline)),
        Ok(None) => Ok(None),
        Ok(Some(Ok(piece))) => Ok(Some(piece)),
        Ok(Some(Err(err))) => Err(UpstreamError::Transport {
            reason: error_chain(&err),
        }),
    }
}

/// Sets `model` on a JSON object body, leaving every other field as it is.
fn with_model(mut body: Value, model: &str) -> Result<Value, UpstreamError> {
    let object = body.as_object_mut().ok_or_else(|| UpstreamError::Invalid {
        reason: "the request body is not a JSON object".to_owned(),
    })?;
    object.insert("model".to_owned(), Value::String(model.to_owned()));
    Ok(body)
}

/// An error and its sources on one line, so "connection refused" is not lost behind
/// "error sending request".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_model_is_rewritten() {
        let body =
            serde_json::json!({"model": "alias", "x_unknown": {"k": [1, 2]}, "stream": true});
        let out = with_model(body, "real").unwrap();
        assert_eq!(
            out,
            serde_json::json!({"model": "real", "x_unknown": {"k": [1, 2]}, "stream": true})
        );
    }

    #[test]
    fn a_body_that_is_not_an_object_is_invalid() {
        let err = with_model(serde_json::json!([1]), "m").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }

    #[test]
    fn a_non_http_base_url_is_refused() {
        let err = UpstreamClient::new(UpstreamConfig::new("ftp://host/v1")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }
}
