//! The one error type of this crate, classified so a router can decide whether to fall back.

use std::time::Duration;

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// Opening the TCP (and TLS) connection.
    Connect,
    /// Waiting for the response headers after the request was sent.
    FirstByte,
    /// Waiting for the next piece of a body that had already started.
    Idle,
    /// The whole call ran past [`crate::Timeouts::total`].
    Total,
}

/// Everything that can go wrong talking to an upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The configuration cannot work (bad URL, missing API key variable, a body that is not a
    /// JSON object).
    #[error("invalid upstream request or configuration: {reason}")]
    Invalid { reason: String },
    /// The connection could not be opened.
    #[error("could not connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    /// A configured wait ran out.
    #[error("upstream timed out ({phase:?}) after {after:?}")]
    Timeout {
        phase: TimeoutPhase,
        after: Duration,
    },
    /// HTTP 429; `retry_after` is the upstream's Retry-After in seconds when it sent one.
    #[error("upstream rate limited the request (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// A 5xx answer.
    #[error("upstream server error {status}: {message}")]
    Server { status: u16, message: String },
    /// A 4xx answer other than 429: the request itself is at fault, so falling back would not help.
    #[error("upstream rejected the request with {status}: {message}")]
    Client { status: u16, message: String },
    /// The connection broke after the answer started.
    #[error("upstream connection failed during the answer: {reason}")]
    Transport { reason: String },
    /// A streamed answer that does not follow the SSE/OpenAI framing, or exceeds its limits.
    #[error("malformed upstream stream: {reason}")]
    MalformedStream { reason: String },
    /// A non-streamed answer that is not the JSON it should be, or exceeds its limit.
    #[error("malformed upstream body: {reason}")]
    MalformedBody { reason: String },
}

/// The closed set of error classes, for counters and fallback decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    Invalid,
    Connect,
    Timeout,
    RateLimited,
    Server,
    Client,
    Transport,
    Malformed,
}

impl UpstreamError {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. } => ErrorKind::Invalid,
            Self::Connect { .. } => ErrorKind::Connect,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::Server { .. } => ErrorKind::Server,
            Self::Client { .. } => ErrorKind::Client,
            Self::Transport { .. } => ErrorKind::Transport,
            Self::MalformedStream { .. } | Self::MalformedBody { .. } => ErrorKind::Malformed,
        }
    }

    /// Whether another target may well succeed where this one failed: connection failures,
    /// timeouts, rate limits, server errors and broken answers. A 4xx or an invalid request would
    /// fail the same way anywhere, so it is not retryable.
    pub fn is_retryable(&self) -> bool {
        !matches!(self.kind(), ErrorKind::Client | ErrorKind::Invalid)
    }
}
