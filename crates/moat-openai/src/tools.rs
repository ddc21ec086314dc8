//! Function tools: `tools`, `tool_choice` and `parallel_tool_calls` as OpenAI sends them, the
//! grammar that forces a call, and the calls read back out of the model's text.
//!
//! moat reads the Hermes format, which Qwen2.5, Hermes and many other open models are trained
//! on: each call is `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>` in the text.
//! A model whose chat template does not show that format gets no tools (the server says so).

use moat_engine::Grammar;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::WireError;

/// What opens a call in the Hermes format, and what closes it.
pub const HERMES_OPEN: &str = "<tool_call>";
pub const HERMES_CLOSE: &str = "</tool_call>";
/// Most tools one request may define (OpenAI's limit).
const MAX_TOOLS: usize = 128;

/// Which calls the answer may or must make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides between text and calls.
    Auto,
    /// At least one call (of any tool).
    Required,
    /// A call of this tool.
    Named(String),
}

/// A request's tools, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidTools {
    /// The `tools` array as sent, for the chat template (`tools` in its context).
    pub definitions: Value,
    pub choice: ToolChoice,
    /// More than one call in an answer (`parallel_tool_calls`, default true).
    pub parallel: bool,
    /// Each function's name and its parameters' JSON Schema (`{"type": "object"}` if none).
    pub functions: Vec<(String, Value)>,
}

/// `tools`, `tool_choice`, `parallel_tool_calls`; `None` when no tool may be called (none
/// given, or `tool_choice` is `"none"`).
pub(crate) fn parse(
    tools: Option<&Value>,
    choice: Option<&Value>,
    parallel: Option<&Value>,
) -> Result<Option<ValidTools>, WireError> {
    let definitions = match tools {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.is_empty() => None,
        Some(Value::Array(items)) if items.len() > MAX_TOOLS => {
            return Err(WireError::invalid(
                "tools",
                format!("{} tools; at most {MAX_TOOLS} are accepted", items.len()),
            ))
        }
        Some(Value::Array(items)) => Some(items),
        Some(_) => return Err(WireError::invalid("tools", "expected an array of tools")),
    };
    let parallel = match parallel {
        None | Some(Value::Null) => true,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => {
            return Err(WireError::invalid(
                "parallel_tool_calls",
                "expected a boolean",
            ))
        }
    };
    let choice = match choice {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => match text.as_str() {
            "none" => return Ok(None),
            "auto" => Some(ToolChoice::Auto),
            "required" => Some(ToolChoice::Required),
            other => {
                return Err(WireError::invalid(
                    "tool_choice",
                    format!("'{other}' is not one of none, auto, required"),
                ))
            }
        },
        Some(Value::Object(named)) => Some(ToolChoice::Named(named_function(named)?)),
        Some(_) => {
            return Err(WireError::invalid(
                "tool_choice",
                "expected none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}",
            ))
        }
    };
    let Some(items) = definitions else {
        return match choice {
            None => Ok(None),
            Some(_) => Err(WireError::invalid(
                "tool_choice",
                "tool_choice needs tools to choose from",
            )),
        };
    };
    let functions = items
        .iter()
        .enumerate()
        .map(|(index, tool)| function(index, tool))
        .collect::<Result<Vec<_>, _>>()?;
    for (index, (name, _)) in functions.iter().enumerate() {
        if functions[..index].iter().any(|(other, _)| other == name) {
            return Err(WireError::invalid(
                format!("tools[{index}].function.name"),
                format!("'{name}' names two tools"),
            ));
        }
    }
    let choice = choice.unwrap_or(ToolChoice::Auto);
    if let ToolChoice::Named(name) = &choice {
        if !functions.iter().any(|(tool, _)| tool == name) {
            return Err(WireError::invalid(
                "tool_choice.function.name",
                format!("'{name}' is not one of the tools"),
            ));
        }
    }
    Ok(Some(ValidTools {
        definitions: Value::Array(items.clone()),
        choice,
        parallel,
        functions,
    }))
}

fn named_function(named: &Map<String, Value>) -> Result<String, WireError> {
    if named.get("type").and_then(Value::as_str) != Some("function") {
        return Err(WireError::invalid(
            "tool_choice.type",
            "expected \"function\"",
        ));
    }
    named
        .get("function")
        .and_then(|function| function.get("name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| WireError::Missing {
            param: "tool_choice.function.name".into(),
        })
}

/// One `{"type": "function", "function": {"name", "description", "parameters", "strict"}}`.
fn function(index: usize, tool: &Value) -> Result<(String, Value), WireError> {
    let at = |field: &str| format!("tools[{index}].{field}");
    let Some(tool) = tool.as_object() else {
        return Err(WireError::invalid(
            format!("tools[{index}]"),
            "expected an object",
        ));
    };
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Err(WireError::invalid(
            at("type"),
            "only \"function\" tools are supported",
        ));
    }
    let Some(function) = tool.get("function").and_then(Value::as_object) else {
        return Err(WireError::Missing {
            param: at("function"),
        });
    };
    let name = match function.get("name") {
        Some(Value::String(name)) => name.clone(),
        None | Some(Value::Null) => {
            return Err(WireError::Missing {
                param: at("function.name"),
            })
        }
        Some(_) => return Err(WireError::invalid(at("function.name"), "expected a string")),
    };
    let valid_name = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return Err(WireError::invalid(
            at("function.name"),
            "1 to 64 letters, digits, underscores or dashes",
        ));
    }
    let parameters = match function.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object"}),
        // Arguments are an object; `{}` alone would let a forced call's be any JSON value.
        Some(Value::Object(schema)) if !schema.contains_key("type") => {
            let mut schema = schema.clone();
            schema.insert("type".into(), json!("object"));
            Value::Object(schema)
        }
        Some(schema @ Value::Object(_)) => schema.clone(),
        Some(_) => {
            return Err(WireError::invalid(
                at("function.parameters"),
                "expected a JSON Schema object",
            ))
        }
    };
    Ok((name, parameters))
}

impl ValidTools {
    /// The grammar of the calls in the Hermes format: for `required` or a named tool, the
    /// answer must be calls; for `auto` the grammar is lazy: the model chooses, and once it
    /// opens a `<tool_call>` the call is held to a known tool's name and its schema.
    pub fn grammar(&self) -> Option<Grammar> {
        let calls: Vec<Value> = self
            .functions
            .iter()
            .filter(|(name, _)| match &self.choice {
                ToolChoice::Auto | ToolChoice::Required => true,
                ToolChoice::Named(wanted) => wanted == name,
            })
            .enumerate()
            .map(|(index, (name, parameters))| {
                // Each tool's schema moves to anyOf/{index}/properties/arguments of one document,
                // so its own `#/...` references must point there.
                let mut parameters = parameters.clone();
                rebase_refs(
                    &mut parameters,
                    &format!("#/anyOf/{index}/properties/arguments"),
                );
                json!({
                    "type": "object",
                    "properties": {"name": {"const": name}, "arguments": parameters},
                    "required": ["name", "arguments"],
                    "additionalProperties": false,
                })
            })
            .collect();
        if calls.is_empty() {
            return None;
        }
        Some(Grammar::Tagged {
            schema: json!({ "anyOf": calls }).to_string(),
            open: format!("{HERMES_OPEN}\n"),
            close: format!("\n{HERMES_CLOSE}"),
            many: self.parallel,
            lazy: self.choice == ToolChoice::Auto,
        })
    }
}

/// Points a schema's local references (`#`, `#/$defs/...`) at the place `base` where the
/// schema now sits inside a larger document.
fn rebase_refs(schema: &mut Value, base: &str) {
    match schema {
        Value::Object(object) => {
            for (key, value) in object.iter_mut() {
                match value {
                    Value::String(target) if key == "$ref" => {
                        if let Some(rest) = target.strip_prefix('#') {
                            *target = format!("{base}{rest}");
                        }
                    }
                    _ => rebase_refs(value, base),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rebase_refs(item, base)),
        _ => {}
    }
}

/// One call as OpenAI's answers carry it (`arguments` is JSON text).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolCall {
    /// Its place among the answer's calls; only in stream deltas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// A model's text split into what it said and the calls it made.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedCalls {
    pub content: String,
    /// Name and arguments (JSON text) of each call, in order.
    pub calls: Vec<(String, String)>,
}

/// Reads the calls out of a whole answer: calls in `<tool_call>` tags, text outside them is
/// content. Without tags, small models often write the call bare, or in a ```json fence: an
/// answer that is nothing but such objects is calls too. A call must name one of `names` and
/// hold `{"name", "arguments": {...}}`. Text that does not read as calls stays text: all of
/// it when the first call does not parse, the rest from a later call that does not (one cut
/// short by `max_tokens`), so nothing is lost and no good call is dropped.
pub fn parse_calls(text: &str, names: &[String]) -> ParsedCalls {
    let as_text = || ParsedCalls {
        content: text.to_owned(),
        calls: Vec::new(),
    };
    if !text.contains(HERMES_OPEN) {
        return bare_calls(text, names).map_or_else(as_text, |calls| ParsedCalls {
            content: String::new(),
            calls,
        });
    }
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(HERMES_OPEN) {
        let after = &rest[start + HERMES_OPEN.len()..];
        // A model may stop (end of turn) before it writes the closing tag.
        let (inside, next) = match after.find(HERMES_CLOSE) {
            Some(end) => (&after[..end], &after[end + HERMES_CLOSE.len()..]),
            None => (after, ""),
        };
        let Some(call) = read_call(inside, names) else {
            if calls.is_empty() {
                return as_text();
            }
            break;
        };
        content.push_str(&rest[..start]);
        calls.push(call);
        rest = next;
    }
    content.push_str(rest);
    ParsedCalls {
        content: content.trim().to_owned(),
        calls,
    }
}

/// An answer that is only calls without tags: JSON objects, optionally in one code fence.
fn bare_calls(text: &str, names: &[String]) -> Option<Vec<(String, String)>> {
    let mut body = text.trim();
    if let Some(fenced) = body.strip_prefix("```") {
        let fenced = fenced.strip_suffix("```")?;
        // The fence's language tag, if any, runs to the first newline.
        body = fenced
            .trim_start_matches(|c: char| c.is_ascii_alphanumeric())
            .trim();
    }
    if !body.starts_with('{') {
        return None;
    }
    let mut calls = Vec::new();
    for value in serde_json::Deserializer::from_str(body).into_iter::<Value>() {
        calls.push(read_call_value(&value.ok()?, names)?);
    }
    (!calls.is_empty()).then_some(calls)
}

fn read_call(inside: &str, names: &[String]) -> Option<(String, String)> {
    read_call_value(&serde_json::from_str(inside.trim()).ok()?, names)
}

/// `{"name": <one of names>, "arguments": {...}}`.
fn read_call_value(value: &Value, names: &[String]) -> Option<(String, String)> {
    let object = value.as_object()?;
    let name = object.get("name")?.as_str()?.to_owned();
    if !names.contains(&name) {
        return None;
    }
    if object.keys().any(|key| key != "name" && key != "arguments") {
        return None;
    }
    let arguments = match object.get("arguments") {
        Some(arguments @ Value::Object(_)) => arguments.to_string(),
        // Some models write the arguments as JSON text already.
        Some(Value::String(text))
            if serde_json::from_str::<Value>(text).is_ok_and(|v| v.is_object()) =>
        {
            text.clone()
        }
        None | Some(Value::Null) => "{}".to_owned(),
        Some(_) => return None,
    };
    Some((name, arguments))
}

/// Streams a choice's text while holding back what may be calls: text goes out as it comes
/// until `<tool_call>` (or what may be its start) appears, and an answer that opens with `{`
/// or with a code fence whose first line is `{` (a call written without tags, perhaps) is held
/// whole. Whitespace before the first call is no content. The held text waits for the end,
/// where `finish` reads it.
#[derive(Debug, Default)]
pub struct ToolCallReader {
    names: Vec<String>,
    /// More than one call per answer (`parallel_tool_calls`).
    parallel: bool,
    /// Everything the model wrote.
    text: String,
    /// How much of `text` went out as content.
    sent: usize,
    /// The opening was looked at and is text, not a bare call.
    opened_as_text: bool,
    /// Nothing more goes out before `finish`.
    holding: bool,
}

/// What the first characters of an answer say.
enum Opening {
    /// Too little to tell.
    Unsure,
    /// It may be a call without tags.
    Call,
    Text,
}

impl ToolCallReader {
    /// A reader for calls of these functions; without `parallel`, only the first call counts.
    pub fn new(names: Vec<String>, parallel: bool) -> Self {
        Self {
            names,
            parallel,
            ..Self::default()
        }
    }

    /// Takes the next piece of text; returns the content that may go out now.
    pub fn push(&mut self, piece: &str) -> String {
        self.text.push_str(piece);
        if self.holding {
            return String::new();
        }
        if !self.opened_as_text {
            match opening(&self.text) {
                Opening::Unsure => return String::new(),
                Opening::Call => {
                    self.holding = true;
                    return String::new();
                }
                Opening::Text => self.opened_as_text = true,
            }
        }
        if let Some(start) = self.text[self.sent..].find(HERMES_OPEN) {
            self.holding = true;
            let before = &self.text[self.sent..self.sent + start];
            let out = if self.sent == 0 && before.trim().is_empty() {
                String::new()
            } else {
                before.to_owned()
            };
            self.sent += start;
            return out;
        }
        // Hold back a tail that could be the start of the tag.
        let unsent = &self.text[self.sent..];
        let keep = (1..HERMES_OPEN.len())
            .rev()
            .find(|&n| {
                n <= unsent.len()
                    && unsent.is_char_boundary(unsent.len() - n)
                    && HERMES_OPEN.starts_with(&unsent[unsent.len() - n..])
            })
            .unwrap_or(0);
        let upto = self.sent + unsent.len() - keep;
        let out = self.text[self.sent..upto].to_owned();
        self.sent = upto;
        out
    }

    /// At the end: the content still to send and the calls. Held text that does not read as
    /// calls goes out as content.
    pub fn finish(self) -> ParsedCalls {
        let held = &self.text[self.sent..];
        let mut parsed = parse_calls(held, &self.names);
        if parsed.calls.is_empty() {
            return ParsedCalls {
                content: held.to_owned(),
                calls: Vec::new(),
            };
        }
        if !self.parallel {
            parsed.calls.truncate(1);
        }
        parsed
    }
}

fn opening(text: &str) -> Opening {
    let start = text.trim_start();
    if start.is_empty() {
        return Opening::Unsure;
    }
    if start.starts_with('{') {
        return Opening::Call;
    }
    let Some(fenced) = start.strip_prefix("```") else {
        return if "```".starts_with(start) {
            Opening::Unsure
        } else {
            Opening::Text
        };
    };
    // The fence's first line is its language; the call, if it is one, starts on the next.
    let Some(newline) = fenced.find('\n') else {
        return Opening::Unsure;
    };
    let body = fenced[newline + 1..].trim_start();
    if body.is_empty() {
        Opening::Unsure
    } else if body.starts_with('{') {
        Opening::Call
    } else {
        Opening::Text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather", "description": "d",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time"}}])
    }

    #[test]
    fn tools_and_choices_parse() {
        let tools = weather();
        let valid = parse(Some(&tools), None, None).unwrap().unwrap();
        assert_eq!(valid.choice, ToolChoice::Auto);
        assert!(valid.parallel);
        assert_eq!(
            valid.functions[1],
            ("get_time".into(), json!({"type": "object"}))
        );
        assert_eq!(parse(Some(&tools), Some(&json!("none")), None), Ok(None));
        assert_eq!(parse(Some(&json!([])), None, None), Ok(None));
        let named = json!({"type": "function", "function": {"name": "get_time"}});
        let valid = parse(Some(&tools), Some(&named), Some(&json!(false)))
            .unwrap()
            .unwrap();
        assert_eq!(valid.choice, ToolChoice::Named("get_time".into()));
        assert!(!valid.parallel);
        let Some(Grammar::Tagged {
            schema, many, lazy, ..
        }) = valid.grammar()
        else {
            panic!("a named tool forces a call");
        };
        assert!(!many && !lazy);
        assert!(
            schema.contains("get_time") && !schema.contains("get_weather"),
            "{schema}"
        );
        let required = parse(Some(&tools), Some(&json!("required")), None)
            .unwrap()
            .unwrap();
        let Some(Grammar::Tagged { schema, .. }) = required.grammar() else {
            panic!("required forces a call");
        };
        assert!(
            schema.contains("get_time") && schema.contains("get_weather"),
            "{schema}"
        );
        let Some(Grammar::Tagged { schema, lazy, .. }) =
            parse(Some(&tools), None, None).unwrap().unwrap().grammar()
        else {
            panic!("auto holds a call the model opens to the tools");
        };
        assert!(lazy);
        assert!(
            schema.contains("get_time") && schema.contains("get_weather"),
            "{schema}"
        );
        // A tool's own references follow it into the combined schema; `{}` parameters are
        // an object.
        let nested = json!([{"type": "function", "function": {"name": "add", "parameters": {
            "$defs": {"item": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            "type": "object", "properties": {"item": {"$ref": "#/$defs/item"}}}}},
            {"type": "function", "function": {"name": "noop", "parameters": {}}}]);
        let valid = parse(Some(&nested), Some(&json!("required")), None)
            .unwrap()
            .unwrap();
        assert_eq!(valid.functions[1].1, json!({"type": "object"}));
        let Some(Grammar::Tagged { schema, .. }) = valid.grammar() else {
            panic!("required forces a call");
        };
        assert!(
            schema.contains(r##""$ref":"#/anyOf/0/properties/arguments/$defs/item""##),
            "{schema}"
        );
    }

    #[test]
    fn bad_tools_name_their_field() {
        let param = |tools: Value, choice: Option<Value>| {
            parse(Some(&tools), choice.as_ref(), None)
                .unwrap_err()
                .param()
                .unwrap()
                .to_owned()
        };
        assert_eq!(param(json!("x"), None), "tools");
        assert_eq!(param(json!([{"type": "retrieval"}]), None), "tools[0].type");
        assert_eq!(
            param(json!([{"type": "function"}]), None),
            "tools[0].function"
        );
        assert_eq!(
            param(
                json!([{"type": "function", "function": {"name": "a b"}}]),
                None
            ),
            "tools[0].function.name"
        );
        assert_eq!(
            param(
                json!([{"type": "function", "function": {"name": "f", "parameters": []}}]),
                None
            ),
            "tools[0].function.parameters"
        );
        assert_eq!(
            param(
                json!([{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}]),
                None
            ),
            "tools[1].function.name"
        );
        assert_eq!(param(weather(), Some(json!("sometimes"))), "tool_choice");
        assert_eq!(
            param(
                weather(),
                Some(json!({"type": "function", "function": {"name": "nope"}}))
            ),
            "tool_choice.function.name"
        );
        let no_tools = parse(None, Some(&json!("required")), None).unwrap_err();
        assert_eq!(no_tools.param(), Some("tool_choice"));
        let parallel = parse(Some(&weather()), None, Some(&json!("yes"))).unwrap_err();
        assert_eq!(parallel.param(), Some("parallel_tool_calls"));
    }

    #[test]
    fn hermes_calls_are_read_out_of_the_text() {
        let names = vec!["get_weather".to_owned(), "get_time".to_owned()];
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
        let parsed = parse_calls(text, &names);
        assert_eq!(parsed.content, "Let me check.");
        assert_eq!(
            parsed.calls,
            vec![
                ("get_weather".to_owned(), r#"{"city":"Paris"}"#.to_owned()),
                ("get_time".to_owned(), "{}".to_owned())
            ]
        );
        // No closing tag (the model ended its turn), and arguments given as text.
        let parsed = parse_calls(
            "<tool_call>\n{\"name\": \"get_time\", \"arguments\": \"{\\\"a\\\": 1}\"}",
            &names,
        );
        assert_eq!(
            parsed.calls,
            vec![("get_time".to_owned(), r#"{"a": 1}"#.to_owned())]
        );
        // A second call cut short keeps the first; the rest is text.
        let cut = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_wea";
        let parsed = parse_calls(cut, &names);
        assert_eq!(parsed.calls, vec![("get_time".to_owned(), "{}".to_owned())]);
        assert_eq!(parsed.content, "<tool_call>\n{\"name\": \"get_wea");
        // Without tags: bare objects or a fenced block naming known tools.
        let bare = "```json\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}\n```";
        assert_eq!(
            parse_calls(bare, &names).calls,
            vec![("get_time".to_owned(), r#"{"tz":"UTC"}"#.to_owned())]
        );
        let two = "{\"name\": \"get_time\", \"arguments\": {}}\n{\"name\": \"get_weather\", \"arguments\": {}}";
        assert_eq!(parse_calls(two, &names).calls.len(), 2);
        // Not calls: all of it stays text.
        for text in [
            "plain answer",
            "<tool_call>\nnot json\n</tool_call>",
            "<tool_call>{\"arguments\": {}}</tool_call>",
            "<tool_call>{\"name\": \"unknown\", \"arguments\": {}}</tool_call>",
            "{\"name\": \"say_hello\", \"arguments\": {}}",
            "{\"name\": \"get_time\", \"arguments\": {}, \"extra\": 1}",
            "{\"name\": \"get_time\", \"arguments\": {}} and then some words",
            "```python\nprint(1)\n```",
        ] {
            assert_eq!(
                parse_calls(text, &names),
                ParsedCalls {
                    content: text.into(),
                    calls: vec![]
                },
                "{text}"
            );
        }
    }

    #[test]
    fn a_stream_holds_back_what_may_be_calls() {
        let mut stream = ToolCallReader::new(vec!["f".into()], true);
        let mut out = String::new();
        for piece in [
            "Sure",
            ", one <",
            "tool",
            "_call>\n{\"name\": \"f\", ",
            "\"arguments\": {}}\n</tool_call>",
        ] {
            out.push_str(&stream.push(piece));
        }
        assert_eq!(out, "Sure, one ");
        let parsed = stream.finish();
        assert_eq!(parsed.calls, vec![("f".to_owned(), "{}".to_owned())]);
        assert_eq!(parsed.content, "");
        // A "<" that does not become the tag goes out once it cannot.
        let mut stream = ToolCallReader::new(vec!["f".into()], true);
        assert_eq!(stream.push("a <"), "a ");
        assert_eq!(stream.push("b"), "<b");
        assert_eq!(stream.finish(), ParsedCalls::default());
        // Held text that is no call goes out at the end.
        let mut stream = ToolCallReader::new(vec!["f".into()], true);
        assert_eq!(stream.push("x <tool_call> oops"), "x ");
        assert_eq!(stream.finish().content, "<tool_call> oops");
        // An answer that opens with a brace or a fence is held whole.
        let mut stream = ToolCallReader::new(vec!["f".into()], true);
        assert_eq!(stream.push("\n"), "");
        assert_eq!(stream.push("{\"name\": \"f\","), "");
        assert_eq!(stream.push(" \"arguments\": {}}"), "");
        assert_eq!(
            stream.finish().calls,
            vec![("f".to_owned(), "{}".to_owned())]
        );
        // A fence goes out once its first line shows it holds no call.
        let mut stream = ToolCallReader::new(vec!["f".into()], true);
        assert_eq!(stream.push("``"), "");
        assert_eq!(stream.push("`py"), "");
        assert_eq!(stream.push("\nx = 1\n```"), "```py\nx = 1\n```");
        assert_eq!(stream.finish(), ParsedCalls::default());
        let mut stream = ToolCallReader::new(vec!["f".into()], true);
        assert_eq!(
            stream.push("```json\n{\"name\": \"f\", \"arguments\": {}}\n```"),
            ""
        );
        assert_eq!(stream.finish().calls.len(), 1);
        // Whitespace before the first call is no content.
        let mut stream = ToolCallReader::new(vec!["f".into()], true);
        assert_eq!(stream.push("\n"), "");
        assert_eq!(
            stream.push("<tool_call>\n{\"name\": \"f\", \"arguments\": {}}"),
            ""
        );
        assert_eq!(stream.finish().content, "");
        // Without parallel calls only the first counts.
        let mut stream = ToolCallReader::new(vec!["f".into()], false);
        stream.push(
            "{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n{\"name\": \"f\", \"arguments\": {}}",
        );
        assert_eq!(
            stream.finish().calls,
            vec![("f".to_owned(), r#"{"a":1}"#.to_owned())]
        );
        // Multibyte text next to a partial tag.
        let mut stream = ToolCallReader::new(vec!["f".into()], true);
        assert_eq!(stream.push("é ü <too"), "é ü ");
        assert_eq!(stream.push("l"), "");
        assert_eq!(stream.push("ß"), "<toolß");
    }
}
