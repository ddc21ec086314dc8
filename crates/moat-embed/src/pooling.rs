//! Pooling: how a sequence's token vectors become one sentence vector, as sentence-transformers'
//! `Pooling` module does it, and its `Normalize` module.
//!
//! It works on plain rows of floats holding only the sequence's real tokens (padding already cut
//! off), so it knows nothing of candle or batches.

/// One pooling mode of `1_Pooling/config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolingMode {
    /// The first token's vector (`[CLS]`): BGE.
    Cls,
    /// The element-wise maximum over the tokens.
    Max,
    /// The mean over the tokens: MiniLM, E5, GTE.
    Mean,
    /// The sum over the tokens divided by the square root of their count.
    MeanSqrtLen,
}

/// The enabled pooling modes, in the order sentence-transformers concatenates them (cls, max,
/// mean, mean_sqrt_len), so a config that enables several gives the same vector layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pooling {
    modes: Vec<PoolingMode>,
}

impl Pooling {
    /// A pooling of the given modes, put into sentence-transformers' order; `None` when no mode
    /// is enabled (a model whose config enables none has no sentence vector).
    pub fn new(modes: &[PoolingMode]) -> Option<Self> {
        let order = [
            PoolingMode::Cls,
            PoolingMode::Max,
            PoolingMode::Mean,
            PoolingMode::MeanSqrtLen,
        ];
        let modes: Vec<_> = order.into_iter().filter(|m| modes.contains(m)).collect();
        (!modes.is_empty()).then_some(Self { modes })
    }

    /// The enabled modes, in output order.
    pub fn modes(&self) -> &[PoolingMode] {
        &self.modes
    }

    /// The sentence vector's length for token vectors of length `hidden`.
    pub fn output_dimension(&self, hidden: usize) -> usize {
        hidden * self.modes.len()
    }

    /// Pools the token vectors of one sequence. `tokens` holds only real tokens (no padding) and
    /// is not empty: every sequence has at least its special tokens.
    pub fn pool(&self, tokens: &[Vec<f32>]) -> Vec<f32> {
        let hidden = tokens.first().map_or(0, Vec::len);
        let mut out = Vec::with_capacity(self.output_dimension(hidden));
        for mode in &self.modes {
            match mode {
                PoolingMode::Cls => out.extend_from_slice(&tokens[0]),
                PoolingMode::Max => out.extend((0..hidden).map(|d| {
                    tokens
                        .iter()
                        .map(|t| t[d])
                        .fold(f32::NEG_INFINITY, f32::max)
                })),
                PoolingMode::Mean => {
                    let n = tokens.len() as f64;
                    out.extend(sums(tokens, hidden).into_iter().map(|s| (s / n) as f32));
                }
                PoolingMode::MeanSqrtLen => {
                    let root = (tokens.len() as f64).sqrt();
                    out.extend(sums(tokens, hidden).into_iter().map(|s| (s / root) as f32));
                }
            }
        }
        out
    }
}

/// Column sums in f64, so long sequences lose no precision to accumulation.
fn sums(tokens: &[Vec<f32>], hidden: usize) -> Vec<f64> {
    let mut sums = vec![0.0f64; hidden];
    for token in tokens {
        for (sum, value) in sums.iter_mut().zip(token) {
            *sum += f64::from(*value);
        }
    }
    sums
}

/// Scales `vector` to unit L2 length in place, as sentence-transformers' `Normalize` does
/// (`torch.nn.functional.normalize`, whose epsilon keeps a zero vector zero).
pub fn l2_normalize(vector: &mut [f32]) {
    let norm = vector
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt()
        .max(1e-12);
    for x in vector {
        *x = (f64::from(*x) / norm) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Vec<f32>> {
        vec![
            vec![1.0, -2.0],
            vec![3.0, 4.0],
            vec![-1.0, 7.0],
            vec![1.0, 3.0],
        ]
    }

    #[test]
    fn each_mode_pools_as_sentence_transformers_does() {
        let pool = |mode| Pooling::new(&[mode]).expect("one mode").pool(&rows());
        assert_eq!(pool(PoolingMode::Cls), vec![1.0, -2.0]);
        assert_eq!(pool(PoolingMode::Max), vec![3.0, 7.0]);
        assert_eq!(pool(PoolingMode::Mean), vec![1.0, 3.0]);
        // Sums are 4 and 12, over sqrt(4) = 2.
        assert_eq!(pool(PoolingMode::MeanSqrtLen), vec![2.0, 6.0]);
    }

    #[test]
    fn several_modes_concatenate_in_sentence_transformers_order() {
        let pooling = Pooling::new(&[PoolingMode::Mean, PoolingMode::Cls]).expect("two modes");
        assert_eq!(pooling.modes(), &[PoolingMode::Cls, PoolingMode::Mean]);
        assert_eq!(pooling.output_dimension(2), 4);
        assert_eq!(pooling.pool(&rows()), vec![1.0, -2.0, 1.0, 3.0]);
    }

    #[test]
    fn no_mode_is_no_pooling() {
        assert_eq!(Pooling::new(&[]), None);
    }

    #[test]
    fn normalize_gives_unit_length_and_keeps_zero_at_zero() {
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0, 0.0];
        l2_normalize(&mut zero);
        assert_eq!(zero, vec![0.0, 0.0]);
    }
}
