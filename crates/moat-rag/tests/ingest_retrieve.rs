//! Ingestion and retrieval end to end over the committed fixtures, with the in-memory store and
//! the hashed bag-of-words embedder from `common` (test doubles for logic tests; the real
//! stores and models are tested in their own crates).

mod common;

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use common::{fixture_tree, HashEmbedder, MemoryStore};
use moat_engine::Embedder;
use moat_rag::grounded::DEFAULT_NO_ANSWER_REPLY;
use moat_rag::{
    ground, ingest, ingest_bytes, retrieve, retrieve_counted, DocumentOutcome, ErrorKind, Grounded,
    GroundingConfig, IdentityReranker, IngestOptions, IngestReport, RagError, RetrieveParams,
    SearchMode,
};
use moat_vector::{Filter, KbSpec, VectorStore};

const DIMENSION: u32 = 128;

fn store_with_kb() -> MemoryStore {
    let store = MemoryStore::default();
    store
        .create_kb(&KbSpec {
            name: "kb".into(),
            embed_model: "hash-bow".into(),
            dimension: DIMENSION,
        })
        .expect("create");
    store
}

fn run(
    store: &MemoryStore,
    embedder: &HashEmbedder,
    paths: &[PathBuf],
    options: &IngestOptions,
) -> IngestReport {
    ingest(store, embedder, "kb", paths, options, &mut |_| {}).expect("ingest")
}

fn keys(store: &MemoryStore) -> Vec<String> {
    store
        .documents("kb")
        .expect("documents")
        .into_iter()
        .map(|d| d.path)
        .collect()
}

fn failure<'a>(report: &'a IngestReport, key: &str) -> &'a str {
    &report
        .failed
        .iter()
        .find(|f| f.path == key)
        .unwrap_or_else(|| panic!("no failure for {key}: {:?}", report.failed))
        .reason
}

#[test]
fn ingest_indexes_good_files_reports_bad_ones_and_follows_ignore_rules() {
    let (_temp, corpus, bad) = fixture_tree();
    let store = store_with_kb();
    let embedder = HashEmbedder::new(DIMENSION);
    let mut events = Vec::new();
    let report = ingest(
        &store,
        &embedder,
        "kb",
        &[corpus, bad],
        &IngestOptions::default(),
        &mut |p| {
            events.push((
                p.files_done,
                p.files_total,
                p.chunks_embedded,
                p.current.map(str::to_owned),
            ));
        },
    )
    .expect("ingest");

    assert_eq!(
        keys(&store),
        [
            "corpus/guide.md",
            "corpus/manual.pdf",
            "corpus/nested/deeper/info.md",
            "corpus/notes.txt",
            "corpus/page.html",
            "corpus/src/lib.rs",
        ]
    );
    assert_eq!(
        (
            report.added,
            report.updated,
            report.unchanged,
            report.removed
        ),
        (6, 0, 0, 0)
    );
    assert_eq!(report.failed.len(), 4, "{:?}", report.failed);
    assert!(failure(&report, "bad/binary.bin").contains("binary"));
    assert!(failure(&report, "bad/broken.pdf").contains("PDF"));
    assert!(failure(&report, "bad/empty.txt").contains("empty"));
    assert!(failure(&report, "bad/latin1.txt").contains("not UTF-8"));

    let total_chunks: u64 = store
        .documents("kb")
        .expect("docs")
        .iter()
        .map(|d| d.chunks)
        .sum();
    assert_eq!(report.chunks, total_chunks);
    assert_eq!(embedder.inputs.load(Ordering::SeqCst) as u64, total_chunks);
    // Progress: one event per file before it, batches, and a final one with everything done.
    let last = events.last().expect("events");
    assert_eq!(
        (last.0, last.1, last.2, last.3.clone()),
        (10, 10, total_chunks, None)
    );
    assert!(events
        .windows(2)
        .all(|pair| pair[0].0 <= pair[1].0 && pair[0].2 <= pair[1].2));

    // Structure reaches the chunks: headings, lines, pages; scripts are gone.
    let guide = store.chunks("kb", "corpus/guide.md");
    assert!(guide
        .iter()
        .any(|c| c.location.heading == "Moat guide > Installing"
            && c.text.contains("cargo build --release")));
    assert!(guide.iter().all(|c| c.location.line_start >= 1));
    let pdf = store.chunks("kb", "corpus/manual.pdf");
    assert_eq!(
        pdf.iter().map(|c| c.location.page).collect::<Vec<_>>(),
        [1, 2],
        "{pdf:?}"
    );
    assert!(pdf[1].text.contains("thirty days"));
    let html = store.chunks("kb", "corpus/page.html");
    assert!(html
        .iter()
        .all(|c| !c.text.contains("telemetry") && !c.text.contains("color")));
    assert!(html
        .iter()
        .any(|c| c.location.heading == "Networking > Firewalls"));
}

#[test]
fn reingest_skips_unchanged_files_updates_changed_ones_and_removes_deleted_ones() {
    let (_temp, corpus, bad) = fixture_tree();
    let store = store_with_kb();
    let options = IngestOptions::default();
    run(
        &store,
        &HashEmbedder::new(DIMENSION),
        &[corpus.clone(), bad.clone()],
        &options,
    );

    let embedder = HashEmbedder::new(DIMENSION);
    let again = run(&store, &embedder, std::slice::from_ref(&corpus), &options);
    assert_eq!(
        (again.added, again.updated, again.unchanged, again.removed),
        (0, 0, 6, 0)
    );
    assert_eq!(
        embedder.calls.load(Ordering::SeqCst),
        0,
        "unchanged files are not embedded"
    );

    std::fs::write(
        corpus.join("notes.txt"),
        "The penguins moved to the basement.",
    )
    .expect("write");
    std::fs::remove_file(corpus.join("src/lib.rs")).expect("remove");
    std::fs::write(corpus.join("new.md"), "# New\n\nA new page.").expect("write");
    let embedder = HashEmbedder::new(DIMENSION);
    let changed = run(&store, &embedder, std::slice::from_ref(&corpus), &options);
    assert_eq!(
        (
            changed.added,
            changed.updated,
            changed.unchanged,
            changed.removed
        ),
        (1, 1, 4, 1)
    );
    assert_eq!(
        embedder.calls.load(Ordering::SeqCst),
        2,
        "only the two written files are embedded"
    );
    assert!(!keys(&store).contains(&"corpus/src/lib.rs".to_owned()));
    assert!(store.chunks("kb", "corpus/notes.txt")[0]
        .text
        .contains("basement"));
    // Documents of the other root (none stored: all of bad/ failed) and single files are untouched.

    // Adding one file never removes anything, and its key is its name.
    std::fs::remove_file(corpus.join("new.md")).expect("remove");
    let single = run(&store, &embedder, &[corpus.join("guide.md")], &options);
    assert_eq!((single.added, single.removed), (1, 0));
    assert!(keys(&store).contains(&"corpus/new.md".to_owned()));
    assert!(keys(&store).contains(&"guide.md".to_owned()));

    // New tags rewrite a document even when its bytes are the same.
    let tagged = IngestOptions {
        tags: vec!["manual".into()],
        ..IngestOptions::default()
    };
    let retagged = run(&store, &embedder, &[corpus.join("guide.md")], &tagged);
    assert_eq!((retagged.updated, retagged.unchanged), (1, 0));
}

#[test]
fn files_newly_ignored_leave_the_knowledge_base() {
    let (_temp, corpus, _bad) = fixture_tree();
    let store = store_with_kb();
    let embedder = HashEmbedder::new(DIMENSION);
    run(
        &store,
        &embedder,
        std::slice::from_ref(&corpus),
        &IngestOptions::default(),
    );
    std::fs::write(corpus.join(".moatignore"), "*.log\nnotes.txt\n").expect("write");
    let report = run(&store, &embedder, &[corpus], &IngestOptions::default());
    assert_eq!(report.removed, 1);
    assert!(!keys(&store).contains(&"corpus/notes.txt".to_owned()));
}

#[test]
fn a_crash_mid_ingest_leaves_whole_documents_and_a_rerun_finishes_the_job() {
    let (_temp, corpus, _bad) = fixture_tree();
    let options = IngestOptions {
        batch_size: 1,
        ..IngestOptions::default()
    };

    let clean = store_with_kb();
    run(
        &clean,
        &HashEmbedder::new(DIMENSION),
        std::slice::from_ref(&corpus),
        &options,
    );

    let crashed = store_with_kb();
    let mut failing = HashEmbedder::new(DIMENSION);
    failing.fail_after = Some(5);
    let error = ingest(
        &crashed,
        &failing,
        "kb",
        std::slice::from_ref(&corpus),
        &options,
        &mut |_| {},
    )
    .expect_err("crash");
    assert!(matches!(error, RagError::Embed(_)), "{error}");
    assert_eq!(error.kind(), ErrorKind::Internal);
    // Whatever was written is whole: every stored document has all of its chunks.
    for document in crashed.documents("kb").expect("docs") {
        let expected = clean
            .documents("kb")
            .expect("docs")
            .into_iter()
            .find(|d| d.path == document.path)
            .expect("same doc");
        assert_eq!(document, expected);
    }
    assert!(crashed.documents("kb").expect("docs").len() < 6);

    let rerun = run(&crashed, &HashEmbedder::new(DIMENSION), &[corpus], &options);
    assert!(rerun.unchanged >= 1 && rerun.added >= 1, "{rerun:?}");
    assert_eq!(
        crashed.documents("kb").expect("docs"),
        clean.documents("kb").expect("docs")
    );
}

#[test]
fn batches_hold_at_most_batch_size_chunks() {
    let temp = tempfile::tempdir().expect("temp");
    let long: String = (0..400)
        .map(|i| format!("Sentence number {i} is here.\n\n"))
        .collect();
    std::fs::write(temp.path().join("long.txt"), long).expect("write");
    let store = store_with_kb();
    let embedder = HashEmbedder::new(DIMENSION);
    let options = IngestOptions {
        batch_size: 7,
        ..IngestOptions::default()
    };
    let report = run(&store, &embedder, &[temp.path().join("long.txt")], &options);
    assert!(report.chunks > 7, "{report:?}");
    assert_eq!(embedder.largest_batch.load(Ordering::SeqCst), 7);
    assert_eq!(
        embedder.calls.load(Ordering::SeqCst) as u64,
        report.chunks.div_ceil(7)
    );
}

#[test]
fn wrong_embedder_missing_kb_and_missing_paths_are_clear() {
    let store = store_with_kb();
    let error = ingest(
        &store,
        &HashEmbedder::new(DIMENSION + 1),
        "kb",
        &[],
        &IngestOptions::default(),
        &mut |_| {},
    )
    .expect_err("dimension");
    assert!(
        matches!(
            error,
            RagError::EmbedderMismatch {
                expected: DIMENSION,
                ..
            }
        ),
        "{error}"
    );
    let error = ingest(
        &store,
        &HashEmbedder::new(DIMENSION),
        "nope",
        &[],
        &IngestOptions::default(),
        &mut |_| {},
    )
    .expect_err("missing kb");
    assert_eq!(error.kind(), ErrorKind::NotFound);
    let bad_tags = IngestOptions {
        tags: vec![" ".into()],
        ..IngestOptions::default()
    };
    let error = ingest(
        &store,
        &HashEmbedder::new(DIMENSION),
        "kb",
        &[],
        &bad_tags,
        &mut |_| {},
    )
    .expect_err("tags");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    let report = run(
        &store,
        &HashEmbedder::new(DIMENSION),
        &[PathBuf::from("/definitely/not/here")],
        &IngestOptions::default(),
    );
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].reason.contains("cannot read"));
}

fn ingested() -> (tempfile::TempDir, MemoryStore, HashEmbedder) {
    let (temp, corpus, _bad) = fixture_tree();
    let store = store_with_kb();
    let embedder = HashEmbedder::new(DIMENSION);
    run(
        &store,
        &embedder,
        std::slice::from_ref(&corpus),
        &IngestOptions::default(),
    );
    let tagged = IngestOptions {
        tags: vec!["code".into()],
        ..IngestOptions::default()
    };
    std::fs::write(corpus.join("extra.rs"), "fn penguin_count() -> u32 { 3 }").expect("write");
    run(&store, &embedder, &[corpus.join("extra.rs")], &tagged);
    (temp, store, embedder)
}

#[test]
fn hybrid_retrieval_finds_the_passage_and_reports_both_ranks() {
    let (_temp, store, embedder) = ingested();
    let params = RetrieveParams {
        top_k: 3,
        ..RetrieveParams::default()
    };
    let hits = retrieve(
        &store,
        &embedder,
        "kb",
        "penguin colony herring",
        &params,
        &IdentityReranker,
    )
    .expect("retrieve");
    assert_eq!(hits[0].hit.path, "corpus/notes.txt");
    assert!(hits[0].hit.text.contains("herring"));
    assert_eq!((hits[0].vector_rank, hits[0].text_rank), (Some(1), Some(1)));
    assert!(hits.len() <= 3);
    assert!(hits.windows(2).all(|pair| pair[0].score >= pair[1].score));

    let port = retrieve(
        &store,
        &embedder,
        "kb",
        "which port does the server listen on",
        &params,
        &IdentityReranker,
    )
    .expect("retrieve");
    assert_eq!(port[0].hit.path, "corpus/page.html");

    for mode in [SearchMode::Vector, SearchMode::Text] {
        let params = RetrieveParams {
            mode,
            top_k: 1,
            ..RetrieveParams::default()
        };
        let found = retrieve_counted(
            &store,
            &embedder,
            "kb",
            "warranty repairs",
            &params,
            &IdentityReranker,
        )
        .expect("retrieve");
        // The query's embedding is what there is to charge; a text search embeds nothing.
        let embedded = match mode {
            SearchMode::Text => 0,
            _ => u64::from(embedder.count_tokens("warranty repairs").expect("count")),
        };
        assert_eq!(found.embed_tokens, embedded, "{mode:?}");
        let hits = found.hits;
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].hit.path, "corpus/manual.pdf", "{mode:?}");
        assert_eq!(hits[0].hit.location.page, 1);
        assert_eq!(hits[0].vector_rank.is_some(), mode == SearchMode::Vector);
        assert_eq!(hits[0].text_rank.is_some(), mode == SearchMode::Text);
    }
}

#[test]
fn filters_pass_through_to_both_searches() {
    let (_temp, store, embedder) = ingested();
    let by_glob = RetrieveParams {
        filter: Filter {
            path_glob: Some("corpus/src/**".into()),
            tags: Vec::new(),
        },
        ..RetrieveParams::default()
    };
    let hits = retrieve(
        &store,
        &embedder,
        "kb",
        "penguin numbers multiply",
        &by_glob,
        &IdentityReranker,
    )
    .expect("retrieve");
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| h.hit.path == "corpus/src/lib.rs"),
        "{hits:?}"
    );
    let by_tag = RetrieveParams {
        filter: Filter {
            path_glob: None,
            tags: vec!["code".into()],
        },
        ..RetrieveParams::default()
    };
    let hits = retrieve(
        &store,
        &embedder,
        "kb",
        "penguin",
        &by_tag,
        &IdentityReranker,
    )
    .expect("retrieve");
    assert_eq!(
        hits.iter().map(|h| h.hit.path.as_str()).collect::<Vec<_>>(),
        ["extra.rs"]
    );
}

#[test]
fn nothing_above_min_score_gives_the_no_answer_reply() {
    let (_temp, store, embedder) = ingested();
    let params = RetrieveParams {
        min_score: Some(0.99),
        ..RetrieveParams::default()
    };
    let hits = retrieve(
        &store,
        &embedder,
        "kb",
        "the penguin and the volcano",
        &params,
        &IdentityReranker,
    )
    .expect("retrieve");
    assert!(hits.is_empty(), "{hits:?}");
    let messages = vec![moat_engine::ChatMessage::text(
        "user",
        "the penguin and the volcano",
    )];
    assert_eq!(
        ground(&messages, &hits, &GroundingConfig::default()),
        Grounded::NoAnswer {
            reply: DEFAULT_NO_ANSWER_REPLY.into()
        }
    );

    let lenient = RetrieveParams {
        min_score: Some(0.1),
        top_k: 2,
        ..RetrieveParams::default()
    };
    let hits = retrieve(
        &store,
        &embedder,
        "kb",
        "penguin colony herring",
        &lenient,
        &IdentityReranker,
    )
    .expect("retrieve");
    let Grounded::Prompt { citations, .. } = ground(&messages, &hits, &GroundingConfig::default())
    else {
        panic!("expected a prompt");
    };
    assert_eq!(citations[0].path, "corpus/notes.txt");
    assert_eq!(citations[0].marker, 1);
}

#[test]
fn retrieval_errors_are_clear() {
    let (_temp, store, embedder) = ingested();
    let params = RetrieveParams::default();
    let missing =
        retrieve(&store, &embedder, "nope", "x", &params, &IdentityReranker).expect_err("missing");
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    let empty =
        retrieve(&store, &embedder, "kb", "  ", &params, &IdentityReranker).expect_err("empty");
    assert_eq!(empty.kind(), ErrorKind::InvalidInput);
    let wrong = retrieve(
        &store,
        &HashEmbedder::new(3),
        "kb",
        "x",
        &params,
        &IdentityReranker,
    )
    .expect_err("dimension");
    assert!(matches!(wrong, RagError::EmbedderMismatch { .. }));
}

#[test]
fn uploaded_bytes_are_deduped_and_replaced_like_files() {
    let store = store_with_kb();
    let embedder = HashEmbedder::new(DIMENSION);
    let options = IngestOptions::default();
    let upload = |bytes: &[u8]| {
        ingest_bytes(&store, &embedder, "kb", "uploads/faq.md", bytes, &options).expect("ingest")
    };
    assert_eq!(
        upload(b"# FAQ\n\nThe answer is 42."),
        DocumentOutcome::Added { chunks: 1 }
    );
    assert_eq!(
        upload(b"# FAQ\n\nThe answer is 42."),
        DocumentOutcome::Unchanged
    );
    assert_eq!(
        upload(b"# FAQ\n\nThe answer is 43."),
        DocumentOutcome::Updated { chunks: 1 }
    );
    let DocumentOutcome::Failed(reason) = upload(b"\x00\x01binary") else {
        panic!("binary bytes must fail");
    };
    assert!(reason.contains("binary"), "{reason}");
    assert!(store.chunks("kb", "uploads/faq.md")[0].text.contains("43"));
    assert_eq!(embedder.calls.load(Ordering::SeqCst), 2);
}
