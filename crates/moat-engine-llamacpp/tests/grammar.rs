//! Output constrained by a JSON Schema, with the real SmolLM2: what it writes parses and
//! matches the schema, greedy and sampled, and a schema llama.cpp cannot use is refused before
//! anything is queued.

#![allow(clippy::unwrap_used)]

mod common;

use common::{generate, qwen, request, smollm2};
use moat_engine::{Engine, EngineError, FinishReason, Grammar, ValidGenerate};
use serde_json::Value;

const PERSON: &str = r#"{
  "type": "object",
  "properties": {
    "name": {"type": "string", "maxLength": 12},
    "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "pet": {"enum": ["cat", "dog", "none"]},
    "likes_tea": {"type": "boolean"}
  },
  "required": ["name", "age", "pet", "likes_tea"],
  "additionalProperties": false
}"#;

/// A question SmolLM2 answers with a short object (asked about a person, it writes an object
/// whose one key is a paragraph, repeated until `max_tokens`).
const FRUITS: &str = "Give three fruits and their colors as a JSON object.";

fn chat(user: &str) -> String {
    format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
}

fn constrained(schema: &str, max_tokens: u32) -> ValidGenerate {
    asked("Describe a person you know.", schema, max_tokens)
}

fn asked(question: &str, schema: &str, max_tokens: u32) -> ValidGenerate {
    let mut request = request(&chat(question), max_tokens);
    request.stop.ignore_eos = false;
    request.grammar = Some(Grammar::JsonSchema(schema.to_owned()));
    request
}

/// The fields of PERSON, checked one by one.
fn assert_person(text: &str) {
    let value: Value = serde_json::from_str(text).unwrap_or_else(|error| {
        panic!("not JSON ({error}): {text:?}");
    });
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {text}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["age", "likes_tea", "name", "pet"], "{text}");
    assert!(
        object["name"].as_str().unwrap().chars().count() <= 12,
        "{text}"
    );
    let age = object["age"].as_i64().unwrap();
    assert!((0..=120).contains(&age), "{text}");
    assert!(
        ["cat", "dog", "none"].contains(&object["pet"].as_str().unwrap()),
        "{text}"
    );
    assert!(object["likes_tea"].is_boolean(), "{text}");
}

#[tokio::test]
async fn greedy_output_follows_the_schema_and_ends() {
    let Some(engine) = smollm2(|_| {}) else {
        return;
    };
    let free = generate(&engine, {
        let mut request = constrained(PERSON, 96);
        request.grammar = None;
        request
    })
    .await;
    assert!(
        serde_json::from_str::<Value>(&free.text()).is_err(),
        "without the grammar the model writes prose, so this test shows the grammar's effect: {:?}",
        free.text()
    );
    let bound = generate(&engine, constrained(PERSON, 96)).await;
    assert_eq!(bound.reason, FinishReason::Stop, "{:?}", bound.text());
    assert_person(bound.text().trim());
}

#[tokio::test]
async fn the_greedy_shortcut_picks_what_the_general_path_picks() {
    let Some(engine) = smollm2(|_| {}) else {
        return;
    };
    let people = format!(r#"{{"type": "array", "items": {PERSON}, "minItems": 6, "maxItems": 6}}"#);
    let person = "Describe a person you know.";
    for (question, schema) in [
        (person, PERSON),
        (person, people.as_str()),
        (FRUITS, r#"{"type": "object"}"#),
    ] {
        let shortcut = generate(&engine, asked(question, schema, 300)).await;
        // A neutral bias keeps the logits but takes the general path: sample with the chain,
        // mask the whole vocabulary when the grammar refuses the draw.
        let mut request = asked(question, schema, 300);
        request.sampling.logit_bias = vec![(0, 0.0)];
        let masked = generate(&engine, request).await;
        assert_eq!(
            shortcut.ids(),
            masked.ids(),
            "{schema}: {:?}",
            shortcut.text()
        );
        assert_eq!(shortcut.reason, FinishReason::Stop, "{:?}", shortcut.text());
        let value: Value = serde_json::from_str(shortcut.text().trim()).unwrap();
        if schema == PERSON {
            assert_person(shortcut.text().trim());
        } else if schema == people {
            let people = value.as_array().unwrap();
            assert_eq!(people.len(), 6);
            people
                .iter()
                .for_each(|person| assert_person(&person.to_string()));
        } else {
            assert!(value.is_object());
        }
    }
}

#[tokio::test]
async fn sampled_outputs_follow_the_schema() {
    let Some(engine) = smollm2(|options| options.parallel = 4) else {
        return;
    };
    let streams: Vec<_> = (0..8u64)
        .map(|seed| {
            let mut request = constrained(PERSON, 128);
            request.sampling.temperature = 1.2;
            request.sampling.seed = Some(seed);
            engine.generate(request).unwrap()
        })
        .collect();
    let mut texts = Vec::new();
    for stream in streams {
        let collected = common::collect(stream).await;
        assert_eq!(
            collected.reason,
            FinishReason::Stop,
            "{:?}",
            collected.text()
        );
        assert_person(collected.text().trim());
        texts.push(collected.text());
    }
    texts.sort();
    texts.dedup();
    assert!(
        texts.len() > 1,
        "sampling at 1.2 gave one answer: {texts:?}"
    );
}

#[tokio::test]
async fn a_scalar_schema_gives_just_that_value() {
    let Some(engine) = smollm2(|_| {}) else {
        return;
    };
    let answer = generate(&engine, constrained(r#"{"type": "boolean"}"#, 64)).await;
    assert_eq!(answer.reason, FinishReason::Stop);
    let text = answer.text();
    assert!(
        ["true", "false"].contains(&text.trim()),
        "{text:?} is not a JSON boolean"
    );
    let object = generate(&engine, {
        let mut request = asked(FRUITS, "{}", 64);
        request.grammar = Some(Grammar::json_object());
        request
    })
    .await;
    let text = object.text();
    assert_eq!(object.reason, FinishReason::Stop, "{text:?}");
    assert!(serde_json::from_str::<Value>(text.trim())
        .unwrap()
        .is_object());
}

#[tokio::test]
async fn a_schema_llama_cpp_cannot_use_is_refused_at_once() {
    // Room for two requests in flight: a refused grammar must give its place back.
    let Some(engine) = smollm2(|options| {
        options.parallel = 1;
        options.max_queue = 1;
    }) else {
        return;
    };
    let deep_pattern = format!(
        r#"{{"type": "string", "pattern": "^{}a{}$"}}"#,
        "(".repeat(5000),
        ")".repeat(5000)
    );
    for schema in [
        "not json",
        r##"{"$ref": "#/definitions/missing"}"##,
        r#"{"type": "array", "minItems": 100000, "items": {"type": "object"}}"#,
        // Each of these crashes or stalls llama.cpp's converter if it gets there.
        r#"{"type": "string", "minLength": 5, "maxLength": 2}"#,
        r##"{"allOf": [{"$ref": "#/allOf/0"}]}"##,
        &deep_pattern,
    ] {
        let error = engine.generate(constrained(schema, 8)).err();
        assert!(
            matches!(error, Some(EngineError::InvalidGrammar(_))),
            "{schema}: {error:?}"
        );
    }
    // The engine keeps serving, with both places free.
    let first = engine.generate(constrained(PERSON, 96)).unwrap();
    let second = engine.generate(constrained(PERSON, 96)).unwrap();
    for stream in [first, second] {
        assert_person(common::collect(stream).await.text().trim());
    }
}

/// Qwen2.5-Coder-0.5B, whose template writes tool calls as Hermes `<tool_call>` tags (one
/// token in its vocabulary).
const WEATHER_CALL: &str = r#"{"anyOf": [{"type": "object",
  "properties": {"name": {"const": "get_weather"},
                 "arguments": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                               "required": ["city"], "additionalProperties": false}},
  "required": ["name", "arguments"], "additionalProperties": false}]}"#;

/// `auto` tools: the calls' grammar, lazy.
fn calls_when_opened() -> Grammar {
    Grammar::Tagged {
        schema: WEATHER_CALL.to_owned(),
        open: "<tool_call>\n".to_owned(),
        close: "\n</tool_call>".to_owned(),
        many: false,
        lazy: true,
    }
}

#[tokio::test]
async fn a_lazy_grammar_leaves_free_text_alone() {
    let Some(engine) = qwen() else {
        return;
    };
    let prompt = "<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n";
    let mut free = request(prompt, 24);
    free.stop.ignore_eos = false;
    let mut lazy = free.clone();
    lazy.grammar = Some(calls_when_opened());
    let free = generate(&engine, free).await;
    let lazy = generate(&engine, lazy).await;
    assert!(!free.text().contains("<tool_call>"), "{}", free.text());
    assert_eq!(lazy.ids(), free.ids(), "{}", lazy.text());
}

#[tokio::test]
async fn a_lazy_grammar_holds_a_call_once_the_model_opens_one() {
    let Some(engine) = qwen() else {
        return;
    };
    let open = engine.tokenize("<tool_call>", false, true).unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    let prompt =
        "<|im_start|>user\nWhat is the weather in Paris?<|im_end|>\n<|im_start|>assistant\n";
    // The bias makes `<tool_call>` the likeliest token at every step: the model opens a call
    // at once, and without the grammar keeps writing the tag.
    let mut biased = request(prompt, 64);
    biased.stop.ignore_eos = false;
    biased.sampling.logit_bias = vec![(open[0], 30.0)];
    let unconstrained = generate(&engine, biased.clone()).await;
    assert!(
        unconstrained.text().starts_with("<tool_call><tool_call>"),
        "{}",
        unconstrained.text()
    );
    biased.grammar = Some(calls_when_opened());
    let held = generate(&engine, biased).await;
    let text = held.text();
    assert_eq!(held.reason, FinishReason::Stop, "{text}");
    let body = text
        .strip_prefix("<tool_call>\n")
        .and_then(|rest| rest.strip_suffix("\n</tool_call>"))
        .unwrap_or_else(|| panic!("not one tagged call: {text:?}"));
    let call: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(call["name"], "get_weather", "{text}");
    let city = call["arguments"]["city"].as_str().unwrap();
    assert!(city.chars().count() <= 20, "{text}");
}

#[tokio::test]
async fn a_lazy_grammar_the_model_cannot_watch_for_leaves_it_free() {
    // SmolLM2 has no `<tool_call>` token: the request runs as if it had no grammar.
    let Some(engine) = smollm2(|_| {}) else {
        return;
    };
    let mut free = request(&chat("Name three colors."), 24);
    free.stop.ignore_eos = false;
    let mut lazy = free.clone();
    lazy.grammar = Some(calls_when_opened());
    let free = generate(&engine, free).await;
    let lazy = generate(&engine, lazy).await;
    assert_eq!(lazy.ids(), free.ids(), "{}", lazy.text());
}

#[tokio::test]
async fn a_choice_grammar_gives_exactly_one_of_its_texts() {
    let Some(engine) = smollm2(|_| {}) else {
        return;
    };
    let texts = ["positive", "negative", "neutral \"or\" mixed\\"];
    let grammar = Grammar::Choice(texts.iter().map(|t| t.to_string()).collect());
    let question = "Is this review positive or negative? \"The food was cold and late.\"";
    let mut greedy = request(&chat(question), 16);
    greedy.stop.ignore_eos = false;
    greedy.grammar = Some(grammar.clone());
    let free = generate(&engine, {
        let mut free = greedy.clone();
        free.grammar = None;
        free
    })
    .await;
    assert!(!texts.contains(&free.text().as_str()), "{}", free.text());
    let held = generate(&engine, greedy.clone()).await;
    assert!(texts.contains(&held.text().as_str()), "{:?}", held.text());
    assert_eq!(held.reason, FinishReason::Stop);
    // Sampled too, and the quoted one holds its quotes and backslash as text.
    let mut seen = Vec::new();
    for seed in 0..6 {
        let mut sampled = greedy.clone();
        sampled.sampling.temperature = 1.5;
        sampled.sampling.seed = Some(seed);
        sampled.logprobs = None;
        let out = generate(&engine, sampled).await;
        assert!(texts.contains(&out.text().as_str()), "{:?}", out.text());
        seen.push(out.text());
    }
    let mut only_quoted = greedy;
    only_quoted.grammar = Some(Grammar::Choice(vec![texts[2].to_owned()]));
    assert_eq!(generate(&engine, only_quoted).await.text(), texts[2]);

    for refused in [
        Grammar::Choice(Vec::new()),
        Grammar::Choice(vec!["a".into(), String::new()]),
        Grammar::Choice(vec!["x".into(); 300]),
    ] {
        let mut request = request(&chat(question), 4);
        request.grammar = Some(refused);
        assert!(
            matches!(
                engine.generate(request),
                Err(EngineError::InvalidGrammar(_))
            ),
            "{seen:?}"
        );
    }
}
