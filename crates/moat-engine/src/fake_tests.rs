//! Tests of `FakeEngine` through the `Engine` trait, as the server will use it.

use std::time::{Duration, Instant};

use super::*;
use crate::{StopConditions, Usage};

const WAIT: Duration = Duration::from_secs(10);

fn engine(reply: FakeReply, tweak: impl FnOnce(&mut FakeConfig)) -> FakeEngine {
    let mut config = FakeConfig {
        reply,
        ..FakeConfig::default()
    };
    tweak(&mut config);
    FakeEngine::new(config).expect("the fake engine starts")
}

fn request(prompt: &str) -> ValidGenerate {
    ValidGenerate {
        prompt: Prompt::Text(prompt.into()),
        sampling: crate::SamplingParams::default(),
        stop: StopConditions {
            max_tokens: 500,
            stop_strings: Vec::new(),
            ignore_eos: false,
        },
        logprobs: None,
        prompt_logprobs: false,
        deadline: None,
        grammar: None,
        thinking: None,
    }
}

fn with_stop(mut request: ValidGenerate, max_tokens: u32, stops: &[&str]) -> ValidGenerate {
    request.stop.max_tokens = max_tokens;
    request.stop.stop_strings = stops.iter().map(|s| s.to_string()).collect();
    request
}

/// Every event until the stream ends; an error ends the list.
async fn collect(mut stream: TokenStream) -> Vec<Result<GenerationEvent, EngineError>> {
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, stream.next()).await {
            Ok(Some(event)) => events.push(event),
            Ok(None) => return events,
            Err(_) => panic!("no event for {WAIT:?}; got {events:?}"),
        }
    }
}

fn ok(events: Vec<Result<GenerationEvent, EngineError>>) -> Vec<GenerationEvent> {
    events
        .into_iter()
        .map(|event| event.expect("no error"))
        .collect()
}

fn texts(events: &[GenerationEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            GenerationEvent::Token(token) => Some(token.text.clone()),
            _ => None,
        })
        .collect()
}

/// How the stream ended and its usage, busy time left out (it is measured, so it varies;
/// `busy_time_is_each_steps_wall_time` checks it).
fn finish(events: &[GenerationEvent]) -> (FinishReason, Usage) {
    match events.last() {
        Some(GenerationEvent::Finished { reason, usage }) => (
            *reason,
            Usage {
                busy: Duration::ZERO,
                ..*usage
            },
        ),
        other => panic!("the stream did not end with Finished: {other:?}"),
    }
}

fn started(events: &[GenerationEvent]) -> (u32, u32) {
    match events.first() {
        Some(GenerationEvent::Started {
            prompt_tokens,
            cached_tokens,
            ..
        }) => (*prompt_tokens, *cached_tokens),
        other => panic!("the stream did not begin with Started: {other:?}"),
    }
}

async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn streams_started_tokens_and_finished_with_usage() {
    let engine = engine(FakeReply::ReversePrompt, |_| {});
    let events = ok(collect(engine.generate(request("hello")).expect("accepted")).await);
    assert_eq!(started(&events), (6, 0), "BOS and five bytes");
    assert_eq!(texts(&events).concat(), "olleh");
    let usage = Usage {
        prompt_tokens: 6,
        completion_tokens: 6,
        cached_tokens: 0,
        ..Usage::default()
    };
    assert_eq!(
        finish(&events),
        (FinishReason::Stop, usage),
        "five bytes and the end token"
    );
}

#[tokio::test]
async fn busy_time_is_each_steps_wall_time() {
    // Alone in the engine, a request pays for every step it is in: one prefill step that
    // samples the first token, then one step per further token, each at least `step_delay`.
    let engine = engine(FakeReply::ReversePrompt, |config| {
        config.step_delay = Duration::from_millis(3);
    });
    let events = ok(collect(engine.generate(request("hello")).expect("accepted")).await);
    let Some(GenerationEvent::Finished { usage, .. }) = events.last() else {
        panic!("no Finished: {events:?}");
    };
    assert_eq!(usage.completion_tokens, 6);
    assert!(
        usage.busy >= Duration::from_millis(3 * 6),
        "six steps of at least 3 ms, got {:?}",
        usage.busy
    );
}

#[tokio::test]
async fn a_stop_string_split_across_tokens_is_never_streamed() {
    let engine = engine(
        FakeReply::Fixed("The answer is 42.</end> and more".into()),
        |_| {},
    );
    let events = ok(collect(
        engine
            .generate(with_stop(request("q"), 500, &["</end>"]))
            .expect("accepted"),
    )
    .await);
    let texts = texts(&events);
    assert_eq!(texts.concat(), "The answer is 42.");
    assert!(
        texts.iter().all(|text| !text.contains('<')),
        "no piece of the stop string: {texts:?}"
    );
    assert_eq!(finish(&events).0, FinishReason::Stop);
}

#[tokio::test]
async fn multi_byte_characters_arrive_whole() {
    let reply = "héllo 🦀 漢字";
    let engine = engine(FakeReply::Fixed(reply.into()), |_| {});
    let events = ok(collect(engine.generate(request("q")).expect("accepted")).await);
    let texts = texts(&events);
    assert_eq!(texts.concat(), reply);
    assert!(
        texts.iter().any(String::is_empty),
        "tokens inside a character carry no text"
    );
    assert!(texts.iter().all(|text| !text.contains('\u{fffd}')));
    assert_eq!(finish(&events).1.completion_tokens, reply.len() as u32 + 1);
}

#[tokio::test]
async fn max_tokens_ends_with_length_and_releases_held_text() {
    let engine = engine(FakeReply::Repeat("xy".into()), |_| {});
    let events = ok(collect(
        engine
            .generate(with_stop(request("q"), 4, &["y!"]))
            .expect("accepted"),
    )
    .await);
    assert_eq!(texts(&events), ["x", "", "yx", "y"]);
    assert_eq!(finish(&events).0, FinishReason::Length);
    assert_eq!(finish(&events).1.completion_tokens, 4);
}

#[tokio::test]
async fn ignore_eos_generates_up_to_max_tokens() {
    let engine = engine(FakeReply::Fixed("ab".into()), |_| {});
    let mut request = with_stop(request("q"), 5, &[]);
    request.stop.ignore_eos = true;
    let events = ok(collect(engine.generate(request).expect("accepted")).await);
    assert_eq!(texts(&events).concat(), "ab");
    assert_eq!(
        finish(&events),
        (
            FinishReason::Length,
            Usage {
                prompt_tokens: 2,
                completion_tokens: 5,
                cached_tokens: 0,
                ..Usage::default()
            }
        )
    );
}

#[tokio::test]
async fn a_full_queue_answers_overloaded_at_once() {
    let engine = engine(FakeReply::Repeat("z".into()), |config| {
        config.scheduler.parallel = 1;
        config.scheduler.max_queue = 1;
        config.step_delay = Duration::from_millis(20);
    });
    let _first = engine.generate(request("a")).expect("runs");
    let _second = engine.generate(request("b")).expect("waits");
    let third = engine.generate(request("c"));
    assert!(
        matches!(third, Err(EngineError::Overloaded { .. })),
        "got {:?}",
        third.err()
    );
}

#[tokio::test]
async fn engine_stats_count_running_and_queued_requests() {
    let engine = engine(FakeReply::Repeat("z".into()), |config| {
        config.scheduler.parallel = 1;
        config.scheduler.max_queue = 2;
        config.step_delay = Duration::from_millis(5);
    });
    let idle = Engine::stats(&engine).expect("the fake reports its load");
    assert_eq!((idle.running, idle.queued, idle.kv_cells_used), (0, 0, 0));
    assert!(idle.kv_cells_total > 0);
    let mut first = engine.generate(request("a")).expect("runs");
    let _second = engine.generate(request("b")).expect("waits");
    assert!(matches!(
        first.next().await,
        Some(Ok(GenerationEvent::Started { .. }))
    ));
    until("one running and one queued", || {
        Engine::stats(&engine).is_some_and(|s| s.running == 1 && s.queued == 1)
    })
    .await;
    let busy = Engine::stats(&engine).expect("the fake reports its load");
    assert!(busy.kv_cells_used > 0 && busy.kv_cells_used <= busy.kv_cells_total);
}

#[tokio::test]
async fn dropping_a_stream_frees_its_slot() {
    let engine = engine(FakeReply::Repeat("z".into()), |config| {
        config.scheduler.parallel = 1;
        config.scheduler.max_queue = 0;
        config.step_delay = Duration::from_millis(5);
    });
    let mut stream = engine.generate(request("a")).expect("runs");
    assert!(matches!(
        stream.next().await,
        Some(Ok(GenerationEvent::Started { .. }))
    ));
    assert!(matches!(
        engine.generate(request("b")),
        Err(EngineError::Overloaded { .. })
    ));
    drop(stream);
    until("the slot to be freed", || engine.stats().running == 0).await;
    let events = ok(collect(
        engine
            .generate(with_stop(request("b"), 3, &[]))
            .expect("accepted now"),
    )
    .await);
    assert_eq!(finish(&events).0, FinishReason::Length);
}

#[tokio::test]
async fn a_deadline_ends_the_stream() {
    let engine = engine(FakeReply::Repeat("z".into()), |config| {
        config.step_delay = Duration::from_millis(5)
    });
    let mut request = request("q");
    request.deadline = Some(Instant::now() + Duration::from_millis(60));
    let events = ok(collect(engine.generate(request).expect("accepted")).await);
    let (reason, usage) = finish(&events);
    assert_eq!(reason, FinishReason::Deadline);
    assert!(
        usage.completion_tokens > 0 && usage.completion_tokens < 500,
        "{usage:?}"
    );
}

#[tokio::test]
async fn a_second_request_reuses_the_system_prompt_of_a_running_one() {
    let engine = engine(FakeReply::ReversePrompt, |config| {
        config.step_delay = Duration::from_millis(1)
    });
    let system = "You are a helpful assistant who answers in full sentences. ".repeat(3);
    let mut first = engine
        .generate(request(&format!("{system}First question?")))
        .expect("accepted");
    assert!(matches!(
        first.next().await,
        Some(Ok(GenerationEvent::Started { .. }))
    ));
    let second_prompt = format!("{system}Second?");
    let events = ok(collect(engine.generate(request(&second_prompt)).expect("accepted")).await);
    let (prompt_tokens, cached_tokens) = started(&events);
    assert_eq!(prompt_tokens as usize, second_prompt.len() + 1);
    assert!(
        cached_tokens as usize > system.len(),
        "BOS and the system prompt were reused: {cached_tokens}"
    );
    assert_eq!(finish(&events).1.cached_tokens, cached_tokens);
    // The mirror checked the copied cells; the reply proves the model saw the whole prompt.
    assert_eq!(
        texts(&events).concat(),
        second_prompt.chars().rev().collect::<String>()
    );
    assert_eq!(engine.health(), Health::Ready);
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_stall_the_others() {
    let engine = engine(FakeReply::Repeat("z".into()), |config| {
        config.stream_capacity = 2
    });
    let mut stalled = engine
        .generate(with_stop(request("a"), 300, &[]))
        .expect("accepted");
    assert!(stalled.next().await.is_some());
    let events = ok(collect(
        engine
            .generate(with_stop(request("b"), 200, &[]))
            .expect("accepted"),
    )
    .await);
    assert_eq!(finish(&events).1.completion_tokens, 200);
    // The stalled stream lost nothing.
    let rest = ok(collect(stalled).await);
    assert_eq!(texts(&rest).concat(), "z".repeat(300));
    assert_eq!(finish(&rest).0, FinishReason::Length);
}

#[tokio::test]
async fn many_concurrent_streams_each_get_their_own_answer() {
    let engine = engine(FakeReply::ReversePrompt, |config| {
        config.scheduler.parallel = 3;
        config.scheduler.max_queue = 20;
        config.scheduler.prefill_chunk = 8;
        config.scheduler.n_batch = 16;
    });
    let prompts: Vec<String> = (0..12)
        .map(|i| format!("shared preamble for all, request number {i}"))
        .collect();
    let streams: Vec<TokenStream> = prompts
        .iter()
        .map(|p| engine.generate(request(p)).expect("accepted"))
        .collect();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|stream| tokio::spawn(collect(stream)))
        .collect();
    for (prompt, task) in prompts.iter().zip(tasks) {
        let events = ok(task.await.expect("task ran"));
        assert_eq!(
            texts(&events).concat(),
            prompt.chars().rev().collect::<String>()
        );
        assert_eq!(finish(&events).0, FinishReason::Stop);
    }
    assert_eq!(engine.health(), Health::Ready);
    until("all slots to be free", || engine.stats().running == 0).await;
}

#[tokio::test]
async fn logprobs_and_prompt_logprobs_are_reported() {
    let engine = engine(FakeReply::Fixed("ok".into()), |_| {});
    let mut request = request("abc");
    request.logprobs = Some(3);
    request.prompt_logprobs = true;
    let events = ok(collect(engine.generate(request).expect("accepted")).await);
    let Some(GenerationEvent::Started {
        prompt_logprobs: Some(prompt_logprobs),
        ..
    }) = events.first()
    else {
        panic!("Started with prompt logprobs: {:?}", events.first());
    };
    assert_eq!(prompt_logprobs.len(), 4, "one per prompt token");
    assert!(prompt_logprobs[0].is_none(), "the first token has none");
    assert_eq!(
        prompt_logprobs[1].as_ref().map(|l| l.token.as_str()),
        Some("a")
    );
    for event in &events {
        if let GenerationEvent::Token(token) = event {
            let logprob = token.logprob.as_ref().expect("asked for");
            assert_eq!(logprob.top.len(), 3);
            assert_eq!(logprob.top[0].token, logprob.token);
        }
    }
}

#[tokio::test]
async fn bad_requests_fail_at_once() {
    let engine = engine(FakeReply::ReversePrompt, |config| {
        config.scheduler.n_ctx_per_seq = 16
    });
    let long = engine.generate(request(&"x".repeat(20)));
    assert!(matches!(
        long,
        Err(EngineError::PromptTooLong {
            prompt_tokens: 21,
            n_ctx: 16
        })
    ));
    let mut tokens = request("");
    tokens.prompt = Prompt::Tokens(vec![1, 9999]);
    assert!(matches!(
        engine.generate(tokens),
        Err(EngineError::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn dropping_the_engine_ends_open_streams() {
    let engine = engine(FakeReply::Repeat("z".into()), |config| {
        config.step_delay = Duration::from_millis(5)
    });
    let mut stream = engine.generate(request("q")).expect("accepted");
    assert!(stream.next().await.is_some());
    drop(engine);
    let events = collect(stream).await;
    assert!(
        matches!(events.last(), Some(Err(EngineError::ShuttingDown))),
        "{:?}",
        events.last()
    );
}

#[test]
fn blocking_next_works_outside_a_runtime() {
    let engine = engine(FakeReply::Fixed("hi".into()), |_| {});
    let mut stream = engine.generate(request("q")).expect("accepted");
    let mut text = String::new();
    while let Some(event) = stream.blocking_next() {
        if let GenerationEvent::Token(token) = event.expect("no error") {
            text.push_str(&token.text);
        }
    }
    assert_eq!(text, "hi");
}

#[test]
fn tokenize_maps_bytes_and_special_tokens() {
    let engine = engine(FakeReply::ReversePrompt, |_| {});
    assert_eq!(
        engine.tokenize("<s>a</s>", false, true).expect("tokens"),
        [BOS, 97, EOS]
    );
    assert_eq!(
        engine.tokenize("<s>", true, false).expect("tokens"),
        [BOS, 60, 115, 62]
    );
    assert_eq!(engine.token_bytes(EOS).expect("bytes"), b"</s>");
    assert!(engine.token_bytes(9999).is_err());
    assert_eq!(engine.info().eog_tokens, [EOS]);
}
