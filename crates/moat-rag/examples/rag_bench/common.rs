//! What the three benchmarks share: the embedder and store they open, the labeled questions,
//! chunking files exactly as ingestion does, the machine's load, statistics and JSON output.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use moat_embed::SentenceEmbedder;
use moat_engine::Embedder;
use moat_rag::{chunk_document, parse_bytes, ChunkConfig, ParseOptions};
use moat_vector::{KbSpec, SqliteStore, VectorStore};
use serde_json::{json, Value};

pub type BenchError = Box<dyn std::error::Error>;

/// The knowledge base every benchmark writes into its own fresh store.
pub const KB: &str = "bench";
/// The model's folder name under `$MOAT_TEST_MODELS`.
pub const MODEL: &str = "all-minilm-l6-v2";

/// `--model DIR`, else `$MOAT_TEST_MODELS/all-minilm-l6-v2`, else under
/// `~/.cache/moat/test-models`.
pub fn model_dir(given: Option<&str>) -> Result<PathBuf, BenchError> {
    if let Some(dir) = given {
        return Ok(PathBuf::from(dir));
    }
    let root = match std::env::var_os("MOAT_TEST_MODELS").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home =
                std::env::var_os("HOME").ok_or("neither MOAT_TEST_MODELS nor HOME is set")?;
            Path::new(&home).join(".cache/moat/test-models")
        }
    };
    Ok(root.join(MODEL))
}

pub fn load_embedder(dir: &Path) -> Result<SentenceEmbedder, BenchError> {
    SentenceEmbedder::load(dir, MODEL)
        .map_err(|error| format!("cannot load the embedder from {}: {error}", dir.display()).into())
}

/// Opens a store in `dir` (created if needed) and creates the benchmark's knowledge base in it
/// unless it exists.
pub fn open_store(dir: &Path, embedder: &dyn Embedder) -> Result<SqliteStore, BenchError> {
    let store = SqliteStore::open(&dir.join("kb.sqlite"), &dir.join("index"))?;
    if store.kb(KB).is_err() {
        store.create_kb(&KbSpec {
            name: KB.into(),
            embed_model: MODEL.into(),
            dimension: embedder.info().dimension,
        })?;
    }
    Ok(store)
}

/// The 1, 5 and 15 minute load averages, so every measurement records how busy the machine
/// was at its start and end.
pub fn load_average() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let numbers: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .filter_map(|word| word.parse().ok())
        .collect();
    json!(numbers)
}

/// The machine as the results should name it: CPU model, cores, memory.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    json!({
        "cpu": cpu,
        "cores": moat_engine::compute::free_cores(),
        "memory_gib": (memory_kib as f64 / 1_048_576.0 * 10.0).round() / 10.0,
    })
}

/// Seconds since `start`.
pub fn seconds(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// The `p`th percentile by linear interpolation between the closest ranks; 0 when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let position = p / 100.0 * (sorted.len() - 1) as f64;
    let low = position.floor() as usize;
    let high = position.ceil() as usize;
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
}

pub fn write_json(path: &Path, value: &Value) -> Result<(), BenchError> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n")
        .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// One labeled question: the documents (paths relative to the corpus root) that answer it.
pub struct Question {
    pub id: String,
    pub question: String,
    pub docs: Vec<String>,
}

/// Reads `questions.jsonl`: one object a line with `id`, `question` and a non-empty `docs`.
pub fn read_questions(path: &Path) -> Result<Vec<Question>, BenchError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let mut questions = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{} line {}", path.display(), index + 1);
        let value: Value =
            serde_json::from_str(line).map_err(|error| format!("{}: {error}", at()))?;
        let field = |name: &str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .filter(|text| !text.trim().is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("{}: {name:?} must be a non-empty string", at()))
        };
        let docs: Vec<String> = value
            .get("docs")
            .and_then(Value::as_array)
            .map(|docs| {
                docs.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if docs.is_empty() {
            return Err(format!("{}: \"docs\" must list at least one path", at()).into());
        }
        questions.push(Question {
            id: field("id")?,
            question: field("question")?,
            docs,
        });
    }
    if questions.is_empty() {
        return Err(format!("{} holds no questions", path.display()).into());
    }
    Ok(questions)
}

/// The files of a corpus folder that ingestion would read, sorted (the benchmarks' corpora are
/// flat or plain trees without ignore files, so a plain walk finds the same set).
pub fn corpus_files(root: &Path) -> Result<Vec<PathBuf>, BenchError> {
    let mut files = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .map_err(|error| format!("cannot read {}: {error}", folder.display()))?;
        for entry in entries {
            let entry = entry?;
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let kind = entry.file_type()?;
            if hidden || kind.is_symlink() {
                continue;
            }
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The chunks of one file exactly as `moat_rag::ingest` makes them with default options
/// (the same parser, budget and token counting); `None` for a file ingestion would reject.
pub fn chunk_file(path: &Path, embedder: &dyn Embedder) -> Option<Vec<moat_rag::Chunk>> {
    let bytes = std::fs::read(path).ok()?;
    let name = path.file_name()?.to_str()?;
    let document = parse_bytes(name, &bytes, &ParseOptions::default()).ok()?;
    let failed = RefCell::new(false);
    let count = |text: &str| match embedder.count_tokens(text) {
        Ok(tokens) => tokens as usize,
        Err(_) => {
            *failed.borrow_mut() = true;
            usize::MAX
        }
    };
    let chunks = chunk_document(&document, &ChunkConfig::default(), &count).ok()?;
    (!failed.into_inner() && !chunks.is_empty()).then_some(chunks)
}
