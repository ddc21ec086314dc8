//! Usage records for cost reports: requests, tokens and local busy time per UTC day, key,
//! alias, model and whether a local engine answered, in `meter_usage`. One row per
//! combination, updated in place, so the table grows with days, not with requests.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::cost::UsageRecord;
use crate::{Meter, MeterError};

/// One finished request, as the server reports it for costing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    /// When it finished, in milliseconds since the epoch (its UTC day is what is kept).
    pub at_ms: i64,
    /// The key's display form, or `anonymous`.
    pub key: String,
    /// The alias requested (the model's name when no alias was used).
    pub alias: String,
    /// The model that answered.
    pub model: String,
    /// Whether a local engine answered.
    pub local: bool,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Milliseconds the local engine spent on it (prefill and decode steps), 0 for upstreams.
    pub busy_ms: u64,
    /// Requests it counts as: 1, or 0 for work one model did for a request that another
    /// model's event counts (a grounded chat's query embedding).
    #[serde(default = "one")]
    pub requests: u64,
}

fn one() -> u64 {
    1
}

/// Which days to read, inclusive, as `YYYY-MM-DD` (UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRange {
    /// From this day on.
    pub since_day: Option<String>,
    /// Up to this day.
    pub until_day: Option<String>,
}

fn checked_day(conn: &rusqlite::Connection, day: &Option<String>) -> Result<(), MeterError> {
    if let Some(day) = day {
        // SQLite's date() normalises a valid date to itself and returns NULL for garbage.
        let normal: Option<String> = conn.query_row("SELECT date(?1)", [day], |row| row.get(0))?;
        if normal.as_deref() != Some(day.as_str()) {
            return Err(MeterError::invalid(
                "day",
                format!("{day:?} is not a YYYY-MM-DD date"),
            ));
        }
    }
    Ok(())
}

impl Meter {
    /// Adds one request to its day's record and returns once that is committed.
    pub fn record_usage(&self, event: &UsageEvent) -> Result<(), MeterError> {
        let row = UsageRow::checked(event)?;
        self.writes
            .run(move |conn| row.upsert(conn))
            .map_err(MeterError::Storage)
    }

    /// Queues one finished request for the next group commit and returns at once (see
    /// [`Meter::audit_submit`]). A bad event is refused here; a failed write is logged.
    pub fn submit_usage(&self, event: &UsageEvent) -> Result<(), MeterError> {
        let row = UsageRow::checked(event)?;
        self.writes
            .submit("usage record", move |conn| row.upsert(conn));
        Ok(())
    }

    /// The records of the days in `range`, ordered by day, key, alias, model; feed them to
    /// [`crate::report`] or [`crate::compare`].
    pub fn usage_records(&self, range: &UsageRange) -> Result<Vec<UsageRecord>, MeterError> {
        self.writes.flush();
        let conn = self.conn();
        checked_day(&conn, &range.since_day)?;
        checked_day(&conn, &range.until_day)?;
        let mut statement = conn.prepare(
            "SELECT day, key, alias, model, local, requests, prompt_tokens, completion_tokens,
                 busy_ms FROM meter_usage
             WHERE (?1 IS NULL OR day >= ?1) AND (?2 IS NULL OR day <= ?2)
             ORDER BY day, key, alias, model, local",
        )?;
        let rows = statement.query_map(params![range.since_day, range.until_day], |row| {
            let count = |i: usize| row.get::<_, i64>(i).map(|n| n.max(0) as u64);
            Ok(UsageRecord {
                day: row.get(0)?,
                key: row.get(1)?,
                alias: row.get(2)?,
                model: row.get(3)?,
                local: row.get(4)?,
                requests: count(5)?,
                prompt_tokens: count(6)?,
                completion_tokens: count(7)?,
                busy_ms: count(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A usage event as stored: checked, its counts in SQLite's integers.
struct UsageRow {
    at_s: i64,
    key: String,
    alias: String,
    model: String,
    local: bool,
    prompt_tokens: i64,
    completion_tokens: i64,
    busy_ms: i64,
    requests: i64,
}

impl UsageRow {
    fn checked(event: &UsageEvent) -> Result<UsageRow, MeterError> {
        for (name, value) in [
            ("key", &event.key),
            ("alias", &event.alias),
            ("model", &event.model),
        ] {
            if value.is_empty() || value.len() > 256 {
                return Err(MeterError::invalid(
                    "usage event",
                    format!("{name} must be 1 to 256 bytes"),
                ));
            }
        }
        let as_i64 = |n: u64| {
            i64::try_from(n).map_err(|_| MeterError::invalid("usage event", "count out of range"))
        };
        Ok(UsageRow {
            at_s: event.at_ms.div_euclid(1000),
            key: event.key.clone(),
            alias: event.alias.clone(),
            model: event.model.clone(),
            local: event.local,
            prompt_tokens: as_i64(event.prompt_tokens)?,
            completion_tokens: as_i64(event.completion_tokens)?,
            busy_ms: as_i64(event.busy_ms)?,
            requests: as_i64(event.requests)?,
        })
    }

    /// Adds the request to its day's row (one row per day, key, alias, model and locality).
    fn upsert(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        conn.prepare_cached(
            "INSERT INTO meter_usage (day, key, alias, model, local, requests, prompt_tokens,
                 completion_tokens, busy_ms)
             VALUES (date(?1, 'unixepoch'), ?2, ?3, ?4, ?5, ?9, ?6, ?7, ?8)
             ON CONFLICT (day, key, alias, model, local) DO UPDATE SET
                 requests = requests + ?9,
                 prompt_tokens = prompt_tokens + ?6,
                 completion_tokens = completion_tokens + ?7,
                 busy_ms = busy_ms + ?8",
        )?
        .execute(params![
            self.at_s,
            self.key,
            self.alias,
            self.model,
            self.local,
            self.prompt_tokens,
            self.completion_tokens,
            self.busy_ms,
            self.requests,
        ])
        .map(drop)
    }
}
