//! The test harness for the scheduler: it plays the backend without a model, applying every
//! plan to a KV mirror (`ToyKv`, which rejects gaps, bad copies and bad truncations), checking
//! the batch limits and the scheduler's view of each sequence, and committing made-up samples.

use super::*;
use crate::fake::ToyKv;
use crate::TokenId;
use std::time::{Duration, Instant};

pub(super) fn config() -> SchedulerConfig {
    SchedulerConfig {
        parallel: 2,
        n_ctx_per_seq: 4096,
        n_batch: 512,
        prefill_chunk: 256,
        max_queue: 2,
        prefix_reuse: true,
        min_prefix: 16,
        host_cache_tokens: 0,
        retry_after: Duration::from_secs(3),
        shared_kv: false,
        swa_window: None,
    }
}

/// Distinct prompts: `prompt(seed, len)` never shares a prefix with another seed.
pub(super) fn prompt(seed: i32, len: usize) -> Vec<TokenId> {
    (0..len as i32).map(|i| seed * 100_000 + i).collect()
}

pub(super) fn concat(parts: &[&[TokenId]]) -> Vec<TokenId> {
    parts.concat()
}

pub(super) fn generous() -> SubmitOptions {
    SubmitOptions {
        max_tokens: Some(1_000),
        ..SubmitOptions::default()
    }
}

/// The token the harness samples for a request at a step: distinct per request and step.
pub(super) fn made_up_token(request_id: RequestId, step: usize) -> TokenId {
    5_000_000 + (request_id as TokenId) * 1_000 + step as TokenId
}

pub(super) struct Harness {
    pub(super) scheduler: Scheduler,
    pub(super) kv: ToyKv,
    pub(super) now: Instant,
    pub(super) steps: usize,
}

impl Harness {
    pub(super) fn new(config: SchedulerConfig) -> Self {
        Self {
            scheduler: Scheduler::new(config).expect("valid config"),
            kv: ToyKv::default(),
            now: Instant::now(),
            steps: 0,
        }
    }

    pub(super) fn submit(&mut self, id: RequestId, prompt: Vec<TokenId>) {
        self.scheduler
            .submit(id, prompt, generous())
            .expect("admitted");
    }

    /// Plans, checks and applies the plan, commits a made-up token for every sample.
    pub(super) fn step(&mut self) -> (StepPlan, Vec<Ended>) {
        let steps = self.steps;
        self.step_with(|logits| Sampled {
            request_id: logits.request_id,
            token: made_up_token(logits.request_id, steps),
            stop: false,
        })
    }

    pub(super) fn step_with(
        &mut self,
        mut sample: impl FnMut(&LogitsUse) -> Sampled,
    ) -> (StepPlan, Vec<Ended>) {
        self.steps += 1;
        let plan = self.scheduler.plan(self.now);
        self.check(&plan);
        self.kv
            .apply(&plan)
            .expect("the plan applies to the KV cache");
        let sampled: Vec<Sampled> = plan
            .logits
            .iter()
            .filter(|l| l.samples())
            .map(&mut sample)
            .collect();
        let ended = self.scheduler.commit(&sampled);
        self.check_mirror();
        (plan, ended)
    }

    /// Steps until nothing is left to do; returns every request that ended, in order.
    pub(super) fn run_to_completion(&mut self) -> Vec<Ended> {
        let mut all = Vec::new();
        for _ in 0..10_000 {
            let (plan, ended) = self.step();
            all.extend(plan.ended);
            all.extend(ended);
            if self.scheduler.is_idle() {
                return all;
            }
        }
        panic!("the scheduler never became idle");
    }

    pub(super) fn check(&self, plan: &StepPlan) {
        let config = self.scheduler.config();
        assert!(
            plan.batch.len() <= config.n_batch as usize,
            "batch of {} over n_batch",
            plan.batch.len()
        );
        let wanted: Vec<usize> = (0..plan.batch.len())
            .filter(|&i| plan.batch[i].logits)
            .collect();
        let described: Vec<usize> = plan.logits.iter().map(|l| l.batch_index).collect();
        assert_eq!(
            wanted, described,
            "every entry with logits is described, in order"
        );
        for logits in &plan.logits {
            assert_eq!(plan.batch[logits.batch_index].seq_id, logits.seq_id);
        }
        for slot in &self.scheduler.slots {
            let n = plan
                .batch
                .iter()
                .filter(|e| e.seq_id == slot.seq_id)
                .count();
            assert!(
                n <= config.prefill_chunk.max(1) as usize,
                "seq {} got {n} tokens",
                slot.seq_id
            );
        }
    }

    /// The scheduler's idea of each sequence is what the KV cache holds.
    pub(super) fn check_mirror(&self) {
        for slot in &self.scheduler.slots {
            assert_eq!(
                slot.tokens,
                self.kv.tokens(slot.seq_id),
                "seq {} disagrees with the cache",
                slot.seq_id
            );
        }
    }

    pub(super) fn seq_of(&self, request_id: RequestId) -> Option<SeqId> {
        self.scheduler
            .slots
            .iter()
            .find(|s| s.request_id() == Some(request_id))
            .map(|s| s.seq_id)
    }
}

pub(super) fn tokens_for(plan: &StepPlan, seq: SeqId) -> Vec<(TokenId, u32)> {
    plan.batch
        .iter()
        .filter(|e| e.seq_id == seq)
        .map(|e| (e.token, e.pos))
        .collect()
}

pub(super) fn first_token_kind(plan: &StepPlan, request_id: RequestId) -> Option<LogitsKind> {
    plan.logits
        .iter()
        .find(|l| l.request_id == request_id && matches!(l.kind, LogitsKind::FirstToken { .. }))
        .map(|l| l.kind)
}
