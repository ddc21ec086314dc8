//! The approximate-nearest-neighbour index of one knowledge base: an HNSW graph
//! (`instant-distance`) over the unit-length embeddings, mapping each point to its chunk id.
//!
//! The index is only a cache of what SQLite holds. Its file carries the database's id, the
//! knowledge base's id and dimension, and the generation it was built at; the store trusts a
//! file only when all of them match, and otherwise rebuilds it from SQLite. The file is written
//! atomically (temp file, fsync, rename, fsync of the folder) and opens with a sha256 of its
//! body, so a torn or damaged file is detected and rebuilt rather than trusted.
//!
//! `instant-distance` builds a graph in one go and cannot insert or delete afterwards. The
//! store copes with that above this file: chunks newer than the index are searched exactly
//! (the "tail"), deleted ones are dropped when the candidates are looked up in SQLite, and the
//! index is rebuilt when either grows too large.

use std::fs;
use std::io::Write;
use std::path::Path;

use instant_distance::{Builder, HnswMap, Search};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::validate::dot;

/// How many candidates one search of the graph yields (HNSW's `ef` at query time). It bounds
/// how far a filtered search can over-fetch before it falls back to exact search.
pub const EF_SEARCH: usize = 256;
/// The build's `ef`. Build time grows linearly with it (10k x 384 random unit vectors: about
/// twice as long at 200 as at 100), while the query-time `ef` of 256 keeps recall high.
const EF_CONSTRUCTION: usize = 100;
const MAGIC: &[u8; 8] = b"MOATANN1";
const HEADER_LEN: usize = MAGIC.len() + 32;

/// A unit-length embedding; the distance is 1 - cosine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UnitPoint(pub Vec<f32>);

impl instant_distance::Point for UnitPoint {
    fn distance(&self, other: &Self) -> f32 {
        1.0 - dot(&self.0, &other.0)
    }
}

/// What identifies the data an index was built from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexKey {
    pub store_id: String,
    pub kb_id: i64,
    pub dimension: u32,
    pub generation: i64,
}

#[derive(Serialize, Deserialize)]
struct IndexFile {
    key: IndexKey,
    max_chunk_id: i64,
    len: usize,
    map: HnswMap<UnitPoint, i64>,
}

/// A built index, in memory.
pub struct AnnIndex {
    pub key: IndexKey,
    /// The highest chunk id the index holds; chunks above it are the tail.
    pub max_chunk_id: i64,
    len: usize,
    map: HnswMap<UnitPoint, i64>,
}

impl AnnIndex {
    /// Builds the graph over `rows` (chunk id, unit-length embedding).
    pub fn build(key: IndexKey, rows: Vec<(i64, Vec<f32>)>) -> Self {
        let max_chunk_id = rows.iter().map(|(id, _)| *id).max().unwrap_or(0);
        let len = rows.len();
        let (ids, points): (Vec<i64>, Vec<UnitPoint>) = rows
            .into_iter()
            .map(|(id, vector)| (id, UnitPoint(vector)))
            .unzip();
        let map = Builder::default()
            .ef_construction(EF_CONSTRUCTION)
            .ef_search(EF_SEARCH)
            .seed(0x6d6f6174)
            .build(points, ids);
        Self {
            key,
            max_chunk_id,
            len,
            map,
        }
    }

    /// How many points the graph holds (live or since deleted).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Up to [`EF_SEARCH`] (chunk id, cosine) pairs near `unit_query`, best first.
    pub fn search(&self, unit_query: &[f32]) -> Vec<(i64, f32)> {
        if self.len == 0 {
            return Vec::new();
        }
        let mut search = Search::default();
        self.map
            .search(&UnitPoint(unit_query.to_vec()), &mut search)
            .map(|item| (*item.value, 1.0 - item.distance))
            .collect()
    }

    /// Writes the index to `path` atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let file = IndexFileRef {
            key: &self.key,
            max_chunk_id: self.max_chunk_id,
            len: self.len,
            map: &self.map,
        };
        let body = bincode::serialize(&file).map_err(std::io::Error::other)?;
        let digest = Sha256::digest(&body);
        let dir = path
            .parent()
            .ok_or_else(|| std::io::Error::other("index path has no folder"))?;
        fs::create_dir_all(dir)?;
        let mut temp = tempfile::NamedTempFile::new_in(dir)?;
        temp.write_all(MAGIC)?;
        temp.write_all(&digest)?;
        temp.write_all(&body)?;
        temp.as_file().sync_all()?;
        temp.persist(path).map_err(|e| e.error)?;
        fs::File::open(dir)?.sync_all()
    }

    /// Reads the index at `path` if it was built from exactly `expected`; `Err` says why not
    /// (missing, damaged, or built from other data), for the log line of the rebuild.
    pub fn read(path: &Path, expected: &IndexKey) -> Result<Self, String> {
        let bytes = fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Err("not an index file of this version".into());
        }
        let body = &bytes[HEADER_LEN..];
        if Sha256::digest(body).as_slice() != &bytes[MAGIC.len()..HEADER_LEN] {
            return Err("checksum mismatch (damaged file)".into());
        }
        let file: IndexFile =
            bincode::deserialize(body).map_err(|e| format!("cannot decode: {e}"))?;
        if &file.key != expected {
            return Err(format!(
                "built from {:?}, the database is at {:?}",
                file.key, expected
            ));
        }
        Ok(Self {
            key: file.key,
            max_chunk_id: file.max_chunk_id,
            len: file.len,
            map: file.map,
        })
    }
}

/// The borrowed twin of [`IndexFile`], so writing does not clone the graph.
#[derive(Serialize)]
struct IndexFileRef<'a> {
    key: &'a IndexKey,
    max_chunk_id: i64,
    len: usize,
    map: &'a HnswMap<UnitPoint, i64>,
}
