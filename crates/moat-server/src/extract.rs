//! `RawBody`: a request body read up to the configured limit; a larger one is a 413 in
//! OpenAI's error shape rather than axum's plain-text answer. The body is parsed by
//! moat-openai, whatever the `Content-Type` says, as OpenAI's own API does.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;

use crate::{ApiError, AppState};

pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::body_too_large(state.config().body_limit_bytes))
            }
            Err(rejection) => Err(ApiError::invalid_request(format!(
                "could not read the request body: {}",
                rejection.body_text()
            ))),
        }
    }
}
