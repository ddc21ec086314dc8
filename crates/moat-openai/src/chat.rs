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
use crate::{GenerationParams, ModelLimits, WireError};

/// Most alternatives per token chat may ask for (OpenAI's limit).
const MAX_TOP_LOGPROBS: i64 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
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
    /// Text messages with the roles templates know: `developer` becomes `system`.
    pub messages: Vec<ChatMessage>,
    pub params: GenerationParams,
}

#[derive(Deserialize)]
struct ChatFields {
    messages: Option<Vec<Map<String, Value>>>,
    logprobs: Option<bool>,
    top_logprobs: Option<i64>,
    max_tokens: Option<i64>,
    max_completion_tokens: Option<i64>,
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
        if let Some(system) = &limits.system_prompt {
            if messages[0].0 != Role::System {
                messages.insert(0, (Role::System, system.clone()));
            }
        }
        let messages = messages
            .into_iter()
            .map(|(role, content)| ChatMessage::text(role.as_str(), content))
            .collect();
        Ok(ValidChat {
            model: self.model,
            messages,
            params: sampling.validate(limits, max_tokens, logprobs)?,
        })
    }
}

const TOOLS_LATER: &str = "tool calling is not supported yet";

fn parse_message(index: usize, message: &Map<String, Value>) -> Result<(Role, String), WireError> {
    let at = |field: &str| format!("messages[{index}].{field}");
    let role = match message.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some(role @ ("tool" | "function")) => {
            return Err(WireError::Unsupported {
                param: at("role"),
                reason: format!("'{role}' messages need tool calling, which is not supported yet"),
            })
        }
        Some(other) => {
            return Err(WireError::invalid(
                at("role"),
                format!("'{other}' is not one of system, developer, user, assistant"),
            ))
        }
        None => return Err(WireError::Missing { param: at("role") }),
    };
    for (key, value) in message {
        match key.as_str() {
            "role" | "content" | "name" | "refusal" => {}
            "tool_calls" | "tool_call_id" | "function_call" | "audio" => {
                let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
                if !empty {
                    return Err(WireError::Unsupported {
                        param: at(key),
                        reason: TOOLS_LATER.into(),
                    });
                }
            }
            _ => return Err(WireError::UnknownField { param: at(key) }),
        }
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
    Ok((role, content))
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
    pub content: String,
    pub refusal: Option<String>,
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
                content,
                refusal: None,
            },
            logprobs,
            finish_reason,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChatDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
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
                },
                logprobs: None,
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
        Self::one(
            ids,
            ChatChunkChoice {
                index,
                delta: ChatDelta {
                    role: None,
                    content: Some(text),
                },
                logprobs,
                finish_reason: None,
            },
        )
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
            "messages[0].role"
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
            "tools"
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
