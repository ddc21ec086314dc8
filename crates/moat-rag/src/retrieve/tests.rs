//! Unit tests of `retrieve`.

use moat_vector::Location;

use super::*;

fn hit(chunk_id: i64, score: f32) -> Hit {
    Hit {
        chunk_id,
        path: format!("doc{chunk_id}.md"),
        ordinal: 0,
        text: format!("text {chunk_id}"),
        location: Location::default(),
        score,
    }
}

fn ids(hits: &[RetrievedHit]) -> Vec<i64> {
    hits.iter().map(|h| h.hit.chunk_id).collect()
}

#[test]
fn fusion_sums_reciprocal_ranks() {
    let params = RetrieveParams::default();
    let vector = vec![hit(1, 0.9), hit(2, 0.8), hit(3, 0.7)];
    let text = vec![hit(3, 12.0), hit(4, 9.0), hit(1, 3.0)];
    let fused = fuse(vector, text, &params);
    // 1: 1/61 + 1/63, 3: 1/63 + 1/61 (tie, vector rank 1 first), 2: 1/62, 4: 1/62.
    assert_eq!(ids(&fused), [1, 3, 2, 4]);
    let first = &fused[0];
    assert_eq!((first.vector_rank, first.text_rank), (Some(1), Some(3)));
    assert_eq!(first.vector_score, Some(0.9));
    assert!((first.score - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-6);
    assert_eq!((fused[3].vector_rank, fused[3].text_rank), (None, Some(2)));
}

#[test]
fn smaller_k_favours_top_ranks() {
    // Chunk 9 is second in both lists; chunks 1 and 2 are first in one list and absent in the
    // other. A large k rewards agreement, a small k rewards being first somewhere.
    let vector = vec![hit(1, 0.9), hit(9, 0.8)];
    let text = vec![hit(2, 5.0), hit(9, 4.0)];
    let large = RetrieveParams {
        rrf_k: 60.0,
        ..RetrieveParams::default()
    };
    assert_eq!(ids(&fuse(vector.clone(), text.clone(), &large))[0], 9);
    let small = RetrieveParams {
        rrf_k: 0.0,
        ..RetrieveParams::default()
    };
    assert_eq!(ids(&fuse(vector, text, &small))[0], 1);
}

#[test]
fn min_score_drops_weak_vector_hits_and_text_only_hits_when_nothing_passed() {
    let params = RetrieveParams {
        min_score: Some(0.5),
        ..RetrieveParams::default()
    };
    let fused = fuse(vec![hit(1, 0.7), hit(2, 0.3)], vec![hit(5, 8.0)], &params);
    assert_eq!(ids(&fused), [1, 5]);
    let fused = fuse(vec![hit(1, 0.4), hit(2, 0.3)], vec![hit(5, 8.0)], &params);
    assert!(fused.is_empty(), "{fused:?}");
    let text_mode = RetrieveParams {
        mode: SearchMode::Text,
        ..params
    };
    assert_eq!(ids(&fuse(Vec::new(), vec![hit(5, 8.0)], &text_mode)), [5]);
}
