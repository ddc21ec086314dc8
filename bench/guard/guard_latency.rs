//! Latency of the guard pipeline per KB of text: `check_input` on whole texts and the streamed
//! output scan (deltas of about one token), p50/p95 over many runs of realistic text (the
//! labeled set's benign documentation paragraphs with its PII, secret and injection samples
//! mixed in at the rate they appear there). Run from the repository root:
//!
//! ```sh
//! CARGO_TARGET_DIR=/tmp/t-guard cargo run --release -p moat-guard --example guard_latency -- \
//!     --out bench/results/guard-latency.json
//! ```
//!
//! Prints a table and writes the raw numbers (every sample) as JSON, with the machine's load.

use std::fmt::Write as _;
use std::time::Instant;

use moat_guard::{Guard, GuardConfig, RuleGuard};

const DATA: &str = "crates/moat-guard/tests/data/guard-dataset.jsonl";
/// Bytes per streamed delta: about one token of English.
const DELTA_BYTES: usize = 4;

struct Args {
    data: String,
    out: Option<String>,
    runs: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        data: DATA.to_string(),
        out: None,
        runs: 400,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => args.data = value()?,
            "--out" => args.out = Some(value()?),
            "--runs" => args.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

/// The texts of the data set, in file order (benign paragraphs and labeled samples alike).
fn corpus(path: &str) -> Result<Vec<String>, String> {
    let data = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut texts = Vec::new();
    for (n, line) in data.lines().enumerate() {
        let record: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{path}:{}: {e}", n + 1))?;
        if let Some(text) = record.get("text").and_then(|t| t.as_str()) {
            texts.push(text.to_string());
        }
    }
    if texts.is_empty() {
        return Err(format!("{path}: no texts"));
    }
    Ok(texts)
}

/// Texts of about `size` bytes, made by joining consecutive corpus texts.
fn documents(corpus: &[String], size: usize, count: usize) -> Vec<String> {
    let mut docs = Vec::with_capacity(count);
    let mut index = 0;
    while docs.len() < count {
        let mut doc = String::with_capacity(size + 512);
        while doc.len() < size {
            doc.push_str(&corpus[index % corpus.len()]);
            doc.push_str("\n\n");
            index += 1;
        }
        docs.push(doc);
    }
    docs
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn stream(guard: &RuleGuard, text: &str) -> Result<usize, String> {
    let mut scanner = guard.output_scanner();
    let mut released = 0;
    let mut at = 0;
    while at < text.len() {
        let mut end = (at + DELTA_BYTES).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        released += scanner
            .push(&text[at..end])
            .map_err(|e| e.to_string())?
            .len();
        at = end;
    }
    released += scanner.finish().map_err(|e| e.to_string())?.len();
    Ok(released)
}

fn main() -> Result<(), String> {
    let args = parse_args()?;
    let corpus = corpus(&args.data)?;
    // The policy the issue's deployments use: redact PII and secrets, flag injections.
    let config: GuardConfig = toml::from_str(
        "[input.actions]\npii = \"redact\"\nsecret = \"redact\"\ninjection = \"flag\"\n\
         [output.actions]\npii = \"redact\"\nsecret = \"redact\"\ninjection = \"flag\"\n",
    )
    .map_err(|e| e.to_string())?;
    let guard = RuleGuard::new(&config).map_err(|e| e.to_string())?;
    let load_before = load_average();
    let mut report = String::new();
    let mut results = Vec::new();
    writeln!(
        report,
        "| text | mode | runs | p50 µs/KB | p95 µs/KB | mean µs/KB |"
    )
    .ok();
    writeln!(report, "|---|---|---|---|---|---|").ok();
    for size in [1024usize, 4096, 16384] {
        let docs = documents(&corpus, size, args.runs);
        for mode in ["check_input", "stream"] {
            let mut per_kb = Vec::with_capacity(docs.len());
            // One warm-up pass so allocation and page faults of the first run do not count.
            for doc in docs.iter().take(10) {
                let _ = guard.check_input(doc);
            }
            for doc in &docs {
                let started = Instant::now();
                let bytes = if mode == "check_input" {
                    guard
                        .check_input(doc)
                        .map_err(|e| e.to_string())?
                        .text
                        .len()
                } else {
                    stream(&guard, doc)?
                };
                let elapsed = started.elapsed().as_secs_f64() * 1e6;
                std::hint::black_box(bytes);
                per_kb.push(elapsed / (doc.len() as f64 / 1024.0));
            }
            let mut sorted = per_kb.clone();
            sorted.sort_by(f64::total_cmp);
            let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
            let (p50, p95) = (percentile(&sorted, 0.5), percentile(&sorted, 0.95));
            writeln!(
                report,
                "| ~{} KiB | {mode} | {} | {p50:.1} | {p95:.1} | {mean:.1} |",
                size / 1024,
                sorted.len()
            )
            .ok();
            results.push(serde_json::json!({
                "text_bytes_target": size,
                "mode": mode,
                "runs": sorted.len(),
                "p50_us_per_kb": p50,
                "p95_us_per_kb": p95,
                "mean_us_per_kb": mean,
                "samples_us_per_kb": per_kb,
            }));
        }
    }
    let load_after = load_average();
    print!("{report}");
    println!(
        "{}; load average before: {load_before}; after: {load_after}",
        cpu_model()
    );
    if let Some(out) = args.out {
        let json = serde_json::json!({
            "benchmark": "guard_latency",
            "delta_bytes": DELTA_BYTES,
            "policy": "input and output: pii redact, secret redact, injection flag",
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "cpu_model": cpu_model(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "results": results,
        });
        let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?;
        std::fs::write(&out, text).map_err(|e| format!("{out}: {e}"))?;
        println!("wrote {out}");
    }
    Ok(())
}
