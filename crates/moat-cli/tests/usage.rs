//! `moat usage` through the real binary over usage records in a real `moat.db`: the JSON
//! report (the same shape as `GET /v1/usage`) grouped and per period, prices and machine cost
//! from moat.toml, unpriced models as `null`, the open-vs-closed comparison with its
//! break-even volume, and bad arguments with the CLI's exit codes.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use moat_meter::{AuditConfig, Meter, UsageEvent};

/// Milliseconds since the epoch at noon UTC of `day` (`YYYY-MM-DD`).
fn noon(day: &str) -> i64 {
    moat_auth::Date::parse(day).unwrap().start_ms() + 12 * 3_600_000
}

struct Event<'a> {
    day: &'a str,
    key: &'a str,
    alias: &'a str,
    model: &'a str,
    local: bool,
    tokens: (u64, u64),
    busy_ms: u64,
}

/// Records what `moat serve` would have recorded.
fn record(home: &std::path::Path, events: &[Event<'_>]) {
    let meter = Meter::open(&home.join("moat.db"), AuditConfig::default()).unwrap();
    for e in events {
        meter
            .record_usage(&UsageEvent {
                at_ms: noon(e.day),
                key: e.key.into(),
                alias: e.alias.into(),
                model: e.model.into(),
                local: e.local,
                prompt_tokens: e.tokens.0,
                completion_tokens: e.tokens.1,
                busy_ms: e.busy_ms,
                requests: 1,
            })
            .unwrap();
    }
}

const CONFIG: &str = r#"
[cost]
machine_usd_per_hour = 2.0
monthly_hardware_usd = 300

[prices.models."acme-large"]
provider = "acme"
input_usd_per_million = 1.0
output_usd_per_million = 3.0
as_of = "2026-11-01"
source = "our contract"
"#;

fn setup() -> (TempHome, String) {
    let home = TempHome::new();
    let config = home.path().join("moat.toml");
    std::fs::write(&config, CONFIG).unwrap();
    record(
        home.path(),
        &[
            // Local: 1M tokens in 30 minutes of busy time, over two days.
            Event {
                day: "2026-11-01",
                key: "moat-sk-aaaa alice",
                alias: "chat",
                model: "qwen:7b",
                local: true,
                tokens: (500_000, 200_000),
                busy_ms: 1_200_000,
            },
            Event {
                day: "2026-11-02",
                key: "moat-sk-bbbb bob",
                alias: "chat",
                model: "qwen:7b",
                local: true,
                tokens: (250_000, 50_000),
                busy_ms: 600_000,
            },
            // Upstream with a price from moat.toml, and one without a price.
            Event {
                day: "2026-11-02",
                key: "moat-sk-bbbb bob",
                alias: "smart",
                model: "acme-large",
                local: false,
                tokens: (1_000_000, 1_000_000),
                busy_ms: 0,
            },
            Event {
                day: "2026-11-02",
                key: "moat-sk-bbbb bob",
                alias: "other",
                model: "someones-api",
                local: false,
                tokens: (10, 5),
                busy_ms: 0,
            },
        ],
    );
    let config = config.display().to_string();
    (home, config)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn usage_json_groups_prices_and_never_prices_the_unknown_at_zero() {
    let (home, config) = setup();
    let report = json(
        home.path(),
        &[
            "usage",
            "--json",
            "--group-by",
            "model",
            "--config",
            &config,
        ],
    );
    assert_eq!(report["group_by"], "model");
    assert_eq!(report["period"], "total");
    let rows = report["rows"].as_array().unwrap();
    let row = |name: &str| rows.iter().find(|r| r["group"] == name).unwrap();
    let local = row("qwen:7b");
    assert_eq!(local["requests"], 2);
    assert_eq!(local["total_tokens"], 1_000_000);
    assert!(close(local["busy_seconds"].as_f64().unwrap(), 1_800.0));
    // Half an hour at $2/h.
    assert!(close(local["cost_usd"].as_f64().unwrap(), 1.0));
    assert!(close(local["usd_per_million"].as_f64().unwrap(), 1.0));
    // 1M in at $1 + 1M out at $3, from moat.toml.
    assert!(close(row("acme-large")["cost_usd"].as_f64().unwrap(), 4.0));
    let unknown = row("someones-api");
    assert!(unknown["cost_usd"].is_null());
    assert_eq!(unknown["unpriced"], true);
    assert_eq!(unknown["unpriced_tokens"], 15);
    assert_eq!(report["total"]["requests"], 4);
    assert!(report["total"]["cost_usd"].is_null());
    assert!(close(report["total"]["priced_usd"].as_f64().unwrap(), 5.0));

    // Per key and day, within a range.
    let report = json(
        home.path(),
        &[
            "usage",
            "--json",
            "--group-by",
            "key",
            "--period",
            "day",
            "--since",
            "2026-11-02",
            "--until",
            "2026-11-02",
            "--config",
            &config,
        ],
    );
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    assert_eq!(rows[0]["period"], "2026-11-02");
    assert_eq!(rows[0]["group"], "moat-sk-bbbb bob");
    assert_eq!(rows[0]["requests"], 3);

    // The table says the same in words.
    let table = ok(home.path(), &["usage", "--config", &config]);
    assert!(table.contains("someones-api"), "{table}");
    assert!(table.contains("unpriced"), "{table}");
    let total = table.lines().find(|l| l.contains("TOTAL")).unwrap();
    assert!(total.contains("unpriced"), "{table}");
    assert!(
        table.contains("no price for someones-api (15 tokens)"),
        "{table}"
    );
}

#[test]
fn compare_prices_local_traffic_at_closed_rates_with_the_break_even() {
    let (home, config) = setup();
    let comparison = json(
        home.path(),
        &[
            "usage", "compare", "--closed", "gpt-4o", "--closed", "made-up", "--json", "--config",
            &config,
        ],
    );
    let local = &comparison["local"];
    assert_eq!(local["prompt_tokens"], 750_000);
    assert_eq!(local["completion_tokens"], 250_000);
    assert!(close(local["busy_cost_usd"].as_f64().unwrap(), 1.0));
    let gpt = &comparison["closed"][0];
    assert_eq!(gpt["model"], "gpt-4o");
    // 750k in at $2.50 + 250k out at $10 = $4.375; $300 / $4.375 per 1M = 68.57M tokens.
    assert!(close(gpt["cost_usd"].as_f64().unwrap(), 4.375));
    assert!(close(
        gpt["break_even_tokens_per_month"].as_f64().unwrap(),
        300.0 / 4.375 * 1e6
    ));
    assert_eq!(gpt["break_even_within_capacity"], true);
    let unknown = &comparison["closed"][1];
    assert_eq!(unknown["priced"], false);
    assert!(unknown["cost_usd"].is_null());
    let notes = comparison["notes"].to_string();
    assert!(notes.contains("no price for made-up"), "{notes}");

    let table = ok(
        home.path(),
        &[
            "usage", "compare", "--closed", "gpt-4o", "--config", &config,
        ],
    );
    assert!(table.contains("68.57M tokens"), "{table}");
}

#[test]
fn bad_arguments_exit_with_the_cli_codes() {
    let (home, config) = setup();
    // clap refuses unknown values: 2.
    fails(home.path(), &["usage", "--group-by", "team"], 2);
    fails(home.path(), &["usage", "compare"], 2);
    // A day that is not one, or a range backwards: 1, with the reason.
    let error = fails(
        home.path(),
        &["usage", "--since", "2026-02-30", "--config", &config],
        1,
    );
    assert!(error.contains("2026-02-30"), "{error}");
    let error = fails(
        home.path(),
        &[
            "usage",
            "--since",
            "2026-11-02",
            "--until",
            "2026-11-01",
            "--config",
            &config,
        ],
        1,
    );
    assert!(error.contains("before"), "{error}");
    // A price out of range in moat.toml: 1, naming the section.
    let bad = home.path().join("bad.toml");
    std::fs::write(&bad, "[cost]\nmachine_usd_per_hour = -3\n").unwrap();
    let error = fails(
        home.path(),
        &["usage", "--config", bad.to_str().unwrap()],
        1,
    );
    assert!(error.contains("[cost]"), "{error}");
    // An empty database is an empty report, not an error.
    let empty = TempHome::new();
    let report = json(empty.path(), &["usage", "--json", "--config", &config]);
    assert_eq!(report["rows"].as_array().unwrap().len(), 0);
}
