//! `moat pull FILE` then `moat show NAME --json` on the three real test models: the facts the
//! issue names (architecture, parameters, quantization, context, license, chat template).

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

fn pull_and_show(file: &str, name: &str) -> Option<(TempHome, serde_json::Value)> {
    let path = test_model(file)?;
    let home = TempHome::new();
    ok(
        home.path(),
        &["pull", "-q", path.to_str().unwrap(), "--name", name],
    );
    let doc = json(home.path(), &["show", name, "--json"]);
    Some((home, doc))
}

#[test]
fn smollm2_is_llama_q4_1_apache_with_a_chat_template() {
    let Some((_home, doc)) = pull_and_show(models::SMOLLM2, "smollm2") else {
        return;
    };
    let info = &doc["info"];
    assert_eq!(doc["name"], "smollm2:latest");
    assert_eq!(info["architecture"], "llama");
    let params = info["parameters"].as_u64().unwrap();
    assert!((134_000_000..135_000_000).contains(&params), "{params}");
    assert_eq!(info["file_type"], "Q4_1");
    assert_eq!(info["tensor_types"]["Q4_1"]["tensors"], 210);
    assert_eq!(info["tensor_types"]["Q8_0"]["tensors"], 1);
    assert_eq!(info["context_length"], 8192);
    assert_eq!(info["embedding_length"], 576);
    assert_eq!(info["block_count"], 30);
    assert_eq!(info["head_count"], 9);
    assert_eq!(info["head_count_kv"], 3);
    assert_eq!(info["vocab_size"], 49152);
    assert_eq!(info["has_chat_template"], true);
    assert_eq!(info["weights_size"], 98_362_432);
    assert_eq!(info["license"]["license"], "apache-2.0");
    assert_eq!(doc["license"]["id"], "apache-2.0");
    assert!(
        doc["memory"]["total_bytes"].as_u64().unwrap()
            > doc["memory"]["weights_bytes"].as_u64().unwrap()
    );
}

#[test]
fn gemma3_is_gemma_licensed_without_a_chat_template() {
    let Some((_home, doc)) = pull_and_show(models::GEMMA3, "gemma3") else {
        return;
    };
    let info = &doc["info"];
    assert_eq!(info["architecture"], "gemma3");
    assert_eq!(info["file_type"], "Q4_K_M");
    assert_eq!(info["context_length"], 32768);
    assert_eq!(info["block_count"], 18);
    assert_eq!(info["vocab_size"], 262_144);
    assert_eq!(info["has_chat_template"], false);
    assert_eq!(info["license"]["license"], "gemma");
    assert_eq!(doc["license"]["id"], "gemma");
}

#[test]
fn qwen_coder_counts_its_untied_output_layer_and_names_no_license() {
    let Some((_home, doc)) = pull_and_show(models::QWEN25_CODER, "qwen") else {
        return;
    };
    let info = &doc["info"];
    assert_eq!(info["architecture"], "qwen2");
    let params = info["parameters"].as_u64().unwrap();
    assert!(
        (625_000_000..635_000_000).contains(&params),
        "{params} should count output.weight"
    );
    assert_eq!(info["head_count"], 14);
    assert_eq!(info["head_count_kv"], 2);
    assert_eq!(info["has_chat_template"], true);
    assert!(info["license"]["license"].is_null());
    assert!(doc["license"]["id"].is_null());
    assert_eq!(doc["license"]["detection"]["status"], "no_license_named");
}

#[test]
fn show_json_keys_are_the_documented_ones() {
    let Some((_home, doc)) = pull_and_show(models::SMOLLM2, "m") else {
        return;
    };
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let documented =
        std::fs::read_to_string(moat_testkit::repo_root().join("docs/show-json.md")).unwrap();
    for (section, value) in [
        ("top", &doc),
        ("info", &doc["info"]),
        ("memory", &doc["memory"]),
    ] {
        for key in keys(value) {
            assert!(
                documented.contains(&format!("`{key}`")),
                "{section} key `{key}` is not documented in docs/show-json.md"
            );
        }
    }
}

#[test]
fn memory_estimate_grows_with_context_and_parallel_sequences() {
    let Some((home, _)) = pull_and_show(models::SMOLLM2, "m") else {
        return;
    };
    let kv = |args: &[&str]| {
        let mut all = vec!["show", "m", "--json"];
        all.extend_from_slice(args);
        json(home.path(), &all)["memory"]["kv_cache_bytes"]
            .as_u64()
            .unwrap()
    };
    let one = kv(&["--ctx", "2048"]);
    assert_eq!(kv(&["--ctx", "4096"]), 2 * one);
    assert_eq!(kv(&["--ctx", "2048", "--parallel", "4"]), 4 * one);
    // 30 layers x 2048 cells x (3 KV heads x 64) x (K + V) x 2 bytes.
    assert_eq!(one, 30 * 2048 * 192 * 2 * 2);
    // 3 x 300 cells: llama.cpp pads the whole context to 256 (1024), and with one cache per
    // sequence (moat serve's default) each of the three to 256 as well (3 x 512).
    let per_cell = one / 2048;
    assert_eq!(kv(&["--ctx", "300", "--parallel", "3"]), 3 * 512 * per_cell);
    assert_eq!(
        kv(&["--ctx", "300", "--parallel", "3", "--kv-unified"]),
        1024 * per_cell
    );
    // SmolLM2 was trained on 8192 tokens; `moat serve` allocates no more, so neither does the
    // estimate.
    assert_eq!(kv(&["--ctx", "99999999999"]), kv(&["--ctx", "8192"]));
    for bad in [["--ctx", "1"], ["--parallel", "0"], ["--parallel", "257"]] {
        let mut all = vec!["show", "m"];
        all.extend_from_slice(&bad);
        fails(home.path(), &all, 2);
    }
}
