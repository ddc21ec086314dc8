//! The scheduler's state: a bounded FIFO admission queue, slots (one llama.cpp sequence each),
//! prefix reuse across slots, and continuous batching with chunked prefill. It is a plain,
//! deterministic struct: no threads, no clock reads (time comes in as arguments) and no model.
//! A backend thread drives it step by step: [`Scheduler::plan`] says which KV operations to run
//! and which tokens to decode, [`Scheduler::commit`] takes what the backend sampled. It does not
//! know token text, stop strings, sampling or llama.cpp; the backend decides when a sampled
//! token stops a sequence and reports it.
//!
//! The KV layout it assumes: one context holding `parallel` sequences (seq ids `0..parallel`),
//! each at most `n_ctx_per_seq` positions, so `n_ctx = parallel × n_ctx_per_seq` cells always
//! suffice; either each sequence has cells of its own (a copied prefix is duplicated), or all
//! share one cache (`SchedulerConfig::shared_kv`, where a copied prefix holds its cells once).

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::{FinishReason, TokenId, Usage};

mod admission;
mod types;

pub use types::{
    BatchEntry, Ended, KvOp, LogitsKind, LogitsUse, Rejected, RequestId, Sampled, SchedulerConfig,
    SchedulerConfigError, SchedulerStats, SeqId, StepPlan, SubmitOptions,
};

/// The scheduler. See the module documentation.
#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    slots: Vec<Slot>,
    queue: VecDeque<Queued>,
    /// A step planned and not yet committed.
    in_flight: Option<InFlight>,
    /// Work found between plans (by `commit`, `cancel`, `expire`), handed out by the next plan.
    pending: StepPlan,
    /// Orders admissions (prefill FIFO) and releases (LRU among idle slots).
    clock: u64,
    /// Names KV cells so that shared prefixes are counted once.
    next_cell: u64,
    /// The host prompt cache: sequences saved when their slot was taken for other work.
    saved: Vec<Saved>,
    /// Tokens over `saved`, at most `host_cache_tokens`.
    saved_tokens: usize,
    next_entry: u64,
    /// Steps committed since the start.
    steps: u64,
}

/// A sequence kept in host memory (`KvOp::Save`).
#[derive(Debug)]
struct Saved {
    entry: u64,
    tokens: Vec<TokenId>,
    /// Orders eviction (LRU): the clock at its save or its last restore.
    used: u64,
}

#[derive(Debug)]
struct Queued {
    id: RequestId,
    prompt: Vec<TokenId>,
    options: SubmitOptions,
}

#[derive(Debug)]
struct Slot {
    seq_id: SeqId,
    /// The tokens in this sequence's KV cells, by position.
    tokens: Vec<TokenId>,
    /// The cell behind each position; a copied prefix shares its source's cells.
    cells: Vec<u64>,
    state: SlotState,
}

#[derive(Debug)]
enum SlotState {
    /// Holds nothing.
    Empty,
    /// Free, its cells kept for prefix reuse; `released` orders eviction (LRU).
    Idle {
        released: u64,
    },
    Active(Active),
}

#[derive(Debug)]
struct Active {
    request_id: RequestId,
    prompt: Vec<TokenId>,
    options: SubmitOptions,
    cached_tokens: u32,
    generated: u32,
    /// Engine time charged to it so far (`charge_step`).
    busy: Duration,
    /// The last sampled token, decoded in the next step.
    next_token: Option<TokenId>,
    admitted: u64,
    /// Set by `cancel` or `expire`; the slot is released at the next plan.
    end: Option<EndCause>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EndCause {
    Cancelled,
    Deadline,
}

#[derive(Debug)]
struct InFlight {
    /// Per slot index, the tokens this step adds to its KV.
    scheduled: Vec<(usize, Vec<TokenId>)>,
    /// Requests the backend must report a `Sampled` for.
    sampling: Vec<RequestId>,
    /// Requests whose prompt this step completes and that want no completion (`max_tokens:
    /// 0`): they end at commit without a sample.
    prompt_only: Vec<RequestId>,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig) -> Result<Self, SchedulerConfigError> {
        check_at_least("parallel", config.parallel, 1)?;
        check_at_least("n_ctx_per_seq", config.n_ctx_per_seq, 2)?;
        check_at_least("prefill_chunk", config.prefill_chunk, 1)?;
        check_at_least("min_prefix", config.min_prefix, 1)?;
        if config.n_batch < config.parallel {
            return Err(SchedulerConfigError::BatchSmallerThanParallel {
                n_batch: config.n_batch,
                parallel: config.parallel,
            });
        }
        let parallel =
            SeqId::try_from(config.parallel).map_err(|_| SchedulerConfigError::TooLarge {
                field: "parallel",
                max: SeqId::MAX as u32,
                got: config.parallel,
            })?;
        let slots = (0..parallel)
            .map(|seq_id| Slot {
                seq_id,
                tokens: Vec::new(),
                cells: Vec::new(),
                state: SlotState::Empty,
            })
            .collect();
        Ok(Self {
            config,
            slots,
            queue: VecDeque::new(),
            in_flight: None,
            pending: StepPlan::default(),
            clock: 0,
            next_cell: 0,
            saved: Vec::new(),
            saved_tokens: 0,
            next_entry: 0,
            steps: 0,
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Queues a request; it is admitted into a slot by a later `plan`. Fails at once when the
    /// prompt cannot fit or when more than `max_queue` requests would wait beyond the free
    /// slots.
    pub fn submit(
        &mut self,
        request_id: RequestId,
        prompt: Vec<TokenId>,
        options: SubmitOptions,
    ) -> Result<(), Rejected> {
        if prompt.is_empty() {
            return Err(Rejected::EmptyPrompt);
        }
        if prompt.len() >= self.config.n_ctx_per_seq as usize {
            return Err(Rejected::PromptTooLong {
                prompt_tokens: to_u32(prompt.len()),
                n_ctx: self.config.n_ctx_per_seq,
            });
        }
        if self.contains(request_id) {
            return Err(Rejected::DuplicateRequest(request_id));
        }
        let free_slots = self.slots.iter().filter(|slot| !slot.is_active()).count();
        if self.queue.len() >= self.config.max_queue.saturating_add(free_slots) {
            return Err(Rejected::Overloaded {
                retry_after: self.config.retry_after,
            });
        }
        self.queue.push_back(Queued {
            id: request_id,
            prompt,
            options,
        });
        Ok(())
    }

    /// The client went away. A queued request leaves at once; a running one frees its slot at
    /// the next `plan`, which lists it in `cancelled`. Returns whether the request was known.
    pub fn cancel(&mut self, request_id: RequestId) -> bool {
        if let Some(index) = self.queue.iter().position(|queued| queued.id == request_id) {
            self.queue.remove(index);
            self.pending.cancelled.push(request_id);
            return true;
        }
        match self.active_mut(request_id) {
            Some(active) => {
                active.end.get_or_insert(EndCause::Cancelled);
                true
            }
            None => false,
        }
    }

    /// Ends every request whose deadline is at or before `now`: queued ones at once, running
    /// ones at the next `plan` (which calls this itself).
    pub fn expire(&mut self, now: Instant) {
        let passed =
            |options: &SubmitOptions| options.deadline.is_some_and(|deadline| deadline <= now);
        let (expired, waiting): (Vec<Queued>, Vec<Queued>) = self
            .queue
            .drain(..)
            .partition(|queued| passed(&queued.options));
        self.queue = waiting.into();
        for queued in expired {
            self.pending.ended.push(Ended {
                request_id: queued.id,
                reason: FinishReason::Deadline,
                usage: Usage {
                    prompt_tokens: to_u32(queued.prompt.len()),
                    ..Usage::default()
                },
            });
        }
        for slot in &mut self.slots {
            if let SlotState::Active(active) = &mut slot.state {
                if active.end.is_none() && passed(&active.options) {
                    active.end = Some(EndCause::Deadline);
                }
            }
        }
    }

    /// Plans the next step: releases cancelled and expired requests, admits queued ones into
    /// free slots (FIFO, with prefix reuse), and builds one batch: one token for every
    /// generating sequence first, then prompt chunks (oldest admission first) within `n_batch`.
    /// While a planned batch is not committed, plans are empty.
    pub fn plan(&mut self, now: Instant) -> StepPlan {
        if self.in_flight.is_some() {
            return StepPlan::default();
        }
        self.expire(now);
        self.release_ended();
        self.admit_queued();
        let mut plan = std::mem::take(&mut self.pending);
        self.build_batch(&mut plan);
        plan
    }

    /// Charges `elapsed`, the measured wall time of the planned step (its decode and
    /// sampling), to the requests in its batch, split by the tokens each put into it, so a
    /// long prefill chunk pays for more of the step than one decoded token. The backend calls
    /// it after the step ran and before `commit`; without a planned step it does nothing.
    pub fn charge_step(&mut self, elapsed: Duration) {
        let Some(in_flight) = &self.in_flight else {
            return;
        };
        let total: u128 = in_flight
            .scheduled
            .iter()
            .map(|(_, tokens)| tokens.len() as u128)
            .sum();
        if total == 0 {
            return;
        }
        let nanos = elapsed.as_nanos();
        for (index, tokens) in &in_flight.scheduled {
            let share = nanos * tokens.len() as u128 / total;
            let share = Duration::from_nanos(u64::try_from(share).unwrap_or(u64::MAX));
            if let SlotState::Active(active) = &mut self.slots[*index].state {
                active.busy = active.busy.saturating_add(share);
            }
        }
    }

    /// Takes the backend's samples for the planned batch: the batch's tokens are now in the KV
    /// cache, each sampled token is the sequence's next input unless it stops the sequence, or
    /// `max_tokens` or the context is reached. Returns the requests that finished; their slots
    /// are free for the next plan. A request the backend gave no sample for is cancelled.
    pub fn commit(&mut self, sampled: &[Sampled]) -> Vec<Ended> {
        let Some(in_flight) = self.in_flight.take() else {
            return Vec::new();
        };
        self.steps += 1;
        for (index, tokens) in in_flight.scheduled {
            self.append_tokens(index, &tokens);
            if let SlotState::Active(active) = &mut self.slots[index].state {
                active.next_token = None;
            }
        }
        let mut ended = Vec::new();
        for request_id in in_flight.prompt_only {
            if let Some(index) = self.active_index(request_id) {
                if let SlotState::Active(active) = &self.slots[index].state {
                    ended.push(Ended {
                        request_id,
                        reason: FinishReason::Length,
                        usage: active.usage(),
                    });
                }
                self.release(index);
            }
        }
        for sample in sampled
            .iter()
            .filter(|s| in_flight.sampling.contains(&s.request_id))
        {
            if let Some(finished) = self.record_sample(sample) {
                ended.push(finished);
            }
        }
        for request_id in in_flight.sampling {
            if let Some(active) = self.active_mut(request_id) {
                if active.next_token.is_none() && active.end.is_none() {
                    active.end = Some(EndCause::Cancelled);
                }
            }
        }
        ended
    }

    /// The planned batch failed to decode: the KV state of its sequences is unknown, so they
    /// are cleared and their requests end. Returns the requests to fail.
    pub fn fail_step(&mut self) -> Vec<RequestId> {
        let Some(in_flight) = self.in_flight.take() else {
            return Vec::new();
        };
        let mut failed = Vec::new();
        for (index, _) in in_flight.scheduled {
            if let Some(request_id) = self.slots[index].request_id() {
                failed.push(request_id);
            }
            self.clear_slot(index);
            self.pending.freed.push(self.slots[index].seq_id);
        }
        failed
    }

    /// Removes every request (shutdown) and returns them, queued ones first.
    pub fn drain(&mut self) -> Vec<RequestId> {
        self.in_flight = None;
        let mut drained: Vec<RequestId> = self.queue.drain(..).map(|queued| queued.id).collect();
        for index in 0..self.slots.len() {
            if let Some(request_id) = self.slots[index].request_id() {
                drained.push(request_id);
                self.release(index);
            }
        }
        drained
    }

    /// Usage so far of a running request.
    pub fn usage(&self, request_id: RequestId) -> Option<Usage> {
        self.slots.iter().find_map(|slot| match &slot.state {
            SlotState::Active(active) if active.request_id == request_id => Some(active.usage()),
            _ => None,
        })
    }

    /// Whether the request is queued or running.
    pub fn contains(&self, request_id: RequestId) -> bool {
        self.queue.iter().any(|queued| queued.id == request_id)
            || self
                .slots
                .iter()
                .any(|slot| slot.request_id() == Some(request_id))
    }

    /// The earliest deadline of a queued or running request: when an idle backend must wake.
    pub fn next_deadline(&self) -> Option<Instant> {
        let queued = self
            .queue
            .iter()
            .filter_map(|queued| queued.options.deadline);
        let running = self.slots.iter().filter_map(|slot| match &slot.state {
            SlotState::Active(active) => active.options.deadline,
            _ => None,
        });
        queued.chain(running).min()
    }

    /// Whether nothing is queued, running or waiting to be reported.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && !self.slots.iter().any(Slot::is_active) && self.pending.is_empty()
    }

    pub fn running(&self) -> usize {
        self.slots.iter().filter(|slot| slot.is_active()).count()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Slots a request arriving now could take: those not running, less the queued requests
    /// that will take them first.
    pub fn free_slots(&self) -> usize {
        (self.slots.len() - self.running()).saturating_sub(self.queue.len())
    }

    /// Prompt tokens still to compute: the rest of every prompt being prefilled, and for each
    /// queued request its prompt less the prefix that admission would now reuse (from a slot
    /// or the host cache). It walks the prefix index once per queued request.
    pub fn prefill_backlog(&self) -> usize {
        let prefilling: usize = self
            .slots
            .iter()
            .map(|slot| match &slot.state {
                SlotState::Active(active) if slot.is_prefilling() => {
                    active.prompt.len().saturating_sub(slot.tokens.len())
                }
                _ => 0,
            })
            .sum();
        let queued: usize = self
            .queue
            .iter()
            .map(|queued| {
                let (held, restorable) = self.reusable(queued);
                let len = |found: admission::Found| found.map_or(0, |(_, len)| len);
                queued
                    .prompt
                    .len()
                    .saturating_sub(len(held).max(len(restorable)))
            })
            .sum();
        prefilling + queued
    }

    pub fn idle_cached(&self) -> usize {
        let cached =
            |slot: &&Slot| matches!(slot.state, SlotState::Idle { .. }) && !slot.tokens.is_empty();
        self.slots.iter().filter(cached).count()
    }

    /// Distinct KV cells held by all sequences; a prefix shared by copy counts once.
    pub fn kv_cells_used(&self) -> usize {
        let cells: HashSet<u64> = self
            .slots
            .iter()
            .flat_map(|slot| slot.cells.iter().copied())
            .collect();
        cells.len()
    }

    pub fn stats(&self) -> SchedulerStats {
        let prefilling = self
            .slots
            .iter()
            .filter(|slot| slot.is_prefilling())
            .count();
        SchedulerStats {
            running: self.running(),
            prefilling,
            queued: self.queued(),
            idle_cached: self.idle_cached(),
            kv_cells_used: self.kv_cells_used(),
            kv_cells_total: self.config.n_ctx_total() as usize,
            steps: self.steps,
        }
    }

    fn active_index(&self, request_id: RequestId) -> Option<usize> {
        self.slots.iter().position(|slot| {
            matches!(&slot.state, SlotState::Active(active) if active.request_id == request_id)
        })
    }

    fn active_mut(&mut self, request_id: RequestId) -> Option<&mut Active> {
        self.slots
            .iter_mut()
            .find_map(|slot| match &mut slot.state {
                SlotState::Active(active) if active.request_id == request_id => Some(active),
                _ => None,
            })
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Frees the slots of cancelled and expired requests and reports them.
    fn release_ended(&mut self) {
        for index in 0..self.slots.len() {
            let SlotState::Active(active) = &self.slots[index].state else {
                continue;
            };
            let (request_id, usage) = (active.request_id, active.usage());
            match active.end {
                None => continue,
                Some(EndCause::Cancelled) => self.pending.cancelled.push(request_id),
                Some(EndCause::Deadline) => self.pending.ended.push(Ended {
                    request_id,
                    reason: FinishReason::Deadline,
                    usage,
                }),
            }
            self.release(index);
        }
    }

    /// The slot's request is over: keep its cells for reuse, or clear them.
    fn release(&mut self, index: usize) {
        let released = self.tick();
        let slot = &mut self.slots[index];
        self.pending.freed.push(slot.seq_id);
        if self.config.prefix_reuse && !slot.tokens.is_empty() {
            slot.state = SlotState::Idle { released };
        } else {
            self.clear_slot(index);
        }
    }

    /// Empties a slot, asking the backend to remove its cells.
    fn clear_slot(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if !slot.tokens.is_empty() {
            self.pending.kv_ops.push(KvOp::Clear { seq: slot.seq_id });
        }
        slot.tokens.clear();
        slot.cells.clear();
        slot.state = SlotState::Empty;
    }

    fn admit_queued(&mut self) {
        while self.slots.iter().any(|slot| !slot.is_active()) {
            let Some(request) = self.queue.pop_front() else {
                break;
            };
            if !self.admit(request) {
                break;
            }
        }
    }

    fn build_batch(&mut self, plan: &mut StepPlan) {
        let mut budget = self.config.n_batch as usize;
        let mut in_flight = InFlight {
            scheduled: Vec::new(),
            sampling: Vec::new(),
            prompt_only: Vec::new(),
        };
        // Running streams first: one token each keeps every stream flowing every step.
        for (index, slot) in self.slots.iter().enumerate() {
            let SlotState::Active(active) = &slot.state else {
                continue;
            };
            let Some(token) = active.next_token else {
                continue;
            };
            if budget == 0 {
                break;
            }
            budget -= 1;
            plan.logits.push(LogitsUse {
                batch_index: plan.batch.len(),
                request_id: active.request_id,
                seq_id: slot.seq_id,
                kind: LogitsKind::NextToken,
            });
            plan.batch.push(BatchEntry {
                seq_id: slot.seq_id,
                token,
                pos: to_u32(slot.tokens.len()),
                logits: true,
            });
            in_flight.scheduled.push((index, vec![token]));
            in_flight.sampling.push(active.request_id);
        }
        // Then prompt chunks, oldest admission first, within what is left.
        let mut prefilling: Vec<(u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| match &slot.state {
                SlotState::Active(active) if slot.is_prefilling() => Some((active.admitted, index)),
                _ => None,
            })
            .collect();
        prefilling.sort_unstable();
        for (_, index) in prefilling {
            if budget == 0 {
                break;
            }
            let chunk = self.prefill_chunk(index, budget, plan, &mut in_flight);
            budget -= chunk;
        }
        if !plan.batch.is_empty() {
            self.in_flight = Some(in_flight);
        }
    }

    /// Adds the next chunk of slot `index`'s prompt to the batch; returns its length.
    fn prefill_chunk(
        &self,
        index: usize,
        budget: usize,
        plan: &mut StepPlan,
        in_flight: &mut InFlight,
    ) -> usize {
        let slot = &self.slots[index];
        let SlotState::Active(active) = &slot.state else {
            return 0;
        };
        let start = slot.tokens.len();
        let len = (active.prompt.len() - start)
            .min(self.config.prefill_chunk as usize)
            .min(budget);
        let chunk = &active.prompt[start..start + len];
        for (offset, &token) in chunk.iter().enumerate() {
            let pos = start + offset;
            let kind = if pos + 1 == active.prompt.len() {
                let (prompt_tokens, cached_tokens) =
                    (to_u32(active.prompt.len()), active.cached_tokens);
                Some(if active.options.max_tokens == Some(0) {
                    LogitsKind::PromptDone {
                        prompt_tokens,
                        cached_tokens,
                    }
                } else {
                    LogitsKind::FirstToken {
                        prompt_tokens,
                        cached_tokens,
                    }
                })
            } else if active.options.prompt_logprobs {
                Some(LogitsKind::PromptToken {
                    next: active.prompt[pos + 1],
                })
            } else {
                None
            };
            if let Some(kind) = kind {
                plan.logits.push(LogitsUse {
                    batch_index: plan.batch.len(),
                    request_id: active.request_id,
                    seq_id: slot.seq_id,
                    kind,
                });
            }
            plan.batch.push(BatchEntry {
                seq_id: slot.seq_id,
                token,
                pos: to_u32(pos),
                logits: kind.is_some(),
            });
        }
        if start + len == active.prompt.len() {
            if active.options.max_tokens == Some(0) {
                in_flight.prompt_only.push(active.request_id);
            } else {
                in_flight.sampling.push(active.request_id);
            }
        }
        in_flight.scheduled.push((index, chunk.to_vec()));
        len
    }

    /// The decoded tokens now sit in fresh cells of the slot's sequence.
    fn append_tokens(&mut self, index: usize, tokens: &[TokenId]) {
        let first_cell = self.next_cell;
        self.next_cell += tokens.len() as u64;
        let slot = &mut self.slots[index];
        slot.tokens.extend_from_slice(tokens);
        slot.cells.extend(first_cell..self.next_cell);
    }

    /// Applies one sample; returns the request if it finished.
    fn record_sample(&mut self, sample: &Sampled) -> Option<Ended> {
        let n_ctx = self.config.n_ctx_per_seq;
        let index = self
            .slots
            .iter()
            .position(|slot| slot.request_id() == Some(sample.request_id))?;
        let SlotState::Active(active) = &mut self.slots[index].state else {
            return None;
        };
        if active.end.is_some() {
            return None;
        }
        active.generated += 1;
        let max_tokens = active.options.max_tokens.unwrap_or(u32::MAX);
        let reason = if sample.stop {
            Some(FinishReason::Stop)
        } else if active.generated >= max_tokens
            || to_u32(active.prompt.len()).saturating_add(active.generated) >= n_ctx
        {
            Some(FinishReason::Length)
        } else {
            None
        };
        let Some(reason) = reason else {
            active.next_token = Some(sample.token);
            return None;
        };
        let ended = Ended {
            request_id: active.request_id,
            reason,
            usage: active.usage(),
        };
        self.release(index);
        Some(ended)
    }
}

impl Slot {
    fn is_active(&self) -> bool {
        matches!(self.state, SlotState::Active(_))
    }

    fn is_prefilling(&self) -> bool {
        matches!(&self.state, SlotState::Active(active) if self.tokens.len() < active.prompt.len())
    }

    fn request_id(&self) -> Option<RequestId> {
        match &self.state {
            SlotState::Active(active) => Some(active.request_id),
            _ => None,
        }
    }
}

impl Active {
    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: to_u32(self.prompt.len()),
            completion_tokens: self.generated,
            cached_tokens: self.cached_tokens,
            busy: self.busy,
        }
    }
}

fn check_at_least(field: &'static str, got: u32, min: u32) -> Result<(), SchedulerConfigError> {
    if got < min {
        return Err(SchedulerConfigError::TooSmall { field, min, got });
    }
    Ok(())
}

/// Lengths here are bounded by `n_ctx_per_seq`, a `u32`; saturate rather than wrap anyway.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod harness;
#[cfg(test)]
mod reuse_tests;
#[cfg(test)]
mod tests;
