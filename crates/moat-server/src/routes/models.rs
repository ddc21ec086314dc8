//! `GET /v1/models` and `GET /v1/models/{id}` (ids may hold `/` and `:`): the chat models, the
//! embedding models (`"type": "embedding"`) and the aliases (`"type": "alias"`, with the model
//! they stand for and the knowledge base they are grounded in; a gateway alias, routed to
//! targets, names no single model).

use axum::extract::State;
use axum::routing::get;
use axum::Extension;
use axum::{Json, Router};
use moat_openai::Model;
use serde::Serialize;

use crate::extract::PathParams;
use crate::state::unix_now;
use crate::trust::Caller;
use crate::{ApiError, AppState};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/models", get(list))
        .route("/v1/models/{*id}", get(one))
}

/// One entry: OpenAI's fields plus what moat adds.
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    model: Model,
    /// `chat`, `embedding` or `alias`.
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    alias_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    knowledge_base: Option<String>,
}

#[derive(Serialize)]
struct Listing {
    object: &'static str,
    data: Vec<Listed>,
}

/// Every entry the caller's key may use (a key scoped to some models sees only those).
fn entries(state: &AppState, caller: &Caller) -> Vec<Listed> {
    let mut all = all_entries(state);
    all.retain(|entry| caller.may_see(&entry.model.id));
    all
}

fn all_entries(state: &AppState) -> Vec<Listed> {
    let mut out: Vec<Listed> = state
        .model_names()
        .into_iter()
        .map(|(name, created)| Listed {
            model: Model::new(name, created.unwrap_or_else(unix_now)),
            kind: "chat",
            alias_of: None,
            knowledge_base: None,
        })
        .collect();
    let knowledge = &state.knowledge().config;
    out.extend(knowledge.embedding_models.iter().map(|name| Listed {
        model: Model::new(name.clone(), unix_now()),
        kind: "embedding",
        alias_of: None,
        knowledge_base: None,
    }));
    out.extend(knowledge.aliases.iter().map(|(name, alias)| Listed {
        model: Model::new(name.clone(), unix_now()),
        kind: "alias",
        alias_of: Some(alias.model.clone()),
        knowledge_base: alias.knowledge_base.as_ref().map(|kb| kb.name.clone()),
    }));
    if let Some(gateway) = state.gateway() {
        out.extend(gateway.aliases().into_iter().map(|name| Listed {
            model: Model::new(name, unix_now()),
            kind: "alias",
            alias_of: None,
            knowledge_base: None,
        }));
    }
    out
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Listing> {
    Json(Listing {
        object: "list",
        data: entries(&state, &caller),
    })
}

async fn one(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams(id): PathParams<String>,
) -> Result<Json<Listed>, ApiError> {
    entries(&state, &caller)
        .into_iter()
        .find(|entry| entry.model.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::model_not_found(&id))
}
