//! OpenAI's wire format for moat: the request bodies of `/v1/chat/completions` and
//! `/v1/completions` as sent, their parsing into validated requests (`ValidChat`,
//! `ValidCompletion`) that carry the engine's own types, and the response bodies (whole and
//! streamed), model lists and error bodies built from the engine's events. Every request field
//! OpenAI defines is listed in [`fields`] as supported, ignored or rejected; nothing unknown is
//! silently dropped. It knows nothing of HTTP servers, templates or how a model is run.

mod chat;
mod common;
mod completion;
mod error;
pub mod fields;
mod guided;
mod logprobs;
mod params;
mod parse;
mod reasoning;
mod response_format;
mod tools;

pub use chat::{
    parse_chat_request, ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk,
    ChatDelta, ChatRequest, ChatResponseMessage, ThinkingBudget, ValidChat,
};
pub use common::{
    finish_reason, CompletionTokensDetails, ErrorBody, ErrorResponse, Model, ModelList,
    PromptTokensDetails, ResponseIds, UsageTally, WireUsage,
};
pub use completion::{
    parse_completion_request, Completion, CompletionChoice, CompletionChunk, CompletionRequest,
    PromptInput, ValidCompletion,
};
pub use error::WireError;
pub use logprobs::{ChatLogprobToken, ChatLogprobs, ChatTopLogprob, CompletionLogprobs, TopMap};
pub use params::{GenerationParams, ModelLimits, MAX_CHOICES, MAX_STOP_STRINGS};
pub use reasoning::{
    answer_thinking, prompt_opens_thinking, template_thinks, writes_thinking, ReasoningFormat,
    ReasoningReader, Split, REASONING_CONTENT, THINK_CLOSE, THINK_OPEN,
};
pub use tools::{
    parse_calls, FunctionCall, ParsedCalls, ToolCall, ToolCallReader, ToolChoice, ValidTools,
    HERMES_CLOSE, HERMES_OPEN,
};
