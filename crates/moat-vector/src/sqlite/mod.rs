//! The embedded knowledge store: SQLite (WAL, one database file, FTS5 for BM25) as the source
//! of truth, plus one persisted HNSW index per knowledge base as a cache for vector search.
//!
//! Every write is one transaction that also bumps the knowledge base's generation; a kill at any
//! point leaves SQLite consistent, and an index file whose generation no longer matches is
//! rebuilt. Within a process the in-memory index is not rebuilt on every write: newer chunks
//! are searched exactly and deleted ones are dropped when candidates are looked up, until either
//! grows past a limit (see [`tail_limit`] and [`dead_limit`]).
//!
//! A search never waits for an index: building one takes minutes at 100k chunks. While a
//! knowledge base has no usable index in memory (none loaded yet, or too far behind), a vector
//! search is answered by exact search over the vectors in SQLite, which is correct and takes a
//! fraction of a second at that size, and a background thread loads the current file or
//! rebuilds the index from SQLite (with its own connection) and then swaps it in atomically
//! (one `Arc` replaced under a lock; searches already running keep the index they started
//! with). [`SqliteStore::build_index`] does the same work in the caller's thread, for the end
//! of an ingest.
//!
//! It knows nothing of embedders, chunking or retrieval fusion.

mod build;
mod index;
mod query;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use self::build::{finish_build, load_or_build, BuildJob, Indexes};
use self::index::AnnIndex;
use self::query::{
    admitted_documents, exact_scores, lookup_hits, searched_terms, sort_best_first, Admitted,
};
use crate::glob::Glob;
use crate::terms::query_terms;
use crate::validate::{self, normalized};
use crate::{
    validate_kb_name, DocumentInfo, Filter, Hit, KbInfo, KbSpec, NewChunk, NewDocument,
    VectorError, VectorStore,
};

/// A filtered vector search admitting at most this many chunks is answered by exact search
/// (scoring that many vectors costs less than over-fetching from the graph).
const EXACT_MAX_CHUNKS: u64 = 2_000;
/// How many candidate ids are looked up in SQLite at a time.
const LOOKUP_BATCH: usize = 128;

/// Counters of what the store did with its indexes, for tests and diagnostics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Indexes built from SQLite (file missing, unreadable, stale, or too far behind).
    pub rebuilds: u64,
    /// Indexes read from a current file.
    pub loads: u64,
    /// Vector searches answered by exact search because no usable index was in memory (one
    /// was being loaded or built in the background).
    pub exact_answers: u64,
    /// The last failure to write an index file, if any. The index is only a cache, so such a
    /// failure does not fail the search; the next process rebuilds instead of loading.
    pub last_write_error: Option<String>,
    /// The last failure of a background load or build, if any (searches stay exact, and the
    /// next search that needs the index starts another).
    pub last_build_error: Option<String>,
}

/// The embedded store. `Send + Sync`: one connection behind a mutex; the indexes are shared
/// with the background threads that build them.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    db_path: PathBuf,
    index_dir: PathBuf,
    store_id: String,
    indexes: Arc<Indexes>,
}

/// A knowledge base's row.
struct KbRow {
    id: i64,
    dimension: u32,
    generation: i64,
}

fn storage(error: rusqlite::Error) -> VectorError {
    VectorError::Storage(format!("sqlite: {error}"))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave SQLite half-written (transactions roll back
    // on drop), so a poisoned lock is safe to keep using.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The tail (chunks newer than the index) beyond which the index is rebuilt.
pub fn tail_limit(indexed: usize) -> u64 {
    (indexed as u64 / 10).max(1_000)
}

/// The deleted chunks still in the index beyond which it is rebuilt.
pub fn dead_limit(indexed: usize) -> u64 {
    (indexed as u64 / 5).max(100)
}

impl SqliteStore {
    /// Opens (creating it and its folder if needed) the database at `db_path` and keeps index
    /// files under
    /// `index_dir`. Migrates the schema; refuses a database from a newer moat.
    pub fn open(db_path: &Path, index_dir: &Path) -> Result<Self, VectorError> {
        let context = |e: rusqlite::Error| {
            VectorError::Storage(format!("cannot open {}: {e}", db_path.display()))
        };
        let mut conn = moat_db::open_shared(db_path).map_err(VectorError::Storage)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(context)?;
        schema::migrate(&mut conn)?;
        let store_id: String = conn
            .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |row| {
                row.get(0)
            })
            .map_err(context)?;
        std::fs::create_dir_all(index_dir).map_err(|e| {
            VectorError::Storage(format!(
                "cannot create the index folder {}: {e}",
                index_dir.display()
            ))
        })?;
        Ok(Self {
            conn: Mutex::new(conn),
            db_path: db_path.to_path_buf(),
            index_dir: index_dir.to_path_buf(),
            store_id,
            indexes: Arc::new(Indexes::default()),
        })
    }

    /// What the store did with its indexes so far.
    pub fn index_stats(&self) -> IndexStats {
        let indexes = &self.indexes;
        IndexStats {
            rebuilds: indexes.rebuilds.load(Ordering::Relaxed),
            loads: indexes.loads.load(Ordering::Relaxed),
            exact_answers: indexes.exact_answers.load(Ordering::Relaxed),
            last_write_error: lock(&indexes.last_write_error).clone(),
            last_build_error: lock(&indexes.last_build_error).clone(),
        }
    }

    /// Waits until no background index load or build is under way, at most `timeout`; true
    /// when none is. For tests, benchmarks and a clean shutdown: searches never need it.
    pub fn wait_for_index_builds(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.indexes.state);
        while !state.building.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .indexes
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        true
    }

    /// While `held` is true, background loads and builds wait before they start; searches go
    /// on answering exactly meanwhile. Lets a test or a benchmark observe the store while an
    /// index is missing or stale, whatever the speed of the machine. Release the hold before
    /// calling [`Self::build_index`] (which waits for a background build of the same knowledge
    /// base) or dropping the store (a held thread waits until released).
    pub fn hold_index_builds(&self, held: bool) {
        lock(&self.indexes.state).held = held;
        self.indexes.changed.notify_all();
    }

    /// Where the index file of knowledge base `kb` lives (it may not exist yet).
    pub fn index_path(&self, kb: &str) -> Result<PathBuf, VectorError> {
        validate_kb_name(kb)?;
        let row = kb_row(&lock(&self.conn), kb)?;
        Ok(self.index_file(row.id))
    }

    fn index_file(&self, kb_id: i64) -> PathBuf {
        self.index_dir.join(format!("kb-{kb_id}.hnsw"))
    }

    /// The `k` chunks closest to `query` by exact cosine similarity among those `filter`
    /// admits: every vector is scored. The reference the ANN path is measured against
    /// (recall@10 in the benchmarks), and its fallback for selective filters.
    pub fn search_exact(
        &self,
        kb: &str,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>, VectorError> {
        let Some((row, unit, admitted)) = self.prepare_vector_search(kb, query, k, filter)? else {
            return Ok(Vec::new());
        };
        self.exact(&row, &unit, k, admitted.as_ref())
    }

    /// Validates a vector search; `None` when it can only return nothing.
    #[allow(clippy::type_complexity)]
    fn prepare_vector_search(
        &self,
        kb: &str,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Option<(KbRow, Vec<f32>, Option<Admitted>)>, VectorError> {
        validate_kb_name(kb)?;
        validate::check_search(k, filter)?;
        let glob = filter.path_glob.as_deref().map(Glob::new).transpose()?;
        let conn = lock(&self.conn);
        let row = kb_row(&conn, kb)?;
        validate::check_vector(kb, row.dimension, query)?;
        if k == 0 {
            return Ok(None);
        }
        let admitted = admitted_documents(&conn, row.id, glob.as_ref(), &filter.tags)?;
        if admitted.as_ref().is_some_and(|a| a.chunks == 0) {
            return Ok(None);
        }
        Ok(Some((row, normalized(query), admitted)))
    }

    fn exact(
        &self,
        row: &KbRow,
        unit: &[f32],
        k: usize,
        admitted: Option<&Admitted>,
    ) -> Result<Vec<Hit>, VectorError> {
        let conn = lock(&self.conn);
        let mut scored = exact_scores(&conn, row, unit, 0, admitted)?;
        sort_best_first(&mut scored);
        scored.truncate(k);
        lookup_hits(&conn, row.id, &scored, admitted, k)
    }

    /// Makes the index of `kb` current and its file written, loading or rebuilding it in this
    /// thread if needed (after any background build of it finishes). Ingestion calls this when
    /// it finishes, so searches use the index at once and the next process (a query from the
    /// command line, a restarted server) loads it instead of rebuilding it.
    pub fn build_index(&self, kb: &str) -> Result<(), VectorError> {
        validate_kb_name(kb)?;
        let row = kb_row(&lock(&self.conn), kb)?;
        {
            let mut state = lock(&self.indexes.state);
            loop {
                let current = state
                    .ready
                    .get(&row.id)
                    .is_some_and(|index| index.key.generation >= row.generation);
                if current {
                    return Ok(());
                }
                if !state.building.contains(&row.id) {
                    state.building.insert(row.id);
                    break;
                }
                state = self
                    .indexes
                    .changed
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
        let result = load_or_build(&self.indexes, &self.build_job(&row));
        finish_build(&self.indexes, row.id, result).map(drop)
    }

    fn build_job(&self, row: &KbRow) -> BuildJob {
        BuildJob {
            db_path: self.db_path.clone(),
            index_file: self.index_file(row.id),
            store_id: self.store_id.clone(),
            kb_id: row.id,
            dimension: row.dimension,
        }
    }

    /// The in-memory index of `row` if it is current enough to search with: built at the
    /// database's generation, or behind it by few enough chunks (the tail is searched exactly).
    /// `None` starts a background load or build, unless one is under way.
    fn usable_index(&self, row: &KbRow) -> Result<Option<Arc<AnnIndex>>, VectorError> {
        let ready = lock(&self.indexes.state).ready.get(&row.id).cloned();
        if let Some(index) = ready {
            if index.key.generation == row.generation || !self.too_far_behind(row, &index)? {
                return Ok(Some(index));
            }
        }
        self.start_background_build(row);
        Ok(None)
    }

    /// Starts a thread that loads or rebuilds the index of `row` and swaps it in.
    fn start_background_build(&self, row: &KbRow) {
        {
            let mut state = lock(&self.indexes.state);
            if !state.building.insert(row.id) {
                return;
            }
        }
        let indexes = Arc::clone(&self.indexes);
        let job = self.build_job(row);
        let spawned = std::thread::Builder::new()
            .name(format!("moat-index-kb-{}", row.id))
            .spawn(move || {
                {
                    let mut state = lock(&indexes.state);
                    while state.held {
                        state = indexes
                            .changed
                            .wait(state)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                    }
                }
                let result = load_or_build(&indexes, &job);
                // The error is kept in the stats; searches stay exact until a build succeeds.
                let _ = finish_build(&indexes, job.kb_id, result);
            });
        if let Err(error) = spawned {
            *lock(&self.indexes.last_build_error) =
                Some(format!("cannot start an index build thread: {error}"));
            lock(&self.indexes.state).building.remove(&row.id);
            self.indexes.changed.notify_all();
        }
    }

    /// Whether an index behind the database has too many new or deleted chunks to keep using.
    fn too_far_behind(&self, row: &KbRow, index: &AnnIndex) -> Result<bool, VectorError> {
        let conn = lock(&self.conn);
        let count = |sql: &str| -> Result<u64, VectorError> {
            conn.query_row(sql, params![row.id, index.max_chunk_id], |r| r.get(0))
                .map_err(storage)
        };
        let tail = count("SELECT count(*) FROM chunks WHERE kb_id = ?1 AND id > ?2")?;
        let live = count("SELECT count(*) FROM chunks WHERE kb_id = ?1 AND id <= ?2")?;
        let dead = (index.len() as u64).saturating_sub(live);
        Ok(tail > tail_limit(index.len()) || dead > dead_limit(index.len()))
    }
}

/// The row of knowledge base `name`, or `NoSuchKb`.
fn kb_row(conn: &Connection, name: &str) -> Result<KbRow, VectorError> {
    conn.query_row(
        "SELECT id, dimension, generation FROM kbs WHERE name = ?1",
        [name],
        |r| {
            Ok(KbRow {
                id: r.get(0)?,
                dimension: r.get(1)?,
                generation: r.get(2)?,
            })
        },
    )
    .optional()
    .map_err(storage)?
    .ok_or_else(|| VectorError::NoSuchKb(name.to_owned()))
}

fn kb_info(
    conn: &Connection,
    where_clause: &str,
    name: Option<&str>,
) -> Result<Vec<KbInfo>, VectorError> {
    let sql = format!(
        "SELECT k.name, k.embed_model, k.dimension, k.created_at, \
           (SELECT count(*) FROM documents d WHERE d.kb_id = k.id), \
           (SELECT count(*) FROM chunks c WHERE c.kb_id = k.id) \
         FROM kbs k {where_clause} ORDER BY k.name"
    );
    let mut statement = conn.prepare(&sql).map_err(storage)?;
    let map = |r: &rusqlite::Row<'_>| {
        Ok(KbInfo {
            name: r.get(0)?,
            embed_model: r.get(1)?,
            dimension: r.get(2)?,
            created_at: r.get(3)?,
            documents: r.get(4)?,
            chunks: r.get(5)?,
        })
    };
    let rows = match name {
        Some(name) => statement.query_map([name], map),
        None => statement.query_map([], map),
    }
    .map_err(storage)?;
    rows.collect::<Result<_, _>>().map_err(storage)
}

/// Deletes a document's chunks (and their FTS rows) and tags, and the document itself.
fn delete_document_rows(
    tx: &rusqlite::Transaction<'_>,
    kb_id: i64,
    document_id: i64,
) -> Result<(), VectorError> {
    tx.execute(
        &format!(
            "DELETE FROM {} WHERE rowid IN (SELECT id FROM chunks WHERE document_id = ?1)",
            schema::fts_table(kb_id)
        ),
        [document_id],
    )
    .map_err(storage)?;
    tx.execute("DELETE FROM chunks WHERE document_id = ?1", [document_id])
        .map_err(storage)?;
    tx.execute(
        "DELETE FROM document_tags WHERE document_id = ?1",
        [document_id],
    )
    .map_err(storage)?;
    tx.execute("DELETE FROM documents WHERE id = ?1", [document_id])
        .map_err(storage)?;
    Ok(())
}

fn bump_generation(tx: &rusqlite::Transaction<'_>, kb_id: i64) -> Result<(), VectorError> {
    tx.execute(
        "UPDATE kbs SET generation = generation + 1 WHERE id = ?1",
        [kb_id],
    )
    .map_err(storage)?;
    Ok(())
}

fn document_id(
    tx: &rusqlite::Transaction<'_>,
    kb_id: i64,
    path: &str,
) -> Result<Option<i64>, VectorError> {
    tx.query_row(
        "SELECT id FROM documents WHERE kb_id = ?1 AND path = ?2",
        params![kb_id, path],
        |r| r.get(0),
    )
    .optional()
    .map_err(storage)
}

impl VectorStore for SqliteStore {
    fn finish_indexing(&self, kb: &str) -> Result<(), VectorError> {
        self.build_index(kb)
    }

    fn create_kb(&self, spec: &KbSpec) -> Result<KbInfo, VectorError> {
        validate_kb_name(&spec.name)?;
        validate::check_dimension(spec.dimension)?;
        if spec.embed_model.is_empty() || spec.embed_model.len() > 256 {
            return Err(VectorError::Invalid(
                "the embedding model's name must be 1-256 bytes".into(),
            ));
        }
        let mut conn = lock(&self.conn);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage)?;
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM kbs WHERE name = ?1)",
                [&spec.name],
                |r| r.get(0),
            )
            .map_err(storage)?;
        if exists {
            return Err(VectorError::KbExists(spec.name.clone()));
        }
        let created_at = now_secs();
        tx.execute(
            "INSERT INTO kbs (name, embed_model, dimension, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![spec.name, spec.embed_model, spec.dimension, created_at],
        )
        .map_err(storage)?;
        let kb_id = tx.last_insert_rowid();
        tx.execute_batch(&schema::create_fts_sql(kb_id))
            .map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(KbInfo {
            name: spec.name.clone(),
            embed_model: spec.embed_model.clone(),
            dimension: spec.dimension,
            documents: 0,
            chunks: 0,
            created_at,
        })
    }

    fn kb(&self, name: &str) -> Result<KbInfo, VectorError> {
        validate_kb_name(name)?;
        kb_info(&lock(&self.conn), "WHERE k.name = ?1", Some(name))?
            .pop()
            .ok_or_else(|| VectorError::NoSuchKb(name.to_owned()))
    }

    fn list_kbs(&self) -> Result<Vec<KbInfo>, VectorError> {
        kb_info(&lock(&self.conn), "", None)
    }

    fn delete_kb(&self, name: &str) -> Result<(), VectorError> {
        validate_kb_name(name)?;
        let kb_id = {
            let mut conn = lock(&self.conn);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(storage)?;
            let row = kb_row(&tx, name)?;
            tx.execute("DELETE FROM chunks WHERE kb_id = ?1", [row.id])
                .map_err(storage)?;
            tx.execute(
                "DELETE FROM document_tags WHERE document_id IN \
                 (SELECT id FROM documents WHERE kb_id = ?1)",
                [row.id],
            )
            .map_err(storage)?;
            tx.execute("DELETE FROM documents WHERE kb_id = ?1", [row.id])
                .map_err(storage)?;
            tx.execute_batch(&format!(
                "DROP TABLE IF EXISTS temp.fts_vocab_kb_{}; DROP TABLE {}",
                row.id,
                schema::fts_table(row.id)
            ))
            .map_err(storage)?;
            tx.execute("DELETE FROM kbs WHERE id = ?1", [row.id])
                .map_err(storage)?;
            tx.commit().map_err(storage)?;
            row.id
        };
        lock(&self.indexes.state).ready.remove(&kb_id);
        // The file is only a cache keyed by the (never reused) id; a leftover is harmless.
        let _ = std::fs::remove_file(self.index_file(kb_id));
        Ok(())
    }

    fn documents(&self, kb: &str) -> Result<Vec<DocumentInfo>, VectorError> {
        validate_kb_name(kb)?;
        let conn = lock(&self.conn);
        let row = kb_row(&conn, kb)?;
        let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
        let mut statement = conn
            .prepare(
                "SELECT t.document_id, t.tag FROM document_tags t \
                 JOIN documents d ON d.id = t.document_id WHERE d.kb_id = ?1 ORDER BY t.tag",
            )
            .map_err(storage)?;
        let rows = statement
            .query_map([row.id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(storage)?;
        for pair in rows {
            let (id, tag) = pair.map_err(storage)?;
            tags.entry(id).or_default().push(tag);
        }
        let mut statement = conn
            .prepare(
                "SELECT d.id, d.path, d.content_hash, \
                   (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) \
                 FROM documents d WHERE d.kb_id = ?1 ORDER BY d.path",
            )
            .map_err(storage)?;
        let rows = statement
            .query_map([row.id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    DocumentInfo {
                        path: r.get(1)?,
                        content_hash: r.get(2)?,
                        chunks: r.get(3)?,
                        tags: Vec::new(),
                    },
                ))
            })
            .map_err(storage)?;
        rows.map(|r| {
            r.map(|(id, mut info)| {
                info.tags = tags.remove(&id).unwrap_or_default();
                info
            })
            .map_err(storage)
        })
        .collect()
    }

    fn replace_document(
        &self,
        kb: &str,
        document: &NewDocument,
        chunks: &[NewChunk],
    ) -> Result<(), VectorError> {
        validate_kb_name(kb)?;
        let mut conn = lock(&self.conn);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage)?;
        let row = kb_row(&tx, kb)?;
        validate::check_document(kb, row.dimension, document, chunks)?;
        if let Some(old) = document_id(&tx, row.id, &document.path)? {
            delete_document_rows(&tx, row.id, old)?;
        }
        tx.execute(
            "INSERT INTO documents (kb_id, path, content_hash) VALUES (?1, ?2, ?3)",
            params![row.id, document.path, document.content_hash],
        )
        .map_err(storage)?;
        let document_id = tx.last_insert_rowid();
        for tag in validate::normalize_tags(&document.tags) {
            tx.execute(
                "INSERT INTO document_tags (document_id, tag) VALUES (?1, ?2)",
                params![document_id, tag],
            )
            .map_err(storage)?;
        }
        {
            let mut insert_chunk = tx
                .prepare(
                    "INSERT INTO chunks (kb_id, document_id, ordinal, text, line_start, \
                       line_end, page, heading, embedding) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(storage)?;
            let mut insert_text = tx
                .prepare(&format!(
                    "INSERT INTO {} (rowid, text) VALUES (?1, ?2)",
                    schema::fts_table(row.id)
                ))
                .map_err(storage)?;
            for chunk in chunks {
                insert_chunk
                    .execute(params![
                        row.id,
                        document_id,
                        chunk.ordinal,
                        chunk.text,
                        chunk.location.line_start,
                        chunk.location.line_end,
                        chunk.location.page,
                        chunk.location.heading,
                        encode_vector(&chunk.embedding),
                    ])
                    .map_err(storage)?;
                let chunk_id = tx.last_insert_rowid();
                insert_text
                    .execute(params![chunk_id, chunk.text])
                    .map_err(storage)?;
            }
        }
        bump_generation(&tx, row.id)?;
        tx.commit().map_err(storage)
    }

    fn remove_document(&self, kb: &str, path: &str) -> Result<bool, VectorError> {
        validate_kb_name(kb)?;
        validate::check_path(path)?;
        let mut conn = lock(&self.conn);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage)?;
        let row = kb_row(&tx, kb)?;
        let Some(id) = document_id(&tx, row.id, path)? else {
            return Ok(false);
        };
        delete_document_rows(&tx, row.id, id)?;
        bump_generation(&tx, row.id)?;
        tx.commit().map_err(storage)?;
        Ok(true)
    }

    fn search_vector(
        &self,
        kb: &str,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>, VectorError> {
        let Some((row, unit, admitted)) = self.prepare_vector_search(kb, query, k, filter)? else {
            return Ok(Vec::new());
        };
        // A selective filter: scoring the few admitted vectors beats over-fetching.
        if admitted
            .as_ref()
            .is_some_and(|a| a.chunks <= EXACT_MAX_CHUNKS)
        {
            return self.exact(&row, &unit, k, admitted.as_ref());
        }
        let Some(index) = self.usable_index(&row)? else {
            // No usable index yet: one is being loaded or built in the background.
            self.indexes.exact_answers.fetch_add(1, Ordering::Relaxed);
            return self.exact(&row, &unit, k, admitted.as_ref());
        };
        let mut candidates = index.search(&unit);
        let (hits, admitted_total) = {
            let conn = lock(&self.conn);
            // Chunks written since the index was built are scored exactly.
            candidates.extend(exact_scores(
                &conn,
                &row,
                &unit,
                index.max_chunk_id,
                admitted.as_ref(),
            )?);
            sort_best_first(&mut candidates);
            let hits = lookup_hits(&conn, row.id, &candidates, admitted.as_ref(), k)?;
            let admitted_total = match &admitted {
                Some(a) => a.chunks,
                None => conn
                    .query_row(
                        "SELECT count(*) FROM chunks WHERE kb_id = ?1",
                        [row.id],
                        |r| r.get(0),
                    )
                    .map_err(storage)?,
            };
            (hits, admitted_total)
        };
        // Too few survived the filter (or deletions): answer exactly, so a search returns k
        // results whenever k exist.
        if (hits.len() as u64) < (k as u64).min(admitted_total) {
            return self.exact(&row, &unit, k, admitted.as_ref());
        }
        Ok(hits)
    }

    fn search_text(
        &self,
        kb: &str,
        query: &str,
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>, VectorError> {
        validate_kb_name(kb)?;
        validate::check_search(k, filter)?;
        let glob = filter.path_glob.as_deref().map(Glob::new).transpose()?;
        let conn = lock(&self.conn);
        let row = kb_row(&conn, kb)?;
        let terms = query_terms(query);
        if k == 0 || terms.is_empty() {
            return Ok(Vec::new());
        }
        let admitted = admitted_documents(&conn, row.id, glob.as_ref(), &filter.tags)?;
        if admitted.as_ref().is_some_and(|a| a.chunks == 0) {
            return Ok(Vec::new());
        }
        let terms = searched_terms(&conn, row.id, terms)?;
        // Each word quoted (words hold only letters and digits, so no quote can occur inside),
        // joined by OR: FTS5 sees no operator the user typed.
        let fts_query = terms
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" OR ");
        let table = schema::fts_table(row.id);
        // bm25() is lower-is-better; the seam's scores are higher-is-better.
        let mut sql = format!(
            "SELECT rowid, -bm25({table}) FROM {table} WHERE {table} MATCH ?1 \
             ORDER BY bm25({table}), rowid"
        );
        let limit = if admitted.is_none() { k } else { usize::MAX };
        if admitted.is_none() {
            sql.push_str(&format!(" LIMIT {k}"));
        }
        let mut statement = conn.prepare(&sql).map_err(storage)?;
        let scored = statement
            .query_map([fts_query], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)? as f32))
            })
            .map_err(storage)?
            .take(limit)
            .collect::<Result<Vec<_>, _>>()
            .map_err(storage)?;
        lookup_hits(&conn, row.id, &scored, admitted.as_ref(), k)
    }
}
