//! Ingestion throughput: the whole corpus through `moat_rag::ingest` into a fresh
//! `SqliteStore` (parse, chunk, embed, write), then the index build, then the embedder alone
//! over the same chunks in the same batches (in the first `--embed-runs` runs, default all);
//! repeated `--runs` times, medians reported. The results file is rewritten after every run,
//! so an interrupted benchmark keeps the runs it finished.

use std::path::PathBuf;
use std::time::Instant;

use moat_engine::{EmbedInput, Embedder};
use moat_rag::{ingest, IngestOptions};
use moat_vector::VectorStore;
use serde_json::json;

use crate::args::Args;
use crate::common::{
    chunk_file, corpus_files, load_average, load_embedder, machine, median, model_dir, open_store,
    seconds, write_json, BenchError, KB,
};

pub fn run(argv: &[String]) -> Result<(), BenchError> {
    let args = Args::parse(argv, &["corpus", "runs", "embed-runs", "out", "model"])?;
    let corpus = args.path("corpus")?;
    let out = args.path("out")?;
    let runs: usize = args.number("runs", 3)?;
    let embed_runs: usize = args.number("embed-runs", runs)?;
    if runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let embedder = load_embedder(&model_dir(args.get("model"))?)?;
    let options = IngestOptions::default();

    // The chunks ingestion will make, for the embedder-alone runs (not timed).
    let started = Instant::now();
    let texts: Vec<String> = corpus_files(&corpus)?
        .iter()
        .filter_map(|path| chunk_file(path, &embedder))
        .flatten()
        .map(|chunk| chunk.text)
        .collect();
    let parse_chunk_s = seconds(started);
    let tokens: u64 = texts
        .iter()
        .map(|text| u64::from(embedder.count_tokens(text).unwrap_or(0)))
        .sum();

    let mut samples = Vec::new();
    for round in 1..=runs {
        let load_start = load_average();
        let work = tempfile::tempdir()?;
        let store = open_store(work.path(), &embedder)?;
        let started = Instant::now();
        let report = ingest(
            &store,
            &embedder,
            KB,
            std::slice::from_ref(&corpus),
            &options,
            &mut |_| {},
        )?;
        let ingest_s = seconds(started);
        let started = Instant::now();
        store.build_index(KB)?;
        let index_s = seconds(started);
        let kb = store.kb(KB)?;
        drop(store);

        let mut sample = json!({
            "run": round,
            "files_added": report.added,
            "files_failed": report.failed.len(),
            "failures": report.failed.iter().map(|f| format!("{}: {}", f.path, f.reason)).collect::<Vec<_>>(),
            "chunks": report.chunks,
            "kb_documents": kb.documents,
            "kb_chunks": kb.chunks,
            "ingest_s": ingest_s,
            "ingest_chunks_per_s": report.chunks as f64 / ingest_s,
            "index_build_s": index_s,
            "load_start": load_start,
        });
        eprintln!(
            "run {round}: {} files, {} chunks in {ingest_s:.1} s ingest ({:.1} chunks/s), index {index_s:.2} s; load {load_start} -> {}",
            report.added,
            report.chunks,
            report.chunks as f64 / ingest_s,
            load_average(),
        );
        if round <= embed_runs {
            let started = Instant::now();
            let mut embedded = 0usize;
            for batch in texts.chunks(options.batch_size) {
                let inputs: Vec<EmbedInput> = batch.iter().cloned().map(EmbedInput::Text).collect();
                embedded += embedder.embed(&inputs)?.vectors.len();
            }
            let embed_s = seconds(started);
            eprintln!(
                "run {round}: embedder alone {embedded} chunks in {embed_s:.1} s ({:.1} chunks/s)",
                embedded as f64 / embed_s
            );
            sample["embed_only_chunks"] = json!(embedded);
            sample["embed_only_s"] = json!(embed_s);
            sample["embed_only_chunks_per_s"] = json!(embedded as f64 / embed_s);
        }
        sample["load_end"] = load_average();
        samples.push(sample);
        let result = summary(&corpus, &options, &texts, tokens, parse_chunk_s, &samples);
        write_json(&out, &result)?;
        if round == runs {
            print_table(&result);
        }
    }
    Ok(())
}

/// The results file's content after the runs in `samples`.
fn summary(
    corpus: &std::path::Path,
    options: &IngestOptions,
    texts: &[String],
    tokens: u64,
    parse_chunk_s: f64,
    samples: &[serde_json::Value],
) -> serde_json::Value {
    let column =
        |name: &str| -> Vec<f64> { samples.iter().filter_map(|s| s[name].as_f64()).collect() };
    json!({
        "benchmark": "rag-ingest",
        "corpus": corpus_display(corpus),
        "machine": machine(),
        "model": crate::common::MODEL,
        "batch_size": options.batch_size,
        "chunk_max_tokens": options.chunk.max_tokens,
        "chunk_overlap_tokens": options.chunk.overlap_tokens,
        "chunks": texts.len(),
        "chunk_tokens_total": tokens,
        "chunk_tokens_mean": tokens as f64 / texts.len().max(1) as f64,
        "parse_and_chunk_s": parse_chunk_s,
        "runs": samples,
        "median": {
            "ingest_s": median(&column("ingest_s")),
            "ingest_chunks_per_s": median(&column("ingest_chunks_per_s")),
            "index_build_s": median(&column("index_build_s")),
            "embed_only_s": median(&column("embed_only_s")),
            "embed_only_chunks_per_s": median(&column("embed_only_chunks_per_s")),
            "embed_only_runs": column("embed_only_s").len(),
        },
    })
}

fn corpus_display(corpus: &std::path::Path) -> String {
    let version = std::fs::read_to_string(corpus.join(".corpus-version")).unwrap_or_default();
    let first = version.lines().next().unwrap_or("");
    format!(
        "{} ({first})",
        PathBuf::from(corpus.file_name().unwrap_or_default()).display()
    )
}

fn print_table(result: &serde_json::Value) {
    let m = &result["median"];
    let first = &result["runs"][0];
    println!(
        "\n### Ingestion ({} runs, medians; {} files, {} chunks, {:.0} tokens a chunk on average)\n",
        result["runs"].as_array().map_or(0, Vec::len),
        first["files_added"],
        first["chunks"],
        result["chunk_tokens_mean"].as_f64().unwrap_or(0.0),
    );
    println!("| stage | seconds | chunks/s |");
    println!("|---|---:|---:|");
    println!(
        "| `moat_rag::ingest` (parse, chunk, embed, write to SQLite) | {:.1} | {:.1} |",
        m["ingest_s"].as_f64().unwrap_or(0.0),
        m["ingest_chunks_per_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "| embedder alone, same chunks, batches of {} ({} runs) | {:.1} | {:.1} |",
        result["batch_size"],
        m["embed_only_runs"],
        m["embed_only_s"].as_f64().unwrap_or(0.0),
        m["embed_only_chunks_per_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "| HNSW index build after the ingest | {:.2} | |",
        m["index_build_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "| parse + chunk alone (once) | {:.1} | |",
        result["parse_and_chunk_s"].as_f64().unwrap_or(0.0)
    );
}
