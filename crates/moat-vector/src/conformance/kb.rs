//! Conformance checks of knowledge bases and documents: lifecycle, errors, listing, replacing
//! and removing documents, dimensions and non-finite vectors.

// A test suite: a failed expectation is a panic with a message, by design.
#![allow(clippy::unwrap_used)]

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn kb_lifecycle(store: &dyn VectorStore) {
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

pub(super) fn kb_errors(store: &dyn VectorStore) {
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

pub(super) fn missing_kb_everywhere(store: &dyn VectorStore) {
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

pub(super) fn documents_listed(store: &dyn VectorStore) {
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

pub(super) fn replace_swaps_chunks(store: &dyn VectorStore) {
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

pub(super) fn failed_replace_keeps_old(store: &dyn VectorStore) {
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

pub(super) fn remove_document(store: &dyn VectorStore) {
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

pub(super) fn dimension_mismatch(store: &dyn VectorStore) {
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

pub(super) fn non_finite_rejected(store: &dyn VectorStore) {
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
