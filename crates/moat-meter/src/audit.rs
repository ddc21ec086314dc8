//! The audit log: one append-only row per API request in `meter_audit`: who, when, which
//! model or alias, the guard decision and the rails hit, token counts, the request id, and the
//! prompt text only when the configuration turns that on.
//!
//! There is no update path, and SQLite triggers refuse UPDATEs and deletes of entries younger
//! than a day. The one delete is [`Meter::retain`], a separate explicit call for retention.
//! Exports stream in pages of [`EXPORT_PAGE`] rows, so memory stays bounded however large the
//! log is, and appends are not held up for the whole export.

use std::io::Write;

use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::{Meter, MeterError};

/// Rows read per page while exporting.
pub const EXPORT_PAGE: usize = 500;
/// The most rows one [`Meter::audit_query`] returns.
pub const MAX_QUERY_ROWS: usize = 10_000;
const MAX_FIELD_BYTES: usize = 256;
const MAX_RAILS: usize = 64;

/// The audit settings, as in `moat.toml`'s `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Whether prompt text is stored. Off by default: the log records that a request
    /// happened, not what it said.
    pub record_prompts: bool,
    /// The most bytes of a prompt stored (when recorded); longer ones are cut at a character
    /// boundary and marked `prompt_truncated`.
    pub max_prompt_bytes: usize,
    /// Entries older than this many days may be removed by [`Meter::retain`]; `None` keeps
    /// everything. At least 1.
    pub retention_days: Option<u32>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            record_prompts: false,
            max_prompt_bytes: 64 * 1024,
            retention_days: None,
        }
    }
}

/// What the guardrails decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Passed unchanged.
    Allowed,
    /// Refused (`content_policy_violation`).
    Blocked,
    /// Passed with parts replaced by placeholders.
    Redacted,
    /// Passed and marked for review.
    Flagged,
}

impl Decision {
    /// The stored and exported name.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Blocked => "blocked",
            Decision::Redacted => "redacted",
            Decision::Flagged => "flagged",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Decision::Allowed,
            Decision::Blocked,
            Decision::Redacted,
            Decision::Flagged,
        ]
        .into_iter()
        .find(|d| d.as_str() == text)
    }
}

/// Who made a request when no key was given.
pub const ANONYMOUS: &str = "anonymous";

/// One request, as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The key's public prefix and name (e.g. `moat-sk-AbCd1234 ci`), or [`ANONYMOUS`].
    pub who: String,
    /// The model or alias as requested.
    pub model: String,
    /// The guard decision.
    pub decision: Decision,
    /// The rails (detector classes) that fired, e.g. `["pii.email"]`.
    pub rails: Vec<String>,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// The request id the server gave the request.
    pub request_id: String,
    /// The prompt text. Stored only when [`AuditConfig::record_prompts`] is on; dropped
    /// otherwise, whatever the caller passes.
    pub prompt: Option<String>,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Its position in the log (increasing).
    pub id: i64,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// Whether the stored prompt was cut to [`AuditConfig::max_prompt_bytes`].
    pub prompt_truncated: bool,
}

/// Which entries to return. Times in milliseconds since the epoch; `until_ms` is exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// From this time on.
    pub since_ms: Option<i64>,
    /// Before this time.
    pub until_ms: Option<i64>,
    /// Only this `who`.
    pub who: Option<String>,
    /// Only this model or alias.
    pub model: Option<String>,
    /// Only this decision.
    pub decision: Option<Decision>,
    /// Only entries after this id (for paging).
    pub after_id: Option<i64>,
    /// At most this many rows (queries only; capped at [`MAX_QUERY_ROWS`]; default 100).
    pub limit: Option<usize>,
}

impl AuditEntry {
    fn validate(&self) -> Result<(), MeterError> {
        let short = |name: &'static str, value: &str, allow_empty: bool| {
            if (value.is_empty() && !allow_empty) || value.len() > MAX_FIELD_BYTES {
                Err(MeterError::invalid(
                    "audit entry",
                    format!("{name} must be 1 to {MAX_FIELD_BYTES} bytes"),
                ))
            } else {
                Ok(())
            }
        };
        short("who", &self.who, false)?;
        short("model", &self.model, false)?;
        short("request_id", &self.request_id, true)?;
        if self.rails.len() > MAX_RAILS {
            return Err(MeterError::invalid(
                "audit entry",
                format!("more than {MAX_RAILS} rails"),
            ));
        }
        for rail in &self.rails {
            short("a rail name", rail, false)?;
        }
        if i64::try_from(self.prompt_tokens.max(self.completion_tokens)).is_err() {
            return Err(MeterError::invalid(
                "audit entry",
                "token count out of range",
            ));
        }
        Ok(())
    }
}

fn cut_at_char_boundary(text: &str, max_bytes: usize) -> (&str, bool) {
    if text.len() <= max_bytes {
        return (text, false);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

const SELECT_AUDIT: &str = "SELECT id, at_ms, who, model, decision, rails, prompt_tokens,
        completion_tokens, request_id, prompt, prompt_truncated FROM meter_audit
    WHERE (?1 IS NULL OR at_ms >= ?1) AND (?2 IS NULL OR at_ms < ?2)
      AND (?3 IS NULL OR who = ?3) AND (?4 IS NULL OR model = ?4)
      AND (?5 IS NULL OR decision = ?5) AND id > ?6
    ORDER BY id LIMIT ?7";

/// An entry as stored: checked, its prompt cut or dropped, its rails encoded.
struct AuditRow {
    at_ms: i64,
    who: String,
    model: String,
    decision: &'static str,
    rails: String,
    prompt_tokens: i64,
    completion_tokens: i64,
    request_id: String,
    prompt: Option<String>,
    prompt_truncated: bool,
}

impl AuditRow {
    fn insert(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        // Cached: parsing the statement cost more than running it, once per request.
        conn.prepare_cached(
            "INSERT INTO meter_audit (at_ms, who, model, decision, rails, prompt_tokens,
                 completion_tokens, request_id, prompt, prompt_truncated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            self.at_ms,
            self.who,
            self.model,
            self.decision,
            self.rails,
            self.prompt_tokens,
            self.completion_tokens,
            self.request_id,
            self.prompt,
            self.prompt_truncated,
        ])
        .map(drop)
    }
}

impl Meter {
    /// Appends one entry, dropping its prompt unless prompts are recorded, and returns its id
    /// once it is committed.
    pub fn audit_append(&self, entry: &AuditEntry) -> Result<i64, MeterError> {
        let row = self.audit_row(entry)?;
        self.writes
            .run(move |conn| {
                row.insert(conn)?;
                Ok(conn.last_insert_rowid())
            })
            .map_err(MeterError::Storage)
    }

    /// Queues one entry for the next group commit and returns at once (a server's path: the
    /// request does not wait on the disk). A bad entry is refused here; a failed write is
    /// logged. Reads through this `Meter` see it ([`moat_db::WriteQueue::flush`]).
    pub fn audit_submit(&self, entry: &AuditEntry) -> Result<(), MeterError> {
        let row = self.audit_row(entry)?;
        let label = format!("audit entry of {}", entry.request_id);
        self.writes.submit(label, move |conn| row.insert(conn));
        Ok(())
    }

    /// Checks `entry` and turns it into the row to insert.
    fn audit_row(&self, entry: &AuditEntry) -> Result<AuditRow, MeterError> {
        entry.validate()?;
        let config = &self.audit_config;
        let (prompt, prompt_truncated) = match (&entry.prompt, config.record_prompts) {
            (Some(prompt), true) => {
                let (kept, cut) = cut_at_char_boundary(prompt, config.max_prompt_bytes);
                (Some(kept.to_owned()), cut)
            }
            _ => (None, false),
        };
        let rails = serde_json::to_string(&entry.rails)
            .map_err(|e| MeterError::Storage(format!("cannot encode rails: {e}")))?;
        Ok(AuditRow {
            at_ms: entry.at_ms,
            who: entry.who.clone(),
            model: entry.model.clone(),
            decision: entry.decision.as_str(),
            rails,
            prompt_tokens: entry.prompt_tokens.min(i64::MAX as u64) as i64,
            completion_tokens: entry.completion_tokens.min(i64::MAX as u64) as i64,
            request_id: entry.request_id.clone(),
            prompt,
            prompt_truncated,
        })
    }

    /// Entries matching `filter`, oldest first, at most `filter.limit` (default 100).
    pub fn audit_query(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, MeterError> {
        let limit = filter.limit.unwrap_or(100);
        if limit > MAX_QUERY_ROWS {
            return Err(MeterError::invalid(
                "audit filter",
                format!("limit {limit} is above {MAX_QUERY_ROWS}; export instead"),
            ));
        }
        self.audit_page(filter, filter.after_id.unwrap_or(0), limit)
    }

    fn audit_page(
        &self,
        filter: &AuditFilter,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, MeterError> {
        self.writes.flush();
        let conn = self.conn();
        let mut statement = conn.prepare_cached(SELECT_AUDIT)?;
        let rows = statement.query_map(
            params![
                filter.since_ms,
                filter.until_ms,
                filter.who,
                filter.model,
                filter.decision.map(Decision::as_str),
                after_id,
                limit as i64,
            ],
            row_to_record,
        )?;
        let mut records = Vec::new();
        for row in rows {
            records.push(row??);
        }
        Ok(records)
    }

    /// Writes every entry matching `filter` (its `limit` ignored) to `out` as JSON Lines, one
    /// [`AuditRecord`] per line, oldest first, and returns how many. Reads in pages so that
    /// memory stays bounded and writers are not blocked for the whole export.
    pub fn audit_export_jsonl(
        &self,
        filter: &AuditFilter,
        out: &mut dyn Write,
    ) -> Result<u64, MeterError> {
        let mut after_id = filter.after_id.unwrap_or(0);
        let mut written = 0u64;
        loop {
            let page = self.audit_page(filter, after_id, EXPORT_PAGE)?;
            for record in &page {
                serde_json::to_writer(&mut *out, record)
                    .map_err(|e| MeterError::Write(std::io::Error::other(e)))?;
                out.write_all(b"\n")?;
                written += 1;
            }
            match page.last() {
                Some(last) if page.len() == EXPORT_PAGE => after_id = last.id,
                _ => break,
            }
        }
        out.flush()?;
        Ok(written)
    }

    /// Retention: deletes entries older than `days` days before `now_ms` and returns how many.
    /// `days` must be at least 1 (the database refuses to delete younger entries anyway).
    pub fn retain(&self, days: u32, now_ms: i64) -> Result<u64, MeterError> {
        if days == 0 {
            return Err(MeterError::invalid("retention", "keep at least 1 day"));
        }
        let cutoff = now_ms.saturating_sub(i64::from(days) * 86_400_000);
        let deleted = self
            .conn()
            .execute("DELETE FROM meter_audit WHERE at_ms < ?1", [cutoff])?;
        Ok(deleted as u64)
    }
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<AuditRecord, MeterError>> {
    let id: i64 = row.get(0)?;
    let decision: String = row.get(4)?;
    let rails: String = row.get(5)?;
    let damaged =
        |what: &str| MeterError::Storage(format!("audit entry {id}: stored {what} is damaged"));
    let Some(decision) = Decision::parse(&decision) else {
        return Ok(Err(damaged("decision")));
    };
    let Ok(rails) = serde_json::from_str::<Vec<String>>(&rails) else {
        return Ok(Err(damaged("rails")));
    };
    let count = |i: usize| row.get::<_, i64>(i).map(|n| n.max(0) as u64);
    Ok(Ok(AuditRecord {
        id,
        entry: AuditEntry {
            at_ms: row.get(1)?,
            who: row.get(2)?,
            model: row.get(3)?,
            decision,
            rails,
            prompt_tokens: count(6)?,
            completion_tokens: count(7)?,
            request_id: row.get(8)?,
            prompt: row.get(9)?,
        },
        prompt_truncated: row.get(10)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_cut_on_character_boundaries() {
        assert_eq!(cut_at_char_boundary("héllo", 2), ("h", true));
        assert_eq!(cut_at_char_boundary("héllo", 3), ("hé", true));
        assert_eq!(cut_at_char_boundary("héllo", 6), ("héllo", false));
    }
}
