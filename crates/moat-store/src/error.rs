//! The store's one error type. Each variant carries what a user needs to act on it; `kind()`
//! classifies them for callers that map errors to exit codes or HTTP statuses.

use std::path::PathBuf;

use moat_types::{Digest, ModelRef};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("model '{name}' not found{}", suggestion_text(.suggestions))]
    ModelNotFound {
        name: String,
        suggestions: Vec<String>,
    },
    #[error("'{0}' already exists; remove it first or choose another name")]
    AlreadyExists(ModelRef),
    #[error(transparent)]
    BadRef(#[from] moat_types::ModelRefError),
    #[error("manifest {path} is damaged: {reason}")]
    DamagedManifest { path: PathBuf, reason: String },
    #[error(
        "blob {digest} is missing from the store (referenced by '{model}'); pull the model again"
    )]
    MissingBlob { model: String, digest: Digest },
    #[error("checksum mismatch for {what}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("'{0}' is not a model file: {1}")]
    NotAModel(String, String),
    #[error("unknown source '{source_text}': {reason}")]
    BadSource { source_text: String, reason: String },
    #[error("no such file or folder: {0}")]
    MissingPath(PathBuf),
    #[error("{0}")]
    Fetch(String),
    #[error("interrupted; nothing was written to the store")]
    Interrupted,
    #[error("recipe {path}: {reason}")]
    BadRecipe { path: String, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// A coarse classification of [`StoreError`] for exit codes and HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user named something that does not exist.
    NotFound,
    /// The user's input is wrong (a name, a source, a recipe).
    Invalid,
    /// Bytes did not match what they claimed to be.
    Corrupt,
    /// The operation was cancelled.
    Interrupted,
    /// The machine failed us: disk, network, a subprocess.
    Environment,
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::ModelNotFound { .. } | Self::MissingPath(_) => ErrorKind::NotFound,
            Self::AlreadyExists(_)
            | Self::BadRef(_)
            | Self::BadSource { .. }
            | Self::BadRecipe { .. }
            | Self::NotAModel(..) => ErrorKind::Invalid,
            Self::DamagedManifest { .. }
            | Self::MissingBlob { .. }
            | Self::ChecksumMismatch { .. }
            | Self::SizeMismatch { .. } => ErrorKind::Corrupt,
            Self::Interrupted => ErrorKind::Interrupted,
            Self::Fetch(_) | Self::Io { .. } => ErrorKind::Environment,
        }
    }

    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

fn suggestion_text(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        "; `moat ls` lists the models in the store".to_string()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
