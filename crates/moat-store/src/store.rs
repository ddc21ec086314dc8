//! `Store`: the on-disk model store under `$MOAT_HOME/models`.
//!
//! ```text
//! models/blobs/sha256-<hex>          content-addressed; a pull renames a verified copy over it
//! models/manifests/<name>/<tag>.json  what a name stands for
//! models/tmp/*.partial                downloads in flight (each locked by its writer)
//! models/.lock                        held while manifests change or blobs are collected
//! ```
//! Blobs enter the store only together with the manifest that references them, under the
//! store lock, so a concurrent `rm` can never collect a blob a pull is about to use.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use moat_types::{Digest, ModelRef};
use sha2::{Digest as _, Sha256};

use crate::atomic::{self, BlobWriter, FinishedBlob};
use crate::error::{Result, StoreError};
use crate::manifest::Manifest;

pub struct Store {
    root: PathBuf,
    models: PathBuf,
}

/// One entry of [`Store::list`]: a manifest, or the path of one that could not be read.
pub enum ListEntry {
    Ok(Box<Manifest>),
    Damaged { path: PathBuf, error: StoreError },
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub bytes_freed: u64,
}

/// Holds the store lock until dropped.
pub struct StoreLock(#[allow(dead_code)] File);

impl Store {
    /// `$MOAT_HOME`, else `~/.moat`.
    pub fn default_root() -> PathBuf {
        if let Some(home) = std::env::var_os("MOAT_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home);
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| ".".into());
        home.join(".moat")
    }

    /// Opens (creating if needed) the store at `root` and removes partial files left by
    /// writers that were killed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let models = root.join("models");
        let store = Self { root, models };
        for dir in [store.blobs_dir(), store.manifests_dir(), store.tmp_dir()] {
            fs::create_dir_all(&dir)
                .map_err(StoreError::io(format!("creating {}", dir.display())))?;
        }
        atomic::sweep_partials(&store.tmp_dir());
        crate::fetch::sweep_workdirs(&store.tmp_dir());
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.models.join("blobs")
    }

    pub fn manifests_dir(&self) -> PathBuf {
        self.models.join("manifests")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.models.join("tmp")
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.file_name())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    fn manifest_path(&self, name: &ModelRef) -> PathBuf {
        let mut path = self.manifests_dir();
        path.extend(name.name().split('/'));
        path.join(format!("{}.json", name.tag()))
    }

    /// A writer for a new blob; `cancel` aborts the write when set (Ctrl-C).
    pub fn blob_writer(&self, cancel: Option<&'static AtomicBool>) -> Result<BlobWriter> {
        BlobWriter::create(&self.tmp_dir(), cancel)
    }

    /// Takes the exclusive store lock, waiting for other writers.
    pub fn lock(&self) -> Result<StoreLock> {
        lock_file(&self.models.join(".lock"))
    }

    /// Takes a lock named after `key` (a pull source), so that two pulls of the same source
    /// run one after the other and the second finds the work done.
    pub fn key_lock(&self, key: &str) -> Result<StoreLock> {
        let dir = self.models.join("locks");
        fs::create_dir_all(&dir).map_err(StoreError::io("creating the locks folder"))?;
        let name = Digest::from_bytes(Sha256::digest(key.as_bytes()).into()).hex();
        lock_file(&dir.join(format!("{}.lock", &name[..16])))
    }

    /// Moves finished blobs into place and writes the manifest, as one step under the store
    /// lock. Replaces an existing manifest of the same name (a re-pull).
    pub fn commit(&self, blobs: Vec<FinishedBlob>, manifest: &Manifest) -> Result<()> {
        let _lock = self.lock()?;
        for blob in blobs {
            let target = self.blob_path(&blob.digest);
            // A blob of the same digest may already be there, but nothing says it is still
            // whole (a full disk or a hand edit can truncate it), and the errors that find a
            // damaged blob tell the user to pull again. The new file was hashed as it was
            // written, so it replaces the old one. The rename is atomic: readers see one file or
            // the other, and one that has the old file open or mapped keeps its inode.
            fs::rename(&blob.path, &target).map_err(StoreError::io(format!(
                "moving blob into {}",
                target.display()
            )))?;
        }
        atomic::sync_dir(&self.blobs_dir()).map_err(StoreError::io("syncing the blobs folder"))?;
        self.write_manifest_locked(manifest)
    }

    fn write_manifest_locked(&self, manifest: &Manifest) -> Result<()> {
        for digest in manifest.digests() {
            if !self.has_blob(digest) {
                return Err(StoreError::MissingBlob {
                    model: manifest.name.to_string(),
                    digest: *digest,
                });
            }
        }
        let json = serde_json::to_vec_pretty(manifest)
            .map_err(|e| StoreError::Fetch(format!("serializing manifest: {e}")))?;
        atomic::write_atomic(&self.manifest_path(&manifest.name), &json)
    }

    /// Replaces the manifest of an existing model (settings such as a license override).
    pub fn update(&self, manifest: &Manifest) -> Result<()> {
        let _lock = self.lock()?;
        self.write_manifest_locked(manifest)
    }

    /// Reads the manifest `name` stands for.
    pub fn manifest(&self, name: &ModelRef) -> Result<Manifest> {
        let path = self.manifest_path(name);
        match fs::read(&path) {
            Ok(bytes) => parse_manifest(&path, &bytes, Some(name)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::ModelNotFound {
                name: name.to_string(),
                suggestions: self.suggest(name),
            }),
            Err(e) => Err(StoreError::io(format!("reading {}", path.display()))(e)),
        }
    }

    /// Parses `text` as a model reference and reads its manifest.
    pub fn resolve(&self, text: &str) -> Result<Manifest> {
        let name: ModelRef = text.parse()?;
        self.manifest(&name)
    }

    fn suggest(&self, wanted: &ModelRef) -> Vec<String> {
        let wanted_text = wanted.to_string();
        let mut scored: Vec<(f64, String)> = self
            .manifest_names()
            .into_iter()
            .map(|name| {
                let text = name.to_string();
                let score = strsim::jaro_winkler(&wanted_text, &text)
                    .max(strsim::jaro_winkler(wanted.name(), name.name()));
                (score, text)
            })
            .filter(|(score, _)| *score >= 0.75)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().take(3).map(|(_, name)| name).collect()
    }

    fn manifest_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut stack = vec![self.manifests_dir()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let hidden = entry.file_name().to_string_lossy().starts_with('.');
                if hidden {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|ext| ext == "json") {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    /// The name a manifest file's location gives it.
    fn name_for_path(&self, path: &Path) -> Option<ModelRef> {
        let relative = path.strip_prefix(self.manifests_dir()).ok()?;
        let tag = relative.file_stem()?.to_str()?;
        let name = relative
            .parent()?
            .to_str()?
            .replace(std::path::MAIN_SEPARATOR, "/");
        ModelRef::new(&name, tag).ok()
    }

    fn manifest_names(&self) -> Vec<ModelRef> {
        self.manifest_files()
            .iter()
            .filter_map(|path| self.name_for_path(path))
            .collect()
    }

    /// Every manifest in the store, damaged ones included, sorted by name.
    pub fn list(&self) -> Vec<ListEntry> {
        self.manifest_files()
            .into_iter()
            .map(|path| {
                let name = self.name_for_path(&path);
                let read = fs::read(&path)
                    .map_err(StoreError::io(format!("reading {}", path.display())))
                    .and_then(|bytes| parse_manifest(&path, &bytes, name.as_ref()));
                match read {
                    Ok(manifest) => ListEntry::Ok(Box::new(manifest)),
                    Err(error) => ListEntry::Damaged { path, error },
                }
            })
            .collect()
    }

    /// `moat cp`: `dst` becomes another name for the files of `src`.
    pub fn copy(&self, src: &ModelRef, dst: &ModelRef) -> Result<()> {
        let mut manifest = self.manifest(src)?;
        let _lock = self.lock()?;
        if self.manifest_path(dst).exists() {
            return Err(StoreError::AlreadyExists(dst.clone()));
        }
        manifest.name = dst.clone();
        self.write_manifest_locked(&manifest)
    }

    /// `moat rm`: removes the name, then every blob no other manifest references. A damaged
    /// manifest can be removed too.
    pub fn remove(&self, name: &ModelRef) -> Result<GcReport> {
        let path = self.manifest_path(name);
        let _lock = self.lock()?;
        if !path.is_file() {
            return Err(StoreError::ModelNotFound {
                name: name.to_string(),
                suggestions: self.suggest(name),
            });
        }
        fs::remove_file(&path).map_err(StoreError::io(format!("removing {}", path.display())))?;
        self.remove_empty_dirs(path.parent());
        self.collect_garbage_locked()
    }

    fn remove_empty_dirs(&self, mut dir: Option<&Path>) {
        let top = self.manifests_dir();
        while let Some(current) = dir {
            if current == top || fs::remove_dir(current).is_err() {
                break;
            }
            dir = current.parent();
        }
    }

    /// Removes blobs no manifest references. A damaged manifest stops collection, since the
    /// blobs it names cannot be known.
    pub fn collect_garbage(&self) -> Result<GcReport> {
        let _lock = self.lock()?;
        self.collect_garbage_locked()
    }

    fn collect_garbage_locked(&self) -> Result<GcReport> {
        let mut live = BTreeSet::new();
        for entry in self.list() {
            match entry {
                ListEntry::Ok(manifest) => live.extend(manifest.digests().map(Digest::file_name)),
                ListEntry::Damaged { .. } => return Ok(GcReport::default()),
            }
        }
        let mut report = GcReport::default();
        let entries =
            fs::read_dir(self.blobs_dir()).map_err(StoreError::io("listing the blobs folder"))?;
        for entry in entries.flatten() {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if !file_name.starts_with("sha256-") || live.contains(&file_name) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if fs::remove_file(entry.path()).is_ok() {
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        Ok(report)
    }

    /// The path of one of a model's files, checking that its blob is present.
    pub fn file_path(&self, manifest: &Manifest, digest: &Digest) -> Result<PathBuf> {
        let path = self.blob_path(digest);
        if path.is_file() {
            Ok(path)
        } else {
            Err(StoreError::MissingBlob {
                model: manifest.name.to_string(),
                digest: *digest,
            })
        }
    }
}

/// Opens (creating) `path` and takes an exclusive lock on it, waiting for its holder.
fn lock_file(path: &Path) -> Result<StoreLock> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(StoreError::io(format!("opening {}", path.display())))?;
    file.lock()
        .map_err(StoreError::io(format!("locking {}", path.display())))?;
    Ok(StoreLock(file))
}

fn parse_manifest(path: &Path, bytes: &[u8], expected: Option<&ModelRef>) -> Result<Manifest> {
    let damaged = |reason: String| StoreError::DamagedManifest {
        path: path.into(),
        reason,
    };
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| damaged(format!("not a valid manifest: {e}")))?;
    if manifest.schema != crate::manifest::MANIFEST_SCHEMA {
        return Err(damaged(format!("unsupported schema {}", manifest.schema)));
    }
    if let Some(expected) = expected {
        if &manifest.name != expected {
            return Err(damaged(format!(
                "it names '{}', not '{expected}'",
                manifest.name
            )));
        }
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn blob_of(store: &Store, bytes: &[u8]) -> FinishedBlob {
        let mut writer = store.blob_writer(None).expect("writer");
        writer.write_all(bytes).expect("write");
        writer.finish().expect("finish")
    }

    fn manifest_for(blob: &FinishedBlob) -> Manifest {
        let name = ModelRef::new("test/model", "latest").expect("name");
        Manifest::single_gguf(name, blob.digest, blob.size)
    }

    #[test]
    fn pulling_again_repairs_a_damaged_blob_of_the_same_digest() {
        let home = tempfile::tempdir().expect("tempdir");
        let store = Store::open(home.path()).expect("store");
        let content = b"GGUF and then the rest of a model's weights".repeat(100);
        let first = blob_of(&store, &content);
        let manifest = manifest_for(&first);
        let path = store.blob_path(&first.digest);
        store.commit(vec![first], &manifest).expect("first commit");
        // A full disk or a hand edit truncates the stored blob.
        fs::write(&path, &content[..100]).expect("truncate");
        let mut reader = File::open(&path).expect("open the damaged blob");

        let second = blob_of(&store, &content);
        store
            .commit(vec![second], &manifest)
            .expect("second commit");

        assert_eq!(fs::read(&path).expect("blob"), content, "blob not repaired");
        // A reader that had the old file open still reads the old file, whole.
        let mut old = Vec::new();
        reader.read_to_end(&mut old).expect("read old");
        assert_eq!(old, &content[..100]);
        let left = fs::read_dir(store.tmp_dir()).expect("tmp").count();
        assert_eq!(left, 0, "a partial file was left behind");
    }
}
