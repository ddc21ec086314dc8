//! The tracing seam against real loopback upstreams: one span per attempt, in order, with
//! how each ended; the answering attempt's span lives until its stream is dropped.

#![allow(clippy::unwrap_used)] // test helpers: a failure should stop the test

mod common;

use std::sync::{Arc, Mutex};

use common::{Fake, Mode};
use futures_util::StreamExt;
use moat_gateway::{
    with_tracer, Attempt, AttemptOutcome, AttemptSpan, AttemptTracer, CallContext, Gateway,
    GatewayConfig, GatewayDeps, ProviderReply, SystemClock,
};
use serde_json::json;

/// What a recorded attempt span saw.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    target: String,
    replica: String,
    number: u32,
    outcome: String,
    ended: bool,
}

#[derive(Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

struct RecordedSpan {
    index: usize,
    spans: Arc<Mutex<Vec<Seen>>>,
}

impl AttemptTracer for Recorder {
    fn start(&self, attempt: &Attempt<'_>) -> Box<dyn AttemptSpan> {
        let mut spans = self.0.lock().unwrap();
        spans.push(Seen {
            target: attempt.target.to_owned(),
            replica: attempt.replica.to_owned(),
            number: attempt.number,
            outcome: String::new(),
            ended: false,
        });
        Box::new(RecordedSpan {
            index: spans.len() - 1,
            spans: Arc::clone(&self.0),
        })
    }
}

impl AttemptSpan for RecordedSpan {
    fn traceparent(&self) -> Option<String> {
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned())
    }

    fn outcome(&mut self, outcome: AttemptOutcome<'_>) {
        self.spans.lock().unwrap()[self.index].outcome = match outcome {
            AttemptOutcome::Answered => "answered".to_owned(),
            AttemptOutcome::Failed { fallback, .. } => format!("failed fallback={fallback}"),
        };
    }
}

impl Drop for RecordedSpan {
    fn drop(&mut self) {
        self.spans.lock().unwrap()[self.index].ended = true;
    }
}

fn gateway(a: &Fake, b: &Fake) -> Gateway {
    let text = format!(
        "[[aliases.fast.targets]]\ntype = \"upstream\"\nname = \"a\"\nurl = \"{}\"\nmodel = \"m\"\n\
         [[aliases.fast.targets]]\ntype = \"upstream\"\nname = \"b\"\nurl = \"{}\"\nmodel = \"m\"\n",
        a.url(),
        b.url()
    );
    let config: GatewayConfig = toml::from_str(&text).unwrap();
    Gateway::new(
        &config,
        GatewayDeps {
            local: None,
            clock: Arc::new(SystemClock),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn each_attempt_gets_a_span_that_says_how_it_ended() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set_mode(Mode::Status(503));
    let gw = gateway(&a, &b);
    let recorder = Recorder::default();
    let spans = Arc::clone(&recorder.0);
    let body =
        json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}], "stream": true});
    let reply = with_tracer(
        Arc::new(recorder),
        gw.chat(&CallContext::default(), "fast", body),
    )
    .await
    .unwrap();
    let seen = spans.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (
            seen[0].target.as_str(),
            seen[0].number,
            seen[0].outcome.as_str()
        ),
        ("a", 0, "failed fallback=true")
    );
    assert_eq!(seen[0].replica, a.url());
    assert!(seen[0].ended);
    assert_eq!(
        (
            seen[1].target.as_str(),
            seen[1].number,
            seen[1].outcome.as_str()
        ),
        ("b", 1, "answered")
    );
    // The answering attempt's span lasts as long as its stream.
    assert!(!seen[1].ended);
    let ProviderReply::Stream(mut chunks) = reply.reply else {
        panic!("asked for a stream")
    };
    while chunks.next().await.is_some() {}
    drop(chunks);
    assert!(spans.lock().unwrap()[1].ended);
}

#[tokio::test]
async fn a_client_error_is_not_a_fallback() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    a.set_mode(Mode::Status(400));
    let gw = gateway(&a, &b);
    let recorder = Recorder::default();
    let spans = Arc::clone(&recorder.0);
    let body = json!({"model": "fast", "messages": [{"role": "user", "content": "hi"}]});
    let result = with_tracer(
        Arc::new(recorder),
        gw.chat(&CallContext::default(), "fast", body),
    )
    .await;
    assert!(result.is_err());
    let seen = spans.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].outcome, "failed fallback=false");
    assert!(seen[0].ended);
}
