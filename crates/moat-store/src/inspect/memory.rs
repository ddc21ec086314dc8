//! How much memory a model needs to run with llama.cpp on the CPU, for a context length and a
//! number of parallel sequences, set against what the machine has free. The parts are the
//! buffers llama.cpp itself reports when it loads a model (`llama-server -lv 4`): the model
//! buffer (tensor data, plus the re-laid-out copies the x86 CPU backend makes of some quant
//! types), the KV cache, the output (logits) buffer and the compute buffer. The formulas, and
//! the llama.cpp functions they come from, are in `bench/llamacpp/README.md`; the test
//! `memory_estimate` checks them against the buffers llama.cpp printed for the test models.

use serde::Serialize;

use super::ModelInfo;

/// llama.cpp's default context when the user names none (capped at the model's own).
pub const DEFAULT_CTX: u64 = 4096;
/// llama.cpp's default micro-batch.
pub const DEFAULT_UBATCH: u64 = 512;
/// KV cells are allocated in multiples of this.
const KV_PAD: u64 = 256;
/// Bytes per KV element (f16, llama.cpp's default cache type).
const KV_ELEMENT_BYTES: u64 = 2;
/// Quant types the x86 CPU backend copies into a re-laid-out buffer at load time.
const REPACKED_TYPES: [&str; 4] = ["Q4_0", "Q4_K", "IQ4_NL", "MXFP4"];

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryParams {
    /// Context length of each sequence.
    pub ctx_per_sequence: u64,
    /// Sequences decoded at once (`--parallel`).
    pub parallel: u64,
    /// One KV cache shared by all sequences (`moat serve --kv-unified`, `llama-server -kvu`),
    /// rather than one stream per sequence (the default of both with `--parallel`/`-np N`).
    pub unified_kv: bool,
    /// Flash attention (llama.cpp's `auto` turns it on for the CPU).
    pub flash_attention: bool,
    pub ubatch: u64,
}

impl MemoryParams {
    /// `ctx` or llama.cpp's default (4096), capped at the model's training context as
    /// `moat serve` caps it: a larger context is never allocated, so it costs no memory.
    pub fn for_model(info: &ModelInfo, ctx: Option<u64>, parallel: u64) -> Self {
        let model_ctx = info.context_length.unwrap_or(DEFAULT_CTX);
        let ctx = ctx.unwrap_or(DEFAULT_CTX).min(model_ctx).max(1);
        Self {
            ctx_per_sequence: ctx,
            parallel: parallel.max(1),
            unified_kv: false,
            flash_attention: true,
            ubatch: DEFAULT_UBATCH,
        }
    }
}

/// The estimate. Field names are part of `show --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryEstimate {
    pub ctx_per_sequence: u64,
    pub parallel: u64,
    /// Tensor data plus the CPU backend's repacked copies.
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub output_bytes: u64,
    pub compute_bytes: u64,
    pub total_bytes: u64,
    /// `MemAvailable` of the machine, where it can be read.
    pub available_bytes: Option<u64>,
    pub fits: Option<bool>,
}

/// The KV layout llama.cpp derives from the requested context.
struct KvLayout {
    /// Cells per stream of the full-attention cache.
    cells: u64,
    /// One stream when unified, else one per sequence.
    streams: u64,
    /// Cells per stream of the sliding-window cache (0 without one).
    swa_cells: u64,
    full_layers: u64,
    swa_layers: u64,
}

pub fn estimate(info: &ModelInfo, params: &MemoryParams) -> MemoryEstimate {
    let layout = kv_layout(info, params);
    let weights_bytes = info.tensor_bytes + repacked_bytes(info);
    let kv_cache_bytes = kv_bytes_per_cell_layer(info)
        * layout.streams
        * (layout.full_layers * layout.cells + layout.swa_layers * layout.swa_cells);
    let output_bytes = info.vocab_size.unwrap_or(0) * params.parallel * 4;
    let compute_bytes = compute_bytes(info, params, &layout);
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

fn kv_layout(info: &ModelInfo, params: &MemoryParams) -> KvLayout {
    let requested = pad(
        params.ctx_per_sequence.saturating_mul(params.parallel),
        KV_PAD,
    );
    let (cells, streams) = if params.unified_kv || params.parallel == 1 {
        (requested, 1)
    } else {
        (pad(requested / params.parallel, KV_PAD), params.parallel)
    };
    let (full_layers, swa_layers) = split_layers(info);
    let swa_cells = match info.sliding_window {
        Some(window) if swa_layers > 0 => {
            let sequences = if params.unified_kv {
                params.parallel
            } else {
                1
            };
            pad(
                cells.min(window.saturating_mul(sequences) + params.ubatch),
                KV_PAD,
            )
        }
        _ => 0,
    };
    KvLayout {
        cells,
        streams,
        swa_cells,
        full_layers,
        swa_layers,
    }
}

/// Bytes of K and V for one cell of one layer.
fn kv_bytes_per_cell_layer(info: &ModelInfo) -> u64 {
    let kv_heads = info.head_count_kv.unwrap_or(0);
    let k = info.key_length.unwrap_or(0) * kv_heads;
    let v = info.value_length.unwrap_or(0) * kv_heads;
    (k + v) * KV_ELEMENT_BYTES
}

/// (full-attention layers, sliding-window layers).
fn split_layers(info: &ModelInfo) -> (u64, u64) {
    let layers = info.block_count.unwrap_or(0);
    if info.sliding_window.is_none() {
        return (layers, 0);
    }
    let pattern = match (info.sliding_window_pattern, info.architecture.as_deref()) {
        (Some(p), _) if p > 1 => p,
        // Gemma 3 (llama.cpp's set_swa_pattern(6)): five sliding-window layers, then one
        // global layer.
        (_, Some("gemma3")) => 6,
        _ => return (layers, 0),
    };
    let full = layers / pattern;
    (full, layers - full)
}

/// The extra copies the x86 CPU backend makes of some quantized matrices.
fn repacked_bytes(info: &ModelInfo) -> u64 {
    if !cfg!(target_arch = "x86_64") {
        return 0;
    }
    REPACKED_TYPES
        .iter()
        .filter_map(|t| info.tensor_types.get(*t))
        .map(|s| s.bytes)
        .sum()
}

/// The high-water mark of the worst-case graph: a full micro-batch against a full cache. The
/// attention masks live through the whole graph; on top comes the largest of the feed-forward
/// stage, the output head, and (without flash attention) the attention scores. The per-token
/// widths were fitted to llama.cpp's reports for the test models.
fn compute_bytes(info: &ModelInfo, params: &MemoryParams, layout: &KvLayout) -> u64 {
    let embd = info.embedding_length.unwrap_or(0);
    let heads = info.head_count.unwrap_or(0);
    let query_width = heads * info.key_length.unwrap_or(0);
    let feed_forward = info.feed_forward_length.unwrap_or(4 * embd);
    let tokens = params.ubatch.min(layout.cells.max(1));
    let mask_element = if params.flash_attention { 2 } else { 4 };
    let masks = (layout.cells + layout.swa_cells) * tokens * mask_element;
    let ffn = tokens * 4 * (3 * feed_forward + 3 * embd + embd.max(query_width));
    let outputs = params.parallel.min(tokens);
    let head = info.vocab_size.unwrap_or(0) * outputs * 4 + tokens * 4 * 3 * embd;
    let scores = if params.flash_attention {
        0
    } else {
        let widest = layout.cells.max(layout.swa_cells);
        widest * tokens * 4 * heads
            + tokens
                * 4
                * (3 * embd
                    + 2 * query_width
                    + 2 * info.head_count_kv.unwrap_or(0) * info.key_length.unwrap_or(0))
    };
    masks + ffn.max(head).max(scores)
}

/// `MemAvailable` from /proc/meminfo (Linux); `None` elsewhere.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
