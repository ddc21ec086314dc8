//! `POST /v1/chat/completions`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use moat_openai::parse_chat_request;

use crate::extract::RawBody;
use crate::format::ChatFormat;
use crate::generate::{collect, start, Job};
use crate::stream::sse;
use crate::{prompt, ApiError, AppState};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/chat/completions", post(chat))
}

async fn chat(State(state): State<AppState>, RawBody(body): RawBody) -> Result<Response, ApiError> {
    let request = parse_chat_request(&body)?;
    let model = state.model(&request.model)?;
    let chat = request.validate(&model.limits)?;
    let tokens = prompt::chat(&model, &chat.model, chat.messages).await?;
    let params = &chat.params;
    let jobs = (0..params.n)
        .map(|index| {
            let request = params.generate_request(tokens.clone(), index, false)?;
            Ok(Job::new(index, index == 0, request))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let choices = start(&model.engine, jobs).await?;
    let ids = state.response_ids("chatcmpl", &chat.model);
    let format = ChatFormat::new(ids, params.n, params.logprobs.is_some());
    if params.stream {
        Ok(sse(choices, format, params.include_usage))
    } else {
        Ok(Json(collect(choices, format).await?).into_response())
    }
}
