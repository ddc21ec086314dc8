//! The gateway in the server: a chat request whose `model` is a gateway alias (`[aliases.NAME]`
//! with `targets` in moat.toml) is routed by moat-gateway to the alias's targets, this node's
//! engines or OpenAI-compatible upstreams, with fallback, balancing and the response cache.
//!
//! What happens here, in order: the key is checked for the alias (scopes name aliases like
//! models), the alias's (or key's) guard policy runs its input rails on the messages, so a
//! redacted or blocked prompt never leaves for an upstream, the request is admitted under the
//! key's limits with an estimate of its tokens (bytes of message text bound them), then the
//! gateway answers. The upstream's reported usage settles the account. Streams are asked for
//! usage even when the client did not ask (`stream_options.include_usage`), and that chunk is
//! then kept from the client.
//!
//! Local targets are [`LocalProvider`]s: they run the ordinary local chat path
//! ([`crate::routes::chat::local_chat`]) with the caller of the request that reached the
//! gateway, taken from a task-local, so one request keeps one ticket (one audit entry, one
//! account) however many targets it tried.
//!
//! Output rails run on whatever answers, as it flows: on local targets' tokens in the local
//! path, and on every answer here, per choice, on the content deltas of a stream or the
//! message of a whole answer (a block ends a stream with an error event; a whole answer
//! becomes the 400 `content_policy_violation`).

use std::sync::{Arc, Weak};

use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt};
use moat_engine::ChatMessage;
use moat_gateway::{
    CacheStatus, CallContext, Gateway, GatewayError, GatewayErrorKind, LocalResolver, LocalTarget,
    Provider, ProviderError, ProviderReply,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::guarding;
use crate::routes::chat::local_chat;
use crate::state::Inner;
use crate::stream::{Answer, Piece};
use crate::trust::{Caller, ChosenGuard};
use crate::{ApiError, AppState};

mod rail;

use rail::OutputRail;

/// The response header that says whether the response cache answered: `hit`, `miss` or
/// `bypass`.
pub const CACHE_HEADER: &str = "x-moat-cache";

/// Completion tokens reserved for a request that does not say `max_tokens`, until the
/// upstream's usage settles the real count.
const DEFAULT_RESERVED_COMPLETION: u64 = 1024;

tokio::task_local! {
    /// The caller of the request the gateway is answering, for local targets.
    static CALLER: Caller;
}

/// How the gateway reached the local chat path: for which alias, with which guard policy.
pub(crate) struct Via<'a> {
    pub alias: &'a str,
    pub guard_policy: Option<&'a str>,
}

/// The alias named by a chat body's `model`, when it is one of the gateway's.
pub(crate) fn alias_of(state: &AppState, body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ModelField {
        model: Option<String>,
    }
    let gateway = state.gateway()?;
    let model = serde_json::from_slice::<ModelField>(body).ok()?.model?;
    gateway.has_alias(&model).then_some(model)
}

/// What both routes do first: find the gateway, check that the caller may use the alias, and
/// parse the body.
fn open_request<'a>(
    state: &'a AppState,
    caller: &Caller,
    alias: &str,
    body: &[u8],
) -> Result<(&'a Arc<Gateway>, Value), ApiError> {
    let Some(gateway) = state.gateway() else {
        return Err(ApiError::model_not_found(alias));
    };
    caller.authorize(alias, alias)?;
    let body = serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid_request(format!("the body is not JSON: {error}")))?;
    Ok((gateway, body))
}

/// Answers a chat request for a gateway alias.
pub(crate) async fn chat(
    state: &AppState,
    caller: &Caller,
    alias: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (answer, cache) = chat_answer(state, caller, alias, body).await?;
    let mut response = answer.into_response();
    response.headers_mut().insert(
        HeaderName::from_static(CACHE_HEADER),
        HeaderValue::from_static(cache),
    );
    Ok(response)
}

/// The answer to a chat request for a gateway alias, and what the response cache did (`hit`,
/// `miss` or `bypass`, for [`CACHE_HEADER`]).
pub(crate) async fn chat_answer(
    state: &AppState,
    caller: &Caller,
    alias: &str,
    body: &[u8],
) -> Result<(Answer, &'static str), ApiError> {
    let (gateway, mut body) = open_request(state, caller, alias, body)?;
    let Some(object) = body.as_object_mut() else {
        return Err(ApiError::invalid_request("the body must be a JSON object"));
    };
    let stream = object.get("stream").and_then(Value::as_bool) == Some(true);
    let client_usage = object
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    let (text_bytes, guard) = guard_messages(state, caller, alias, object).await?;
    let mut rail = OutputRail::new(guard, &caller.ticket);
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|field| object.get(*field).and_then(Value::as_u64))
        .unwrap_or(DEFAULT_RESERVED_COMPLETION);
    // Each of the `n` choices may write `max_tokens` (the upstream checks `n` itself).
    let choices = object.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    caller.admit(
        state.trust(),
        text_bytes,
        text_bytes.saturating_add(max_tokens.saturating_mul(choices)),
    )?;
    if stream && !client_usage {
        let options = object
            .entry("stream_options")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(options) = options.as_object_mut() {
            options.insert("include_usage".into(), Value::Bool(true));
        }
    }
    let context = call_context(caller);
    let routed = CALLER.scope(caller.clone(), gateway.chat(&context, alias, body));
    let reply = crate::trace::gateway_attempts(caller, alias, routed)
        .await
        .map_err(ApiError::from)?;
    let cache = match reply.cache {
        CacheStatus::Hit => "hit",
        CacheStatus::Miss => "miss",
        CacheStatus::Bypass => "bypass",
    };
    let hit = reply.cache == CacheStatus::Hit;
    if hit {
        // A cached answer used no model: it counts as a request, not as tokens.
        caller.ticket.set_tokens(0, 0);
    }
    let answer = match reply.reply {
        ProviderReply::Full(mut value) => {
            if !hit {
                settle(caller, &value);
                answered(caller, &value);
            }
            if let Some(rail) = &mut rail {
                rail.scan(&mut value, "message", true)?;
            }
            Answer::Whole(value)
        }
        ProviderReply::Stream(chunks) => {
            let caller = caller.clone();
            // The envelope (id, object, created, model) of the last chunk, for a chunk that
            // carries what the rail still held when the upstream stopped sending choices.
            let mut envelope: Option<Map<String, Value>> = None;
            let pieces = chunks
                .map(Some)
                .chain(stream::once(async { None }))
                .map(move |item| {
                    let mut out = Vec::new();
                    match item {
                        // The upstream's stream ended: what is still held (a stream without
                        // its finish reason) goes out.
                        None => {
                            if let Some(rail) = &mut rail {
                                out.extend(rail.flush_piece(envelope.as_ref()));
                            }
                        }
                        Some(Ok(mut chunk)) => {
                            let usage_only = chunk.get("usage").is_some_and(|u| !u.is_null())
                                && chunk
                                    .get("choices")
                                    .is_none_or(|c| c.as_array().is_some_and(Vec::is_empty));
                            if let Some(rail) = &mut rail {
                                if usage_only {
                                    // No choice comes after the usage chunk.
                                    out.extend(rail.flush_piece(envelope.as_ref()));
                                } else if let Err(error) = rail.scan(&mut chunk, "delta", false) {
                                    out.push(Piece::Error(
                                        serde_json::to_string(&error.body()).unwrap_or_default(),
                                    ));
                                    return out;
                                }
                            }
                            if let Some(object) = chunk.as_object().filter(|_| rail.is_some()) {
                                envelope = Some(
                                    ["id", "object", "created", "model"]
                                        .iter()
                                        .filter_map(|key| {
                                            Some(((*key).to_owned(), object.get(*key)?.clone()))
                                        })
                                        .collect(),
                                );
                            }
                            if !hit {
                                answered(&caller, &chunk);
                            }
                            if usage_only && !hit {
                                settle(&caller, &chunk);
                            }
                            if !usage_only || client_usage {
                                out.push(Piece::Chunk(chunk.to_string()));
                            }
                        }
                        Some(Err(error)) => {
                            let error = broken_off(&error);
                            out.push(Piece::Error(
                                serde_json::to_string(&error.body()).unwrap_or_default(),
                            ));
                        }
                    }
                    out
                })
                .flat_map(stream::iter);
            // An error piece ends the stream.
            let pieces = pieces
                .scan(false, |ended, piece| {
                    let out = (!*ended).then(|| {
                        *ended = matches!(piece, Piece::Error(_));
                        piece
                    });
                    async move { out }
                })
                .fuse();
            Answer::Stream(pieces.boxed())
        }
    };
    Ok((answer, cache))
}

/// Answers an embeddings request for a gateway alias (upstream targets; a local target answers
/// 400, since local embedding models are served under their own names).
pub(crate) async fn embeddings(
    state: &AppState,
    caller: &Caller,
    alias: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (gateway, body) = open_request(state, caller, alias, body)?;
    let input = body
        .get("input")
        .ok_or_else(|| ApiError::invalid_request("input is required").with_param("input"))?;
    let bytes = input.to_string().len() as u64;
    caller.admit(state.trust(), bytes, bytes)?;
    let context = call_context(caller);
    let routed = gateway.embeddings(&context, alias, body);
    let value = crate::trace::gateway_attempts(caller, alias, routed).await?;
    if let Some(prompt) = value
        .pointer("/usage/prompt_tokens")
        .and_then(Value::as_u64)
    {
        caller.ticket.set_tokens(prompt, 0);
    }
    answered(caller, &value);
    Ok(axum::Json(value).into_response())
}

/// Runs the input rails of the alias's (or key's) guard policy on the messages, writing
/// redactions back into the body; returns the bytes of message text (a bound on its tokens)
/// and the policy, for the output rails.
async fn guard_messages(
    state: &AppState,
    caller: &Caller,
    alias: &str,
    object: &mut Map<String, Value>,
) -> Result<(u64, Option<ChosenGuard>), ApiError> {
    let Some(raw) = object.get("messages") else {
        return Err(ApiError::invalid_request("messages is required").with_param("messages"));
    };
    let mut messages: Vec<ChatMessage> = serde_json::from_value(raw.clone()).map_err(|error| {
        ApiError::invalid_request(format!("messages: {error}")).with_param("messages")
    })?;
    caller
        .ticket
        .set_prompt(|| crate::routes::chat::message_texts(&messages));
    let guard = state.trust().guard_for(caller.key.as_ref(), alias)?;
    if let Some(guard) = &guard {
        guarding::chat_input(
            guard,
            &mut messages,
            object.get_mut("tools"),
            &caller.ticket,
        )?;
        crate::classify::input_rail(state, guard, &messages, caller).await?;
        let redacted = serde_json::to_value(&messages)
            .map_err(|error| ApiError::internal(format!("re-encoding messages: {error}")))?;
        object.insert("messages".into(), redacted);
    }
    let bytes = crate::routes::chat::message_texts(&messages).len() as u64;
    Ok((bytes, guard))
}

fn call_context(caller: &Caller) -> CallContext {
    CallContext {
        key_id: caller.key.as_ref().map(|key| key.id.0.to_string()),
        private: caller.key.as_ref().is_some_and(|key| key.private),
    }
}

/// Sets the ticket's tokens from an answer's `usage`, when it has one.
fn settle(caller: &Caller, value: &Value) {
    let Some(usage) = value.get("usage") else {
        return;
    };
    let count = |field: &str| usage.get(field).and_then(Value::as_u64);
    if let (Some(prompt), Some(completion)) = (count("prompt_tokens"), count("completion_tokens")) {
        caller.ticket.set_tokens(prompt, completion);
    }
}

/// Names the model an answer (or chunk) says it came from, for usage, unless a local target
/// already did.
fn answered(caller: &Caller, value: &Value) {
    if let Some(model) = value.get("model").and_then(Value::as_str) {
        caller.ticket.answered_upstream(model);
    }
}

/// A failure after the answer started: the client already holds part of it, so the stream
/// ends with this error (no other target can take over).
fn broken_off(error: &ProviderError) -> ApiError {
    ApiError::bad_gateway(format!("the answer broke off: {error}"))
}

/// The one mapping from gateway failures to HTTP answers.
impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> Self {
        let message = error.to_string();
        let retry_after = match &error {
            GatewayError::Provider {
                source: ProviderError::Overloaded { retry_after },
                ..
            } => *retry_after,
            _ => None,
        };
        let upstream_status = match &error {
            GatewayError::Provider {
                source: ProviderError::Upstream(moat_upstream::UpstreamError::Client { status, .. }),
                ..
            } => Some(*status),
            _ => None,
        };
        match error.kind() {
            GatewayErrorKind::Config => ApiError::internal(message),
            GatewayErrorKind::NotFound => ApiError::not_found(message, "model_not_found"),
            GatewayErrorKind::Unavailable => ApiError::unavailable(message, None),
            GatewayErrorKind::Overloaded => ApiError::overloaded(message, retry_after),
            GatewayErrorKind::Timeout => ApiError::gateway_timeout(message),
            GatewayErrorKind::BadRequest => ApiError::upstream_rejected(message, upstream_status),
            GatewayErrorKind::BadGateway => ApiError::bad_gateway(message),
        }
    }
}

/// A local ApiError as a provider failure, classified for fallback: 429 is overload, a server
/// error (a model loading or failed) lets another target try, anything else is the request's
/// fault.
fn to_provider_error(error: ApiError) -> ProviderError {
    if error.status.as_u16() == 429 {
        ProviderError::Overloaded {
            retry_after: error.retry_after,
        }
    } else if error.status.is_server_error() {
        ProviderError::Failed {
            message: error.message,
        }
    } else {
        ProviderError::Rejected {
            message: error.message,
        }
    }
}

/// The server's side of moat-gateway's local targets.
pub(crate) struct Resolver {
    pub state: Weak<Inner>,
}

impl LocalResolver for Resolver {
    fn resolve(
        &self,
        alias: &str,
        target: &LocalTarget,
    ) -> Result<Arc<dyn Provider>, GatewayError> {
        if let Some(params) = &target.params {
            if !params.is_object() {
                return Err(GatewayError::Config {
                    reason: format!(
                        "alias {alias:?}, local target {:?}: params must be a table",
                        target.model
                    ),
                });
            }
        }
        Ok(Arc::new(LocalProvider {
            state: self.state.clone(),
            alias: alias.to_owned(),
            target: target.clone(),
        }))
    }
}

/// A model served by this node, as a gateway target: its `params` fill fields the request
/// left out, its `system_prompt` goes first unless the request has a system message, its
/// `knowledge_base` grounds the answer unless the request names one.
pub(crate) struct LocalProvider {
    state: Weak<Inner>,
    alias: String,
    target: LocalTarget,
}

impl LocalProvider {
    fn state(&self) -> Result<AppState, ProviderError> {
        self.state
            .upgrade()
            .map(AppState::from_inner)
            .ok_or_else(|| ProviderError::Failed {
                message: "the server is shutting down".into(),
            })
    }

    /// The body for the local chat path: this target's model and settings applied.
    fn body(&self, mut body: Value) -> Result<Vec<u8>, ProviderError> {
        let Some(object) = body.as_object_mut() else {
            return Err(ProviderError::Rejected {
                message: "the request body is not a JSON object".into(),
            });
        };
        object.insert("model".into(), Value::String(self.target.model.clone()));
        if let Some(Value::Object(params)) = &self.target.params {
            for (name, value) in params {
                object.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
        if let Some(kb) = &self.target.knowledge_base {
            object
                .entry("knowledge_base")
                .or_insert_with(|| Value::String(kb.clone()));
        }
        if let Some(system) = &self.target.system_prompt {
            if let Some(Value::Array(messages)) = object.get_mut("messages") {
                let has_system = messages
                    .iter()
                    .any(|m| m.get("role").and_then(Value::as_str) == Some("system"));
                if !has_system {
                    messages.insert(0, serde_json::json!({"role": "system", "content": system}));
                }
            }
        }
        serde_json::to_vec(&body).map_err(|error| ProviderError::Failed {
            message: format!("encoding the request: {error}"),
        })
    }
}

impl Provider for LocalProvider {
    fn chat(&self, body: Value) -> BoxFuture<'_, Result<ProviderReply, ProviderError>> {
        Box::pin(async move {
            let state = self.state()?;
            let body = self.body(body)?;
            let Ok(caller) = CALLER.try_with(Caller::clone) else {
                return Err(ProviderError::Failed {
                    message: "a local target was called outside a request".into(),
                });
            };
            let via = Via {
                alias: &self.alias,
                guard_policy: self.target.guard_policy.as_deref(),
            };
            let answer = local_chat(&state, &caller, &body, Some(&via))
                .await
                .map_err(to_provider_error)?;
            Ok(match answer {
                Answer::Whole(value) => ProviderReply::Full(value),
                Answer::Stream(pieces) => ProviderReply::Stream(
                    pieces
                        .map(|piece| match piece {
                            Piece::Chunk(text) => {
                                serde_json::from_str(&text).map_err(|error| ProviderError::Failed {
                                    message: format!("a local chunk is not JSON: {error}"),
                                })
                            }
                            Piece::Error(text) => Err(ProviderError::Failed {
                                message: error_message(&text),
                            }),
                        })
                        .boxed(),
                ),
            })
        })
    }

    fn embeddings(&self, _body: Value) -> BoxFuture<'_, Result<Value, ProviderError>> {
        Box::pin(async move {
            Err(ProviderError::Unsupported {
                what: "embeddings through a gateway alias".into(),
            })
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            let state = self.state()?;
            state
                .model(&self.target.model)
                .map(|_| ())
                .map_err(|error| ProviderError::Failed {
                    message: error.message,
                })
        })
    }

    fn is_external(&self) -> bool {
        false
    }

    fn is_local(&self) -> bool {
        true
    }
}

/// The message of a serialised OpenAI error body, or the text itself.
fn error_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| text.to_owned())
}
