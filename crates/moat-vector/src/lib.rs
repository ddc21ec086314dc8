//! The knowledge store's seam: [`VectorStore`], what every backend of a knowledge base
//! implements (the embedded [`SqliteStore`], Postgres + pgvector in `moat-vector-pg`), the
//! records that cross it, the checks both share ([`validate`], [`glob`], [`terms`]), and
//! [`conformance`], the one suite every implementation must pass.
//!
//! A store holds knowledge bases (collections). A knowledge base has a fixed embedding model and
//! dimension; it holds documents (one per source path, with the hash of its content), and each
//! document holds chunks (text, location, tags, one embedding). Two searches answer a query:
//! nearest neighbours by cosine similarity over the embeddings, and keyword relevance (BM25 in
//! SQLite's FTS5, `ts_rank` in Postgres). Fusing them (reciprocal rank) is the retrieval layer's
//! job, above this seam.
//!
//! Every method is synchronous: callers on an async runtime use `spawn_blocking`. Every write is
//! atomic: `replace_document` swaps a document's chunks in one transaction, so a kill at any
//! point leaves either the old document or the new one, never a mix.

use serde::{Deserialize, Serialize};

pub mod conformance;
pub mod glob;
mod sqlite;
pub mod terms;
pub mod validate;

pub use sqlite::{IndexStats, SqliteStore};

/// A knowledge base's name: 1-64 characters of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
pub fn validate_kb_name(name: &str) -> Result<(), VectorError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(VectorError::InvalidName(name.to_owned()))
    }
}

/// What `create` needs to know of a new knowledge base.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KbSpec {
    pub name: String,
    /// The embedding model's name in the model store (`all-minilm-l6-v2`).
    pub embed_model: String,
    /// The embedding dimension; every vector written or searched must have it.
    pub dimension: u32,
}

/// A knowledge base as stored, with its counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KbInfo {
    pub name: String,
    pub embed_model: String,
    pub dimension: u32,
    pub documents: u64,
    pub chunks: u64,
    /// Unix seconds.
    pub created_at: i64,
}

/// A document as stored: enough to decide whether a file changed since its last ingest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentInfo {
    /// The document's key: a path relative to the root it was added from, `/`-separated (or an
    /// upload's name). Unique within a knowledge base.
    pub path: String,
    /// sha256 of the document's bytes, lowercase hex.
    pub content_hash: String,
    pub chunks: u64,
    pub tags: Vec<String>,
}

/// Where a chunk sits in its document, for citations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// 1-based first and last line (for text formats), 0 when unknown.
    pub line_start: u32,
    pub line_end: u32,
    /// 1-based page (PDF), 0 when not paged.
    pub page: u32,
    /// The heading path the chunk sits under (`Install > From source`), empty when none.
    pub heading: String,
}

/// One chunk to write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewChunk {
    /// The chunk's position in its document, from 0.
    pub ordinal: u32,
    pub text: String,
    pub location: Location,
    pub embedding: Vec<f32>,
}

/// One document to write with all of its chunks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewDocument {
    pub path: String,
    pub content_hash: String,
    pub tags: Vec<String>,
}

/// Which chunks a search may return. Empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// A glob over the document path: `*` matches within one path segment, `**` across
    /// segments, `?` one character. `docs/**/*.md`.
    pub path_glob: Option<String>,
    /// The document must carry every one of these tags.
    pub tags: Vec<String>,
}

/// One search result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// Stable within a store until the document is replaced.
    pub chunk_id: i64,
    pub path: String,
    pub ordinal: u32,
    pub text: String,
    pub location: Location,
    /// Vector search: cosine similarity in [-1, 1], higher is closer. Keyword search: the
    /// backend's relevance (BM25 or ts_rank), higher is better, comparable only within one
    /// result list.
    pub score: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("knowledge base {0:?} does not exist")]
    NoSuchKb(String),
    #[error("knowledge base {0:?} already exists")]
    KbExists(String),
    #[error("invalid knowledge base name {0:?}: use 1-64 letters, digits, '.', '_' or '-'")]
    InvalidName(String),
    #[error("vector has dimension {got}; knowledge base {kb:?} uses {expected}")]
    DimensionMismatch { kb: String, expected: u32, got: u32 },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("storage: {0}")]
    Storage(String),
}

/// The knowledge store seam. See the crate docs for the model.
pub trait VectorStore: Send + Sync {
    /// Creates a knowledge base; `KbExists` if the name is taken.
    fn create_kb(&self, spec: &KbSpec) -> Result<KbInfo, VectorError>;
    fn kb(&self, name: &str) -> Result<KbInfo, VectorError>;
    /// Every knowledge base, by name.
    fn list_kbs(&self) -> Result<Vec<KbInfo>, VectorError>;
    /// Deletes a knowledge base and all it holds; `NoSuchKb` if absent.
    fn delete_kb(&self, name: &str) -> Result<(), VectorError>;

    /// Every document of a knowledge base, by path.
    fn documents(&self, kb: &str) -> Result<Vec<DocumentInfo>, VectorError>;
    /// Writes a document with its chunks, replacing any document with the same path, in one
    /// transaction. Every embedding must have the knowledge base's dimension.
    fn replace_document(
        &self,
        kb: &str,
        document: &NewDocument,
        chunks: &[NewChunk],
    ) -> Result<(), VectorError>;
    /// Removes a document and its chunks; false if there was none.
    fn remove_document(&self, kb: &str, path: &str) -> Result<bool, VectorError>;

    /// The `k` chunks whose embeddings are closest to `query` by cosine similarity, best first,
    /// among those `filter` admits. May be approximate (an ANN index).
    fn search_vector(
        &self,
        kb: &str,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>, VectorError>;
    /// The `k` chunks most relevant to `query` by keywords, best first, among those `filter`
    /// admits. A query with no searchable word returns nothing, never an error.
    fn search_text(
        &self,
        kb: &str,
        query: &str,
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>, VectorError>;

    /// Brings `kb`'s approximate-nearest-neighbour index up to date now, so the next search
    /// (in this process or the next) uses it instead of exact search or a background build.
    /// Ingestion ends with it. Stores whose index keeps itself current do nothing.
    fn finish_indexing(&self, kb: &str) -> Result<(), VectorError> {
        let _ = kb;
        Ok(())
    }
}
