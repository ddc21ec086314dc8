//! The crate's one error type. The server maps `Blocked` to OpenAI's
//! `content_policy_violation`, `TooLarge` to a 413 and `Config` to a startup failure.

use std::fmt;

/// Which side of the model a rail guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rail {
    /// The request: prompts and messages.
    Input,
    /// The answer, streamed or whole.
    Output,
}

impl fmt::Display for Rail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rail::Input => "input",
            Rail::Output => "output",
        })
    }
}

/// Everything that can go wrong in the guard.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A policy said block. `classes` names what was found (never the matched text, which
    /// may be the very secret the policy protects).
    #[error("the {rail} was blocked by the content policy ({})", classes.join(", "))]
    Blocked { rail: Rail, classes: Vec<String> },
    /// The text is longer than the guard scans (`limits.max_text_bytes`).
    #[error("the {rail} text is {len} bytes, over the guard's limit of {limit} bytes")]
    TooLarge {
        rail: Rail,
        len: usize,
        limit: usize,
    },
    /// The configuration is invalid; `field` is its path in the guard config.
    #[error("guard config `{field}`: {message}")]
    Config { field: String, message: String },
}

/// The classes of `GuardError`, for mapping to HTTP statuses in one exhaustive match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardErrorKind {
    PolicyViolation,
    TooLarge,
    Config,
}

impl GuardError {
    /// Which class of error this is.
    pub fn kind(&self) -> GuardErrorKind {
        match self {
            GuardError::Blocked { .. } => GuardErrorKind::PolicyViolation,
            GuardError::TooLarge { .. } => GuardErrorKind::TooLarge,
            GuardError::Config { .. } => GuardErrorKind::Config,
        }
    }

    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> GuardError {
        GuardError::Config {
            field: field.into(),
            message: message.into(),
        }
    }
}
