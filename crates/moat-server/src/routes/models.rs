//! `GET /v1/models` and `GET /v1/models/{id}` (ids may hold `/` and `:`).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use moat_openai::{Model, ModelList};

use crate::state::unix_now;
use crate::{ApiError, AppState};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/models", get(list))
        .route("/v1/models/{*id}", get(one))
}

fn model(name: String, created: Option<u64>) -> Model {
    Model::new(name, created.unwrap_or_else(unix_now))
}

async fn list(State(state): State<AppState>) -> Json<ModelList> {
    let models = state
        .model_names()
        .into_iter()
        .map(|(name, created)| model(name, created));
    Json(ModelList::new(models.collect()))
}

async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Model>, ApiError> {
    state
        .model_names()
        .into_iter()
        .find(|(name, _)| *name == id)
        .map(|(name, created)| Json(model(name, created)))
        .ok_or_else(|| ApiError::model_not_found(&id))
}
