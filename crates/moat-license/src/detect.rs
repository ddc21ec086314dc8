//! Detection: which license a model's files name. It reads the evidence the caller gathered
//! (GGUF `general.license*` keys, a LICENSE file's text, a model card's YAML front matter, a
//! manifest override) and maps it to a fact-base license id. It does not read files itself
//! and does not judge deployments.
//!
//! Precedence: manifest override > GGUF metadata > LICENSE file > model card. A lower source
//! that names a *different* known license makes the detection `Conflicting` (unknown until
//! overridden), because converters and re-uploaders get license metadata wrong.

use std::fmt;

use serde::Serialize;

use crate::id::LicenseId;
use crate::knowledge::{knowledge, TextMatch};

/// What the caller found in the model's files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LicenseEvidence {
    /// The `license` a user set in the model's manifest; it wins over everything else and
    /// lets unverified facts decide (the user takes responsibility).
    pub manifest_override: Option<LicenseId>,
    pub gguf: GgufLicenseKeys,
    /// The text of `LICENSE`, `LICENSE.txt` or `LICENSE.md`.
    pub license_file: Option<String>,
    /// The text of the model card, `README.md`, front matter included.
    pub model_card: Option<String>,
}

/// The GGUF keys llama.cpp's converter fills from the model card.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GgufLicenseKeys {
    /// `general.license`: an HF license id, `other`, or several joined with `,`.
    pub license: Option<String>,
    /// `general.license.name`: the HF `license_name`.
    pub name: Option<String>,
    /// `general.license.link`: the HF `license_link`.
    pub link: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseSource {
    ManifestOverride,
    GgufMetadata,
    LicenseFile,
    ModelCard,
}

impl fmt::Display for LicenseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LicenseSource::ManifestOverride => "manifest override",
            LicenseSource::GgufMetadata => "GGUF metadata",
            LicenseSource::LicenseFile => "LICENSE file",
            LicenseSource::ModelCard => "model card",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionStatus {
    /// A license in the fact base, named by the highest-precedence source.
    Identified,
    /// The files name a license, but not one the fact base knows.
    NotInFactBase,
    /// No source names a license.
    NoLicenseNamed,
    /// Sources name different licenses of the fact base.
    Conflicting,
}

/// What one source said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reading {
    pub source: LicenseSource,
    /// The string as seen (a metadata value, or a LICENSE file's first line).
    pub raw: String,
    pub license_id: Option<LicenseId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Detection {
    pub status: DetectionStatus,
    /// Set when `status` is `Identified` (and for `Conflicting`, the winning source's id).
    pub license_id: Option<LicenseId>,
    /// The string the deciding source gave.
    pub raw: Option<String>,
    /// The deciding source; `None` when no source names a license.
    pub source: Option<LicenseSource>,
    /// Every source that named something, highest precedence first.
    pub readings: Vec<Reading>,
    pub notes: Vec<String>,
}

impl Detection {
    pub fn is_overridden(&self) -> bool {
        self.source == Some(LicenseSource::ManifestOverride)
    }
}

/// Maps the evidence to a license. Never fails: what cannot be identified is reported in the
/// detection's status and notes.
pub fn detect(evidence: &LicenseEvidence) -> Detection {
    let mut readings = Vec::new();
    let mut notes = Vec::new();
    if let Some(id) = evidence.manifest_override {
        readings.push(Reading {
            source: LicenseSource::ManifestOverride,
            raw: id.to_string(),
            license_id: Some(id),
        });
    }
    let gguf = &evidence.gguf;
    let keys = Keys {
        license: gguf.license.as_deref(),
        name: gguf.name.as_deref(),
        link: gguf.link.as_deref(),
    };
    read_keys(keys, LicenseSource::GgufMetadata, &mut readings, &mut notes);
    if let Some(text) = &evidence.license_file {
        read_license_text(text, &mut readings, &mut notes);
    }
    if let Some(card) = &evidence.model_card {
        let front = FrontMatter::parse(card);
        let keys = Keys {
            license: front.license.as_deref(),
            name: front.license_name.as_deref(),
            link: front.license_link.as_deref(),
        };
        read_keys(keys, LicenseSource::ModelCard, &mut readings, &mut notes);
    }
    decide(readings, notes)
}

fn decide(readings: Vec<Reading>, mut notes: Vec<String>) -> Detection {
    let Some(first) = readings.first().cloned() else {
        notes.push("the model's files name no license".to_string());
        return Detection {
            status: DetectionStatus::NoLicenseNamed,
            license_id: None,
            raw: None,
            source: None,
            readings,
            notes,
        };
    };
    let disagreeing: Vec<&Reading> = readings
        .iter()
        .filter(|r| {
            r.license_id.is_some() && first.license_id.is_some() && r.license_id != first.license_id
        })
        .collect();
    let status = match first.license_id {
        None => DetectionStatus::NotInFactBase,
        Some(_) if disagreeing.is_empty() => DetectionStatus::Identified,
        Some(_) if first.source == LicenseSource::ManifestOverride => {
            for other in &disagreeing {
                notes.push(format!(
                    "the {} says {}; the manifest override wins",
                    other.source, other.raw
                ));
            }
            DetectionStatus::Identified
        }
        Some(_) => DetectionStatus::Conflicting,
    };
    Detection {
        status,
        license_id: first.license_id,
        raw: Some(first.raw),
        source: Some(first.source),
        readings,
        notes,
    }
}

#[derive(Clone, Copy)]
struct Keys<'a> {
    license: Option<&'a str>,
    name: Option<&'a str>,
    link: Option<&'a str>,
}

fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Reads an HF-style (`license`, `license_name`, `license_link`) triple, from GGUF metadata or
/// a model card.
fn read_keys(
    keys: Keys<'_>,
    source: LicenseSource,
    readings: &mut Vec<Reading>,
    notes: &mut Vec<String>,
) {
    let values: Vec<&str> = present(keys.license)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let (name, link) = (present(keys.name), present(keys.link));
    let specific: Vec<&str> = values.iter().copied().filter(|v| !is_generic(v)).collect();
    let reading = match specific.as_slice() {
        [] => match (name, link) {
            (Some(name), _) => resolve_short(name, link, source, notes),
            (None, Some(link)) => resolve_short(link, None, source, notes),
            (None, None) if !values.is_empty() => {
                notes.push(format!(
                    "the {source} says `{}` without naming the license",
                    values.join(",")
                ));
                return;
            }
            (None, None) => return,
        },
        [single] => resolve_short(single, None, source, notes),
        several => resolve_several(several, source, notes),
    };
    readings.push(reading);
}

fn is_generic(value: &str) -> bool {
    value.eq_ignore_ascii_case("other") || value.eq_ignore_ascii_case("unknown")
}

/// One short string (an id, a name, a link), with a link to fall back on.
fn resolve_short(
    raw: &str,
    fallback_link: Option<&str>,
    source: LicenseSource,
    notes: &mut Vec<String>,
) -> Reading {
    let knowledge = knowledge();
    let found = knowledge
        .resolve_name_marked(raw)
        .or_else(|| fallback_link.and_then(|l| knowledge.resolve_name_marked(l)));
    if let Some((index, true)) = found {
        notes.push(format!(
            "the fact base marks \"{raw}\" as an unverified name for {}",
            knowledge.entry(index).id()
        ));
    }
    Reading {
        source,
        raw: raw.to_string(),
        license_id: found.map(|(index, _)| knowledge.id_of(index)),
    }
}

/// Several licenses at once (a YAML list, or GGUF values joined with `,`): identified only if
/// they all name the same license, because the gate cannot tell "and" from "or".
fn resolve_several(values: &[&str], source: LicenseSource, notes: &mut Vec<String>) -> Reading {
    let knowledge = knowledge();
    let ids: Vec<Option<usize>> = values.iter().map(|v| knowledge.resolve_name(v)).collect();
    let raw = values.join(",");
    let same = ids
        .first()
        .copied()
        .flatten()
        .filter(|first| ids.iter().all(|id| *id == Some(*first)));
    if same.is_none() {
        notes.push(format!(
            "the {source} names several licenses ({raw}); set one in the manifest"
        ));
    }
    Reading {
        source,
        raw,
        license_id: same.map(|index| knowledge.id_of(index)),
    }
}

fn read_license_text(text: &str, readings: &mut Vec<Reading>, notes: &mut Vec<String>) {
    let Some(first_line) = text.lines().map(str::trim).find(|line| !line.is_empty()) else {
        return;
    };
    let raw: String = first_line.chars().take(120).collect();
    let knowledge = knowledge();
    let license_id = match knowledge.match_text(text) {
        TextMatch::Known(index) => Some(knowledge.id_of(index)),
        TextMatch::OutOfScope => {
            notes.push("the LICENSE file is a license the fact base does not cover".to_string());
            None
        }
        TextMatch::Nothing => {
            notes.push(
                "the LICENSE file's text matches no license title the gate knows".to_string(),
            );
            None
        }
    };
    readings.push(Reading {
        source: LicenseSource::LicenseFile,
        raw,
        license_id,
    });
}

/// The license keys of a model card's YAML front matter. A minimal reader: top-level
/// `key: value` lines, quoted scalars, inline `[a, b]` lists and block `- a` lists.
#[derive(Debug, Default, PartialEq, Eq)]
struct FrontMatter {
    license: Option<String>,
    license_name: Option<String>,
    license_link: Option<String>,
}

impl FrontMatter {
    fn parse(card: &str) -> FrontMatter {
        let mut lines = card.trim_start_matches('\u{feff}').lines();
        let mut front = FrontMatter::default();
        if lines.next().map(str::trim_end) != Some("---") {
            return front;
        }
        let body: Vec<&str> = lines
            .take_while(|line| !matches!(line.trim_end(), "---" | "..."))
            .collect();
        for (at, line) in body.iter().enumerate() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key.starts_with(char::is_whitespace) {
                continue;
            }
            let slot = match key.trim() {
                "license" => &mut front.license,
                "license_name" => &mut front.license_name,
                "license_link" => &mut front.license_link,
                _ => continue,
            };
            *slot = yaml_value(value, &body[at + 1..]);
        }
        front
    }
}

/// A scalar or list value, lists joined with `,` as llama.cpp's converter does.
fn yaml_value(value: &str, following: &[&str]) -> Option<String> {
    let value = strip_comment(value).trim();
    let items: Vec<String> =
        if let Some(inner) = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
            inner.split(',').map(unquote).collect()
        } else if value.is_empty() {
            following
                .iter()
                .take_while(|line| line.starts_with(char::is_whitespace) || line.starts_with('-'))
                .filter_map(|line| line.trim().strip_prefix('-'))
                .map(|item| unquote(strip_comment(item)))
                .collect()
        } else {
            vec![unquote(value)]
        };
    let items: Vec<String> = items.into_iter().filter(|item| !item.is_empty()).collect();
    (!items.is_empty()).then(|| items.join(","))
}

/// Drops a ` # comment`; a `#` inside a URL fragment has no space before it and stays.
fn strip_comment(value: &str) -> &str {
    value.split(" #").next().unwrap_or_default()
}

fn unquote(value: &str) -> String {
    value
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_matter_reads_scalars_quotes_and_lists() {
        let card = "---\nlicense: \"other\" # see below\nlicense_name: 'qwen-research'\nlicense_link: https://huggingface.co/Qwen/Qwen2.5-3B/blob/main/LICENSE\ntags:\n- code\n---\n# Qwen\nlicense: mit\n";
        let front = FrontMatter::parse(card);
        assert_eq!(front.license.as_deref(), Some("other"));
        assert_eq!(front.license_name.as_deref(), Some("qwen-research"));
        assert_eq!(
            front.license_link.as_deref(),
            Some("https://huggingface.co/Qwen/Qwen2.5-3B/blob/main/LICENSE")
        );

        let block =
            FrontMatter::parse("---\nlicense:\n  - apache-2.0\n  - mit\nlanguage: en\n---\n");
        assert_eq!(block.license.as_deref(), Some("apache-2.0,mit"));
        let inline = FrontMatter::parse("---\nlicense: [apache-2.0]\n---\n");
        assert_eq!(inline.license.as_deref(), Some("apache-2.0"));
    }

    #[test]
    fn text_without_front_matter_has_no_keys() {
        assert_eq!(
            FrontMatter::parse("# Model\nlicense: mit\n"),
            FrontMatter::default()
        );
    }
}
