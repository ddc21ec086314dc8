//! Two models generating at the same moment share the cores instead of fighting over them.
//! llama.cpp's thread pools collapse when two of them run on the same cores; moat runs every
//! decode in the process on one compute thread. Before that, two engines decoding strictly in
//! turn from their own threads still fell from 104 to 45 tok/s together (each thread's OpenMP
//! pool kept spinning through the other's steps); with it they keep about 100.
//!
//! A measurement, not a test (speed is never asserted in tests):
//! `MOAT_TEST_MODELS=~/.cache/moat/test-models cargo run --release -p moat-engine-llamacpp --example shared_cores`
//! prints one engine's generation speed alone and two engines' speeds at the same time.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use moat_engine::{Engine, GenerationEvent};
use moat_engine_llamacpp::LlamaEngine;

/// Generation speed of one stream, in tokens per second, from its second token on (the first
/// includes the prompt).
async fn tokens_per_second(engine: &LlamaEngine, n_tokens: u32) -> f64 {
    let mut stream = engine
        .generate(common::request(common::CHAT_PROMPT, n_tokens))
        .unwrap();
    common::next_event(&mut stream).await.unwrap().unwrap();
    common::next_event(&mut stream).await.unwrap().unwrap();
    let start = Instant::now();
    let mut count = 0_u32;
    while let Some(event) = common::next_event(&mut stream).await {
        if let GenerationEvent::Token(_) = event.unwrap() {
            count += 1;
        }
    }
    f64::from(count) / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(first) = common::smollm2(|options| options.parallel = 1) else {
        return;
    };
    let Some(second) = common::smollm2(|options| options.parallel = 1) else {
        return;
    };
    tokens_per_second(&first, 16).await;
    let alone = tokens_per_second(&first, 150).await;
    let (a, b) = tokio::join!(
        tokens_per_second(&first, 150),
        tokens_per_second(&second, 150)
    );
    eprintln!(
        "one engine alone: {alone:.1} tok/s; two at once: {a:.1} + {b:.1} = {:.1} tok/s",
        a + b
    );
}
