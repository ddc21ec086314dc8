//! The router: aliases to ordered targets, fallback, balancing, cooldown, health, privacy, and
//! the atomically swappable route table.
//!
//! Fallback happens only before the client has received anything. A whole answer is complete
//! when a provider returns it; a streamed answer counts as started once its first chunk arrived,
//! so the router waits for that chunk before handing the stream out, and falls back if the
//! provider fails before it. After that, an error ends the stream with that error: the client
//! already holds part of one model's answer, and splicing in another model's would be worse.
//!
//! Reload swaps the whole table behind a lock held only for the swap; a request takes its own
//! `Arc` of the table at the start, so requests in flight finish on their old routes. Counters
//! carry over to the new table for aliases and targets whose names did not change; circuit and
//! health state start fresh.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::Value;

use crate::balance::{least_outstanding, stable_hash, Breaker, HashRing};
use crate::cache::{cache_key, is_deterministic, rechunk, ResponseCache};
use crate::clock::Clock;
use crate::config::{GatewayConfig, LocalTarget};
use crate::metrics::{AliasCounters, AliasMetrics, GatewayMetrics, TargetCounters};
use crate::provider::{Provider, ProviderError, ProviderReply};
use crate::trace::{self, Attempt, AttemptOutcome, AttemptSpan};
use crate::GatewayError;

mod build;

use build::build_table;

/// Who is calling, as far as routing cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallContext {
    /// The API key's id: part of the cache key, so keys never see each other's answers.
    pub key_id: Option<String>,
    /// A key marked private: like a private alias, it never reaches an external target.
    pub private: bool,
}

/// Builds providers for local targets; the server implements it over its engines. A
/// configuration with local targets and no resolver is refused.
pub trait LocalResolver: Send + Sync {
    /// The provider that answers `target` for `alias`.
    fn resolve(&self, alias: &str, target: &LocalTarget)
        -> Result<Arc<dyn Provider>, GatewayError>;
}

/// What the gateway needs besides its configuration.
#[derive(Clone)]
pub struct GatewayDeps {
    /// Local targets' providers.
    pub local: Option<Arc<dyn LocalResolver>>,
    /// Time for cooldowns and cache expiry.
    pub clock: Arc<dyn Clock>,
}

/// Whether the response cache answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache; no provider was called.
    Hit,
    /// Cacheable, not found (or, for a streamed request, found but not re-chunkable); a whole
    /// answer was stored, a streamed one is not.
    Miss,
    /// Not cacheable: no cache configured, or the request is not deterministic.
    Bypass,
}

/// The gateway's answer to a chat request, with what the server shows in headers and logs.
#[derive(Debug)]
pub struct GatewayReply {
    /// The answer.
    pub reply: ProviderReply,
    /// Whether the cache answered.
    pub cache: CacheStatus,
    /// The target that answered (`None` for a cache hit).
    pub target: Option<String>,
    /// How many failed attempts came before the answer.
    pub fallbacks: u32,
}

/// One endpoint of a target, with its live state.
struct Replica {
    label: String,
    provider: Arc<dyn Provider>,
    outstanding: AtomicUsize,
    up: AtomicBool,
    breaker: Mutex<Breaker>,
}

impl Replica {
    fn available(&self, now: Instant) -> bool {
        self.up.load(Ordering::Relaxed) && self.breaker().allows(now)
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Counts a request as outstanding on its replica for as long as it lives (for a stream, until
/// the stream is dropped); it also holds the attempt's trace span, if any, which ends with it.
struct OutstandingGuard(Arc<Replica>, Option<Box<dyn AttemptSpan>>);

impl OutstandingGuard {
    fn new(replica: Arc<Replica>) -> Self {
        replica.outstanding.fetch_add(1, Ordering::Relaxed);
        Self(replica, None)
    }
}

impl Drop for OutstandingGuard {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Target {
    label: String,
    external: bool,
    replicas: Vec<Arc<Replica>>,
    affinity: Option<(usize, HashRing)>,
    rotation: AtomicUsize,
    counters: Arc<TargetCounters>,
}

impl Target {
    /// The available replicas in the order to try them.
    fn candidates(&self, now: Instant, prompt: &str) -> Vec<Arc<Replica>> {
        let order = match &self.affinity {
            Some((n_chars, ring)) => {
                let prefix: String = prompt.chars().take(*n_chars).collect();
                ring.preference(stable_hash(prefix.as_bytes()))
            }
            None => {
                let outstanding: Vec<usize> = self
                    .replicas
                    .iter()
                    .map(|replica| replica.outstanding.load(Ordering::Relaxed))
                    .collect();
                least_outstanding(&outstanding, self.rotation.fetch_add(1, Ordering::Relaxed))
            }
        };
        order
            .into_iter()
            .map(|index| self.replicas[index].clone())
            .filter(|replica| replica.available(now))
            .collect()
    }
}

struct Route {
    private: bool,
    targets: Vec<Target>,
    counters: Arc<AliasCounters>,
}

/// The routes built from one configuration; replaced whole on reload.
struct RouteTable {
    routes: HashMap<String, Route>,
    failure_threshold: u32,
    cooldown: Duration,
    health_interval: Duration,
}

/// The gateway: routes chat and embedding requests for aliases to their targets.
pub struct Gateway {
    table: RwLock<Arc<RouteTable>>,
    deps: GatewayDeps,
    cache: Option<ResponseCache>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("aliases", &self.aliases())
            .finish_non_exhaustive()
    }
}

/// The longest configured duration: a year. Deadlines and cooldowns are added to the clock's
/// instants, which a duration near `Duration::MAX` would overflow.
const MOST_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// Converts a configured number of seconds, refusing negative, infinite and NaN values and
/// anything over a year.
pub(crate) fn seconds(field: &str, value: f64) -> Result<Duration, GatewayError> {
    if value > MOST_SECONDS {
        return Err(GatewayError::Config {
            reason: format!("{field} = {value} is more than a year ({MOST_SECONDS} seconds)"),
        });
    }
    Duration::try_from_secs_f64(value).map_err(|_| GatewayError::Config {
        reason: format!("{field} = {value} is not a number of seconds"),
    })
}

impl Gateway {
    /// Builds the routes; any inconsistency (a private alias with an external target, a missing
    /// API key variable, a local target without a resolver) is a `Config` error naming it. The
    /// cache is sized here; its settings do not change on reload.
    pub fn new(config: &GatewayConfig, deps: GatewayDeps) -> Result<Self, GatewayError> {
        let table = build_table(config, &deps, None)?;
        let cache = match &config.cache {
            Some(cache) => Some(ResponseCache::new(cache.clone(), deps.clock.clone())?),
            None => None,
        };
        Ok(Self {
            table: RwLock::new(Arc::new(table)),
            deps,
            cache,
        })
    }

    /// Replaces the routes with those of `config`. On error the old routes stay in place.
    /// Requests in flight keep the routes they started with.
    pub fn reload(&self, config: &GatewayConfig) -> Result<(), GatewayError> {
        let old = self.current();
        let table = build_table(config, &self.deps, Some(&old))?;
        *self
            .table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(table);
        Ok(())
    }

    fn current(&self) -> Arc<RouteTable> {
        self.table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The aliases of the current table, sorted.
    pub fn aliases(&self) -> Vec<String> {
        let mut names: Vec<String> = self.current().routes.keys().cloned().collect();
        names.sort();
        names
    }

    /// Whether `name` is an alias of the current table.
    pub fn has_alias(&self, name: &str) -> bool {
        self.current().routes.contains_key(name)
    }

    /// Whether every target of `alias` is this node's own engine ([`Provider::is_local`]).
    pub fn local_only(&self, alias: &str) -> bool {
        let table = self.current();
        table.routes.get(alias).is_some_and(|route| {
            route
                .targets
                .iter()
                .all(|target| target.replicas.iter().all(|r| r.provider.is_local()))
        })
    }

    /// Whether a call to `alias` by `context` could reach an external target.
    pub fn may_reach_external(&self, alias: &str, context: &CallContext) -> bool {
        let table = self.current();
        let Some(route) = table.routes.get(alias) else {
            return false;
        };
        !(route.private || context.private)
            && route.targets.iter().any(|target| {
                target.external || target.replicas.iter().any(|r| r.provider.is_external())
            })
    }

    /// The response cache, when configured.
    pub fn cache(&self) -> Option<&ResponseCache> {
        self.cache.as_ref()
    }

    /// Answers a chat-completions body for `alias`: from the cache when it can, else from the
    /// first target that answers (see the module docs for when fallback stops).
    pub async fn chat(
        &self,
        context: &CallContext,
        alias: &str,
        body: Value,
    ) -> Result<GatewayReply, GatewayError> {
        let table = self.current();
        let route = lookup(&table, alias)?;
        route.counters.requests.fetch_add(1, Ordering::Relaxed);
        let streamed = body.get("stream").and_then(Value::as_bool) == Some(true);
        let cache = self.cache.as_ref().filter(|_| is_deterministic(&body));
        let key = cache.map(|_| cache_key(context.key_id.as_deref(), alias, &body));
        if let (Some(cache), Some(key)) = (cache, &key) {
            let reply = cache.peek(key).and_then(|hit| {
                if streamed {
                    let include_usage = body
                        .pointer("/stream_options/include_usage")
                        .and_then(Value::as_bool)
                        == Some(true);
                    let chunks = rechunk(&hit, include_usage)?;
                    Some(ProviderReply::Stream(
                        stream::iter(chunks.into_iter().map(Ok)).boxed(),
                    ))
                } else {
                    Some(ProviderReply::Full(hit.as_ref().clone()))
                }
            });
            cache.count(reply.is_some());
            if let Some(reply) = reply {
                route.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(GatewayReply {
                    reply,
                    cache: CacheStatus::Hit,
                    target: None,
                    fallbacks: 0,
                });
            }
        }
        let prompt = prompt_text(&body);
        let answer = self
            .call(
                Call {
                    table: &table,
                    route,
                    context,
                    alias,
                    prompt: &prompt,
                },
                body,
                |provider, body| async move { first_chunk_ready(provider.chat(body).await?).await },
            )
            .await?;
        let (reply, target, fallbacks) = answer;
        let status = if key.is_some() {
            CacheStatus::Miss
        } else {
            CacheStatus::Bypass
        };
        if let (Some(cache), Some(key), ProviderReply::Full(value)) = (cache, key, &reply) {
            cache.insert(key, value.clone());
        }
        Ok(GatewayReply {
            reply,
            cache: status,
            target: Some(target),
            fallbacks,
        })
    }

    /// Answers an embeddings body for `alias` from the first target that answers. Embeddings are
    /// not cached.
    pub async fn embeddings(
        &self,
        context: &CallContext,
        alias: &str,
        body: Value,
    ) -> Result<Value, GatewayError> {
        let table = self.current();
        let route = lookup(&table, alias)?;
        route.counters.requests.fetch_add(1, Ordering::Relaxed);
        let prompt = prompt_text(&body);
        let (value, _, _) = self
            .call(
                Call {
                    table: &table,
                    route,
                    context,
                    alias,
                    prompt: &prompt,
                },
                body,
                |provider, body| async move { provider.embeddings(body).await },
            )
            .await?;
        Ok(value)
    }

    /// Tries the targets in order and their available replicas in balancing order, moving on
    /// after retryable failures; returns the answer, the target's label and the failures before.
    async fn call<T, F, Fut>(
        &self,
        call: Call<'_>,
        body: Value,
        op: F,
    ) -> Result<(T, String, u32), GatewayError>
    where
        T: HoldGuard,
        F: Fn(Arc<dyn Provider>, Value) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let Call {
            table,
            route,
            context,
            alias,
            prompt,
        } = call;
        let private = route.private || context.private;
        let mut failures = 0u32;
        let mut last_error: Option<(String, ProviderError)> = None;
        for target in &route.targets {
            if private && target.external {
                continue;
            }
            for replica in target.candidates(self.deps.clock.now(), prompt) {
                // Checked again per replica: the local resolver decides what is external too.
                if private && replica.provider.is_external() {
                    continue;
                }
                if failures > 0 {
                    route.counters.fallbacks.fetch_add(1, Ordering::Relaxed);
                }
                target.counters.requests.fetch_add(1, Ordering::Relaxed);
                let mut span = trace::start(&Attempt {
                    alias,
                    target: &target.label,
                    replica: &replica.label,
                    number: failures,
                    external: target.external || replica.provider.is_external(),
                });
                let mut guard = OutstandingGuard::new(replica.clone());
                let started = Instant::now();
                let attempt = op(replica.provider.clone(), body.clone());
                let result = trace::propagate(span.as_deref(), attempt).await;
                target.counters.record_latency(started.elapsed());
                match result {
                    Ok(answer) => {
                        replica.breaker().record_success();
                        if let Some(span) = &mut span {
                            span.outcome(AttemptOutcome::Answered);
                        }
                        // The span ends with the guard, when the answer has been delivered.
                        guard.1 = span;
                        return Ok((answer.hold(guard), target.label.clone(), failures));
                    }
                    Err(err) => {
                        if let Some(span) = &mut span {
                            let fallback = err.is_retryable();
                            span.outcome(AttemptOutcome::Failed {
                                error: &err,
                                fallback,
                            });
                        }
                        drop(span);
                        target.counters.errors.fetch_add(1, Ordering::Relaxed);
                        if !err.is_retryable() {
                            route.counters.errors.fetch_add(1, Ordering::Relaxed);
                            return Err(provider_error(alias, &target.label, err));
                        }
                        let now = self.deps.clock.now();
                        let mut breaker = replica.breaker();
                        breaker.record_failure(now, table.failure_threshold, table.cooldown);
                        if let Some(wait) = retry_after(&err) {
                            breaker.open_for(now, wait.min(MAX_RETRY_AFTER));
                        }
                        drop(breaker);
                        failures += 1;
                        last_error = Some((target.label.clone(), err));
                    }
                }
            }
        }
        route.counters.errors.fetch_add(1, Ordering::Relaxed);
        Err(match last_error {
            Some((target, err)) => provider_error(alias, &target, err),
            None => GatewayError::NoTargetAvailable {
                alias: alias.to_owned(),
            },
        })
    }

    /// Checks every replica of the current table once (`GET /health` for upstreams) and marks
    /// it up or down; a replica marked down is skipped until a later check passes. External
    /// targets (closed APIs, which mostly have no `/health`) are not checked: their circuit
    /// breakers alone take them out after failures.
    pub async fn check_health(&self) {
        let table = self.current();
        let replicas: Vec<Arc<Replica>> = table
            .routes
            .values()
            .flat_map(|route| route.targets.iter())
            .filter(|target| !target.external)
            .flat_map(|target| target.replicas.iter().cloned())
            .filter(|replica| !replica.provider.is_external())
            .collect();
        let checks = replicas.iter().map(|replica| async move {
            let healthy = replica.provider.health().await.is_ok();
            replica.up.store(healthy, Ordering::Relaxed);
        });
        futures_util::future::join_all(checks).await;
    }

    /// Runs [`check_health`](Self::check_health) every `routing.health_interval_secs` on the
    /// current tokio runtime until the gateway is dropped; `None` when the interval is 0.
    pub fn spawn_health_checks(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let interval = self.current().health_interval;
        if interval.is_zero() {
            return None;
        }
        let weak: Weak<Self> = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(gateway) = weak.upgrade() else {
                    break;
                };
                gateway.check_health().await;
            }
        }))
    }

    /// A snapshot of the counters of every alias and target of the current table, for the
    /// metrics layer. Labels come only from configuration, so the set is bounded.
    pub fn metrics(&self) -> GatewayMetrics {
        let table = self.current();
        let mut aliases: Vec<AliasMetrics> = table
            .routes
            .iter()
            .map(|(alias, route)| {
                let targets = route
                    .targets
                    .iter()
                    .map(|target| target.counters.snapshot(&target.label))
                    .collect();
                route.counters.snapshot(alias, targets)
            })
            .collect();
        aliases.sort_by(|a, b| a.alias.cmp(&b.alias));
        GatewayMetrics {
            aliases,
            cache_hits: self
                .cache
                .as_ref()
                .map_or(0, |c| c.counters.hits.load(Ordering::Relaxed)),
            cache_misses: self
                .cache
                .as_ref()
                .map_or(0, |c| c.counters.misses.load(Ordering::Relaxed)),
            cache_bytes: self.cache.as_ref().map_or(0, ResponseCache::total_bytes) as u64,
        }
    }
}

/// The longest Retry-After honoured, so one upstream cannot switch itself off for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The wait a 429 or an overloaded provider asked for.
fn retry_after(err: &ProviderError) -> Option<Duration> {
    match err {
        ProviderError::Overloaded { retry_after } => *retry_after,
        ProviderError::Upstream(moat_upstream::UpstreamError::RateLimited { retry_after }) => {
            *retry_after
        }
        _ => None,
    }
}

/// One request's routing inputs: the table it started with, its route, caller and prompt.
struct Call<'a> {
    table: &'a RouteTable,
    route: &'a Route,
    context: &'a CallContext,
    alias: &'a str,
    prompt: &'a str,
}

fn lookup<'t>(table: &'t RouteTable, alias: &str) -> Result<&'t Route, GatewayError> {
    table
        .routes
        .get(alias)
        .ok_or_else(|| GatewayError::UnknownAlias {
            alias: alias.to_owned(),
        })
}

fn provider_error(alias: &str, target: &str, source: ProviderError) -> GatewayError {
    GatewayError::Provider {
        alias: alias.to_owned(),
        target: target.to_owned(),
        source,
    }
}

/// An answer that can keep its replica's outstanding count until it is fully delivered.
trait HoldGuard: Sized {
    fn hold(self, guard: OutstandingGuard) -> Self;
}

impl HoldGuard for Value {
    fn hold(self, _guard: OutstandingGuard) -> Self {
        self
    }
}

impl HoldGuard for ProviderReply {
    fn hold(self, guard: OutstandingGuard) -> Self {
        match self {
            Self::Full(value) => Self::Full(value),
            Self::Stream(chunks) => Self::Stream(
                chunks
                    .map(move |item| {
                        let _held = &guard;
                        item
                    })
                    .boxed(),
            ),
        }
    }
}

/// Waits for a stream's first chunk, so a failure before it can still fall back; the chunk is
/// put back in front of the rest.
async fn first_chunk_ready(reply: ProviderReply) -> Result<ProviderReply, ProviderError> {
    let ProviderReply::Stream(mut chunks) = reply else {
        return Ok(reply);
    };
    match chunks.next().await {
        None => Ok(ProviderReply::Stream(stream::empty().boxed())),
        Some(Err(err)) => Err(err),
        Some(Ok(first)) => Ok(ProviderReply::Stream(
            stream::once(async { Ok(first) }).chain(chunks).boxed(),
        )),
    }
}

/// The text affinity hashes: the messages' text in order, else `prompt` or `input`.
fn prompt_text(body: &Value) -> String {
    let mut text = String::new();
    if let Some(messages) = body.get("messages").and_then(Value::as_array) {
        for message in messages {
            match message.get("content") {
                Some(Value::String(content)) => text.push_str(content),
                Some(Value::Array(parts)) => {
                    for part in parts {
                        if let Some(part_text) = part.get("text").and_then(Value::as_str) {
                            text.push_str(part_text);
                        }
                    }
                }
                _ => {}
            }
            text.push('\n');
        }
        return text;
    }
    for field in ["prompt", "input"] {
        if let Some(value) = body.get(field).and_then(Value::as_str) {
            return value.to_owned();
        }
    }
    text
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("label", &self.label)
            .field("outstanding", &self.outstanding.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
