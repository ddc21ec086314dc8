//! `/api/tags`, `/api/ps` and `/api/show`: what the store knows about the served models, in
//! Ollama's shapes.

use super::*;

pub(super) fn timestamp(unix: u64) -> String {
    DateTime::<Utc>::from_timestamp(i64::try_from(unix).unwrap_or(0), 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(super) fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A parameter count as Ollama prints it: `135M`, `7.6B`.
pub(super) fn parameter_size(parameters: u64) -> String {
    let n = parameters as f64;
    if n >= 1e9 {
        format!("{:.1}B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.0}M", n / 1e6)
    } else {
        format!("{:.0}K", n / 1e3)
    }
}

pub(super) fn details(card: &ModelCard) -> Value {
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
pub(super) fn card_of(state: &AppState, name: &str) -> (ModelCard, Option<u64>) {
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

pub(super) fn listed(state: &AppState, name: &str) -> Value {
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
pub(super) fn visible_names(state: &AppState, caller: &Caller) -> Vec<String> {
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

pub(super) async fn tags(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    let models: Vec<Value> = visible_names(&state, &caller)
        .iter()
        .map(|name| listed(&state, name))
        .collect();
    Json(json!({ "models": models }))
}

/// The chat models in memory (all of them, while served: moat does not unload models).
pub(super) async fn ps(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
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
pub(super) struct ShowRequest {
    /// Older clients send `name`.
    #[serde(alias = "name")]
    model: String,
}

pub(super) async fn show(
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
    let mut capabilities = match kind {
        Named::Embedding => vec!["embedding"],
        Named::Chat | Named::Alias(_) | Named::Gateway => vec!["completion"],
    };
    // What the chat template shows: calls moat reads back, and thinking it reads out.
    if crate::routes::chat::shows_hermes_calls(&template) {
        capabilities.push("tools");
    }
    if moat_openai::template_thinks(&template) {
        capabilities.push("thinking");
    }
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
pub(super) fn parameters(model: &crate::ServedModel) -> String {
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
