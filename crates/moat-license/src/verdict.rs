//! The answer of the gate and its parts: `Verdict`, `Finding`, `Obligation`, `Citation`, and
//! the closed sets they use. Plain data with stable snake_case serde names, so that
//! `moat license check --json` and CI scripts can rely on them; the logic is in `check.rs`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::detect::Detection;
use crate::id::LicenseId;

/// The gate's answer, for one dimension or for the whole deployment.
///
/// Exit codes for CI (`moat license check`), returned by [`Outcome::exit_code`]:
///
/// | outcome                    | exit code |
/// |----------------------------|-----------|
/// | `allowed`                  | 0         |
/// | `allowed_with_obligations` | 10        |
/// | `forbidden`                | 20        |
/// | `unknown`                  | 30        |
///
/// The CLI keeps 1 (runtime error) and 2 (usage error) for itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing in the license stands in the way, and nothing needs doing.
    Allowed,
    /// Allowed if you do what the obligations list.
    AllowedWithObligations,
    /// The license does not allow this deployment; `deciding` quotes the clause.
    Forbidden,
    /// The facts do not decide: no license found, one the fact base does not know, files that
    /// disagree, or facts marked unverified.
    Unknown,
}

impl Outcome {
    pub const ALLOWED_EXIT_CODE: u8 = 0;
    pub const OBLIGATIONS_EXIT_CODE: u8 = 10;
    pub const FORBIDDEN_EXIT_CODE: u8 = 20;
    pub const UNKNOWN_EXIT_CODE: u8 = 30;

    /// The process exit code for this verdict: 0 allowed, 10 allowed with obligations,
    /// 20 forbidden, 30 unknown. Spaced out so a CI script can test ranges, and clear of the
    /// CLI's own error codes 1 and 2.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Allowed => Self::ALLOWED_EXIT_CODE,
            Outcome::AllowedWithObligations => Self::OBLIGATIONS_EXIT_CODE,
            Outcome::Forbidden => Self::FORBIDDEN_EXIT_CODE,
            Outcome::Unknown => Self::UNKNOWN_EXIT_CODE,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::AllowedWithObligations => "allowed with obligations",
            Outcome::Forbidden => "forbidden",
            Outcome::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One question the gate asks of a license. Declared in the order findings are listed and
/// the deciding finding is picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Always asked: may you run the model yourself, non-commercially, at all?
    Grant,
    CommercialUse,
    /// Monthly active users over the license's cap.
    UserCap,
    /// Monthly revenue over the license's cap.
    RevenueCap,
    /// Serving the model to third parties (an API, a hosted app).
    ThirdPartyApi,
    /// Redistributing the weights or a derivative (a fine-tune, a quantization).
    Redistribution,
    /// Training other models on the model's outputs.
    OutputTraining,
    /// The deployer is an individual domiciled in, or a company based in, the EU.
    EuBased,
}

impl Dimension {
    pub const ALL: [Dimension; 8] = [
        Dimension::Grant,
        Dimension::CommercialUse,
        Dimension::UserCap,
        Dimension::RevenueCap,
        Dimension::ThirdPartyApi,
        Dimension::Redistribution,
        Dimension::OutputTraining,
        Dimension::EuBased,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Dimension::Grant => "use of the model",
            Dimension::CommercialUse => "commercial use",
            Dimension::UserCap => "monthly active users",
            Dimension::RevenueCap => "monthly revenue",
            Dimension::ThirdPartyApi => "serving third parties",
            Dimension::Redistribution => "redistributing weights or derivatives",
            Dimension::OutputTraining => "training models on outputs",
            Dimension::EuBased => "EU-based deployer",
        }
    }
}

/// How sure the fact base is of a fact, weakest first (so `min` gives the weakest link).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Certainty {
    /// Not confirmed from any text. Never decides allowed or forbidden on its own.
    Unverified,
    /// Quoted consistently by third parties; the full text was not read.
    Secondary,
    /// The full text was read, from a third party's verbatim copy.
    VerbatimCopy,
    /// Read from the vendor's own file (or a standard license text).
    Primary,
}

/// Whether a citation quotes a clause of the license, or a field of the fact base where the
/// fact base quotes no clause for the question.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CitationBasis {
    /// `reference` is a clause ref such as `1.b.v`; `quote` is the license's words.
    QuotedClause,
    /// `reference` is a fact-base field such as `mau_rule`; `quote` is the fact base's
    /// summary, not the license's words.
    FactBaseField,
}

/// The clause a finding or obligation rests on, with where it was read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Citation {
    #[serde(rename = "ref")]
    pub reference: String,
    pub basis: CitationBasis,
    pub quote: String,
    /// Where the fact base read the license text (repository, commit, file).
    pub source: String,
    /// The license's canonical address.
    pub url: String,
}

impl fmt::Display for Citation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.basis {
            CitationBasis::QuotedClause => {
                write!(f, "clause {}: \"{}\"", self.reference, self.quote)
            }
            CitationBasis::FactBaseField => write!(
                f,
                "fact-base field `{}` (no clause quoted): \"{}\"",
                self.reference, self.quote
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObligationKind {
    /// Display a phrase such as "Built with Llama", or credit the licensor.
    Attribution,
    /// A rule for naming models built with this one.
    Naming,
    /// Ship a Notice file with fixed text.
    NoticeFile,
    /// Give recipients or users a copy of the license.
    LicenseCopy,
    /// Make the license's use restrictions binding on your users or recipients.
    UsePolicyPassThrough,
    /// Mark files you changed.
    ModifiedFilesNotice,
    /// Keep the copyright and license notices you received.
    RetainNotices,
    /// What you build stays under (some of) this license's terms.
    DerivativeTerms,
}

/// Something the deployment must do to stay within the license.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Obligation {
    pub kind: ObligationKind,
    pub text: String,
    pub clause: Citation,
}

/// The license's answer to one dimension of the deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub dimension: Dimension,
    pub outcome: Outcome,
    pub certainty: Certainty,
    pub clause: Citation,
    pub explanation: String,
}

/// The gate's answer for one model and deployment profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    /// `outcome.exit_code()`, repeated for JSON readers.
    pub exit_code: u8,
    pub license_id: Option<LicenseId>,
    pub license_name: Option<String>,
    pub license_url: Option<String>,
    /// The fact base's verification text for the license, verbatim.
    pub verification: Option<String>,
    /// The weakest certainty among the findings (unverified when no license was found).
    pub certainty: Certainty,
    /// True when the license came from a manifest override, so unverified facts were used.
    pub overridden: bool,
    /// One line for humans.
    pub summary: String,
    /// The finding that decided the outcome: the first forbidden one, else the first unknown,
    /// else the first with obligations, else the grant. `None` only when no license was
    /// identified (see `detection`).
    pub deciding: Option<Finding>,
    /// One finding per dimension the profile raises, in `Dimension` order.
    pub findings: Vec<Finding>,
    /// What to do, from the findings allowed with obligations, without duplicates. Empty when
    /// the outcome is forbidden; for unknown, what the decided dimensions already require.
    pub obligations: Vec<Obligation>,
    /// Assumptions the gate made, such as an undeclared user count below a cap.
    pub notes: Vec<String>,
    pub detection: Detection,
}
