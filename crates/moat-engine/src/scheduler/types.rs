//! The scheduler's vocabulary: its configuration, what `submit` takes and refuses, and the step
//! plan a backend applies (KV operations, batch entries, what each logit is for) and reports
//! back (`Sampled`). Plain data; the logic that fills it is in `scheduler.rs`, and it knows
//! nothing of llama.cpp beyond naming the calls each operation maps to.

use std::time::{Duration, Instant};

use crate::{EngineError, FinishReason, TokenId, Usage};

/// The backend's name for one generation request.
pub type RequestId = u64;
/// A llama.cpp sequence id; slot `i` uses sequence `i`.
pub type SeqId = i32;

/// How the scheduler shares one context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Sequences decoded at once (slots).
    pub parallel: u32,
    /// Positions one sequence may hold: prompt plus completion.
    pub n_ctx_per_seq: u32,
    /// Most tokens in one decode call.
    pub n_batch: u32,
    /// Most prompt tokens one sequence prefills per step, so that long prompts share steps with
    /// running streams and with each other.
    pub prefill_chunk: u32,
    /// Requests that may wait beyond the free slots; past it `submit` answers `Overloaded`.
    pub max_queue: usize,
    /// Reuse KV cells of prompt prefixes already computed, in any slot.
    pub prefix_reuse: bool,
    /// Shortest prefix worth reusing (a BOS token alone is not).
    pub min_prefix: u32,
    /// Tokens of evicted sequences kept in host memory (the prompt cache), so that a prompt
    /// seen before comes back without recomputing even after its slot went to other work; 0
    /// turns it off. Only with `prefix_reuse`.
    pub host_cache_tokens: u32,
    /// What `Overloaded` tells clients to wait.
    pub retry_after: Duration,
    /// All sequences live in one KV cache (llama.cpp's unified cache), so a prefix copied to
    /// another sequence keeps its cells once; otherwise each sequence has cells of its own and
    /// a copy duplicates them.
    pub shared_kv: bool,
    /// The model's sliding attention window, if it has one (Gemma 2 and 3, some Mistral
    /// models). Its layers keep only the last `window` positions of a sequence: llama.cpp
    /// overwrites older cells and saves or copies none of them. So a held sequence longer than
    /// the window can be reused only whole (up to its last token), never cut back further: the
    /// positions the cut-back prefix would need were dropped.
    pub swa_window: Option<u32>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            parallel: 4,
            n_ctx_per_seq: 4096,
            n_batch: 512,
            prefill_chunk: 256,
            max_queue: 64,
            prefix_reuse: true,
            min_prefix: 16,
            host_cache_tokens: 0,
            retry_after: Duration::from_secs(1),
            shared_kv: false,
            swa_window: None,
        }
    }
}

impl SchedulerConfig {
    /// The context size the backend creates: every slot's positions.
    pub fn n_ctx_total(&self) -> u32 {
        self.parallel.saturating_mul(self.n_ctx_per_seq)
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchedulerConfigError {
    #[error("scheduler setting {field} must be at least {min}, got {got}")]
    TooSmall {
        field: &'static str,
        min: u32,
        got: u32,
    },
    #[error("scheduler setting {field} must be at most {max}, got {got}")]
    TooLarge {
        field: &'static str,
        max: u32,
        got: u32,
    },
    #[error("n_batch ({n_batch}) must be at least parallel ({parallel}): every running sequence decodes one token per step")]
    BatchSmallerThanParallel { n_batch: u32, parallel: u32 },
}

/// Per-request settings the scheduler acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubmitOptions {
    /// Most tokens to generate; `None` runs until the context is full. At least one token is
    /// always generated (the prompt's logits give it).
    pub max_tokens: Option<u32>,
    /// The request finishes with `Deadline` at the first step at or after this instant.
    pub deadline: Option<Instant>,
    /// Want logits for every prompt token. Such a prompt is computed in full, never reused.
    pub prompt_logprobs: bool,
}

/// Why `submit` turned a request away.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejected {
    #[error("the admission queue is full")]
    Overloaded { retry_after: Duration },
    #[error(
        "a prompt of {prompt_tokens} tokens leaves no room to generate in a context of {n_ctx}"
    )]
    PromptTooLong { prompt_tokens: u32, n_ctx: u32 },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("request {0} is already scheduled")]
    DuplicateRequest(RequestId),
}

impl From<Rejected> for EngineError {
    fn from(rejected: Rejected) -> Self {
        match rejected {
            Rejected::Overloaded { retry_after } => EngineError::Overloaded { retry_after },
            Rejected::PromptTooLong {
                prompt_tokens,
                n_ctx,
            } => EngineError::PromptTooLong {
                prompt_tokens,
                n_ctx,
            },
            Rejected::EmptyPrompt => EngineError::InvalidRequest("the prompt is empty".into()),
            Rejected::DuplicateRequest(id) => {
                EngineError::Internal(format!("request {id} is already scheduled"))
            }
        }
    }
}

/// A KV-cache operation to run, in order, before the step's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// Remove every cell of `seq` (`kv_cache_seq_rm(seq, -1, -1)`).
    Clear { seq: SeqId },
    /// Remove positions `from..` of `seq` (`kv_cache_seq_rm(seq, from, -1)`).
    Truncate { seq: SeqId, from: u32 },
    /// Give `dst_seq`, which is empty, positions `0..len` of `src_seq`: shared cells in a
    /// unified KV cache (`kv_cache_seq_cp(src_seq, dst_seq, 0, len)`), else a copy of them.
    Copy {
        src_seq: SeqId,
        dst_seq: SeqId,
        len: u32,
    },
    /// Keep a copy of every cell of `seq` in host memory as `entry` (`state_seq_get`); `seq` is
    /// unchanged.
    Save { seq: SeqId, entry: u64 },
    /// Put the cells saved as `entry` into `seq`, which is empty (`state_seq_set`); the entry
    /// stays saved.
    Restore { entry: u64, seq: SeqId },
    /// Drop the saved `entry`.
    Forget { entry: u64 },
}

/// One token of the batch (`llama_batch_add(token, pos, [seq_id], logits)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchEntry {
    pub seq_id: SeqId,
    pub token: TokenId,
    pub pos: u32,
    pub logits: bool,
}

/// What the logits of one batch entry are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitsKind {
    /// The prompt's last token: the prompt is in (send `Started`), sample the first token.
    FirstToken {
        prompt_tokens: u32,
        cached_tokens: u32,
    },
    /// The prompt's last token of a request that asked for no completion (`max_tokens: 0`,
    /// scoring a prompt): the prompt is in (send `Started`), sample nothing; the request ends
    /// with `Length` when the step is committed.
    PromptDone {
        prompt_tokens: u32,
        cached_tokens: u32,
    },
    /// A generated token was decoded: sample the next one.
    NextToken,
    /// Prompt logprobs: these logits score the prompt token `next` that follows.
    PromptToken { next: TokenId },
}

/// A batch entry whose logits the backend reads after decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogitsUse {
    /// Index into `StepPlan::batch`.
    pub batch_index: usize,
    pub request_id: RequestId,
    pub seq_id: SeqId,
    pub kind: LogitsKind,
}

impl LogitsUse {
    /// Whether the backend must sample here and report a [`Sampled`] to `commit`.
    pub fn samples(&self) -> bool {
        !matches!(
            self.kind,
            LogitsKind::PromptToken { .. } | LogitsKind::PromptDone { .. }
        )
    }
}

/// A request that finished outside the backend's sampling (deadline) or by `commit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    pub request_id: RequestId,
    pub reason: FinishReason,
    pub usage: Usage,
}

/// One step's work.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepPlan {
    /// Run these first, in order.
    pub kv_ops: Vec<KvOp>,
    /// Then decode these tokens in one call.
    pub batch: Vec<BatchEntry>,
    /// The entries with `logits: true`, in batch order, and what each is for.
    pub logits: Vec<LogitsUse>,
    /// Requests whose deadline passed (queued or running): send `Finished`.
    pub ended: Vec<Ended>,
    /// Requests cancelled (or left without a sample by `commit`) and now released.
    pub cancelled: Vec<RequestId>,
    /// Slots that became free since the last plan. With prefix reuse their cells stay cached
    /// until a new request needs the slot; otherwise `kv_ops` clears them.
    pub freed: Vec<SeqId>,
}

impl StepPlan {
    /// Nothing to do: the backend may wait for a new request.
    pub fn is_empty(&self) -> bool {
        self.kv_ops.is_empty()
            && self.batch.is_empty()
            && self.ended.is_empty()
            && self.cancelled.is_empty()
    }
}

/// The backend's report for one sampling [`LogitsUse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampled {
    pub request_id: RequestId,
    pub token: TokenId,
    /// The backend ends the sequence with this token: an end-of-generation token or a
    /// completed stop string. The token counts as generated.
    pub stop: bool,
}

/// Counts for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Slots with a request (prefilling or generating).
    pub running: usize,
    /// Of those, still prefilling.
    pub prefilling: usize,
    pub queued: usize,
    /// Free slots whose cells stay cached for reuse.
    pub idle_cached: usize,
    /// Distinct KV cells in use (shared prefixes count once).
    pub kv_cells_used: usize,
    pub kv_cells_total: usize,
    /// Batches decoded (steps committed) since the start.
    pub steps: u64,
}
