//! `POST /v1/completions`: each prompt gets `n` choices, numbered prompt by prompt.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use moat_openai::{parse_completion_request, GenerationParams};

use crate::extract::RawBody;
use crate::format::{CompletionFormat, Echo};
use crate::generate::{collect, start, Job};
use crate::prompt::{self, PreparedPrompt};
use crate::stream::sse;
use crate::{ApiError, AppState};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/completions", post(completions))
}

async fn completions(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let request = parse_completion_request(&body)?;
    let model = state.model(&request.model)?;
    let completion = request.validate(&model.limits)?;
    let params = &completion.params;
    let with_logprobs = params.logprobs.is_some();
    let prompts =
        prompt::completions(&model, completion.prompts, completion.echo, with_logprobs).await?;
    let (jobs, echoes) = jobs(prompts, params, completion.echo && with_logprobs)?;
    let choices = start(&model.engine, jobs).await?;
    let ids = state.response_ids("cmpl", &completion.model);
    let format = CompletionFormat::new(ids, echoes, with_logprobs);
    if params.stream {
        Ok(sse(choices, format, params.include_usage))
    } else {
        Ok(Json(collect(choices, format).await?).into_response())
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
