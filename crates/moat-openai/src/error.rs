//! `WireError`: everything wrong with a request body, each naming the field (`param`) it is
//! about. The server maps each variant to a status and OpenAI's error body.

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WireError {
    /// The body is not JSON, or not a JSON object.
    #[error("{message}")]
    Malformed { message: String },
    /// A field OpenAI does not define (and moat does not add).
    #[error("Unrecognized request argument supplied: {param}")]
    UnknownField { param: String },
    /// A field OpenAI defines that moat does not support yet.
    #[error("'{param}' is not supported: {reason}")]
    Unsupported { param: String, reason: String },
    /// A field with the wrong type or a value out of range.
    #[error("Invalid value for '{param}': {message}")]
    InvalidValue { param: String, message: String },
    /// A required field is absent.
    #[error("Missing required parameter: '{param}'")]
    Missing { param: String },
    /// The prompt, or the prompt plus the requested completion, does not fit the context.
    #[error(
        "This model's maximum context length is {n_ctx} tokens. However, you requested {} tokens ({prompt_tokens} in the prompt, {} in the completion). Please reduce the length of the prompt or completion.",
        u64::from(*prompt_tokens) + u64::from(*completion_tokens), completion_tokens
    )]
    ContextExceeded {
        prompt_tokens: u32,
        completion_tokens: u32,
        n_ctx: u32,
    },
}

impl WireError {
    pub(crate) fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidValue {
            param: param.into(),
            message: message.into(),
        }
    }

    /// The request field the error is about, for the error body's `param`.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::Malformed { .. } => None,
            Self::UnknownField { param }
            | Self::Unsupported { param, .. }
            | Self::InvalidValue { param, .. }
            | Self::Missing { param } => Some(param),
            Self::ContextExceeded { .. } => Some("messages"),
        }
    }

    /// OpenAI's machine-readable `code` for the error body.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Self::Malformed { .. } => Some("invalid_json"),
            Self::UnknownField { .. } => Some("unknown_parameter"),
            Self::Unsupported { .. } => Some("unsupported_parameter"),
            Self::InvalidValue { .. } => Some("invalid_value"),
            Self::Missing { .. } => Some("missing_required_parameter"),
            Self::ContextExceeded { .. } => Some("context_length_exceeded"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_completion_is_counted_without_overflow() {
        let error = WireError::ContextExceeded {
            prompt_tokens: 31,
            completion_tokens: u32::MAX,
            n_ctx: 2048,
        };
        assert!(
            error
                .to_string()
                .contains("you requested 4294967326 tokens"),
            "{error}"
        );
    }
}
