//! `POST /v1/embeddings` in OpenAI's shape: `input` is a string, an array of strings, an array
//! of token ids or an array of such arrays; `encoding_format` is `float` (the default) or
//! `base64` (the little-endian f32 bytes, as OpenAI sends them); `dimensions` is accepted only
//! when it equals the model's (none of the models here is Matryoshka-trained, so a shorter
//! vector would not be a meaningful embedding). The model must be one of the embedding models
//! the server was started with: an unknown one is a 404, a chat model a 400. An empty or
//! too-long input is a 400 that names its index.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::{Json, Router};
use base64::Engine as _;
use moat_engine::{EmbedInput, TokenId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::extract::RawBody;
use crate::trust::Caller;
use crate::{ApiError, AppState};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/embeddings", post(embeddings))
}

/// OpenAI's limit on inputs per request.
const MAX_INPUTS: usize = 2048;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbeddingRequest {
    model: String,
    input: Value,
    encoding_format: Option<String>,
    dimensions: Option<i64>,
    /// Accepted and ignored, as in chat.
    #[allow(dead_code)]
    user: Option<Value>,
}

#[derive(Serialize)]
pub(crate) struct EmbeddingList {
    object: &'static str,
    data: Vec<EmbeddingData>,
    model: String,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingData {
    object: &'static str,
    index: usize,
    embedding: Value,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(message).with_param(param)
}

/// The inputs of `input`, each checked for its type.
fn inputs(input: Value) -> Result<Vec<EmbedInput>, ApiError> {
    let token = |value: &Value, at: String| -> Result<TokenId, ApiError> {
        value
            .as_i64()
            .and_then(|id| TokenId::try_from(id).ok())
            .filter(|id| *id >= 0)
            .ok_or_else(|| invalid("input", format!("{at}: a token id must be an integer >= 0")))
    };
    let inputs =
        match input {
            Value::String(text) => vec![EmbedInput::Text(text)],
            Value::Array(items) if items.is_empty() => {
                return Err(invalid("input", "input is an empty array"))
            }
            Value::Array(items) if items.iter().all(Value::is_number) => {
                let ids = items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| token(v, format!("input[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                vec![EmbedInput::Tokens(ids)]
            }
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(index, item)| match item {
                    Value::String(text) => Ok(EmbedInput::Text(text)),
                    Value::Array(ids) => Ok(EmbedInput::Tokens(
                        ids.iter()
                            .enumerate()
                            .map(|(i, v)| token(v, format!("input[{index}][{i}]")))
                            .collect::<Result<Vec<_>, _>>()?,
                    )),
                    _ => Err(invalid(
                        "input",
                        format!("input[{index}] must be a string or an array of token ids"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(invalid(
                "input",
                "input must be a string, an array of strings, an array of token ids or an array \
                 of arrays of token ids",
            )),
        };
    if inputs.len() > MAX_INPUTS {
        return Err(invalid(
            "input",
            format!("{} inputs; at most {MAX_INPUTS} per request", inputs.len()),
        ));
    }
    for (index, input) in inputs.iter().enumerate() {
        let empty = match input {
            EmbedInput::Text(text) => text.is_empty(),
            EmbedInput::Tokens(ids) => ids.is_empty(),
        };
        if empty {
            return Err(invalid("input", format!("input[{index}] is empty")));
        }
    }
    Ok(inputs)
}

/// `float` or `base64`.
fn base64_format(format: Option<&str>) -> Result<bool, ApiError> {
    match format {
        None | Some("float") => Ok(false),
        Some("base64") => Ok(true),
        Some(other) => Err(invalid(
            "encoding_format",
            format!("encoding_format is {other:?}; use \"float\" or \"base64\""),
        )),
    }
}

fn encode(vector: Vec<f32>, base64: bool) -> Value {
    if base64 {
        let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
        Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
    } else {
        Value::from(vector)
    }
}

async fn embeddings(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    if let Some(alias) = crate::gateway::alias_of(&state, &body) {
        return crate::gateway::embeddings(&state, &caller, &alias, &body).await;
    }
    Ok(local_embeddings(&state, &caller, &body)
        .await?
        .into_response())
}

/// Embeddings from this node's embedding models.
pub(crate) async fn local_embeddings(
    state: &AppState,
    caller: &Caller,
    body: &[u8],
) -> Result<Json<EmbeddingList>, ApiError> {
    let request: EmbeddingRequest = serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid_request(format!("invalid request body: {error}")))?;
    caller.authorize(&request.model, &request.model)?;
    let knowledge = state.knowledge();
    if !knowledge.config.embedding_models.contains(&request.model) {
        return Err(match state.model(&request.model) {
            Ok(_) => invalid(
                "model",
                format!(
                    "The model '{}' is a chat model, not an embedding model; GET /v1/models lists \
                     the embedding models (\"type\": \"embedding\")",
                    request.model
                ),
            )
            .with_code("not_an_embedding_model"),
            Err(error) => error,
        });
    }
    let base64 = base64_format(request.encoding_format.as_deref())?;
    let inputs = inputs(request.input)?;
    let embedder = knowledge.embedder(&request.model).await?;
    let dimension = embedder.info().dimension;
    if let Some(wanted) = request.dimensions {
        if wanted != i64::from(dimension) {
            return Err(invalid(
                "dimensions",
                format!(
                    "The model '{}' makes {dimension}-dimensional vectors and does not support \
                     shortening them (it is not Matryoshka-trained); omit dimensions or pass \
                     {dimension}",
                    request.model
                ),
            ));
        }
    }
    // The key's limits apply: the inputs' bytes (or token ids) bound their tokens, and the
    // real count settles the reservation when the request ends.
    let bound: u64 = inputs
        .iter()
        .map(|input| match input {
            EmbedInput::Text(text) => text.len() as u64 + 2,
            EmbedInput::Tokens(tokens) => tokens.len() as u64,
        })
        .sum();
    caller.admit(state.trust(), 0, bound)?;
    caller.ticket.answered_by(&request.model, true);
    // The embedder's busy time is the call's wall time: it runs on the compute executor.
    let began = std::time::Instant::now();
    let embeddings = tokio::task::spawn_blocking(move || embedder.embed(&inputs))
        .await
        .map_err(|error| {
            ApiError::from(moat_engine::EngineError::Internal(format!(
                "the embedding task failed: {error}"
            )))
        })?
        .map_err(|error| ApiError::from(error).with_param("input"))?;
    caller.ticket.add_busy(began.elapsed());
    caller.ticket.set_prompt_tokens(embeddings.prompt_tokens);
    let data = embeddings
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingData {
            object: "embedding",
            index,
            embedding: encode(vector, base64),
        })
        .collect();
    Ok(Json(EmbeddingList {
        object: "list",
        data,
        model: request.model,
        usage: EmbeddingUsage {
            prompt_tokens: embeddings.prompt_tokens,
            total_tokens: embeddings.prompt_tokens,
        },
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn input_takes_every_openai_shape() {
        assert_eq!(inputs(json!("a")).unwrap(), [EmbedInput::Text("a".into())]);
        assert_eq!(
            inputs(json!(["a", "b"])).unwrap(),
            [EmbedInput::Text("a".into()), EmbedInput::Text("b".into())]
        );
        assert_eq!(
            inputs(json!([1, 2, 3])).unwrap(),
            [EmbedInput::Tokens(vec![1, 2, 3])]
        );
        assert_eq!(
            inputs(json!([[1, 2], [3]])).unwrap(),
            [EmbedInput::Tokens(vec![1, 2]), EmbedInput::Tokens(vec![3])]
        );
    }

    #[test]
    fn bad_inputs_name_their_index() {
        let message = |value| inputs(value).unwrap_err().message;
        assert!(message(json!([])).contains("empty array"));
        assert!(message(json!(["ok", ""])).contains("input[1] is empty"));
        assert!(message(json!([[1], []])).contains("input[1] is empty"));
        assert!(message(json!([[1], [-4]])).contains("input[1][0]"));
        assert!(message(json!([1.5])).contains("input[0]"));
        assert!(message(json!(["a", 3])).contains("input[1]"));
        assert!(message(json!({"text": "a"})).contains("must be a string"));
        let too_many: Vec<&str> = vec!["x"; MAX_INPUTS + 1];
        assert!(message(json!(too_many)).contains("at most 2048"));
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let encoded = encode(vec![1.0, -2.5], true);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap())
            .unwrap();
        assert_eq!(
            bytes,
            [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat()
        );
        assert_eq!(encode(vec![0.5], false), json!([0.5]));
        assert!(base64_format(Some("float")).is_ok_and(|b| !b));
        assert!(base64_format(Some("binary")).is_err());
    }
}
