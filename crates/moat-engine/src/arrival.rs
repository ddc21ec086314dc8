//! The arrival window: when requests arrive in a burst (clients that fire several at once, or
//! streams that finished in the same step and whose clients send their next request), the
//! backend waits a moment for the rest of the burst before it plans a step, so that their
//! prompts are prefilled in one step instead of one step each.
//!
//! Why it matters: a step that prefills a prompt takes as long as the prompt is long (about
//! 120 ms for 34 tokens of SmolLM2 on 2 cores), and every sequence already generating waits for
//! it. A burst of 8 requests whose arrivals spread over 3 ms, planned the moment the first one
//! came, split into a step with the first few prompts and another with the rest: the streams
//! of the first group wait a whole prefill step between their first and second token, and from
//! then on the two groups finish, and send their next requests, at different times, so each
//! group's prefill stalls the other's tokens again in every round. Measured with 8 and 16
//! streams (docs/PERFORMANCE.md, runs 16 and 17), that was 1.2 and 1.4 % of all gaps between
//! tokens over 100 ms, and none with the window. vLLM's scheduler has the same idea
//! (`scheduler_delay_factor`).
//!
//! The rule, applied only after a request arrived: wait at most [`ArrivalConfig::quiet`] for
//! the next one, again after each further arrival, but only while
//! - a slot is free for another request;
//! - fewer requests are in the engine (running and queued) than at its peak, so more are
//!   likely on their way (one client sending one request at a time never waits). The peak is
//!   the most requests seen in the engine at once, lowered to the current count whenever a
//!   quiet period passes without an arrival: a burst smaller than before costs one quiet
//!   period, once. It does not fade with time, so a burst after a long idle time is gathered
//!   like the one before it;
//! - the wait so far stays under [`ArrivalConfig::share_percent`] (10 %) of what the prefill
//!   ahead will cost, estimated from the measured cost of earlier prompt steps (a prompt mostly
//!   cached, or a fast GPU, makes the prefill cheap and the window closes at once).
//!
//! A plain struct: time comes in as arguments and it knows nothing of channels or llama.cpp.

use std::time::{Duration, Instant};

/// The default quiet period: longer than the few milliseconds between the requests of one
/// burst from concurrent clients, and at most 10 % of a prefill worth waiting for.
pub const DEFAULT_QUIET: Duration = Duration::from_millis(5);

/// The arrival window's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrivalConfig {
    /// Longest wait for the next arrival of a burst; zero turns the window off.
    pub quiet: Duration,
    /// Most that waiting for a burst may add to a step, in percent of the estimated cost of the
    /// prefill ahead; below one quiet period it does not wait at all.
    pub share_percent: u32,
}

impl Default for ArrivalConfig {
    fn default() -> Self {
        Self {
            quiet: DEFAULT_QUIET,
            share_percent: 10,
        }
    }
}

/// What the engine holds when the window decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Requests running or queued.
    pub in_engine: usize,
    /// Slots a further request could take.
    pub free_slots: usize,
}

/// Steps with at least this many prompt tokens teach the prefill cost.
const MIN_PROMPT_TOKENS: usize = 16;
/// Weight of the newest measurement in the running estimate.
const EWMA_WEIGHT: f64 = 0.3;

/// The arrival window's state. See the module documentation.
#[derive(Debug)]
pub struct ArrivalWindow {
    config: ArrivalConfig,
    /// Seconds per batch token of steps made mostly of prompt tokens (a running average).
    prefill_cost: Option<f64>,
    /// The most requests in the engine at once, lowered by a quiet period without arrivals.
    peak: usize,
}

impl ArrivalWindow {
    pub fn new(config: ArrivalConfig) -> Self {
        Self {
            config,
            prefill_cost: None,
            peak: 0,
        }
    }

    /// Learns from a decoded step: `prompt_tokens` of its `batch_tokens` were prompt tokens
    /// (the rest one token per generating sequence), and it took `elapsed`. Only steps made
    /// mostly of prompt tokens count, so the estimate is the cost of a prefill.
    pub fn observe_step(&mut self, prompt_tokens: usize, batch_tokens: usize, elapsed: Duration) {
        if prompt_tokens < MIN_PROMPT_TOKENS || prompt_tokens * 2 < batch_tokens {
            return;
        }
        let per_token = elapsed.as_secs_f64() / batch_tokens as f64;
        self.prefill_cost = Some(match self.prefill_cost {
            Some(cost) => cost + EWMA_WEIGHT * (per_token - cost),
            None => per_token,
        });
    }

    /// Records how many requests the engine holds (running and queued); the peak is what the
    /// window expects a burst to refill.
    pub fn observe_load(&mut self, in_engine: usize) {
        self.peak = self.peak.max(in_engine);
    }

    /// A wait of `waited` ended without an arrival while `in_engine` requests were in the
    /// engine. After a whole quiet period the burst was smaller than the peak, which comes down
    /// to it; a wait cut short by the cost allowance says nothing about the burst.
    pub fn quiet_passed(&mut self, in_engine: usize, waited: Duration) {
        if waited >= self.config.quiet {
            self.peak = in_engine;
        }
    }

    /// The estimated cost of computing `prompt_tokens`, once a prefill step was measured.
    pub fn prefill_estimate(&self, prompt_tokens: usize) -> Option<Duration> {
        let cost = self.prefill_cost? * prompt_tokens as f64;
        Duration::try_from_secs_f64(cost).ok()
    }

    /// Whether the engine should wait for another arrival before planning, and for at most
    /// how long. `since` is when the burst's first request came in this loop turn; `backlog`
    /// gives the prompt tokens still to compute (asked only when the other conditions hold,
    /// since it walks the prefix index). `None`: plan now.
    pub fn wait(
        &self,
        now: Instant,
        since: Instant,
        load: Load,
        backlog: impl FnOnce() -> usize,
    ) -> Option<Duration> {
        if self.config.quiet.is_zero() || load.free_slots == 0 || load.in_engine >= self.peak {
            return None;
        }
        let share = f64::from(self.config.share_percent) / 100.0;
        let allowed = self.prefill_estimate(backlog())?.mul_f64(share);
        if allowed < self.config.quiet {
            return None;
        }
        let left = allowed.checked_sub(now.saturating_duration_since(since))?;
        (!left.is_zero()).then(|| left.min(self.config.quiet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A 2 ms quiet period, the rest as by default.
    fn config() -> ArrivalConfig {
        ArrivalConfig {
            quiet: 2 * MS,
            ..ArrivalConfig::default()
        }
    }

    /// A window with `config` that has seen 8 requests at once and a 272-token prompt step
    /// that took `elapsed`.
    fn warmed_with(config: ArrivalConfig, elapsed: Duration) -> ArrivalWindow {
        let mut window = ArrivalWindow::new(config);
        window.observe_load(8);
        window.observe_step(272, 272, elapsed);
        window
    }

    /// About 100 ms for a 34-token prompt.
    fn warmed() -> ArrivalWindow {
        warmed_with(config(), 800 * MS)
    }

    fn load(in_engine: usize, free_slots: usize) -> Load {
        Load {
            in_engine,
            free_slots,
        }
    }

    #[test]
    fn a_burst_below_the_peak_waits_one_quiet_period_at_a_time() {
        let start = Instant::now();
        let window = warmed();
        // 1 of 8 back, 34 prompt tokens ahead (~100 ms, so up to 10 ms of waiting).
        assert_eq!(window.wait(start, start, load(1, 7), || 34), Some(2 * MS));
        // 9 ms into the burst: 1 ms of the allowance is left.
        let later = start + 9 * MS;
        let left = window.wait(later, start, load(5, 3), || 34).unwrap();
        assert!(left <= MS && left > Duration::ZERO, "{left:?}");
        // Spent: plan now.
        assert_eq!(window.wait(start + 11 * MS, start, load(5, 3), || 34), None);
        // More prompt tokens ahead allow more waiting (680 tokens: ~200 ms, up to 20 ms).
        assert_eq!(window.wait(later, start, load(5, 3), || 680), Some(2 * MS));
    }

    #[test]
    fn no_wait_when_everyone_expected_is_here_or_no_slot_is_free() {
        let start = Instant::now();
        let window = warmed();
        assert_eq!(window.wait(start, start, load(8, 0), || 272), None);
        assert_eq!(window.wait(start, start, load(9, 0), || 272), None);
        // Below the peak but every slot taken: an arrival would only queue.
        assert_eq!(window.wait(start, start, load(4, 0), || 272), None);
    }

    #[test]
    fn one_request_at_a_time_never_waits() {
        let start = Instant::now();
        let mut window = ArrivalWindow::new(config());
        window.observe_step(34, 34, 100 * MS);
        for turn in 0..5 {
            let now = start + turn * 200 * MS;
            window.observe_load(1);
            assert_eq!(window.wait(now, now, load(1, 7), || 34), None);
        }
    }

    #[test]
    fn a_cheap_prefill_does_not_wait() {
        let start = Instant::now();
        let window = warmed();
        // Prompts served from the prefix cache: 2 tokens to compute, ~6 ms; 10 % is 0.6 ms,
        // below one quiet period.
        assert_eq!(window.wait(start, start, load(1, 7), || 2), None);
        // A fast device: 272 tokens in 8 ms.
        let fast = warmed_with(config(), 8 * MS);
        assert_eq!(fast.wait(start, start, load(1, 7), || 34), None);
    }

    #[test]
    fn nothing_measured_or_window_off_means_no_wait() {
        let start = Instant::now();
        let mut window = ArrivalWindow::new(config());
        window.observe_load(8);
        assert_eq!(window.wait(start, start, load(1, 7), || 34), None);
        let off = warmed_with(
            ArrivalConfig {
                quiet: Duration::ZERO,
                ..config()
            },
            800 * MS,
        );
        assert_eq!(off.wait(start, start, load(1, 7), || 34), None);
    }

    #[test]
    fn the_backlog_is_asked_only_when_waiting_is_possible() {
        let start = Instant::now();
        let window = warmed();
        let asked = std::cell::Cell::new(false);
        let backlog = || {
            asked.set(true);
            34
        };
        assert_eq!(window.wait(start, start, load(8, 0), backlog), None);
        assert!(!asked.get());
    }

    #[test]
    fn decode_steps_do_not_teach_the_prefill_cost() {
        let mut window = ArrivalWindow::new(config());
        window.observe_step(0, 8, 43 * MS);
        window.observe_step(10, 18, 60 * MS);
        assert_eq!(window.prefill_estimate(34), None);
        window.observe_step(34, 41, 120 * MS);
        let estimate = window.prefill_estimate(41).unwrap();
        assert!((119..=121).contains(&estimate.as_millis()), "{estimate:?}");
        // A later step moves the estimate by its weight.
        window.observe_step(41, 41, 82 * MS);
        let per_token = window.prefill_estimate(1).unwrap().as_secs_f64();
        let expected = (120.0 / 41.0 + 0.3 * (2.0 - 120.0 / 41.0)) / 1e3;
        assert!(
            (per_token - expected).abs() < 1e-6,
            "{per_token} vs {expected}"
        );
    }

    #[test]
    fn a_quiet_period_without_arrivals_lowers_the_peak_and_idle_time_does_not() {
        let start = Instant::now();
        let mut window = warmed();
        // A minute later, after an idle spell, a new burst still waits for eight.
        let later = start + Duration::from_secs(60);
        window.observe_load(1);
        assert!(window.wait(later, later, load(1, 7), || 34).is_some());
        // A wait cut short by the cost allowance lowers nothing.
        window.quiet_passed(5, MS);
        assert!(window.wait(later, later, load(5, 3), || 34).is_some());
        // Only five came: a whole quiet period passed, and five is the peak now.
        window.quiet_passed(5, 2 * MS);
        assert_eq!(window.wait(later, later, load(5, 3), || 34), None);
        assert!(window.wait(later, later, load(4, 4), || 34).is_some());
        // Eight at once again raises it.
        window.observe_load(8);
        assert!(window.wait(later, later, load(5, 3), || 34).is_some());
    }
}
