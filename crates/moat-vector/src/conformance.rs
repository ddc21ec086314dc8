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

// ---- checks -----------------------------------------------------------------------------------

fn kb_lifecycle(store: &dyn VectorStore) {
    assert!(ok(store.list_kbs(), "list_kbs on an empty store").is_empty());
    let info = ok(store.create_kb(&spec("notes", 4)), "create_kb");
    assert_eq!(
        (
            info.name.as_str(),
            info.embed_model.as_str(),
            info.dimension
        ),
        ("notes", "test-embedder", 4)
    );
    assert_eq!((info.documents, info.chunks), (0, 0));
    ok(store.create_kb(&spec("a-first.kb_2", 3)), "create_kb");
    let got = ok(store.kb("notes"), "kb");
    assert_eq!((got.name.as_str(), got.dimension), ("notes", 4));
    assert_eq!(got.created_at, info.created_at);
    let names: Vec<String> = ok(store.list_kbs(), "list_kbs")
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(
        names,
        ["a-first.kb_2", "notes"],
        "list_kbs is sorted by name"
    );
    ok(store.delete_kb("notes"), "delete_kb");
    assert!(matches!(store.kb("notes"), Err(VectorError::NoSuchKb(n)) if n == "notes"));
    assert_eq!(ok(store.list_kbs(), "list_kbs").len(), 1);
    // The name is free again, and the new knowledge base starts empty.
    ok(store.create_kb(&spec("notes", 2)), "create_kb again");
    assert_eq!(ok(store.kb("notes"), "kb").dimension, 2);
    assert!(ok(store.documents("notes"), "documents").is_empty());
}

fn kb_errors(store: &dyn VectorStore) {
    ok(store.create_kb(&spec("taken", 4)), "create_kb");
    assert!(
        matches!(store.create_kb(&spec("taken", 8)), Err(VectorError::KbExists(n)) if n == "taken")
    );
    assert_eq!(
        ok(store.kb("taken"), "kb").dimension,
        4,
        "the duplicate changed nothing"
    );
    let long = "x".repeat(65);
    for bad in [
        "",
        "a b",
        ".hidden",
        "-dash",
        "a/b",
        "../x",
        "é",
        long.as_str(),
    ] {
        assert!(
            matches!(
                store.create_kb(&spec(bad, 4)),
                Err(VectorError::InvalidName(_))
            ),
            "name {bad:?} must be rejected"
        );
        assert!(
            matches!(store.kb(bad), Err(VectorError::InvalidName(_))),
            "lookup of {bad:?} must say the name is invalid"
        );
    }
    assert!(matches!(
        store.create_kb(&spec("zero", 0)),
        Err(VectorError::Invalid(_))
    ));
    assert!(matches!(
        store.delete_kb("nope"),
        Err(VectorError::NoSuchKb(_))
    ));
    assert_eq!(ok(store.list_kbs(), "list_kbs").len(), 1);
}

fn missing_kb_everywhere(store: &dyn VectorStore) {
    let missing = |r: Result<(), VectorError>, what: &str| {
        assert!(
            matches!(r, Err(VectorError::NoSuchKb(ref n)) if n == "ghost"),
            "{what}: expected NoSuchKb, got {r:?}"
        );
    };
    missing(store.kb("ghost").map(|_| ()), "kb");
    missing(store.documents("ghost").map(|_| ()), "documents");
    missing(
        store.replace_document("ghost", &doc("a", &[]), &[chunk(0, "x", vec![1.0])]),
        "replace_document",
    );
    missing(
        store.remove_document("ghost", "a").map(|_| ()),
        "remove_document",
    );
    missing(
        store.search_vector("ghost", &[1.0], 3, &all()).map(|_| ()),
        "search_vector",
    );
    missing(
        store.search_text("ghost", "x", 3, &all()).map(|_| ()),
        "search_text",
    );
}

fn documents_listed(store: &dyn VectorStore) {
    corpus(store, "kb");
    let documents = ok(store.documents("kb"), "documents");
    let listed: Vec<(&str, u64)> = documents
        .iter()
        .map(|d| (d.path.as_str(), d.chunks))
        .collect();
    assert_eq!(
        listed,
        [
            ("README.md", 2),
            ("docs/install/linux.md", 4),
            ("docs/install/notes.txt", 2),
            ("docs/intro.md", 3),
            ("src/lib/util.rs", 3),
            ("src/main.rs", 5),
        ],
        "documents are listed by path with their chunk counts"
    );
    let intro = documents
        .iter()
        .find(|d| d.path == "docs/intro.md")
        .unwrap();
    assert_eq!(intro.tags, ["guide", "public"]);
    assert_eq!(intro.content_hash, "hash-of-docs/intro.md");
    let info = ok(store.kb("kb"), "kb");
    assert_eq!((info.documents, info.chunks), (6, 19));
    // Tags are kept sorted and without duplicates; a document may have no chunks.
    ok(
        store.replace_document("kb", &doc("empty.md", &["z", "a", "z"]), &[]),
        "replace_document without chunks",
    );
    let empty = ok(store.documents("kb"), "documents")
        .into_iter()
        .find(|d| d.path == "empty.md")
        .unwrap();
    assert_eq!(
        empty,
        DocumentInfo {
            path: "empty.md".into(),
            content_hash: "hash-of-empty.md".into(),
            chunks: 0,
            tags: vec!["a".into(), "z".into()],
        }
    );
}

fn replace_swaps_chunks(store: &dyn VectorStore) {
    ok(store.create_kb(&spec("kb", 4)), "create_kb");
    let old = [
        chunk(0, "alpha bravo", vec![1.0, 0.0, 0.0, 0.0]),
        chunk(1, "alpha charlie", vec![0.0, 1.0, 0.0, 0.0]),
        chunk(2, "alpha delta", vec![0.0, 0.0, 1.0, 0.0]),
    ];
    ok(
        store.replace_document("kb", &doc("a.md", &["old"]), &old),
        "write",
    );
    ok(
        store.replace_document(
            "kb",
            &doc("b.md", &[]),
            &[chunk(0, "unrelated", vec![0.0, 0.0, 0.0, 1.0])],
        ),
        "write b",
    );
    assert_eq!(
        ok(store.search_text("kb", "alpha", 10, &all()), "search").len(),
        3
    );
    let new = [
        chunk(0, "omega one", vec![1.0, 0.0, 0.0, 0.0]),
        chunk(1, "omega two", vec![0.0, 1.0, 0.0, 0.0]),
    ];
    let mut replacement = doc("a.md", &["new"]);
    replacement.content_hash = "second".into();
    ok(store.replace_document("kb", &replacement, &new), "replace");
    assert!(
        ok(store.search_text("kb", "alpha", 10, &all()), "search").is_empty(),
        "old chunks must be gone from text search"
    );
    assert_eq!(
        texts(&ok(store.search_text("kb", "omega", 10, &all()), "search")).len(),
        2
    );
    let nearest = ok(
        store.search_vector("kb", &[0.0, 0.0, 1.0, 0.0], 10, &all()),
        "search_vector",
    );
    let mut found = texts(&nearest);
    found.sort();
    assert_eq!(
        found,
        ["omega one", "omega two", "unrelated"],
        "old chunks must be gone from vector search"
    );
    let a = ok(store.documents("kb"), "documents")
        .into_iter()
        .find(|d| d.path == "a.md")
        .unwrap();
    assert_eq!((a.content_hash.as_str(), a.chunks), ("second", 2));
    assert_eq!(a.tags, ["new"]);
    assert_eq!(ok(store.kb("kb"), "kb").chunks, 3);
    assert!(
        ok(
            store.search_text("kb", "omega", 10, &tags(&["old"])),
            "search"
        )
        .is_empty(),
        "the old tags are gone"
    );
}

fn failed_replace_keeps_old(store: &dyn VectorStore) {
    ok(store.create_kb(&spec("kb", 3)), "create_kb");
    let old = [
        chunk(0, "keep me", vec![1.0, 0.0, 0.0]),
        chunk(1, "me too", vec![0.0, 1.0, 0.0]),
    ];
    ok(
        store.replace_document("kb", &doc("a.md", &[]), &old),
        "write",
    );
    let bad = [
        chunk(0, "new text", vec![1.0, 0.0, 0.0]),
        chunk(1, "short", vec![1.0, 0.0]),
    ];
    assert_dimension_mismatch(
        store.replace_document("kb", &doc("a.md", &[]), &bad),
        "kb",
        3,
        2,
    );
    let duplicate = [
        chunk(0, "x", vec![1.0, 0.0, 0.0]),
        chunk(0, "y", vec![0.0, 1.0, 0.0]),
    ];
    assert!(matches!(
        store.replace_document("kb", &doc("a.md", &[]), &duplicate),
        Err(VectorError::Invalid(_))
    ));
    let documents = ok(store.documents("kb"), "documents");
    assert_eq!(documents.len(), 1);
    assert_eq!(
        (documents[0].chunks, documents[0].content_hash.as_str()),
        (2, "hash-of-a.md")
    );
    let mut found = texts(&ok(
        store.search_vector("kb", &[1.0, 1.0, 0.0], 10, &all()),
        "search",
    ));
    found.sort();
    assert_eq!(found, ["keep me", "me too"]);
    assert!(ok(store.search_text("kb", "new", 10, &all()), "search").is_empty());
}

fn remove_document(store: &dyn VectorStore) {
    corpus(store, "kb");
    assert!(ok(store.remove_document("kb", "src/main.rs"), "remove"));
    assert!(!ok(
        store.remove_document("kb", "src/main.rs"),
        "remove again"
    ));
    assert!(!ok(
        store.remove_document("kb", "never/there.md"),
        "remove missing"
    ));
    assert!(ok(store.documents("kb"), "documents")
        .iter()
        .all(|d| d.path != "src/main.rs"));
    let every = ok(store.search_vector("kb", &[1.0; 8], 100, &all()), "search");
    assert_eq!(every.len(), 14);
    assert!(every.iter().all(|h| h.path != "src/main.rs"));
    assert!(ok(store.search_text("kb", "main", 100, &all()), "search")
        .iter()
        .all(|h| h.path != "src/main.rs"));
    assert_eq!(ok(store.kb("kb"), "kb").chunks, 14);
}

fn dimension_mismatch(store: &dyn VectorStore) {
    ok(store.create_kb(&spec("kb", 4)), "create_kb");
    assert_dimension_mismatch(
        store.replace_document("kb", &doc("a", &[]), &[chunk(0, "x", vec![1.0; 5])]),
        "kb",
        4,
        5,
    );
    assert_dimension_mismatch(
        store.replace_document("kb", &doc("a", &[]), &[chunk(0, "x", vec![])]),
        "kb",
        4,
        0,
    );
    assert_dimension_mismatch(store.search_vector("kb", &[1.0; 3], 5, &all()), "kb", 4, 3);
    assert_dimension_mismatch(store.search_vector("kb", &[], 5, &all()), "kb", 4, 0);
    // Checked even when the knowledge base is empty and even for k = 0.
    assert_dimension_mismatch(store.search_vector("kb", &[1.0; 8], 0, &all()), "kb", 4, 8);
    assert!(ok(store.documents("kb"), "documents").is_empty());
    let message = store
        .search_vector("kb", &[1.0; 3], 5, &all())
        .unwrap_err()
        .to_string();
    assert!(message.contains('3') && message.contains('4'), "{message}");
}

fn non_finite_rejected(store: &dyn VectorStore) {
    ok(store.create_kb(&spec("kb", 2)), "create_kb");
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        assert!(matches!(
            store.replace_document("kb", &doc("a", &[]), &[chunk(0, "x", vec![1.0, bad])]),
            Err(VectorError::Invalid(_))
        ));
        assert!(matches!(
            store.search_vector("kb", &[bad, 1.0], 3, &all()),
            Err(VectorError::Invalid(_))
        ));
    }
    assert!(ok(store.documents("kb"), "documents").is_empty());
}

fn vector_search_exact(store: &dyn VectorStore) {
    let chunks = corpus(store, "kb");
    let mut queries = Vectors(99);
    for _ in 0..10 {
        let query = queries.next(8);
        let expected = brute_force(&chunks, &query, 5, |_| true);
        let hits = ok(
            store.search_vector("kb", &query, 5, &all()),
            "search_vector",
        );
        assert_eq!(
            texts(&hits),
            expected.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>(),
            "the 5 nearest neighbours, best first"
        );
        for (hit, (_, score)) in hits.iter().zip(&expected) {
            assert!(
                (hit.score - score).abs() < 1e-3,
                "score {} vs cosine {score}",
                hit.score
            );
        }
    }
    // Hits carry the chunk's record.
    let (path, text, vector) = &chunks[4];
    let top = &ok(
        store.search_vector("kb", vector, 1, &all()),
        "search_vector",
    )[0];
    assert_eq!((&top.path, &top.text), (path, text));
    assert_eq!(top.ordinal, 1);
    assert_eq!(
        top.location,
        Location {
            line_start: 11,
            line_end: 19,
            page: 0,
            heading: "Section 1".into()
        }
    );
}

fn scores_are_cosine(store: &dyn VectorStore) {
    ok(store.create_kb(&spec("kb", 3)), "create_kb");
    let chunks = [
        chunk(0, "same direction", vec![3.0, 0.0, 0.0]),
        chunk(1, "orthogonal", vec![0.0, 0.5, 0.0]),
        chunk(2, "opposite", vec![-7.0, 0.0, 0.0]),
        chunk(3, "diagonal", vec![1.0, 1.0, 0.0]),
    ];
    ok(
        store.replace_document("kb", &doc("a", &[]), &chunks),
        "write",
    );
    let hits = ok(
        store.search_vector("kb", &[0.25, 0.0, 0.0], 4, &all()),
        "search",
    );
    let got: Vec<(String, f32)> = hits.iter().map(|h| (h.text.clone(), h.score)).collect();
    let expected = [
        ("same direction", 1.0),
        ("diagonal", std::f32::consts::FRAC_1_SQRT_2),
        ("orthogonal", 0.0),
        ("opposite", -1.0),
    ];
    assert_eq!(got.len(), 4, "{got:?}");
    for ((text, score), (want_text, want_score)) in got.iter().zip(expected) {
        assert_eq!(text, want_text, "{got:?}");
        assert!(
            (score - want_score).abs() < 1e-4,
            "{text}: {score} vs {want_score}"
        );
    }
}

fn zero_vectors_score_zero(store: &dyn VectorStore) {
    ok(store.create_kb(&spec("kb", 2)), "create_kb");
    let chunks = [
        chunk(0, "zero", vec![0.0, 0.0]),
        chunk(1, "unit", vec![1.0, 0.0]),
    ];
    ok(
        store.replace_document("kb", &doc("a", &[]), &chunks),
        "write",
    );
    let hits = ok(store.search_vector("kb", &[1.0, 0.0], 5, &all()), "search");
    let got: Vec<(String, f32)> = hits.iter().map(|h| (h.text.clone(), h.score)).collect();
    assert_eq!(got.len(), 2, "a zero vector is still a chunk: {got:?}");
    assert_eq!(got[0].0, "unit");
    assert!(
        (got[0].1 - 1.0).abs() < 1e-4 && got[1].1.abs() < 1e-4,
        "{got:?}"
    );
    let hits = ok(
        store.search_vector("kb", &[0.0, 0.0], 5, &all()),
        "zero query",
    );
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.score == 0.0), "{hits:?}");
}

fn path_glob_filter(store: &dyn VectorStore) {
    let chunks = corpus(store, "kb");
    let query = [0.5f32; 8];
    let cases: &[(&str, &[&str])] = &[
        ("docs/**/*.md", &["docs/install/linux.md", "docs/intro.md"]),
        ("docs/*.md", &["docs/intro.md"]),
        ("*.md", &["README.md"]),
        ("**/*.rs", &["src/lib/util.rs", "src/main.rs"]),
        ("src/**", &["src/lib/util.rs", "src/main.rs"]),
        ("docs/install/notes.t?t", &["docs/install/notes.txt"]),
        ("docs/install/notes.t?", &[]),
        ("README.md", &["README.md"]),
        ("readme.md", &[]),
        ("docs/(intro).md", &[]),
        ("nothing/**", &[]),
    ];
    for (pattern, want) in cases {
        let hits = ok(
            store.search_vector("kb", &query, 100, &glob(pattern)),
            "search_vector",
        );
        assert_eq!(paths(&hits), *want, "vector search, glob {pattern:?}");
        let n: usize = chunks
            .iter()
            .filter(|(p, _, _)| want.contains(&p.as_str()))
            .count();
        assert_eq!(hits.len(), n, "every admitted chunk, glob {pattern:?}");
        let hits = ok(
            store.search_text("kb", "part", 100, &glob(pattern)),
            "search_text",
        );
        assert_eq!(paths(&hits), *want, "text search, glob {pattern:?}");
    }
    // The filtered neighbours are the brute-force neighbours among the admitted paths.
    let expected = brute_force(&chunks, &query, 3, |p| {
        p.starts_with("docs/") && p.ends_with(".md")
    });
    let hits = ok(
        store.search_vector("kb", &query, 3, &glob("docs/**/*.md")),
        "search",
    );
    assert_eq!(
        texts(&hits),
        expected.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>()
    );
}

fn tag_filter(store: &dyn VectorStore) {
    corpus(store, "kb");
    let query = [0.5f32; 8];
    let cases: &[(&[&str], &[&str])] = &[
        (&["guide"], &["docs/install/linux.md", "docs/intro.md"]),
        (
            &["public"],
            &["docs/install/notes.txt", "docs/intro.md", "src/lib/util.rs"],
        ),
        (&["code", "public"], &["src/lib/util.rs"]),
        (
            &["public", "public"],
            &["docs/install/notes.txt", "docs/intro.md", "src/lib/util.rs"],
        ),
        (&["guide", "code"], &[]),
        (&["missing"], &[]),
    ];
    for (wanted_tags, want) in cases {
        let hits = ok(
            store.search_vector("kb", &query, 100, &tags(wanted_tags)),
            "search",
        );
        assert_eq!(paths(&hits), *want, "vector search, tags {wanted_tags:?}");
        let hits = ok(
            store.search_text("kb", "part", 100, &tags(wanted_tags)),
            "search",
        );
        assert_eq!(paths(&hits), *want, "text search, tags {wanted_tags:?}");
    }
    let both = Filter {
        path_glob: Some("docs/**".into()),
        tags: vec!["public".into()],
    };
    let hits = ok(store.search_vector("kb", &query, 100, &both), "search");
    assert_eq!(paths(&hits), ["docs/install/notes.txt", "docs/intro.md"]);
    let hits = ok(store.search_text("kb", "part", 100, &both), "search");
    assert_eq!(paths(&hits), ["docs/install/notes.txt", "docs/intro.md"]);
}

fn selective_filter_returns_k(store: &dyn VectorStore) {
    ok(store.create_kb(&spec("kb", 8)), "create_kb");
    let mut vectors = Vectors(3);
    // 300 chunks in a crowd near one direction, 6 elsewhere in a rare document.
    let crowd: Vec<NewChunk> = (0..300)
        .map(|i| {
            let mut v = vectors.next(8);
            v[0] += 20.0;
            chunk(i, &format!("crowd {i}"), v)
        })
        .collect();
    ok(
        store.replace_document("kb", &doc("crowd.md", &[]), &crowd),
        "write crowd",
    );
    let rare: Vec<NewChunk> = (0..6)
        .map(|i| {
            let mut v = vectors.next(8);
            v[0] -= 20.0;
            chunk(i, &format!("rare {i}"), v)
        })
        .collect();
    ok(
        store.replace_document("kb", &doc("rare.md", &["rare"]), &rare),
        "write rare",
    );
    let mut query = vec![0.0f32; 8];
    query[0] = 1.0;
    for filter in [glob("rare.md"), tags(&["rare"])] {
        let hits = ok(store.search_vector("kb", &query, 5, &filter), "search");
        assert_eq!(
            hits.len(),
            5,
            "k results exist, so k come back ({filter:?})"
        );
        assert!(hits.iter().all(|h| h.path == "rare.md"));
        let hits = ok(store.search_vector("kb", &query, 50, &filter), "search");
        assert_eq!(hits.len(), 6);
    }
}

fn text_search_ranks(store: &dyn VectorStore) {
    ok(store.create_kb(&spec("kb", 2)), "create_kb");
    let chunks = [
        chunk(0, "The weather today is sunny and warm.", vec![1.0, 0.0]),
        chunk(1, "Configure the reverse proxy with TLS certificates.", vec![0.0, 1.0]),
        chunk(2, "A proxy forwards requests; TLS protects them. The proxy configuration lives in proxy.toml.", vec![1.0, 1.0]),
        chunk(3, "Gardening tips for the spring.", vec![1.0, -1.0]),
    ];
    ok(
        store.replace_document("kb", &doc("a.md", &[]), &chunks),
        "write",
    );
    let hits = ok(store.search_text("kb", "proxy TLS", 10, &all()), "search");
    let got = texts(&hits);
    assert_eq!(got.len(), 2, "only chunks with a query word match: {got:?}");
    assert!(
        got[0].contains("proxy.toml"),
        "the chunk richest in the query words first: {got:?}"
    );
    assert!(hits[0].score >= hits[1].score);
    let hits = ok(store.search_text("kb", "gardening", 10, &all()), "search");
    assert_eq!(texts(&hits), [chunks[3].text.clone()]);
    // Case does not matter; a word found nowhere matches nothing.
    assert_eq!(
        ok(store.search_text("kb", "WEATHER", 10, &all()), "search").len(),
        1
    );
    assert!(ok(store.search_text("kb", "zeppelin", 10, &all()), "search").is_empty());
    // Words are ORed: one known word is enough.
    assert_eq!(
        ok(
            store.search_text("kb", "zeppelin spring", 10, &all()),
            "search"
        )
        .len(),
        1
    );
}

fn hostile_text_queries(store: &dyn VectorStore) {
    ok(store.create_kb(&spec("kb", 2)), "create_kb");
    let chunks = [
        chunk(0, "select from table where x AND y", vec![1.0, 0.0]),
        chunk(1, "col:value NEAR the star * and minus -x", vec![0.0, 1.0]),
    ];
    ok(
        store.replace_document("kb", &doc("a.md", &[]), &chunks),
        "write",
    );
    let long = "word ".repeat(10_000);
    let hostile = [
        "",
        " ",
        "\"",
        "\"\"",
        "\"unterminated",
        "AND",
        "OR",
        "NOT",
        "AND OR NOT",
        "a AND",
        "*",
        "x*",
        "-x",
        "--",
        ":",
        "col:value",
        "NEAR(a b)",
        "(",
        ")",
        "^",
        "{a b}",
        "'",
        "';DROP TABLE chunks;--",
        "\\",
        "%",
        "_",
        "a & b | !c",
        "<->",
        "!!",
        "é",
        "東京",
        "🦀",
        "\u{0}",
        "\u{202e}",
        long.as_str(),
    ];
    for query in hostile {
        ok(
            store.search_text("kb", query, 5, &all()),
            &format!("search_text({query:.40?})"),
        );
    }
    assert!(ok(store.search_text("kb", "", 5, &all()), "empty").is_empty());
    assert!(ok(
        store.search_text("kb", "* - : \"", 5, &all()),
        "only operators"
    )
    .is_empty());
    let hits = ok(
        store.search_text("kb", "\"minus\" AND -x*", 5, &all()),
        "search",
    );
    assert!(
        texts(&hits).contains(&chunks[1].text),
        "the words still match: {hits:?}"
    );
    assert_eq!(
        ok(store.documents("kb"), "documents").len(),
        1,
        "nothing was dropped"
    );
}

fn k_bounds(store: &dyn VectorStore) {
    let chunks = corpus(store, "kb");
    let every = ok(store.search_vector("kb", &[1.0; 8], 1000, &all()), "search");
    assert_eq!(every.len(), chunks.len());
    let scores: Vec<f32> = every.iter().map(|h| h.score).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );
    let mut ids: Vec<i64> = every.iter().map(|h| h.chunk_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), chunks.len(), "no duplicates");
    assert_eq!(
        ok(store.search_text("kb", "part", 1000, &all()), "search").len(),
        chunks.len()
    );
    assert!(ok(store.search_vector("kb", &[1.0; 8], 0, &all()), "k=0").is_empty());
    assert!(ok(store.search_text("kb", "part", 0, &all()), "k=0").is_empty());
    assert!(matches!(
        store.search_vector("kb", &[1.0; 8], usize::MAX, &all()),
        Err(VectorError::Invalid(_))
    ));
    ok(store.create_kb(&spec("empty", 8)), "create_kb");
    assert!(ok(
        store.search_vector("empty", &[1.0; 8], 10, &all()),
        "empty kb"
    )
    .is_empty());
    assert!(ok(store.search_text("empty", "part", 10, &all()), "empty kb").is_empty());
}

fn unicode_round_trip(store: &dyn VectorStore) {
    ok(store.create_kb(&spec("kb", 2)), "create_kb");
    let text = "naïve café — 東京 🦀 e\u{301} \u{202e}rtl\u{202c} tab\there\nnewline 'quote\" \\";
    let mut c = chunk(0, text, vec![1.0, 0.0]);
    c.location.heading = "Überschrift > 見出し 🧭".into();
    c.location.page = 3;
    let path = "dossiers/été/ファイル 🦀.md";
    let mut document = doc(path, &["étiquette", "タグ"]);
    document.content_hash =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into();
    ok(
        store.replace_document("kb", &document, &[c.clone()]),
        "write",
    );
    let hits = ok(store.search_vector("kb", &[1.0, 0.0], 1, &all()), "search");
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0].text.as_str(), hits[0].path.as_str()), (text, path));
    assert_eq!(hits[0].location, c.location);
    let documents = ok(store.documents("kb"), "documents");
    assert_eq!(documents[0].path, path);
    let mut want_tags = vec!["étiquette".to_string(), "タグ".to_string()];
    want_tags.sort();
    assert_eq!(documents[0].tags, want_tags);
    let filtered = ok(
        store.search_vector("kb", &[1.0, 0.0], 5, &glob("dossiers/été/*.md")),
        "glob",
    );
    assert_eq!(filtered.len(), 1, "a unicode glob matches");
    let filtered = ok(
        store.search_vector("kb", &[1.0, 0.0], 5, &tags(&["タグ"])),
        "tags",
    );
    assert_eq!(filtered.len(), 1, "a unicode tag matches");
    let hits = ok(store.search_text("kb", "newline", 5, &all()), "search_text");
    assert_eq!(texts(&hits), [text]);
    assert!(ok(store.remove_document("kb", path), "remove"));
}

fn kbs_isolated(store: &dyn VectorStore) {
    ok(store.create_kb(&spec("one", 2)), "create_kb");
    ok(store.create_kb(&spec("two", 3)), "create_kb");
    ok(
        store.replace_document(
            "one",
            &doc("a.md", &[]),
            &[chunk(0, "shared words", vec![1.0, 0.0])],
        ),
        "write",
    );
    ok(
        store.replace_document(
            "two",
            &doc("a.md", &[]),
            &[chunk(0, "shared words too", vec![1.0, 0.0, 0.0])],
        ),
        "write",
    );
    assert_eq!(
        texts(&ok(store.search_text("one", "shared", 10, &all()), "s")),
        ["shared words"]
    );
    assert_eq!(
        texts(&ok(store.search_text("two", "shared", 10, &all()), "s")),
        ["shared words too"]
    );
    assert!(ok(store.remove_document("one", "a.md"), "remove"));
    assert_eq!(ok(store.documents("two"), "documents").len(), 1);
    ok(store.delete_kb("two"), "delete_kb");
    assert_eq!(ok(store.kb("one"), "kb").documents, 0);
}
