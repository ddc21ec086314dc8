//! Reads Hugging Face folders: safetensors headers (tensor names, dtypes, shapes, offsets)
//! and `config.json`. The header is bounded and checked against the file size, so a damaged
//! or hostile file gives an error, not a huge allocation.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{LicenseFields, ModelInfo, TensorTypeStats};
use crate::error::{Result, StoreError};

const MAX_HEADER_BYTES: u64 = 100 << 20;

#[derive(Default)]
pub(crate) struct FolderFiles {
    pub weights: Vec<(String, PathBuf)>,
    pub config: Option<PathBuf>,
    pub tokenizer_config: Option<PathBuf>,
    pub readme: Option<PathBuf>,
}

#[derive(Deserialize)]
struct TensorEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// One tensor of a safetensors file.
#[derive(Debug)]
pub struct SafeTensor {
    pub name: String,
    pub dtype: String,
    pub elements: u64,
    pub bytes: u64,
}

/// Parses and checks a safetensors header: every tensor's bytes lie inside the file, the
/// data section is exactly covered, and each tensor's size matches its shape and dtype.
pub fn read_header(path: &Path, label: &str) -> Result<Vec<SafeTensor>> {
    let bad = |reason: String| {
        StoreError::NotAModel(label.into(), format!("bad safetensors file: {reason}"))
    };
    let mut file =
        File::open(path).map_err(StoreError::io(format!("opening {}", path.display())))?;
    let file_len = file
        .metadata()
        .map_err(StoreError::io("reading file size"))?
        .len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| bad("shorter than its 8-byte header length".into()))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || header_len > file_len.saturating_sub(8) {
        return Err(bad(format!(
            "header length {header_len} exceeds the file or the {MAX_HEADER_BYTES}-byte limit"
        )));
    }
    let mut header = Vec::with_capacity(header_len as usize);
    file.take(header_len)
        .read_to_end(&mut header)
        .map_err(StoreError::io("reading header"))?;
    let raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let data_len = file_len - 8 - header_len;
    let mut tensors = Vec::with_capacity(raw.len());
    let mut covered_end = 0u64;
    for (name, value) in raw {
        if name == "__metadata__" {
            continue;
        }
        let entry: TensorEntry =
            serde_json::from_value(value).map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        let [start, end] = entry.data_offsets;
        if start > end || end > data_len {
            return Err(bad(format!(
                "tensor '{name}' lies outside the file (truncated?)"
            )));
        }
        let elements = entry
            .shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d));
        let width = dtype_bytes(&entry.dtype);
        let expected = elements.zip(width).and_then(|(n, w)| n.checked_mul(w));
        if let Some(expected) = expected {
            if expected != end - start {
                return Err(bad(format!(
                    "tensor '{name}' holds {} bytes, its shape needs {expected}",
                    end - start
                )));
            }
        }
        covered_end = covered_end.max(end);
        tensors.push(SafeTensor {
            name,
            dtype: entry.dtype,
            elements: elements.unwrap_or(0),
            bytes: end - start,
        });
    }
    if covered_end != data_len {
        return Err(bad(format!(
            "data section is {data_len} bytes but tensors end at {covered_end}"
        )));
    }
    Ok(tensors)
}

fn dtype_bytes(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

pub(crate) fn inspect_folder(files: &FolderFiles) -> Result<ModelInfo> {
    let mut info = ModelInfo {
        format: "safetensors".into(),
        ..ModelInfo::default()
    };
    let mut by_type: BTreeMap<String, TensorTypeStats> = BTreeMap::new();
    for (label, path) in &files.weights {
        info.weights_size += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        for tensor in read_header(path, label)? {
            info.parameters += tensor.elements;
            info.tensor_bytes += tensor.bytes;
            let stats = by_type.entry(tensor.dtype).or_default();
            stats.tensors += 1;
            stats.elements += tensor.elements;
            stats.bytes += tensor.bytes;
        }
    }
    info.file_type = by_type
        .iter()
        .max_by_key(|(_, s)| s.bytes)
        .map(|(t, _)| t.clone());
    info.tensor_types = by_type;
    if let Some(config) = files.config.as_deref().and_then(read_json) {
        apply_config(&mut info, &config);
    }
    info.has_chat_template = files
        .tokenizer_config
        .as_deref()
        .and_then(read_json)
        .is_some_and(|tc| tc.get("chat_template").is_some_and(|t| !t.is_null()));
    if let Some(readme) = &files.readme {
        info.license = card_license(&std::fs::read_to_string(readme).unwrap_or_default());
    }
    Ok(info)
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn apply_config(info: &mut ModelInfo, config: &serde_json::Value) {
    let number = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| config.get(*k).and_then(|v| v.as_u64()))
    };
    info.architecture = config
        .get("model_type")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    info.model_name = config
        .get("_name_or_path")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    info.context_length = number(&["max_position_embeddings", "n_positions", "max_seq_len"]);
    info.embedding_length = number(&["hidden_size", "d_model", "n_embd"]);
    info.block_count = number(&["num_hidden_layers", "n_layer", "num_layers"]);
    info.feed_forward_length = number(&["intermediate_size", "n_inner", "ffn_dim"]);
    info.head_count = number(&["num_attention_heads", "n_head"]);
    info.head_count_kv = number(&["num_key_value_heads"]).or(info.head_count);
    info.vocab_size = number(&["vocab_size"]);
    info.sliding_window = number(&["sliding_window"]);
    let head_dim =
        number(&["head_dim"]).or_else(|| match (info.embedding_length, info.head_count) {
            (Some(e), Some(h)) if h > 0 => Some(e / h),
            _ => None,
        });
    info.key_length = head_dim;
    info.value_length = head_dim;
}

/// The `license`, `license_name` and `license_link` of a model card's YAML front matter.
pub fn card_license(card: &str) -> LicenseFields {
    let mut fields = LicenseFields::default();
    let mut lines = card.lines();
    if lines.next().map(str::trim) != Some("---") {
        return fields;
    }
    for line in lines.take_while(|l| l.trim() != "---") {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value
            .trim()
            .trim_matches(|c| c == '"' || c == '\'')
            .to_string();
        if value.is_empty() {
            continue;
        }
        match key.trim() {
            "license" => fields.license = Some(value),
            "license_name" => fields.license_name = Some(value),
            "license_link" => fields.license_link = Some(value),
            _ => {}
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_safetensors(dir: &Path, header: &str, data: &[u8]) -> PathBuf {
        let path = dir.join("model.safetensors");
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(data);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn reads_a_valid_header_and_rejects_damaged_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"F16","shape":[2],"data_offsets":[24,28]}}"#;
        let path = write_safetensors(dir.path(), ok, &[0u8; 28]);
        let tensors = read_header(&path, "m").expect("valid");
        assert_eq!(tensors.iter().map(|t| t.elements).sum::<u64>(), 8);

        let truncated = write_safetensors(dir.path(), ok, &[0u8; 20]);
        let err = read_header(&truncated, "m").expect_err("truncated");
        assert!(err.to_string().contains("outside the file"), "{err}");

        let wrong_shape = r#"{"w":{"dtype":"F32","shape":[7],"data_offsets":[0,24]}}"#;
        let path = write_safetensors(dir.path(), wrong_shape, &[0u8; 24]);
        assert!(read_header(&path, "m").is_err());

        let path = dir.path().join("huge.safetensors");
        std::fs::write(&path, u64::MAX.to_le_bytes()).expect("write");
        let err = read_header(&path, "m").expect_err("huge header length");
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    #[test]
    fn reads_model_card_front_matter() {
        let card = "---\nlanguage: en\nlicense: other\nlicense_name: qwen\nlicense_link: https://x/LICENSE\n---\n# Model\nlicense: not this";
        let fields = card_license(card);
        assert_eq!(fields.license.as_deref(), Some("other"));
        assert_eq!(fields.license_name.as_deref(), Some("qwen"));
        assert_eq!(
            card_license("# no front matter\nlicense: mit"),
            LicenseFields::default()
        );
    }
}
