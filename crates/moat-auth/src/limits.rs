//! Per-key limits and admission: requests per minute, tokens per minute, and a token budget
//! per UTC day or month.
//!
//! The per-minute limits are **sliding windows kept as logs**: each admitted request's time
//! (and token count) is remembered for 60 seconds, and a request is admitted only if the last
//! 60 seconds, it included, stay within the limit. Unlike a token bucket this never lets a
//! burst exceed the limit within any 60-second window, and it gives an exact `Retry-After`
//! (when the oldest entries that must leave the window do). Memory is one entry per request
//! admitted in the last minute, so at most the requests-per-minute limit when one is set.
//!
//! Tokens are reserved at admission as `prompt + max_tokens` and settled with the real count
//! afterwards; the window entry and the budget are corrected then. Budgets are persisted by
//! the caller (`Auth`) so that a restart keeps the period's spend; the state here is the
//! in-memory part, one `Mutex` per key, which makes admission exact under concurrency within
//! one process (the server). Another process sharing `moat.db` does not share the windows.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Date;
use crate::keys::KeyId;
use crate::AuthError;

/// The sliding window of the per-minute limits.
pub const WINDOW_MS: i64 = 60_000;

/// A key's limits. `None` means no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests admitted in any 60-second window.
    pub requests_per_minute: Option<u32>,
    /// Tokens (prompt + completion, as reserved then settled) in any 60-second window.
    pub tokens_per_minute: Option<u64>,
    /// Tokens per calendar day or month (UTC).
    pub budget: Option<Budget>,
}

/// A token budget per calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Tokens the key may spend per period.
    pub tokens: u64,
    /// The period, which restarts at midnight UTC (daily) or on the 1st at midnight UTC.
    pub period: BudgetPeriod,
}

/// The calendar period of a budget, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    /// Midnight to midnight UTC.
    Day,
    /// The 1st of the month to the 1st of the next, UTC.
    Month,
}

impl BudgetPeriod {
    /// The period containing `now_ms`: its stored name and the time it ends.
    pub(crate) fn containing(self, now_ms: i64) -> (String, i64) {
        let today = Date::from_unix_ms(now_ms);
        match self {
            BudgetPeriod::Day => (
                format!("day:{}", today.iso()),
                today.start_ms() + 86_400_000,
            ),
            BudgetPeriod::Month => (
                format!("month:{:04}-{:02}", today.year, today.month),
                today.next_month_start().start_ms(),
            ),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "day" => Some(BudgetPeriod::Day),
            "month" => Some(BudgetPeriod::Month),
            _ => None,
        }
    }
}

impl Limits {
    /// No limits at all.
    pub fn unlimited() -> Self {
        Limits::default()
    }

    pub(crate) fn validate(&self) -> Result<(), AuthError> {
        let max = i64::MAX as u64;
        if self.requests_per_minute == Some(0) || self.tokens_per_minute == Some(0) {
            return Err(AuthError::invalid(
                "limit",
                "a per-minute limit must be at least 1",
            ));
        }
        if self.tokens_per_minute.is_some_and(|t| t > max)
            || self.budget.is_some_and(|b| b.tokens > max)
        {
            return Err(AuthError::invalid(
                "limit",
                "a token limit must fit in 63 bits",
            ));
        }
        Ok(())
    }
}

/// Which limit denied a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// `requests_per_minute`.
    RequestsPerMinute,
    /// `tokens_per_minute`.
    TokensPerMinute,
    /// The daily token budget.
    DailyBudget,
    /// The monthly token budget.
    MonthlyBudget,
}

impl LimitKind {
    /// A stable name for error messages and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::RequestsPerMinute => "requests_per_minute",
            LimitKind::TokensPerMinute => "tokens_per_minute",
            LimitKind::DailyBudget => "daily_token_budget",
            LimitKind::MonthlyBudget => "monthly_token_budget",
        }
    }
}

/// A request that a limit turned away (HTTP 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    /// The limit that was hit (the first in the order requests, tokens, budget).
    pub limit: LimitKind,
    /// When the same request would be admitted if nothing else arrived: the value for
    /// `Retry-After`. `None` when this request alone exceeds the limit, so that waiting
    /// cannot help (for example `max_tokens` above the tokens-per-minute limit).
    pub retry_after: Option<Duration>,
}

/// The answer of `Auth::reserve`.
#[derive(Debug)]
#[must_use = "an admitted reservation must be settled with the real token count"]
pub enum Admission {
    /// Admitted: run the request, then `settle` this.
    Admitted(Reservation),
    /// Turned away.
    Denied(Denied),
}

/// Tokens held for an admitted request until `Auth::settle` corrects them to the real count.
/// A reservation that is never settled keeps its full amount counted (the safe direction).
#[derive(Debug)]
#[must_use = "settle the reservation with the real token count"]
pub struct Reservation {
    pub(crate) key_id: KeyId,
    pub(crate) id: u64,
    pub(crate) tokens: u64,
    /// The budget period it was charged to, if the key had a budget.
    pub(crate) budget_period: Option<String>,
}

impl Reservation {
    /// The tokens reserved.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The key it was made for.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
}

/// One admitted request in the tokens-per-minute window.
#[derive(Debug)]
struct TokenEntry {
    at_ms: i64,
    reservation: u64,
    tokens: u64,
}

/// The in-memory limit state of one key.
#[derive(Debug, Default)]
pub(crate) struct KeyState {
    requests: VecDeque<i64>,
    tokens: VecDeque<TokenEntry>,
    tokens_in_window: u64,
    /// The budget period whose spend is loaded, and that spend (reserved + settled).
    pub(crate) budget: Option<(String, u64)>,
}

/// What `check` decided.
pub(crate) enum Check {
    Admit,
    Deny(Denied),
}

fn until(at_ms: i64, now_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0))
}

impl KeyState {
    /// Drops window entries older than 60 seconds.
    pub(crate) fn expire(&mut self, now_ms: i64) {
        let horizon = now_ms - WINDOW_MS;
        while self.requests.front().is_some_and(|&at| at <= horizon) {
            self.requests.pop_front();
        }
        while let Some(entry) = self.tokens.front().filter(|e| e.at_ms <= horizon) {
            self.tokens_in_window = self.tokens_in_window.saturating_sub(entry.tokens);
            self.tokens.pop_front();
        }
    }

    /// Checks the per-minute limits and the budget (whose spend must be loaded for the
    /// current period) for a request of `tokens`. Changes nothing.
    pub(crate) fn check(&self, limits: &Limits, tokens: u64, now_ms: i64) -> Check {
        if let Some(rpm) = limits.requests_per_minute {
            let rpm = rpm as usize;
            if self.requests.len() >= rpm {
                // The entry that must leave the window before one more fits.
                let at = self.requests[self.requests.len() - rpm];
                return Check::Deny(Denied {
                    limit: LimitKind::RequestsPerMinute,
                    retry_after: Some(until(at + WINDOW_MS, now_ms)),
                });
            }
        }
        self.check_tokens(limits, tokens, now_ms)
    }

    /// Checks only the token limits (per minute and budget) for `tokens` more: for a request
    /// already admitted that needs more ([`KeyState::extend`]). Changes nothing.
    pub(crate) fn check_tokens(&self, limits: &Limits, tokens: u64, now_ms: i64) -> Check {
        if let Some(tpm) = limits.tokens_per_minute {
            if tokens > tpm {
                return Check::Deny(Denied {
                    limit: LimitKind::TokensPerMinute,
                    retry_after: None,
                });
            }
            if self.tokens_in_window.saturating_add(tokens) > tpm {
                let mut remaining = self.tokens_in_window;
                let mut free_at = now_ms;
                for entry in &self.tokens {
                    remaining = remaining.saturating_sub(entry.tokens);
                    free_at = entry.at_ms + WINDOW_MS;
                    if remaining.saturating_add(tokens) <= tpm {
                        break;
                    }
                }
                return Check::Deny(Denied {
                    limit: LimitKind::TokensPerMinute,
                    retry_after: Some(until(free_at, now_ms)),
                });
            }
        }
        if let Some(budget) = limits.budget {
            let spent = self.budget.as_ref().map_or(0, |(_, spent)| *spent);
            if spent.saturating_add(tokens) > budget.tokens {
                let limit = match budget.period {
                    BudgetPeriod::Day => LimitKind::DailyBudget,
                    BudgetPeriod::Month => LimitKind::MonthlyBudget,
                };
                let (_, ends_ms) = budget.period.containing(now_ms);
                let retry_after = (tokens <= budget.tokens).then(|| until(ends_ms, now_ms));
                return Check::Deny(Denied { limit, retry_after });
            }
        }
        Check::Admit
    }

    /// Records an admitted request in the windows (the budget is charged by the caller).
    pub(crate) fn admit(&mut self, limits: &Limits, reservation: u64, tokens: u64, now_ms: i64) {
        if limits.requests_per_minute.is_some() {
            self.requests.push_back(now_ms);
        }
        if limits.tokens_per_minute.is_some() {
            self.tokens.push_back(TokenEntry {
                at_ms: now_ms,
                reservation,
                tokens,
            });
            self.tokens_in_window += tokens;
        }
    }

    /// Adds `more` tokens to an admitted reservation's window entry (a new entry now if it
    /// has left the window); the request count is unchanged.
    pub(crate) fn extend(&mut self, limits: &Limits, reservation: u64, more: u64, now_ms: i64) {
        if limits.tokens_per_minute.is_none() {
            return;
        }
        self.tokens_in_window = self.tokens_in_window.saturating_add(more);
        match self
            .tokens
            .iter_mut()
            .find(|e| e.reservation == reservation)
        {
            Some(entry) => entry.tokens = entry.tokens.saturating_add(more),
            None => self.tokens.push_back(TokenEntry {
                at_ms: now_ms,
                reservation,
                tokens: more,
            }),
        }
    }

    /// Corrects a reservation's window entry to the real count, if it is still in the window.
    pub(crate) fn settle_window(&mut self, reservation: u64, actual: u64) {
        if let Some(entry) = self
            .tokens
            .iter_mut()
            .find(|e| e.reservation == reservation)
        {
            self.tokens_in_window = self
                .tokens_in_window
                .saturating_sub(entry.tokens)
                .saturating_add(actual);
            entry.tokens = actual;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rpm: Option<u32>, tpm: Option<u64>) -> Limits {
        Limits {
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            budget: None,
        }
    }

    fn denied(check: Check) -> Denied {
        match check {
            Check::Deny(d) => d,
            Check::Admit => panic!("expected a denial"),
        }
    }

    #[test]
    fn requests_slide_out_of_the_window_one_by_one() {
        let limits = limits(Some(2), None);
        let mut state = KeyState::default();
        state.admit(&limits, 1, 0, 1_000);
        state.admit(&limits, 2, 0, 21_000);
        let d = denied(state.check(&limits, 0, 30_000));
        assert_eq!(d.limit, LimitKind::RequestsPerMinute);
        // The first entry leaves the window at 61 s.
        assert_eq!(d.retry_after, Some(Duration::from_millis(31_000)));
        state.expire(61_000);
        assert!(matches!(state.check(&limits, 0, 61_000), Check::Admit));
    }

    #[test]
    fn tokens_retry_after_waits_for_enough_entries_to_leave() {
        let limits = limits(None, Some(100));
        let mut state = KeyState::default();
        state.admit(&limits, 1, 30, 0);
        state.admit(&limits, 2, 30, 10_000);
        state.admit(&limits, 3, 30, 20_000);
        // 90 used; 50 more needs the first two entries gone (at 70 s), not only the first.
        let d = denied(state.check(&limits, 50, 25_000));
        assert_eq!(d.limit, LimitKind::TokensPerMinute);
        assert_eq!(d.retry_after, Some(Duration::from_millis(45_000)));
        assert!(matches!(state.check(&limits, 10, 25_000), Check::Admit));
        let too_big = denied(state.check(&limits, 101, 25_000));
        assert_eq!(too_big.retry_after, None);
    }

    #[test]
    fn settling_gives_unused_tokens_back_to_the_window() {
        let limits = limits(None, Some(100));
        let mut state = KeyState::default();
        state.admit(&limits, 7, 90, 0);
        assert!(matches!(state.check(&limits, 20, 1_000), Check::Deny(_)));
        state.settle_window(7, 40);
        assert!(matches!(state.check(&limits, 60, 1_000), Check::Admit));
        assert!(matches!(state.check(&limits, 61, 1_000), Check::Deny(_)));
    }

    #[test]
    fn a_lowered_limit_counts_back_from_the_newest_entries() {
        let mut state = KeyState::default();
        let high = limits(Some(5), None);
        for (i, at) in [0, 10_000, 20_000, 30_000, 40_000].into_iter().enumerate() {
            state.admit(&high, i as u64, 0, at);
        }
        let d = denied(state.check(&limits(Some(2), None), 0, 45_000));
        // Four entries must leave before one fits under 2: the fourth leaves at 90 s.
        assert_eq!(d.retry_after, Some(Duration::from_millis(45_000)));
    }

    #[test]
    fn budget_denial_waits_for_the_next_utc_period() {
        let day = Budget {
            tokens: 100,
            period: BudgetPeriod::Day,
        };
        let limits = Limits {
            budget: Some(day),
            ..Limits::default()
        };
        let noon = 1_764_158_400_000; // 2025-11-26 12:00 UTC
        let state = KeyState {
            budget: Some(("day:2025-11-26".into(), 95)),
            ..KeyState::default()
        };
        let d = denied(state.check(&limits, 10, noon));
        assert_eq!(d.limit, LimitKind::DailyBudget);
        assert_eq!(d.retry_after, Some(Duration::from_secs(12 * 3600)));
        assert!(matches!(state.check(&limits, 5, noon), Check::Admit));
        assert_eq!(denied(state.check(&limits, 101, noon)).retry_after, None);
        let (name, ends) = BudgetPeriod::Month.containing(noon);
        assert_eq!(name, "month:2025-11");
        assert_eq!(Date::from_unix_ms(ends).iso(), "2025-12-01");
    }
}
