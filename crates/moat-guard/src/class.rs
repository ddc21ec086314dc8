//! The closed set of things a detector can find (`Class`) and the groups a policy can name
//! (`pii`, `secret`, `injection`, `custom`). Knows nothing of matching or actions.

use std::fmt;

/// What a finding is. Built-in classes are a closed set; `Custom` carries the name of a
/// deny-list or topic rule from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// An email address.
    Email,
    /// A phone number: E.164 (`+`), `00` international, NANP or trunk-0 national formats.
    Phone,
    /// A payment card number that passes Luhn.
    CreditCard,
    /// An IBAN of its country's length that passes mod-97.
    Iban,
    /// A US social security number outside the never-issued ranges.
    UsSsn,
    Ipv4,
    Ipv6,
    /// `AKIA…`/`ASIA…` and the other documented AWS key id prefixes.
    AwsAccessKeyId,
    /// 40 base64 characters after "aws" or "secret".
    AwsSecretAccessKey,
    /// `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` and fine-grained `github_pat_` tokens.
    GithubToken,
    /// `glpat-` and the other GitLab token prefixes.
    GitlabToken,
    /// `xoxb-`, `xoxp-` and the other Slack token kinds.
    SlackToken,
    /// `AIza…` keys.
    GoogleApiKey,
    /// A PEM `PRIVATE KEY` block, from BEGIN to END.
    PrivateKey,
    /// A JSON Web Token whose header names its algorithm.
    Jwt,
    /// A long token whose Shannon entropy says it is random: a generic API key or password.
    HighEntropy,
    /// Instruction override or system-prompt exfiltration phrasing.
    PromptInjection,
    /// Role-play and "mode" phrasing that asks the model to drop its rules.
    Jailbreak,
    /// A user rule (`[[rules]]` in the guard config), by its name.
    Custom(String),
}

/// The policy groups; a policy may name a group instead of each class in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Personal data: email, phone, card, IBAN, SSN, IP addresses.
    Pii,
    /// Credentials: tokens, keys, high-entropy strings.
    Secret,
    /// Prompt injection and jailbreaks.
    Injection,
    /// The user's rules.
    Custom,
}

impl Group {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Pii => "pii",
            Group::Secret => "secret",
            Group::Injection => "injection",
            Group::Custom => "custom",
        }
    }

    /// Parses a group name as written in configuration.
    pub fn parse(name: &str) -> Option<Group> {
        [Group::Pii, Group::Secret, Group::Injection, Group::Custom]
            .into_iter()
            .find(|group| group.as_str() == name)
    }
}

impl Class {
    /// Every built-in class, in a stable order (reports, tables).
    pub const BUILT_IN: [Class; 18] = [
        Class::Email,
        Class::Phone,
        Class::CreditCard,
        Class::Iban,
        Class::UsSsn,
        Class::Ipv4,
        Class::Ipv6,
        Class::AwsAccessKeyId,
        Class::AwsSecretAccessKey,
        Class::GithubToken,
        Class::GitlabToken,
        Class::SlackToken,
        Class::GoogleApiKey,
        Class::PrivateKey,
        Class::Jwt,
        Class::HighEntropy,
        Class::PromptInjection,
        Class::Jailbreak,
    ];

    /// The snake-case name used in configuration, reports and the labeled data set.
    pub fn name(&self) -> &str {
        match self {
            Class::Email => "email",
            Class::Phone => "phone",
            Class::CreditCard => "credit_card",
            Class::Iban => "iban",
            Class::UsSsn => "us_ssn",
            Class::Ipv4 => "ipv4",
            Class::Ipv6 => "ipv6",
            Class::AwsAccessKeyId => "aws_access_key_id",
            Class::AwsSecretAccessKey => "aws_secret_access_key",
            Class::GithubToken => "github_token",
            Class::GitlabToken => "gitlab_token",
            Class::SlackToken => "slack_token",
            Class::GoogleApiKey => "google_api_key",
            Class::PrivateKey => "private_key",
            Class::Jwt => "jwt",
            Class::HighEntropy => "high_entropy",
            Class::PromptInjection => "prompt_injection",
            Class::Jailbreak => "jailbreak",
            Class::Custom(name) => name,
        }
    }

    /// Parses a built-in class name; custom rule names are resolved by the guard, which
    /// knows them.
    pub fn parse_built_in(name: &str) -> Option<Class> {
        Class::BUILT_IN
            .into_iter()
            .find(|class| class.name() == name)
    }

    /// The policy group the class belongs to.
    pub fn group(&self) -> Group {
        match self {
            Class::Email
            | Class::Phone
            | Class::CreditCard
            | Class::Iban
            | Class::UsSsn
            | Class::Ipv4
            | Class::Ipv6 => Group::Pii,
            Class::AwsAccessKeyId
            | Class::AwsSecretAccessKey
            | Class::GithubToken
            | Class::GitlabToken
            | Class::SlackToken
            | Class::GoogleApiKey
            | Class::PrivateKey
            | Class::Jwt
            | Class::HighEntropy => Group::Secret,
            Class::PromptInjection | Class::Jailbreak => Group::Injection,
            Class::Custom(_) => Group::Custom,
        }
    }

    /// The stem of a redaction placeholder: `[EMAIL_1]`, `[CREDIT_CARD_2]`. Custom names keep
    /// only ASCII letters, digits and underscores, so a placeholder is always one plain token.
    pub fn placeholder_stem(&self) -> String {
        let stem: String = self
            .name()
            .chars()
            .filter_map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' => Some(c.to_ascii_uppercase()),
                '_' | '-' | ' ' => Some('_'),
                _ => None,
            })
            .take(40)
            .collect();
        if stem.is_empty() {
            "REDACTED".to_string()
        } else {
            stem
        }
    }

    /// Whether the class is decided by a checksum or a documented format (the classes the
    /// labeled evaluation holds to 0.95 precision and recall).
    pub fn is_checksum_or_pattern(&self) -> bool {
        !matches!(
            self,
            Class::HighEntropy | Class::PromptInjection | Class::Jailbreak | Class::Custom(_)
        )
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_groups_cover_every_class() {
        for class in Class::BUILT_IN {
            assert_eq!(Class::parse_built_in(class.name()), Some(class.clone()));
            assert_ne!(class.group(), Group::Custom);
        }
        assert_eq!(Class::parse_built_in("nope"), None);
    }

    #[test]
    fn custom_placeholder_stems_are_plain_tokens() {
        assert_eq!(
            Class::Custom("project-x ]!".into()).placeholder_stem(),
            "PROJECT_X_"
        );
        assert_eq!(Class::Custom("]]".into()).placeholder_stem(), "REDACTED");
        assert_eq!(Class::CreditCard.placeholder_stem(), "CREDIT_CARD");
    }
}
