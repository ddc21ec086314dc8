//! Guard configuration (the `[guard]` tables of moat.toml, per alias and per key) and its
//! compilation: which action each class gets, the user's deny-list and topic rules, limits.
//!
//! ```toml
//! [input.actions]          # class, group (pii, secret, injection, custom) or "default"
//! pii = "redact"
//! secret = "block"
//! injection = "block"
//! [output.actions]
//! pii = "redact"
//! [[rules]]                # a deny-list or topic; its name is a class
//! name = "competitors"
//! keywords = ["acme corp"]
//! regexes = ['(?i)project\s+falcon']
//! ```

use std::collections::BTreeMap;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::class::{Class, Group};
use crate::detect::{CustomRule, EntropyParams, Families};
use crate::error::GuardError;

/// What to do with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Ignore it.
    Allow,
    /// Let the text through and record the finding (audit, metrics).
    Flag,
    /// Replace it with a placeholder such as `[EMAIL_1]`, reversibly.
    Redact,
    /// Refuse the request or stop the answer.
    Block,
}

/// The whole guard configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardConfig {
    /// The rail on requests.
    #[serde(default)]
    pub input: RailPolicy,
    /// The rail on answers, streamed or whole.
    #[serde(default)]
    pub output: RailPolicy,
    /// Deny-lists and topics: each becomes a class named after the rule.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Thresholds of the generic high-entropy detector.
    #[serde(default)]
    pub entropy: EntropyConfig,
    /// Bounds on what the guard scans and holds back.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The classifier rail's policy, when one is configured (the server runs it: it owns
    /// the model that answers).
    #[serde(default)]
    pub classifier: Option<crate::classifier::ClassifierPolicy>,
}

/// The actions of one rail.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RailPolicy {
    /// Class name, group name or `default` → action. The most specific entry wins.
    #[serde(default)]
    pub actions: BTreeMap<String, Action>,
    /// Findings less confident than this are ignored (0 keeps all).
    #[serde(default)]
    pub min_confidence: f32,
}

/// A user rule: whole-word, case-insensitive keywords and/or regexes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub regexes: Vec<String>,
}

/// The high-entropy detector's thresholds (defaults tuned on the training half of the
/// labeled set).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EntropyConfig {
    /// Shortest token considered.
    pub min_length: usize,
    /// Shannon entropy, in bits per character, from which a token counts as random.
    pub min_bits_per_char: f64,
}

impl Default for EntropyConfig {
    fn default() -> Self {
        EntropyConfig {
            min_length: 20,
            min_bits_per_char: 4.0,
        }
    }
}

/// Bounds on the guard's work and on what a stream holds back.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest text `check_input`/`check_output` scans; longer is `GuardError::TooLarge`.
    pub max_text_bytes: usize,
    /// How much (normalised) text a stream holds back: at least the longest match that can
    /// contain whitespace (split numbers, injection phrases, custom regexes). Matches without
    /// whitespace (tokens, emails, keys) are held whole regardless.
    pub stream_window_bytes: usize,
    /// A stream scans once this much new text has arrived, so a token-by-token stream is not
    /// rescanned at every token.
    pub stream_min_batch_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_text_bytes: 1024 * 1024,
            stream_window_bytes: 256,
            stream_min_batch_bytes: 128,
        }
    }
}

const MAX_RULES: usize = 64;
const MAX_PATTERNS_PER_RULE: usize = 256;
const MAX_PATTERN_BYTES: usize = 1000;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl GuardConfig {
    /// This configuration with `overlay` on top: its actions replace these class by class,
    /// its rules are added. Used for per-key settings over per-alias ones.
    pub fn overlay(&self, overlay: &GuardConfig) -> GuardConfig {
        let mut merged = self.clone();
        merged.input.actions.extend(overlay.input.actions.clone());
        merged.output.actions.extend(overlay.output.actions.clone());
        merged.input.min_confidence = merged
            .input
            .min_confidence
            .max(overlay.input.min_confidence);
        merged.output.min_confidence = merged
            .output
            .min_confidence
            .max(overlay.output.min_confidence);
        merged.rules.extend(overlay.rules.iter().cloned());
        if overlay.classifier.is_some() {
            merged.classifier.clone_from(&overlay.classifier);
        }
        merged
    }

    pub(crate) fn validate_limits(&self) -> Result<(), GuardError> {
        let limits = &self.limits;
        if !(1..=64 * 1024 * 1024).contains(&limits.max_text_bytes) {
            return Err(GuardError::config(
                "limits.max_text_bytes",
                "must be 1..=67108864",
            ));
        }
        if !(64..=64 * 1024).contains(&limits.stream_window_bytes) {
            return Err(GuardError::config(
                "limits.stream_window_bytes",
                "must be 64..=65536",
            ));
        }
        if !(1..=64 * 1024).contains(&limits.stream_min_batch_bytes) {
            return Err(GuardError::config(
                "limits.stream_min_batch_bytes",
                "must be 1..=65536",
            ));
        }
        let entropy = &self.entropy;
        if !(8..=512).contains(&entropy.min_length)
            || !(0.0..=8.0).contains(&entropy.min_bits_per_char)
        {
            return Err(GuardError::config(
                "entropy",
                "min_length must be 8..=512 and min_bits_per_char 0..=8",
            ));
        }
        Ok(())
    }

    pub(crate) fn entropy_params(&self) -> EntropyParams {
        EntropyParams {
            min_length: self.entropy.min_length,
            min_bits_per_char: self.entropy.min_bits_per_char,
        }
    }

    /// Compiles the user rules, with bounded counts, lengths and automaton sizes.
    pub(crate) fn compile_rules(&self) -> Result<Vec<CustomRule>, GuardError> {
        if self.rules.len() > MAX_RULES {
            return Err(GuardError::config(
                "rules",
                format!("at most {MAX_RULES} rules"),
            ));
        }
        let mut compiled: Vec<CustomRule> = Vec::with_capacity(self.rules.len());
        for (index, rule) in self.rules.iter().enumerate() {
            let field = format!("rules[{index}]");
            validate_rule_name(&rule.name, &field)?;
            if compiled.iter().any(|other| other.class.name() == rule.name) {
                return Err(GuardError::config(
                    field,
                    format!("duplicate rule name `{}`", rule.name),
                ));
            }
            if rule.keywords.len() > MAX_PATTERNS_PER_RULE
                || rule.regexes.len() > MAX_PATTERNS_PER_RULE
            {
                return Err(GuardError::config(
                    field,
                    format!("at most {MAX_PATTERNS_PER_RULE} keywords and {MAX_PATTERNS_PER_RULE} regexes"),
                ));
            }
            let mut patterns = Vec::new();
            if let Some(pattern) = keyword_pattern(&rule.keywords, &field)? {
                patterns.push(build_regex(&pattern, &format!("{field}.keywords"))?);
            }
            for (n, source) in rule.regexes.iter().enumerate() {
                let field = format!("{field}.regexes[{n}]");
                if source.len() > MAX_PATTERN_BYTES {
                    return Err(GuardError::config(
                        field,
                        format!("longer than {MAX_PATTERN_BYTES} bytes"),
                    ));
                }
                patterns.push(build_regex(source, &field)?);
            }
            if patterns.is_empty() {
                return Err(GuardError::config(
                    field,
                    "a rule needs keywords or regexes",
                ));
            }
            compiled.push(CustomRule {
                class: Class::Custom(rule.name.clone()),
                patterns,
            });
        }
        Ok(compiled)
    }
}

fn validate_rule_name(name: &str, field: &str) -> Result<(), GuardError> {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !plain {
        return Err(GuardError::config(
            format!("{field}.name"),
            "must be 1-64 ASCII letters, digits, `_` or `-`",
        ));
    }
    if Class::parse_built_in(name).is_some() || Group::parse(name).is_some() || name == "default" {
        return Err(GuardError::config(
            format!("{field}.name"),
            format!("`{name}` is a built-in class or group name"),
        ));
    }
    Ok(())
}

/// One alternation of whole-word, case-insensitive keywords (`\b` only where the keyword
/// starts or ends with a word character, so "c++" still matches).
fn keyword_pattern(keywords: &[String], field: &str) -> Result<Option<String>, GuardError> {
    let mut alternatives = Vec::with_capacity(keywords.len());
    for (n, keyword) in keywords.iter().enumerate() {
        let keyword = keyword.trim();
        if keyword.is_empty() || keyword.len() > MAX_PATTERN_BYTES {
            return Err(GuardError::config(
                format!("{field}.keywords[{n}]"),
                format!("must be 1-{MAX_PATTERN_BYTES} bytes"),
            ));
        }
        let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        let escaped = regex::escape(keyword).replace(' ', r"\s+");
        let start = if is_word(keyword.chars().next()) {
            r"\b"
        } else {
            ""
        };
        let end = if is_word(keyword.chars().last()) {
            r"\b"
        } else {
            ""
        };
        alternatives.push(format!("{start}{escaped}{end}"));
    }
    Ok((!alternatives.is_empty()).then(|| format!("(?i)(?:{})", alternatives.join("|"))))
}

fn build_regex(source: &str, field: &str) -> Result<Regex, GuardError> {
    RegexBuilder::new(source)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(2 * REGEX_SIZE_LIMIT)
        .build()
        .map_err(|error| GuardError::config(field, error.to_string()))
}

/// A rail's actions, resolved against the known classes.
#[derive(Debug, Clone)]
pub(crate) struct CompiledPolicy {
    actions: BTreeMap<String, Action>,
    min_confidence: f32,
    pub(crate) families: Families,
}

impl CompiledPolicy {
    pub(crate) fn new(
        policy: &RailPolicy,
        field: &str,
        rules: &[CustomRule],
    ) -> Result<CompiledPolicy, GuardError> {
        for selector in policy.actions.keys() {
            let known = selector == "default"
                || Group::parse(selector).is_some()
                || Class::parse_built_in(selector).is_some()
                || rules.iter().any(|rule| rule.class.name() == selector);
            if !known {
                return Err(GuardError::config(
                    format!("{field}.actions.{selector}"),
                    "not a class, a group (pii, secret, injection, custom), a rule name or `default`",
                ));
            }
        }
        if !(0.0..=1.0).contains(&policy.min_confidence) {
            return Err(GuardError::config(
                format!("{field}.min_confidence"),
                "must be 0..=1",
            ));
        }
        let mut compiled = CompiledPolicy {
            actions: policy.actions.clone(),
            min_confidence: policy.min_confidence,
            families: Families {
                pii: false,
                secrets: false,
                injection: false,
            },
        };
        let acts_on = |group: Group| {
            Class::BUILT_IN
                .iter()
                .filter(|class| class.group() == group)
                .any(|class| compiled.action_for(class, 1.0) != Action::Allow)
        };
        compiled.families = Families {
            pii: acts_on(Group::Pii),
            secrets: acts_on(Group::Secret),
            injection: acts_on(Group::Injection),
        };
        Ok(compiled)
    }

    /// The action for a finding: its class's entry, else its group's, else `default`, else
    /// allow; findings under `min_confidence` are allowed.
    pub(crate) fn action_for(&self, class: &Class, confidence: f32) -> Action {
        if confidence < self.min_confidence {
            return Action::Allow;
        }
        self.actions
            .get(class.name())
            .or_else(|| self.actions.get(class.group().as_str()))
            .or_else(|| self.actions.get("default"))
            .copied()
            .unwrap_or(Action::Allow)
    }

    /// Whether any custom rule can lead to an action (else they need not run).
    pub(crate) fn acts_on_custom(&self, rules: &[CustomRule]) -> bool {
        rules
            .iter()
            .any(|rule| self.action_for(&rule.class, 1.0) != Action::Allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> GuardConfig {
        match toml::from_str(text) {
            Ok(config) => config,
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn most_specific_action_wins() {
        let config =
            parse("[input.actions]\ndefault = \"flag\"\npii = \"redact\"\nemail = \"block\"\n");
        let policy = CompiledPolicy::new(&config.input, "input", &[]).map_err(|e| e.to_string());
        let Ok(policy) = policy else {
            panic!("{policy:?}")
        };
        assert_eq!(policy.action_for(&Class::Email, 1.0), Action::Block);
        assert_eq!(policy.action_for(&Class::Phone, 1.0), Action::Redact);
        assert_eq!(policy.action_for(&Class::Jwt, 1.0), Action::Flag);
    }

    #[test]
    fn typos_and_bad_rules_are_named() {
        let config = parse("[input.actions]\nemial = \"block\"\n");
        let error = CompiledPolicy::new(&config.input, "input", &[])
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("guard config `input.actions.emial`: not a class, a group (pii, secret, injection, custom), a rule name or `default`")
        );
        let bad_regex = parse("[[rules]]\nname = \"x\"\nregexes = [\"(unclosed\"]\n");
        let error = bad_regex
            .compile_rules()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("guard config `rules[0].regexes[0]`"),
            "{error}"
        );
        let shadow = parse("[[rules]]\nname = \"email\"\nkeywords = [\"a\"]\n");
        assert!(shadow.compile_rules().is_err());
        assert!(toml::from_str::<GuardConfig>("[input]\nfoo = 1\n").is_err());
        let huge = parse("[[rules]]\nname = \"x\"\nregexes = [\"\\\\w{1000}\\\\w{1000}\"]\n");
        assert!(
            huge.compile_rules().is_err(),
            "the automaton size limit applies"
        );
    }

    #[test]
    fn a_key_overlay_replaces_actions_and_adds_rules() {
        let alias = parse("[input.actions]\npii = \"redact\"\nsecret = \"block\"\n[[rules]]\nname = \"a\"\nkeywords = [\"x\"]\n");
        let key = parse("[input.actions]\npii = \"flag\"\n[[rules]]\nname = \"b\"\nkeywords = [\"y\"]\n[classifier]\non_error = \"flag\"\n");
        let merged = alias.overlay(&key);
        assert_eq!(merged.input.actions.get("pii"), Some(&Action::Flag));
        assert_eq!(merged.input.actions.get("secret"), Some(&Action::Block));
        let names: Vec<&str> = merged.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(
            merged.classifier.map(|c| (c.on_error, c.on_unsafe)),
            Some((Action::Flag, Action::Block))
        );
    }

    #[test]
    fn keywords_are_whole_words_any_case() {
        let config = parse("[[rules]]\nname = \"topic\"\nkeywords = [\"acme corp\", \"c++\"]\n");
        let rules = config.compile_rules().map_err(|e| e.to_string());
        let Ok(rules) = rules else {
            panic!("{rules:?}")
        };
        let pattern = &rules[0].patterns[0];
        assert!(pattern.is_match("we use ACME  Corp tools"));
        assert!(pattern.is_match("written in C++."));
        assert!(!pattern.is_match("acme corporation"));
    }
}
