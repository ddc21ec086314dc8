//! The HTTP app in process (`app(state).oneshot(request)`) against `FakeEngine`: every error
//! path in OpenAI's shape with its status, whole and streamed answers (SSE framing with
//! `include_usage` and `[DONE]`), echo and logprobs, `n`, stop strings, cancellation when a
//! client goes away, and draining.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use moat_engine::{FakeConfig, FakeEngine, FakeReply, SchedulerConfig, TemplateError};
use moat_openai::ModelLimits;
use moat_server::{app, AppState, ServedModel, ServerConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

fn engine(reply: FakeReply, configure: impl FnOnce(&mut FakeConfig)) -> Arc<FakeEngine> {
    let mut config = FakeConfig {
        reply,
        ..FakeConfig::default()
    };
    configure(&mut config);
    Arc::new(FakeEngine::new(config).unwrap())
}

fn state_with(engine: Arc<FakeEngine>, config: ServerConfig) -> AppState {
    let state = AppState::new(config);
    state.add_model("fake", ServedModel::new(engine, ModelLimits::default()));
    state
}

fn fake_app(reply: FakeReply) -> Router {
    app(state_with(engine(reply, |_| {}), ServerConfig::default()))
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// Checks OpenAI's error shape and returns `error`.
    fn error(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        let error = self.json()["error"].clone();
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.body
        );
        assert!(error["type"].is_string(), "{}", self.body);
        assert!(
            error.get("param").is_some() && error.get("code").is_some(),
            "{}",
            self.body
        );
        error
    }

    /// The `data:` payloads of an SSE body.
    fn sse_data(&self) -> Vec<String> {
        self.body
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }
}

async fn call(app: &Router, method: &str, uri: &str, body: impl Into<Body>) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

async fn post(app: &Router, uri: &str, body: Value) -> Answer {
    call(app, "POST", uri, body.to_string()).await
}

fn chat_body(extra: Value) -> Value {
    let mut body = json!({"model": "fake", "messages": [{"role": "user", "content": "hello"}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let app = fake_app(FakeReply::ReversePrompt);
    let answer = call(&app, "POST", "/v1/chat/completions", "{\"model\": ").await;
    assert_eq!(
        answer.error(StatusCode::BAD_REQUEST)["code"],
        "invalid_json"
    );
    let answer = call(&app, "POST", "/v1/completions", "[1, 2]").await;
    answer.error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_unknown_model_is_a_404() {
    let app = fake_app(FakeReply::ReversePrompt);
    let answer = post(
        &app,
        "/v1/chat/completions",
        json!({"model": "nope", "messages": []}),
    )
    .await;
    let error = answer.error(StatusCode::NOT_FOUND);
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["param"], "model");
    let answer = call(&app, "GET", "/v1/models/nope", Body::empty()).await;
    answer.error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_path_that_cannot_be_read_is_a_400_in_openais_shape() {
    let app = fake_app(FakeReply::ReversePrompt);
    for uri in [
        "/v1/models/%FF",
        "/v1/knowledge_bases/%FF",
        "/v1/knowledge_bases/kb/documents/%FF",
    ] {
        let method = if uri.contains("documents") {
            "DELETE"
        } else {
            "GET"
        };
        let error = call(&app, method, uri, Body::empty())
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(
            error["message"].as_str().unwrap().contains("UTF-8"),
            "{uri}: {error}"
        );
    }
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_a_400_never_cut() {
    let app = fake_app(FakeReply::ReversePrompt);
    let long = "x".repeat(2000);
    let answer = post(
        &app,
        "/v1/completions",
        json!({"model": "fake", "prompt": long}),
    )
    .await;
    let error = answer.error(StatusCode::BAD_REQUEST);
    assert_eq!(error["code"], "context_length_exceeded");
    assert_eq!(error["param"], "prompt");
    assert!(
        error["message"].as_str().unwrap().contains("1024"),
        "{error}"
    );
    let answer = post(
        &app,
        "/v1/chat/completions",
        chat_body(json!({"max_tokens": 1020})),
    )
    .await;
    let error = answer.error(StatusCode::BAD_REQUEST);
    assert_eq!(error["code"], "context_length_exceeded");
    assert_eq!(error["param"], "messages");
}

#[tokio::test]
async fn out_of_range_parameters_are_400s_naming_the_field() {
    let app = fake_app(FakeReply::ReversePrompt);
    for (extra, param) in [
        (json!({"temperature": 2.5}), "temperature"),
        (json!({"top_p": 1.5}), "top_p"),
        (json!({"n": 0}), "n"),
        (json!({"max_tokens": 0}), "max_tokens"),
        (json!({"presence_penalty": 9}), "presence_penalty"),
        (json!({"logit_bias": {"999": 1}}), "logit_bias.999"),
        (json!({"top_logprobs": 3}), "top_logprobs"),
        (json!({"temperature": "warm"}), "temperature"),
        (
            json!({"stream_options": {"include_usage": true}}),
            "stream_options",
        ),
        (json!({"frobnicate": 1}), "frobnicate"),
    ] {
        let answer = post(&app, "/v1/chat/completions", chat_body(extra.clone())).await;
        assert_eq!(
            answer.error(StatusCode::BAD_REQUEST)["param"],
            param,
            "{extra}"
        );
    }
    let answer = post(
        &app,
        "/v1/completions",
        json!({"model": "fake", "prompt": "a", "logprobs": 9}),
    )
    .await;
    assert_eq!(answer.error(StatusCode::BAD_REQUEST)["param"], "logprobs");
}

#[tokio::test]
async fn tools_need_a_template_with_tool_calls_and_a_bad_response_format_names_its_field() {
    let app = fake_app(FakeReply::ReversePrompt);
    // The fake model's template shows no <tool_call> format (Qwen's does: tests/python).
    let tools =
        json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]});
    let answer = post(&app, "/v1/chat/completions", chat_body(tools)).await;
    let error = answer.error(StatusCode::BAD_REQUEST);
    assert_eq!(error["param"], "tools");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("cannot call tools"));
    let format = json!({"response_format": {"type": "yaml"}});
    let answer = post(&app, "/v1/chat/completions", chat_body(format)).await;
    assert_eq!(
        answer.error(StatusCode::BAD_REQUEST)["param"],
        "response_format.type"
    );
    // The fake engine cannot follow a grammar and says so (the real one: tests/python).
    let format = json!({"response_format": {"type": "json_object"}});
    let answer = post(&app, "/v1/chat/completions", chat_body(format)).await;
    let error = answer.error(StatusCode::BAD_REQUEST);
    assert!(
        error["message"].as_str().unwrap().contains("grammar"),
        "{error}"
    );
    // What asks for the default behaviour is accepted.
    let neutral = json!({"tools": [], "response_format": {"type": "text"}, "user": "u"});
    let answer = post(&app, "/v1/chat/completions", chat_body(neutral)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let config = ServerConfig {
        body_limit_bytes: 1024,
        ..ServerConfig::default()
    };
    let app = app(state_with(engine(FakeReply::ReversePrompt, |_| {}), config));
    let big = chat_body(json!({"user": "u".repeat(2000)}));
    let answer = post(&app, "/v1/chat/completions", big).await;
    assert_eq!(
        answer.error(StatusCode::PAYLOAD_TOO_LARGE)["code"],
        "request_too_large"
    );
}

#[tokio::test]
async fn overload_is_a_429_with_retry_after() {
    let engine = engine(FakeReply::Repeat("ab".into()), |config| {
        config.step_delay = Duration::from_millis(5);
        config.scheduler = SchedulerConfig {
            parallel: 1,
            max_queue: 0,
            n_ctx_per_seq: 1024,
            min_prefix: 4,
            host_cache_tokens: 0,
            retry_after: Duration::from_secs(3),
            ..SchedulerConfig::default()
        };
    });
    let app = app(state_with(engine, ServerConfig::default()));
    let request = Request::post("/v1/chat/completions")
        .body(Body::from(
            chat_body(json!({"stream": true, "max_tokens": 500})).to_string(),
        ))
        .unwrap();
    let running = app.clone().oneshot(request).await.unwrap();
    assert_eq!(running.status(), StatusCode::OK);
    let answer = post(&app, "/v1/chat/completions", chat_body(json!({}))).await;
    assert_eq!(
        answer.error(StatusCode::TOO_MANY_REQUESTS)["code"],
        "rate_limit_exceeded"
    );
    assert_eq!(answer.headers[header::RETRY_AFTER], "3");
    drop(running);
}

#[tokio::test]
async fn health_is_503_while_a_model_loads() {
    let state = AppState::new(ServerConfig::default());
    let app = app(state.clone());
    state.add_loading("fake");
    let answer = call(&app, "GET", "/health", Body::empty()).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["status"], "loading");
    let answer = post(&app, "/v1/chat/completions", chat_body(json!({}))).await;
    assert_eq!(
        answer.error(StatusCode::SERVICE_UNAVAILABLE)["code"],
        "model_loading"
    );
    assert!(answer.headers.contains_key(header::RETRY_AFTER));
    let models = call(&app, "GET", "/v1/models", Body::empty()).await;
    assert_eq!(models.json()["data"][0]["id"], "fake");

    let engine = engine(FakeReply::ReversePrompt, |_| {});
    state.add_model("fake", ServedModel::new(engine, ModelLimits::default()));
    let answer = call(&app, "GET", "/health", Body::empty()).await;
    assert_eq!(
        (answer.status, answer.json()["status"].clone()),
        (StatusCode::OK, json!("ok"))
    );

    state.begin_draining();
    let answer = call(&app, "GET", "/health", Body::empty()).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["status"], "draining");
    let answer = post(&app, "/v1/chat/completions", chat_body(json!({}))).await;
    assert_eq!(
        answer.error(StatusCode::SERVICE_UNAVAILABLE)["code"],
        "shutting_down"
    );
}

#[tokio::test]
async fn a_chat_to_a_model_without_a_template_names_the_model() {
    let state = AppState::new(ServerConfig::default());
    let mut model = ServedModel::new(
        engine(FakeReply::ReversePrompt, |_| {}),
        ModelLimits::default(),
    );
    model.template = Err(TemplateError::Missing);
    state.add_model("raw", model);
    let app = app(state);
    let body = json!({"model": "raw", "messages": [{"role": "user", "content": "hi"}]});
    let error = post(&app, "/v1/chat/completions", body)
        .await
        .error(StatusCode::BAD_REQUEST);
    assert_eq!(error["code"], "no_chat_template");
    assert!(
        error["message"].as_str().unwrap().contains("'raw'"),
        "{error}"
    );
    // Completions still work: they take a raw prompt.
    let answer = post(
        &app,
        "/v1/completions",
        json!({"model": "raw", "prompt": "abc"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_openai_shape() {
    let app = fake_app(FakeReply::ReversePrompt);
    call(&app, "GET", "/v1/nothing", Body::empty())
        .await
        .error(StatusCode::NOT_FOUND);
    call(&app, "GET", "/v1/chat/completions", Body::empty())
        .await
        .error(StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn models_are_listed_and_found_by_id() {
    let state = AppState::new(ServerConfig::default());
    let engine = engine(FakeReply::ReversePrompt, |_| {});
    state.add_model(
        "org/name:tag",
        ServedModel::new(engine, ModelLimits::default()),
    );
    let app = app(state);
    let list = call(&app, "GET", "/v1/models", Body::empty()).await.json();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], "org/name:tag");
    assert_eq!(list["data"][0]["object"], "model");
    let one = call(&app, "GET", "/v1/models/org/name:tag", Body::empty()).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["id"], "org/name:tag");
}

#[tokio::test]
async fn a_whole_chat_answer_has_the_reply_and_usage() {
    let app = fake_app(FakeReply::Fixed("Hi there".into()));
    let answer = post(
        &app,
        "/v1/chat/completions",
        chat_body(json!({"temperature": 0})),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "fake");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], "Hi there");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["choices"][0]["logprobs"], Value::Null);
    let usage = &body["usage"];
    // The fake tokenizes bytes: BOS + the rendered ChatML prompt.
    let prompt = "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(usage["prompt_tokens"], prompt.len() + 1);
    assert_eq!(usage["completion_tokens"], "Hi there".len() + 1);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        )
    );
    assert!(usage["prompt_tokens_details"]["cached_tokens"].is_u64());
}

#[tokio::test]
async fn chat_logprobs_come_per_token() {
    let app = fake_app(FakeReply::Fixed("abc".into()));
    let answer = post(
        &app,
        "/v1/chat/completions",
        chat_body(json!({"logprobs": true, "top_logprobs": 2})),
    )
    .await;
    let body = answer.json();
    let content = body["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap()
        .clone();
    let tokens: Vec<_> = content
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens.concat(), "abc");
    assert!(content
        .iter()
        .all(|t| t["logprob"].as_f64().unwrap() <= 0.0));
    assert!(content
        .iter()
        .all(|t| t["top_logprobs"].as_array().unwrap().len() == 2));
    assert_eq!(content[0]["bytes"], json!([97]));
}

#[tokio::test]
async fn a_chat_stream_is_openai_sse_with_usage_and_done() {
    let app = fake_app(FakeReply::Fixed("Hey".into()));
    let body =
        chat_body(json!({"stream": true, "stream_options": {"include_usage": true}, "n": 2}));
    let answer = post(&app, "/v1/chat/completions", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert!(answer.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    // Every event is one `data:` line followed by a blank line.
    assert!(answer.body.ends_with("data: [DONE]\n\n"), "{}", answer.body);
    let data = answer.sse_data();
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let id = chunks[0]["id"].clone();
    assert!(chunks
        .iter()
        .all(|c| c["id"] == id && c["object"] == "chat.completion.chunk"));
    for index in 0..2 {
        let mine: Vec<&Value> = chunks
            .iter()
            .filter(|c| {
                c["choices"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|ch| ch["index"] == index)
            })
            .collect();
        assert_eq!(mine[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = mine
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hey");
        assert_eq!(mine.last().unwrap()["choices"][0]["finish_reason"], "stop");
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 2 * ("Hey".len() + 1));
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c.get("usage").is_none()));
}

#[tokio::test]
async fn a_stream_without_include_usage_has_no_usage_chunk() {
    let app = fake_app(FakeReply::Fixed("Hey".into()));
    let answer = post(
        &app,
        "/v1/completions",
        json!({"model": "fake", "prompt": "x", "stream": true}),
    )
    .await;
    let data = answer.sse_data();
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "text_completion" && c.get("usage").is_none()));
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "Hey");
}

#[tokio::test]
async fn completions_echo_the_prompt_with_its_logprobs() {
    let app = fake_app(FakeReply::Fixed("yz".into()));
    let body =
        json!({"model": "fake", "prompt": "abc", "echo": true, "logprobs": 1, "max_tokens": 5});
    let answer = post(&app, "/v1/completions", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let body = answer.json();
    let choice = &body["choices"][0];
    assert_eq!(choice["text"], "abcyz");
    let logprobs = &choice["logprobs"];
    // BOS, a, b, c from the prompt (BOS has no logprob), then y, z.
    assert_eq!(logprobs["tokens"], json!(["<s>", "a", "b", "c", "y", "z"]));
    assert_eq!(logprobs["token_logprobs"][0], Value::Null);
    assert!(logprobs["token_logprobs"][1].is_f64());
    assert_eq!(logprobs["text_offset"], json!([0, 3, 4, 5, 6, 7]));
    // Prompt tokens get their alternatives too (evaluation harnesses read them to tell
    // whether a scored continuation was the greedy one); the first has none.
    assert_eq!(logprobs["top_logprobs"][0], Value::Null);
    for at in 1..6 {
        let top = logprobs["top_logprobs"][at].as_object().unwrap();
        assert_eq!(top.len(), 1, "top_logprobs[{at}]: {top:?}");
    }
    assert_eq!(body["usage"]["prompt_tokens"], 4);
}

#[tokio::test]
async fn completions_take_token_prompts_and_score_with_max_tokens_zero() {
    let app = fake_app(FakeReply::Fixed("q".into()));
    let body =
        json!({"model": "fake", "prompt": [[104, 105], [106]], "echo": true, "max_tokens": 0});
    let answer = post(&app, "/v1/completions", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let body = answer.json();
    assert_eq!(body["choices"][0]["text"], "hi");
    assert_eq!(body["choices"][1]["text"], "j");
    assert_eq!(body["choices"][1]["index"], 1);
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    assert_eq!(body["usage"]["completion_tokens"], 0);
}

#[tokio::test]
async fn n_gives_that_many_choices_and_the_prompt_counts_once() {
    let app = fake_app(FakeReply::Fixed("ok".into()));
    let answer = post(
        &app,
        "/v1/completions",
        json!({"model": "fake", "prompt": "abc", "n": 3}),
    )
    .await;
    let body = answer.json();
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    assert_eq!(
        choices
            .iter()
            .map(|c| c["index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(choices.iter().all(|c| c["text"] == "ok"));
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    assert_eq!(body["usage"]["completion_tokens"], 9);
}

#[tokio::test]
async fn stop_strings_end_the_text_and_are_never_sent() {
    let app = fake_app(FakeReply::Fixed("Hello world, again".into()));
    let answer = post(
        &app,
        "/v1/chat/completions",
        chat_body(json!({"stop": ["world"]})),
    )
    .await;
    let body = answer.json();
    assert_eq!(body["choices"][0]["message"]["content"], "Hello ");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let answer = post(
        &app,
        "/v1/chat/completions",
        chat_body(json!({"stop": "world", "stream": true})),
    )
    .await;
    assert!(!answer.body.contains("world"), "{}", answer.body);
}

#[tokio::test]
async fn max_tokens_cuts_with_finish_reason_length() {
    let app = fake_app(FakeReply::Repeat("ab".into()));
    let answer = post(
        &app,
        "/v1/chat/completions",
        chat_body(json!({"max_completion_tokens": 5})),
    )
    .await;
    let body = answer.json();
    assert_eq!(body["choices"][0]["message"]["content"], "ababa");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(body["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn a_client_that_goes_away_frees_its_sequence() {
    let engine = engine(FakeReply::Repeat("ab".into()), |config| {
        config.step_delay = Duration::from_millis(2);
        config.scheduler = SchedulerConfig {
            parallel: 1,
            max_queue: 0,
            n_ctx_per_seq: 1024,
            min_prefix: 4,
            host_cache_tokens: 0,
            ..SchedulerConfig::default()
        };
    });
    let app = app(state_with(Arc::clone(&engine), ServerConfig::default()));
    let request = Request::post("/v1/chat/completions")
        .body(Body::from(
            chat_body(json!({"stream": true, "max_tokens": 900})).to_string(),
        ))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some());
    assert_eq!(engine.stats().running, 1);
    drop(body);
    let mut freed = false;
    for _ in 0..200 {
        if engine.stats().running == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(freed, "the sequence of a dropped stream was not freed");
    let answer = post(
        &app,
        "/v1/chat/completions",
        chat_body(json!({"max_tokens": 3})),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}
