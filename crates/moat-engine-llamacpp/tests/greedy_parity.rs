//! Greedy parity with llama.cpp itself: for the same prompt, model and kernel build flags, one
//! sequence decoded greedily gives llama.cpp's own 64 tokens, token for token. The reference
//! comes from llama.cpp's llama-server; `bench/llamacpp/greedy_reference.sh` wrote the fixture
//! and records the requests, the llama.cpp version and the cmake flags of each build.
//!
//! Greedy output depends on the CPU kernels (this small model has near-ties: AVX2 and AVX-512
//! kernels pick different tokens at the story's 22nd token), so the fixture holds one reference
//! per way of building this crate, and the test picks the one this build matches:
//! `RUSTFLAGS="-C target-cpu=native"` makes llama-cpp-sys-2 build llama.cpp with GGML_NATIVE,
//! which turns on AVX-512 on these machines ("native"); a plain build uses AVX2 ("avx2").

#![allow(clippy::unwrap_used)]

mod common;

use moat_engine::{Engine, FinishReason};
use serde_json::Value;

const FLAVOUR: &str = if cfg!(target_feature = "avx512f") {
    "native"
} else {
    "avx2"
};

#[derive(Debug)]
struct Reference {
    prompt: String,
    prompt_tokens: Vec<i32>,
    completion_tokens: Vec<i32>,
    completion_text: String,
}

fn ids(value: &Value) -> Vec<i32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|id| i32::try_from(id.as_i64().unwrap()).unwrap())
        .collect()
}

fn reference() -> Reference {
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/greedy_smollm2.json")).unwrap();
    let flavour = &fixture["references"][FLAVOUR];
    Reference {
        prompt: fixture["prompt"].as_str().unwrap().to_owned(),
        prompt_tokens: ids(&fixture["prompt_tokens"]),
        completion_tokens: ids(&flavour["completion_tokens"]),
        completion_text: flavour["completion_text"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn greedy_output_matches_llama_cpp_token_for_token() {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("skipping: the llama.cpp references are for x86-64 kernels");
        return;
    }
    // The reference server ran with one slot and a 4096-token context.
    let Some(engine) = common::smollm2(|options| {
        options.parallel = 1;
        options.n_ctx_per_seq = 4096;
    }) else {
        return;
    };
    let reference = reference();
    assert_eq!(reference.prompt, common::CHAT_PROMPT);
    assert_eq!(
        engine.tokenize(&reference.prompt, true, true).unwrap(),
        reference.prompt_tokens,
        "tokenization differs from llama-server's /tokenize"
    );

    let output = common::generate(&engine, common::request(&reference.prompt, 64)).await;

    let ids = output.ids();
    if let Some(first) = ids
        .iter()
        .zip(&reference.completion_tokens)
        .position(|(ours, theirs)| ours != theirs)
    {
        panic!(
            "greedy output diverges from llama.cpp ({FLAVOUR} build) at token {first}\n \
             ours: {ids:?}\ntheirs: {:?}\n ours: {:?}\ntheirs: {:?}",
            reference.completion_tokens,
            output.text(),
            reference.completion_text
        );
    }
    assert_eq!(ids, reference.completion_tokens);
    assert_eq!(output.text(), reference.completion_text);
    assert_eq!(output.reason, FinishReason::Length);
    assert_eq!(output.usage.completion_tokens, 64);
    assert_eq!(
        output.usage.prompt_tokens as usize,
        reference.prompt_tokens.len()
    );
}
