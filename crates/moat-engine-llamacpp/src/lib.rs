//! The llama.cpp backend of [`moat_engine::Engine`], through the `llama-cpp-2` crate: CPU by
//! default, with the features `cuda`, `metal` and `vulkan` passing through to llama.cpp's GPU
//! builds. For AVX-512 and other native CPU kernels build with `RUSTFLAGS="-C target-cpu=native"`
//! (llama-cpp-sys-2 then sets `GGML_NATIVE`); there is no cargo feature for it.
//!
//! Shape: [`LlamaEngine`] is a handle. A worker thread per loaded model owns the llama.cpp
//! model and context and drives moat-engine's `Scheduler` for continuous batching over
//! `parallel` sequences in one unified KV cache (shared prompt prefixes, per-sequence seeded
//! samplers, stop strings, logprobs). The handle talks to it through bounded channels. All
//! compute in the process, whichever model it is for, runs on one compute thread
//! ([`run_on_executor`], see `moat_engine::compute`), because two thread pools on the same cores
//! collapse throughput.
//!
//! This crate knows nothing of HTTP or wire formats; it is the only crate that touches llama.cpp.
//! `llama-cpp-2` holds the FFI, and `self_cell` the one self-reference (a context with its
//! model). Its own `unsafe` is two system calls in `slice.rs` (the decode thread's time slice,
//! which nothing safe wraps), each allowed where it stands; the crate otherwise denies it.

mod embedder;
mod engine;
mod executor;
mod grammar;
mod header;
mod model_context;
mod options;
mod placement;
mod sampling;
mod schema_check;
mod shared;
mod slice;
mod stream;
mod vocab;
mod worker;

pub use embedder::{EmbedderOptions, LlamaEmbedder};
pub use engine::LlamaEngine;
pub use executor::backend;
pub use moat_engine::compute::{free_cores, run_on_executor};
pub use options::{FlashAttention, LoadOptions};
pub use placement::{gpu_devices, GpuDevice};
pub use slice::{
    compute_slice, request_slice, set_compute_slice, SliceOutcome, DEFAULT_COMPUTE_SLICE,
    MAX_COMPUTE_SLICE,
};
