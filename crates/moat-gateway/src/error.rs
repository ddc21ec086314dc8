//! The gateway's one error type.

use crate::provider::ProviderError;

/// What can go wrong building routes or answering through them.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration cannot be turned into routes (the message names the alias and target).
    #[error("gateway configuration: {reason}")]
    Config { reason: String },
    /// No alias of that name.
    #[error("unknown model or alias {alias:?}")]
    UnknownAlias { alias: String },
    /// Every target was skipped: circuits open, health checks failing, or external targets
    /// that a private alias or key may not use.
    #[error("no target of {alias:?} is available now")]
    NoTargetAvailable { alias: String },
    /// The last target tried failed, or one failed in a way no other target could fix.
    #[error("alias {alias:?}, target {target:?}: {source}")]
    Provider {
        alias: String,
        target: String,
        #[source]
        source: ProviderError,
    },
}

/// The closed set of gateway error classes, for the one mapping to HTTP statuses in the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayErrorKind {
    /// 500 at start-up or reload; never at request time.
    Config,
    /// 404.
    NotFound,
    /// 503 with Retry-After.
    Unavailable,
    /// 429: the upstream or engine was full.
    Overloaded,
    /// 504: the upstream did not answer in time.
    Timeout,
    /// 400 (or the upstream's own 4xx status): the request is at fault.
    BadRequest,
    /// 502: the upstream failed or answered garbage.
    BadGateway,
}

impl GatewayError {
    /// The class of this error.
    pub fn kind(&self) -> GatewayErrorKind {
        use moat_upstream::ErrorKind as Up;
        match self {
            Self::Config { .. } => GatewayErrorKind::Config,
            Self::UnknownAlias { .. } => GatewayErrorKind::NotFound,
            Self::NoTargetAvailable { .. } => GatewayErrorKind::Unavailable,
            Self::Provider { source, .. } => match source {
                ProviderError::Overloaded { .. } => GatewayErrorKind::Overloaded,
                ProviderError::Rejected { .. } | ProviderError::Unsupported { .. } => {
                    GatewayErrorKind::BadRequest
                }
                ProviderError::Failed { .. } => GatewayErrorKind::BadGateway,
                ProviderError::Upstream(err) => match err.kind() {
                    Up::RateLimited => GatewayErrorKind::Overloaded,
                    Up::Timeout => GatewayErrorKind::Timeout,
                    Up::Client | Up::Invalid => GatewayErrorKind::BadRequest,
                    _ => GatewayErrorKind::BadGateway,
                },
            },
        }
    }
}
