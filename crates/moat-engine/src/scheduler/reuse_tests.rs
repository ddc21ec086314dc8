//! Unit tests of prefix reuse: across running sequences (copies), within idle slots
//! (truncation), the minimum length, the switch, prompt logprobs and LRU eviction.

use super::harness::*;
use super::*;

// ---- prefix reuse ----

#[test]
fn a_request_reuses_the_system_prompt_of_a_running_request() {
    let mut h = Harness::new(config());
    let system = prompt(9, 1000);
    h.submit(1, concat(&[&system, &prompt(1, 20)]));
    for _ in 0..5 {
        h.step();
    }
    let a = h.seq_of(1).expect("A runs");
    h.submit(2, concat(&[&system, &prompt(2, 30)]));
    let (plan, _) = h.step();
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
    let cells = h.scheduler.kv_cells_used();
    assert_eq!(
        cells,
        1022 + 30,
        "A's 1022 cells, B's own 30: the shared prefix is held once"
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
    assert_eq!(h.scheduler.kv_cells_used(), 64 + 4 + 4);
}

#[test]
fn stats_count_slots_queue_and_cells() {
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
            kv_cells_total: 8192
        }
    );
}
