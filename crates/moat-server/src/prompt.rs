//! From a validated request to prompt tokens: render the chat template, tokenize, and for
//! `echo` the prompt's text and per-token texts. Template rendering and tokenizing are CPU
//! (and for llama.cpp, FFI) work, so they run on the blocking pool, never on the runtime.

use std::sync::Arc;

use moat_engine::{ChatMessage, Engine, EngineError, Grammar, RenderOptions, Thinking, TokenId};
use moat_openai::PromptInput;

use crate::{ApiError, ServedModel};

/// One completions prompt, tokenized.
pub(crate) struct PreparedPrompt {
    pub tokens: Vec<TokenId>,
    /// The prompt's text, when `echo` wants it back.
    pub echo_text: Option<String>,
    /// Each prompt token's text, when `echo` and `logprobs` want them.
    pub token_texts: Option<Vec<String>>,
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        ApiError::from(EngineError::Internal(format!(
            "prompt preparation failed: {error}"
        )))
    })?
}

/// Tokenizes prompt text with special tokens parsed; BOS is added unless the text (a rendered
/// template, typically) already starts with it.
fn tokenize(engine: &dyn Engine, text: &str) -> Result<Vec<TokenId>, ApiError> {
    let starts_with_bos = engine
        .info()
        .bos_token
        .as_deref()
        .is_some_and(|bos| !bos.is_empty() && text.starts_with(bos));
    let tokens = engine.tokenize(text, !starts_with_bos, true)?;
    if tokens.is_empty() {
        return Err(ApiError::invalid_request("The prompt is empty"));
    }
    Ok(tokens)
}

fn token_text(engine: &dyn Engine, token: TokenId) -> Result<String, ApiError> {
    Ok(String::from_utf8_lossy(&engine.token_bytes(token)?).into_owned())
}

/// A chat's prompt, and what its template says of the model's thinking.
pub(crate) struct ChatPrompt {
    pub(crate) tokens: Vec<TokenId>,
    /// The template writes or reads `<think>` or `</think>`: the model is a reasoning model.
    pub(crate) template_thinks: bool,
    /// The prompt ends inside the thinking (its generation prompt opened `<think>`).
    pub(crate) opens_thinking: bool,
}

impl ChatPrompt {
    /// What the engine is told of the answer's thinking (`moat_openai::answer_thinking`).
    pub(crate) fn thinking(
        &self,
        separates_reasoning: bool,
        grammar: Option<&Grammar>,
        budget: Option<u32>,
    ) -> Option<Thinking> {
        moat_openai::answer_thinking(
            separates_reasoning,
            self.template_thinks,
            self.opens_thinking,
            grammar,
            budget,
        )
    }
}

/// The prompt tokens of a chat: the model's template with the generation prompt (and the
/// tool definitions, when the request has tools, and the request's further template
/// variables), tokenized.
pub(crate) async fn chat(
    model: &Arc<ServedModel>,
    model_name: &str,
    messages: Vec<ChatMessage>,
    tools: Option<serde_json::Value>,
    variables: serde_json::Map<String, serde_json::Value>,
) -> Result<ChatPrompt, ApiError> {
    let model = Arc::clone(model);
    let model_name = model_name.to_string();
    blocking(move || {
        let template = model
            .template
            .as_ref()
            .map_err(|error| ApiError::chat_template(&model_name, error))?;
        let options = RenderOptions {
            add_generation_prompt: true,
            tools,
            extra: variables,
        };
        let text = template
            .render(&messages, &options)
            .map_err(|error| ApiError::chat_template(&model_name, &error))?;
        Ok(ChatPrompt {
            tokens: tokenize(model.engine.as_ref(), &text)?,
            template_thinks: moat_openai::template_thinks(template.source()),
            opens_thinking: moat_openai::prompt_opens_thinking(&text),
        })
    })
    .await
}

/// The prompts of a completions request, tokenized, with what `echo` needs.
pub(crate) async fn completions(
    model: &Arc<ServedModel>,
    prompts: Vec<PromptInput>,
    echo: bool,
    logprobs: bool,
) -> Result<Vec<PreparedPrompt>, ApiError> {
    let model = Arc::clone(model);
    blocking(move || {
        let engine = model.engine.as_ref();
        prompts
            .into_iter()
            .map(|prompt| {
                let (tokens, text) = match prompt {
                    PromptInput::Text(text) => (tokenize(engine, &text)?, Some(text)),
                    PromptInput::Tokens(tokens) => (tokens, None),
                };
                let token_texts = if echo && logprobs {
                    Some(
                        tokens
                            .iter()
                            .map(|token| token_text(engine, *token))
                            .collect::<Result<Vec<_>, _>>()?,
                    )
                } else {
                    None
                };
                let echo_text = match (echo, text) {
                    (false, _) => None,
                    (true, Some(text)) => Some(text),
                    (true, None) => Some(match &token_texts {
                        Some(texts) => texts.concat(),
                        None => detokenize(engine, &tokens)?,
                    }),
                };
                Ok(PreparedPrompt {
                    tokens,
                    echo_text,
                    token_texts,
                })
            })
            .collect()
    })
    .await
}

fn detokenize(engine: &dyn Engine, tokens: &[TokenId]) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    for token in tokens {
        bytes.extend(engine.token_bytes(*token)?);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(template_thinks: bool, opens_thinking: bool) -> ChatPrompt {
        ChatPrompt {
            tokens: vec![1],
            template_thinks,
            opens_thinking,
        }
    }

    #[test]
    fn the_engine_hears_of_thinking_only_where_a_model_thinks_or_it_is_read() {
        let schema = Grammar::json_object();
        assert_eq!(
            prompt(false, false).thinking(false, Some(&schema), Some(4)),
            None
        );
        let read = prompt(false, false).thinking(true, None, Some(4)).unwrap();
        assert_eq!(
            (read.opened, read.budget, read.grammar_after),
            (false, Some(4), false)
        );
        // `reasoning_format: none` on a thinking model: bounded without a grammar; a grammar
        // holds all of the answer, and no budget cuts into it.
        let inline = prompt(true, true).thinking(false, None, Some(2)).unwrap();
        assert_eq!(
            (inline.opened, inline.budget, inline.grammar_after),
            (true, Some(2), false)
        );
        let held = prompt(true, true)
            .thinking(false, Some(&schema), Some(2))
            .unwrap();
        assert_eq!((held.budget, held.grammar_after), (None, false));
        let scripted = Grammar::Choice(vec!["a</think>b".into()]);
        let scripted = prompt(true, true)
            .thinking(true, Some(&scripted), Some(2))
            .unwrap();
        assert_eq!((scripted.budget, scripted.grammar_after), (None, false));
        assert_eq!(
            (inline.open.as_str(), inline.close.as_str()),
            ("<think>", "</think>")
        );
    }

    #[test]
    fn a_grammar_from_the_first_token_waits_for_the_thinking_unless_it_writes_it() {
        let thinker = prompt(true, false);
        let waits = |grammar: &Grammar| {
            thinker
                .thinking(true, Some(grammar), None)
                .unwrap()
                .grammar_after
        };
        assert!(waits(&Grammar::json_object()));
        assert!(waits(&Grammar::Choice(vec!["yes".into()])));
        assert!(waits(&Grammar::Tagged {
            schema: "{}".into(),
            open: "<tool_call>\n".into(),
            close: "\n</tool_call>".into(),
            many: false,
            lazy: false,
        }));
        assert!(!waits(&Grammar::Choice(vec!["hm</think>yes".into()])));
        // A lazy grammar (tools on `auto`) waits for its own tag anyway.
        assert!(!waits(&Grammar::Tagged {
            schema: "{}".into(),
            open: "<tool_call>\n".into(),
            close: "\n</tool_call>".into(),
            many: false,
            lazy: true,
        }));
    }
}
