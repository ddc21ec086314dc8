//! Every request field of OpenAI's chat and completions APIs, with what moat does with it:
//! supported, ignored (accepted, no effect, harmless to drop) or rejected (a 400 that names the
//! field, because dropping it would change what the client gets). A field in neither table is
//! rejected as unrecognized, as OpenAI does. docs/openai-compat.md renders these tables; a test
//! keeps the two in step.

use serde_json::{Map, Value};

use crate::WireError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldSupport {
    Supported,
    /// Accepted and dropped: it changes nothing a client can observe from moat.
    Ignored,
    /// A 400 naming the field, unless its value is null or asks for the default behaviour.
    Rejected,
}

impl FieldSupport {
    pub fn label(self) -> &'static str {
        match self {
            Self::Supported => "supported",
            Self::Ignored => "ignored",
            Self::Rejected => "rejected",
        }
    }
}

/// One request field and what moat does with it.
#[derive(Clone, Copy, Debug)]
pub struct FieldRule {
    pub name: &'static str,
    pub support: FieldSupport,
    /// Why, or how: for rejected fields this is the error message.
    pub note: &'static str,
}

const fn rule(name: &'static str, support: FieldSupport, note: &'static str) -> FieldRule {
    FieldRule {
        name,
        support,
        note,
    }
}

use FieldSupport::{Ignored, Rejected, Supported};

const DEPRECATED_FUNCTIONS: &str = "OpenAI's deprecated functions API; send tools and tool_choice";

/// `/v1/chat/completions`, sorted by name.
pub const CHAT_FIELDS: &[FieldRule] = &[
    rule("audio", Rejected, "audio output is not supported"),
    rule("chat_template_kwargs", Supported, "moat extension (as in vLLM and llama-server): an object of further variables for the model's chat template, such as enable_thinking; at most 32, not messages, tools, documents, add_generation_prompt, bos_token or eos_token"),
    rule("frequency_penalty", Supported, "-2.0 to 2.0"),
    rule("function_call", Rejected, DEPRECATED_FUNCTIONS),
    rule("functions", Rejected, DEPRECATED_FUNCTIONS),
    rule("grammar", Rejected, "raw GBNF grammars are not supported; send json_schema, guided_json, guided_choice or response_format"),
    rule("guided_choice", Supported, "moat extension (as in vLLM): 1 to 256 non-empty strings (64 KiB in all); the output is one of them"),
    rule("guided_decoding_backend", Rejected, "backend options (xgrammar:disable-any-whitespace, ...) are not supported; a bare backend name is accepted and changes nothing: moat has one backend, llama.cpp's grammar sampler"),
    rule("guided_grammar", Rejected, "grammars are not supported; send guided_json, guided_choice or response_format"),
    rule("guided_json", Supported, "moat extension (as in vLLM): a JSON Schema, as an object or its JSON text; as response_format json_schema"),
    rule("guided_regex", Rejected, "regular expressions are not supported; send guided_json or guided_choice"),
    rule("guided_whitespace_pattern", Rejected, "a whitespace pattern is not supported"),
    rule("json_schema", Supported, "moat extension (as in llama-server): a JSON Schema object; as response_format json_schema"),
    rule(
        "knowledge_base",
        Supported,
        "moat extension: a knowledge base name or {name, top_k, mode, min_score, path_glob, tags, no_answer}; grounds the answer and adds citations (docs/knowledge.md)",
    ),
    rule(
        "logit_bias",
        Supported,
        "token id -> -100 to 100; ids must be in the model's vocabulary",
    ),
    rule(
        "logprobs",
        Supported,
        "the chosen token's logprob per generated token",
    ),
    rule(
        "max_completion_tokens",
        Supported,
        "at least 1; prompt plus completion must fit the context, else 400",
    ),
    rule(
        "max_tokens",
        Supported,
        "as max_completion_tokens; when both are given they must agree",
    ),
    rule(
        "messages",
        Supported,
        "roles system, developer (as system), user, assistant (with tool_calls), tool (with tool_call_id); text content or text parts",
    ),
    rule("metadata", Ignored, "moat stores no completions"),
    rule("min_p", Supported, "moat extension: 0.0 to 1.0"),
    rule(
        "modalities",
        Rejected,
        "only [\"text\"] is accepted: audio output is not supported",
    ),
    rule("model", Supported, "a model name as listed by /v1/models"),
    rule("n", Supported, "1 to 16: n generations of the same prompt"),
    rule("parallel_tool_calls", Supported, "default true; false: at most one call per answer"),
    rule(
        "prediction",
        Rejected,
        "predicted outputs are not supported",
    ),
    rule("presence_penalty", Supported, "-2.0 to 2.0"),
    rule(
        "prompt_cache_key",
        Ignored,
        "moat's prefix cache needs no key",
    ),
    rule(
        "prompt_cache_retention",
        Ignored,
        "moat's prefix cache needs no key",
    ),
    rule(
        "reasoning_budget_tokens",
        Supported,
        "moat extension (as in llama-server): most tokens of thinking, 0 or more (-1: no limit); the model is then made to end its thinking; without it `moat serve --reasoning-budget` applies; see Reasoning models",
    ),
    rule(
        "reasoning_effort",
        Supported,
        "none turns thinking off (enable_thinking: false for the template); minimal, low, medium, high or xhigh reach the template as reasoning_effort; see Reasoning models",
    ),
    rule(
        "reasoning_format",
        Supported,
        "moat extension (as in llama-server): auto (default), deepseek or none; see Reasoning models",
    ),
    rule(
        "repetition_penalty",
        Supported,
        "moat extension: greater than 0.0, up to 10.0; 1.0 is off",
    ),
    rule(
        "response_format",
        Supported,
        "text, json_object or json_schema (name, description, schema, strict); the output is held to the schema while it is sampled, strict or not",
    ),
    rule("safety_identifier", Ignored, "no effect on generation"),
    rule(
        "seed",
        Supported,
        "the same seed and request give the same output (on a GPU, see Seeds and batching); choice i of n uses seed + i",
    ),
    rule("service_tier", Ignored, "moat has one tier"),
    rule(
        "stop",
        Supported,
        "a string or up to 16 non-empty strings; never part of the output",
    ),
    rule("store", Ignored, "moat stores no completions"),
    rule(
        "stream",
        Supported,
        "server-sent events ending with data: [DONE]",
    ),
    rule(
        "stream_options",
        Supported,
        "include_usage: a last chunk with usage and no choices; only with stream",
    ),
    rule("temperature", Supported, "0.0 to 2.0; 0 is greedy"),
    rule(
        "thinking_token_budget",
        Supported,
        "moat extension (as in vLLM): most tokens of thinking, 0 or more; the model is then made to end its thinking; without it `moat serve --reasoning-budget` applies; see Reasoning models",
    ),
    rule(
        "tool_choice",
        Supported,
        "none, auto (the default with tools), required, or {type: function, function: {name}}; required and a named tool hold the answer to a call; with auto a call the model opens with its tag is held to the tools",
    ),
    rule(
        "tools",
        Supported,
        "up to 128 function tools (name, description, parameters, strict); the model's chat template must show Hermes-style <tool_call> calls (Qwen2.5, Hermes, ...)",
    ),
    rule("top_k", Supported, "moat extension: 0 or -1 is off"),
    rule("top_logprobs", Supported, "0 to 20, with logprobs: true"),
    rule("top_p", Supported, "greater than 0.0, up to 1.0"),
    rule("user", Ignored, "no effect on generation"),
    rule("verbosity", Rejected, "verbosity is not supported"),
    rule(
        "web_search_options",
        Rejected,
        "web search is not supported",
    ),
];

/// `/v1/completions`, sorted by name.
pub const COMPLETION_FIELDS: &[FieldRule] = &[
    rule("best_of", Rejected, "best_of is not supported; only a value equal to n is accepted"),
    rule("echo", Supported, "the prompt is returned before the completion (with its logprobs when logprobs is set)"),
    rule("frequency_penalty", Supported, "-2.0 to 2.0"),
    rule("grammar", Rejected, "raw GBNF grammars are not supported; send json_schema, guided_json, guided_choice or response_format"),
    rule("guided_choice", Supported, "moat extension (as in vLLM): 1 to 256 non-empty strings (64 KiB in all); the output is one of them"),
    rule("guided_decoding_backend", Rejected, "backend options (xgrammar:disable-any-whitespace, ...) are not supported; a bare backend name is accepted and changes nothing: moat has one backend, llama.cpp's grammar sampler"),
    rule("guided_grammar", Rejected, "grammars are not supported; send guided_json, guided_choice or response_format"),
    rule("guided_json", Supported, "moat extension (as in vLLM): a JSON Schema, as an object or its JSON text; as response_format json_schema"),
    rule("guided_regex", Rejected, "regular expressions are not supported; send guided_json or guided_choice"),
    rule("guided_whitespace_pattern", Rejected, "a whitespace pattern is not supported"),
    rule("json_schema", Supported, "moat extension (as in llama-server): a JSON Schema object; as response_format json_schema"),
    rule("logit_bias", Supported, "token id -> -100 to 100; ids must be in the model's vocabulary"),
    rule("logprobs", Supported, "0 to 5 alternatives per token"),
    rule("max_tokens", Supported, "0 or more, default 16 as in OpenAI (0 with echo scores the prompt); prompt plus completion must fit the context, else 400"),
    rule("min_p", Supported, "moat extension: 0.0 to 1.0"),
    rule("model", Supported, "a model name as listed by /v1/models"),
    rule("n", Supported, "1 to 16 per prompt; prompts times n at most 16"),
    rule("presence_penalty", Supported, "-2.0 to 2.0"),
    rule("prompt", Supported, "a string, a list of strings, a list of token ids or a list of such lists"),
    rule("repetition_penalty", Supported, "moat extension: greater than 0.0, up to 10.0; 1.0 is off"),
    rule("response_format", Supported, "moat extension (as in vLLM): text, json_object or json_schema, as on chat completions"),
    rule("seed", Supported, "the same seed and request give the same output (on a GPU, see Seeds and batching); choice i of n uses seed + i"),
    rule("stop", Supported, "a string or up to 16 non-empty strings; never part of the output"),
    rule("stream", Supported, "server-sent events ending with data: [DONE]"),
    rule("stream_options", Supported, "include_usage: a last chunk with usage and no choices; only with stream"),
    rule("suffix", Rejected, "insertion (suffix) is not supported; only an empty string is accepted"),
    rule("temperature", Supported, "0.0 to 2.0; 0 is greedy"),
    rule("top_k", Supported, "moat extension: 0 or -1 is off"),
    rule("top_p", Supported, "greater than 0.0, up to 1.0"),
    rule("user", Ignored, "no effect on generation"),
];

/// Whether a rejected field's value asks for what moat does anyway, so accepting it hides
/// nothing from the client.
fn asks_for_default(name: &str, value: &Value, body: &Map<String, Value>) -> bool {
    match name {
        "functions" => value.as_array().is_some_and(Vec::is_empty),
        "function_call" => value.as_str() == Some("none"),
        "modalities" => value
            .as_array()
            .is_some_and(|items| items.iter().all(|item| item.as_str() == Some("text"))),
        "suffix" => value.as_str() == Some(""),
        // A backend's name asks for the same constraint; its options (after `:`) change it.
        "guided_decoding_backend" => value.as_str().is_some_and(|name| !name.contains(':')),
        "best_of" => {
            let n = body.get("n").and_then(Value::as_u64).unwrap_or(1);
            value.as_u64() == Some(n)
        }
        _ => false,
    }
}

/// Checks every field of a request body against `rules`: unknown and rejected fields are
/// errors, ignored ones are removed, so what remains holds only supported fields.
pub(crate) fn screen(body: &mut Map<String, Value>, rules: &[FieldRule]) -> Result<(), WireError> {
    let mut drop = Vec::new();
    for (name, value) in body.iter() {
        let Some(rule) = rules.iter().find(|rule| rule.name == name) else {
            return Err(WireError::UnknownField {
                param: name.clone(),
            });
        };
        match rule.support {
            Supported => {}
            Ignored => drop.push(name.clone()),
            Rejected if value.is_null() || asks_for_default(name, value, body) => {
                drop.push(name.clone());
            }
            Rejected => {
                return Err(WireError::Unsupported {
                    param: name.clone(),
                    reason: rule.note.to_string(),
                })
            }
        }
    }
    for name in drop {
        body.remove(&name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_unique() {
        for table in [CHAT_FIELDS, COMPLETION_FIELDS] {
            for pair in table.windows(2) {
                assert!(
                    pair[0].name < pair[1].name,
                    "{} before {}",
                    pair[0].name,
                    pair[1].name
                );
            }
        }
    }

    fn body(json: &str) -> Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn screening_rejects_unknown_and_unsupported_and_drops_ignored() {
        let mut ok = body(r#"{"model":"m","user":"u","functions":[],"function_call":"none"}"#);
        screen(&mut ok, CHAT_FIELDS).unwrap();
        assert_eq!(ok.keys().collect::<Vec<_>>(), ["model"]);

        let mut unknown = body(r#"{"model":"m","temprature":1}"#);
        assert_eq!(
            screen(&mut unknown, CHAT_FIELDS).unwrap_err().param(),
            Some("temprature")
        );
        let mut functions = body(r#"{"functions":[{"name":"f"}]}"#);
        assert!(matches!(
            screen(&mut functions, CHAT_FIELDS),
            Err(WireError::Unsupported { param, .. }) if param == "functions"
        ));
        let mut format = body(r#"{"response_format":{"type":"json_object"}}"#);
        screen(&mut format, CHAT_FIELDS).unwrap();
        assert_eq!(format.keys().collect::<Vec<_>>(), ["response_format"]);
        let mut best_of = body(r#"{"n":2,"best_of":2}"#);
        screen(&mut best_of, COMPLETION_FIELDS).unwrap();
        let mut best_of = body(r#"{"best_of":3}"#);
        assert!(screen(&mut best_of, COMPLETION_FIELDS).is_err());
    }
}
