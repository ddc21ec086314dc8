//! The `Engine` trait: what the server needs from a backend.

use tokio::sync::mpsc;

use crate::{EngineError, GenerationEvent, SchedulerStats, TokenId, ValidGenerate};

/// What a loaded model is, for the server.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineInfo {
    /// The model's name in the store (`smollm2:135m`).
    pub model: String,
    /// Context per sequence.
    pub n_ctx: u32,
    pub n_ctx_train: u32,
    pub n_vocab: u32,
    /// Sequences decoded at once.
    pub parallel: u32,
    /// The chat template to render (the manifest's override, else the GGUF's).
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Tokens that end generation.
    pub eog_tokens: Vec<TokenId>,
    /// Where the model's weights and compute live, for people (`CPU`, or
    /// `CUDA0 (NVIDIA H100 80GB HBM3): 31 of 31 layers`).
    pub placement: String,
}

/// A backend's load at one moment, for the server's metrics (read at scrape time). A copy the
/// backend published after its last step, so reading it never waits for a step to end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Sequences with a request (prefilling or generating).
    pub running: usize,
    /// Of those, still taking their prompt.
    pub prefilling: usize,
    /// Requests admitted and waiting for a free sequence.
    pub queued: usize,
    /// Free sequences whose KV cells stay cached for prompt reuse.
    pub idle_cached: usize,
    /// Distinct KV cells in use (a prefix shared by sequences counts once).
    pub kv_cells_used: usize,
    /// KV cells in the context, over every sequence.
    pub kv_cells_total: usize,
    /// Batches decoded since the model was loaded (each carries prompt chunks and one token per
    /// generating sequence).
    pub steps: u64,
}

impl From<SchedulerStats> for EngineStats {
    fn from(stats: SchedulerStats) -> Self {
        Self {
            running: stats.running,
            prefilling: stats.prefilling,
            queued: stats.queued,
            idle_cached: stats.idle_cached,
            kv_cells_used: stats.kv_cells_used,
            kv_cells_total: stats.kv_cells_total,
            steps: stats.steps,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Loading,
    Ready,
    Failed,
}

/// A stream of events for one generation. Dropping it cancels the generation: the engine frees
/// the sequence at its next step.
pub struct TokenStream {
    receiver: mpsc::Receiver<Result<GenerationEvent, EngineError>>,
}

impl TokenStream {
    pub fn new(receiver: mpsc::Receiver<Result<GenerationEvent, EngineError>>) -> Self {
        Self { receiver }
    }

    /// The next event; `None` after `Finished` or an error.
    pub async fn next(&mut self) -> Option<Result<GenerationEvent, EngineError>> {
        self.receiver.recv().await
    }

    /// The next event, for callers outside an async runtime (`moat run`).
    pub fn blocking_next(&mut self) -> Option<Result<GenerationEvent, EngineError>> {
        self.receiver.blocking_recv()
    }
}

/// A backend that runs a model. Implementations keep blocking and FFI work off the caller's
/// thread; every method here returns promptly.
pub trait Engine: Send + Sync + 'static {
    fn info(&self) -> &EngineInfo;
    fn health(&self) -> Health;
    /// Tokenizes text; `add_special` adds BOS where the model wants it, `parse_special` turns
    /// special-token text (`<|im_start|>`) into its token.
    fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<TokenId>, EngineError>;
    /// The text of tokens, as bytes (a token may hold part of a UTF-8 character).
    fn token_bytes(&self, token: TokenId) -> Result<Vec<u8>, EngineError>;
    /// Queues a generation. Fails at once with `Overloaded` when the admission queue is full,
    /// or `PromptTooLong` when the prompt does not fit the context. A request with a grammar
    /// compiles it here (`InvalidGrammar` when it cannot), which can take milliseconds for a
    /// large schema: async callers then call this on a blocking thread.
    fn generate(&self, request: ValidGenerate) -> Result<TokenStream, EngineError>;
    /// The engine's load as of its last step, for metrics; `None` for a backend that does not
    /// report it (or before its model is loaded). Never blocks on a running step.
    fn stats(&self) -> Option<EngineStats> {
        None
    }
}
