//! Opening `moat.db` for this crate and migrating its tables.
//!
//! Several crates share the one database file, so this crate keeps its schema version in its
//! own table (`moat_meter_schema`) and leaves `PRAGMA user_version` to moat-vector.

use std::path::Path;

use rusqlite::Connection;

use crate::MeterError;

/// The schema version this build writes. A database with a higher one is refused.
pub const SCHEMA_VERSION: i64 = 1;

/// The audit table refuses every UPDATE, and every DELETE of an entry younger than a day by
/// SQLite's own clock, so that even a bug elsewhere in moat (or a retention of zero days)
/// cannot rewrite recent history; only retention deletes, and only old entries.
const SCHEMA_V1: &str = "
CREATE TABLE meter_audit (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    who TEXT NOT NULL,
    model TEXT NOT NULL,
    decision TEXT NOT NULL,
    rails TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    prompt TEXT,
    prompt_truncated INTEGER NOT NULL
);
CREATE INDEX meter_audit_at ON meter_audit (at_ms);
CREATE TRIGGER meter_audit_no_update BEFORE UPDATE ON meter_audit
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER meter_audit_no_recent_delete BEFORE DELETE ON meter_audit
WHEN old.at_ms > (CAST(strftime('%s', 'now') AS INTEGER) - 86400) * 1000
BEGIN
    SELECT RAISE(ABORT, 'audit entries younger than a day cannot be deleted');
END;
CREATE TABLE meter_usage (
    day TEXT NOT NULL,
    key TEXT NOT NULL,
    alias TEXT NOT NULL,
    model TEXT NOT NULL,
    local INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    busy_ms INTEGER NOT NULL,
    PRIMARY KEY (day, key, alias, model, local)
);
";

/// Opens (creating it and its folder if needed) the database at `path` in WAL mode and
/// migrates this crate's tables.
pub fn open(path: &Path) -> Result<Connection, MeterError> {
    let mut conn = moat_db::open_shared(path).map_err(MeterError::Storage)?;
    migrate(&mut conn).map_err(|e| match e {
        MeterError::Storage(msg) => MeterError::Storage(format!("{}: {msg}", path.display())),
        other => other,
    })?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), MeterError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "CREATE TABLE IF NOT EXISTS moat_meter_schema (version INTEGER NOT NULL)",
        [],
    )?;
    let version: Option<i64> =
        tx.query_row("SELECT MAX(version) FROM moat_meter_schema", [], |row| {
            row.get(0)
        })?;
    match version {
        None => {
            tx.execute_batch(SCHEMA_V1)?;
            tx.execute(
                "INSERT INTO moat_meter_schema (version) VALUES (?1)",
                [SCHEMA_VERSION],
            )?;
        }
        Some(SCHEMA_VERSION) => {}
        Some(v) if v > SCHEMA_VERSION => {
            return Err(MeterError::Storage(format!(
                "meter schema version {v} is newer than this moat understands ({SCHEMA_VERSION})"
            )))
        }
        Some(v) => {
            return Err(MeterError::Storage(format!(
                "meter schema version {v} is unknown"
            )))
        }
    }
    tx.commit()?;
    Ok(())
}
