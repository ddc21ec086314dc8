//! The arrival window with a real model (SmolLM2-135M): a burst of requests that arrive a
//! little apart is prefilled in one step, and without the window each arrival that finds the
//! engine free gets a step of its own. The engine's step counter (`EngineStats::steps`) says
//! how many batches it decoded.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{collect, request, smollm2};
use moat_engine::arrival::ArrivalConfig;
use moat_engine::Engine;

/// A prompt of about 40 tokens whose start differs per `kind` and `index`, so no request reuses
/// another's prefix.
fn prompt(kind: &str, index: usize) -> String {
    format!(
        "{kind} number {index}: the committee reviewed the quarterly report on regional rail \
         maintenance, noting that inspections were completed on schedule and that"
    )
}

/// Batches decoded for four one-token requests sent 20 ms apart, after a warm-up of four at
/// once, which makes four the peak the window expects and measures a prefill.
async fn burst_steps(arrival: ArrivalConfig) -> Option<u64> {
    let engine = smollm2(|options| {
        options.parallel = 4;
        options.arrival = arrival;
    })?;
    let warm_up: Vec<_> = (0..4)
        .map(|index| {
            engine
                .generate(request(&prompt("warm-up", index), 8))
                .unwrap()
        })
        .collect();
    for stream in warm_up {
        collect(stream).await;
    }
    let before = engine.stats().unwrap().steps;
    let mut burst = Vec::new();
    for index in 0..4 {
        burst.push(
            engine
                .generate(request(&prompt("burst", index), 1))
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for stream in burst {
        assert_eq!(collect(stream).await.tokens.len(), 1);
    }
    Some(engine.stats().unwrap().steps - before)
}

#[tokio::test]
async fn a_burst_of_requests_is_prefilled_in_one_step() {
    // A quiet period far above the 20 ms between arrivals, so a busy machine cannot close the
    // window early, and no cap from the prefill's cost, so the result does not depend on the
    // machine's speed.
    let window = ArrivalConfig {
        quiet: Duration::from_millis(300),
        share_percent: 1_000_000,
    };
    let Some(steps) = burst_steps(window).await else {
        return;
    };
    assert_eq!(steps, 1, "the four prompts share one step");
    let off = ArrivalConfig {
        quiet: Duration::ZERO,
        ..ArrivalConfig::default()
    };
    let steps = burst_steps(off).await.unwrap();
    assert!(
        steps >= 2,
        "without the window the first arrival has a step of its own: {steps}"
    );
}
