//! Chat templates: the Jinja source a model ships in its GGUF (`tokenizer.chat_template`) or
//! its manifest, compiled once and rendered the way Hugging Face transformers'
//! `apply_chat_template` renders it: `trim_blocks` and `lstrip_blocks`, loop controls,
//! `raise_exception`, `strftime_now`, HF's `tojson` (no HTML escaping, `ensure_ascii=False`,
//! `indent`/`separators`/`sort_keys`), Python string and dict methods, Python's `str()` for
//! printed values, and `messages`, `tools`, `documents`, `add_generation_prompt`, `bos_token`
//! and `eos_token` in the context.
//!
//! On top of HF it normalises OpenAI-shaped messages the way vLLM and llama.cpp do, because a
//! template written for HF's Python dicts would otherwise choke on them: content given as an
//! array of text parts is joined with `"\n"` unless the template handles part lists itself
//! (found by probing it once at compile time), and a tool call's `function.arguments` JSON
//! string is parsed into the object the templates expect.
//!
//! It knows nothing of GGUF files, manifests, tokenizers or HTTP: callers hand it the
//! template source and the special-token strings, and map [`TemplateError`] to a 400.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use minijinja::value::{from_args, Kwargs, Serde, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, Value};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// The name the template is registered under inside its environment.
mod python;
#[cfg(test)]
use python::python_float;
use python::{python_formatter, python_str, tojson_filter};

const TEMPLATE_NAME: &str = "chat_template";

/// A string no template will produce by itself, used to see where probe content lands.
const PROBE_NEEDLE: &str = "moat-content-probe-5d1c";

/// Why a chat template could not be found, compiled or rendered. Every message is written for
/// the body of an HTTP 400 answer to a chat request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Neither the GGUF nor the manifest supplies a chat template.
    #[error(
        "this model has no chat template: its GGUF file has no tokenizer.chat_template and its \
         manifest sets none; use the completions endpoint with a raw prompt, or set a chat \
         template in the model's manifest"
    )]
    Missing,
    /// The template is not valid Jinja.
    #[error("the model's chat template does not compile{}: {message}", at_line(*line))]
    Syntax {
        line: Option<usize>,
        message: String,
    },
    /// The template failed while rendering these messages.
    #[error("the model's chat template failed to render the messages{}: {message}", at_line(*line))]
    Render {
        line: Option<usize>,
        message: String,
    },
    /// The template called `raise_exception(message)`, usually to reject the conversation's
    /// shape (roles that do not alternate, a system message in the wrong place).
    #[error("the model's chat template rejected the messages: {0}")]
    Raised(String),
    /// A content part this template cannot take, such as an image for a text-only template.
    #[error(
        "message {message_index} has a content part of type {part_type:?}, but this model's chat \
         template only takes text"
    )]
    UnsupportedContent {
        message_index: usize,
        part_type: String,
    },
}

fn at_line(line: Option<usize>) -> String {
    line.map(|line| format!(" (line {line})"))
        .unwrap_or_default()
}

/// One chat message, shaped like OpenAI's and Hugging Face's. It deserializes from an OpenAI
/// request as is; fields moat does not know travel in `extra` and reach the template unchanged
/// (some templates read `reasoning_content` or `thinking`).
///
/// In the template `content` is always present (`none` when absent or null), as HF requires
/// every message to carry it; the other optional fields are absent when `None`, so that
/// `message.tool_calls is defined` behaves as it does for a Python dict without the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

impl ChatMessage {
    /// A message with plain text content and nothing else.
    pub fn text(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: Some(MessageContent::Text(content.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            extra: Map::new(),
        }
    }
}

/// A message's content: a string, or OpenAI's array of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of an array content, `{"type": "text", "text": "..."}` or any other type, whose
/// fields travel in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

impl ContentPart {
    /// A `{"type": "text"}` part.
    pub fn text(text: impl Into<String>) -> ContentPart {
        ContentPart {
            kind: "text".into(),
            text: Some(text.into()),
            extra: Map::new(),
        }
    }
}

/// What a render takes besides the messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderOptions {
    /// End with the header of an assistant turn, for the model to complete.
    pub add_generation_prompt: bool,
    /// The tool definitions, in OpenAI's shape (`[{"type": "function", "function": {...}}]`);
    /// `None` renders as `tools = none`, as in HF.
    pub tools: Option<Json>,
    /// Further template variables, such as `enable_thinking` or `date_string`. They override
    /// `bos_token`/`eos_token` but not `messages`, `tools`, `documents` or
    /// `add_generation_prompt`.
    pub extra: Map<String, Json>,
}

/// How message content must be shaped for a template, decided once by probing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentShape {
    /// The template takes strings and part arrays alike: pass content through as given.
    AsGiven,
    /// The template only takes strings: join the text parts of an array with `"\n"`.
    Text,
    /// The template only takes part arrays: wrap a string in a single text part.
    Parts,
}

/// A compiled chat template, cheap to share between threads and to render concurrently.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The template as given.
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    content_shape: ContentShape,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("content_shape", &self.content_shape)
            .finish_non_exhaustive()
    }
}

/// The template to use for a model: the manifest's override if it sets one, else the GGUF's
/// `tokenizer.chat_template`; an empty or blank template counts as none.
pub fn select_template_source<'a>(
    manifest_override: Option<&'a str>,
    gguf_template: Option<&'a str>,
) -> Result<&'a str, TemplateError> {
    let usable = |source: &&str| !source.trim().is_empty();
    manifest_override
        .filter(usable)
        .or(gguf_template.filter(usable))
        .ok_or(TemplateError::Missing)
}

impl ChatTemplate {
    /// Compiles `source`. The token strings become `bos_token` and `eos_token` in the
    /// template's context; `None` leaves them undefined.
    pub fn new(
        source: &str,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<ChatTemplate, TemplateError> {
        let mut env = hf_environment();
        let given = source.to_owned();
        let source = rewrite_generation_tags(source).into_owned();
        env.add_template_owned(TEMPLATE_NAME, source)
            .map_err(|err| TemplateError::Syntax {
                line: err.line(),
                message: error_message(&err),
            })?;
        let mut template = ChatTemplate {
            env,
            source: given,
            bos_token,
            eos_token,
            content_shape: ContentShape::AsGiven,
        };
        template.content_shape = template.probe_content_shape();
        Ok(template)
    }

    /// The template's text, as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the conversation to the prompt text the model sees.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        options: &RenderOptions,
    ) -> Result<String, TemplateError> {
        let messages = messages
            .iter()
            .enumerate()
            .map(|(index, message)| self.message_json(index, message))
            .collect::<Result<Vec<_>, _>>()?;
        self.render_json(Json::Array(messages), options)
    }

    fn render_json(
        &self,
        messages: Json,
        options: &RenderOptions,
    ) -> Result<String, TemplateError> {
        let mut context: BTreeMap<String, Value> = BTreeMap::new();
        let tokens = [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
        ];
        for (name, token) in tokens {
            if let Some(token) = token {
                context.insert(name.into(), Value::from(token.as_str()));
            }
        }
        for (key, value) in &options.extra {
            context.insert(key.clone(), Value::from(Serde(value)));
        }
        context.insert("messages".into(), Value::from(Serde(&messages)));
        context.insert("tools".into(), Value::from(Serde(&options.tools)));
        context.insert("documents".into(), Value::from(()));
        context.insert(
            "add_generation_prompt".into(),
            Value::from(options.add_generation_prompt),
        );
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|err| render_error(&err))?;
        template
            .render(Value::from(context))
            .map_err(|err| render_error(&err))
    }

    /// One message as the JSON object the template sees.
    fn message_json(&self, index: usize, message: &ChatMessage) -> Result<Json, TemplateError> {
        let mut json = serde_json::to_value(message).map_err(|err| TemplateError::Render {
            line: None,
            message: format!("message {index} cannot be represented: {err}"),
        })?;
        if let Some(object) = json.as_object_mut() {
            let content = shape_content(index, message.content.as_ref(), self.content_shape)?;
            object.insert("content".into(), content);
            if let Some(calls) = object.get_mut("tool_calls") {
                parse_tool_call_arguments(calls);
            }
        }
        Ok(json)
    }

    /// Renders one user message once with string content and once with a text part, and
    /// decides from where the probe text lands whether the template handles part arrays.
    /// A list printed as a value (`[{'type': 'text', ...}]`) does not count as handling it.
    fn probe_content_shape(&self) -> ContentShape {
        let probe = |content: Json| {
            let messages = serde_json::json!([{ "role": "user", "content": content }]);
            let options = RenderOptions {
                add_generation_prompt: true,
                ..RenderOptions::default()
            };
            self.render_json(messages, &options).ok()
        };
        let takes_text = probe(Json::from(PROBE_NEEDLE)).is_some_and(|s| s.contains(PROBE_NEEDLE));
        let takes_parts = probe(serde_json::json!([{ "type": "text", "text": PROBE_NEEDLE }]))
            .is_some_and(|s| {
                s.contains(PROBE_NEEDLE) && !s.contains("'type'") && !s.contains("\"type\"")
            });
        match (takes_text, takes_parts) {
            (true, true) => ContentShape::AsGiven,
            (false, true) => ContentShape::Parts,
            _ => ContentShape::Text,
        }
    }
}

/// The content value a template gets, shaped the way it can take it.
fn shape_content(
    index: usize,
    content: Option<&MessageContent>,
    shape: ContentShape,
) -> Result<Json, TemplateError> {
    Ok(match (content, shape) {
        (None, _) => Json::Null,
        (Some(MessageContent::Text(text)), ContentShape::Parts) => {
            to_json(&vec![ContentPart::text(text.clone())])
        }
        (Some(MessageContent::Parts(parts)), ContentShape::Text) => {
            Json::String(join_text_parts(index, parts)?)
        }
        (Some(content), _) => to_json(content),
    })
}

/// Serializes the message types above, whose serialization cannot fail (string keys only).
fn to_json<T: Serialize>(value: &T) -> Json {
    serde_json::to_value(value).unwrap_or(Json::Null)
}

/// The text of an array content for a template that only takes strings: the text parts joined
/// with `"\n"`, as vLLM and llama.cpp do. Any other part is an error rather than silently lost.
fn join_text_parts(index: usize, parts: &[ContentPart]) -> Result<String, TemplateError> {
    let mut texts = Vec::with_capacity(parts.len());
    for part in parts {
        if part.kind != "text" {
            return Err(TemplateError::UnsupportedContent {
                message_index: index,
                part_type: part.kind.clone(),
            });
        }
        texts.push(part.text.as_deref().unwrap_or_default());
    }
    Ok(texts.join("\n"))
}

/// OpenAI sends a tool call's arguments as a JSON string, while templates written for HF
/// expect the object (Qwen's `tool_call.arguments | tojson` would otherwise print a quoted,
/// escaped string). Arguments that are not a JSON object are left as they are.
fn parse_tool_call_arguments(calls: &mut Json) {
    let Some(calls) = calls.as_array_mut() else {
        return;
    };
    for call in calls {
        let Some(arguments) = call.pointer_mut("/function/arguments") else {
            continue;
        };
        if let Some(Ok(parsed @ Json::Object(_))) = arguments.as_str().map(serde_json::from_str) {
            *arguments = parsed;
        }
    }
}

/// HF's environment: `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
/// extensions=[loopcontrols])` with its `tojson`, `raise_exception` and `strftime_now`, plus
/// Python's methods on strings, lists and dicts and Python's `str()` for printed values.
fn hf_environment() -> Environment<'static> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build();
    // The default delimiters always build; keep minijinja's defaults if that ever changes.
    if let Ok(syntax) = syntax {
        env.set_syntax(syntax);
    }
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(python_formatter);
    env.add_filter("tojson", tojson_filter);
    env.add_filter("string", |value: &Value| python_str(value));
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env
}

/// Marks an error as the template's own `raise_exception`, so that it is reported verbatim.
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn raise_exception(message: Value) -> Result<Value, Error> {
    let message = python_str(&message);
    Err(Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

fn strftime_now(format: &str) -> Result<String, Error> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    let invalid = || {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("bad strftime format {format:?}"),
        )
    };
    if items.iter().any(|item| matches!(item, Item::Error)) {
        return Err(invalid());
    }
    let mut out = String::new();
    write!(
        out,
        "{}",
        chrono::Local::now().format_with_items(items.iter())
    )
    .map_err(|_| invalid())?;
    Ok(out)
}

fn error_message(err: &Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}

fn render_error(err: &Error) -> TemplateError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(Raised(message)) = current.downcast_ref::<Raised>() {
            return TemplateError::Raised(message.clone());
        }
        source = current.source();
    }
    TemplateError::Render {
        line: err.line(),
        message: error_message(err),
    }
}

/// Rewrites HF's `{% generation %}`/`{% endgeneration %}` tags (which only mark assistant
/// text for training masks) into `{% if true %}`/`{% endif %}`, keeping whitespace control
/// and line numbers, since minijinja has no custom tags.
fn rewrite_generation_tags(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start + 2]);
        let body = &rest[start + 2..];
        let control = usize::from(body.starts_with(['-', '+']));
        let keyword_start = body[control..].trim_start();
        let prefix_len = body.len() - keyword_start.len();
        let replacement = [("endgeneration", "endif"), ("generation", "if true")]
            .into_iter()
            .find(|(keyword, _)| starts_with_word(keyword_start, keyword));
        match replacement {
            Some((keyword, replacement)) => {
                out.push_str(&body[..prefix_len]);
                out.push_str(replacement);
                rest = &keyword_start[keyword.len()..];
            }
            None => rest = body,
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

fn starts_with_word(text: &str, word: &str) -> bool {
    text.strip_prefix(word)
        .is_some_and(|after| after.starts_with(|c: char| c.is_whitespace() || "-+%".contains(c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, messages: &[ChatMessage]) -> Result<String, TemplateError> {
        ChatTemplate::new(source, Some("<s>".into()), Some("</s>".into()))?
            .render(messages, &RenderOptions::default())
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = ChatTemplate::new("hello\n{% for m in %}\n{% endfor %}", None, None).unwrap_err();
        let TemplateError::Syntax { line, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*line, Some(2));
        assert!(err.to_string().contains("(line 2)"), "{err}");
    }

    #[test]
    fn raise_exception_reports_the_templates_message() {
        let source = concat!(
            "{% if messages[0].role != 'user' %}",
            "{{ raise_exception('Roles must alternate') }}{% endif %}"
        );
        let err = render(source, &[ChatMessage::text("assistant", "hi")]).unwrap_err();
        assert_eq!(err, TemplateError::Raised("Roles must alternate".into()));
        assert_eq!(
            err.to_string(),
            "the model's chat template rejected the messages: Roles must alternate"
        );
    }

    #[test]
    fn render_errors_carry_the_line() {
        let source = "{% for m in messages %}\n{{ m.role + m.content }}{% endfor %}";
        let message = ChatMessage {
            content: None,
            ..ChatMessage::text("user", "")
        };
        let err = render(source, &[message]).unwrap_err();
        let TemplateError::Render { line, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*line, Some(2));
    }

    #[test]
    fn missing_template_is_a_clear_error() {
        assert_eq!(
            select_template_source(None, None),
            Err(TemplateError::Missing)
        );
        assert_eq!(
            select_template_source(None, Some("  \n")),
            Err(TemplateError::Missing)
        );
        assert_eq!(select_template_source(Some("a"), Some("b")), Ok("a"));
        assert_eq!(select_template_source(Some(""), Some("b")), Ok("b"));
        assert!(TemplateError::Missing
            .to_string()
            .contains("no chat template"));
    }

    #[test]
    fn non_text_parts_are_rejected_for_text_templates() {
        let image = ContentPart {
            kind: "image_url".into(),
            text: None,
            extra: Map::new(),
        };
        let message = ChatMessage {
            content: Some(MessageContent::Parts(vec![ContentPart::text("a"), image])),
            ..ChatMessage::text("user", "")
        };
        let err = render(
            "{{ messages[0].content }}",
            &[ChatMessage::text("user", "x"), message],
        );
        assert_eq!(
            err,
            Err(TemplateError::UnsupportedContent {
                message_index: 1,
                part_type: "image_url".into()
            })
        );
    }

    #[test]
    fn string_content_is_wrapped_for_templates_that_only_take_parts() {
        let source =
            "{% for m in messages %}{% for p in m.content %}[{{ p.text }}]{% endfor %}{% endfor %}";
        assert_eq!(
            render(source, &[ChatMessage::text("user", "hi")]).unwrap(),
            "[hi]"
        );
    }

    #[test]
    fn generation_tags_render_their_body() {
        let source = concat!(
            "{% for m in messages %}{%- generation -%} {{ m.content }} ",
            "{%- endgeneration %}|{% endfor %}"
        );
        assert_eq!(
            render(source, &[ChatMessage::text("user", "hi")]).unwrap(),
            "hi|"
        );
        assert_eq!(
            rewrite_generation_tags("{% set generation = 1 %}"),
            "{% set generation = 1 %}"
        );
    }

    #[test]
    fn strftime_now_formats_the_local_time() {
        let out = render("{{ strftime_now('%Y-%m-%d') }}", &[]).unwrap();
        assert_eq!(out.len(), 10, "{out}");
        assert!(render("{{ strftime_now('%Q') }}", &[]).is_err());
    }

    #[test]
    fn python_floats_print_like_python() {
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (0.0001, "0.0001"),
            (123456789.125, "123456789.125"),
            (1e22, "1e+22"),
            (f64::INFINITY, "inf"),
        ];
        for (number, expected) in cases {
            assert_eq!(python_float(number, false), expected);
        }
    }

    #[test]
    fn chat_template_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ChatTemplate>();
    }

    #[test]
    fn messages_deserialize_from_openai_json() {
        let json = r#"{"role": "assistant", "content": null, "tool_calls": [{"id": "c1",
            "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}],
            "reasoning_content": "hmm"}"#;
        let message: ChatMessage = serde_json::from_str(json).unwrap();
        assert_eq!(message.content, None);
        assert_eq!(message.extra["reasoning_content"], "hmm");
        let parts: ChatMessage =
            serde_json::from_str(r#"{"role": "user", "content": [{"type": "text", "text": "x"}]}"#)
                .unwrap();
        assert_eq!(
            parts.content,
            Some(MessageContent::Parts(vec![ContentPart::text("x")]))
        );
    }
}
