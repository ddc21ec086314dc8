//! `/v1/chat/completions`: the request as sent, its validation into [`ValidChat`], and the
//! response bodies (a whole `chat.completion` and the `chat.completion.chunk`s of a stream).

use moat_engine::ChatMessage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::common::{ResponseIds, WireUsage};
use crate::fields::{screen, CHAT_FIELDS};
use crate::logprobs::ChatLogprobs;
use crate::params::{token_count, SamplingFields};
use crate::parse::{object, typed};
use crate::reasoning::{ReasoningFormat, REASONING_CONTENT};
use crate::tools::{self, ToolCall, ValidTools};
use crate::{GenerationParams, ModelLimits, WireError};

/// Most alternatives per token chat may ask for (OpenAI's limit).
const MAX_TOP_LOGPROBS: i64 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }
}

/// A chat request whose body is well-formed JSON with only known fields; its values are not
/// checked yet (that needs the model, see [`ChatRequest::validate`]).
#[derive(Clone, Debug)]
pub struct ChatRequest {
    pub model: String,
    body: Map<String, Value>,
}

/// A chat request, every field checked against its range and the model.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidChat {
    pub model: String,
    /// Messages with the roles templates know (`developer` becomes `system`); assistant
    /// messages keep their `tool_calls`, tool messages their `tool_call_id`.
    pub messages: Vec<ChatMessage>,
    pub params: GenerationParams,
    /// Tools the answer may (or must) call; `None` without tools or with `tool_choice: none`.
    pub tools: Option<ValidTools>,
    /// Whether the model's thinking is read out of its text (`reasoning_format`).
    pub reasoning: ReasoningFormat,
    /// Further chat-template variables (`chat_template_kwargs`).
    pub template_kwargs: Map<String, Value>,
    /// Most tokens of thinking (`thinking_token_budget`, `reasoning_budget_tokens`).
    pub thinking_budget: ThinkingBudget,
}

/// What a request says about its thinking budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThinkingBudget {
    /// Nothing: the server's default applies (`moat serve --reasoning-budget`).
    #[default]
    Unset,
    /// No limit, whatever the default (`reasoning_budget_tokens: -1`).
    Unlimited,
    /// At most this many tokens of thinking.
    Tokens(u32),
}

impl ThinkingBudget {
    /// The budget to apply, given the server's default (`None`: no limit).
    pub fn or_default(self, default: Option<u32>) -> Option<u32> {
        match self {
            Self::Unset => default,
            Self::Unlimited => None,
            Self::Tokens(tokens) => Some(tokens),
        }
    }
}

#[derive(Deserialize)]
struct ChatFields {
    messages: Option<Vec<Map<String, Value>>>,
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<Value>,
    reasoning_format: Option<Value>,
    reasoning_effort: Option<Value>,
    chat_template_kwargs: Option<Value>,
    thinking_token_budget: Option<Value>,
    reasoning_budget_tokens: Option<Value>,
}

/// `reasoning_effort`'s levels (OpenAI's).
const REASONING_EFFORTS: &[&str] = &["none", "minimal", "low", "medium", "high", "xhigh"];

/// `reasoning_effort`, as llama-server takes it: `none` turns thinking off through the
/// template's `enable_thinking`, another level reaches the template as `reasoning_effort`
/// (gpt-oss's template reads it). Variables set in `chat_template_kwargs` win.
fn apply_reasoning_effort(
    value: Option<&Value>,
    kwargs: &mut Map<String, Value>,
) -> Result<(), WireError> {
    const FIELD: &str = "reasoning_effort";
    let level = match value {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(level)) if REASONING_EFFORTS.contains(&level.as_str()) => level,
        Some(_) => {
            return Err(WireError::invalid(
                FIELD,
                format!("expected one of {}", REASONING_EFFORTS.join(", ")),
            ))
        }
    };
    if level == "none" {
        kwargs
            .entry("enable_thinking")
            .or_insert(Value::Bool(false));
    } else {
        kwargs
            .entry(FIELD)
            .or_insert_with(|| Value::String(level.clone()));
    }
    Ok(())
}

/// The thinking budget, under vLLM's name (`thinking_token_budget`: 0 or more) or
/// llama-server's (`reasoning_budget_tokens`: 0 or more, -1 for none). Both may be given if
/// they agree.
fn thinking_budget(
    vllm: Option<&Value>,
    llama_server: Option<&Value>,
) -> Result<ThinkingBudget, WireError> {
    let read = |field: &str, value: Option<&Value>, unlimited: Option<i64>| {
        let count = match value {
            None | Some(Value::Null) => return Ok(ThinkingBudget::Unset),
            Some(value) => value
                .as_i64()
                .ok_or_else(|| WireError::invalid(field, "expected an integer number of tokens"))?,
        };
        if Some(count) == unlimited {
            return Ok(ThinkingBudget::Unlimited);
        }
        let low = unlimited.map_or("0", |_| "-1 (no limit)");
        u32::try_from(count)
            .map(ThinkingBudget::Tokens)
            .map_err(|_| {
                WireError::invalid(
                    field,
                    format!("{count} is out of range: expected {low} to {}", u32::MAX),
                )
            })
    };
    let vllm_budget = read("thinking_token_budget", vllm, None)?;
    let llama_budget = read("reasoning_budget_tokens", llama_server, Some(-1))?;
    match (vllm_budget, llama_budget) {
        (ThinkingBudget::Unset, budget) | (budget, ThinkingBudget::Unset) => Ok(budget),
        (a, b) if a == b => Ok(a),
        (a, b) => {
            let say = |budget| match budget {
                ThinkingBudget::Tokens(tokens) => tokens.to_string(),
                _ => "-1 (no limit)".to_owned(),
            };
            Err(WireError::invalid(
                "reasoning_budget_tokens",
                format!(
                    "{} disagrees with thinking_token_budget ({}); send one of them",
                    say(b),
                    say(a)
                ),
            ))
        }
    }
}

/// Most `chat_template_kwargs` a request may give.
const MAX_TEMPLATE_KWARGS: usize = 32;
/// Template variables a request may not set: moat sets them.
const RESERVED_TEMPLATE_VARIABLES: &[&str] = &[
    "messages",
    "tools",
    "documents",
    "add_generation_prompt",
    "bos_token",
    "eos_token",
];

/// `chat_template_kwargs`: an object of variables for the chat template.
fn template_kwargs(value: Option<Value>) -> Result<Map<String, Value>, WireError> {
    const FIELD: &str = "chat_template_kwargs";
    let kwargs = match value {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(kwargs)) => kwargs,
        Some(_) => return Err(WireError::invalid(FIELD, "expected an object")),
    };
    if kwargs.len() > MAX_TEMPLATE_KWARGS {
        return Err(WireError::invalid(
            FIELD,
            format!(
                "{} variables; at most {MAX_TEMPLATE_KWARGS} are accepted",
                kwargs.len()
            ),
        ));
    }
    if let Some(name) = kwargs
        .keys()
        .find(|name| RESERVED_TEMPLATE_VARIABLES.contains(&name.as_str()))
    {
        return Err(WireError::invalid(
            format!("{FIELD}.{name}"),
            "moat sets this template variable itself",
        ));
    }
    Ok(kwargs)
}

/// Parses a chat body: JSON, known fields only (rejected ones named), a model named.
pub fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, WireError> {
    let mut body = object(body)?;
    screen(&mut body, CHAT_FIELDS)?;
    let model = model_name(&body)?;
    Ok(ChatRequest { model, body })
}

pub(crate) fn model_name(body: &Map<String, Value>) -> Result<String, WireError> {
    match body.get("model") {
        None | Some(Value::Null) => Err(WireError::Missing {
            param: "model".into(),
        }),
        Some(Value::String(name)) => Ok(name.clone()),
        Some(_) => Err(WireError::invalid("model", "expected a string")),
    }
}

impl ChatRequest {
    pub fn validate(self, limits: &ModelLimits) -> Result<ValidChat, WireError> {
        let fields: ChatFields = typed(&self.body)?;
        let sampling: SamplingFields = typed(&self.body)?;
        let max_tokens = match (fields.max_completion_tokens, fields.max_tokens) {
            (Some(a), Some(b)) if a != b => {
                return Err(WireError::invalid(
                    "max_tokens",
                    "max_tokens and max_completion_tokens disagree; give one",
                ))
            }
            (Some(a), _) => token_count("max_completion_tokens", Some(a), 1)?,
            (None, b) => token_count("max_tokens", b, 1)?,
        };
        let logprobs = match (fields.logprobs.unwrap_or(false), fields.top_logprobs) {
            (false, Some(_)) => {
                return Err(WireError::invalid(
                    "top_logprobs",
                    "top_logprobs needs logprobs: true",
                ))
            }
            (false, None) => None,
            (true, None) => Some(0),
            (true, Some(k)) if (0..=MAX_TOP_LOGPROBS).contains(&k) => Some(k as u8),
            (true, Some(k)) => {
                return Err(WireError::invalid(
                    "top_logprobs",
                    format!("{k} is out of range: expected 0 to {MAX_TOP_LOGPROBS}"),
                ))
            }
        };
        let wire_messages = fields.messages.ok_or_else(|| WireError::Missing {
            param: "messages".into(),
        })?;
        let mut messages = wire_messages
            .iter()
            .enumerate()
            .map(|(index, message)| parse_message(index, message))
            .collect::<Result<Vec<_>, _>>()?;
        if messages.is_empty() {
            return Err(WireError::invalid(
                "messages",
                "at least one message is needed",
            ));
        }
        answered_calls_only(&messages)?;
        if let Some(system) = &limits.system_prompt {
            if messages[0].0 != Role::System {
                messages.insert(
                    0,
                    (Role::System, ChatMessage::text("system", system.clone())),
                );
            }
        }
        let messages = messages.into_iter().map(|(_, message)| message).collect();
        let mut params = sampling.validate(limits, max_tokens, logprobs)?;
        let tools = tools::parse(
            fields.tools.as_ref(),
            fields.tool_choice.as_ref(),
            fields.parallel_tool_calls.as_ref(),
        )?;
        if let Some(tools) = &tools {
            if params.grammar.is_some() {
                let field = params.grammar_field;
                return Err(WireError::Unsupported {
                    param: field.into(),
                    reason: format!(
                        "{field} cannot be combined with tools: its grammar would keep the model \
                         from writing a call"
                    ),
                });
            }
            params.grammar = tools.grammar();
            params.grammar_field = "tools";
        }
        let mut template_kwargs = template_kwargs(fields.chat_template_kwargs)?;
        apply_reasoning_effort(fields.reasoning_effort.as_ref(), &mut template_kwargs)?;
        Ok(ValidChat {
            model: self.model,
            messages,
            params,
            tools,
            reasoning: ReasoningFormat::parse(fields.reasoning_format.as_ref())?,
            template_kwargs,
            thinking_budget: thinking_budget(
                fields.thinking_token_budget.as_ref(),
                fields.reasoning_budget_tokens.as_ref(),
            )?,
        })
    }
}

fn parse_message(
    index: usize,
    message: &Map<String, Value>,
) -> Result<(Role, ChatMessage), WireError> {
    let at = |field: &str| format!("messages[{index}].{field}");
    let role = match message.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") => Role::Tool,
        Some("function") => {
            return Err(WireError::Unsupported {
                param: at("role"),
                reason: "'function' messages are OpenAI's deprecated form; send 'tool' messages"
                    .into(),
            })
        }
        Some(other) => {
            return Err(WireError::invalid(
                at("role"),
                format!("'{other}' is not one of system, developer, user, assistant, tool"),
            ))
        }
        None => return Err(WireError::Missing { param: at("role") }),
    };
    let mut tool_calls = None;
    let mut tool_call_id = None;
    let mut reasoning = None;
    for (key, value) in message {
        match key.as_str() {
            "role" | "content" | "name" | "refusal" => {}
            // A reasoning model's earlier thinking, for templates that show it (Qwen3's).
            "reasoning_content" if role == Role::Assistant => match value {
                Value::Null => {}
                Value::String(text) => reasoning = Some(text.clone()),
                _ => return Err(WireError::invalid(at(key), "expected a string")),
            },
            "tool_calls" if role == Role::Assistant => {
                tool_calls = tool_calls_of(value, &at(key))?;
            }
            "tool_call_id" if role == Role::Tool => match value {
                Value::String(id) => tool_call_id = Some(id.clone()),
                _ => return Err(WireError::invalid(at(key), "expected a string")),
            },
            "tool_calls" | "tool_call_id" | "function_call" | "audio" => {
                let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
                if !empty {
                    return Err(WireError::invalid(
                        at(key),
                        format!("not expected on a '{}' message", role.as_str()),
                    ));
                }
            }
            _ => return Err(WireError::UnknownField { param: at(key) }),
        }
    }
    if role == Role::Tool && tool_call_id.is_none() {
        return Err(WireError::Missing {
            param: at("tool_call_id"),
        });
    }
    let content = match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        None | Some(Value::Null) if role == Role::Assistant => String::new(),
        None | Some(Value::Null) => {
            return Err(WireError::Missing {
                param: at("content"),
            })
        }
        Some(Value::Array(parts)) => text_parts(index, parts)?,
        Some(_) => {
            return Err(WireError::invalid(
                at("content"),
                "expected a string or a list of content parts",
            ))
        }
    };
    let mut parsed = ChatMessage::text(role.as_str(), content);
    parsed.tool_calls = tool_calls;
    parsed.tool_call_id = tool_call_id;
    if let Some(reasoning) = reasoning {
        parsed
            .extra
            .insert(REASONING_CONTENT.into(), Value::String(reasoning));
    }
    Ok((role, parsed))
}

/// Each tool message answers a call an earlier assistant message made, as OpenAI requires.
fn answered_calls_only(messages: &[(Role, ChatMessage)]) -> Result<(), WireError> {
    // A set: a long history (tens of thousands of calls) is checked in linear time.
    let mut calls: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (index, (role, message)) in messages.iter().enumerate() {
        if let Some(Value::Array(made)) = &message.tool_calls {
            calls.extend(made.iter().filter_map(|call| call.get("id")?.as_str()));
        }
        if *role == Role::Tool {
            let id = message.tool_call_id.as_deref().unwrap_or_default();
            if !calls.contains(id) {
                return Err(WireError::invalid(
                    format!("messages[{index}].tool_call_id"),
                    format!("no earlier assistant message made a tool call with id '{id}'"),
                ));
            }
        }
    }
    Ok(())
}

/// An assistant message's `tool_calls`: each `{"id", "type": "function", "function": {"name",
/// "arguments"}}`, kept as sent (the template reads them; `arguments` may be JSON text).
fn tool_calls_of(value: &Value, at: &str) -> Result<Option<Value>, WireError> {
    let calls = match value {
        Value::Null => return Ok(None),
        Value::Array(calls) if calls.is_empty() => return Ok(None),
        Value::Array(calls) => calls,
        _ => return Err(WireError::invalid(at, "expected an array of tool calls")),
    };
    for (index, call) in calls.iter().enumerate() {
        let name = call
            .get("function")
            .and_then(|function| function.get("name"))
            .and_then(Value::as_str);
        if name.is_none() {
            return Err(WireError::Missing {
                param: format!("{at}[{index}].function.name"),
            });
        }
        let arguments = call
            .get("function")
            .and_then(|function| function.get("arguments"));
        if !matches!(arguments, None | Some(Value::String(_) | Value::Object(_))) {
            return Err(WireError::invalid(
                format!("{at}[{index}].function.arguments"),
                "expected JSON text",
            ));
        }
    }
    Ok(Some(value.clone()))
}

/// Content given as parts: text parts are joined with newlines; images, audio and files are
/// refused, since the models moat runs read text only.
fn text_parts(index: usize, parts: &[Value]) -> Result<String, WireError> {
    let mut texts = Vec::with_capacity(parts.len());
    for (part_index, part) in parts.iter().enumerate() {
        let at = format!("messages[{index}].content[{part_index}]");
        match part.get("type").and_then(Value::as_str) {
            Some("text") => match part.get("text").and_then(Value::as_str) {
                Some(text) => texts.push(text),
                None => {
                    return Err(WireError::Missing {
                        param: format!("{at}.text"),
                    })
                }
            },
            Some(kind) => {
                return Err(WireError::Unsupported {
                    param: format!("{at}.type"),
                    reason: format!(
                        "'{kind}' content is not supported: moat's models take text only"
                    ),
                })
            }
            None => {
                return Err(WireError::Missing {
                    param: format!("{at}.type"),
                })
            }
        }
    }
    Ok(texts.join("\n"))
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatResponseMessage {
    pub role: &'static str,
    /// `null` when the answer is only tool calls, as in OpenAI's.
    pub content: Option<String>,
    /// A reasoning model's thinking, read out of its text (see `reasoning_format`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    pub refusal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: ChatResponseMessage,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: &'static str,
}

/// A whole (not streamed) chat answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: WireUsage,
}

impl ChatCompletion {
    pub fn new(ids: &ResponseIds, choices: Vec<ChatChoice>, usage: WireUsage) -> Self {
        Self {
            id: ids.id.clone(),
            object: "chat.completion",
            created: ids.created,
            model: ids.model.clone(),
            choices,
            usage,
        }
    }
}

impl ChatChoice {
    pub fn new(
        index: u32,
        content: String,
        logprobs: Option<ChatLogprobs>,
        finish_reason: &'static str,
    ) -> Self {
        Self {
            index,
            message: ChatResponseMessage {
                role: "assistant",
                content: Some(content),
                reasoning_content: None,
                refusal: None,
                tool_calls: None,
            },
            logprobs,
            finish_reason,
        }
    }

    /// Adds the thinking read out of the answer's text.
    pub fn with_reasoning(mut self, reasoning: Option<String>) -> Self {
        self.message.reasoning_content = reasoning;
        self
    }

    /// Adds the answer's tool calls; content that is empty then reads `null`.
    pub fn with_tool_calls(mut self, calls: Vec<ToolCall>) -> Self {
        if calls.is_empty() {
            return self;
        }
        if self
            .message
            .content
            .as_deref()
            .is_some_and(|text| text.trim().is_empty())
        {
            self.message.content = None;
        }
        self.message.tool_calls = Some(calls);
        self
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChatDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatChunkChoice {
    pub index: u32,
    pub delta: ChatDelta,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// One event of a streamed chat answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<WireUsage>,
}

impl ChatCompletionChunk {
    fn new(ids: &ResponseIds, choices: Vec<ChatChunkChoice>, usage: Option<WireUsage>) -> Self {
        Self {
            id: ids.id.clone(),
            object: "chat.completion.chunk",
            created: ids.created,
            model: ids.model.clone(),
            choices,
            usage,
        }
    }

    fn one(ids: &ResponseIds, choice: ChatChunkChoice) -> Self {
        Self::new(ids, vec![choice], None)
    }

    /// The first chunk of a choice: its role, no content yet.
    pub fn role(ids: &ResponseIds, index: u32) -> Self {
        Self::one(
            ids,
            ChatChunkChoice {
                index,
                delta: ChatDelta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                    ..ChatDelta::default()
                },
                logprobs: None,
                finish_reason: None,
            },
        )
    }

    /// A chunk of one choice with `delta`.
    fn delta(
        ids: &ResponseIds,
        index: u32,
        delta: ChatDelta,
        logprobs: Option<ChatLogprobs>,
    ) -> Self {
        Self::one(
            ids,
            ChatChunkChoice {
                index,
                delta,
                logprobs,
                finish_reason: None,
            },
        )
    }

    pub fn content(
        ids: &ResponseIds,
        index: u32,
        text: String,
        logprobs: Option<ChatLogprobs>,
    ) -> Self {
        let delta = ChatDelta {
            content: Some(text),
            ..ChatDelta::default()
        };
        Self::delta(ids, index, delta, logprobs)
    }

    /// A piece of a reasoning model's thinking and (where the thinking ended within it) of
    /// its answer.
    pub fn reasoning(
        ids: &ResponseIds,
        index: u32,
        reasoning: String,
        content: Option<String>,
        logprobs: Option<ChatLogprobs>,
    ) -> Self {
        let delta = ChatDelta {
            reasoning_content: Some(reasoning),
            content,
            ..ChatDelta::default()
        };
        Self::delta(ids, index, delta, logprobs)
    }

    /// A choice's tool calls, whole, each with its `index` among them.
    pub fn tool_calls(ids: &ResponseIds, index: u32, calls: Vec<ToolCall>) -> Self {
        let delta = ChatDelta {
            tool_calls: Some(calls),
            ..ChatDelta::default()
        };
        Self::delta(ids, index, delta, None)
    }

    pub fn finish(ids: &ResponseIds, index: u32, finish_reason: &'static str) -> Self {
        Self::one(
            ids,
            ChatChunkChoice {
                index,
                delta: ChatDelta::default(),
                logprobs: None,
                finish_reason: Some(finish_reason),
            },
        )
    }

    /// The last chunk when `stream_options.include_usage` is set: usage, no choices.
    pub fn usage(ids: &ResponseIds, usage: WireUsage) -> Self {
        Self::new(ids, Vec::new(), Some(usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ModelLimits {
        ModelLimits {
            n_vocab: 100,
            n_ctx: 64,
            ..ModelLimits::default()
        }
    }

    fn validate(json: &str) -> Result<ValidChat, WireError> {
        parse_chat_request(json.as_bytes())?.validate(&limits())
    }

    #[test]
    fn a_thinking_budget_is_read_under_either_name() {
        let budget = |fields: &str| {
            let body =
                format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}]{fields}}}"#);
            validate(&body).map(|chat| chat.thinking_budget)
        };
        use ThinkingBudget::{Tokens, Unlimited, Unset};
        assert_eq!(budget("").unwrap(), Unset);
        assert_eq!(budget(r#","thinking_token_budget":null"#).unwrap(), Unset);
        assert_eq!(budget(r#","thinking_token_budget":0"#).unwrap(), Tokens(0));
        assert_eq!(
            budget(r#","reasoning_budget_tokens":64"#).unwrap(),
            Tokens(64)
        );
        assert_eq!(
            budget(r#","reasoning_budget_tokens":-1"#).unwrap(),
            Unlimited
        );
        assert_eq!(
            budget(r#","thinking_token_budget":8,"reasoning_budget_tokens":8"#).unwrap(),
            Tokens(8)
        );
        // What a request says wins over the server's default; -1 lifts it.
        assert_eq!(Unset.or_default(Some(5)), Some(5));
        assert_eq!(Unset.or_default(None), None);
        assert_eq!(Unlimited.or_default(Some(5)), None);
        assert_eq!(Tokens(0).or_default(Some(5)), Some(0));
        let refused = [
            (r#","thinking_token_budget":-1"#, "thinking_token_budget"),
            (r#","thinking_token_budget":1.5"#, "thinking_token_budget"),
            (r#","thinking_token_budget":"8""#, "thinking_token_budget"),
            (
                r#","reasoning_budget_tokens":-2"#,
                "reasoning_budget_tokens",
            ),
            (
                r#","reasoning_budget_tokens":4294967296"#,
                "reasoning_budget_tokens",
            ),
            (
                r#","thinking_token_budget":8,"reasoning_budget_tokens":9"#,
                "reasoning_budget_tokens",
            ),
            (
                r#","thinking_token_budget":8,"reasoning_budget_tokens":-1"#,
                "reasoning_budget_tokens",
            ),
        ];
        for (fields, param) in refused {
            assert_eq!(budget(fields).unwrap_err().param(), Some(param), "{fields}");
        }
    }

    #[test]
    fn reasoning_fields_are_read_and_checked() {
        let chat = validate(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],
                "reasoning_format":"none","chat_template_kwargs":{"enable_thinking":false}}"#,
        )
        .unwrap();
        assert_eq!(chat.reasoning, ReasoningFormat::Inline);
        assert_eq!(chat.template_kwargs["enable_thinking"], Value::Bool(false));
        let chat =
            validate(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(chat.reasoning, ReasoningFormat::Auto);
        assert!(chat.template_kwargs.is_empty());
        let many: Map<String, Value> = (0..=MAX_TEMPLATE_KWARGS)
            .map(|i| (format!("v{i}"), Value::from(i)))
            .collect();
        let cases = [
            (
                r#""chat_template_kwargs":[1]"#.to_owned(),
                "chat_template_kwargs",
            ),
            (
                r#""chat_template_kwargs":{"messages":[]}"#.to_owned(),
                "chat_template_kwargs.messages",
            ),
            (
                format!(r#""chat_template_kwargs":{}"#, Value::Object(many)),
                "chat_template_kwargs",
            ),
            (r#""reasoning_format":"r1""#.to_owned(), "reasoning_format"),
        ];
        for (field, param) in cases {
            let body =
                format!(r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],{field}}}"#);
            assert_eq!(validate(&body).unwrap_err().param(), Some(param), "{field}");
        }
    }

    #[test]
    fn reasoning_effort_reaches_the_template_and_none_turns_thinking_off() {
        let with = |extra: &str| {
            validate(&format!(
                r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],{extra}}}"#
            ))
        };
        let low = with(r#""reasoning_effort":"low""#).unwrap();
        assert_eq!(low.template_kwargs["reasoning_effort"], "low");
        let none = with(r#""reasoning_effort":"none""#).unwrap();
        assert_eq!(none.template_kwargs["enable_thinking"], false);
        assert!(!none.template_kwargs.contains_key("reasoning_effort"));
        let kwargs_win =
            with(r#""reasoning_effort":"none","chat_template_kwargs":{"enable_thinking":true}"#)
                .unwrap();
        assert_eq!(kwargs_win.template_kwargs["enable_thinking"], true);
        for bad in [r#""reasoning_effort":"max""#, r#""reasoning_effort":2"#] {
            assert_eq!(with(bad).unwrap_err().param(), Some("reasoning_effort"));
        }
    }

    #[test]
    fn an_assistant_turn_keeps_its_reasoning_for_the_template() {
        let chat = validate(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"},
                {"role":"assistant","content":"Hello.","reasoning_content":"Greet back."},
                {"role":"user","content":"again"}]}"#,
        )
        .unwrap();
        assert_eq!(chat.messages[1].extra["reasoning_content"], "Greet back.");
        let user =
            r#"{"model":"m","messages":[{"role":"user","content":"hi","reasoning_content":"x"}]}"#;
        assert_eq!(
            validate(user).unwrap_err().param(),
            Some("messages[0].reasoning_content")
        );
        let number = r#"{"model":"m","messages":[{"role":"assistant","content":"a","reasoning_content":1}]}"#;
        assert_eq!(
            validate(number).unwrap_err().param(),
            Some("messages[0].reasoning_content")
        );
    }

    #[test]
    fn messages_become_roles_and_text() {
        let chat = validate(
            r#"{"model":"m","messages":[
                {"role":"developer","content":"be brief"},
                {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"name":"x"},
                {"role":"assistant","content":null}]}"#,
        )
        .unwrap();
        assert_eq!(
            chat.messages,
            [
                ChatMessage::text("system", "be brief"),
                ChatMessage::text("user", "a\nb"),
                ChatMessage::text("assistant", ""),
            ]
        );
        assert_eq!(chat.params.logprobs, None);
        assert_eq!(chat.params.n, 1);
    }

    #[test]
    fn the_manifest_system_prompt_comes_first_unless_the_chat_has_one() {
        let mut limits = limits();
        limits.system_prompt = Some("sys".into());
        let chat =
            parse_chat_request(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
                .unwrap()
                .validate(&limits)
                .unwrap();
        assert_eq!(chat.messages[0], ChatMessage::text("system", "sys"));
        assert_eq!(chat.messages.len(), 2);
    }

    fn param_of(json: &str) -> String {
        validate(json)
            .unwrap_err()
            .param()
            .unwrap_or("-")
            .to_string()
    }

    #[test]
    fn bad_requests_name_the_field() {
        let user = r#"[{"role":"user","content":"hi"}]"#;
        assert_eq!(param_of(r#"{"messages":[]}"#), "model");
        assert_eq!(param_of(r#"{"model":"m"}"#), "messages");
        assert_eq!(param_of(r#"{"model":"m","messages":[]}"#), "messages");
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#),
            "messages[0].tool_call_id"
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"function","content":"x"}]}"#),
            "messages[0].role"
        );
        assert_eq!(
            param_of(
                r#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"c9","content":"x"}]}"#
            ),
            "messages[1].tool_call_id"
        );
        let answered = validate(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"},
                {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
                {"role":"tool","tool_call_id":"c1","content":"22"}]}"#,
        )
        .unwrap();
        assert_eq!(answered.messages[2].role, "tool");
        assert_eq!(answered.messages[2].tool_call_id.as_deref(), Some("c1"));
        assert!(answered.messages[1].tool_calls.is_some());
        assert_eq!(
            param_of(
                r#"{"model":"m","messages":[{"role":"user","content":"x","tool_call_id":"c"}]}"#
            ),
            "messages[0].tool_call_id"
        );
        assert_eq!(
            param_of(
                r#"{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"arguments":"{}"}}]}]}"#
            ),
            "messages[0].tool_calls[0].function.name"
        );
        assert_eq!(
            param_of(&format!(
                r#"{{"model":"m","messages":{user},"tools":[{{"type":"function","function":{{"name":"f"}}}}],"response_format":{{"type":"json_object"}}}}"#
            )),
            "response_format"
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"user"}]}"#),
            "messages[0].content"
        );
        assert_eq!(
            param_of(
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#
            ),
            "messages[0].content[0].type"
        );
        assert_eq!(
            param_of(&format!(
                r#"{{"model":"m","messages":{user},"temperature":"hot"}}"#
            )),
            "temperature"
        );
        assert_eq!(
            param_of(&format!(
                r#"{{"model":"m","messages":{user},"top_logprobs":2}}"#
            )),
            "top_logprobs"
        );
        assert_eq!(
            param_of(&format!(
                r#"{{"model":"m","messages":{user},"logprobs":true,"top_logprobs":21}}"#
            )),
            "top_logprobs"
        );
        assert_eq!(
            param_of(&format!(
                r#"{{"model":"m","messages":{user},"max_tokens":0}}"#
            )),
            "max_tokens"
        );
        assert_eq!(
            param_of(&format!(
                r#"{{"model":"m","messages":{user},"tools":[{{"type":"function"}}]}}"#
            )),
            "tools[0].function"
        );
        assert_eq!(
            param_of(&format!(
                r#"{{"model":"m","messages":{user},"response_format":{{"type":"yaml"}}}}"#
            )),
            "response_format.type"
        );
        assert!(matches!(validate("{"), Err(WireError::Malformed { .. })));
        assert!(matches!(validate("[1]"), Err(WireError::Malformed { .. })));
    }

    #[test]
    fn chunks_serialize_like_openai() {
        let ids = ResponseIds {
            id: "chatcmpl-1".into(),
            created: 5,
            model: "m".into(),
        };
        assert_eq!(
            serde_json::to_string(&ChatCompletionChunk::role(&ids, 0)).unwrap(),
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#
        );
        let usage = WireUsage::default();
        assert_eq!(
            serde_json::to_string(&ChatCompletionChunk::usage(&ids, usage)).unwrap(),
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":5,"model":"m","choices":[],"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0,"prompt_tokens_details":{"cached_tokens":0}}}"#
        );
    }
}
