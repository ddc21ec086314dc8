//! The engine's one error type. `kind`-like classification lives with the server, which maps
//! each variant to an HTTP status.

use std::time::Duration;

#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum EngineError {
    #[error("the server is at capacity; retry after {} s", retry_after.as_secs().max(1))]
    Overloaded { retry_after: Duration },
    #[error("the prompt is {prompt_tokens} tokens; this model's context holds {n_ctx} (prompt plus completion)")]
    PromptTooLong { prompt_tokens: u32, n_ctx: u32 },
    #[error("{0}")]
    InvalidRequest(String),
    /// The request's grammar (its JSON Schema) cannot be used.
    #[error("{0}")]
    InvalidGrammar(String),
    #[error("the model is still loading")]
    Loading,
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("model failed to load: {0}")]
    ModelLoad(String),
    #[error("engine failure: {0}")]
    Internal(String),
}
