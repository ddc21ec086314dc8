//! The gateway's part of `moat.toml`, for `moat serve`: aliases with `targets` (routed by
//! moat-gateway to local models and OpenAI-compatible upstreams), `[routing]` and `[cache]`.
//! Aliases without `targets` (`model = ...`, optionally grounded in a knowledge base) are the
//! knowledge module's.
//!
//! ```toml
//! [routing]
//! cooldown_secs = 30
//! health_interval_secs = 10
//! [cache]
//! max_bytes = 67108864
//! ttl_secs = 300
//! [aliases.chat]
//! private = true
//! [[aliases.chat.targets]]
//! type = "local"
//! model = "smollm2:135m"
//! [[aliases.chat.targets]]
//! type = "upstream"
//! replicas = ["http://10.0.0.5:8080/v1", "http://10.0.0.6:8080/v1"]
//! model = "smollm2:135m"
//! ```
//!
//! Local targets' model names are resolved to their names in the store (`smollm2` becomes
//! `smollm2:135m`), the names the server serves them under; `moat serve` loads them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use moat_gateway::{AliasConfig, CacheConfig, GatewayConfig, RoutingConfig, TargetConfig};
use moat_store::Store;
use serde::Deserialize;

/// The parts of `moat.toml` this module reads.
#[derive(Debug, Default, Deserialize)]
struct GatewayToml {
    #[serde(default)]
    aliases: BTreeMap<String, toml::Value>,
    #[serde(default)]
    routing: Option<RoutingConfig>,
    #[serde(default)]
    cache: Option<CacheConfig>,
}

/// Whether an `[aliases.NAME]` table is a gateway route (it has `targets`).
pub fn is_routed(alias: &toml::Value) -> bool {
    alias.get("targets").is_some()
}

/// The gateway configuration of the config file: `None` when no alias has targets.
pub fn settings(home: &Path, explicit: Option<&Path>) -> Result<Option<GatewayConfig>> {
    let Some(path) = crate::knowledge::config_path(home, explicit) else {
        return Ok(None);
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let parsed: GatewayToml =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let mut aliases = BTreeMap::new();
    for (name, value) in parsed.aliases {
        if !is_routed(&value) {
            continue;
        }
        let alias = AliasConfig::deserialize(value)
            .with_context(|| format!("{}: [aliases.{name}]", path.display()))?;
        aliases.insert(name, alias);
    }
    if aliases.is_empty() {
        return Ok(None);
    }
    Ok(Some(GatewayConfig {
        aliases,
        routing: parsed.routing.unwrap_or_default(),
        cache: parsed.cache,
    }))
}

/// Renames local targets' models to their names in the store; a model the store lacks keeps
/// its name (serving it then fails with the store's error).
pub fn resolve_local_models(config: &mut GatewayConfig, store: &Store) {
    for alias in config.aliases.values_mut() {
        for target in &mut alias.targets {
            if let TargetConfig::Local(local) = target {
                if let Ok(manifest) = store.resolve(&local.model) {
                    local.model = manifest.name.to_string();
                }
            }
        }
    }
}

/// The models the local targets name, in order, without repeats.
pub fn local_models(config: &GatewayConfig) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for alias in config.aliases.values() {
        for target in &alias.targets {
            if let TargetConfig::Local(local) = target {
                if !out.contains(&local.model) {
                    out.push(local.model.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_aliases_are_the_gateways_and_simple_ones_are_not() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("moat.toml");
        std::fs::write(
            &file,
            r#"
[aliases.grounded]
model = "smollm2"
knowledge_base = "handbook"

[aliases.fast]
[[aliases.fast.targets]]
type = "upstream"
url = "http://127.0.0.1:9/v1"
model = "m"
[[aliases.fast.targets]]
type = "local"
model = "qwen"

[cache]
ttl_secs = 5
"#,
        )
        .unwrap();
        let config = settings(home.path(), Some(&file)).unwrap().unwrap();
        assert_eq!(config.aliases.keys().collect::<Vec<_>>(), ["fast"]);
        assert_eq!(config.cache.as_ref().unwrap().ttl_secs, 5.0);
        assert_eq!(local_models(&config), ["qwen"]);
        let knowledge = crate::knowledge::settings(home.path(), Some(&file)).unwrap();
        assert_eq!(knowledge.aliases.keys().collect::<Vec<_>>(), ["grounded"]);
    }

    #[test]
    fn a_bad_target_names_its_alias() {
        let home = tempfile::tempdir().unwrap();
        let file = home.path().join("moat.toml");
        std::fs::write(
            &file,
            "[aliases.fast]\n[[aliases.fast.targets]]\ntype = \"carrier-pigeon\"\n",
        )
        .unwrap();
        let error = format!("{:#}", settings(home.path(), Some(&file)).unwrap_err());
        assert!(error.contains("[aliases.fast]"), "{error}");
    }

    #[test]
    fn no_routed_alias_means_no_gateway() {
        let home = tempfile::tempdir().unwrap();
        assert!(settings(home.path(), None).unwrap().is_none());
    }
}
