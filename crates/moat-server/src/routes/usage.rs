//! `GET /v1/usage`: requests, tokens, measured busy time and cost per key, alias or model,
//! per day, month or in total, from the usage records the server keeps in `moat.db`.
//!
//! Query parameters, all optional: `since` and `until` (`YYYY-MM-DD`, UTC, inclusive),
//! `group_by` (`key`, `alias` or `model`; default `model`) and `period` (`day`, `month` or
//! `total`; default `total`). Anything else, a repeated parameter or a bad value is a 400 that
//! names it. An admin key sees every key's usage, any other key only its own; a server with no
//! keys (the loopback default) shows everything. A cost that is not wholly priced is `null`
//! with `"unpriced": true`, never $0 (moat-meter's `usage_report`).

use axum::extract::{RawQuery, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use moat_meter::{
    usage_report, CostModel, GroupBy, MeterError, Period, ReportScope, UsageRange, UsageReport,
    DEFAULT_PRICES_CAVEAT,
};

use crate::routes::knowledge::blocking;
use crate::trust::{who, Caller};
use crate::{ApiError, AppState};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/usage", get(usage))
}

/// The parsed query.
#[derive(Debug, PartialEq)]
struct UsageQuery {
    since: Option<String>,
    until: Option<String>,
    group_by: GroupBy,
    period: Period,
}

fn bad(param: &str, message: String) -> ApiError {
    ApiError::invalid_request(message).with_param(param)
}

/// A `YYYY-MM-DD` by shape; moat-meter checks it is a real date.
fn day(param: &str, value: &str) -> Result<String, ApiError> {
    let shaped = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return Err(bad(
            param,
            format!("{param} must be a day as YYYY-MM-DD (UTC), got {value:?}"),
        ));
    }
    Ok(value.to_owned())
}

fn parse_query(query: Option<&str>) -> Result<UsageQuery, ApiError> {
    let mut parsed = UsageQuery {
        since: None,
        until: None,
        group_by: GroupBy::Model,
        period: Period::Total,
    };
    let mut seen: Vec<&str> = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if seen.contains(&name) {
            return Err(bad(name, format!("{name} is given more than once")));
        }
        seen.push(name);
        match name {
            "since" => parsed.since = Some(day(name, value)?),
            "until" => parsed.until = Some(day(name, value)?),
            "group_by" => {
                parsed.group_by = match value {
                    "key" => GroupBy::Key,
                    "alias" => GroupBy::Alias,
                    "model" => GroupBy::Model,
                    _ => {
                        return Err(bad(
                            name,
                            format!("group_by must be key, alias or model, got {value:?}"),
                        ))
                    }
                }
            }
            "period" => {
                parsed.period = match value {
                    "day" => Period::Day,
                    "month" => Period::Month,
                    "total" => Period::Total,
                    _ => {
                        return Err(bad(
                            name,
                            format!("period must be day, month or total, got {value:?}"),
                        ))
                    }
                }
            }
            _ => {
                let shown: String = name.chars().take(64).collect();
                return Err(bad(
                    &shown,
                    format!(
                        "unknown parameter {shown:?}: GET /v1/usage takes since, until, \
                         group_by and period"
                    ),
                ));
            }
        }
    }
    if let (Some(since), Some(until)) = (&parsed.since, &parsed.until) {
        if since > until {
            return Err(bad(
                "until",
                format!("until ({until}) is before since ({since})"),
            ));
        }
    }
    Ok(parsed)
}

async fn usage(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Json<UsageReport>, ApiError> {
    let query = parse_query(query.as_deref())?;
    let trust = state.trust().clone();
    let (meter, _, _) = trust.metering();
    let Some(meter) = meter.cloned() else {
        return Err(ApiError::not_found(
            "This server keeps no usage records (it was started without a database)",
            "usage_not_recorded",
        ));
    };
    // An admin key, or no key at all (a server without keys), sees everything.
    let only = caller.key.as_ref().filter(|key| !key.scopes.admin).map(who);
    let range = UsageRange {
        since_day: query.since.clone(),
        until_day: query.until.clone(),
    };
    let records = blocking(move || meter.usage_records(&range).map_err(usage_error)).await?;
    let records: Vec<_> = records
        .into_iter()
        .filter(|record| only.as_ref().is_none_or(|key| &record.key == key))
        .collect();
    let (_, prices, cost) = trust.metering();
    let model = CostModel {
        machine_usd_per_hour: cost.machine_usd_per_hour,
        prices,
    };
    let scope = ReportScope {
        since: query.since,
        until: query.until,
        group_by: query.group_by,
        period: query.period,
    };
    let notes = vec![DEFAULT_PRICES_CAVEAT.to_owned()];
    Ok(Json(usage_report(&records, scope, &model, notes)))
}

/// A bad day (a date that does not exist, such as 2026-02-30) is the caller's 400; anything
/// else is the server's.
fn usage_error(error: MeterError) -> ApiError {
    match error.kind() {
        moat_meter::MeterErrorKind::InvalidInput => ApiError::invalid_request(error.to_string()),
        moat_meter::MeterErrorKind::Internal => ApiError::internal(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn message(query: &str) -> (String, Option<String>) {
        let error = parse_query(Some(query)).unwrap_err();
        (error.message, error.param)
    }

    #[test]
    fn defaults_and_every_value() {
        let parsed = parse_query(None).unwrap();
        assert_eq!(
            (parsed.group_by, parsed.period),
            (GroupBy::Model, Period::Total)
        );
        let parsed = parse_query(Some(
            "since=2026-11-01&until=2026-11-30&group_by=key&period=day",
        ))
        .unwrap();
        assert_eq!(
            parsed,
            UsageQuery {
                since: Some("2026-11-01".into()),
                until: Some("2026-11-30".into()),
                group_by: GroupBy::Key,
                period: Period::Day,
            }
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        assert_eq!(message("since=yesterday").1.as_deref(), Some("since"));
        assert_eq!(message("until=2026-1-1").1.as_deref(), Some("until"));
        assert!(message("group_by=team").0.contains("key, alias or model"));
        assert!(message("period=week").0.contains("day, month or total"));
        assert!(message("limit=5").0.contains("unknown parameter"));
        assert!(message("period=day&period=month")
            .0
            .contains("more than once"));
        let (text, param) = message("since=2026-11-30&until=2026-11-01");
        assert!(text.contains("before"));
        assert_eq!(param.as_deref(), Some("until"));
    }
}
