//! Counters the metrics layer reads: plain atomics, one set per alias and per target, whose
//! labels come from configuration only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters of one alias.
#[derive(Debug, Default)]
pub struct AliasCounters {
    /// Requests for the alias, cache hits included.
    pub requests: AtomicU64,
    /// Requests that failed after every target was tried (or failed in a way no fallback fixes).
    pub errors: AtomicU64,
    /// Attempts made after an earlier target or replica failed.
    pub fallbacks: AtomicU64,
    /// Requests answered from the response cache.
    pub cache_hits: AtomicU64,
}

impl AliasCounters {
    pub(crate) fn snapshot(&self, alias: &str, targets: Vec<TargetMetrics>) -> AliasMetrics {
        AliasMetrics {
            alias: alias.to_owned(),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            targets,
        }
    }
}

/// Counters of one target (all its replicas together).
#[derive(Debug, Default)]
pub struct TargetCounters {
    /// Attempts sent to the target.
    pub requests: AtomicU64,
    /// Attempts that failed.
    pub errors: AtomicU64,
    /// Sum of attempt latencies (to the whole answer, or to a stream's first chunk), in µs.
    pub latency_micros_total: AtomicU64,
    /// Attempts whose latency is in the sum.
    pub latency_count: AtomicU64,
}

impl TargetCounters {
    pub(crate) fn record_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros_total
            .fetch_add(micros, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, label: &str) -> TargetMetrics {
        TargetMetrics {
            target: label.to_owned(),
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            latency_seconds_total: self.latency_micros_total.load(Ordering::Relaxed) as f64 / 1e6,
            latency_count: self.latency_count.load(Ordering::Relaxed),
        }
    }
}

/// A point-in-time copy of an alias's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasMetrics {
    pub alias: String,
    pub requests: u64,
    pub errors: u64,
    pub fallbacks: u64,
    pub cache_hits: u64,
    pub targets: Vec<TargetMetrics>,
}

/// A point-in-time copy of a target's counters.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetMetrics {
    pub target: String,
    pub requests: u64,
    pub errors: u64,
    pub latency_seconds_total: f64,
    pub latency_count: u64,
}

/// Everything the gateway counts, as of one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayMetrics {
    /// Per alias, sorted by name.
    pub aliases: Vec<AliasMetrics>,
    /// Cache lookups answered.
    pub cache_hits: u64,
    /// Cache lookups of cacheable requests that found nothing.
    pub cache_misses: u64,
    /// Bytes the cache holds.
    pub cache_bytes: u64,
}
