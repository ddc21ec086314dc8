//! `AppState`: the models the server serves (each an engine, its compiled chat template and
//! the limits requests are checked against), the configuration, and whether the server is
//! draining. Models may be added while the server already answers: `/health` says 503 until
//! every one is ready.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use moat_engine::{select_template_source, ChatTemplate, Engine, TemplateError};
use moat_gateway::{Gateway, GatewayConfig, GatewayDeps, GatewayError, SystemClock};
use moat_openai::{ModelLimits, ResponseIds};

use crate::knowledge::KnowledgeState;
use crate::observe::Observability;
use crate::trust::Trust;
use crate::{ApiError, Knowledge, ServerConfig};

/// A model ready to serve.
pub struct ServedModel {
    pub engine: Arc<dyn Engine>,
    /// The engine's chat template, compiled; the error is what a chat request answers.
    pub template: Result<ChatTemplate, TemplateError>,
    pub limits: ModelLimits,
    /// When it was added, seconds since the Unix epoch (`created` in `/v1/models`).
    pub created: u64,
    /// What the store knows about the model's file, for the Ollama API's listings.
    pub card: ModelCard,
}

/// What the model store says about a served model's weights: the details Ollama's `/api/tags`,
/// `/api/show` and `/api/ps` report. Every field is optional: a model served from elsewhere
/// (a test's fake engine) has none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelCard {
    /// `gguf` or `safetensors`.
    pub format: Option<String>,
    /// The architecture (`llama`, `qwen2`, `gemma3`).
    pub architecture: Option<String>,
    pub parameters: Option<u64>,
    /// The quantization as llama.cpp names it (`Q4_1`, `Q4_K_M`).
    pub quantization: Option<String>,
    /// Bytes of the weights file(s).
    pub size_bytes: Option<u64>,
    /// The sha256 of the weights file, hex.
    pub digest: Option<String>,
    /// When the model was pulled, seconds since the Unix epoch.
    pub modified_unix: Option<u64>,
    /// The context length the model was trained with.
    pub context_length: Option<u64>,
    pub embedding_length: Option<u64>,
    pub block_count: Option<u64>,
    pub head_count: Option<u64>,
    pub vocab_size: Option<u64>,
    /// The license id, when the store knows it.
    pub license: Option<String>,
}

impl ServedModel {
    /// Serves `engine` with its own chat template (`EngineInfo::chat_template`). `limits`
    /// brings the manifest's sampling defaults and system prompt; its context and vocabulary
    /// sizes are taken from the engine.
    pub fn new(engine: Arc<dyn Engine>, mut limits: ModelLimits) -> Self {
        let info = engine.info();
        let template =
            select_template_source(None, info.chat_template.as_deref()).and_then(|source| {
                ChatTemplate::new(source, info.bos_token.clone(), info.eos_token.clone())
            });
        limits.n_ctx = info.n_ctx;
        limits.n_vocab = info.n_vocab;
        Self {
            engine,
            template,
            limits,
            created: unix_now(),
            card: ModelCard::default(),
        }
    }

    /// The same model with what the store says about its weights.
    #[must_use]
    pub fn with_card(mut self, card: ModelCard) -> Self {
        self.card = card;
        self
    }
}

enum ModelSlot {
    Loading,
    Ready(Arc<ServedModel>),
    Failed(String),
}

/// What `/health` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    Ready,
    Loading,
    Failed,
    Draining,
}

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: ServerConfig,
    models: RwLock<BTreeMap<String, ModelSlot>>,
    draining: AtomicBool,
    next_id: AtomicU64,
    id_base: u64,
    knowledge: KnowledgeState,
    trust: Trust,
    /// The gateway, when moat.toml routes aliases (see `gateway.rs`).
    gateway: OnceLock<Arc<Gateway>>,
    /// Metrics and the request log (`observe.rs`, `metrics.rs`).
    observe: Observability,
}

impl AppState {
    /// A server without knowledge bases or embedding models.
    pub fn new(config: ServerConfig) -> Self {
        Self::with_knowledge(config, Knowledge::default())
    }

    /// A server that also serves embeddings, knowledge bases and aliases as `knowledge` says.
    pub fn with_knowledge(config: ServerConfig, knowledge: Knowledge) -> Self {
        Self::with_trust(config, knowledge, Trust::default())
    }

    /// As [`AppState::with_knowledge`], with API keys, limits, guardrails and the audit log
    /// as `trust` says.
    pub fn with_trust(config: ServerConfig, knowledge: Knowledge, trust: Trust) -> Self {
        let id_base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let observe = Observability::new(config.log_format);
        Self {
            inner: Arc::new(Inner {
                config,
                models: RwLock::new(BTreeMap::new()),
                draining: AtomicBool::new(false),
                next_id: AtomicU64::new(0),
                id_base,
                knowledge: KnowledgeState::new(knowledge),
                trust,
                gateway: OnceLock::new(),
                observe,
            }),
        }
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Routes the aliases of `config` through a gateway whose local targets are this server's
    /// models. Once per server; the routes can be replaced later with [`Gateway::reload`].
    /// Health checks are the caller's to start (`Gateway::spawn_health_checks`), on its runtime.
    pub fn enable_gateway(&self, config: &GatewayConfig) -> Result<Arc<Gateway>, GatewayError> {
        let deps = GatewayDeps {
            local: Some(Arc::new(crate::gateway::Resolver {
                state: Arc::downgrade(&self.inner),
            })),
            clock: Arc::new(SystemClock),
        };
        let gateway = Arc::new(Gateway::new(config, deps)?);
        self.inner
            .gateway
            .set(Arc::clone(&gateway))
            .map_err(|_| GatewayError::Config {
                reason: "the gateway is already enabled on this server".into(),
            })?;
        Ok(gateway)
    }

    /// The gateway, when enabled.
    pub fn gateway(&self) -> Option<&Arc<Gateway>> {
        self.inner.gateway.get()
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    pub(crate) fn trust(&self) -> &Trust {
        &self.inner.trust
    }

    pub(crate) fn knowledge(&self) -> &KnowledgeState {
        &self.inner.knowledge
    }

    pub(crate) fn observability(&self) -> &Observability {
        &self.inner.observe
    }

    fn set(&self, name: &str, slot: ModelSlot) {
        let mut models = self
            .inner
            .models
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        models.insert(name.to_string(), slot);
    }

    /// Announces a model that is still loading: requests for it get 503, and so does `/health`.
    pub fn add_loading(&self, name: &str) {
        self.set(name, ModelSlot::Loading);
    }

    pub fn add_model(&self, name: &str, model: ServedModel) {
        self.set(name, ModelSlot::Ready(Arc::new(model)));
    }

    /// Marks a model that could not be loaded.
    pub fn set_failed(&self, name: &str, reason: impl Into<String>) {
        self.set(name, ModelSlot::Failed(reason.into()));
    }

    /// From now on new requests get 503; those in flight go on.
    pub fn begin_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// The chat model named in a request: 404 if it is not served, 400 if it is an embedding
    /// model, 503 while it loads.
    pub(crate) fn model(&self, name: &str) -> Result<Arc<ServedModel>, ApiError> {
        let models = self
            .inner
            .models
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match models.get(name) {
            None if self.is_embedding_model(name) => Err(ApiError::not_a_chat_model(name)),
            None => Err(ApiError::model_not_found(name)),
            Some(ModelSlot::Loading) => Err(ApiError::model_loading(name)),
            Some(ModelSlot::Failed(reason)) => Err(ApiError::model_failed(name, reason)),
            Some(ModelSlot::Ready(model)) => Ok(Arc::clone(model)),
        }
    }

    fn is_embedding_model(&self, name: &str) -> bool {
        let config = &self.inner.knowledge.config;
        config.embedding_models.iter().any(|model| model == name)
    }

    /// Every chat model that is ready, by name.
    pub(crate) fn ready_models(&self) -> Vec<(String, Arc<ServedModel>)> {
        let models = self
            .inner
            .models
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        models
            .iter()
            .filter_map(|(name, slot)| match slot {
                ModelSlot::Ready(model) => Some((name.clone(), Arc::clone(model))),
                ModelSlot::Loading | ModelSlot::Failed(_) => None,
            })
            .collect()
    }

    /// Every model's name and, once loaded, when it was added.
    pub(crate) fn model_names(&self) -> Vec<(String, Option<u64>)> {
        let models = self
            .inner
            .models
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        models
            .iter()
            .map(|(name, slot)| {
                let created = match slot {
                    ModelSlot::Ready(model) => Some(model.created),
                    ModelSlot::Loading | ModelSlot::Failed(_) => None,
                };
                (name.clone(), created)
            })
            .collect()
    }

    pub(crate) fn readiness(&self) -> Readiness {
        if self.is_draining() {
            return Readiness::Draining;
        }
        let models = self
            .inner
            .models
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let mut readiness = Readiness::Ready;
        for slot in models.values() {
            let health = match slot {
                ModelSlot::Loading => moat_engine::Health::Loading,
                ModelSlot::Failed(_) => moat_engine::Health::Failed,
                ModelSlot::Ready(model) => model.engine.health(),
            };
            match health {
                moat_engine::Health::Failed => return Readiness::Failed,
                moat_engine::Health::Loading => readiness = Readiness::Loading,
                moat_engine::Health::Ready => {}
            }
        }
        if models.is_empty()
            && self.inner.knowledge.config.embedding_models.is_empty()
            && self.gateway().is_none()
        {
            return Readiness::Loading;
        }
        readiness
    }

    /// Ids and timestamp for one response: `{prefix}-{unique hex}`.
    pub(crate) fn response_ids(&self, prefix: &str, model: &str) -> ResponseIds {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        ResponseIds {
            id: format!("{prefix}-{:016x}{n:08x}", self.inner.id_base),
            created: unix_now(),
            model: model.to_string(),
        }
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
