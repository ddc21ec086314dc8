//! The generation fields chat and completions share (sampling, stop, lengths, n, streaming),
//! checked against their ranges and the model, and turned into the engine's `ValidGenerate`.

use std::collections::BTreeMap;

use moat_engine::{Grammar, Prompt, SamplingParams, StopConditions, TokenId, ValidGenerate};
use moat_types::SamplingDefaults;
use serde::Deserialize;
use serde_json::Value;

use crate::parse::string_or_list;
use crate::WireError;

/// Most choices one request may ask for (`n`, and prompts times `n` on completions).
pub const MAX_CHOICES: u32 = 16;
/// Most stop strings one request may give.
pub const MAX_STOP_STRINGS: usize = 16;
/// Most `logit_bias` entries one request may give (OpenAI's limit).
const MAX_LOGIT_BIAS: usize = 300;
/// Window the presence, frequency and repetition penalties look at.
const PENALTY_LAST_N: u32 = 64;

/// What the server knows of a model that validation needs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelLimits {
    pub n_vocab: u32,
    /// Context per sequence: prompt plus completion.
    pub n_ctx: u32,
    /// The manifest's sampling defaults, used where a request leaves a field out.
    pub defaults: SamplingDefaults,
    /// The manifest's system prompt, used when a chat has no system message.
    pub system_prompt: Option<String>,
}

/// Generation settings of one request, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationParams {
    pub sampling: SamplingParams,
    /// What the client asked for; prompt plus this must fit the context.
    pub max_tokens: Option<u32>,
    /// The model's default when the client gave none; cut to what the context leaves.
    pub default_max_tokens: Option<u32>,
    pub stop: Vec<String>,
    /// Generations per prompt.
    pub n: u32,
    pub stream: bool,
    /// Send a last chunk with usage (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Alternatives per generated token, when logprobs were asked for.
    pub logprobs: Option<u8>,
    pub n_ctx: u32,
    /// What the output must follow (`response_format`, or `guided_json`, `guided_choice`,
    /// `json_schema`, or the calls of `tools`).
    pub grammar: Option<Grammar>,
    /// The request field the grammar came from, for an error about it (`response_format` when
    /// there is none).
    pub grammar_field: &'static str,
}

/// The shared fields as sent.
#[derive(Default, Deserialize)]
pub(crate) struct SamplingFields {
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i64>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    logit_bias: Option<BTreeMap<String, f32>>,
    seed: Option<i64>,
    stop: Option<Value>,
    n: Option<i64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    response_format: Option<Value>,
    guided_json: Option<Value>,
    guided_choice: Option<Value>,
    json_schema: Option<Value>,
}

#[derive(Default, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

fn in_range(param: &str, value: f32, low: f32, high: f32) -> Result<f32, WireError> {
    if value.is_finite() && (low..=high).contains(&value) {
        Ok(value)
    } else {
        Err(WireError::invalid(
            param,
            format!("{value} is out of range: expected {low} to {high}"),
        ))
    }
}

fn positive_up_to(param: &str, value: f32, high: f32) -> Result<f32, WireError> {
    if value.is_finite() && value > 0.0 && value <= high {
        Ok(value)
    } else {
        Err(WireError::invalid(
            param,
            format!("{value} is out of range: expected more than 0 and at most {high}"),
        ))
    }
}

/// Checks a token count field (`max_tokens`): `minimum` or more.
pub(crate) fn token_count(
    param: &str,
    value: Option<i64>,
    minimum: i64,
) -> Result<Option<u32>, WireError> {
    match value {
        None => Ok(None),
        Some(count) if count >= minimum => u32::try_from(count)
            .map(Some)
            .map_err(|_| WireError::invalid(param, format!("{count} is too large"))),
        Some(count) => Err(WireError::invalid(
            param,
            format!("{count} is out of range: expected {minimum} or more"),
        )),
    }
}

/// The `n` field.
fn choices(value: Option<i64>) -> Result<u32, WireError> {
    match value {
        None => Ok(1),
        Some(n) if (1..=i64::from(MAX_CHOICES)).contains(&n) => Ok(n as u32),
        Some(n) => Err(WireError::invalid(
            "n",
            format!("{n} is out of range: expected 1 to {MAX_CHOICES}"),
        )),
    }
}

fn logit_bias(
    entries: Option<BTreeMap<String, f32>>,
    n_vocab: u32,
) -> Result<Vec<(TokenId, f32)>, WireError> {
    let entries = entries.unwrap_or_default();
    if entries.len() > MAX_LOGIT_BIAS {
        return Err(WireError::invalid(
            "logit_bias",
            format!(
                "{} entries; at most {MAX_LOGIT_BIAS} are allowed",
                entries.len()
            ),
        ));
    }
    entries
        .into_iter()
        .map(|(key, bias)| {
            let param = format!("logit_bias.{key}");
            let token = key
                .parse::<u32>()
                .ok()
                .filter(|token| *token < n_vocab)
                .and_then(|token| TokenId::try_from(token).ok())
                .ok_or_else(|| {
                    WireError::invalid(
                        &param,
                        format!(
                            "'{key}' is not a token id of this model (0 to {})",
                            n_vocab.saturating_sub(1)
                        ),
                    )
                })?;
            Ok((token, in_range(&param, bias, -100.0, 100.0)?))
        })
        .collect()
}

fn stop_strings(value: Option<&Value>, defaults: &[String]) -> Result<Vec<String>, WireError> {
    let Some(value) = value.filter(|value| !value.is_null()) else {
        return Ok(defaults.to_vec());
    };
    let stop = string_or_list("stop", value)?;
    if stop.len() > MAX_STOP_STRINGS {
        return Err(WireError::invalid(
            "stop",
            format!(
                "{} strings; at most {MAX_STOP_STRINGS} are allowed",
                stop.len()
            ),
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(WireError::invalid("stop", "stop strings must not be empty"));
    }
    Ok(stop)
}

/// Sampling settings: each field from the request, else the model's default, else OpenAI's.
fn sampling(fields: &SamplingFields, limits: &ModelLimits) -> Result<SamplingParams, WireError> {
    let defaults = &limits.defaults;
    let neutral = SamplingParams::default();
    let top_k = match fields.top_k {
        None => defaults.top_k.unwrap_or(neutral.top_k),
        Some(-1 | 0) => 0,
        Some(k) if k > 0 => u32::try_from(k).unwrap_or(u32::MAX),
        Some(k) => {
            return Err(WireError::invalid(
                "top_k",
                format!("{k} is out of range: expected -1, 0 (off) or more"),
            ))
        }
    };
    Ok(SamplingParams {
        temperature: match fields.temperature {
            Some(t) => in_range("temperature", t, 0.0, 2.0)?,
            None => defaults.temperature.unwrap_or(neutral.temperature),
        },
        top_p: match fields.top_p {
            Some(p) => positive_up_to("top_p", p, 1.0)?,
            None => defaults.top_p.unwrap_or(neutral.top_p),
        },
        top_k,
        min_p: match fields.min_p {
            Some(p) => in_range("min_p", p, 0.0, 1.0)?,
            None => defaults.min_p.unwrap_or(neutral.min_p),
        },
        repeat_penalty: match fields.repetition_penalty {
            Some(p) => positive_up_to("repetition_penalty", p, 10.0)?,
            None => defaults.repeat_penalty.unwrap_or(neutral.repeat_penalty),
        },
        presence_penalty: match fields.presence_penalty {
            Some(p) => in_range("presence_penalty", p, -2.0, 2.0)?,
            None => neutral.presence_penalty,
        },
        frequency_penalty: match fields.frequency_penalty {
            Some(p) => in_range("frequency_penalty", p, -2.0, 2.0)?,
            None => neutral.frequency_penalty,
        },
        penalty_last_n: PENALTY_LAST_N,
        logit_bias: Vec::new(),
        // Negative seeds are valid in OpenAI's API; their bits make a u64 seed.
        seed: fields.seed.map(|seed| seed as u64),
    })
}

impl SamplingFields {
    /// Validates the shared fields; `max_tokens` and `logprobs` differ between the two APIs
    /// and come in checked.
    pub(crate) fn validate(
        mut self,
        limits: &ModelLimits,
        max_tokens: Option<u32>,
        logprobs: Option<u8>,
    ) -> Result<GenerationParams, WireError> {
        let mut sampling = sampling(&self, limits)?;
        sampling.logit_bias = logit_bias(self.logit_bias.take(), limits.n_vocab)?;
        let stream = self.stream.unwrap_or(false);
        let include_usage = match self.stream_options.take() {
            Some(_) if !stream => {
                return Err(WireError::invalid(
                    "stream_options",
                    "stream_options is only allowed when stream is true",
                ))
            }
            Some(options) => options.include_usage.unwrap_or(false),
            None => false,
        };
        let grammar = crate::guided::grammar(
            crate::response_format::parse(self.response_format.as_ref())?,
            crate::guided::Guided {
                guided_json: self.guided_json.as_ref(),
                guided_choice: self.guided_choice.as_ref(),
                json_schema: self.json_schema.as_ref(),
            },
        )?;
        Ok(GenerationParams {
            sampling,
            max_tokens,
            default_max_tokens: limits.defaults.max_tokens,
            stop: stop_strings(self.stop.as_ref(), &limits.defaults.stop)?,
            n: choices(self.n)?,
            stream,
            include_usage,
            logprobs,
            n_ctx: limits.n_ctx,
            grammar_field: grammar
                .as_ref()
                .map_or("response_format", |(_, field)| field),
            grammar: grammar.map(|(grammar, _)| grammar),
        })
    }
}

impl GenerationParams {
    /// The engine request for choice `choice` (0-based) of a prompt already tokenized.
    /// Prompt plus the requested completion must fit the context: a clear error, never a
    /// silent cut. Choice `i` of a seeded request uses `seed + i`, so `n` choices differ but
    /// each is reproducible.
    pub fn generate_request(
        &self,
        prompt: Vec<TokenId>,
        choice: u32,
        prompt_logprobs: bool,
    ) -> Result<ValidGenerate, WireError> {
        let prompt_tokens = u32::try_from(prompt.len()).unwrap_or(u32::MAX);
        let room = self.n_ctx.saturating_sub(prompt_tokens);
        let max_tokens = match self.max_tokens {
            Some(requested) if requested > room || (requested > 0 && room == 0) => {
                return Err(WireError::ContextExceeded {
                    prompt_tokens,
                    completion_tokens: requested,
                    n_ctx: self.n_ctx,
                })
            }
            Some(requested) => requested,
            None if room == 0 => {
                return Err(WireError::ContextExceeded {
                    prompt_tokens,
                    completion_tokens: 1,
                    n_ctx: self.n_ctx,
                })
            }
            None => self.default_max_tokens.unwrap_or(room).min(room),
        };
        let mut sampling = self.sampling.clone();
        sampling.seed = sampling
            .seed
            .map(|seed| seed.wrapping_add(u64::from(choice)));
        Ok(ValidGenerate {
            prompt: Prompt::Tokens(prompt),
            sampling,
            stop: StopConditions {
                max_tokens,
                stop_strings: self.stop.clone(),
                ignore_eos: false,
            },
            logprobs: self.logprobs,
            prompt_logprobs,
            deadline: None,
            grammar: self.grammar.clone(),
            thinking: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ModelLimits {
        ModelLimits {
            n_vocab: 100,
            n_ctx: 10,
            ..ModelLimits::default()
        }
    }

    fn fields(json: &str) -> SamplingFields {
        serde_json::from_str(json).unwrap()
    }

    fn error_param(json: &str) -> String {
        let error = fields(json).validate(&limits(), None, None).unwrap_err();
        error.param().unwrap_or_default().to_string()
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        assert_eq!(error_param(r#"{"temperature": 2.5}"#), "temperature");
        assert_eq!(error_param(r#"{"top_p": 0}"#), "top_p");
        assert_eq!(error_param(r#"{"top_k": -2}"#), "top_k");
        assert_eq!(error_param(r#"{"min_p": 1.5}"#), "min_p");
        assert_eq!(
            error_param(r#"{"presence_penalty": -3}"#),
            "presence_penalty"
        );
        assert_eq!(
            error_param(r#"{"frequency_penalty": 3}"#),
            "frequency_penalty"
        );
        assert_eq!(
            error_param(r#"{"repetition_penalty": 0}"#),
            "repetition_penalty"
        );
        assert_eq!(error_param(r#"{"n": 0}"#), "n");
        assert_eq!(error_param(r#"{"n": 17}"#), "n");
        assert_eq!(
            error_param(r#"{"logit_bias": {"100": 1}}"#),
            "logit_bias.100"
        );
        assert_eq!(error_param(r#"{"logit_bias": {"x": 1}}"#), "logit_bias.x");
        assert_eq!(error_param(r#"{"logit_bias": {"5": 101}}"#), "logit_bias.5");
        assert_eq!(error_param(r#"{"stop": ["a", ""]}"#), "stop");
        assert_eq!(error_param(r#"{"stop": 5}"#), "stop");
        assert_eq!(
            error_param(r#"{"stream_options": {"include_usage": true}}"#),
            "stream_options"
        );
    }

    #[test]
    fn defaults_fill_what_the_request_leaves_out() {
        let mut limits = limits();
        limits.defaults.temperature = Some(0.2);
        limits.defaults.stop = vec!["END".into()];
        let params = fields(r#"{"top_p": 0.5, "seed": -1}"#)
            .validate(&limits, None, None)
            .unwrap();
        assert_eq!(params.sampling.temperature, 0.2);
        assert_eq!(params.sampling.top_p, 0.5);
        assert_eq!(params.sampling.seed, Some(u64::MAX));
        assert_eq!(params.stop, ["END"]);
        let params = fields(r#"{"stop": "x", "temperature": 0}"#)
            .validate(&limits, None, None)
            .unwrap();
        assert_eq!(params.sampling.temperature, 0.0);
        assert_eq!(params.stop, ["x"]);
    }

    #[test]
    fn prompt_and_completion_must_fit_the_context() {
        let params = fields("{}").validate(&limits(), Some(4), None).unwrap();
        assert_eq!(
            params
                .generate_request(vec![1; 6], 0, false)
                .unwrap()
                .stop
                .max_tokens,
            4
        );
        assert!(matches!(
            params.generate_request(vec![1; 7], 0, false),
            Err(WireError::ContextExceeded {
                prompt_tokens: 7,
                completion_tokens: 4,
                n_ctx: 10
            })
        ));
        let open = fields("{}").validate(&limits(), None, None).unwrap();
        assert_eq!(
            open.generate_request(vec![1; 7], 0, false)
                .unwrap()
                .stop
                .max_tokens,
            3
        );
        assert!(open.generate_request(vec![1; 10], 0, false).is_err());
        let scoring = fields("{}").validate(&limits(), Some(0), None).unwrap();
        assert_eq!(
            scoring
                .generate_request(vec![1; 10], 0, true)
                .unwrap()
                .stop
                .max_tokens,
            0
        );
    }

    #[test]
    fn each_choice_gets_its_own_seed() {
        let params = fields(r#"{"seed": 7, "n": 2}"#)
            .validate(&limits(), None, None)
            .unwrap();
        let seeds: Vec<_> = (0..2)
            .map(|i| {
                params
                    .generate_request(vec![1], i, false)
                    .unwrap()
                    .sampling
                    .seed
            })
            .collect();
        assert_eq!(seeds, [Some(7), Some(8)]);
    }
}
