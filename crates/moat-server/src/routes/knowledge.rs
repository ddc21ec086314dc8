//! Knowledge bases over HTTP (a moat extension; OpenAI has no such API):
//!
//! - `POST /v1/knowledge_bases` `{name, embed_model}` creates one (409 if the name is taken);
//! - `GET /v1/knowledge_bases`, `GET /v1/knowledge_bases/{name}` (with its documents),
//!   `DELETE /v1/knowledge_bases/{name}`;
//! - `POST /v1/knowledge_bases/{name}/documents` adds documents: `multipart/form-data` file
//!   parts (the file name is the document path; `tag` text fields tag them all), or JSON
//!   `{path, content, encoding?: "base64", tags?}` or an array of such objects. Each document
//!   gets its own result (`added`, `updated`, `unchanged` or `failed` with the reason);
//! - `DELETE /v1/knowledge_bases/{name}/documents/{*path}`;
//! - `POST /v1/knowledge_bases/{name}/query` `{query, top_k, mode, path_glob, tags,
//!   min_score}`, or `{vector, ...}` to search with an embedding of your own.
//!
//! A missing knowledge base is a 404; bad parameters and a vector of the wrong dimension 400.
//! Store and model work runs on the blocking pool.
//!
//! Once API keys exist, changing knowledge (creating or deleting a knowledge base, adding or
//! removing documents) needs an admin key (403 `admin_required` otherwise); listing, showing
//! and querying need any valid key.

use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use base64::Engine as _;
use moat_engine::Embedder;
use moat_rag::{ingest_bytes, retrieve_counted, DocumentOutcome, IdentityReranker, IngestOptions};
use moat_vector::{DocumentInfo, KbInfo, KbSpec, Location, VectorStore};
use serde::{Deserialize, Serialize};

use crate::extract::{PathParams, RawBody};
use crate::knowledge::retrieve_params;
use crate::trust::Caller;
use crate::{ApiError, AppState};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/knowledge_bases", post(create).get(list))
        .route("/v1/knowledge_bases/{name}", get(show).delete(remove))
        .route("/v1/knowledge_bases/{name}/documents", post(add_documents))
        .route(
            "/v1/knowledge_bases/{name}/documents/{*path}",
            delete(remove_document),
        )
        .route("/v1/knowledge_bases/{name}/query", post(query))
        .route_layer(middleware::from_fn(admin_for_changes))
}

/// Refuses a change to knowledge by a key that is not an admin key.
async fn admin_for_changes(request: Request, next: Next) -> Result<Response, ApiError> {
    let changes = matches!(*request.method(), Method::POST | Method::DELETE)
        && !request.uri().path().ends_with("/query");
    if changes {
        let caller = request.extensions().get::<Caller>();
        if let Some(key) = caller.and_then(|caller| caller.key.as_ref()) {
            if !key.scopes.admin {
                if let Some(caller) = caller {
                    caller.ticket.deny("auth.admin_required");
                }
                return Err(ApiError::admin_required(format!(
                    "API key {} may not change knowledge bases: that needs an admin key",
                    key.prefix
                )));
            }
        }
    }
    Ok(next.run(request).await)
}

/// Runs store or model work on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        ApiError::from(moat_engine::EngineError::Internal(format!(
            "a knowledge task failed: {error}"
        )))
    })?
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid_request(format!("invalid request body: {error}")))
}

#[derive(Serialize)]
struct KbBody {
    object: &'static str,
    name: String,
    embed_model: String,
    dimension: u32,
    documents: u64,
    chunks: u64,
    created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    document_list: Option<Vec<DocumentInfo>>,
}

impl KbBody {
    fn new(info: KbInfo, documents: Option<Vec<DocumentInfo>>) -> Self {
        Self {
            object: "knowledge_base",
            name: info.name,
            embed_model: info.embed_model,
            dimension: info.dimension,
            documents: info.documents,
            chunks: info.chunks,
            created_at: info.created_at,
            document_list: documents,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
    embed_model: String,
}

async fn create(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let request: CreateRequest = parse(&body)?;
    moat_vector::validate_kb_name(&request.name)?;
    let store = state.knowledge().store()?;
    let embedder = state.knowledge().embedder(&request.embed_model).await?;
    let info = blocking(move || {
        let spec = KbSpec {
            name: request.name,
            embed_model: embedder.info().model.clone(),
            dimension: embedder.info().dimension,
        };
        Ok(store.create_kb(&spec)?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(KbBody::new(info, None))).into_response())
}

#[derive(Serialize)]
struct KbList {
    object: &'static str,
    data: Vec<KbBody>,
}

async fn list(State(state): State<AppState>) -> Result<Json<KbList>, ApiError> {
    let store = state.knowledge().store()?;
    let kbs = blocking(move || Ok(store.list_kbs()?)).await?;
    Ok(Json(KbList {
        object: "list",
        data: kbs.into_iter().map(|kb| KbBody::new(kb, None)).collect(),
    }))
}

async fn show(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<KbBody>, ApiError> {
    let store = state.knowledge().store()?;
    let (info, documents) = blocking(move || {
        let info = store.kb(&name)?;
        let documents = store.documents(&name)?;
        Ok((info, documents))
    })
    .await?;
    Ok(Json(KbBody::new(info, Some(documents))))
}

async fn remove(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store = state.knowledge().store()?;
    let id = name.clone();
    blocking(move || Ok(store.delete_kb(&name)?)).await?;
    Ok(Json(serde_json::json!({
        "id": id, "object": "knowledge_base.deleted", "deleted": true
    })))
}

async fn remove_document(
    State(state): State<AppState>,
    PathParams((name, path)): PathParams<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store = state.knowledge().store()?;
    let key = path.clone();
    let removed = blocking(move || Ok(store.remove_document(&name, &key)?)).await?;
    if !removed {
        return Err(ApiError::not_found(
            format!("knowledge base has no document {path:?}"),
            "document_not_found",
        ));
    }
    Ok(Json(serde_json::json!({
        "path": path, "object": "knowledge_base.document.deleted", "deleted": true
    })))
}

/// The store and the knowledge base's own embedder.
async fn kb_and_embedder(
    state: &AppState,
    name: &str,
) -> Result<(Arc<dyn VectorStore>, Arc<dyn Embedder>), ApiError> {
    let store = state.knowledge().store()?;
    let lookup = Arc::clone(&store);
    let kb_name = name.to_owned();
    let info = blocking(move || Ok(lookup.kb(&kb_name)?)).await?;
    let embedder = state.knowledge().embedder(&info.embed_model).await?;
    Ok((store, embedder))
}

/// One document to add.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadJson {
    path: String,
    content: String,
    encoding: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum UploadBody {
    One(UploadJson),
    Many(Vec<UploadJson>),
}

struct Upload {
    path: String,
    bytes: Vec<u8>,
    tags: Vec<String>,
}

#[derive(Serialize)]
struct DocumentResult {
    path: String,
    /// `added`, `updated`, `unchanged` or `failed`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    chunks: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A document path from a client: relative, `/`-separated, no `.` or `..` segments.
fn check_document_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && path.len() <= 1024
        && !path.starts_with('/')
        && !path.contains(['\\', '\0'])
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid document path {path:?}: use a relative path such as docs/guide.md, \
             without '.', '..', '\\\\' or empty segments"
        ))
    }
}

async fn uploads_from_multipart(
    request: Request,
    state: &AppState,
) -> Result<Vec<Upload>, ApiError> {
    let (request, idle) = crate::extract::with_idle_timeout(request, state);
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|rejection| {
            ApiError::invalid_request(format!("invalid multipart body: {rejection}"))
        })?;
    let mut files = Vec::new();
    let mut tags = Vec::new();
    let too_large = |error: axum::extract::multipart::MultipartError| {
        if idle.timed_out() {
            idle.error()
        } else if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::body_too_large(state.config().body_limit_bytes)
        } else {
            ApiError::invalid_request(format!("invalid multipart body: {error}"))
        }
    };
    while let Some(field) = multipart.next_field().await.map_err(too_large)? {
        let file_name = field.file_name().map(str::to_owned);
        let field_name = field.name().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(too_large)?;
        match file_name {
            Some(path) => files.push(Upload {
                path,
                bytes: bytes.to_vec(),
                tags: Vec::new(),
            }),
            None if field_name == "tag" || field_name == "tags" => {
                tags.push(String::from_utf8_lossy(&bytes).into_owned());
            }
            None => {
                return Err(ApiError::invalid_request(format!(
                    "unexpected form field {field_name:?}: send files (with a file name) and \
                     `tag` fields"
                )))
            }
        }
    }
    // Every file gets every tag: the count is checked before the copies are made, so many
    // tags times many files cannot take the memory the product would.
    if tags.len() > moat_vector::validate::MAX_TAGS {
        return Err(ApiError::invalid_request(format!(
            "{} tag fields; the limit is {}",
            tags.len(),
            moat_vector::validate::MAX_TAGS
        )));
    }
    for file in &mut files {
        file.tags.clone_from(&tags);
    }
    Ok(files)
}

fn uploads_from_json(body: &[u8]) -> Result<Vec<Upload>, ApiError> {
    let parsed: UploadBody = parse(body)?;
    let items = match parsed {
        UploadBody::One(one) => vec![one],
        UploadBody::Many(many) => many,
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let bytes = match item.encoding.as_deref() {
                None | Some("utf-8") | Some("text") => item.content.into_bytes(),
                Some("base64") => base64::engine::general_purpose::STANDARD
                    .decode(item.content.trim())
                    .map_err(|error| {
                        ApiError::invalid_request(format!(
                            "document {index} ({}): content is not valid base64: {error}",
                            item.path
                        ))
                        .with_param("content")
                    })?,
                Some(other) => {
                    return Err(ApiError::invalid_request(format!(
                        "document {index}: encoding is {other:?}; use \"base64\" or leave it out"
                    ))
                    .with_param("encoding"))
                }
            };
            Ok(Upload {
                path: item.path,
                bytes,
                tags: item.tags,
            })
        })
        .collect()
}

async fn add_documents(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let uploads = if multipart {
        uploads_from_multipart(request, &state).await?
    } else {
        let RawBody(body) = RawBody::from_request(request, &state).await?;
        uploads_from_json(&body)?
    };
    if uploads.is_empty() {
        return Err(ApiError::invalid_request("no documents in the request"));
    }
    let (store, embedder) = kb_and_embedder(&state, &name).await?;
    let results = blocking(move || {
        let mut results = Vec::with_capacity(uploads.len());
        for upload in uploads {
            if let Err(reason) = check_document_path(&upload.path) {
                results.push(DocumentResult {
                    path: upload.path,
                    status: "failed",
                    chunks: None,
                    error: Some(reason),
                });
                continue;
            }
            let options = IngestOptions {
                tags: upload.tags,
                ..IngestOptions::default()
            };
            let outcome = ingest_bytes(
                store.as_ref(),
                embedder.as_ref(),
                &name,
                &upload.path,
                &upload.bytes,
                &options,
            )?;
            let (status, chunks, error) = match outcome {
                DocumentOutcome::Unchanged => ("unchanged", None, None),
                DocumentOutcome::Added { chunks } => ("added", Some(chunks), None),
                DocumentOutcome::Updated { chunks } => ("updated", Some(chunks), None),
                DocumentOutcome::Failed(reason) => ("failed", None, Some(reason)),
            };
            results.push(DocumentResult {
                path: upload.path,
                status,
                chunks,
                error,
            });
        }
        Ok(results)
    })
    .await?;
    Ok(Json(
        serde_json::json!({ "object": "list", "data": results }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    query: Option<String>,
    vector: Option<Vec<f32>>,
    top_k: Option<u32>,
    mode: Option<String>,
    path_glob: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    min_score: Option<f32>,
}

#[derive(Serialize)]
struct QueryHit {
    path: String,
    chunk_id: i64,
    ordinal: u32,
    text: String,
    location: Location,
    /// The fused score (or, for a `vector` query, the cosine similarity).
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    vector_score: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vector_rank: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text_rank: Option<usize>,
}

/// What a knowledge-base query searches with.
enum Search {
    Text(String),
    Vector(Vec<f32>),
}

async fn query(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    PathParams(name): PathParams<String>,
    RawBody(body): RawBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request: QueryRequest = parse(&body)?;
    let params = retrieve_params(
        "",
        request.top_k,
        request.mode.as_deref(),
        request.min_score,
        request.path_glob,
        request.tags,
    )?;
    let search = match (request.query, request.vector) {
        (Some(text), None) => Search::Text(text),
        (None, Some(vector)) => Search::Vector(vector),
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::invalid_request(
                "give either query (text) or vector (an embedding), not both",
            ))
        }
    };
    // The key's limits apply to a well-formed query: it is a request, and a text query's bytes
    // bound the tokens its embedding takes (settled with the real count).
    let bound = match &search {
        Search::Text(text) => text.len() as u64 + 2,
        Search::Vector(_) => 0,
    };
    caller.admit(state.trust(), 0, bound)?;
    let hits = match search {
        Search::Vector(vector) => {
            let store = state.knowledge().store()?;
            blocking(move || {
                let hits = store.search_vector(&name, &vector, params.top_k, &params.filter)?;
                Ok(hits
                    .into_iter()
                    .filter(|hit| params.min_score.is_none_or(|floor| hit.score >= floor))
                    .map(|hit| QueryHit {
                        vector_score: Some(hit.score),
                        score: hit.score,
                        path: hit.path,
                        chunk_id: hit.chunk_id,
                        ordinal: hit.ordinal,
                        text: hit.text,
                        location: hit.location,
                        vector_rank: None,
                        text_rank: None,
                    })
                    .collect::<Vec<_>>())
            })
            .await?
        }
        Search::Text(text) => {
            let (store, embedder) = kb_and_embedder(&state, &name).await?;
            let began = std::time::Instant::now();
            let (hits, tokens) = blocking(move || {
                let found = retrieve_counted(
                    store.as_ref(),
                    embedder.as_ref(),
                    &name,
                    &text,
                    &params,
                    &IdentityReranker,
                )?;
                let hits = found
                    .hits
                    .into_iter()
                    .map(|retrieved| QueryHit {
                        path: retrieved.hit.path,
                        chunk_id: retrieved.hit.chunk_id,
                        ordinal: retrieved.hit.ordinal,
                        text: retrieved.hit.text,
                        location: retrieved.hit.location,
                        score: retrieved.score,
                        vector_score: retrieved.vector_score,
                        vector_rank: retrieved.vector_rank,
                        text_rank: retrieved.text_rank,
                    })
                    .collect::<Vec<_>>();
                Ok((hits, found.embed_tokens))
            })
            .await?;
            caller.ticket.add_busy(began.elapsed());
            caller.ticket.set_prompt_tokens(tokens);
            hits
        }
    };
    Ok(Json(serde_json::json!({ "object": "list", "data": hits })))
}
