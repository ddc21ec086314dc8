//! The Postgres store against a real Postgres with pgvector: a PGlite server per test (see
//! `moat_testkit::pglite`; run `scripts/pglite.sh install` first). Each server takes one
//! connection at a time, so each test closes one store before it opens the next.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use moat_testkit::pglite::PgLite;
use moat_vector::{
    conformance, Filter, KbSpec, Location, NewChunk, NewDocument, VectorError, VectorStore,
};
use moat_vector_pg::{PgConfig, PgStore};

fn config(server: &PgLite, schema: &str) -> PgConfig {
    PgConfig {
        url: server.url(),
        schema: schema.into(),
    }
}

fn spec(name: &str, dimension: u32) -> KbSpec {
    KbSpec {
        name: name.into(),
        embed_model: "m".into(),
        dimension,
    }
}

fn one_chunk(text: &str, embedding: Vec<f32>) -> Vec<NewChunk> {
    vec![NewChunk {
        ordinal: 0,
        text: text.into(),
        location: Location::default(),
        embedding,
    }]
}

fn document(path: &str) -> NewDocument {
    NewDocument {
        path: path.into(),
        content_hash: "h".into(),
        tags: vec![],
    }
}

/// A plain client for inspecting the catalog. PGlite resets a connection that arrives while it
/// is still closing the previous one, so the handshake is retried briefly (as the store does).
fn raw_client(server: &PgLite) -> postgres::Client {
    let started = std::time::Instant::now();
    loop {
        match postgres::Client::connect(&server.url(), postgres::NoTls) {
            Ok(client) => return client,
            Err(e) if started.elapsed() < std::time::Duration::from_secs(5) => {
                eprintln!("retrying the connection: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("cannot connect: {e}\n{}", server.log()),
        }
    }
}

#[test]
fn conformance_suite() {
    let server = PgLite::start();
    // A fresh schema per check: the suite drops each store before it makes the next.
    let counter = AtomicUsize::new(0);
    conformance::run_all(&|| {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let store = PgStore::connect_with(&config(&server, &format!("check_{n}")))
            .unwrap_or_else(|e| panic!("{e}\nserver log:\n{}", server.log()));
        Box::new(store)
    });
}

#[test]
fn data_survives_reconnecting_and_each_kb_has_an_hnsw_index() {
    let server = PgLite::start();
    {
        let store = PgStore::connect(&server.url()).unwrap();
        store.create_kb(&spec("kb", 3)).unwrap();
        store
            .replace_document(
                "kb",
                &document("a.md"),
                &one_chunk("kept across connections", vec![1.0, 0.0, 0.0]),
            )
            .unwrap();
    }
    {
        let store = PgStore::connect(&server.url()).unwrap();
        let hits = store
            .search_vector("kb", &[1.0, 0.0, 0.0], 5, &Filter::default())
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].text, "kept across connections");
        assert!((hits[0].score - 1.0).abs() < 1e-5);
    }
    // Inspect the catalog with a plain client (the store's connection is closed by now).
    let mut client = raw_client(&server);
    let indexes: Vec<String> = client
        .query(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'moat' AND tablename LIKE 'chunks_%'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        indexes
            .iter()
            .any(|d| d.contains("USING hnsw") && d.contains("vector_cosine_ops")),
        "{indexes:?}"
    );
    assert!(
        indexes.iter().any(|d| d.contains("USING gin")),
        "{indexes:?}"
    );
}

#[test]
fn a_newer_schema_version_is_refused() {
    let server = PgLite::start();
    drop(PgStore::connect(&server.url()).unwrap());
    {
        let mut client = raw_client(&server);
        client
            .execute(
                "UPDATE moat.moat_meta SET value = '7' WHERE key = 'schema_version'",
                &[],
            )
            .unwrap();
    }
    let error = PgStore::connect(&server.url()).err().unwrap();
    assert!(error.to_string().contains("schema version"), "{error}");
}

#[test]
fn connection_refused_is_a_clear_storage_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=disable");
    match PgStore::connect(&url) {
        Err(VectorError::Storage(message)) => {
            assert!(message.contains("cannot connect to Postgres"), "{message}");
            assert!(message.to_lowercase().contains("refused"), "{message}");
        }
        other => panic!("expected a storage error, got {:?}", other.map(|_| ())),
    }
    assert!(
        matches!(PgStore::connect("not a url at all"), Err(VectorError::Storage(m)) if m.contains("invalid Postgres URL"))
    );
    assert!(matches!(
        PgStore::connect_with(&PgConfig {
            url,
            schema: "Bad-Name".into()
        }),
        Err(VectorError::Invalid(_))
    ));
}

#[test]
fn missing_pgvector_is_a_clear_storage_error() {
    let server = PgLite::start_without_pgvector();
    match PgStore::connect(&server.url()) {
        Err(VectorError::Storage(message)) => {
            assert!(
                message.contains("pgvector extension is not available"),
                "{message}"
            )
        }
        other => panic!("expected a storage error, got {:?}", other.map(|_| ())),
    }
}
