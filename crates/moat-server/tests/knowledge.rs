//! The knowledge side of the HTTP app in process, with a real SQLite knowledge store in a
//! temporary folder and `FakeEngine` as the chat model: the status and shape of every error
//! that needs no embedding model (a server without a knowledge store, missing knowledge bases,
//! a vector of the wrong dimension, bad parameters and names, unknown and chat models on
//! `/v1/embeddings`), vector queries, and aliases in `/v1/models`. The paths that embed
//! (uploads, text queries, grounded chat) are tested with the real all-MiniLM-L6-v2 in
//! `tests/python/test_knowledge_server.py`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use moat_engine::{FakeConfig, FakeEngine, FakeReply};
use moat_openai::ModelLimits;
use moat_server::{app, Alias, AppState, GroundingRequest, Knowledge, ServedModel, ServerConfig};
use moat_vector::{KbSpec, Location, NewChunk, NewDocument, SqliteStore, VectorStore};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Fixture {
    app: Router,
    _dir: tempfile::TempDir,
}

/// A server with a SQLite store holding `kb4` (dimension 4, one document), the fake chat model
/// and an alias, but no embedder source.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store =
        SqliteStore::open(&dir.path().join("moat.db"), &dir.path().join("vectors")).unwrap();
    store
        .create_kb(&KbSpec {
            name: "kb4".into(),
            embed_model: "tiny:latest".into(),
            dimension: 4,
        })
        .unwrap();
    store
        .replace_document(
            "kb4",
            &NewDocument {
                path: "a.md".into(),
                content_hash: "h".into(),
                tags: vec!["t".into()],
            },
            &[NewChunk {
                ordinal: 0,
                text: "alpha text".into(),
                location: Location::default(),
                embedding: vec![1.0, 0.0, 0.0, 0.0],
            }],
        )
        .unwrap();
    let mut aliases = BTreeMap::new();
    aliases.insert(
        "grounded".to_owned(),
        Alias {
            model: "fake".into(),
            knowledge_base: Some(GroundingRequest {
                name: "kb4".into(),
                ..GroundingRequest::default()
            }),
        },
    );
    let knowledge = Knowledge {
        store: Some(Arc::new(store)),
        embedders: None,
        embedding_models: vec!["tiny:latest".into()],
        aliases,
    };
    let state = AppState::with_knowledge(ServerConfig::default(), knowledge);
    let engine = Arc::new(
        FakeEngine::new(FakeConfig {
            reply: FakeReply::ReversePrompt,
            ..FakeConfig::default()
        })
        .unwrap(),
    );
    state.add_model("fake", ServedModel::new(engine, ModelLimits::default()));
    Fixture {
        app: app(state),
        _dir: dir,
    }
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_server_without_a_knowledge_store_answers_503() {
    let app = app(AppState::new(ServerConfig::default()));
    let (status, body) = call(&app, "GET", "/v1/knowledge_bases", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&body), "knowledge_unavailable");
}

#[tokio::test]
async fn missing_knowledge_bases_are_404() {
    let f = fixture();
    for (method, uri, body) in [
        ("GET", "/v1/knowledge_bases/nope", None),
        ("DELETE", "/v1/knowledge_bases/nope", None),
        ("DELETE", "/v1/knowledge_bases/nope/documents/a.md", None),
        (
            "POST",
            "/v1/knowledge_bases/nope/query",
            Some(json!({"vector": [1, 0, 0, 0]})),
        ),
        (
            "POST",
            "/v1/knowledge_bases/nope/documents",
            Some(json!({"path": "a.md", "content": "hello"})),
        ),
    ] {
        let (status, answer) = call(&f.app, method, uri, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {answer}");
        assert_eq!(code(&answer), "knowledge_base_not_found", "{answer}");
    }
    let (status, answer) = call(
        &f.app,
        "POST",
        "/v1/chat/completions",
        Some(
            json!({"model": "fake", "messages": [{"role": "user", "content": "hi"}],
                    "knowledge_base": "nope"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
}

#[tokio::test]
async fn vector_queries_check_the_dimension_and_filters() {
    let f = fixture();
    let query = "/v1/knowledge_bases/kb4/query";
    let (status, body) = call(&f.app, "POST", query, Some(json!({"vector": [1.0, 0.5]}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "wrong_dimension");
    assert!(body["error"]["message"].as_str().unwrap().contains('4'));

    let (status, body) = call(
        &f.app,
        "POST",
        query,
        Some(json!({"vector": [0.9, 0.1, 0.0, 0.0], "tags": ["t"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"][0]["path"], "a.md");
    assert!(body["data"][0]["score"].as_f64().unwrap() > 0.9);
    let (_, body) = call(
        &f.app,
        "POST",
        query,
        Some(json!({"vector": [0.9, 0.1, 0.0, 0.0], "tags": ["other"]})),
    )
    .await;
    assert_eq!(body["data"], json!([]));

    for (bad, param) in [
        (json!({"vector": [1, 0, 0, 0], "mode": "fuzzy"}), "mode"),
        (json!({"vector": [1, 0, 0, 0], "top_k": 0}), "top_k"),
        (
            json!({"vector": [1, 0, 0, 0], "min_score": 3.0}),
            "min_score",
        ),
    ] {
        let (status, body) = call(&f.app, "POST", query, Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["param"], param, "{body}");
    }
    let (status, _) = call(&f.app, "POST", query, Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(
        &f.app,
        "POST",
        query,
        Some(json!({"query": "a", "bogus": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn list_show_and_remove() {
    let f = fixture();
    let (status, body) = call(&f.app, "GET", "/v1/knowledge_bases", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"][0]["name"], "kb4");
    assert_eq!(body["data"][0]["dimension"], 4);
    let (_, body) = call(&f.app, "GET", "/v1/knowledge_bases/kb4", None).await;
    assert_eq!(body["document_list"][0]["path"], "a.md");
    let (status, body) = call(
        &f.app,
        "DELETE",
        "/v1/knowledge_bases/kb4/documents/a.md",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = call(
        &f.app,
        "DELETE",
        "/v1/knowledge_bases/kb4/documents/a.md",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&body), "document_not_found");
    let (status, _) = call(&f.app, "DELETE", "/v1/knowledge_bases/kb4", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&f.app, "GET", "/v1/knowledge_bases/kb4", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn create_checks_the_name_and_the_model() {
    let f = fixture();
    let kbs = "/v1/knowledge_bases";
    let (status, body) = call(
        &f.app,
        "POST",
        kbs,
        Some(json!({"name": "../x", "embed_model": "m"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "name");
    // No embedder source: every embedding model is unknown here.
    let (status, _) = call(
        &f.app,
        "POST",
        kbs,
        Some(json!({"name": "x", "embed_model": "m"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&f.app, "POST", kbs, Some(json!({"name": "x"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn embeddings_refuse_chat_and_unknown_models() {
    let f = fixture();
    let (status, body) = call(
        &f.app,
        "POST",
        "/v1/embeddings",
        Some(json!({"model": "fake", "input": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "not_an_embedding_model");
    let (status, body) = call(
        &f.app,
        "POST",
        "/v1/embeddings",
        Some(json!({"model": "nope", "input": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = call(
        &f.app,
        "POST",
        "/v1/embeddings",
        Some(json!({"model": "tiny:latest", "input": "x", "encoding_format": "hex"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "encoding_format");
}

#[tokio::test]
async fn chat_and_completions_refuse_an_embedding_model() {
    let f = fixture();
    let requests = [
        (
            "/v1/chat/completions",
            json!({"model": "tiny:latest", "messages": [{"role": "user", "content": "x"}]}),
        ),
        (
            "/v1/completions",
            json!({"model": "tiny:latest", "prompt": "x"}),
        ),
    ];
    for (path, request) in requests {
        let (status, body) = call(&f.app, "POST", path, Some(request)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(code(&body), "not_a_chat_model", "{path}");
        assert_eq!(body["error"]["param"], "model");
    }
}

#[tokio::test]
async fn models_list_embedding_models_and_aliases_and_bad_grounding_is_a_400() {
    let f = fixture();
    let (_, body) = call(&f.app, "GET", "/v1/models", None).await;
    let kinds: BTreeMap<String, String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().into(),
                m["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(kinds["fake"], "chat");
    assert_eq!(kinds["tiny:latest"], "embedding");
    assert_eq!(kinds["grounded"], "alias");
    let (status, body) = call(&f.app, "GET", "/v1/models/grounded", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["alias_of"].as_str(), body["knowledge_base"].as_str()),
        (Some("fake"), Some("kb4"))
    );

    for bad in [
        json!(42),
        json!({"name": "kb4", "top_k": 0}),
        json!({"name": "kb4", "no_answer": "shrug"}),
        json!({"name": "kb4", "surprise": true}),
    ] {
        let (status, body) = call(
            &f.app,
            "POST",
            "/v1/chat/completions",
            Some(
                json!({"model": "fake", "messages": [{"role": "user", "content": "hi"}],
                        "knowledge_base": bad}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
}
