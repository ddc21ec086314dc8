//! Prefix reuse with a sliding-window model (Gemma 3 270M: a 512-token window in most of its
//! layers). llama.cpp keeps, saves and copies only the last 512 positions of a sequence in
//! those layers, so a cached sequence longer than that must never be cut back and reused:
//! the prefix would attend to positions that are gone, and the output would silently change.

#![allow(clippy::unwrap_used)]

mod common;

use common::{generate, request};
use moat_engine::{Engine, Prompt};
use moat_engine_llamacpp::{LlamaEngine, LoadOptions};
use moat_testkit::{models, test_model};

fn gemma3(options: impl FnOnce(&mut LoadOptions)) -> Option<LlamaEngine> {
    let path = test_model(models::GEMMA3)?;
    let mut load_options = LoadOptions::new("gemma3:270m");
    load_options.n_ctx_per_seq = 2048;
    load_options.parallel = 1;
    options(&mut load_options);
    let engine = LlamaEngine::load(&path, load_options).unwrap();
    engine.wait_until_loaded().unwrap();
    Some(engine)
}

/// About 14 tokens a line; `lines` numbered lines of a logbook.
fn logbook(lines: usize) -> String {
    (1..=lines)
        .map(|i| {
            format!(
                "Entry {i}: the ferry left pier {} with {} passengers aboard.\n",
                i % 7,
                i * 3
            )
        })
        .collect()
}

#[tokio::test]
async fn a_sequence_longer_than_the_window_is_not_cut_back_for_reuse() {
    let Some(engine) = gemma3(|_| {}) else {
        return;
    };
    let long = format!("{}Summary:", logbook(50));
    let long_tokens = engine.tokenize(&long, true, false).unwrap().len();
    assert!(long_tokens > 600, "{long_tokens}");
    // The same logbook cut after 42 entries: it shares well over 512 tokens with `long`, but
    // not all of them.
    let cut = format!("{}Question: which pier came first?\nAnswer:", logbook(42));

    let first = generate(&engine, request(&long, 8)).await;
    assert_eq!(first.usage.cached_tokens, 0);
    // Something unrelated takes the one sequence; `long` goes to the host prompt cache. It
    // goes without a BOS token, so that `cut` shares nothing with it either: the sequence a
    // request replaces keeps any start of its prompt, and starting `cut`'s prefill one token
    // later moves its chunks' boundaries, which can flip a near-tie (docs/openai-compat.md,
    // "Seeds and batching") and make the comparison below test that instead.
    let mut unrelated = request("", 4);
    unrelated.prompt = Prompt::Tokens(
        engine
            .tokenize("The weather today is", false, false)
            .unwrap(),
    );
    generate(&engine, unrelated).await;
    let reused = generate(&engine, request(&cut, 16)).await;
    assert_eq!(
        reused.usage.cached_tokens, 0,
        "a prefix of a sequence past the window was reused"
    );

    let Some(fresh_engine) = gemma3(|options| options.prefix_reuse = false) else {
        return;
    };
    let fresh = generate(&fresh_engine, request(&cut, 16)).await;
    assert_eq!(fresh.ids(), reused.ids());

    // Tokens that continue all of `long` and its answer still reuse them whole: the prompt
    // and the 7 answer tokens that went through the model (the 8th was never decoded).
    let mut continued = engine.tokenize(&long, true, false).unwrap();
    continued.extend(first.ids());
    continued.extend(engine.tokenize("\nEntry 51:", false, false).unwrap());
    let mut tokens_request = request("", 8);
    tokens_request.prompt = Prompt::Tokens(continued);
    let again = generate(&engine, tokens_request.clone()).await;
    assert_eq!(again.usage.cached_tokens as usize, long_tokens + 7);
    let recomputed = generate(&fresh_engine, tokens_request).await;
    assert_eq!(recomputed.ids(), again.ids());
}
