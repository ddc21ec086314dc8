//! Pulls from a Hugging Face hub through the `hf-hub` crate, the way the Python client does:
//! `HF_ENDPOINT` picks the hub, `HF_TOKEN` authenticates, the standard cache
//! (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`) is shared with other
//! tools, `HF_HUB_OFFLINE=1` reads only that cache, and an interrupted download resumes from
//! its `.sync.part` file. Each file is then copied into a blob and checked against the sha256
//! the hub announced for it (the ETag of LFS files).

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use moat_types::Digest;

use crate::error::{Result, StoreError};
use crate::fetch::local::{gguf_file_name, select_model_files};
use crate::fetch::{FetchContext, Fetched};
use crate::manifest::{ModelFormat, SourceRecord};
use crate::progress::Progress;

const DOWNLOAD_RETRIES: usize = 3;

/// `hf:ORG/REPO[@REVISION][/FILE]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HfSource {
    pub repo_id: String,
    pub revision: String,
    pub file: Option<String>,
}

impl HfSource {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.splitn(3, '/');
        let org = parts.next().unwrap_or_default();
        let repo_and_revision = parts.next().unwrap_or_default();
        let file = parts.next().filter(|f| !f.is_empty()).map(str::to_string);
        let (repo, revision) = match repo_and_revision.split_once('@') {
            Some((repo, revision)) => (repo, revision.to_string()),
            None => (repo_and_revision, "main".to_string()),
        };
        let valid = |part: &str| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !valid(org) || !valid(repo) {
            return Err("expected hf:ORG/REPO[@REVISION][/FILE]".into());
        }
        if revision.is_empty() || revision.contains("..") {
            return Err(format!("bad revision '{revision}'"));
        }
        if let Some(file) = &file {
            if file.split('/').any(|part| part.is_empty() || part == "..") {
                return Err(format!("bad file path '{file}'"));
            }
        }
        Ok(Self {
            repo_id: format!("{org}/{repo}"),
            revision,
            file,
        })
    }

    pub fn uri(&self) -> String {
        let revision = if self.revision == "main" {
            String::new()
        } else {
            format!("@{}", self.revision)
        };
        match &self.file {
            Some(file) => format!("hf:{}{revision}/{file}", self.repo_id),
            None => format!("hf:{}{revision}", self.repo_id),
        }
    }

    fn repo(&self) -> Repo {
        Repo::with_revision(self.repo_id.clone(), RepoType::Model, self.revision.clone())
    }
}

/// The hub cache folder, resolved as `huggingface_hub` resolves it.
pub fn hf_cache_dir() -> PathBuf {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = var("HF_HUB_CACHE") {
        return dir;
    }
    if let Some(home) = var("HF_HOME") {
        return home.join("hub");
    }
    let cache = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|home| home.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface").join("hub")
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

pub(crate) fn fetch(ctx: &mut FetchContext<'_>, source: &HfSource) -> Result<Fetched> {
    let cache = Cache::new(hf_cache_dir());
    let hub = if offline() {
        Hub::Offline(cache)
    } else {
        Hub::online(cache)?
    };
    let listing = hub.list(source)?;
    let (files, format) = match &source.file {
        Some(file) => {
            let format = if file.ends_with(".gguf") {
                ModelFormat::Gguf
            } else {
                return Err(StoreError::BadSource {
                    source_text: source.uri(),
                    reason: "a single file must be a .gguf; name the repo alone to pull a \
                             safetensors model"
                        .into(),
                });
            };
            (vec![file.clone()], format)
        }
        None => pick_files(source, &listing.files)?,
    };
    let mut fetched = Vec::with_capacity(files.len());
    for file in &files {
        let local = hub.get(source, &listing.commit, file, ctx.progress)?;
        let expected = announced_sha256(&local);
        ctx.progress.note(&format!("copying {file} into the store"));
        let blob = ctx.ingest_path(file, &local)?;
        if let Some(expected) = expected {
            if blob.digest != expected {
                return Err(StoreError::ChecksumMismatch {
                    what: format!("{} {file}", source.uri()),
                    expected: expected.to_string(),
                    actual: blob.digest.to_string(),
                });
            }
        }
        let path = if format == ModelFormat::Gguf {
            gguf_file_name(file)
        } else {
            file.clone()
        };
        fetched.push((path, blob));
    }
    Ok(Fetched {
        format,
        files: fetched,
        source: SourceRecord {
            uri: source.uri(),
            revision: Some(listing.commit),
        },
        default_name: source.repo_id.clone(),
    })
}

/// Chooses what to pull from a repo listing: its one GGUF, or its safetensors model.
fn pick_files(source: &HfSource, listing: &[String]) -> Result<(Vec<String>, ModelFormat)> {
    let ggufs: Vec<&String> = listing.iter().filter(|f| f.ends_with(".gguf")).collect();
    let has_safetensors = listing.iter().any(|f| f.ends_with(".safetensors"));
    if !has_safetensors && ggufs.len() == 1 {
        return Ok((vec![ggufs[0].clone()], ModelFormat::Gguf));
    }
    let files = select_model_files(&source.uri(), listing.to_vec())?;
    Ok((files, ModelFormat::Safetensors))
}

/// The hub names LFS blobs in its cache by their sha256; other blobs by a git sha1.
fn announced_sha256(pointer: &Path) -> Option<Digest> {
    let target = std::fs::canonicalize(pointer).ok()?;
    let name = target.file_name()?.to_str()?;
    Digest::from_hex(name).ok()
}

enum Hub {
    Online {
        api: hf_hub::api::sync::Api,
        cache: Cache,
    },
    Offline(Cache),
}

impl Hub {
    fn online(cache: Cache) -> Result<Self> {
        let mut builder = ApiBuilder::from_cache(cache.clone())
            .with_progress(false)
            .with_retries(DOWNLOAD_RETRIES)
            .with_user_agent("moat", env!("CARGO_PKG_VERSION"));
        if let Some(endpoint) = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()) {
            builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
        }
        if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()) {
            builder = builder.with_token(Some(token));
        }
        let api = builder
            .build()
            .map_err(|e| StoreError::Fetch(format!("hub client: {e}")))?;
        Ok(Self::Online { api, cache })
    }

    /// The revision's commit and files.
    fn list(&self, source: &HfSource) -> Result<Listing> {
        match self {
            Self::Online { api, .. } => {
                let info = api
                    .repo(source.repo())
                    .info()
                    .map_err(|e| hub_error(source, None, e))?;
                let files = info.siblings.into_iter().map(|s| s.rfilename).collect();
                Ok(Listing {
                    commit: info.sha,
                    files,
                })
            }
            Self::Offline(cache) => list_cached(cache, source),
        }
    }

    fn get(
        &self,
        source: &HfSource,
        commit: &str,
        file: &str,
        progress: &mut dyn Progress,
    ) -> Result<PathBuf> {
        match self {
            Self::Online { api, cache } => {
                // A file already in the cache for this exact commit is not downloaded again.
                let snapshot = repo_cache_dir(cache, source)
                    .join("snapshots")
                    .join(commit)
                    .join(file);
                if snapshot.is_file() {
                    progress.note(&format!("{file}: found in the Hugging Face cache"));
                    return Ok(snapshot);
                }
                let adapter = ProgressAdapter {
                    inner: progress,
                    started: false,
                };
                match api
                    .repo(source.repo())
                    .download_with_progress(file, adapter)
                {
                    Ok(path) => Ok(path),
                    Err(error) => {
                        // A hub that cannot be reached still leaves the cache usable.
                        let unreachable = matches!(&error, ApiError::RequestError(e)
                            if matches!(**e, ureq::Error::Transport(_)));
                        match cache.repo(source.repo()).get(file) {
                            Some(path) if unreachable => Ok(path),
                            _ => Err(hub_error(source, Some(file), error)),
                        }
                    }
                }
            }
            Self::Offline(cache) => cache.repo(source.repo()).get(file).ok_or_else(|| {
                StoreError::Fetch(format!(
                    "{}: {file} is not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set",
                    source.uri(),
                    cache.path().display()
                ))
            }),
        }
    }
}

/// A revision of a repo: its commit and its files.
struct Listing {
    commit: String,
    files: Vec<String>,
}

fn repo_cache_dir(cache: &Cache, source: &HfSource) -> PathBuf {
    cache
        .path()
        .join(format!("models--{}", source.repo_id.replace('/', "--")))
}

fn list_cached(cache: &Cache, source: &HfSource) -> Result<Listing> {
    let repo_dir = repo_cache_dir(cache, source);
    let commit = std::fs::read_to_string(repo_dir.join("refs").join(&source.revision))
        .map(|c| c.trim().to_string())
        .unwrap_or_else(|_| source.revision.clone());
    let snapshot = repo_dir.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        return Err(StoreError::Fetch(format!(
            "{} is not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set",
            source.uri(),
            cache.path().display()
        )));
    }
    let mut files = Vec::new();
    let mut stack = vec![snapshot.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .map_err(StoreError::io("listing the hub cache"))?
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(&snapshot) {
                files.push(
                    relative
                        .to_string_lossy()
                        .replace(std::path::MAIN_SEPARATOR, "/"),
                );
            }
        }
    }
    Ok(Listing { commit, files })
}

fn hub_error(source: &HfSource, file: Option<&str>, error: ApiError) -> StoreError {
    let what = match file {
        Some(file) => format!("{} ({file})", source.uri()),
        None => source.uri(),
    };
    let status = match &error {
        ApiError::RequestError(e) => match e.as_ref() {
            ureq::Error::Status(code, response) => {
                Some((*code, response.header("x-error-code").map(str::to_string)))
            }
            ureq::Error::Transport(_) => None,
        },
        _ => None,
    };
    let message = match status {
        Some((401 | 403, _)) => format!(
            "{what}: the hub refused access ({}); set HF_TOKEN to a token that can read it",
            status.map(|s| s.0).unwrap_or(401)
        ),
        Some((404, Some(code))) if code == "EntryNotFound" => {
            format!("{what}: no such file in the repo")
        }
        Some((404, _)) => format!("{what}: repo or revision not found on the hub"),
        _ => format!("{what}: {error}"),
    };
    StoreError::Fetch(message)
}

/// Bridges `hf-hub`'s progress callbacks to ours.
struct ProgressAdapter<'a> {
    inner: &'a mut dyn Progress,
    started: bool,
}

impl hf_hub::api::Progress for ProgressAdapter<'_> {
    fn init(&mut self, size: usize, filename: &str) {
        if self.started {
            self.inner.end(); // A retry starts the transfer again from where it stopped.
        }
        self.started = true;
        self.inner
            .begin(&format!("downloading {filename}"), Some(size as u64));
    }

    fn update(&mut self, size: usize) {
        self.inner.advance(size as u64);
    }

    fn finish(&mut self) {
        if std::mem::take(&mut self.started) {
            self.inner.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repo_revision_and_file() {
        let plain = HfSource::parse("org/repo").expect("plain");
        assert_eq!(
            (plain.repo_id.as_str(), plain.revision.as_str(), plain.file),
            ("org/repo", "main", None)
        );
        let full = HfSource::parse("org/repo@v1.0/sub/model.Q4_K_M.gguf").expect("full");
        assert_eq!(full.revision, "v1.0");
        assert_eq!(full.file.as_deref(), Some("sub/model.Q4_K_M.gguf"));
        assert_eq!(full.uri(), "hf:org/repo@v1.0/sub/model.Q4_K_M.gguf");
        for bad in [
            "",
            "org",
            "org/",
            "/repo",
            "org/repo/../x",
            "o rg/repo",
            "org/repo@",
        ] {
            assert!(HfSource::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
