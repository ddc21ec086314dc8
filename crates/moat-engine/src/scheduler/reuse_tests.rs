//! Unit tests of prefix reuse: across running sequences (copies), within idle slots
//! (truncation), the minimum length, the switch, prompt logprobs and LRU eviction.

use super::harness::*;
use super::*;

// ---- prefix reuse ----

/// Request A (a 1,000-token system prompt and 20 more) runs for five steps, past its prefill;
/// then request B (the same system prompt and 30 more) arrives. Returns B's first step.
fn b_joins_while_a_runs(config: SchedulerConfig) -> (Harness, StepPlan) {
    let mut h = Harness::new(config);
    let system = prompt(9, 1000);
    h.submit(1, concat(&[&system, &prompt(1, 20)]));
    for _ in 0..5 {
        h.step();
    }
    h.submit(2, concat(&[&system, &prompt(2, 30)]));
    let (plan, _) = h.step();
    (h, plan)
}

#[test]
fn a_request_reuses_the_system_prompt_of_a_running_request() {
    let (mut h, plan) = b_joins_while_a_runs(config());
    let a = h.seq_of(1).expect("A runs");
    let b = h.seq_of(2).expect("B runs");
    assert_eq!(
        plan.kv_ops,
        [KvOp::Copy {
            src_seq: a,
            dst_seq: b,
            len: 1000
        }]
    );
    let b_tokens = tokens_for(&plan, b);
    assert_eq!(b_tokens.len(), 30, "B prefills only its own part");
    assert_eq!(
        b_tokens[0].1, 1000,
        "starting right after the shared prefix"
    );
    assert_eq!(
        first_token_kind(&plan, 2),
        Some(LogitsKind::FirstToken {
            prompt_tokens: 1030,
            cached_tokens: 1000
        })
    );
    assert_eq!(tokens_for(&plan, a).len(), 1, "A keeps generating");
    assert_eq!(
        h.scheduler.kv_cells_used(),
        1022 + 1030,
        "A's 1022 cells, B's copy of the prefix and its own 30"
    );
    h.scheduler.cancel(1);
    let ended = h.run_to_completion();
    let b_usage = ended
        .iter()
        .find(|e| e.request_id == 2)
        .map(|e| e.usage.cached_tokens);
    assert_eq!(b_usage, Some(1000));
}

#[test]
fn in_a_shared_kv_cache_a_copied_prefix_holds_its_cells_once() {
    let (h, plan) = b_joins_while_a_runs(SchedulerConfig {
        shared_kv: true,
        ..config()
    });
    assert!(matches!(plan.kv_ops[..], [KvOp::Copy { len: 1000, .. }]));
    assert_eq!(
        h.scheduler.kv_cells_used(),
        1022 + 30,
        "A's 1022 cells, B's own 30: the shared prefix is held once"
    );
}

#[test]
fn a_request_reuses_an_idle_slot_holding_its_earlier_turn() {
    let mut h = Harness::new(config());
    let turn_one = prompt(1, 100);
    let options = SubmitOptions {
        max_tokens: Some(4),
        ..SubmitOptions::default()
    };
    h.scheduler
        .submit(1, turn_one.clone(), options)
        .expect("admitted");
    h.run_to_completion();
    assert_eq!(
        h.kv.tokens(0).len(),
        103,
        "the prompt and three decoded tokens stay cached"
    );
    let answer = h.kv.tokens(0)[100..].to_vec();
    // The next turn holds the first two tokens of the answer, then diverges.
    let turn_two = concat(&[&turn_one, &answer[..2], &prompt(7, 10)]);
    h.submit(2, turn_two);
    let (plan, _) = h.step();
    assert_eq!(h.seq_of(2), Some(0), "the same slot");
    assert_eq!(plan.kv_ops, [KvOp::Truncate { seq: 0, from: 102 }]);
    assert_eq!(tokens_for(&plan, 0).len(), 10);
    assert_eq!(
        first_token_kind(&plan, 2),
        Some(LogitsKind::FirstToken {
            prompt_tokens: 112,
            cached_tokens: 102
        })
    );
}

/// Runs `turn_one` (4 tokens generated) then `turn_two` in a context with a 64-token sliding
/// window, and returns the second request's cached tokens and its first plan's KV operations.
fn second_turn_with_a_sliding_window(
    turn_one: &[TokenId],
    turn_two: impl FnOnce(&[TokenId]) -> Vec<TokenId>,
) -> (u32, Vec<KvOp>) {
    let mut h = Harness::new(SchedulerConfig {
        parallel: 1,
        swa_window: Some(64),
        ..config()
    });
    let options = SubmitOptions {
        max_tokens: Some(4),
        ..SubmitOptions::default()
    };
    h.scheduler
        .submit(1, turn_one.to_vec(), options)
        .expect("admitted");
    h.run_to_completion();
    let held = h.kv.tokens(0);
    h.submit(2, turn_two(held));
    let (plan, _) = h.step();
    let cached = match first_token_kind(&plan, 2) {
        Some(LogitsKind::FirstToken { cached_tokens, .. }) => cached_tokens,
        other => panic!("no first token: {other:?}"),
    };
    (cached, plan.kv_ops)
}

#[test]
fn past_a_sliding_window_a_sequence_is_reused_whole_or_not_at_all() {
    // 103 held tokens, more than the window: a prompt that cuts them at 90 cannot use them
    // (positions 27..39 would be needed and are gone), so it is computed from scratch.
    let turn_one = prompt(1, 100);
    let (cached, ops) =
        second_turn_with_a_sliding_window(&turn_one, |held| concat(&[&held[..90], &prompt(7, 10)]));
    assert_eq!(cached, 0);
    assert_eq!(ops, [KvOp::Clear { seq: 0 }]);
    // A prompt that continues all of it reuses all of it.
    let (cached, ops) =
        second_turn_with_a_sliding_window(&turn_one, |held| concat(&[held, &prompt(7, 10)]));
    assert_eq!(cached, 103);
    assert!(ops.is_empty(), "{ops:?}");
    // The same prompt again reuses all but its last token, which is recomputed.
    let (cached, _) = second_turn_with_a_sliding_window(&turn_one, <[TokenId]>::to_vec);
    assert_eq!(cached, 102);
}

#[test]
fn within_a_sliding_window_a_sequence_can_be_cut() {
    let (cached, ops) = second_turn_with_a_sliding_window(&prompt(1, 40), |held| {
        concat(&[&held[..30], &prompt(7, 10)])
    });
    assert_eq!(cached, 30);
    assert_eq!(ops, [KvOp::Truncate { seq: 0, from: 30 }]);
}

#[test]
fn an_identical_prompt_reuses_all_but_its_last_token() {
    let mut h = Harness::new(config());
    let options = SubmitOptions {
        max_tokens: Some(1),
        ..SubmitOptions::default()
    };
    h.scheduler
        .submit(1, prompt(1, 50), options.clone())
        .expect("admitted");
    h.run_to_completion();
    h.scheduler
        .submit(2, prompt(1, 50), options)
        .expect("admitted");
    let (plan, _) = h.step();
    assert_eq!(
        plan.kv_ops,
        [KvOp::Truncate { seq: 0, from: 49 }],
        "the last token is computed again"
    );
    assert_eq!(tokens_for(&plan, 0), [(prompt(1, 50)[49], 49)]);
    assert_eq!(
        first_token_kind(&plan, 2),
        Some(LogitsKind::FirstToken {
            prompt_tokens: 50,
            cached_tokens: 49
        })
    );
}

#[test]
fn prefixes_shorter_than_the_minimum_are_not_reused() {
    let mut h = Harness::new(config());
    h.submit(1, prompt(1, 40));
    h.step();
    h.submit(2, concat(&[&prompt(1, 15), &prompt(2, 20)]));
    let (plan, _) = h.step();
    assert!(plan.kv_ops.is_empty());
    assert_eq!(tokens_for(&plan, h.seq_of(2).expect("runs")).len(), 35);
}

#[test]
fn the_slot_given_up_anyway_keeps_a_start_of_the_prompt_shorter_than_the_minimum() {
    // One slot, so the next request takes it whatever it holds: its first 5 tokens serve.
    let mut h = Harness::new(cached_config(0));
    run_one(&mut h, 1, prompt(1, 40));
    h.scheduler
        .submit(2, concat(&[&prompt(1, 5), &prompt(2, 20)]), short(4))
        .expect("admitted");
    assert_eq!(h.scheduler.prefill_backlog(), 20);
    let (plan, _) = h.step();
    assert_eq!(plan.kv_ops, [KvOp::Truncate { seq: 0, from: 5 }]);
    let prefilled = tokens_for(&plan, 0);
    assert_eq!((prefilled.len(), prefilled[0].1), (20, 5));
    assert_eq!(
        first_token_kind(&plan, 2),
        Some(LogitsKind::FirstToken {
            prompt_tokens: 25,
            cached_tokens: 5
        })
    );
    // With a host cache, what the cut drops is saved first, as for any eviction.
    let mut h = Harness::new(cached_config(10_000));
    run_one(&mut h, 1, prompt(1, 40));
    h.scheduler
        .submit(2, concat(&[&prompt(1, 5), &prompt(2, 20)]), short(4))
        .expect("admitted");
    let (plan, _) = h.step();
    assert_eq!(
        plan.kv_ops,
        [
            KvOp::Save { seq: 0, entry: 0 },
            KvOp::Truncate { seq: 0, from: 5 }
        ]
    );
    // An identical one-token prompt still computes its token: nothing is cut away for it.
    let mut h = Harness::new(cached_config(0));
    run_one(&mut h, 1, prompt(1, 1));
    assert_eq!(run_one(&mut h, 2, prompt(1, 1)).cached_tokens, 0);
}

#[test]
fn a_short_shared_start_takes_no_idle_slot_that_would_not_be_evicted() {
    let one = short(1);
    // An empty slot is free: the idle one keeps its cells for a longer match later.
    let mut h = Harness::new(config());
    run_one(&mut h, 1, prompt(1, 40));
    h.scheduler
        .submit(2, concat(&[&prompt(1, 5), &prompt(2, 20)]), one.clone())
        .expect("admitted");
    let (plan, _) = h.step();
    assert!(plan.kv_ops.is_empty(), "{:?}", plan.kv_ops);
    assert_eq!(
        tokens_for(&plan, 1).len(),
        25,
        "the empty slot, from scratch"
    );
    assert_eq!(h.kv.tokens(0).len(), 43, "request 1's cells stay");
    // Both slots idle: a short match with the more recently released one does not evict it;
    // the least recently released one goes, as without the match.
    let mut h = Harness::new(config());
    h.scheduler
        .submit(1, prompt(1, 30), one.clone())
        .expect("admitted");
    h.scheduler
        .submit(2, prompt(2, 30), one.clone())
        .expect("admitted");
    h.step();
    h.scheduler
        .submit(3, concat(&[&prompt(2, 5), &prompt(3, 20)]), one.clone())
        .expect("admitted");
    let (plan, _) = h.step();
    assert_eq!(plan.kv_ops, [KvOp::Clear { seq: 0 }]);
    assert_eq!(h.kv.tokens(1), prompt(2, 30), "request 2's cells stay");
    // Now request 2's slot is the least recently released: the next short match uses it.
    h.scheduler
        .submit(4, concat(&[&prompt(2, 5), &prompt(4, 20)]), one)
        .expect("admitted");
    let (plan, _) = h.step();
    assert_eq!(plan.kv_ops, [KvOp::Truncate { seq: 1, from: 5 }]);
}

#[test]
fn with_reuse_off_nothing_is_copied_and_finished_slots_are_cleared() {
    let mut h = Harness::new(SchedulerConfig {
        prefix_reuse: false,
        ..config()
    });
    let system = prompt(9, 100);
    h.submit(1, concat(&[&system, &prompt(1, 5)]));
    h.step();
    h.submit(2, concat(&[&system, &prompt(2, 5)]));
    let (plan, _) = h.step();
    assert!(plan.kv_ops.is_empty());
    assert_eq!(
        first_token_kind(&plan, 2),
        Some(LogitsKind::FirstToken {
            prompt_tokens: 105,
            cached_tokens: 0
        })
    );
    h.scheduler.cancel(1);
    let (plan, _) = h.step();
    assert_eq!(plan.kv_ops, [KvOp::Clear { seq: 0 }]);
    assert_eq!(plan.freed, [0]);
    assert_eq!(h.scheduler.idle_cached(), 0);
}

#[test]
fn prompt_logprobs_want_every_prompt_token_and_skip_reuse() {
    let mut h = Harness::new(config());
    h.submit(1, prompt(1, 40));
    h.step();
    let options = SubmitOptions {
        prompt_logprobs: true,
        ..generous()
    };
    let second = prompt(1, 30);
    h.scheduler
        .submit(2, second.clone(), options)
        .expect("admitted");
    let (plan, _) = h.step();
    assert!(
        plan.kv_ops.is_empty(),
        "prompt logprobs need the whole prompt computed"
    );
    let mine: Vec<LogitsKind> = plan
        .logits
        .iter()
        .filter(|l| l.request_id == 2)
        .map(|l| l.kind)
        .collect();
    assert_eq!(mine.len(), 30);
    assert_eq!(mine[0], LogitsKind::PromptToken { next: second[1] });
    assert_eq!(mine[28], LogitsKind::PromptToken { next: second[29] });
    assert_eq!(
        mine[29],
        LogitsKind::FirstToken {
            prompt_tokens: 30,
            cached_tokens: 0
        }
    );
}

#[test]
fn idle_slots_are_evicted_least_recently_used_first() {
    let mut h = Harness::new(config());
    let one = SubmitOptions {
        max_tokens: Some(1),
        ..SubmitOptions::default()
    };
    h.scheduler
        .submit(1, prompt(1, 30), one.clone())
        .expect("admitted");
    h.scheduler
        .submit(2, prompt(2, 30), one.clone())
        .expect("admitted");
    h.step();
    // Both finished in the same step; request 1's slot was released first.
    assert_eq!(h.scheduler.idle_cached(), 2);
    h.scheduler
        .submit(3, prompt(3, 30), one.clone())
        .expect("admitted");
    let (plan, _) = h.step();
    assert_eq!(plan.kv_ops, [KvOp::Clear { seq: 0 }]);
    // Now slot 1 (request 2) is the least recently released.
    h.scheduler.submit(4, prompt(4, 30), one).expect("admitted");
    let (plan, _) = h.step();
    assert_eq!(plan.kv_ops, [KvOp::Clear { seq: 1 }]);
}

#[test]
fn an_idle_slot_with_a_matching_prefix_is_kept_over_eviction() {
    let mut h = Harness::new(config());
    let one = SubmitOptions {
        max_tokens: Some(1),
        ..SubmitOptions::default()
    };
    h.scheduler
        .submit(1, prompt(1, 30), one.clone())
        .expect("admitted");
    h.scheduler.submit(2, prompt(2, 30), one).expect("admitted");
    h.step();
    // Request 3 continues request 2's prompt: it takes slot 1, although slot 0 is the least
    // recently released and would be the one evicted.
    h.submit(3, concat(&[&prompt(2, 30), &prompt(3, 5)]));
    let (plan, _) = h.step();
    assert!(plan.kv_ops.is_empty());
    assert_eq!(tokens_for(&plan, 1).len(), 5);
    assert_eq!(h.scheduler.idle_cached(), 1, "request 1's cells stay");
    assert_eq!(h.kv.tokens(0), prompt(1, 30));
}

#[test]
fn two_requests_admitted_together_can_share_a_prefix_from_an_idle_slot() {
    let mut h = Harness::new(SchedulerConfig {
        parallel: 3,
        ..config()
    });
    let one = SubmitOptions {
        max_tokens: Some(1),
        ..SubmitOptions::default()
    };
    let system = prompt(9, 64);
    h.scheduler
        .submit(1, concat(&[&system, &prompt(1, 4)]), one.clone())
        .expect("admitted");
    h.step();
    h.submit(2, concat(&[&system, &prompt(2, 4)]));
    h.submit(3, concat(&[&system, &prompt(3, 4)]));
    let (plan, _) = h.step();
    // Request 2 takes the idle slot (cut after the system prompt); request 3 copies from it.
    assert_eq!(
        plan.kv_ops,
        [
            KvOp::Truncate { seq: 0, from: 64 },
            KvOp::Copy {
                src_seq: 0,
                dst_seq: 1,
                len: 64
            }
        ]
    );
    assert_eq!(
        h.scheduler.kv_cells_used(),
        (64 + 4) + (64 + 4),
        "each has its own cells"
    );
}

#[test]
fn stats_count_slots_queue_cells_and_steps() {
    let mut h = Harness::new(SchedulerConfig {
        parallel: 2,
        prefill_chunk: 50,
        ..config()
    });
    h.submit(1, prompt(1, 200));
    h.submit(2, prompt(2, 10));
    h.submit(3, prompt(3, 10));
    h.step();
    let stats = h.scheduler.stats();
    assert_eq!(
        stats,
        SchedulerStats {
            running: 2,
            prefilling: 1,
            queued: 1,
            idle_cached: 0,
            kv_cells_used: 60,
            kv_cells_total: 8192,
            steps: 1,
        }
    );
    h.step();
    h.step();
    assert_eq!(h.scheduler.stats().steps, 3, "one per committed step");
}

// ---- the host prompt cache ----

fn cached_config(host_cache_tokens: u32) -> SchedulerConfig {
    SchedulerConfig {
        parallel: 1,
        host_cache_tokens,
        ..config()
    }
}

fn short(max_tokens: u32) -> SubmitOptions {
    SubmitOptions {
        max_tokens: Some(max_tokens),
        ..SubmitOptions::default()
    }
}

/// Submits `prompt` as request `id` and runs it to its end; returns its usage.
fn run_one(h: &mut Harness, id: RequestId, prompt: Vec<TokenId>) -> Usage {
    h.scheduler.submit(id, prompt, short(4)).expect("admitted");
    let ended = h.run_to_completion();
    ended
        .iter()
        .find(|e| e.request_id == id)
        .map(|e| e.usage)
        .expect("it ended")
}

#[test]
fn an_evicted_prompt_comes_back_from_the_host_cache() {
    let mut h = Harness::new(cached_config(10_000));
    let a = prompt(1, 100);
    assert_eq!(run_one(&mut h, 1, a.clone()).cached_tokens, 0);
    // B takes the only slot: A's 103 cells (prompt and three decoded tokens) are saved first.
    h.scheduler
        .submit(2, prompt(2, 50), short(4))
        .expect("admitted");
    let (plan, _) = h.step();
    assert_eq!(
        plan.kv_ops,
        [KvOp::Save { seq: 0, entry: 0 }, KvOp::Clear { seq: 0 }]
    );
    h.run_to_completion();
    // A again: B is saved in turn, A restored and cut to the prompt minus its last token.
    h.scheduler
        .submit(3, a.clone(), short(4))
        .expect("admitted");
    let (plan, _) = h.step();
    assert_eq!(
        plan.kv_ops,
        [
            KvOp::Save { seq: 0, entry: 1 },
            KvOp::Clear { seq: 0 },
            KvOp::Restore { entry: 0, seq: 0 },
            KvOp::Truncate { seq: 0, from: 99 },
        ]
    );
    assert_eq!(
        tokens_for(&plan, 0),
        [(a[99], 99)],
        "only the last prompt token"
    );
    let ended = h.run_to_completion();
    assert_eq!(ended[0].usage.cached_tokens, 99);
    // The longer conversation (A, its answer, a new turn) restores the whole of A's entry.
    let answer = h.kv.tokens(0)[100..].to_vec();
    let turn_two = concat(&[&a, &answer, &prompt(3, 10)]);
    h.scheduler
        .submit(4, prompt(4, 40), short(4))
        .expect("admitted");
    h.run_to_completion();
    assert_eq!(run_one(&mut h, 5, turn_two).cached_tokens, 103);
}

#[test]
fn the_host_cache_stays_within_its_tokens_least_recently_used_out() {
    // Room for two 103-token entries, not three.
    let mut h = Harness::new(cached_config(250));
    for id in 1..=4 {
        run_one(&mut h, id, prompt(id as i32, 100));
    }
    // 1, 2 and 3 were saved in turn; saving 3 forgot 1.
    assert_eq!(h.scheduler.saved_tokens, 206);
    assert_eq!(h.scheduler.saved.len(), 2);
    assert_eq!(
        run_one(&mut h, 5, prompt(1, 100)).cached_tokens,
        0,
        "1 is gone"
    );
    assert_eq!(
        run_one(&mut h, 6, prompt(3, 100)).cached_tokens,
        99,
        "3 is kept"
    );
    assert!(h.scheduler.saved_tokens <= 250);
}

#[test]
fn host_cache_skips_a_sequence_an_entry_already_holds() {
    let mut h = Harness::new(cached_config(10_000));
    let a = prompt(1, 100);
    run_one(&mut h, 1, a.clone());
    run_one(&mut h, 2, prompt(2, 50));
    // Scoring A's first 60 tokens (max_tokens 0) restores them from A's entry and leaves the
    // slot holding exactly those 60: a prefix of the entry.
    let scoring = SubmitOptions {
        max_tokens: Some(0),
        ..SubmitOptions::default()
    };
    h.scheduler
        .submit(3, a[..60].to_vec(), scoring)
        .expect("admitted");
    let ended = h.run_to_completion();
    assert_eq!(ended[0].usage.cached_tokens, 59);
    assert_eq!(h.kv.tokens(0), &a[..60]);
    let entries = h.scheduler.saved.len();
    h.scheduler
        .submit(4, prompt(4, 50), short(4))
        .expect("admitted");
    let (plan, _) = h.step();
    assert_eq!(plan.kv_ops, [KvOp::Clear { seq: 0 }], "no second copy");
    assert_eq!(h.scheduler.saved.len(), entries);
}

#[test]
fn without_a_host_cache_nothing_is_saved() {
    let mut h = Harness::new(cached_config(0));
    run_one(&mut h, 1, prompt(1, 100));
    h.scheduler
        .submit(2, prompt(2, 50), short(4))
        .expect("admitted");
    let (plan, _) = h.step();
    assert_eq!(plan.kv_ops, [KvOp::Clear { seq: 0 }]);
    h.run_to_completion();
    assert_eq!(run_one(&mut h, 3, prompt(1, 100)).cached_tokens, 0);
}

#[test]
fn an_idle_slot_cut_for_a_shared_system_prompt_keeps_its_tail_in_the_host_cache() {
    let mut h = Harness::new(cached_config(10_000));
    let system = prompt(9, 200);
    let a = concat(&[&system, &prompt(1, 50)]);
    run_one(&mut h, 1, a.clone());
    // B shares the system prompt: the idle slot is cut to it, A's whole sequence is saved.
    h.scheduler
        .submit(2, concat(&[&system, &prompt(2, 50)]), short(4))
        .expect("admitted");
    let (plan, _) = h.step();
    assert_eq!(
        plan.kv_ops,
        [
            KvOp::Save { seq: 0, entry: 0 },
            KvOp::Truncate { seq: 0, from: 200 }
        ]
    );
    h.run_to_completion();
    assert_eq!(run_one(&mut h, 3, a).cached_tokens, 249);
}

// ---- the prefill backlog (what the arrival window weighs) ----

#[test]
fn the_backlog_counts_a_queued_prompt_less_what_admission_will_reuse() {
    let mut h = Harness::new(config());
    let system = prompt(9, 1000);
    h.submit(1, concat(&[&system, &prompt(1, 20)]));
    assert_eq!(h.scheduler.prefill_backlog(), 1020, "nothing cached yet");
    assert_eq!(h.scheduler.free_slots(), 1, "two slots, one spoken for");
    h.step();
    assert_eq!(
        h.scheduler.prefill_backlog(),
        764,
        "the rest of A's prompt after one 256-token chunk"
    );
    for _ in 0..4 {
        h.step();
    }
    assert_eq!(h.scheduler.prefill_backlog(), 0);
    assert_eq!(h.scheduler.free_slots(), 1);
    // B shares A's system prompt while A runs: only its own 30 tokens are ahead, as admission
    // then finds.
    h.submit(2, concat(&[&system, &prompt(2, 30)]));
    assert_eq!(h.scheduler.prefill_backlog(), 30);
    assert_eq!(h.scheduler.free_slots(), 0);
    let (plan, _) = h.step();
    assert_eq!(
        first_token_kind(&plan, 2),
        Some(LogitsKind::FirstToken {
            prompt_tokens: 1030,
            cached_tokens: 1000
        })
    );
    assert_eq!(h.scheduler.prefill_backlog(), 0);
    // Prompt logprobs compute every prompt token.
    h.scheduler.cancel(2);
    h.step();
    let options = SubmitOptions {
        prompt_logprobs: true,
        ..generous()
    };
    h.scheduler
        .submit(3, concat(&[&system, &prompt(3, 10)]), options)
        .expect("admitted");
    assert_eq!(h.scheduler.prefill_backlog(), 1010);
}

#[test]
fn the_backlog_counts_a_prompt_the_host_cache_holds_as_its_last_token() {
    let mut h = Harness::new(cached_config(10_000));
    let a = prompt(1, 100);
    run_one(&mut h, 1, a.clone());
    run_one(&mut h, 2, prompt(2, 50));
    h.scheduler
        .submit(3, a.clone(), short(4))
        .expect("admitted");
    assert_eq!(h.scheduler.prefill_backlog(), 1);
    let (plan, _) = h.step();
    assert!(plan.kv_ops.contains(&KvOp::Restore { entry: 0, seq: 0 }));
    assert_eq!(tokens_for(&plan, 0).len(), 1);
}
