//! `moat license check|list|set`: the license gate from the command line. This module gathers
//! the evidence from a stored model (GGUF license keys, LICENSE file, model card, manifest
//! override), reads the deployment profile (moat.toml's `[deployment]`, then flags) and prints
//! the verdict. Exit codes: 0 allowed, 10 allowed with obligations, 20 forbidden, 30 unknown.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use moat_license::{
    check, detect, DeploymentProfile, Detection, GgufLicenseKeys, LicenseDecisionInput,
    LicenseEvidence, LicenseId, Outcome, ProfileOverrides, Verdict,
};
use moat_meter::{AuditEntry, Decision, Meter};
use moat_store::inspect::ModelInfo;
use moat_store::{FileRole, Manifest, Store};
use moat_types::ModelRef;
use serde::{Deserialize, Serialize};

use crate::models::open_store;

/// License and model-card texts are read up to this size.
const MAX_TEXT_BYTES: u64 = 1 << 20;

#[derive(Subcommand)]
pub enum LicenseCommand {
    /// Does the model's license allow this deployment? Exit 0 allowed, 10 allowed with
    /// obligations, 20 forbidden, 30 unknown (1 error, 2 usage).
    Check(CheckArgs),
    /// The licenses the gate knows, and how sure its facts are.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set (or clear) the license of a stored model, overriding what its files say. You take
    /// responsibility for it: unverified facts then decide too.
    Set {
        model: ModelRef,
        /// A license id from `moat license list` (or a name the fact base knows).
        #[arg(required_unless_present = "clear")]
        license: Option<String>,
        #[arg(long, conflicts_with = "license")]
        clear: bool,
    },
}

#[derive(Args)]
pub struct CheckArgs {
    model: String,
    /// A moat.toml with a [deployment] table (default: ./moat.toml, else $MOAT_HOME/moat.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Commercial use (internal or external).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    commercial: Option<bool>,
    /// Monthly active users of the products that use the model (you plus affiliates).
    #[arg(long, value_name = "N")]
    mau: Option<u64>,
    /// Serving the model to third parties (a public API or hosted app).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    api: Option<bool>,
    /// Redistributing the weights or a derivative (fine-tune, merge, quantization).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    redistribute: Option<bool>,
    /// Training or improving other models on this model's outputs.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    train_on_outputs: Option<bool>,
    /// The deployer is based in the European Union.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    eu: Option<bool>,
    /// Global consolidated monthly revenue of your company, in USD.
    #[arg(long, value_name = "USD")]
    revenue: Option<u64>,
    /// The model takes images, audio or video.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    multimodal: Option<bool>,
    #[arg(long)]
    json: bool,
}

pub fn run(home: &Path, command: LicenseCommand) -> Result<u8> {
    match command {
        LicenseCommand::Check(args) => check_command(home, args),
        LicenseCommand::List { json } => list(json),
        LicenseCommand::Set {
            model,
            license,
            clear,
        } => set(home, &model, license.as_deref(), clear),
    }
}

#[derive(Deserialize)]
struct MoatToml {
    deployment: Option<DeploymentProfile>,
}

/// The `[deployment]` table of the config file, if there is one.
pub(crate) fn config_profile(home: &Path, explicit: Option<&Path>) -> Result<DeploymentProfile> {
    let path = match explicit {
        Some(path) => Some(path.to_path_buf()),
        None => [PathBuf::from("moat.toml"), home.join("moat.toml")]
            .into_iter()
            .find(|p| p.is_file()),
    };
    let Some(path) = path else {
        return Ok(DeploymentProfile::default());
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let parsed: MoatToml =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(parsed.deployment.unwrap_or_default())
}

/// One warning for each top-level table of the config file that no part of moat reads,
/// worded as `moat serve` words it. `MoatToml` reads `[deployment]` alone and skips the rest,
/// so a misspelt `[deploymnet]` would otherwise give the default profile without a word.
/// (`config_profile` itself stays quiet, since `moat serve` calls it after its own warnings.)
fn unknown_table_warnings(home: &Path, explicit: Option<&Path>) -> Vec<String> {
    crate::knowledge::top_level_tables(home, explicit)
        .into_iter()
        .filter(|table| !crate::knowledge::is_known_table(table))
        .map(|table| {
            format!(
                "warning: moat.toml: [{table}] is not a table moat reads; it is ignored (a typo?)"
            )
        })
        .collect()
}

fn check_command(home: &Path, args: CheckArgs) -> Result<u8> {
    let store = open_store(home)?;
    let manifest = store.resolve(&args.model)?;
    let info = moat_store::inspect::inspect(&store, &manifest)?;
    let overrides = ProfileOverrides {
        commercial: args.commercial,
        monthly_active_users: args.mau,
        third_party_api: args.api,
        redistribute_weights: args.redistribute,
        train_on_outputs: args.train_on_outputs,
        eu_based: args.eu,
        monthly_revenue_usd: args.revenue,
        multimodal: args.multimodal,
    };
    for warning in unknown_table_warnings(home, args.config.as_deref()) {
        eprintln!("{warning}");
    }
    let profile = config_profile(home, args.config.as_deref())?.with_overrides(&overrides);
    let detection = detect(&evidence(&store, &manifest, &info)?);
    let verdict = check(&LicenseDecisionInput { detection, profile });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&verdict)?);
    } else {
        print_verdict(&manifest, &verdict);
    }
    Ok(verdict.exit_code)
}

fn print_verdict(manifest: &Manifest, verdict: &Verdict) {
    println!(
        "{}: {}",
        manifest.name,
        verdict.outcome.label().to_uppercase()
    );
    println!("  {}", verdict.summary);
    if let Some(finding) = &verdict.deciding {
        println!(
            "  deciding: {} -> {}",
            finding.dimension.describe(),
            finding.outcome.label()
        );
        println!("    {}", finding.clause);
        println!("    source: {}", finding.clause.source);
        println!("    {}", finding.explanation);
    }
    if !verdict.obligations.is_empty() {
        println!("  obligations:");
        for obligation in &verdict.obligations {
            println!(
                "  - [{:?}] {} (clause {})",
                obligation.kind, obligation.text, obligation.clause.reference
            );
        }
    }
    if let Some(verification) = &verdict.verification {
        println!("  how sure: {:?} ({verification})", verdict.certainty);
    }
    for note in verdict.notes.iter().chain(&verdict.detection.notes) {
        println!("  note: {note}");
    }
}

fn list(json: bool) -> Result<u8> {
    let licenses: Vec<_> = moat_license::list().collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&licenses)?);
        return Ok(0);
    }
    println!(
        "{:<28} {:<13} {:<14} {:>12}  NAME",
        "ID", "COMMERCIAL", "CERTAINTY", "MAU CAP"
    );
    for license in licenses {
        let cap = license
            .mau_cap
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<28} {:<13} {:<14} {:>12}  {}",
            license.id.as_str(),
            format!("{:?}", license.commercial).to_ascii_lowercase(),
            format!("{:?}", license.certainty).to_ascii_lowercase(),
            cap,
            license.names.first().map(String::as_str).unwrap_or("")
        );
    }
    Ok(0)
}

fn set(home: &Path, model: &ModelRef, license: Option<&str>, clear: bool) -> Result<u8> {
    let store = open_store(home)?;
    let mut manifest = store.manifest(model)?;
    manifest.license = match (license, clear) {
        (_, true) | (None, _) => None,
        (Some(text), false) => Some(LicenseId::parse(text)?.as_str().to_string()),
    };
    store.update(&manifest)?;
    match &manifest.license {
        Some(id) => println!("{model}: license set to {id} (manifest override)"),
        None => println!("{model}: license override cleared"),
    }
    Ok(0)
}

/// What the model's files (and manifest) say about its license.
pub fn evidence(store: &Store, manifest: &Manifest, info: &ModelInfo) -> Result<LicenseEvidence> {
    let manifest_override =
        match &manifest.license {
            Some(text) => Some(LicenseId::parse(text).with_context(|| {
                format!("license override in the manifest of {}", manifest.name)
            })?),
            None => None,
        };
    let mut license_file = None;
    let mut model_card = None;
    for file in &manifest.files {
        let slot = match file.role {
            FileRole::License if license_file.is_none() => &mut license_file,
            FileRole::Readme if model_card.is_none() => &mut model_card,
            _ => continue,
        };
        let path = store.file_path(manifest, &file.digest)?;
        *slot = Some(read_text(&path)?);
    }
    Ok(LicenseEvidence {
        manifest_override,
        gguf: GgufLicenseKeys {
            license: info.license.license.clone(),
            name: info.license.license_name.clone(),
            link: info.license.license_link.clone(),
        },
        license_file,
        model_card,
    })
}

fn read_text(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_TEXT_BYTES)
        .read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The license part of `moat show`.
#[derive(Serialize)]
pub struct LicenseShow {
    /// The fact-base id, when the files name a license the gate knows.
    pub id: Option<String>,
    /// What the model's files state, before interpretation.
    pub fields: moat_store::inspect::LicenseFields,
    pub detection: Option<Detection>,
    /// Set when the evidence could not be read (a bad override id, say).
    pub error: Option<String>,
}

impl LicenseShow {
    pub fn summary(&self) -> String {
        if let Some(error) = &self.error {
            return format!("unreadable: {error}");
        }
        let Some(detection) = &self.detection else {
            return "unknown".into();
        };
        let source = detection
            .source
            .map(|s| format!(" (from {s})"))
            .unwrap_or_default();
        match (&self.id, &detection.raw) {
            (Some(id), _) => format!("{id}{source}"),
            (None, Some(raw)) => format!("'{raw}', not in the fact base{source}"),
            (None, None) => "unknown: the model's files name no license".into(),
        }
    }
}

pub fn show_license(store: &Store, manifest: &Manifest, info: &ModelInfo) -> LicenseShow {
    match evidence(store, manifest, info) {
        Ok(evidence) => {
            let detection = detect(&evidence);
            LicenseShow {
                id: detection.license_id.map(|id| id.as_str().to_string()),
                fields: info.license.clone(),
                detection: Some(detection),
                error: None,
            }
        }
        Err(error) => LicenseShow {
            id: None,
            fields: info.license.clone(),
            detection: None,
            error: Some(format!("{error:#}")),
        },
    }
}

/// Refuses a model whose license forbids the deployment, unless `allow_forbidden`; returns
/// whether it was served through the override.
pub(crate) fn license_gate(
    store: &Store,
    manifest: &Manifest,
    profile: &DeploymentProfile,
    allow_forbidden: bool,
) -> Result<bool> {
    let info = moat_store::inspect::inspect(store, manifest)?;
    let detection = detect(&crate::license::evidence(store, manifest, &info)?);
    let verdict = check(&LicenseDecisionInput {
        detection,
        profile: profile.clone(),
    });
    eprintln!(
        "{}: license {}: {}",
        manifest.name,
        verdict.outcome.label(),
        verdict.summary
    );
    if verdict.outcome == Outcome::Forbidden {
        if let Some(finding) = &verdict.deciding {
            eprintln!("  deciding clause: {}", finding.clause);
        }
        if !allow_forbidden {
            bail!(
                "refusing to serve {}: its license forbids this deployment (see `moat license check {}`); \
                 `moat serve --allow-forbidden-license` serves it anyway",
                manifest.name,
                manifest.name
            );
        }
        eprintln!("  serving it anyway (--allow-forbidden-license; recorded in the audit log)");
        return Ok(true);
    }
    Ok(false)
}

pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Records that the operator served a model its license forbids (`--allow-forbidden-license`).
pub(crate) fn audit_override(meter: &Meter, model: &str) -> Result<()> {
    let operator = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .map_or_else(|| "operator".to_owned(), |u| format!("operator {u}"));
    meter
        .audit_append(&AuditEntry {
            at_ms: unix_ms(),
            who: operator.chars().take(256).collect(),
            model: model.chars().take(256).collect(),
            decision: Decision::Flagged,
            rails: vec!["license.forbidden_override".into()],
            prompt_tokens: 0,
            completion_tokens: 0,
            request_id: String::new(),
            prompt: None,
        })
        .context("writing the license override to the audit log")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_table_in_the_license_config_is_warned_about() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("moat.toml");
        std::fs::write(
            &config,
            "[deploymnet]\ncommercial = true\n\n[deployment]\neu_based = true\n\n[guard]\n",
        )
        .expect("config");
        let warnings = unknown_table_warnings(dir.path(), Some(&config));
        assert_eq!(
            warnings,
            ["warning: moat.toml: [deploymnet] is not a table moat reads; it is ignored (a typo?)"]
        );
        // The profile still comes from the table that is spelt right.
        let profile = config_profile(dir.path(), Some(&config)).expect("profile");
        assert!(profile.eu_based && !profile.commercial, "{profile:?}");
    }

    #[test]
    fn a_config_of_known_tables_gives_no_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("moat.toml");
        std::fs::write(&config, "[deployment]\ncommercial = true\n[audit]\n").expect("config");
        assert!(unknown_table_warnings(dir.path(), Some(&config)).is_empty());
    }
}
