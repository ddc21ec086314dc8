//! Knowledge-base logic above the [`VectorStore`](moat_vector::VectorStore) and
//! [`Embedder`](moat_engine::Embedder) seams: turning files into structured text ([`parse`]),
//! cutting that text into chunks that follow its structure within a token budget ([`chunk`]),
//! walking folders and writing documents into a knowledge base incrementally
//! ([`mod@ingest`]), hybrid keyword + vector retrieval fused by reciprocal rank
//! ([`mod@retrieve`]), and building the grounded prompt with numbered passages and its
//! citations ([`grounded`]).
//!
//! It knows nothing of HTTP, the command line or a particular store or model: the server and
//! the CLI call these functions with the store and embedder they opened. Every call blocks
//! (file IO, embedding, store transactions); async callers use `spawn_blocking`.

pub mod chunk;
mod error;
pub mod grounded;
pub mod ingest;
pub mod parse;
pub mod retrieve;

pub use chunk::{chunk_document, Chunk, ChunkConfig};
pub use error::{ErrorKind, RagError};
pub use grounded::{
    cited_markers, ground, query_from_messages, Citation, Grounded, GroundingConfig, NoAnswerPolicy,
};
pub use ingest::{
    ingest, ingest_bytes, DocumentOutcome, FileFailure, IngestOptions, IngestProgress, IngestReport,
};
pub use parse::{parse_bytes, Block, BlockKind, Format, ParseError, ParseOptions, ParsedDocument};
pub use retrieve::{
    fuse, retrieve, retrieve_counted, IdentityReranker, Reranker, RetrieveParams, Retrieved,
    RetrievedHit, SearchMode,
};
