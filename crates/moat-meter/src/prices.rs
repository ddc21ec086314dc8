//! List prices of closed models per million input and output tokens, and the table that
//! answers "what does this model cost", overridable from configuration.
//!
//! The default table was written without network access, from figures the author is
//! confident were the providers' public list prices around [`DEFAULT_PRICES_AS_OF`]. They
//! have not been re-read from the pages named in each entry: prices change, so check them
//! (and override them in `moat.toml`) before relying on a report. Only the standard tier is
//! given (no batch discounts, cached-input rates or long-context surcharges; see each
//! entry's `note`). A model that is not in the table is [`Price::Unpriced`], never free.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::MeterError;

/// When the default figures were last known to be right (year and month, approximate).
pub const DEFAULT_PRICES_AS_OF: &str = "2025-06";
/// Said of the default table in every report that uses it.
pub const DEFAULT_PRICES_CAVEAT: &str = "default list prices as known around 2025-06, \
    not re-checked against the providers' pages; check them and override in moat.toml";

/// One model's list price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// The provider (`openai`, `anthropic`, `google`, or anything for overrides).
    pub provider: String,
    /// US dollars per million input (prompt) tokens.
    pub input_usd_per_million: f64,
    /// US dollars per million output (completion) tokens.
    pub output_usd_per_million: f64,
    /// When the figures were read (`YYYY-MM` or `YYYY-MM-DD`).
    pub as_of: String,
    /// Where they were read.
    pub source: String,
    /// Caveats (tiers, surcharges).
    #[serde(default)]
    pub note: String,
}

impl ModelPrice {
    /// The list cost in US dollars of `prompt_tokens` in and `completion_tokens` out.
    pub fn cost_usd(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.input_usd_per_million
            + completion_tokens as f64 * self.output_usd_per_million)
            / 1e6
    }

    fn validate(&self, model: &str) -> Result<(), MeterError> {
        for (side, value) in [
            ("input", self.input_usd_per_million),
            ("output", self.output_usd_per_million),
        ] {
            if !value.is_finite() || !(0.0..=100_000.0).contains(&value) {
                return Err(MeterError::invalid(
                    "price",
                    format!("{model}: {side} price {value} is not between 0 and 100000 $/1M"),
                ));
            }
        }
        Ok(())
    }
}

/// What a model costs, as far as moat knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Price<'a> {
    /// A list price.
    Priced(&'a ModelPrice),
    /// No price known: reports must say so, never count it as $0.
    Unpriced,
}

/// The `[prices]` section of `moat.toml`: per model, a full price that replaces or adds to
/// the defaults, and whether to start from the defaults at all.
///
/// ```toml
/// [prices]
/// use_defaults = true
/// [prices.models."gpt-4o"]
/// provider = "openai"
/// input_usd_per_million = 2.5
/// output_usd_per_million = 10.0
/// as_of = "2026-01-15"
/// source = "our invoice"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PricesConfig {
    /// Start from the default table (true by default).
    pub use_defaults: bool,
    /// Prices by model name, replacing a default of the same name.
    pub models: BTreeMap<String, ModelPrice>,
}

impl Default for PricesConfig {
    fn default() -> Self {
        PricesConfig {
            use_defaults: true,
            models: BTreeMap::new(),
        }
    }
}

/// Prices by model name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PriceTable {
    models: BTreeMap<String, ModelPrice>,
}

fn list(provider: &str, input: f64, output: f64, source: &str, note: &str) -> ModelPrice {
    ModelPrice {
        provider: provider.to_owned(),
        input_usd_per_million: input,
        output_usd_per_million: output,
        as_of: DEFAULT_PRICES_AS_OF.to_owned(),
        source: source.to_owned(),
        note: note.to_owned(),
    }
}

const OPENAI: &str = "https://openai.com/api/pricing/";
const ANTHROPIC: &str = "https://www.anthropic.com/pricing#api";
const GOOGLE: &str = "https://ai.google.dev/gemini-api/docs/pricing";

impl PriceTable {
    /// The default table (see the module documentation for how far to trust it).
    pub fn defaults() -> Self {
        let entries = [
            (
                "gpt-4o",
                list("openai", 2.50, 10.00, OPENAI, "standard tier"),
            ),
            (
                "gpt-4o-mini",
                list("openai", 0.15, 0.60, OPENAI, "standard tier"),
            ),
            (
                "gpt-4.1",
                list("openai", 2.00, 8.00, OPENAI, "standard tier"),
            ),
            (
                "claude-opus-4",
                list("anthropic", 15.00, 75.00, ANTHROPIC, "base input rate"),
            ),
            (
                "claude-sonnet-4",
                list("anthropic", 3.00, 15.00, ANTHROPIC, "base input rate"),
            ),
            (
                "claude-3-5-haiku",
                list("anthropic", 0.80, 4.00, ANTHROPIC, "base input rate"),
            ),
            (
                "gemini-2.0-flash",
                list("google", 0.10, 0.40, GOOGLE, "paid tier, text input"),
            ),
            (
                "gemini-2.5-pro",
                list(
                    "google",
                    1.25,
                    10.00,
                    GOOGLE,
                    "paid tier, prompts up to 200k tokens",
                ),
            ),
        ];
        PriceTable {
            models: entries
                .into_iter()
                .map(|(m, p)| (m.to_owned(), p))
                .collect(),
        }
    }

    /// The table `config` describes: the defaults (unless turned off) with its prices over
    /// them. Every price is checked (finite, 0 to 100,000 $/1M).
    pub fn from_config(config: &PricesConfig) -> Result<Self, MeterError> {
        let mut table = if config.use_defaults {
            PriceTable::defaults()
        } else {
            PriceTable::default()
        };
        for (model, price) in &config.models {
            if model.is_empty() {
                return Err(MeterError::invalid("price", "an empty model name"));
            }
            price.validate(model)?;
            table.models.insert(model.clone(), price.clone());
        }
        Ok(table)
    }

    /// The price of `model`, by exact name.
    pub fn price(&self, model: &str) -> Price<'_> {
        self.models
            .get(model)
            .map_or(Price::Unpriced, Price::Priced)
    }

    /// Every priced model, by name.
    pub fn models(&self) -> impl Iterator<Item = (&str, &ModelPrice)> {
        self.models
            .iter()
            .map(|(name, price)| (name.as_str(), price))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_dated_sourced_and_valid() {
        let table = PriceTable::defaults();
        let providers: std::collections::BTreeSet<_> =
            table.models().map(|(_, p)| p.provider.as_str()).collect();
        assert_eq!(
            providers.into_iter().collect::<Vec<_>>(),
            ["anthropic", "google", "openai"]
        );
        for (model, price) in table.models() {
            price.validate(model).unwrap();
            assert_eq!(price.as_of, DEFAULT_PRICES_AS_OF);
            assert!(price.source.starts_with("https://"), "{model}");
            assert!(
                price.output_usd_per_million >= price.input_usd_per_million,
                "{model}"
            );
        }
        assert_eq!(table.price("my-local-llama"), Price::Unpriced);
    }

    #[test]
    fn worked_example_of_a_list_cost() {
        let table = PriceTable::defaults();
        let Price::Priced(gpt4o) = table.price("gpt-4o") else {
            panic!("gpt-4o is listed")
        };
        // 750k in at $2.50/1M + 250k out at $10/1M = 1.875 + 2.5.
        assert!((gpt4o.cost_usd(750_000, 250_000) - 4.375).abs() < 1e-9);
    }
}
