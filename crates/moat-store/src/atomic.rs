//! Crash-safe writes. Small files go through [`write_atomic`] (temp file, fsync, rename,
//! fsync of the folder). Blobs stream through a [`BlobWriter`] into a `*.partial` file under
//! `tmp/` that holds an exclusive lock for as long as its writer lives; only a verified,
//! fsynced file is renamed into `blobs/`. A writer killed mid-way leaves an unlocked partial
//! that [`sweep_partials`] removes, so the store itself never holds half a file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use moat_types::Digest;
use sha2::{Digest as _, Sha256};

use crate::error::{Result, StoreError};

const PARTIAL_SUFFIX: &str = ".partial";

/// Environment variable that makes blob writes fail with "no space left on device" after this
/// many bytes. It exists so tests can drive a full disk through the real binary, since no small
/// filesystem can be mounted where the tests run.
pub const FAULT_ENV: &str = "MOAT_FAULT_WRITE_AFTER_BYTES";

/// Writes `bytes` to `path` so that a reader sees either the old file or the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(StoreError::io(format!("creating {}", dir.display())))?;
    let tmp = dir.join(format!(".{}.{}", file_stem(path), unique_suffix()));
    let result = (|| -> io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(StoreError::io(format!("writing {}", path.display())))
}

fn file_stem(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A name no other writer in this or another process uses at the same time.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{nanos}-{n}.tmp", std::process::id())
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    // Directories can be opened and fsynced on Unix; elsewhere this is a no-op.
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// The error a [`BlobWriter`] returns once its cancel flag is set. (Not
/// `ErrorKind::Interrupted`, which `write_all` retries forever.)
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

pub(crate) fn is_cancelled(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<Cancelled>())
}

/// Streams bytes into a locked partial file while hashing them.
pub struct BlobWriter {
    file: File,
    path: PathBuf,
    hasher: Sha256,
    written: u64,
    fail_after: Option<u64>,
    cancel: Option<&'static AtomicBool>,
    finished: bool,
}

impl BlobWriter {
    pub(crate) fn create(tmp_dir: &Path, cancel: Option<&'static AtomicBool>) -> Result<Self> {
        fs::create_dir_all(tmp_dir)
            .map_err(StoreError::io(format!("creating {}", tmp_dir.display())))?;
        let path = tmp_dir.join(format!("{}{PARTIAL_SUFFIX}", unique_suffix()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(StoreError::io(format!("creating {}", path.display())))?;
        file.lock()
            .map_err(StoreError::io(format!("locking {}", path.display())))?;
        let fail_after = std::env::var(FAULT_ENV).ok().and_then(|v| v.parse().ok());
        Ok(Self {
            file,
            path,
            hasher: Sha256::new(),
            written: 0,
            fail_after,
            cancel,
            finished: false,
        })
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Flushes to disk and returns the digest; the caller then moves the file into place.
    pub(crate) fn finish(mut self) -> Result<FinishedBlob> {
        self.file
            .sync_all()
            .map_err(StoreError::io(format!("syncing {}", self.path.display())))?;
        self.finished = true;
        let digest = Digest::from_bytes(self.hasher.clone().finalize().into());
        Ok(FinishedBlob {
            path: self.path.clone(),
            digest,
            size: self.written,
            _lock: self,
        })
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cancel.is_some_and(|flag| flag.load(Ordering::Relaxed)) {
            return Err(io::Error::other(Cancelled));
        }
        if let Some(limit) = self.fail_after {
            if self.written + buf.len() as u64 > limit {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
        }
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// A complete, fsynced partial file and its digest. Dropping it without moving it into
/// place removes it.
pub struct FinishedBlob {
    pub path: PathBuf,
    pub digest: Digest,
    pub size: u64,
    _lock: BlobWriter,
}

impl Drop for FinishedBlob {
    fn drop(&mut self) {
        // If the file was renamed into place this fails harmlessly with NotFound.
        let _ = fs::remove_file(&self.path);
    }
}

/// Removes partial files whose writer is gone (its lock is free). Returns how many went.
pub fn sweep_partials(tmp_dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(tmp_dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_partial = path.to_string_lossy().ends_with(PARTIAL_SUFFIX);
        let is_stray_tmp = path.extension().is_some_and(|ext| ext == "tmp");
        if !(is_partial || is_stray_tmp) {
            continue;
        }
        let Ok(file) = OpenOptions::new().write(true).open(&path) else {
            continue;
        };
        if file.try_lock().is_ok() && fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.json");
        write_atomic(&path, b"one").expect("first");
        write_atomic(&path, b"two").expect("second");
        assert_eq!(fs::read(&path).expect("read"), b"two");
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn dropped_writer_leaves_nothing_and_sweep_skips_live_writers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut live = BlobWriter::create(dir.path(), None).expect("create");
        live.write_all(b"abc").expect("write");
        {
            let mut dead = BlobWriter::create(dir.path(), None).expect("create");
            dead.write_all(b"xyz").expect("write");
        }
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
        // A partial left by a killed process has no lock holder.
        fs::write(
            dir.path().join(format!("999-0-0.tmp{PARTIAL_SUFFIX}")),
            b"half",
        )
        .expect("w");
        assert_eq!(sweep_partials(dir.path()), 1);
        assert_eq!(
            fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "live partial kept"
        );
        let blob = live.finish().expect("finish");
        assert_eq!(blob.size, 3);
        assert_eq!(
            blob.digest.hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
