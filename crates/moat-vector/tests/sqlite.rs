//! The embedded store: the conformance suite against a real SQLite file in a temp folder, then
//! what only this store has: the persisted HNSW index (loaded when current, rebuilt when
//! missing, damaged or stale, in the background while searches are answered exactly), the
//! exact/ANN agreement, crash safety with a real SIGKILL, and the schema guard.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use moat_vector::conformance;
use moat_vector::{
    Filter, KbSpec, Location, NewChunk, NewDocument, SqliteStore, VectorError, VectorStore,
};

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("moat.db"), &dir.join("vectors")).unwrap()
}

/// Deterministic pseudo-random vectors.
fn vectors(seed: u64, n: usize, dimension: usize) -> Vec<Vec<f32>> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            (0..dimension)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        })
        .collect()
}

fn chunks(prefix: &str, embeddings: Vec<Vec<f32>>) -> Vec<NewChunk> {
    embeddings
        .into_iter()
        .enumerate()
        .map(|(i, embedding)| NewChunk {
            ordinal: i as u32,
            text: format!("{prefix} chunk {i}"),
            location: Location::default(),
            embedding,
        })
        .collect()
}

fn document(path: &str, tags: &[&str]) -> NewDocument {
    NewDocument {
        path: path.into(),
        content_hash: format!("h-{path}"),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    }
}

fn create(store: &SqliteStore, name: &str, dimension: u32) {
    store
        .create_kb(&KbSpec {
            name: name.into(),
            embed_model: "m".into(),
            dimension,
        })
        .unwrap();
}

/// Waits for the store's background index builds (a deadline against a hang, not a timing
/// assertion: the builds here take milliseconds).
fn settle(store: &SqliteStore) {
    assert!(
        store.wait_for_index_builds(Duration::from_secs(120)),
        "a background index build never finished"
    );
}

fn top_texts(store: &SqliteStore, query: &[f32], k: usize) -> Vec<String> {
    store
        .search_vector("kb", query, k, &Filter::default())
        .unwrap()
        .into_iter()
        .map(|h| h.text)
        .collect()
}

#[test]
fn conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let counter = AtomicUsize::new(0);
    conformance::run_all(&|| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let root = dir.path().join(format!("store-{n}"));
        Box::new(SqliteStore::open(&root.join("moat.db"), &root.join("vectors")).unwrap())
    });
}

#[test]
fn store_is_send_and_sync_and_serves_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SqliteStore>();
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "kb", 8);
    store
        .replace_document("kb", &document("a", &[]), &chunks("a", vectors(1, 50, 8)))
        .unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let store = &store;
            scope.spawn(move || {
                for q in vectors(t, 10, 8) {
                    assert_eq!(top_texts(store, &q, 5).len(), 5);
                }
            });
        }
    });
    settle(&store);
    assert_eq!(store.index_stats().rebuilds, 1, "threads share one index");
}

#[test]
fn index_is_loaded_when_current_and_rebuilt_when_missing_or_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let query = vec![0.3f32; 16];
    let expected = {
        let store = open(dir.path());
        create(&store, "kb", 16);
        store
            .replace_document("kb", &document("a", &[]), &chunks("a", vectors(2, 200, 16)))
            .unwrap();
        let texts = top_texts(&store, &query, 10);
        settle(&store);
        assert_eq!(store.index_stats().rebuilds, 1);
        assert_eq!(
            top_texts(&store, &query, 10),
            texts,
            "ANN agrees with exact"
        );
        assert!(
            store.index_path("kb").unwrap().exists(),
            "the index was persisted"
        );
        texts
    };
    // A current file is loaded, not rebuilt.
    let store = open(dir.path());
    assert_eq!(top_texts(&store, &query, 10), expected);
    settle(&store);
    let stats = store.index_stats();
    assert_eq!((stats.loads, stats.rebuilds), (1, 0));
    let path = store.index_path("kb").unwrap();
    drop(store);

    // A missing file is rebuilt.
    std::fs::remove_file(&path).unwrap();
    let store = open(dir.path());
    assert_eq!(top_texts(&store, &query, 10), expected);
    settle(&store);
    assert_eq!(store.index_stats().rebuilds, 1);
    assert!(path.exists());
    drop(store);

    // A damaged file (one flipped byte, then a truncated one) is detected and rebuilt.
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let store = open(dir.path());
    assert_eq!(top_texts(&store, &query, 10), expected);
    settle(&store);
    assert_eq!(
        (store.index_stats().loads, store.index_stats().rebuilds),
        (0, 1)
    );
    drop(store);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 3)
        .unwrap();
    let store = open(dir.path());
    assert_eq!(top_texts(&store, &query, 10), expected);
    settle(&store);
    assert_eq!(store.index_stats().rebuilds, 1);
    assert_eq!(store.index_stats().last_write_error, None);
}

#[test]
fn index_is_rebuilt_when_the_database_changed_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let far = vec![-1.0f32; 8];
    {
        let store = open(dir.path());
        create(&store, "kb", 8);
        store
            .replace_document("kb", &document("a", &[]), &chunks("a", vectors(3, 100, 8)))
            .unwrap();
        top_texts(&store, &far, 1);
        settle(&store);
        assert_eq!(store.index_stats().rebuilds, 1);
    }
    {
        // Another process writes without searching: the file on disk is now stale.
        let store = open(dir.path());
        store
            .replace_document(
                "kb",
                &document("b", &[]),
                &chunks("late", vec![far.clone()]),
            )
            .unwrap();
        store
            .replace_document("kb", &document("a", &[]), &chunks("a2", vectors(4, 100, 8)))
            .unwrap();
        assert_eq!(store.index_stats(), Default::default());
    }
    let store = open(dir.path());
    let hits = store
        .search_vector("kb", &far, 101, &Filter::default())
        .unwrap();
    assert_eq!(hits[0].text, "late chunk 0");
    assert!(
        hits.iter().all(|h| !h.text.starts_with("a chunk")),
        "deleted chunks are gone"
    );
    assert_eq!(hits.len(), 101);
    settle(&store);
    let stats = store.index_stats();
    assert_eq!(
        (stats.loads, stats.rebuilds),
        (0, 1),
        "a stale file is not trusted"
    );
}

#[test]
fn writes_after_the_index_was_built_are_searched_until_it_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "kb", 8);
    store
        .replace_document(
            "kb",
            &document("base", &[]),
            &chunks("base", vectors(5, 300, 8)),
        )
        .unwrap();
    let target = vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    top_texts(&store, &target, 1);
    settle(&store);
    assert_eq!(store.index_stats().rebuilds, 1);

    // A new chunk is found at once (the tail is searched exactly), without a rebuild.
    store
        .replace_document(
            "kb",
            &document("new", &[]),
            &chunks("new", vec![target.clone()]),
        )
        .unwrap();
    assert_eq!(top_texts(&store, &target, 1), ["new chunk 0"]);
    // A deleted one disappears at once.
    store.remove_document("kb", "new").unwrap();
    assert_ne!(top_texts(&store, &target, 1), ["new chunk 0"]);
    assert_eq!(
        store
            .search_vector("kb", &target, 1000, &Filter::default())
            .unwrap()
            .len(),
        300
    );
    assert_eq!(store.index_stats().rebuilds, 1);

    // Deleting most of the indexed chunks makes the next search rebuild.
    store
        .replace_document(
            "kb",
            &document("base", &[]),
            &chunks("base2", vectors(6, 10, 8)),
        )
        .unwrap();
    assert_eq!(top_texts(&store, &target, 100).len(), 10);
    settle(&store);
    assert_eq!(store.index_stats().rebuilds, 2);

    // So does a tail longer than the limit (1,000 chunks for a small index).
    store
        .replace_document(
            "kb",
            &document("bulk", &[]),
            &chunks("bulk", vectors(7, 1100, 8)),
        )
        .unwrap();
    assert_eq!(top_texts(&store, &target, 5).len(), 5);
    settle(&store);
    assert_eq!(store.index_stats().rebuilds, 3);
}

#[test]
fn build_index_lets_the_next_process_load_instead_of_rebuilding() {
    let dir = tempfile::tempdir().unwrap();
    let query = vec![0.5f32; 8];
    let expected = {
        let store = open(dir.path());
        create(&store, "kb", 8);
        store
            .replace_document("kb", &document("a", &[]), &chunks("a", vectors(11, 300, 8)))
            .unwrap();
        store.build_index("kb").unwrap();
        store.build_index("kb").unwrap();
        assert_eq!(
            store.index_stats().rebuilds,
            1,
            "a current index is not rebuilt"
        );
        top_texts(&store, &query, 10)
    };
    let store = open(dir.path());
    assert_eq!(top_texts(&store, &query, 10), expected);
    settle(&store);
    let stats = store.index_stats();
    assert_eq!((stats.loads, stats.rebuilds), (1, 0));
    assert!(matches!(
        store.build_index("ghost"),
        Err(VectorError::NoSuchKb(_))
    ));
}

/// Recall of the ANN path against exact search on a set larger than the graph's `ef`, with and
/// without a filter that admits too many chunks for the exact shortcut.
#[test]
fn ann_search_agrees_with_exact_search() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "kb", 32);
    let all = vectors(8, 4000, 32);
    for (i, part) in all.chunks(500).enumerate() {
        let tags: &[&str] = if i < 6 { &["common"] } else { &[] };
        store
            .replace_document(
                "kb",
                &document(&format!("part{i}.md"), tags),
                &chunks(&format!("p{i}"), part.to_vec()),
            )
            .unwrap();
    }
    store.build_index("kb").unwrap();
    let filtered = Filter {
        path_glob: None,
        tags: vec!["common".into()],
    };
    for filter in [Filter::default(), filtered] {
        let mut found = 0;
        for query in vectors(9, 30, 32) {
            let ann = store.search_vector("kb", &query, 10, &filter).unwrap();
            let exact = store.search_exact("kb", &query, 10, &filter).unwrap();
            assert_eq!(ann.len(), 10);
            assert_eq!(exact.len(), 10);
            let ann_ids: Vec<i64> = ann.iter().map(|h| h.chunk_id).collect();
            found += exact
                .iter()
                .filter(|h| ann_ids.contains(&h.chunk_id))
                .count();
            if !filter.tags.is_empty() {
                let admitted = [
                    "part0.md", "part1.md", "part2.md", "part3.md", "part4.md", "part5.md",
                ];
                assert!(ann.iter().all(|h| admitted.contains(&h.path.as_str())));
            }
        }
        let recall = found as f64 / 300.0;
        assert!(recall >= 0.9, "recall@10 {recall} with filter {filter:?}");
    }
    let stats = store.index_stats();
    assert_eq!(
        (stats.rebuilds, stats.exact_answers),
        (1, 0),
        "the graph answered"
    );
}

/// Regression (benchmarks of issue 4): a search used to rebuild a missing or stale index
/// inline, six minutes at 100k chunks. Now it answers exactly at once and the index is built
/// in the background. Builds are held here, so the test sees the stale state on any machine.
#[test]
fn a_missing_or_stale_index_answers_exactly_at_once_and_ann_after_the_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "kb", 16);
    let all = vectors(21, 3000, 16);
    for (i, part) in all.chunks(1000).enumerate() {
        store
            .replace_document(
                "kb",
                &document(&format!("part{i}"), &[]),
                &chunks(&format!("p{i}"), part.to_vec()),
            )
            .unwrap();
    }
    let queries = vectors(22, 20, 16);
    let ids =
        |hits: Vec<moat_vector::Hit>| hits.into_iter().map(|h| h.chunk_id).collect::<Vec<_>>();
    let exact = |query: &[f32]| {
        ids(store
            .search_exact("kb", query, 10, &Filter::default())
            .unwrap())
    };
    let search = |query: &[f32]| {
        ids(store
            .search_vector("kb", query, 10, &Filter::default())
            .unwrap())
    };

    // No index: every answer is the exact one, and nothing was built while answering.
    store.hold_index_builds(true);
    for query in &queries {
        assert_eq!(search(query), exact(query));
    }
    let stats = store.index_stats();
    assert_eq!((stats.rebuilds, stats.exact_answers), (0, 20));

    // Released, the build finishes and swaps in; later searches use the graph.
    store.hold_index_builds(false);
    settle(&store);
    assert_eq!(store.index_stats().rebuilds, 1);
    let mut found = 0;
    for query in &queries {
        let expected = exact(query);
        found += search(query)
            .iter()
            .filter(|id| expected.contains(id))
            .count();
    }
    assert!(found >= 180, "ANN recall@10 {found}/200");
    assert_eq!(store.index_stats().exact_answers, 20, "the graph answered");

    // Stale: most indexed chunks replaced. Answers are exact (the new chunks, none of the
    // deleted ones) while the rebuild is held, then the rebuilt graph answers.
    store.hold_index_builds(true);
    let replacement = vectors(23, 1000, 16);
    for i in 0..2 {
        store
            .replace_document(
                "kb",
                &document(&format!("part{i}"), &[]),
                &chunks(&format!("n{i}"), replacement.clone()),
            )
            .unwrap();
    }
    for query in &queries {
        let hits = store
            .search_vector("kb", query, 10, &Filter::default())
            .unwrap();
        assert_eq!(ids(hits.clone()), exact(query));
        assert!(hits
            .iter()
            .all(|h| !h.text.starts_with("p0 ") && !h.text.starts_with("p1 ")));
    }
    assert_eq!(store.index_stats().exact_answers, 40);
    assert_eq!(store.index_stats().rebuilds, 1);
    store.hold_index_builds(false);
    settle(&store);
    assert_eq!(store.index_stats().rebuilds, 2);
    for query in &queries {
        search(query);
    }
    assert_eq!(store.index_stats().exact_answers, 40);
    assert!(store.index_path("kb").unwrap().exists());
}

/// A child process (this test binary) writes documents in a loop and reports each commit; the
/// parent kills it with SIGKILL mid-stream and checks that every reported document is whole.
#[test]
fn every_committed_write_survives_a_sigkill() {
    if let Ok(dir) = std::env::var("MOAT_VECTOR_CRASH_CHILD") {
        crash_child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        create(&store, "kb", 8);
        store
            .replace_document(
                "kb",
                &document("seed", &[]),
                &chunks("seed", vectors(1, 20, 8)),
            )
            .unwrap();
        top_texts(&store, &[1.0; 8], 1);
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "every_committed_write_survives_a_sigkill",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MOAT_VECTOR_CRASH_CHILD", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut committed = 0usize;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("committed ") {
            committed = n.parse().unwrap();
            if committed >= 30 {
                child.kill().unwrap();
                break;
            }
        }
    }
    child.wait().unwrap();
    assert!(committed >= 30, "the child stopped early");

    let store = open(dir.path());
    let documents = store.documents("kb").unwrap();
    for i in 1..=committed {
        let doc = documents
            .iter()
            .find(|d| d.path == format!("doc{i}"))
            .unwrap_or_else(|| panic!("committed doc{i} is lost"));
        assert_eq!(doc.chunks, 12, "doc{i} is whole");
    }
    // A document the child had begun but not committed is either absent or whole, never partial.
    assert!(documents.iter().all(|d| d.chunks == 12 || d.path == "seed"));
    let total: u64 = documents.iter().map(|d| d.chunks).sum();
    let hits = store
        .search_vector("kb", &[1.0; 8], 10_000, &Filter::default())
        .unwrap();
    assert_eq!(hits.len() as u64, total, "the index agrees with SQLite");
    let text = store
        .search_text("kb", "doc1", 5, &Filter::default())
        .unwrap();
    assert!(!text.is_empty(), "the FTS table survived too");
}

fn crash_child(dir: &Path) {
    let store = open(dir);
    for i in 1.. {
        let name = format!("doc{i}");
        store
            .replace_document(
                "kb",
                &document(&name, &[]),
                &chunks(&name, vectors(i, 12, 8)),
            )
            .unwrap();
        println!("committed {i}");
        if i % 7 == 0 {
            // Searching now and then keeps index writes in the mix that the kill interrupts.
            top_texts(&store, &[1.0; 8], 3);
        }
    }
}

#[test]
fn hostile_database_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let not_sqlite = dir.path().join("junk.db");
    std::fs::write(
        &not_sqlite,
        b"this is not a database, just some text that goes on",
    )
    .unwrap();
    let error = SqliteStore::open(&not_sqlite, &dir.path().join("v"))
        .err()
        .unwrap();
    assert!(matches!(error, VectorError::Storage(_)), "{error:?}");
    assert!(error.to_string().contains("junk.db"), "{error}");

    let newer: PathBuf = dir.path().join("newer.db");
    {
        let conn = rusqlite::Connection::open(&newer).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let error = SqliteStore::open(&newer, &dir.path().join("v"))
        .err()
        .unwrap();
    assert!(error.to_string().contains("schema version 99"), "{error}");

    let foreign = dir.path().join("foreign.db");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE chunks (x)").unwrap();
    }
    let error = SqliteStore::open(&foreign, &dir.path().join("v"))
        .err()
        .unwrap();
    assert!(
        error.to_string().contains("not made by this store"),
        "{error}"
    );

    // A fresh database records its schema version.
    let fresh = dir.path().join("fresh.db");
    drop(SqliteStore::open(&fresh, &dir.path().join("v")).unwrap());
    let conn = rusqlite::Connection::open(&fresh).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!((version, mode.as_str()), (1, "wal"));
}

#[test]
fn an_unwritable_index_folder_does_not_fail_searches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "kb", 4);
    store
        .replace_document("kb", &document("a", &[]), &chunks("a", vectors(1, 10, 4)))
        .unwrap();
    // Replace the index folder with a file: the index cannot be written, searches still work.
    let index_dir = dir.path().join("vectors");
    std::fs::remove_dir_all(&index_dir).unwrap();
    std::fs::write(&index_dir, b"not a folder").unwrap();
    assert_eq!(top_texts(&store, &[1.0; 4], 3).len(), 3);
    settle(&store);
    assert_eq!(top_texts(&store, &[1.0; 4], 3).len(), 3);
    assert!(store.index_stats().last_write_error.is_some());
}

/// Regression (benchmarks of issue 4): keyword search spent most of a hybrid query scoring
/// every chunk that held "the" or "in". Words in half or more of the chunks (which FTS5's BM25
/// weighs at almost zero) are left out of the query when other words remain, without changing
/// the ranking or the scores of the chunks the other words match.
#[test]
fn keyword_search_leaves_out_words_in_half_the_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    create(&store, "kb", 4);
    let texts = [
        "the rust compiler checks the borrow rules",
        "the rust book explains borrow and borrow again",
        "the rust toolchain ships cargo",
        "the rust standard library",
        "the rust reference in detail",
        "the rust nomicon",
        "the weather is nice",
        "the cat sat on the mat",
        "the end",
        "a borrow checker story without the language name",
        "cargo builds crates",
        "crates are packages",
    ];
    let chunks: Vec<NewChunk> = texts
        .iter()
        .zip(vectors(31, texts.len(), 4))
        .enumerate()
        .map(|(i, (text, embedding))| NewChunk {
            ordinal: i as u32,
            text: (*text).into(),
            location: Location::default(),
            embedding,
        })
        .collect();
    store
        .replace_document("kb", &document("a", &[]), &chunks)
        .unwrap();
    let search = |query: &str| {
        store
            .search_text("kb", query, 10, &Filter::default())
            .unwrap()
            .into_iter()
            .map(|h| (h.text, h.score))
            .collect::<Vec<_>>()
    };
    let borrow = search("borrow");
    assert_eq!(borrow.len(), 3);
    // "the" is in 10 of 12 chunks, "rust" in 6, "how" and "does" in none: the same ranking and
    // scores as "borrow" alone, and no chunk that only matches "the" or "rust".
    assert_eq!(search("How does the Rust borrow?"), borrow);
    // With nothing else left, such words are searched as typed.
    assert_eq!(search("rust").len(), 6);
    assert_eq!(search("the").len(), 10);
    // A word in fewer than half of the chunks is kept and counts.
    let cat = search("the cat borrow");
    assert_eq!(cat.len(), 4);
    assert!(cat.iter().any(|(text, _)| text.contains("cat")));
    // A stop word in fewer than half of the chunks (1 of 12) is kept and counts.
    let weather = search("borrow is");
    assert_eq!(weather.len(), 4);
    assert!(weather
        .iter()
        .any(|(text, _)| text == "the weather is nice"));
}

#[test]
fn stores_opened_on_a_new_file_at_once_all_migrate_it_once() {
    // Several processes started together on one MOAT_HOME each open and migrate the new file.
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let start = std::sync::Barrier::new(6);
        let ids: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..6)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        let db = dir.path().join("moat.db");
                        SqliteStore::open(&db, &dir.path().join("vectors")).map(|_| {
                            let conn = rusqlite::Connection::open(&db).unwrap();
                            conn.query_row(
                                "SELECT value FROM meta WHERE key = 'store_id'",
                                [],
                                |r| r.get::<_, String>(0),
                            )
                            .unwrap()
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| handle.join().unwrap().unwrap())
                .collect()
        });
        assert!(ids.iter().all(|id| id == &ids[0]), "one store id: {ids:?}");
    }
}
