//! The `Guard` seam and its rule-based implementation: findings from the detectors, actions
//! from the rail's policy, and the verdict (the text to forward, what was hit, the redaction
//! map). `AllowAll` is the seam's fake.

use std::sync::Arc;

use crate::detect::{CustomRule, Detectors, Families, Finding};
use crate::error::{GuardError, Rail};
use crate::policy::{Action, CompiledPolicy, GuardConfig, LimitsConfig};
use crate::redact::RedactionMap;
use crate::stream::OutputScanner;

/// A finding and the action the policy took on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub finding: Finding,
    pub action: Action,
}

/// The outcome of checking one text.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The strongest action taken (`Allow` when nothing was hit).
    pub decision: Action,
    /// The text to forward: the original with redactions applied; empty when blocked.
    pub text: String,
    /// Every finding the policy acts on (allowed ones are left out), in text order.
    pub hits: Vec<Hit>,
    /// Placeholders given in `text`, to restore them in the answer if configured.
    pub redactions: RedactionMap,
}

impl Verdict {
    /// `Err(GuardError::Blocked)` when the decision is block, else the verdict.
    pub fn into_result(self, rail: Rail) -> Result<Verdict, GuardError> {
        if self.decision == Action::Block {
            Err(GuardError::Blocked {
                rail,
                classes: blocked_classes(&self.hits),
            })
        } else {
            Ok(self)
        }
    }
}

/// The guard seam: the server checks requests and wraps answers with it.
pub trait Guard: Send + Sync {
    /// Checks a request's text under the input rail.
    fn check_input(&self, text: &str) -> Result<Verdict, GuardError>;
    /// Checks a whole answer under the output rail.
    fn check_output(&self, text: &str) -> Result<Verdict, GuardError>;
    /// A scanner for one streamed answer under the output rail.
    fn output_scanner(&self) -> Box<dyn OutputScan>;
}

/// Scans a streamed answer as it flows (see `OutputScanner` for the hold-back rule).
pub trait OutputScan: Send {
    /// Adds a delta; returns the text that is safe to send now, or `Blocked`.
    fn push(&mut self, delta: &str) -> Result<String, GuardError>;
    /// Ends the stream; returns the rest, or `Blocked`.
    fn finish(&mut self) -> Result<String, GuardError>;
    /// What the scan hit so far, spans relative to the whole answer.
    fn hits(&self) -> &[Hit];
    /// Placeholders given in the answer so far.
    fn redactions(&self) -> &RedactionMap;
}

/// The classes behind block actions, deduplicated, for the error message.
pub(crate) fn blocked_classes(hits: &[Hit]) -> Vec<String> {
    let mut classes: Vec<String> = hits
        .iter()
        .filter(|hit| hit.action == Action::Block)
        .map(|hit| hit.finding.class.name().to_string())
        .collect();
    classes.sort();
    classes.dedup();
    classes
}

/// The built-in guard: pattern and checksum detectors under a configured policy. Cloning is
/// cheap (one `Arc`), so every request and stream can hold one.
#[derive(Clone)]
pub struct RuleGuard {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) detectors: Detectors,
    pub(crate) rules: usize,
    pub(crate) input: RailState,
    pub(crate) output: RailState,
    pub(crate) limits: LimitsConfig,
}

/// A rail's policy and which detectors it needs.
pub(crate) struct RailState {
    pub(crate) policy: CompiledPolicy,
    pub(crate) families: Families,
    pub(crate) custom: bool,
}

impl RailState {
    fn new(policy: CompiledPolicy, rules: &[CustomRule]) -> RailState {
        RailState {
            families: policy.families,
            custom: policy.acts_on_custom(rules),
            policy,
        }
    }
}

impl RuleGuard {
    /// Compiles a configuration; every invalid field is a `GuardError::Config` naming it.
    pub fn new(config: &GuardConfig) -> Result<RuleGuard, GuardError> {
        config.validate_limits()?;
        let rules = config.compile_rules()?;
        let input = RailState::new(CompiledPolicy::new(&config.input, "input", &rules)?, &rules);
        let output = RailState::new(
            CompiledPolicy::new(&config.output, "output", &rules)?,
            &rules,
        );
        let rule_count = rules.len();
        Ok(RuleGuard {
            inner: Arc::new(Inner {
                detectors: Detectors::new(rules, config.entropy_params()),
                rules: rule_count,
                input,
                output,
                limits: config.limits,
            }),
        })
    }

    /// Every finding in `text` from every detector and rule, whatever the policy says: for
    /// moderation endpoints and the labeled evaluation.
    pub fn findings(&self, text: &str) -> Result<Vec<Finding>, GuardError> {
        self.inner.check_len(text, Rail::Input)?;
        let all = Families {
            pii: true,
            secrets: true,
            injection: true,
        };
        Ok(self.inner.detectors.scan(text, all, true))
    }

    /// A concrete scanner (the trait object is `Guard::output_scanner`).
    pub fn scanner(&self) -> OutputScanner {
        OutputScanner::new(Arc::clone(&self.inner))
    }
}

impl Inner {
    pub(crate) fn check_len(&self, text: &str, rail: Rail) -> Result<(), GuardError> {
        if text.len() > self.limits.max_text_bytes {
            return Err(GuardError::TooLarge {
                rail,
                len: text.len(),
                limit: self.limits.max_text_bytes,
            });
        }
        Ok(())
    }

    pub(crate) fn rail(&self, rail: Rail) -> &RailState {
        match rail {
            Rail::Input => &self.input,
            Rail::Output => &self.output,
        }
    }

    /// The findings a rail acts on, with their actions.
    pub(crate) fn hits(&self, findings: Vec<Finding>, rail: Rail) -> Vec<Hit> {
        let state = self.rail(rail);
        findings
            .into_iter()
            .filter_map(|finding| {
                let action = state.policy.action_for(&finding.class, finding.confidence);
                (action != Action::Allow).then_some(Hit { finding, action })
            })
            .collect()
    }

    pub(crate) fn scan(&self, text: &str, rail: Rail) -> Vec<Finding> {
        let state = self.rail(rail);
        let nothing = !(state.families.pii || state.families.secrets || state.families.injection);
        if nothing && !(state.custom && self.rules > 0) {
            return Vec::new();
        }
        self.detectors.scan(text, state.families, state.custom)
    }

    fn check(&self, text: &str, rail: Rail) -> Result<Verdict, GuardError> {
        self.check_len(text, rail)?;
        let hits = self.hits(self.scan(text, rail), rail);
        let mut redactions = RedactionMap::default();
        let decision = hits
            .iter()
            .map(|hit| hit.action)
            .max()
            .unwrap_or(Action::Allow);
        let text = if decision == Action::Block {
            String::new()
        } else {
            apply_redactions(text, &hits, 0, &mut redactions)
        };
        Ok(Verdict {
            decision,
            text,
            hits,
            redactions,
        })
    }
}

/// `text` with the redact hits replaced by placeholders; hit spans are `offset` bytes ahead
/// of `text`'s start (streams pass what they released before).
pub(crate) fn apply_redactions(
    text: &str,
    hits: &[Hit],
    offset: usize,
    redactions: &mut RedactionMap,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for hit in hits.iter().filter(|hit| hit.action == Action::Redact) {
        let start = hit.finding.span.start - offset;
        let end = hit.finding.span.end - offset;
        out.push_str(&text[at..start]);
        out.push_str(&redactions.placeholder_for(&hit.finding.class, &text[start..end]));
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

impl Guard for RuleGuard {
    fn check_input(&self, text: &str) -> Result<Verdict, GuardError> {
        self.inner.check(text, Rail::Input)
    }

    fn check_output(&self, text: &str) -> Result<Verdict, GuardError> {
        self.inner.check(text, Rail::Output)
    }

    fn output_scanner(&self) -> Box<dyn OutputScan> {
        Box::new(self.scanner())
    }
}

/// The seam's fake: allows everything, finds nothing. For tests of code that takes a `Guard`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

struct PassThrough(RedactionMap);

impl OutputScan for PassThrough {
    fn push(&mut self, delta: &str) -> Result<String, GuardError> {
        Ok(delta.to_string())
    }
    fn finish(&mut self) -> Result<String, GuardError> {
        Ok(String::new())
    }
    fn hits(&self) -> &[Hit] {
        &[]
    }
    fn redactions(&self) -> &RedactionMap {
        &self.0
    }
}

impl Guard for AllowAll {
    fn check_input(&self, text: &str) -> Result<Verdict, GuardError> {
        Ok(Verdict {
            decision: Action::Allow,
            text: text.to_string(),
            hits: Vec::new(),
            redactions: RedactionMap::default(),
        })
    }

    fn check_output(&self, text: &str) -> Result<Verdict, GuardError> {
        self.check_input(text)
    }

    fn output_scanner(&self) -> Box<dyn OutputScan> {
        Box::new(PassThrough(RedactionMap::default()))
    }
}
