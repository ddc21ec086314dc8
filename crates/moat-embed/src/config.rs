//! Reading a sentence-transformers model folder: `modules.json` (the pipeline),
//! `1_Pooling/config.json` (pooling), `sentence_bert_config.json` (sequence length, lowercasing)
//! and the transformer's `config.json` (the BERT shape).
//!
//! Every file is read with a size bound and every problem becomes an [`EmbedError`] naming the
//! file. It knows nothing of tokenizers or candle tensors; it only hands candle the parsed
//! BERT config.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use candle_transformers::models::bert::Config as BertConfig;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::pooling::{Pooling, PoolingMode};
use crate::EmbedError;

/// The most a JSON config file may hold; real ones are under a few KB.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads a whole file, refusing one longer than `limit` bytes before allocating for it.
pub(crate) fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, EmbedError> {
    let read_error = |source| EmbedError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let len = file.metadata().map_err(read_error)?.len();
    if len > limit {
        return Err(EmbedError::malformed(
            path,
            format!("the file is {len} bytes; more than the {limit} this file may have"),
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // `take` keeps the bound even if the file grows after the size check.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > limit {
        return Err(EmbedError::malformed(
            path,
            "the file grew past its size limit",
        ));
    }
    Ok(bytes)
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, EmbedError> {
    let bytes = read_bounded(path, MAX_CONFIG_BYTES)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| EmbedError::malformed(path, format!("not the expected JSON: {e}")))
}

/// The sentence-transformers pipeline of a model folder.
#[derive(Clone, Debug)]
pub(crate) struct Pipeline {
    /// The folder of the Transformer module (the model folder itself for most models).
    pub transformer_dir: PathBuf,
    pub pooling: Pooling,
    /// Where the pooling config came from, for errors found later.
    pub pooling_path: PathBuf,
    /// `word_embedding_dimension` of the pooling config: the transformer's hidden size.
    pub pooling_dimension: usize,
    pub normalize: bool,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// Reads `modules.json`: exactly a Transformer, then a Pooling, then optionally a Normalize.
/// Any other module (Dense, LayerNorm, ...) would change the vectors, so it is refused rather
/// than skipped.
pub(crate) fn read_pipeline(folder: &Path) -> Result<Pipeline, EmbedError> {
    let modules_path = folder.join("modules.json");
    let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
    let short_kind = |m: &ModuleEntry| m.kind.rsplit('.').next().unwrap_or("").to_owned();
    let kinds: Vec<String> = modules.iter().map(short_kind).collect();
    let shape_ok = matches!(
        kinds
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["Transformer", "Pooling"] | ["Transformer", "Pooling", "Normalize"]
    );
    if !shape_ok {
        return Err(EmbedError::unsupported(
            &modules_path,
            format!(
                "the modules are [{}]; supported: Transformer, Pooling and optionally Normalize",
                kinds.join(", ")
            ),
        ));
    }
    let transformer_dir = folder.join(module_dir(&modules_path, &modules[0].path)?);
    let pooling_path = folder
        .join(module_dir(&modules_path, &modules[1].path)?)
        .join("config.json");
    let (pooling, pooling_dimension) = read_pooling(&pooling_path)?;
    Ok(Pipeline {
        transformer_dir,
        pooling,
        pooling_path,
        pooling_dimension,
        normalize: modules.len() == 3,
    })
}

/// A module's folder, checked to stay inside the model folder (the file is external input).
fn module_dir<'a>(modules_path: &Path, dir: &'a str) -> Result<&'a Path, EmbedError> {
    let path = Path::new(dir);
    if path.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(path)
    } else {
        Err(EmbedError::malformed(
            modules_path,
            format!("module path {dir:?} leaves the model folder"),
        ))
    }
}

#[derive(Deserialize)]
struct PoolingFile {
    word_embedding_dimension: usize,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

fn read_pooling(path: &Path) -> Result<(Pooling, usize), EmbedError> {
    let file: PoolingFile = read_json(path)?;
    if file.pooling_mode_weightedmean_tokens || file.pooling_mode_lasttoken {
        return Err(EmbedError::unsupported(
            path,
            "weighted-mean and last-token pooling are not supported (cls, mean, max, mean_sqrt_len are)",
        ));
    }
    let enabled = [
        (file.pooling_mode_cls_token, PoolingMode::Cls),
        (file.pooling_mode_max_tokens, PoolingMode::Max),
        (file.pooling_mode_mean_tokens, PoolingMode::Mean),
        (
            file.pooling_mode_mean_sqrt_len_tokens,
            PoolingMode::MeanSqrtLen,
        ),
    ];
    let modes: Vec<_> = enabled
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, m)| *m)
        .collect();
    let pooling = Pooling::new(&modes)
        .ok_or_else(|| EmbedError::malformed(path, "no pooling mode is enabled"))?;
    Ok((pooling, file.word_embedding_dimension))
}

/// What `sentence_bert_config.json` says, with sentence-transformers' defaults when the file is
/// absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SentenceConfig {
    /// The most tokens per input, special tokens included; `None`: the model's limit.
    pub max_seq_length: Option<usize>,
    /// Lowercase texts before tokenizing.
    pub do_lower_case: bool,
}

#[derive(Deserialize)]
struct SentenceConfigFile {
    #[serde(default)]
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

/// Reads `sentence_bert_config.json` from the transformer folder; a missing file means the
/// defaults, a broken one is an error.
pub(crate) fn read_sentence_config(dir: &Path) -> Result<SentenceConfig, EmbedError> {
    let path = dir.join("sentence_bert_config.json");
    if !path.exists() {
        return Ok(SentenceConfig {
            max_seq_length: None,
            do_lower_case: false,
        });
    }
    let file: SentenceConfigFile = read_json(&path)?;
    if file.max_seq_length == Some(0) {
        return Err(EmbedError::malformed(&path, "max_seq_length is 0"));
    }
    Ok(SentenceConfig {
        max_seq_length: file.max_seq_length,
        do_lower_case: file.do_lower_case,
    })
}

/// Upper bounds on a BERT config, far above any real embedder, so a hostile `config.json` cannot
/// make loading allocate without bound before the weights are checked against it.
const MAX_HIDDEN: usize = 16_384;
const MAX_LAYERS: usize = 256;
const MAX_POSITIONS: usize = 1 << 20;
const MAX_VOCAB: usize = 1 << 24;

/// Reads the transformer's `config.json` as a BERT config. Only `model_type: "bert"` (or none)
/// is accepted: RoBERTa-style models (XLM-R, multilingual E5) offset their positions
/// differently, and candle's BERT would give them wrong vectors without an error.
pub(crate) fn read_bert_config(dir: &Path) -> Result<BertConfig, EmbedError> {
    let path = dir.join("config.json");
    let value: serde_json::Value = read_json(&path)?;
    match value.get("model_type").and_then(serde_json::Value::as_str) {
        None | Some("bert") => {}
        Some(other) => {
            return Err(EmbedError::unsupported(
                &path,
                format!(
                    "model_type {other:?} is not supported; only BERT-family models (\"bert\")"
                ),
            ))
        }
    }
    let config: BertConfig = serde_json::from_value(value)
        .map_err(|e| EmbedError::malformed(&path, format!("not a BERT config: {e}")))?;
    check_bert_config(&config).map_err(|message| EmbedError::malformed(&path, message))?;
    Ok(config)
}

fn check_bert_config(c: &BertConfig) -> Result<(), String> {
    let ranges = [
        ("hidden_size", c.hidden_size, MAX_HIDDEN),
        ("intermediate_size", c.intermediate_size, MAX_HIDDEN * 8),
        ("num_hidden_layers", c.num_hidden_layers, MAX_LAYERS),
        ("num_attention_heads", c.num_attention_heads, MAX_HIDDEN),
        (
            "max_position_embeddings",
            c.max_position_embeddings,
            MAX_POSITIONS,
        ),
        ("vocab_size", c.vocab_size, MAX_VOCAB),
        ("type_vocab_size", c.type_vocab_size, MAX_VOCAB),
    ];
    for (name, value, max) in ranges {
        if value == 0 || value > max {
            return Err(format!("{name} is {value}; expected 1 to {max}"));
        }
    }
    if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
        return Err(format!(
            "hidden_size {} is not a multiple of num_attention_heads {}",
            c.hidden_size, c.num_attention_heads
        ));
    }
    // A negative epsilon makes layer norm divide by the root of a negative variance: every
    // vector would come out NaN (null in JSON), with no error.
    if c.layer_norm_eps.is_nan() || c.layer_norm_eps < 0.0 {
        return Err(format!(
            "layer_norm_eps is {}; expected a number at least 0",
            c.layer_norm_eps
        ));
    }
    if c.pad_token_id >= c.vocab_size {
        return Err(format!(
            "pad_token_id {} is not below vocab_size {}",
            c.pad_token_id, c.vocab_size
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        dir
    }

    const MODULES: &str = r#"[
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}
    ]"#;

    #[test]
    fn cls_pooling_without_normalize() {
        let dir = folder_with(&[
            ("modules.json", MODULES),
            (
                "1_Pooling/config.json",
                r#"{"word_embedding_dimension": 8, "pooling_mode_cls_token": true}"#,
            ),
        ]);
        let pipeline = read_pipeline(dir.path()).expect("pipeline");
        assert_eq!(pipeline.pooling.modes(), &[PoolingMode::Cls]);
        assert_eq!(pipeline.pooling_dimension, 8);
        assert!(!pipeline.normalize);
        assert_eq!(pipeline.transformer_dir, dir.path().join(""));
    }

    #[test]
    fn a_dense_module_is_refused_by_name() {
        let modules = r#"[
            {"path": "", "type": "sentence_transformers.models.Transformer"},
            {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}
        ]"#;
        let dir = folder_with(&[("modules.json", modules)]);
        let error = read_pipeline(dir.path()).expect_err("dense");
        let text = error.to_string();
        assert!(
            text.contains("modules.json") && text.contains("Dense"),
            "{text}"
        );
    }

    #[test]
    fn a_module_path_outside_the_folder_is_refused() {
        let modules = MODULES.replace("1_Pooling", "../elsewhere");
        let dir = folder_with(&[("modules.json", &modules)]);
        let error = read_pipeline(dir.path()).expect_err("escape");
        assert!(
            error.to_string().contains("leaves the model folder"),
            "{error}"
        );
    }

    #[test]
    fn weighted_mean_and_no_mode_are_errors_naming_the_pooling_file() {
        for config in [
            r#"{"word_embedding_dimension": 8, "pooling_mode_weightedmean_tokens": true}"#,
            r#"{"word_embedding_dimension": 8}"#,
        ] {
            let dir = folder_with(&[("modules.json", MODULES), ("1_Pooling/config.json", config)]);
            let error = read_pipeline(dir.path()).expect_err(config);
            assert!(error.to_string().contains("1_Pooling"), "{error}");
        }
    }

    #[test]
    fn sentence_config_defaults_when_absent_and_fails_when_broken() {
        let dir = folder_with(&[]);
        let config = read_sentence_config(dir.path()).expect("defaults");
        assert_eq!(config.max_seq_length, None);
        let dir = folder_with(&[("sentence_bert_config.json", r#"{"max_seq_length": "long"}"#)]);
        let error = read_sentence_config(dir.path()).expect_err("broken");
        assert!(
            error.to_string().contains("sentence_bert_config.json"),
            "{error}"
        );
    }

    #[test]
    fn bert_config_shape_errors_are_named() {
        let base = r#"{"vocab_size": 100, "hidden_size": 10, "num_hidden_layers": 1,
            "num_attention_heads": 3, "intermediate_size": 20, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "max_position_embeddings": 16, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0}"#;
        let dir = folder_with(&[("config.json", base)]);
        let error = read_bert_config(dir.path()).expect_err("10 % 3");
        assert!(error.to_string().contains("num_attention_heads"), "{error}");

        let negative_eps = base
            .replace("\"num_attention_heads\": 3", "\"num_attention_heads\": 2")
            .replace("1e-12", "-1.0");
        let dir = folder_with(&[("config.json", &negative_eps)]);
        let error = read_bert_config(dir.path()).expect_err("negative eps");
        assert!(error.to_string().contains("layer_norm_eps"), "{error}");

        let roberta = base.replace(
            "\"vocab_size\"",
            "\"model_type\": \"xlm-roberta\", \"vocab_size\"",
        );
        let dir = folder_with(&[("config.json", &roberta)]);
        let error = read_bert_config(dir.path()).expect_err("roberta");
        assert_eq!(error.kind(), crate::EmbedErrorKind::Unsupported);
    }

    #[test]
    fn an_oversized_config_is_refused_before_reading() {
        let dir = folder_with(&[]);
        let path = dir.path().join("config.json");
        let file = std::fs::File::create(&path).expect("create");
        file.set_len(MAX_CONFIG_BYTES + 1).expect("grow");
        let error = read_bert_config(dir.path()).expect_err("too big");
        assert!(error.to_string().contains("bytes"), "{error}");
    }
}
