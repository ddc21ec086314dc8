//! The crate's one error type. Verdicts are not errors: an unknown or forbidden license is an
//! answer (`Outcome`), so the only failure is a license id the fact base does not know.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LicenseError {
    /// A license id given by the user (a manifest override, a CLI flag) that names no license
    /// in the fact base.
    #[error("{}", unknown_license_message(given, suggestions))]
    UnknownLicense {
        given: String,
        suggestions: Vec<String>,
    },
}

fn unknown_license_message(given: &str, suggestions: &[String]) -> String {
    let mut message = format!("\"{given}\" is not a license in the fact base");
    if !suggestions.is_empty() {
        message.push_str(&format!("; did you mean {}?", suggestions.join(", ")));
    }
    message.push_str(" (`moat license list` shows them all)");
    message
}
