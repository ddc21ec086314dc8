//! The knowledge store on Postgres + pgvector: [`PgStore`], the scale-out twin of the embedded
//! store, passing the same conformance suite.
//!
//! Layout, in one schema (default `moat`): `moat_meta` (the schema version), `kbs`, `documents`
//! (with `tags text[]` and the chunk count), and one table per knowledge base, `chunks_<id>`.
//! A table per knowledge base because a knowledge base has a fixed dimension: its column can be
//! `vector(N)`, which pgvector needs to build an HNSW index (`vector_cosine_ops`), and each
//! knowledge base gets its own graph and its own text statistics; deleting a knowledge base is a
//! `DROP TABLE`. Keyword search uses a stored `tsvector` (the `simple` configuration: no
//! stemming or stop words, like the embedded store's FTS5 `unicode61`) with a GIN index,
//! ranked by `ts_rank`.
//!
//! The store holds one connection (the test server, PGlite, accepts one at a time) behind a
//! mutex, and reconnects when the server closed it. The `postgres` client is synchronous and
//! must not be called on an async runtime's thread: use `spawn_blocking`, as the seam says.

use std::sync::{Mutex, MutexGuard};

use moat_vector::glob::Glob;
use moat_vector::terms::query_terms;
use moat_vector::validate;
use moat_vector::{
    validate_kb_name, DocumentInfo, Filter, Hit, KbInfo, KbSpec, Location, NewChunk, NewDocument,
    VectorError, VectorStore,
};
use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Transaction};

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: i32 = 1;
/// pgvector builds HNSW indexes for `vector` columns of up to this many dimensions; a knowledge
/// base with more is searched exactly (a sequential scan).
pub const MAX_HNSW_DIMENSION: u32 = 2000;

/// How many chunks one insert statement carries.
const INSERT_BATCH: usize = 256;

/// Where to connect and which schema to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgConfig {
    /// A libpq-style URL: `postgresql://user:password@host:port/database`.
    pub url: String,
    /// The schema holding the store's tables: `[a-z_][a-z0-9_]*`, at most 63 bytes.
    pub schema: String,
}

impl PgConfig {
    /// The default schema, `moat`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            schema: "moat".to_owned(),
        }
    }
}

/// The Postgres + pgvector store.
pub struct PgStore {
    client: Mutex<Client>,
    config: PgConfig,
    /// The schema pgvector's types live in, for the search path.
    vector_schema: String,
    /// pgvector 0.8 and later can continue an HNSW scan past filtered-out rows.
    iterative_scan: bool,
}

fn storage(error: postgres::Error) -> VectorError {
    VectorError::Storage(describe(&error))
}

/// A Postgres error as one line: the server's message and SQLSTATE, or the client error with
/// its causes (a refused connection names the OS error).
fn describe(error: &postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut message = format!("postgres: {} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            message.push_str(&format!(": {detail}"));
        }
        return message;
    }
    let mut message = format!("postgres: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

fn is_unique_violation(error: &postgres::Error) -> bool {
    error.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION)
}

fn lock(mutex: &Mutex<Client>) -> MutexGuard<'_, Client> {
    // Transactions roll back when dropped, so a panic while holding the lock leaves nothing
    // half-written; the poisoned lock is safe to keep using.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn check_schema_name(schema: &str) -> Result<(), VectorError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(VectorError::Invalid(format!(
            "invalid schema name {schema:?}: use [a-z_][a-z0-9_]*, at most 63 bytes"
        )))
    }
}

fn chunks_table(kb_id: i64) -> String {
    format!("chunks_{kb_id}")
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// pgvector's text form of a vector, `[1,2.5,-3]`; Rust prints the shortest string that reads
/// back as the same f32.
fn vector_literal(vector: &[f32]) -> String {
    let parts: Vec<String> = vector.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

fn to_u32(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

struct KbRow {
    id: i64,
    dimension: u32,
}

fn kb_row(client: &mut impl GenericClient, name: &str) -> Result<KbRow, VectorError> {
    let row = client
        .query_opt("SELECT id, dimension FROM kbs WHERE name = $1", &[&name])
        .map_err(storage)?
        .ok_or_else(|| VectorError::NoSuchKb(name.to_owned()))?;
    Ok(KbRow {
        id: row.get(0),
        dimension: to_u32(i64::from(row.get::<_, i32>(1))),
    })
}

fn kb_info(row: &Row) -> KbInfo {
    KbInfo {
        name: row.get(0),
        embed_model: row.get(1),
        dimension: to_u32(i64::from(row.get::<_, i32>(2))),
        created_at: row.get(3),
        documents: to_u64(row.get(4)),
        chunks: to_u64(row.get(5)),
    }
}

const KB_INFO_SQL: &str = "SELECT k.name, k.embed_model, k.dimension, k.created_at, \
       (SELECT count(*) FROM documents d WHERE d.kb_id = k.id), \
       (SELECT coalesce(sum(d.chunks), 0)::bigint FROM documents d WHERE d.kb_id = k.id) \
     FROM kbs k";

const HIT_COLUMNS: &str = "c.id, d.path, c.ordinal, c.text, c.line_start, c.line_end, c.page, \
     c.heading";

fn hit(row: &Row, score: f32) -> Hit {
    Hit {
        chunk_id: row.get(0),
        path: row.get(1),
        ordinal: to_u32(row.get(2)),
        text: row.get(3),
        location: Location {
            line_start: to_u32(row.get(4)),
            line_end: to_u32(row.get(5)),
            page: to_u32(row.get(6)),
            heading: row.get(7),
        },
        score,
    }
}

/// SQL conditions and their parameters for a filter, numbered from `first_param`.
struct FilterSql {
    conditions: String,
    params: Vec<Box<dyn ToSql + Sync>>,
}

fn filter_sql(filter: &Filter, first_param: usize) -> Result<FilterSql, VectorError> {
    let mut conditions = String::new();
    let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    if let Some(pattern) = &filter.path_glob {
        let regex = Glob::new(pattern)?.to_postgres_regex();
        conditions.push_str(&format!(" AND d.path ~ ${}", first_param + params.len()));
        params.push(Box::new(regex));
    }
    if !filter.tags.is_empty() {
        conditions.push_str(&format!(
            " AND d.tags @> ${}::text[]",
            first_param + params.len()
        ));
        params.push(Box::new(validate::normalize_tags(&filter.tags)));
    }
    Ok(FilterSql { conditions, params })
}

impl PgStore {
    /// Connects with the default schema (`moat`), creating the pgvector extension and the
    /// tables if needed.
    pub fn connect(url: &str) -> Result<Self, VectorError> {
        Self::connect_with(&PgConfig::new(url))
    }

    /// Connects with an explicit configuration.
    pub fn connect_with(config: &PgConfig) -> Result<Self, VectorError> {
        check_schema_name(&config.schema)?;
        let mut client = open_client(&config.url)?;
        let (vector_schema, version) = prepare_server(&mut client, &config.schema)?;
        Ok(Self {
            client: Mutex::new(client),
            config: config.clone(),
            vector_schema,
            iterative_scan: version >= (0, 8),
        })
    }

    /// The connection, reopened first if the server closed it.
    fn client(&self) -> Result<MutexGuard<'_, Client>, VectorError> {
        let mut client = lock(&self.client);
        if client.is_closed() {
            let mut fresh = open_client(&self.config.url)?;
            set_search_path(&mut fresh, &self.config.schema, &self.vector_schema)?;
            *client = fresh;
        }
        Ok(client)
    }

    fn vector_search(
        &self,
        kb: &str,
        query: &[f32],
        k: usize,
        filter: &Filter,
        exact: bool,
    ) -> Result<Vec<Hit>, VectorError> {
        validate_kb_name(kb)?;
        validate::check_search(k, filter)?;
        let filter_part = filter_sql(filter, 3)?;
        let mut client = self.client()?;
        let mut tx = client.transaction().map_err(storage)?;
        let row = kb_row(&mut tx, kb)?;
        validate::check_vector(kb, row.dimension, query)?;
        if k == 0 {
            return Ok(Vec::new());
        }
        let literal = vector_literal(query);
        let limit = i64::try_from(k).unwrap_or(i64::MAX);
        if !exact {
            let ef_search = (k * 2).clamp(40, 1000);
            tx.batch_execute(&format!("SET LOCAL hnsw.ef_search = {ef_search}"))
                .map_err(storage)?;
            if self.iterative_scan && !filter_part.conditions.is_empty() {
                tx.batch_execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                    .map_err(storage)?;
            }
        }
        // `+ 0` hides the distance from the planner's index matching: an exact scan. pgvector's
        // cosine distance is NaN for a zero vector; the seam scores it 0, as the embedded store.
        let order = if exact {
            "(c.embedding <=> $1::text::vector) + 0"
        } else {
            "c.embedding <=> $1::text::vector"
        };
        let sql = format!(
            "SELECT {HIT_COLUMNS}, \
               coalesce(nullif(1 - (c.embedding <=> $1::text::vector), 'NaN'), 0) \
             FROM {} c JOIN documents d ON d.id = c.document_id \
             WHERE true{} ORDER BY {order}, c.id LIMIT $2",
            chunks_table(row.id),
            filter_part.conditions
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&literal, &limit];
        params.extend(
            filter_part
                .params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync)),
        );
        let rows = tx.query(&sql, &params).map_err(storage)?;
        let mut hits: Vec<Hit> = rows
            .iter()
            .map(|r| hit(r, r.get::<_, Option<f64>>(8).unwrap_or(0.0) as f32))
            .collect();
        // A relaxed-order iterative scan may return neighbours slightly out of order.
        hits.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(a.chunk_id.cmp(&b.chunk_id))
        });
        if exact || hits.len() >= k {
            tx.commit().map_err(storage)?;
            return Ok(hits);
        }
        // The index scan may stop short when a filter rejects most of what it finds (and
        // older pgvector cannot continue past them): if more chunks qualify, answer exactly.
        let count_filter = filter_sql(filter, 1)?;
        let count_sql = format!(
            "SELECT count(*) FROM {} c JOIN documents d ON d.id = c.document_id WHERE true{}",
            chunks_table(row.id),
            count_filter.conditions
        );
        let count_params: Vec<&(dyn ToSql + Sync)> = count_filter
            .params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let admitted: i64 = tx
            .query_one(&count_sql, &count_params)
            .map_err(storage)?
            .get(0);
        tx.commit().map_err(storage)?;
        drop(client);
        if to_u64(admitted) > hits.len() as u64 {
            return self.vector_search(kb, query, k, filter, true);
        }
        Ok(hits)
    }
}

/// How long a connection reset during the handshake is retried.
const RESET_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(5);

fn open_client(url: &str) -> Result<Client, VectorError> {
    let config: postgres::Config = url
        .parse()
        .map_err(|e| VectorError::Storage(format!("invalid Postgres URL: {e}")))?;
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(20);
    loop {
        match config.connect(NoTls) {
            Ok(client) => return Ok(client),
            // A server that is still closing the previous session may reset the next one
            // during the handshake (PGlite, which serves one connection at a time, does): that
            // is transient, so retry briefly. A refused connection is not retried.
            Err(e) if is_connection_reset(&e) && started.elapsed() < RESET_RETRY_FOR => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
            Err(e) => {
                return Err(VectorError::Storage(format!(
                    "cannot connect to Postgres: {}",
                    describe(&e)
                )));
            }
        }
    }
}

fn is_connection_reset(error: &postgres::Error) -> bool {
    // PGlite may also close the new connection outright before the handshake completes
    // ("connection closed", no I/O error underneath): the same transient.
    if error.is_closed() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = cause.source();
    }
    false
}

fn set_search_path(
    client: &mut Client,
    schema: &str,
    vector_schema: &str,
) -> Result<(), VectorError> {
    client
        .batch_execute(&format!(
            "SET search_path TO {}, {}",
            quote_ident(schema),
            quote_ident(vector_schema)
        ))
        .map_err(storage)
}

/// Creates the extension, the schema and the tables if needed; checks the schema version.
/// Returns the extension's schema and version.
fn prepare_server(client: &mut Client, schema: &str) -> Result<(String, (u32, u32)), VectorError> {
    if let Err(e) = client.batch_execute("CREATE EXTENSION IF NOT EXISTS vector") {
        return Err(VectorError::Storage(format!(
            "the pgvector extension is not available on this server \
             (install pgvector, or load it into PGlite): {}",
            describe(&e)
        )));
    }
    let row = client
        .query_one(
            "SELECT n.nspname::text, e.extversion FROM pg_extension e \
             JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'",
            &[],
        )
        .map_err(storage)?;
    let vector_schema: String = row.get(0);
    let version_text: String = row.get(1);
    let mut parts = version_text
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));

    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(schema)
        ))
        .map_err(storage)?;
    set_search_path(client, schema, &vector_schema)?;
    let mut tx = client.transaction().map_err(storage)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS moat_meta (key text PRIMARY KEY, value text NOT NULL)",
    )
    .map_err(storage)?;
    let existing: Option<String> = tx
        .query_opt(
            "SELECT value FROM moat_meta WHERE key = 'schema_version'",
            &[],
        )
        .map_err(storage)?
        .map(|r| r.get(0));
    match existing.map(|v| v.parse::<i32>()) {
        None => {
            tx.batch_execute(
                "CREATE TABLE kbs (
                    id bigserial PRIMARY KEY,
                    name text NOT NULL UNIQUE,
                    embed_model text NOT NULL,
                    dimension integer NOT NULL,
                    created_at bigint NOT NULL
                );
                CREATE TABLE documents (
                    id bigserial PRIMARY KEY,
                    kb_id bigint NOT NULL REFERENCES kbs(id) ON DELETE CASCADE,
                    path text NOT NULL,
                    content_hash text NOT NULL,
                    tags text[] NOT NULL,
                    chunks bigint NOT NULL,
                    UNIQUE (kb_id, path)
                );
                CREATE INDEX documents_tags ON documents USING gin (tags);
                INSERT INTO moat_meta (key, value) VALUES ('schema_version', '1');",
            )
            .map_err(storage)?;
        }
        Some(Ok(found)) if found == SCHEMA_VERSION => {}
        Some(found) => {
            return Err(VectorError::Storage(format!(
                "schema {schema:?} has store schema version {found:?}; this moat understands \
                 {SCHEMA_VERSION}"
            )));
        }
    }
    tx.commit().map_err(storage)?;
    Ok((vector_schema, version))
}

fn create_chunks_table(
    tx: &mut Transaction<'_>,
    kb_id: i64,
    dimension: u32,
) -> Result<(), VectorError> {
    let table = chunks_table(kb_id);
    let mut sql = format!(
        "CREATE TABLE {table} (
            id bigserial PRIMARY KEY,
            document_id bigint NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal bigint NOT NULL,
            text text NOT NULL,
            line_start bigint NOT NULL,
            line_end bigint NOT NULL,
            page bigint NOT NULL,
            heading text NOT NULL,
            embedding vector({dimension}) NOT NULL,
            tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED
        );
        CREATE INDEX {table}_document ON {table} (document_id);
        CREATE INDEX {table}_tsv ON {table} USING gin (tsv);"
    );
    if dimension <= MAX_HNSW_DIMENSION {
        sql.push_str(&format!(
            "CREATE INDEX {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops);"
        ));
    }
    tx.batch_execute(&sql).map_err(storage)
}

impl VectorStore for PgStore {
    fn create_kb(&self, spec: &KbSpec) -> Result<KbInfo, VectorError> {
        validate_kb_name(&spec.name)?;
        validate::check_dimension(spec.dimension)?;
        if spec.embed_model.is_empty() || spec.embed_model.len() > 256 {
            return Err(VectorError::Invalid(
                "the embedding model's name must be 1-256 bytes".into(),
            ));
        }
        let dimension = i32::try_from(spec.dimension)
            .map_err(|_| VectorError::Invalid("dimension out of range".into()))?;
        let mut client = self.client()?;
        let mut tx = client.transaction().map_err(storage)?;
        let created_at = now_secs();
        let inserted = tx.query_one(
            "INSERT INTO kbs (name, embed_model, dimension, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
            &[&spec.name, &spec.embed_model, &dimension, &created_at],
        );
        let kb_id: i64 = match inserted {
            Ok(row) => row.get(0),
            Err(e) if is_unique_violation(&e) => {
                return Err(VectorError::KbExists(spec.name.clone()))
            }
            Err(e) => return Err(storage(e)),
        };
        create_chunks_table(&mut tx, kb_id, spec.dimension)?;
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
        let row = self
            .client()?
            .query_opt(&format!("{KB_INFO_SQL} WHERE k.name = $1"), &[&name])
            .map_err(storage)?
            .ok_or_else(|| VectorError::NoSuchKb(name.to_owned()))?;
        Ok(kb_info(&row))
    }

    fn list_kbs(&self) -> Result<Vec<KbInfo>, VectorError> {
        let rows = self
            .client()?
            .query(&format!("{KB_INFO_SQL} ORDER BY k.name COLLATE \"C\""), &[])
            .map_err(storage)?;
        Ok(rows.iter().map(kb_info).collect())
    }

    fn delete_kb(&self, name: &str) -> Result<(), VectorError> {
        validate_kb_name(name)?;
        let mut client = self.client()?;
        let mut tx = client.transaction().map_err(storage)?;
        let row = kb_row(&mut tx, name)?;
        tx.batch_execute(&format!("DROP TABLE {}", chunks_table(row.id)))
            .map_err(storage)?;
        tx.execute("DELETE FROM kbs WHERE id = $1", &[&row.id])
            .map_err(storage)?;
        tx.commit().map_err(storage)
    }

    fn documents(&self, kb: &str) -> Result<Vec<DocumentInfo>, VectorError> {
        validate_kb_name(kb)?;
        let mut client = self.client()?;
        let row = kb_row(&mut *client, kb)?;
        let rows = client
            .query(
                "SELECT path, content_hash, chunks, tags FROM documents WHERE kb_id = $1 \
                 ORDER BY path COLLATE \"C\"",
                &[&row.id],
            )
            .map_err(storage)?;
        Ok(rows
            .iter()
            .map(|r| DocumentInfo {
                path: r.get(0),
                content_hash: r.get(1),
                chunks: to_u64(r.get(2)),
                tags: r.get(3),
            })
            .collect())
    }

    fn replace_document(
        &self,
        kb: &str,
        document: &NewDocument,
        chunks: &[NewChunk],
    ) -> Result<(), VectorError> {
        validate_kb_name(kb)?;
        let mut client = self.client()?;
        let mut tx = client.transaction().map_err(storage)?;
        let row = kb_row(&mut tx, kb)?;
        validate::check_document(kb, row.dimension, document, chunks)?;
        // The old chunks go with the old document (ON DELETE CASCADE).
        tx.execute(
            "DELETE FROM documents WHERE kb_id = $1 AND path = $2",
            &[&row.id, &document.path],
        )
        .map_err(storage)?;
        let tags = validate::normalize_tags(&document.tags);
        let chunk_count = i64::try_from(chunks.len()).unwrap_or(i64::MAX);
        let document_id: i64 = tx
            .query_one(
                "INSERT INTO documents (kb_id, path, content_hash, tags, chunks) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[
                    &row.id,
                    &document.path,
                    &document.content_hash,
                    &tags,
                    &chunk_count,
                ],
            )
            .map_err(storage)?
            .get(0);
        // One statement per batch of chunks (columns as arrays, unnested server-side) rather
        // than a round trip per chunk.
        let insert = tx
            .prepare(&format!(
                "INSERT INTO {} (document_id, ordinal, text, line_start, line_end, page, \
                   heading, embedding) \
                 SELECT $1, u.ordinal, u.text, u.line_start, u.line_end, u.page, u.heading, \
                   u.embedding::vector \
                 FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[], \
                   $6::bigint[], $7::text[], $8::text[]) \
                   AS u(ordinal, text, line_start, line_end, page, heading, embedding)",
                chunks_table(row.id)
            ))
            .map_err(storage)?;
        for batch in chunks.chunks(INSERT_BATCH) {
            let column = |f: fn(&NewChunk) -> i64| batch.iter().map(f).collect::<Vec<i64>>();
            let ordinals = column(|c| i64::from(c.ordinal));
            let line_starts = column(|c| i64::from(c.location.line_start));
            let line_ends = column(|c| i64::from(c.location.line_end));
            let pages = column(|c| i64::from(c.location.page));
            let texts: Vec<&str> = batch.iter().map(|c| c.text.as_str()).collect();
            let headings: Vec<&str> = batch.iter().map(|c| c.location.heading.as_str()).collect();
            let embeddings: Vec<String> =
                batch.iter().map(|c| vector_literal(&c.embedding)).collect();
            tx.execute(
                &insert,
                &[
                    &document_id,
                    &ordinals,
                    &texts,
                    &line_starts,
                    &line_ends,
                    &pages,
                    &headings,
                    &embeddings,
                ],
            )
            .map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }

    fn remove_document(&self, kb: &str, path: &str) -> Result<bool, VectorError> {
        validate_kb_name(kb)?;
        validate::check_path(path)?;
        let mut client = self.client()?;
        let row = kb_row(&mut *client, kb)?;
        let removed = client
            .execute(
                "DELETE FROM documents WHERE kb_id = $1 AND path = $2",
                &[&row.id, &path],
            )
            .map_err(storage)?;
        Ok(removed > 0)
    }

    fn search_vector(
        &self,
        kb: &str,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>, VectorError> {
        self.vector_search(kb, query, k, filter, false)
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
        let terms = query_terms(query);
        let filter_part = filter_sql(filter, 2 + terms.len())?;
        let mut client = self.client()?;
        let row = kb_row(&mut *client, kb)?;
        if k == 0 || terms.is_empty() {
            return Ok(Vec::new());
        }
        // Each word becomes its own plainto_tsquery (which never fails on any input), ORed:
        // nothing the user typed is read as tsquery syntax.
        let tsquery = (0..terms.len())
            .map(|i| format!("plainto_tsquery('simple', ${})", i + 2))
            .collect::<Vec<_>>()
            .join(" || ");
        let sql = format!(
            "SELECT {HIT_COLUMNS}, ts_rank(c.tsv, q.query) AS score \
             FROM {} c JOIN documents d ON d.id = c.document_id, (SELECT {tsquery} AS query) q \
             WHERE c.tsv @@ q.query{} ORDER BY score DESC, c.id LIMIT $1",
            chunks_table(row.id),
            filter_part.conditions
        );
        let limit = i64::try_from(k).unwrap_or(i64::MAX);
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&limit];
        params.extend(terms.iter().map(|t| t as &(dyn ToSql + Sync)));
        params.extend(
            filter_part
                .params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync)),
        );
        let rows = client.query(&sql, &params).map_err(storage)?;
        Ok(rows.iter().map(|r| hit(r, r.get::<_, f32>(8))).collect())
    }
}
