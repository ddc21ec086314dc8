//! `moat license check|list|set` through the real binary: verdicts with their clauses and
//! exit codes on the real test models, profiles from flags and from moat.toml, and overrides.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;

fn pulled(file: &str, name: &str) -> Option<TempHome> {
    let model = test_model(file)?;
    let home = TempHome::new();
    ok(
        home.path(),
        &["pull", "-q", model.to_str().unwrap(), "--name", name],
    );
    Some(home)
}

fn check(home: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["license", "check"];
    all.extend_from_slice(args);
    all.push("--json");
    let output = run(home, &all);
    let doc =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|_| panic!("{}", stderr(&output)));
    (output.status.code().unwrap(), doc)
}

#[test]
fn smollm2_is_allowed_and_redistribution_brings_apache_obligations() {
    let Some(home) = pulled(models::SMOLLM2, "smol") else {
        return;
    };
    let (code, doc) = check(home.path(), &["smol", "--commercial"]);
    assert_eq!((code, doc["outcome"].as_str().unwrap()), (0, "allowed"));
    let (code, doc) = check(home.path(), &["smol", "--redistribute"]);
    assert_eq!(code, 10);
    assert_eq!(doc["outcome"], "allowed_with_obligations");
    assert!(doc["obligations"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["kind"] == "license_copy" && o["clause"]["ref"] == "4(a)"));
}

#[test]
fn gemma_as_a_public_api_must_pass_the_use_restrictions_on() {
    let Some(home) = pulled(models::GEMMA3, "gemma") else {
        return;
    };
    let (code, doc) = check(home.path(), &["gemma", "--commercial", "--api"]);
    assert_eq!(code, 10);
    let pass_on = doc["obligations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "use_policy_pass_through")
        .expect("pass-through obligation");
    assert_eq!(pass_on["clause"]["ref"], "3.1.1");
    assert!(pass_on["clause"]["quote"]
        .as_str()
        .unwrap()
        .contains("enforceable provision"));
    let human = stdout(&run(home.path(), &["license", "check", "gemma", "--api"]));
    assert!(
        human.contains("ALLOWED WITH OBLIGATIONS") && human.contains("clause 3.1.1"),
        "{human}"
    );
}

#[test]
fn qwen_coder_is_unknown_until_its_license_is_set() {
    let Some(home) = pulled(models::QWEN25_CODER, "qwen") else {
        return;
    };
    let (code, doc) = check(home.path(), &["qwen", "--commercial"]);
    assert_eq!((code, doc["outcome"].as_str().unwrap()), (30, "unknown"));
    let err = fails(home.path(), &["license", "set", "qwen", "lama3.1"], 1);
    assert!(err.contains("did you mean"), "{err}");
    ok(home.path(), &["license", "set", "qwen", "apache-2.0"]);
    let (code, doc) = check(home.path(), &["qwen", "--commercial"]);
    assert_eq!(code, 0);
    assert_eq!(doc["overridden"], true);
    assert_eq!(
        json(home.path(), &["show", "qwen", "--json"])["settings"]["license_override"],
        "apache-2.0"
    );
    // A research license with commercial use is forbidden, with the clause quoted.
    ok(home.path(), &["license", "set", "qwen", "qwen-research"]);
    let (code, doc) = check(home.path(), &["qwen", "--commercial"]);
    assert_eq!(code, 20);
    assert_eq!(doc["deciding"]["clause"]["ref"], "2.b");
    ok(home.path(), &["license", "set", "qwen", "--clear"]);
    assert_eq!(check(home.path(), &["qwen"]).0, 30);
}

#[test]
fn a_license_override_stays_with_its_model_not_with_the_name() {
    let (Some(qwen), Some(smol)) = (
        test_model(models::QWEN25_CODER),
        test_model(models::SMOLLM2),
    ) else {
        return;
    };
    let home = TempHome::new();
    let pull = |model: &Path| {
        let output = run(
            home.path(),
            &["pull", "-q", model.to_str().unwrap(), "--name", "m"],
        );
        assert!(output.status.success(), "{}", stderr(&output));
        stderr(&output)
    };
    pull(&qwen);
    ok(home.path(), &["license", "set", "m", "apache-2.0"]);
    // The same model pulled again is an update: the override stays, without a word.
    let said = pull(&qwen);
    assert!(said.is_empty(), "{said}");
    let (code, doc) = check(home.path(), &["m", "--commercial"]);
    assert_eq!((code, &doc["overridden"]), (0, &serde_json::json!(true)));
    // Another model under the name does not inherit it; `-q` does not hide the warning.
    let said = pull(&smol);
    assert!(
        said.contains("warning:") && said.contains("license override"),
        "{said}"
    );
    let (_, doc) = check(home.path(), &["m", "--commercial"]);
    assert_eq!(doc["overridden"], false, "{doc}");
    assert!(json(home.path(), &["show", "m", "--json"])["settings"]["license_override"].is_null());
}

#[test]
fn llama_3_1_at_800m_users_is_forbidden_via_moat_toml() {
    let Some(home) = pulled(models::SMOLLM2, "llama") else {
        return;
    };
    ok(home.path(), &["license", "set", "llama", "llama3.1"]);
    std::fs::write(
        home.path().join("moat.toml"),
        "[deployment]\ncommercial = true\nmonthly_active_users = 800000000\n",
    )
    .unwrap();
    let (code, doc) = check(home.path(), &["llama"]);
    assert_eq!(code, 20);
    assert_eq!(doc["deciding"]["dimension"], "user_cap");
    // Flags win over the file.
    let (code, _) = check(home.path(), &["llama", "--mau", "1000"]);
    assert_eq!(code, 0);
    std::fs::write(
        home.path().join("moat.toml"),
        "[deployment]\ncomercial = true\n",
    )
    .unwrap();
    let err = fails(home.path(), &["license", "check", "llama"], 1);
    assert!(err.contains("comercial"), "{err}");
}

#[test]
fn license_list_names_every_license_in_the_fact_base() {
    let home = TempHome::new();
    let list = json(home.path(), &["license", "list", "--json"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    for id in [
        "llama3.1",
        "gemma",
        "apache-2.0",
        "qwen-research",
        "mrl",
        "falcon-llm-license",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    assert_eq!(ids.len(), 23);
}
