//! Measures what one compute step's hand-off costs: the time `run_on_executor` adds to a job
//! that runs for a given time on the compute thread (a wake-up there and one back).
//!
//! `cargo run --release -p moat-engine --example handoff [-- STEP_US [ROUNDS]]`

use std::time::{Duration, Instant};

use moat_engine::compute::{run_on_executor_with, Handoff};

fn busy(for_: Duration) {
    let began = Instant::now();
    while began.elapsed() < for_ {
        std::hint::spin_loop();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let step_us: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let gap_us: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let poll_us: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let poll = Duration::from_micros(poll_us);
    let step = Duration::from_micros(step_us);
    let gap = Duration::from_micros(gap_us);
    let mut extra = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let began = Instant::now();
        let ran = run_on_executor_with(Handoff::polling(poll, step), move || {
            let began = Instant::now();
            busy(step);
            began.elapsed()
        })
        .expect("job");
        extra.push(began.elapsed().saturating_sub(ran));
        // The submitter's own work between steps (sampling, streaming).
        busy(gap);
    }
    extra.sort();
    let at = |q: f64| extra[((extra.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    println!(
        "{{\"step_us\":{step_us},\"poll_us\":{poll_us},\"gap_us\":{gap_us},\"rounds\":{rounds},\"extra_us_p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"mean\":{:.1}}}",
        at(0.5),
        at(0.9),
        at(0.99),
        extra.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e6 / extra.len() as f64
    );
}
