//! Helpers for the engine tests: loading SmolLM2 through `MOAT_TEST_MODELS`, building requests
//! and collecting a stream's events with a timeout (a hung engine fails the test, it never hangs
//! it).

#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use moat_engine::{
    EngineError, FinishReason, GeneratedToken, GenerationEvent, Prompt, SamplingParams,
    StopConditions, TokenLogprob, TokenStream, Usage, ValidGenerate,
};
use moat_engine_llamacpp::{LlamaEngine, LoadOptions};
use moat_testkit::{models, test_model};

pub const CHAT_PROMPT: &str =
    "<|im_start|>user\nWrite a short story about a robot.<|im_end|>\n<|im_start|>assistant\n";

const EVENT_TIMEOUT: Duration = Duration::from_secs(120);

/// SmolLM2 loaded with `options` (the name is filled in), or `None` when test models are off.
pub fn smollm2(options: impl FnOnce(&mut LoadOptions)) -> Option<LlamaEngine> {
    let path = test_model(models::SMOLLM2)?;
    let mut load_options = LoadOptions::new("smollm2:135m");
    load_options.n_ctx_per_seq = 1024;
    options(&mut load_options);
    let engine = LlamaEngine::load(&path, load_options).unwrap();
    engine.wait_until_loaded().unwrap();
    Some(engine)
}

/// Qwen2.5-Coder-0.5B (it has `<tool_call>` as one token), or `None` when test models are off.
pub fn qwen() -> Option<LlamaEngine> {
    let path = test_model(models::QWEN25_CODER)?;
    let mut options = LoadOptions::new("qwen2.5-coder:0.5b");
    options.n_ctx_per_seq = 1024;
    let engine = LlamaEngine::load(&path, options).unwrap();
    engine.wait_until_loaded().unwrap();
    Some(engine)
}

pub fn request(prompt: &str, max_tokens: u32) -> ValidGenerate {
    greedy(Prompt::Text(prompt.to_owned()), max_tokens)
}

/// A greedy request for `max_tokens` tokens, whatever the model says (EOS ignored).
pub fn greedy(prompt: Prompt, max_tokens: u32) -> ValidGenerate {
    ValidGenerate {
        prompt,
        sampling: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
        stop: StopConditions {
            max_tokens,
            stop_strings: Vec::new(),
            ignore_eos: true,
        },
        logprobs: None,
        prompt_logprobs: false,
        deadline: None,
        grammar: None,
        thinking: None,
    }
}

/// Everything one generation sent.
#[derive(Debug)]
pub struct Collected {
    pub prompt_tokens: u32,
    pub cached_tokens: u32,
    pub prompt_logprobs: Option<Vec<Option<TokenLogprob>>>,
    pub tokens: Vec<GeneratedToken>,
    pub reason: FinishReason,
    pub usage: Usage,
}

impl Collected {
    pub fn ids(&self) -> Vec<i32> {
        self.tokens.iter().map(|token| token.id).collect()
    }

    pub fn text(&self) -> String {
        self.tokens
            .iter()
            .map(|token| token.text.as_str())
            .collect()
    }
}

pub async fn next_event(stream: &mut TokenStream) -> Option<Result<GenerationEvent, EngineError>> {
    tokio::time::timeout(EVENT_TIMEOUT, stream.next())
        .await
        .expect("the engine sent nothing for two minutes")
}

/// Reads a stream to its end and checks the event order: Started, Tokens, Finished, end.
pub async fn collect(mut stream: TokenStream) -> Collected {
    let Some(Ok(GenerationEvent::Started {
        prompt_tokens,
        cached_tokens,
        prompt_logprobs,
    })) = next_event(&mut stream).await
    else {
        panic!("the first event is not Started");
    };
    let mut tokens = Vec::new();
    loop {
        match next_event(&mut stream).await {
            Some(Ok(GenerationEvent::Token(token))) => tokens.push(token),
            Some(Ok(GenerationEvent::Finished { reason, usage })) => {
                assert!(
                    next_event(&mut stream).await.is_none(),
                    "events after Finished"
                );
                return Collected {
                    prompt_tokens,
                    cached_tokens,
                    prompt_logprobs,
                    tokens,
                    reason,
                    usage,
                };
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
}

pub async fn generate(engine: &LlamaEngine, request: ValidGenerate) -> Collected {
    use moat_engine::Engine;
    collect(engine.generate(request).unwrap()).await
}
