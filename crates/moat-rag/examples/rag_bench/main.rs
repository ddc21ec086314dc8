//! The knowledge-base benchmarks of `bench/rag/` (docs/PERFORMANCE.md, "Knowledge bases"):
//! retrieval quality on a labeled question set, ingestion throughput, and query latency and
//! ANN recall at 100k chunks, each over the real all-MiniLM-L6-v2 embedder and the real
//! SQLite store. `bench/rag/run.sh` drives them; each writes its raw results as JSON and prints
//! a markdown table.
//!
//! ```text
//! cargo run --release -p moat-rag --example rag_bench -- quality --corpus DIR --questions FILE --out FILE
//! cargo run --release -p moat-rag --example rag_bench -- ingest  --corpus DIR --runs 3 --out FILE
//! cargo run --release -p moat-rag --example rag_bench -- latency --sources DIR... --questions FILE --work DIR --out FILE
//! ```
//!
//! The model folder is `$MOAT_TEST_MODELS/all-minilm-l6-v2` (default
//! `~/.cache/moat/test-models`), or `--model DIR`.

mod args;
mod common;
mod ingest;
mod latency;
mod quality;

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let command = argv.next().unwrap_or_default();
    let rest: Vec<String> = argv.collect();
    let result = match command.as_str() {
        "quality" => quality::run(&rest),
        "ingest" => ingest::run(&rest),
        "latency" => latency::run(&rest),
        _ => Err(
            "usage: rag_bench quality|ingest|latency [OPTIONS] (see bench/rag/README.md)".into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rag_bench {command}: {error}");
            ExitCode::FAILURE
        }
    }
}
