//! The crate's one error type.

/// Everything that can go wrong in moat-meter.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// An entry, filter, price or cost parameter given by the caller (or config) is invalid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid (`audit entry`, `price`, `day`, ...).
        what: &'static str,
        /// Why, in words.
        reason: String,
    },
    /// SQLite failed, or the database is from a newer moat.
    #[error("meter storage: {0}")]
    Storage(String),
    /// Writing an export failed.
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
}

/// The classes of [`MeterError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterErrorKind {
    /// The caller's input is invalid (400, or a config error).
    InvalidInput,
    /// Storage or output failed (500).
    Internal,
}

impl MeterError {
    /// The class the server or CLI maps to a status or exit code.
    pub fn kind(&self) -> MeterErrorKind {
        match self {
            MeterError::Invalid { .. } => MeterErrorKind::InvalidInput,
            MeterError::Storage(_) | MeterError::Write(_) => MeterErrorKind::Internal,
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        MeterError::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

impl From<rusqlite::Error> for MeterError {
    fn from(e: rusqlite::Error) -> Self {
        MeterError::Storage(e.to_string())
    }
}
