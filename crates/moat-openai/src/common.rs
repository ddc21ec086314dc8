//! Wire pieces both APIs share: usage, error bodies, model lists, finish reasons and the ids a
//! response carries.

use moat_engine::{FinishReason, Usage};
use serde::{Deserialize, Serialize};

/// What every response (and each chunk of a stream) repeats: its id, when it was created and
/// the model that answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseIds {
    /// `chatcmpl-…` or `cmpl-…`.
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub model: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose KV entries were reused from the prefix cache.
    pub cached_tokens: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    /// Completion tokens a reasoning model spent thinking (its `<think>` block, tags
    /// included).
    pub reasoning_tokens: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    pub prompt_tokens_details: PromptTokensDetails,
    /// Only for answers whose thinking was read out of the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

impl WireUsage {
    /// This usage with `reasoning_tokens` of its completion tokens spent thinking.
    pub fn with_reasoning_tokens(self, reasoning_tokens: u32) -> Self {
        Self {
            completion_tokens_details: Some(CompletionTokensDetails { reasoning_tokens }),
            ..self
        }
    }
}

/// Adds up the usage of a request's choices: each prompt counts once (its `n` choices share
/// it, as OpenAI bills them), every completion counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageTally {
    total: Usage,
}

impl UsageTally {
    /// `first_of_prompt`: this is choice 0 of its prompt.
    pub fn add(&mut self, usage: &Usage, first_of_prompt: bool) {
        if first_of_prompt {
            self.total.prompt_tokens += usage.prompt_tokens;
            self.total.cached_tokens += usage.cached_tokens;
        }
        self.total.completion_tokens += usage.completion_tokens;
    }

    pub fn wire(&self) -> WireUsage {
        WireUsage::from(self.total)
    }
}

impl From<Usage> for WireUsage {
    fn from(usage: Usage) -> Self {
        Self {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.prompt_tokens + usage.completion_tokens,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: usage.cached_tokens,
            },
            completion_tokens_details: None,
        }
    }
}

/// OpenAI's `finish_reason`. A passed deadline reads as `length`: the completion was cut.
pub fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length | FinishReason::Deadline => "length",
    }
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// One entry of `/v1/models`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub owned_by: String,
}

impl Model {
    pub fn new(id: impl Into<String>, created: u64) -> Self {
        Self {
            id: id.into(),
            object: "model".into(),
            created,
            owned_by: "moat".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<Model>,
}

impl ModelList {
    pub fn new(data: Vec<Model>) -> Self {
        Self {
            object: "list".into(),
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_shared_by_n_choices_counts_once() {
        let mut tally = UsageTally::default();
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 3,
            cached_tokens: 4,
            ..Usage::default()
        };
        tally.add(&usage, true);
        tally.add(&usage, false);
        let wire = tally.wire();
        assert_eq!(
            (
                wire.prompt_tokens,
                wire.completion_tokens,
                wire.total_tokens
            ),
            (10, 6, 16)
        );
        assert_eq!(wire.prompt_tokens_details.cached_tokens, 4);
    }
}
