//! Dev-only helpers shared by moat's integration tests: where the test models are
//! (`MOAT_TEST_MODELS`), a throwaway `MOAT_HOME`, and a local Hugging Face hub
//! (`fixtures/fake_hf_hub.py`) to pull from, since tests never touch the network.
//!
//! The rule for test models: with `MOAT_TEST_MODELS` unset a test that needs one prints that it
//! skips and passes; with it set (as `.ci/run` always does) a missing model is a failure.

#![allow(clippy::unwrap_used)]

pub mod pglite;
pub mod wheel;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// File names of the test models inside `MOAT_TEST_MODELS` (see `scripts/fetch-test-models.sh`).
pub mod models {
    pub const SMOLLM2: &str = "smollm2-135m-instruct-q4_1.gguf";
    pub const QWEN25_CODER: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
    pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";
    pub const MINILM: &str = "all-minilm-l6-v2";
}

/// The path of a test model, or `None` (after printing why) when `MOAT_TEST_MODELS` is unset.
/// Panics when the variable is set but the model is missing: CI must never skip silently.
pub fn test_model(name: &str) -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("MOAT_TEST_MODELS").filter(|d| !d.is_empty()) else {
        eprintln!("skipping: MOAT_TEST_MODELS is unset, so test model {name} is not available");
        return None;
    };
    let path = Path::new(&dir).join(name);
    assert!(
        path.exists(),
        "MOAT_TEST_MODELS is set but {} is missing; run scripts/fetch-test-models.sh",
        path.display()
    );
    Some(path)
}

/// A copy of the GGUF at `model`, written to `to`, with 4 bytes overwritten by `value` at `skip`
/// bytes after the first `needle` in the file: a metadata value follows its key and a 4-byte
/// type tag (`skip` 4); a 1-D tensor's type follows its name, its dimension count and its one
/// dimension (`skip` 12). For tests of hostile model files.
pub fn patched_gguf(model: &Path, to: &Path, needle: &str, skip: usize, value: [u8; 4]) {
    let mut bytes = std::fs::read(model).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|window| window == needle.as_bytes())
        .unwrap_or_else(|| panic!("no {needle:?} in {}", model.display()));
    let value_at = at + needle.len() + skip;
    bytes[value_at..value_at + 4].copy_from_slice(&value);
    std::fs::write(to, bytes).unwrap();
}

/// A temporary `MOAT_HOME`, removed on drop.
pub struct TempHome {
    dir: tempfile::TempDir,
}

impl TempHome {
    pub fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("moat-home-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TempHome {
    fn default() -> Self {
        Self::new()
    }
}

/// The repository root (for fixtures).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Options for [`FakeHub::start`].
#[derive(Default)]
pub struct FakeHubOptions {
    pub token: Option<String>,
    pub fail_after_bytes: Option<u64>,
    /// LFS files answer with a redirect to a CDN URL on another host name (`--lfs-redirect`).
    pub lfs_redirect: bool,
}

/// A local Hugging Face hub on 127.0.0.1 serving `root/ORG/REPO/...`; stopped on drop.
pub struct FakeHub {
    child: Child,
    pub endpoint: String,
    pub log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl FakeHub {
    pub fn start(root: &Path, options: FakeHubOptions) -> Self {
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("requests.jsonl");
        let script = repo_root().join("crates/moat-testkit/fixtures/fake_hf_hub.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .arg("--root")
            .arg(root)
            .arg("--log")
            .arg(&log);
        if let Some(token) = &options.token {
            command.arg("--token").arg(token);
        }
        if let Some(n) = options.fail_after_bytes {
            command.arg("--fail-after-bytes").arg(n.to_string());
        }
        if options.lfs_redirect {
            command.arg("--lfs-redirect");
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("fake hub said {line:?}"));
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
            _log_dir: log_dir,
        }
    }

    /// The request log, one JSON object per line.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Lays out `root/ORG/REPO` with the given (source file, path in repo) pairs.
    pub fn make_repo(root: &Path, repo: &str, files: &[(&Path, &str)]) {
        let dir = root.join(repo);
        for (source, dest) in files {
            let target = dir.join(dest);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            if std::fs::hard_link(source, &target).is_err() {
                std::fs::copy(source, &target).unwrap();
            }
        }
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
