//! Trust settings shared by `moat keys`, `moat audit`, `moat usage` and `moat serve`: the
//! `[guard]`, `[audit]`, `[prices]` and `[cost]` tables of `moat.toml`, and the keys and audit
//! log in `$MOAT_HOME/moat.db` (a key's own guard policy, `moat keys create --guard NAME`, is
//! stored with the key).
//!
//! ```toml
//! [guard]
//! default = "pii"                 # the policy for requests nothing else gives one
//! classifier_model = "qwen:0.5b"  # the served model the classifier rail asks
//! restore_redactions = true       # put redacted values back into answers
//! [guard.policies.pii.input.actions]
//! pii = "redact"
//! [guard.keys]
//! ci-bot = "pii"                  # by key name or prefix (a key's own --guard comes first)
//! [audit]
//! record_prompts = false
//! retention_days = 90
//! [cost]
//! machine_usd_per_hour = 1.20     # prices local busy time in usage reports
//! monthly_hardware_usd = 600      # the fixed cost behind break-even volumes
//! [prices.models."my-upstream"]   # a list price of your own (moat-meter's PricesConfig)
//! provider = "acme"
//! input_usd_per_million = 0.5
//! output_usd_per_million = 1.5
//! as_of = "2026-11-01"
//! source = "our contract"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use moat_auth::Auth;
use moat_guard::GuardConfig;
use moat_meter::{AuditConfig, CostConfig, Meter, PriceTable, PricesConfig};
use serde::Deserialize;

/// The parts of `moat.toml` this module reads.
#[derive(Debug, Default, Deserialize)]
struct TrustToml {
    #[serde(default)]
    guard: GuardSection,
    #[serde(default)]
    audit: AuditConfig,
    #[serde(default)]
    prices: PricesConfig,
    #[serde(default)]
    cost: CostConfig,
}

/// `[guard]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSection {
    /// The policy for requests that neither their key nor their alias gives one.
    pub default: Option<String>,
    /// The served model the classifier rail asks.
    pub classifier_model: Option<String>,
    /// Put the request's redacted values back into the answer.
    #[serde(default)]
    pub restore_redactions: bool,
    /// `[guard.policies.NAME]`: moat-guard's configuration.
    #[serde(default)]
    pub policies: BTreeMap<String, GuardConfig>,
    /// `[guard.keys]`: a policy per API key, by the key's name or public prefix.
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
}

/// The trust settings of the config file.
#[derive(Debug, Default, Clone)]
pub struct TrustSettings {
    pub guard: GuardSection,
    pub audit: AuditConfig,
    /// `[prices]`, checked: the price table usage reports use.
    pub prices: PriceTable,
    /// `[cost]`, checked.
    pub cost: CostConfig,
}

/// Reads `[guard]`, `[audit]`, `[prices]` and `[cost]` of the config file (defaults when
/// there is none); a price or cost out of range is an error naming the file.
pub fn settings(home: &Path, explicit: Option<&Path>) -> Result<TrustSettings> {
    let path = crate::knowledge::config_path(home, explicit);
    let parsed: TrustToml = match &path {
        None => TrustToml::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
    };
    let file = || {
        path.as_ref()
            .map_or("moat.toml".into(), |p| p.display().to_string())
    };
    let prices = PriceTable::from_config(&parsed.prices)
        .with_context(|| format!("[prices] in {}", file()))?;
    parsed
        .cost
        .validate()
        .with_context(|| format!("[cost] in {}", file()))?;
    Ok(TrustSettings {
        guard: parsed.guard,
        audit: parsed.audit,
        prices,
        cost: parsed.cost,
    })
}

/// `$MOAT_HOME/moat.db`, its folder created if needed.
pub fn database(home: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    Ok(home.join("moat.db"))
}

pub fn open_auth(home: &Path) -> Result<Auth> {
    let path = database(home)?;
    Auth::open(&path).with_context(|| format!("opening the keys in {}", path.display()))
}

pub fn open_meter(home: &Path, config: AuditConfig) -> Result<Meter> {
    let path = database(home)?;
    Meter::open(&path, config)
        .with_context(|| format!("opening the audit log in {}", path.display()))
}
