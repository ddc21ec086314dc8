//! `moat keys`, `moat audit` and the serve-time safety checks through the real binary: the
//! secret printed once and never listed, scopes and limits as given, revoke by name or prefix,
//! bad arguments as clear errors, an audit log that starts empty, and `moat serve` refusing a
//! non-loopback address while no key exists.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;

fn create(home: &std::path::Path, args: &[&str]) -> Value {
    let mut all = vec!["keys", "create", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(home, &all)).unwrap()
}

#[test]
fn keys_are_created_listed_and_revoked_and_the_secret_is_shown_once() {
    let home = TempHome::new();
    let key = create(
        home.path(),
        &[
            "--name",
            "ci",
            "--models",
            "qwen,smollm2:135m",
            "--rpm",
            "10",
            "--daily-tokens",
            "5000",
        ],
    );
    let secret = key["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("moat-sk-"));
    assert!(secret.starts_with(key["prefix"].as_str().unwrap()));
    assert_eq!(key["models"], serde_json::json!(["qwen", "smollm2:135m"]));
    assert_eq!(key["limits"]["requests_per_minute"], 10);
    assert_eq!(key["limits"]["budget"]["tokens"], 5000);

    let plain = ok(
        home.path(),
        &["keys", "create", "--name", "admin", "--admin"],
    );
    assert!(plain.trim().starts_with("moat-sk-"));

    let listed = ok(home.path(), &["keys", "ls", "--json"]);
    assert!(!listed.contains(&secret), "the secret is never listed");
    let listed: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["name"], "ci");
    assert_eq!(listed[0]["revoked"], false);
    assert_eq!(listed[1]["admin"], true);
    assert_eq!(listed[0]["usage"]["requests"], 0);
    let table = ok(home.path(), &["keys", "ls"]);
    assert!(table.contains("10 req/min, 5000 tok/day"), "{table}");

    assert!(ok(home.path(), &["keys", "revoke", "ci"]).contains("revoked"));
    let listed: Vec<Value> =
        serde_json::from_str(&ok(home.path(), &["keys", "ls", "--json"])).unwrap();
    assert_eq!(listed[0]["revoked"], true);
    let prefix = listed[1]["prefix"].as_str().unwrap().to_owned();
    ok(home.path(), &["keys", "revoke", &prefix]);
}

#[test]
fn bad_key_arguments_are_clear_errors() {
    let home = TempHome::new();
    let error = fails(home.path(), &["keys", "revoke", "nobody"], 1);
    assert!(error.contains("no API key"), "{error}");
    let error = fails(home.path(), &["keys", "create", "--rpm", "0"], 1);
    assert!(error.contains("at least 1"), "{error}");
    let error = fails(home.path(), &["keys", "create", "--models", "a b"], 1);
    assert!(error.contains("model scope"), "{error}");
    let error = fails(home.path(), &["keys", "create", "--guard", "strict"], 1);
    assert!(error.contains("[guard.policies.strict]"), "{error}");
    fails(
        home.path(),
        &[
            "keys",
            "create",
            "--daily-tokens",
            "1",
            "--monthly-tokens",
            "1",
        ],
        2,
    );
}

#[test]
fn a_key_guard_must_name_a_defined_policy() {
    let home = TempHome::new();
    std::fs::write(
        home.path().join("moat.toml"),
        "[guard.policies.strict.input.actions]\npii = \"block\"\n",
    )
    .unwrap();
    let key = create(home.path(), &["--name", "guarded", "--guard", "strict"]);
    assert_eq!(key["guard"], "strict");
    let listed = ok(home.path(), &["keys", "ls"]);
    assert!(listed.contains("strict"), "{listed}");
}

#[test]
fn the_audit_log_starts_empty_and_bad_filters_are_errors() {
    let home = TempHome::new();
    assert_eq!(ok(home.path(), &["audit", "--jsonl"]), "");
    let error = fails(home.path(), &["audit", "--since", "yesterday"], 1);
    assert!(error.contains("--since"), "{error}");
    let error = fails(home.path(), &["audit", "--key", "nobody"], 1);
    assert!(error.contains("no API key"), "{error}");
}

#[test]
fn serve_refuses_a_public_address_without_keys() {
    let home = TempHome::new();
    let error = fails(
        home.path(),
        &["serve", "--host", "0.0.0.0", "--port", "9"],
        2,
    );
    assert!(error.contains("without API keys"), "{error}");
    assert!(error.contains("--insecure"), "{error}");
}

#[test]
fn serve_refuses_any_web_origin_without_keys_and_a_malformed_origin() {
    let home = TempHome::new();
    let error = fails(
        home.path(),
        &["serve", "--cors-origin", "*", "--port", "9"],
        2,
    );
    assert!(
        error.contains("--cors-origin '*' without API keys"),
        "{error}"
    );
    assert!(error.contains("--insecure"), "{error}");
    for origin in [
        "localhost:3000",
        "http://localhost:3000/",
        "http://a.b/path",
    ] {
        let error = fails(
            home.path(),
            &["serve", "--cors-origin", origin, "--port", "9"],
            2,
        );
        assert!(error.contains("origin"), "{origin}: {error}");
    }
}

/// Runs `moat ARGS` with `input` on stdin.
fn with_stdin(home: &std::path::Path, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = moat(home)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_secret_from_one_node_is_stored_on_another_from_stdin() {
    let one = TempHome::new();
    let two = TempHome::new();
    let made = create(one.path(), &["--name", "fleet"]);
    let secret = made["secret"].as_str().unwrap();

    let stored = with_stdin(
        two.path(),
        &[
            "keys",
            "create",
            "--name",
            "fleet",
            "--secret-stdin",
            "--json",
        ],
        &format!("{secret}\n"),
    );
    assert!(stored.status.success(), "{stored:?}");
    let stdout = String::from_utf8(stored.stdout).unwrap();
    assert!(!stdout.contains(secret), "the secret is not printed back");
    let key: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(key["prefix"], made["prefix"]);
    let listed: Vec<Value> =
        serde_json::from_str(&ok(two.path(), &["keys", "ls", "--json"])).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["prefix"], made["prefix"]);

    // Twice is refused; so is text that is not a secret.
    let again = with_stdin(two.path(), &["keys", "create", "--secret-stdin"], secret);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let junk = with_stdin(
        two.path(),
        &["keys", "create", "--secret-stdin"],
        "not a key\n",
    );
    assert_eq!(junk.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&junk.stderr).contains("moat-sk-"));
}
