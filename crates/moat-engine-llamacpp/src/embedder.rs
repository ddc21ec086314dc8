//! `LlamaEmbedder`: a GGUF embedding model (BERT, or any model whose GGUF names a pooling)
//! behind moat-engine's [`Embedder`] seam, through llama.cpp's own pooling.
//!
//! Shape: the caller's thread tokenizes and validates every input, packs the inputs into
//! batches of several sequences (one sequence id each, never more tokens than one llama.cpp
//! micro-batch, because a non-causal encoder cannot split a batch and llama.cpp aborts the
//! process if asked to), and hands each batch to the process's one compute thread
//! ([`run_on_executor`]) with the context moved there and back, as the generation worker does.
//! llama.cpp pools each sequence (mean, CLS or last token, as the GGUF says); the vectors are
//! then L2-normalised unless the options say not to.
//!
//! It knows nothing of HTTP, of the store or of sentence-transformers' folders: the GGUF alone
//! says how the model pools.

use std::num::NonZeroU32;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use moat_engine::compute::{free_cores, run_on_executor};
use moat_engine::{EmbedInput, Embedder, EmbedderInfo, Embeddings, EngineError, TokenId};

use crate::executor::backend;
use crate::header;
use crate::model_context::ModelContext;
use crate::vocab::Vocab;

/// How to load an embedding model. Build it with `EmbedderOptions::new(name)` and change the
/// fields you need; the defaults live here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbedderOptions {
    /// The model's name for `EmbedderInfo::model` (`all-minilm-l6-v2:latest`).
    pub model_name: String,
    /// Threads for llama.cpp's compute.
    pub n_threads: u32,
    /// Most tokens in one forward pass, over all its sequences. Raised to the model's context
    /// when smaller, so that every input that fits the model fits a batch. The attention of a
    /// non-causal encoder is quadratic in this, so bigger is not always faster.
    pub batch_tokens: u32,
    /// Most inputs in one forward pass; 1 to 256 (llama.cpp's sequence limit).
    pub max_sequences: u32,
    /// L2-normalise every vector. A GGUF does not record sentence-transformers' `Normalize`
    /// module, so this is on by default, as in llama.cpp's server; cosine similarity is the same
    /// either way, dot products are not.
    pub normalize: bool,
}

impl EmbedderOptions {
    pub const DEFAULT_BATCH_TOKENS: u32 = 512;
    pub const DEFAULT_MAX_SEQUENCES: u32 = 64;
    /// llama.cpp's `LLAMA_MAX_SEQ`.
    pub const MAX_SEQUENCES: u32 = 256;

    pub fn new(model_name: impl Into<String>) -> Self {
        Self {
            model_name: model_name.into(),
            n_threads: free_cores(),
            batch_tokens: Self::DEFAULT_BATCH_TOKENS,
            max_sequences: Self::DEFAULT_MAX_SEQUENCES,
            normalize: true,
        }
    }

    fn check(&self) -> Result<(), EngineError> {
        let problem = if self.n_threads == 0 {
            Some("n_threads must be at least 1".to_owned())
        } else if self.batch_tokens == 0 {
            Some("batch_tokens must be at least 1".to_owned())
        } else if !(1..=Self::MAX_SEQUENCES).contains(&self.max_sequences) {
            Some(format!(
                "max_sequences is {}; llama.cpp takes 1 to {}",
                self.max_sequences,
                Self::MAX_SEQUENCES
            ))
        } else {
            None
        };
        problem.map_or(Ok(()), |message| Err(EngineError::ModelLoad(message)))
    }
}

/// A GGUF embedding model served by llama.cpp. Calls block (each batch waits for its turn on
/// the compute thread); async callers use `spawn_blocking`. Concurrent `embed` calls on one
/// embedder run one after the other.
pub struct LlamaEmbedder {
    info: EmbedderInfo,
    model: Arc<LlamaModel>,
    /// `None` only while a batch runs on the compute thread, or for good if that panicked.
    compute: Mutex<Option<Compute>>,
    /// The special tokens the model puts around an input (`[CLS]` … `[SEP]` for BERT), for
    /// inputs given as token ids.
    framing: Framing,
    /// Tokens one forward pass may hold: llama.cpp's micro-batch, never less than `max_tokens`.
    batch_tokens: usize,
    max_sequences: usize,
}

struct Framing {
    prefix: Vec<TokenId>,
    suffix: Vec<TokenId>,
}

impl LlamaEmbedder {
    /// Loads the GGUF at `path` on the caller's thread (a blocking call) with embeddings on and
    /// the GGUF's pooling. Fails for a file llama.cpp cannot load and for a model that pools
    /// nothing (a chat model, which gives one vector per token) or ranks (a reranker).
    pub fn load(path: &Path, options: EmbedderOptions) -> Result<Self, EngineError> {
        options.check()?;
        if !path.is_file() {
            return Err(EngineError::ModelLoad(format!(
                "{} is not a file",
                path.display()
            )));
        }
        header::check_before_load(path).map_err(EngineError::ModelLoad)?;
        let backend = backend()?;
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|error| {
                EngineError::ModelLoad(format!(
                    "llama.cpp could not load {}: {error}",
                    path.display()
                ))
            })?;
        let model = Arc::new(model);
        check_pooling(&model)?;
        let dimension = u32::try_from(model.n_embd_out())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| EngineError::ModelLoad("the model has no embedding width".into()))?;
        let max_tokens = model.n_ctx_train();
        if max_tokens == 0 {
            return Err(EngineError::ModelLoad(
                "the model names no context length".to_owned(),
            ));
        }
        let wanted_batch = options.batch_tokens.max(max_tokens);
        let params = context_params(&options, wanted_batch)?;
        let context = ModelContext::try_new(Arc::clone(&model), |model| {
            model.new_context(backend, params)
        })
        .map_err(|error| {
            EngineError::ModelLoad(format!("llama.cpp could not create a context: {error}"))
        })?;
        // What llama.cpp really granted: a batch beyond its micro-batch aborts the process.
        let granted = {
            let context = context.borrow_dependent();
            context.n_batch().min(context.n_ubatch())
        };
        if granted < max_tokens {
            return Err(EngineError::ModelLoad(format!(
                "llama.cpp allows {granted} tokens per batch, fewer than the model's {max_tokens}"
            )));
        }
        let batch_tokens = usize::try_from(granted).unwrap_or(usize::MAX);
        let framing = framing(&model);
        Ok(Self {
            info: EmbedderInfo {
                model: options.model_name,
                dimension,
                max_tokens,
                normalized: options.normalize,
            },
            compute: Mutex::new(Some(Compute {
                context,
                batch: LlamaBatch::new(batch_tokens, 1),
                normalize: options.normalize,
            })),
            model,
            framing,
            batch_tokens,
            max_sequences: usize::try_from(options.max_sequences).unwrap_or(1),
        })
    }

    /// The token ids of `text`, with or without the model's special tokens; what
    /// `EmbedInput::Tokens` expects when `add_special` is false. Special-token text in the input
    /// (`[SEP]`) becomes that token, as in Hugging Face's tokenizers.
    pub fn tokenize(&self, text: &str, add_special: bool) -> Vec<TokenId> {
        Vocab::new(&self.model).tokenize(text, add_special, true)
    }

    /// One input's tokens, special tokens included, checked against the vocabulary and
    /// `max_tokens`.
    fn input_tokens(&self, index: usize, input: &EmbedInput) -> Result<Vec<TokenId>, EngineError> {
        let vocab = Vocab::new(&self.model);
        let tokens = match input {
            EmbedInput::Text(text) if text.is_empty() => return Err(empty(index)),
            EmbedInput::Tokens(tokens) if tokens.is_empty() => return Err(empty(index)),
            EmbedInput::Text(text) => vocab.tokenize(text, true, true),
            EmbedInput::Tokens(tokens) => {
                for &token in tokens {
                    vocab.check(token).map_err(|error| {
                        EngineError::InvalidRequest(format!("input {index}: {error}"))
                    })?;
                }
                let framing = &self.framing;
                let mut framed =
                    Vec::with_capacity(framing.prefix.len() + tokens.len() + framing.suffix.len());
                framed.extend_from_slice(&framing.prefix);
                framed.extend_from_slice(tokens);
                framed.extend_from_slice(&framing.suffix);
                framed
            }
        };
        let max_tokens = self.info.max_tokens;
        if tokens.len() > usize::try_from(max_tokens).unwrap_or(usize::MAX) {
            return Err(EngineError::InvalidRequest(format!(
                "input {index} is {} tokens; this model embeds at most {max_tokens}",
                tokens.len()
            )));
        }
        Ok(tokens)
    }

    /// Runs one batch of sequences on the compute thread and returns their vectors.
    fn embed_batch(&self, sequences: &[Vec<TokenId>]) -> Result<Vec<Vec<f32>>, EngineError> {
        let mut slot = self.compute.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(mut compute) = slot.take() else {
            return Err(EngineError::Internal(
                "the llama.cpp context was lost in an earlier compute step".to_owned(),
            ));
        };
        if let Err(problem) = compute.fill(sequences) {
            *slot = Some(compute);
            return Err(EngineError::Internal(problem));
        }
        let n_sequences = sequences.len();
        let (compute, result) = run_on_executor(move || {
            let result = compute.run(n_sequences);
            (compute, result)
        })?;
        *slot = Some(compute);
        let vectors = result.map_err(EngineError::Internal)?;
        let dimension = usize::try_from(self.info.dimension).unwrap_or(usize::MAX);
        if vectors.iter().any(|vector| vector.len() != dimension) {
            return Err(EngineError::Internal(format!(
                "llama.cpp returned vectors of a width other than {dimension}"
            )));
        }
        Ok(vectors)
    }
}

impl Embedder for LlamaEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    fn count_tokens(&self, text: &str) -> Result<u32, EngineError> {
        let n_tokens = self.tokenize(text, true).len();
        u32::try_from(n_tokens)
            .map_err(|_| EngineError::InvalidRequest(format!("{n_tokens} tokens is too many")))
    }

    fn embed(&self, inputs: &[EmbedInput]) -> Result<Embeddings, EngineError> {
        let sequences = inputs
            .iter()
            .enumerate()
            .map(|(index, input)| self.input_tokens(index, input))
            .collect::<Result<Vec<_>, _>>()?;
        let lengths: Vec<usize> = sequences.iter().map(Vec::len).collect();
        let mut vectors = Vec::with_capacity(sequences.len());
        for range in plan_batches(&lengths, self.batch_tokens, self.max_sequences) {
            vectors.extend(self.embed_batch(&sequences[range])?);
        }
        let prompt_tokens = lengths.iter().map(|&n| n as u64).sum();
        Ok(Embeddings {
            vectors,
            prompt_tokens,
        })
    }
}

/// What a forward pass needs, moved to the compute thread and back as one value.
struct Compute {
    context: ModelContext,
    batch: LlamaBatch<'static>,
    normalize: bool,
}

impl Compute {
    /// Puts `sequences` into the batch, sequence `i` under seq id `i`, every token an output
    /// (pooling reads them all).
    fn fill(&mut self, sequences: &[Vec<TokenId>]) -> Result<(), String> {
        self.batch.clear();
        for (seq_id, tokens) in sequences.iter().enumerate() {
            let seq_id = i32::try_from(seq_id).map_err(|_| "too many sequences".to_owned())?;
            for (position, &token) in tokens.iter().enumerate() {
                let position = i32::try_from(position).map_err(|_| "input too long".to_owned())?;
                self.batch
                    .add(LlamaToken(token), position, &[seq_id], true)
                    .map_err(|error| format!("batch: {error}"))?;
            }
        }
        Ok(())
    }

    /// Runs the batch and reads one pooled vector per sequence. A model without a KV cache
    /// (BERT) is encoded in one pass; one with a cache starts from an empty one.
    fn run(&mut self, n_sequences: usize) -> Result<Vec<Vec<f32>>, String> {
        let batch = &mut self.batch;
        let normalize = self.normalize;
        self.context.with_dependent_mut(|_, context| {
            context.clear_kv_cache();
            context
                .decode(batch)
                .map_err(|error| format!("llama.cpp decode: {error}"))?;
            (0..n_sequences)
                .map(|seq_id| {
                    let seq = i32::try_from(seq_id).unwrap_or(i32::MAX);
                    let pooled = context.embeddings_seq_ith(seq).map_err(|error| {
                        format!("llama.cpp gave no pooled vector for sequence {seq_id}: {error}")
                    })?;
                    let mut vector = pooled.to_vec();
                    if normalize {
                        l2_normalize(&mut vector);
                    }
                    Ok(vector)
                })
                .collect()
        })
    }
}

fn empty(index: usize) -> EngineError {
    EngineError::InvalidRequest(format!("input {index} is empty"))
}

fn context_params(
    options: &EmbedderOptions,
    batch_tokens: u32,
) -> Result<LlamaContextParams, EngineError> {
    let n_ctx = NonZeroU32::new(batch_tokens)
        .ok_or_else(|| EngineError::ModelLoad("batch_tokens must be at least 1".to_owned()))?;
    let n_threads = i32::try_from(options.n_threads).unwrap_or(i32::MAX);
    // The context holds one batch at a time (cleared before each), so it needs room for one
    // batch; the unified KV cache lets any sequence use any of it. A micro-batch as large as
    // the batch keeps a non-causal encoder in one pass, which it requires.
    Ok(LlamaContextParams::default()
        .with_embeddings(true)
        .with_n_ctx(Some(n_ctx))
        .with_n_batch(batch_tokens)
        .with_n_ubatch(batch_tokens)
        .with_n_seq_max(options.max_sequences)
        .with_n_threads(n_threads)
        .with_n_threads_batch(n_threads)
        .with_kv_unified(true))
}

/// Checks that the GGUF's `{arch}.pooling_type` pools each input into one vector (mean, CLS or
/// last token); llama.cpp's context takes that pooling from the GGUF.
fn check_pooling(model: &LlamaModel) -> Result<(), EngineError> {
    let arch = model
        .meta_val_str("general.architecture")
        .map_err(|error| EngineError::ModelLoad(format!("general.architecture: {error}")))?;
    let key = format!("{arch}.pooling_type");
    let value = model.meta_val_str(&key).ok();
    match value.as_deref().map(str::trim) {
        Some("1" | "2" | "3") => Ok(()),
        Some("4") => Err(EngineError::ModelLoad(format!(
            "{key} is rank: this is a reranker, not an embedding model"
        ))),
        Some("0") | None => Err(EngineError::ModelLoad(format!(
            "{key} is not set or none: the model gives one vector per token, not an embedding \
             per input (is it an embedding model?)"
        ))),
        Some(other) => Err(EngineError::ModelLoad(format!(
            "{key} is {other}, which llama.cpp does not know"
        ))),
    }
}

/// The special tokens llama.cpp puts around a text, found by tokenizing an empty one: for BERT
/// `[CLS]` then `[SEP]`. The beginning-of-sequence token, when the model adds one, goes first.
fn framing(model: &LlamaModel) -> Framing {
    let vocab = model.vocab();
    let framed: Vec<TokenId> = vocab
        .tokenize(b"", true, false)
        .into_iter()
        .map(|token| token.0)
        .collect();
    let n_prefix = usize::from(vocab.should_add_bos() && framed.first() == Some(&vocab.bos().0));
    Framing {
        prefix: framed[..n_prefix].to_vec(),
        suffix: framed[n_prefix..].to_vec(),
    }
}

/// Consecutive groups of inputs, each within `max_tokens` tokens and `max_sequences` inputs,
/// in input order. Every length must be at most `max_tokens` (the caller checked).
fn plan_batches(lengths: &[usize], max_tokens: usize, max_sequences: usize) -> Vec<Range<usize>> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut tokens = 0;
    for (index, &length) in lengths.iter().enumerate() {
        let full = index - start == max_sequences || tokens + length > max_tokens;
        if index > start && full {
            batches.push(start..index);
            start = index;
            tokens = 0;
        }
        tokens += length;
    }
    if start < lengths.len() {
        batches.push(start..lengths.len());
    }
    batches
}

/// Scales `vector` to unit length; a zero vector stays zero rather than becoming NaN.
fn l2_normalize(vector: &mut [f32]) {
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for x in vector.iter_mut() {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_both_limits_and_keep_order() {
        let lengths = [100, 200, 300, 50, 50, 200];
        // 300 does not fit after 100 + 200, nor the last 200 after 300 + 50 + 50.
        assert_eq!(plan_batches(&lengths, 512, 64), vec![0..2, 2..5, 5..6]);
        assert_eq!(plan_batches(&[1; 5], 512, 2), vec![0..2, 2..4, 4..5]);
    }

    #[test]
    fn a_batch_exactly_full_is_not_split() {
        assert_eq!(plan_batches(&[256, 256, 256], 512, 64), vec![0..2, 2..3]);
        assert_eq!(plan_batches(&[512], 512, 1), vec![0..1]);
    }

    #[test]
    fn no_inputs_no_batches() {
        assert!(plan_batches(&[], 512, 64).is_empty());
    }

    #[test]
    fn every_input_lands_in_exactly_one_batch() {
        let lengths: Vec<usize> = (0..200).map(|i| 1 + (i * 37) % 256).collect();
        let batches = plan_batches(&lengths, 512, 7);
        let covered: Vec<usize> = batches.iter().cloned().flatten().collect();
        assert_eq!(covered, (0..200).collect::<Vec<_>>());
        for batch in batches {
            assert!(batch.len() <= 7);
            assert!(lengths[batch].iter().sum::<usize>() <= 512);
        }
    }

    #[test]
    fn normalizing_gives_unit_length_and_leaves_zero_alone() {
        let mut vector = vec![3.0, 4.0];
        l2_normalize(&mut vector);
        assert_eq!(vector, vec![0.6, 0.8]);
        let mut zero = vec![0.0; 3];
        l2_normalize(&mut zero);
        assert_eq!(zero, vec![0.0; 3]);
    }

    #[test]
    fn options_that_can_never_work_are_refused() {
        let mut options = EmbedderOptions::new("m");
        assert!(options.check().is_ok());
        options.max_sequences = 257;
        assert!(matches!(options.check(), Err(EngineError::ModelLoad(_))));
        options.max_sequences = 0;
        assert!(options.check().is_err());
        options.max_sequences = 1;
        options.batch_tokens = 0;
        assert!(options.check().is_err());
        options.batch_tokens = 1;
        options.n_threads = 0;
        assert!(options.check().is_err());
    }
}
