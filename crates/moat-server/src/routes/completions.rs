//! `POST /v1/completions`: each prompt gets `n` choices, numbered prompt by prompt.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Extension;
use axum::Router;
use moat_openai::{parse_completion_request, GenerationParams, PromptInput};

use crate::extract::RawBody;
use crate::format::{CompletionFormat, Echo};
use crate::generate::{collect, start, Job};
use crate::guarding::{self, Watch};
use crate::prompt::{self, PreparedPrompt};
use crate::stream::{pieces, Answer};
use crate::trust::Caller;
use crate::{ApiError, AppState};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/completions", post(completions))
}

async fn completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    Ok(local_completions(&state, &caller, &body, false)
        .await?
        .into_response())
}

/// A completions request answered by this node's engines. `open_ended`: a request without
/// `max_tokens` generates until the model stops or the context is full, as Ollama's raw
/// `/api/generate` does, instead of OpenAI's 16 tokens (a manifest's `max_tokens` still
/// applies).
pub(crate) async fn local_completions(
    state: &AppState,
    caller: &Caller,
    body: &[u8],
    open_ended: bool,
) -> Result<Answer, ApiError> {
    let request = parse_completion_request(body)?;
    caller.authorize(&request.model, &request.model)?;
    let guard = state
        .trust()
        .guard_for(caller.key.as_ref(), &request.model)?;
    let model = state.model(&request.model)?;
    caller.ticket.answered_by(&request.model, true);
    let mut completion = request.validate(&model.limits)?;
    if open_ended {
        completion.params.default_max_tokens = model.limits.defaults.max_tokens;
    }
    caller.ticket.set_prompt(|| {
        completion
            .prompts
            .iter()
            .filter_map(|p| match p {
                PromptInput::Text(text) => Some(text.as_str()),
                PromptInput::Tokens(_) => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    // One placeholder map per prompt, to restore in that prompt's choices.
    let mut redactions: Vec<Option<Arc<moat_guard::RedactionMap>>> = Vec::new();
    if let Some(guard) = &guard {
        for prompt in &mut completion.prompts {
            let PromptInput::Text(text) = prompt else {
                return Err(ApiError::invalid_request(
                    "this model's guard policy checks text: send the prompt as text, not token ids",
                )
                .with_param("prompt"));
            };
            let map = guarding::prompt_input(guard, text, &caller.ticket)?;
            redactions.push(state.trust().restore_redactions().then(|| Arc::new(map)));
        }
    }
    let params = &completion.params;
    let with_logprobs = params.logprobs.is_some();
    let prompts =
        prompt::completions(&model, completion.prompts, completion.echo, with_logprobs).await?;
    let (jobs, echoes) =
        jobs(prompts, params, completion.echo && with_logprobs).map_err(about_the_prompt)?;
    let prompt_tokens: u64 = jobs
        .iter()
        .filter(|job| job.first_of_prompt)
        .map(|job| match &job.request.prompt {
            moat_engine::Prompt::Tokens(tokens) => tokens.len() as u64,
            // Not produced here (prompts are tokenized first); bytes bound the tokens.
            moat_engine::Prompt::Text(text) => text.len() as u64,
        })
        .sum();
    let reserved = prompt_tokens
        + jobs
            .iter()
            .map(|job| u64::from(job.request.stop.max_tokens))
            .sum::<u64>();
    caller.admit(state.trust(), prompt_tokens, reserved)?;
    let mut choices = start(&model.engine, jobs, params.grammar_field)
        .await
        .map_err(about_the_prompt)?;
    let n = params.n.max(1);
    for (choice, index) in choices.iter_mut().zip(0u32..) {
        let restore = redactions.get((index / n) as usize).cloned().flatten();
        choice.watch(Watch::new(caller.ticket.clone(), guard.as_ref(), restore));
    }
    let ids = state.response_ids("cmpl", &completion.model);
    let format = CompletionFormat::new(ids, echoes, with_logprobs);
    if params.stream {
        Ok(Answer::Stream(pieces(
            choices,
            format,
            params.include_usage,
            None,
        )))
    } else {
        let whole = collect(choices, format).await?;
        Ok(Answer::Whole(
            serde_json::to_value(whole).unwrap_or_default(),
        ))
    }
}

/// A completion request has a `prompt`, not `messages`: a context overflow names that field.
fn about_the_prompt(error: ApiError) -> ApiError {
    if error.code == Some("context_length_exceeded") {
        error.with_param("prompt")
    } else {
        error
    }
}

/// `n` generations per prompt, numbered prompt by prompt, each with what it echoes.
fn jobs(
    prompts: Vec<PreparedPrompt>,
    params: &GenerationParams,
    prompt_logprobs: bool,
) -> Result<(Vec<Job>, Vec<Option<Echo>>), ApiError> {
    let mut jobs = Vec::new();
    let mut echoes = Vec::new();
    for (prompt, prompt_index) in prompts.into_iter().zip(0u32..) {
        for choice in 0..params.n {
            let request =
                params.generate_request(prompt.tokens.clone(), choice, prompt_logprobs)?;
            jobs.push(Job::new(
                prompt_index * params.n + choice,
                choice == 0,
                request,
            ));
            echoes.push(prompt.echo_text.clone().map(|text| Echo {
                text,
                token_texts: prompt.token_texts.clone(),
            }));
        }
    }
    Ok((jobs, echoes))
}
