//! What Ollama's requests carry that the OpenAI request does not say the same way: `options`,
//! and the fields moat refuses unless they are empty.

use super::*;

/// Ollama's `options` that are set when the model is loaded; `moat serve`'s flags set them
/// for every request, so a request's value has no effect.
pub(super) const SERVER_OPTIONS: &[&str] = &[
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
pub(super) const IGNORED_OPTIONS: &[&str] = &[
    // moat never shifts the context: a prompt that does not fit is a 400.
    "num_keep",
    // Penalties look at the last 64 tokens (the default window).
    "repeat_last_n",
    "penalize_newline",
    // Only with mirostat, which must be 0.
    "mirostat_tau",
    "mirostat_eta",
];

/// Ollama's sampling defaults, as the OpenAI body's fields: what an Ollama client that sends
/// no options gets from Ollama. Not its `repeat_penalty` (1.1 in its API's defaults): Ollama's
/// engines differ on whether they apply it, and a penalty would also turn greedy decoding
/// (`temperature: 0`) into something else and slow constrained greedy sampling.
fn ollama_defaults() -> [(&'static str, Value); 3] {
    [
        ("temperature", json!(0.8)),
        ("top_k", json!(40)),
        ("top_p", json!(0.9)),
    ]
}

/// Fills Ollama's defaults into `body` where neither the request's options nor the manifest of
/// the local model `model` set a field (the manifest's `sampling` is what a Modelfile's
/// parameters are to Ollama). A model served elsewhere (a gateway alias) keeps its own.
pub(super) fn apply_ollama_defaults(state: &AppState, model: &str, body: &mut Map<String, Value>) {
    let target = state
        .knowledge()
        .config
        .aliases
        .get(model)
        .map_or(model, |alias| alias.model.as_str());
    let Ok(served) = state.model(target) else {
        return;
    };
    let manifest = &served.limits.defaults;
    fill_defaults(body, |field| match field {
        "temperature" => manifest.temperature.is_some(),
        "top_k" => manifest.top_k.is_some(),
        "top_p" => manifest.top_p.is_some(),
        _ => false,
    });
}

/// Ollama's defaults for the fields neither `body` (the request) nor the manifest
/// (`in_manifest`) set: the request wins, then the manifest (the engine applies its
/// defaults), then Ollama's.
pub(super) fn fill_defaults(body: &mut Map<String, Value>, in_manifest: impl Fn(&str) -> bool) {
    for (field, value) in ollama_defaults() {
        if !body.contains_key(field) && !in_manifest(field) {
            body.insert(field.into(), value);
        }
    }
}

/// Turns Ollama's `options` into the OpenAI request's sampling fields.
pub(super) fn apply_options(
    options: &Map<String, Value>,
    body: &mut Map<String, Value>,
) -> Result<()> {
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
pub(super) fn refuse_unless_empty(field: &str, value: Option<&Value>, why: &str) -> Result<()> {
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

/// Ollama's `format` as the OpenAI body's `response_format`: `"json"` is any JSON object, an
/// object is a JSON Schema; empty or absent leaves the model free.
pub(super) fn response_format(format: Option<&Value>) -> Result<Option<Value>> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) if text == "json" => Ok(Some(json!({"type": "json_object"}))),
        Some(schema @ Value::Object(_)) => Ok(Some(json!({
            "type": "json_schema",
            "json_schema": {"name": "format", "schema": schema},
        }))),
        Some(_) => Err(ApiError::invalid_request(
            "format: expected \"json\" or a JSON Schema object",
        )
        .with_param("format")),
    }
}
/// `think`: `Some(true)` to think (the thinking comes back apart, as `thinking`),
/// `Some(false)` not to, `None` for the model's default. Ollama's levels (`"low"`,
/// `"medium"`, `"high"`, for gpt-oss) are refused.
pub(super) fn think(value: Option<&Value>) -> Result<Option<bool>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::Bool(on)) => Ok(Some(*on)),
        Some(Value::String(level)) => Err(ApiError::invalid_request(format!(
            "think: levels such as '{level}' are not supported; send true or false"
        ))
        .with_param("think")),
        Some(_) => {
            Err(ApiError::invalid_request("think: expected true or false").with_param("think"))
        }
    }
}
pub(super) const NO_IMAGES: &str = "moat's models take text only";

/// The fields both `/api/chat` and `/api/generate` take.
#[derive(Deserialize)]
pub(super) struct Common {
    pub(super) model: String,
    #[serde(default)]
    pub(super) stream: Option<bool>,
    #[serde(default)]
    pub(super) format: Option<Value>,
    #[serde(default)]
    pub(super) options: Option<Map<String, Value>>,
    /// moat keeps a served model loaded: no effect.
    #[serde(default, rename = "keep_alive")]
    pub(super) _keep_alive: Option<Value>,
    #[serde(default)]
    pub(super) think: Option<Value>,
    /// Each generated token's log probability.
    #[serde(default)]
    pub(super) logprobs: Option<bool>,
    /// And this many alternatives per position (0 to 20; needs `logprobs`).
    #[serde(default)]
    pub(super) top_logprobs: Option<u32>,
}

impl Common {
    /// Whether the client wants a stream (Ollama's default) or one object.
    pub(super) fn streams(&self) -> bool {
        self.stream.unwrap_or(true)
    }

    /// The OpenAI body's fields from these: model, stream with usage, sampling options.
    /// Whether the answer carries log probabilities.
    pub(super) fn wants_logprobs(&self) -> bool {
        self.logprobs == Some(true)
    }

    /// The OpenAI body's fields from these: model, stream with usage, sampling options, log
    /// probabilities (in chat's form, or with `completions` in the completions endpoint's).
    /// `upstream`: the model is a gateway alias that may answer from an upstream, which gets
    /// no `think` (as `chat_template_kwargs` and `reasoning_format`: an upstream may refuse
    /// fields it does not know) and decides on thinking itself.
    pub(super) fn openai_body(
        &self,
        model: &str,
        completions: bool,
        upstream: bool,
    ) -> Result<Map<String, Value>> {
        let think = think(self.think.as_ref())?;
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
        if let Some(format) = response_format(self.format.as_ref())? {
            body.insert("response_format".into(), format);
        }
        if let Some(options) = &self.options {
            apply_options(options, &mut body)?;
        }
        match think {
            None => {}
            Some(true) if completions => {
                return Err(ApiError::invalid_request(
                    "think needs the chat template, which a raw prompt skips",
                )
                .with_param("think"))
            }
            Some(_) if completions || upstream => {}
            Some(on) => {
                // Qwen3's variable; DeepSeek-R1's template thinks whatever it says.
                body.insert(
                    "chat_template_kwargs".into(),
                    json!({ "enable_thinking": on }),
                );
                if on {
                    body.insert("reasoning_format".into(), json!("deepseek"));
                }
            }
        }
        Ok(body)
    }
}
