//! The license gate: which license a model is under, and whether a deployment may use it.
//!
//! Facts come from `data/licenses.json` (a copy of the shared fact base) and decisions from
//! `data/rules.toml` (one reviewed rule per license and deployment dimension); both are
//! compiled in and checked against each other when first used.
//!
//! ```text
//! LicenseEvidence --detect--> Detection --+
//!                                         +--check--> Verdict { outcome, findings, obligations }
//! DeploymentProfile ----------------------+
//! ```
//!
//! Every finding cites the clause (or, where the fact base quotes none, the fact-base field)
//! it rests on. Facts the fact base marks unverified give `Unknown`, unless the license was
//! set by a manifest override. `Outcome::exit_code` gives the CLI's exit codes (0, 10, 20, 30).
//!
//! This crate reads no files and knows nothing of the CLI or the store: callers gather the
//! evidence and print the verdict.
//!
//! ```
//! use moat_license::{check, detect, DeploymentProfile, GgufLicenseKeys, LicenseDecisionInput, LicenseEvidence, Outcome};
//!
//! let evidence = LicenseEvidence {
//!     gguf: GgufLicenseKeys { license: Some("llama3.1".into()), ..GgufLicenseKeys::default() },
//!     ..LicenseEvidence::default()
//! };
//! let profile = DeploymentProfile { commercial: true, monthly_active_users: Some(800_000_000), ..DeploymentProfile::default() };
//! let verdict = check(&LicenseDecisionInput { detection: detect(&evidence), profile });
//! assert_eq!(verdict.outcome, Outcome::Forbidden);
//! assert_eq!(verdict.exit_code, 20);
//! ```

mod check;
mod detect;
mod error;
mod facts;
mod id;
mod knowledge;
mod profile;
mod rules;
mod verdict;

use serde::Serialize;

pub use check::{check, LicenseDecisionInput};
pub use detect::{
    detect, Detection, DetectionStatus, GgufLicenseKeys, LicenseEvidence, LicenseSource, Reading,
};
pub use error::LicenseError;
pub use facts::Commercial;
pub use id::LicenseId;
pub use profile::{DeploymentProfile, ProfileOverrides};
pub use verdict::{
    Certainty, Citation, CitationBasis, Dimension, Finding, Obligation, ObligationKind, Outcome,
    Verdict,
};

/// One line of `moat license list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LicenseSummary {
    pub id: LicenseId,
    pub names: Vec<String>,
    /// The fact base's verification text, verbatim.
    pub verification: String,
    /// The rules file's default certainty for this license.
    pub certainty: Certainty,
    pub commercial: Commercial,
    pub mau_cap: Option<u64>,
    /// Monthly revenue cap in USD.
    pub revenue_cap: Option<u64>,
    pub url: String,
}

/// Every license in the fact base, in its order.
pub fn list() -> impl Iterator<Item = LicenseSummary> {
    let knowledge = knowledge::knowledge();
    knowledge
        .entries()
        .iter()
        .enumerate()
        .map(move |(index, entry)| LicenseSummary {
            id: knowledge.id_of(index),
            names: entry.facts.names.clone(),
            verification: entry.facts.verification.clone(),
            certainty: entry.certainty,
            commercial: entry.commercial(),
            mau_cap: entry.facts.mau_limit,
            revenue_cap: entry.facts.revenue_limit,
            url: entry.facts.url.clone(),
        })
}
