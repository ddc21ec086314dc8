//! What a lazy grammar costs while it waits: `auto` tools give every request a grammar that
//! wakes only when the model writes `<tool_call>` (llama.cpp's trigger token), so an answer
//! that is plain text should generate as fast as one without a grammar.
//!
//! A measurement, not a test (speed is never asserted in tests):
//! `MOAT_TEST_MODELS=~/.cache/moat/test-models cargo run --release -p moat-engine-llamacpp --example lazy_grammar`
//! alternates the same greedy 256-token story with and without the grammar (Qwen2.5-Coder,
//! whose tag is one token), and prints each side's tokens per second over whole requests
//! (grammar compile and prompt included), after one warm-up request of each.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use moat_engine::Grammar;
use moat_engine_llamacpp::{LlamaEngine, LoadOptions};

const ROUNDS: usize = 6;
const CALL: &str = r#"{"anyOf": [{"type": "object", "properties": {
  "name": {"const": "get_weather"},
  "arguments": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
  "required": ["name", "arguments"]}]}"#;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(path) = moat_testkit::test_model(moat_testkit::models::QWEN25_CODER) else {
        eprintln!("set MOAT_TEST_MODELS to the folder of the test models");
        std::process::exit(2);
    };
    let mut options = LoadOptions::new("qwen2.5-coder:0.5b");
    options.n_ctx_per_seq = 1024;
    let engine = LlamaEngine::load(&path, options).unwrap();
    engine.wait_until_loaded().unwrap();
    let prompt =
        "<|im_start|>user\nWrite a long story about a robot.<|im_end|>\n<|im_start|>assistant\n";
    let mut speeds: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..=ROUNDS {
        for lazy in [false, true] {
            let mut request = common::request(prompt, 256);
            if lazy {
                request.grammar = Some(Grammar::Tagged {
                    schema: CALL.to_owned(),
                    open: "<tool_call>\n".to_owned(),
                    close: "\n</tool_call>".to_owned(),
                    many: true,
                    lazy: true,
                });
            }
            let start = Instant::now();
            let out = common::generate(&engine, request).await;
            let speed = out.tokens.len() as f64 / start.elapsed().as_secs_f64();
            assert!(
                !out.text().contains("<tool_call>"),
                "the story opened a call"
            );
            if round > 0 {
                speeds[usize::from(lazy)].push(speed);
            }
        }
    }
    for (name, mut values) in ["no grammar", "lazy grammar"].into_iter().zip(speeds) {
        values.sort_by(f64::total_cmp);
        println!(
            "{name}: median {:.2} tok/s (min {:.2}, max {:.2}, {ROUNDS} requests)",
            values[values.len() / 2],
            values[0],
            values[values.len() - 1]
        );
    }
}
