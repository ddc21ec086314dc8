//! What comes back from a generation: one `Started`, then `Token`s, then one `Finished`.

/// The logprob of one token, with alternatives when asked.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    pub top: Vec<TopLogprob>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TopLogprob {
    pub token: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// One generated token. `text` holds only whole UTF-8 characters (a token that ends inside a
/// character gives `""` and the rest comes with the next token) and never any part of a stop
/// string.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedToken {
    pub id: super::TokenId,
    pub text: String,
    pub logprob: Option<TokenLogprob>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens`, or the context is full.
    Length,
    /// The request's deadline passed.
    Deadline,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Prompt tokens whose KV entries were reused rather than computed.
    pub cached_tokens: u32,
    /// Measured engine time spent on this request: each step's wall time (decode and
    /// sampling), split across the sequences in that step's batch by the tokens each put in
    /// it. Zero for a request that never reached a step. What the local cost model prices.
    pub busy: std::time::Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum GenerationEvent {
    /// The prompt is in; `prompt_logprobs` is set when the request asked for them.
    Started {
        prompt_tokens: u32,
        cached_tokens: u32,
        prompt_logprobs: Option<Vec<Option<TokenLogprob>>>,
    },
    Token(GeneratedToken),
    Finished {
        reason: FinishReason,
        usage: Usage,
    },
}
