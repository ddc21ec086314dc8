//! The prefix index: which sequence already holds the longest start of a new prompt in the KV
//! cache, so the scheduler can share those cells instead of computing them again. It sees
//! token lists only; it does not know slots' states, KV operations or llama.cpp.
//!
//! A linear scan is the whole index: a context holds tens of sequences of at most `n_ctx`
//! tokens each, so comparing a prompt with every one of them costs microseconds per admission,
//! far below one decode step. Hashed blocks (vLLM) pay off with thousands of cached blocks,
//! which one llama.cpp context never holds.

use crate::TokenId;

/// Where a prompt's reusable prefix lies: the candidate's key and how many leading tokens of
/// the prompt it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixMatch<K> {
    pub key: K,
    pub len: usize,
}

/// How many leading tokens `a` and `b` share.
pub fn common_prefix_len(a: &[TokenId], b: &[TokenId]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The candidate sharing the longest prefix with `prompt`, if that prefix is at least
/// `min_len` tokens. The length is capped at `prompt.len() - 1`: the last prompt token is always
/// evaluated, because its logits give the first generated token. On a tie the earlier
/// candidate wins, so callers list the cheapest candidates first.
pub fn longest_prefix<'a, K, I>(
    prompt: &[TokenId],
    candidates: I,
    min_len: usize,
) -> Option<PrefixMatch<K>>
where
    I: IntoIterator<Item = (K, &'a [TokenId])>,
{
    let cap = prompt.len().saturating_sub(1);
    let min_len = min_len.max(1);
    let mut best: Option<PrefixMatch<K>> = None;
    for (key, held) in candidates {
        let len = common_prefix_len(prompt, held).min(cap);
        let longer = best.as_ref().is_none_or(|b| len > b.len);
        if len >= min_len && longer {
            best = Some(PrefixMatch { key, len });
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(range: std::ops::Range<i32>) -> Vec<TokenId> {
        range.collect()
    }

    #[test]
    fn common_prefix_counts_leading_equal_tokens() {
        assert_eq!(common_prefix_len(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix_len(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(common_prefix_len(&[], &[1]), 0);
        assert_eq!(common_prefix_len(&[5], &[1]), 0);
    }

    #[test]
    fn picks_the_candidate_with_the_longest_shared_prefix() {
        let prompt = tokens(0..100);
        let short = tokens(0..30);
        let long: Vec<TokenId> = tokens(0..60).into_iter().chain([999, 998]).collect();
        let other = tokens(50..150);
        let found = longest_prefix(
            &prompt,
            [(0, &short[..]), (1, &long[..]), (2, &other[..])],
            16,
        );
        assert_eq!(found, Some(PrefixMatch { key: 1, len: 60 }));
    }

    #[test]
    fn ignores_prefixes_shorter_than_the_minimum() {
        let prompt = tokens(0..100);
        let held = tokens(0..15);
        assert_eq!(longest_prefix(&prompt, [(0, &held[..])], 16), None);
        assert_eq!(
            longest_prefix(&prompt, [(0, &held[..])], 15),
            Some(PrefixMatch { key: 0, len: 15 })
        );
    }

    #[test]
    fn never_reuses_the_whole_prompt() {
        let prompt = tokens(0..40);
        let identical = tokens(0..40);
        let longer = tokens(0..80);
        for held in [&identical, &longer] {
            let found = longest_prefix(&prompt, [(7, &held[..])], 16);
            assert_eq!(found, Some(PrefixMatch { key: 7, len: 39 }));
        }
    }

    #[test]
    fn a_one_token_prompt_never_matches() {
        let held = tokens(0..40);
        assert_eq!(longest_prefix(&[0], [(0, &held[..])], 1), None);
        assert_eq!(longest_prefix(&[], [(0, &held[..])], 1), None);
    }

    #[test]
    fn the_first_candidate_wins_a_tie() {
        let prompt = tokens(0..100);
        let a = tokens(0..50);
        let b = tokens(0..50);
        let found = longest_prefix(&prompt, [("idle", &a[..]), ("running", &b[..])], 16);
        assert_eq!(
            found,
            Some(PrefixMatch {
                key: "idle",
                len: 50
            })
        );
    }

    #[test]
    fn no_candidates_no_match() {
        let none: [(u8, &[TokenId]); 0] = [];
        assert_eq!(longest_prefix(&tokens(0..100), none, 16), None);
    }
}
