//! Shared helpers for moat-embed's tests: the real all-MiniLM-L6-v2 folder and the committed
//! reference vectors.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use moat_embed::SentenceEmbedder;
use moat_engine::EmbedInput;

/// The all-MiniLM-L6-v2 folder from `$MOAT_TEST_MODELS` (default ~/.cache/moat/test-models).
/// These tests have no fallback: without the model they fail, saying how to get it.
pub fn minilm_dir() -> PathBuf {
    let root = std::env::var_os("MOAT_TEST_MODELS")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/moat/test-models"))
        })
        .expect("neither MOAT_TEST_MODELS nor HOME is set");
    let dir = root.join("all-minilm-l6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "the test model {} is missing; run scripts/fetch-test-models.sh",
        dir.display()
    );
    dir
}

pub fn load_minilm() -> SentenceEmbedder {
    SentenceEmbedder::load(&minilm_dir(), "all-minilm-l6-v2").expect("all-MiniLM-L6-v2 loads")
}

/// `tests/fixtures/minilm-reference.json`, made by `scripts/embed_reference.py`.
pub struct Reference {
    pub texts: Vec<String>,
    pub token_counts: Vec<usize>,
    pub vectors: Vec<Vec<f32>>,
    pub max_seq_length: usize,
}

pub fn reference() -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm-reference.json");
    let text = std::fs::read_to_string(&path).expect("the reference fixture");
    let json: serde_json::Value = serde_json::from_str(&text).expect("reference JSON");
    let field = |name: &str| json[name].clone();
    let reference = Reference {
        texts: serde_json::from_value(field("texts")).expect("texts"),
        token_counts: serde_json::from_value(field("token_counts")).expect("token_counts"),
        vectors: serde_json::from_value(field("vectors")).expect("vectors"),
        max_seq_length: serde_json::from_value(field("max_seq_length")).expect("max_seq_length"),
    };
    assert_eq!(json["model"], "all-minilm-l6-v2");
    assert_eq!(reference.texts.len(), reference.vectors.len());
    assert_eq!(reference.texts.len(), reference.token_counts.len());
    reference
}

/// The inputs that give the reference's vectors: each text as is, except texts longer than the
/// model's limit, which sentence-transformers truncates; moat refuses them, so they go in as
/// their first `max - 2` token ids (the embedder adds [CLS] and [SEP]), exactly what
/// sentence-transformers' truncation keeps.
pub fn reference_inputs(embedder: &SentenceEmbedder, reference: &Reference) -> Vec<EmbedInput> {
    reference
        .texts
        .iter()
        .map(|text| {
            let ids = embedder.token_ids(text).expect("tokenize");
            if ids.len() + 2 > reference.max_seq_length {
                EmbedInput::Tokens(ids[..reference.max_seq_length - 2].to_vec())
            } else {
                EmbedInput::Text(text.clone())
            }
        })
        .collect()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "vector lengths differ");
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}
