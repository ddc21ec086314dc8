//! Pulls from a Hugging Face hub the way the Python client does (listing through the `hf-hub`
//! crate, files downloaded by [`Downloader`] into the same cache layout):
//! `HF_ENDPOINT` picks the hub, `HF_TOKEN` authenticates, the standard cache
//! (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`) is shared with other
//! tools, `HF_HUB_OFFLINE=1` reads only that cache, and an interrupted download resumes from
//! its `.sync.part` file. Each file is then copied into a blob and checked against the sha256
//! the hub announced for it (the ETag of LFS files).

mod download;

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::AtomicBool;

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use moat_types::Digest;

use crate::error::{Result, StoreError};
use crate::fetch::local::{gguf_file_name, select_model_files};
use crate::fetch::{FetchContext, Fetched};
use crate::manifest::{ModelFormat, SourceRecord};
use crate::progress::Progress;
use download::{Downloader, Failure};

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
            check_repo_file(file).map_err(|reason| format!("bad file path {file:?}: {reason}"))?;
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

/// Checks that a file name in a repo is a plain relative path of normal components, so that
/// joining it to a cache or snapshot folder stays inside that folder. Names come from the user
/// and from the hub's listing; a hostile hub (or `HF_ENDPOINT` mirror) could otherwise list
/// `../../x` and make a pull read, or `hf-hub` write, outside the cache.
fn check_repo_file(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.starts_with('/') {
        return Err("the path is absolute".into());
    }
    // A backslash is a separator on Windows, and control characters (NUL included) have no
    // place in a file name a terminal or a path API should see.
    if name.contains('\\') {
        return Err("it contains a backslash".into());
    }
    if name.chars().any(char::is_control) {
        return Err("it contains a control character".into());
    }
    if let Some(part) = name
        .split('/')
        .find(|part| part.is_empty() || *part == "." || *part == "..")
    {
        return Err(if part.is_empty() {
            "it has an empty path component".into()
        } else {
            format!("it has a '{part}' component")
        });
    }
    // `Path::components` also catches what is special elsewhere (a Windows prefix such as `C:`
    // is one on Windows builds).
    if !Path::new(name)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err("it is not a plain relative path".into());
    }
    Ok(())
}

/// Refuses a listing with a file name that cannot safely become a path, before anything is
/// downloaded or opened. (`Hub::list` checks the commit, which also becomes a folder name.)
fn check_listing(source: &HfSource, listing: &Listing) -> Result<()> {
    for file in &listing.files {
        check_repo_file(file).map_err(|reason| {
            StoreError::Fetch(format!(
                "{}: the hub lists a file named {file:?}, which is not a safe relative path \
                 ({reason}); refusing to pull from it",
                source.uri()
            ))
        })?;
    }
    Ok(())
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
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Hub::online(cache, env("HF_ENDPOINT"), env("HF_TOKEN"))?
    };
    fetch_from(ctx, source, &hub)
}

fn fetch_from(ctx: &mut FetchContext<'_>, source: &HfSource, hub: &Hub) -> Result<Fetched> {
    let listing = hub.list(source)?;
    check_listing(source, &listing)?;
    if let Some(file) = &source.file {
        // `parse` checked it, but the fields are public and this is where it becomes a path.
        check_repo_file(file).map_err(|reason| StoreError::BadSource {
            source_text: source.uri(),
            reason: format!("bad file path {file:?}: {reason}"),
        })?;
    }
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
        let local = hub.get(source, &listing.commit, file, ctx.progress, ctx.cancel)?;
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
        files: Box<Downloader>,
    },
    Offline(Cache),
}

impl Hub {
    /// A client for the hub at `endpoint` (else huggingface.co), authenticated with `token`.
    fn online(cache: Cache, endpoint: Option<String>, token: Option<String>) -> Result<Self> {
        let mut builder = ApiBuilder::from_cache(cache.clone())
            .with_progress(false)
            .with_retries(DOWNLOAD_RETRIES)
            .with_user_agent("moat", env!("CARGO_PKG_VERSION"));
        let endpoint = endpoint
            .map(|e| e.trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        builder = builder.with_endpoint(endpoint.clone());
        if let Some(token) = &token {
            builder = builder.with_token(Some(token.clone()));
        }
        let api = builder
            .build()
            .map_err(|e| StoreError::Fetch(format!("hub client: {e}")))?;
        let files = Box::new(Downloader::new(endpoint, token));
        Ok(Self::Online { api, cache, files })
    }

    /// The revision's commit and files.
    fn list(&self, source: &HfSource) -> Result<Listing> {
        match self {
            Self::Online { api, .. } => {
                let info = api
                    .repo(source.repo())
                    .info()
                    .map_err(|e| hub_error(source, None, e))?;
                // The commit names a folder of the cache (`snapshots/COMMIT`), so it must be
                // one name: a git hash, never a path.
                if info.sha.is_empty() || !info.sha.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(StoreError::Fetch(format!(
                        "{}: the hub gave {:?} as the revision's commit, which is not a commit \
                         hash; refusing to pull from it",
                        source.uri(),
                        info.sha
                    )));
                }
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
        cancel: Option<&'static AtomicBool>,
    ) -> Result<PathBuf> {
        match self {
            Self::Online { cache, files, .. } => {
                // A file already in the cache for this exact commit is not downloaded again.
                let snapshot = repo_cache_dir(cache, source)
                    .join("snapshots")
                    .join(commit)
                    .join(file);
                if snapshot.is_file() {
                    progress.note(&format!("{file}: found in the Hugging Face cache"));
                    return Ok(snapshot);
                }
                match files.download(cache, source, commit, file, progress, cancel) {
                    Ok(path) => Ok(path),
                    Err(Failure::Hub(error)) => {
                        // A hub that cannot be reached still leaves the cache usable.
                        let unreachable = matches!(&error, ApiError::RequestError(e)
                            if matches!(**e, ureq::Error::Transport(_)));
                        match cache.repo(source.repo()).get(file) {
                            Some(path) if unreachable => Ok(path),
                            _ => Err(hub_error(source, Some(file), error)),
                        }
                    }
                    Err(Failure::Store(error)) => Err(error),
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
    cache.path().join(repo_folder(source))
}

/// The repo's folder name in the hub cache (`models--ORG--NAME`).
fn repo_folder(source: &HfSource) -> String {
    format!("models--{}", source.repo_id.replace('/', "--"))
}

fn list_cached(cache: &Cache, source: &HfSource) -> Result<Listing> {
    let repo_dir = repo_cache_dir(cache, source);
    let commit = match std::fs::read_to_string(repo_dir.join("refs").join(&source.revision)) {
        // The ref's content names a folder: one a hostile hub wrote could name a path.
        Ok(content) => {
            let commit = content.trim().to_string();
            if commit.is_empty() || !commit.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(StoreError::Fetch(format!(
                    "{}: the cached ref names {commit:?}, which is not a commit hash",
                    source.uri()
                )));
            }
            commit
        }
        Err(_) => source.revision.clone(),
    };
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

/// The hub `HF_ENDPOINT` stands in for.
const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use super::download::{check_etag, origin, PARTIAL_SUFFIX};
    use super::*;
    use crate::progress::NoProgress;
    use crate::store::Store;
    use std::sync::atomic::Ordering;

    /// A hub that answers every repo-info request with `info` and anything else with a 404
    /// (or, from [`TinyHub::serving`], with a one-byte 206 carrying the given headers), and
    /// records the request lines it saw.
    struct TinyHub {
        endpoint: String,
        requests: Arc<Mutex<Vec<String>>>,
    }

    impl TinyHub {
        fn start(info: String) -> Self {
            Self::serving(info, None)
        }

        fn serving(info: String, file_headers: Option<String>) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let endpoint = format!("http://{}", listener.local_addr().expect("address"));
            let requests = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::clone(&requests);
            // The thread lives as long as the test process; each test starts its own hub.
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let mut reader = BufReader::new(&stream);
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).is_err() {
                        continue;
                    }
                    let mut header = String::new();
                    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                        header.clear();
                    }
                    let (status, body, extra) = if request_line.contains("/api/models/") {
                        ("200 OK", info.clone(), String::new())
                    } else if let Some(headers) = &file_headers {
                        ("206 Partial Content", "G".to_string(), headers.clone())
                    } else {
                        ("404 Not Found", "{}".to_string(), String::new())
                    };
                    seen.lock()
                        .expect("requests")
                        .push(request_line.trim_end().to_string());
                    let _ = write!(
                        &stream,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
            Self { endpoint, requests }
        }

        fn hub(&self, cache: &Path) -> Hub {
            Hub::online(
                Cache::new(cache.to_path_buf()),
                Some(self.endpoint.clone()),
                None,
            )
            .expect("hub client")
        }

        fn requests(&self) -> Vec<String> {
            self.requests.lock().expect("requests").clone()
        }
    }

    fn pull_from(hub: &Hub, store: &Store, source: &str) -> Result<Fetched> {
        pull_with(hub, store, source, &mut NoProgress, None)
    }

    fn pull_with(
        hub: &Hub,
        store: &Store,
        source: &str,
        progress: &mut dyn Progress,
        cancel: Option<&'static AtomicBool>,
    ) -> Result<Fetched> {
        let mut ctx = FetchContext {
            store,
            cancel,
            progress,
            recipes_dir: store.root(),
        };
        let source = HfSource::parse(source).expect("source");
        fetch_from(&mut ctx, &source, hub)
    }

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    const TOKEN: &str = "hf_test_token";

    /// A request [`FileHub`] saw: its path, Range header and Authorization header.
    type Seen = (String, String, Option<String>);

    /// A hub that lists `org/repo`'s `model.gguf` at [`COMMIT`] and serves `body` for it as
    /// the hub serves a file to a client with a token: the resolve URL redirects, with a
    /// relative `Location`, to another path of the same host, which answers range requests
    /// with the file's headers, and only with the token.
    struct FileHub {
        endpoint: String,
        requests: Arc<Mutex<Vec<Seen>>>,
        etag: String,
    }

    impl FileHub {
        fn start(body: Vec<u8>) -> Self {
            use sha2::Digest as _;
            let etag = Digest::from_bytes(sha2::Sha256::digest(&body).into()).hex();
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let endpoint = format!("http://{}", listener.local_addr().expect("address"));
            let requests = Arc::new(Mutex::new(Vec::new()));
            let seen = Arc::clone(&requests);
            let info =
                serde_json::json!({"sha": COMMIT, "siblings": [{"rfilename": "model.gguf"}]})
                    .to_string();
            let served_etag = etag.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let mut reader = BufReader::new(&stream);
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).is_err() {
                        continue;
                    }
                    let (mut auth, mut range) = (None, String::new());
                    let mut header = String::new();
                    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                        let (name, value) = header.split_once(':').unwrap_or((&header, ""));
                        if name.eq_ignore_ascii_case("authorization") {
                            auth = Some(value.trim().to_string());
                        } else if name.eq_ignore_ascii_case("range") {
                            range = value.trim().to_string();
                        }
                        header.clear();
                    }
                    let line = request_line.trim_end().to_string();
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    seen.lock().expect("requests").push((
                        path.clone(),
                        range.clone(),
                        auth.clone(),
                    ));
                    let resolve = format!("/org/repo/resolve/{COMMIT}/model.gguf");
                    let response = if path.starts_with("/api/models/") {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{info}",
                            info.len()
                        )
                        .into_bytes()
                    } else if path == resolve {
                        format!(
                            "HTTP/1.1 307 Temporary Redirect\r\nLocation: \
                             /api/resolve-cache/models/org/repo/{COMMIT}/model.gguf\r\n\
                             Content-Length: 0\r\n\r\n"
                        )
                        .into_bytes()
                    } else if !path.starts_with("/api/resolve-cache/") {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
                    } else if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
                        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_vec()
                    } else {
                        // `bytes=FROM-` or `bytes=FROM-TO` (inclusive).
                        let (from, to) = range
                            .trim_start_matches("bytes=")
                            .split_once('-')
                            .unwrap_or(("0", ""));
                        let from = from.parse().unwrap_or(0).min(body.len());
                        let to = to.parse().map_or(body.len(), |to: usize| to + 1);
                        let part = &body[from..to.clamp(from, body.len())];
                        let mut response = format!(
                            "HTTP/1.1 206 Partial Content\r\nX-Repo-Commit: {COMMIT}\r\n\
                             ETag: \"{served_etag}\"\r\nContent-Range: bytes {from}-{}/{}\r\n\
                             Content-Length: {}\r\n\r\n",
                            (from + part.len()).saturating_sub(1),
                            body.len(),
                            part.len()
                        )
                        .into_bytes();
                        response.extend_from_slice(part);
                        response
                    };
                    let _ = (&stream).write_all(&response);
                }
            });
            Self {
                endpoint,
                requests,
                etag,
            }
        }

        fn hub(&self, cache: &Path) -> Hub {
            Hub::online(
                Cache::new(cache.to_path_buf()),
                Some(self.endpoint.clone()),
                Some(TOKEN.to_string()),
            )
            .expect("hub client")
        }

        /// The ranges asked of the file's bytes (after the redirect), each with whether it
        /// carried the token.
        fn file_requests(&self) -> Vec<(String, bool)> {
            let requests = self.requests.lock().expect("requests");
            requests
                .iter()
                .filter(|(path, _, _)| path.starts_with("/api/resolve-cache/"))
                .map(|(_, range, auth)| (range.clone(), auth.is_some()))
                .collect()
        }

        fn blobs(&self, cache: &Path) -> PathBuf {
            cache.join("models--org--repo/blobs")
        }
    }

    /// A GGUF-looking file of `len` bytes.
    fn gguf_bytes(len: usize) -> Vec<u8> {
        let mut body = b"GGUF".to_vec();
        body.extend((0..len - 4).map(|i| (i % 251) as u8));
        body
    }

    #[test]
    fn a_hub_listing_a_file_outside_the_cache_is_refused_before_anything_is_read() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = root.path().join("hub");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        // An earlier pull left the snapshot folder, so `..` from it resolves on disk.
        std::fs::create_dir_all(cache.join("models--org--repo/snapshots").join(commit))
            .expect("snapshot folder");
        // A file of the user's that the hostile listing points at, GGUF-looking so that
        // nothing but the name check stops it.
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&outside).expect("outside");
        let mut secret = b"GGUF".to_vec();
        secret.resize(64, 0);
        std::fs::write(outside.join("secret.gguf"), &secret).expect("secret");
        let hostile = "../../../../outside/secret.gguf";
        let info = serde_json::json!({"sha": commit, "siblings": [{"rfilename": hostile}]});
        let tiny = TinyHub::start(info.to_string());
        let store = Store::open(root.path().join("moat")).expect("store");

        let Err(err) = pull_from(&tiny.hub(&cache), &store, "org/repo") else {
            panic!("a file outside the cache was pulled");
        };
        assert!(matches!(err, StoreError::Fetch(_)), "{err}");
        assert!(err.to_string().contains(hostile), "{err}");
        let requests = tiny.requests();
        assert!(
            requests.iter().all(|r| r.contains("/api/models/")),
            "downloaded after a bad listing: {requests:?}"
        );
        let partials = std::fs::read_dir(store.tmp_dir()).expect("tmp").count();
        assert_eq!(partials, 0, "something was copied into the store");
    }

    #[test]
    fn a_hub_commit_that_is_not_a_hash_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let info = serde_json::json!({
            "sha": "../../../outside",
            "siblings": [{"rfilename": "model.gguf"}]
        });
        let tiny = TinyHub::start(info.to_string());
        let store = Store::open(root.path().join("moat")).expect("store");
        let Err(err) = pull_from(&tiny.hub(&root.path().join("hub")), &store, "org/repo") else {
            panic!("a path was taken for a commit");
        };
        assert!(err.to_string().contains("not a commit hash"), "{err}");
        assert!(!root.path().join("outside").exists());
    }

    /// Pulls `org/repo` from a hub that lists `model.gguf` at `commit` and answers its
    /// metadata request with `headers`; returns the error and the root of the test's files.
    fn pull_answered_with(headers: &str) -> (StoreError, tempfile::TempDir) {
        let root = tempfile::tempdir().expect("tempdir");
        let info = serde_json::json!({
            "sha": "0123456789abcdef0123456789abcdef01234567",
            "siblings": [{"rfilename": "model.gguf"}]
        });
        let tiny = TinyHub::serving(info.to_string(), Some(headers.to_string()));
        let store = Store::open(root.path().join("moat")).expect("store");
        let Err(err) = pull_from(&tiny.hub(&root.path().join("hub")), &store, "org/repo") else {
            panic!("pulled with headers {headers:?}");
        };
        let requests = tiny.requests();
        assert!(
            requests.iter().all(|r| !r.contains("bytes=1-")),
            "downloaded after the metadata: {requests:?}"
        );
        (err, root)
    }

    #[test]
    fn a_hub_etag_that_is_not_a_plain_name_is_refused_before_anything_is_written() {
        let commit = "X-Repo-Commit: 0123456789abcdef0123456789abcdef01234567\r\n";
        for etag in ["../../../outside/evil", "a/b", "..", "x.sync.part", ""] {
            let headers = format!("{commit}ETag: \"{etag}\"\r\nContent-Range: bytes 0-0/4\r\n");
            let (err, root) = pull_answered_with(&headers);
            assert!(matches!(err, StoreError::Fetch(_)), "{etag:?}: {err}");
            assert!(err.to_string().contains("ETag"), "{etag:?}: {err}");
            assert!(!root.path().join("outside").exists(), "{etag:?}");
            let blobs = root.path().join("hub/models--org--repo/blobs");
            let written = std::fs::read_dir(&blobs).map_or(0, |d| d.count());
            assert_eq!(written, 0, "{etag:?}: something was written to {blobs:?}");
        }
        // X-Linked-Etag wins over ETag, and is checked the same way.
        let headers = format!(
            "{commit}X-Linked-Etag: \"../evil\"\r\nETag: \"abc\"\r\nContent-Range: bytes 0-0/4\r\n"
        );
        assert!(pull_answered_with(&headers)
            .0
            .to_string()
            .contains("../evil"));
    }

    #[test]
    fn a_file_answered_for_another_commit_or_without_a_size_is_refused() {
        let (err, _root) = pull_answered_with(
            "X-Repo-Commit: ../../../outside\r\nETag: \"abc\"\r\nContent-Range: bytes 0-0/4\r\n",
        );
        assert!(err.to_string().contains("not the listed"), "{err}");
        let (err, _root) = pull_answered_with("ETag: \"abc\"\r\n");
        assert!(err.to_string().contains("no size"), "{err}");
    }

    #[test]
    fn etags_must_be_plain_names() {
        for good in [
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            "5f3c-1a2b",
        ] {
            assert_eq!(check_etag(good), Ok(()), "{good:?}");
        }
        for bad in ["", "..", "a/b", "a\\b", "a.b", "a b", &"f".repeat(129)] {
            assert!(check_etag(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            origin("http://127.0.0.1:8080/org/repo"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(origin("https://localhost"), "https://localhost");
    }

    #[test]
    fn repo_file_names_must_be_plain_relative_paths() {
        for good in [
            "model.gguf",
            ".gitattributes",
            "sub/dir/model-00001-of-00002.safetensors",
            "weird name..gguf",
        ] {
            assert_eq!(check_repo_file(good), Ok(()), "{good:?} refused");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x.gguf",
            "a/../../x.gguf",
            "a/./x.gguf",
            ".",
            "a//x.gguf",
            "a/",
            "a\\..\\x.gguf",
            "a\0.gguf",
            "a\nb.gguf",
            "a\u{7f}.gguf",
        ] {
            assert!(check_repo_file(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_relative_redirect_within_the_hub_keeps_the_token() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = root.path().join("hub");
        let body = gguf_bytes(64 * 1024);
        let hub = FileHub::start(body.clone());
        let store = Store::open(root.path().join("moat")).expect("store");

        let fetched = pull_from(&hub.hub(&cache), &store, "org/repo").expect("pull");

        assert_eq!(fetched.files[0].1.digest.hex(), hub.etag);
        let requests = hub.file_requests();
        assert_eq!(
            requests,
            [
                ("bytes=0-0".to_string(), true),
                ("bytes=0-".to_string(), true)
            ],
            "the metadata and the download, each from the redirected path with the token"
        );
        let blob = hub.blobs(&cache).join(&hub.etag);
        assert_eq!(std::fs::read(blob).expect("blob"), body);
        let snapshot = cache.join("models--org--repo/snapshots").join(COMMIT);
        assert_eq!(
            std::fs::read(snapshot.join("model.gguf")).expect("link"),
            body
        );
    }

    /// Sets the flag once the first bytes of a download have been written, and keeps the
    /// warnings.
    struct CancelOnFirstBytes(&'static AtomicBool, Vec<String>);

    impl Progress for CancelOnFirstBytes {
        fn begin(&mut self, _label: &str, _total: Option<u64>) {}
        fn advance(&mut self, bytes: u64) {
            if bytes > 0 {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        fn end(&mut self) {}
        fn warn(&mut self, message: &str) {
            self.1.push(message.to_string());
        }
    }

    #[test]
    fn a_cancelled_download_stops_keeps_its_part_and_the_next_pull_resumes_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = root.path().join("hub");
        let body = gguf_bytes(8 << 20);
        let hub = FileHub::start(body.clone());
        let store = Store::open(root.path().join("moat")).expect("store");
        let cancel: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));

        let mut progress = CancelOnFirstBytes(cancel, Vec::new());
        let Err(err) = pull_with(
            &hub.hub(&cache),
            &store,
            "org/repo",
            &mut progress,
            Some(cancel),
        ) else {
            panic!("a cancelled pull finished");
        };
        assert!(matches!(err, StoreError::Interrupted), "{err}");
        let blobs = hub.blobs(&cache);
        assert!(
            !blobs.join(&hub.etag).exists(),
            "a cut download was made whole"
        );
        let part = blobs.join(format!("{}.{PARTIAL_SUFFIX}", hub.etag));
        let kept = std::fs::metadata(&part).expect("the partial file").len();
        assert!(
            kept > 0 && kept < body.len() as u64,
            "kept {kept} bytes of {}",
            body.len()
        );
        assert_eq!(hub.file_requests().len(), 2, "retried after a cancel");
        let told = format!("{kept} of {} bytes kept", body.len());
        assert!(
            progress.1.len() == 1 && progress.1[0].contains(&told),
            "{:?}",
            progress.1
        );

        let fetched = pull_from(&hub.hub(&cache), &store, "org/repo").expect("resumed pull");
        assert_eq!(fetched.files[0].1.digest.hex(), hub.etag);
        let last = hub.file_requests().pop().expect("a request");
        assert_eq!(last.0, format!("bytes={kept}-"), "did not resume");
        assert_eq!(std::fs::read(blobs.join(&hub.etag)).expect("blob"), body);
    }

    #[test]
    fn a_download_waits_for_the_python_clients_lock_on_the_same_blob() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = root.path().join("hub");
        let hub = FileHub::start(gguf_bytes(64 * 1024));
        // huggingface_hub locks `.locks/models--ORG--NAME/ETAG.lock` (an flock) while it
        // downloads a blob.
        let locks = cache.join(".locks/models--org--repo");
        std::fs::create_dir_all(&locks).expect("locks folder");
        let python = std::fs::File::create(locks.join(format!("{}.lock", hub.etag))).expect("lock");
        python.lock().expect("flock");

        let (endpoint, store_dir, cache_dir) = (
            hub.endpoint.clone(),
            root.path().join("moat"),
            cache.clone(),
        );
        let pull = std::thread::spawn(move || {
            let hub = Hub::online(Cache::new(cache_dir), Some(endpoint), Some(TOKEN.into()))
                .expect("hub client");
            let store = Store::open(store_dir).expect("store");
            pull_from(&hub, &store, "org/repo").map(|fetched| fetched.files.len())
        });
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert!(!pull.is_finished(), "the pull did not wait for the lock");
        assert_eq!(
            hub.file_requests(),
            [("bytes=0-0".to_string(), true)],
            "downloaded while the Python client held the lock"
        );

        python.unlock().expect("unlock");
        assert_eq!(pull.join().expect("pull thread").expect("pull"), 1);
        assert_eq!(hub.file_requests().len(), 2);
        assert!(hub.blobs(&cache).join(&hub.etag).is_file());
    }

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
            "org/repo/./x.gguf",
            "org/repo/a\\x.gguf",
            "o rg/repo",
            "org/repo@",
        ] {
            assert!(HfSource::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
