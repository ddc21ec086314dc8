//! The gateway's configuration as it appears in `moat.toml`: aliases with ordered targets, the
//! routing knobs (cooldown, health checks) and the response cache.
//!
//! These are plain serde types; [`crate::Gateway::new`] turns them into a route table and is
//! where they are checked (privacy, replica lists, API key variables). Local targets are opaque
//! here: their parameters, system prompt, knowledge base and guard policy are names the server
//! understands, passed through untouched.
//!
//! ```
//! let text = r#"
//! [routing]
//! cooldown_secs = 30          # a replica that failed is skipped this long
//! health_interval_secs = 10   # GET /health on every replica; 0 = off
//!
//! [cache]
//! max_bytes = 67108864
//! ttl_secs = 300
//!
//! [aliases.chat]
//! private = true              # never leaves the operator's machines
//! [[aliases.chat.targets]]
//! type = "local"
//! model = "qwen2.5:7b"
//! system_prompt = "Answer briefly."
//! knowledge_base = "handbook"
//! [[aliases.chat.targets]]
//! type = "upstream"
//! name = "vllm-pool"
//! replicas = ["http://10.0.0.5:8000/v1", "http://10.0.0.6:8000/v1"]
//! model = "Qwen/Qwen2.5-7B-Instruct"
//! affinity_prefix_chars = 2000
//! timeout_secs = 60
//!
//! [aliases.smart]
//! [[aliases.smart.targets]]
//! type = "upstream"
//! url = "https://api.example.com/v1"
//! model = "big-closed-model"
//! api_key_env = "EXAMPLE_API_KEY"
//! external = true
//! "#;
//! let config: moat_gateway::GatewayConfig = toml::from_str(text).unwrap();
//! assert_eq!(config.aliases["chat"].targets.len(), 2);
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Everything the gateway reads from configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// `[aliases.NAME]`: the names clients ask for, each with its ordered targets.
    #[serde(default)]
    pub aliases: BTreeMap<String, AliasConfig>,
    /// `[routing]`: cooldown and health-check settings shared by every target.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// `[cache]`: the response cache; absent means no cache.
    #[serde(default)]
    pub cache: Option<CacheConfig>,
}

/// One alias: targets tried in order, the next one only when the previous failed before
/// answering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    /// A private alias never reaches a target marked `external`: such a route is refused at
    /// load, and external targets are skipped again at call time.
    #[serde(default)]
    pub private: bool,
    /// The targets, first preferred.
    pub targets: Vec<TargetConfig>,
    /// The guard policy the server applies to this alias's requests and answers; a name the
    /// server understands, passed through untouched.
    #[serde(default)]
    pub guard: Option<String>,
}

/// Where an alias can be answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TargetConfig {
    /// A model served by this node's engine.
    Local(LocalTarget),
    /// A remote OpenAI-compatible endpoint, or a group of replicas of one.
    Upstream(UpstreamTarget),
}

/// A local model and the server-side settings that go with it, opaque to the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalTarget {
    /// The model's name in the store (`name[:tag]`).
    pub model: String,
    /// Sampling parameters the server applies (a table, passed through).
    #[serde(default)]
    pub params: Option<Value>,
    /// A system prompt the server prepends.
    #[serde(default)]
    pub system_prompt: Option<String>,
    /// A knowledge base whose passages the server adds.
    #[serde(default)]
    pub knowledge_base: Option<String>,
    /// A guard policy the server applies.
    #[serde(default)]
    pub guard_policy: Option<String>,
}

/// A remote endpoint: one `url`, or several `replicas` of the same model balanced by least
/// outstanding requests (or by prompt prefix with `affinity_prefix_chars`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTarget {
    /// A label for metrics and logs; defaults to `model@first-url`.
    #[serde(default)]
    pub name: Option<String>,
    /// The base URL up to `/v1`, for a single endpoint.
    #[serde(default)]
    pub url: Option<String>,
    /// Base URLs of replicas, instead of `url`.
    #[serde(default)]
    pub replicas: Vec<String>,
    /// The model name the upstream knows; it replaces `model` in forwarded bodies.
    pub model: String,
    /// The environment variable holding the bearer token; read when the route is built.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Seconds to wait for the upstream to start answering, and between pieces after that.
    #[serde(default)]
    pub timeout_secs: Option<f64>,
    /// Seconds to wait for a connection.
    #[serde(default)]
    pub connect_timeout_secs: Option<f64>,
    /// Seconds a whole answer may take, streamed or not, from the request to its last byte;
    /// unset, an answer that keeps arriving is passed on for as long as the client reads it.
    #[serde(default)]
    pub max_duration_secs: Option<f64>,
    /// A closed API outside the operator's control; private aliases and keys never reach it.
    #[serde(default)]
    pub external: bool,
    /// When set, the first N characters of the prompt pick the replica (consistent hashing),
    /// so one prefix keeps hitting the KV cache of one replica.
    #[serde(default)]
    pub affinity_prefix_chars: Option<usize>,
}

/// Failure handling shared by all targets. Defaults in one place: [`RoutingConfig::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Consecutive failures that open a replica's circuit.
    pub failure_threshold: u32,
    /// Seconds a replica with an open circuit is skipped.
    pub cooldown_secs: f64,
    /// Seconds between active health checks (`GET /health`); 0 turns them off.
    pub health_interval_secs: f64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 1,
            cooldown_secs: 30.0,
            health_interval_secs: 10.0,
        }
    }
}

/// The response cache's bounds. Defaults in [`CacheConfig::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Total bytes of cached answers (as serialised JSON) before the least recently used go.
    pub max_bytes: usize,
    /// The largest single answer cached.
    pub max_entry_bytes: usize,
    /// Seconds an answer stays valid.
    pub ttl_secs: f64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024 * 1024,
            max_entry_bytes: 1024 * 1024,
            ttl_secs: 300.0,
        }
    }
}
