//! `moat.db` is one SQLite file shared by several crates (knowledge bases, keys, the audit
//! log, usage), each with its own connections and its own schema version. They must all open
//! it the same way, or one connection's settings would undo another's guarantees: WAL (readers
//! never block the writer, and a kill mid-write leaves the last committed state),
//! `synchronous = NORMAL` (in WAL mode every committed transaction survives a process kill; a
//! power loss may drop the last few, never consistency), and a busy timeout long enough for
//! another connection's write to finish. This crate is that one way; each crate then migrates
//! its own tables; the small writes every request makes go through one [`WriteQueue`] per file.

mod writer;

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

pub use writer::{WriteQueue, GATHER, MAX_BATCH, QUEUE_CAPACITY};

/// How long a connection waits for another connection's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens (creating it and its folder if needed) the database at `path` with the settings in
/// the module doc. The error is a sentence naming the path; callers wrap it in their own
/// storage error.
pub fn open_shared(path: &Path) -> Result<Connection, String> {
    let context = |e: rusqlite::Error| format!("cannot open {}: {e}", path.display());
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let conn = Connection::open(path).map_err(context)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(context)?;
    let mode = switch_to_wal(&conn).map_err(context)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!(
            "cannot open {}: journal mode is {mode}, WAL is required",
            path.display()
        ));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(context)?;
    Ok(conn)
}

/// Sets the journal mode to WAL and returns the mode now in force. WAL stays with the file, so
/// only the first open of a new file changes it, and that needs an exclusive lock: when several
/// processes open a new file at once, SQLite answers the losers "database is locked" at once
/// rather than through the busy handler (waiting could deadlock), so they retry here for as
/// long as the busy timeout.
fn switch_to_wal(conn: &Connection) -> rusqlite::Result<String> {
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
    if mode.eq_ignore_ascii_case("wal") {
        return Ok(mode);
    }
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)) {
            Err(rusqlite::Error::SqliteFailure(error, _))
                if matches!(
                    error.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_in_wal_with_normal_sync_creating_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/moat.db");
        let conn = open_shared(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap();
        assert_eq!(sync, 1, "NORMAL");
        // A second connection to the same file works beside the first.
        let other = open_shared(&path).unwrap();
        other.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
    }

    #[test]
    fn many_connections_opening_a_new_file_at_once_all_succeed() {
        // Several servers started together on one MOAT_HOME: each one's first open switches
        // the new file to WAL, which needs an exclusive lock that the others contend for.
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("moat.db");
            let start = std::sync::Barrier::new(8);
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            open_shared(&path).map(|_| ())
                        })
                    })
                    .collect();
                for handle in handles {
                    handle.join().unwrap().unwrap();
                }
            });
        }
    }

    #[test]
    fn a_path_that_cannot_be_a_database_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = open_shared(dir.path()).unwrap_err();
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
    }
}
