//! `ValidGenerate`: the only request that crosses the engine seam. The server builds it from a
//! wire request after checking every field; backends never re-check ranges.

use std::time::Instant;

/// A token id in the model's vocabulary.
pub type TokenId = i32;

/// What to generate from.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// Text the engine tokenizes (special tokens in it are parsed, BOS added per the model).
    Text(String),
    /// Tokens as given (the caller tokenized, or a client sent token ids).
    Tokens(Vec<TokenId>),
}

/// Sampling settings, already validated. Neutral values turn a stage off.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: f32,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0 = off.
    pub top_k: u32,
    /// 0.0 = off.
    pub min_p: f32,
    /// 1.0 = off.
    pub repeat_penalty: f32,
    /// 0.0 = off.
    pub presence_penalty: f32,
    /// 0.0 = off.
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: u32,
    /// Added to the logits of these tokens before sampling.
    pub logit_bias: Vec<(TokenId, f32)>,
    /// The same seed with the same request gives the same output.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            logit_bias: Vec::new(),
            seed: None,
        }
    }
}

/// When generation ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopConditions {
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// Generation ends before any of these strings; no part of one is ever streamed.
    pub stop_strings: Vec<String>,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
}

/// A constraint on what the model may write, enforced token by token while sampling: a token
/// the grammar does not allow next is never chosen, so the output parses (unless `max_tokens`
/// or a stop string cuts it short).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grammar {
    /// One JSON value that matches this JSON Schema (given as its JSON text). `{}` allows any
    /// JSON value, `{"type": "object"}` any object.
    JsonSchema(String),
    /// A JSON value matching `schema` (JSON text) between `open` and `close`: a tool call in
    /// the text format a model was trained on. With `many`, one or more, each after a newline.
    ///
    /// With `lazy`, the model writes freely until it writes the tag that starts `open` (its
    /// text up to the first whitespace); from there the rest of the answer is held to the
    /// calls. A backend that cannot watch for that tag cheaply (it is not one token of the
    /// model's vocabulary), or cannot turn the schema into a grammar, leaves the model free
    /// instead of failing the request: a lazy grammar is a help, not a promise.
    Tagged {
        schema: String,
        open: String,
        close: String,
        many: bool,
        lazy: bool,
    },
    /// Exactly one of these texts, then the end (vLLM's `guided_choice`).
    Choice(Vec<String>),
}

impl Grammar {
    /// Any JSON object: OpenAI's `json_object` and Ollama's `"json"`.
    pub fn json_object() -> Self {
        Self::JsonSchema(r#"{"type":"object"}"#.to_owned())
    }

    /// The grammar holds the answer from its first token (every kind but a lazy one).
    pub fn holds_from_the_start(&self) -> bool {
        !matches!(self, Self::Tagged { lazy: true, .. })
    }
}

/// A reasoning model's thinking, for a request whose answer may start with it: its tags, and
/// what the engine does about it. The server reads the thinking out of the text; the engine
/// needs to know of it only to bound it and to hold a grammar back until it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thinking {
    /// What opens the thinking at the start of the answer (`<think>`).
    pub open: String,
    /// What ends it (`</think>`).
    pub close: String,
    /// The prompt ended inside the thinking (the chat template opened it).
    pub opened: bool,
    /// Most tokens of thinking: once they are spent, the model is made to write `close`
    /// (after the character it is in the middle of, if any).
    pub budget: Option<u32>,
    /// The request's grammar, if it holds the answer from its first token, holds what follows
    /// the thinking instead: the model may think first (and must, after a prompt that opened
    /// the thinking, end it).
    pub grammar_after: bool,
}

/// A generation request, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidGenerate {
    pub prompt: Prompt,
    pub sampling: SamplingParams,
    pub stop: StopConditions,
    /// Report the chosen token's logprob and this many alternatives per generated token.
    pub logprobs: Option<u8>,
    /// Also report the logprob of every prompt token after the first (completions `echo`),
    /// with `logprobs` alternatives each, as for a generated token.
    pub prompt_logprobs: bool,
    /// Give up (finish reason `deadline`) at this instant.
    pub deadline: Option<Instant>,
    /// What the output must follow; `None` leaves the model free.
    pub grammar: Option<Grammar>,
    /// The model may start its answer with thinking; `None` for a model that does not think,
    /// or a request that reads its output as it is.
    pub thinking: Option<Thinking>,
}
