//! The embedded store's read paths over SQLite: which documents a filter admits, exact cosine
//! scores, and turning ranked candidate ids into hits (dropping those deleted since an index
//! was built). Shared by vector search, exact search and keyword search.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::{schema, storage, KbRow, LOOKUP_BATCH};
use crate::glob::Glob;
use crate::validate::{self, normalized};
use crate::{Hit, Location, VectorError};

/// Which documents a filter admits: their ids and how many chunks they hold in all.
pub(super) struct Admitted {
    pub documents: HashSet<i64>,
    pub chunks: u64,
}

pub(super) fn decode_vector(
    chunk_id: i64,
    bytes: &[u8],
    dimension: u32,
) -> Result<Vec<f32>, VectorError> {
    if bytes.len() != dimension as usize * 4 {
        return Err(VectorError::Storage(format!(
            "chunk {chunk_id} has an embedding of {} bytes; expected {}",
            bytes.len(),
            dimension as usize * 4
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The documents a filter admits, or `None` when the filter admits everything.
pub(super) fn admitted_documents(
    conn: &Connection,
    kb_id: i64,
    glob: Option<&Glob>,
    tags: &[String],
) -> Result<Option<Admitted>, VectorError> {
    if glob.is_none() && tags.is_empty() {
        return Ok(None);
    }
    let tags = validate::normalize_tags(tags);
    let mut sql = String::from(
        "SELECT d.id, d.path, (SELECT count(*) FROM chunks c WHERE c.document_id = d.id) \
         FROM documents d WHERE d.kb_id = ?1",
    );
    if !tags.is_empty() {
        let marks: Vec<String> = (0..tags.len()).map(|i| format!("?{}", i + 2)).collect();
        sql.push_str(&format!(
            " AND d.id IN (SELECT document_id FROM document_tags WHERE tag IN ({}) \
             GROUP BY document_id HAVING count(*) = {})",
            marks.join(", "),
            tags.len()
        ));
    }
    let mut values: Vec<rusqlite::types::Value> = vec![kb_id.into()];
    values.extend(tags.iter().map(|t| t.clone().into()));
    let mut statement = conn.prepare(&sql).map_err(storage)?;
    let mut rows = statement.query(params_from_iter(values)).map_err(storage)?;
    let mut admitted = Admitted {
        documents: HashSet::new(),
        chunks: 0,
    };
    while let Some(r) = rows.next().map_err(storage)? {
        let path: String = r.get(1).map_err(storage)?;
        if glob.is_none_or(|g| g.matches(&path)) {
            admitted.documents.insert(r.get(0).map_err(storage)?);
            admitted.chunks += r.get::<_, u64>(2).map_err(storage)?;
        }
    }
    Ok(Some(admitted))
}

/// Cosine scores of every chunk of the knowledge base with an id above `above_id` that the
/// filter admits.
pub(super) fn exact_scores(
    conn: &Connection,
    row: &KbRow,
    unit: &[f32],
    above_id: i64,
    admitted: Option<&Admitted>,
) -> Result<Vec<(i64, f32)>, VectorError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT id, document_id, embedding FROM chunks WHERE kb_id = ?1 AND id > ?2",
        )
        .map_err(storage)?;
    let mut rows = statement
        .query(params![row.id, above_id])
        .map_err(storage)?;
    let mut scored = Vec::new();
    while let Some(r) = rows.next().map_err(storage)? {
        let document_id: i64 = r.get(1).map_err(storage)?;
        if admitted.is_some_and(|a| !a.documents.contains(&document_id)) {
            continue;
        }
        let id: i64 = r.get(0).map_err(storage)?;
        let bytes = r.get_ref(2).map_err(storage)?.as_blob().map_err(|e| {
            VectorError::Storage(format!("chunk {id}: embedding is not a blob: {e}"))
        })?;
        let vector = normalized(&decode_vector(id, bytes, row.dimension)?);
        scored.push((id, validate::dot(unit, &vector)));
    }
    Ok(scored)
}

/// Best score first; ties by chunk id, so results are deterministic.
pub(super) fn sort_best_first(scored: &mut [(i64, f32)]) {
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

/// Looks candidates up in SQLite in order and keeps the first `k` that still exist and that the
/// filter admits (a candidate from the index may have been deleted since it was built).
pub(super) fn lookup_hits(
    conn: &Connection,
    kb_id: i64,
    candidates: &[(i64, f32)],
    admitted: Option<&Admitted>,
    k: usize,
) -> Result<Vec<Hit>, VectorError> {
    let mut hits = Vec::new();
    for batch in candidates.chunks(LOOKUP_BATCH) {
        let marks: Vec<String> = (0..batch.len()).map(|i| format!("?{}", i + 2)).collect();
        let sql = format!(
            "SELECT c.id, c.document_id, d.path, c.ordinal, c.text, c.line_start, c.line_end, \
               c.page, c.heading \
             FROM chunks c JOIN documents d ON d.id = c.document_id \
             WHERE c.kb_id = ?1 AND c.id IN ({})",
            marks.join(", ")
        );
        let mut values = vec![kb_id];
        values.extend(batch.iter().map(|(id, _)| *id));
        let mut statement = conn.prepare(&sql).map_err(storage)?;
        let mut rows = statement.query(params_from_iter(values)).map_err(storage)?;
        let mut found: HashMap<i64, (i64, Hit)> = HashMap::new();
        while let Some(r) = rows.next().map_err(storage)? {
            let id: i64 = r.get(0).map_err(storage)?;
            let hit = Hit {
                chunk_id: id,
                path: r.get(2).map_err(storage)?,
                ordinal: r.get(3).map_err(storage)?,
                text: r.get(4).map_err(storage)?,
                location: Location {
                    line_start: r.get(5).map_err(storage)?,
                    line_end: r.get(6).map_err(storage)?,
                    page: r.get(7).map_err(storage)?,
                    heading: r.get(8).map_err(storage)?,
                },
                score: 0.0,
            };
            found.insert(id, (r.get(1).map_err(storage)?, hit));
        }
        for (id, score) in batch {
            let Some((document_id, mut hit)) = found.remove(id) else {
                continue;
            };
            if admitted.is_some_and(|a| !a.documents.contains(&document_id)) {
                continue;
            }
            hit.score = *score;
            hits.push(hit);
            if hits.len() == k {
                return Ok(hits);
            }
        }
    }
    Ok(hits)
}

/// The terms of a keyword query worth the cost of searching: `terms` without those in half or
/// more of the knowledge base's chunks, unless that would leave none.
///
/// A keyword query is an OR of its terms, and FTS5 scores and sorts every chunk that matches
/// any of them, so a common word ("the", "in", "for") makes the query touch most of the
/// knowledge base (80 ms of a 99 ms hybrid query at 100k chunks). Such a term weighs nothing:
/// FTS5's BM25 clamps the IDF of a term in half or more of the rows to 1e-6, so dropping it
/// leaves the ranking of every chunk that matches another term unchanged. Dropping stop words
/// by a list was tried and rejected: in a small knowledge base "how" or "my" can be as rare as
/// a topical word and weigh as much, and dropping them cost the Rust-book benchmark a question
/// at hybrid recall@5.
pub(super) fn searched_terms(
    conn: &Connection,
    kb_id: i64,
    terms: Vec<String>,
) -> Result<Vec<String>, VectorError> {
    if terms.len() < 2 {
        return Ok(terms);
    }
    let vocabulary = format!("fts_vocab_kb_{kb_id}");
    // The vocabulary view is virtual (nothing stored) and lives in this connection's temp schema.
    conn.execute_batch(&format!(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.{vocabulary} \
         USING fts5vocab(main, {}, 'row')",
        schema::fts_table(kb_id)
    ))
    .map_err(storage)?;
    let total: i64 = conn
        .query_row(
            "SELECT count(*) FROM chunks WHERE kb_id = ?1",
            [kb_id],
            |r| r.get(0),
        )
        .map_err(storage)?;
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT doc FROM temp.{vocabulary} WHERE term = ?1"
        ))
        .map_err(storage)?;
    let mut kept = Vec::with_capacity(terms.len());
    for term in &terms {
        let documents: i64 = statement
            .query_row([term], |r| r.get(0))
            .optional()
            .map_err(storage)?
            .unwrap_or(0);
        // FTS5's IDF is ln((N - n + 0.5) / (n + 0.5)), clamped when not positive: n >= N / 2.
        if documents * 2 < total {
            kept.push(term.clone());
        }
    }
    Ok(if kept.is_empty() { terms } else { kept })
}
