//! What the server needs for embeddings and knowledge bases, handed to it by the caller: the
//! knowledge store, a source of embedders (the caller knows the model store; the server does
//! not), the embedding models `/v1/embeddings` serves, and model aliases that ground a chat
//! model in a knowledge base. Embedders are loaded lazily, on first use, and cached per model
//! for the server's lifetime; their forward passes run on the process's one compute executor
//! (the embedders do that themselves), called here from the blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use moat_engine::Embedder;
use moat_rag::{GroundingConfig, NoAnswerPolicy, RetrieveParams, SearchMode};
use moat_vector::{Filter, VectorStore};
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::ApiError;

/// Why an embedder could not be had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmbedderLoadError {
    /// No such model (404).
    NotFound(String),
    /// The model exists but is not an embedding model, a chat model say (400); the text says
    /// why.
    NotAnEmbedder(String),
    /// The model should load but did not (a missing file, a broken config) (503).
    Failed(String),
    /// The model's license forbids this deployment (403); the text says why.
    Forbidden(String),
}

/// Loads embedding models by name. Blocking; called on the blocking pool.
pub trait EmbedderSource: Send + Sync {
    fn load(&self, model: &str) -> Result<Arc<dyn Embedder>, EmbedderLoadError>;
}

/// The default `min_score` of grounded chat: below this cosine similarity a passage does not
/// count as relevant, so a question about nothing in the knowledge base gets the no-answer
/// policy instead of unrelated passages. Tuned for normalised sentence embedders such as
/// all-MiniLM-L6-v2, where related texts score well above it.
pub const DEFAULT_GROUNDING_MIN_SCORE: f32 = 0.3;
/// The default number of passages put into a grounded prompt.
pub const DEFAULT_GROUNDING_TOP_K: u32 = 4;
/// The most hits a query or grounded prompt may ask for.
pub const MAX_TOP_K: u32 = 100;

/// A knowledge base named by a chat request (`knowledge_base`) or an alias, with its retrieval
/// settings: either just the name, or a table/object with `name` and optional `top_k`, `mode`
/// (`hybrid`, `vector`, `text`), `min_score`, `path_glob`, `tags`, `no_answer` (`reply`, the
/// default, answers without the model; `ask_model` lets the model say it found nothing) and
/// `no_answer_reply` (the text of that reply).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(from = "GroundingWire")]
pub struct GroundingRequest {
    pub name: String,
    pub top_k: Option<u32>,
    pub mode: Option<String>,
    pub min_score: Option<f32>,
    pub path_glob: Option<String>,
    pub tags: Vec<String>,
    pub no_answer: Option<String>,
    pub no_answer_reply: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum GroundingWire {
    Name(String),
    Full(GroundingFields),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroundingFields {
    name: String,
    top_k: Option<u32>,
    mode: Option<String>,
    min_score: Option<f32>,
    path_glob: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    no_answer: Option<String>,
    no_answer_reply: Option<String>,
}

impl From<GroundingWire> for GroundingRequest {
    fn from(wire: GroundingWire) -> Self {
        match wire {
            GroundingWire::Name(name) => Self {
                name,
                ..Self::default()
            },
            GroundingWire::Full(f) => Self {
                name: f.name,
                top_k: f.top_k,
                mode: f.mode,
                min_score: f.min_score,
                path_glob: f.path_glob,
                tags: f.tags,
                no_answer: f.no_answer,
                no_answer_reply: f.no_answer_reply,
            },
        }
    }
}

impl GroundingRequest {
    /// Fields given here win over `base`'s (a request's over its alias's).
    pub fn over(self, base: &GroundingRequest) -> GroundingRequest {
        GroundingRequest {
            name: self.name,
            top_k: self.top_k.or(base.top_k),
            mode: self.mode.or_else(|| base.mode.clone()),
            min_score: self.min_score.or(base.min_score),
            path_glob: self.path_glob.or_else(|| base.path_glob.clone()),
            tags: if self.tags.is_empty() {
                base.tags.clone()
            } else {
                self.tags
            },
            no_answer: self.no_answer.or_else(|| base.no_answer.clone()),
            no_answer_reply: self
                .no_answer_reply
                .or_else(|| base.no_answer_reply.clone()),
        }
    }

    /// The retrieval and prompt settings, checked; `param` prefixes error parameters.
    pub(crate) fn settings(
        &self,
        param: &str,
    ) -> Result<(RetrieveParams, GroundingConfig), ApiError> {
        let params = retrieve_params(
            param,
            Some(self.top_k.unwrap_or(DEFAULT_GROUNDING_TOP_K)),
            self.mode.as_deref(),
            Some(self.min_score.unwrap_or(DEFAULT_GROUNDING_MIN_SCORE)),
            self.path_glob.clone(),
            self.tags.clone(),
        )?;
        let mut config = GroundingConfig::default();
        match self.no_answer.as_deref() {
            None | Some("reply") => {
                if let Some(reply) = &self.no_answer_reply {
                    config.no_answer = NoAnswerPolicy::Reply(reply.clone());
                }
            }
            Some("ask_model") => config.no_answer = NoAnswerPolicy::AskModel,
            Some(other) => {
                return Err(ApiError::invalid_request(format!(
                    "{param}.no_answer is {other:?}; use \"reply\" or \"ask_model\""
                ))
                .with_param(format!("{param}.no_answer")))
            }
        }
        Ok((params, config))
    }
}

/// Retrieval parameters from request fields, each checked.
pub(crate) fn retrieve_params(
    param: &str,
    top_k: Option<u32>,
    mode: Option<&str>,
    min_score: Option<f32>,
    path_glob: Option<String>,
    tags: Vec<String>,
) -> Result<RetrieveParams, ApiError> {
    let bad = |field: &str, message: String| {
        let name = if param.is_empty() {
            field.to_owned()
        } else {
            format!("{param}.{field}")
        };
        ApiError::invalid_request(format!("{name}: {message}")).with_param(name)
    };
    let top_k = top_k.unwrap_or(5);
    if !(1..=MAX_TOP_K).contains(&top_k) {
        return Err(bad(
            "top_k",
            format!("{top_k} is out of range: expected 1 to {MAX_TOP_K}"),
        ));
    }
    let mode = match mode {
        None | Some("hybrid") => SearchMode::Hybrid,
        Some("vector") => SearchMode::Vector,
        Some("text") => SearchMode::Text,
        Some(other) => {
            return Err(bad(
                "mode",
                format!("{other:?} is not a mode; use hybrid, vector or text"),
            ))
        }
    };
    if let Some(score) = min_score {
        if !(score.is_finite() && (-1.0..=1.0).contains(&score)) {
            return Err(bad(
                "min_score",
                format!("{score} is out of range: expected -1 to 1 (a cosine similarity)"),
            ));
        }
    }
    Ok(RetrieveParams {
        mode,
        top_k: top_k as usize,
        min_score,
        filter: Filter { path_glob, tags },
        ..RetrieveParams::default()
    })
}

/// A name clients may use for a model, optionally grounded in a knowledge base.
#[derive(Clone, Debug, PartialEq)]
pub struct Alias {
    /// The served chat model it stands for.
    pub model: String,
    pub knowledge_base: Option<GroundingRequest>,
}

/// Everything about embeddings and knowledge the caller configures. `Default`: no knowledge
/// store (the knowledge-base routes answer 503), no embedders, no aliases.
#[derive(Clone, Default)]
pub struct Knowledge {
    pub store: Option<Arc<dyn VectorStore>>,
    pub embedders: Option<Arc<dyn EmbedderSource>>,
    /// The embedding models `/v1/embeddings` serves and `/v1/models` lists, by name.
    pub embedding_models: Vec<String>,
    pub aliases: BTreeMap<String, Alias>,
}

type EmbedderCell = Arc<OnceCell<Arc<dyn Embedder>>>;

/// The knowledge configuration plus the embedders loaded so far.
pub(crate) struct KnowledgeState {
    pub config: Knowledge,
    embedders: Mutex<HashMap<String, EmbedderCell>>,
}

impl KnowledgeState {
    pub fn new(config: Knowledge) -> Self {
        Self {
            config,
            embedders: Mutex::new(HashMap::new()),
        }
    }

    /// The knowledge store, or 503 when this server has none.
    pub fn store(&self) -> Result<Arc<dyn VectorStore>, ApiError> {
        self.config
            .store
            .clone()
            .ok_or_else(ApiError::knowledge_unavailable)
    }

    /// The embedder for `model`, loaded on first use (once, however many requests ask at the
    /// same time) and kept.
    pub async fn embedder(&self, model: &str) -> Result<Arc<dyn Embedder>, ApiError> {
        let source = self
            .config
            .embedders
            .clone()
            .ok_or_else(|| ApiError::model_not_found(model))?;
        let cell = {
            let mut cells = self
                .embedders
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(cells.entry(model.to_owned()).or_default())
        };
        let name = model.to_owned();
        let embedder = cell
            .get_or_try_init(|| async move {
                let loaded = tokio::task::spawn_blocking(move || source.load(&name))
                    .await
                    .map_err(|error| {
                        EmbedderLoadError::Failed(format!("the loading task failed: {error}"))
                    })?;
                loaded
            })
            .await
            .map_err(|error| ApiError::embedder_load(model, error))?;
        Ok(Arc::clone(embedder))
    }
}
