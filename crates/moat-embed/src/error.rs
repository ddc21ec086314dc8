//! [`EmbedError`], what can go wrong while loading an embedder. Every variant names the file it
//! is about, so a damaged model folder says which file to look at.
//!
//! Errors at embedding time cross the [`moat_engine::Embedder`] seam as
//! [`moat_engine::EngineError`] instead; this enum only covers loading.

use std::path::{Path, PathBuf};

/// A model folder that cannot become a [`crate::SentenceEmbedder`].
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The file is missing or unreadable.
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is there but its content is broken: bad JSON, a missing field, a value out of
    /// range, weights that do not match the config.
    #[error("{}: {message}", path.display())]
    Malformed { path: PathBuf, message: String },
    /// The file is well formed but asks for something this embedder does not do (another
    /// architecture, a pooling mode or module it does not implement).
    #[error("{}: {message}", path.display())]
    Unsupported { path: PathBuf, message: String },
    /// The process could not provide what the model needs to run (its thread pool).
    #[error("could not prepare the embedder: {0}")]
    Runtime(String),
}

/// A coarse classification of [`EmbedError`], for callers that pick a reaction (and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbedErrorKind {
    Read,
    Malformed,
    Unsupported,
    Runtime,
}

impl EmbedError {
    /// Which kind of failure this is.
    pub fn kind(&self) -> EmbedErrorKind {
        match self {
            Self::Read { .. } => EmbedErrorKind::Read,
            Self::Malformed { .. } => EmbedErrorKind::Malformed,
            Self::Unsupported { .. } => EmbedErrorKind::Unsupported,
            Self::Runtime(_) => EmbedErrorKind::Runtime,
        }
    }

    /// The file the error is about, when it is about one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Read { path, .. }
            | Self::Malformed { path, .. }
            | Self::Unsupported { path, .. } => Some(path),
            Self::Runtime(_) => None,
        }
    }

    pub(crate) fn malformed(path: &Path, message: impl Into<String>) -> Self {
        Self::Malformed {
            path: path.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(path: &Path, message: impl Into<String>) -> Self {
        Self::Unsupported {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}
