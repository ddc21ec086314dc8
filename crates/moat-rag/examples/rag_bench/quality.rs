//! Retrieval quality: ingests a corpus, asks every labeled question in text (BM25), vector and
//! hybrid mode, and scores the ranking at the document level.
//!
//! A question's documents are ranked by their best chunk: the chunks of `retrieve` with
//! `top_k = 50` (the default candidate count, `4 * top_k`), each document counted at its first
//! appearance. recall@k is the share of questions with a labeled document among the first k
//! documents; MRR is the mean of 1 / the rank of the first labeled document (0 when none is in
//! the first 10). "chunk hit@5" is what a grounded answer sees: whether any of the 5 chunks of
//! a default retrieval (`top_k = 5`) comes from a labeled document.

use std::path::{Path, PathBuf};
use std::time::Instant;

use moat_rag::{ingest, retrieve, IdentityReranker, IngestOptions, RetrieveParams, SearchMode};
use moat_vector::{SqliteStore, VectorStore};
use serde_json::{json, Value};

use crate::args::Args;
use crate::common::{
    load_average, load_embedder, machine, model_dir, open_store, read_questions, seconds,
    write_json, BenchError, Question, KB,
};

const MODES: [(&str, SearchMode); 3] = [
    ("text", SearchMode::Text),
    ("vector", SearchMode::Vector),
    ("hybrid", SearchMode::Hybrid),
];
/// Chunks retrieved to rank documents.
const DOC_TOP_K: usize = 50;
/// The depth of the document ranking MRR looks at.
const MRR_DEPTH: usize = 10;

pub fn run(argv: &[String]) -> Result<(), BenchError> {
    let args = Args::parse(
        argv,
        &["corpus", "questions", "out", "model", "label", "store"],
    )?;
    let corpus = args.path("corpus")?;
    let questions = read_questions(&args.path("questions")?)?;
    let out = args.path("out")?;
    let embedder = load_embedder(&model_dir(args.get("model"))?)?;

    // `--store DIR` keeps the knowledge base between runs: ingestion is incremental, so a
    // second run over the same corpus and parser only asks the questions.
    let work = tempfile::tempdir()?;
    let store_dir = args
        .get("store")
        .map_or_else(|| work.path().to_path_buf(), PathBuf::from);
    let store = open_store(&store_dir, &embedder)?;
    let started = Instant::now();
    let report = ingest(
        &store,
        &embedder,
        KB,
        std::slice::from_ref(&corpus),
        &IngestOptions::default(),
        &mut |_| {},
    )?;
    store.build_index(KB)?;
    let ingest_s = seconds(started);
    let kb = store.kb(KB)?;
    eprintln!(
        "ingested {} documents, {} chunks in {ingest_s:.1} s ({} failed)",
        kb.documents,
        kb.chunks,
        report.failed.len()
    );
    let prefix = corpus_prefix(&store)?;
    check_labels(&questions, &store, &prefix)?;

    let load_start = load_average();
    let mut per_question = Vec::new();
    let mut summary = serde_json::Map::new();
    for (name, mode) in MODES {
        let mut ranks = Vec::new();
        let mut chunk_hits = 0usize;
        for question in &questions {
            let documents = ranked_documents(&store, &embedder, &question.question, mode)?;
            let rank = documents
                .iter()
                .position(|path| is_labeled(question, &prefix, path))
                .map(|index| index + 1);
            let top5 = retrieve(
                &store,
                &embedder,
                KB,
                &question.question,
                &RetrieveParams {
                    mode,
                    ..RetrieveParams::default()
                },
                &IdentityReranker,
            )?;
            let chunk_hit = top5
                .iter()
                .any(|hit| is_labeled(question, &prefix, &hit.hit.path));
            chunk_hits += usize::from(chunk_hit);
            ranks.push(rank);
            per_question.push(json!({
                "id": question.id,
                "mode": name,
                "doc_rank": rank,
                "chunk_hit_at_5": chunk_hit,
                "top_documents": documents.iter().take(5).map(|p| strip(&prefix, p)).collect::<Vec<_>>(),
            }));
        }
        summary.insert(name.to_owned(), metrics(&ranks, chunk_hits));
    }
    let load_end = load_average();

    let result = json!({
        "benchmark": "rag-quality",
        "label": args.get("label").unwrap_or(""),
        "corpus": corpus_version(&corpus),
        "machine": machine(),
        "model": crate::common::MODEL,
        "documents": kb.documents,
        "chunks": kb.chunks,
        "ingest_failures": report.failed.iter().map(|f| format!("{}: {}", f.path, f.reason)).collect::<Vec<_>>(),
        "questions": questions.len(),
        "method": format!(
            "documents ranked by their best chunk among retrieve(top_k = {DOC_TOP_K}); recall@k: a labeled document among the first k documents; MRR over the first {MRR_DEPTH}; chunk_hit_at_5: a labeled document among the 5 chunks of a default retrieve (top_k 5)"
        ),
        "load_start": load_start,
        "load_end": load_end,
        "summary": summary,
        "per_question": per_question,
    });
    write_json(&out, &result)?;
    print_table(&result);
    Ok(())
}

/// Documents in the order of their best chunk.
fn ranked_documents(
    store: &SqliteStore,
    embedder: &dyn moat_engine::Embedder,
    query: &str,
    mode: SearchMode,
) -> Result<Vec<String>, BenchError> {
    let params = RetrieveParams {
        mode,
        top_k: DOC_TOP_K,
        ..RetrieveParams::default()
    };
    let hits = retrieve(store, embedder, KB, query, &params, &IdentityReranker)?;
    let mut documents: Vec<String> = Vec::new();
    for hit in hits {
        if !documents.contains(&hit.hit.path) {
            documents.push(hit.hit.path);
        }
    }
    Ok(documents)
}

fn metrics(ranks: &[Option<usize>], chunk_hits: usize) -> Value {
    let n = ranks.len().max(1) as f64;
    let recall = |k: usize| ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n;
    let mrr = ranks
        .iter()
        .map(|r| match r {
            Some(rank) if *rank <= MRR_DEPTH => 1.0 / *rank as f64,
            _ => 0.0,
        })
        .sum::<f64>()
        / n;
    json!({
        "recall_at_1": recall(1),
        "recall_at_5": recall(5),
        "recall_at_10": recall(10),
        "mrr_at_10": mrr,
        "chunk_hit_at_5": chunk_hits as f64 / n,
    })
}

/// The key prefix ingestion gave the corpus's documents (its folder's name and a `/`).
fn corpus_prefix(store: &SqliteStore) -> Result<String, BenchError> {
    let documents = store.documents(KB)?;
    let first = documents
        .first()
        .ok_or("the corpus produced no documents")?;
    Ok(first
        .path
        .split_once('/')
        .map(|(folder, _)| format!("{folder}/"))
        .unwrap_or_default())
}

fn strip<'a>(prefix: &str, path: &'a str) -> &'a str {
    path.strip_prefix(prefix).unwrap_or(path)
}

fn is_labeled(question: &Question, prefix: &str, path: &str) -> bool {
    let path = strip(prefix, path);
    question.docs.iter().any(|doc| doc == path)
}

/// Every labeled document must be in the knowledge base, or a question could never be found.
fn check_labels(
    questions: &[Question],
    store: &SqliteStore,
    prefix: &str,
) -> Result<(), BenchError> {
    let documents: Vec<String> = store
        .documents(KB)?
        .into_iter()
        .map(|d| strip(prefix, &d.path).to_owned())
        .collect();
    for question in questions {
        if let Some(missing) = question.docs.iter().find(|doc| !documents.contains(doc)) {
            return Err(format!(
                "question {} names {missing}, which is not in the knowledge base",
                question.id
            )
            .into());
        }
    }
    Ok(())
}

fn corpus_version(corpus: &Path) -> Value {
    let text = std::fs::read_to_string(corpus.join(".corpus-version")).unwrap_or_default();
    json!(text.lines().collect::<Vec<_>>())
}

fn print_table(result: &Value) {
    println!(
        "\n### Retrieval quality ({} questions, {} documents, {} chunks{})\n",
        result["questions"],
        result["documents"],
        result["chunks"],
        match result["label"].as_str() {
            Some(label) if !label.is_empty() => format!("; {label}"),
            _ => String::new(),
        }
    );
    println!("| mode | recall@1 | recall@5 | recall@10 | MRR@10 | chunk hit@5 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, _) in MODES {
        let m = &result["summary"][name];
        let f = |key: &str| m[key].as_f64().unwrap_or(0.0);
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            f("recall_at_1"),
            f("recall_at_5"),
            f("recall_at_10"),
            f("mrr_at_10"),
            f("chunk_hit_at_5")
        );
    }
}
