//! The crate's one error type and its classification for the HTTP layer.

/// Everything that can go wrong in moat-auth. The server maps [`AuthError::kind`] to a status.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The `Authorization` header is not `Bearer moat-sk-<43 base64url characters>`.
    #[error("malformed Authorization header: {0}")]
    MalformedHeader(&'static str),
    /// The header is well formed but names no key this server issued.
    #[error("unknown API key")]
    UnknownKey,
    /// The key exists but was revoked.
    #[error("API key {prefix} was revoked")]
    RevokedKey {
        /// The key's public prefix, safe to log.
        prefix: String,
    },
    /// The key's scopes do not include the requested model.
    #[error("API key {prefix} may not use model {model:?}")]
    ModelNotAllowed {
        /// The key's public prefix.
        prefix: String,
        /// The model or alias that was asked for.
        model: String,
    },
    /// An admin-only operation was attempted with a key that is not admin.
    #[error("API key {prefix} is not an admin key")]
    NotAdmin {
        /// The key's public prefix.
        prefix: String,
    },
    /// A key name, scope, limit or date given by the caller is invalid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid (`key name`, `model scope`, ...).
        what: &'static str,
        /// Why, in words.
        reason: String,
    },
    /// No key has the given prefix or id (for `revoke`, `get`).
    #[error("no API key {0}")]
    NotFound(String),
    /// SQLite failed, or the database is from a newer moat.
    #[error("auth storage: {0}")]
    Storage(String),
}

/// The classes of [`AuthError`], one per distinct HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthErrorKind {
    /// 401: no usable credentials (malformed header, unknown or revoked key).
    Unauthenticated,
    /// 403: authenticated, but not allowed to do this.
    Forbidden,
    /// 400: the caller's input is invalid.
    InvalidInput,
    /// 404: the named key does not exist.
    NotFound,
    /// 500: storage failed.
    Internal,
}

impl AuthError {
    /// The class the server maps to a status code.
    pub fn kind(&self) -> AuthErrorKind {
        match self {
            AuthError::MalformedHeader(_)
            | AuthError::UnknownKey
            | AuthError::RevokedKey { .. } => AuthErrorKind::Unauthenticated,
            AuthError::ModelNotAllowed { .. } | AuthError::NotAdmin { .. } => {
                AuthErrorKind::Forbidden
            }
            AuthError::Invalid { .. } => AuthErrorKind::InvalidInput,
            AuthError::NotFound(_) => AuthErrorKind::NotFound,
            AuthError::Storage(_) => AuthErrorKind::Internal,
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        AuthError::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

impl From<rusqlite::Error> for AuthError {
    fn from(e: rusqlite::Error) -> Self {
        AuthError::Storage(e.to_string())
    }
}
