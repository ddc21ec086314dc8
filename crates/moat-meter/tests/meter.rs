//! moat-meter against a real SQLite file: the audit log's append-only guarantees, filters,
//! streaming export and retention; usage records feeding reports; prices from config.

#![allow(clippy::unwrap_used)] // test helpers: a failure should stop the test

use std::time::{SystemTime, UNIX_EPOCH};

use moat_meter::{
    compare, report, AuditConfig, AuditEntry, AuditFilter, AuditRecord, ComparisonParams,
    CostModel, Decision, GroupBy, Meter, MeterErrorKind, Period, Price, PriceTable, PricesConfig,
    UsageEvent, UsageRange, EXPORT_PAGE,
};

const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn entry(at_ms: i64, who: &str, model: &str, decision: Decision) -> AuditEntry {
    AuditEntry {
        at_ms,
        who: who.into(),
        model: model.into(),
        decision,
        rails: if decision == Decision::Allowed {
            vec![]
        } else {
            vec!["pii.email".into()]
        },
        prompt_tokens: 10,
        completion_tokens: 20,
        request_id: format!("req-{at_ms}"),
        prompt: Some("mail jane@example.org".into()),
    }
}

fn open(dir: &tempfile::TempDir, config: AuditConfig) -> Meter {
    Meter::open(&dir.path().join("moat.db"), config).unwrap()
}

#[test]
fn filters_select_by_time_who_model_and_decision() {
    let dir = tempfile::tempdir().unwrap();
    let meter = open(&dir, AuditConfig::default());
    let t0 = now_ms() - 10 * DAY_MS;
    meter
        .audit_append(&entry(t0, "moat-sk-AAAAAAAA ci", "qwen", Decision::Allowed))
        .unwrap();
    meter
        .audit_append(&entry(t0 + 1_000, "anonymous", "qwen", Decision::Blocked))
        .unwrap();
    meter
        .audit_append(&entry(t0 + 2_000, "anonymous", "llama", Decision::Redacted))
        .unwrap();
    meter
        .audit_append(&entry(
            t0 + 3_000,
            "moat-sk-AAAAAAAA ci",
            "llama",
            Decision::Flagged,
        ))
        .unwrap();

    let ids = |filter: AuditFilter| -> Vec<i64> {
        meter
            .audit_query(&filter)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(ids(AuditFilter::default()), [1, 2, 3, 4]);
    assert_eq!(
        ids(AuditFilter {
            who: Some("anonymous".into()),
            ..Default::default()
        }),
        [2, 3]
    );
    assert_eq!(
        ids(AuditFilter {
            model: Some("llama".into()),
            ..Default::default()
        }),
        [3, 4]
    );
    let blocked = AuditFilter {
        decision: Some(Decision::Blocked),
        ..Default::default()
    };
    assert_eq!(ids(blocked), [2]);
    let window = AuditFilter {
        since_ms: Some(t0 + 1_000),
        until_ms: Some(t0 + 3_000),
        ..Default::default()
    };
    assert_eq!(ids(window), [2, 3]);
    assert_eq!(
        ids(AuditFilter {
            after_id: Some(2),
            limit: Some(1),
            ..Default::default()
        }),
        [3]
    );

    let record = &meter.audit_query(&AuditFilter::default()).unwrap()[1];
    assert_eq!(record.entry.rails, ["pii.email"]);
    assert_eq!(
        (record.entry.prompt_tokens, record.entry.completion_tokens),
        (10, 20)
    );
    // Prompts are off by default.
    assert_eq!(record.entry.prompt, None);

    let too_many = AuditFilter {
        limit: Some(1_000_000),
        ..Default::default()
    };
    assert_eq!(
        meter.audit_query(&too_many).unwrap_err().kind(),
        MeterErrorKind::InvalidInput
    );
}

#[test]
fn prompts_are_kept_only_when_enabled_and_cut_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = AuditConfig {
        record_prompts: true,
        max_prompt_bytes: 8,
        retention_days: None,
    };
    let meter = open(&dir, config);
    let mut e = entry(now_ms(), "anonymous", "qwen", Decision::Allowed);
    e.prompt = Some("héllo wörld".into());
    meter.audit_append(&e).unwrap();
    let short = AuditEntry {
        prompt: Some("hi".into()),
        ..e.clone()
    };
    meter.audit_append(&short).unwrap();
    let rows = meter.audit_query(&AuditFilter::default()).unwrap();
    assert_eq!(rows[0].entry.prompt.as_deref(), Some("héllo w"));
    assert!(rows[0].prompt_truncated);
    assert_eq!(rows[1].entry.prompt.as_deref(), Some("hi"));
    assert!(!rows[1].prompt_truncated);
}

#[test]
fn the_log_refuses_updates_and_recent_deletes_but_retention_removes_old_entries() {
    let dir = tempfile::tempdir().unwrap();
    let meter = open(
        &dir,
        AuditConfig {
            retention_days: Some(30),
            ..AuditConfig::default()
        },
    );
    let now = now_ms();
    meter
        .audit_append(&entry(now - 40 * DAY_MS, "a", "qwen", Decision::Allowed))
        .unwrap();
    meter
        .audit_append(&entry(now - 20 * DAY_MS, "b", "qwen", Decision::Allowed))
        .unwrap();
    meter
        .audit_append(&entry(now - 1_000, "c", "qwen", Decision::Allowed))
        .unwrap();

    // Even with direct SQL, rows cannot be rewritten or recent ones removed.
    let raw = rusqlite::Connection::open(dir.path().join("moat.db")).unwrap();
    let update = raw.execute("UPDATE meter_audit SET who = 'someone-else'", []);
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = raw.execute("DELETE FROM meter_audit WHERE who = 'c'", []);
    assert!(delete
        .unwrap_err()
        .to_string()
        .contains("younger than a day"));

    assert_eq!(meter.apply_retention(now).unwrap(), 1);
    let left: Vec<String> = meter
        .audit_query(&AuditFilter::default())
        .unwrap()
        .into_iter()
        .map(|r| r.entry.who)
        .collect();
    assert_eq!(left, ["b", "c"]);
    // A retention that would reach recent entries is stopped by the database.
    assert!(meter.retain(1, now + 5 * DAY_MS).is_err());
    assert_eq!(
        meter.retain(0, now).unwrap_err().kind(),
        MeterErrorKind::InvalidInput
    );
    assert_eq!(meter.audit_query(&AuditFilter::default()).unwrap().len(), 2);
}

#[test]
fn export_streams_every_matching_entry_as_json_lines_across_pages() {
    let dir = tempfile::tempdir().unwrap();
    let meter = open(&dir, AuditConfig::default());
    let t0 = now_ms() - DAY_MS;
    let total = EXPORT_PAGE * 2 + 7;
    for i in 0..total {
        let decision = if i % 3 == 0 {
            Decision::Blocked
        } else {
            Decision::Allowed
        };
        meter
            .audit_append(&entry(t0 + i as i64, "anonymous", "qwen", decision))
            .unwrap();
    }
    let mut out = Vec::new();
    assert_eq!(
        meter
            .audit_export_jsonl(&AuditFilter::default(), &mut out)
            .unwrap(),
        total as u64
    );
    let lines: Vec<AuditRecord> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), total);
    assert!(lines.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(lines[5].entry.at_ms, t0 + 5);

    let blocked = AuditFilter {
        decision: Some(Decision::Blocked),
        ..Default::default()
    };
    let mut out = Vec::new();
    let n = meter.audit_export_jsonl(&blocked, &mut out).unwrap();
    assert_eq!(n as usize, total.div_ceil(3));
    assert!(String::from_utf8(out)
        .unwrap()
        .lines()
        .all(|l| l.contains("\"decision\":\"blocked\"")));
}

#[test]
fn invalid_entries_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let meter = open(&dir, AuditConfig::default());
    let good = entry(now_ms(), "anonymous", "qwen", Decision::Allowed);
    let bad = [
        AuditEntry {
            who: String::new(),
            ..good.clone()
        },
        AuditEntry {
            model: "m".repeat(300),
            ..good.clone()
        },
        AuditEntry {
            rails: vec!["r".into(); 100],
            ..good.clone()
        },
        AuditEntry {
            prompt_tokens: u64::MAX,
            ..good.clone()
        },
    ];
    for e in bad {
        assert_eq!(
            meter.audit_append(&e).unwrap_err().kind(),
            MeterErrorKind::InvalidInput
        );
    }
    assert!(meter
        .audit_query(&AuditFilter::default())
        .unwrap()
        .is_empty());
    let zero = AuditConfig {
        retention_days: Some(0),
        ..AuditConfig::default()
    };
    assert!(Meter::open(&dir.path().join("moat.db"), zero).is_err());
}

#[test]
fn work_done_for_another_models_request_adds_tokens_but_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let meter = open(&dir, AuditConfig::default());
    let event = |prompt_tokens, busy_ms, requests| UsageEvent {
        at_ms: 1_764_201_599_500,
        key: "moat-sk-AAAAAAAA ci".into(),
        alias: "minilm".into(),
        model: "minilm".into(),
        local: true,
        prompt_tokens,
        completion_tokens: 0,
        busy_ms,
        requests,
    };
    meter.record_usage(&event(12, 3, 1)).unwrap();
    // A grounded chat's query embedding: the chat model's event counts the request.
    meter.record_usage(&event(9, 2, 0)).unwrap();
    let records = meter.usage_records(&UsageRange::default()).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        (
            records[0].requests,
            records[0].prompt_tokens,
            records[0].busy_ms
        ),
        (1, 21, 5)
    );
    // An event from before the field existed counts as one request.
    let old: UsageEvent = serde_json::from_str(
        r#"{"at_ms":1764201599500,"key":"k","alias":"a","model":"m","local":true,
            "prompt_tokens":1,"completion_tokens":1,"busy_ms":1}"#,
    )
    .unwrap();
    assert_eq!(old.requests, 1);
}

#[test]
fn usage_records_by_utc_day_feed_reports_and_the_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let meter = open(&dir, AuditConfig::default());
    // 2025-11-26 23:59:59.500 UTC and half a second later, on the next day.
    let late = 1_764_201_599_500;
    let event = |at_ms, alias: &str, model: &str, local, tokens: (u64, u64), busy_ms| UsageEvent {
        at_ms,
        key: "moat-sk-AAAAAAAA ci".into(),
        alias: alias.into(),
        model: model.into(),
        local,
        prompt_tokens: tokens.0,
        completion_tokens: tokens.1,
        busy_ms,
        requests: 1,
    };
    meter
        .record_usage(&event(
            late,
            "chat",
            "qwen:7b",
            true,
            (300_000, 100_000),
            700_000,
        ))
        .unwrap();
    meter
        .record_usage(&event(
            late,
            "chat",
            "qwen:7b",
            true,
            (450_000, 150_000),
            1_100_000,
        ))
        .unwrap();
    meter
        .record_usage(&event(
            late + 500,
            "smart",
            "gpt-4o",
            false,
            (1_000, 500),
            0,
        ))
        .unwrap();

    let records = meter.usage_records(&UsageRange::default()).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(
        (records[0].day.as_str(), records[0].requests),
        ("2025-11-26", 2)
    );
    assert_eq!(records[0].busy_ms, 1_800_000);
    assert_eq!(records[1].day, "2025-11-27");

    let next_day = UsageRange {
        since_day: Some("2025-11-27".into()),
        until_day: None,
    };
    assert_eq!(meter.usage_records(&next_day).unwrap().len(), 1);
    for bad in ["2025-02-30", "yesterday", "2025-1-01"] {
        let range = UsageRange {
            since_day: Some(bad.into()),
            until_day: None,
        };
        assert_eq!(
            meter.usage_records(&range).unwrap_err().kind(),
            MeterErrorKind::InvalidInput
        );
    }

    let table = PriceTable::defaults();
    let model = CostModel {
        machine_usd_per_hour: Some(2.0),
        prices: &table,
    };
    let rows = report(&records, GroupBy::Key, Period::Total, &model);
    // Local: 1800 s at $2/h = $1; upstream gpt-4o: 1000 × 2.5/1M + 500 × 10/1M = $0.0075.
    assert!((rows[0].cost.total_usd().unwrap() - 1.0075).abs() < 1e-9);

    let closed = ["claude-sonnet-4".to_owned()];
    let params = ComparisonParams {
        machine_usd_per_hour: Some(2.0),
        monthly_hardware_usd: Some(1_000.0),
        closed_models: &closed,
        prices: &table,
    };
    let c = compare(&records, &params);
    // 750k in at $3 + 250k out at $15 = $6 for 1M tokens; $1000 / $6 per 1M = 166.67M a month.
    let sonnet = &c.closed[0];
    assert!((sonnet.cost_usd.unwrap() - 6.0).abs() < 1e-9);
    assert!((sonnet.break_even_tokens_per_month.unwrap() - 1e9 / 6.0).abs() < 1e-3);
}

#[test]
fn prices_come_from_config_over_the_defaults() {
    let config: PricesConfig = toml::from_str(
        r#"
        [models."gpt-4o"]
        provider = "openai"
        input_usd_per_million = 2.0
        output_usd_per_million = 8.0
        as_of = "2026-01-15"
        source = "our contract"

        [models."in-house-api"]
        provider = "us"
        input_usd_per_million = 0.5
        output_usd_per_million = 0.5
        as_of = "2026-01-15"
        source = "internal rate card"
        "#,
    )
    .unwrap();
    let table = PriceTable::from_config(&config).unwrap();
    let Price::Priced(gpt) = table.price("gpt-4o") else {
        panic!("priced")
    };
    assert_eq!(gpt.source, "our contract");
    assert!(matches!(table.price("in-house-api"), Price::Priced(_)));
    assert!(matches!(table.price("claude-sonnet-4"), Price::Priced(_)));

    let only_mine = PricesConfig {
        use_defaults: false,
        ..config.clone()
    };
    let table = PriceTable::from_config(&only_mine).unwrap();
    assert_eq!(table.price("claude-sonnet-4"), Price::Unpriced);

    let mut negative = config.clone();
    negative
        .models
        .get_mut("gpt-4o")
        .unwrap()
        .input_usd_per_million = -1.0;
    assert!(PriceTable::from_config(&negative).is_err());
    let mut nan = config;
    nan.models.get_mut("gpt-4o").unwrap().output_usd_per_million = f64::NAN;
    assert!(PriceTable::from_config(&nan).is_err());
    assert!(toml::from_str::<PricesConfig>("[models.x]\ninput_usd_per_million = 1\n").is_err());
    assert!(toml::from_str::<PricesConfig>("typo = 1\n").is_err());
}

#[test]
fn shares_moat_db_with_other_crates_without_touching_their_tables_or_user_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.db");
    {
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch("PRAGMA user_version = 3; CREATE TABLE kb (id INTEGER);")
            .unwrap();
    }
    let meter = Meter::open(&path, AuditConfig::default()).unwrap();
    meter
        .audit_append(&entry(now_ms(), "anonymous", "qwen", Decision::Allowed))
        .unwrap();
    drop(meter);
    // Reopening finds its own schema version and migrates nothing.
    let meter = Meter::open(&path, AuditConfig::default()).unwrap();
    assert_eq!(meter.audit_query(&AuditFilter::default()).unwrap().len(), 1);
    let other = rusqlite::Connection::open(&path).unwrap();
    let user_version: i64 = other
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(user_version, 3);
    let mode: String = other
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    other
        .execute("UPDATE moat_meter_schema SET version = 2", [])
        .unwrap();
    drop(other);
    let err = Meter::open(&path, AuditConfig::default()).err().unwrap();
    assert!(err.to_string().contains("newer"), "{err}");
}
