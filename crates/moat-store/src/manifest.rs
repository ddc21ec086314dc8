//! The manifest: what a model name stands for. It lists the model's files (each a blob named
//! by its sha256), where they came from, and the per-model settings a user may add: default
//! sampling, a system prompt, a chat-template override, a license override and adapters.
//! Stored as JSON at `models/manifests/<name>/<tag>.json`.

use moat_types::{Digest, ModelRef, SamplingDefaults};
use serde::{Deserialize, Serialize};

pub const MANIFEST_SCHEMA: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema: u32,
    pub name: ModelRef,
    pub format: ModelFormat,
    pub files: Vec<ManifestFile>,
    pub source: SourceRecord,
    /// Seconds since the Unix epoch when the model was pulled.
    pub created_unix: u64,
    #[serde(default, skip_serializing_if = "SamplingDefaults::is_empty")]
    pub sampling: SamplingDefaults,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// A license id the user asserts, overriding what the files say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adapters: Vec<Adapter>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    /// One GGUF file.
    Gguf,
    /// A Hugging Face folder: safetensors weights, config.json, tokenizer.json.
    Safetensors,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Path relative to the model's root, with `/` separators.
    pub path: String,
    pub digest: Digest,
    pub size: u64,
    pub role: FileRole,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRole {
    Weights,
    Config,
    Tokenizer,
    License,
    Readme,
    Other,
}

impl FileRole {
    /// Guesses the role of a file in a model folder from its name.
    pub fn for_path(path: &str) -> Self {
        let file = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
        if file.ends_with(".gguf") || file.ends_with(".safetensors") {
            Self::Weights
        } else if file.starts_with("license") || file == "notice" || file == "use_policy.md" {
            Self::License
        } else if file == "readme.md" {
            Self::Readme
        } else if file.starts_with("tokenizer") || file == "vocab.txt" || file.ends_with(".model") {
            Self::Tokenizer
        } else if file.ends_with(".json") {
            Self::Config
        } else {
            Self::Other
        }
    }
}

/// Where a model came from, for `moat show` and for pulling it again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRecord {
    /// The source as the user gave it, such as `hf:org/repo/file.gguf`.
    pub uri: String,
    /// A revision, commit or package version where the source has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adapter {
    pub name: String,
    pub digest: Digest,
    #[serde(default = "default_scale")]
    pub scale: f32,
}

fn default_scale() -> f32 {
    1.0
}

impl Manifest {
    /// A manifest of one GGUF file (`model.gguf`) under `name`, for tests.
    #[cfg(test)]
    pub(crate) fn single_gguf(name: ModelRef, digest: Digest, size: u64) -> Manifest {
        Manifest {
            schema: MANIFEST_SCHEMA,
            name,
            format: ModelFormat::Gguf,
            files: vec![ManifestFile {
                path: "model.gguf".into(),
                digest,
                size,
                role: FileRole::Weights,
            }],
            source: SourceRecord {
                uri: "test".into(),
                revision: None,
            },
            created_unix: 0,
            sampling: Default::default(),
            system_prompt: None,
            chat_template: None,
            license: None,
            adapters: Vec::new(),
        }
    }

    /// The main weights file (the GGUF, or the first safetensors shard).
    pub fn weights(&self) -> Option<&ManifestFile> {
        self.files
            .iter()
            .find(|file| file.role == FileRole::Weights)
    }

    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|file| file.size).sum()
    }

    pub fn digests(&self) -> impl Iterator<Item = &Digest> {
        self.files
            .iter()
            .map(|f| &f.digest)
            .chain(self.adapters.iter().map(|a| &a.digest))
    }

    pub fn file(&self, path: &str) -> Option<&ManifestFile> {
        self.files.iter().find(|file| file.path == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_hugging_face_names() {
        let cases = [
            ("model.gguf", FileRole::Weights),
            ("model-00001-of-00002.safetensors", FileRole::Weights),
            ("config.json", FileRole::Config),
            ("1_Pooling/config.json", FileRole::Config),
            ("tokenizer.json", FileRole::Tokenizer),
            ("tokenizer_config.json", FileRole::Tokenizer),
            ("vocab.txt", FileRole::Tokenizer),
            ("LICENSE", FileRole::License),
            ("LICENSE.txt", FileRole::License),
            ("README.md", FileRole::Readme),
            ("notes.bin", FileRole::Other),
        ];
        for (path, role) in cases {
            assert_eq!(FileRole::for_path(path), role, "{path}");
        }
    }
}
