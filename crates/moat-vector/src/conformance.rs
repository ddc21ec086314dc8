//! The conformance suite: behaviour every [`VectorStore`] must show, run by each backend's
//! tests against a real instance (the embedded store in a temp folder, Postgres + pgvector on a
//! PGlite server). It is ordinary library code, not `cfg(test)`, because other crates' tests
//! call it.
//!
//! [`run_all`] runs every check in [`CHECKS`] on a fresh store from the caller's factory, one
//! check at a time (a PGlite server takes one connection at a time, so the previous store is
//! dropped before the next is made), and reports every failing check, not just the first.
//! Expected results are computed here from the inputs (brute-force cosine, the glob rules), never
//! taken from a backend.

// A test suite: a failed expectation is a panic with a message, by design.
#![allow(clippy::unwrap_used)]

use std::panic::{catch_unwind, AssertUnwindSafe};

mod kb;
mod search;

use kb::{
    dimension_mismatch, documents_listed, failed_replace_keeps_old, kb_errors, kb_lifecycle,
    missing_kb_everywhere, non_finite_rejected, remove_document, replace_swaps_chunks,
};
use search::{
    hostile_text_queries, k_bounds, kbs_isolated, path_glob_filter, scores_are_cosine,
    selective_filter_returns_k, tag_filter, text_search_ranks, unicode_round_trip,
    vector_search_exact, zero_vectors_score_zero,
};

use crate::validate::{dot, normalized};
use crate::{
    DocumentInfo, Filter, Hit, KbSpec, Location, NewChunk, NewDocument, VectorError, VectorStore,
};

/// One check: takes a fresh, empty store.
pub type Check = fn(&dyn VectorStore);

/// Every check, by name.
pub const CHECKS: &[(&str, Check)] = &[
    ("kb_lifecycle", kb_lifecycle),
    ("kb_errors", kb_errors),
    ("missing_kb_everywhere", missing_kb_everywhere),
    (
        "documents_are_listed_with_counts_and_tags",
        documents_listed,
    ),
    ("replace_document_swaps_chunks", replace_swaps_chunks),
    (
        "failed_replace_keeps_the_old_document",
        failed_replace_keeps_old,
    ),
    ("remove_document", remove_document),
    ("dimension_mismatch", dimension_mismatch),
    ("non_finite_vectors_are_rejected", non_finite_rejected),
    ("vector_search_is_exact_on_a_small_set", vector_search_exact),
    ("scores_are_cosine", scores_are_cosine),
    ("zero_vectors_score_zero", zero_vectors_score_zero),
    ("path_glob_filter", path_glob_filter),
    ("tag_filter", tag_filter),
    (
        "selective_filter_still_returns_k",
        selective_filter_returns_k,
    ),
    (
        "text_search_ranks_the_matching_chunk_first",
        text_search_ranks,
    ),
    ("hostile_text_queries_never_error", hostile_text_queries),
    ("k_larger_than_the_kb_and_k_zero", k_bounds),
    ("unicode_round_trip", unicode_round_trip),
    ("knowledge_bases_are_isolated", kbs_isolated),
];

/// Runs every check against fresh stores from `make`; panics listing every failed check.
pub fn run_all(make: &dyn Fn() -> Box<dyn VectorStore>) {
    let mut failures = Vec::new();
    for (name, check) in CHECKS {
        let store = make();
        let outcome = catch_unwind(AssertUnwindSafe(|| check(store.as_ref())));
        drop(store);
        match outcome {
            Ok(()) => eprintln!("conformance: {name} ... ok"),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                eprintln!("conformance: {name} ... FAILED: {message}");
                failures.push(format!("{name}: {message}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} conformance check(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- helpers ----------------------------------------------------------------------------------

fn ok<T>(result: Result<T, VectorError>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("{what}: unexpected error: {e}"),
    }
}

fn spec(name: &str, dimension: u32) -> KbSpec {
    KbSpec {
        name: name.into(),
        embed_model: "test-embedder".into(),
        dimension,
    }
}

fn doc(path: &str, tags: &[&str]) -> NewDocument {
    NewDocument {
        path: path.into(),
        content_hash: format!("hash-of-{path}"),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn chunk(ordinal: u32, text: &str, embedding: Vec<f32>) -> NewChunk {
    NewChunk {
        ordinal,
        text: text.into(),
        location: Location {
            line_start: ordinal * 10 + 1,
            line_end: ordinal * 10 + 9,
            page: 0,
            heading: format!("Section {ordinal}"),
        },
        embedding,
    }
}

/// Deterministic pseudo-random vectors (an LCG), so failures reproduce.
struct Vectors(u64);

impl Vectors {
    fn next(&mut self, dimension: usize) -> Vec<f32> {
        (0..dimension)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }
}

fn all() -> Filter {
    Filter::default()
}

fn glob(pattern: &str) -> Filter {
    Filter {
        path_glob: Some(pattern.into()),
        tags: Vec::new(),
    }
}

fn tags(tags: &[&str]) -> Filter {
    Filter {
        path_glob: None,
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn texts(hits: &[Hit]) -> Vec<String> {
    hits.iter().map(|h| h.text.clone()).collect()
}

fn paths(hits: &[Hit]) -> Vec<String> {
    let mut paths: Vec<String> = hits.iter().map(|h| h.path.clone()).collect();
    paths.sort();
    paths.dedup();
    paths
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    dot(&normalized(a), &normalized(b))
}

fn assert_dimension_mismatch<T: std::fmt::Debug>(
    result: Result<T, VectorError>,
    kb: &str,
    expected: u32,
    got: u32,
) {
    match result {
        Err(VectorError::DimensionMismatch {
            kb: k,
            expected: e,
            got: g,
        }) => assert_eq!((k.as_str(), e, g), (kb, expected, got)),
        other => panic!("expected DimensionMismatch {{ {kb}, {expected}, {got} }}, got {other:?}"),
    }
}

/// A knowledge base of dimension 8 with documents under several folders and tags, one chunk
/// per (path, text) with a pseudo-random embedding. Returns every chunk's (path, text, vector).
fn corpus(store: &dyn VectorStore, kb: &str) -> Vec<(String, String, Vec<f32>)> {
    ok(store.create_kb(&spec(kb, 8)), "create_kb");
    let layout: &[(&str, &[&str], usize)] = &[
        ("docs/intro.md", &["guide", "public"], 3),
        ("docs/install/linux.md", &["guide"], 4),
        ("docs/install/notes.txt", &["public"], 2),
        ("src/main.rs", &["code"], 5),
        ("src/lib/util.rs", &["code", "public"], 3),
        ("README.md", &[], 2),
    ];
    let mut vectors = Vectors(7);
    let mut all_chunks = Vec::new();
    for (path, tag_list, n) in layout {
        let chunks: Vec<NewChunk> = (0..*n)
            .map(|i| chunk(i as u32, &format!("{path} part {i}"), vectors.next(8)))
            .collect();
        for c in &chunks {
            all_chunks.push((path.to_string(), c.text.clone(), c.embedding.clone()));
        }
        ok(
            store.replace_document(kb, &doc(path, tag_list), &chunks),
            "replace_document",
        );
    }
    all_chunks
}

/// The texts of the `k` chunks nearest `query` among `chunks` admitted by `admit`, by cosine.
fn brute_force(
    chunks: &[(String, String, Vec<f32>)],
    query: &[f32],
    k: usize,
    admit: impl Fn(&str) -> bool,
) -> Vec<(String, f32)> {
    let mut scored: Vec<(String, f32)> = chunks
        .iter()
        .filter(|(path, _, _)| admit(path))
        .map(|(_, text, v)| (text.clone(), cosine(query, v)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    scored
}
