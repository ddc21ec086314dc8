//! How much memory a model needs to run with llama.cpp on the CPU, for a context length and a
//! number of parallel sequences, set against what the machine has free. The parts follow the
//! buffers llama.cpp reports when it loads a model: the model buffer (tensor data), the KV
//! cache, the output buffer (logits) and the compute buffer. `bench/llamacpp/` holds the
//! measurements these formulas are checked against.

use serde::Serialize;

use super::ModelInfo;

/// llama.cpp's default context when the user names none (it caps at the model's own).
pub const DEFAULT_CTX: u64 = 4096;
/// llama.cpp's default micro-batch.
pub const DEFAULT_UBATCH: u64 = 512;
/// KV cells are allocated in multiples of this.
const KV_PAD: u64 = 256;
/// Bytes per KV element (f16, llama.cpp's default cache type).
const KV_ELEMENT_BYTES: u64 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryParams {
    /// Context length of each sequence.
    pub ctx_per_sequence: u64,
    /// Sequences decoded at once (`--parallel`).
    pub parallel: u64,
    pub ubatch: u64,
}

impl MemoryParams {
    /// `ctx` or llama.cpp's default (4096, capped at the model's training context).
    pub fn for_model(info: &ModelInfo, ctx: Option<u64>, parallel: u64) -> Self {
        let model_ctx = info.context_length.unwrap_or(DEFAULT_CTX);
        let ctx = ctx.unwrap_or(DEFAULT_CTX.min(model_ctx)).max(1);
        Self {
            ctx_per_sequence: ctx,
            parallel: parallel.max(1),
            ubatch: DEFAULT_UBATCH,
        }
    }

    fn total_cells(&self) -> u64 {
        pad(self.ctx_per_sequence.saturating_mul(self.parallel), KV_PAD)
    }
}

/// The estimate. Field names are part of `show --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryEstimate {
    pub ctx_per_sequence: u64,
    pub parallel: u64,
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub output_bytes: u64,
    pub compute_bytes: u64,
    pub total_bytes: u64,
    /// `MemAvailable` of the machine, where it can be read.
    pub available_bytes: Option<u64>,
    pub fits: Option<bool>,
}

pub fn estimate(info: &ModelInfo, params: &MemoryParams) -> MemoryEstimate {
    let weights_bytes = info.tensor_bytes;
    let kv_cache_bytes = kv_cache_bytes(info, params);
    let output_bytes = output_bytes(info, params);
    let compute_bytes = compute_bytes(info, params);
    let total_bytes = weights_bytes + kv_cache_bytes + output_bytes + compute_bytes;
    let available_bytes = available_memory();
    MemoryEstimate {
        ctx_per_sequence: params.ctx_per_sequence,
        parallel: params.parallel,
        weights_bytes,
        kv_cache_bytes,
        output_bytes,
        compute_bytes,
        total_bytes,
        available_bytes,
        fits: available_bytes.map(|a| total_bytes <= a),
    }
}

fn pad(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// Bytes of K and V for one cell of one layer.
fn kv_bytes_per_cell_layer(info: &ModelInfo) -> u64 {
    let kv_heads = info.head_count_kv.unwrap_or(0);
    let k = info.key_length.unwrap_or(0) * kv_heads;
    let v = info.value_length.unwrap_or(0) * kv_heads;
    (k + v) * KV_ELEMENT_BYTES
}

fn kv_cache_bytes(info: &ModelInfo, params: &MemoryParams) -> u64 {
    let layers = info.block_count.unwrap_or(0);
    let per_cell_layer = kv_bytes_per_cell_layer(info);
    let full_cells = params.total_cells();
    let (full_layers, swa_layers) = split_layers(info, layers);
    let swa_cells = match info.sliding_window {
        Some(window) if swa_layers > 0 => full_cells.min(pad(
            window.saturating_mul(params.parallel) + params.ubatch,
            KV_PAD,
        )),
        _ => 0,
    };
    per_cell_layer * (full_layers * full_cells + swa_layers * swa_cells)
}

/// (full-attention layers, sliding-window layers).
fn split_layers(info: &ModelInfo, layers: u64) -> (u64, u64) {
    let pattern = match (
        info.architecture.as_deref(),
        info.sliding_window,
        info.sliding_window_pattern,
    ) {
        (_, None, _) => return (layers, 0),
        (_, Some(_), Some(p)) if p > 1 => p,
        // Gemma 3: five sliding-window layers, then one global layer.
        (Some("gemma3"), Some(_), _) => 6,
        _ => return (layers, 0),
    };
    let full = layers / pattern;
    (full, layers - full)
}

/// Logits for one output row per sequence, f32.
fn output_bytes(info: &ModelInfo, params: &MemoryParams) -> u64 {
    info.vocab_size.unwrap_or(0) * params.parallel * 4
}

/// The graph's scratch memory for one micro-batch (see `bench/llamacpp/README.md`).
fn compute_bytes(info: &ModelInfo, params: &MemoryParams) -> u64 {
    let vocab = info.vocab_size.unwrap_or(0);
    let embd = info.embedding_length.unwrap_or(0);
    let ubatch = params.ubatch.min(params.total_cells());
    // Logits for a full micro-batch plus a few activations of the widest layer.
    (vocab + 4 * embd) * ubatch * 4
}

/// `MemAvailable` from /proc/meminfo (Linux); `None` elsewhere.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
