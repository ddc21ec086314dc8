//! `moat usage`: requests, tokens, measured busy time and cost per key, alias or model, per
//! day, month or in total, from the usage records `moat serve` keeps in `$MOAT_HOME/moat.db`;
//! a table, or with `--json` the same report as `GET /v1/usage`. `moat usage compare --closed
//! MODEL...` prices the local traffic at the machine's cost and at each closed model's list
//! price, with the monthly volume at which the closed API would cost the fixed hardware cost.
//! Prices and machine cost come from `[prices]` and `[cost]` of moat.toml (see `trust.rs`).
//!
//! Exit codes: 0 with a report (an unpriced model is reported as unpriced, not an error), 1
//! for a bad day or configuration, 2 for bad arguments (clap).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use moat_meter::{
    compare, usage_report, Comparison, ComparisonParams, CostModel, GroupBy, Period, Price,
    ReportScope, UsageRange, UsageRecord, UsageRow, DEFAULT_PRICES_CAVEAT,
};
use serde::Serialize;

use crate::trust::{open_meter, settings, TrustSettings};

#[derive(Clone, Copy, ValueEnum)]
enum GroupArg {
    Key,
    Alias,
    Model,
}

#[derive(Clone, Copy, ValueEnum)]
enum PeriodArg {
    Day,
    Month,
    Total,
}

/// Which days, and where the configuration is.
#[derive(Args)]
struct RangeArgs {
    /// From this day on (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DAY", global = true)]
    since: Option<String>,
    /// Up to this day, inclusive (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DAY", global = true)]
    until: Option<String>,
    /// Print JSON (the report of `GET /v1/usage`, or the comparison).
    #[arg(long, global = true)]
    json: bool,
    /// The moat.toml with [prices] and [cost] (default: ./moat.toml, else $MOAT_HOME/moat.toml).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

#[derive(Args)]
pub struct UsageArgs {
    #[command(subcommand)]
    command: Option<UsageCommand>,
    /// Rows per key, alias or model.
    #[arg(long, value_enum, default_value = "model")]
    group_by: GroupArg,
    /// Rows per day, month, or one for the whole range.
    #[arg(long, value_enum, default_value = "total")]
    period: PeriodArg,
    #[command(flatten)]
    range: RangeArgs,
}

#[derive(Subcommand)]
enum UsageCommand {
    /// This traffic at local cost against closed models' list prices, and the break-even
    /// monthly volume for the fixed hardware cost ([cost] monthly_hardware_usd).
    Compare {
        /// A closed model by its price-table name (repeat for several).
        #[arg(long = "closed", value_name = "MODEL", required = true)]
        closed: Vec<String>,
    },
}

pub fn run(home: &Path, args: UsageArgs) -> Result<u8> {
    let config = settings(home, args.range.config.as_deref())?;
    let records = records(home, &config, &args.range)?;
    match args.command {
        Some(UsageCommand::Compare { closed }) => {
            run_compare(&config, &records, &args.range, &closed)
        }
        None => run_report(&config, &records, &args),
    }
}

fn records(home: &Path, config: &TrustSettings, range: &RangeArgs) -> Result<Vec<UsageRecord>> {
    if let (Some(since), Some(until)) = (&range.since, &range.until) {
        anyhow::ensure!(since <= until, "--until {until} is before --since {since}");
    }
    let meter = open_meter(home, config.audit.clone())?;
    let range = UsageRange {
        since_day: range.since.clone(),
        until_day: range.until.clone(),
    };
    meter
        .usage_records(&range)
        .context("reading the usage records")
}

fn run_report(config: &TrustSettings, records: &[UsageRecord], args: &UsageArgs) -> Result<u8> {
    let scope = ReportScope {
        since: args.range.since.clone(),
        until: args.range.until.clone(),
        group_by: match args.group_by {
            GroupArg::Key => GroupBy::Key,
            GroupArg::Alias => GroupBy::Alias,
            GroupArg::Model => GroupBy::Model,
        },
        period: match args.period {
            PeriodArg::Day => Period::Day,
            PeriodArg::Month => Period::Month,
            PeriodArg::Total => Period::Total,
        },
    };
    let model = CostModel {
        machine_usd_per_hour: config.cost.machine_usd_per_hour,
        prices: &config.prices,
    };
    let report = usage_report(
        records,
        scope,
        &model,
        vec![DEFAULT_PRICES_CAVEAT.to_owned()],
    );
    if args.range.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    if report.rows.is_empty() {
        eprintln!("no usage recorded in this range");
        return Ok(0);
    }
    println!(
        "{:<10} {:<32} {:>8} {:>10} {:>10} {:>9} {:>12} {:>9}",
        "PERIOD", "GROUP", "REQUESTS", "PROMPT", "COMPLETION", "BUSY S", "COST USD", "$/1M"
    );
    for row in &report.rows {
        print_row(row);
    }
    print_row(&UsageRow {
        period: "all".into(),
        group: "TOTAL".into(),
        ..report.total.clone()
    });
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    Ok(0)
}

fn print_row(row: &UsageRow) {
    let cost = match row.cost_usd {
        Some(usd) => format!("{usd:.6}"),
        None => "unpriced".to_owned(),
    };
    let per_million = row
        .usd_per_million
        .map_or("-".to_owned(), |usd| format!("{usd:.3}"));
    println!(
        "{:<10} {:<32} {:>8} {:>10} {:>10} {:>9.3} {:>12} {:>9}",
        row.period,
        row.group,
        row.requests,
        row.prompt_tokens,
        row.completion_tokens,
        row.busy_seconds,
        cost,
        per_million
    );
    if row.unpriced && !row.unpriced_models.is_empty() {
        let models: Vec<&str> = row.unpriced_models.iter().map(String::as_str).collect();
        println!(
            "{:<10}   no price for {} ({} tokens); ${:.6} priced",
            "",
            models.join(", "),
            row.unpriced_tokens,
            row.priced_usd
        );
    }
}

/// `moat usage compare --json`.
#[derive(Serialize)]
struct CompareJson<'a> {
    since: Option<&'a str>,
    until: Option<&'a str>,
    machine_usd_per_hour: Option<f64>,
    monthly_hardware_usd: Option<f64>,
    #[serde(flatten)]
    comparison: &'a Comparison,
    notes: Vec<String>,
}

fn run_compare(
    config: &TrustSettings,
    records: &[UsageRecord],
    range: &RangeArgs,
    closed: &[String],
) -> Result<u8> {
    let params = ComparisonParams {
        machine_usd_per_hour: config.cost.machine_usd_per_hour,
        monthly_hardware_usd: config.cost.monthly_hardware_usd,
        closed_models: closed,
        prices: &config.prices,
    };
    let comparison = compare(records, &params);
    let mut notes = vec![DEFAULT_PRICES_CAVEAT.to_owned()];
    let unknown: Vec<&str> = closed
        .iter()
        .filter(|m| matches!(config.prices.price(m), Price::Unpriced))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = config.prices.models().map(|(name, _)| name).collect();
        notes.push(format!(
            "no price for {}; priced models: {} (add others under [prices] in moat.toml)",
            unknown.join(", "),
            known.join(", ")
        ));
    }
    if config.cost.machine_usd_per_hour.is_none() {
        notes.push("no [cost] machine_usd_per_hour: the local busy-time cost is unknown".into());
    }
    if config.cost.monthly_hardware_usd.is_none() {
        notes.push("no [cost] monthly_hardware_usd: no break-even volume".into());
    }
    if range.json {
        let json = CompareJson {
            since: range.since.as_deref(),
            until: range.until.as_deref(),
            machine_usd_per_hour: config.cost.machine_usd_per_hour,
            monthly_hardware_usd: config.cost.monthly_hardware_usd,
            comparison: &comparison,
            notes,
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(0);
    }
    print_comparison(&comparison, config);
    for note in &notes {
        eprintln!("note: {note}");
    }
    Ok(0)
}

fn usd(value: Option<f64>) -> String {
    value.map_or("unpriced".to_owned(), |v| format!("${v:.4}"))
}

/// A token count in words: 68.6M, 1.2B.
fn tokens(value: f64) -> String {
    if value >= 1e9 {
        format!("{:.2}B", value / 1e9)
    } else if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

fn print_comparison(comparison: &Comparison, config: &TrustSettings) {
    let local = &comparison.local;
    println!(
        "local: {} prompt + {} completion tokens, {:.3} busy seconds",
        local.prompt_tokens, local.completion_tokens, local.busy_seconds
    );
    println!(
        "  busy-time cost {} ({} per 1M tokens) at {}",
        usd(local.busy_cost_usd),
        usd(local.usd_per_million),
        config
            .cost
            .machine_usd_per_hour
            .map_or("no machine price".to_owned(), |rate| format!("${rate}/h")),
    );
    if let (Some(rate), Some(capacity)) = (
        local.tokens_per_busy_second,
        local.capacity_tokens_per_month,
    ) {
        println!(
            "  measured {rate:.1} tokens per busy second: at most {} tokens a month",
            tokens(capacity)
        );
    }
    println!(
        "{:<24} {:>14} {:>12} {:>20} {:>16}",
        "CLOSED MODEL", "SAME TRAFFIC", "$/1M (MIX)", "BREAK-EVEN / MONTH", "WITHIN CAPACITY"
    );
    for side in &comparison.closed {
        let break_even = side
            .break_even_tokens_per_month
            .map_or("-".to_owned(), |t| format!("{} tokens", tokens(t)));
        let within = match side.break_even_within_capacity {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        println!(
            "{:<24} {:>14} {:>12} {:>20} {:>16}",
            side.model,
            usd(side.cost_usd),
            side.usd_per_million
                .map_or("-".to_owned(), |v| format!("{v:.3}")),
            break_even,
            within
        );
    }
}
