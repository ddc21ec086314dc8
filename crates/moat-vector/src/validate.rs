//! Checks every store runs on what crosses the seam before touching storage, so both backends
//! reject the same input with the same error, and the small vector helpers they share.

use crate::{Filter, NewChunk, NewDocument, VectorError};

/// The largest `k` a search accepts; a larger one is `Invalid` rather than a huge allocation.
pub const MAX_K: usize = 10_000;
/// The largest embedding dimension a knowledge base may declare.
pub const MAX_DIMENSION: u32 = 65_536;
/// The longest document path, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// The most tags on one document or in one filter, and the longest tag, in bytes.
pub const MAX_TAGS: usize = 64;
pub const MAX_TAG_BYTES: usize = 256;

/// A knowledge base's declared dimension must be 1..=[`MAX_DIMENSION`].
pub fn check_dimension(dimension: u32) -> Result<(), VectorError> {
    if dimension == 0 || dimension > MAX_DIMENSION {
        return Err(VectorError::Invalid(format!(
            "dimension {dimension} is out of range 1..={MAX_DIMENSION}"
        )));
    }
    Ok(())
}

/// A vector written to or searched in knowledge base `kb`: the right length, every value finite.
pub fn check_vector(kb: &str, dimension: u32, vector: &[f32]) -> Result<(), VectorError> {
    if vector.len() != dimension as usize {
        return Err(VectorError::DimensionMismatch {
            kb: kb.to_owned(),
            expected: dimension,
            got: u32::try_from(vector.len()).unwrap_or(u32::MAX),
        });
    }
    if let Some(bad) = vector.iter().position(|x| !x.is_finite()) {
        return Err(VectorError::Invalid(format!(
            "vector component {bad} is not a finite number"
        )));
    }
    Ok(())
}

/// A document and its chunks before `replace_document` writes them.
pub fn check_document(
    kb: &str,
    dimension: u32,
    document: &NewDocument,
    chunks: &[NewChunk],
) -> Result<(), VectorError> {
    check_path(&document.path)?;
    if document.content_hash.is_empty() || document.content_hash.len() > 128 {
        return Err(VectorError::Invalid(
            "the content hash must be 1-128 bytes".into(),
        ));
    }
    check_tags(&document.tags)?;
    let mut ordinals: Vec<u32> = chunks.iter().map(|c| c.ordinal).collect();
    ordinals.sort_unstable();
    if let Some(pair) = ordinals.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(VectorError::Invalid(format!(
            "two chunks of {:?} have ordinal {}",
            document.path, pair[0]
        )));
    }
    for chunk in chunks {
        check_vector(kb, dimension, &chunk.embedding)?;
        if chunk.text.contains('\0') {
            return Err(VectorError::Invalid(format!(
                "chunk {} of {:?} contains a NUL character",
                chunk.ordinal, document.path
            )));
        }
    }
    Ok(())
}

/// A document path: 1..=[`MAX_PATH_BYTES`] bytes, no NUL.
pub fn check_path(path: &str) -> Result<(), VectorError> {
    if path.is_empty() || path.len() > MAX_PATH_BYTES || path.contains('\0') {
        return Err(VectorError::Invalid(format!(
            "a document path must be 1-{MAX_PATH_BYTES} bytes without NUL"
        )));
    }
    Ok(())
}

fn check_tags(tags: &[String]) -> Result<(), VectorError> {
    if tags.len() > MAX_TAGS {
        return Err(VectorError::Invalid(format!(
            "{} tags; the limit is {MAX_TAGS}",
            tags.len()
        )));
    }
    if let Some(bad) = tags
        .iter()
        .find(|t| t.is_empty() || t.len() > MAX_TAG_BYTES || t.contains('\0'))
    {
        return Err(VectorError::Invalid(format!(
            "invalid tag {bad:?}: tags are 1-{MAX_TAG_BYTES} bytes without NUL"
        )));
    }
    Ok(())
}

/// A search's `k` and filter. `k == 0` is allowed (it returns nothing).
pub fn check_search(k: usize, filter: &Filter) -> Result<(), VectorError> {
    if k > MAX_K {
        return Err(VectorError::Invalid(format!(
            "k = {k}; the limit is {MAX_K}"
        )));
    }
    check_tags(&filter.tags)
}

/// The sorted, deduplicated form in which stores keep a document's tags.
pub fn normalize_tags(tags: &[String]) -> Vec<String> {
    let mut tags = tags.to_vec();
    tags.sort();
    tags.dedup();
    tags
}

/// `vector` scaled to unit length; a zero vector stays zero (its cosine with anything is 0).
pub fn normalized(vector: &[f32]) -> Vec<f32> {
    // Summed in f64 so large components cannot overflow the norm.
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return vector.iter().map(|_| 0.0).collect();
    }
    vector
        .iter()
        .map(|&x| (f64::from(x) / norm) as f32)
        .collect()
}

/// The dot product of two vectors of the same length (the cosine when both are unit length).
///
/// Eight independent sums let the compiler vectorise the loop (one running sum cannot be, as
/// float addition is not associative); this is the inner loop of index builds and exact search.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (chunks_a, chunks_b) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = chunks_a
        .remainder()
        .iter()
        .zip(chunks_b.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut sums = [0.0f32; 8];
    for (x, y) in chunks_a.zip(chunks_b) {
        for ((sum, x), y) in sums.iter_mut().zip(x).zip(y) {
            *sum += x * y;
        }
    }
    sums.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_plain_sum_for_every_length() {
        for n in 0..40 {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 / (i as f32 + 1.0)).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "n = {n}");
        }
    }

    #[test]
    fn normalized_is_unit_length_and_zero_stays_zero() {
        let v = normalized(&[3.0, 4.0]);
        assert_eq!(v, [0.6, 0.8]);
        assert_eq!(normalized(&[0.0, 0.0]), [0.0, 0.0]);
        let huge = normalized(&[3.0e37, 4.0e37]);
        assert!((huge[0] - 0.6).abs() < 1e-6 && (huge[1] - 0.8).abs() < 1e-6);
    }
}
