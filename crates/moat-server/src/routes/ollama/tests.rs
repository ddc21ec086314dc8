//! Unit tests of the translation, with no model.
#![allow(clippy::unwrap_used)]

use super::*;

const ONE: Asked = Asked {
    stream: false,
    logprobs: false,
};
const STREAM: Asked = Asked {
    stream: true,
    logprobs: false,
};

fn applied(options: Value) -> Result<Map<String, Value>> {
    let mut body = Map::new();
    apply_options(options.as_object().unwrap(), &mut body)?;
    Ok(body)
}

#[test]
fn options_become_openai_sampling_fields() {
    let body = applied(json!({
        "temperature": 0, "top_k": 20, "top_p": 0.9, "min_p": 0.05, "seed": 7,
        "repeat_penalty": 1.1, "presence_penalty": 0.5, "frequency_penalty": 0.25,
        "stop": ["\n"], "num_predict": 12, "num_ctx": 4096, "num_thread": 8,
        "repeat_last_n": 64, "mirostat": 0, "typical_p": 1.0, "tfs_z": 1, "top_a": null
    }))
    .ok()
    .unwrap();
    assert_eq!(
        Value::Object(body),
        json!({
            "temperature": 0, "top_k": 20, "top_p": 0.9, "min_p": 0.05, "seed": 7,
            "repetition_penalty": 1.1, "presence_penalty": 0.5, "frequency_penalty": 0.25,
            "stop": ["\n"], "max_tokens": 12
        })
    );
    // No limit (-1) and "fill the context" (-2) leave max_tokens to the context.
    assert!(applied(json!({"num_predict": -1})).ok().unwrap().is_empty());
    assert!(applied(json!({"num_predict": -2})).ok().unwrap().is_empty());
}

#[test]
fn samplers_moat_lacks_and_unknown_options_are_refused() {
    let message = |options: Value| applied(options).err().unwrap().message;
    assert!(message(json!({"mirostat": 2})).contains("mirostat"));
    assert!(message(json!({"typical_p": 0.5})).contains("typical_p"));
    assert!(message(json!({"tfs_z": 0.9})).contains("tfs_z"));
    assert!(message(json!({"temprature": 0.1})).contains("not an Ollama option"));
    assert!(message(json!({"num_predict": "many"})).contains("integer"));
}

#[test]
fn fields_moat_does_not_do_are_refused_unless_empty() {
    for empty in [json!(null), json!(""), json!([]), json!(false)] {
        assert!(refuse_unless_empty("tools", Some(&empty), "no").is_ok());
    }
    assert!(refuse_unless_empty("tools", None, "no").is_ok());
    for set in [
        json!("x"),
        json!({"type": "object"}),
        json!([{}]),
        json!(true),
    ] {
        let error = refuse_unless_empty("tools", Some(&set), "not yet")
            .err()
            .unwrap();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.message, "tools: not yet");
    }
}

#[test]
fn format_becomes_response_format() {
    for free in [None, Some(json!(null)), Some(json!(""))] {
        assert_eq!(response_format(free.as_ref()).unwrap(), None);
    }
    assert_eq!(
        response_format(Some(&json!("json"))).unwrap(),
        Some(json!({"type": "json_object"}))
    );
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
    assert_eq!(
        response_format(Some(&schema)).unwrap(),
        Some(json!({"type": "json_schema", "json_schema": {"name": "format", "schema": schema}}))
    );
    for bad in [json!("yaml"), json!(["json"]), json!(true)] {
        let error = response_format(Some(&bad)).err().unwrap();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.message.starts_with("format: "), "{}", error.message);
    }
}

#[test]
fn completions_logprobs_take_chats_form() {
    let choice = json!({"text": "Hi", "logprobs": {
        "tokens": ["Hi"], "token_logprobs": [-0.5],
        "top_logprobs": [{"Hey": -2.0, "Hi": -0.5}], "text_offset": [0]}});
    assert_eq!(
        token_logprobs(&choice),
        vec![
            json!({"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": [
            {"token": "Hi", "logprob": -0.5, "bytes": [72, 105]},
            {"token": "Hey", "logprob": -2.0, "bytes": [72, 101, 121]}]})
        ]
    );
    let chat = json!({"logprobs": {"content": [{"token": "a", "logprob": -1.0}]}});
    assert_eq!(
        token_logprobs(&chat),
        vec![json!({"token": "a", "logprob": -1.0})]
    );
    assert!(token_logprobs(&json!({"logprobs": null})).is_empty());
}

#[test]
fn parameter_sizes_read_as_ollama_prints_them() {
    assert_eq!(parameter_size(134_515_008), "135M");
    assert_eq!(parameter_size(7_615_616_512), "7.6B");
    assert_eq!(parameter_size(268_098_176), "268M");
    assert_eq!(parameter_size(22_700), "23K");
}

#[tokio::test]
async fn a_whole_chat_answer_becomes_one_done_object() {
    let answer = Answer::Whole(json!({
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"},
                     "finish_reason": "length"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    }));
    let response = respond(answer, Shape::Chat, "m", ONE, Instant::now())
        .await
        .ok()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        value["message"],
        json!({"role": "assistant", "content": "Hi!"})
    );
    assert_eq!(value["done"], true);
    assert_eq!(value["done_reason"], "length");
    assert_eq!(value["prompt_eval_count"], 9);
    assert_eq!(value["eval_count"], 3);
    assert_eq!(value["model"], "m");
}

#[tokio::test]
async fn a_stream_becomes_lines_and_an_error_ends_it() {
    let chunk = |content: &str| {
        Piece::Chunk(
            json!({"choices": [{"index": 0, "delta": {"content": content},
                                "finish_reason": null}]})
            .to_string(),
        )
    };
    let pieces = vec![
        Piece::Chunk(
            json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}).to_string(),
        ),
        chunk("Hel"),
        chunk("lo"),
        Piece::Chunk(
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string(),
        ),
        Piece::Chunk(
            json!({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}})
                .to_string(),
        ),
    ];
    let lines = relay_lines(pieces, Shape::Generate).await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0]["response"], "Hel");
    assert_eq!(lines[0]["done"], false);
    assert_eq!(lines[1]["response"], "lo");
    assert_eq!(lines[2]["done"], true);
    assert_eq!(lines[2]["done_reason"], "stop");
    assert_eq!(lines[2]["response"], "");
    assert_eq!(lines[2]["prompt_eval_count"], 4);
    assert_eq!(lines[2]["eval_count"], 2);

    let error = json!({"error": {"message": "boom", "type": "server_error"}}).to_string();
    let lines = relay_lines(vec![chunk("a"), Piece::Error(error)], Shape::Chat).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["message"]["content"], "a");
    assert_eq!(lines[1], json!({"error": "boom"}));
}

async fn relay_lines(pieces: Vec<Piece>, shape: Shape) -> Vec<Value> {
    let answer = Answer::Stream(stream::iter(pieces).boxed());
    let response = respond(answer, shape, "m", STREAM, Instant::now())
        .await
        .ok()
        .unwrap();
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/x-ndjson"
    );
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.ends_with('\n'));
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn one_object_gathers_the_stream_and_an_error_keeps_its_status() {
    let chunk = |content: &str| {
        Piece::Chunk(json!({"choices": [{"index": 0, "delta": {"content": content}}]}).to_string())
    };
    let answer = Answer::Stream(stream::iter(vec![chunk("Hel"), chunk("lo")]).boxed());
    let response = respond(answer, Shape::Generate, "m", ONE, Instant::now())
        .await
        .ok()
        .unwrap();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value["response"], "Hello");
    assert_eq!(value["done"], true);
    let blocked = json!({"error": {"message": "blocked", "code": "content_policy_violation"}});
    let answer =
        Answer::Stream(stream::iter(vec![chunk("a"), Piece::Error(blocked.to_string())]).boxed());
    let error = respond(answer, Shape::Chat, "m", ONE, Instant::now())
        .await
        .err()
        .unwrap();
    assert_eq!(error.status, StatusCode::BAD_REQUEST);
    assert_eq!(error.message, "blocked");
}

#[test]
fn ollamas_defaults_fill_what_neither_the_request_nor_the_manifest_set() {
    let mut body = applied(json!({"top_k": 5})).ok().unwrap();
    fill_defaults(&mut body, |field| field == "top_p");
    assert_eq!(body.get("top_k"), Some(&json!(5)), "the request wins");
    assert_eq!(
        body.get("top_p"),
        None,
        "the manifest's default applies in the engine"
    );
    assert_eq!(
        body.get("temperature"),
        Some(&json!(0.8)),
        "Ollama's default fills the rest"
    );
    let mut body = Map::new();
    fill_defaults(&mut body, |_| false);
    assert_eq!(
        Value::Object(body),
        json!({"temperature": 0.8, "top_k": 40, "top_p": 0.9})
    );
}

fn openai_body_of(request: Value, completions: bool) -> Result<Map<String, Value>> {
    let common: Common = serde_json::from_value(request).unwrap();
    common.openai_body("m", completions, false)
}

#[test]
fn think_becomes_the_template_switch_and_reasoning_format() {
    let on = openai_body_of(json!({"model": "m", "think": true}), false)
        .ok()
        .unwrap();
    assert_eq!(on["chat_template_kwargs"], json!({"enable_thinking": true}));
    assert_eq!(on["reasoning_format"], "deepseek");
    let off = openai_body_of(json!({"model": "m", "think": false}), false)
        .ok()
        .unwrap();
    assert_eq!(
        off["chat_template_kwargs"],
        json!({"enable_thinking": false})
    );
    assert!(!off.contains_key("reasoning_format"));
    for unset in [json!({"model": "m"}), json!({"model": "m", "think": ""})] {
        let body = openai_body_of(unset, false).ok().unwrap();
        assert!(
            !body.contains_key("chat_template_kwargs") && !body.contains_key("reasoning_format")
        );
    }
    // A gateway alias's upstreams get neither field.
    let common: Common = serde_json::from_value(json!({"model": "m", "think": true})).unwrap();
    let upstream = common.openai_body("m", false, true).ok().unwrap();
    assert!(!upstream.contains_key("chat_template_kwargs"));
    assert!(!upstream.contains_key("reasoning_format"));
    let raw_off = openai_body_of(json!({"model": "m", "think": false}), true)
        .ok()
        .unwrap();
    assert!(!raw_off.contains_key("chat_template_kwargs"));
    for (request, completions) in [
        (json!({"model": "m", "think": "high"}), false),
        (json!({"model": "m", "think": 1}), false),
        (json!({"model": "m", "think": true}), true),
    ] {
        let error = openai_body_of(request, completions).err().unwrap();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.message.starts_with("think"), "{}", error.message);
    }
}

#[test]
fn thinking_is_read_from_either_field_even_beside_a_null() {
    let read = |part: Value| reasoning_text(&part).map(str::to_owned);
    assert_eq!(
        read(json!({"reasoning_content": null, "reasoning": "abc"})),
        Some("abc".into())
    );
    assert_eq!(read(json!({"reasoning_content": "x"})), Some("x".into()));
    assert_eq!(
        read(json!({"reasoning_content": "", "reasoning": "y"})),
        Some("y".into())
    );
    assert_eq!(read(json!({"content": "x"})), None);
}

#[tokio::test]
async fn thinking_lines_carry_their_tokens_logprobs() {
    let entry =
        |token: &str| json!({"token": token, "logprob": -0.5, "bytes": [], "top_logprobs": []});
    let chunk = |delta: Value, token: &str| {
        Piece::Chunk(
            json!({"choices": [{"index": 0, "delta": delta, "finish_reason": null,
                "logprobs": {"content": [entry(token)]}}]})
            .to_string(),
        )
    };
    let pieces = vec![
        chunk(json!({"reasoning_content": "A"}), "A"),
        chunk(json!({"reasoning_content": "B"}), "B"),
        chunk(json!({"content": "C"}), "C"),
    ];
    let answer = Answer::Stream(stream::iter(pieces).boxed());
    let asked = Asked {
        stream: true,
        logprobs: true,
    };
    let response = respond(answer, Shape::Chat, "m", asked, Instant::now())
        .await
        .ok()
        .unwrap();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let lines: Vec<Value> = String::from_utf8(body.to_vec())
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let tokens: Vec<Vec<String>> = lines
        .iter()
        .filter(|line| line["done"] == false)
        .map(|line| {
            line["logprobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|entry| entry["token"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(tokens, [vec!["A"], vec!["B"], vec!["C"]], "{lines:?}");
}
