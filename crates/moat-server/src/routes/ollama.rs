//! Ollama's API (`/api/chat`, `/api/generate`, `/api/embed`, `/api/tags`, `/api/show`,
//! `/api/ps`, `/api/version`) over the same models as the OpenAI routes, so tools written for
//! Ollama (its Python and JavaScript clients, Open WebUI, LangChain's `ChatOllama`) work
//! against `moat serve` unchanged.
//!
//! Each request is translated into the OpenAI request moat already answers and goes down the
//! same path: keys and their limits, guardrails, metering, metrics, knowledge-base aliases and
//! gateway aliases all apply as on `/v1`. The answer is translated back: Ollama's JSON, or its
//! stream of newline-delimited JSON objects (streaming is Ollama's default), the last one with
//! `done: true`, the stop reason, token counts and durations. Errors are Ollama's shape,
//! `{"error": "message"}`, with the status moat gives the same error on `/v1`.
//!
//! Models are not managed over this API (`/api/pull`, `/api/create`, `/api/copy`,
//! `/api/delete`, `/api/push` answer 501): `moat pull` does that, with the license gate.
//! docs/ollama.md lists every field and option and what moat does with it.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::extract::RawBody;
use crate::state::ModelCard;
use crate::stream::{Answer, Piece, Pieces};
use crate::trust::Caller;
use crate::{ApiError, AppState};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(root).head(root))
        .route("/api/version", get(version))
        .route("/api/tags", get(tags))
        .route("/api/ps", get(ps))
        .route("/api/show", post(show))
        .route("/api/chat", post(chat))
        .route("/api/generate", post(generate))
        .route("/api/embed", post(embed))
        .route("/api/embeddings", post(embeddings))
        .route("/api/pull", post(not_managed_here))
        .route("/api/push", post(not_managed_here))
        .route("/api/create", post(not_managed_here))
        .route("/api/copy", post(not_managed_here))
        .route("/api/delete", delete(not_managed_here))
}

/// Ollama's clients read an error as `{"error": "message"}`. Every error answer under `/api/`
/// (from these routes, and from the key check, the body limit, the draining gate and the
/// unknown-route fallback around them) is re-shaped here from OpenAI's
/// `{"error": {"message": ...}}`, keeping its status and headers (`Retry-After`); the router's
/// outer layer (`gate`) calls this.
pub(super) async fn error_shape(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    // Error bodies are a few hundred bytes; the bound only guards against a surprise.
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|value| {
            value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    let body = match message {
        Some(message) => Body::from(json!({ "error": message }).to_string()),
        None => Body::from(bytes),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body)
}

type Result<T, E = ApiError> = std::result::Result<T, E>;

/// `GET /` and `HEAD /`: what Ollama's clients check to see that a server is up.
async fn root() -> &'static str {
    "moat is running (OpenAI API under /v1, Ollama API under /api)"
}

async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// The body is read first, though nothing in it matters: answering before it arrived would
/// make hyper close the connection after the answer, under a client that may already be
/// reusing it for its next request.
async fn not_managed_here(RawBody(_body): RawBody) -> ApiError {
    ApiError {
        status: StatusCode::NOT_IMPLEMENTED,
        ..ApiError::invalid_request(
            "moat does not manage models over the Ollama API: pull them with `moat pull` (which \
             checks their license) and serve them with `moat serve`",
        )
    }
}

/// The body as JSON of type `T`, or a 400 naming what is wrong.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid_request(format!("invalid request body: {error}")))
}

// ---------------------------------------------------------------------------------------------
// Names

/// What a name the server answers to stands for.
enum Named {
    /// A chat model, ready or still loading.
    Chat,
    Embedding,
    /// A `[aliases]` entry of moat.toml for a chat model (by its name).
    Alias(String),
    /// A gateway alias, routed to targets.
    Gateway,
}

/// The name a request means: Ollama's clients say `smollm2` for `smollm2:latest` and the other
/// way round, so a name the server does not know is tried with and without `:latest`.
fn resolve(state: &AppState, name: &str) -> String {
    let mut candidates = vec![name.to_owned()];
    match name.strip_suffix(":latest") {
        Some(bare) => candidates.push(bare.to_owned()),
        None if !name.contains(':') => candidates.push(format!("{name}:latest")),
        None => {}
    }
    candidates
        .iter()
        .find(|candidate| named(state, candidate).is_some())
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

fn named(state: &AppState, name: &str) -> Option<Named> {
    if state.model_names().iter().any(|(served, _)| served == name) {
        return Some(Named::Chat);
    }
    let knowledge = &state.knowledge().config;
    if knowledge.embedding_models.iter().any(|model| model == name) {
        return Some(Named::Embedding);
    }
    if let Some(alias) = knowledge.aliases.get(name) {
        return Some(Named::Alias(alias.model.clone()));
    }
    if state
        .gateway()
        .is_some_and(|gateway| gateway.has_alias(name))
    {
        return Some(Named::Gateway);
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Listings: /api/tags, /api/ps, /api/show

fn timestamp(unix: u64) -> String {
    DateTime::<Utc>::from_timestamp(i64::try_from(unix).unwrap_or(0), 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A parameter count as Ollama prints it: `135M`, `7.6B`.
fn parameter_size(parameters: u64) -> String {
    let n = parameters as f64;
    if n >= 1e9 {
        format!("{:.1}B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.0}M", n / 1e6)
    } else {
        format!("{:.0}K", n / 1e3)
    }
}

fn details(card: &ModelCard) -> Value {
    json!({
        "parent_model": "",
        "format": card.format.as_deref().unwrap_or(""),
        "family": card.architecture.as_deref().unwrap_or(""),
        "families": card.architecture.as_ref().map(|a| vec![a.clone()]),
        "parameter_size": card.parameters.map(parameter_size).unwrap_or_default(),
        "quantization_level": card.quantization.as_deref().unwrap_or(""),
    })
}

/// What the store says about a name: a chat model's card, an alias's model's card, or nothing.
fn card_of(state: &AppState, name: &str) -> (ModelCard, Option<u64>) {
    let target = match named(state, name) {
        Some(Named::Alias(model)) => model,
        _ => name.to_owned(),
    };
    state
        .ready_models()
        .into_iter()
        .find(|(served, _)| *served == target)
        .map(|(_, model)| (model.card.clone(), Some(model.created)))
        .unwrap_or_default()
}

fn listed(state: &AppState, name: &str) -> Value {
    let (card, created) = card_of(state, name);
    let modified = card
        .modified_unix
        .or(created)
        .unwrap_or_else(crate::state::unix_now);
    json!({
        "name": name,
        "model": name,
        "modified_at": timestamp(modified),
        "size": card.size_bytes.unwrap_or(0),
        "digest": card.digest.as_deref().unwrap_or(""),
        "details": details(&card),
    })
}

/// Every name the caller's key may use, as `/v1/models` lists them.
fn visible_names(state: &AppState, caller: &Caller) -> Vec<String> {
    let mut names: Vec<String> = state
        .model_names()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let knowledge = &state.knowledge().config;
    names.extend(knowledge.embedding_models.iter().cloned());
    names.extend(knowledge.aliases.keys().cloned());
    if let Some(gateway) = state.gateway() {
        names.extend(gateway.aliases());
    }
    names.retain(|name| caller.may_see(name));
    names
}

async fn tags(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Json<Value> {
    let models: Vec<Value> = visible_names(&state, &caller)
        .iter()
        .map(|name| listed(&state, name))
        .collect();
    Json(json!({ "models": models }))
}

/// The chat models in memory (all of them, while served: moat does not unload models).
async fn ps(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Json<Value> {
    let models: Vec<Value> = state
        .ready_models()
        .into_iter()
        .filter(|(name, _)| caller.may_see(name))
        .map(|(name, model)| {
            let mut entry = listed(&state, &name);
            if let Value::Object(object) = &mut entry {
                object.remove("modified_at");
                object.insert("expires_at".into(), Value::Null);
                object.insert("size_vram".into(), json!(0));
                object.insert("context_length".into(), json!(model.engine.info().n_ctx));
            }
            entry
        })
        .collect();
    Json(json!({ "models": models }))
}

#[derive(Deserialize)]
struct ShowRequest {
    /// Older clients send `name`.
    #[serde(alias = "name")]
    model: String,
}

async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawBody(body): RawBody,
) -> Result<Json<Value>> {
    let request: ShowRequest = parse(&body)?;
    let name = resolve(&state, &request.model);
    let kind = named(&state, &name).filter(|_| caller.may_see(&name));
    let Some(kind) = kind else {
        return Err(ApiError::model_not_found(&request.model));
    };
    let (card, created) = card_of(&state, &name);
    let target = match &kind {
        Named::Alias(model) => model.clone(),
        _ => name.clone(),
    };
    let served = state
        .ready_models()
        .into_iter()
        .find(|(served, _)| *served == target)
        .map(|(_, model)| model);
    let template = served
        .as_ref()
        .and_then(|model| model.engine.info().chat_template.clone())
        .unwrap_or_default();
    let parameters = served.as_deref().map(parameters).unwrap_or_default();
    let capabilities = match kind {
        Named::Embedding => vec!["embedding"],
        Named::Chat | Named::Alias(_) | Named::Gateway => vec!["completion"],
    };
    let mut info = Map::new();
    if let Some(architecture) = &card.architecture {
        info.insert("general.architecture".into(), json!(architecture));
        let keyed = [
            ("context_length", card.context_length),
            ("embedding_length", card.embedding_length),
            ("block_count", card.block_count),
            ("attention.head_count", card.head_count),
            ("vocab_size", card.vocab_size),
        ];
        for (key, value) in keyed {
            if let Some(value) = value {
                info.insert(format!("{architecture}.{key}"), json!(value));
            }
        }
    }
    if let Some(parameters) = card.parameters {
        info.insert("general.parameter_count".into(), json!(parameters));
    }
    let modified = card
        .modified_unix
        .or(created)
        .unwrap_or_else(crate::state::unix_now);
    Ok(Json(json!({
        "license": card.license.as_deref().unwrap_or(""),
        "modelfile": "",
        "parameters": parameters,
        "template": template,
        "details": details(&card),
        "model_info": info,
        "capabilities": capabilities,
        "modified_at": timestamp(modified),
    })))
}

/// A served model's settings as a Modelfile's `PARAMETER` lines, as `/api/show` reports them:
/// the context it is served with (what a client may fill, which can be less than the model's
/// trained `context_length` in `model_info`) and the manifest's sampling defaults.
fn parameters(model: &crate::ServedModel) -> String {
    let defaults = &model.limits.defaults;
    let mut lines = vec![format!("num_ctx {}", model.engine.info().n_ctx)];
    let numbers = [
        ("temperature", defaults.temperature),
        ("top_p", defaults.top_p),
        ("min_p", defaults.min_p),
        ("repeat_penalty", defaults.repeat_penalty),
    ];
    for (name, value) in numbers {
        if let Some(value) = value {
            lines.push(format!("{name} {value}"));
        }
    }
    if let Some(top_k) = defaults.top_k {
        lines.push(format!("top_k {top_k}"));
    }
    if let Some(max_tokens) = defaults.max_tokens {
        lines.push(format!("num_predict {max_tokens}"));
    }
    for stop in &defaults.stop {
        lines.push(format!("stop {}", json!(stop)));
    }
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------------
// Requests: options and the fields moat does not do

/// Ollama's `options` that are set when the model is loaded; `moat serve`'s flags set them
/// for every request, so a request's value has no effect.
const SERVER_OPTIONS: &[&str] = &[
    "numa",
    "num_ctx",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mmap",
    "use_mlock",
    "embedding_only",
    "num_thread",
];

/// Ollama options with no effect in moat (documented in docs/ollama.md).
const IGNORED_OPTIONS: &[&str] = &[
    // moat never shifts the context: a prompt that does not fit is a 400.
    "num_keep",
    // Penalties look at the whole sequence.
    "repeat_last_n",
    "penalize_newline",
    // Only with mirostat, which must be 0.
    "mirostat_tau",
    "mirostat_eta",
];

/// Turns Ollama's `options` into the OpenAI request's sampling fields.
fn apply_options(options: &Map<String, Value>, body: &mut Map<String, Value>) -> Result<()> {
    let invalid = |message: String| ApiError::invalid_request(message);
    for (key, value) in options {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "temperature" | "top_p" | "top_k" | "min_p" | "seed" | "presence_penalty"
            | "frequency_penalty" | "stop" => {
                body.insert(key.clone(), value.clone());
            }
            "repeat_penalty" => {
                body.insert("repetition_penalty".into(), value.clone());
            }
            "num_predict" => {
                let n = value
                    .as_i64()
                    .ok_or_else(|| invalid("options.num_predict must be an integer".into()))?;
                // 0 or less (-1: no limit, -2: fill the context) leaves it to the context.
                if n > 0 {
                    body.insert("max_tokens".into(), json!(n));
                }
            }
            "mirostat" if value.as_f64() == Some(0.0) => {}
            "tfs_z" | "typical_p" if value.as_f64() == Some(1.0) => {}
            "mirostat" | "tfs_z" | "typical_p" => {
                return Err(invalid(format!(
                    "options.{key}: moat does not implement this sampler (mirostat must be 0, \
                     tfs_z and typical_p 1); temperature, top_k, top_p, min_p and the penalties \
                     are supported"
                )));
            }
            known if SERVER_OPTIONS.contains(&known) || IGNORED_OPTIONS.contains(&known) => {}
            unknown => {
                return Err(invalid(format!(
                    "options.{unknown} is not an Ollama option"
                )))
            }
        }
    }
    Ok(())
}

/// Refuses a field moat does not do yet, unless it is absent or empty.
fn refuse_unless_empty(field: &str, value: Option<&Value>, why: &str) -> Result<()> {
    let empty = match value {
        None | Some(Value::Null) => true,
        Some(Value::String(text)) => text.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(Value::Bool(flag)) => !flag,
        Some(_) => false,
    };
    if empty {
        Ok(())
    } else {
        Err(ApiError::invalid_request(format!("{field}: {why}")).with_param(field))
    }
}

const NO_STRUCTURED_OUTPUT: &str =
    "structured output is not supported yet (it is not on /v1 either)";
const NO_TOOLS: &str = "tool calling is not supported yet (it is not on /v1 either)";
const NO_THINKING: &str = "thinking is not supported by moat's models";
const NO_IMAGES: &str = "moat's models take text only";

/// The fields both `/api/chat` and `/api/generate` take.
#[derive(Deserialize)]
struct Common {
    model: String,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    /// moat keeps a served model loaded: no effect.
    #[serde(default, rename = "keep_alive")]
    _keep_alive: Option<Value>,
    #[serde(default)]
    think: Option<Value>,
    /// Each generated token's log probability.
    #[serde(default)]
    logprobs: Option<bool>,
    /// And this many alternatives per position (0 to 20; needs `logprobs`).
    #[serde(default)]
    top_logprobs: Option<u32>,
}

impl Common {
    /// Whether the client wants a stream (Ollama's default) or one object.
    fn streams(&self) -> bool {
        self.stream.unwrap_or(true)
    }

    /// The OpenAI body's fields from these: model, stream with usage, sampling options.
    /// Whether the answer carries log probabilities.
    fn wants_logprobs(&self) -> bool {
        self.logprobs == Some(true)
    }

    /// The OpenAI body's fields from these: model, stream with usage, sampling options, log
    /// probabilities (in chat's form, or with `completions` in the completions endpoint's).
    fn openai_body(&self, model: &str, completions: bool) -> Result<Map<String, Value>> {
        refuse_unless_empty("format", self.format.as_ref(), NO_STRUCTURED_OUTPUT)?;
        refuse_unless_empty("think", self.think.as_ref(), NO_THINKING)?;
        let top = self.top_logprobs.unwrap_or(0);
        if top > 0 && !self.wants_logprobs() {
            return Err(
                ApiError::invalid_request("top_logprobs needs logprobs: true")
                    .with_param("top_logprobs"),
            );
        }
        let mut body = Map::new();
        if self.wants_logprobs() {
            if completions {
                body.insert("logprobs".into(), json!(top));
            } else {
                body.insert("logprobs".into(), json!(true));
                body.insert("top_logprobs".into(), json!(top));
            }
        }
        body.insert("model".into(), json!(model));
        // Always streamed inside, with usage: see `respond`.
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({ "include_usage": true }));
        if let Some(options) = &self.options {
            apply_options(options, &mut body)?;
        }
        Ok(body)
    }
}

// ---------------------------------------------------------------------------------------------
// Answers: OpenAI's chunks and bodies in Ollama's shape

/// Which endpoint the answer is for: chat answers carry `message`, generate answers `response`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Chat,
    Generate,
}

/// What the last object of an answer reports.
struct Tally {
    began: Instant,
    first_token: Option<Instant>,
    finish: Option<String>,
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl Tally {
    fn new(began: Instant) -> Self {
        Self {
            began,
            first_token: None,
            finish: None,
            prompt_tokens: 0,
            completion_tokens: 0,
        }
    }

    fn usage(&mut self, usage: &Value) {
        let count = |field: &str| usage.get(field).and_then(Value::as_u64).unwrap_or(0);
        self.prompt_tokens = count("prompt_tokens");
        self.completion_tokens = count("completion_tokens");
    }

    /// The fields of the object with `done: true`. The prompt's time is the time to the first
    /// token (queueing included); there is no load time, since served models stay loaded.
    fn done_fields(&self, object: &mut Map<String, Value>) {
        let end = Instant::now();
        let first = self.first_token.unwrap_or(end);
        let nanos = |d: Duration| json!(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        object.insert("done".into(), json!(true));
        object.insert(
            "done_reason".into(),
            json!(self.finish.as_deref().unwrap_or("stop")),
        );
        object.insert("total_duration".into(), nanos(end - self.began));
        object.insert("load_duration".into(), json!(0));
        object.insert("prompt_eval_count".into(), json!(self.prompt_tokens));
        object.insert("prompt_eval_duration".into(), nanos(first - self.began));
        object.insert("eval_count".into(), json!(self.completion_tokens));
        object.insert("eval_duration".into(), nanos(end - first));
    }
}

/// One object of an answer with `text` as its content.
fn object(shape: Shape, model: &str, text: &str) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("model".into(), json!(model));
    object.insert("created_at".into(), json!(now()));
    match shape {
        Shape::Chat => {
            object.insert(
                "message".into(),
                json!({ "role": "assistant", "content": text }),
            );
        }
        Shape::Generate => {
            object.insert("response".into(), json!(text));
        }
    }
    object
}

/// The text of choice 0 in a chunk (`delta.content` or `text`) or a whole answer
/// (`message.content` or `text`).
fn choice_text<'a>(choice: &'a Value, part: &str) -> Option<&'a str> {
    choice
        .get(part)
        .and_then(|p| p.get("content"))
        .or_else(|| choice.get("text"))
        .and_then(Value::as_str)
}

/// An error object's message, from an OpenAI error body.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|value| {
            value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.to_owned())
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// What one piece of the internal stream means for the Ollama answer.
enum Step {
    /// Text to pass on, with the log probabilities of the tokens read since the last text
    /// (when asked for).
    Text(String, Vec<Value>),
    /// The answer failed: this error body (OpenAI's shape).
    Failed(String),
    /// Nothing to pass on (a role chunk, the finish chunk, the usage chunk).
    Nothing,
}

/// Reads the internal OpenAI stream: text, the finish reason and the usage.
struct Reader {
    pieces: Pieces,
    tally: Tally,
    /// Log probabilities of tokens whose text has not been passed on yet (a stop string's
    /// first characters are held back).
    logprobs: Vec<Value>,
}

impl Reader {
    /// The next step; `None` at the end of the stream.
    async fn next(&mut self) -> Option<Step> {
        let step = match self.pieces.next().await? {
            Piece::Error(body) => Step::Failed(body),
            Piece::Chunk(text) => self.chunk(&text),
        };
        Some(step)
    }

    fn chunk(&mut self, text: &str) -> Step {
        let Ok(chunk) = serde_json::from_str::<Value>(text) else {
            return Step::Nothing;
        };
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.tally.usage(usage);
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return Step::Nothing;
        };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.tally.finish = Some(reason.to_owned());
        }
        self.logprobs.extend(token_logprobs(choice));
        match choice_text(choice, "delta").filter(|t| !t.is_empty()) {
            Some(text) => {
                self.tally.first_token.get_or_insert_with(Instant::now);
                Step::Text(text.to_owned(), std::mem::take(&mut self.logprobs))
            }
            None => Step::Nothing,
        }
    }
}

/// A chunk's log probabilities in Ollama's form, which is chat's (`token`, `logprob`, `bytes`,
/// `top_logprobs`); the completions endpoint's (`tokens`, `token_logprobs`, `top_logprobs` as
/// maps) is turned into it.
fn token_logprobs(choice: &Value) -> Vec<Value> {
    let Some(logprobs) = choice.get("logprobs").filter(|l| !l.is_null()) else {
        return Vec::new();
    };
    if let Some(content) = logprobs.get("content").and_then(Value::as_array) {
        return content.clone();
    }
    let list = |field: &str| {
        logprobs
            .get(field)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (tokens, values, tops) = (list("tokens"), list("token_logprobs"), list("top_logprobs"));
    let entry = |token: &str, logprob: &Value| json!({ "token": token, "logprob": logprob, "bytes": token.as_bytes() });
    tokens
        .iter()
        .zip(values.iter())
        .enumerate()
        .map(|(i, (token, logprob))| {
            let token = token.as_str().unwrap_or_default();
            let mut alternatives: Vec<(String, Value)> = tops
                .get(i)
                .and_then(Value::as_object)
                .map(|top| top.iter().map(|(t, l)| (t.clone(), l.clone())).collect())
                .unwrap_or_default();
            alternatives.sort_by(|a, b| {
                let (a, b) = (a.1.as_f64().unwrap_or(0.0), b.1.as_f64().unwrap_or(0.0));
                b.total_cmp(&a)
            });
            let mut out = entry(token, logprob);
            out["top_logprobs"] = alternatives
                .iter()
                .map(|(t, l)| entry(t, l))
                .collect::<Vec<_>>()
                .into();
            out
        })
        .collect()
}

/// Relays the answer as newline-delimited JSON: one object per piece of text, then one with
/// `done: true`; an error ends the stream with `{"error": ...}`.
struct Relay {
    reader: Reader,
    shape: Shape,
    model: String,
    logprobs: bool,
    done: bool,
}

impl Relay {
    async fn next_line(mut self) -> Option<(Result<Bytes, std::convert::Infallible>, Self)> {
        while !self.done {
            match self.reader.next().await {
                Some(Step::Text(text, logprobs)) => {
                    let mut object = object(self.shape, &self.model, &text);
                    if self.logprobs {
                        object.insert("logprobs".into(), Value::Array(logprobs));
                    }
                    object.insert("done".into(), json!(false));
                    return Some((Ok(line(&Value::Object(object))), self));
                }
                Some(Step::Failed(body)) => {
                    self.done = true;
                    let error = json!({ "error": error_message(&body) });
                    return Some((Ok(line(&error)), self));
                }
                Some(Step::Nothing) => {}
                None => {
                    self.done = true;
                    let mut last = object(self.shape, &self.model, "");
                    if self.logprobs && !self.reader.logprobs.is_empty() {
                        let rest = std::mem::take(&mut self.reader.logprobs);
                        last.insert("logprobs".into(), Value::Array(rest));
                    }
                    self.reader.tally.done_fields(&mut last);
                    return Some((Ok(line(&Value::Object(last))), self));
                }
            }
        }
        None
    }
}

/// The answer in Ollama's shape: a stream of objects, or (`stream: false`) one object with the
/// whole text. moat generates both as a stream, so the durations are measured the same way.
async fn respond(
    answer: Answer,
    shape: Shape,
    model: &str,
    asked: Asked,
    began: Instant,
) -> Result<Response> {
    let pieces = match answer {
        Answer::Stream(pieces) => pieces,
        // Every request is made with `stream: true`; a whole answer still reads as one piece.
        Answer::Whole(value) => stream::iter([Piece::Chunk(whole_as_chunk(&value))]).boxed(),
    };
    let mut reader = Reader {
        pieces,
        tally: Tally::new(began),
        logprobs: Vec::new(),
    };
    if asked.stream {
        let relay = Relay {
            reader,
            shape,
            model: model.to_owned(),
            logprobs: asked.logprobs,
            done: false,
        };
        let lines = stream::unfold(relay, Relay::next_line);
        let mut response = Body::from_stream(lines).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        return Ok(response);
    }
    let mut text = String::new();
    let mut logprobs = Vec::new();
    while let Some(step) = reader.next().await {
        match step {
            Step::Text(piece, more) => {
                text.push_str(&piece);
                logprobs.extend(more);
            }
            Step::Failed(body) => return Err(failed(&body)),
            Step::Nothing => {}
        }
    }
    let mut object = object(shape, model, &text);
    if asked.logprobs {
        logprobs.append(&mut reader.logprobs);
        object.insert("logprobs".into(), Value::Array(logprobs));
    }
    reader.tally.done_fields(&mut object);
    Ok(Json(Value::Object(object)).into_response())
}

/// What the client asked of the answer's form.
#[derive(Clone, Copy)]
struct Asked {
    /// A stream of objects (Ollama's default), or one.
    stream: bool,
    /// Log probabilities in each object.
    logprobs: bool,
}

impl Asked {
    fn from(common: &Common) -> Self {
        Self {
            stream: common.streams(),
            logprobs: common.wants_logprobs(),
        }
    }
}

/// A whole OpenAI answer as one chunk with its text as the delta.
fn whole_as_chunk(value: &Value) -> String {
    let choice = value.pointer("/choices/0").cloned().unwrap_or_default();
    let text = choice_text(&choice, "message").unwrap_or_default();
    json!({
        "choices": [{
            "index": 0,
            "delta": { "content": text },
            "finish_reason": choice.get("finish_reason"),
        }],
        "usage": value.get("usage"),
    })
    .to_string()
}

/// The error response for an answer that failed after it started (in moat's internal stream),
/// when the client asked for one object: a blocked answer is a 400, as on `/v1`.
fn failed(body: &str) -> ApiError {
    let value = serde_json::from_str::<Value>(body).unwrap_or_default();
    let message = error_message(body);
    let error = if value.pointer("/error/code").and_then(Value::as_str)
        == Some("content_policy_violation")
    {
        ApiError::invalid_request(message).with_code("content_policy_violation")
    } else {
        ApiError::internal(message)
    };
    error
}

/// The answer to a request with no prompt: Ollama loads the model and says so; moat checks
/// that it names a chat model the caller may use (`model`, as resolved; `asked_for`, as sent).
fn loaded(
    state: &AppState,
    caller: &Caller,
    model: &str,
    shape: Shape,
    asked_for: &str,
) -> Result<Response> {
    check_chat_model(state, model)?;
    caller.authorize(model, model)?;
    let mut object = object(shape, asked_for, "");
    object.insert("done".into(), json!(true));
    object.insert("done_reason".into(), json!("load"));
    Ok(Json(Value::Object(object)).into_response())
}

/// Answers an OpenAI chat body, local or through the gateway.
async fn answer_chat(state: &AppState, caller: &Caller, body: &Value) -> Result<Answer> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if matches!(named(state, model), Some(Named::Gateway)) {
        let (answer, _cache) = crate::gateway::chat_answer(state, caller, model, &bytes).await?;
        return Ok(answer);
    }
    super::chat::local_chat(state, caller, &bytes, None).await
}

/// Fails with the same error a chat request for `model` would get, when it names no chat model.
fn check_chat_model(state: &AppState, model: &str) -> Result<()> {
    match named(state, model) {
        Some(Named::Chat) => state.model(model).map(drop),
        Some(Named::Alias(_) | Named::Gateway) => Ok(()),
        Some(Named::Embedding) => Err(ApiError::not_a_chat_model(model)),
        None => Err(ApiError::model_not_found(model)),
    }
}

// ---------------------------------------------------------------------------------------------
// /api/chat and /api/generate

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    images: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Value>,
    #[serde(default)]
    thinking: Option<Value>,
}

#[derive(Deserialize)]
struct ChatRequest {
    #[serde(flatten)]
    common: Common,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    #[serde(default)]
    tools: Option<Value>,
}

async fn chat(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawBody(body): RawBody,
) -> Result<Response> {
    let began = Instant::now();
    let request: ChatRequest = parse(&body)?;
    let model = resolve(&state, &request.common.model);
    refuse_unless_empty("tools", request.tools.as_ref(), NO_TOOLS)?;
    let mut openai = request.common.openai_body(&model, false)?;
    if request.messages.is_empty() {
        return loaded(&state, &caller, &model, Shape::Chat, &request.common.model);
    }
    let mut messages = Vec::with_capacity(request.messages.len());
    for message in &request.messages {
        refuse_unless_empty("messages.images", message.images.as_ref(), NO_IMAGES)?;
        refuse_unless_empty("messages.tool_calls", message.tool_calls.as_ref(), NO_TOOLS)?;
        refuse_unless_empty("messages.thinking", message.thinking.as_ref(), NO_THINKING)?;
        messages.push(json!({ "role": message.role, "content": message.content }));
    }
    openai.insert("messages".into(), Value::Array(messages));
    let answer = answer_chat(&state, &caller, &Value::Object(openai)).await?;
    let asked = Asked::from(&request.common);
    respond(answer, Shape::Chat, &request.common.model, asked, began).await
}

#[derive(Deserialize)]
struct GenerateRequest {
    #[serde(flatten)]
    common: Common,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    system: Option<String>,
    /// The prompt as it is, without the chat template.
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    suffix: Option<Value>,
    #[serde(default)]
    template: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    images: Option<Value>,
}

async fn generate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawBody(body): RawBody,
) -> Result<Response> {
    let began = Instant::now();
    let request: GenerateRequest = parse(&body)?;
    let model = resolve(&state, &request.common.model);
    refuse_unless_empty(
        "suffix",
        request.suffix.as_ref(),
        "fill-in-the-middle is not supported",
    )?;
    refuse_unless_empty(
        "template",
        request.template.as_ref(),
        "a per-request template is not supported: the model's chat template (or its manifest's \
         override) is used; send raw: true to pass a prompt without one",
    )?;
    refuse_unless_empty(
        "context",
        request.context.as_ref(),
        "moat does not return or take token contexts: send the conversation to /api/chat",
    )?;
    refuse_unless_empty("images", request.images.as_ref(), NO_IMAGES)?;
    let mut openai = request.common.openai_body(&model, request.raw)?;
    if request.prompt.is_empty() {
        return loaded(
            &state,
            &caller,
            &model,
            Shape::Generate,
            &request.common.model,
        );
    }
    let answer = if request.raw {
        if request.system.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(ApiError::invalid_request(
                "system: a raw prompt has no template to put a system prompt in",
            )
            .with_param("system"));
        }
        openai.insert("prompt".into(), json!(request.prompt));
        let bytes = serde_json::to_vec(&Value::Object(openai)).unwrap_or_default();
        // Ollama generates until the model stops, not OpenAI's 16 tokens.
        super::completions::local_completions(&state, &caller, &bytes, true).await?
    } else {
        let mut messages = Vec::new();
        if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
            messages.push(json!({ "role": "system", "content": system }));
        }
        messages.push(json!({ "role": "user", "content": request.prompt }));
        openai.insert("messages".into(), Value::Array(messages));
        answer_chat(&state, &caller, &Value::Object(openai)).await?
    };
    let asked = Asked::from(&request.common);
    respond(answer, Shape::Generate, &request.common.model, asked, began).await
}

// ---------------------------------------------------------------------------------------------
// /api/embed and /api/embeddings

#[derive(Deserialize)]
struct EmbedRequest {
    model: String,
    input: Value,
    /// moat never truncates: an input longer than the model takes is a 400.
    #[serde(default, rename = "truncate")]
    _truncate: Option<bool>,
    #[serde(default)]
    dimensions: Option<Value>,
    #[serde(default, rename = "options")]
    _options: Option<Value>,
    #[serde(default, rename = "keep_alive")]
    _keep_alive: Option<Value>,
}

/// The vectors for an OpenAI embeddings body, from a local embedding model or a gateway alias,
/// and the prompt tokens they took.
async fn vectors(state: &AppState, caller: &Caller, body: &Value) -> Result<(Vec<Value>, u64)> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let value = if matches!(named(state, model), Some(Named::Gateway)) {
        let response = crate::gateway::embeddings(state, caller, model, &bytes).await?;
        let body = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .map_err(|error| ApiError::bad_gateway(format!("reading the answer: {error}")))?;
        serde_json::from_slice::<Value>(&body)
            .map_err(|error| ApiError::bad_gateway(format!("the answer is not JSON: {error}")))?
    } else {
        let Json(list) = super::embeddings::local_embeddings(state, caller, &bytes).await?;
        serde_json::to_value(list).unwrap_or_default()
    };
    let vectors = value
        .get("data")
        .and_then(Value::as_array)
        .map(|data| {
            data.iter()
                .map(|item| item.get("embedding").cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    let tokens = value
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok((vectors, tokens))
}

async fn embed(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawBody(body): RawBody,
) -> Result<Json<Value>> {
    let began = Instant::now();
    let request: EmbedRequest = parse(&body)?;
    let model = resolve(&state, &request.model);
    if !matches!(&request.input, Value::String(_) | Value::Array(_)) {
        return Err(
            ApiError::invalid_request("input must be a string or a list of strings")
                .with_param("input"),
        );
    }
    let mut openai = json!({ "model": model, "input": request.input });
    if let Some(dimensions) = request.dimensions.filter(|d| !d.is_null()) {
        openai["dimensions"] = dimensions;
    }
    let (embeddings, tokens) = vectors(&state, &caller, &openai).await?;
    let nanos = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
    Ok(Json(json!({
        "model": request.model,
        "embeddings": embeddings,
        "total_duration": nanos,
        "load_duration": 0,
        "prompt_eval_count": tokens,
    })))
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: String,
    #[serde(default)]
    prompt: String,
    #[serde(default, rename = "options")]
    _options: Option<Value>,
    #[serde(default, rename = "keep_alive")]
    _keep_alive: Option<Value>,
}

/// The older single-prompt endpoint: `{"embedding": [...]}`, empty for an empty prompt.
async fn embeddings(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawBody(body): RawBody,
) -> Result<Json<Value>> {
    let request: EmbeddingsRequest = parse(&body)?;
    let model = resolve(&state, &request.model);
    if request.prompt.is_empty() {
        caller.authorize(&model, &model)?;
        return Ok(Json(json!({ "embedding": [] })));
    }
    let openai = json!({ "model": model, "input": request.prompt });
    let (mut embeddings, _) = vectors(&state, &caller, &openai).await?;
    let embedding = embeddings.pop().unwrap_or_else(|| json!([]));
    Ok(Json(json!({ "embedding": embedding })))
}

#[cfg(test)]
mod tests {
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
            assert!(refuse_unless_empty("format", Some(&empty), "no").is_ok());
        }
        assert!(refuse_unless_empty("format", None, "no").is_ok());
        for set in [
            json!("json"),
            json!({"type": "object"}),
            json!([{}]),
            json!(true),
        ] {
            let error = refuse_unless_empty("format", Some(&set), "not yet")
                .err()
                .unwrap();
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
            assert_eq!(error.message, "format: not yet");
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
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                    .to_string(),
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
            Piece::Chunk(
                json!({"choices": [{"index": 0, "delta": {"content": content}}]}).to_string(),
            )
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
        let answer = Answer::Stream(
            stream::iter(vec![chunk("a"), Piece::Error(blocked.to_string())]).boxed(),
        );
        let error = respond(answer, Shape::Chat, "m", ONE, Instant::now())
            .await
            .err()
            .unwrap();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.message, "blocked");
    }
}
