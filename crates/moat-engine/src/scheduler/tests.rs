//! Unit tests of the scheduler without a model: admission, continuous batching and chunked
//! prefill, and how requests end (length, stop, cancel, deadline, failures).

use std::time::Duration;

use super::harness::*;
use super::*;
use crate::EngineError;

// ---- admission ----

#[test]
fn admission_is_fifo_and_a_full_queue_answers_overloaded() {
    let mut h = Harness::new(config());
    // Two free slots plus a queue of two.
    for id in 1..=4 {
        h.submit(id, prompt(id as i32, 20));
    }
    let rejected = h.scheduler.submit(5, prompt(5, 20), generous());
    assert_eq!(
        rejected,
        Err(Rejected::Overloaded {
            retry_after: Duration::from_secs(3)
        })
    );
    let (plan, _) = h.step();
    let admitted: Vec<RequestId> = plan.logits.iter().map(|l| l.request_id).collect();
    assert_eq!(admitted, [1, 2], "the first two in, first served");
    assert_eq!((h.scheduler.running(), h.scheduler.queued()), (2, 2));
    assert!(matches!(
        h.scheduler.submit(5, prompt(5, 20), generous()),
        Err(Rejected::Overloaded { .. })
    ));
    // When request 1 ends, request 3 (not 4) takes its slot.
    h.scheduler.cancel(1);
    let (plan, _) = h.step();
    assert_eq!(plan.cancelled, [1]);
    assert!(first_token_kind(&plan, 3).is_some());
    assert!(first_token_kind(&plan, 4).is_none());
    assert_eq!(h.scheduler.submit(5, prompt(5, 20), generous()), Ok(()));
}

#[test]
fn a_prompt_must_leave_room_for_one_generated_token() {
    let mut scheduler = Scheduler::new(SchedulerConfig {
        n_ctx_per_seq: 100,
        ..config()
    })
    .expect("valid");
    let too_long = scheduler.submit(1, prompt(1, 100), generous());
    assert_eq!(
        too_long,
        Err(Rejected::PromptTooLong {
            prompt_tokens: 100,
            n_ctx: 100
        })
    );
    assert_eq!(scheduler.submit(2, prompt(2, 99), generous()), Ok(()));
    let error: EngineError = Rejected::PromptTooLong {
        prompt_tokens: 100,
        n_ctx: 100,
    }
    .into();
    assert_eq!(
        error,
        EngineError::PromptTooLong {
            prompt_tokens: 100,
            n_ctx: 100
        }
    );
}

#[test]
fn a_prompt_filling_the_context_gets_exactly_one_token() {
    let mut h = Harness::new(SchedulerConfig {
        n_ctx_per_seq: 100,
        ..config()
    });
    h.submit(1, prompt(1, 99));
    let ended = h.run_to_completion();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].reason, FinishReason::Length);
    assert_eq!(ended[0].usage.completion_tokens, 1);
}

#[test]
fn empty_prompts_and_duplicate_ids_are_rejected() {
    let mut scheduler = Scheduler::new(config()).expect("valid");
    assert_eq!(
        scheduler.submit(1, Vec::new(), generous()),
        Err(Rejected::EmptyPrompt)
    );
    assert_eq!(scheduler.submit(1, prompt(1, 5), generous()), Ok(()));
    assert_eq!(
        scheduler.submit(1, prompt(1, 5), generous()),
        Err(Rejected::DuplicateRequest(1))
    );
}

#[test]
fn invalid_configs_are_refused() {
    let small_batch = SchedulerConfig {
        parallel: 8,
        n_batch: 4,
        ..config()
    };
    assert_eq!(
        Scheduler::new(small_batch).err(),
        Some(SchedulerConfigError::BatchSmallerThanParallel {
            n_batch: 4,
            parallel: 8
        })
    );
    let no_slots = SchedulerConfig {
        parallel: 0,
        ..config()
    };
    assert!(matches!(
        Scheduler::new(no_slots),
        Err(SchedulerConfigError::TooSmall {
            field: "parallel",
            ..
        })
    ));
    assert_eq!(config().n_ctx_total(), 8192);
}

// ---- continuous batching ----

#[test]
fn a_new_request_joins_between_decode_steps() {
    let mut h = Harness::new(config());
    h.submit(1, prompt(1, 10));
    h.step();
    h.step();
    let a = h.seq_of(1).expect("A runs");
    h.submit(2, prompt(2, 10));
    let (plan, _) = h.step();
    let b = h.seq_of(2).expect("B was admitted");
    assert_ne!(a, b);
    assert_eq!(tokens_for(&plan, a).len(), 1, "A decodes its one token");
    assert_eq!(
        tokens_for(&plan, b).len(),
        10,
        "B prefills in the same batch"
    );
    assert_eq!(plan.batch[0].seq_id, a, "decode tokens come first");
    assert!(matches!(
        first_token_kind(&plan, 2),
        Some(LogitsKind::FirstToken {
            prompt_tokens: 10,
            cached_tokens: 0
        })
    ));
}

#[test]
fn a_long_prompt_is_prefilled_in_chunks_while_a_stream_keeps_flowing() {
    let mut h = Harness::new(config());
    h.submit(1, prompt(1, 10));
    h.step();
    let a = h.seq_of(1).expect("A runs");
    h.submit(2, prompt(2, 2000));
    let mut chunks = Vec::new();
    loop {
        let (plan, _) = h.step();
        assert_eq!(tokens_for(&plan, a).len(), 1, "A gets a token every step");
        let b = h.seq_of(2).expect("B runs");
        let mine = tokens_for(&plan, b);
        chunks.push(mine.len());
        if first_token_kind(&plan, 2).is_some() {
            break;
        }
    }
    assert_eq!(chunks, [256, 256, 256, 256, 256, 256, 256, 208]);
    assert_eq!(h.scheduler.usage(1).map(|u| u.completion_tokens), Some(9));
}

#[test]
fn prefills_share_the_budget_oldest_first() {
    let config = SchedulerConfig {
        parallel: 3,
        n_batch: 300,
        prefill_chunk: 200,
        ..config()
    };
    let mut h = Harness::new(config);
    h.submit(1, prompt(1, 500));
    h.submit(2, prompt(2, 500));
    h.submit(3, prompt(3, 500));
    let (plan, _) = h.step();
    let sizes: Vec<usize> = [1, 2, 3]
        .iter()
        .map(|&id| tokens_for(&plan, h.seq_of(id).expect("admitted")).len())
        .collect();
    assert_eq!(sizes, [200, 100, 0]);
    assert_eq!(plan.batch.len(), 300);
}

#[test]
fn the_batch_never_exceeds_n_batch() {
    let config = SchedulerConfig {
        parallel: 6,
        n_batch: 100,
        prefill_chunk: 64,
        max_queue: 20,
        ..config()
    };
    let mut h = Harness::new(config);
    for id in 1..=12 {
        h.submit(id, prompt(id as i32, 37 * id as usize));
    }
    let mut largest = 0;
    for _ in 0..200 {
        let (plan, _) = h.step();
        largest = largest.max(plan.batch.len());
    }
    assert_eq!(
        largest, 100,
        "full batches, never more (checked every step)"
    );
}

#[test]
fn positions_are_contiguous_per_sequence_under_a_mixed_workload() {
    // The harness checks gaps, copies and truncations at every step; this drives many shapes
    // through it: shared prefixes, cancellations, stops, deadlines and queueing.
    let config = SchedulerConfig {
        parallel: 4,
        n_batch: 48,
        prefill_chunk: 20,
        max_queue: 100,
        min_prefix: 4,
        ..config()
    };
    let mut h = Harness::new(config);
    let shared = prompt(9, 30);
    let mut seed: u64 = 7;
    let mut random = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut next_id = 1;
    for step in 0..400 {
        if random(3) == 0 {
            let own = prompt(next_id as i32, 1 + random(60) as usize);
            let body = if random(2) == 0 {
                concat(&[&shared, &own])
            } else {
                own
            };
            let options = SubmitOptions {
                max_tokens: Some(1 + random(30) as u32),
                deadline: (random(10) == 0).then(|| h.now + Duration::from_millis(random(50))),
                prompt_logprobs: random(8) == 0,
            };
            h.scheduler
                .submit(next_id, body, options)
                .expect("queue is large");
            next_id += 1;
        }
        if random(10) == 0 {
            h.scheduler.cancel(1 + random(next_id));
        }
        h.now += Duration::from_millis(5);
        let stop_now = random(20) == 0;
        h.step_with(|logits| Sampled {
            request_id: logits.request_id,
            token: made_up_token(logits.request_id, step),
            stop: stop_now,
        });
    }
    h.run_to_completion();
    assert_eq!(h.scheduler.running(), 0);
}

// ---- ending ----

#[test]
fn max_tokens_finishes_with_length_and_usage() {
    let mut h = Harness::new(config());
    let options = SubmitOptions {
        max_tokens: Some(3),
        ..SubmitOptions::default()
    };
    h.scheduler
        .submit(1, prompt(1, 10), options)
        .expect("admitted");
    let ended = h.run_to_completion();
    assert_eq!(
        ended,
        [Ended {
            request_id: 1,
            reason: FinishReason::Length,
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 3,
                cached_tokens: 0,
                ..Usage::default()
            },
        }]
    );
}

#[test]
fn max_tokens_zero_scores_the_prompt_without_sampling() {
    let mut h = Harness::new(config());
    let options = SubmitOptions {
        max_tokens: Some(0),
        prompt_logprobs: true,
        ..SubmitOptions::default()
    };
    h.scheduler
        .submit(1, prompt(1, 10), options)
        .expect("admitted");
    let (plan, ended) = h.step();
    // Logits for every prompt position after the first: nine scores, then the prompt is done.
    let kinds: Vec<LogitsKind> = plan.logits.iter().map(|l| l.kind).collect();
    assert_eq!(kinds.len(), 10);
    assert!(kinds[..9]
        .iter()
        .all(|kind| matches!(kind, LogitsKind::PromptToken { .. })));
    assert_eq!(
        kinds[9],
        LogitsKind::PromptDone {
            prompt_tokens: 10,
            cached_tokens: 0
        }
    );
    assert!(plan.logits.iter().all(|l| !l.samples()));
    assert_eq!(
        ended,
        [Ended {
            request_id: 1,
            reason: FinishReason::Length,
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 0,
                cached_tokens: 0,
                ..Usage::default()
            },
        }]
    );
    assert!(h.scheduler.is_idle());
}

#[test]
fn a_full_context_finishes_with_length() {
    let mut h = Harness::new(SchedulerConfig {
        n_ctx_per_seq: 50,
        ..config()
    });
    h.scheduler
        .submit(1, prompt(1, 40), SubmitOptions::default())
        .expect("admitted");
    let ended = h.run_to_completion();
    assert_eq!(ended[0].reason, FinishReason::Length);
    assert_eq!(
        ended[0].usage.prompt_tokens + ended[0].usage.completion_tokens,
        50
    );
}

#[test]
fn a_stop_sample_finishes_with_stop_and_keeps_the_cells_cached() {
    let mut h = Harness::new(config());
    h.submit(1, prompt(1, 10));
    h.step();
    let (_, ended) = h.step_with(|logits| Sampled {
        request_id: logits.request_id,
        token: 7,
        stop: true,
    });
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].reason, FinishReason::Stop);
    assert_eq!(ended[0].usage.completion_tokens, 2);
    assert_eq!((h.scheduler.running(), h.scheduler.idle_cached()), (0, 1));
    assert_eq!(
        h.scheduler.kv_cells_used(),
        11,
        "the prompt and the first token; the stop token never entered"
    );
}

#[test]
fn cancel_frees_the_slot_at_the_next_plan_and_reports_it() {
    let mut h = Harness::new(config());
    h.submit(1, prompt(1, 10));
    h.step();
    let seq = h.seq_of(1).expect("runs");
    assert!(h.scheduler.cancel(1));
    assert_eq!(
        h.scheduler.running(),
        1,
        "nothing changes before the next plan"
    );
    let (plan, _) = h.step();
    assert_eq!(plan.cancelled, [1]);
    assert_eq!(plan.freed, [seq]);
    assert!(plan.batch.is_empty());
    assert_eq!(h.scheduler.running(), 0);
    assert!(!h.scheduler.cancel(1), "already gone");
}

#[test]
fn a_cancel_during_a_step_ignores_its_sample() {
    let mut h = Harness::new(config());
    h.submit(1, prompt(1, 10));
    let plan = h.scheduler.plan(h.now);
    h.kv.apply(&plan).expect("applies");
    h.scheduler.cancel(1);
    let ended = h.scheduler.commit(&[Sampled {
        request_id: 1,
        token: 3,
        stop: false,
    }]);
    assert!(ended.is_empty());
    let (plan, _) = h.step();
    assert_eq!(plan.cancelled, [1]);
    assert_eq!(
        h.scheduler.idle_cached(),
        1,
        "the decoded prompt stays cached"
    );
}

#[test]
fn cancelling_a_queued_request_removes_it_at_once() {
    let mut h = Harness::new(SchedulerConfig {
        parallel: 1,
        ..config()
    });
    h.submit(1, prompt(1, 10));
    h.submit(2, prompt(2, 10));
    h.step();
    assert_eq!(h.scheduler.queued(), 1);
    assert!(h.scheduler.cancel(2));
    assert_eq!(h.scheduler.queued(), 0);
    let (plan, _) = h.step();
    assert_eq!(plan.cancelled, [2]);
}

#[test]
fn a_deadline_ends_a_running_request_at_the_next_plan() {
    let mut h = Harness::new(config());
    let options = SubmitOptions {
        deadline: Some(h.now + Duration::from_secs(1)),
        ..generous()
    };
    h.scheduler
        .submit(1, prompt(1, 10), options)
        .expect("admitted");
    h.step();
    h.step();
    assert_eq!(
        h.scheduler.next_deadline(),
        Some(h.now + Duration::from_secs(1))
    );
    h.now += Duration::from_secs(1);
    let (plan, _) = h.step();
    assert_eq!(plan.ended.len(), 1);
    assert_eq!(plan.ended[0].reason, FinishReason::Deadline);
    assert_eq!(plan.ended[0].usage.completion_tokens, 2);
    assert!(plan.batch.is_empty());
    assert_eq!(h.scheduler.running(), 0);
}

#[test]
fn a_deadline_ends_a_queued_request_without_a_slot() {
    let mut h = Harness::new(SchedulerConfig {
        parallel: 1,
        ..config()
    });
    h.submit(1, prompt(1, 10));
    let options = SubmitOptions {
        deadline: Some(h.now + Duration::from_millis(10)),
        ..generous()
    };
    h.scheduler
        .submit(2, prompt(2, 10), options)
        .expect("queued");
    h.step();
    h.now += Duration::from_millis(10);
    let (plan, _) = h.step();
    let expired: Vec<(RequestId, FinishReason, u32)> = plan
        .ended
        .iter()
        .map(|e| (e.request_id, e.reason, e.usage.prompt_tokens))
        .collect();
    assert_eq!(expired, [(2, FinishReason::Deadline, 10)]);
    assert_eq!(h.scheduler.queued(), 0);
}

#[test]
fn a_request_left_without_a_sample_is_cancelled() {
    let mut h = Harness::new(config());
    h.submit(1, prompt(1, 10));
    let plan = h.scheduler.plan(h.now);
    h.kv.apply(&plan).expect("applies");
    assert!(h.scheduler.commit(&[]).is_empty());
    let (plan, _) = h.step();
    assert_eq!(plan.cancelled, [1]);
}

#[test]
fn a_failed_step_clears_its_sequences() {
    let mut h = Harness::new(config());
    h.submit(1, prompt(1, 10));
    h.step();
    let seq = h.seq_of(1).expect("runs");
    let _ = h.scheduler.plan(h.now);
    assert_eq!(h.scheduler.fail_step(), [1]);
    let plan = h.scheduler.plan(h.now);
    assert_eq!(plan.kv_ops, [KvOp::Clear { seq }]);
    assert_eq!(h.scheduler.kv_cells_used(), 0);
}

#[test]
fn plans_are_empty_while_a_step_is_in_flight() {
    let mut scheduler = Scheduler::new(config()).expect("valid");
    scheduler
        .submit(1, prompt(1, 10), generous())
        .expect("admitted");
    let now = Instant::now();
    assert!(!scheduler.plan(now).is_empty());
    assert!(scheduler.plan(now).is_empty());
    assert!(scheduler
        .commit(&[Sampled {
            request_id: 1,
            token: 1,
            stop: false
        }])
        .is_empty());
    assert_eq!(scheduler.plan(now).batch.len(), 1);
}

#[test]
fn drain_returns_every_request() {
    let mut h = Harness::new(SchedulerConfig {
        parallel: 1,
        ..config()
    });
    h.submit(1, prompt(1, 10));
    h.submit(2, prompt(2, 10));
    h.step();
    assert_eq!(h.scheduler.drain(), [2, 1]);
    assert!(h.scheduler.plan(h.now).batch.is_empty());
}

#[test]
fn a_step_is_charged_to_its_sequences_by_their_tokens_in_the_batch() {
    let mut h = Harness::new(config());
    h.submit(1, prompt(1, 30));
    h.submit(2, prompt(2, 10));
    // Step one prefills both prompts whole: 40 tokens, 30 of them request 1's.
    let plan = h.scheduler.plan(h.now);
    assert_eq!(plan.batch.len(), 40);
    h.kv.apply(&plan).expect("applies");
    h.scheduler.charge_step(Duration::from_millis(400));
    let sampled: Vec<Sampled> = plan
        .logits
        .iter()
        .filter(|l| l.samples())
        .map(|l| Sampled {
            request_id: l.request_id,
            token: made_up_token(l.request_id, 0),
            stop: false,
        })
        .collect();
    h.scheduler.commit(&sampled);
    let busy = |h: &Harness, id| h.scheduler.usage(id).expect("running").busy;
    assert_eq!(busy(&h, 1), Duration::from_millis(300));
    assert_eq!(busy(&h, 2), Duration::from_millis(100));
    // Step two decodes one token each: an even split.
    let plan = h.scheduler.plan(h.now);
    assert_eq!(plan.batch.len(), 2);
    h.scheduler.charge_step(Duration::from_millis(10));
    assert_eq!(busy(&h, 1), Duration::from_millis(305));
    assert_eq!(busy(&h, 2), Duration::from_millis(105));
    // With no step planned there is nothing to charge.
    h.kv.apply(&plan).expect("applies");
    h.scheduler.commit(&[]);
    h.scheduler.charge_step(Duration::from_secs(1));
    assert_eq!(busy(&h, 1), Duration::from_millis(305));
}
