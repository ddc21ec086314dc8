//! `/v1/completions`: the request as sent, its validation into [`ValidCompletion`] (one or more
//! prompts, as text or token ids, with `echo`), and the `text_completion` response, which is
//! also the shape of each streamed chunk.

use moat_engine::TokenId;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::chat::model_name;
use crate::common::{ResponseIds, WireUsage};
use crate::fields::{screen, COMPLETION_FIELDS};
use crate::logprobs::CompletionLogprobs;
use crate::params::{token_count, SamplingFields};
use crate::parse::{object, typed};
use crate::{GenerationParams, ModelLimits, WireError, MAX_CHOICES};

/// Most alternatives per token the completions API may ask for (OpenAI's limit).
const MAX_LOGPROBS: i64 = 5;
/// OpenAI's default `max_tokens` for completions, used when neither the request nor the
/// model's manifest gives one.
const DEFAULT_MAX_TOKENS: u32 = 16;

/// One prompt of a completions request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptInput {
    Text(String),
    /// Token ids, each checked against the model's vocabulary.
    Tokens(Vec<TokenId>),
}

/// A completions request whose body is well-formed JSON with only known fields; its values
/// are not checked yet (see [`CompletionRequest::validate`]).
#[derive(Clone, Debug)]
pub struct CompletionRequest {
    pub model: String,
    body: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ValidCompletion {
    pub model: String,
    /// Each prompt gets `params.n` choices; choice `p * n + i` is the `i`th of prompt `p`.
    pub prompts: Vec<PromptInput>,
    /// Put the prompt before the completion in each choice's text (and logprobs).
    pub echo: bool,
    pub params: GenerationParams,
}

#[derive(Deserialize)]
struct CompletionFields {
    prompt: Option<Value>,
    echo: Option<bool>,
    logprobs: Option<i64>,
    max_tokens: Option<i64>,
}

/// Parses a completions body: JSON, known fields only (rejected ones named), a model named.
pub fn parse_completion_request(body: &[u8]) -> Result<CompletionRequest, WireError> {
    let mut body = object(body)?;
    screen(&mut body, COMPLETION_FIELDS)?;
    let model = model_name(&body)?;
    Ok(CompletionRequest { model, body })
}

impl CompletionRequest {
    pub fn validate(self, limits: &ModelLimits) -> Result<ValidCompletion, WireError> {
        let fields: CompletionFields = typed(&self.body)?;
        let sampling: SamplingFields = typed(&self.body)?;
        let logprobs = match fields.logprobs {
            None => None,
            Some(k) if (0..=MAX_LOGPROBS).contains(&k) => Some(k as u8),
            Some(k) => {
                return Err(WireError::invalid(
                    "logprobs",
                    format!("{k} is out of range: expected 0 to {MAX_LOGPROBS}"),
                ))
            }
        };
        let max_tokens = token_count("max_tokens", fields.max_tokens, 0)?;
        let prompt = fields.prompt.ok_or_else(|| WireError::Missing {
            param: "prompt".into(),
        })?;
        let prompts = prompts(&prompt, limits.n_vocab)?;
        let mut params = sampling.validate(limits, max_tokens, logprobs)?;
        params.default_max_tokens = Some(params.default_max_tokens.unwrap_or(DEFAULT_MAX_TOKENS));
        let choices = prompts.len() as u64 * u64::from(params.n);
        if choices > u64::from(MAX_CHOICES) {
            return Err(WireError::invalid(
                "n",
                format!("{} prompts times n = {} asks for {choices} choices; at most {MAX_CHOICES} are allowed", prompts.len(), params.n),
            ));
        }
        Ok(ValidCompletion {
            model: self.model,
            prompts,
            echo: fields.echo.unwrap_or(false),
            params,
        })
    }
}

/// `prompt`: a string, a list of strings, a list of token ids, or a list of such lists.
fn prompts(value: &Value, n_vocab: u32) -> Result<Vec<PromptInput>, WireError> {
    const SHAPE: &str =
        "expected a string, a list of strings, a list of token ids or a list of lists of token ids";
    match value {
        Value::String(text) => Ok(vec![PromptInput::Text(text.clone())]),
        Value::Array(items) if items.is_empty() => {
            Err(WireError::invalid("prompt", "the prompt list is empty"))
        }
        Value::Array(items) if items.iter().all(Value::is_number) => Ok(vec![PromptInput::Tokens(
            token_ids("prompt", items, n_vocab)?,
        )]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(text) => Ok(PromptInput::Text(text.clone())),
                Value::Array(ids) => Ok(PromptInput::Tokens(token_ids(
                    &format!("prompt[{index}]"),
                    ids,
                    n_vocab,
                )?)),
                _ => Err(WireError::invalid(format!("prompt[{index}]"), SHAPE)),
            })
            .collect(),
        _ => Err(WireError::invalid("prompt", SHAPE)),
    }
}

fn token_ids(param: &str, items: &[Value], n_vocab: u32) -> Result<Vec<TokenId>, WireError> {
    if items.is_empty() {
        return Err(WireError::invalid(
            param,
            "a token prompt needs at least one token",
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            item.as_u64()
                .filter(|id| *id < u64::from(n_vocab))
                .and_then(|id| TokenId::try_from(id).ok())
                .ok_or_else(|| {
                    WireError::invalid(
                        format!("{param}[{index}]"),
                        format!(
                            "{item} is not a token id of this model (0 to {})",
                            n_vocab.saturating_sub(1)
                        ),
                    )
                })
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompletionChoice {
    pub text: String,
    pub index: u32,
    pub logprobs: Option<CompletionLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// A `text_completion`: the whole answer, or one chunk of a stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Completion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<WireUsage>,
}

/// Streamed completions use the same object as whole ones.
pub type CompletionChunk = Completion;

impl Completion {
    pub fn new(
        ids: &ResponseIds,
        choices: Vec<CompletionChoice>,
        usage: Option<WireUsage>,
    ) -> Self {
        Self {
            id: ids.id.clone(),
            object: "text_completion",
            created: ids.created,
            model: ids.model.clone(),
            choices,
            usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(json: &str) -> Result<ValidCompletion, WireError> {
        let limits = ModelLimits {
            n_vocab: 100,
            n_ctx: 64,
            ..ModelLimits::default()
        };
        parse_completion_request(json.as_bytes())?.validate(&limits)
    }

    #[test]
    fn every_prompt_shape_parses() {
        let one = validate(r#"{"model":"m","prompt":"hi"}"#).unwrap();
        assert_eq!(one.prompts, [PromptInput::Text("hi".into())]);
        assert_eq!(one.params.default_max_tokens, Some(16));
        let tokens = validate(r#"{"model":"m","prompt":[1,2]}"#).unwrap();
        assert_eq!(tokens.prompts, [PromptInput::Tokens(vec![1, 2])]);
        let many =
            validate(r#"{"model":"m","prompt":["a",[3]],"n":2,"echo":true,"logprobs":2}"#).unwrap();
        assert_eq!(
            many.prompts,
            [PromptInput::Text("a".into()), PromptInput::Tokens(vec![3])]
        );
        assert!(many.echo);
        assert_eq!(many.params.logprobs, Some(2));
        assert_eq!(many.params.n, 2);
    }

    #[test]
    fn bad_prompts_and_values_name_the_field() {
        let param = |json: &str| {
            validate(json)
                .unwrap_err()
                .param()
                .unwrap_or("-")
                .to_string()
        };
        assert_eq!(param(r#"{"model":"m"}"#), "prompt");
        assert_eq!(param(r#"{"model":"m","prompt":[]}"#), "prompt");
        assert_eq!(param(r#"{"model":"m","prompt":[1,100]}"#), "prompt[1]");
        assert_eq!(
            param(r#"{"model":"m","prompt":["a",[-1]]}"#),
            "prompt[1][0]"
        );
        assert_eq!(
            param(r#"{"model":"m","prompt":"a","logprobs":6}"#),
            "logprobs"
        );
        assert_eq!(
            param(r#"{"model":"m","prompt":"a","max_tokens":-1}"#),
            "max_tokens"
        );
        assert_eq!(param(r#"{"model":"m","prompt":["a","b"],"n":9}"#), "n");
        assert_eq!(
            param(r#"{"model":"m","prompt":"a","suffix":"z"}"#),
            "suffix"
        );
    }
}
