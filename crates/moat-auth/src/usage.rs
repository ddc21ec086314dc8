//! Usage per key: requests and prompt/completion tokens by model and UTC day, in
//! `auth_usage`. One row per (key, day, model), updated in place, so the table grows with
//! days × keys × models, not with requests.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::clock::Date;
use crate::keys::{Key, KeyId};
use crate::{Auth, AuthError};

/// The key id under which requests without a key (a server with no keys) are counted.
pub const ANONYMOUS: KeyId = KeyId(0);

/// Which usage rows to return. Days are inclusive and in UTC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFilter {
    /// Only this key ([`ANONYMOUS`] for requests without one).
    pub key: Option<KeyId>,
    /// Only this model or alias.
    pub model: Option<String>,
    /// From this day on.
    pub since: Option<Date>,
    /// Up to this day.
    pub until: Option<Date>,
}

/// One key's use of one model on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// The key ([`ANONYMOUS`] for none).
    pub key: KeyId,
    /// The day, `YYYY-MM-DD`.
    pub day: String,
    /// The model or alias as requested.
    pub model: String,
    /// Requests counted.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

impl Auth {
    /// Counts one finished request of `key` (`None`: anonymous) on `model` today (UTC), and
    /// returns once that is committed.
    pub fn record_usage(
        &self,
        key: Option<&Key>,
        model: &str,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) -> Result<(), AuthError> {
        let count = self.usage_count(key, model, prompt_tokens, completion_tokens)?;
        self.writes
            .run(move |conn| count.add(conn))
            .map_err(AuthError::Storage)
    }

    /// [`Auth::record_usage`] queued for the next group commit: returns at once (a server's
    /// path), counting `requests` requests: 1, or 0 for the tokens `model` read and wrote for a
    /// request that another model's usage counts (a grounded chat's question embedding, a
    /// chat's input classifier). A bad model name is refused here; a failed write is logged.
    /// [`Auth::usage`] sees it.
    pub fn submit_usage(
        &self,
        key: Option<&Key>,
        model: &str,
        (prompt_tokens, completion_tokens): (u64, u64),
        requests: u64,
    ) -> Result<(), AuthError> {
        let mut count = self.usage_count(key, model, prompt_tokens, completion_tokens)?;
        count.requests = i64::try_from(requests).unwrap_or(i64::MAX);
        self.writes.submit("key usage", move |conn| count.add(conn));
        Ok(())
    }

    fn usage_count(
        &self,
        key: Option<&Key>,
        model: &str,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) -> Result<UsageCount, AuthError> {
        if model.is_empty() || model.len() > 256 {
            return Err(AuthError::invalid("model", "1 to 256 bytes"));
        }
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Ok(UsageCount {
            key: key.map_or(ANONYMOUS, |k| k.id),
            day: Date::from_unix_ms(self.clock.now_ms()).iso(),
            model: model.to_owned(),
            requests: 1,
            prompt_tokens: as_i64(prompt_tokens),
            completion_tokens: as_i64(completion_tokens),
        })
    }

    /// Usage rows matching `filter`, by day, key and model.
    pub fn usage(&self, filter: &UsageFilter) -> Result<Vec<UsageRow>, AuthError> {
        self.writes.flush();
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT key_id, day, model, requests, prompt_tokens, completion_tokens FROM auth_usage
             WHERE (?1 IS NULL OR key_id = ?1) AND (?2 IS NULL OR model = ?2)
               AND (?3 IS NULL OR day >= ?3) AND (?4 IS NULL OR day <= ?4)
             ORDER BY day, key_id, model",
        )?;
        let rows = statement.query_map(
            params![
                filter.key.map(|k| k.0),
                filter.model,
                filter.since.map(Date::iso),
                filter.until.map(Date::iso)
            ],
            |row| {
                let count = |i: usize| row.get::<_, i64>(i).map(|n| n.max(0) as u64);
                Ok(UsageRow {
                    key: KeyId(row.get(0)?),
                    day: row.get(1)?,
                    model: row.get(2)?,
                    requests: count(3)?,
                    prompt_tokens: count(4)?,
                    completion_tokens: count(5)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// One finished request, to be added to its (key, day, model) row.
struct UsageCount {
    key: KeyId,
    day: String,
    model: String,
    requests: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
}

impl UsageCount {
    fn add(&self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        conn.prepare_cached(
            "INSERT INTO auth_usage (key_id, day, model, requests, prompt_tokens, completion_tokens)
             VALUES (?1, ?2, ?3, ?6, ?4, ?5)
             ON CONFLICT (key_id, day, model) DO UPDATE SET
                 requests = requests + ?6,
                 prompt_tokens = prompt_tokens + ?4,
                 completion_tokens = completion_tokens + ?5",
        )?
        .execute(params![
            self.key.0,
            self.day,
            self.model,
            self.prompt_tokens,
            self.completion_tokens,
            self.requests
        ])
        .map(drop)
    }
}
