//! The embedded store's schema and its migrations, versioned by `PRAGMA user_version`.
//!
//! Tables: `meta` (this database's random id, which the index files carry so an index never
//! serves a different database), `kbs` (with `generation`, bumped by every write to the
//! knowledge base, which tells an index file whether it is current), `documents`,
//! `document_tags`, `chunks` (text, location, the embedding as little-endian f32), and one FTS5
//! table per knowledge base (`fts_kb_<id>`), so BM25's statistics are those of that knowledge
//! base alone. The FTS tables are contentless (the text lives in `chunks`) with
//! `contentless_delete=1`, so rows can be deleted by rowid.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::storage;
use crate::VectorError;

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: i64 = 1;

const V1: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('store_id', lower(hex(randomblob(16))));
CREATE TABLE kbs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    embed_model TEXT NOT NULL,
    dimension INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kb_id INTEGER NOT NULL REFERENCES kbs(id),
    path TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    UNIQUE (kb_id, path)
);
CREATE TABLE document_tags (
    document_id INTEGER NOT NULL REFERENCES documents(id),
    tag TEXT NOT NULL,
    PRIMARY KEY (document_id, tag)
) WITHOUT ROWID;
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kb_id INTEGER NOT NULL REFERENCES kbs(id),
    document_id INTEGER NOT NULL REFERENCES documents(id),
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    line_start INTEGER NOT NULL,
    line_end INTEGER NOT NULL,
    page INTEGER NOT NULL,
    heading TEXT NOT NULL,
    embedding BLOB NOT NULL
);
CREATE INDEX chunks_by_document ON chunks (document_id);
CREATE INDEX chunks_by_kb ON chunks (kb_id, id);
";

/// Brings the database to [`SCHEMA_VERSION`]; refuses a database written by a newer moat.
pub fn migrate(conn: &mut Connection) -> Result<(), VectorError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(storage)?;
    if version > SCHEMA_VERSION {
        return Err(VectorError::Storage(format!(
            "the database has schema version {version}; this moat understands up to \
             {SCHEMA_VERSION} (written by a newer moat?)"
        )));
    }
    if version < 1 {
        // Immediate, and the version read again inside: another process opening the same new
        // file at the same moment may have migrated it since the read above.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(storage)?;
        if version >= 1 {
            return Ok(());
        }
        // A database that has tables but no version is not ours: refuse it rather than mix.
        let foreign: Option<String> = tx
            .query_row(
                "SELECT name FROM sqlite_schema WHERE name IN ('kbs', 'chunks') LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(storage)?;
        if let Some(table) = foreign {
            return Err(VectorError::Storage(format!(
                "the database already has a table {table:?} but no schema version; \
                 it was not made by this store"
            )));
        }
        tx.execute_batch(V1).map_err(storage)?;
        tx.pragma_update(None, "user_version", 1).map_err(storage)?;
        tx.commit().map_err(storage)?;
    }
    Ok(())
}

/// The name of a knowledge base's FTS5 table (ids come from the database, never from users).
pub fn fts_table(kb_id: i64) -> String {
    format!("fts_kb_{kb_id}")
}

/// The statement creating a knowledge base's FTS5 table.
pub fn create_fts_sql(kb_id: i64) -> String {
    format!(
        "CREATE VIRTUAL TABLE {} USING fts5(text, content='', contentless_delete=1, \
         tokenize='unicode61 remove_diacritics 2')",
        fts_table(kb_id)
    )
}
