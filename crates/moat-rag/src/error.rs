//! [`RagError`], the one error of this crate's operations as a whole. Problems with a single
//! file during an ingest are not errors of the ingest: they are collected as
//! [`FileFailure`](crate::FileFailure)s in the report while the rest goes on.

use moat_engine::EngineError;
use moat_vector::VectorError;

/// Why an ingest, a retrieval or a chunking run failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum RagError {
    /// The knowledge store failed or refused (a missing knowledge base, a broken database).
    #[error(transparent)]
    Store(#[from] VectorError),
    /// The embedding model failed for a reason that is not one input's fault (overload,
    /// shutdown, an internal failure), so going on with other files would fail the same way.
    #[error("embedding failed: {0}")]
    Embed(#[from] EngineError),
    /// The embedder's vectors do not fit the knowledge base.
    #[error(
        "the embedder makes {embedder}-dimensional vectors but knowledge base {kb:?} holds \
         {expected}-dimensional ones; use the knowledge base's embedding model"
    )]
    EmbedderMismatch {
        kb: String,
        expected: u32,
        embedder: u32,
    },
    /// The caller's parameters are not usable (an empty query, a chunk budget of zero).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A text piece that cannot be made to fit the token budget even one character at a time.
    #[error("a single character needs more than the token budget of {budget} tokens")]
    Unsplittable { budget: usize },
}

/// A classification of [`RagError`] for callers that map errors to status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller asked for something that does not exist.
    NotFound,
    /// The caller's input is wrong; retrying the same request fails again.
    InvalidInput,
    /// The server's side failed (storage, the model).
    Internal,
    /// The model is overloaded or loading; retry later.
    Unavailable,
}

impl RagError {
    /// What kind of failure this is: the HTTP layer maps it to 404, 400, 500 or 503.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RagError::Store(VectorError::NoSuchKb(_)) => ErrorKind::NotFound,
            RagError::Store(
                VectorError::KbExists(_)
                | VectorError::InvalidName(_)
                | VectorError::DimensionMismatch { .. }
                | VectorError::Invalid(_),
            ) => ErrorKind::InvalidInput,
            RagError::Store(VectorError::Storage(_)) => ErrorKind::Internal,
            RagError::Embed(
                EngineError::Overloaded { .. } | EngineError::Loading | EngineError::ShuttingDown,
            ) => ErrorKind::Unavailable,
            RagError::Embed(EngineError::InvalidRequest(_) | EngineError::PromptTooLong { .. }) => {
                ErrorKind::InvalidInput
            }
            RagError::Embed(_) => ErrorKind::Internal,
            RagError::EmbedderMismatch { .. }
            | RagError::Invalid(_)
            | RagError::Unsplittable { .. } => ErrorKind::InvalidInput,
        }
    }
}
