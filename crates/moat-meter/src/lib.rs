//! moat-meter: the audit log, closed-model list prices, the local cost model and usage
//! reports.
//!
//! [`Meter`] owns this crate's tables in `moat.db`: the append-only audit log
//! ([`Meter::audit_append`], [`Meter::audit_query`], [`Meter::audit_export_jsonl`], and
//! retention as the separate call [`Meter::retain`]) and usage records for costing
//! ([`Meter::record_usage`], [`Meter::usage_records`]). Prices ([`PriceTable`]) and the cost
//! model ([`report`], [`compare`], [`break_even_tokens_per_month`]) are pure and take
//! records, so `moat usage` and `GET /v1/usage` share them, down to the JSON of
//! [`usage_report`]; [`CostConfig`] is the `[cost]` section of `moat.toml`.
//!
//! Wiring: when a request's ticket closes the server appends an [`AuditEntry`] and records a
//! [`UsageEvent`] (that one on tokio's blocking pool); the CLI reads [`AuditConfig`],
//! [`PricesConfig`] and [`CostConfig`] from `moat.toml` and runs retention on start when
//! `retention_days` is set.
//!
//! Knows nothing of HTTP, keys (it takes the key's display form as text) or guard internals
//! (it takes the decision and rail names).
//!
//! ```
//! use moat_meter::{AuditConfig, AuditEntry, AuditFilter, Decision, Meter};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let meter = Meter::open(&dir.path().join("moat.db"), AuditConfig::default()).unwrap();
//! let entry = AuditEntry {
//!     at_ms: 1_764_158_400_000,
//!     who: "anonymous".into(),
//!     model: "qwen".into(),
//!     decision: Decision::Allowed,
//!     rails: vec![],
//!     prompt_tokens: 12,
//!     completion_tokens: 30,
//!     request_id: "req-1".into(),
//!     prompt: Some("hello".into()),
//! };
//! meter.audit_append(&entry).unwrap();
//! let found = meter.audit_query(&AuditFilter::default()).unwrap();
//! // Prompts are not recorded unless the configuration says so.
//! assert_eq!(found[0].entry.prompt, None);
//! ```

mod audit;
mod cost;
mod db;
mod error;
mod prices;
mod report;
mod usage;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use moat_db::WriteQueue;
use rusqlite::Connection;

pub use audit::{
    AuditConfig, AuditEntry, AuditFilter, AuditRecord, Decision, ANONYMOUS, EXPORT_PAGE,
    MAX_QUERY_ROWS,
};
pub use cost::{
    break_even_tokens_per_month, busy_cost_usd, compare, report, usd_per_million, ClosedSide,
    Comparison, ComparisonParams, Cost, CostModel, GroupBy, LocalSide, Period, ReportRow,
    UsageRecord, SECONDS_PER_MONTH,
};
pub use db::SCHEMA_VERSION;
pub use error::{MeterError, MeterErrorKind};
pub use prices::{
    ModelPrice, Price, PriceTable, PricesConfig, DEFAULT_PRICES_AS_OF, DEFAULT_PRICES_CAVEAT,
};
pub use report::{usage_report, CostConfig, ReportScope, UsageReport, UsageRow};
pub use usage::{UsageEvent, UsageRange};

/// The audit log and usage records over one `moat.db`. Share it behind an `Arc`.
pub struct Meter {
    conn: Mutex<Connection>,
    /// Audit entries and usage records go through the file's one writer, committed in groups.
    writes: Arc<WriteQueue>,
    audit_config: AuditConfig,
}

impl Meter {
    /// Opens (creating if needed) the database at `path`. `audit_config` decides whether
    /// prompts are stored.
    pub fn open(path: &Path, audit_config: AuditConfig) -> Result<Meter, MeterError> {
        if audit_config.retention_days == Some(0) {
            return Err(MeterError::Invalid {
                what: "audit config",
                reason: "retention_days must be at least 1".into(),
            });
        }
        let conn = db::open(path)?;
        Ok(Meter {
            conn: Mutex::new(conn),
            writes: WriteQueue::shared(path).map_err(MeterError::Storage)?,
            audit_config,
        })
    }

    /// The audit settings it was opened with.
    pub fn audit_config(&self) -> &AuditConfig {
        &self.audit_config
    }

    /// Applies the configured retention (if any) at `now_ms`; returns the entries deleted.
    pub fn apply_retention(&self, now_ms: i64) -> Result<u64, MeterError> {
        match self.audit_config.retention_days {
            Some(days) => self.retain(days, now_ms),
            None => Ok(0),
        }
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // Every write is one statement, so a panic elsewhere cannot leave it inconsistent.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
