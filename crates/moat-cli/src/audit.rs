//! `moat audit`: query the audit log (one entry per API request: who, when, model, decision,
//! rails hit, token counts) as a table or, with `--jsonl`, export every matching entry as JSON
//! Lines. `[audit] retention_days` in moat.toml removes older entries first.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use moat_auth::Date;
use moat_meter::{AuditFilter, Decision};

use crate::trust::{open_auth, open_meter, settings};

#[derive(Clone, Copy, ValueEnum)]
enum DecisionArg {
    Allowed,
    Blocked,
    Redacted,
    Flagged,
}

impl From<DecisionArg> for Decision {
    fn from(arg: DecisionArg) -> Self {
        match arg {
            DecisionArg::Allowed => Decision::Allowed,
            DecisionArg::Blocked => Decision::Blocked,
            DecisionArg::Redacted => Decision::Redacted,
            DecisionArg::Flagged => Decision::Flagged,
        }
    }
}

#[derive(Args)]
pub struct AuditArgs {
    /// Entries from this day (YYYY-MM-DD, UTC) or this long ago (30m, 24h, 7d).
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only this key (its prefix or name), or `anonymous`.
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Only this model or alias (as requested).
    #[arg(long)]
    model: Option<String>,
    /// Only this decision.
    #[arg(long, value_enum)]
    decision: Option<DecisionArg>,
    /// At most this many entries in the table (newest last).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Export every matching entry as JSON Lines on stdout.
    #[arg(long)]
    jsonl: bool,
    /// The moat.toml with [audit] (default: ./moat.toml, else $MOAT_HOME/moat.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// `YYYY-MM-DD` (the start of that UTC day) or a duration ago (`30m`, `24h`, `7d`).
fn parse_since(text: &str, now_ms: i64) -> Result<i64> {
    if let Some(date) = Date::parse(text) {
        return Ok(date.start_ms());
    }
    // Split off the unit by matching it as a suffix: slicing at `len - 1` lands inside the
    // last character when it takes more than one byte (`1é`) and panics.
    const UNITS: [(char, i64); 3] = [('m', 60_000), ('h', 3_600_000), ('d', 86_400_000)];
    let Some((digits, unit_ms)) = UNITS
        .iter()
        .find_map(|&(unit, ms)| text.strip_suffix(unit).map(|digits| (digits, ms)))
    else {
        bail!("--since {text:?}: give a day (2026-11-26) or a duration (30m, 24h, 7d)");
    };
    let count: i64 = digits
        .parse()
        .ok()
        .filter(|n| (0..=100_000).contains(n))
        .with_context(|| format!("--since {text:?}: the number is not a count from 0 to 100000"))?;
    Ok(now_ms - count * unit_ms)
}

/// The audit log's `who` for a key given by prefix or name.
fn who(home: &Path, key: &str) -> Result<String> {
    if key == moat_meter::ANONYMOUS {
        return Ok(key.to_owned());
    }
    let auth = open_auth(home)?;
    let matches: Vec<_> = auth
        .list_keys()?
        .into_iter()
        .filter(|k| k.prefix == key || k.name == key)
        .collect();
    match matches.as_slice() {
        [] => bail!("no API key {key:?} (see `moat keys ls`)"),
        [one] => Ok(format!("{} {}", one.prefix, one.name)),
        _ => bail!("{key:?} names several keys; give the prefix"),
    }
}

pub fn run(home: &Path, args: AuditArgs) -> Result<u8> {
    let settings = settings(home, args.config.as_deref())?;
    let retention = settings.audit.retention_days;
    let meter = open_meter(home, settings.audit)?;
    let now = now_ms();
    if let Some(days) = retention {
        meter.retain(days, now)?;
    }
    let filter = AuditFilter {
        since_ms: args
            .since
            .as_deref()
            .map(|s| parse_since(s, now))
            .transpose()?,
        who: args.key.as_deref().map(|k| who(home, k)).transpose()?,
        model: args.model,
        decision: args.decision.map(Decision::from),
        limit: Some(args.limit),
        ..AuditFilter::default()
    };
    if args.jsonl {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let written = meter.audit_export_jsonl(&filter, &mut out)?;
        eprintln!("{written} entries");
        return Ok(0);
    }
    let records = meter.audit_query(&filter)?;
    if records.is_empty() {
        eprintln!("no audit entries match");
        return Ok(0);
    }
    println!(
        "{:<24} {:<28} {:<24} {:<9} {:>7} {:>7}  RAILS",
        "WHEN (UTC)", "WHO", "MODEL", "DECISION", "PROMPT", "COMPL"
    );
    for record in records {
        let entry = &record.entry;
        println!(
            "{:<24} {:<28} {:<24} {:<9} {:>7} {:>7}  {}",
            when(entry.at_ms),
            entry.who,
            entry.model,
            entry.decision.as_str(),
            entry.prompt_tokens,
            entry.completion_tokens,
            if entry.rails.is_empty() {
                "-".to_owned()
            } else {
                entry.rails.join(",")
            },
        );
    }
    Ok(0)
}

/// `YYYY-MM-DD HH:MM:SS` in UTC.
fn when(at_ms: i64) -> String {
    let day = Date::from_unix_ms(at_ms);
    let seconds = (at_ms - day.start_ms()) / 1000;
    format!(
        "{} {:02}:{:02}:{:02}",
        day.iso(),
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_800_000_000_000;

    #[test]
    fn since_takes_a_day_or_a_duration_ago() {
        assert_eq!(parse_since("30m", NOW_MS).ok(), Some(NOW_MS - 30 * 60_000));
        assert_eq!(
            parse_since("24h", NOW_MS).ok(),
            Some(NOW_MS - 24 * 3_600_000)
        );
        assert_eq!(
            parse_since("7d", NOW_MS).ok(),
            Some(NOW_MS - 7 * 86_400_000)
        );
        let day = Date::parse("2026-11-26").map(|d| d.start_ms());
        assert_eq!(parse_since("2026-11-26", NOW_MS).ok(), day);
    }

    #[test]
    fn a_since_ending_in_a_multibyte_character_is_an_error_not_a_panic() {
        for bad in [
            "1é",
            "é",
            "7dé",
            "1\u{1F600}",
            "",
            "d",
            "-1d",
            "1w",
            "100001d",
        ] {
            let Err(err) = parse_since(bad, NOW_MS) else {
                panic!("--since {bad:?} accepted");
            };
            assert!(err.to_string().contains("--since"), "{bad:?}: {err}");
        }
    }
}
