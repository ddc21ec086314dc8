//! The rules file, `data/rules.toml`: per license and deployment dimension, the outcome the
//! facts support, the clause that decides it and how sure that is. This module parses the
//! file, resolves every citation against the fact base and checks the two agree; it does not
//! look at deployment profiles (that is `check`).

use std::collections::HashSet;

use serde::Deserialize;

use crate::facts::{contains_ignore_case, LicenseFacts};
use crate::verdict::{
    Certainty, Citation, CitationBasis, Dimension, Obligation, ObligationKind, Outcome,
};

pub(crate) const RULES_TOML: &str = include_str!("../data/rules.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RulesFile {
    pub schema_version: u32,
    #[serde(default)]
    pub out_of_scope_titles: Vec<String>,
    pub license: Vec<LicenseRules>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LicenseRules {
    pub id: String,
    pub certainty: Certainty,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ignore_names: Vec<String>,
    #[serde(default)]
    pub titles: Vec<String>,
    #[serde(default)]
    pub markers: Vec<String>,
    pub rule: Vec<RuleWire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleWire {
    dimension: Dimension,
    outcome: Outcome,
    clause: Option<String>,
    field: Option<String>,
    pick: Option<String>,
    certainty: Option<Certainty>,
    cap: Option<u64>,
    #[serde(default)]
    requires_commercial: bool,
    #[serde(default)]
    multimodal_only: bool,
    if_modality_unknown: Option<ModalityAssumption>,
    why: String,
    #[serde(default)]
    obligation: Vec<ObligationWire>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObligationWire {
    kind: ObligationKind,
    text: String,
    clause: Option<String>,
    field: Option<String>,
    pick: Option<String>,
}

/// What to assume about a model's modality when the profile does not say.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ModalityAssumption {
    Multimodal,
    TextOnly,
    /// Do not assume: the answer is unknown until the profile says.
    Ask,
}

/// A rule with its citations resolved against the fact base.
#[derive(Debug)]
pub(crate) struct Rule {
    pub dimension: Dimension,
    pub outcome: Outcome,
    pub certainty: Certainty,
    pub citation: Citation,
    pub cap: Option<u64>,
    pub requires_commercial: bool,
    /// `Some` only for clauses that cover multimodal models alone.
    pub multimodal_only: Option<ModalityAssumption>,
    pub why: String,
    pub obligations: Vec<Obligation>,
}

/// Dimensions every license must answer; the two caps are required exactly when the fact base
/// records a cap.
const REQUIRED_DIMENSIONS: [Dimension; 6] = [
    Dimension::Grant,
    Dimension::CommercialUse,
    Dimension::ThirdPartyApi,
    Dimension::Redistribution,
    Dimension::OutputTraining,
    Dimension::EuBased,
];

impl LicenseRules {
    /// Resolves this license's rules against its facts, adding every disagreement between the
    /// two to `problems`.
    pub fn resolve(&self, facts: &LicenseFacts, problems: &mut Vec<String>) -> Vec<Rule> {
        let license_problems_before = problems.len();
        self.check_license_certainty(facts, problems);
        let mut seen = HashSet::new();
        let mut rules = Vec::new();
        for wire in &self.rule {
            if !seen.insert(wire.dimension) {
                problems.push(format!("{}: two rules for {:?}", self.id, wire.dimension));
            }
            if let Some(rule) = self.resolve_rule(wire, facts, problems) {
                rules.push(rule);
            }
        }
        for dimension in REQUIRED_DIMENSIONS {
            if !seen.contains(&dimension) {
                problems.push(format!("{}: no rule for {dimension:?}", self.id));
            }
        }
        check_cap(
            &self.id,
            Dimension::UserCap,
            facts.mau_limit,
            &rules,
            problems,
        );
        check_cap(
            &self.id,
            Dimension::RevenueCap,
            facts.revenue_limit,
            &rules,
            problems,
        );
        if problems.len() > license_problems_before {
            return Vec::new();
        }
        rules.sort_by_key(|rule| rule.dimension);
        rules
    }

    fn check_license_certainty(&self, facts: &LicenseFacts, problems: &mut Vec<String>) {
        if let Some(expected) = certainty_from_verification(&facts.verification) {
            if self.certainty != expected {
                problems.push(format!(
                    "{}: certainty {:?} but the fact base says verification {:?}",
                    self.id, self.certainty, facts.verification
                ));
            }
        }
    }

    fn resolve_rule(
        &self,
        wire: &RuleWire,
        facts: &LicenseFacts,
        problems: &mut Vec<String>,
    ) -> Option<Rule> {
        let at = format!("{} {:?}", self.id, wire.dimension);
        let certainty = wire.certainty.unwrap_or(self.certainty);
        let citation = cite(facts, &wire.clause, &wire.field, &wire.pick, &at, problems)?;
        let mut obligations = Vec::new();
        for obligation in &wire.obligation {
            let at = format!("{at} obligation {:?}", obligation.kind);
            let clause = cite(
                facts,
                &obligation.clause,
                &obligation.field,
                &obligation.pick,
                &at,
                problems,
            )?;
            check_certainty_marks(&clause, certainty, &at, problems);
            let text = fill_placeholders(&obligation.text, facts, &at, problems)?;
            obligations.push(Obligation {
                kind: obligation.kind,
                text,
                clause,
            });
        }
        check_certainty_marks(&citation, certainty, &at, problems);
        if certainty_from_verification(&facts.verification) == Some(Certainty::Unverified)
            && certainty != Certainty::Unverified
        {
            problems.push(format!(
                "{at}: the license's terms are unverified, so the rule must be unverified too"
            ));
        }
        check_shape(wire, &at, problems);
        Some(Rule {
            dimension: wire.dimension,
            outcome: wire.outcome,
            certainty,
            citation,
            cap: wire.cap,
            requires_commercial: wire.requires_commercial,
            multimodal_only: wire
                .multimodal_only
                .then(|| wire.if_modality_unknown.unwrap_or(ModalityAssumption::Ask)),
            why: wire.why.clone(),
            obligations,
        })
    }
}

/// The fields a rule may carry depend on its dimension; obligations go with their outcome.
fn check_shape(wire: &RuleWire, at: &str, problems: &mut Vec<String>) {
    let is_cap = matches!(wire.dimension, Dimension::UserCap | Dimension::RevenueCap);
    if is_cap != wire.cap.is_some() {
        problems.push(format!(
            "{at}: `cap` belongs on user_cap and revenue_cap rules, and only there"
        ));
    }
    if wire.requires_commercial && wire.dimension != Dimension::UserCap {
        problems.push(format!(
            "{at}: `requires_commercial` applies only to user_cap"
        ));
    }
    let modality_fields = wire.multimodal_only || wire.if_modality_unknown.is_some();
    if modality_fields && wire.dimension != Dimension::EuBased {
        problems.push(format!("{at}: modality fields apply only to eu_based"));
    }
    if wire.if_modality_unknown.is_some() && !wire.multimodal_only {
        problems.push(format!(
            "{at}: `if_modality_unknown` needs `multimodal_only = true`"
        ));
    }
    let has_obligations = !wire.obligation.is_empty();
    if has_obligations != (wire.outcome == Outcome::AllowedWithObligations) {
        problems.push(format!(
            "{at}: obligations go with outcome allowed_with_obligations, and it needs some"
        ));
    }
    if wire.why.trim().is_empty() {
        problems.push(format!("{at}: `why` is empty"));
    }
}

fn check_cap(
    id: &str,
    dimension: Dimension,
    fact: Option<u64>,
    rules: &[Rule],
    problems: &mut Vec<String>,
) {
    let rule_cap = rules
        .iter()
        .find(|rule| rule.dimension == dimension)
        .map(|rule| rule.cap);
    match (fact, rule_cap) {
        (None, None) => {}
        (Some(fact), Some(Some(cap))) if fact == cap => {}
        (fact, rule_cap) => problems.push(format!(
            "{id}: {dimension:?} rule cap {rule_cap:?} does not match the fact base's {fact:?}"
        )),
    }
}

/// Resolves a `clause`/`field` reference (exactly one of them) into a citation.
fn cite(
    facts: &LicenseFacts,
    clause: &Option<String>,
    field: &Option<String>,
    pick: &Option<String>,
    at: &str,
    problems: &mut Vec<String>,
) -> Option<Citation> {
    let pick = pick.as_deref();
    let (reference, basis, quote) = match (clause, field) {
        (Some(reference), None) => {
            let Some(found) = facts.clause(reference, pick) else {
                problems.push(format!(
                    "{at}: no clause {reference:?} (pick {pick:?}) in the fact base"
                ));
                return None;
            };
            (
                reference.clone(),
                CitationBasis::QuotedClause,
                found.quote.clone(),
            )
        }
        (None, Some(path)) => {
            let Some(text) = facts.field_text(path, pick) else {
                problems.push(format!(
                    "{at}: no field {path:?} (pick {pick:?}) in the fact base"
                ));
                return None;
            };
            (path.clone(), CitationBasis::FactBaseField, text)
        }
        _ => {
            problems.push(format!("{at}: give exactly one of `clause` and `field`"));
            return None;
        }
    };
    Some(Citation {
        reference,
        basis,
        quote,
        source: facts.source.clone(),
        url: facts.url.clone(),
    })
}

/// A rule must be no surer than the facts it cites: text marked unverified makes it
/// unverified, text marked secondary makes it at most secondary.
fn check_certainty_marks(
    citation: &Citation,
    certainty: Certainty,
    at: &str,
    problems: &mut Vec<String>,
) {
    let cited = format!("{} {}", citation.reference, citation.quote);
    if marks_unverified(&cited) && certainty != Certainty::Unverified {
        problems.push(format!(
            "{at}: cites text marked unverified but has certainty {certainty:?}"
        ));
    }
    if contains_ignore_case(&cited, "secondary") && certainty > Certainty::Secondary {
        problems.push(format!(
            "{at}: cites text marked secondary but has certainty {certainty:?}"
        ));
    }
}

pub(crate) fn marks_unverified(text: &str) -> bool {
    contains_ignore_case(text, "unverified")
        || ["(U)", "(U;", "(U,"].iter().any(|m| text.contains(m))
}

/// The certainty a license-level verification string implies, where it implies one
/// ("partial ..." and "standard licence ..." leave it to the rules file).
pub(crate) fn certainty_from_verification(verification: &str) -> Option<Certainty> {
    let lower = verification.to_lowercase();
    if lower.contains("unverified") {
        Some(Certainty::Unverified)
    } else if lower.starts_with("primary") {
        Some(Certainty::Primary)
    } else if lower.starts_with("verbatim copy") {
        Some(Certainty::VerbatimCopy)
    } else if lower.starts_with("secondary") {
        Some(Certainty::Secondary)
    } else {
        None
    }
}

/// Replaces `{field:PATH}` with the text of that fact-base field.
fn fill_placeholders(
    text: &str,
    facts: &LicenseFacts,
    at: &str,
    problems: &mut Vec<String>,
) -> Option<String> {
    let mut filled = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{field:") {
        filled.push_str(&rest[..start]);
        let after = &rest[start + "{field:".len()..];
        let Some(end) = after.find('}') else {
            problems.push(format!("{at}: unclosed placeholder in {text:?}"));
            return None;
        };
        let path = &after[..end];
        let Some(value) = facts.field_string(path) else {
            problems.push(format!(
                "{at}: placeholder field {path:?} is not a string in the fact base"
            ));
            return None;
        };
        filled.push_str(value);
        rest = &after[end + 1..];
    }
    filled.push_str(rest);
    Some(filled)
}
