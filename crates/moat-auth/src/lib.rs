//! moat-auth: API keys, their scopes and limits, and usage per key, in `moat.db`.
//!
//! [`Auth`] is the one handle. The server is expected to use it like this on each API request:
//!
//! 1. if [`Auth::keys_exist`] (cheap), require a key: [`Auth::authenticate`] the
//!    `Authorization` header (absent, malformed, unknown or revoked → 401, see
//!    [`AuthErrorKind`]); `/health` never asks;
//! 2. [`Auth::authorize`] the model or alias named (→ 403), or [`Auth::require_admin`] for
//!    admin routes;
//! 3. [`Auth::reserve`] `prompt_tokens + max_tokens` (→ 429 with `Retry-After` from
//!    [`Denied::retry_after`] and the limit's [`LimitKind::as_str`]);
//! 4. after the answer, [`Auth::settle`] the reservation with the real token count and
//!    [`Auth::record_usage`].
//!
//! Key management (`moat keys create|ls|revoke`) is [`Auth::create_key`], [`Auth::list_keys`]
//! and [`Auth::revoke_key`]; they work from another process while the server runs, because
//! authentication reads the database on every call.
//!
//! Knows nothing of HTTP, configuration files or the audit log (moat-meter).
//!
//! ```
//! use moat_auth::{Auth, NewKey, Scopes, Limits};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let auth = Auth::open(&dir.path().join("moat.db")).unwrap();
//! assert!(!auth.keys_exist().unwrap());
//! let created = auth
//!     .create_key(&NewKey {
//!         name: "ci".into(),
//!         scopes: Scopes::all_models(),
//!         limits: Limits::default(),
//!         guard: None,
//!         private: false,
//!     })
//!     .unwrap();
//! let header = format!("Bearer {}", created.secret.expose());
//! let key = auth.authenticate(&header).unwrap();
//! auth.authorize(&key, "qwen:7b").unwrap();
//! assert!(auth.keys_exist().unwrap());
//! ```

mod clock;
mod db;
mod error;
mod keys;
mod limits;
mod usage;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use moat_db::WriteQueue;
use rusqlite::{params, Connection, OptionalExtension};
use subtle::ConstantTimeEq;

pub use clock::{Clock, Date, ManualClock, SystemClock};
pub use db::SCHEMA_VERSION;
pub use error::{AuthError, AuthErrorKind};
pub use keys::{CreatedKey, Key, KeyId, NewKey, Scopes, Secret, SECRET_PREFIX};
pub use limits::{
    Admission, Budget, BudgetPeriod, Denied, LimitKind, Limits, Reservation, WINDOW_MS,
};
pub use usage::{UsageFilter, UsageRow, ANONYMOUS};

use keys::{hash_secret, parse_authorization};
use limits::{Check, KeyState};

/// Keys, scopes, limits and usage over one `moat.db`. Share it behind an `Arc`; every method
/// takes `&self` and is safe to call from many threads.
pub struct Auth {
    conn: Mutex<Connection>,
    /// Usage counts go through the file's one writer, committed in groups.
    writes: Arc<WriteQueue>,
    clock: Arc<dyn Clock>,
    /// Set once a key has been seen. Keys are never deleted (a revoked key still counts, so
    /// that revoking the last key does not silently open the server to everyone), so once
    /// true it stays true and needs no invalidation, even when another process creates keys.
    keys_seen: AtomicBool,
    limiter: Mutex<HashMap<KeyId, Arc<Mutex<KeyState>>>>,
    next_reservation: AtomicU64,
}

const KEY_COLUMNS: &str = "id, name, prefix, models, admin, requests_per_minute, \
    tokens_per_minute, budget_tokens, budget_period, created_ms, revoked_ms, guard, private";

impl Auth {
    /// Opens (creating if needed) the database at `path` with the system clock.
    pub fn open(path: &Path) -> Result<Auth, AuthError> {
        Auth::open_with_clock(path, Arc::new(SystemClock))
    }

    /// Opens the database at `path` with an injected clock (tests use [`ManualClock`]).
    pub fn open_with_clock(path: &Path, clock: Arc<dyn Clock>) -> Result<Auth, AuthError> {
        Ok(Auth {
            conn: Mutex::new(db::open(path)?),
            writes: WriteQueue::shared(path).map_err(AuthError::Storage)?,
            clock,
            keys_seen: AtomicBool::new(false),
            limiter: Mutex::new(HashMap::new()),
            next_reservation: AtomicU64::new(1),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection inconsistent (every write
        // is one statement or transaction), so a poisoned lock is still usable.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates a key and returns it with its secret, which is not stored and cannot be shown
    /// again.
    pub fn create_key(&self, new: &NewKey) -> Result<CreatedKey, AuthError> {
        new.validate()?;
        // A prefix collision (about one in 2^48 per pair of keys) is retried with a new secret.
        for _ in 0..4 {
            let secret = Secret::generate()?;
            if let Some(key) = self.insert_key(new, &secret)? {
                return Ok(CreatedKey { key, secret });
            }
        }
        Err(AuthError::Storage(
            "could not draw a unique key prefix".into(),
        ))
    }

    /// Stores a key whose secret the operator gives ([`Secret::from_text`]): the way to
    /// accept one key on every node of a fleet, made once by `moat keys create` on one of
    /// them. Refused if a key with the same public prefix exists here.
    pub fn import_key(&self, new: &NewKey, secret: &Secret) -> Result<Key, AuthError> {
        new.validate()?;
        self.insert_key(new, secret)?.ok_or_else(|| {
            AuthError::invalid(
                "secret",
                format!(
                    "a key with the prefix {SECRET_PREFIX}{} exists already",
                    secret.public_prefix()
                ),
            )
        })
    }

    /// Inserts `new` with `secret`'s hash; `None` when its prefix is taken.
    fn insert_key(&self, new: &NewKey, secret: &Secret) -> Result<Option<Key>, AuthError> {
        let models = serde_json::to_string(&new.scopes.models)
            .map_err(|e| AuthError::Storage(format!("cannot encode scopes: {e}")))?;
        let budget = new.limits.budget;
        let prefix = format!("{SECRET_PREFIX}{}", secret.public_prefix());
        let conn = self.conn();
        let inserted = conn.execute(
            "INSERT INTO auth_keys (name, prefix, hash, models, admin, requests_per_minute,
                 tokens_per_minute, budget_tokens, budget_period, created_ms, guard, private)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (prefix) DO NOTHING",
            params![
                new.name,
                prefix,
                hash_secret(secret.expose()).as_slice(),
                models,
                new.scopes.admin,
                new.limits.requests_per_minute,
                new.limits.tokens_per_minute.map(|t| t as i64),
                budget.map(|b| b.tokens as i64),
                budget.map(|b| b.period.as_str()),
                self.clock.now_ms(),
                new.guard,
                new.private,
            ],
        )?;
        if inserted != 1 {
            return Ok(None);
        }
        let id = KeyId(conn.last_insert_rowid());
        drop(conn);
        self.keys_seen.store(true, Ordering::SeqCst);
        self.get_key(id).map(Some)
    }

    /// Every key, revoked ones included, oldest first.
    pub fn list_keys(&self) -> Result<Vec<Key>, AuthError> {
        let conn = self.conn();
        let mut statement =
            conn.prepare(&format!("SELECT {KEY_COLUMNS} FROM auth_keys ORDER BY id"))?;
        let rows = statement.query_map([], row_to_key)?;
        rows.map(|row| row?).collect()
    }

    /// The key with this id.
    pub fn get_key(&self, id: KeyId) -> Result<Key, AuthError> {
        let conn = self.conn();
        conn.query_row(
            &format!("SELECT {KEY_COLUMNS} FROM auth_keys WHERE id = ?1"),
            [id.0],
            row_to_key,
        )
        .optional()?
        .ok_or_else(|| AuthError::NotFound(format!("with id {}", id.0)))?
    }

    /// Revokes the key whose public prefix (`moat-sk-XXXXXXXX`, as listed) or name is given.
    /// Revoking a revoked key is a no-op that returns it unchanged. A name shared by several
    /// keys is refused as ambiguous.
    pub fn revoke_key(&self, prefix_or_name: &str) -> Result<Key, AuthError> {
        let ids: Vec<i64> = {
            let conn = self.conn();
            let mut statement =
                conn.prepare("SELECT id FROM auth_keys WHERE prefix = ?1 OR name = ?1")?;
            let rows = statement.query_map([prefix_or_name], |row| row.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let id = match ids.as_slice() {
            [] => return Err(AuthError::NotFound(format!("{prefix_or_name:?}"))),
            [id] => *id,
            _ => {
                return Err(AuthError::invalid(
                    "key",
                    format!("{prefix_or_name:?} names several keys; give the prefix"),
                ))
            }
        };
        self.conn().execute(
            "UPDATE auth_keys SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![id, self.clock.now_ms()],
        )?;
        self.get_key(KeyId(id))
    }

    /// Replaces a key's limits. Takes effect on its next request.
    pub fn set_limits(&self, id: KeyId, limits: &Limits) -> Result<Key, AuthError> {
        limits.validate()?;
        let changed = self.conn().execute(
            "UPDATE auth_keys SET requests_per_minute = ?2, tokens_per_minute = ?3,
                 budget_tokens = ?4, budget_period = ?5 WHERE id = ?1",
            params![
                id.0,
                limits.requests_per_minute,
                limits.tokens_per_minute.map(|t| t as i64),
                limits.budget.map(|b| b.tokens as i64),
                limits.budget.map(|b| b.period.as_str()),
            ],
        )?;
        if changed == 0 {
            return Err(AuthError::NotFound(format!("with id {}", id.0)));
        }
        self.get_key(id)
    }

    /// Whether any key exists (revoked ones included), i.e. whether API requests need one.
    /// Answered from memory once true; while false, one indexed query, so that a key created
    /// by `moat keys create` in another process takes effect on the next request.
    pub fn keys_exist(&self) -> Result<bool, AuthError> {
        if self.keys_seen.load(Ordering::SeqCst) {
            return Ok(true);
        }
        let exists: bool = self
            .conn()
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM auth_keys)")?
            .query_row([], |row| row.get(0))?;
        if exists {
            self.keys_seen.store(true, Ordering::SeqCst);
        }
        Ok(exists)
    }

    /// Checks an `Authorization` header value and returns its key. Distinct errors for a
    /// malformed header, an unknown key and a revoked key (all 401). The key is looked up by
    /// its public prefix, then the full hash is compared in constant time, so response timing
    /// reveals nothing about how much of a guessed secret was right. (Whether a prefix exists
    /// may show in timing; prefixes are public by design and grant nothing.)
    pub fn authenticate(&self, header_value: &str) -> Result<Key, AuthError> {
        let presented = parse_authorization(header_value)?;
        let prefix = format!("{SECRET_PREFIX}{}", presented.prefix);
        let found = {
            let conn = self.conn();
            let mut statement = conn.prepare_cached(&format!(
                "SELECT hash, {KEY_COLUMNS} FROM auth_keys WHERE prefix = ?1"
            ))?;
            statement
                .query_row([&prefix], |row| {
                    let hash: Vec<u8> = row.get(0)?;
                    Ok((hash, row_to_key_at(row, 1)?))
                })
                .optional()?
        };
        let Some((stored_hash, key)) = found else {
            return Err(AuthError::UnknownKey);
        };
        let key = key?;
        let presented_hash = hash_secret(presented.secret);
        if !bool::from(presented_hash.as_slice().ct_eq(stored_hash.as_slice())) {
            return Err(AuthError::UnknownKey);
        }
        if key.revoked_ms.is_some() {
            return Err(AuthError::RevokedKey { prefix: key.prefix });
        }
        Ok(key)
    }

    /// Checks that `key` may use `model` (a model name or alias as the request names it).
    pub fn authorize(&self, key: &Key, model: &str) -> Result<(), AuthError> {
        if key.scopes.allows(model) {
            Ok(())
        } else {
            Err(AuthError::ModelNotAllowed {
                prefix: key.prefix.clone(),
                model: model.to_owned(),
            })
        }
    }

    /// Checks that `key` is an admin key.
    pub fn require_admin(&self, key: &Key) -> Result<(), AuthError> {
        if key.scopes.admin {
            Ok(())
        } else {
            Err(AuthError::NotAdmin {
                prefix: key.prefix.clone(),
            })
        }
    }

    fn key_state(&self, id: KeyId) -> Arc<Mutex<KeyState>> {
        let mut map = self.limiter.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(id).or_default())
    }

    /// Admits a request of `tokens` (prompt + `max_tokens`) under `key`'s limits, or says
    /// which limit turned it away and when to retry. Exact under concurrency: each key's
    /// check-and-record runs under that key's lock. With a budget, the reservation is written
    /// to SQLite before it is admitted, so a restart keeps the period's spend.
    pub fn reserve(&self, key: &Key, tokens: u64) -> Result<Admission, AuthError> {
        let limits = &key.limits;
        let state = self.key_state(key.id);
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_ms();
        state.expire(now);
        let period = self.load_budget(key, &mut state, now)?;
        if let Check::Deny(denied) = state.check(limits, tokens, now) {
            return Ok(Admission::Denied(denied));
        }
        if let Some(period) = &period {
            self.add_spend(key.id, period, tokens as i64)?;
            if let Some((_, spent)) = state.budget.as_mut() {
                *spent = spent.saturating_add(tokens);
            }
        }
        let id = self.next_reservation.fetch_add(1, Ordering::Relaxed);
        state.admit(limits, id, tokens, now);
        Ok(Admission::Admitted(Reservation {
            key_id: key.id,
            id,
            tokens,
            budget_period: period,
        }))
    }

    /// Reserves `more` tokens for a request already admitted with `reservation` (a grounded
    /// chat, admitted for its query's embedding before its prompt is known), under the key's
    /// token limits only: it is still one request. `Some` says which limit turned it away;
    /// the reservation then stays as it was, to be settled.
    pub fn extend(
        &self,
        key: &Key,
        reservation: &mut Reservation,
        more: u64,
    ) -> Result<Option<Denied>, AuthError> {
        let limits = &key.limits;
        let state = self.key_state(key.id);
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now_ms();
        state.expire(now);
        self.load_budget(key, &mut state, now)?;
        if let Check::Deny(denied) = state.check_tokens(limits, more, now) {
            return Ok(Some(denied));
        }
        // Charged to the period the reservation was, which is where settling corrects it.
        if let Some(period) = &reservation.budget_period {
            self.add_spend(key.id, period, more.min(i64::MAX as u64) as i64)?;
            if let Some((loaded, spent)) = state.budget.as_mut() {
                if loaded == period {
                    *spent = spent.saturating_add(more);
                }
            }
        }
        state.extend(limits, reservation.id, more, now);
        reservation.tokens = reservation.tokens.saturating_add(more);
        Ok(None)
    }

    /// The key's budget period at `now`, if it has a budget, with that period's spend loaded
    /// into `state` (read from SQLite when the period is not the one loaded).
    fn load_budget(
        &self,
        key: &Key,
        state: &mut KeyState,
        now: i64,
    ) -> Result<Option<String>, AuthError> {
        let Some(budget) = key.limits.budget else {
            return Ok(None);
        };
        let (period, _) = budget.period.containing(now);
        if state
            .budget
            .as_ref()
            .is_none_or(|(loaded, _)| *loaded != period)
        {
            let spent = self.load_spend(key.id, &period)?;
            state.budget = Some((period.clone(), spent));
        }
        Ok(Some(period))
    }

    /// Corrects a reservation to the `actual` tokens used and returns the tokens given back
    /// (reserved − actual; negative if the request used more than it reserved, which is then
    /// charged in full).
    pub fn settle(&self, reservation: Reservation, actual: u64) -> Result<i64, AuthError> {
        // Both fit in i64: reserved tokens passed a limit of at most i64::MAX, and a larger
        // actual count is clamped (no real request comes near it).
        let actual = actual.min(i64::MAX as u64);
        let difference =
            (reservation.tokens.min(i64::MAX as u64) as i64).saturating_sub(actual as i64);
        let state = self.key_state(reservation.key_id);
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        state.settle_window(reservation.id, actual);
        if let Some(period) = &reservation.budget_period {
            self.add_spend(reservation.key_id, period, -difference)?;
            if let Some((loaded, spent)) = state.budget.as_mut() {
                if loaded == period {
                    *spent = (*spent as i64).saturating_sub(difference).max(0) as u64;
                }
            }
        }
        Ok(difference)
    }

    /// The tokens spent (reserved, then settled) by `key` in its current budget period, or
    /// `None` if it has no budget.
    pub fn budget_spent(&self, key: &Key) -> Result<Option<u64>, AuthError> {
        let Some(budget) = key.limits.budget else {
            return Ok(None);
        };
        let (period, _) = budget.period.containing(self.clock.now_ms());
        self.load_spend(key.id, &period).map(Some)
    }

    fn load_spend(&self, id: KeyId, period: &str) -> Result<u64, AuthError> {
        let conn = self.conn();
        let spent: Option<i64> = conn
            .prepare_cached(
                "SELECT tokens FROM auth_budget_spend WHERE key_id = ?1 AND period = ?2",
            )?
            .query_row(params![id.0, period], |row| row.get(0))
            .optional()?;
        Ok(spent.unwrap_or(0).max(0) as u64)
    }

    fn add_spend(&self, id: KeyId, period: &str, delta: i64) -> Result<(), AuthError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO auth_budget_spend (key_id, period, tokens) VALUES (?1, ?2, MAX(?3, 0))
                 ON CONFLICT (key_id, period) DO UPDATE SET tokens = MAX(tokens + ?3, 0)",
            )?
            .execute(params![id.0, period, delta])?;
        Ok(())
    }
}

fn row_to_key(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Key, AuthError>> {
    row_to_key_at(row, 0)
}

/// Reads a key from `row` starting at column `at`. The outer error is SQLite's; the inner one
/// a stored value this build cannot read (a damaged scope list, say).
fn row_to_key_at(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Result<Key, AuthError>> {
    let id: i64 = row.get(at)?;
    let models: String = row.get(at + 3)?;
    let budget_tokens: Option<i64> = row.get(at + 7)?;
    let budget_period: Option<String> = row.get(at + 8)?;
    let damaged = |what: &str| AuthError::Storage(format!("key {id}: stored {what} is damaged"));
    let models: Vec<String> = match serde_json::from_str(&models) {
        Ok(models) => models,
        Err(_) => return Ok(Err(damaged("scope list"))),
    };
    let budget = match (budget_tokens, budget_period.as_deref()) {
        (None, None) => None,
        (Some(tokens), Some(period)) => match BudgetPeriod::parse(period) {
            Some(period) if tokens >= 0 => Some(Budget {
                tokens: tokens as u64,
                period,
            }),
            _ => return Ok(Err(damaged("budget"))),
        },
        _ => return Ok(Err(damaged("budget"))),
    };
    let tokens_per_minute: Option<i64> = row.get(at + 6)?;
    Ok(Ok(Key {
        id: KeyId(id),
        name: row.get(at + 1)?,
        prefix: row.get(at + 2)?,
        scopes: Scopes {
            models,
            admin: row.get(at + 4)?,
        },
        limits: Limits {
            requests_per_minute: row.get(at + 5)?,
            tokens_per_minute: tokens_per_minute.map(|t| t.max(0) as u64),
            budget,
        },
        created_ms: row.get(at + 9)?,
        revoked_ms: row.get(at + 10)?,
        guard: row.get(at + 11)?,
        private: row.get(at + 12)?,
    }))
}
