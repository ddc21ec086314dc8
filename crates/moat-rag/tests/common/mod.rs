//! Test doubles for logic tests of ingestion and retrieval: an in-memory [`VectorStore`] with
//! exact cosine search and naive keyword scoring, and a deterministic hashed bag-of-words
//! [`Embedder`]. They are NOT the real store (SQLite/pgvector) or a real model: they exist so
//! these tests check this crate's logic (walks, dedupe, batching, fusion) exactly and fast.
//! Tests against the real store and a real embedding model come with their crates.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use moat_engine::{EmbedInput, Embedder, EmbedderInfo, Embeddings, EngineError};
use moat_vector::{
    DocumentInfo, Filter, Hit, KbInfo, KbSpec, NewChunk, NewDocument, VectorError, VectorStore,
};

#[derive(Default)]
struct Kb {
    spec: Option<KbSpec>,
    /// path -> (document, chunks with their ids)
    documents: BTreeMap<String, (NewDocument, Vec<(i64, NewChunk)>)>,
}

/// An in-memory store (test double).
#[derive(Default)]
pub struct MemoryStore {
    kbs: Mutex<BTreeMap<String, Kb>>,
    next_id: AtomicUsize,
    /// How many `replace_document` calls succeeded.
    pub writes: AtomicUsize,
}

impl MemoryStore {
    fn with_kb<T>(&self, name: &str, f: impl FnOnce(&mut Kb) -> T) -> Result<T, VectorError> {
        let mut kbs = self.kbs.lock().expect("lock");
        let kb = kbs
            .get_mut(name)
            .ok_or_else(|| VectorError::NoSuchKb(name.into()))?;
        Ok(f(kb))
    }

    /// Every chunk of a document, by ordinal.
    pub fn chunks(&self, kb: &str, path: &str) -> Vec<NewChunk> {
        self.with_kb(kb, |kb| {
            kb.documents
                .get(path)
                .map(|(_, chunks)| chunks.iter().map(|(_, c)| c.clone()).collect())
                .unwrap_or_default()
        })
        .expect("kb exists")
    }

    fn hits(
        &self,
        kb: &str,
        filter: &Filter,
        score: impl Fn(&NewChunk) -> Option<f32>,
        k: usize,
    ) -> Result<Vec<Hit>, VectorError> {
        self.with_kb(kb, |kb| {
            let mut hits: Vec<Hit> = Vec::new();
            for (path, (document, chunks)) in &kb.documents {
                if !admits(filter, path, &document.tags) {
                    continue;
                }
                for (id, chunk) in chunks {
                    if let Some(score) = score(chunk) {
                        hits.push(Hit {
                            chunk_id: *id,
                            path: path.clone(),
                            ordinal: chunk.ordinal,
                            text: chunk.text.clone(),
                            location: chunk.location.clone(),
                            score,
                        });
                    }
                }
            }
            hits.sort_by(|a, b| {
                b.score
                    .total_cmp(&a.score)
                    .then(a.chunk_id.cmp(&b.chunk_id))
            });
            hits.truncate(k);
            hits
        })
    }
}

fn admits(filter: &Filter, path: &str, tags: &[String]) -> bool {
    filter.tags.iter().all(|tag| tags.contains(tag))
        && filter
            .path_glob
            .as_deref()
            .is_none_or(|glob| glob_matches(glob.as_bytes(), path.as_bytes()))
}

/// `*` within a segment, `**` across segments (`**/` also matches no folder), `?` one character.
fn glob_matches(pattern: &[u8], path: &[u8]) -> bool {
    match pattern {
        [] => path.is_empty(),
        [b'*', b'*', b'/', rest @ ..] => {
            glob_matches(rest, path)
                || (0..path.len()).any(|i| path[i] == b'/' && glob_matches(rest, &path[i + 1..]))
        }
        [b'*', b'*', rest @ ..] => (0..=path.len()).any(|i| glob_matches(rest, &path[i..])),
        [b'*', rest @ ..] => (0..=path.len())
            .take_while(|&i| i == 0 || path[i - 1] != b'/')
            .any(|i| glob_matches(rest, &path[i..])),
        [b'?', rest @ ..] => !path.is_empty() && path[0] != b'/' && glob_matches(rest, &path[1..]),
        [c, rest @ ..] => path.first() == Some(c) && glob_matches(rest, &path[1..]),
    }
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator == 0.0 {
        0.0
    } else {
        dot / denominator
    }
}

impl VectorStore for MemoryStore {
    fn create_kb(&self, spec: &KbSpec) -> Result<KbInfo, VectorError> {
        let mut kbs = self.kbs.lock().expect("lock");
        if kbs.contains_key(&spec.name) {
            return Err(VectorError::KbExists(spec.name.clone()));
        }
        kbs.insert(
            spec.name.clone(),
            Kb {
                spec: Some(spec.clone()),
                ..Kb::default()
            },
        );
        drop(kbs);
        self.kb(&spec.name)
    }

    fn kb(&self, name: &str) -> Result<KbInfo, VectorError> {
        self.with_kb(name, |kb| {
            let spec = kb.spec.clone().expect("spec");
            KbInfo {
                name: spec.name,
                embed_model: spec.embed_model,
                dimension: spec.dimension,
                documents: kb.documents.len() as u64,
                chunks: kb.documents.values().map(|(_, c)| c.len() as u64).sum(),
                created_at: 0,
            }
        })
    }

    fn list_kbs(&self) -> Result<Vec<KbInfo>, VectorError> {
        let names: Vec<String> = self.kbs.lock().expect("lock").keys().cloned().collect();
        names.iter().map(|name| self.kb(name)).collect()
    }

    fn delete_kb(&self, name: &str) -> Result<(), VectorError> {
        self.kbs
            .lock()
            .expect("lock")
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| VectorError::NoSuchKb(name.into()))
    }

    fn documents(&self, kb: &str) -> Result<Vec<DocumentInfo>, VectorError> {
        self.with_kb(kb, |kb| {
            kb.documents
                .values()
                .map(|(document, chunks)| DocumentInfo {
                    path: document.path.clone(),
                    content_hash: document.content_hash.clone(),
                    chunks: chunks.len() as u64,
                    tags: document.tags.clone(),
                })
                .collect()
        })
    }

    fn replace_document(
        &self,
        kb: &str,
        document: &NewDocument,
        chunks: &[NewChunk],
    ) -> Result<(), VectorError> {
        let dimension = self.kb(kb)?.dimension;
        if let Some(bad) = chunks
            .iter()
            .find(|c| c.embedding.len() != dimension as usize)
        {
            return Err(VectorError::DimensionMismatch {
                kb: kb.into(),
                expected: dimension,
                got: bad.embedding.len() as u32,
            });
        }
        let with_ids: Vec<(i64, NewChunk)> = chunks
            .iter()
            .map(|c| {
                (
                    self.next_id.fetch_add(1, Ordering::SeqCst) as i64,
                    c.clone(),
                )
            })
            .collect();
        self.with_kb(kb, |kb| {
            kb.documents
                .insert(document.path.clone(), (document.clone(), with_ids));
        })?;
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn remove_document(&self, kb: &str, path: &str) -> Result<bool, VectorError> {
        self.with_kb(kb, |kb| kb.documents.remove(path).is_some())
    }

    fn search_vector(
        &self,
        kb: &str,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>, VectorError> {
        let dimension = self.kb(kb)?.dimension;
        if query.len() != dimension as usize {
            return Err(VectorError::DimensionMismatch {
                kb: kb.into(),
                expected: dimension,
                got: query.len() as u32,
            });
        }
        self.hits(kb, filter, |chunk| Some(cosine(query, &chunk.embedding)), k)
    }

    fn search_text(
        &self,
        kb: &str,
        query: &str,
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>, VectorError> {
        let terms = words(query);
        self.hits(
            kb,
            filter,
            |chunk| {
                let chunk_words = words(&chunk.text);
                let score = terms
                    .iter()
                    .map(|t| chunk_words.iter().filter(|w| *w == t).count())
                    .sum::<usize>();
                (score > 0).then_some(score as f32)
            },
            k,
        )
    }
}

/// A deterministic embedder (test double): each lowercase word adds 1 to the component its
/// FNV-1a hash picks, then the vector is normalised. Texts sharing words are close.
pub struct HashEmbedder {
    info: EmbedderInfo,
    /// `embed` calls and inputs seen.
    pub calls: AtomicUsize,
    pub inputs: AtomicUsize,
    pub largest_batch: AtomicUsize,
    /// After this many calls, `embed` fails as a crashed model would.
    pub fail_after: Option<usize>,
    /// A pause in every `embed` call, so that a test can kill an ingest halfway.
    pub delay: Option<std::time::Duration>,
}

impl HashEmbedder {
    pub fn new(dimension: u32) -> Self {
        HashEmbedder {
            info: EmbedderInfo {
                model: "hash-bow".into(),
                dimension,
                max_tokens: 256,
                normalized: true,
            },
            calls: AtomicUsize::new(0),
            inputs: AtomicUsize::new(0),
            largest_batch: AtomicUsize::new(0),
            fail_after: None,
            delay: None,
        }
    }

    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0.0f32; self.info.dimension as usize];
        for word in words(text) {
            let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
            for byte in word.bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
            vector[(hash % u64::from(self.info.dimension)) as usize] += 1.0;
        }
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
        vector
    }
}

impl Embedder for HashEmbedder {
    fn info(&self) -> &EmbedderInfo {
        &self.info
    }

    /// Words plus two, as a BERT tokenizer adds `[CLS]` and `[SEP]`.
    fn count_tokens(&self, text: &str) -> Result<u32, EngineError> {
        Ok(text.split_whitespace().count() as u32 + 2)
    }

    fn embed(&self, inputs: &[EmbedInput]) -> Result<Embeddings, EngineError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.fail_after.is_some_and(|limit| call >= limit) {
            return Err(EngineError::Internal(
                "the test embedder was told to crash".into(),
            ));
        }
        if let Some(delay) = self.delay {
            std::thread::sleep(delay);
        }
        self.inputs.fetch_add(inputs.len(), Ordering::SeqCst);
        self.largest_batch.fetch_max(inputs.len(), Ordering::SeqCst);
        let mut vectors = Vec::new();
        let mut prompt_tokens = 0;
        for (index, input) in inputs.iter().enumerate() {
            let EmbedInput::Text(text) = input else {
                return Err(EngineError::InvalidRequest(format!(
                    "input {index}: tokens not supported"
                )));
            };
            let tokens = self.count_tokens(text)?;
            if text.trim().is_empty() || tokens > self.info.max_tokens {
                return Err(EngineError::InvalidRequest(format!(
                    "input {index} is empty or too long"
                )));
            }
            prompt_tokens += u64::from(tokens);
            vectors.push(self.vector(text));
        }
        Ok(Embeddings {
            vectors,
            prompt_tokens,
        })
    }
}

/// Copies the committed fixtures into a fresh temporary folder, adds the files the fixtures'
/// own ignore rules exclude (git would not commit them), and writes a valid two-page PDF.
pub fn fixture_tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let temp = tempfile::tempdir().expect("temp dir");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    copy_dir(&source, temp.path());
    let corpus = temp.path().join("corpus");
    std::fs::write(corpus.join("nested/secret.txt"), "ignored by .gitignore").expect("write");
    std::fs::create_dir_all(corpus.join("nested/build")).expect("mkdir");
    std::fs::write(corpus.join("nested/build/out.txt"), "ignored folder").expect("write");
    std::fs::write(corpus.join("debug.log"), "ignored by .moatignore").expect("write");
    std::fs::write(
        corpus.join("manual.pdf"),
        two_page_pdf(
            "The warranty covers two years of repairs.",
            "Returns are accepted within thirty days.",
        ),
    )
    .expect("write");
    let bad = temp.path().join("bad");
    (temp, corpus, bad)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A valid PDF with one line of text on each of two pages, written with lopdf.
pub fn two_page_pdf(first: &str, second: &str) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{dictionary, Document, Object, Stream};

    let mut document = Document::with_version("1.5");
    let pages_id = document.new_object_id();
    let font_id = document.add_object(dictionary! {
        "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica",
    });
    let resources_id =
        document.add_object(dictionary! { "Font" => dictionary! { "F1" => font_id } });
    let mut kids = Vec::new();
    for text in [first, second] {
        let content = Content {
            operations: vec![
                Operation::new("BT", vec![]),
                Operation::new("Tf", vec!["F1".into(), 12.into()]),
                Operation::new("Td", vec![72.into(), 720.into()]),
                Operation::new("Tj", vec![Object::string_literal(text)]),
                Operation::new("ET", vec![]),
            ],
        };
        let content_id = document.add_object(Stream::new(
            dictionary! {},
            content.encode().expect("encode"),
        ));
        let page_id = document.add_object(dictionary! {
            "Type" => "Page", "Parent" => pages_id, "Contents" => content_id,
        });
        kids.push(Object::from(page_id));
    }
    let pages = dictionary! {
        "Type" => "Pages", "Kids" => kids, "Count" => 2, "Resources" => resources_id,
        "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
    };
    document.objects.insert(pages_id, Object::Dictionary(pages));
    let catalog_id = document.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    document.trailer.set("Root", catalog_id);
    let mut bytes = Vec::new();
    document.save_to(&mut bytes).expect("save");
    bytes
}
