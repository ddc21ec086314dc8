//! `moat embed` and `moat kb` as real processes, with the real all-MiniLM-L6-v2 pulled into a
//! temporary home from the test-models folder, over a copy of moat-rag's fixture corpus plus
//! its bad files (binary, broken PDF, empty, not UTF-8): per-file failures with reasons while
//! the rest goes in, incremental re-ingest, removal of deleted files, queries that find the
//! right document, removal, a kill -9 in the middle of an ingest, and the Postgres backend
//! (PGlite) for one round trip.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

const MINILM: &str = "all-minilm:l6-v2";

/// A home with all-MiniLM-L6-v2 pulled as `all-minilm:l6-v2`, or `None` without test models.
fn home_with_minilm() -> Option<TempHome> {
    let folder = test_model(models::MINILM)?;
    let home = TempHome::new();
    ok(
        home.path(),
        &["pull", "-q", folder.to_str().unwrap(), "--name", MINILM],
    );
    Some(home)
}

fn fixtures() -> PathBuf {
    moat_testkit::repo_root().join("crates/moat-rag/tests/fixtures")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `work/corpus`: the fixture corpus with the bad files mixed in.
fn corpus(work: &Path) -> PathBuf {
    let corpus = work.join("corpus");
    copy_tree(&fixtures().join("corpus"), &corpus);
    copy_tree(&fixtures().join("bad"), &corpus.join("bad"));
    corpus
}

fn add_json(home: &Path, args: &[&str]) -> Value {
    let mut all = vec!["kb", "add", "-q", "--json"];
    all.extend_from_slice(args);
    json(home, &all)
}

fn documents(home: &Path, kb: &str) -> Vec<(String, String, u64, Value)> {
    let show = json(home, &["kb", "show", kb, "--json"]);
    show["document_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_owned(),
                d["content_hash"].as_str().unwrap().to_owned(),
                d["chunks"].as_u64().unwrap(),
                d["tags"].clone(),
            )
        })
        .collect()
}

fn paths(home: &Path, kb: &str) -> Vec<String> {
    documents(home, kb).into_iter().map(|d| d.0).collect()
}

fn top_path(home: &Path, kb: &str, query: &str, mode: &str) -> String {
    let hits = json(home, &["kb", "query", kb, query, "--json", "--mode", mode]);
    hits[0]["path"].as_str().unwrap().to_owned()
}

#[test]
fn kb_ingests_incrementally_reports_bad_files_and_answers_queries() {
    let Some(home) = home_with_minilm() else {
        return;
    };
    let home = home.path();
    let work = tempfile::tempdir().unwrap();
    let corpus = corpus(work.path());
    let corpus_arg = corpus.to_str().unwrap();

    let created = json(home, &["kb", "create", "docs", "--embed", MINILM, "--json"]);
    assert_eq!(created["embed_model"], MINILM);
    assert_eq!(created["dimension"], 384);
    let taken = fails(home, &["kb", "create", "docs", "--embed", MINILM], 1);
    assert!(taken.contains("already exists"), "{taken}");

    // First ingest: the good files go in, each bad file is reported with its reason.
    let report = add_json(home, &["docs", corpus_arg]);
    assert_eq!(report["added"], 5, "{report}");
    assert_eq!(report["updated"], 0);
    // The ingest ended by writing the search index, so the next process loads it.
    let indexes: Vec<_> = std::fs::read_dir(home.join("vectors"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".hnsw"))
        .collect();
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    let failed: Vec<(String, String)> = report["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let failed_paths: Vec<&str> = failed.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        failed_paths,
        [
            "corpus/bad/binary.bin",
            "corpus/bad/broken.pdf",
            "corpus/bad/empty.txt",
            "corpus/bad/latin1.txt"
        ],
        "{report}"
    );
    assert!(failed.iter().all(|f| !f.1.is_empty()));
    let first_chunks = report["chunks"].as_u64().unwrap();
    assert!(first_chunks >= 5, "{report}");
    let stored = paths(home, "docs");
    assert!(
        stored.contains(&"corpus/notes.txt".to_owned()),
        "{stored:?}"
    );
    assert!(
        stored.contains(&"corpus/nested/deeper/info.md".to_owned()),
        "{stored:?}"
    );
    assert!(!stored.iter().any(|p| p.contains("hidden")), "{stored:?}");
    assert!(
        !stored.iter().any(|p| p.starts_with("corpus/bad/")),
        "{stored:?}"
    );

    // Per-file failures exit 0, unless --strict.
    let strict = run(home, &["kb", "add", "-q", "docs", corpus_arg, "--strict"]);
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));

    // Nothing changed: nothing is embedded again.
    let again = add_json(home, &["docs", corpus_arg]);
    assert_eq!(again["unchanged"], 5, "{again}");
    assert_eq!(again["added"], 0);
    assert_eq!(again["chunks"], 0);
    let before = documents(home, "docs");

    // One changed file: only it is embedded again.
    std::fs::write(
        corpus.join("notes.txt"),
        "Meeting notes: the quarterly budget review moved to Friday.\n\nThe penguin colony on the \
         roof needs more herring and sardines every winter.\n",
    )
    .unwrap();
    let changed = add_json(home, &["docs", corpus_arg]);
    assert_eq!(changed["updated"], 1, "{changed}");
    assert_eq!(changed["unchanged"], 4, "{changed}");
    let after = documents(home, "docs");
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old.0, new.0);
        assert_eq!(
            old.1 == new.1,
            old.0 != "corpus/notes.txt",
            "{old:?} {new:?}"
        );
    }

    // Queries find the document that holds the answer.
    assert_eq!(
        top_path(home, "docs", "what do the penguins eat?", "hybrid"),
        "corpus/notes.txt"
    );
    assert_eq!(
        top_path(
            home,
            "docs",
            "which network port does the server listen on",
            "vector"
        ),
        "corpus/page.html"
    );
    assert_eq!(
        top_path(home, "docs", "reciprocal rank fusion", "text"),
        "corpus/guide.md"
    );
    let filtered = json(
        home,
        &[
            "kb", "query", "docs", "penguins", "--json", "--path", "**/*.md",
        ],
    );
    assert!(filtered
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["path"].as_str().unwrap().ends_with(".md")));
    let human = ok(home, &["kb", "query", "docs", "penguin herring"]);
    assert!(human.starts_with("1. corpus/notes.txt"), "{human}");

    // A deleted file leaves the knowledge base when its folder is added again.
    std::fs::remove_file(corpus.join("page.html")).unwrap();
    let removed = add_json(home, &["docs", corpus_arg]);
    assert_eq!(removed["removed"], 1, "{removed}");
    assert!(!paths(home, "docs").contains(&"corpus/page.html".to_owned()));

    // Removing one document, then the whole knowledge base.
    ok(home, &["kb", "rm", "docs", "--document", "corpus/guide.md"]);
    assert!(!paths(home, "docs").contains(&"corpus/guide.md".to_owned()));
    let missing_doc = fails(home, &["kb", "rm", "docs", "--document", "nope.md"], 1);
    assert!(missing_doc.contains("no document"), "{missing_doc}");
    let listed = json(home, &["kb", "ls", "--json"]);
    assert_eq!(listed[0]["name"], "docs");
    ok(home, &["kb", "rm", "docs"]);
    assert_eq!(json(home, &["kb", "ls", "--json"]), Value::Array(vec![]));
    let gone = fails(home, &["kb", "query", "docs", "anything"], 1);
    assert!(gone.contains("does not exist"), "{gone}");
}

#[test]
fn kb_usage_errors_exit_2_and_bad_requests_exit_1() {
    let home = TempHome::new();
    fails(home.path(), &["kb", "create", "x"], 2);
    fails(home.path(), &["kb", "query", "x", "q", "--top-k", "0"], 2);
    fails(
        home.path(),
        &["kb", "query", "x", "q", "--mode", "fuzzy"],
        2,
    );
    let bad_name = fails(home.path(), &["kb", "create", "../x", "--embed", MINILM], 1);
    assert!(
        bad_name.contains("invalid knowledge base name"),
        "{bad_name}"
    );
    let no_model = fails(home.path(), &["kb", "create", "x", "--embed", "nope"], 1);
    assert!(no_model.contains("nope"), "{no_model}");
}

#[test]
fn embed_prints_one_normalised_vector_per_input() {
    let Some(home) = home_with_minilm() else {
        return;
    };
    let home = home.path();
    let out = ok(
        home,
        &[
            "embed",
            MINILM,
            "the cat sat on the mat",
            "a penguin eats herring",
        ],
    );
    let vectors: Vec<Vec<f64>> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(vectors.len(), 2);
    for v in &vectors {
        assert_eq!(v.len(), 384);
        let norm: f64 = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-3, "{norm}");
    }
    assert_ne!(vectors[0], vectors[1]);

    // The same texts on stdin give the same vectors.
    let mut child = moat(home)
        .args(["embed", MINILM])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"the cat sat on the mat\na penguin eats herring\n")
            .unwrap();
    }
    let piped = child.wait_with_output().unwrap();
    assert!(piped.status.success());
    let piped: Vec<Vec<f64>> = String::from_utf8(piped.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (a, b) in vectors.iter().zip(&piped) {
        let cos: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        assert!(cos > 0.9999, "{cos}");
    }

    let empty = fails(home, &["embed", MINILM, "fine", ""], 1);
    assert!(empty.contains("1"), "{empty}");
    let long = "word ".repeat(400);
    let too_long = fails(home, &["embed", MINILM, &long], 1);
    assert!(too_long.contains("256"), "{too_long}");
}

#[test]
fn a_relative_home_works_for_embedders_too() {
    let Some(folder) = test_model(models::MINILM) else {
        return;
    };
    let parent = TempHome::new();
    // `--home data`, relative to the working folder: the embedder's files are links into the
    // store, which must point at the blobs wherever the command runs from.
    let relative = |args: &[&str]| {
        let output = moat(Path::new("unused"))
            .env_remove("MOAT_HOME")
            .current_dir(parent.path())
            .args(["--home", "data"])
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        stdout(&output)
    };
    relative(&["pull", "-q", folder.to_str().unwrap(), "--name", MINILM]);
    let out = relative(&["embed", MINILM, "the cat sat on the mat"]);
    let vector: Vec<f64> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(vector.len(), 384);
}

#[test]
fn serve_refuses_an_alias_to_no_served_model_or_with_a_models_name() {
    let Some(gguf) = test_model(models::SMOLLM2) else {
        return;
    };
    let home = TempHome::new();
    let h = home.path();
    ok(
        h,
        &["pull", "-q", gguf.to_str().unwrap(), "--name", "smollm2"],
    );
    let config = h.join("moat.toml");
    for (toml, expected) in [
        (
            // A misspelt table is named in a warning, as is a cache without a gateway alias
            // to cache for; then the alias stops the start.
            "[cahce]\nttl_secs = 5\n[cache]\nttl_secs = 5\n[aliases.chat]\nmodel = \"smollm3\"\n",
            vec![
                "warning: moat.toml: [cahce] is not a table moat reads",
                "warning: moat.toml: [cache] applies to aliases with targets",
                "names the model 'smollm3', which this server does not serve",
            ],
        ),
        (
            "[aliases.\"smollm2:latest\"]\nmodel = \"smollm2\"\n",
            vec!["has the name of a model this server serves"],
        ),
    ] {
        std::fs::write(&config, toml).unwrap();
        // The check comes before the server listens; a server that starts anyway is killed.
        let mut child = moat(h)
            .args(["serve", "smollm2", "--port", "0", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
        }
        let output = child.wait_with_output().unwrap();
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{toml}: {err}");
        for expected in expected {
            assert!(err.contains(expected), "{toml}: {err}");
        }
    }
}

#[test]
fn a_chat_model_is_refused_as_an_embedder() {
    let Some(gguf) = test_model(models::SMOLLM2) else {
        return;
    };
    let home = TempHome::new();
    ok(
        home.path(),
        &["pull", "-q", gguf.to_str().unwrap(), "--name", "smollm2"],
    );
    let error = fails(home.path(), &["embed", "smollm2", "hello"], 1);
    assert!(error.contains("chat model"), "{error}");
    let error = fails(home.path(), &["kb", "create", "k", "--embed", "smollm2"], 1);
    assert!(error.contains("chat model"), "{error}");
}

/// 240 small distinct documents: enough work that a kill lands in the middle.
fn many_files(dir: &Path) -> PathBuf {
    let root = dir.join("many");
    std::fs::create_dir_all(&root).unwrap();
    let topics = [
        "volcanoes",
        "glaciers",
        "compilers",
        "orchids",
        "tides",
        "bridges",
        "lichens",
        "comets",
    ];
    for i in 0..240 {
        let topic = topics[i % topics.len()];
        let text = format!(
            "# Note {i} about {topic}\n\nThis is note number {i}. It describes {topic} in some \
             detail, with facts that only note {i} holds: item {i} weighs {} grams.\n\n\
             A second paragraph for note {i} keeps the chunker busy with more text about {topic}.\n",
            i * 7 + 3
        );
        std::fs::write(root.join(format!("note-{i:03}.md")), text).unwrap();
    }
    root
}

#[test]
fn a_kill_9_mid_ingest_then_the_same_command_equals_an_uninterrupted_ingest() {
    let Some(killed_home) = home_with_minilm() else {
        return;
    };
    let Some(clean_home) = home_with_minilm() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let folder = many_files(work.path());
    let folder_arg = folder.to_str().unwrap();
    for home in [killed_home.path(), clean_home.path()] {
        ok(home, &["kb", "create", "many", "--embed", MINILM]);
    }

    let mut child = moat(killed_home.path())
        .args(["kb", "add", "-q", "many", folder_arg])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once some documents are in but not all (polling the store from another process).
    let mut saw_partial = false;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        let count = json(killed_home.path(), &["kb", "show", "many", "--json"])["documents"]
            .as_u64()
            .unwrap();
        if (1..240).contains(&count) {
            saw_partial = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    if saw_partial {
        assert_eq!(status.code(), None, "the ingest should have been killed");
        let partial = documents(killed_home.path(), "many").len();
        assert!(partial < 240, "{partial}");
    } else {
        eprintln!("note: the ingest finished before it could be killed");
    }

    let resumed = add_json(killed_home.path(), &["many", folder_arg]);
    assert!(
        resumed["failed"].as_array().unwrap().is_empty(),
        "{resumed}"
    );
    let clean = add_json(clean_home.path(), &["many", folder_arg]);
    assert_eq!(clean["added"], 240, "{clean}");
    let killed_docs = documents(killed_home.path(), "many");
    assert_eq!(killed_docs.len(), 240);
    assert_eq!(killed_docs, documents(clean_home.path(), "many"));
    let killed_info = json(killed_home.path(), &["kb", "show", "many", "--json"]);
    let clean_info = json(clean_home.path(), &["kb", "show", "many", "--json"]);
    assert_eq!(killed_info["chunks"], clean_info["chunks"]);
    // Both answer a query the same way.
    let query = [
        "kb",
        "query",
        "many",
        "item 117 weighs",
        "--json",
        "--mode",
        "text",
    ];
    let a = json(killed_home.path(), &query);
    let b = json(clean_home.path(), &query);
    assert_eq!(a[0]["path"], "many/note-117.md");
    assert_eq!(a[0]["path"], b[0]["path"]);
}

#[test]
fn the_postgres_backend_round_trips_through_the_cli() {
    let Some(home) = home_with_minilm() else {
        return;
    };
    let pg = moat_testkit::pglite::PgLite::start();
    std::fs::write(
        home.path().join("moat.toml"),
        "[knowledge]\nbackend = \"postgres\"\n",
    )
    .unwrap();
    let with_pg = |args: &[&str]| {
        let output = moat(home.path())
            .env("MOAT_PG_URL", pg.url())
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "moat {args:?}: {}\n{}",
            stderr(&output),
            pg.log()
        );
        stdout(&output)
    };
    // Without the URL the configuration is a clear error.
    let missing = fails(home.path(), &["kb", "ls"], 1);
    assert!(missing.contains("MOAT_PG_URL"), "{missing}");

    let work = tempfile::tempdir().unwrap();
    let corpus = corpus(work.path());
    with_pg(&["kb", "create", "pgdocs", "--embed", MINILM]);
    let report: Value = serde_json::from_str(&with_pg(&[
        "kb",
        "add",
        "-q",
        "--json",
        "pgdocs",
        corpus.to_str().unwrap(),
    ]))
    .unwrap();
    assert_eq!(report["added"], 5, "{report}");
    let hits: Value = serde_json::from_str(&with_pg(&[
        "kb",
        "query",
        "pgdocs",
        "what do the penguins eat?",
        "--json",
    ]))
    .unwrap();
    assert_eq!(hits[0]["path"], "corpus/notes.txt", "{hits}");
    // The SQLite database was not used.
    assert!(!home.path().join("moat.db").exists());
    let listed: Value = serde_json::from_str(&with_pg(&["kb", "ls", "--json"])).unwrap();
    assert_eq!(listed[0]["documents"], 5);
    with_pg(&["kb", "rm", "pgdocs"]);
    let listed: Value = serde_json::from_str(&with_pg(&["kb", "ls", "--json"])).unwrap();
    assert_eq!(listed, Value::Array(vec![]));
}

#[test]
fn an_embedding_gguf_runs_through_llama_cpp_and_agrees_with_the_folder() {
    let Some(gguf) = test_model("all-minilm-l6-v2.gguf") else {
        return;
    };
    let Some(home) = home_with_minilm() else {
        return;
    };
    let home = home.path();
    ok(
        home,
        &[
            "pull",
            "-q",
            gguf.to_str().unwrap(),
            "--name",
            "minilm-gguf",
        ],
    );
    let texts = [
        "Penguins eat herring in winter.",
        "Build the binary with cargo.",
    ];
    let parse = |out: String| -> Vec<Vec<f64>> {
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let from_gguf = parse(ok(home, &["embed", "minilm-gguf", texts[0], texts[1]]));
    let from_folder = parse(ok(home, &["embed", MINILM, texts[0], texts[1]]));
    assert_eq!(from_gguf.len(), 2);
    for (a, b) in from_gguf.iter().zip(&from_folder) {
        assert_eq!(a.len(), 384);
        let cos: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        assert!(cos > 0.999, "{cos}");
    }
    // A knowledge base can use it too.
    let created = json(
        home,
        &["kb", "create", "g", "--embed", "minilm-gguf", "--json"],
    );
    assert_eq!(created["embed_model"], "minilm-gguf:latest");
    assert_eq!(created["dimension"], 384);
}
