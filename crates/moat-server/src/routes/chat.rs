//! `POST /v1/chat/completions`, with grounding: a `knowledge_base` field (a name, or an object
//! with the retrieval settings) or a model alias that names one makes the server search that
//! knowledge base for the last user message, put the passages into the prompt as numbered
//! markers, and return `citations` (in the whole answer's body; in a stream, a chunk with no
//! choices and a `citations` field after the choices' last chunks, before the usage chunk and
//! `[DONE]`). When nothing passes `min_score`, the no-answer policy applies: by default the
//! answer says so without calling the model.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::Router;
use moat_engine::ChatMessage;
use moat_openai::{
    parse_chat_request, ChatChoice, ChatCompletion, ChatCompletionChunk, ResponseIds, UsageTally,
};
use moat_rag::{
    ground, query_from_messages, retrieve_counted, Citation, Grounded, IdentityReranker,
};
use serde::Serialize;
use serde_json::Value;

use crate::extract::RawBody;
use crate::format::ChatFormat;
use crate::gateway::Via;
use crate::generate::{collect, start, Job};
use crate::guarding::{self, Watch};
use crate::routes::knowledge::blocking;
use crate::stream::{fixed_pieces, pieces, Answer};
use crate::trust::Caller;
use crate::{prompt, ApiError, AppState, GroundingRequest, ServedModel};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/chat/completions", post(chat))
}

/// A citation as the response carries it.
#[derive(Serialize)]
struct WireCitation {
    marker: u32,
    /// The document's path in the knowledge base.
    document: String,
    location: moat_vector::Location,
    score: f32,
    snippet: String,
}

impl From<Citation> for WireCitation {
    fn from(citation: Citation) -> Self {
        Self {
            marker: citation.marker,
            document: citation.path,
            location: citation.location,
            score: citation.score,
            snippet: citation.snippet,
        }
    }
}

/// The `knowledge_base` field of the raw body, if any.
fn knowledge_base_field(body: &[u8]) -> Result<Option<GroundingRequest>, ApiError> {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(body) else {
        // parse_chat_request reports malformed bodies.
        return Ok(None);
    };
    match object.remove("knowledge_base") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value).map(Some).map_err(|_| {
            ApiError::invalid_request(
                "knowledge_base must be a knowledge base name or an object with name and \
                 optional top_k, mode, min_score, path_glob, tags, no_answer, no_answer_reply",
            )
            .with_param("knowledge_base")
        }),
    }
}

async fn chat(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    if let Some(alias) = crate::gateway::alias_of(&state, &body) {
        return crate::gateway::chat(&state, &caller, &alias, &body).await;
    }
    Ok(local_chat(&state, &caller, &body, None)
        .await?
        .into_response())
}

/// A chat request answered by this node's engines. `via` is set when the gateway routes an
/// alias here: the caller was authorized and admitted for the alias already, and the target's
/// guard policy (if it names one) applies.
pub(crate) async fn local_chat(
    state: &AppState,
    caller: &Caller,
    body: &[u8],
    via: Option<&Via<'_>>,
) -> Result<Answer, ApiError> {
    let field = knowledge_base_field(body)?;
    let mut request = parse_chat_request(body)?;
    let requested_name = request.model.clone();
    let alias = state
        .knowledge()
        .config
        .aliases
        .get(&request.model)
        .cloned();
    if let Some(alias) = &alias {
        request.model.clone_from(&alias.model);
    }
    let grounding = match (field, alias.and_then(|a| a.knowledge_base)) {
        (Some(field), Some(base)) if field.name == base.name => Some(field.over(&base)),
        (Some(field), _) => Some(field),
        (None, base) => base,
    };
    let guard = match via {
        None => {
            caller.authorize(&requested_name, &request.model)?;
            state
                .trust()
                .guard_for(caller.key.as_ref(), &requested_name)?
        }
        Some(via) => state
            .trust()
            .guard_named(caller.key.as_ref(), via.alias, via.guard_policy)?,
    };
    let model = state.model(&request.model)?;
    caller.ticket.answered_by(&request.model, true);
    let mut chat = request.validate(&model.limits)?;
    chat.model = requested_name;
    caller.ticket.set_prompt(|| message_texts(&chat.messages));
    let mut redactions = None;
    if let Some(guard) = &guard {
        let map = guarding::chat_input(
            guard,
            &mut chat.messages,
            chat.tools.as_mut().map(|tools| &mut tools.definitions),
            &caller.ticket,
        )?;
        crate::classify::input_rail(state, guard, &chat.messages, caller).await?;
        if state.trust().restore_redactions() {
            redactions = Some(Arc::new(map));
        }
    }
    let mut citations = None;
    if let Some(grounding) = grounding {
        match ground_messages(state, caller, &grounding, &chat.messages).await? {
            Grounded::Prompt {
                messages,
                citations: found,
            } => {
                chat.messages = messages;
                citations = Some(found.into_iter().map(WireCitation::from).collect());
            }
            Grounded::NoAnswer { reply } => {
                let ids = state.response_ids("chatcmpl", &chat.model);
                return Ok(no_answer(
                    &ids,
                    &reply,
                    chat.params.n,
                    chat.params.stream,
                    chat.params.include_usage,
                ));
            }
        }
    }
    if chat.tools.is_some() {
        tools_supported(&model, &chat.model)?;
    }
    let definitions = chat.tools.as_ref().map(|tools| tools.definitions.clone());
    let prompt = prompt::chat(
        &model,
        &chat.model,
        chat.messages,
        definitions,
        chat.template_kwargs,
    )
    .await?;
    let separates_reasoning = chat.reasoning.separates(prompt.template_thinks);
    // When thinking is read out, a grammar either waits for it or writes it (see
    // `ChatPrompt::thinking`), so a prompt that opened the thinking is always read as such.
    let thinking = prompt.thinking(
        separates_reasoning,
        chat.params.grammar.as_ref(),
        chat.thinking_budget
            .or_default(state.config().thinking_budget),
    );
    let opens_thinking = prompt.opens_thinking;
    let tokens = prompt.tokens;
    let params = &chat.params;
    let jobs = (0..params.n)
        .map(|index| {
            let mut request = params.generate_request(tokens.clone(), index, false)?;
            request.thinking = thinking.clone();
            Ok(Job::new(index, index == 0, request))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let reserved = tokens.len() as u64
        + jobs
            .iter()
            .map(|job| u64::from(job.request.stop.max_tokens))
            .sum::<u64>();
    caller.admit(state.trust(), tokens.len() as u64, reserved)?;
    // A grammar from `tools` that cannot be used names `tools` (only when required or named:
    // with `auto` the engine leaves the model free instead).
    let mut choices = start(&model.engine, jobs, params.grammar_field).await?;
    let ids = state.response_ids("chatcmpl", &chat.model);
    let format = ChatFormat::new(ids.clone(), params.n, params.logprobs.is_some())
        .reading_tool_calls(chat.tools.as_ref())
        .reading_reasoning(separates_reasoning.then_some(opens_thinking));
    for choice in &mut choices {
        choice.watch(Watch::new(
            caller.ticket.clone(),
            guard.as_ref(),
            redactions.clone(),
        ));
        if let Some(count) = format.thinking_count(choice.index()) {
            choice.count_thinking(count);
        }
    }
    let citations: Option<Vec<WireCitation>> = citations;
    if params.stream {
        let trailer = citations.map(|c| citations_chunk(&ids, c));
        Ok(Answer::Stream(pieces(
            choices,
            format,
            params.include_usage,
            trailer,
        )))
    } else {
        let whole = collect(choices, format).await?;
        Ok(Answer::Whole(match citations {
            None => serde_json::to_value(whole).unwrap_or_default(),
            Some(citations) => with_citations(&whole, citations),
        }))
    }
}

/// Tools need a chat template that shows the model the Hermes call format moat reads back
/// (`<tool_call>`): other models would be told about tools in a format they were not trained
/// on, or not at all, and their calls would come back as text.
fn tools_supported(model: &ServedModel, name: &str) -> Result<(), ApiError> {
    let template = model.engine.info().chat_template.as_deref().unwrap_or("");
    if shows_hermes_calls(template) {
        return Ok(());
    }
    Err(ApiError::invalid_request(format!(
        "'{name}' cannot call tools here: its chat template does not show Hermes-style {} \
         calls, the one format moat reads back (Qwen2.5, Hermes and others use it)",
        moat_openai::HERMES_OPEN
    ))
    .with_param("tools"))
}

/// Whether a chat template shows the model Hermes-style calls with JSON inside, which moat
/// reads back. Some templates put XML inside `<tool_call>` (Qwen3-Coder's `<function=...>`,
/// GLM's `<arg_key>`): moat cannot read those calls.
pub(crate) fn shows_hermes_calls(template: &str) -> bool {
    let xml_inside = template.contains("<function=") || template.contains("<arg_key>");
    template.contains("tools") && template.contains(moat_openai::HERMES_OPEN) && !xml_inside
}

/// The messages' text, one per line, for the audit log (when it records prompts).
pub(crate) fn message_texts(messages: &[ChatMessage]) -> String {
    let mut out = String::new();
    for message in messages {
        if let Some(reasoning) = crate::guarding::message_reasoning(message) {
            out.push_str(&message.role);
            out.push_str(" (thinking): ");
            out.push_str(reasoning);
            out.push('\n');
        }
        let text = match &message.content {
            Some(moat_engine::MessageContent::Text(text)) => Some(text.clone()),
            Some(moat_engine::MessageContent::Parts(parts)) => Some(
                parts
                    .iter()
                    .filter_map(|part| part.text.as_deref())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            None => None,
        };
        // An assistant turn that only made calls has no text line, just its calls.
        if let Some(text) = text.filter(|text| !text.is_empty() || message.tool_calls.is_none()) {
            out.push_str(&message.role);
            out.push_str(": ");
            out.push_str(&text);
            out.push('\n');
        }
        for call in message.tool_calls.iter().flat_map(tool_call_list) {
            let function = |field: &str| {
                call.pointer(&format!("/function/{field}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            out.push_str(&format!(
                "{}: call {}({})\n",
                message.role,
                function("name"),
                function("arguments")
            ));
        }
    }
    out
}

fn tool_call_list(calls: &Value) -> &[Value] {
    calls.as_array().map(Vec::as_slice).unwrap_or_default()
}

/// Retrieves for the last user message and builds the grounded messages. The query's
/// embedding is charged to the caller: the request is admitted for it first (its bytes bound
/// its tokens), so a key past its limits is turned away before it, and its real tokens count
/// against the key's limits and as the embedding model's usage.
async fn ground_messages(
    state: &AppState,
    caller: &Caller,
    grounding: &GroundingRequest,
    messages: &[ChatMessage],
) -> Result<Grounded, ApiError> {
    let (params, config) = grounding.settings("knowledge_base")?;
    let query = query_from_messages(messages).ok_or_else(|| {
        ApiError::invalid_request(
            "a grounded chat needs a user message with text to search the knowledge base for",
        )
        .with_param("messages")
    })?;
    caller.admit_first(state.trust(), query.len() as u64 + 2)?;
    let store = state.knowledge().store()?;
    let lookup = Arc::clone(&store);
    let name = grounding.name.clone();
    let info = blocking(move || Ok(lookup.kb(&name)?)).await?;
    let embedder = state.knowledge().embedder(&info.embed_model).await?;
    let name = grounding.name.clone();
    let began = std::time::Instant::now();
    let found = blocking(move || {
        Ok(retrieve_counted(
            store.as_ref(),
            embedder.as_ref(),
            &name,
            &query,
            &params,
            &IdentityReranker,
        )?)
    })
    .await?;
    caller
        .ticket
        .add_side_usage(&info.embed_model, found.embed_tokens, 0, began.elapsed());
    Ok(ground(messages, &found.hits, &config))
}

fn citations_chunk(ids: &ResponseIds, citations: Vec<WireCitation>) -> Value {
    serde_json::json!({
        "id": ids.id,
        "object": "chat.completion.chunk",
        "created": ids.created,
        "model": ids.model,
        "choices": [],
        "citations": citations,
    })
}

fn with_citations(whole: &ChatCompletion, citations: Vec<WireCitation>) -> Value {
    let mut value = serde_json::to_value(whole).unwrap_or(Value::Null);
    if let Value::Object(object) = &mut value {
        object.insert(
            "citations".into(),
            serde_json::to_value(citations).unwrap_or_default(),
        );
    }
    value
}

/// The answer when nothing relevant was found and the policy replies without the model: the
/// reply as every choice, no usage, and an empty `citations`.
fn no_answer(ids: &ResponseIds, reply: &str, n: u32, stream: bool, include_usage: bool) -> Answer {
    let usage = UsageTally::default().wire();
    if !stream {
        let choices = (0..n)
            .map(|index| ChatChoice::new(index, reply.to_owned(), None, "stop"))
            .collect();
        let whole = ChatCompletion::new(ids, choices, usage);
        return Answer::Whole(with_citations(&whole, Vec::new()));
    }
    let mut events = Vec::new();
    for index in 0..n {
        let chunks = [
            ChatCompletionChunk::role(ids, index),
            ChatCompletionChunk::content(ids, index, reply.to_owned(), None),
            ChatCompletionChunk::finish(ids, index, "stop"),
        ];
        events.extend(
            chunks
                .iter()
                .map(|c| serde_json::to_value(c).unwrap_or_default()),
        );
    }
    events.push(citations_chunk(ids, Vec::new()));
    if include_usage {
        let chunk = ChatCompletionChunk::usage(ids, usage);
        events.push(serde_json::to_value(chunk).unwrap_or_default());
    }
    Answer::Stream(fixed_pieces(events))
}
