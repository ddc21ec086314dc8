//! The `Provider` seam: whatever answers a chat or embedding request (an upstream here; the
//! local engine adapter comes from the server), and its implementation for upstreams.
//!
//! Bodies are OpenAI-shaped JSON values; a provider sets `model` to its own model name and
//! leaves every other field alone.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use moat_upstream::{ErrorKind, Reply, UpstreamClient, UpstreamError};
use serde_json::Value;

/// A failure of one provider.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// An upstream call failed; its kind says whether to fall back.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The provider is full (a local queue past its bound); another target may take it.
    #[error("provider overloaded (retry after {retry_after:?})")]
    Overloaded { retry_after: Option<Duration> },
    /// The request is wrong for any target (validation failed); no fallback.
    #[error("request rejected: {message}")]
    Rejected { message: String },
    /// This provider cannot do that (for example embeddings on a chat-only target); no fallback.
    #[error("not supported by this provider: {what}")]
    Unsupported { what: String },
    /// Anything else that went wrong inside the provider; another target may succeed.
    #[error("provider failed: {message}")]
    Failed { message: String },
}

impl ProviderError {
    /// Whether another target may succeed where this one failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Upstream(err) => err.is_retryable(),
            Self::Overloaded { .. } | Self::Failed { .. } => true,
            Self::Rejected { .. } | Self::Unsupported { .. } => false,
        }
    }

    /// The upstream's error class, when this came from an upstream.
    pub fn upstream_kind(&self) -> Option<ErrorKind> {
        match self {
            Self::Upstream(err) => Some(err.kind()),
            _ => None,
        }
    }
}

/// A stream of chat-completion chunks (JSON values); an error item ends it.
pub type ChunkStream = BoxStream<'static, Result<Value, ProviderError>>;

/// A provider's answer to a chat request.
pub enum ProviderReply {
    /// The whole `chat.completion` body.
    Full(Value),
    /// `chat.completion.chunk` bodies as they come.
    Stream(ChunkStream),
}

impl std::fmt::Debug for ProviderReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(value) => f.debug_tuple("Full").field(value).finish(),
            Self::Stream(_) => f.write_str("Stream(..)"),
        }
    }
}

/// Everything that answers chat and embedding requests. The router holds them as
/// `Arc<dyn Provider>`; a streamed chat answer is a [`ProviderReply::Stream`] when the body asks
/// for `"stream": true`.
pub trait Provider: Send + Sync {
    /// Answers an OpenAI chat-completions body.
    fn chat(&self, body: Value) -> BoxFuture<'_, Result<ProviderReply, ProviderError>>;
    /// Answers an OpenAI embeddings body.
    fn embeddings(&self, body: Value) -> BoxFuture<'_, Result<Value, ProviderError>>;
    /// Whether the provider can take requests now (used by active health checks).
    fn health(&self) -> BoxFuture<'_, Result<(), ProviderError>>;
    /// Whether requests leave the operator's control (a closed API); private aliases and keys
    /// never call such a provider.
    fn is_external(&self) -> bool;
    /// Whether the provider is this node's own engine, which takes moat's own request fields
    /// (an upstream may refuse fields it does not know).
    fn is_local(&self) -> bool {
        false
    }
}

/// An upstream endpoint as a provider: one client and the model name the upstream knows.
#[derive(Debug, Clone)]
pub struct UpstreamProvider {
    client: UpstreamClient,
    model: String,
    external: bool,
}

impl UpstreamProvider {
    /// A provider that forwards to `client` with `model` as the model name.
    pub fn new(client: UpstreamClient, model: impl Into<String>, external: bool) -> Self {
        Self {
            client,
            model: model.into(),
            external,
        }
    }
}

impl Provider for UpstreamProvider {
    fn chat(&self, body: Value) -> BoxFuture<'_, Result<ProviderReply, ProviderError>> {
        Box::pin(async move {
            match self.client.chat(body, &self.model).await? {
                Reply::Full(value) => Ok(ProviderReply::Full(value)),
                Reply::Stream(events) => Ok(ProviderReply::Stream(
                    events.map(|item| item.map_err(ProviderError::from)).boxed(),
                )),
            }
        })
    }

    fn embeddings(&self, body: Value) -> BoxFuture<'_, Result<Value, ProviderError>> {
        Box::pin(async move { Ok(self.client.embeddings(body, &self.model).await?) })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move { Ok(self.client.health().await?) })
    }

    fn is_external(&self) -> bool {
        self.external
    }
}
