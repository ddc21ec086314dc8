//! Hybrid retrieval: keyword search (BM25 through [`VectorStore::search_text`]) and vector
//! search ([`VectorStore::search_vector`]) fused by reciprocal rank, then an optional rerank.
//!
//! Reciprocal-rank fusion scores a chunk `sum over lists of 1 / (k + rank)` with 1-based ranks
//! and `k = 60` by default (Cormack et al.): it needs no calibration between BM25 scores and
//! cosine similarities, which live on unrelated scales.
//!
//! `min_score` is a floor on the cosine similarity between the query's and the chunk's
//! embeddings, the only score comparable across queries:
//! - vector mode: hits below it are dropped;
//! - hybrid mode: vector hits below it are dropped before fusion, and hits found only by
//!   keywords (whose similarity the store does not report) are kept only when at least one
//!   vector hit passed, so a query about nothing in the knowledge base returns nothing (and the
//!   grounded prompt's no-answer policy applies) while exact keyword matches still rank when
//!   the topic is there;
//! - text mode: ignored, as BM25 scores mean nothing across queries.

use std::collections::HashMap;

use moat_engine::{EmbedInput, Embedder};
use moat_vector::{Filter, Hit, VectorStore};

use crate::RagError;

/// Which searches run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SearchMode {
    /// Both, fused by reciprocal rank.
    #[default]
    Hybrid,
    /// Embeddings only.
    Vector,
    /// Keywords (BM25) only; the query is not embedded.
    Text,
}

/// What a retrieval asks for. `Default` is a hybrid search for the best 5 chunks.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrieveParams {
    pub mode: SearchMode,
    /// How many hits to return at most.
    pub top_k: usize,
    /// How many candidates each search returns before fusion; `None` is `max(4 * top_k, 20)`.
    pub candidates: Option<usize>,
    /// The `k` of reciprocal-rank fusion (60).
    pub rrf_k: f32,
    /// The floor on cosine similarity; see the module docs for what it applies to in each mode.
    pub min_score: Option<f32>,
    /// Passed to both searches unchanged.
    pub filter: Filter,
}

impl Default for RetrieveParams {
    fn default() -> Self {
        RetrieveParams {
            mode: SearchMode::Hybrid,
            top_k: 5,
            candidates: None,
            rrf_k: 60.0,
            min_score: None,
            filter: Filter::default(),
        }
    }
}

/// The most candidates one search may ask for (the stores' own limit on `k`).
const MAX_CANDIDATES: usize = 10_000;

/// One retrieved chunk with how each search ranked it.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrievedHit {
    /// The chunk as the store returned it; `hit.score` is the score of the search that found it
    /// first (the vector similarity when the vector search found it).
    pub hit: Hit,
    /// The fused score (reciprocal-rank sum; in single-search modes the same formula over one
    /// list), or what the reranker set. Higher is better.
    pub score: f32,
    /// 1-based rank in the vector search's candidates, if it was among them.
    pub vector_rank: Option<usize>,
    /// Cosine similarity to the query, when the vector search found the chunk.
    pub vector_score: Option<f32>,
    /// 1-based rank in the keyword search's candidates, if it was among them.
    pub text_rank: Option<usize>,
}

/// A stage after fusion that may reorder, rescore or drop hits (a cross-encoder, say). It gets
/// the fused candidates, best first, and returns the order to use; the caller then keeps the
/// first `top_k`.
pub trait Reranker: Send + Sync {
    fn rerank(&self, query: &str, hits: Vec<RetrievedHit>) -> Result<Vec<RetrievedHit>, RagError>;
}

/// Keeps the fused order: the default reranker.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityReranker;

impl Reranker for IdentityReranker {
    fn rerank(&self, _query: &str, hits: Vec<RetrievedHit>) -> Result<Vec<RetrievedHit>, RagError> {
        Ok(hits)
    }
}

/// Searches knowledge base `kb` for `query`. The embedder must be the knowledge base's model
/// (checked by dimension); a missing knowledge base is the store's `NoSuchKb`.
pub fn retrieve(
    store: &dyn VectorStore,
    embedder: &dyn Embedder,
    kb: &str,
    query: &str,
    params: &RetrieveParams,
    reranker: &dyn Reranker,
) -> Result<Vec<RetrievedHit>, RagError> {
    retrieve_counted(store, embedder, kb, query, params, reranker).map(|found| found.hits)
}

/// What [`retrieve_counted`] found, and what embedding the query cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Retrieved {
    pub hits: Vec<RetrievedHit>,
    /// The tokens the query's embedding took, special tokens included (0 when the query was
    /// not embedded: a text search, or `top_k` 0): what to charge for it.
    pub embed_tokens: u64,
}

/// [`retrieve`], also saying how many tokens embedding the query took.
pub fn retrieve_counted(
    store: &dyn VectorStore,
    embedder: &dyn Embedder,
    kb: &str,
    query: &str,
    params: &RetrieveParams,
    reranker: &dyn Reranker,
) -> Result<Retrieved, RagError> {
    if query.trim().is_empty() {
        return Err(RagError::Invalid("the query is empty".into()));
    }
    if !(params.rrf_k.is_finite() && params.rrf_k >= 0.0) {
        return Err(RagError::Invalid(format!(
            "rrf_k must be a non-negative number, not {}",
            params.rrf_k
        )));
    }
    if params.top_k == 0 {
        return Ok(Retrieved {
            hits: Vec::new(),
            embed_tokens: 0,
        });
    }
    let candidates = params
        .candidates
        .unwrap_or_else(|| params.top_k.saturating_mul(4).max(20))
        .clamp(params.top_k.min(MAX_CANDIDATES), MAX_CANDIDATES);
    let info = store.kb(kb)?;
    let mut embed_tokens = 0;
    let vector_hits = match params.mode {
        SearchMode::Text => Vec::new(),
        SearchMode::Hybrid | SearchMode::Vector => {
            let expected = info.dimension;
            let dimension = embedder.info().dimension;
            if dimension != expected {
                return Err(RagError::EmbedderMismatch {
                    kb: kb.to_owned(),
                    expected,
                    embedder: dimension,
                });
            }
            let (vector, tokens) = embed_query(embedder, query)?;
            embed_tokens = tokens;
            store.search_vector(kb, &vector, candidates, &params.filter)?
        }
    };
    let text_hits = match params.mode {
        SearchMode::Vector => Vec::new(),
        SearchMode::Hybrid | SearchMode::Text => {
            store.search_text(kb, query, candidates, &params.filter)?
        }
    };
    let fused = fuse(vector_hits, text_hits, params);
    let mut reranked = reranker.rerank(query, fused)?;
    reranked.truncate(params.top_k);
    Ok(Retrieved {
        hits: reranked,
        embed_tokens,
    })
}

/// The query's embedding and the tokens it took.
fn embed_query(embedder: &dyn Embedder, query: &str) -> Result<(Vec<f32>, u64), RagError> {
    let embeddings = embedder.embed(&[EmbedInput::Text(query.to_owned())])?;
    let tokens = embeddings.prompt_tokens;
    let vector = embeddings.vectors.into_iter().next().ok_or_else(|| {
        RagError::Embed(moat_engine::EngineError::Internal(
            "the embedder returned no vector for the query".into(),
        ))
    })?;
    Ok((vector, tokens))
}

/// Reciprocal-rank fusion of the two candidate lists (each best first), with `min_score`
/// applied as the module docs say. Ties are broken by vector rank, then by chunk id, so the
/// order is deterministic.
pub fn fuse(
    vector_hits: Vec<Hit>,
    text_hits: Vec<Hit>,
    params: &RetrieveParams,
) -> Vec<RetrievedHit> {
    let passes = |hit: &Hit| params.min_score.is_none_or(|floor| hit.score >= floor);
    let vector_hits: Vec<Hit> = vector_hits.into_iter().filter(|hit| passes(hit)).collect();
    let keep_text_only = match (params.mode, params.min_score) {
        (SearchMode::Hybrid, Some(_)) => !vector_hits.is_empty(),
        _ => true,
    };
    let reciprocal = |rank: usize| 1.0 / (params.rrf_k + rank as f32);
    let mut fused: Vec<RetrievedHit> = Vec::new();
    let mut position_of: HashMap<i64, usize> = HashMap::new();
    for (index, hit) in vector_hits.into_iter().enumerate() {
        position_of.insert(hit.chunk_id, fused.len());
        fused.push(RetrievedHit {
            score: reciprocal(index + 1),
            vector_rank: Some(index + 1),
            vector_score: Some(hit.score),
            text_rank: None,
            hit,
        });
    }
    for (index, hit) in text_hits.into_iter().enumerate() {
        let rank = index + 1;
        if let Some(&position) = position_of.get(&hit.chunk_id) {
            let existing = &mut fused[position];
            existing.text_rank = Some(rank);
            existing.score += reciprocal(rank);
        } else if keep_text_only {
            fused.push(RetrievedHit {
                score: reciprocal(rank),
                vector_rank: None,
                vector_score: None,
                text_rank: Some(rank),
                hit,
            });
        }
    }
    fused.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(
                a.vector_rank
                    .unwrap_or(usize::MAX)
                    .cmp(&b.vector_rank.unwrap_or(usize::MAX)),
            )
            .then(a.hit.chunk_id.cmp(&b.hit.chunk_id))
    });
    fused
}

#[cfg(test)]
mod tests;
