//! moat-auth against a real SQLite file: keys, bypass attempts, limits under concurrency,
//! budgets across a restart, usage.

#![allow(clippy::unwrap_used)] // test helpers: a failure should stop the test

use std::sync::Arc;
use std::time::Duration;

use moat_auth::{
    Admission, Auth, AuthError, AuthErrorKind, Budget, BudgetPeriod, Key, LimitKind, Limits,
    ManualClock, NewKey, Scopes, Secret, UsageFilter, ANONYMOUS,
};

/// 2026-03-31 23:59:00 UTC: a minute before both a day and a month end.
const MAR_31_2359: i64 = 1_775_001_540_000;

fn new_key(name: &str, models: &[&str], limits: Limits) -> NewKey {
    NewKey {
        name: name.to_owned(),
        scopes: Scopes {
            models: models.iter().map(|m| m.to_string()).collect(),
            admin: false,
        },
        limits,
        guard: None,
        private: false,
    }
}

fn open(dir: &tempfile::TempDir, clock: &Arc<ManualClock>) -> Auth {
    let clock: Arc<dyn moat_auth::Clock> = clock.clone();
    Auth::open_with_clock(&dir.path().join("moat.db"), clock).unwrap()
}

fn admitted(admission: Admission) -> moat_auth::Reservation {
    match admission {
        Admission::Admitted(r) => r,
        Admission::Denied(d) => panic!("denied: {d:?}"),
    }
}

fn denied(admission: Admission) -> moat_auth::Denied {
    match admission {
        Admission::Denied(d) => d,
        Admission::Admitted(r) => panic!("admitted: {r:?}"),
    }
}

#[test]
fn keys_are_stored_hashed_and_bypass_attempts_fail_distinctly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.db");
    let auth = Auth::open(&path).unwrap();
    assert!(!auth.keys_exist().unwrap());

    let created = auth
        .create_key(&new_key("alice", &["qwen"], Limits::default()))
        .unwrap();
    let secret = created.secret.expose().to_owned();
    assert!(auth.keys_exist().unwrap());
    assert!(secret.starts_with(&created.key.prefix));
    assert_eq!(created.key.prefix.len(), "moat-sk-".len() + 8);

    // The secret is nowhere in the database file, only its hash.
    drop(auth);
    let bytes = std::fs::read(&path).unwrap();
    let wal = std::fs::read(dir.path().join("moat.db-wal")).unwrap_or_default();
    for haystack in [&bytes, &wal] {
        assert!(!haystack
            .windows(secret.len())
            .any(|w| w == secret.as_bytes()));
    }
    let auth = Auth::open(&path).unwrap();

    let key = auth.authenticate(&format!("Bearer {secret}")).unwrap();
    assert_eq!(key.name, "alice");
    assert_eq!(key.display_name(), format!("{} alice", created.key.prefix));
    auth.authorize(&key, "qwen:7b").unwrap();
    let other_model = auth.authorize(&key, "llama:8b").unwrap_err();
    assert!(matches!(other_model, AuthError::ModelNotAllowed { .. }));
    assert_eq!(other_model.kind(), AuthErrorKind::Forbidden);
    assert!(matches!(
        auth.require_admin(&key),
        Err(AuthError::NotAdmin { .. })
    ));

    // Malformed: no scheme, wrong scheme, the bare key.
    for header in [
        "",
        &secret,
        &format!("Basic {secret}"),
        "Bearer moat-sk-short",
    ] {
        let err = auth.authenticate(header).unwrap_err();
        assert!(
            matches!(err, AuthError::MalformedHeader(_)),
            "{header:?}: {err}"
        );
        assert_eq!(err.kind(), AuthErrorKind::Unauthenticated);
    }
    // Well formed but unknown, and a forgery that keeps the real public prefix.
    let unknown = format!("Bearer moat-sk-{}", "A".repeat(43));
    assert!(matches!(
        auth.authenticate(&unknown),
        Err(AuthError::UnknownKey)
    ));
    let mut forged = secret.clone();
    let last = if forged.ends_with('A') { "B" } else { "A" };
    forged.replace_range(forged.len() - 1.., last);
    assert!(matches!(
        auth.authenticate(&format!("Bearer {forged}")),
        Err(AuthError::UnknownKey)
    ));

    // Revoked, from a second handle as `moat keys revoke` would from another process.
    let cli = Auth::open(&path).unwrap();
    let revoked = cli.revoke_key(&created.key.prefix).unwrap();
    assert!(revoked.revoked_ms.is_some());
    let err = auth.authenticate(&format!("Bearer {secret}")).unwrap_err();
    assert!(matches!(err, AuthError::RevokedKey { .. }), "{err}");
    assert_eq!(err.kind(), AuthErrorKind::Unauthenticated);
    // Revoking the last key keeps the server closed.
    assert!(auth.keys_exist().unwrap());
    assert!(matches!(
        cli.revoke_key("nobody"),
        Err(AuthError::NotFound(_))
    ));
}

#[test]
fn keys_exist_sees_a_key_created_by_another_handle() {
    let dir = tempfile::tempdir().unwrap();
    let server = Auth::open(&dir.path().join("moat.db")).unwrap();
    assert!(!server.keys_exist().unwrap());
    let cli = Auth::open(&dir.path().join("moat.db")).unwrap();
    cli.create_key(&new_key("ops", &["*"], Limits::default()))
        .unwrap();
    assert!(server.keys_exist().unwrap());
    let listed = server.list_keys().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].scopes, Scopes::all_models());
}

#[test]
fn invalid_key_definitions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let auth = Auth::open(&dir.path().join("moat.db")).unwrap();
    let zero_rpm = Limits {
        requests_per_minute: Some(0),
        ..Limits::default()
    };
    for new in [
        new_key("", &["*"], Limits::default()),
        new_key("a\nb", &["*"], Limits::default()),
        new_key("ok", &["bad model"], Limits::default()),
        new_key("ok", &["*"], zero_rpm),
    ] {
        let err = auth.create_key(&new).unwrap_err();
        assert_eq!(err.kind(), AuthErrorKind::InvalidInput, "{new:?}: {err}");
    }
    assert!(!auth.keys_exist().unwrap());
}

fn hammer(auth: &Arc<Auth>, key: &Key, threads: usize, tries: usize, tokens: u64) -> usize {
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let auth = Arc::clone(auth);
            let key = key.clone();
            std::thread::spawn(move || {
                (0..tries)
                    .filter(|_| match auth.reserve(&key, tokens).unwrap() {
                        Admission::Admitted(r) => {
                            auth.settle(r, tokens).unwrap();
                            true
                        }
                        Admission::Denied(_) => false,
                    })
                    .count()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

#[test]
fn concurrent_requests_never_exceed_the_per_minute_limits() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(MAR_31_2359 - 3_600_000));
    let auth = Arc::new(open(&dir, &clock));
    let rpm = Limits {
        requests_per_minute: Some(37),
        ..Limits::default()
    };
    let key = auth.create_key(&new_key("rpm", &["*"], rpm)).unwrap().key;
    assert_eq!(hammer(&auth, &key, 8, 25, 1), 37);

    let tpm = Limits {
        tokens_per_minute: Some(1_000),
        ..Limits::default()
    };
    let key = auth.create_key(&new_key("tpm", &["*"], tpm)).unwrap().key;
    // 7 tokens each: 142 fit in 1000.
    assert_eq!(hammer(&auth, &key, 8, 40, 7), 142);

    // A minute later the windows are empty again.
    clock.advance_ms(60_000);
    assert_eq!(hammer(&auth, &key, 4, 10, 100), 10);
}

#[test]
fn concurrent_requests_never_exceed_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(MAR_31_2359 - 3_600_000));
    let auth = Arc::new(open(&dir, &clock));
    let limits = Limits {
        budget: Some(Budget {
            tokens: 500,
            period: BudgetPeriod::Day,
        }),
        ..Limits::default()
    };
    let key = auth
        .create_key(&new_key("budget", &["*"], limits))
        .unwrap()
        .key;
    assert_eq!(hammer(&auth, &key, 8, 20, 9), 55);
    assert_eq!(auth.budget_spent(&key).unwrap(), Some(495));
}

#[test]
fn settling_returns_the_difference_and_a_restart_keeps_the_days_spend() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(MAR_31_2359 - 60_000));
    let limits = Limits {
        tokens_per_minute: Some(10_000),
        budget: Some(Budget {
            tokens: 1_000,
            period: BudgetPeriod::Day,
        }),
        ..Limits::default()
    };
    let key = {
        let auth = open(&dir, &clock);
        let key = auth.create_key(&new_key("b", &["*"], limits)).unwrap().key;
        let reservation = admitted(auth.reserve(&key, 800).unwrap());
        assert_eq!(reservation.tokens(), 800);
        // Only 200 left while 800 are held.
        let d = denied(auth.reserve(&key, 300).unwrap());
        assert_eq!(d.limit, LimitKind::DailyBudget);
        assert_eq!(auth.settle(reservation, 650).unwrap(), 150);
        assert_eq!(auth.budget_spent(&key).unwrap(), Some(650));
        key
    };
    // A new process: the day's 650 are still spent.
    let auth = open(&dir, &clock);
    let d = denied(auth.reserve(&key, 351).unwrap());
    assert_eq!(d.limit, LimitKind::DailyBudget);
    // Retry at midnight UTC, two minutes away.
    assert_eq!(d.retry_after, Some(Duration::from_secs(120)));
    let last = admitted(auth.reserve(&key, 350).unwrap());
    // Used more than reserved: charged in full, reported as a negative difference.
    assert_eq!(auth.settle(last, 360).unwrap(), -10);
    assert_eq!(auth.budget_spent(&key).unwrap(), Some(1_010));
    assert_eq!(
        denied(auth.reserve(&key, 1).unwrap()).limit,
        LimitKind::DailyBudget
    );
    // A request larger than the whole budget can never pass.
    assert_eq!(denied(auth.reserve(&key, 1_001).unwrap()).retry_after, None);

    // The next UTC day starts from zero.
    clock.advance_ms(3 * 60_000);
    let _held = admitted(auth.reserve(&key, 1_000).unwrap());
}

#[test]
fn an_extended_reservation_holds_to_the_token_limits_but_stays_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(MAR_31_2359 - 600_000));
    let auth = open(&dir, &clock);
    let limits = Limits {
        requests_per_minute: Some(1),
        tokens_per_minute: Some(100),
        budget: Some(Budget {
            tokens: 1_000,
            period: BudgetPeriod::Day,
        }),
    };
    let key = auth.create_key(&new_key("g", &["*"], limits)).unwrap().key;
    let mut reservation = admitted(auth.reserve(&key, 10).unwrap());
    // With one request a minute, an extension is not a second request.
    assert_eq!(auth.extend(&key, &mut reservation, 60).unwrap(), None);
    assert_eq!(reservation.tokens(), 70);
    assert_eq!(auth.budget_spent(&key).unwrap(), Some(70));
    // 70 of the minute's 100 are held: 31 more do not fit, and the reservation is unchanged.
    let d = auth
        .extend(&key, &mut reservation, 31)
        .unwrap()
        .expect("denied");
    assert_eq!(d.limit, LimitKind::TokensPerMinute);
    assert_eq!(reservation.tokens(), 70);
    assert_eq!(auth.extend(&key, &mut reservation, 30).unwrap(), None);
    // Settled to what was used, the window and the budget hold that.
    assert_eq!(auth.settle(reservation, 40).unwrap(), 60);
    assert_eq!(auth.budget_spent(&key).unwrap(), Some(40));
    clock.advance_ms(61_000);
    let mut next = admitted(auth.reserve(&key, 100).unwrap());
    let d = auth.extend(&key, &mut next, 1).unwrap().expect("denied");
    assert_eq!(d.limit, LimitKind::TokensPerMinute);
    auth.settle(next, 0).unwrap();
}

#[test]
fn a_monthly_budget_resets_on_the_first_utc() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(MAR_31_2359));
    let auth = open(&dir, &clock);
    let limits = Limits {
        budget: Some(Budget {
            tokens: 100,
            period: BudgetPeriod::Month,
        }),
        ..Limits::default()
    };
    let key = auth.create_key(&new_key("m", &["*"], limits)).unwrap().key;
    let r = admitted(auth.reserve(&key, 100).unwrap());
    auth.settle(r, 100).unwrap();
    let d = denied(auth.reserve(&key, 1).unwrap());
    assert_eq!(d.limit, LimitKind::MonthlyBudget);
    assert_eq!(d.retry_after, Some(Duration::from_secs(60)));
    clock.advance_ms(60_000);
    let _held = admitted(auth.reserve(&key, 100).unwrap());
}

#[test]
fn set_limits_applies_to_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(MAR_31_2359));
    let auth = open(&dir, &clock);
    let key = auth
        .create_key(&new_key("k", &["*"], Limits::default()))
        .unwrap()
        .key;
    let _held = admitted(auth.reserve(&key, 5).unwrap());
    let limits = Limits {
        requests_per_minute: Some(1),
        ..Limits::default()
    };
    let key = auth.set_limits(key.id, &limits).unwrap();
    let _held = admitted(auth.reserve(&key, 5).unwrap());
    let d = denied(auth.reserve(&key, 5).unwrap());
    assert_eq!(d.limit, LimitKind::RequestsPerMinute);
    assert_eq!(d.retry_after, Some(Duration::from_secs(60)));
}

#[test]
fn usage_is_counted_per_key_model_and_utc_day() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(MAR_31_2359));
    let auth = open(&dir, &clock);
    let key = auth
        .create_key(&new_key("u", &["*"], Limits::default()))
        .unwrap()
        .key;
    auth.record_usage(Some(&key), "qwen", 10, 20).unwrap();
    auth.record_usage(Some(&key), "qwen", 1, 2).unwrap();
    auth.record_usage(None, "qwen", 5, 5).unwrap();
    clock.advance_ms(120_000);
    auth.record_usage(Some(&key), "llama", 7, 8).unwrap();
    // Another model's work for that request: its tokens, no request.
    auth.submit_usage(Some(&key), "minilm", (4, 0), 0).unwrap();

    let all = auth.usage(&UsageFilter::default()).unwrap();
    let summary: Vec<_> = all
        .iter()
        .map(|r| {
            (
                r.day.as_str(),
                r.key,
                r.model.as_str(),
                r.requests,
                r.prompt_tokens,
                r.completion_tokens,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("2026-03-31", ANONYMOUS, "qwen", 1, 5, 5),
            ("2026-03-31", key.id, "qwen", 2, 11, 22),
            ("2026-04-01", key.id, "llama", 1, 7, 8),
            ("2026-04-01", key.id, "minilm", 0, 4, 0),
        ]
    );
    let april = moat_auth::Date::parse("2026-04-01").unwrap();
    let filter = UsageFilter {
        key: Some(key.id),
        since: Some(april),
        ..UsageFilter::default()
    };
    assert_eq!(auth.usage(&filter).unwrap().len(), 2);
    assert!(auth.record_usage(None, "", 1, 1).is_err());
}

#[test]
fn a_database_from_a_newer_moat_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.db");
    drop(Auth::open(&path).unwrap());
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("UPDATE moat_auth_schema SET version = 99", [])
            .unwrap();
        // moat-vector's version is untouched by this crate.
        let user_version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(user_version, 0);
    }
    let err = Auth::open(&path).err().unwrap();
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn absurd_token_counts_are_denied_or_clamped_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(MAR_31_2359));
    let auth = open(&dir, &clock);
    let limits = Limits {
        tokens_per_minute: Some(100),
        budget: Some(Budget {
            tokens: 1_000,
            period: BudgetPeriod::Month,
        }),
        ..Limits::default()
    };
    let key = auth.create_key(&new_key("x", &["*"], limits)).unwrap().key;
    assert_eq!(
        denied(auth.reserve(&key, u64::MAX).unwrap()).retry_after,
        None
    );
    let r = admitted(auth.reserve(&key, 10).unwrap());
    assert_eq!(auth.settle(r, u64::MAX).unwrap(), 10 - i64::MAX);
    let d = denied(auth.reserve(&key, 1).unwrap());
    assert_eq!(d.limit, LimitKind::TokensPerMinute);

    let unlimited = auth
        .create_key(&new_key("u", &["*"], Limits::default()))
        .unwrap()
        .key;
    let r = admitted(auth.reserve(&unlimited, u64::MAX).unwrap());
    assert_eq!(auth.settle(r, 0).unwrap(), i64::MAX);
}

/// A database written by the first schema (keys without guard or private columns, key guards
/// in moat-cli's old `cli_key_guards` table) opens migrated: guards move onto their keys and
/// the old table goes.
#[test]
fn a_version_one_database_migrates_key_guards_onto_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("moat.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE moat_auth_schema (version INTEGER NOT NULL);
             INSERT INTO moat_auth_schema (version) VALUES (1);
             CREATE TABLE auth_keys (
                 id INTEGER PRIMARY KEY, name TEXT NOT NULL, prefix TEXT NOT NULL UNIQUE,
                 hash BLOB NOT NULL, models TEXT NOT NULL, admin INTEGER NOT NULL,
                 requests_per_minute INTEGER, tokens_per_minute INTEGER, budget_tokens INTEGER,
                 budget_period TEXT, created_ms INTEGER NOT NULL, revoked_ms INTEGER);
             CREATE TABLE auth_budget_spend (key_id INTEGER NOT NULL, period TEXT NOT NULL,
                 tokens INTEGER NOT NULL, PRIMARY KEY (key_id, period));
             CREATE TABLE auth_usage (key_id INTEGER NOT NULL, day TEXT NOT NULL,
                 model TEXT NOT NULL, requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
                 completion_tokens INTEGER NOT NULL, PRIMARY KEY (key_id, day, model));
             INSERT INTO auth_keys (id, name, prefix, hash, models, admin, created_ms)
                 VALUES (1, 'guarded', 'moat-sk-aaaaaaaa', x'00', '[\"*\"]', 0, 1),
                        (2, 'plain', 'moat-sk-bbbbbbbb', x'00', '[\"*\"]', 0, 2);
             CREATE TABLE cli_key_guards (key_id INTEGER PRIMARY KEY, guard TEXT NOT NULL);
             INSERT INTO cli_key_guards (key_id, guard) VALUES (1, 'strict');",
        )
        .unwrap();
    }
    let auth = Auth::open(&path).unwrap();
    let keys = auth.list_keys().unwrap();
    assert_eq!(keys[0].guard.as_deref(), Some("strict"));
    assert_eq!(keys[1].guard, None);
    assert!(!keys[0].private && !keys[1].private);
    drop(auth);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let legacy: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'cli_key_guards')",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(!legacy);
    // Opening again is a no-op.
    assert_eq!(Auth::open(&path).unwrap().list_keys().unwrap(), keys);
}

#[test]
fn a_keys_guard_and_privacy_are_stored_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let auth = Auth::open(&dir.path().join("moat.db")).unwrap();
    let mut new = new_key("p", &["*"], Limits::default());
    new.guard = Some("strict".into());
    new.private = true;
    let created = auth.create_key(&new).unwrap();
    let found = auth
        .authenticate(&format!("Bearer {}", created.secret.expose()))
        .unwrap();
    assert_eq!(found.guard.as_deref(), Some("strict"));
    assert!(found.private);
    new.guard = Some("bad\nname".into());
    assert!(auth.create_key(&new).is_err());
}

#[test]
fn a_key_made_on_one_node_is_imported_on_another_and_works_there() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let first = Auth::open(&one.path().join("moat.db")).unwrap();
    let second = Auth::open(&two.path().join("moat.db")).unwrap();
    let created = first
        .create_key(&new_key("fleet", &["*"], Limits::default()))
        .unwrap();
    let text = format!("{}\n", created.secret.expose());

    let imported = second
        .import_key(
            &new_key("fleet", &["*"], Limits::default()),
            &Secret::from_text(&text).unwrap(),
        )
        .unwrap();
    assert_eq!(imported.prefix, created.key.prefix);
    assert!(second.keys_exist().unwrap());
    let header = format!("Bearer {}", created.secret.expose());
    assert_eq!(second.authenticate(&header).unwrap().id, imported.id);

    // The same secret twice on one node is refused, and so is anything not of a secret's form.
    let again = second
        .import_key(
            &new_key("again", &["*"], Limits::default()),
            &Secret::from_text(&text).unwrap(),
        )
        .unwrap_err();
    assert_eq!(again.kind(), AuthErrorKind::InvalidInput);
    assert!(again.to_string().contains("exists already"), "{again}");
    for bad in [
        "",
        "moat-sk-short",
        "sk-0123456789012345678901234567890123456789012",
        "moat-sk-0123456789012345678901234567890123456789 12",
        "moat-sk-01234567890123456789012345678901234567890+/",
    ] {
        let error = Secret::from_text(bad).err().unwrap();
        assert_eq!(error.kind(), AuthErrorKind::InvalidInput, "{bad:?}");
    }
    // A revoked key stays revoked: re-importing its secret is refused, not a way back in.
    second.revoke_key("fleet").unwrap();
    assert!(second
        .import_key(
            &new_key("back", &["*"], Limits::default()),
            &Secret::from_text(&text).unwrap()
        )
        .is_err());
    assert!(second.authenticate(&header).is_err());
}
