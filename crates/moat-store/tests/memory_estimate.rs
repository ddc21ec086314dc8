//! The memory estimate against what llama.cpp itself reported when it loaded the test models
//! (`bench/results/llamacpp-buffers.json`, made by `bench/llamacpp/buffers.sh` with
//! llama-server from llama-cpp-python 0.3.36's llama.cpp). The issue asks for the total within
//! 10%; weights, KV cache and output buffer are computed exactly, so they are held to 1%.

#![allow(clippy::unwrap_used)]

use moat_store::inspect::inspect_gguf;
use moat_store::inspect::memory::{estimate, MemoryParams};

const MIB: f64 = 1024.0 * 1024.0;

fn within(estimated: u64, measured_mib: f64, tolerance: f64) -> bool {
    let estimated = estimated as f64 / MIB;
    (estimated - measured_mib).abs() <= tolerance * measured_mib.max(0.01) + 0.01
}

#[test]
fn estimate_matches_llama_cpp_buffers_for_the_test_models() {
    let Some(dir) = std::env::var_os("MOAT_TEST_MODELS").filter(|d| !d.is_empty()) else {
        eprintln!("skipping: MOAT_TEST_MODELS is unset");
        return;
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../bench/results/llamacpp-buffers.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root).unwrap()).unwrap();
    let mut checked = 0;
    for case in doc["cases"].as_array().unwrap() {
        let flags = case["extra_flags"].as_str().unwrap();
        let ubatch = match flags {
            "" | "--kv-unified" | "-fa off" => 512,
            "-ub 256" => 256,
            "-ub 1024" => 1024,
            _ => continue, // quantized KV, --swa-full, no mmap: settings moat does not use
        };
        let (ctx, parallel) = (
            case["requested_ctx"].as_u64().unwrap(),
            case["parallel"].as_u64().unwrap(),
        );
        if case["tool"] != "llama-server" || case["status"] != "ok" || ctx % parallel != 0 {
            continue;
        }
        let model = &doc["models"][case["model"].as_str().unwrap()];
        let path = std::path::Path::new(&dir).join(model["file"].as_str().unwrap());
        assert!(path.exists(), "{} is missing", path.display());
        let info = inspect_gguf(&path, "test").unwrap();
        let params = MemoryParams {
            ctx_per_sequence: ctx / parallel,
            parallel,
            unified_kv: flags == "--kv-unified",
            flash_attention: flags != "-fa off",
            ubatch,
        };
        let got = estimate(&info, &params);
        let measured = &case["measured_components_mib"];
        let id = case["id"].as_str().unwrap();
        let weights =
            measured["weights_mib"].as_f64().unwrap() + measured["repack_mib"].as_f64().unwrap();
        assert!(
            within(got.weights_bytes, weights, 0.01),
            "{id}: weights {} vs {weights} MiB",
            got.weights_bytes as f64 / MIB
        );
        let kv = measured["kv_mib"].as_f64().unwrap();
        assert!(
            within(got.kv_cache_bytes, kv, 0.01),
            "{id}: KV {} vs {kv} MiB",
            got.kv_cache_bytes as f64 / MIB
        );
        let output = measured["output_mib"].as_f64().unwrap();
        assert!(
            within(got.output_bytes, output, 0.01),
            "{id}: output {} vs {output} MiB",
            got.output_bytes as f64 / MIB
        );
        let total = measured["total_mib"].as_f64().unwrap();
        assert!(
            within(got.total_bytes, total, 0.10),
            "{id}: total {} vs {total} MiB",
            got.total_bytes as f64 / MIB
        );
        eprintln!(
            "{id}: total {:.2} MiB estimated, {total:.2} MiB reported",
            got.total_bytes as f64 / MIB
        );
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} cases checked");
}
