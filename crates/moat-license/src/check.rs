//! The decision: a detected license and a deployment profile in, a `Verdict` out. Each
//! dimension the profile raises gets one finding from the license's rule; facts marked
//! unverified become `Unknown` unless the license came from a manifest override; then the
//! findings combine: any forbidden > any unknown > any obligation > allowed.

use std::collections::HashSet;

use crate::detect::{Detection, DetectionStatus};
use crate::id::LicenseId;
use crate::knowledge::{knowledge, Entry};
use crate::profile::DeploymentProfile;
use crate::rules::{ModalityAssumption, Rule};
use crate::verdict::{Certainty, CitationBasis, Dimension, Finding, Obligation, Outcome, Verdict};

/// What `check` decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LicenseDecisionInput {
    pub detection: Detection,
    pub profile: DeploymentProfile,
}

/// Decides whether the profile's deployment may use the detected license.
pub fn check(input: &LicenseDecisionInput) -> Verdict {
    let knowledge = knowledge();
    let entry = match (input.detection.status, input.detection.license_id) {
        (DetectionStatus::Identified, Some(id)) => knowledge.entry_by_id(id),
        _ => None,
    };
    match entry {
        Some(entry) => decide(entry, &input.profile, &input.detection),
        None => undetermined(&input.detection),
    }
}

/// A finding plus the obligations it carries, before combination.
struct Answer {
    finding: Finding,
    obligations: Vec<Obligation>,
}

fn decide(entry: &Entry, profile: &DeploymentProfile, detection: &Detection) -> Verdict {
    let overridden = detection.is_overridden();
    let mut notes = Vec::new();
    let answers: Vec<Answer> = Dimension::ALL
        .iter()
        .filter_map(|dimension| entry.rule(*dimension))
        .filter_map(|rule| answer(rule, profile, overridden, &mut notes))
        .collect();
    let deciding = pick_deciding(&answers);
    let outcome = deciding.map_or(Outcome::Unknown, |answer| answer.finding.outcome);
    let deciding = deciding.map(|answer| answer.finding.clone());
    let summary = match &deciding {
        Some(finding) => format!(
            "{outcome}: {} ({}), decided by {} ({})",
            entry.name(),
            entry.id(),
            finding.dimension.describe(),
            citation_label(finding)
        ),
        None => format!(
            "{outcome}: {} ({}): no rule applies",
            entry.name(),
            entry.id()
        ),
    };
    if overridden {
        notes.push("the license was set by a manifest override: facts the fact base marks unverified were used, on your responsibility".to_string());
    }
    Verdict {
        outcome,
        exit_code: outcome.exit_code(),
        license_id: detection.license_id,
        license_name: Some(entry.name().to_string()),
        license_url: Some(entry.facts.url.clone()),
        verification: Some(entry.facts.verification.clone()),
        certainty: answers
            .iter()
            .map(|a| a.finding.certainty)
            .min()
            .unwrap_or(entry.certainty),
        overridden,
        summary,
        // A forbidden deployment cannot go ahead, so what it would owe is noise.
        obligations: if outcome == Outcome::Forbidden {
            Vec::new()
        } else {
            collect_obligations(&answers)
        },
        findings: answers.into_iter().map(|answer| answer.finding).collect(),
        deciding,
        notes,
        detection: detection.clone(),
    }
}

/// The first forbidden finding, else the first unknown, else the first with obligations,
/// else the first (the grant).
fn pick_deciding(answers: &[Answer]) -> Option<&Answer> {
    [
        Outcome::Forbidden,
        Outcome::Unknown,
        Outcome::AllowedWithObligations,
    ]
    .iter()
    .find_map(|wanted| answers.iter().find(|a| a.finding.outcome == *wanted))
    .or_else(|| answers.first())
}

fn collect_obligations(answers: &[Answer]) -> Vec<Obligation> {
    let mut seen = HashSet::new();
    answers
        .iter()
        .filter(|a| a.finding.outcome == Outcome::AllowedWithObligations)
        .flat_map(|a| a.obligations.iter())
        .filter(|o| seen.insert((o.kind, o.text.clone())))
        .cloned()
        .collect()
}

fn citation_label(finding: &Finding) -> String {
    match finding.clause.basis {
        CitationBasis::QuotedClause => format!("clause {}", finding.clause.reference),
        CitationBasis::FactBaseField => {
            format!("fact-base field {}", finding.clause.reference)
        }
    }
}

/// The rule's answer for this profile, or `None` when the profile does not raise the
/// dimension.
fn answer(
    rule: &Rule,
    profile: &DeploymentProfile,
    overridden: bool,
    notes: &mut Vec<String>,
) -> Option<Answer> {
    let asked = match rule.dimension {
        Dimension::Grant => Asked::plain(rule),
        Dimension::CommercialUse => profile.commercial.then(|| Asked::plain(rule))?,
        Dimension::ThirdPartyApi => profile.third_party_api.then(|| Asked::plain(rule))?,
        Dimension::Redistribution => profile.redistribute_weights.then(|| Asked::plain(rule))?,
        Dimension::OutputTraining => profile.train_on_outputs.then(|| Asked::plain(rule))?,
        Dimension::EuBased => profile
            .eu_based
            .then(|| Asked::eu(rule, profile.multimodal))?,
        Dimension::UserCap => Asked::cap(
            rule,
            profile.monthly_active_users,
            profile.commercial,
            "monthly active users",
            notes,
        )?,
        Dimension::RevenueCap => Asked::cap(
            rule,
            profile.monthly_revenue_usd,
            true,
            "USD of monthly revenue",
            notes,
        )?,
    };
    Some(settle(rule, asked, overridden))
}

/// The outcome the facts give for this profile, before the verification policy.
struct Asked {
    outcome: Outcome,
    context: String,
    /// False when the profile itself leaves the answer open (not a question of the facts).
    decided_by_facts: bool,
}

impl Asked {
    fn plain(rule: &Rule) -> Asked {
        Asked {
            outcome: rule.outcome,
            context: String::new(),
            decided_by_facts: true,
        }
    }

    fn eu(rule: &Rule, multimodal: Option<bool>) -> Asked {
        let Some(assumption) = rule.multimodal_only else {
            return Asked::plain(rule);
        };
        let (multimodal, context) = match (multimodal, assumption) {
            (Some(declared), _) => (Some(declared), String::new()),
            (None, ModalityAssumption::Multimodal) => (
                Some(true),
                "Assuming the model is multimodal (the profile does not say). ".to_string(),
            ),
            (None, ModalityAssumption::TextOnly) => (
                Some(false),
                "Assuming the model is text-only (the profile does not say). ".to_string(),
            ),
            (None, ModalityAssumption::Ask) => (None, String::new()),
        };
        match multimodal {
            Some(true) => Asked { outcome: rule.outcome, context, decided_by_facts: true },
            Some(false) => Asked {
                outcome: Outcome::Allowed,
                context: format!("{context}The clause covers multimodal models only, and this one is text-only. "),
                decided_by_facts: true,
            },
            None => Asked {
                outcome: Outcome::Unknown,
                context: "The clause covers multimodal models only; declare whether this model is multimodal (`multimodal = true` or `false`). ".to_string(),
                decided_by_facts: false,
            },
        }
    }

    fn cap(
        rule: &Rule,
        declared: Option<u64>,
        counts: bool,
        what: &str,
        notes: &mut Vec<String>,
    ) -> Option<Asked> {
        let cap = rule.cap?;
        let Some(declared) = declared else {
            notes.push(format!(
                "this license has a cap of {} {what}; the profile does not declare the number, so it was assumed to be below the cap",
                thousands(cap)
            ));
            return None;
        };
        let asked = if rule.requires_commercial && !counts {
            Asked {
                outcome: Outcome::Allowed,
                context: "The cap counts only for commercial use, and this use is not commercial. "
                    .to_string(),
                decided_by_facts: true,
            }
        } else if declared > cap {
            Asked {
                outcome: rule.outcome,
                context: format!(
                    "{} {what} is more than the cap of {}. ",
                    thousands(declared),
                    thousands(cap)
                ),
                decided_by_facts: true,
            }
        } else {
            Asked {
                outcome: Outcome::Allowed,
                context: format!(
                    "{} {what} is within the cap of {}. ",
                    thousands(declared),
                    thousands(cap)
                ),
                decided_by_facts: true,
            }
        };
        Some(asked)
    }
}

/// Applies the verification policy: unverified facts decide only under a manifest override.
fn settle(rule: &Rule, asked: Asked, overridden: bool) -> Answer {
    let unverified = rule.certainty == Certainty::Unverified;
    let (outcome, explanation) = match asked.outcome {
        Outcome::Unknown if !asked.decided_by_facts => (Outcome::Unknown, format!("{}{}", asked.context, rule.why)),
        Outcome::Unknown => (
            Outcome::Unknown,
            format!("{}{} The fact base has no facts that decide this.", asked.context, rule.why),
        ),
        decided if unverified && overridden => (
            decided,
            format!("{}{} Decided on facts the fact base marks unverified, because the license was set by a manifest override.", asked.context, rule.why),
        ),
        decided if unverified => (
            Outcome::Unknown,
            format!(
                "The fact base marks this unverified, so the gate does not decide it (on the facts it has, the answer would be {decided}). {}{} Check the license text, then set the license in the model's manifest to decide on these facts.",
                asked.context, rule.why
            ),
        ),
        decided => (decided, format!("{}{}", asked.context, rule.why)),
    };
    let obligations = if outcome == Outcome::AllowedWithObligations {
        rule.obligations.clone()
    } else {
        Vec::new()
    };
    Answer {
        finding: Finding {
            dimension: rule.dimension,
            outcome,
            certainty: rule.certainty,
            clause: rule.citation.clone(),
            explanation,
        },
        obligations,
    }
}

/// The verdict when no fact-base license was identified.
fn undetermined(detection: &Detection) -> Verdict {
    let source = detection
        .source
        .map_or_else(|| "the model's files".to_string(), |s| format!("the {s}"));
    let raw = detection.raw.as_deref().unwrap_or_default();
    let summary = match detection.status {
        DetectionStatus::NoLicenseNamed => "unknown: the model's files name no license; check the upstream repository and set `license` in the model's manifest".to_string(),
        DetectionStatus::Conflicting => {
            let said: Vec<String> = detection
                .readings
                .iter()
                .filter(|r| r.license_id.is_some())
                .map(|r| format!("the {} says {}", r.source, r.license_id.map_or("?", |id: LicenseId| id.as_str())))
                .collect();
            format!("unknown: the model's files disagree about the license ({}); set `license` in the model's manifest", said.join(", "))
        }
        DetectionStatus::NotInFactBase | DetectionStatus::Identified => {
            format!("unknown: \"{raw}\" (from {source}) is not in the fact base")
        }
    };
    Verdict {
        outcome: Outcome::Unknown,
        exit_code: Outcome::Unknown.exit_code(),
        license_id: None,
        license_name: None,
        license_url: None,
        verification: None,
        certainty: Certainty::Unverified,
        overridden: detection.is_overridden(),
        summary,
        deciding: None,
        findings: Vec::new(),
        obligations: Vec::new(),
        notes: Vec::new(),
        detection: detection.clone(),
    }
}

/// 700000000 -> "700,000,000".
fn thousands(value: u64) -> String {
    let digits: Vec<char> = value.to_string().chars().collect();
    let groups: Vec<String> = digits
        .rchunks(3)
        .rev()
        .map(|group| group.iter().collect())
        .collect();
    groups.join(",")
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(700_000_000), "700,000,000");
        assert_eq!(thousands(20_000_000), "20,000,000");
        assert_eq!(thousands(999), "999");
    }
}
