//! Opening `moat.db` for this crate and migrating its tables.
//!
//! Several crates share the one database file, so this crate keeps its schema version in its
//! own table (`moat_auth_schema`) and leaves `PRAGMA user_version` to moat-vector.

use std::path::Path;

use rusqlite::Connection;

use crate::AuthError;

/// The schema version this build writes. A database with a higher one is refused.
pub const SCHEMA_VERSION: i64 = 2;

const SCHEMA_V1: &str = "
CREATE TABLE auth_keys (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL UNIQUE,
    hash BLOB NOT NULL,
    models TEXT NOT NULL,
    admin INTEGER NOT NULL,
    requests_per_minute INTEGER,
    tokens_per_minute INTEGER,
    budget_tokens INTEGER,
    budget_period TEXT,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER
);
CREATE TABLE auth_budget_spend (
    key_id INTEGER NOT NULL,
    period TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    PRIMARY KEY (key_id, period)
);
CREATE TABLE auth_usage (
    key_id INTEGER NOT NULL,
    day TEXT NOT NULL,
    model TEXT NOT NULL,
    requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    PRIMARY KEY (key_id, day, model)
);
";

/// Version 2: a key's own guard policy and whether it is private. The guard used to live in
/// moat-cli's `cli_key_guards` table; it moves here (and that table goes).
const MIGRATE_V1_TO_V2: &str = "
ALTER TABLE auth_keys ADD COLUMN guard TEXT;
ALTER TABLE auth_keys ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
";

/// Opens (creating it and its folder if needed) the database at `path` in WAL mode and
/// migrates this crate's tables.
pub fn open(path: &Path) -> Result<Connection, AuthError> {
    let mut conn = moat_db::open_shared(path).map_err(AuthError::Storage)?;
    migrate(&mut conn).map_err(|e| match e {
        AuthError::Storage(msg) => AuthError::Storage(format!("{}: {msg}", path.display())),
        other => other,
    })?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), AuthError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "CREATE TABLE IF NOT EXISTS moat_auth_schema (version INTEGER NOT NULL)",
        [],
    )?;
    let version: Option<i64> =
        tx.query_row("SELECT MAX(version) FROM moat_auth_schema", [], |row| {
            row.get(0)
        })?;
    match version {
        None => {
            tx.execute_batch(SCHEMA_V1)?;
            tx.execute_batch(MIGRATE_V1_TO_V2)?;
            tx.execute(
                "INSERT INTO moat_auth_schema (version) VALUES (?1)",
                [SCHEMA_VERSION],
            )?;
        }
        Some(1) => {
            tx.execute_batch(MIGRATE_V1_TO_V2)?;
            let legacy: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cli_key_guards')",
                [],
                |row| row.get(0),
            )?;
            if legacy {
                tx.execute_batch(
                    "UPDATE auth_keys SET guard = (SELECT guard FROM cli_key_guards g WHERE g.key_id = auth_keys.id);
                     DROP TABLE cli_key_guards;",
                )?;
            }
            tx.execute("UPDATE moat_auth_schema SET version = ?1", [SCHEMA_VERSION])?;
        }
        Some(SCHEMA_VERSION) => {}
        Some(v) if v > SCHEMA_VERSION => {
            return Err(AuthError::Storage(format!(
                "auth schema version {v} is newer than this moat understands ({SCHEMA_VERSION})"
            )))
        }
        Some(v) => {
            return Err(AuthError::Storage(format!(
                "auth schema version {v} is unknown"
            )));
        }
    }
    tx.commit()?;
    Ok(())
}
