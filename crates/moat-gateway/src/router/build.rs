//! Building the route table from the configuration: each alias's targets (this node's models
//! through the local resolver, upstream endpoints with their replicas, timeouts, API key and
//! prefix affinity), checked (a private alias never names an external target), with the
//! counters of aliases and targets that keep their names carried over from the table before.

use moat_upstream::{Timeouts, UpstreamClient, UpstreamConfig};

use super::*;
use crate::config::{AliasConfig, TargetConfig, UpstreamTarget};
use crate::provider::UpstreamProvider;

pub(super) fn build_table(
    config: &GatewayConfig,
    deps: &GatewayDeps,
    previous: Option<&RouteTable>,
) -> Result<RouteTable, GatewayError> {
    let routing = &config.routing;
    let mut routes = HashMap::new();
    for (alias, alias_config) in &config.aliases {
        let old = previous.and_then(|table| table.routes.get(alias));
        routes.insert(alias.clone(), build_route(alias, alias_config, deps, old)?);
    }
    Ok(RouteTable {
        routes,
        failure_threshold: routing.failure_threshold,
        cooldown: seconds("routing.cooldown_secs", routing.cooldown_secs)?,
        health_interval: seconds("routing.health_interval_secs", routing.health_interval_secs)?,
    })
}

fn build_route(
    alias: &str,
    config: &AliasConfig,
    deps: &GatewayDeps,
    old: Option<&Route>,
) -> Result<Route, GatewayError> {
    let invalid = |reason: String| GatewayError::Config {
        reason: format!("alias {alias:?}: {reason}"),
    };
    if config.targets.is_empty() {
        return Err(invalid("has no targets".to_owned()));
    }
    let mut targets = Vec::with_capacity(config.targets.len());
    for (index, target_config) in config.targets.iter().enumerate() {
        let target = match target_config {
            TargetConfig::Local(local) => {
                let resolver = deps.local.as_ref().ok_or_else(|| {
                    invalid(format!(
                        "target {index} is local but this gateway serves no local models"
                    ))
                })?;
                let provider = resolver.resolve(alias, local)?;
                let label = format!("local:{}", local.model);
                let external = provider.is_external();
                new_target(label.clone(), external, vec![(label, provider)], None)
            }
            TargetConfig::Upstream(upstream) => build_upstream(upstream)
                .map_err(|reason| invalid(format!("target {index}: {reason}")))?,
        };
        if config.private && target.external {
            return Err(invalid(format!(
                "is private but target {:?} is external; private aliases never reach external upstreams",
                target.label
            )));
        }
        targets.push(target);
    }
    let mut route = Route {
        private: config.private,
        targets,
        counters: Arc::new(AliasCounters::default()),
    };
    if let Some(old) = old {
        route.counters = old.counters.clone();
        for target in &mut route.targets {
            if let Some(same) = old.targets.iter().find(|t| t.label == target.label) {
                target.counters = same.counters.clone();
            }
        }
    }
    Ok(route)
}

fn build_upstream(config: &UpstreamTarget) -> Result<Target, String> {
    let urls: Vec<String> = config
        .url
        .iter()
        .chain(config.replicas.iter())
        .cloned()
        .collect();
    if urls.is_empty() {
        return Err("an upstream needs `url` or `replicas`".to_owned());
    }
    if config.url.is_some() && !config.replicas.is_empty() {
        return Err("give either `url` or `replicas`, not both".to_owned());
    }
    if (1..urls.len()).any(|i| urls[..i].contains(&urls[i])) {
        return Err("the same replica URL is listed twice".to_owned());
    }
    let api_key = match &config.api_key_env {
        Some(name) => Some(
            std::env::var(name)
                .map_err(|_| format!("the API key variable {name} is not set (or not UTF-8)"))?,
        ),
        None => None,
    };
    let mut timeouts = Timeouts::default();
    if let Some(secs) = config.timeout_secs {
        let timeout = seconds("timeout_secs", secs).map_err(|err| err.to_string())?;
        timeouts.first_byte = timeout;
        timeouts.idle = timeout;
    }
    if let Some(secs) = config.connect_timeout_secs {
        timeouts.connect = seconds("connect_timeout_secs", secs).map_err(|err| err.to_string())?;
    }
    if let Some(secs) = config.max_duration_secs {
        timeouts.total = Some(seconds("max_duration_secs", secs).map_err(|err| err.to_string())?);
    }
    let mut replicas = Vec::with_capacity(urls.len());
    for url in &urls {
        let mut client_config = UpstreamConfig::new(url.clone());
        client_config.api_key = api_key.clone();
        client_config.timeouts = timeouts;
        let client = UpstreamClient::new(client_config).map_err(|err| err.to_string())?;
        let provider: Arc<dyn Provider> = Arc::new(UpstreamProvider::new(
            client,
            config.model.clone(),
            config.external,
        ));
        replicas.push((url.clone(), provider));
    }
    let label = config
        .name
        .clone()
        .unwrap_or_else(|| format!("{}@{}", config.model, urls[0]));
    let affinity = match config.affinity_prefix_chars {
        Some(0) => return Err("affinity_prefix_chars must be at least 1".to_owned()),
        Some(n_chars) => Some((n_chars, HashRing::new(&urls))),
        None => None,
    };
    Ok(new_target(label, config.external, replicas, affinity))
}

fn new_target(
    label: String,
    external: bool,
    replicas: Vec<(String, Arc<dyn Provider>)>,
    affinity: Option<(usize, HashRing)>,
) -> Target {
    Target {
        label,
        external,
        replicas: replicas
            .into_iter()
            .map(|(label, provider)| {
                Arc::new(Replica {
                    label,
                    provider,
                    outstanding: AtomicUsize::new(0),
                    up: AtomicBool::new(true),
                    breaker: Mutex::new(Breaker::default()),
                })
            })
            .collect(),
        affinity,
        rotation: AtomicUsize::new(0),
        counters: Arc::new(TargetCounters::default()),
    }
}
