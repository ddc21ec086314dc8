//! List prices of closed models per million input and output tokens, and the table that
//! answers "what does this model cost", overridable from configuration.
//!
//! The default table was checked on [`DEFAULT_PRICES_AS_OF`] against stored copies of public
//! pages; every entry names the page it was confirmed on and the date that page shows
//! (`as_of`), and what was left out was left out because it could not be confirmed:
//! - **Anthropic** (`claude-*`): confirmed on Anthropic's own pricing pages, which show no
//!   date (`as_of` is then the day of the check).
//! - **Google** (`gemini-2.5-*`): confirmed against a verbatim transcription of Google's page
//!   dated 2026-09-20 for one side of each price and a dated third-party copy of the same page
//!   for the other (see each `note`). `gemini-2.0-flash` was dropped: it is no longer on
//!   Google's page.
//! - **OpenAI** (`gpt-*`): OpenAI's own page was not among the stored pages. The `gpt-5.4` and
//!   `gpt-5.5` figures agree between a transcription of that page dated 2026-05-04 and a
//!   third-party table of June 2026; `gpt-4o`, `gpt-4o-mini` and `gpt-4.1` (no longer on
//!   OpenAI's current page) are confirmed only at second hand, on dated third-party pages that
//!   quote it.
//! - **Mistral**: no price could be confirmed, so none is listed.
//!
//! Prices change: check them (and override them in `moat.toml`) before relying on a report.
//! Only the standard tier is given (no batch discounts, cached-input rates or long-context
//! surcharges; see each entry's `note`). A model that is not in the table is
//! [`Price::Unpriced`], never free.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::MeterError;

/// The day the default table was checked against stored copies of the providers' pages.
pub const DEFAULT_PRICES_AS_OF: &str = "2026-11-26";
/// Said of the default table in every report that uses it.
pub const DEFAULT_PRICES_CAVEAT: &str = "default list prices checked 2026-11-26 against \
    stored copies of public pages (each entry names its page and date; OpenAI's gpt-4o, \
    gpt-4o-mini and gpt-4.1 only at second hand); check them and override in moat.toml";

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

/// One default entry: `(model, provider, input $/1M, output $/1M, as_of, source, note)`.
type DefaultEntry = (
    &'static str,
    &'static str,
    f64,
    f64,
    &'static str,
    &'static str,
    &'static str,
);

const ANTHROPIC: &str = "https://docs.anthropic.com/en/docs/about-claude/pricing";
const ANTHROPIC_CURRENT: &str = "https://platform.claude.com/docs/zh-CN/about-claude/pricing";
const ANTHROPIC_NOTE: &str =
    "base input rate; the page shows no date, as_of is the day it was read";
const GOOGLE: &str = "https://ai.google.dev/gemini-api/docs/pricing";
const OPENAI: &str = "https://developers.openai.com/api/docs/pricing";
const OPENAI_NOTE: &str = "standard tier; from a transcription of OpenAI's page dated \
    2026-05-04 (api-evangelist/openai plans), matching morphllm.com/openai-api-pricing (June 2026)";
const OPENAI_LEGACY_NOTE: &str = "standard tier; second hand: OpenAI's own page was not \
    available, this dated page quotes it (chatgptpricing-akr.pages.dev/api-pricing agrees)";

/// The default table's entries; see the module documentation for how each was confirmed.
const DEFAULTS: &[DefaultEntry] = &[
    (
        "gpt-5.5",
        "openai",
        5.00,
        30.00,
        "2026-05-04",
        OPENAI,
        OPENAI_NOTE,
    ),
    (
        "gpt-5.4",
        "openai",
        2.50,
        15.00,
        "2026-05-04",
        OPENAI,
        OPENAI_NOTE,
    ),
    (
        "gpt-5.4-mini",
        "openai",
        0.75,
        4.50,
        "2026-05-04",
        OPENAI,
        OPENAI_NOTE,
    ),
    (
        "gpt-5.4-nano",
        "openai",
        0.20,
        1.25,
        "2026-05-04",
        OPENAI,
        OPENAI_NOTE,
    ),
    (
        "gpt-4o",
        "openai",
        2.50,
        10.00,
        "2026-03",
        "https://deploybase.ai/articles/openai-pricing",
        OPENAI_LEGACY_NOTE,
    ),
    (
        "gpt-4o-mini",
        "openai",
        0.15,
        0.60,
        "2026-03",
        "https://deploybase.ai/articles/openai-pricing",
        OPENAI_LEGACY_NOTE,
    ),
    (
        "gpt-4.1",
        "openai",
        2.00,
        8.00,
        "2026-06-21",
        "https://tokenmath.io/openai-api-pricing-explained",
        "standard tier; second hand: the page says it checked OpenAI's model pricing that day",
    ),
    (
        "claude-opus-4",
        "anthropic",
        15.00,
        75.00,
        DEFAULT_PRICES_AS_OF,
        ANTHROPIC,
        ANTHROPIC_NOTE,
    ),
    (
        "claude-opus-4-1",
        "anthropic",
        15.00,
        75.00,
        DEFAULT_PRICES_AS_OF,
        ANTHROPIC,
        ANTHROPIC_NOTE,
    ),
    (
        "claude-sonnet-4",
        "anthropic",
        3.00,
        15.00,
        DEFAULT_PRICES_AS_OF,
        ANTHROPIC,
        "base input rate up to 200k input tokens (above: $6 in, $22.50 out); the page shows \
         no date, as_of is the day it was read",
    ),
    (
        "claude-3-5-haiku",
        "anthropic",
        0.80,
        4.00,
        DEFAULT_PRICES_AS_OF,
        ANTHROPIC,
        ANTHROPIC_NOTE,
    ),
    (
        "claude-opus-4-5",
        "anthropic",
        5.00,
        25.00,
        DEFAULT_PRICES_AS_OF,
        ANTHROPIC_CURRENT,
        ANTHROPIC_NOTE,
    ),
    (
        "claude-sonnet-4-5",
        "anthropic",
        3.00,
        15.00,
        DEFAULT_PRICES_AS_OF,
        ANTHROPIC_CURRENT,
        ANTHROPIC_NOTE,
    ),
    (
        "claude-haiku-4-5",
        "anthropic",
        1.00,
        5.00,
        DEFAULT_PRICES_AS_OF,
        ANTHROPIC_CURRENT,
        ANTHROPIC_NOTE,
    ),
    (
        "gemini-2.5-pro",
        "google",
        1.25,
        10.00,
        "2026-09-20",
        GOOGLE,
        "paid tier, prompts up to 200k tokens (above: $2.50 in, $15 out); input from a \
         verbatim transcription of the page dated 2026-09-20 (api-evangelist/gemini), output \
         as morphllm.com/gemini-api-pricing quotes the page",
    ),
    (
        "gemini-2.5-flash",
        "google",
        0.30,
        2.50,
        "2026-09-20",
        GOOGLE,
        "paid tier, text input; input from a verbatim transcription of the page dated \
         2026-09-20, output as morphllm.com/gemini-api-pricing quotes the page",
    ),
    (
        "gemini-2.5-flash-lite",
        "google",
        0.10,
        0.40,
        "2026-09-20",
        GOOGLE,
        "paid tier; output from a verbatim transcription of the page dated 2026-09-20, input \
         as morphllm.com/gemini-api-pricing quotes the page",
    ),
];

impl PriceTable {
    /// The default table (see the module documentation for how far to trust it).
    pub fn defaults() -> Self {
        let models = DEFAULTS
            .iter()
            .map(|&(model, provider, input, output, as_of, source, note)| {
                let price = ModelPrice {
                    provider: provider.to_owned(),
                    input_usd_per_million: input,
                    output_usd_per_million: output,
                    as_of: as_of.to_owned(),
                    source: source.to_owned(),
                    note: note.to_owned(),
                };
                (model.to_owned(), price)
            })
            .collect();
        PriceTable { models }
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
            // A date the page showed (or the day it was read), never later than the check.
            assert!(price.as_of.len() >= 7, "{model}");
            assert!(price.as_of.as_str() <= DEFAULT_PRICES_AS_OF, "{model}");
            assert!(!price.note.is_empty(), "{model}");
            assert!(price.source.starts_with("https://"), "{model}");
            assert!(
                price.output_usd_per_million >= price.input_usd_per_million,
                "{model}"
            );
        }
        assert_eq!(table.price("my-local-llama"), Price::Unpriced);
        // Dropped because no page confirmed it: unpriced, not free.
        assert_eq!(table.price("gemini-2.0-flash"), Price::Unpriced);
        assert_eq!(table.price("mistral-large-latest"), Price::Unpriced);
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
