//! The model store through the real binary: names, aliases, removal with shared blobs, and
//! every bad input the issue lists (unknown names, sources and files, truncated downloads, a
//! full disk, damaged manifests, kills and Ctrl-C mid-pull, two pulls at once).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

fn blobs(home: &Path) -> Vec<String> {
    files_under(&home.join("models/blobs"))
}

fn tmp_files(home: &Path) -> Vec<String> {
    files_under(&home.join("models/tmp"))
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn cp_shares_blobs_and_rm_keeps_them_until_the_last_name_goes() {
    let Some(model) = test_model(models::SMOLLM2) else {
        return;
    };
    let home = TempHome::new();
    let h = home.path();
    ok(h, &["pull", "-q", path_str(&model), "--name", "a"]);
    ok(h, &["cp", "a", "b:v2"]);
    let listed = json(h, &["ls", "--json"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a:latest", "b:v2"]);
    assert_eq!(blobs(h).len(), 1);
    assert!(fails(h, &["cp", "a", "b:v2"], 1).contains("already exists"));
    ok(h, &["rm", "a"]);
    assert_eq!(blobs(h).len(), 1, "b:v2 still uses the blob");
    assert_eq!(
        json(h, &["show", "b:v2", "--json"])["info"]["architecture"],
        "llama"
    );
    ok(h, &["rm", "b:v2"]);
    assert!(blobs(h).is_empty());
    assert!(fails(h, &["rm", "b:v2"], 1).contains("not found"));
}

#[test]
fn unknown_names_sources_and_files_are_clear_errors() {
    let Some(model) = test_model(models::SMOLLM2) else {
        return;
    };
    let home = TempHome::new();
    let h = home.path();
    ok(h, &["pull", "-q", path_str(&model), "--name", "smollm2"]);
    let err = fails(h, &["show", "smolm2"], 1);
    assert!(
        err.contains("model 'smolm2:latest' not found")
            && err.contains("did you mean smollm2:latest"),
        "{err}"
    );
    let err = fails(h, &["pull", "s3:bucket/model.gguf"], 1);
    assert!(err.contains("unknown source scheme 's3:'"), "{err}");
    let err = fails(h, &["pull", "./missing/model.gguf"], 1);
    assert!(err.contains("no such file or folder"), "{err}");
    let err = fails(h, &["pull", "smollm"], 1);
    assert!(err.contains("did you mean 'smollm2'"), "{err}");
    let not_gguf = h.join("notes.gguf");
    std::fs::write(&not_gguf, b"hello").unwrap();
    let err = fails(h, &["pull", path_str(&not_gguf)], 1);
    assert!(err.contains("not a GGUF file"), "{err}");
    let err = fails(h, &["show", "../etc/passwd"], 1);
    assert!(err.contains("may only hold"), "{err}");
    assert_eq!(blobs(h).len(), 1);
}

#[test]
fn truncated_gguf_is_rejected_and_leaves_the_store_as_it_was() {
    let Some(model) = test_model(models::SMOLLM2) else {
        return;
    };
    let home = TempHome::new();
    let h = home.path();
    let bytes = std::fs::read(&model).unwrap();
    for cut in [100, 1_000_000, bytes.len() - 1] {
        let truncated = h.join(format!("cut-{cut}.gguf"));
        std::fs::write(&truncated, &bytes[..cut]).unwrap();
        let err = fails(h, &["pull", path_str(&truncated)], 1);
        assert!(
            err.contains("corrupt or truncated GGUF"),
            "cut {cut}: {err}"
        );
    }
    assert!(blobs(h).is_empty());
    assert!(tmp_files(h).is_empty());
    assert!(json(h, &["ls", "--json"]).as_array().unwrap().is_empty());
}

#[test]
fn a_hyperparameter_llama_cpp_would_abort_on_is_refused_at_pull() {
    let Some(model) = test_model(models::SMOLLM2) else {
        return;
    };
    let home = TempHome::new();
    let h = home.path();
    // No layers.
    let hostile = h.join("no-layers.gguf");
    moat_testkit::patched_gguf(&model, &hostile, "llama.block_count", 4, 0u32.to_le_bytes());
    let err = fails(h, &["pull", path_str(&hostile)], 1);
    assert!(
        err.contains("'llama.block_count' is 0") && err.contains("llama.cpp would abort"),
        "{err}"
    );
    assert!(blobs(h).is_empty());
    assert!(tmp_files(h).is_empty());
}

#[test]
fn full_disk_during_a_pull_fails_cleanly() {
    let (Some(small), Some(big)) = (test_model(models::SMOLLM2), test_model(models::GEMMA3)) else {
        return;
    };
    let home = TempHome::new();
    let h = home.path();
    ok(h, &["pull", "-q", path_str(&small), "--name", "kept"]);
    let output = moat(h)
        .args(["pull", "-q", path_str(&big), "--name", "gemma"])
        .env("MOAT_FAULT_WRITE_AFTER_BYTES", "50000000")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("No space left on device"),
        "{}",
        stderr(&output)
    );
    assert_eq!(blobs(h).len(), 1);
    assert!(tmp_files(h).is_empty(), "{:?}", tmp_files(h));
    assert_eq!(
        json(h, &["show", "kept", "--json"])["info"]["architecture"],
        "llama"
    );
    fails(h, &["show", "gemma"], 1);
}

#[test]
fn a_damaged_manifest_is_reported_and_the_rest_of_the_store_works() {
    let Some(model) = test_model(models::SMOLLM2) else {
        return;
    };
    let home = TempHome::new();
    let h = home.path();
    ok(h, &["pull", "-q", path_str(&model), "--name", "good"]);
    ok(h, &["cp", "good", "broken"]);
    std::fs::write(
        h.join("models/manifests/broken/latest.json"),
        b"{\"schema\": 1, \"na",
    )
    .unwrap();
    let output = run(h, &["ls"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("broken/latest.json is damaged"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).contains("good:latest"));
    let err = fails(h, &["show", "broken"], 1);
    assert!(err.contains("is damaged"), "{err}");
    ok(h, &["show", "good"]);
    ok(h, &["rm", "broken"]);
    ok(h, &["ls"]);
    assert_eq!(blobs(h).len(), 1);
}

fn wait_for_partial(home: &Path, deadline: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < deadline {
        let growing = std::fs::read_dir(home.join("models/tmp"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name().to_string_lossy().ends_with(".partial")
                    && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
            });
        if growing {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn interrupted_pull(signal: &str) -> Option<(TempHome, std::process::ExitStatus)> {
    let model = test_model(models::QWEN25_CODER)?;
    let home = TempHome::new();
    let mut child = moat(home.path())
        .args(["pull", "-q", path_str(&model), "--name", "q"])
        .spawn()
        .unwrap();
    assert!(
        wait_for_partial(home.path(), Duration::from_secs(30)),
        "no partial file appeared"
    );
    let killed = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    Some((home, status))
}

#[test]
fn kill_9_mid_pull_leaves_no_half_file_in_the_store() {
    let Some((home, status)) = interrupted_pull("-KILL") else {
        return;
    };
    let h = home.path();
    assert!(!status.success());
    assert!(blobs(h).is_empty(), "{:?}", blobs(h));
    assert!(files_under(&h.join("models/manifests")).is_empty());
    // The next command sweeps the dead writer's partial file.
    ok(h, &["ls"]);
    assert!(tmp_files(h).is_empty(), "{:?}", tmp_files(h));
}

#[test]
fn ctrl_c_mid_pull_exits_130_and_cleans_up() {
    let Some((home, status)) = interrupted_pull("-INT") else {
        return;
    };
    let h = home.path();
    assert_eq!(status.code(), Some(130));
    assert!(blobs(h).is_empty());
    assert!(tmp_files(h).is_empty(), "{:?}", tmp_files(h));
}

#[test]
fn two_pulls_of_the_same_model_at_once_end_with_one_good_copy() {
    let Some(model) = test_model(models::QWEN25_CODER) else {
        return;
    };
    let home = TempHome::new();
    let h = home.path();
    let children: Vec<_> = (0..2)
        .map(|_| {
            moat(h)
                .args(["pull", "-q", path_str(&model), "--name", "q"])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let blob_names = blobs(h);
    assert_eq!(
        blob_names,
        ["sha256-1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"]
    );
    let stored: PathBuf = h.join("models/blobs").join(&blob_names[0]);
    assert_eq!(std::fs::metadata(stored).unwrap().len(), 491_400_064);
    assert!(tmp_files(h).is_empty());
    assert_eq!(
        json(h, &["show", "q", "--json"])["info"]["architecture"],
        "qwen2"
    );
}

#[test]
fn pull_with_a_wrong_sha256_is_refused() {
    let Some(model) = test_model(models::SMOLLM2) else {
        return;
    };
    let home = TempHome::new();
    let h = home.path();
    let wrong = "0".repeat(64);
    let err = fails(h, &["pull", "-q", path_str(&model), "--sha256", &wrong], 1);
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(blobs(h).is_empty());
    let right = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
    ok(h, &["pull", "-q", path_str(&model), "--sha256", right]);
}

#[test]
fn every_subcommand_has_help() {
    let home = TempHome::new();
    for args in [
        vec!["--help"],
        vec!["pull", "--help"],
        vec!["ls", "--help"],
        vec!["show", "--help"],
        vec!["cp", "--help"],
        vec!["rm", "--help"],
        vec!["license", "--help"],
        vec!["license", "check", "--help"],
        vec!["license", "list", "--help"],
        vec!["license", "set", "--help"],
    ] {
        let out = ok(home.path(), &args);
        assert!(out.contains("Usage:"), "{args:?}: {out}");
    }
    assert_eq!(run(home.path(), &["frobnicate"]).status.code(), Some(2));
}
