//! A damaged model folder: a copy of the real all-MiniLM-L6-v2 folder with one file removed or
//! broken must fail to load with an error naming that file, never panic.

mod common;

use std::path::Path;

use common::minilm_dir;
use moat_embed::{EmbedError, EmbedErrorKind, SentenceEmbedder};
use moat_engine::Embedder;

/// Copies the model folder into a fresh temp dir (real copies, so damage never reaches the
/// original).
fn copy_of_minilm() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_tree(&minilm_dir(), dir.path());
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

fn load_error(dir: &Path) -> EmbedError {
    match SentenceEmbedder::load(dir, "damaged") {
        Ok(_) => panic!("a damaged folder loaded"),
        Err(error) => error,
    }
}

/// Loads after `damage` and checks the error's kind and that it names `file`.
fn check(file: &str, kind: EmbedErrorKind, damage: impl FnOnce(&Path)) {
    let dir = copy_of_minilm();
    damage(&dir.path().join(file));
    let error = load_error(dir.path());
    let text = error.to_string();
    assert_eq!(error.kind(), kind, "{file}: {text}");
    assert!(
        error.path().is_some_and(|p| p.ends_with(file)),
        "{file}: {text}"
    );
    assert!(text.contains(file), "{file}: {text}");
}

fn remove(path: &Path) {
    std::fs::remove_file(path).expect("remove");
}

fn truncate_to_half(path: &Path) {
    let len = std::fs::metadata(path).expect("metadata").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open");
    file.set_len(len / 2).expect("truncate");
}

fn replace_in(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).expect("read");
    assert!(text.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).expect("write");
}

#[test]
fn each_missing_file_is_named() {
    for file in [
        "modules.json",
        "1_Pooling/config.json",
        "config.json",
        "tokenizer.json",
        "model.safetensors",
    ] {
        check(file, EmbedErrorKind::Read, remove);
    }
}

#[test]
fn each_truncated_file_is_named() {
    for file in [
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
        "config.json",
        "tokenizer.json",
        "model.safetensors",
    ] {
        check(file, EmbedErrorKind::Malformed, truncate_to_half);
    }
}

#[test]
fn a_safetensors_header_that_claims_too_much_is_named() {
    check("model.safetensors", EmbedErrorKind::Malformed, |path| {
        let mut bytes = std::fs::read(path).expect("read");
        bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(path, bytes).expect("write");
    });
}

#[test]
fn weights_that_do_not_match_the_config_are_named() {
    // A seventh layer the weights do not have.
    check("model.safetensors", EmbedErrorKind::Malformed, |path| {
        let config = path.with_file_name("config.json");
        replace_in(
            &config,
            "\"num_hidden_layers\": 6",
            "\"num_hidden_layers\": 7",
        );
    });
}

#[test]
fn a_pooling_dimension_that_is_not_the_hidden_size_is_named() {
    check("1_Pooling/config.json", EmbedErrorKind::Malformed, |path| {
        replace_in(path, "384", "768");
    });
}

#[test]
fn an_unsupported_architecture_is_named() {
    check("config.json", EmbedErrorKind::Unsupported, |path| {
        replace_in(
            path,
            "\"model_type\": \"bert\"",
            "\"model_type\": \"xlm-roberta\"",
        );
    });
}

#[test]
fn a_config_with_zero_heads_is_refused_not_a_division_by_zero() {
    check("config.json", EmbedErrorKind::Malformed, |path| {
        replace_in(
            path,
            "\"num_attention_heads\": 12",
            "\"num_attention_heads\": 0",
        );
    });
}

#[test]
fn a_tokenizer_with_ids_past_the_vocabulary_is_named() {
    check("tokenizer.json", EmbedErrorKind::Malformed, |path| {
        let config = path.with_file_name("config.json");
        replace_in(&config, "\"vocab_size\": 30522", "\"vocab_size\": 1000");
    });
}

#[test]
fn without_sentence_bert_config_the_limit_is_the_position_table() {
    let dir = copy_of_minilm();
    remove(&dir.path().join("sentence_bert_config.json"));
    let embedder = SentenceEmbedder::load(dir.path(), "no-st-config").expect("loads");
    assert_eq!(embedder.info().max_tokens, 512);
}
