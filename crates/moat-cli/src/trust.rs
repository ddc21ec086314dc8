//! Trust settings shared by `moat keys`, `moat audit`, `moat usage` and `moat serve`: the
//! `[guard]`, `[audit]`, `[prices]` and `[cost]` tables of `moat.toml`, the keys and audit log in `$MOAT_HOME/moat.db`, and the
//! table that gives a key its own guard policy (`moat keys create --guard NAME`).
//!
//! ```toml
//! [guard]
//! default = "pii"                 # the policy for requests nothing else gives one
//! classifier_model = "qwen:0.5b"  # the served model the classifier rail asks
//! restore_redactions = true       # put redacted values back into answers
//! [guard.policies.pii.input.actions]
//! pii = "redact"
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
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use moat_auth::{Auth, Key, KeyId};
use moat_guard::GuardConfig;
use moat_meter::{AuditConfig, CostConfig, Meter, PriceTable, PricesConfig};
use moat_server::KeyGuards;
use rusqlite::{params, Connection, OptionalExtension};
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

/// Which key uses which guard policy, in `cli_key_guards` beside moat-auth's tables (moat-auth
/// knows nothing of guards). Read on each request, so a key created while the server runs
/// gets its policy at once.
pub struct KeyGuardTable {
    conn: Mutex<Connection>,
}

impl KeyGuardTable {
    pub fn open(home: &Path) -> Result<KeyGuardTable> {
        let path = database(home)?;
        let conn =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS cli_key_guards (
                 key_id INTEGER PRIMARY KEY,
                 guard TEXT NOT NULL
             )",
            [],
        )
        .context("creating the key guard table")?;
        Ok(KeyGuardTable {
            conn: Mutex::new(conn),
        })
    }

    pub fn set(&self, key: KeyId, guard: &str) -> Result<()> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        conn.execute(
            "INSERT INTO cli_key_guards (key_id, guard) VALUES (?1, ?2)
             ON CONFLICT (key_id) DO UPDATE SET guard = ?2",
            params![key.0, guard],
        )?;
        Ok(())
    }

    pub fn get(&self, key: KeyId) -> Result<Option<String>> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(conn
            .query_row(
                "SELECT guard FROM cli_key_guards WHERE key_id = ?1",
                [key.0],
                |row| row.get(0),
            )
            .optional()?)
    }
}

/// A policy name no server defines: a key whose guard cannot be read is refused by the
/// server (fail closed) rather than served unguarded.
const UNREADABLE_GUARD: &str = "<unreadable key guard table>";

impl KeyGuards for KeyGuardTable {
    fn guard_for(&self, key: &Key) -> Option<String> {
        match self.get(key.id) {
            Ok(guard) => guard,
            Err(error) => {
                eprintln!("moat: reading the guard of key {}: {error:#}", key.prefix);
                Some(UNREADABLE_GUARD.to_owned())
            }
        }
    }
}

/// The key guard table behind the server's seam.
pub fn key_guards(home: &Path) -> Result<Arc<dyn KeyGuards>> {
    Ok(Arc::new(KeyGuardTable::open(home)?))
}
