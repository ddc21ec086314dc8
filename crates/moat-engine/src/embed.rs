//! The embedding seam: [`Embedder`], what turns texts into vectors, whatever runs the model
//! (candle over safetensors in `moat-embed`, llama.cpp's pooling over a GGUF in
//! `moat-engine-llamacpp`, later an upstream endpoint).
//!
//! Calls block: the forward passes run on the process's one compute executor
//! ([`crate::compute::run_on_executor`]); async callers use `spawn_blocking`.

use crate::{EngineError, TokenId};

/// What callers need to know of an embedding model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbedderInfo {
    /// The model's name in the store (`all-minilm-l6-v2:latest`).
    pub model: String,
    /// Length of every vector `embed` returns.
    pub dimension: u32,
    /// The most tokens one input may have, special tokens included (sentence-transformers'
    /// `max_seq_length`, or the GGUF's context). A longer input is an error, never truncated.
    pub max_tokens: u32,
    /// Whether vectors come out L2-normalised (the model's own pipeline says so).
    pub normalized: bool,
}

/// One input: text, or token ids already tokenized for this model (without special tokens;
/// the embedder adds them as it does for text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbedInput {
    Text(String),
    Tokens(Vec<TokenId>),
}

/// The vectors for a batch of inputs, in input order, and the tokens they took.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens over all inputs, special tokens included (OpenAI's `usage.prompt_tokens`).
    pub prompt_tokens: u64,
}

pub trait Embedder: Send + Sync {
    fn info(&self) -> &EmbedderInfo;
    /// The tokens `text` becomes, special tokens included: what counts against `max_tokens`.
    fn count_tokens(&self, text: &str) -> Result<u32, EngineError>;
    /// Embeds every input, batching as the model allows. Fails as a whole
    /// (`InvalidRequest`) if any input is empty or longer than `max_tokens`, naming its index.
    fn embed(&self, inputs: &[EmbedInput]) -> Result<Embeddings, EngineError>;
}
