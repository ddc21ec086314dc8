//! The detectors: each finds candidates in the normalised view, a validator (checksum, range,
//! entropy, decoding) keeps the real ones, and overlaps are settled so one stretch of text is
//! one finding. Spans are mapped back to the original text here and nowhere else.
//!
//! Knows nothing of policies or actions.

mod injection;
mod pii;
mod secrets;

pub(crate) use secrets::MAX_TOKEN_BYTES;

use std::ops::Range;

use regex::Regex;

use crate::class::Class;
use crate::normalize::Normalized;

/// One thing a detector found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// What was found.
    pub class: Class,
    /// Byte range in the ORIGINAL text (zero-width characters inside it included), so that a
    /// redaction replaces exactly the bytes that carried it.
    pub span: Range<usize>,
    /// The matched value as detectors saw it: normalised (fullwidth folded, zero-width
    /// removed) and, for base64-wrapped findings, decoded.
    pub value: String,
    /// How sure the detector is, 0..=1: checksum-validated matches near 1, context-free
    /// heuristics lower. Policies may ignore findings below a threshold.
    pub confidence: f32,
}

/// A finding in normalised coordinates, before overlaps are settled.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub class: Class,
    pub range: Range<usize>,
    pub value: String,
    pub confidence: f32,
}

impl Candidate {
    fn new(class: Class, range: Range<usize>, text: &str, confidence: f32) -> Candidate {
        Candidate {
            class,
            value: text[range.clone()].to_string(),
            range,
            confidence,
        }
    }
}

/// A user rule compiled: keywords (case-insensitive, whole words) and regexes.
#[derive(Debug)]
pub(crate) struct CustomRule {
    pub class: Class,
    pub patterns: Vec<Regex>,
}

/// Which detector families run; the guard turns off the ones no policy acts on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Families {
    pub pii: bool,
    pub secrets: bool,
    pub injection: bool,
}

/// Every built-in detector, compiled once per guard.
pub(crate) struct Detectors {
    pii: pii::PiiDetectors,
    secrets: secrets::SecretDetectors,
    injection: injection::InjectionDetectors,
    custom: Vec<CustomRule>,
    entropy: EntropyParams,
}

/// The generic high-entropy detector's thresholds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntropyParams {
    pub min_length: usize,
    pub min_bits_per_char: f64,
}

impl Detectors {
    pub(crate) fn new(custom: Vec<CustomRule>, entropy: EntropyParams) -> Detectors {
        Detectors {
            pii: pii::PiiDetectors::new(),
            secrets: secrets::SecretDetectors::new(),
            injection: injection::InjectionDetectors::new(),
            custom,
            entropy,
        }
    }

    /// Every finding in `original`, spans in original bytes, sorted by start, not overlapping.
    pub(crate) fn scan(&self, original: &str, families: Families, custom: bool) -> Vec<Finding> {
        self.scan_view(&Normalized::new(original), families, custom)
    }

    /// `scan` over a view the caller already built (streams use the view for their cut too).
    pub(crate) fn scan_view(
        &self,
        view: &Normalized<'_>,
        families: Families,
        custom: bool,
    ) -> Vec<Finding> {
        let candidates = self.candidates(view.text(), families, custom, true);
        settle_overlaps(candidates)
            .into_iter()
            .map(|candidate| Finding {
                span: view.to_original(candidate.range),
                class: candidate.class,
                value: candidate.value,
                confidence: candidate.confidence,
            })
            .collect()
    }

    /// Candidates in normalised coordinates. `decode_base64` is false inside decoded text, so
    /// wrapping is undone once and nested wrapping cannot multiply the work.
    pub(crate) fn candidates(
        &self,
        text: &str,
        families: Families,
        custom: bool,
        decode_base64: bool,
    ) -> Vec<Candidate> {
        let mut out = Vec::new();
        if families.pii {
            self.pii.scan(text, &mut out);
        }
        if families.secrets {
            self.secrets.scan(text, self.entropy, &mut out);
        }
        if families.injection {
            self.injection.scan(text, &mut out);
        }
        for rule in self.custom.iter().filter(|_| custom) {
            for pattern in &rule.patterns {
                for found in pattern.find_iter(text) {
                    if !found.is_empty() {
                        out.push(Candidate::new(rule.class.clone(), found.range(), text, 1.0));
                    }
                }
            }
        }
        if decode_base64 && (families.pii || families.secrets) {
            let inner_families = Families {
                injection: false,
                ..families
            };
            secrets::scan_base64(text, &mut out, |decoded| {
                self.candidates(decoded, inner_families, false, false)
            });
        }
        out
    }
}

/// How much a class wins an overlap: specific formats beat generic ones.
fn priority(class: &Class) -> u8 {
    match class {
        Class::PrivateKey | Class::Jwt => 9,
        Class::AwsAccessKeyId
        | Class::GithubToken
        | Class::GitlabToken
        | Class::SlackToken
        | Class::GoogleApiKey => 8,
        Class::Email | Class::Iban | Class::Ipv4 | Class::Ipv6 => 7,
        Class::CreditCard | Class::UsSsn => 6,
        Class::Phone => 5,
        Class::AwsSecretAccessKey => 4,
        Class::Custom(_) => 3,
        Class::PromptInjection | Class::Jailbreak => 2,
        Class::HighEntropy => 1,
    }
}

/// Keeps the best of overlapping candidates (priority, then confidence, then length) and
/// returns the survivors sorted by start.
fn settle_overlaps(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    candidates.sort_by(|a, b| {
        priority(&b.class)
            .cmp(&priority(&a.class))
            .then(b.confidence.total_cmp(&a.confidence))
            .then((b.range.end - b.range.start).cmp(&(a.range.end - a.range.start)))
            .then(a.range.start.cmp(&b.range.start))
    });
    let mut kept: Vec<Candidate> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let overlaps = kept.iter().any(|other| {
            candidate.range.start < other.range.end && other.range.start < candidate.range.end
        });
        if !overlaps {
            kept.push(candidate);
        }
    }
    kept.sort_by_key(|candidate| candidate.range.start);
    kept
}

/// Whether the byte before `start` and the byte at `end` are outside `is_token` (so the match
/// is a whole token, not a slice of a longer one).
pub(crate) fn is_whole_token(text: &str, range: &Range<usize>, is_token: fn(u8) -> bool) -> bool {
    let bytes = text.as_bytes();
    let before = range.start == 0 || !is_token(bytes[range.start - 1]);
    let after = range.end >= bytes.len() || !is_token(bytes[range.end]);
    before && after
}
