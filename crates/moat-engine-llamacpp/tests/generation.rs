//! The llama.cpp engine with a real model (SmolLM2-135M): continuous batching, cancellation,
//! seeds, stop strings, prefix reuse, logprobs, admission limits and load failures. Each test
//! loads its own engine; all of them share the process's one compute gate.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{collect, generate, next_event, request, smollm2, CHAT_PROMPT};
use moat_engine::{Engine, EngineError, FinishReason, GenerationEvent, Health, Prompt};
use moat_engine_llamacpp::{LlamaEngine, LoadOptions};

/// Whether llama.cpp sees a GPU (the tests' engines then offload every layer).
fn on_gpu() -> bool {
    !moat_engine_llamacpp::gpu_devices().is_empty()
}

/// On a GPU llama.cpp's results depend on what else the KV cache holds and on the batch's
/// shape, so a request repeats exactly only with prefix reuse off and nothing else running
/// (docs/openai-compat.md, "Seeds and batching"); on the CPU it repeats either way. Tests that
/// compare two runs of one request turn reuse off on a GPU, and keep it on elsewhere.
fn repeatable(options: &mut LoadOptions) {
    if on_gpu() {
        options.prefix_reuse = false;
    }
}

fn chat(user: &str) -> String {
    format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
}

/// A system prompt long enough that sharing it is worth something (about 100 tokens).
fn long_system_prompt() -> String {
    let rules =
        "Answer briefly, cite the source, stay polite, avoid jargon, and never invent facts. ";
    format!("<|im_start|>system\n{}<|im_end|>\n", rules.repeat(5))
}

#[tokio::test]
async fn two_concurrent_generations_both_finish_with_correct_usage() {
    let Some(engine) = smollm2(|options| options.parallel = 2) else {
        return;
    };
    let prompts = [
        chat("Name three colors."),
        chat("Describe the sea in one line."),
    ];
    let streams: Vec<_> = prompts
        .iter()
        .map(|prompt| engine.generate(request(prompt, 24)).unwrap())
        .collect();
    let mut outputs = Vec::new();
    for stream in streams {
        outputs.push(collect(stream).await);
    }
    for (prompt, output) in prompts.iter().zip(&outputs) {
        let prompt_tokens = engine.tokenize(prompt, true, true).unwrap().len();
        assert_eq!(output.reason, FinishReason::Length);
        assert_eq!(output.usage.prompt_tokens as usize, prompt_tokens);
        assert_eq!(output.prompt_tokens as usize, prompt_tokens);
        assert_eq!(output.usage.completion_tokens, 24);
        assert_eq!(output.tokens.len(), 24);
        assert!(!output.text().is_empty());
    }
    assert_ne!(outputs[0].ids(), outputs[1].ids());

    // Batched with another sequence or alone, greedy output is the same on the CPU; on a GPU
    // the batch's shape changes the kernels' rounding, so it may differ there.
    if !on_gpu() {
        let alone = generate(&engine, request(&prompts[0], 24)).await;
        assert_eq!(alone.text(), outputs[0].text());
    }
}

/// The polling hand-off (`LoadOptions::compute_poll`, on by default only with a core to spare)
/// decodes the same as the sleeping one: each step's result comes back to the right stream.
#[tokio::test]
async fn a_polling_handoff_decodes_as_the_sleeping_one() {
    let prompts = [chat("Name three colors."), chat("Count to five.")];
    let outputs = |poll: Duration| {
        let prompts = prompts.clone();
        async move {
            let engine = smollm2(|options| {
                options.parallel = 2;
                options.compute_poll = Some(poll);
                repeatable(options);
            })?;
            let streams: Vec<_> = prompts
                .iter()
                .map(|prompt| engine.generate(request(prompt, 16)).unwrap())
                .collect();
            let mut texts = Vec::new();
            for stream in streams {
                let output = collect(stream).await;
                assert_eq!(output.usage.completion_tokens, 16);
                texts.push(output.text());
            }
            Some(texts)
        }
    };
    let Some(polling) = outputs(Duration::from_millis(2)).await else {
        return;
    };
    let sleeping = outputs(Duration::ZERO).await.unwrap();
    // On a GPU a batch's results depend on its shape, which timing may change.
    if !on_gpu() {
        assert_eq!(polling, sleeping);
    }
}

#[tokio::test]
async fn dropping_a_stream_frees_its_sequence() {
    let Some(engine) = smollm2(|options| options.parallel = 1) else {
        return;
    };
    let mut first = engine.generate(request(CHAT_PROMPT, 500)).unwrap();
    for _ in 0..3 {
        next_event(&mut first).await.unwrap().unwrap();
    }
    drop(first);
    // The only sequence must come free for this one to run at all.
    let started = Instant::now();
    let second = generate(&engine, request(&chat("Say hi."), 8)).await;
    assert_eq!(second.usage.completion_tokens, 8);
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn the_same_seed_gives_the_same_output() {
    let Some(engine) = smollm2(|options| {
        options.parallel = 2;
        repeatable(options);
    }) else {
        return;
    };
    let sampled = |seed| {
        let mut request = request(&chat("Invent a name for a cat."), 24);
        request.sampling.temperature = 1.0;
        request.sampling.top_p = 0.95;
        request.sampling.seed = Some(seed);
        request
    };
    let first = generate(&engine, sampled(7)).await;
    let again = generate(&engine, sampled(7)).await;
    assert_eq!(first.ids(), again.ids());
    let others: Vec<_> = [8, 9, 10].into_iter().map(sampled).collect();
    let mut differs = false;
    for other in others {
        differs |= generate(&engine, other).await.ids() != first.ids();
    }
    assert!(differs, "three other seeds all gave the same 24 tokens");
}

#[tokio::test]
async fn a_stop_string_is_never_streamed() {
    let Some(engine) = smollm2(|options| {
        options.parallel = 1;
        repeatable(options);
    }) else {
        return;
    };
    let free = generate(&engine, request(CHAT_PROMPT, 40)).await;
    // A stop string that starts inside one token and ends inside the next.
    let (index, _) = free
        .tokens
        .iter()
        .enumerate()
        .skip(5)
        .find(|(index, token)| {
            token.text.chars().count() >= 2 && free.tokens[index + 1].text.chars().count() >= 2
        })
        .unwrap();
    let before: String = free.tokens[..index]
        .iter()
        .map(|t| t.text.as_str())
        .collect();
    let tail: String = free.tokens[index].text.chars().skip(1).collect();
    let head: String = free.tokens[index + 1].text.chars().take(1).collect();
    let stop = format!("{tail}{head}");
    let full = free.text();
    let expected = &full[..full.find(&stop).unwrap()];
    assert!(expected.len() <= before.len() + free.tokens[index].text.len());

    let mut stopped_request = request(CHAT_PROMPT, 40);
    stopped_request.stop.stop_strings = vec![stop.clone()];
    let stopped = generate(&engine, stopped_request).await;
    assert_eq!(stopped.reason, FinishReason::Stop);
    assert_eq!(stopped.text(), expected);
    let mut streamed = String::new();
    for token in &stopped.tokens {
        streamed.push_str(&token.text);
        assert!(!streamed.contains(&stop), "the stop string was streamed");
    }
    assert!(stopped.usage.completion_tokens < 40);
}

#[tokio::test]
async fn end_of_generation_stops_unless_ignored() {
    let Some(engine) = smollm2(|options| options.parallel = 1) else {
        return;
    };
    let mut ends = request(&chat("What is 2+2? Answer with one number."), 200);
    ends.stop.ignore_eos = false;
    let output = generate(&engine, ends).await;
    assert_eq!(output.reason, FinishReason::Stop);
    assert!(output.usage.completion_tokens < 200);
    // The end-of-generation token is counted but not streamed.
    assert_eq!(
        output.tokens.len() + 1,
        output.usage.completion_tokens as usize
    );
    assert!(output
        .tokens
        .iter()
        .all(|token| !engine.info().eog_tokens.contains(&token.id)));

    let mut ignored = request(&chat("What is 2+2? Answer with one number."), 40);
    ignored.stop.ignore_eos = true;
    let output = generate(&engine, ignored).await;
    assert_eq!(output.reason, FinishReason::Length);
    assert_eq!(output.tokens.len(), 40);
}

#[tokio::test]
async fn a_shared_prefix_is_reused_across_sequences() {
    shared_prefix_reuse(false).await;
}

#[tokio::test]
async fn a_shared_prefix_is_reused_across_sequences_in_a_unified_kv_cache() {
    shared_prefix_reuse(true).await;
}

/// B reuses the system prompt A computed while A is still generating: copied into B's own
/// cache, or shared within the unified one.
async fn shared_prefix_reuse(kv_unified: bool) {
    let Some(engine) = smollm2(|options| {
        options.parallel = 2;
        options.kv_unified = kv_unified;
    }) else {
        return;
    };
    let system = long_system_prompt();
    let prefix_tokens = engine.tokenize(&system, true, true).unwrap().len();
    assert!(prefix_tokens > 64, "{prefix_tokens}");
    let first_prompt = format!("{system}{}", chat("Name a fruit."));
    let second_prompt = format!("{system}{}", chat("Name a river."));

    // The first request is still generating in its sequence when the second one arrives.
    let mut first = engine.generate(request(&first_prompt, 200)).unwrap();
    let Some(Ok(GenerationEvent::Started { cached_tokens, .. })) = next_event(&mut first).await
    else {
        panic!("no Started event");
    };
    assert_eq!(cached_tokens, 0);
    next_event(&mut first).await.unwrap().unwrap();

    let second = generate(&engine, request(&second_prompt, 16)).await;
    assert!(
        second.usage.cached_tokens as usize >= prefix_tokens,
        "cached {} of a {prefix_tokens}-token prefix",
        second.usage.cached_tokens
    );
    assert_eq!(second.cached_tokens, second.usage.cached_tokens);
    drop(first);

    // The shared entries give the same greedy text as computing the prompt from scratch.
    let Some(fresh_engine) = smollm2(|options| {
        options.parallel = 1;
        options.prefix_reuse = false;
    }) else {
        return;
    };
    let fresh = generate(&fresh_engine, request(&second_prompt, 16)).await;
    assert_eq!(fresh.usage.cached_tokens, 0);
    assert_eq!(fresh.text(), second.text());

    // The same prompt again reuses its own sequence's entries: all but the last token.
    let repeat = generate(&fresh_engine, request(&second_prompt, 4)).await;
    assert_eq!(repeat.usage.cached_tokens, 0, "prefix reuse is off");
    let again = generate(&engine, request(&second_prompt, 4)).await;
    assert_eq!(again.usage.cached_tokens, again.usage.prompt_tokens - 1);
}

#[tokio::test]
async fn a_prompt_evicted_from_its_sequence_comes_back_from_the_host_cache() {
    // One sequence: every new prompt evicts the last one, which the host cache keeps (its
    // default size on the CPU; on a GPU it is off unless sized).
    let Some(engine) = smollm2(|options| {
        options.parallel = 1;
        if on_gpu() {
            options.host_cache_tokens = Some(8192);
        }
    }) else {
        return;
    };
    let first_prompt = format!("{}{}", long_system_prompt(), chat("Name three colors."));
    let other_prompt = chat("Describe the sea in one line, please, in plain words.");
    let first = generate(&engine, request(&first_prompt, 16)).await;
    assert_eq!(first.usage.cached_tokens, 0);
    let other = generate(&engine, request(&other_prompt, 8)).await;
    // It shares only its opening `<|im_start|>` with the first prompt, which the sequence it
    // replaces keeps (any shared start of the sequence a request evicts anyway is kept).
    assert_eq!(
        other.usage.cached_tokens, 1,
        "only the opening token is shared with the first prompt"
    );
    // The first prompt again: restored from host memory, all but its last token, and the
    // restored entries give the same greedy text as computing them.
    let again = generate(&engine, request(&first_prompt, 16)).await;
    assert_eq!(again.usage.cached_tokens, again.usage.prompt_tokens - 1);
    assert_eq!(again.text(), first.text());

    let Some(uncached) = smollm2(|options| {
        options.parallel = 1;
        options.host_cache_tokens = Some(0);
    }) else {
        return;
    };
    generate(&uncached, request(&first_prompt, 4)).await;
    generate(&uncached, request(&other_prompt, 4)).await;
    let recomputed = generate(&uncached, request(&first_prompt, 4)).await;
    assert_eq!(
        recomputed.usage.cached_tokens, 1,
        "host cache off: only the opening token the other prompt's sequence shares"
    );
}

#[tokio::test]
async fn logprobs_describe_the_chosen_token_and_its_alternatives() {
    let Some(engine) = smollm2(|options| options.parallel = 1) else {
        return;
    };
    let mut asked = request(CHAT_PROMPT, 8);
    asked.logprobs = Some(3);
    asked.prompt_logprobs = true;
    let output = generate(&engine, asked).await;
    for token in &output.tokens {
        let logprob = token.logprob.as_ref().unwrap();
        assert_eq!(logprob.top.len(), 3);
        assert!(logprob.logprob <= 0.0);
        // Greedy: the chosen token is the most likely one.
        assert_eq!(logprob.top[0].logprob, logprob.logprob);
        assert_eq!(logprob.top[0].bytes, logprob.bytes);
        assert!(logprob
            .top
            .windows(2)
            .all(|pair| pair[0].logprob >= pair[1].logprob));
    }
    let prompt = output.prompt_logprobs.as_ref().unwrap();
    assert_eq!(prompt.len(), output.usage.prompt_tokens as usize);
    assert!(prompt[0].is_none());
    for entry in &prompt[1..] {
        let logprob = entry.as_ref().unwrap();
        assert!(logprob.logprob <= 0.0);
        // A prompt token gets the alternatives a generated one gets, most likely first.
        assert_eq!(logprob.top.len(), 3);
        assert!(logprob.top[0].logprob >= logprob.logprob);
        assert!(logprob
            .top
            .windows(2)
            .all(|pair| pair[0].logprob >= pair[1].logprob));
    }
    assert_eq!(output.usage.cached_tokens, 0);

    // Scoring the prompt followed by the greedy answer, the way evaluation harnesses score a
    // continuation (echo, no new tokens): each answer token is its position's most likely
    // token, with the logprob it had when it was generated.
    let mut scored_prompt = engine.tokenize(CHAT_PROMPT, true, true).unwrap();
    scored_prompt.extend(output.ids());
    let mut scored = request(CHAT_PROMPT, 0);
    scored.prompt = Prompt::Tokens(scored_prompt);
    scored.logprobs = Some(1);
    scored.prompt_logprobs = true;
    let scored = generate(&engine, scored).await;
    assert_eq!(scored.usage.completion_tokens, 0);
    let scored = scored.prompt_logprobs.unwrap();
    let answer = &scored[scored.len() - output.tokens.len()..];
    for (token, entry) in output.tokens.iter().zip(answer) {
        let generated = token.logprob.as_ref().unwrap();
        let entry = entry.as_ref().unwrap();
        assert_eq!(entry.bytes, generated.bytes);
        assert_eq!(entry.top.len(), 1);
        assert_eq!(
            entry.top[0].bytes, entry.bytes,
            "greedy: the top alternative"
        );
        assert!(
            (entry.logprob - generated.logprob).abs() < 1e-3,
            "{} scored, {} generated",
            entry.logprob,
            generated.logprob
        );
    }
}

#[tokio::test]
async fn requests_beyond_the_queue_are_refused_at_once() {
    let Some(engine) = smollm2(|options| {
        options.parallel = 1;
        options.max_queue = 1;
    }) else {
        return;
    };
    let mut running = engine.generate(request(CHAT_PROMPT, 400)).unwrap();
    next_event(&mut running).await.unwrap().unwrap();
    let _waiting = engine.generate(request(CHAT_PROMPT, 4)).unwrap();
    let refused = engine.generate(request(CHAT_PROMPT, 4));
    assert!(
        matches!(refused, Err(EngineError::Overloaded { .. })),
        "{:?}",
        refused.err()
    );
}

#[tokio::test]
async fn a_prompt_that_does_not_fit_is_refused_at_once() {
    let Some(engine) = smollm2(|options| options.n_ctx_per_seq = 64) else {
        return;
    };
    let long = "word ".repeat(200);
    let refused = engine.generate(request(&long, 4)).err();
    let Some(EngineError::PromptTooLong {
        prompt_tokens,
        n_ctx,
    }) = refused
    else {
        panic!("{refused:?}");
    };
    assert!(prompt_tokens > 64);
    assert_eq!(n_ctx, 64);
    assert_eq!(engine.info().n_ctx, 64);

    // A text too long to fit whatever its tokens is refused before it is tokenized: a body
    // full of special tokens would otherwise keep llama.cpp's tokenizer busy for minutes.
    let specials = "<|im_start|>".repeat(100_000);
    let Err(EngineError::PromptTooLong { prompt_tokens, .. }) =
        engine.tokenize(&specials, true, true)
    else {
        panic!("a 1.2 MB prompt for 64 positions was tokenized");
    };
    assert!(prompt_tokens > 64, "{prompt_tokens}");
    // Without special tokens parsed (not a prompt) the text is tokenized as before.
    let plain = engine
        .tokenize(&"<|im_start|>".repeat(8), false, false)
        .unwrap();
    assert!(plain.len() > 8, "{plain:?}");

    // A prompt that fits ends with `length` when the context fills up.
    let output = generate(&engine, request(&"word ".repeat(50), 100)).await;
    assert_eq!(output.reason, FinishReason::Length);
    assert_eq!(
        output.usage.prompt_tokens + output.usage.completion_tokens,
        64
    );
}

#[tokio::test]
async fn token_prompts_are_checked_against_the_vocabulary() {
    let Some(engine) = smollm2(repeatable) else {
        return;
    };
    let mut bad = request("", 4);
    bad.prompt = Prompt::Tokens(vec![1, 999_999]);
    assert!(matches!(
        engine.generate(bad),
        Err(EngineError::InvalidRequest(_))
    ));
    let mut empty = request("", 4);
    empty.prompt = Prompt::Tokens(Vec::new());
    assert!(matches!(
        engine.generate(empty),
        Err(EngineError::InvalidRequest(_))
    ));
    assert!(engine.token_bytes(-1).is_err());
    assert_eq!(engine.token_bytes(2).unwrap(), b"<|im_end|>");

    let tokens = engine.tokenize(CHAT_PROMPT, true, true).unwrap();
    let mut by_tokens = request("", 8);
    by_tokens.prompt = Prompt::Tokens(tokens);
    let from_tokens = generate(&engine, by_tokens).await;
    let from_text = generate(&engine, request(CHAT_PROMPT, 8)).await;
    assert_eq!(from_tokens.ids(), from_text.ids());
}

#[tokio::test]
async fn engine_info_comes_from_the_model() {
    let Some(engine) = smollm2(|options| options.parallel = 3) else {
        return;
    };
    assert_eq!(engine.health(), Health::Ready);
    let info = engine.info();
    assert_eq!(info.model, "smollm2:135m");
    assert_eq!(info.parallel, 3);
    assert_eq!(info.n_ctx_train, 8192);
    assert_eq!(info.n_vocab, 49152);
    assert!(info
        .chat_template
        .as_deref()
        .is_some_and(|t| t.contains("im_start")));
    assert!(info.eog_tokens.contains(&2));
    // SmolLM2 has 30 layers, so 31 to offload; a machine without a GPU keeps it on the CPU.
    let gpus = moat_engine_llamacpp::gpu_devices();
    if gpus.is_empty() {
        assert_eq!(info.placement, "CPU");
    } else {
        assert!(
            info.placement.starts_with(&gpus[0].name),
            "{}",
            info.placement
        );
        assert!(
            info.placement.ends_with(": 31 of 31 layers"),
            "{}",
            info.placement
        );
    }
}

#[tokio::test]
async fn zero_gpu_layers_keeps_the_model_on_the_cpu() {
    let Some(engine) = smollm2(|options| options.gpu_layers = Some(0)) else {
        return;
    };
    assert_eq!(engine.info().placement, "CPU");
    let done = generate(&engine, request(CHAT_PROMPT, 8)).await;
    assert_eq!(done.usage.completion_tokens, 8);
}

#[test]
fn a_file_that_is_not_a_model_fails_to_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.gguf");
    std::fs::write(&path, b"not a gguf file at all").unwrap();
    let engine = LlamaEngine::load(&path, LoadOptions::new("junk")).unwrap();
    assert!(matches!(
        engine.wait_until_loaded(),
        Err(EngineError::ModelLoad(_))
    ));
    assert_eq!(engine.health(), Health::Failed);
    assert!(matches!(
        engine.generate(request("hi", 1)),
        Err(EngineError::ModelLoad(_))
    ));
    assert!(LlamaEngine::load(&dir.path().join("missing.gguf"), LoadOptions::new("m")).is_err());
}

#[test]
fn values_llama_cpp_would_abort_on_fail_the_load_not_the_process() {
    let dir = tempfile::tempdir().unwrap();
    // Each of these aborted the whole process in llama.cpp (a GGML_ASSERT at load, or at the
    // first decode for the epsilon and the F16 norm weight) or panicked in llama-cpp-2 (the
    // context length).
    for (name, skip, value) in [
        ("llama.block_count", 4, 0u32.to_le_bytes()),
        ("llama.context_length", 4, u32::MAX.to_le_bytes()),
        (
            "llama.attention.layer_norm_rms_epsilon",
            4,
            (-1.0f32).to_le_bytes(),
        ),
        ("output_norm.weight", 12, 1u32.to_le_bytes()),
    ] {
        let Some(model) = moat_testkit::test_model(moat_testkit::models::SMOLLM2) else {
            return;
        };
        let path = dir.path().join(format!("{name}.gguf"));
        moat_testkit::patched_gguf(&model, &path, name, skip, value);
        let engine = LlamaEngine::load(&path, LoadOptions::new("patched")).unwrap();
        match engine.wait_until_loaded() {
            Err(EngineError::ModelLoad(message)) => {
                assert!(message.contains(name), "{name}: {message}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn stats_show_a_running_sequence_and_the_queue_then_idle() {
    let Some(engine) = smollm2(|options| options.parallel = 1) else {
        return;
    };
    let mut first = engine.generate(request(CHAT_PROMPT, 500)).unwrap();
    let second = engine.generate(request(&chat("Say hi."), 4)).unwrap();
    next_event(&mut first).await.unwrap().unwrap();
    // The worker publishes after every step; wait for the step that shows both.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = engine.stats().expect("a loaded engine reports its load");
        if stats.running == 1 && stats.queued == 1 {
            assert!(stats.kv_cells_used > 0 && stats.kv_cells_used <= stats.kv_cells_total);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never saw 1 running, 1 queued: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(first);
    collect(second).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = engine.stats().expect("a loaded engine reports its load");
        if stats.running == 0 && stats.queued == 0 {
            assert!(stats.kv_cells_total > 0);
            break;
        }
        assert!(Instant::now() < deadline, "never idle again: {stats:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
