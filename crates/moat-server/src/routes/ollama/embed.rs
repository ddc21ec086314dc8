//! `/api/embed` and the older `/api/embeddings`.

use super::*;

#[derive(Deserialize)]
pub(super) struct EmbedRequest {
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
pub(super) async fn vectors(
    state: &AppState,
    caller: &Caller,
    body: &Value,
) -> Result<(Vec<Value>, u64)> {
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
        let Json(list) = crate::routes::embeddings::local_embeddings(state, caller, &bytes).await?;
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

pub(super) async fn embed(
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
pub(super) struct EmbeddingsRequest {
    model: String,
    #[serde(default)]
    prompt: String,
    #[serde(default, rename = "options")]
    _options: Option<Value>,
    #[serde(default, rename = "keep_alive")]
    _keep_alive: Option<Value>,
}

/// The older single-prompt endpoint: `{"embedding": [...]}`, empty for an empty prompt.
pub(super) async fn embeddings(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawBody(body): RawBody,
) -> Result<Json<Value>> {
    let request: EmbeddingsRequest = parse(&body)?;
    let model = resolve(&state, &request.model);
    if request.prompt.is_empty() {
        // Nothing to embed, but a model the server does not know is still a 404, as
        // everywhere else (after the key's scopes, so a key learns nothing of other models).
        caller.authorize(&model, &model)?;
        if named(&state, &model).is_none() {
            return Err(ApiError::model_not_found(&model));
        }
        return Ok(Json(json!({ "embedding": [] })));
    }
    let openai = json!({ "model": model, "input": request.prompt });
    let (mut embeddings, _) = vectors(&state, &caller, &openai).await?;
    let embedding = embeddings.pop().unwrap_or_else(|| json!([]));
    Ok(Json(json!({ "embedding": embedding })))
}
