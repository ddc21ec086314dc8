//! Batch planning: which inputs share a forward pass.
//!
//! A batch is padded to its longest sequence, so mixing a 250-token input with 5-token ones
//! spends most of the pass on padding. Sorting by length and cutting batches at a bound on
//! padded tokens keeps the waste small and the memory of one pass bounded (attention is
//! quadratic in the padded width). It knows nothing of tokens or models, only lengths.

/// Bounds on one forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most padded tokens in one batch (sequences × padded width). A single sequence longer
    /// than this still runs, alone.
    pub max_padded_tokens: usize,
    /// Most sequences in one batch.
    pub max_sequences: usize,
}

impl Default for BatchLimits {
    /// 4096 padded tokens keeps one pass of a MiniLM-sized model within tens of MB of
    /// activations on CPU; 128 sequences bounds the batch of very short inputs.
    fn default() -> Self {
        Self {
            max_padded_tokens: 4096,
            max_sequences: 128,
        }
    }
}

/// Splits inputs of the given lengths into batches of input indices. Every index appears in
/// exactly one batch; within a batch the longest input comes first. Longer inputs go first so
/// each batch's width is its first input's length.
pub fn plan_batches(lengths: &[usize], limits: BatchLimits) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    // Stable, so equal lengths keep input order (deterministic batches).
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut width = 0;
    for index in order {
        let fits = batches.last().is_some_and(|batch| {
            batch.len() < limits.max_sequences
                && (batch.len() + 1) * width <= limits.max_padded_tokens
        });
        match batches.last_mut() {
            Some(batch) if fits => batch.push(index),
            _ => {
                width = lengths[index];
                batches.push(vec![index]);
            }
        }
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_padded_tokens: usize, max_sequences: usize) -> BatchLimits {
        BatchLimits {
            max_padded_tokens,
            max_sequences,
        }
    }

    fn check_invariants(lengths: &[usize], batches: &[Vec<usize>], limits: BatchLimits) {
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..lengths.len()).collect::<Vec<_>>(),
            "each input once"
        );
        for batch in batches {
            let width = batch.iter().map(|&i| lengths[i]).max().expect("non-empty");
            assert_eq!(lengths[batch[0]], width, "longest first");
            assert!(batch.len() <= limits.max_sequences);
            assert!(batch.len() == 1 || batch.len() * width <= limits.max_padded_tokens);
        }
    }

    #[test]
    fn short_and_long_inputs_do_not_share_a_batch_when_the_budget_is_tight() {
        let lengths = [5, 250, 6, 240, 7, 5];
        let l = limits(512, 64);
        let batches = plan_batches(&lengths, l);
        check_invariants(&lengths, &batches, l);
        assert_eq!(batches, vec![vec![1, 3], vec![4, 2, 0, 5]]);
    }

    #[test]
    fn the_sequence_bound_cuts_batches_of_short_inputs() {
        let lengths = [3; 10];
        let l = limits(4096, 4);
        let batches = plan_batches(&lengths, l);
        check_invariants(&lengths, &batches, l);
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0], vec![0, 1, 2, 3]);
    }

    #[test]
    fn an_input_over_the_budget_runs_alone() {
        let lengths = [600, 10];
        let l = limits(512, 8);
        let batches = plan_batches(&lengths, l);
        check_invariants(&lengths, &batches, l);
        assert_eq!(batches, vec![vec![0], vec![1]]);
    }

    #[test]
    fn no_inputs_no_batches() {
        assert!(plan_batches(&[], BatchLimits::default()).is_empty());
    }

    #[test]
    fn invariants_hold_over_many_mixed_lengths() {
        // A deterministic spread of lengths (a linear congruential sequence), not random.
        let lengths: Vec<usize> = (0..500u64)
            .map(|i| (((i * 7919 + 13) % 256) + 1) as usize)
            .collect();
        for l in [limits(4096, 128), limits(300, 3), limits(256, 1000)] {
            check_invariants(&lengths, &plan_batches(&lengths, l), l);
        }
    }
}
