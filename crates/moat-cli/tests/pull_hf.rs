//! `moat pull hf:…` against a local Hugging Face hub (`fixtures/fake_hf_hub.py`, checked with
//! the Python `huggingface_hub` client in `tests/python`): single GGUF files, whole safetensors
//! repos, tokens, offline mode, the standard cache, resumed downloads and corrupt caches.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use moat_testkit::{FakeHub, FakeHubOptions};

/// The sha256 of the SmolLM2 GGUF: its ETag and blob name in the hub cache.
const SMOL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

struct Hub {
    hub: FakeHub,
    _root: tempfile::TempDir,
    hf_home: tempfile::TempDir,
}

impl Hub {
    fn pull(&self, home: &Path, args: &[&str]) -> std::process::Output {
        self.command(home, args).output().unwrap()
    }

    fn command(&self, home: &Path, args: &[&str]) -> std::process::Command {
        let mut command = moat(home);
        command
            .args(["pull", "-q"])
            .args(args)
            .env("HF_ENDPOINT", &self.hub.endpoint)
            .env("HF_HOME", self.hf_home.path());
        command
    }
}

fn smol_hub(options: FakeHubOptions) -> Option<Hub> {
    let model = test_model(models::SMOLLM2)?;
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("readme.md"),
        "---\nlicense: apache-2.0\n---\n# SmolLM2\n",
    )
    .unwrap();
    let readme = root.path().join("readme.md");
    FakeHub::make_repo(
        root.path(),
        "HuggingFaceTB/SmolLM2-GGUF",
        &[(&model, "smollm2.Q4_1.gguf"), (&readme, "README.md")],
    );
    let hub = FakeHub::start(root.path(), options);
    Some(Hub {
        hub,
        _root: root,
        hf_home: tempfile::tempdir().unwrap(),
    })
}

#[test]
fn pulls_one_gguf_into_the_standard_cache_and_the_store() {
    let Some(hub) = smol_hub(FakeHubOptions::default()) else {
        return;
    };
    let home = TempHome::new();
    let output = hub.pull(
        home.path(),
        &[
            "hf:HuggingFaceTB/SmolLM2-GGUF/smollm2.Q4_1.gguf",
            "--name",
            "smol",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let doc = json(home.path(), &["show", "smol", "--json"]);
    assert_eq!(doc["info"]["architecture"], "llama");
    assert_eq!(
        doc["source"]["uri"],
        "hf:HuggingFaceTB/SmolLM2-GGUF/smollm2.Q4_1.gguf"
    );
    assert_eq!(doc["source"]["revision"].as_str().unwrap().len(), 40);
    let repo_cache = hub
        .hf_home
        .path()
        .join("hub/models--HuggingFaceTB--SmolLM2-GGUF");
    let cached = files_under(&repo_cache);
    assert!(
        cached.contains(&format!("blobs/{SMOL_SHA256}")),
        "{cached:?}"
    );
    assert!(cached.contains(&"refs/main".to_string()), "{cached:?}");
    assert!(
        cached
            .iter()
            .any(|f| f.starts_with("snapshots/") && f.ends_with("/smollm2.Q4_1.gguf")),
        "{cached:?}"
    );
}

#[test]
fn a_repo_with_one_gguf_needs_no_file_name_and_a_second_pull_uses_the_cache() {
    let Some(hub) = smol_hub(FakeHubOptions::default()) else {
        return;
    };
    let home = TempHome::new();
    assert!(hub
        .pull(home.path(), &["hf:HuggingFaceTB/SmolLM2-GGUF"])
        .status
        .success());
    let names = json(home.path(), &["ls", "--json"]);
    assert_eq!(names[0]["name"], "huggingfacetb/smollm2-gguf:latest");
    let downloads = |hub: &Hub| {
        hub.hub
            .requests()
            .iter()
            .filter(|r| {
                r.contains("\"GET\"") && r.contains("/resolve/") && !r.contains("bytes=0-0")
            })
            .count()
    };
    let before = downloads(&hub);
    assert!(hub
        .pull(
            home.path(),
            &["hf:HuggingFaceTB/SmolLM2-GGUF", "--name", "again"]
        )
        .status
        .success());
    assert_eq!(
        downloads(&hub),
        before,
        "the cached file was downloaded again"
    );
}

#[test]
fn a_token_is_sent_from_hf_token_and_its_absence_is_explained() {
    let Some(hub) = smol_hub(FakeHubOptions {
        token: Some("s3cret".into()),
        ..FakeHubOptions::default()
    }) else {
        return;
    };
    let home = TempHome::new();
    let output = hub.pull(
        home.path(),
        &["hf:HuggingFaceTB/SmolLM2-GGUF/smollm2.Q4_1.gguf"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("set HF_TOKEN"),
        "{}",
        stderr(&output)
    );
    let output = hub
        .command(
            home.path(),
            &["hf:HuggingFaceTB/SmolLM2-GGUF/smollm2.Q4_1.gguf"],
        )
        .env("HF_TOKEN", "s3cret")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn an_lfs_file_redirected_to_a_cdn_lands_in_the_cache_layout_of_the_python_client() {
    let Some(hub) = smol_hub(FakeHubOptions {
        token: Some("s3cret".into()),
        lfs_redirect: true,
        ..FakeHubOptions::default()
    }) else {
        return;
    };
    let home = TempHome::new();
    let output = hub
        .command(
            home.path(),
            &[
                "hf:HuggingFaceTB/SmolLM2-GGUF/smollm2.Q4_1.gguf",
                "--name",
                "smol",
            ],
        )
        .env("HF_TOKEN", "s3cret")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let requests = hub.hub.requests();
    let from_cdn = requests.iter().any(|r| {
        let r: serde_json::Value = serde_json::from_str(r).unwrap();
        r["path"].as_str().unwrap().contains("/_cdn/") && r["bytes"] == 98_362_432
    });
    assert!(from_cdn, "{requests:?}");
    let repo = hub
        .hf_home
        .path()
        .join("hub/models--HuggingFaceTB--SmolLM2-GGUF");
    let snapshots: Vec<_> = std::fs::read_dir(repo.join("snapshots"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(snapshots.len(), 1);
    let pointer = snapshots[0].path().join("smollm2.Q4_1.gguf");
    assert_eq!(
        std::fs::read_link(&pointer).unwrap(),
        Path::new("../../blobs").join(SMOL_SHA256)
    );
    assert_eq!(std::fs::metadata(&pointer).unwrap().len(), 98_362_432);
    let commit = std::fs::read_to_string(repo.join("refs/main")).unwrap();
    assert_eq!(snapshots[0].file_name().to_str().unwrap(), commit.trim());
    assert_eq!(
        json(home.path(), &["show", "smol", "--json"])["info"]["weights_size"],
        98_362_432
    );
}

#[test]
fn missing_repos_and_files_are_clear_errors() {
    let Some(hub) = smol_hub(FakeHubOptions::default()) else {
        return;
    };
    let home = TempHome::new();
    let output = hub.pull(home.path(), &["hf:nobody/nothing/x.gguf"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("repo or revision not found"),
        "{}",
        stderr(&output)
    );
    let output = hub.pull(home.path(), &["hf:HuggingFaceTB/SmolLM2-GGUF/missing.gguf"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no such file in the repo"),
        "{}",
        stderr(&output)
    );
    let output = hub.pull(home.path(), &["hf:HuggingFaceTB/SmolLM2-GGUF@v9"]);
    assert!(stderr(&output).contains("not found"), "{}", stderr(&output));
}

#[test]
fn offline_mode_reads_only_the_cache() {
    let Some(hub) = smol_hub(FakeHubOptions::default()) else {
        return;
    };
    let home = TempHome::new();
    assert!(hub
        .pull(
            home.path(),
            &["hf:HuggingFaceTB/SmolLM2-GGUF/smollm2.Q4_1.gguf"]
        )
        .status
        .success());
    let Hub {
        hub: server,
        _root,
        hf_home,
    } = hub;
    let endpoint = server.endpoint.clone();
    drop(server);
    let offline = |args: &[&str]| {
        moat(home.path())
            .args(["pull", "-q"])
            .args(args)
            .env("HF_ENDPOINT", &endpoint)
            .env("HF_HOME", hf_home.path())
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap()
    };
    let output = offline(&[
        "hf:HuggingFaceTB/SmolLM2-GGUF/smollm2.Q4_1.gguf",
        "--name",
        "offline",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = offline(&["hf:other/repo/model.gguf"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("HF_HUB_OFFLINE"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_cut_download_resumes_where_it_stopped() {
    let Some(hub) = smol_hub(FakeHubOptions {
        fail_after_bytes: Some(40_000_000),
        ..FakeHubOptions::default()
    }) else {
        return;
    };
    let home = TempHome::new();
    let output = hub.pull(
        home.path(),
        &[
            "hf:HuggingFaceTB/SmolLM2-GGUF/smollm2.Q4_1.gguf",
            "--name",
            "smol",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let requests = hub.hub.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("\"truncated\": true") || r.contains("\"truncated\":true")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.contains("bytes=40000000-")),
        "no resumed range request: {requests:?}"
    );
    assert_eq!(
        json(home.path(), &["show", "smol", "--json"])["info"]["weights_size"],
        98_362_432
    );
}

#[test]
fn a_corrupt_cached_file_fails_its_sha256_check() {
    let Some(hub) = smol_hub(FakeHubOptions::default()) else {
        return;
    };
    let home = TempHome::new();
    assert!(hub
        .pull(
            home.path(),
            &["hf:HuggingFaceTB/SmolLM2-GGUF/smollm2.Q4_1.gguf"]
        )
        .status
        .success());
    let blob = hub
        .hf_home
        .path()
        .join("hub/models--HuggingFaceTB--SmolLM2-GGUF/blobs")
        .join(SMOL_SHA256);
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[5_000_000] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let output = hub.pull(
        home.path(),
        &[
            "hf:HuggingFaceTB/SmolLM2-GGUF/smollm2.Q4_1.gguf",
            "--name",
            "again",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("checksum mismatch"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_cached_link_whose_blob_is_gone_is_downloaded_again() {
    let Some(hub) = smol_hub(FakeHubOptions::default()) else {
        return;
    };
    let home = TempHome::new();
    let source = "hf:HuggingFaceTB/SmolLM2-GGUF/smollm2.Q4_1.gguf";
    assert!(hub.pull(home.path(), &[source]).status.success());
    let blob = hub
        .hf_home
        .path()
        .join("hub/models--HuggingFaceTB--SmolLM2-GGUF/blobs")
        .join(SMOL_SHA256);
    std::fs::remove_file(&blob).unwrap();
    let output = hub.pull(home.path(), &[source, "--name", "again"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(std::fs::metadata(&blob).unwrap().len(), 98_362_432);
}

#[test]
fn pulls_a_safetensors_repo_with_its_model_card_license() {
    let Some(minilm) = test_model(models::MINILM) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let readme = root.path().join("card.md");
    std::fs::write(
        &readme,
        "---\nlicense: apache-2.0\nlibrary_name: sentence-transformers\n---\n# all-MiniLM-L6-v2\n",
    )
    .unwrap();
    let files = [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "1_Pooling/config.json",
    ];
    let mut pairs: Vec<(std::path::PathBuf, &str)> =
        files.iter().map(|f| (minilm.join(f), *f)).collect();
    pairs.push((readme, "README.md"));
    let borrowed: Vec<(&Path, &str)> = pairs.iter().map(|(p, d)| (p.as_path(), *d)).collect();
    FakeHub::make_repo(
        root.path(),
        "sentence-transformers/all-MiniLM-L6-v2",
        &borrowed,
    );
    let server = FakeHub::start(root.path(), FakeHubOptions::default());
    let hub = Hub {
        hub: server,
        _root: root,
        hf_home: tempfile::tempdir().unwrap(),
    };
    let home = TempHome::new();
    let output = hub.pull(
        home.path(),
        &[
            "hf:sentence-transformers/all-MiniLM-L6-v2",
            "--name",
            "minilm",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let doc = json(home.path(), &["show", "minilm", "--json"]);
    assert_eq!(doc["format"], "safetensors");
    assert_eq!(doc["info"]["architecture"], "bert");
    let params = doc["info"]["parameters"].as_u64().unwrap();
    assert!((22_500_000..23_000_000).contains(&params), "{params}");
    assert_eq!(doc["info"]["embedding_length"], 384);
    assert_eq!(doc["license"]["id"], "apache-2.0");
    assert_eq!(doc["files"].as_array().unwrap().len(), 5);
}
