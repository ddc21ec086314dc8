//! `/api/chat` and `/api/generate`.

use super::*;

#[derive(Deserialize)]
pub(super) struct ChatMessage {
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
pub(super) struct ChatRequest {
    #[serde(flatten)]
    common: Common,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    #[serde(default)]
    tools: Option<Value>,
}

pub(super) async fn chat(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawBody(body): RawBody,
) -> Result<Response> {
    let began = Instant::now();
    let request: ChatRequest = parse(&body)?;
    let model = resolve(&state, &request.common.model);
    let upstream = reaches_upstreams(&state, &model);
    let mut openai = request.common.openai_body(&model, false, upstream)?;
    if request.messages.is_empty() {
        return loaded(&state, &caller, &model, Shape::Chat, &request.common.model);
    }
    apply_ollama_defaults(&state, &model, &mut openai);
    // Ollama's tools are OpenAI's function tools; the model decides (no tool_choice).
    if let Some(tools) = request.tools.as_ref().filter(|tools| !tools.is_null()) {
        openai.insert("tools".into(), tools.clone());
    }
    let mut messages = Vec::with_capacity(request.messages.len());
    // Ollama's calls carry no ids and its tool messages none either: each call gets one here,
    // and each tool message answers the earliest call not answered yet, as Ollama pairs them.
    let mut unanswered = std::collections::VecDeque::new();
    let mut made = 0usize;
    for (index, message) in request.messages.iter().enumerate() {
        refuse_unless_empty("messages.images", message.images.as_ref(), NO_IMAGES)?;
        let mut openai_message = json!({ "role": message.role, "content": message.content });
        match message.thinking.as_ref() {
            // An earlier answer's thinking goes back as OpenAI's `reasoning_content`, for the
            // template to show or leave out.
            Some(Value::String(text)) if message.role == "assistant" && !text.is_empty() => {
                // Not to a gateway's upstreams: some refuse it (DeepSeek's API does).
                if !upstream {
                    openai_message[moat_openai::REASONING_CONTENT] = json!(text);
                }
            }
            thinking => refuse_unless_empty(
                "messages.thinking",
                thinking,
                "only an assistant message has thinking, as text",
            )?,
        }
        if let Some(calls) = message.tool_calls.as_ref().filter(|calls| !calls.is_null()) {
            let calls = openai_tool_calls(calls, index, &mut made)?;
            unanswered.extend(calls.iter().filter_map(|call| call.get("id").cloned()));
            openai_message["tool_calls"] = Value::Array(calls);
        }
        if message.role == "tool" {
            let id = unanswered.pop_front().ok_or_else(|| {
                ApiError::invalid_request(format!(
                    "messages[{index}]: a tool message answers a call, and no earlier assistant \
                     message has a call left to answer"
                ))
                .with_param("messages")
            })?;
            openai_message["tool_call_id"] = id;
        }
        messages.push(openai_message);
    }
    openai.insert("messages".into(), Value::Array(messages));
    let answer = answer_chat(&state, &caller, &Value::Object(openai)).await?;
    let asked = Asked::of(&request.common);
    respond(answer, Shape::Chat, &request.common.model, asked, began).await
}

/// An assistant message's calls in Ollama's form (`{"function": {"name", "arguments": {...}}}`)
/// as OpenAI's (`{"id", "type": "function", "function": {"name", "arguments": "<JSON text>"}}`).
fn openai_tool_calls(calls: &Value, index: usize, made: &mut usize) -> Result<Vec<Value>> {
    let invalid = |why: &str| {
        ApiError::invalid_request(format!("messages[{index}].tool_calls: {why}"))
            .with_param("messages")
    };
    let Value::Array(calls) = calls else {
        return Err(invalid("expected an array"));
    };
    calls
        .iter()
        .map(|call| {
            let function = call
                .get("function")
                .ok_or_else(|| invalid("each call needs its function"))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("each call needs a function name"))?;
            let arguments = match function.get("arguments") {
                None | Some(Value::Null) => "{}".to_owned(),
                Some(Value::String(text)) => text.clone(),
                Some(object) => object.to_string(),
            };
            let id = format!("call_{made}");
            *made += 1;
            Ok(json!({
                "id": id,
                "type": "function",
                "function": { "name": name, "arguments": arguments },
            }))
        })
        .collect()
}

#[derive(Deserialize)]
pub(super) struct GenerateRequest {
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

pub(super) async fn generate(
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
    let upstream = reaches_upstreams(&state, &model);
    let mut openai = request.common.openai_body(&model, request.raw, upstream)?;
    if request.prompt.is_empty() {
        return loaded(
            &state,
            &caller,
            &model,
            Shape::Generate,
            &request.common.model,
        );
    }
    apply_ollama_defaults(&state, &model, &mut openai);
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
        crate::routes::completions::local_completions(&state, &caller, &bytes, true).await?
    } else {
        let mut messages = Vec::new();
        if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
            messages.push(json!({ "role": "system", "content": system }));
        }
        messages.push(json!({ "role": "user", "content": request.prompt }));
        openai.insert("messages".into(), Value::Array(messages));
        answer_chat(&state, &caller, &Value::Object(openai)).await?
    };
    let asked = Asked::of(&request.common);
    respond(answer, Shape::Generate, &request.common.model, asked, began).await
}
