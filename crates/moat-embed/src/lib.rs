//! # moat-embed
//!
//! Sentence embedders for BERT-family sentence-transformer models (all-MiniLM-L6-v2, BGE, E5,
//! GTE) from the files a sentence-transformers model folder holds, run on the CPU with candle.
//!
//! ```text
//! model folder
//!   modules.json               the pipeline: Transformer, Pooling, optionally Normalize
//!   1_Pooling/config.json      pooling: cls, mean, max, mean_sqrt_len (several concatenate)
//!   sentence_bert_config.json  max_seq_length (default: max_position_embeddings), do_lower_case
//!   config.json                the BERT shape (model_type "bert")
//!   tokenizer.json             the tokenizer; its own truncation and padding are ignored
//!   model.safetensors          the weights
//! ```
//!
//! [`SentenceEmbedder::load`] reads that folder and implements [`moat_engine::Embedder`]:
//!
//! - **Same vectors as sentence-transformers.** The model's own `max_seq_length`, pooling and
//!   normalisation, not `tokenizer.json`'s defaults (all-MiniLM-L6-v2's fixes truncation and
//!   padding at 128; sentence-transformers uses 256 without padding). The tests check every
//!   vector against an independent numpy forward pass (`scripts/embed_reference.py`, its output
//!   in `tests/fixtures/minilm-reference.json`) at cosine >= 0.999.
//! - **No silent truncation.** An input longer than `max_tokens` (special tokens included) or
//!   empty fails the whole call, naming its index. Token-array inputs are ids without special
//!   tokens; the tokenizer's post-processor adds them as it does for text.
//! - **Batched with little padding.** Inputs are sorted by length and cut into batches bounded in
//!   padded tokens ([`BatchLimits`]); vectors come back in input order.
//! - **One compute thread.** Every forward pass runs through
//!   [`moat_engine::compute::run_on_executor`], inside one rayon pool of
//!   [`moat_engine::compute::free_cores`] threads, so an embedder never competes with llama.cpp
//!   for the cores.
//! - **Clear load errors.** A missing or malformed file is an [`EmbedError`] naming it; sizes are
//!   bounded before anything is allocated for them.
//!
//! It knows nothing of HTTP, the model store or knowledge bases.

mod batch;
mod config;
mod embedder;
mod error;
mod pooling;

pub use batch::{plan_batches, BatchLimits};
pub use embedder::SentenceEmbedder;
pub use error::{EmbedError, EmbedErrorKind};
pub use pooling::{l2_normalize, Pooling, PoolingMode};
