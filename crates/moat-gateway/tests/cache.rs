//! The response cache through the gateway, against a real loopback upstream that counts its
//! requests (and numbers its answers, so a second upstream call would show).

#![allow(clippy::unwrap_used)] // test helpers: a failure should stop the test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Fake;
use futures_util::StreamExt;
use moat_gateway::{CacheStatus, CallContext, Gateway, GatewayDeps, ManualClock, ProviderReply};
use serde_json::{json, Value};

fn cached_gateway(fake: &Fake, clock: Arc<ManualClock>) -> Gateway {
    let text = format!(
        "[cache]\nttl_secs = 60\nmax_bytes = 1000000\n[[aliases.fast.targets]]\ntype = \"upstream\"\nurl = \"{}\"\nmodel = \"m\"\n",
        fake.url()
    );
    let config = toml::from_str(&text).unwrap();
    Gateway::new(&config, GatewayDeps { local: None, clock }).unwrap()
}

fn key(id: &str) -> CallContext {
    CallContext {
        key_id: Some(id.to_owned()),
        private: false,
    }
}

fn body(temperature: f64) -> Value {
    json!({"model": "fast", "temperature": temperature, "messages": [{"role": "user", "content": "2+2?"}]})
}

async fn ask(gw: &Gateway, context: &CallContext, body: Value) -> (Value, CacheStatus) {
    let reply = gw.chat(context, "fast", body).await.unwrap();
    match reply.reply {
        ProviderReply::Full(value) => (value, reply.cache),
        ProviderReply::Stream(_) => panic!("asked for a whole answer"),
    }
}

#[tokio::test]
async fn a_hit_returns_the_identical_body_and_the_upstream_sees_one_request() {
    let fake = Fake::start("a").await;
    let gw = cached_gateway(&fake, Arc::new(ManualClock::new()));
    let (first, status) = ask(&gw, &key("k1"), body(0.0)).await;
    assert_eq!(status, CacheStatus::Miss);
    // Same request with keys in another order and a different `user`: still a hit.
    let reordered = json!({"messages": [{"content": "2+2?", "role": "user"}], "user": "someone", "temperature": 0, "model": "fast"});
    let (second, status) = ask(&gw, &key("k1"), reordered).await;
    assert_eq!(status, CacheStatus::Hit);
    assert_eq!(
        serde_json::to_vec(&first).unwrap(),
        serde_json::to_vec(&second).unwrap()
    );
    assert_eq!(fake.hits(), 1);
    let metrics = gw.metrics();
    assert_eq!((metrics.cache_hits, metrics.cache_misses), (1, 1));
    assert_eq!(metrics.aliases[0].cache_hits, 1);
}

#[tokio::test]
async fn keys_do_not_share_entries() {
    let fake = Fake::start("a").await;
    let gw = cached_gateway(&fake, Arc::new(ManualClock::new()));
    let (one, _) = ask(&gw, &key("k1"), body(0.0)).await;
    let (two, status) = ask(&gw, &key("k2"), body(0.0)).await;
    assert_eq!(status, CacheStatus::Miss);
    assert_ne!(one["id"], two["id"], "k2 got its own upstream answer");
    assert_eq!(fake.hits(), 2);
    let (_, status) = ask(&gw, &key("k2"), body(0.0)).await;
    assert_eq!(status, CacheStatus::Hit);
    assert_eq!(fake.hits(), 2);
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let fake = Fake::start("a").await;
    let clock = Arc::new(ManualClock::new());
    let gw = cached_gateway(&fake, clock.clone());
    ask(&gw, &key("k1"), body(0.0)).await;
    clock.advance(Duration::from_secs(59));
    assert_eq!(ask(&gw, &key("k1"), body(0.0)).await.1, CacheStatus::Hit);
    clock.advance(Duration::from_secs(2));
    let (fresh, status) = ask(&gw, &key("k1"), body(0.0)).await;
    assert_eq!(status, CacheStatus::Miss);
    assert_eq!(fresh["id"], "chatcmpl-a-2");
    assert_eq!(fake.hits(), 2);
}

#[tokio::test]
async fn non_deterministic_requests_bypass_the_cache() {
    let fake = Fake::start("a").await;
    let gw = cached_gateway(&fake, Arc::new(ManualClock::new()));
    for _ in 0..2 {
        assert_eq!(ask(&gw, &key("k1"), body(0.8)).await.1, CacheStatus::Bypass);
    }
    assert_eq!(fake.hits(), 2);
    // A fixed seed makes it cacheable even above temperature 0.
    let mut seeded = body(0.8);
    seeded["seed"] = json!(7);
    ask(&gw, &key("k1"), seeded.clone()).await;
    assert_eq!(ask(&gw, &key("k1"), seeded).await.1, CacheStatus::Hit);
    assert_eq!(fake.hits(), 3);
}

#[tokio::test]
async fn a_streamed_request_is_served_rechunked_from_a_cached_full_answer() {
    let fake = Fake::start("a").await;
    let gw = cached_gateway(&fake, Arc::new(ManualClock::new()));
    let (full, _) = ask(&gw, &key("k1"), body(0.0)).await;
    let mut streamed = body(0.0);
    streamed["stream"] = json!(true);
    let reply = gw.chat(&key("k1"), "fast", streamed).await.unwrap();
    assert_eq!(reply.cache, CacheStatus::Hit);
    let ProviderReply::Stream(chunks) = reply.reply else {
        panic!("asked for a stream")
    };
    let chunks: Vec<Value> = chunks.map(|c| c.unwrap()).collect().await;
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        full["choices"][0]["message"]["content"].as_str().unwrap()
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert_eq!(fake.hits(), 1);

    // A streamed answer is not stored: a fresh streamed request on another key goes upstream
    // and a whole request after it is still a miss.
    let mut other = body(0.0);
    other["stream"] = json!(true);
    let reply = gw.chat(&key("k3"), "fast", other).await.unwrap();
    assert_eq!(reply.cache, CacheStatus::Miss);
    drop(reply);
    assert_eq!(ask(&gw, &key("k3"), body(0.0)).await.1, CacheStatus::Miss);
}
