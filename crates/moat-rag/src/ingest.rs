//! Ingestion: files and folders into a knowledge base, incrementally.
//!
//! Folders are walked recursively with ripgrep's ignore rules (`.gitignore` and `.ignore`
//! files, also outside a git repository, `.moatignore` files with the same syntax, and hidden
//! files and folders skipped); files named directly are always read. A document's key is its
//! path relative to the folder that holds the given root, `/`-separated: adding `docs/` stores
//! `docs/guide/install.md`, adding `notes.txt` stores `notes.txt`. Keeping the root's own name
//! in the key is what lets re-adding one folder remove the documents of its deleted files
//! without touching the documents that came from other roots.
//!
//! Each file's sha256 is compared with the stored document's: an unchanged file (same content,
//! same tags) is skipped without parsing or embedding; a new or changed one is parsed,
//! chunked, embedded in batches and written with one `replace_document`, which swaps the
//! document in one transaction. When a folder is added, documents under it whose files are
//! gone (or now ignored) are removed, unless the walk met an error, since an unreadable folder
//! must not look like a deleted one. Files named one by one never remove anything. A file that
//! is still there but fails this time (it became binary, say) keeps its previous document.
//! Symbolic links are not followed (a link inside a folder is skipped).
//!
//! All state lives in the store, and a document's hash is written in the same transaction as
//! its chunks, so a process killed at any point (kill -9 included) leaves a consistent
//! knowledge base, and running the same ingest again finishes the job: done files are
//! unchanged, the rest are written.
//!
//! A problem with one file (unreadable, empty, binary, not UTF-8, too large, a broken PDF, an
//! input the embedder rejects) is a [`FileFailure`] in the report and the ingest goes on; a
//! failure of the store or of the embedding model as a whole stops it with a [`RagError`].

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use moat_engine::{EmbedInput, Embedder, EngineError};
use moat_vector::{DocumentInfo, NewChunk, NewDocument, VectorError, VectorStore};
use sha2::{Digest, Sha256};

use crate::chunk::{chunk_document, Chunk, ChunkConfig};
use crate::parse::{parse_bytes, ParseError, ParseOptions};
use crate::RagError;

/// The name of the ignore files that only moat reads (gitignore syntax).
pub const MOAT_IGNORE_FILE: &str = ".moatignore";

/// How an ingest runs. `Default`: no tags, the default parse limits and chunk budget, batches
/// of 32 chunks per `embed` call, and removal of deleted files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestOptions {
    /// Tags every document written by this ingest carries (replacing its former tags).
    pub tags: Vec<String>,
    pub parse: ParseOptions,
    pub chunk: ChunkConfig,
    /// Chunks per `Embedder::embed` call.
    pub batch_size: usize,
    /// Remove the documents of files that disappeared from an added folder.
    pub remove_missing: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            tags: Vec::new(),
            parse: ParseOptions::default(),
            chunk: ChunkConfig::default(),
            batch_size: 32,
            remove_missing: true,
        }
    }
}

/// Where an ingest stands, for a progress bar. Sent before each file, after each embedded
/// batch, and once at the end (with `current` empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngestProgress<'a> {
    pub files_done: usize,
    pub files_total: usize,
    pub chunks_embedded: u64,
    /// The key of the file being worked on.
    pub current: Option<&'a str>,
}

/// A file that was not ingested, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileFailure {
    /// The document key when known, else the path as given or found.
    pub path: String,
    pub reason: String,
}

/// What an ingest did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Documents written that were not in the knowledge base.
    pub added: usize,
    /// Documents rewritten because their content or tags changed.
    pub updated: usize,
    /// Files skipped because the stored document has the same hash and tags.
    pub unchanged: usize,
    /// Documents removed because their files are gone from an added folder.
    pub removed: usize,
    pub failed: Vec<FileFailure>,
    /// Chunks embedded and written.
    pub chunks: u64,
    /// Roots whose missing files were not removed because their walk met an error.
    pub removal_skipped: Vec<String>,
}

/// One file to ingest.
struct FileJob {
    path: PathBuf,
    key: String,
}

/// An added folder: the key prefix of its documents, and whether its walk saw everything.
struct FolderRoot {
    prefix: String,
    complete: bool,
}

#[derive(Default)]
struct Scan {
    files: Vec<FileJob>,
    folders: Vec<FolderRoot>,
    failed: Vec<FileFailure>,
}

/// Ingests `paths` (files and folders) into knowledge base `kb`. `progress` is called as the
/// work advances. Fails as a whole only when the knowledge base is missing, the embedder does
/// not fit it, the options are unusable, or the store or the model fail for every file alike.
pub fn ingest(
    store: &dyn VectorStore,
    embedder: &dyn Embedder,
    kb: &str,
    paths: &[PathBuf],
    options: &IngestOptions,
    progress: &mut dyn FnMut(&IngestProgress<'_>),
) -> Result<IngestReport, RagError> {
    check_request(store, embedder, kb, options)?;
    let existing: HashMap<String, DocumentInfo> = store
        .documents(kb)?
        .into_iter()
        .map(|document| (document.path.clone(), document))
        .collect();
    let scan = scan(paths);
    let mut report = IngestReport {
        failed: scan.failed,
        ..IngestReport::default()
    };
    let worker = Worker {
        store,
        embedder,
        kb,
        options,
        tags: sorted_tags(&options.tags),
    };
    let total = scan.files.len();
    for (done, job) in scan.files.iter().enumerate() {
        progress(&IngestProgress {
            files_done: done,
            files_total: total,
            chunks_embedded: report.chunks,
            current: Some(&job.key),
        });
        let mut on_batch = |chunks_embedded: u64| {
            progress(&IngestProgress {
                files_done: done,
                files_total: total,
                chunks_embedded: report.chunks + chunks_embedded,
                current: Some(&job.key),
            });
        };
        match worker.file(job, existing.get(&job.key), &mut on_batch)? {
            Outcome::Unchanged => report.unchanged += 1,
            Outcome::Written { chunks } => {
                report.chunks += chunks;
                if existing.contains_key(&job.key) {
                    report.updated += 1;
                } else {
                    report.added += 1;
                }
            }
            Outcome::Failed(reason) => report.failed.push(FileFailure {
                path: job.key.clone(),
                reason,
            }),
        }
    }
    if options.remove_missing {
        let seen: HashSet<&str> = scan.files.iter().map(|job| job.key.as_str()).collect();
        remove_missing(store, kb, &scan.folders, &existing, &seen, &mut report)?;
    }
    progress(&IngestProgress {
        files_done: total,
        files_total: total,
        chunks_embedded: report.chunks,
        current: None,
    });
    Ok(report)
}

/// What `ingest` and `ingest_bytes` check before any work: usable options, an existing
/// knowledge base, an embedder of its dimension.
fn check_request(
    store: &dyn VectorStore,
    embedder: &dyn Embedder,
    kb: &str,
    options: &IngestOptions,
) -> Result<(), RagError> {
    options.chunk.validate()?;
    if let Some(bad) = options
        .tags
        .iter()
        .find(|tag| tag.trim().is_empty() || tag.contains('\0'))
    {
        return Err(RagError::Invalid(format!(
            "invalid tag {bad:?}: a tag must have a visible character and no NUL"
        )));
    }
    if options.batch_size == 0 {
        return Err(RagError::Invalid(
            "the embedding batch size must be at least 1".into(),
        ));
    }
    let info = store.kb(kb)?;
    let dimension = embedder.info().dimension;
    if dimension != info.dimension {
        return Err(RagError::EmbedderMismatch {
            kb: kb.to_owned(),
            expected: info.dimension,
            embedder: dimension,
        });
    }
    Ok(())
}

/// What happened to one document given as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocumentOutcome {
    /// The stored document has the same hash and tags; nothing was embedded.
    Unchanged,
    Added {
        chunks: u64,
    },
    Updated {
        chunks: u64,
    },
    /// The bytes could not be ingested (empty, binary, not UTF-8, a broken PDF, ...).
    Failed(String),
}

/// Ingests one document given as bytes under the key `key` (an upload over HTTP, say): the
/// same dedupe, parsing, chunking, batching and atomic replace as a file in [`ingest`]; the
/// key's extension picks the format. Removes nothing.
pub fn ingest_bytes(
    store: &dyn VectorStore,
    embedder: &dyn Embedder,
    kb: &str,
    key: &str,
    bytes: &[u8],
    options: &IngestOptions,
) -> Result<DocumentOutcome, RagError> {
    check_request(store, embedder, kb, options)?;
    let stored = store
        .documents(kb)?
        .into_iter()
        .find(|document| document.path == key);
    let worker = Worker {
        store,
        embedder,
        kb,
        options,
        tags: sorted_tags(&options.tags),
    };
    let outcome = worker.bytes(key, bytes, stored.as_ref(), &mut |_| {})?;
    Ok(match outcome {
        Outcome::Unchanged => DocumentOutcome::Unchanged,
        Outcome::Written { chunks } if stored.is_some() => DocumentOutcome::Updated { chunks },
        Outcome::Written { chunks } => DocumentOutcome::Added { chunks },
        Outcome::Failed(reason) => DocumentOutcome::Failed(reason),
    })
}

fn remove_missing(
    store: &dyn VectorStore,
    kb: &str,
    folders: &[FolderRoot],
    existing: &HashMap<String, DocumentInfo>,
    seen: &HashSet<&str>,
    report: &mut IngestReport,
) -> Result<(), RagError> {
    let mut keys: Vec<&String> = existing.keys().collect();
    keys.sort();
    for folder in folders {
        if !folder.complete {
            report.removal_skipped.push(folder.prefix.clone());
            continue;
        }
        for key in &keys {
            let under = folder.prefix.is_empty()
                || key
                    .strip_prefix(folder.prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('/'));
            if under && !seen.contains(key.as_str()) && store.remove_document(kb, key)? {
                report.removed += 1;
            }
        }
    }
    Ok(())
}

enum Outcome {
    Unchanged,
    Written { chunks: u64 },
    Failed(String),
}

struct Worker<'a> {
    store: &'a dyn VectorStore,
    embedder: &'a dyn Embedder,
    kb: &'a str,
    options: &'a IngestOptions,
    tags: Vec<String>,
}

impl Worker<'_> {
    /// Ingests one file. `Err` only for failures that would repeat for every file.
    fn file(
        &self,
        job: &FileJob,
        stored: Option<&DocumentInfo>,
        on_batch: &mut dyn FnMut(u64),
    ) -> Result<Outcome, RagError> {
        match read_bounded(&job.path, self.options.parse.max_bytes) {
            Ok(bytes) => self.bytes(&job.key, &bytes, stored, on_batch),
            Err(error) => Ok(Outcome::Failed(error.to_string())),
        }
    }

    /// Ingests one document's bytes under `key`.
    fn bytes(
        &self,
        key: &str,
        bytes: &[u8],
        stored: Option<&DocumentInfo>,
        on_batch: &mut dyn FnMut(u64),
    ) -> Result<Outcome, RagError> {
        let content_hash = sha256_hex(bytes);
        let unchanged = stored.is_some_and(|document| {
            document.content_hash == content_hash && sorted_tags(&document.tags) == self.tags
        });
        if unchanged {
            return Ok(Outcome::Unchanged);
        }
        let document = match parse_bytes(key, bytes, &self.options.parse) {
            Ok(document) => document,
            Err(error) => return Ok(Outcome::Failed(error.to_string())),
        };
        let chunks = match self.chunk(&document) {
            Ok(chunks) => chunks,
            Err(reason) => return Ok(Outcome::Failed(reason)),
        };
        let embeddings = match self.embed(&chunks, on_batch)? {
            Ok(embeddings) => embeddings,
            Err(reason) => return Ok(Outcome::Failed(reason)),
        };
        let new_chunks: Vec<NewChunk> = chunks
            .into_iter()
            .zip(embeddings)
            .enumerate()
            .map(|(ordinal, (chunk, embedding))| NewChunk {
                ordinal: u32::try_from(ordinal).unwrap_or(u32::MAX),
                text: chunk.text,
                location: chunk.location,
                embedding,
            })
            .collect();
        let new_document = NewDocument {
            path: key.to_owned(),
            content_hash,
            tags: self.options.tags.clone(),
        };
        match self
            .store
            .replace_document(self.kb, &new_document, &new_chunks)
        {
            Ok(()) => Ok(Outcome::Written {
                chunks: new_chunks.len() as u64,
            }),
            Err(error @ (VectorError::Invalid(_) | VectorError::DimensionMismatch { .. })) => {
                Ok(Outcome::Failed(error.to_string()))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The document's chunks counted with the embedder's tokenizer; `Err` is the reason.
    fn chunk(&self, document: &crate::ParsedDocument) -> Result<Vec<Chunk>, String> {
        let count_error: RefCell<Option<EngineError>> = RefCell::new(None);
        let count = |text: &str| match self.embedder.count_tokens(text) {
            Ok(tokens) => tokens as usize,
            Err(error) => {
                count_error.borrow_mut().get_or_insert(error);
                usize::MAX
            }
        };
        let chunks = chunk_document(document, &self.options.chunk, &count);
        if let Some(error) = count_error.into_inner() {
            return Err(format!("counting tokens failed: {error}"));
        }
        let chunks = chunks.map_err(|error| error.to_string())?;
        if chunks.is_empty() {
            return Err(ParseError::Empty.to_string());
        }
        Ok(chunks)
    }

    /// Embeds every chunk in batches. The outer `Err` stops the ingest (the model failed as a
    /// whole); the inner one is this file's failure (the model rejected one of its inputs).
    fn embed(
        &self,
        chunks: &[Chunk],
        on_batch: &mut dyn FnMut(u64),
    ) -> Result<Result<Vec<Vec<f32>>, String>, RagError> {
        let mut vectors = Vec::with_capacity(chunks.len());
        for batch in chunks.chunks(self.options.batch_size) {
            let inputs: Vec<EmbedInput> = batch
                .iter()
                .map(|chunk| EmbedInput::Text(chunk.text.clone()))
                .collect();
            let embeddings = match self.embedder.embed(&inputs) {
                Ok(embeddings) => embeddings,
                Err(
                    error @ (EngineError::InvalidRequest(_) | EngineError::PromptTooLong { .. }),
                ) => {
                    return Ok(Err(format!("the embedder rejected a chunk: {error}")));
                }
                Err(error) => return Err(error.into()),
            };
            if embeddings.vectors.len() != batch.len() {
                return Err(RagError::Embed(EngineError::Internal(format!(
                    "the embedder returned {} vectors for {} inputs",
                    embeddings.vectors.len(),
                    batch.len()
                ))));
            }
            vectors.extend(embeddings.vectors);
            on_batch(vectors.len() as u64);
        }
        Ok(Ok(vectors))
    }
}

/// Finds the files to ingest under every path, with their keys.
fn scan(paths: &[PathBuf]) -> Scan {
    let mut scan = Scan::default();
    let mut keys: HashMap<String, PathBuf> = HashMap::new();
    for path in paths {
        let shown = path.display().to_string();
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) => {
                scan.failed.push(FileFailure {
                    path: shown,
                    reason: format!("cannot read it: {error}"),
                });
                continue;
            }
        };
        let found = if metadata.is_dir() {
            scan_folder(path, &mut scan)
        } else if metadata.is_file() {
            file_name(path).map(|key| vec![(path.clone(), key)])
        } else {
            Err("it is neither a file nor a folder".to_owned())
        };
        match found {
            Ok(files) => {
                for (file, key) in files {
                    add_job(&mut scan, &mut keys, file, key);
                }
            }
            Err(reason) => scan.failed.push(FileFailure {
                path: shown,
                reason,
            }),
        }
    }
    scan
}

/// Keeps the first file for each key; a second one is a failure, not a silent overwrite.
fn add_job(scan: &mut Scan, keys: &mut HashMap<String, PathBuf>, path: PathBuf, key: String) {
    if let Some(first) = keys.get(&key) {
        scan.failed.push(FileFailure {
            reason: format!(
                "{} has the same document key as {}, added before it",
                path.display(),
                first.display()
            ),
            path: key,
        });
        return;
    }
    keys.insert(key.clone(), path.clone());
    scan.files.push(FileJob { path, key });
}

/// The files under `root` with their keys, in a stable order; walk errors go to
/// `scan.failed` and mark the root incomplete.
fn scan_folder(root: &Path, scan: &mut Scan) -> Result<Vec<(PathBuf, String)>, String> {
    let prefix = folder_name(root)?;
    let mut complete = true;
    let mut files = Vec::new();
    let walker = ignore::WalkBuilder::new(root)
        .hidden(true)
        .ignore(true)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(true)
        .require_git(false)
        .follow_links(false)
        .add_custom_ignore_filename(MOAT_IGNORE_FILE)
        .sort_by_file_name(|a, b| a.cmp(b))
        .build();
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                complete = false;
                scan.failed.push(FileFailure {
                    path: root.display().to_string(),
                    reason: format!("the folder walk failed: {error}"),
                });
                continue;
            }
        };
        if !entry.file_type().is_some_and(|kind| kind.is_file()) {
            continue;
        }
        match relative_key(root, entry.path(), &prefix) {
            Ok(key) => files.push((entry.path().to_path_buf(), key)),
            Err(reason) => {
                // The file exists but has no usable key: keep its old document, if any.
                complete = false;
                scan.failed.push(FileFailure {
                    path: entry.path().display().to_string(),
                    reason,
                });
            }
        }
    }
    scan.folders.push(FolderRoot { prefix, complete });
    Ok(files)
}

/// The last component of a folder's path (`.` and `..` resolved first); empty for `/`.
fn folder_name(root: &Path) -> Result<String, String> {
    let named = match root.components().next_back() {
        Some(Component::Normal(name)) => Some(name.to_owned()),
        _ => None,
    };
    let name = match named {
        Some(name) => name,
        None => {
            let canonical = std::fs::canonicalize(root)
                .map_err(|error| format!("cannot resolve the folder: {error}"))?;
            match canonical.file_name() {
                Some(name) => name.to_owned(),
                None => return Ok(String::new()),
            }
        }
    };
    name.into_string()
        .map_err(|name| format!("the folder name {name:?} is not UTF-8"))
}

fn file_name(path: &Path) -> Result<String, String> {
    let name = path
        .file_name()
        .ok_or_else(|| "the path has no file name".to_owned())?;
    name.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("the file name {name:?} is not UTF-8"))
}

/// `prefix/a/b.md` for `root/a/b.md`.
fn relative_key(root: &Path, path: &Path, prefix: &str) -> Result<String, String> {
    let relative = path
        .strip_prefix(root)
        .map_err(|_| "the file is outside the folder being walked".to_owned())?;
    let mut parts: Vec<&str> = Vec::new();
    if !prefix.is_empty() {
        parts.push(prefix);
    }
    for component in relative.components() {
        match component {
            Component::Normal(name) => parts.push(
                name.to_str()
                    .ok_or_else(|| format!("the file name {name:?} is not UTF-8"))?,
            ),
            _ => return Err("the path has an unexpected component".to_owned()),
        }
    }
    Ok(parts.join("/"))
}

/// Reads at most `limit` bytes; a larger file is `TooLarge` (checked before reading and
/// again while reading, in case it grew).
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ParseError> {
    let io_error = |error: std::io::Error| ParseError::Io(error.to_string());
    let file = File::open(path).map_err(io_error)?;
    let size = file.metadata().map_err(io_error)?.len();
    if size > limit {
        return Err(ParseError::TooLarge { size, limit });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > limit {
        return Err(ParseError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// sha256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn sorted_tags(tags: &[String]) -> Vec<String> {
    let mut tags = tags.to_vec();
    tags.sort();
    tags.dedup();
    tags
}

#[cfg(test)]
mod tests;
