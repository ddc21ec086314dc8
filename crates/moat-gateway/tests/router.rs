//! The router against real loopback HTTP upstreams that count their requests: fallback,
//! privacy, balancing, cooldown, affinity, health checks, streaming and reload.

#![allow(clippy::unwrap_used)] // test helpers: a failure should stop the test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{content, Fake, Mode};
use futures_util::StreamExt;
use moat_gateway::{
    CallContext, Clock, Gateway, GatewayConfig, GatewayDeps, GatewayError, GatewayErrorKind,
    ManualClock, ProviderReply, SystemClock,
};
use serde_json::{json, Value};

fn upstream(fake: &Fake, extra: &str) -> String {
    format!(
        "type = \"upstream\"\nname = \"{}\"\nurl = \"{}\"\nmodel = \"m-{}\"\n{extra}\n",
        fake.name,
        fake.url(),
        fake.name
    )
}

fn target(alias: &str, body: &str) -> String {
    format!("[[aliases.{alias}.targets]]\n{body}\n")
}

fn parse(text: &str) -> GatewayConfig {
    toml::from_str(text).unwrap_or_else(|err| panic!("{err}\n{text}"))
}

fn gateway_with_clock(text: &str, clock: Arc<dyn Clock>) -> Gateway {
    Gateway::new(&parse(text), GatewayDeps { local: None, clock }).unwrap()
}

fn gateway(text: &str) -> Gateway {
    gateway_with_clock(text, Arc::new(SystemClock))
}

fn chat_body(prompt: &str) -> Value {
    json!({"model": "alias", "messages": [{"role": "user", "content": prompt}], "x_passthrough": 7})
}

async fn ask(gateway: &Gateway, context: &CallContext, alias: &str, prompt: &str) -> Value {
    let reply = gateway
        .chat(context, alias, chat_body(prompt))
        .await
        .unwrap();
    match reply.reply {
        ProviderReply::Full(value) => value,
        ProviderReply::Stream(_) => panic!("asked for a whole answer"),
    }
}

#[tokio::test]
async fn falls_back_to_the_second_target_on_5xx() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set_mode(Mode::Status(503));
    let gw = gateway(&(target("fast", &upstream(&a, "")) + &target("fast", &upstream(&b, ""))));
    let answer = ask(&gw, &CallContext::default(), "fast", "hi").await;
    assert_eq!(content(&answer), "from b");
    assert_eq!((a.hits(), b.hits()), (1, 1));
    // Only `model` is rewritten; unknown fields pass through.
    let forwarded = &b.bodies()[0];
    assert_eq!(forwarded["model"], "m-b");
    assert_eq!(forwarded["x_passthrough"], 7);
    let metrics = gw.metrics();
    assert_eq!(metrics.aliases[0].fallbacks, 1);
    assert_eq!(metrics.aliases[0].errors, 0);
    assert_eq!(metrics.aliases[0].targets[0].errors, 1);
}

#[tokio::test]
async fn falls_back_on_timeout() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set_mode(Mode::Sleep(Duration::from_secs(30)));
    let text =
        target("fast", &upstream(&a, "timeout_secs = 0.3")) + &target("fast", &upstream(&b, ""));
    let gw = gateway(&text);
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        ask(&gw, &CallContext::default(), "fast", "hi"),
    )
    .await
    .expect("the gateway gave up on the slow upstream");
    assert_eq!(content(&answer), "from b");
    assert_eq!((a.hits(), b.hits()), (1, 1));
}

#[tokio::test]
async fn max_duration_bounds_the_whole_answer_and_falls_back() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set_mode(Mode::Sleep(Duration::from_secs(30)));
    // The wait for headers alone (timeout_secs, 60 s by default) would not end this call.
    let text = target("fast", &upstream(&a, "max_duration_secs = 0.3"))
        + &target("fast", &upstream(&b, ""));
    let gw = gateway(&text);
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        ask(&gw, &CallContext::default(), "fast", "hi"),
    )
    .await
    .expect("the gateway gave up on the upstream past its max duration");
    assert_eq!(content(&answer), "from b");
    assert_eq!((a.hits(), b.hits()), (1, 1));

    let negative = target("n", &upstream(&a, "max_duration_secs = -1.0"));
    let deps = GatewayDeps {
        local: None,
        clock: Arc::new(SystemClock),
    };
    let Err(err) = Gateway::new(&parse(&negative), deps) else {
        panic!("a negative duration was accepted");
    };
    assert!(err.to_string().contains("max_duration_secs"), "{err}");
}

#[tokio::test]
async fn a_client_error_does_not_fall_back() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set_mode(Mode::Status(400));
    let gw = gateway(&(target("fast", &upstream(&a, "")) + &target("fast", &upstream(&b, ""))));
    let err = gw
        .chat(&CallContext::default(), "fast", chat_body("hi"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), GatewayErrorKind::BadRequest, "{err}");
    assert_eq!(b.hits(), 0);
}

#[tokio::test]
async fn a_private_alias_with_an_external_target_is_refused_at_load() {
    let x = Fake::start("closed").await;
    let text = format!(
        "[aliases.secret]\nprivate = true\n{}",
        target("secret", &upstream(&x, "external = true"))
    );
    let err = Gateway::new(
        &parse(&text),
        GatewayDeps {
            local: None,
            clock: Arc::new(SystemClock),
        },
    )
    .unwrap_err();
    assert!(matches!(err, GatewayError::Config { .. }), "{err}");
    assert!(err.to_string().contains("private"), "{err}");
    assert_eq!(x.hits(), 0);
}

#[tokio::test]
async fn a_private_key_never_reaches_the_external_upstream() {
    let (closed, own) = (Fake::start("closed").await, Fake::start("own").await);
    own.set_mode(Mode::Status(500));
    // The external API comes first and answers fine; the own node fails.
    let text = target("mixed", &upstream(&closed, "external = true"))
        + &target("mixed", &upstream(&own, ""));
    let gw = gateway(&text);
    let private = CallContext {
        key_id: Some("k-private".into()),
        private: true,
    };
    let err = gw
        .chat(&private, "mixed", chat_body("secret data"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), GatewayErrorKind::BadGateway, "{err}");
    assert_eq!(
        closed.hits(),
        0,
        "the external upstream must never see a private request"
    );
    assert_eq!(own.hits(), 1);

    // With only the external target left, a private key gets "unavailable", still without a call.
    let only_closed = gateway(&target(
        "closed-only",
        &upstream(&closed, "external = true"),
    ));
    let err = only_closed
        .chat(&private, "closed-only", chat_body("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, GatewayError::NoTargetAvailable { .. }),
        "{err}"
    );
    assert_eq!(closed.hits(), 0);

    // An ordinary key may use it: the rule is about private callers only.
    let answer = ask(&gw, &CallContext::default(), "mixed", "public").await;
    assert_eq!(content(&answer), "from closed");
    assert_eq!(closed.hits(), 1);
}

fn replicas(fakes: &[&Fake], extra: &str) -> String {
    let urls: Vec<String> = fakes.iter().map(|f| format!("\"{}\"", f.url())).collect();
    format!(
        "type = \"upstream\"\nname = \"pool\"\nreplicas = [{}]\nmodel = \"m\"\n{extra}\n",
        urls.join(", ")
    )
}

#[tokio::test]
async fn balancing_sends_new_requests_to_the_replica_with_fewest_outstanding() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let gw = Arc::new(gateway(&target("pool", &replicas(&[&a, &b], ""))));
    a.set_mode(Mode::Hold);
    b.set_mode(Mode::Hold);
    // Four requests, each sent once the previous one reached its replica and is held there.
    let mut pending = Vec::new();
    for i in 1..=4 {
        let gw = gw.clone();
        pending.push(tokio::spawn(async move {
            ask(&gw, &CallContext::default(), "pool", "x").await
        }));
        for _ in 0..1000 {
            if a.hits() + b.hits() == i {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    assert_eq!((a.hits(), b.hits()), (2, 2), "held requests spread evenly");
    a.release();
    b.release();
    for task in pending {
        task.await.unwrap();
    }

    // One replica stays busy, the other answers at once: every new request goes to the idle one
    // (round-robin would send every other request to the busy one).
    let (c, d) = (Fake::start("c").await, Fake::start("d").await);
    let gw = Arc::new(gateway(&target("pool", &replicas(&[&c, &d], ""))));
    c.set_mode(Mode::Hold);
    d.set_mode(Mode::Hold);
    let first = {
        let gw = gw.clone();
        tokio::spawn(async move { ask(&gw, &CallContext::default(), "pool", "x").await })
    };
    let busy_is_c = loop {
        if c.hits() + d.hits() == 1 {
            break c.hits() == 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (busy, idle) = if busy_is_c { (&c, &d) } else { (&d, &c) };
    idle.set_mode(Mode::Ok);
    for _ in 0..5 {
        let answer = ask(&gw, &CallContext::default(), "pool", "x").await;
        assert_eq!(content(&answer), format!("from {}", idle.name));
    }
    assert_eq!((busy.hits(), idle.hits()), (1, 5));
    busy.release();
    first.await.unwrap();
}

#[tokio::test]
async fn cooldown_skips_a_failing_target_and_returns_to_it() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set_mode(Mode::Status(500));
    let clock = Arc::new(ManualClock::new());
    let text = format!(
        "[routing]\ncooldown_secs = 30\nhealth_interval_secs = 0\n{}{}",
        target("fast", &upstream(&a, "")),
        target("fast", &upstream(&b, ""))
    );
    let gw = gateway_with_clock(&text, clock.clone());
    let context = CallContext::default();
    assert_eq!(content(&ask(&gw, &context, "fast", "1").await), "from b");
    assert_eq!(a.hits(), 1);
    a.set_mode(Mode::Ok);
    assert_eq!(content(&ask(&gw, &context, "fast", "2").await), "from b");
    assert_eq!(
        a.hits(),
        1,
        "a's circuit is open: it is not called during the cooldown"
    );
    clock.advance(Duration::from_secs(31));
    assert_eq!(content(&ask(&gw, &context, "fast", "3").await), "from a");
    assert_eq!((a.hits(), b.hits()), (2, 2));
}

#[tokio::test]
async fn affinity_sends_one_prefix_to_one_replica_and_a_dead_replica_moves_only_its_keys() {
    let fakes = [
        Fake::start("a").await,
        Fake::start("b").await,
        Fake::start("c").await,
    ];
    let refs: Vec<&Fake> = fakes.iter().collect();
    let gw = gateway(&format!(
        "[routing]\nhealth_interval_secs = 0\n{}",
        target("kv", &replicas(&refs, "affinity_prefix_chars = 25"))
    ));
    let context = CallContext::default();
    let mut homes = Vec::new();
    for i in 0..12 {
        let prefix = format!("system prompt number {i:03}.");
        assert_eq!(prefix.chars().count(), 25);
        let first = content(&ask(&gw, &context, "kv", &format!("{prefix} question one")).await);
        for tail in ["question two", "a different question", "one more"] {
            let again = content(&ask(&gw, &context, "kv", &format!("{prefix} {tail}")).await);
            assert_eq!(again, first, "prefix {i} moved");
        }
        homes.push(first);
    }
    let distinct: std::collections::BTreeSet<&String> = homes.iter().collect();
    assert!(
        distinct.len() >= 2,
        "twelve prefixes all on one replica: {homes:?}"
    );

    // Take down the replica that holds the first prefix; prefixes elsewhere stay where they were.
    let dead_name = homes[0].trim_start_matches("from ").to_owned();
    let dead = fakes.iter().find(|f| f.name == dead_name).unwrap();
    dead.set_healthy(false);
    gw.check_health().await;
    let dead_hits = dead.hits();
    for (i, home) in homes.iter().enumerate() {
        let now = content(
            &ask(
                &gw,
                &context,
                "kv",
                &format!("system prompt number {i:03}. again"),
            )
            .await,
        );
        if *home == homes[0] {
            assert_ne!(now, *home, "prefix {i} still on the dead replica");
        } else {
            assert_eq!(now, *home, "prefix {i} moved although its replica is alive");
        }
    }
    assert_eq!(
        dead.hits(),
        dead_hits,
        "a replica marked down is not called"
    );
}

#[tokio::test]
async fn health_checks_mark_a_replica_down_and_up_again() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let gw = gateway(&(target("fast", &upstream(&a, "")) + &target("fast", &upstream(&b, ""))));
    a.set_healthy(false);
    gw.check_health().await;
    assert_eq!(
        content(&ask(&gw, &CallContext::default(), "fast", "x").await),
        "from b"
    );
    assert_eq!(a.hits(), 0);
    a.set_healthy(true);
    gw.check_health().await;
    assert_eq!(
        content(&ask(&gw, &CallContext::default(), "fast", "x").await),
        "from a"
    );
}

#[tokio::test]
async fn external_targets_are_not_health_checked() {
    // A closed API without /health stays in use; only its circuit breaker can take it out.
    let a = Fake::start("closed").await;
    let gw = gateway(&target("smart", &upstream(&a, "external = true")));
    a.set_healthy(false);
    gw.check_health().await;
    assert_eq!(
        content(&ask(&gw, &CallContext::default(), "smart", "x").await),
        "from closed"
    );
}

#[tokio::test]
async fn streams_fall_back_before_the_first_chunk_but_not_after() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set_mode(Mode::Status(502));
    let gw = gateway(&(target("fast", &upstream(&a, "")) + &target("fast", &upstream(&b, ""))));
    let mut body = chat_body("stream me");
    body["stream"] = json!(true);
    let reply = gw
        .chat(&CallContext::default(), "fast", body.clone())
        .await
        .unwrap();
    let ProviderReply::Stream(chunks) = reply.reply else {
        panic!("asked for a stream")
    };
    let chunks: Vec<_> = chunks.collect().await;
    assert_eq!(chunks.len(), 2);
    assert_eq!(
        chunks[0].as_ref().unwrap()["choices"][0]["delta"]["content"],
        "from b"
    );
    assert_eq!(reply.fallbacks, 1);

    // a now starts answering and then breaks: the client gets a's first chunk, then an error,
    // and b is not asked (the answer had started).
    a.set_mode(Mode::BreakStream);
    let gw = gateway(&(target("fast", &upstream(&a, "")) + &target("fast", &upstream(&b, ""))));
    let b_before = b.hits();
    let reply = gw
        .chat(&CallContext::default(), "fast", body)
        .await
        .unwrap();
    let ProviderReply::Stream(chunks) = reply.reply else {
        panic!("asked for a stream")
    };
    let chunks: Vec<_> = chunks.collect().await;
    assert_eq!(
        chunks[0].as_ref().unwrap()["choices"][0]["delta"]["content"],
        "from a"
    );
    assert!(
        chunks.last().unwrap().is_err(),
        "the broken stream ends with an error"
    );
    assert_eq!(b.hits(), b_before);
}

#[tokio::test]
async fn embeddings_fall_back_too() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set_mode(Mode::Status(500));
    let gw = gateway(&(target("emb", &upstream(&a, "")) + &target("emb", &upstream(&b, ""))));
    let answer = gw
        .embeddings(&CallContext::default(), "emb", json!({"input": "hello"}))
        .await
        .unwrap();
    assert_eq!(answer["served_by"], "b");
    assert_eq!(b.bodies()[0]["model"], "m-b");
}

#[tokio::test]
async fn reload_swaps_routes_while_requests_in_flight_keep_theirs() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let gw = Arc::new(gateway(&target("fast", &upstream(&a, ""))));
    a.set_mode(Mode::Hold);
    let in_flight = {
        let gw = gw.clone();
        tokio::spawn(async move { ask(&gw, &CallContext::default(), "fast", "old").await })
    };
    a.wait_for_hits(1).await;
    gw.reload(&parse(&target("fast", &upstream(&b, ""))))
        .unwrap();
    assert_eq!(
        content(&ask(&gw, &CallContext::default(), "fast", "new").await),
        "from b"
    );
    a.release();
    assert_eq!(content(&in_flight.await.unwrap()), "from a");
    assert_eq!(
        gw.metrics().aliases[0].requests,
        2,
        "alias counters survive the reload"
    );

    // A bad configuration leaves the current routes in place.
    let bad = "[[aliases.fast.targets]]\ntype = \"upstream\"\nmodel = \"m\"\n";
    assert!(gw.reload(&parse(bad)).is_err());
    assert_eq!(
        content(&ask(&gw, &CallContext::default(), "fast", "still").await),
        "from b"
    );
}

#[tokio::test]
async fn unknown_alias_and_bad_configs_give_named_errors() {
    let a = Fake::start("a").await;
    let gw = gateway(&target("fast", &upstream(&a, "")));
    let err = gw
        .chat(&CallContext::default(), "nope", chat_body("x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), GatewayErrorKind::NotFound);

    let missing_key = target(
        "k",
        &upstream(&a, "api_key_env = \"MOAT_TEST_SURELY_UNSET_KEY_VAR\""),
    );
    let err = Gateway::new(
        &parse(&missing_key),
        GatewayDeps {
            local: None,
            clock: Arc::new(SystemClock),
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("MOAT_TEST_SURELY_UNSET_KEY_VAR"),
        "{err}"
    );

    let local = "[[aliases.l.targets]]\ntype = \"local\"\nmodel = \"qwen:0.5b\"\nsystem_prompt = \"be brief\"\n";
    let err = Gateway::new(
        &parse(local),
        GatewayDeps {
            local: None,
            clock: Arc::new(SystemClock),
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("local"), "{err}");

    let unknown_field = "[[aliases.u.targets]]\ntype = \"upstream\"\nurl = \"http://127.0.0.1:1/v1\"\nmodel = \"m\"\ntimeout = 3\n";
    assert!(toml::from_str::<GatewayConfig>(unknown_field).is_err());

    let refused = |config: String| {
        Gateway::new(
            &parse(&config),
            GatewayDeps {
                local: None,
                clock: Arc::new(SystemClock),
            },
        )
        .unwrap_err()
        .to_string()
    };
    let negative = target("n", &upstream(&a, "timeout_secs = -1.0"));
    assert!(refused(negative).contains("timeout_secs"));
    // Durations that a deadline or cooldown would overflow the clock with are refused at
    // load, not a panic on the first request.
    let endless = target("e", &upstream(&a, "max_duration_secs = 1e19"));
    assert!(refused(endless).contains("more than a year"));
    let cooldown = format!(
        "[routing]\ncooldown_secs = 1e19\n{}",
        target("c", &upstream(&a, ""))
    );
    assert!(refused(cooldown).contains("routing.cooldown_secs"));
}

/// A local "engine" whose queue is always full: the seam fake for overload, since the real
/// local adapter lives in the server.
struct FullEngine;

impl moat_gateway::Provider for FullEngine {
    fn chat(
        &self,
        _body: Value,
    ) -> futures_util::future::BoxFuture<'_, Result<ProviderReply, moat_gateway::ProviderError>>
    {
        Box::pin(async {
            Err(moat_gateway::ProviderError::Overloaded {
                retry_after: Some(Duration::from_secs(120)),
            })
        })
    }
    fn embeddings(
        &self,
        _body: Value,
    ) -> futures_util::future::BoxFuture<'_, Result<Value, moat_gateway::ProviderError>> {
        Box::pin(async {
            Err(moat_gateway::ProviderError::Unsupported {
                what: "embeddings".into(),
            })
        })
    }
    fn health(
        &self,
    ) -> futures_util::future::BoxFuture<'_, Result<(), moat_gateway::ProviderError>> {
        Box::pin(async { Ok(()) })
    }
    fn is_external(&self) -> bool {
        false
    }
}

struct Resolver;

impl moat_gateway::LocalResolver for Resolver {
    fn resolve(
        &self,
        _alias: &str,
        target: &moat_gateway::LocalTarget,
    ) -> Result<Arc<dyn moat_gateway::Provider>, GatewayError> {
        assert_eq!(target.system_prompt.as_deref(), Some("be brief"));
        assert_eq!(target.params.as_ref().unwrap()["temperature"], 0.2);
        Ok(Arc::new(FullEngine))
    }
}

#[tokio::test]
async fn an_overloaded_local_engine_falls_back_and_its_retry_after_is_honoured() {
    let b = Fake::start("b").await;
    let text = format!(
        "[routing]\ncooldown_secs = 5\n[[aliases.fast.targets]]\ntype = \"local\"\nmodel = \"qwen:0.5b\"\nsystem_prompt = \"be brief\"\nparams = {{ temperature = 0.2 }}\n\n{}",
        target("fast", &upstream(&b, ""))
    );
    let clock = Arc::new(ManualClock::new());
    let deps = GatewayDeps {
        local: Some(Arc::new(Resolver)),
        clock: clock.clone(),
    };
    let gw = Gateway::new(&parse(&text), deps).unwrap();
    let reply = gw
        .chat(&CallContext::default(), "fast", chat_body("x"))
        .await
        .unwrap();
    assert_eq!(reply.target.as_deref(), Some("b"));
    assert_eq!(reply.fallbacks, 1);
    // The engine asked for 120 s, longer than the 5 s cooldown: it stays skipped until then.
    clock.advance(Duration::from_secs(60));
    let reply = gw
        .chat(&CallContext::default(), "fast", chat_body("x"))
        .await
        .unwrap();
    assert_eq!(reply.fallbacks, 0, "the full engine was skipped, not tried");
    assert_eq!(gw.metrics().aliases[0].targets[0].requests, 1);
    clock.advance(Duration::from_secs(61));
    let reply = gw
        .chat(&CallContext::default(), "fast", chat_body("x"))
        .await
        .unwrap();
    assert_eq!(reply.fallbacks, 1, "after 120 s the engine is tried again");
}

#[tokio::test]
async fn background_health_checks_take_a_down_replica_out() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let text = format!(
        "[routing]\nhealth_interval_secs = 0.05\n{}{}",
        target("fast", &upstream(&a, "")),
        target("fast", &upstream(&b, ""))
    );
    let gw = Arc::new(gateway(&text));
    let task = gw.spawn_health_checks().expect("an interval is set");
    a.set_healthy(false);
    let mut moved = false;
    for _ in 0..500 {
        let answer = ask(&gw, &CallContext::default(), "fast", "x").await;
        if content(&answer) == "from b" {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(moved, "the background checks never marked a down");
    let a_hits = a.hits();
    assert_eq!(
        content(&ask(&gw, &CallContext::default(), "fast", "x").await),
        "from b"
    );
    assert_eq!(a.hits(), a_hits);
    task.abort();
}

#[tokio::test]
async fn falls_back_when_the_first_upstream_refuses_connections() {
    let b = Fake::start("b").await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let text = format!(
        "[[aliases.fast.targets]]\ntype = \"upstream\"\nname = \"dead\"\nurl = \"{dead_url}\"\nmodel = \"m\"\n\n{}",
        target("fast", &upstream(&b, ""))
    );
    let gw = Arc::new(gateway(&text));
    let reply = gw
        .chat(&CallContext::default(), "fast", chat_body("x"))
        .await
        .unwrap();
    assert_eq!(reply.target.as_deref(), Some("b"));
    assert_eq!(reply.fallbacks, 1);

    // The same alias as a provider, e.g. under an outer router or a guard.
    let provider = moat_gateway::AliasProvider::new(gw.clone(), "fast", CallContext::default());
    use moat_gateway::Provider as _;
    let ProviderReply::Full(answer) = provider.chat(chat_body("y")).await.unwrap() else {
        panic!("asked for a whole answer")
    };
    assert_eq!(content(&answer), "from b");
    assert!(!provider.is_external());
    assert_eq!(b.hits(), 2);
}
