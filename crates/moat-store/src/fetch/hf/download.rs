//! Downloads hub files into the Hugging Face cache the way the Python client lays it out, with
//! what moat checks on the way (see [`Downloader`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use hf_hub::api::sync::ApiError;
use hf_hub::Cache;

use super::{repo_cache_dir, repo_folder, HfSource, DOWNLOAD_RETRIES};
use crate::error::StoreError;
use crate::progress::Progress;

/// Most redirects followed within the hub's own host while reading a file's metadata.
const MAX_RELATIVE_REDIRECTS: usize = 5;
/// The suffix of a download in progress, as hf-hub names it, so either resumes the other's.
pub(super) const PARTIAL_SUFFIX: &str = "sync.part";

/// Why a download failed: the hub's answer (mapped to a message by [`hub_error`]), or
/// something moat refused or could not write.
pub(super) enum Failure {
    Hub(ApiError),
    Store(StoreError),
}

impl From<ureq::Error> for Failure {
    fn from(error: ureq::Error) -> Self {
        Failure::Hub(ApiError::RequestError(Box::new(error)))
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Store(error)
    }
}

/// Downloads files into the hub cache in hf-hub's layout (`blobs/ETAG`, `snapshots/COMMIT/FILE`
/// linking to it, `refs/REVISION` naming the commit), so the cache stays shared with other
/// tools and a cut download resumes from its `.sync.part`. moat does this itself rather than
/// through `hf-hub` because hf-hub 0.4.3 joins the response's `ETag` and `X-Repo-Commit`
/// headers to the cache folder unchecked: a hostile hub or mirror could answer
/// `ETag: "../../x"` and have it write outside the cache. Here the commit is the listing's
/// (already checked) and an ETag must be one plain name.
pub(super) struct Downloader {
    endpoint: String,
    token: Option<String>,
    /// Follows redirects (to a CDN, say) for the download itself.
    agent: ureq::Agent,
    /// Follows none, so the metadata comes from the hub's own answer.
    plain: ureq::Agent,
}

/// What the hub says of a file before it is downloaded.
struct FileMeta {
    etag: String,
    size: u64,
    /// Where to download it from: the file's URL after the hub's redirects within its own
    /// host, which keep the token (the agent drops it on the redirects it follows itself, as
    /// to a CDN).
    url: String,
}

impl Downloader {
    pub(super) fn new(endpoint: String, token: Option<String>) -> Self {
        let user_agent = format!("moat/{}", env!("CARGO_PKG_VERSION"));
        let builder = || {
            ureq::AgentBuilder::new()
                .try_proxy_from_env(true)
                .user_agent(&user_agent)
        };
        Self {
            endpoint,
            token,
            agent: builder().build(),
            plain: builder().redirects(0).build(),
        }
    }

    fn get(&self, agent: &ureq::Agent, url: &str) -> ureq::Request {
        let request = agent.get(url);
        match &self.token {
            Some(token) => request.set("Authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    pub(super) fn download(
        &self,
        cache: &Cache,
        source: &HfSource,
        commit: &str,
        file: &str,
        progress: &mut dyn Progress,
        cancel: Option<&'static AtomicBool>,
    ) -> std::result::Result<PathBuf, Failure> {
        let url = format!(
            "{}/{}/resolve/{commit}/{file}",
            self.endpoint, source.repo_id
        );
        let meta = self.metadata(&url, source, commit, file)?;
        let repo_dir = repo_cache_dir(cache, source);
        let blobs = repo_dir.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(StoreError::io("creating the hub cache"))?;
        let blob = blobs.join(&meta.etag);
        let whole = || std::fs::metadata(&blob).is_ok_and(|m| m.is_file() && m.len() == meta.size);
        if !whole() {
            // The Python client's lock for this blob (`.locks/models--ORG--NAME/ETAG.lock`,
            // an flock, as this one is), so that moat and the Python client downloading the
            // same file at once take turns instead of both fetching it.
            let shared_lock = shared_lock(cache, source, &meta.etag)?;
            match shared_lock.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    progress.note(&format!("{file}: waiting for another download of it"));
                    shared_lock.lock().map_err(cache_io)?;
                }
                Err(std::fs::TryLockError::Error(error)) => return Err(cache_io(error).into()),
            }
            let partial = blobs.join(format!("{}.{PARTIAL_SUFFIX}", meta.etag));
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&partial)
                .map_err(cache_io)?;
            // Another moat (or hf-hub) pull of the same blob, from another revision of the
            // repo say, waits here, then finds it whole.
            out.lock().map_err(cache_io)?;
            if !whole() {
                let mut out = Cancellable { file: out, cancel };
                let fetched = self.fetch_resuming(&meta.url, &mut out, meta.size, file, progress);
                if let Err(Failure::Store(StoreError::Interrupted)) = &fetched {
                    let kept = out.file.metadata().map_or(0, |m| m.len());
                    progress.warn(&format!(
                        "{file}: {kept} of {} bytes kept in the Hugging Face cache; pulling \
                         again resumes from there",
                        meta.size
                    ));
                }
                fetched?;
                std::fs::rename(&partial, &blob).map_err(StoreError::io("finishing a download"))?;
            }
        }
        let pointer = repo_dir.join("snapshots").join(commit).join(file);
        if let Some(parent) = pointer.parent() {
            std::fs::create_dir_all(parent).map_err(StoreError::io("creating a snapshot"))?;
        }
        link_blob(&blob, &pointer, &meta.etag, file)?;
        cache
            .repo(source.repo())
            .create_ref(commit)
            .map_err(StoreError::io("writing the hub cache's ref"))?;
        Ok(pointer)
    }

    /// The file's ETag and size, from the hub's answer to a one-byte request (following only
    /// redirects within its own host, as the Python client does: a CDN's answer would not
    /// carry them).
    fn metadata(
        &self,
        url: &str,
        source: &HfSource,
        commit: &str,
        file: &str,
    ) -> std::result::Result<FileMeta, Failure> {
        let mut url = url.to_string();
        let mut redirects = 0;
        let response = loop {
            let response = self
                .get(&self.plain, &url)
                .set("Range", "bytes=0-0")
                .call()?;
            let relative = response
                .header("Location")
                .filter(|location| location.starts_with('/') && !location.starts_with("//"));
            match relative {
                Some(location)
                    if (300..400).contains(&response.status())
                        && redirects < MAX_RELATIVE_REDIRECTS =>
                {
                    url = format!("{}{location}", origin(&url));
                    redirects += 1;
                }
                _ => break response,
            }
        };
        let refuse = |what: String| {
            Failure::Store(StoreError::Fetch(format!(
                "{} ({file}): {what}; refusing to pull from it",
                source.uri()
            )))
        };
        if let Some(answered) = response.header("x-repo-commit") {
            if answered != commit {
                return Err(refuse(format!(
                    "the hub answered for commit {answered:?}, not the listed {commit}"
                )));
            }
        }
        let etag = response
            .header("x-linked-etag")
            .or_else(|| response.header("etag"))
            .map(|etag| etag.trim().trim_start_matches("W/").replace('"', ""))
            .ok_or_else(|| refuse("the hub sent no ETag for the file".into()))?;
        check_etag(&etag).map_err(|reason| refuse(format!("its ETag {etag:?} {reason}")))?;
        let size = response
            .header("content-range")
            .and_then(|range| range.rsplit_once('/'))
            .and_then(|(_, total)| total.trim().parse().ok())
            .or_else(|| {
                response
                    .header("x-linked-size")
                    .and_then(|size| size.trim().parse().ok())
            })
            .or_else(|| {
                (response.status() == 200)
                    .then(|| response.header("content-length"))
                    .flatten()
                    .and_then(|size| size.trim().parse().ok())
            })
            .ok_or_else(|| refuse("the hub sent no size for the file".into()))?;
        Ok(FileMeta { etag, size, url })
    }

    /// Downloads into `out` (a partial file opened for appending), resuming from what it
    /// holds, with retries that resume too.
    fn fetch_resuming(
        &self,
        url: &str,
        out: &mut Cancellable,
        size: u64,
        file: &str,
        progress: &mut dyn Progress,
    ) -> std::result::Result<(), Failure> {
        let io = cache_io;
        let mut attempt = 0;
        loop {
            if out.cancelled() {
                return Err(Failure::Store(StoreError::Interrupted));
            }
            let mut start = out.file.metadata().map_err(io)?.len();
            if start > size {
                out.file.set_len(0).map_err(io)?;
                start = 0;
            }
            if start == size {
                return Ok(());
            }
            progress.begin(&format!("downloading {file}"), Some(size));
            progress.advance(start);
            let result = self.fetch_from(url, start, out, size, progress);
            progress.end();
            match result {
                Ok(()) => {
                    let got = out.file.metadata().map_err(io)?.len();
                    if got == size {
                        return Ok(());
                    }
                    if attempt >= DOWNLOAD_RETRIES {
                        return Err(Failure::Store(StoreError::SizeMismatch {
                            what: format!("{file} (downloaded)"),
                            expected: size,
                            actual: got,
                        }));
                    }
                }
                // A cut connection or a server error: retried from where the file stands.
                Err(Failure::Hub(_)) if attempt < DOWNLOAD_RETRIES => {}
                Err(error) => return Err(error),
            }
            attempt += 1;
            std::thread::sleep(std::time::Duration::from_millis(300 << attempt));
        }
    }

    fn fetch_from(
        &self,
        url: &str,
        start: u64,
        out: &mut Cancellable,
        size: u64,
        progress: &mut dyn Progress,
    ) -> std::result::Result<(), Failure> {
        let io = cache_io;
        let response = self
            .get(&self.agent, url)
            .set("Range", &format!("bytes={start}-"))
            .call()?;
        if start > 0 && response.status() != 206 {
            // The server sent the whole file: start the partial over.
            out.file.set_len(0).map_err(io)?;
        }
        let left = size.saturating_sub(out.file.metadata().map_err(io)?.len());
        // Never more than the announced size, whatever the server sends. An error of the
        // write side (a full disk) is retried like a cut connection, and then reported. A
        // cancelled pull keeps what it has in the partial file, for the next pull to resume.
        let mut body = std::io::Read::take(response.into_reader(), left);
        match crate::progress::copy_loop(&mut body, out, progress) {
            Ok(_) => Ok(()),
            Err(error) if crate::atomic::is_cancelled(&error) => {
                Err(Failure::Store(StoreError::Interrupted))
            }
            Err(error) => Err(Failure::Hub(ApiError::IoError(error))),
        }
    }
}

/// A partial download that stops taking bytes once the pull's cancel flag (Ctrl-C) is set.
struct Cancellable {
    file: std::fs::File,
    cancel: Option<&'static AtomicBool>,
}

impl Cancellable {
    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(|flag| flag.load(Ordering::Relaxed))
    }
}

impl std::io::Write for Cancellable {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.cancelled() {
            return Err(std::io::Error::other(crate::atomic::Cancelled));
        }
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The Python client's lock file for `etag`'s download, opened (and its folder made).
fn shared_lock(
    cache: &Cache,
    source: &HfSource,
    etag: &str,
) -> std::result::Result<std::fs::File, Failure> {
    let dir = cache.path().join(".locks").join(repo_folder(source));
    std::fs::create_dir_all(&dir).map_err(cache_io)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{etag}.lock")))
        .map_err(cache_io)?;
    Ok(lock)
}

fn cache_io(error: std::io::Error) -> StoreError {
    StoreError::io("writing a download into the hub cache")(error)
}

/// `scheme://host[:port]` of `url`.
pub(super) fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// An ETag names a blob file in the cache, so it must be one plain name: the hub's are hex
/// digests (sha256 for LFS files, a git sha1 otherwise).
pub(super) fn check_etag(etag: &str) -> std::result::Result<(), &'static str> {
    if etag.is_empty() || etag.len() > 128 {
        return Err("is empty or too long");
    }
    if !etag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("is not a plain name (letters, digits, '-' and '_' only)");
    }
    Ok(())
}

/// Makes `pointer` (`snapshots/COMMIT/FILE`) a relative link to `blobs/ETAG`, as the Python
/// client does; an existing one is left as it is.
fn link_blob(
    blob: &Path,
    pointer: &Path,
    etag: &str,
    file: &str,
) -> std::result::Result<(), Failure> {
    // A link whose blob was deleted resolves again once the blob is downloaded again.
    if pointer.exists() {
        return Ok(());
    }
    // Up from the pointer's folder to the repo's: COMMIT and snapshots, then one level per
    // folder in FILE.
    let depth = 1 + file.split('/').count();
    let mut target = PathBuf::new();
    for _ in 0..depth {
        target.push("..");
    }
    target.push("blobs");
    target.push(etag);
    #[cfg(unix)]
    let linked = std::os::unix::fs::symlink(&target, pointer);
    #[cfg(not(unix))]
    let linked = std::fs::copy(blob, pointer).map(|_| ());
    let _ = blob; // read on non-Unix systems only
    match linked {
        // Another client (the Python one, say) made the same link in the meantime.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && pointer.exists() => {
            Ok(())
        }
        linked => {
            linked.map_err(|e| Failure::Store(StoreError::io("linking a snapshot to its blob")(e)))
        }
    }
}
