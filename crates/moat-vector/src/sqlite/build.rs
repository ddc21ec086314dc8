//! Building the embedded store's ANN indexes without blocking searches: the shared state of
//! the in-memory indexes and the builds under way, and the build itself (load the current file,
//! else rebuild from SQLite on its own connection and write the file), which runs on a
//! background thread for a search or on the caller's thread for `build_index`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::index::{AnnIndex, IndexKey};
use super::query::decode_vector;
use super::{lock, storage};
use crate::validate::normalized;
use crate::VectorError;

/// The in-memory indexes of the knowledge bases and the builds under way, shared by the store
/// and its background build threads.
#[derive(Default)]
pub(super) struct Indexes {
    pub(super) state: Mutex<IndexState>,
    /// Signalled whenever a build finishes or `held` changes.
    pub(super) changed: Condvar,
    pub(super) rebuilds: AtomicU64,
    pub(super) loads: AtomicU64,
    pub(super) exact_answers: AtomicU64,
    pub(super) last_write_error: Mutex<Option<String>>,
    pub(super) last_build_error: Mutex<Option<String>>,
}

#[derive(Default)]
pub(super) struct IndexState {
    /// The index each knowledge base searches with, by id.
    pub(super) ready: HashMap<i64, Arc<AnnIndex>>,
    /// Knowledge bases whose index is being loaded or built.
    pub(super) building: HashSet<i64>,
    /// While true, background builds wait before starting (see
    /// [`super::SqliteStore::hold_index_builds`]).
    pub(super) held: bool,
}

/// What a build needs to find its knowledge base's data, owned so it can move to a thread.
#[derive(Clone)]
pub(super) struct BuildJob {
    pub(super) db_path: PathBuf,
    pub(super) index_file: PathBuf,
    pub(super) store_id: String,
    pub(super) kb_id: i64,
    pub(super) dimension: u32,
}

/// Swaps a finished build in (unless a newer index got there first), records a failure, and
/// wakes whoever waits for builds.
pub(super) fn finish_build(
    indexes: &Indexes,
    kb_id: i64,
    result: Result<AnnIndex, VectorError>,
) -> Result<(), VectorError> {
    let mut state = lock(&indexes.state);
    state.building.remove(&kb_id);
    let outcome = match result {
        Ok(index) => {
            let newer = state
                .ready
                .get(&kb_id)
                .is_none_or(|old| old.key.generation <= index.key.generation);
            if newer {
                state.ready.insert(kb_id, Arc::new(index));
            }
            Ok(())
        }
        Err(error) => {
            *lock(&indexes.last_build_error) = Some(error.to_string());
            Err(error)
        }
    };
    drop(state);
    indexes.changed.notify_all();
    outcome
}

/// The index of `job`'s knowledge base at the database's current generation: its file when
/// that is current, else built from SQLite and written. Runs on its own connection, so the
/// store's searches and writes go on meanwhile (WAL: the build reads one snapshot).
pub(super) fn load_or_build(indexes: &Indexes, job: &BuildJob) -> Result<AnnIndex, VectorError> {
    // Read-write without create: a database removed since the store opened is an error, not
    // a new empty file.
    let mut conn = Connection::open_with_flags(
        &job.db_path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| {
        VectorError::Storage(format!(
            "index build: cannot open {}: {e}",
            job.db_path.display()
        ))
    })?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(storage)?;
    let key = |generation| IndexKey {
        store_id: job.store_id.clone(),
        kb_id: job.kb_id,
        dimension: job.dimension,
        generation,
    };
    // One read transaction: the vectors and the generation come from the same snapshot.
    let tx = conn.transaction().map_err(storage)?;
    let generation: i64 = tx
        .query_row(
            "SELECT generation FROM kbs WHERE id = ?1",
            [job.kb_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(storage)?
        .ok_or_else(|| {
            VectorError::Storage(format!(
                "index build: knowledge base {} was deleted",
                job.kb_id
            ))
        })?;
    if let Ok(index) = AnnIndex::read(&job.index_file, &key(generation)) {
        indexes.loads.fetch_add(1, Ordering::Relaxed);
        return Ok(index);
    }
    let rows = {
        let mut statement = tx
            .prepare("SELECT id, embedding FROM chunks WHERE kb_id = ?1 ORDER BY id")
            .map_err(storage)?;
        let mut rows = Vec::new();
        let mut cursor = statement.query([job.kb_id]).map_err(storage)?;
        while let Some(r) = cursor.next().map_err(storage)? {
            let id: i64 = r.get(0).map_err(storage)?;
            let bytes: Vec<u8> = r.get(1).map_err(storage)?;
            rows.push((id, normalized(&decode_vector(id, &bytes, job.dimension)?)));
        }
        rows
    };
    // End the read transaction before the long build, so it does not hold the WAL back.
    drop(tx);
    let index = AnnIndex::build(key(generation), rows);
    indexes.rebuilds.fetch_add(1, Ordering::Relaxed);
    let written = index.write(&job.index_file);
    *lock(&indexes.last_write_error) = written
        .err()
        .map(|e| format!("cannot write {}: {e}", job.index_file.display()));
    Ok(index)
}
