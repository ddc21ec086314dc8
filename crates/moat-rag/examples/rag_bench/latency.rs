//! Query latency and ANN recall at 100k chunks.
//!
//! The knowledge base: `--real` chunks (10,000) of real documentation, chunked as ingestion
//! does and embedded with the real model, plus synthetic chunks up to `--total` (100,000). A
//! synthetic chunk mixes two real chunks picked at random: its text is the first half of one's
//! words followed by the second half of the other's, and its vector is
//! `normalize(t * a + (1 - t) * b + noise)` with `t` uniform in [0.3, 0.7] and Gaussian noise of
//! expected norm 0.25, so the vectors stay in the region real embeddings occupy without being
//! near-duplicates of them. Chunks are written 100 to a document through `replace_document`,
//! then the HNSW index is rebuilt from SQLite (timed).
//!
//! Queries: the labeled questions plus section headings of the real chunks, up to `--queries`,
//! embedded first (their embedding is timed apart and excluded from the latencies). Each query
//! runs through `moat_rag::retrieve` (default parameters: top_k 5, 20 candidates a search) in
//! hybrid, vector and text mode, with an embedder that returns the precomputed vector; one
//! unmeasured pass warms the caches, then `--passes` passes are timed, modes interleaved.
//! ANN recall@10 compares `search_vector` with `search_exact` for every query.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use moat_engine::{EmbedInput, Embedder, EmbedderInfo, Embeddings, EngineError};
use moat_rag::{retrieve, IdentityReranker, RetrieveParams, SearchMode};
use moat_vector::{Filter, Location, NewChunk, NewDocument, VectorStore};
use serde_json::{json, Value};

use crate::args::Args;
use crate::common::{
    chunk_file, corpus_files, load_average, load_embedder, machine, model_dir, open_store,
    percentile, read_questions, seconds, write_json, BenchError, KB,
};

const CHUNKS_PER_DOCUMENT: usize = 100;
const EMBED_BATCH: usize = 32;
const RECALL_K: usize = 10;

/// A real chunk: its text and heading path.
struct RealChunk {
    text: String,
    heading: String,
}

/// The real chunks with their vectors, and how they were made (chunking and embedding time).
struct RealSet {
    chunks: Vec<RealChunk>,
    vectors: Vec<Vec<f32>>,
    meta: Value,
}

pub fn run(argv: &[String]) -> Result<(), BenchError> {
    let args = Args::parse(
        argv,
        &[
            "sources",
            "questions",
            "work",
            "out",
            "model",
            "total",
            "real",
            "queries",
            "passes",
            "seed",
            "reuse-index",
        ],
    )?;
    let sources: Vec<PathBuf> = args.all("sources").into_iter().map(PathBuf::from).collect();
    if sources.is_empty() {
        return Err("--sources DIR is required (repeat it for several folders)".into());
    }
    let work = args.path("work")?;
    let out = args.path("out")?;
    let total: usize = args.number("total", 100_000)?;
    let real_count: usize = args.number("real", 10_000)?;
    let query_count: usize = args.number("queries", 200)?;
    let passes: usize = args.number("passes", 3)?;
    let seed: u64 = args.number("seed", 42)?;
    // `--reuse-index 1` loads the index file a previous run wrote instead of timing a rebuild
    // (minutes at 100k chunks) when only the query latencies are wanted.
    let reuse_index = args.number("reuse-index", 0u8)? == 1;
    if real_count < 2 || total < real_count || passes == 0 || query_count == 0 {
        return Err("need --real >= 2, --total >= --real, --passes >= 1 and --queries >= 1".into());
    }
    std::fs::create_dir_all(&work)?;
    let embedder = load_embedder(&model_dir(args.get("model"))?)?;

    let RealSet {
        chunks: real,
        vectors: real_vectors,
        meta: real_embed,
    } = real_chunks(&sources, real_count, &work, &embedder)?;
    let kb_dir = work.join(format!("kb-{total}-{real_count}-{seed}"));
    let build = build_kb(&kb_dir, &embedder, &real, &real_vectors, total, seed)?;

    // The index build: from SQLite, in a fresh process state, with no index file to load.
    let store = open_store(&kb_dir, &embedder)?;
    let index_file = store.index_path(KB)?;
    drop(store);
    if index_file.exists() && !reuse_index {
        std::fs::remove_file(&index_file)?;
    }
    let load_index_start = load_average();
    let store = open_store(&kb_dir, &embedder)?;
    let started = Instant::now();
    store.build_index(KB)?;
    let index_build_s = seconds(started);
    let load_index_end = load_average();
    eprintln!(
        "index {} in {index_build_s:.1} s; load {load_index_start} -> {load_index_end}",
        if store.index_stats().loads > 0 {
            "loaded"
        } else {
            "built"
        }
    );
    let index_loaded = store.index_stats().loads > 0;
    let kb = store.kb(KB)?;

    // Queries, embedded before anything is timed.
    let questions = read_questions(&args.path("questions")?)?;
    let queries = pick_queries(&questions, &real, query_count, seed);
    let started = Instant::now();
    let mut query_embed_ms = Vec::new();
    let mut vectors: HashMap<String, Vec<f32>> = HashMap::new();
    for query in &queries {
        let one = Instant::now();
        let embedded = embedder.embed(&[EmbedInput::Text(query.clone())])?;
        query_embed_ms.push(one.elapsed().as_secs_f64() * 1e3);
        let vector = embedded
            .vectors
            .into_iter()
            .next()
            .ok_or("no vector for a query")?;
        vectors.insert(query.clone(), vector);
    }
    eprintln!(
        "{} queries embedded in {:.1} s",
        queries.len(),
        seconds(started)
    );
    let precomputed = Precomputed {
        info: embedder.info().clone(),
        vectors,
    };

    let modes = [
        ("hybrid", SearchMode::Hybrid),
        ("vector", SearchMode::Vector),
        ("text", SearchMode::Text),
    ];
    let run_query = |query: &str, mode: SearchMode| {
        let params = RetrieveParams {
            mode,
            ..RetrieveParams::default()
        };
        retrieve(&store, &precomputed, KB, query, &params, &IdentityReranker)
    };
    // Warm-up: the index and SQLite's pages into memory.
    for query in &queries {
        for (_, mode) in modes {
            run_query(query, mode)?;
        }
    }
    let load_latency_start = load_average();
    let mut samples: HashMap<&str, Vec<f64>> = HashMap::new();
    let mut empty: HashMap<&str, usize> = HashMap::new();
    for _ in 0..passes {
        for query in &queries {
            for (name, mode) in modes {
                let started = Instant::now();
                let hits = run_query(query, mode)?;
                samples
                    .entry(name)
                    .or_default()
                    .push(started.elapsed().as_secs_f64() * 1e3);
                if hits.is_empty() {
                    *empty.entry(name).or_default() += 1;
                }
            }
        }
    }
    let load_latency_end = load_average();

    // ANN against exact search.
    let load_recall_start = load_average();
    let mut recalls = Vec::new();
    let mut exact_ms = Vec::new();
    let mut ann_ms = Vec::new();
    for query in &queries {
        let vector = &precomputed.vectors[query];
        let started = Instant::now();
        let ann = store.search_vector(KB, vector, RECALL_K, &Filter::default())?;
        ann_ms.push(started.elapsed().as_secs_f64() * 1e3);
        let started = Instant::now();
        let exact = store.search_exact(KB, vector, RECALL_K, &Filter::default())?;
        exact_ms.push(started.elapsed().as_secs_f64() * 1e3);
        let found: HashSet<i64> = ann.iter().map(|hit| hit.chunk_id).collect();
        let shared = exact
            .iter()
            .filter(|hit| found.contains(&hit.chunk_id))
            .count();
        recalls.push(shared as f64 / exact.len().max(1) as f64);
    }
    let load_recall_end = load_average();

    // While the index is not in memory (a fresh process, or stale): hybrid queries on a second
    // store handle whose background index load is held, so every vector search is exact.
    let load_stale_start = load_average();
    let stale_store = open_store(&kb_dir, &embedder)?;
    stale_store.hold_index_builds(true);
    let mut stale_ms = Vec::new();
    for query in &queries {
        let params = RetrieveParams::default();
        let started = Instant::now();
        retrieve(
            &stale_store,
            &precomputed,
            KB,
            query,
            &params,
            &IdentityReranker,
        )?;
        stale_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let stale_exact = stale_store.index_stats().exact_answers;
    stale_store.hold_index_builds(false);
    let load_stale_end = load_average();
    let recall = recalls.iter().sum::<f64>() / recalls.len().max(1) as f64;
    let below = recalls.iter().filter(|r| **r < 1.0).count();

    let stats = |values: &[f64]| {
        json!({
            "n": values.len(),
            "p50_ms": percentile(values, 50.0),
            "p95_ms": percentile(values, 95.0),
            "p99_ms": percentile(values, 99.0),
            "mean_ms": values.iter().sum::<f64>() / values.len().max(1) as f64,
            "max_ms": values.iter().copied().fold(0.0, f64::max),
        })
    };
    let mut latency = serde_json::Map::new();
    for (name, _) in modes {
        let mut entry = stats(samples.get(name).map_or(&[][..], Vec::as_slice));
        entry["queries_with_no_hit"] = json!(empty.get(name).copied().unwrap_or(0) / passes);
        latency.insert(name.to_owned(), entry);
    }
    let result = json!({
        "benchmark": "rag-latency",
        "machine": machine(),
        "model": crate::common::MODEL,
        "sources": sources.iter().map(|s| s.display().to_string()).collect::<Vec<_>>(),
        "kb": { "documents": kb.documents, "chunks": kb.chunks },
        "real_chunks": real.len(),
        "synthetic_chunks": total - real.len(),
        "real_chunks_embed": real_embed,
        "synthetic_method": "text: first half of one real chunk's words + second half of another's; vector: normalize(t*a + (1-t)*b + noise), t uniform in [0.3, 0.7], Gaussian noise of expected norm 0.25; seeded",
        "seed": seed,
        "kb_write": build,
        "index_build_s": index_build_s,
        "index_loaded_from_file": index_loaded,
        "index_build_load": [load_index_start, load_index_end],
        "queries": queries.len(),
        "queries_from_questions": queries.iter().filter(|q| questions.iter().any(|x| &x.question == *q)).count(),
        "query_embedding": stats(&query_embed_ms),
        "retrieve_params": "RetrieveParams::default(): top_k 5, 20 candidates per search, rrf_k 60, no min_score, no filter",
        "passes": passes,
        "latency": latency,
        "latency_load": [load_latency_start, load_latency_end],
        "ann": {
            "k": RECALL_K,
            "recall_at_10": recall,
            "queries_below_1": below,
            "min_recall": recalls.iter().copied().fold(1.0, f64::min),
            "search_vector": stats(&ann_ms),
            "search_exact": stats(&exact_ms),
        },
        "ann_load": [load_recall_start, load_recall_end],
        "hybrid_without_index": {
            "what": "hybrid retrieve on a store whose index is not loaded yet (background load held): vector search answered exactly",
            "latency": stats(&stale_ms),
            "exact_answers": stale_exact,
            "load": [load_stale_start, load_stale_end],
        },
    });
    write_json(&out, &result)?;
    print_table(&result);
    Ok(())
}

/// The real chunks and their vectors, from the cache in `work` when it holds them.
fn real_chunks(
    sources: &[PathBuf],
    count: usize,
    work: &Path,
    embedder: &dyn Embedder,
) -> Result<RealSet, BenchError> {
    let texts_path = work.join(format!("real-{count}.jsonl"));
    let vectors_path = work.join(format!("real-{count}.f32"));
    let dimension = embedder.info().dimension as usize;
    if let Some(mut cached) = read_cache(&texts_path, &vectors_path, count, dimension)? {
        eprintln!(
            "using the {count} real chunks embedded earlier in {}",
            work.display()
        );
        cached.meta = std::fs::read_to_string(work.join(format!("real-{count}.json")))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        return Ok(cached);
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    for source in sources {
        for file in corpus_files(source)?.iter().filter(|file| is_page(file)) {
            for chunk in chunk_file(file, embedder).unwrap_or_default() {
                if seen.insert(chunk.text.clone()) {
                    all.push(RealChunk {
                        text: chunk.text,
                        heading: chunk.location.heading,
                    });
                }
            }
        }
    }
    let chunk_s = seconds(started);
    if all.len() < count {
        return Err(format!(
            "the sources hold {} distinct chunks; --real asks for {count}",
            all.len()
        )
        .into());
    }
    // An even spread over all sources rather than the first files.
    let available = all.len();
    let stride = available as f64 / count as f64;
    let picked: Vec<usize> = (0..count).map(|i| (i as f64 * stride) as usize).collect();
    let mut slots: Vec<Option<RealChunk>> = all.into_iter().map(Some).collect();
    let chunks: Vec<RealChunk> = picked.iter().filter_map(|&i| slots[i].take()).collect();

    let load_start = load_average();
    let started = Instant::now();
    let mut vectors = Vec::with_capacity(count);
    for (index, batch) in chunks.chunks(EMBED_BATCH).enumerate() {
        let inputs: Vec<EmbedInput> = batch
            .iter()
            .map(|c| EmbedInput::Text(c.text.clone()))
            .collect();
        vectors.extend(embedder.embed(&inputs)?.vectors);
        if index % 50 == 0 {
            eprintln!("embedded {} / {count} real chunks", vectors.len());
        }
    }
    let embed_s = seconds(started);
    let meta = json!({
        "distinct_chunks_in_sources": available,
        "chunking_s": chunk_s,
        "embed_s": embed_s,
        "chunks_per_s": count as f64 / embed_s,
        "load": [load_start, load_average()],
    });
    write_cache(&texts_path, &vectors_path, &chunks, &vectors)?;
    std::fs::write(work.join(format!("real-{count}.json")), meta.to_string())?;
    Ok(RealSet {
        chunks,
        vectors,
        meta,
    })
}

fn read_cache(
    texts_path: &Path,
    vectors_path: &Path,
    count: usize,
    dimension: usize,
) -> Result<Option<RealSet>, BenchError> {
    let (Ok(texts), Ok(mut vector_file)) = (
        std::fs::File::open(texts_path),
        std::fs::File::open(vectors_path),
    ) else {
        return Ok(None);
    };
    if vector_file.metadata()?.len() != (count * dimension * 4) as u64 {
        return Ok(None);
    }
    let mut chunks = Vec::with_capacity(count);
    for line in BufReader::new(texts).lines() {
        let value: Value = serde_json::from_str(&line?)?;
        chunks.push(RealChunk {
            text: value["text"].as_str().unwrap_or_default().to_owned(),
            heading: value["heading"].as_str().unwrap_or_default().to_owned(),
        });
    }
    if chunks.len() != count {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    vector_file.read_to_end(&mut bytes)?;
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let vectors = floats.chunks(dimension).map(<[f32]>::to_vec).collect();
    Ok(Some(RealSet {
        chunks,
        vectors,
        meta: Value::Null,
    }))
}

fn write_cache(
    texts_path: &Path,
    vectors_path: &Path,
    chunks: &[RealChunk],
    vectors: &[Vec<f32>],
) -> Result<(), BenchError> {
    let mut texts = BufWriter::new(std::fs::File::create(texts_path)?);
    for chunk in chunks {
        writeln!(
            texts,
            "{}",
            json!({"text": chunk.text, "heading": chunk.heading})
        )?;
    }
    texts.flush()?;
    let mut out = BufWriter::new(std::fs::File::create(vectors_path)?);
    for value in vectors.iter().flatten() {
        out.write_all(&value.to_le_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// Writes the knowledge base into `dir` unless a complete one is there; returns what the
/// write took (or that it was reused).
fn build_kb(
    dir: &Path,
    embedder: &dyn Embedder,
    real: &[RealChunk],
    real_vectors: &[Vec<f32>],
    total: usize,
    seed: u64,
) -> Result<Value, BenchError> {
    if dir.exists() {
        let store = open_store(dir, embedder)?;
        if store.kb(KB)?.chunks == total as u64 {
            eprintln!("reusing the knowledge base in {}", dir.display());
            return Ok(json!({"reused": dir.display().to_string()}));
        }
        drop(store);
        std::fs::remove_dir_all(dir)?;
    }
    let store = open_store(dir, embedder)?;
    let mut random = SplitMix(seed);
    let dimension = real_vectors[0].len();
    let noise_sigma = 0.25 / (dimension as f64).sqrt();
    let load_start = load_average();
    let started = Instant::now();
    let mut generate_s = 0.0;
    let mut pending: Vec<NewChunk> = Vec::with_capacity(CHUNKS_PER_DOCUMENT);
    let mut documents = 0usize;
    for index in 0..total {
        let made = Instant::now();
        let (text, heading, embedding) = if index < real.len() {
            (
                real[index].text.clone(),
                real[index].heading.clone(),
                real_vectors[index].clone(),
            )
        } else {
            let a = random.below(real.len());
            let mut b = random.below(real.len());
            if b == a {
                b = (a + 1) % real.len();
            }
            let t = 0.3 + 0.4 * random.unit();
            let mut vector: Vec<f32> = real_vectors[a]
                .iter()
                .zip(&real_vectors[b])
                .map(|(x, y)| {
                    (t * f64::from(*x)
                        + (1.0 - t) * f64::from(*y)
                        + noise_sigma * random.gaussian()) as f32
                })
                .collect();
            let norm = vector
                .iter()
                .map(|x| x * x)
                .sum::<f32>()
                .sqrt()
                .max(f32::MIN_POSITIVE);
            vector.iter_mut().for_each(|x| *x /= norm);
            (
                splice(&real[a].text, &real[b].text),
                real[a].heading.clone(),
                vector,
            )
        };
        generate_s += seconds(made);
        pending.push(NewChunk {
            ordinal: pending.len() as u32,
            text,
            location: Location {
                heading,
                ..Location::default()
            },
            embedding,
        });
        if pending.len() == CHUNKS_PER_DOCUMENT || index + 1 == total {
            let kind = if index < real.len() {
                "real"
            } else {
                "synthetic"
            };
            store.replace_document(
                KB,
                &NewDocument {
                    path: format!("{kind}/{documents:05}.txt"),
                    content_hash: format!("{documents:064x}"),
                    tags: Vec::new(),
                },
                &pending,
            )?;
            pending.clear();
            documents += 1;
        }
    }
    let total_s = seconds(started);
    let write_s = total_s - generate_s;
    eprintln!("wrote {total} chunks in {documents} documents in {write_s:.1} s");
    Ok(json!({
        "documents": documents,
        "write_s": write_s,
        "chunks_per_s": total as f64 / write_s,
        "load": [load_start, load_average()],
    }))
}

/// A documentation page: HTML, Markdown or text, but not mdBook's `print.html`, which repeats
/// every chapter of its book.
fn is_page(path: &Path) -> bool {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    matches!(extension, "html" | "md" | "txt") && name != "print.html"
}

/// The first half of `a`'s words and the second half of `b`'s.
fn splice(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.split_whitespace().collect();
    let b: Vec<&str> = b.split_whitespace().collect();
    let mut words: Vec<&str> = a[..a.len() / 2].to_vec();
    words.extend_from_slice(&b[b.len() / 2..]);
    words.join(" ")
}

/// The labeled questions first, then distinct section headings of the real chunks (their
/// last part, three words or more), picked with the seed, until there are `count`.
fn pick_queries(
    questions: &[crate::common::Question],
    real: &[RealChunk],
    count: usize,
    seed: u64,
) -> Vec<String> {
    let mut queries: Vec<String> = questions.iter().map(|q| q.question.clone()).collect();
    queries.truncate(count);
    let mut headings: Vec<String> = real
        .iter()
        .filter_map(|c| c.heading.rsplit(" > ").next())
        .map(str::trim)
        .filter(|h| h.split_whitespace().count() >= 3)
        .map(str::to_owned)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    headings.sort();
    let mut random = SplitMix(seed ^ 0x5eed);
    while queries.len() < count && !headings.is_empty() {
        let heading = headings.swap_remove(random.below(headings.len()));
        if !queries.contains(&heading) {
            queries.push(heading);
        }
    }
    queries
}

/// An embedder that answers from vectors computed before the timing starts, so the latencies
/// measure retrieval alone.
struct Precomputed {
    info: EmbedderInfo,
    vectors: HashMap<String, Vec<f32>>,
}

impl Embedder for Precomputed {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    fn count_tokens(&self, _text: &str) -> Result<u32, EngineError> {
        Err(EngineError::Internal("not used by retrieval".into()))
    }

    fn embed(&self, inputs: &[EmbedInput]) -> Result<Embeddings, EngineError> {
        let vectors = inputs
            .iter()
            .map(|input| match input {
                EmbedInput::Text(text) => self.vectors.get(text).cloned().ok_or_else(|| {
                    EngineError::Internal(format!("no precomputed vector for {text:?}"))
                }),
                EmbedInput::Tokens(_) => Err(EngineError::Internal("token input".into())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Embeddings {
            vectors,
            prompt_tokens: 0,
        })
    }
}

/// SplitMix64: a small seeded generator, so the synthetic chunks are the same on every run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }

    /// Standard normal (Box-Muller).
    fn gaussian(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

fn print_table(result: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    println!(
        "\n### Query latency at {} chunks ({} queries × {} passes, query embedding excluded)\n",
        result["kb"]["chunks"], result["queries"], result["passes"]
    );
    println!("| mode | p50 (ms) | p95 (ms) | p99 (ms) | mean (ms) |");
    println!("|---|---:|---:|---:|---:|");
    for name in ["hybrid", "vector", "text"] {
        let m = &result["latency"][name];
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
            f(&m["p50_ms"]),
            f(&m["p95_ms"]),
            f(&m["p99_ms"]),
            f(&m["mean_ms"])
        );
    }
    let q = &result["query_embedding"];
    println!(
        "| (query embedding alone, excluded above) | {:.2} | {:.2} | {:.2} | {:.2} |",
        f(&q["p50_ms"]),
        f(&q["p95_ms"]),
        f(&q["p99_ms"]),
        f(&q["mean_ms"])
    );
    let ann = &result["ann"];
    println!(
        "\nANN recall@10 against exact search: {:.4} over {} queries ({} below 1.0, lowest {:.2}); search_vector k=10 p50 {:.2} ms, search_exact p50 {:.2} ms",
        f(&ann["recall_at_10"]),
        result["queries"],
        ann["queries_below_1"],
        f(&ann["min_recall"]),
        f(&ann["search_vector"]["p50_ms"]),
        f(&ann["search_exact"]["p50_ms"]),
    );
    let stale = &result["hybrid_without_index"]["latency"];
    println!(
        "Hybrid while the index is not in memory (exact vector search): p50 {:.2} ms, p95 {:.2} ms",
        f(&stale["p50_ms"]),
        f(&stale["p95_ms"]),
    );
    println!(
        "Index build from SQLite: {:.1} s",
        f(&result["index_build_s"])
    );
    if let Some(write) = result["kb_write"]["write_s"].as_f64() {
        println!("KB write (replace_document, 100 chunks each): {write:.1} s");
    }
}
