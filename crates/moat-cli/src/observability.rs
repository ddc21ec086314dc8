//! Where `moat serve` sends its traces: the OpenTelemetry collector named by
//! `--otlp-endpoint`, else the standard `OTEL_EXPORTER_OTLP_ENDPOINT` variable, else
//! `[observability] otlp_endpoint` in moat.toml (flags over the environment over the file, as
//! everywhere in moat). None of them: no traces, and no span is ever built. The service name
//! is `OTEL_SERVICE_NAME`, else `[observability] service_name`, else `moat`. Headers for the
//! collector (an API key of a hosted one) come from the standard `OTEL_EXPORTER_OTLP_HEADERS`
//! (`name=value,name2=value2`, values percent-decoded), and only from there, so that a secret
//! stays out of moat.toml and the command line.
//!
//! An endpoint that is not an http(s) URL is a usage error that names where it came from; the
//! caller exits with code 2.

use std::path::Path;

use anyhow::{Context, Result};
use moat_otlp::{traces_url, ExporterConfig};
use serde::Deserialize;

/// The standard variable for the collector's base URL.
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable for the service name.
pub const SERVICE_NAME_ENV: &str = "OTEL_SERVICE_NAME";
/// The standard variable for the collector's request headers.
pub const HEADERS_ENV: &str = "OTEL_EXPORTER_OTLP_HEADERS";

/// The parts of `moat.toml` this module reads.
#[derive(Debug, Default, Deserialize)]
struct ObservabilityToml {
    #[serde(default)]
    observability: ObservabilitySection,
}

/// `[observability]`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservabilitySection {
    /// The collector's base URL (OTLP/HTTP; spans go to `URL/v1/traces`).
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of this server's spans.
    pub service_name: Option<String>,
}

/// Reads `[observability]` of the config file (empty when there is none).
pub fn section(home: &Path, explicit: Option<&Path>) -> Result<ObservabilitySection> {
    let Some(path) = crate::knowledge::config_path(home, explicit) else {
        return Ok(ObservabilitySection::default());
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let parsed: ObservabilityToml =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(parsed.observability)
}

/// The exporter's settings from the flag, the environment (`env` reads a variable) and the
/// file's section; `Ok(None)` when traces are off. `Err` is the usage error to print.
pub fn exporter_config(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    file: &ObservabilitySection,
) -> std::result::Result<Option<ExporterConfig>, String> {
    let set = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let endpoint = match (
        set(flag.map(str::to_owned)),
        set(env(ENDPOINT_ENV)),
        set(file.otlp_endpoint.clone()),
    ) {
        (Some(url), _, _) => Some((url, "--otlp-endpoint")),
        (None, Some(url), _) => Some((url, ENDPOINT_ENV)),
        (None, None, Some(url)) => Some((url, "[observability] otlp_endpoint")),
        (None, None, None) => None,
    };
    let Some((endpoint, source)) = endpoint else {
        return Ok(None);
    };
    traces_url(&endpoint).map_err(|error| format!("{source}: {error}"))?;
    let mut config = ExporterConfig::new(endpoint.trim());
    if let Some(name) = set(env(SERVICE_NAME_ENV)).or_else(|| set(file.service_name.clone())) {
        config.service_name = name;
    }
    if let Some(text) = set(env(HEADERS_ENV)) {
        config.headers = parse_headers(&text).map_err(|error| format!("{HEADERS_ENV}: {error}"))?;
    }
    Ok(Some(config))
}

/// `name=value` pairs separated by commas, as OpenTelemetry's variable has them: names and
/// values trimmed, values percent-decoded. The exporter checks that each is a valid HTTP
/// header when it starts.
fn parse_headers(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for pair in text.split(',').filter(|pair| !pair.trim().is_empty()) {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(format!("{:?} is not name=value", pair.trim()));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("{:?} has no header name", pair.trim()));
        }
        headers.push((name.to_owned(), percent_decode(value.trim())?));
    }
    Ok(headers)
}

/// `%XX` escapes decoded; the result must be UTF-8.
fn percent_decode(text: &str) -> std::result::Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("a bad %-escape in {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn file(endpoint: Option<&str>, service: Option<&str>) -> ObservabilitySection {
        ObservabilitySection {
            otlp_endpoint: endpoint.map(str::to_owned),
            service_name: service.map(str::to_owned),
        }
    }

    #[test]
    fn collector_headers_come_from_the_standard_variable() {
        let headers = |value: &str| {
            exporter_config(
                Some("http://c:4318"),
                env(&[(HEADERS_ENV, value)]),
                &file(None, None),
            )
            .map(|config| config.unwrap().headers)
        };
        assert_eq!(
            headers("api-key=abc%20def, x-team = ml ,").unwrap(),
            vec![
                ("api-key".to_owned(), "abc def".to_owned()),
                ("x-team".to_owned(), "ml".to_owned())
            ]
        );
        for bad in ["novalue", "=x", "k=%zz", "k=%4", "k=%ff"] {
            let error = headers(bad).unwrap_err();
            assert!(error.starts_with(HEADERS_ENV), "{bad}: {error}");
        }
    }

    #[test]
    fn nothing_configured_means_no_traces() {
        assert_eq!(exporter_config(None, env(&[]), &file(None, None)), Ok(None));
        // An empty variable counts as unset.
        assert_eq!(
            exporter_config(None, env(&[(ENDPOINT_ENV, "")]), &file(None, None)),
            Ok(None)
        );
    }

    #[test]
    fn the_flag_beats_the_environment_which_beats_the_file() {
        let from = |flag: Option<&str>, vars: &[(&str, &str)], endpoint: Option<&str>| {
            exporter_config(flag, env(vars), &file(endpoint, None))
                .unwrap()
                .unwrap()
                .endpoint
        };
        let vars = [(ENDPOINT_ENV, "http://env:4318")];
        assert_eq!(
            from(Some("http://flag:4318"), &vars, Some("http://file:4318")),
            "http://flag:4318"
        );
        assert_eq!(
            from(None, &vars, Some("http://file:4318")),
            "http://env:4318"
        );
        assert_eq!(
            from(None, &[], Some("http://file:4318")),
            "http://file:4318"
        );
    }

    #[test]
    fn the_service_name_comes_from_the_environment_the_file_or_the_default() {
        let name = |vars: &[(&str, &str)], service: Option<&str>| {
            exporter_config(Some("http://c:4318"), env(vars), &file(None, service))
                .unwrap()
                .unwrap()
                .service_name
        };
        assert_eq!(name(&[], None), "moat");
        assert_eq!(name(&[], Some("edge")), "edge");
        assert_eq!(
            name(&[(SERVICE_NAME_ENV, "node-1")], Some("edge")),
            "node-1"
        );
    }

    #[test]
    fn a_bad_endpoint_names_its_source() {
        let error = exporter_config(Some("ftp://c"), env(&[]), &file(None, None)).unwrap_err();
        assert!(error.starts_with("--otlp-endpoint: "), "{error}");
        let error = exporter_config(
            None,
            env(&[(ENDPOINT_ENV, "collector:4318")]),
            &file(None, None),
        )
        .unwrap_err();
        assert!(error.starts_with(ENDPOINT_ENV), "{error}");
        let error = exporter_config(None, env(&[]), &file(Some("nope"), None)).unwrap_err();
        assert!(
            error.starts_with("[observability] otlp_endpoint"),
            "{error}"
        );
    }
}
