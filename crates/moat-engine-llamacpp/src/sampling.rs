//! Per-sequence sampling: the llama.cpp sampler chain built from `SamplingParams`, and logprobs
//! computed from a raw logits row (log-softmax, top alternatives). It knows nothing of batches
//! or sequences.

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;
use moat_engine::{SamplingParams, TokenId};

/// The chain llama.cpp's own samplers use, in llama.cpp's order: logit bias, penalties, then
/// greedy (temperature 0) or top-k, top-p, min-p, temperature and a seeded draw.
pub(crate) fn sampler_chain(params: &SamplingParams, n_vocab: i32) -> LlamaSampler {
    let mut stages = Vec::new();
    if !params.logit_bias.is_empty() {
        let biases: Vec<LlamaLogitBias> = params
            .logit_bias
            .iter()
            .map(|&(token, bias)| LlamaLogitBias::new(LlamaToken(token), bias))
            .collect();
        stages.push(LlamaSampler::logit_bias(n_vocab, &biases));
    }
    if penalties_active(params) {
        stages.push(LlamaSampler::penalties(
            n_vocab,
            i32::try_from(params.penalty_last_n).unwrap_or(i32::MAX),
            params.repeat_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        ));
    }
    if params.temperature <= 0.0 {
        stages.push(LlamaSampler::greedy());
        return LlamaSampler::chain(stages, true);
    }
    if params.top_k > 0 {
        stages.push(LlamaSampler::top_k(
            i32::try_from(params.top_k).unwrap_or(i32::MAX),
        ));
    }
    if params.top_p < 1.0 {
        stages.push(LlamaSampler::top_p(params.top_p, 1));
    }
    if params.min_p > 0.0 {
        stages.push(LlamaSampler::min_p(params.min_p, 1));
    }
    stages.push(LlamaSampler::temp(params.temperature));
    stages.push(LlamaSampler::dist(seed_u32(params.seed)));
    LlamaSampler::chain(stages, true)
}

/// Whether the penalties stage does anything; it then needs the prompt's tokens as history.
pub(crate) fn penalties_active(params: &SamplingParams) -> bool {
    params.penalty_last_n > 0
        && (params.repeat_penalty != 1.0
            || params.frequency_penalty != 0.0
            || params.presence_penalty != 0.0)
}

/// llama.cpp seeds are 32-bit and `u32::MAX` means "random"; a request without a seed gets a
/// fresh random one here so that the meaning of every explicit seed stays fixed.
fn seed_u32(seed: Option<u64>) -> u32 {
    let seed = seed.unwrap_or_else(random_u64);
    let folded = (seed ^ (seed >> 32)) as u32;
    if folded == u32::MAX {
        0x9e37_79b9
    } else {
        folded
    }
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

/// Log-probabilities over one logits row.
pub(crate) struct LogSoftmax<'a> {
    logits: &'a [f32],
    log_sum_exp: f32,
}

impl<'a> LogSoftmax<'a> {
    pub(crate) fn new(logits: &'a [f32]) -> Self {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = logits
            .iter()
            .map(|&logit| f64::from(logit - max).exp())
            .sum();
        Self {
            logits,
            log_sum_exp: max + sum.ln() as f32,
        }
    }

    pub(crate) fn logprob(&self, token: TokenId) -> f32 {
        usize::try_from(token)
            .ok()
            .and_then(|index| self.logits.get(index))
            .map_or(f32::NEG_INFINITY, |&logit| logit - self.log_sum_exp)
    }

    /// The `n` most likely tokens, most likely first (ties: lower id first).
    pub(crate) fn top(&self, n: usize) -> Vec<(TokenId, f32)> {
        most_likely(self.logits, n)
            .into_iter()
            .map(|index| {
                let token = TokenId::try_from(index).unwrap_or(TokenId::MAX);
                (token, self.logits[index] - self.log_sum_exp)
            })
            .collect()
    }
}

/// The indices of the `n` largest logits, largest first; ties go to the lower index, as
/// llama.cpp's greedy sampler breaks them (-0 ties with +0, and NaN ranks last).
pub(crate) fn most_likely(logits: &[f32], n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let mut ids: Vec<usize> = (0..logits.len()).collect();
    let rank = |index: usize| {
        let logit = logits[index];
        if logit.is_nan() {
            f32::NEG_INFINITY
        } else {
            // -0.0 + 0.0 is +0.0: the two zeros compare equal, as they do in llama.cpp.
            logit + 0.0
        }
    };
    let by_logit_desc = |a: &usize, b: &usize| rank(*b).total_cmp(&rank(*a)).then(a.cmp(b));
    let n = n.min(ids.len());
    if n < ids.len() {
        ids.select_nth_unstable_by(n - 1, by_logit_desc);
        ids.truncate(n);
    }
    ids.sort_unstable_by(by_logit_desc);
    ids
}

/// Whether the chain is nothing but llama.cpp's greedy choice on the raw logits (no bias, no
/// penalties), so the most likely token is the one it picks.
pub(crate) fn plain_greedy(params: &SamplingParams) -> bool {
    params.temperature <= 0.0 && params.logit_bias.is_empty() && !penalties_active(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_sums_to_one() {
        let logits = [1.0_f32, 2.0, 3.0, 0.5];
        let softmax = LogSoftmax::new(&logits);
        let total: f32 = (0..4).map(|token| softmax.logprob(token).exp()).sum();
        assert!((total - 1.0).abs() < 1e-5, "{total}");
        assert!(softmax.logprob(2) > softmax.logprob(1));
        assert_eq!(softmax.logprob(9), f32::NEG_INFINITY);
    }

    #[test]
    fn top_returns_the_most_likely_in_order() {
        let logits = [1.0_f32, 5.0, 3.0, 5.0, -2.0];
        let softmax = LogSoftmax::new(&logits);
        let top: Vec<TokenId> = softmax.top(3).into_iter().map(|(id, _)| id).collect();
        assert_eq!(top, vec![1, 3, 2]);
        assert_eq!(softmax.top(0), vec![]);
        assert_eq!(softmax.top(10).len(), 5);
    }

    #[test]
    fn most_likely_breaks_ties_as_greedy_does() {
        let logits = [0.5_f32, f32::NAN, 2.0, -0.0, 2.0, 0.0, f32::NEG_INFINITY];
        assert_eq!(most_likely(&logits, 7), vec![2, 4, 0, 3, 5, 1, 6]);
        assert_eq!(most_likely(&logits, 2), vec![2, 4]);
    }

    #[test]
    fn explicit_seeds_are_stable_and_never_mean_random() {
        assert_eq!(seed_u32(Some(42)), seed_u32(Some(42)));
        assert_ne!(seed_u32(Some(u64::from(u32::MAX))), u32::MAX);
    }

    #[test]
    fn neutral_penalties_are_off() {
        assert!(!penalties_active(&SamplingParams::default()));
        let params = SamplingParams {
            repeat_penalty: 1.1,
            ..SamplingParams::default()
        };
        assert!(penalties_active(&params));
    }
}
