//! Secret detectors: documented token formats (AWS, GitHub, GitLab, Slack, Google API keys,
//! JWTs, PEM private keys), AWS secret access keys, generic high-entropy tokens, and base64
//! tokens decoded so that a wrapped secret or PII value is still found.

use std::ops::Range;

use base64::Engine as _;
use regex::Regex;

use super::{is_whole_token, Candidate, EntropyParams};
use crate::class::Class;
use crate::normalize::floor_boundary;

/// The longest token the entropy and base64 detectors look at; longer ones are data (or an
/// attack on the detector), not credentials.
pub(crate) const MAX_TOKEN_BYTES: usize = 4096;

/// How far a PEM block may run before its END line; past this the block is taken to run to the
/// end of the text, which errs towards hiding too much.
pub(crate) const MAX_PEM_BYTES: usize = 16 * 1024;

pub(crate) struct SecretDetectors {
    formats: Vec<(Class, Regex)>,
    jwt: Regex,
    pem_begin: Regex,
}

fn compile(pattern: &str) -> Regex {
    // Constant patterns, compiled by every test that builds a guard.
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("built-in pattern compiles")
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'_' | b'-')
}

impl SecretDetectors {
    pub(crate) fn new() -> SecretDetectors {
        let formats = [
            (
                Class::AwsAccessKeyId,
                r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16}",
            ),
            (
                Class::GithubToken,
                r"(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})",
            ),
            (
                Class::GitlabToken,
                r"gl(?:pat|dt|rt|ptt|soat)-[A-Za-z0-9_\-]{20,64}",
            ),
            (
                Class::SlackToken,
                r"xox[abposre]-(?:[0-9]{6,14}-){1,3}[A-Za-z0-9]{16,64}",
            ),
            (Class::GoogleApiKey, r"AIza[0-9A-Za-z_\-]{35}"),
        ];
        SecretDetectors {
            formats: formats
                .into_iter()
                .map(|(class, pattern)| (class, compile(pattern)))
                .collect(),
            // Bounded to fit in MAX_TOKEN_BYTES, the longest token a stream holds whole.
            jwt: compile(
                r"eyJ[A-Za-z0-9_\-]{4,1024}\.eyJ[A-Za-z0-9_\-]{4,2048}\.[A-Za-z0-9_\-]{8,1000}",
            ),
            pem_begin: compile(r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----"),
        }
    }

    pub(crate) fn scan(&self, text: &str, entropy: EntropyParams, out: &mut Vec<Candidate>) {
        for (class, pattern) in &self.formats {
            for found in pattern.find_iter(text) {
                if is_whole_token(text, &found.range(), is_token_byte) {
                    out.push(Candidate::new(class.clone(), found.range(), text, 0.95));
                }
            }
        }
        for found in self.jwt.find_iter(text) {
            if is_whole_token(text, &found.range(), is_token_byte) && jwt_header_ok(found.as_str())
            {
                out.push(Candidate::new(Class::Jwt, found.range(), text, 0.95));
            }
        }
        for found in self.pem_begin.find_iter(text) {
            let range = found.start()..pem_end(text, found.end());
            out.push(Candidate::new(Class::PrivateKey, range, text, 0.99));
        }
        for range in base64_tokens(text) {
            let token = &text[range.clone()];
            // Random keys do not decode to readable text; base64-wrapped prose does.
            if !is_random_looking(token) {
                continue;
            }
            if is_aws_secret(text, &range) {
                out.push(Candidate::new(Class::AwsSecretAccessKey, range, text, 0.9));
            } else if is_high_entropy(token, entropy) {
                out.push(Candidate::new(Class::HighEntropy, range, text, 0.7));
            }
        }
    }
}

/// Where the PEM block opened before `after_begin` ends: after its END line, or (no END in
/// reach) at the end of the text or of the reach.
fn pem_end(text: &str, after_begin: usize) -> usize {
    let reach = floor_boundary(text, after_begin.saturating_add(MAX_PEM_BYTES));
    let window = &text[after_begin..reach];
    let Some(end_at) = window.find("-----END ") else {
        return reach;
    };
    let tail_start = after_begin + end_at + "-----END ".len();
    // The END line's label ("RSA PRIVATE KEY") and its closing dashes, if they are there.
    let rest = &text.as_bytes()[tail_start..];
    let label = rest
        .iter()
        .take(48)
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || **b == b' ')
        .count();
    let labelled = text[tail_start..tail_start + label].contains("PRIVATE KEY");
    if labelled && rest[label..].starts_with(b"-----") {
        tail_start + label + "-----".len()
    } else {
        tail_start
    }
}

/// A JWT's header is base64url JSON naming its algorithm; this keeps "eyJ..." look-alikes out.
fn jwt_header_ok(token: &str) -> bool {
    let header = token.split('.').next().unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .is_some_and(|json| json.contains("\"alg\""))
}

/// Ranges of whole tokens made of base64 characters (trailing `=` padding included), at most
/// `MAX_TOKEN_BYTES` long.
pub(crate) fn base64_tokens(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let bytes = text.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < bytes.len() {
            while at < bytes.len() && !is_base64_byte(bytes[at]) {
                at += 1;
            }
            let start = at;
            while at < bytes.len() && is_base64_byte(bytes[at]) {
                at += 1;
            }
            while at < bytes.len() && bytes[at] == b'=' && at - start < MAX_TOKEN_BYTES {
                at += 1;
            }
            let len = at - start;
            if (16..=MAX_TOKEN_BYTES).contains(&len) {
                return Some(start..at);
            }
        }
        None
    })
}

/// An AWS secret access key is 40 base64 characters with no prefix of its own, so only the
/// words before it ("aws", "secret") tell it from any other random token, which the
/// high-entropy detector reports instead.
fn is_aws_secret(text: &str, range: &Range<usize>) -> bool {
    let token = &text.as_bytes()[range.clone()];
    if token.len() != 40
        || !token
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'/' || b == b'+')
        || !(has_upper(token) && has_lower(token) && has_digit(token))
    {
        return false;
    }
    let from = floor_boundary(text, range.start.saturating_sub(48));
    let before = text[from..range.start].to_ascii_lowercase();
    before.contains("aws") || before.contains("secret")
}

/// Whether a token is not base64 of readable text.
fn is_random_looking(token: &str) -> bool {
    decode_printable(token).is_none()
}

fn has_upper(token: &[u8]) -> bool {
    token.iter().any(u8::is_ascii_uppercase)
}
fn has_lower(token: &[u8]) -> bool {
    token.iter().any(u8::is_ascii_lowercase)
}
fn has_digit(token: &[u8]) -> bool {
    token.iter().any(u8::is_ascii_digit)
}

/// Shannon entropy in bits per character.
pub(crate) fn shannon_entropy(token: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &b in token {
        counts[usize::from(b)] += 1;
    }
    let len = token.len() as f64;
    counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let p = f64::from(count) / len;
            -p * p.log2()
        })
        .sum()
}

/// A generic secret: long enough, mixed upper case, lower case and digits (identifiers,
/// words, hex hashes and UUIDs lack one of them), and random-looking by entropy.
fn is_high_entropy(token: &str, params: EntropyParams) -> bool {
    let bytes = token.trim_end_matches('=').as_bytes();
    bytes.len() >= params.min_length
        && bytes.len() <= 512
        && has_upper(bytes)
        && has_lower(bytes)
        && has_digit(bytes)
        && shannon_entropy(bytes) >= params.min_bits_per_char
}

/// Decodes base64-looking tokens and reports what `inner` finds in the decoded text, spanning
/// the whole token (the bytes that carry it).
pub(crate) fn scan_base64(
    text: &str,
    out: &mut Vec<Candidate>,
    inner: impl Fn(&str) -> Vec<Candidate>,
) {
    for range in base64_tokens(text) {
        let Some(decoded) = decode_printable(&text[range.clone()]) else {
            continue;
        };
        // The decoded value is read where the token stood, after the same words, so that
        // context-dependent detectors (an AWS secret after "aws_secret_access_key =") see them.
        let from = floor_boundary(text, range.start.saturating_sub(48));
        let context = &text[from..range.start];
        let framed = format!("{context}{decoded}");
        for found in inner(&framed)
            .into_iter()
            .filter(|found| found.range.start >= context.len())
        {
            out.push(Candidate {
                class: found.class,
                range: range.clone(),
                value: found.value,
                confidence: found.confidence * 0.95,
            });
        }
    }
}

/// The token decoded as standard or URL-safe base64, if that gives mostly printable UTF-8.
fn decode_printable(token: &str) -> Option<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let url_safe = token.contains(['-', '_']);
    let padded = token.ends_with('=');
    let engine = match (url_safe, padded) {
        (false, true) => &STANDARD,
        (false, false) => &STANDARD_NO_PAD,
        (true, true) => &URL_SAFE,
        (true, false) => &URL_SAFE_NO_PAD,
    };
    let bytes = engine.decode(token).ok()?;
    let decoded = String::from_utf8(bytes).ok()?;
    let printable = decoded
        .chars()
        .filter(|c| !c.is_control() || c.is_whitespace())
        .count();
    (decoded.len() >= 8 && printable * 10 >= decoded.chars().count() * 9).then_some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: EntropyParams = EntropyParams {
        min_length: 20,
        min_bits_per_char: 4.0,
    };

    fn found(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        SecretDetectors::new().scan(text, PARAMS, &mut out);
        out.into_iter()
            .map(|c| (c.class.to_string(), text[c.range].to_string()))
            .collect()
    }

    #[test]
    fn documented_formats() {
        assert_eq!(
            found("key AKIAIOSFODNN7EXAMPLE."),
            [("aws_access_key_id".into(), "AKIAIOSFODNN7EXAMPLE".into())]
        );
        assert!(found("key AKIAIOSFODNN7EXAMPLEX").is_empty());
        let github = format!("ghp_{}", "aB3".repeat(12));
        assert_eq!(
            found(&format!("t={github}")),
            [("github_token".into(), github)]
        );
    }

    #[test]
    fn pem_block_runs_to_its_end_line() {
        let text = "k: -----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY----- done";
        let hits = found(text);
        assert_eq!(hits[0].0, "private_key");
        assert!(hits[0].1.ends_with("END RSA PRIVATE KEY-----"));
        // No END line: the block runs to the end of the text.
        let open = found("-----BEGIN PRIVATE KEY-----\nMIIB");
        assert_eq!(open[0].1, "-----BEGIN PRIVATE KEY-----\nMIIB");
    }

    #[test]
    fn entropy_separates_random_tokens_from_identifiers_and_hashes() {
        assert!(is_high_entropy("q8Zr4LmW2xPv9TnK3sHdY7cB", PARAMS));
        assert!(!is_high_entropy("PYTHONDONTWRITEBYTECODE_2", PARAMS));
        assert!(!is_high_entropy(
            "3f786850e387550fdab836ed7e6dc881de23001b",
            PARAMS
        ));
        assert!(!is_high_entropy(
            "550e8400-e29b-41d4-a716-446655440000",
            PARAMS
        ));
    }

    #[test]
    fn base64_decoding_is_strict() {
        assert_eq!(
            decode_printable("am9obkBleGFtcGxlLmNvbQ==").as_deref(),
            Some("john@example.com")
        );
        assert_eq!(decode_printable("not*base64"), None);
    }
}
