//! The reader against real GGUF files from the model hubs, whole and cut.
//!
//! Models come from the directory in `MOAT_TEST_MODELS`; when it is unset the
//! tests print a notice and pass, and when it is set every model must be there,
//! complete. The expected numbers are what the files say (checked with a
//! separate dump), not what model cards round them to. This file knows nothing
//! of the reader's internals, only its public API.

use std::fs;
use std::path::{Path, PathBuf};

use moat_gguf::{file_type_name, GgufError, GgufErrorKind, GgufFile, Limits};

const SMOLLM2: (&str, u64) = ("smollm2-135m-instruct-q4_1.gguf", 98_362_432);
const QWEN_CODER: (&str, u64) = ("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 491_400_064);
const GEMMA3: (&str, u64) = ("gemma-3-270m-q4_k_m.gguf", 253_113_024);

fn models_dir() -> Option<PathBuf> {
    match std::env::var_os("MOAT_TEST_MODELS") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            println!("skipping: MOAT_TEST_MODELS unset");
            None
        }
    }
}

/// The path of a model that must be present and complete.
fn model_path(dir: &Path, (name, size): (&str, u64)) -> PathBuf {
    let path = dir.join(name);
    let found = fs::metadata(&path)
        .unwrap_or_else(|err| {
            panic!(
                "{}: {err}; MOAT_TEST_MODELS is set, so every test model must be there",
                path.display()
            )
        })
        .len();
    assert_eq!(found, size, "{}: incomplete download?", path.display());
    path
}

fn open(path: &Path) -> GgufFile {
    GgufFile::open(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// What every complete model must satisfy, whatever its architecture.
fn check_consistent(file: &GgufFile, size: u64) {
    assert_eq!(file.version, 3);
    assert_eq!(file.alignment, 32);
    assert_eq!(file.file_size, Some(size));
    assert!(file.tensors.iter().all(|t| t.ggml_type.is_known()));
    assert_eq!(file.tensor_data_end().ok(), Some(size));
    // Real models carry no hyperparameter llama.cpp would abort on.
    if let Err(err) = moat_gguf::check_llama_safe(file) {
        panic!("{err}");
    }
}

#[test]
fn smollm2_header_matches_the_file() {
    let Some(dir) = models_dir() else { return };
    let file = open(&model_path(&dir, SMOLLM2));
    check_consistent(&file, SMOLLM2.1);
    assert_eq!(file.architecture(), Some("llama"));
    assert_eq!(file.arch_u64("context_length"), Some(8192));
    assert_eq!(file.arch_u64("block_count"), Some(30));
    assert_eq!(file.file_type(), Some(3));
    assert_eq!(file.file_type().and_then(file_type_name), Some("Q4_1"));
    assert_eq!(file.array_len("tokenizer.ggml.tokens"), Some(49_152));
    assert_eq!(file.array_len("tokenizer.ggml.merges"), Some(48_900));
    assert_eq!(file.tensors.len(), 272);
    assert_eq!(file.total_elements().ok(), Some(134_515_008));
    assert_eq!(file.data_offset, 1_785_664);
    assert!(file.get_str("tokenizer.chat_template").is_some());
}

#[test]
fn qwen2_5_coder_header_matches_the_file() {
    let Some(dir) = models_dir() else { return };
    let file = open(&model_path(&dir, QWEN_CODER));
    check_consistent(&file, QWEN_CODER.1);
    assert_eq!(file.architecture(), Some("qwen2"));
    assert_eq!(file.arch_u64("context_length"), Some(32_768));
    assert_eq!(file.arch_f64("rope.freq_base"), Some(1_000_000.0));
    assert_eq!(file.file_type().and_then(file_type_name), Some("Q4_K_M"));
    assert_eq!(file.array_len("tokenizer.ggml.tokens"), Some(151_936));
    assert_eq!(file.tensors.len(), 291);
    // Tied embeddings in the original, but the GGUF stores output.weight too.
    let output = file.tensor("output.weight").expect("output.weight");
    assert_eq!(output.dims, [896, 151_936]);
    assert_eq!(file.total_elements().ok(), Some(630_167_424));
}

#[test]
fn gemma_3_header_matches_the_file() {
    let Some(dir) = models_dir() else { return };
    let file = open(&model_path(&dir, GEMMA3));
    check_consistent(&file, GEMMA3.1);
    assert_eq!(file.architecture(), Some("gemma3"));
    assert_eq!(file.get_str("general.license"), Some("gemma"));
    assert_eq!(file.get("tokenizer.chat_template"), None);
    assert_eq!(file.array_len("tokenizer.ggml.tokens"), Some(262_144));
    assert_eq!(file.array_len("tokenizer.ggml.scores"), Some(262_144));
    assert_eq!(file.arch_u64("context_length"), Some(32_768));
    assert_eq!(file.file_type().and_then(file_type_name), Some("Q4_K_M"));
    assert_eq!(file.tensors.len(), 236);
    assert_eq!(file.total_elements().ok(), Some(268_098_176));
}

/// The first `data_offset` bytes of SmolLM2: everything but the tensor data.
fn smollm2_header(dir: &Path) -> (PathBuf, GgufFile, Vec<u8>) {
    let path = model_path(dir, SMOLLM2);
    let file = open(&path);
    let mut bytes = fs::read(&path).expect("read model");
    bytes.truncate(file.data_offset as usize);
    (path, file, bytes)
}

fn assert_truncated(err: &GgufError, cut: u64) {
    assert_eq!(err.kind(), GgufErrorKind::Truncated, "cut {cut}: {err}");
    let message = err.to_string();
    assert!(
        message.starts_with("truncated GGUF: ") && message.contains(" byte "),
        "cut {cut}: {message}"
    );
}

#[test]
fn smollm2_every_cut_of_the_header_is_rejected() {
    let Some(dir) = models_dir() else { return };
    let (_, _, header) = smollm2_header(&dir);
    let len = header.len();
    let rest = len.saturating_sub(64 << 10);
    let mut cuts: Vec<usize> = (0..(64 << 10).min(len)).collect();
    cuts.extend((0..2000).map(|i| (64 << 10) + i * rest / 2000));
    cuts.push(len - 1);
    // Two halves on two threads: the later cuts parse most of the vocabulary.
    let (first, second) = cuts.split_at(cuts.len() / 2);
    std::thread::scope(|scope| {
        for part in [first, second] {
            let header = &header;
            scope.spawn(move || {
                for &cut in part {
                    let err = GgufFile::parse(&header[..cut]).expect_err("a cut header");
                    assert_truncated(&err, cut as u64);
                }
            });
        }
    });
}

#[test]
fn smollm2_cuts_in_the_tensor_data_name_the_tensor() {
    let Some(dir) = models_dir() else { return };
    let (_, full, header) = smollm2_header(&dir);
    let file_len = SMOLLM2.1;
    let data_len = file_len - full.data_offset;
    let mut cuts: Vec<u64> = (0..200)
        .map(|i| full.data_offset + i * data_len / 200)
        .collect();
    cuts.push(file_len - 1);
    for cut in cuts {
        // The header bytes are all there; only the declared total is cut.
        let err =
            GgufFile::read(&header[..], Some(cut), &Limits::default()).expect_err("data cut short");
        assert_truncated(&err, cut);
        let first_past_cut = full
            .tensors
            .iter()
            .find(|t| full.data_offset + t.offset + t.n_bytes().unwrap_or(0) > cut)
            .expect("some tensor ends past the cut");
        match err {
            GgufError::TensorOutOfBounds {
                name, file_size, ..
            } => {
                assert_eq!(name, first_past_cut.name, "cut {cut}");
                assert_eq!(file_size, cut);
            }
            other => panic!("cut {cut}: {other}"),
        }
    }
}

#[test]
fn smollm2_one_byte_short_on_disk_is_rejected_by_open() {
    let Some(dir) = models_dir() else { return };
    let (_, full, header) = smollm2_header(&dir);
    let path = std::env::temp_dir().join(format!("moat-gguf-cut-{}.gguf", std::process::id()));
    let written = fs::write(&path, &header).and_then(|()| {
        // A sparse tail: open() must not read the data, only check its extent.
        fs::OpenOptions::new()
            .write(true)
            .open(&path)?
            .set_len(SMOLLM2.1 - 1)
    });
    let result = written.map(|()| GgufFile::open(&path));
    let _ = fs::remove_file(&path);
    let err = result.expect("temp file").expect_err("one byte short");
    let last = full
        .tensors
        .iter()
        .max_by_key(|t| t.offset)
        .expect("tensors");
    assert!(
        matches!(&err, GgufError::TensorOutOfBounds { name, end, file_size }
            if *name == last.name && *end == SMOLLM2.1 && *file_size == SMOLLM2.1 - 1),
        "{err}"
    );
    println!("{err}");
}
