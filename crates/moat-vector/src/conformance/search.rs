//! Conformance checks of search: exact results on small sets, cosine scores, filters by path
//! and tag, text search, bounds on k, Unicode, and isolation between knowledge bases.

// A test suite: a failed expectation is a panic with a message, by design.
#![allow(clippy::unwrap_used)]

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) fn vector_search_exact(store: &dyn VectorStore) {
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

pub(super) fn scores_are_cosine(store: &dyn VectorStore) {
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

pub(super) fn zero_vectors_score_zero(store: &dyn VectorStore) {
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

pub(super) fn path_glob_filter(store: &dyn VectorStore) {
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

pub(super) fn tag_filter(store: &dyn VectorStore) {
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

pub(super) fn selective_filter_returns_k(store: &dyn VectorStore) {
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

pub(super) fn text_search_ranks(store: &dyn VectorStore) {
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

pub(super) fn hostile_text_queries(store: &dyn VectorStore) {
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

pub(super) fn k_bounds(store: &dyn VectorStore) {
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

pub(super) fn unicode_round_trip(store: &dyn VectorStore) {
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

pub(super) fn kbs_isolated(store: &dyn VectorStore) {
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
