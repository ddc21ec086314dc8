//! The fact base: `data/licenses.json`, a copy of `shared/licenses/licenses.json` compiled into
//! the binary. This module parses it and renders its clauses and fields as quotable text; it
//! knows nothing about deployments, rules or verdicts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) const LICENSES_JSON: &str = include_str!("../data/licenses.json");

#[derive(Debug, Deserialize)]
pub(crate) struct FactBase {
    pub schema_version: u32,
    pub licenses: Vec<Value>,
}

/// The typed part of one license entry; `raw` keeps the whole entry so that rules can cite
/// any field by path.
#[derive(Debug)]
pub(crate) struct LicenseFacts {
    pub id: String,
    pub names: Vec<String>,
    pub spdx: Option<String>,
    pub hf_license: Option<String>,
    pub hf_license_name: Option<String>,
    pub url: String,
    pub source: String,
    pub verification: String,
    pub commercial: Commercial,
    pub mau_limit: Option<u64>,
    pub revenue_limit: Option<u64>,
    pub clauses: Vec<Clause>,
    pub raw: Value,
}

#[derive(Debug, Deserialize)]
struct LicenseFactsWire {
    id: String,
    names: Vec<String>,
    spdx: Option<String>,
    hf_license: Option<String>,
    #[serde(default)]
    hf_license_name: Option<String>,
    url: String,
    source: String,
    verification: String,
    commercial: Option<CommercialWire>,
    mau_limit: Option<u64>,
    revenue_limit: Option<u64>,
    clauses: Vec<Clause>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CommercialWire {
    Flag(bool),
    Text(String),
}

/// Whether a license allows commercial use, as the fact base summarises it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Commercial {
    Yes,
    No,
    /// Allowed under conditions (a user or revenue cap, a separate license for some uses).
    Conditional,
    /// The fact base does not say (for example, a use policy rather than a license).
    Unknown,
}

#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Clause {
    #[serde(rename = "ref")]
    pub reference: String,
    pub quote: String,
}

impl FactBase {
    pub fn parse(json: &str) -> Result<(u32, Vec<LicenseFacts>), String> {
        let base: FactBase =
            serde_json::from_str(json).map_err(|error| format!("licenses.json: {error}"))?;
        let licenses = base
            .licenses
            .into_iter()
            .map(LicenseFacts::from_value)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((base.schema_version, licenses))
    }
}

impl LicenseFacts {
    fn from_value(raw: Value) -> Result<LicenseFacts, String> {
        let wire: LicenseFactsWire = serde_json::from_value(raw.clone())
            .map_err(|error| format!("licenses.json entry {}: {error}", raw["id"]))?;
        let commercial = match wire.commercial {
            None => Commercial::Unknown,
            Some(CommercialWire::Flag(true)) => Commercial::Yes,
            Some(CommercialWire::Flag(false)) => Commercial::No,
            Some(CommercialWire::Text(text)) if text == "conditional" => Commercial::Conditional,
            Some(CommercialWire::Text(text)) => {
                return Err(format!(
                    "license {}: unexpected commercial value {text:?}",
                    wire.id
                ))
            }
        };
        Ok(LicenseFacts {
            id: wire.id,
            names: wire.names,
            spdx: wire.spdx,
            hf_license: wire.hf_license,
            hf_license_name: wire.hf_license_name,
            url: wire.url,
            source: wire.source,
            verification: wire.verification,
            commercial,
            mau_limit: wire.mau_limit,
            revenue_limit: wire.revenue_limit,
            clauses: wire.clauses,
            raw,
        })
    }

    /// The clause with this ref whose quote contains `pick` (case-insensitive), or the first
    /// clause with this ref when there is no `pick`.
    pub fn clause(&self, reference: &str, pick: Option<&str>) -> Option<&Clause> {
        self.clauses
            .iter()
            .filter(|clause| clause.reference == reference)
            .find(|clause| pick.is_none_or(|pick| contains_ignore_case(&clause.quote, pick)))
    }

    /// A license-level field rendered as quotable text. `path` is dotted
    /// (`attribution.notice_file_text`); `pick` selects one item of a list, or checks that a
    /// string contains it. `None` when the path does not exist or `pick` matches nothing.
    pub fn field_text(&self, path: &str, pick: Option<&str>) -> Option<String> {
        let mut value = &self.raw;
        for part in path.split('.') {
            value = value.as_object()?.get(part)?;
        }
        let text = match (value, pick) {
            (Value::Array(items), Some(pick)) => items
                .iter()
                .map(render_value)
                .find(|item| contains_ignore_case(item, pick))?,
            (value, Some(pick)) => {
                let text = render_value(value);
                contains_ignore_case(&text, pick).then_some(text)?
            }
            (value, None) => render_value(value),
        };
        Some(text)
    }

    /// The text of a field only when it is a non-empty string (used to fill obligation texts).
    pub fn field_string(&self, path: &str) -> Option<&str> {
        let mut value = &self.raw;
        for part in path.split('.') {
            value = value.as_object()?.get(part)?;
        }
        value.as_str().filter(|text| !text.is_empty())
    }
}

/// How a JSON value reads when quoted to a user.
fn render_value(value: &Value) -> String {
    match value {
        Value::Null => "(none recorded)".to_string(),
        Value::String(text) => text.clone(),
        Value::Bool(_) | Value::Number(_) => value.to_string(),
        Value::Array(items) => items
            .iter()
            .map(render_value)
            .collect::<Vec<_>>()
            .join("; "),
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| format!("{key}: {}", render_value(value)))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

pub(crate) fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}
