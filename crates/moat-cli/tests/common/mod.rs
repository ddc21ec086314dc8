//! Runs the real `moat` binary in a temporary home, for the integration tests.

#![allow(dead_code, unused_imports, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

pub use moat_testkit::{models, test_model, TempHome};

pub fn moat(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_moat"));
    command
        .env("MOAT_HOME", home)
        .env_remove("HF_ENDPOINT")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HUB_OFFLINE")
        .env_remove(moat_store_fault_env());
    command
}

fn moat_store_fault_env() -> &'static str {
    "MOAT_FAULT_WRITE_AFTER_BYTES"
}

/// Runs `moat ARGS` and returns its output.
pub fn run(home: &Path, args: &[&str]) -> Output {
    moat(home).args(args).output().unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `moat ARGS`, asserts success and returns stdout.
pub fn ok(home: &Path, args: &[&str]) -> String {
    let output = run(home, args);
    assert!(
        output.status.success(),
        "moat {args:?} failed: {}\n{}",
        stderr(&output),
        stdout(&output)
    );
    stdout(&output)
}

/// Runs `moat ARGS`, asserts it fails with `code` and returns stderr.
pub fn fails(home: &Path, args: &[&str], code: i32) -> String {
    let output = run(home, args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "moat {args:?}: {}\n{}",
        stderr(&output),
        stdout(&output)
    );
    stderr(&output)
}

pub fn json(home: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(home, args)).unwrap()
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}
