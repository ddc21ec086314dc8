//! The usage report as `moat usage --json` and `GET /v1/usage` both give it: rows per period
//! and group with requests, tokens, busy seconds and cost, where a cost that is not wholly
//! priced is `null` with `"unpriced": true` (and the tokens and models that lack a price),
//! never $0; and the `[cost]` section of `moat.toml` that prices local traffic.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::cost::{report, CostModel, GroupBy, Period, ReportRow, UsageRecord};
use crate::MeterError;

/// The `[cost]` section of `moat.toml`: what the local machine costs.
///
/// ```toml
/// [cost]
/// machine_usd_per_hour = 1.20   # prices local busy time (without it, local use is unpriced)
/// monthly_hardware_usd = 600    # the fixed monthly cost, for break-even volumes
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostConfig {
    /// The machine's price per hour, in US dollars; prices local busy time.
    pub machine_usd_per_hour: Option<f64>,
    /// The machine's fixed cost per month, in US dollars; gives break-even volumes.
    pub monthly_hardware_usd: Option<f64>,
}

impl CostConfig {
    /// Checks that each amount given is finite and within reason (0 to 1,000,000 $/h, 0 to
    /// 1,000,000,000 $/month).
    pub fn validate(&self) -> Result<(), MeterError> {
        let checks = [
            ("machine_usd_per_hour", self.machine_usd_per_hour, 1e6),
            ("monthly_hardware_usd", self.monthly_hardware_usd, 1e9),
        ];
        for (name, value, max) in checks {
            if let Some(value) = value {
                if !value.is_finite() || !(0.0..=max).contains(&value) {
                    return Err(MeterError::invalid(
                        "cost config",
                        format!("{name} = {value} is not between 0 and {max}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One row of a [`UsageReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    /// `YYYY-MM-DD`, `YYYY-MM` or `total`.
    pub period: String,
    /// The key, alias or model (`total` in the report's total row).
    pub group: String,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Prompt plus completion tokens.
    pub total_tokens: u64,
    /// Measured local engine time, in seconds.
    pub busy_seconds: f64,
    /// The cost in US dollars; `None` (JSON `null`) when any part is unpriced.
    pub cost_usd: Option<f64>,
    /// Whether some of this row has no price (then `cost_usd` is `None`).
    pub unpriced: bool,
    /// Tokens with no price.
    pub unpriced_tokens: u64,
    /// The models those tokens went to.
    pub unpriced_models: BTreeSet<String>,
    /// The priced part, in US dollars, shown beside an unpriced remainder.
    pub priced_usd: f64,
    /// Dollars per million tokens, when the whole row is priced.
    pub usd_per_million: Option<f64>,
}

impl From<ReportRow> for UsageRow {
    fn from(row: ReportRow) -> Self {
        let cost_usd = row.cost.total_usd();
        UsageRow {
            period: row.period,
            group: row.group,
            requests: row.requests,
            prompt_tokens: row.prompt_tokens,
            completion_tokens: row.completion_tokens,
            total_tokens: row.prompt_tokens + row.completion_tokens,
            busy_seconds: row.busy_ms as f64 / 1000.0,
            cost_usd,
            unpriced: cost_usd.is_none(),
            unpriced_tokens: row.cost.unpriced_tokens,
            unpriced_models: row.cost.unpriced_models,
            priced_usd: row.cost.priced_usd,
            usd_per_million: row.usd_per_million,
        }
    }
}

/// What a report covers, echoed in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportScope {
    /// The first day, if limited.
    pub since: Option<String>,
    /// The last day, if limited.
    pub until: Option<String>,
    /// What rows are grouped by.
    pub group_by: GroupBy,
    /// The period of rows.
    pub period: Period,
}

/// A usage report: rows, their total, and the caveats that apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageReport {
    /// Days (`YYYY-MM-DD`, UTC) and grouping.
    #[serde(flatten)]
    pub scope: ReportScope,
    /// The machine price local traffic was priced at, if any.
    pub machine_usd_per_hour: Option<f64>,
    /// Rows by period, then group.
    pub rows: Vec<UsageRow>,
    /// Everything in `rows` together.
    pub total: UsageRow,
    /// Caveats, in words (the price table's date and sources, local traffic without a
    /// machine price).
    pub notes: Vec<String>,
}

/// Builds the report of `records` (already limited to the scope's days and to what the
/// reader may see). `notes` are added to the report's own.
pub fn usage_report(
    records: &[UsageRecord],
    scope: ReportScope,
    model: &CostModel<'_>,
    mut notes: Vec<String>,
) -> UsageReport {
    let rows: Vec<UsageRow> = report(records, scope.group_by, scope.period, model)
        .into_iter()
        .map(UsageRow::from)
        .collect();
    let mut total: UsageRow = report(records, GroupBy::Key, Period::Total, model)
        .into_iter()
        .fold(None::<ReportRow>, |sum, row| {
            Some(match sum {
                None => row,
                Some(mut sum) => {
                    sum.requests += row.requests;
                    sum.prompt_tokens += row.prompt_tokens;
                    sum.completion_tokens += row.completion_tokens;
                    sum.busy_ms += row.busy_ms;
                    sum.cost.priced_usd += row.cost.priced_usd;
                    sum.cost.unpriced_tokens += row.cost.unpriced_tokens;
                    sum.cost.unpriced_models.extend(row.cost.unpriced_models);
                    sum
                }
            })
        })
        .map(|mut sum| {
            let tokens = sum.prompt_tokens + sum.completion_tokens;
            sum.usd_per_million = sum
                .cost
                .total_usd()
                .and_then(|usd| crate::usd_per_million(usd, tokens));
            UsageRow::from(sum)
        })
        .unwrap_or_else(|| UsageRow::from(empty_row()));
    total.period = "total".into();
    total.group = "total".into();
    if model.machine_usd_per_hour.is_none() && records.iter().any(|r| r.local) {
        notes
            .push("local traffic is unpriced: set [cost] machine_usd_per_hour in moat.toml".into());
    }
    UsageReport {
        scope,
        machine_usd_per_hour: model.machine_usd_per_hour,
        rows,
        total,
        notes,
    }
}

fn empty_row() -> ReportRow {
    ReportRow {
        period: "total".into(),
        group: "total".into(),
        requests: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        busy_ms: 0,
        cost: crate::Cost::default(),
        usd_per_million: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PriceTable;

    fn record(
        key: &str,
        model: &str,
        local: bool,
        tokens: (u64, u64),
        busy_ms: u64,
    ) -> UsageRecord {
        UsageRecord {
            day: "2026-11-26".into(),
            key: key.into(),
            alias: model.into(),
            model: model.into(),
            local,
            requests: 2,
            prompt_tokens: tokens.0,
            completion_tokens: tokens.1,
            busy_ms,
        }
    }

    fn scope(group_by: GroupBy) -> ReportScope {
        ReportScope {
            since: None,
            until: None,
            group_by,
            period: Period::Total,
        }
    }

    #[test]
    fn an_unpriced_row_is_null_with_the_reason_never_zero() {
        let table = PriceTable::defaults();
        let model = CostModel {
            machine_usd_per_hour: Some(3.6),
            prices: &table,
        };
        let records = [
            // 2 s at $3.60/h = $0.002.
            record("k1", "qwen", true, (100, 50), 2_000),
            record("k2", "someones-api", false, (10, 5), 0),
        ];
        let report = usage_report(&records, scope(GroupBy::Model), &model, vec![]);
        let json = serde_json::to_value(&report).unwrap();
        let rows = json["rows"].as_array().unwrap();
        assert_eq!(rows[0]["group"], "qwen");
        assert!((rows[0]["cost_usd"].as_f64().unwrap() - 0.002).abs() < 1e-12);
        assert_eq!(rows[0]["unpriced"], false);
        assert_eq!(rows[0]["busy_seconds"], 2.0);
        assert_eq!(rows[1]["group"], "someones-api");
        assert!(rows[1]["cost_usd"].is_null());
        assert_eq!(rows[1]["unpriced"], true);
        assert_eq!(rows[1]["unpriced_tokens"], 15);
        assert_eq!(
            rows[1]["unpriced_models"],
            serde_json::json!(["someones-api"])
        );
        // The total carries the unpriced part too.
        assert_eq!(json["total"]["requests"], 4);
        assert_eq!(json["total"]["total_tokens"], 165);
        assert!(json["total"]["cost_usd"].is_null());
        assert!((json["total"]["priced_usd"].as_f64().unwrap() - 0.002).abs() < 1e-12);
        assert_eq!(json["group_by"], "model");
        assert_eq!(json["period"], "total");
    }

    #[test]
    fn local_traffic_without_a_machine_price_says_so() {
        let table = PriceTable::defaults();
        let model = CostModel {
            machine_usd_per_hour: None,
            prices: &table,
        };
        let report = usage_report(
            &[record("k1", "qwen", true, (1, 1), 10)],
            scope(GroupBy::Key),
            &model,
            vec![],
        );
        assert!(report.rows[0].unpriced);
        assert!(report
            .notes
            .iter()
            .any(|n| n.contains("machine_usd_per_hour")));
        let empty = usage_report(&[], scope(GroupBy::Key), &model, vec![]);
        assert!(empty.rows.is_empty());
        assert_eq!(empty.total.requests, 0);
        assert_eq!(empty.total.cost_usd, Some(0.0));
    }

    #[test]
    fn cost_config_refuses_nonsense() {
        let ok: CostConfig =
            toml::from_str("machine_usd_per_hour = 1.2\nmonthly_hardware_usd = 600\n").unwrap();
        ok.validate().unwrap();
        for bad in [
            "machine_usd_per_hour = -1.0\n",
            "machine_usd_per_hour = nan\n",
            "monthly_hardware_usd = 1e12\n",
        ] {
            let config: CostConfig = toml::from_str(bad).unwrap();
            assert!(config.validate().is_err(), "{bad}");
        }
        assert!(toml::from_str::<CostConfig>("machine_usd_per_hr = 1\n").is_err());
    }
}
