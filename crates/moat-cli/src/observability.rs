//! Where `moat serve` sends its traces: the OpenTelemetry collector named by
//! `--otlp-endpoint`, else the standard `OTEL_EXPORTER_OTLP_ENDPOINT` variable, else
//! `[observability] otlp_endpoint` in moat.toml (flags over the environment over the file, as
//! everywhere in moat). None of them: no traces, and no span is ever built. The service name
//! is `OTEL_SERVICE_NAME`, else `[observability] service_name`, else `moat`.
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
    Ok(Some(config))
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
