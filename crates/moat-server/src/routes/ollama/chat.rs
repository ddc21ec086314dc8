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
    let asked = Asked::of(&request.common);
    respond(answer, Shape::Chat, &request.common.model, asked, began).await
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
