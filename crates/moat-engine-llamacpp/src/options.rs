//! `LoadOptions`: how a model is loaded and how many sequences it serves. The defaults live here
//! and nowhere else. It knows nothing of llama.cpp's parameter structs (the worker maps them).

use moat_engine::arrival::ArrivalConfig;
use std::time::Duration;

use moat_engine::compute::{default_poll, free_cores};

/// How to load a model. Build it with `LoadOptions::new(name)` and change the fields you need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// The model's name for `EngineInfo::model` (`smollm2:135m`).
    pub model_name: String,
    /// Context per sequence (prompt plus completion). Clamped to the model's training context.
    pub n_ctx_per_seq: u32,
    /// Sequences decoded in one batch (continuous batching); 1 to 256.
    pub parallel: u32,
    /// Threads for llama.cpp's compute (generation and prompt batches alike).
    pub n_threads: u32,
    /// Most tokens in one decode step (prompt chunks plus one token per generating sequence).
    pub n_batch: u32,
    /// Reuse the KV entries of a common prompt prefix across requests and sequences.
    pub prefix_reuse: bool,
    /// One KV cache for all sequences (llama.cpp's `kv_unified`) instead of one per sequence.
    /// Unified, a prefix shared between running sequences is held once and shared without a
    /// copy, but every token's attention spans the cells of all sequences (masked), which makes
    /// each step slower the more sequences run: with 8 streams of SmolLM2 on 2 threads the p95
    /// time between tokens was 5 % longer (docs/PERFORMANCE.md). Off, like llama-server's
    /// default, a shared prefix is copied into the new sequence's own cells.
    pub kv_unified: bool,
    /// Tokens of evicted sequences kept in host memory so that prompts seen before come back
    /// without recomputing (the prompt cache); `None` holds what 2 GiB of KV entries hold for
    /// this model, and at least as many as the context (`parallel × n_ctx_per_seq`), except on
    /// a GPU, where it is off (saving from GPU memory is slow; see `scheduler_config`);
    /// `Some(0)` turns it off. Only with `prefix_reuse`.
    pub host_cache_tokens: Option<u32>,
    /// Most requests waiting for a sequence; past this `generate` answers `Overloaded`.
    pub max_queue: u32,
    /// A chat template that replaces the GGUF's (the manifest's override).
    pub chat_template_override: Option<String>,
    /// Flash attention; `Auto` lets llama.cpp decide (on for CPUs), like its `-fa auto`.
    pub flash_attention: FlashAttention,
    /// Layers whose weights and compute go to the GPU, in llama.cpp's count (the repeating
    /// layers plus the output layer); `None` offloads all of them when the build has a GPU
    /// backend and a GPU is present, `Some(0)` keeps the model on the CPU. Like llama.cpp's `-ngl`.
    pub gpu_layers: Option<u32>,
    /// The arrival window: after a request arrives, the engine waits up to `quiet` for another
    /// one of the same burst before it plans the next step, so that their prompts are
    /// prefilled in one step rather than one each (each prefill step stalls every running
    /// stream); each further arrival waits again, within `share_percent` of the prefill's
    /// estimated cost. Only while fewer requests are in the engine than at its peak and
    /// a slot is free (`moat_engine::arrival`). A zero `quiet` turns it off.
    pub arrival: ArrivalConfig,
    /// How long the model's thread and the executor poll for each other's hand-off of a decode
    /// step before they sleep (`moat_engine::compute::Handoff`), when this model's thread does
    /// not hold the executor's role itself (it is not the first model); `None` polls for
    /// `moat_engine::compute::DEFAULT_POLL` when a core is free beyond `n_threads` and one
    /// more, else not at all. Polling saves two wake-ups a step (some 100 µs), which counts
    /// where steps are short (a small model on a GPU).
    pub compute_poll: Option<Duration>,
}

/// llama.cpp's flash-attention policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FlashAttention {
    #[default]
    Auto,
    Enabled,
    Disabled,
}

impl LoadOptions {
    pub const DEFAULT_N_CTX_PER_SEQ: u32 = 4096;
    pub const DEFAULT_PARALLEL: u32 = 4;
    pub const DEFAULT_N_BATCH: u32 = 512;
    pub const DEFAULT_MAX_QUEUE: u32 = 64;

    pub fn new(model_name: impl Into<String>) -> Self {
        Self {
            model_name: model_name.into(),
            n_ctx_per_seq: Self::DEFAULT_N_CTX_PER_SEQ,
            parallel: Self::DEFAULT_PARALLEL,
            n_threads: free_cores(),
            n_batch: Self::DEFAULT_N_BATCH,
            prefix_reuse: true,
            kv_unified: false,
            host_cache_tokens: None,
            max_queue: Self::DEFAULT_MAX_QUEUE,
            chat_template_override: None,
            flash_attention: FlashAttention::Auto,
            gpu_layers: None,
            arrival: ArrivalConfig::default(),
            compute_poll: None,
        }
    }

    /// The hand-off poll this model's decode steps use (`compute_poll`, or its default).
    pub fn compute_poll(&self) -> Duration {
        self.compute_poll
            .unwrap_or_else(|| default_poll(self.n_threads))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_use_the_free_cores() {
        let options = LoadOptions::new("m");
        assert_eq!(options.n_threads, free_cores());
        assert!(options.n_threads >= 1);
        assert!(options.prefix_reuse);
        assert_eq!(options.chat_template_override, None);
        assert_eq!(options.compute_poll(), default_poll(options.n_threads));
    }

    #[test]
    fn a_given_poll_wins_over_the_default() {
        let mut options = LoadOptions::new("m");
        options.n_threads = 1;
        options.compute_poll = Some(Duration::ZERO);
        assert_eq!(options.compute_poll(), Duration::ZERO);
        options.compute_poll = Some(Duration::from_micros(700));
        assert_eq!(options.compute_poll(), Duration::from_micros(700));
    }
}
