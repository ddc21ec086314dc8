//! The response cache: exact-match answers for deterministic chat requests.
//!
//! A request is cacheable only when it must give the same answer twice: `n` absent or 1, and
//! `temperature` 0 or a fixed integer `seed`. The key is a SHA-256 over the caller's key id, the
//! alias and a canonical JSON of the body (object keys sorted at every level; `stream`,
//! `stream_options` and `user` removed, since they change the framing or the bookkeeping, not
//! the answer). So two API keys never share an entry.
//!
//! Only whole (non-streamed) answers are stored. A streamed request whose full answer is cached
//! is served from it, re-chunked into `chat.completion.chunk` events (one content chunk, one
//! finish chunk); a streamed answer itself is not stored. Size is bounded in bytes of serialised
//! JSON with least-recently-used eviction, and entries expire after a TTL on an injected clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::config::CacheConfig;

/// Body fields that change how an answer is delivered or accounted, not what it says.
const IGNORED_FIELDS: [&str; 3] = ["stream", "stream_options", "user"];

/// Whether a chat body asks for a reproducible answer.
pub fn is_deterministic(body: &Value) -> bool {
    let single = match body.get("n") {
        None | Some(Value::Null) => true,
        Some(n) => n.as_u64() == Some(1),
    };
    let zero_temperature = body
        .get("temperature")
        .and_then(Value::as_f64)
        .is_some_and(|t| t == 0.0);
    let seeded = body
        .get("seed")
        .is_some_and(|seed| seed.is_i64() || seed.is_u64());
    single && (zero_temperature || seeded)
}

/// The cache key of a request: who asks (key id), through which alias, and what.
pub fn cache_key(key_id: Option<&str>, alias: &str, body: &Value) -> [u8; 32] {
    let mut canonical = String::new();
    write_canonical(body, true, &mut canonical);
    let mut hasher = Sha256::new();
    // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
    for part in [key_id.unwrap_or(""), alias, canonical.as_str()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    if key_id.is_none() {
        hasher.update(b"anonymous");
    }
    hasher.finalize().into()
}

/// JSON with object keys sorted at every level, whatever order the map type keeps.
fn write_canonical(value: &Value, top_level: bool, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map
                .keys()
                .filter(|key| !(top_level && IGNORED_FIELDS.contains(&key.as_str())))
                .collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], false, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, false, out);
            }
            out.push(']');
        }
        Value::Number(number) => out.push_str(&canonical_number(number)),
        other => out.push_str(&other.to_string()),
    }
}

/// `0`, `0.0` and `0e0` are the same temperature: integral floats are written as integers
/// (within the range where f64 holds integers exactly), so they share a cache entry.
fn canonical_number(number: &serde_json::Number) -> String {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if number.is_i64() || number.is_u64() {
        return number.to_string();
    }
    match number.as_f64() {
        Some(float) if float.fract() == 0.0 && float.abs() < EXACT => format!("{}", float as i64),
        _ => number.to_string(),
    }
}

#[derive(Debug)]
struct Entry {
    value: Arc<Value>,
    bytes: usize,
    stored_at: Instant,
    last_use: u64,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<[u8; 32], Entry>,
    by_use: BTreeMap<u64, [u8; 32]>,
    total_bytes: usize,
    tick: u64,
}

impl Inner {
    fn remove(&mut self, key: &[u8; 32]) {
        if let Some(entry) = self.entries.remove(key) {
            self.by_use.remove(&entry.last_use);
            self.total_bytes -= entry.bytes;
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

/// Hit and miss counts since start, for the metrics layer.
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Lookups answered from the cache.
    pub hits: AtomicU64,
    /// Lookups of cacheable requests that found nothing (or an expired entry).
    pub misses: AtomicU64,
    /// Entries dropped to stay under `max_bytes`.
    pub evictions: AtomicU64,
}

/// An LRU, TTL-bounded map from request keys to whole answers.
#[derive(Debug)]
pub struct ResponseCache {
    config: CacheConfig,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    /// Hits, misses and evictions.
    pub counters: CacheCounters,
}

impl ResponseCache {
    /// An empty cache; a TTL that is not a finite non-negative number of seconds is refused.
    pub fn new(config: CacheConfig, clock: Arc<dyn Clock>) -> Result<Self, crate::GatewayError> {
        let ttl = crate::router::seconds("cache.ttl_secs", config.ttl_secs)?;
        Ok(Self {
            config,
            ttl,
            clock,
            inner: Mutex::new(Inner::default()),
            counters: CacheCounters::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached answer for `key`, if present and fresh; counts a hit or a miss.
    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<Value>> {
        let found = self.peek(key);
        self.count(found.is_some());
        found
    }

    /// Counts one lookup as a hit or a miss; for callers of [`peek`](Self::peek) that decide
    /// afterwards whether the entry could serve.
    pub fn count(&self, hit: bool) {
        let counter = if hit {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The cached answer for `key` if present and fresh, without counting; an expired entry is
    /// removed, a fresh one becomes the most recently used.
    pub fn peek(&self, key: &[u8; 32]) -> Option<Arc<Value>> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let fresh = now.saturating_duration_since(inner.entries.get(key)?.stored_at) < self.ttl;
        if !fresh {
            inner.remove(key);
            return None;
        }
        let tick = inner.next_tick();
        let entry = inner.entries.get_mut(key)?;
        let old = std::mem::replace(&mut entry.last_use, tick);
        let value = entry.value.clone();
        inner.by_use.remove(&old);
        inner.by_use.insert(tick, *key);
        Some(value)
    }

    /// Stores an answer, evicting the least recently used until it fits; an answer larger than
    /// `max_entry_bytes` (or the whole cache) is not stored.
    pub fn insert(&self, key: [u8; 32], value: Value) {
        let bytes = value.to_string().len() + key.len();
        if bytes > self.config.max_entry_bytes || bytes > self.config.max_bytes {
            return;
        }
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.remove(&key);
        while inner.total_bytes + bytes > self.config.max_bytes {
            let Some((_, oldest)) = inner.by_use.pop_first() else {
                break;
            };
            if let Some(entry) = inner.entries.remove(&oldest) {
                inner.total_bytes -= entry.bytes;
            }
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
        let tick = inner.next_tick();
        inner.by_use.insert(tick, key);
        inner.total_bytes += bytes;
        inner.entries.insert(
            key,
            Entry {
                value: Arc::new(value),
                bytes,
                stored_at: now,
                last_use: tick,
            },
        );
    }

    /// Bytes held now.
    pub fn total_bytes(&self) -> usize {
        self.lock().total_bytes
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A cached `chat.completion` as stream chunks: one with the role and the whole content, one
/// with the finish reason, and with `include_usage` a last one with no choices and the
/// answer's `usage` (as OpenAI streams it). `None` when the answer is not a single plain-text choice (tool calls,
/// several choices), which a streamed request then gets from the provider instead.
pub fn rechunk(completion: &Value, include_usage: bool) -> Option<Vec<Value>> {
    let choices = completion.get("choices")?.as_array()?;
    let [choice] = choices.as_slice() else {
        return None;
    };
    let message = choice.get("message")?;
    let content = message.get("content")?.as_str()?;
    if message
        .get("tool_calls")
        .is_some_and(|calls| !calls.is_null())
    {
        return None;
    }
    let role = message
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("assistant");
    let chunk = |delta: Value, finish: Value| {
        serde_json::json!({
            "id": completion.get("id").cloned().unwrap_or(Value::Null),
            "object": "chat.completion.chunk",
            "created": completion.get("created").cloned().unwrap_or(Value::Null),
            "model": completion.get("model").cloned().unwrap_or(Value::Null),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
    let mut chunks = vec![
        chunk(
            serde_json::json!({"role": role, "content": content}),
            Value::Null,
        ),
        chunk(serde_json::json!({}), finish),
    ];
    if include_usage {
        let mut last = chunk(Value::Null, Value::Null);
        last["choices"] = Value::Array(Vec::new());
        last["usage"] = completion.get("usage").cloned().unwrap_or(Value::Null);
        chunks.push(last);
    }
    Some(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn determinism_needs_zero_temperature_or_a_seed_and_one_choice() {
        assert!(is_deterministic(&json!({"temperature": 0})));
        assert!(is_deterministic(&json!({"temperature": 0.0, "n": 1})));
        assert!(is_deterministic(&json!({"temperature": 0.7, "seed": 42})));
        assert!(!is_deterministic(&json!({})));
        assert!(!is_deterministic(&json!({"temperature": 0.2})));
        assert!(!is_deterministic(&json!({"temperature": 0, "n": 2})));
        assert!(!is_deterministic(&json!({"seed": "42"})));
    }

    #[test]
    fn key_ignores_order_stream_and_user_but_not_content_or_key_id() {
        let a = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0});
        let b = json!({"temperature": 0, "user": "u1", "stream": true, "messages": [{"content": "hi", "role": "user"}], "model": "m"});
        let c = json!({"model": "m", "messages": [{"role": "user", "content": "hi!"}], "temperature": 0});
        assert_eq!(
            cache_key(Some("k1"), "m", &a),
            cache_key(Some("k1"), "m", &b)
        );
        assert_ne!(
            cache_key(Some("k1"), "m", &a),
            cache_key(Some("k1"), "m", &c)
        );
        assert_ne!(
            cache_key(Some("k1"), "m", &a),
            cache_key(Some("k2"), "m", &a)
        );
        assert_ne!(cache_key(Some(""), "m", &a), cache_key(None, "m", &a));
        let float_zero = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0});
        assert_eq!(cache_key(None, "m", &a), cache_key(None, "m", &float_zero));
        let half = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.5});
        assert_ne!(
            cache_key(None, "m", &half),
            cache_key(None, "m", &float_zero)
        );
    }

    #[test]
    fn least_recently_used_goes_first_and_bytes_stay_bounded() {
        let clock: Arc<dyn Clock> = Arc::new(crate::clock::ManualClock::new());
        let value = json!({"x": "0123456789012345678901234567890123456789"});
        let one = value.to_string().len() + 32;
        let config = CacheConfig {
            max_bytes: one * 2,
            max_entry_bytes: one,
            ttl_secs: 60.0,
        };
        let cache = ResponseCache::new(config, clock).unwrap();
        cache.insert([1; 32], value.clone());
        cache.insert([2; 32], value.clone());
        assert!(cache.get(&[1; 32]).is_some(), "touch 1 so 2 is the oldest");
        cache.insert([3; 32], value.clone());
        assert!(cache.get(&[2; 32]).is_none());
        assert!(cache.get(&[1; 32]).is_some());
        assert!(cache.get(&[3; 32]).is_some());
        assert!(cache.total_bytes() <= one * 2);
        cache.insert([4; 32], json!({"x": "far too large ".repeat(20)}));
        assert!(
            cache.get(&[4; 32]).is_none(),
            "an entry over max_entry_bytes is not stored"
        );
    }

    #[test]
    fn rechunk_gives_role_content_then_finish_and_refuses_tool_calls() {
        let completion = json!({"id": "c1", "created": 1, "model": "m", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}]});
        let chunks = rechunk(&completion, false).unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "hello");
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
        let tools = json!({"choices": [{"message": {"role": "assistant", "content": "", "tool_calls": [{}]}}]});
        assert!(rechunk(&tools, false).is_none());
    }

    #[test]
    fn rechunk_with_include_usage_ends_with_the_usage_chunk() {
        let usage = json!({"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4});
        let completion = json!({"id": "c1", "created": 1, "model": "m", "usage": usage, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}]});
        let chunks = rechunk(&completion, true).unwrap();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2]["choices"], json!([]));
        assert_eq!(chunks[2]["usage"], usage);
        assert_eq!(chunks[2]["object"], "chat.completion.chunk");
    }
}
