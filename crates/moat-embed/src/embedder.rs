//! [`SentenceEmbedder`]: a BERT-family sentence-transformer loaded from its folder, implementing
//! [`moat_engine::Embedder`].
//!
//! Tokenizing, validation and batch planning run on the caller's thread; each batch's forward
//! pass and pooling run on the process's one compute executor, inside a rayon pool sized to the
//! free cores (candle's CPU kernels parallelise through rayon).

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::BertModel;
use moat_engine::compute::{free_cores, run_on_executor};
use moat_engine::{EmbedInput, Embedder, EmbedderInfo, Embeddings, EngineError, TokenId};
use tokenizers::{Encoding, Token, Tokenizer};

use crate::batch::{plan_batches, BatchLimits};
use crate::config::{read_bert_config, read_bounded, read_pipeline, read_sentence_config};
use crate::pooling::{l2_normalize, Pooling};
use crate::EmbedError;

/// The most a `tokenizer.json` may hold (multilingual ones are around 20 MB).
const MAX_TOKENIZER_BYTES: u64 = 256 << 20;
/// The most a `model.safetensors` may hold; the whole file is read into memory.
const MAX_WEIGHTS_BYTES: u64 = 16 << 30;

/// A sentence-transformer embedder (MiniLM, BGE, E5, GTE and other BERT models) that follows
/// the model's own sentence-transformers pipeline: its `max_seq_length`, pooling and
/// normalisation, not the defaults baked into its `tokenizer.json`.
pub struct SentenceEmbedder {
    info: EmbedderInfo,
    tokenizer: Tokenizer,
    do_lower_case: bool,
    vocab_size: usize,
    limits: BatchLimits,
    model: Arc<Model>,
}

/// What a forward pass needs; shared with the compute executor's jobs.
struct Model {
    bert: BertModel,
    pooling: Pooling,
    normalize: bool,
    pad_id: u32,
    threads: &'static rayon::ThreadPool,
}

/// One input as the model sees it: ids with special tokens, and their token types.
#[derive(Default)]
struct Sequence {
    ids: Vec<u32>,
    type_ids: Vec<u32>,
}

impl SentenceEmbedder {
    /// Loads the sentence-transformers model in `folder` (its `modules.json`, pooling config,
    /// `sentence_bert_config.json`, `config.json`, `tokenizer.json` and `model.safetensors`),
    /// to be known as `model_name`. Every missing or malformed file is an error naming it.
    pub fn load(folder: &Path, model_name: &str) -> Result<Self, EmbedError> {
        let pipeline = read_pipeline(folder)?;
        let dir = &pipeline.transformer_dir;
        let bert_config = read_bert_config(dir)?;
        if pipeline.pooling_dimension != bert_config.hidden_size {
            return Err(EmbedError::malformed(
                &pipeline.pooling_path,
                format!(
                    "word_embedding_dimension is {}, but config.json's hidden_size is {}",
                    pipeline.pooling_dimension, bert_config.hidden_size
                ),
            ));
        }
        let sentence = read_sentence_config(dir)?;
        // sentence-transformers never runs past the position table; neither do we.
        let max_positions = bert_config.max_position_embeddings;
        let max_tokens = sentence
            .max_seq_length
            .unwrap_or(max_positions)
            .min(max_positions);
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"), bert_config.vocab_size)?;
        let bert = load_weights(&dir.join("model.safetensors"), &bert_config)?;
        let dimension = pipeline.pooling.output_dimension(bert_config.hidden_size);
        let info = EmbedderInfo {
            model: model_name.to_owned(),
            // Both are bounded by the config checks (hidden size, positions), far below u32.
            dimension: u32::try_from(dimension).unwrap_or(u32::MAX),
            max_tokens: u32::try_from(max_tokens).unwrap_or(u32::MAX),
            normalized: pipeline.normalize,
        };
        let model = Model {
            bert,
            pooling: pipeline.pooling,
            normalize: pipeline.normalize,
            pad_id: u32::try_from(bert_config.pad_token_id).unwrap_or(0),
            threads: compute_threads()?,
        };
        Ok(Self {
            info,
            tokenizer,
            do_lower_case: sentence.do_lower_case,
            vocab_size: bert_config.vocab_size,
            limits: BatchLimits::default(),
            model: Arc::new(model),
        })
    }

    /// Replaces the batch bounds (the defaults suit MiniLM-sized models on CPU).
    pub fn with_batch_limits(mut self, limits: BatchLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The token ids of `text` without special tokens, untruncated: what an
    /// [`EmbedInput::Tokens`] input holds, and what a chunker measures a token budget in.
    pub fn token_ids(&self, text: &str) -> Result<Vec<TokenId>, EngineError> {
        let encoding = self
            .tokenizer
            .encode(self.cased(text).as_ref(), false)
            .map_err(|e| EngineError::Internal(format!("the tokenizer failed: {e}")))?;
        // Ids are below vocab_size (checked at load), which is far below i32::MAX.
        Ok(encoding
            .get_ids()
            .iter()
            .map(|&id| TokenId::try_from(id).unwrap_or(TokenId::MAX))
            .collect())
    }

    /// `text` as sentence-transformers hands it to the tokenizer: lowercased first when
    /// `sentence_bert_config.json` says `do_lower_case`.
    fn cased<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.do_lower_case {
            Cow::Owned(text.to_lowercase())
        } else {
            Cow::Borrowed(text)
        }
    }

    /// The tokens of `text` as the model sees it, special tokens included, untruncated.
    fn encode_text(&self, text: &str) -> Result<Vec<u32>, EngineError> {
        self.tokenizer
            .encode(self.cased(text).as_ref(), true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| EngineError::Internal(format!("the tokenizer failed: {e}")))
    }

    /// Turns input `index` into a [`Sequence`], refusing it when empty, too long or (for
    /// token arrays) holding ids outside the vocabulary.
    fn sequence(&self, index: usize, input: &EmbedInput) -> Result<Sequence, EngineError> {
        let max = self.info.max_tokens as usize;
        let encoding = match input {
            EmbedInput::Text(text) if text.is_empty() => return Err(empty(index)),
            EmbedInput::Tokens(ids) if ids.is_empty() => return Err(empty(index)),
            EmbedInput::Text(text) => self.tokenizer.encode(self.cased(text).as_ref(), true),
            EmbedInput::Tokens(ids) => {
                // Checked before building anything, so a huge array costs no work.
                if ids.len() > max {
                    return Err(self.too_long(index, ids.len()));
                }
                let tokens = self.tokens(index, ids)?;
                self.tokenizer
                    .post_process(Encoding::from_tokens(tokens, 0), None, true)
            }
        }
        .map_err(|e| {
            EngineError::Internal(format!("the tokenizer failed on input {index}: {e}"))
        })?;
        if encoding.get_ids().len() > max {
            return Err(self.too_long(index, encoding.get_ids().len()));
        }
        Ok(Sequence {
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
        })
    }

    /// Token ids of a token-array input, checked against the vocabulary.
    fn tokens(&self, index: usize, ids: &[i32]) -> Result<Vec<Token>, EngineError> {
        ids.iter()
            .enumerate()
            .map(|(position, &id)| match u32::try_from(id) {
                Ok(ok) if (ok as usize) < self.vocab_size => {
                    Ok(Token::new(ok, String::new(), (0, 0)))
                }
                _ => Err(EngineError::InvalidRequest(format!(
                    "input {index}: token {position} is {id}; {} has token ids 0 to {}",
                    self.info.model,
                    self.vocab_size - 1
                ))),
            })
            .collect()
    }

    fn too_long(&self, index: usize, tokens: usize) -> EngineError {
        EngineError::InvalidRequest(format!(
            "input {index} is {tokens} tokens; {} takes at most {} (special tokens included)",
            self.info.model, self.info.max_tokens
        ))
    }
}

fn empty(index: usize) -> EngineError {
    EngineError::InvalidRequest(format!("input {index} is empty"))
}

impl Embedder for SentenceEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    fn count_tokens(&self, text: &str) -> Result<u32, EngineError> {
        let n = self.encode_text(text)?.len();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn embed(&self, inputs: &[EmbedInput]) -> Result<Embeddings, EngineError> {
        let mut sequences = inputs
            .iter()
            .enumerate()
            .map(|(index, input)| self.sequence(index, input))
            .collect::<Result<Vec<_>, _>>()?;
        let lengths: Vec<usize> = sequences.iter().map(|s| s.ids.len()).collect();
        let mut vectors = vec![Vec::new(); inputs.len()];
        // One executor job per batch, so other models' steps can run between batches.
        for batch in plan_batches(&lengths, self.limits) {
            let batch_sequences: Vec<Sequence> = batch
                .iter()
                .map(|&i| std::mem::take(&mut sequences[i]))
                .collect();
            let model = Arc::clone(&self.model);
            let pooled = run_on_executor(move || model.embed_batch(&batch_sequences))?
                .map_err(|e| EngineError::Internal(format!("the forward pass failed: {e}")))?;
            for (index, vector) in batch.into_iter().zip(pooled) {
                vectors[index] = vector;
            }
        }
        Ok(Embeddings {
            vectors,
            prompt_tokens: lengths.iter().map(|&n| n as u64).sum(),
        })
    }
}

impl Model {
    /// One padded forward pass over `sequences`, then pooling over each one's real tokens.
    /// Runs on the compute executor, its kernels on the embedder's rayon pool.
    fn embed_batch(&self, sequences: &[Sequence]) -> candle_core::Result<Vec<Vec<f32>>> {
        self.threads.install(|| {
            let hidden = self.forward(sequences)?;
            Ok(hidden
                .iter()
                .zip(sequences)
                .map(|(states, sequence)| {
                    let mut vector = self.pooling.pool(&states[..sequence.ids.len()]);
                    if self.normalize {
                        l2_normalize(&mut vector);
                    }
                    vector
                })
                .collect())
        })
    }

    /// The last hidden states, `[sequence][position][hidden]`, padding positions included.
    fn forward(&self, sequences: &[Sequence]) -> candle_core::Result<Vec<Vec<Vec<f32>>>> {
        let width = sequences.iter().map(|s| s.ids.len()).max().unwrap_or(0);
        let cells = sequences.len() * width;
        let (mut ids, mut type_ids, mut mask) = (
            Vec::with_capacity(cells),
            Vec::with_capacity(cells),
            Vec::with_capacity(cells),
        );
        for sequence in sequences {
            let pad = width - sequence.ids.len();
            ids.extend(
                sequence
                    .ids
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(self.pad_id, pad)),
            );
            type_ids.extend(
                sequence
                    .type_ids
                    .iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, pad)),
            );
            mask.extend(
                std::iter::repeat_n(1u32, sequence.ids.len()).chain(std::iter::repeat_n(0, pad)),
            );
        }
        let shape = (sequences.len(), width);
        let device = Device::Cpu;
        let ids = Tensor::from_vec(ids, shape, &device)?;
        let type_ids = Tensor::from_vec(type_ids, shape, &device)?;
        let mask = Tensor::from_vec(mask, shape, &device)?;
        self.bert
            .forward(&ids, &type_ids, Some(&mask))?
            .to_vec3::<f32>()
    }
}

/// Reads `tokenizer.json` and turns off the truncation and padding it may fix (all-MiniLM-L6-v2's
/// fixes both at 128): sentence-transformers truncates at `max_seq_length` and pads per batch,
/// and this embedder refuses over-long inputs instead of truncating them.
fn load_tokenizer(path: &Path, vocab_size: usize) -> Result<Tokenizer, EmbedError> {
    let bytes = read_bounded(path, MAX_TOKENIZER_BYTES)?;
    let mut tokenizer = Tokenizer::from_bytes(&bytes)
        .map_err(|e| EmbedError::malformed(path, format!("not a tokenizer: {e}")))?;
    tokenizer
        .with_truncation(None)
        .map_err(|e| EmbedError::malformed(path, e.to_string()))?;
    tokenizer.with_padding(None);
    let largest = tokenizer.get_vocab(true).into_values().max().unwrap_or(0);
    if largest as usize >= vocab_size {
        return Err(EmbedError::malformed(
            path,
            format!("it has token id {largest}, but config.json's vocab_size is {vocab_size}"),
        ));
    }
    // A tokenizer whose post-processor names unknown special tokens fails here, not per request.
    tokenizer
        .encode("a", true)
        .map_err(|e| EmbedError::malformed(path, format!("it cannot encode a text: {e}")))?;
    Ok(tokenizer)
}

/// Reads the weights and builds candle's BERT on the CPU in f32; a corrupt file or weights that
/// do not match `config.json` are errors naming the weights file.
fn load_weights(
    path: &Path,
    config: &candle_transformers::models::bert::Config,
) -> Result<BertModel, EmbedError> {
    let bytes = read_bounded(path, MAX_WEIGHTS_BYTES)?;
    let weights = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)
        .map_err(|e| EmbedError::malformed(path, format!("not a safetensors file: {e}")))?;
    BertModel::load(weights, config).map_err(|e| {
        EmbedError::malformed(path, format!("the weights do not match config.json: {e}"))
    })
}

/// The process's one rayon pool for candle, sized to the free cores. Only the compute executor
/// uses it, one pass at a time, so embedders never add threads beyond the cores.
fn compute_threads() -> Result<&'static rayon::ThreadPool, EmbedError> {
    static POOL: OnceLock<Result<rayon::ThreadPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(free_cores() as usize)
            .thread_name(|i| format!("moat-embed-{i}"))
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| EmbedError::Runtime(format!("could not start candle's threads: {e}")))
}
