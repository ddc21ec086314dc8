//! What a stored model is: architecture, size, quantization, context, attention shape,
//! vocabulary, chat template and license fields, read from the GGUF header or from a Hugging
//! Face folder (`config.json`, safetensors headers). [`memory`] turns that into a memory
//! estimate. Nothing here loads weights.

pub mod memory;
pub mod safetensors;

use std::collections::BTreeMap;
use std::path::Path;

use moat_gguf::GgufFile;
use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::manifest::{FileRole, Manifest, ModelFormat};
use crate::store::Store;

/// Everything `moat show` reports about a model. Field names are part of `show --json`
/// (see `docs/show-json.md`); add fields, never rename them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ModelInfo {
    pub format: String,
    pub architecture: Option<String>,
    /// `general.name` or the config's `_name_or_path`.
    pub model_name: Option<String>,
    /// Total tensor elements (an untied output layer counts).
    pub parameters: u64,
    /// GGUF `general.file_type` as llama.cpp names it (`Q4_1`, `Q4_K_M`), or the dominant
    /// safetensors dtype.
    pub file_type: Option<String>,
    /// Per tensor type: how many tensors, elements and bytes.
    pub tensor_types: BTreeMap<String, TensorTypeStats>,
    pub context_length: Option<u64>,
    pub embedding_length: Option<u64>,
    /// Width of the feed-forward layer.
    pub feed_forward_length: Option<u64>,
    pub block_count: Option<u64>,
    pub head_count: Option<u64>,
    pub head_count_kv: Option<u64>,
    pub key_length: Option<u64>,
    pub value_length: Option<u64>,
    pub sliding_window: Option<u64>,
    /// Which layers use the sliding window, when the model mixes window and full attention.
    pub sliding_window_pattern: Option<u64>,
    pub vocab_size: Option<u64>,
    pub has_chat_template: bool,
    pub license: LicenseFields,
    /// Bytes of the weights file(s).
    pub weights_size: u64,
    /// Bytes of tensor data (the weights file without its header).
    pub tensor_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TensorTypeStats {
    pub tensors: u64,
    pub elements: u64,
    pub bytes: u64,
}

/// License fields as the model's files state them (GGUF `general.license*`, the model card's
/// front matter), before any interpretation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LicenseFields {
    pub license: Option<String>,
    pub license_name: Option<String>,
    pub license_link: Option<String>,
}

/// Reads what `manifest` describes from the store's blobs.
pub fn inspect(store: &Store, manifest: &Manifest) -> Result<ModelInfo> {
    match manifest.format {
        ModelFormat::Gguf => {
            let weights = manifest
                .weights()
                .ok_or_else(|| StoreError::DamagedManifest {
                    path: store.manifests_dir(),
                    reason: format!("'{}' lists no weights file", manifest.name),
                })?;
            let path = store.file_path(manifest, &weights.digest)?;
            inspect_gguf(&path, &weights.path)
        }
        ModelFormat::Safetensors => {
            let mut folder = safetensors::FolderFiles::default();
            for file in &manifest.files {
                let path = store.file_path(manifest, &file.digest)?;
                match (file.role, file.path.as_str()) {
                    (FileRole::Weights, _) => folder.weights.push((file.path.clone(), path)),
                    (_, "config.json") => folder.config = Some(path),
                    (_, "tokenizer_config.json") => folder.tokenizer_config = Some(path),
                    (FileRole::Readme, _) => folder.readme = Some(path),
                    _ => {}
                }
            }
            safetensors::inspect_folder(&folder)
        }
    }
}

/// Reads a GGUF file's header into a [`ModelInfo`].
pub fn inspect_gguf(path: &Path, label: &str) -> Result<ModelInfo> {
    let gguf = GgufFile::open(path)
        .map_err(|e| StoreError::NotAModel(label.into(), format!("unreadable GGUF: {e}")))?;
    let weights_size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(info_from_gguf(&gguf, weights_size))
}

fn info_from_gguf(gguf: &GgufFile, weights_size: u64) -> ModelInfo {
    let mut tensor_types: BTreeMap<String, TensorTypeStats> = BTreeMap::new();
    let mut parameters = 0u64;
    let mut tensor_bytes = 0u64;
    for tensor in &gguf.tensors {
        let elements = tensor.n_elements().unwrap_or(0);
        let bytes = tensor.n_bytes().unwrap_or(0);
        parameters = parameters.saturating_add(elements);
        tensor_bytes = tensor_bytes.saturating_add(bytes);
        let stats = tensor_types
            .entry(tensor.ggml_type.name().to_string())
            .or_default();
        stats.tensors += 1;
        stats.elements = stats.elements.saturating_add(elements);
        stats.bytes = stats.bytes.saturating_add(bytes);
    }
    let arch = |suffix: &str| gguf.arch_u64(suffix);
    let head_count = arch("attention.head_count");
    let embedding_length = arch("embedding_length");
    let head_dim = match (embedding_length, head_count) {
        (Some(embd), Some(heads)) if heads > 0 => Some(embd / heads),
        _ => None,
    };
    let vocab_size = gguf
        .array_len("tokenizer.ggml.tokens")
        .or_else(|| arch("vocab_size"));
    ModelInfo {
        format: "gguf".into(),
        architecture: gguf.architecture().map(str::to_string),
        model_name: gguf.get_str("general.name").map(str::to_string),
        parameters,
        file_type: gguf.get_u64("general.file_type").map(|id| {
            moat_gguf::file_type_name(id as u32)
                .map(str::to_string)
                .unwrap_or(format!("type {id}"))
        }),
        tensor_types,
        context_length: arch("context_length"),
        embedding_length,
        feed_forward_length: arch("feed_forward_length"),
        block_count: arch("block_count"),
        head_count,
        head_count_kv: arch("attention.head_count_kv").or(head_count),
        key_length: arch("attention.key_length").or(head_dim),
        value_length: arch("attention.value_length").or(head_dim),
        sliding_window: arch("attention.sliding_window"),
        sliding_window_pattern: arch("attention.sliding_window_pattern"),
        vocab_size,
        has_chat_template: gguf
            .get_str("tokenizer.chat_template")
            .is_some_and(|t| !t.trim().is_empty()),
        license: LicenseFields {
            license: gguf.get_str("general.license").map(str::to_string),
            license_name: gguf.get_str("general.license.name").map(str::to_string),
            license_link: gguf.get_str("general.license.link").map(str::to_string),
        },
        weights_size,
        tensor_bytes,
    }
}
