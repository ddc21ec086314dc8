//! The cost model, as pure functions over usage records: what local traffic costs from the
//! machine's price per hour and its measured busy time, what remote traffic costs at list
//! prices, reports grouped by key, alias or model per period, and the open-vs-closed
//! comparison with its break-even volume.
//!
//! Two views of local cost, because they answer different questions:
//! - **busy-time cost** (`machine_usd_per_hour × busy seconds`): what this traffic cost if the
//!   machine is paid only while it works (rented by the hour, or shared). This gives $/1M
//!   tokens.
//! - **fixed monthly cost** (`monthly_hardware_usd`): the machine is owned or leased and costs
//!   the same whatever it does. Against a closed API that charges per token, the break-even
//!   volume is the monthly tokens at which the API bill equals that fixed cost:
//!   `monthly_hardware_usd / closed $ per token`, with the closed price blended by this
//!   traffic's own input/output mix. The comparison also gives the machine's measured
//!   capacity per month, since a break-even the machine cannot serve is no break-even.
//!
//! Money is `f64` US dollars: these are estimates for reports, not ledger entries.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::prices::{Price, PriceTable};

/// Seconds in an average Gregorian month (365.2425 / 12 days).
pub const SECONDS_PER_MONTH: f64 = 365.2425 / 12.0 * 86_400.0;

/// One key's use of one alias and model on one UTC day (what `Meter::usage_records`
/// returns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The day, `YYYY-MM-DD`.
    pub day: String,
    /// The key's display form (prefix and name) or `anonymous`.
    pub key: String,
    /// The alias requested (the model's name when no alias was used).
    pub alias: String,
    /// The model that answered: a local model or the upstream's model name.
    pub model: String,
    /// Whether a local engine answered (else an upstream).
    pub local: bool,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Milliseconds the local engine was busy with these requests (0 for upstreams).
    pub busy_ms: u64,
}

impl UsageRecord {
    /// Prompt plus completion tokens.
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// US dollars for `busy_ms` of a machine at `usd_per_hour`.
pub fn busy_cost_usd(usd_per_hour: f64, busy_ms: u64) -> f64 {
    usd_per_hour * busy_ms as f64 / 3_600_000.0
}

/// Dollars per million tokens, or `None` for no tokens.
pub fn usd_per_million(cost_usd: f64, tokens: u64) -> Option<f64> {
    (tokens > 0).then(|| cost_usd * 1e6 / tokens as f64)
}

/// Monthly tokens at which a closed API at `closed_usd_per_million` costs as much as a fixed
/// `monthly_hardware_usd`; `None` if the API is free (it never breaks even).
pub fn break_even_tokens_per_month(
    monthly_hardware_usd: f64,
    closed_usd_per_million: f64,
) -> Option<f64> {
    (closed_usd_per_million > 0.0).then(|| monthly_hardware_usd / closed_usd_per_million * 1e6)
}

/// A cost that may be partly unknown: the priced part in dollars and what could not be
/// priced, which reports show instead of counting it as free.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Dollars for the priced part.
    pub priced_usd: f64,
    /// Tokens with no price (unpriced models, or local traffic without a machine price).
    pub unpriced_tokens: u64,
    /// The models those tokens went to.
    pub unpriced_models: BTreeSet<String>,
}

impl Cost {
    /// The whole cost, or `None` if any part is unpriced.
    pub fn total_usd(&self) -> Option<f64> {
        (self.unpriced_tokens == 0 && self.unpriced_models.is_empty()).then_some(self.priced_usd)
    }

    fn add(&mut self, other: Cost) {
        self.priced_usd += other.priced_usd;
        self.unpriced_tokens += other.unpriced_tokens;
        self.unpriced_models.extend(other.unpriced_models);
    }

    fn unpriced(model: &str, tokens: u64) -> Cost {
        Cost {
            priced_usd: 0.0,
            unpriced_tokens: tokens,
            unpriced_models: [model.to_owned()].into(),
        }
    }
}

/// How to price usage records.
#[derive(Debug, Clone, Copy)]
pub struct CostModel<'a> {
    /// The local machine's price per hour; `None` leaves local traffic unpriced.
    pub machine_usd_per_hour: Option<f64>,
    /// List prices for upstream models.
    pub prices: &'a PriceTable,
}

impl CostModel<'_> {
    /// The cost of one record: busy time for local traffic, list price for upstreams.
    pub fn cost(&self, record: &UsageRecord) -> Cost {
        if record.local {
            return match self.machine_usd_per_hour {
                Some(rate) => Cost {
                    priced_usd: busy_cost_usd(rate, record.busy_ms),
                    ..Cost::default()
                },
                None => Cost::unpriced(&record.model, record.tokens()),
            };
        }
        match self.prices.price(&record.model) {
            Price::Priced(price) => Cost {
                priced_usd: price.cost_usd(record.prompt_tokens, record.completion_tokens),
                ..Cost::default()
            },
            Price::Unpriced => Cost::unpriced(&record.model, record.tokens()),
        }
    }
}

/// What report rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// The key.
    Key,
    /// The alias.
    Alias,
    /// The model.
    Model,
}

/// The period of report rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// One row per UTC day (`YYYY-MM-DD`).
    Day,
    /// One row per UTC month (`YYYY-MM`).
    Month,
    /// One row for everything (`total`).
    Total,
}

/// One row of a usage report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRow {
    /// `YYYY-MM-DD`, `YYYY-MM` or `total`.
    pub period: String,
    /// The key, alias or model.
    pub group: String,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Local busy time, in milliseconds.
    pub busy_ms: u64,
    /// The cost, possibly partly unpriced.
    pub cost: Cost,
    /// Dollars per million tokens, when the whole cost is priced.
    pub usd_per_million: Option<f64>,
}

/// Groups `records` by `period` and `group_by` and prices each group; rows sorted by period,
/// then group.
pub fn report(
    records: &[UsageRecord],
    group_by: GroupBy,
    period: Period,
    model: &CostModel<'_>,
) -> Vec<ReportRow> {
    let mut rows: BTreeMap<(String, String), ReportRow> = BTreeMap::new();
    for record in records {
        let period_name = match period {
            Period::Day => record.day.clone(),
            Period::Month => record.day.get(..7).unwrap_or(&record.day).to_owned(),
            Period::Total => "total".to_owned(),
        };
        let group = match group_by {
            GroupBy::Key => &record.key,
            GroupBy::Alias => &record.alias,
            GroupBy::Model => &record.model,
        };
        let row = rows
            .entry((period_name.clone(), group.clone()))
            .or_insert_with(|| ReportRow {
                period: period_name,
                group: group.clone(),
                requests: 0,
                prompt_tokens: 0,
                completion_tokens: 0,
                busy_ms: 0,
                cost: Cost::default(),
                usd_per_million: None,
            });
        row.requests += record.requests;
        row.prompt_tokens += record.prompt_tokens;
        row.completion_tokens += record.completion_tokens;
        row.busy_ms += record.busy_ms;
        row.cost.add(model.cost(record));
    }
    rows.into_values()
        .map(|mut row| {
            row.usd_per_million = row
                .cost
                .total_usd()
                .and_then(|usd| usd_per_million(usd, row.prompt_tokens + row.completion_tokens));
            row
        })
        .collect()
}

/// What the open-vs-closed comparison needs besides the records.
#[derive(Debug, Clone)]
pub struct ComparisonParams<'a> {
    /// The machine's price per hour, for the busy-time cost.
    pub machine_usd_per_hour: Option<f64>,
    /// The machine's fixed cost per month, for the break-even volume.
    pub monthly_hardware_usd: Option<f64>,
    /// The closed models to compare with, by price-table name.
    pub closed_models: &'a [String],
    /// Their prices.
    pub prices: &'a PriceTable,
}

/// The local traffic of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalSide {
    /// Prompt tokens served locally.
    pub prompt_tokens: u64,
    /// Completion tokens served locally.
    pub completion_tokens: u64,
    /// Measured busy seconds.
    pub busy_seconds: f64,
    /// Busy-time cost, if a machine price is given.
    pub busy_cost_usd: Option<f64>,
    /// Busy-time dollars per million tokens.
    pub usd_per_million: Option<f64>,
    /// Tokens per busy second, as measured.
    pub tokens_per_busy_second: Option<f64>,
    /// What the machine could serve in a month busy all the time at that rate.
    pub capacity_tokens_per_month: Option<f64>,
}

/// One closed model in a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedSide {
    /// The model.
    pub model: String,
    /// Whether the price table knows it; if not, every figure below is `None`.
    pub priced: bool,
    /// This same traffic at its list prices.
    pub cost_usd: Option<f64>,
    /// Its price per million tokens blended by this traffic's input/output mix.
    pub usd_per_million: Option<f64>,
    /// Monthly tokens (in this mix) at which its bill equals the fixed hardware cost.
    pub break_even_tokens_per_month: Option<f64>,
    /// Whether the machine, at its measured rate, can serve that volume in a month.
    pub break_even_within_capacity: Option<bool>,
}

/// The open-vs-closed report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The local traffic and its cost.
    pub local: LocalSide,
    /// Each closed model asked for, in the order given.
    pub closed: Vec<ClosedSide>,
}

/// Compares the local traffic in `records` (upstream records are ignored) with the same
/// tokens at each closed model's list prices, and gives the break-even volumes.
pub fn compare(records: &[UsageRecord], params: &ComparisonParams<'_>) -> Comparison {
    let local: Vec<&UsageRecord> = records.iter().filter(|r| r.local).collect();
    let prompt_tokens: u64 = local.iter().map(|r| r.prompt_tokens).sum();
    let completion_tokens: u64 = local.iter().map(|r| r.completion_tokens).sum();
    let busy_ms: u64 = local.iter().map(|r| r.busy_ms).sum();
    let tokens = prompt_tokens + completion_tokens;
    let busy_seconds = busy_ms as f64 / 1000.0;
    let busy_cost = params
        .machine_usd_per_hour
        .map(|rate| busy_cost_usd(rate, busy_ms));
    let rate = (busy_ms > 0 && tokens > 0).then(|| tokens as f64 / busy_seconds);
    let capacity = rate.map(|r| r * SECONDS_PER_MONTH);
    let closed = params
        .closed_models
        .iter()
        .map(|model| match params.prices.price(model) {
            Price::Priced(price) => {
                let cost = price.cost_usd(prompt_tokens, completion_tokens);
                let per_million = usd_per_million(cost, tokens);
                let break_even = params.monthly_hardware_usd.zip(per_million).and_then(
                    |(hardware, per_million)| break_even_tokens_per_month(hardware, per_million),
                );
                ClosedSide {
                    model: model.clone(),
                    priced: true,
                    cost_usd: Some(cost),
                    usd_per_million: per_million,
                    break_even_tokens_per_month: break_even,
                    break_even_within_capacity: break_even.zip(capacity).map(|(b, c)| b <= c),
                }
            }
            Price::Unpriced => ClosedSide {
                model: model.clone(),
                priced: false,
                cost_usd: None,
                usd_per_million: None,
                break_even_tokens_per_month: None,
                break_even_within_capacity: None,
            },
        })
        .collect();
    Comparison {
        local: LocalSide {
            prompt_tokens,
            completion_tokens,
            busy_seconds,
            busy_cost_usd: busy_cost,
            usd_per_million: busy_cost.and_then(|c| usd_per_million(c, tokens)),
            tokens_per_busy_second: rate,
            capacity_tokens_per_month: capacity,
        },
        closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        key: &str,
        alias: &str,
        model: &str,
        local: bool,
        day: &str,
        tokens: (u64, u64),
        busy_ms: u64,
    ) -> UsageRecord {
        UsageRecord {
            day: day.into(),
            key: key.into(),
            alias: alias.into(),
            model: model.into(),
            local,
            requests: 1,
            prompt_tokens: tokens.0,
            completion_tokens: tokens.1,
            busy_ms,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn busy_time_gives_dollars_per_million() {
        // Half an hour of a $2/h machine for 1M tokens: $1, so $1 per 1M.
        let cost = busy_cost_usd(2.0, 1_800_000);
        assert!(close(cost, 1.0));
        assert!(close(usd_per_million(cost, 1_000_000).unwrap(), 1.0));
        // 90 s of a $1.20/h machine for 12,000 tokens: $0.03, $2.50 per 1M.
        let cost = busy_cost_usd(1.2, 90_000);
        assert!(close(cost, 0.03));
        assert!(close(usd_per_million(cost, 12_000).unwrap(), 2.5));
        assert_eq!(usd_per_million(1.0, 0), None);
    }

    #[test]
    fn break_even_worked_example() {
        // $300/month of hardware against gpt-4o in a 3:1 input:output mix: $4.375 per 1M,
        // so 300 / 4.375 = 68.571428... million tokens a month.
        let be = break_even_tokens_per_month(300.0, 4.375).unwrap();
        assert!(close(be, 68_571_428.571_428_57));
        assert_eq!(break_even_tokens_per_month(300.0, 0.0), None);
    }

    #[test]
    fn comparison_prices_the_same_traffic_at_closed_rates() {
        let table = PriceTable::defaults();
        let records = [
            record(
                "k1",
                "chat",
                "qwen:7b",
                true,
                "2026-11-01",
                (500_000, 200_000),
                1_200_000,
            ),
            record(
                "k2",
                "chat",
                "qwen:7b",
                true,
                "2026-11-02",
                (250_000, 50_000),
                600_000,
            ),
            // Upstream traffic is not part of the local side.
            record("k2", "gpt", "gpt-4o", false, "2026-11-02", (9, 9), 0),
        ];
        let closed = ["gpt-4o".to_owned(), "made-up-model".to_owned()];
        let params = ComparisonParams {
            machine_usd_per_hour: Some(2.0),
            monthly_hardware_usd: Some(300.0),
            closed_models: &closed,
            prices: &table,
        };
        let c = compare(&records, &params);
        assert_eq!(
            (c.local.prompt_tokens, c.local.completion_tokens),
            (750_000, 250_000)
        );
        assert!(close(c.local.busy_seconds, 1_800.0));
        assert!(close(c.local.busy_cost_usd.unwrap(), 1.0));
        assert!(close(c.local.usd_per_million.unwrap(), 1.0));
        // 1M tokens in 1800 s: 555.5... tokens/s, about 1.461e9 a month.
        let capacity = c.local.capacity_tokens_per_month.unwrap();
        assert!(close(capacity, 1e6 / 1800.0 * SECONDS_PER_MONTH));
        let gpt = &c.closed[0];
        assert!(close(gpt.cost_usd.unwrap(), 4.375));
        assert!(close(gpt.usd_per_million.unwrap(), 4.375));
        assert!(close(
            gpt.break_even_tokens_per_month.unwrap(),
            68_571_428.571_428_57
        ));
        assert_eq!(gpt.break_even_within_capacity, Some(true));
        let unknown = &c.closed[1];
        assert!(!unknown.priced);
        assert_eq!(unknown.cost_usd, None);
        assert_eq!(unknown.break_even_tokens_per_month, None);
    }

    #[test]
    fn reports_group_and_never_price_the_unknown_at_zero() {
        let table = PriceTable::defaults();
        let records = [
            record(
                "k1",
                "chat",
                "qwen:7b",
                true,
                "2026-10-31",
                (1_000, 1_000),
                36_000,
            ),
            record(
                "k1",
                "chat",
                "qwen:7b",
                true,
                "2026-11-01",
                (1_000, 1_000),
                36_000,
            ),
            record(
                "k1",
                "smart",
                "gpt-4o-mini",
                false,
                "2026-11-01",
                (1_000_000, 1_000_000),
                0,
            ),
            record(
                "k2",
                "other",
                "someones-api",
                false,
                "2026-11-01",
                (10, 5),
                0,
            ),
        ];
        let model = CostModel {
            machine_usd_per_hour: Some(1.0),
            prices: &table,
        };

        let by_key = report(&records, GroupBy::Key, Period::Total, &model);
        assert_eq!(by_key.len(), 2);
        // k1: 2 × 36 s at $1/h = $0.02, plus gpt-4o-mini 1M in, 1M out = $0.75.
        assert_eq!(by_key[0].group, "k1");
        assert_eq!(by_key[0].requests, 3);
        assert!(close(by_key[0].cost.total_usd().unwrap(), 0.77));
        // k2 used an unpriced model: no total, and the tokens are reported as unpriced.
        assert_eq!(by_key[1].cost.total_usd(), None);
        assert_eq!(by_key[1].cost.unpriced_tokens, 15);
        assert_eq!(by_key[1].usd_per_million, None);

        let by_month = report(&records, GroupBy::Alias, Period::Month, &model);
        let names: Vec<_> = by_month
            .iter()
            .map(|r| (r.period.as_str(), r.group.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("2026-10", "chat"),
                ("2026-11", "chat"),
                ("2026-11", "other"),
                ("2026-11", "smart")
            ]
        );
        // 36 s at $1/h = $0.01 for 2,000 tokens: $5 per 1M.
        assert!(close(by_month[0].usd_per_million.unwrap(), 5.0));

        // Without a machine price, local traffic is unpriced too.
        let no_machine = CostModel {
            machine_usd_per_hour: None,
            prices: &table,
        };
        let by_model = report(&records, GroupBy::Model, Period::Total, &no_machine);
        let local = by_model.iter().find(|r| r.group == "qwen:7b").unwrap();
        assert_eq!(local.cost.total_usd(), None);
        assert_eq!(local.cost.unpriced_tokens, 4_000);
    }
}
