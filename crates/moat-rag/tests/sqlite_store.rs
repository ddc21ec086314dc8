//! Ingestion and retrieval against the real embedded store (`moat_vector::SqliteStore`: SQLite
//! with FTS5 and the HNSW index), including a process killed with SIGKILL halfway through an
//! ingest. The embedder is still the hashed bag-of-words test double from `common`: these tests
//! check this crate's use of the store, not a model.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{fixture_tree, HashEmbedder};
use moat_rag::{ingest, retrieve, IdentityReranker, IngestOptions, IngestReport, RetrieveParams};
use moat_vector::{DocumentInfo, KbSpec, SqliteStore, VectorStore};

const DIMENSION: u32 = 128;
/// Set in the child process of the kill test: the database it ingests into.
const CHILD_DB: &str = "MOAT_RAG_TEST_CHILD_DB";
const CHILD_CORPUS: &str = "MOAT_RAG_TEST_CHILD_CORPUS";

fn open(folder: &Path) -> SqliteStore {
    SqliteStore::open(&folder.join("moat.db"), &folder.join("vectors")).expect("open store")
}

fn open_with_kb(folder: &Path) -> SqliteStore {
    let store = open(folder);
    store
        .create_kb(&KbSpec {
            name: "kb".into(),
            embed_model: "hash-bow".into(),
            dimension: DIMENSION,
        })
        .expect("create");
    store
}

fn options() -> IngestOptions {
    IngestOptions {
        batch_size: 1,
        ..IngestOptions::default()
    }
}

fn run(store: &SqliteStore, paths: &[PathBuf]) -> IngestReport {
    let embedder = HashEmbedder::new(DIMENSION);
    ingest(store, &embedder, "kb", paths, &options(), &mut |_| {}).expect("ingest")
}

#[test]
fn ingest_and_hybrid_retrieval_work_on_the_sqlite_store() {
    let (temp, corpus, bad) = fixture_tree();
    let store = open_with_kb(&temp.path().join("data"));
    let report = run(&store, &[corpus.clone(), bad]);
    assert_eq!(report.added, 6, "{report:?}");
    assert_eq!(report.failed.len(), 4, "{report:?}");
    let again = run(&store, std::slice::from_ref(&corpus));
    assert_eq!((again.unchanged, again.added, again.updated), (6, 0, 0));

    let embedder = HashEmbedder::new(DIMENSION);
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
    assert_eq!((hits[0].vector_rank, hits[0].text_rank), (Some(1), Some(1)));

    std::fs::remove_file(corpus.join("notes.txt")).expect("remove");
    let removed = run(&store, &[corpus]);
    assert_eq!(removed.removed, 1);
    let hits = retrieve(
        &store,
        &embedder,
        "kb",
        "penguin herring",
        &params,
        &IdentityReranker,
    )
    .expect("retrieve");
    assert!(
        hits.iter().all(|h| h.hit.path != "corpus/notes.txt"),
        "{hits:?}"
    );
}

/// Many small files, so that an ingest takes long enough to be killed halfway.
fn write_corpus(root: &Path) {
    std::fs::create_dir_all(root).expect("mkdir");
    for file in 0..40 {
        let mut text = format!("# File {file}\n\n");
        for paragraph in 0..4 {
            text.push_str(&format!(
                "Paragraph {paragraph} of file {file} talks about topic{} and topic{}.\n\n",
                file * 7 + paragraph,
                file + paragraph
            ));
        }
        std::fs::write(root.join(format!("doc{file:02}.md")), text).expect("write");
    }
}

/// The child side of the kill test: ingests slowly until the parent kills it. Ignored in normal
/// runs; the parent starts it with `--ignored` and the variables set.
#[test]
#[ignore = "the child process of kill_9_mid_ingest_leaves_whole_documents_and_a_rerun_finishes_the_job"]
fn child_ingest_until_killed() {
    let (Some(db), Some(corpus)) = (std::env::var_os(CHILD_DB), std::env::var_os(CHILD_CORPUS))
    else {
        return;
    };
    let store = open(Path::new(&db));
    let mut embedder = HashEmbedder::new(DIMENSION);
    embedder.delay = Some(Duration::from_millis(25));
    ingest(
        &store,
        &embedder,
        "kb",
        &[PathBuf::from(corpus)],
        &options(),
        &mut |_| {},
    )
    .expect("ingest");
}

fn documents(store: &SqliteStore) -> Vec<DocumentInfo> {
    store.documents("kb").expect("documents")
}

#[test]
fn kill_9_mid_ingest_leaves_whole_documents_and_a_rerun_finishes_the_job() {
    let temp = tempfile::tempdir().expect("temp");
    let corpus = temp.path().join("corpus");
    write_corpus(&corpus);

    let clean = open_with_kb(&temp.path().join("clean"));
    run(&clean, std::slice::from_ref(&corpus));
    let expected = documents(&clean);
    assert_eq!(expected.len(), 40);

    let killed_folder = temp.path().join("killed");
    let killed = open_with_kb(&killed_folder);
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "child_ingest_until_killed",
            "--exact",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &killed_folder)
        .env(CHILD_CORPUS, &corpus)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn the child");
    // Wait until the child has written a few documents (or finished), then SIGKILL it. The
    // loop is bounded by polls, not by time measurements.
    for _ in 0..3000 {
        if documents(&killed).len() >= 5 || child.try_wait().expect("try_wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().ok();
    child.wait().expect("wait");

    // Whatever the kill interrupted, every stored document is whole and identical to the clean
    // ingest's, chunks and hash included.
    let partial = documents(&killed);
    assert!(!partial.is_empty(), "the child wrote nothing");
    eprintln!(
        "the child was killed after writing {} of 40 documents",
        partial.len()
    );
    for document in &partial {
        assert!(expected.contains(document), "{document:?} is not whole");
    }
    drop(killed);

    // Running the same ingest again finishes the job.
    let reopened = open(&killed_folder);
    let report = run(&reopened, &[corpus]);
    assert_eq!(report.unchanged, partial.len(), "{report:?}");
    assert_eq!(report.added, 40 - partial.len());
    assert_eq!(documents(&reopened), expected);
}
