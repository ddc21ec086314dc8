//! llama-bench's two measurements through moat's engine, for a ratio against llama.cpp with no
//! HTTP on either side: prompt processing (a prompt of `-p` tokens, one token generated) and
//! generation (`-n` tokens after a short prompt, timed from the first token to the last).
//!
//! ```sh
//! cargo build --release -p moat-engine-llamacpp --example engine_bench
//! target/release/examples/engine_bench MODEL.gguf [-p 512] [-n 128] [-t 2] [-r 5] [-s SLICE_MS]
//! ```
//!
//! It prints one JSON object per test, as `llama-bench -o jsonl` does (`n_prompt`, `n_gen`,
//! `n_threads`, `avg_ts`, `stddev_ts`, `samples_ts`), with `"mode": "moat-engine"`;
//! `bench/engine.sh`'s `bench` phase alternates it with llama-bench.
//!
//! Like llama-bench, the prompts are pseudo-random token ids (a different one each repetition)
//! and every repetition follows one unmeasured warm-up. Unlike it, each step goes through
//! moat's scheduler, samples greedily and detokenizes, as a served request does: that cost is
//! part of what is measured. Prefix reuse is off, so no prompt is served from the cache.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use moat_engine::{Engine, GenerationEvent, Prompt, TokenId, ValidGenerate};
use moat_engine_llamacpp::{LlamaEngine, LoadOptions};

struct Args {
    model: PathBuf,
    n_prompt: u32,
    n_gen: u32,
    threads: u32,
    reps: u32,
    /// The compute thread's time slice in ms (`-s`; default: moat's).
    slice_ms: Option<u32>,
}

const USAGE: &str =
    "usage: engine_bench MODEL.gguf [-p N_PROMPT] [-n N_GEN] [-t THREADS] [-r REPS] [-s SLICE_MS]";

/// The arguments, or `None` for `-h` / `--help`.
fn parse_args() -> Result<Option<Args>, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        model: PathBuf::new(),
        n_prompt: 512,
        n_gen: 128,
        threads: moat_engine_llamacpp::free_cores(),
        reps: 5,
        slice_ms: None,
    };
    let mut slice = u32::MAX;
    let mut model = None;
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "-p" => &mut parsed.n_prompt,
            "-n" => &mut parsed.n_gen,
            "-t" => &mut parsed.threads,
            "-r" => &mut parsed.reps,
            "-s" => &mut slice,
            "-h" | "--help" => return Ok(None),
            _ if model.is_none() && !arg.starts_with('-') => {
                model = Some(PathBuf::from(arg));
                continue;
            }
            _ => return Err(format!("unexpected argument {arg:?}\n{USAGE}")),
        };
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        *slot = value
            .parse()
            .map_err(|_| format!("{arg} {value:?} is not a whole number"))?;
    }
    parsed.model = model.ok_or(USAGE)?;
    parsed.slice_ms = (slice != u32::MAX).then_some(slice);
    if parsed.threads == 0 || parsed.reps == 0 || parsed.n_prompt == 0 || parsed.n_gen == 0 {
        return Err("-p, -n, -t and -r must be at least 1".to_owned());
    }
    Ok(Some(parsed))
}

/// `n` pseudo-random token ids below `n_vocab` (a 64-bit LCG; Knuth's constants).
fn random_tokens(seed: u64, n: u32, n_vocab: u32) -> Vec<TokenId> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            TokenId::try_from((state >> 33) % u64::from(n_vocab)).unwrap()
        })
        .collect()
}

/// Runs one request; returns the seconds from submitting it to its first token, and from its
/// first token to its last, with the number of tokens after the first.
async fn timed(engine: &LlamaEngine, request: ValidGenerate) -> (f64, f64, u32) {
    let submitted = Instant::now();
    let mut stream = engine.generate(request).unwrap();
    let mut first = None;
    let mut last = submitted;
    let mut after_first = 0_u32;
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            GenerationEvent::Token(_) => {
                let now = Instant::now();
                if first.is_none() {
                    first = Some(now);
                } else {
                    after_first += 1;
                }
                last = now;
            }
            GenerationEvent::Finished { .. } => break,
            _ => {}
        }
    }
    let first = first.expect("no token came");
    (
        (first - submitted).as_secs_f64(),
        (last - first).as_secs_f64(),
        after_first,
    )
}

fn report(args: &Args, n_prompt: u32, n_gen: u32, samples: &[f64]) {
    let n = samples.len() as f64;
    let avg = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|s| (s - avg).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    println!(
        "{}",
        serde_json::json!({
            "mode": "moat-engine",
            "model_filename": args.model.display().to_string(),
            "n_prompt": n_prompt,
            "n_gen": n_gen,
            "n_threads": args.threads,
            "avg_ts": avg,
            "stddev_ts": var.sqrt(),
            "samples_ts": samples,
        })
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    if let Some(slice) = args.slice_ms {
        moat_engine_llamacpp::set_compute_slice(Duration::from_millis(u64::from(slice)));
    }
    let mut options = LoadOptions::new("bench");
    options.parallel = 1;
    options.n_threads = args.threads;
    options.n_ctx_per_seq = args.n_prompt.max(16) + args.n_gen + 16;
    options.n_batch = args.n_prompt.max(16);
    options.prefix_reuse = false;
    let engine = match LlamaEngine::load(&args.model, options) {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("engine_bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = engine.wait_until_loaded() {
        eprintln!("engine_bench: {error}");
        return ExitCode::FAILURE;
    }
    let n_vocab = engine.info().n_vocab;

    let mut pp = Vec::new();
    for rep in 0..=args.reps {
        let prompt = random_tokens(u64::from(rep) + 1, args.n_prompt, n_vocab);
        let (to_first, _, _) = timed(&engine, common::greedy(Prompt::Tokens(prompt), 1)).await;
        if rep > 0 {
            pp.push(f64::from(args.n_prompt) / to_first);
        }
    }
    report(&args, args.n_prompt, 0, &pp);

    let mut tg = Vec::new();
    for rep in 0..=args.reps {
        // A short prompt, then one token more than measured: the first one ends the prefill.
        let prompt = random_tokens(u64::from(rep) + 1000, 4, n_vocab);
        let (_, generating, tokens) = timed(
            &engine,
            common::greedy(Prompt::Tokens(prompt), args.n_gen + 1),
        )
        .await;
        if rep > 0 {
            tg.push(f64::from(tokens) / generating);
        }
    }
    report(&args, 0, args.n_gen, &tg);
    ExitCode::SUCCESS
}
