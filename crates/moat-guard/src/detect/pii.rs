//! PII detectors: email, phone, credit card, IBAN, US SSN, IPv4 and IPv6.
//!
//! Numbers are found as runs of digits that may be split by spaces, dashes, dots or
//! parentheses ("4111 1111 1111 1111", "5 5 5 - 0 1 0 0"); the digits are joined and the run is
//! classified by checksum and by the shape of its digit groups, which is what separates a
//! phone number from a date or a version. The regexes only propose; validators decide.

use std::net::Ipv6Addr;
use std::ops::Range;
use std::str::FromStr;

use regex::Regex;

use super::Candidate;
use crate::checksum::{iban_length, iban_valid, luhn_valid, ssn_valid};
use crate::class::Class;
use crate::normalize::floor_boundary;

pub(crate) struct PiiDetectors {
    email: Regex,
    number_run: Regex,
    iban: Regex,
    ipv4: Regex,
    ipv6: Regex,
}

fn compile(pattern: &str) -> Regex {
    // The patterns are constants checked by the unit tests; failing here is a programming
    // error, found by any test that builds a guard.
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("built-in pattern compiles")
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_email_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

impl PiiDetectors {
    pub(crate) fn new() -> PiiDetectors {
        PiiDetectors {
            email: compile(
                r"(?i)[a-z0-9_%+\-](?:[a-z0-9._%+\-]{0,63})@[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?){0,6}\.[a-z]{2,24}",
            ),
            number_run: compile(r"\+?[0-9](?:[ .\-()]{0,3}[0-9]){6,24}"),
            iban: compile(
                r"(?i)\b[a-z][ .\-]{0,3}[a-z][ .\-]{0,3}[0-9][ .\-]{0,3}[0-9](?:[ .\-]{0,3}[a-z0-9]){10,34}",
            ),
            ipv4: compile(
                r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}",
            ),
            ipv6: compile(r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}"),
        }
    }

    pub(crate) fn scan(&self, text: &str, out: &mut Vec<Candidate>) {
        self.scan_email(text, out);
        self.scan_numbers(text, out);
        self.scan_iban(text, out);
        self.scan_ipv4(text, out);
        self.scan_ipv6(text, out);
    }

    fn scan_email(&self, text: &str, out: &mut Vec<Candidate>) {
        for found in self.email.find_iter(text) {
            let range = found.range();
            let bytes = text.as_bytes();
            let before_ok = range.start == 0 || !is_email_byte(bytes[range.start - 1]);
            let after_ok = match bytes.get(range.end) {
                None => true,
                // A full stop or a hyphen after the domain ends the sentence, not the address.
                Some(b'.' | b'-') => !bytes
                    .get(range.end + 1)
                    .is_some_and(u8::is_ascii_alphanumeric),
                Some(&b) => !is_email_byte(b),
            };
            if before_ok && after_ok && !found.as_str().contains("..") {
                out.push(Candidate::new(Class::Email, range, text, 0.95));
            }
        }
    }

    fn scan_numbers(&self, text: &str, out: &mut Vec<Candidate>) {
        for found in self.number_run.find_iter(text) {
            let run = DigitRun::parse(text, found.range());
            if let Some(candidate) = run.classify(text) {
                out.push(candidate);
            }
        }
    }

    fn scan_iban(&self, text: &str, out: &mut Vec<Candidate>) {
        let mut at = 0;
        while let Some(found) = self.iban.find_at(text, at) {
            match iban_at(text, found.range()) {
                Some(candidate) => {
                    at = candidate.range.end;
                    out.push(candidate);
                }
                // A false start (a word followed by digits) must not swallow a real IBAN that
                // begins inside its match: retry one character later.
                None => at = found.start() + 1,
            }
        }
    }

    fn scan_ipv4(&self, text: &str, out: &mut Vec<Candidate>) {
        let bytes = text.as_bytes();
        for found in self.ipv4.find_iter(text) {
            let range = found.range();
            let before_ok = range.start == 0 || {
                let b = bytes[range.start - 1];
                !(is_word_byte(b) || b == b'.')
            };
            let after_ok = match bytes.get(range.end) {
                None => true,
                Some(&b) if is_word_byte(b) => false,
                Some(b'.') => !bytes.get(range.end + 1).is_some_and(u8::is_ascii_digit),
                Some(_) => true,
            };
            if before_ok && after_ok && !looks_like_version(text, range.start) {
                out.push(Candidate::new(Class::Ipv4, range, text, 0.9));
            }
        }
    }

    fn scan_ipv6(&self, text: &str, out: &mut Vec<Candidate>) {
        let bytes = text.as_bytes();
        for found in self.ipv6.find_iter(text) {
            let range = found.range();
            let is_ipv6_byte = |b: u8| is_word_byte(b) || b == b':' || b == b'.';
            let before_ok = range.start == 0 || !is_ipv6_byte(bytes[range.start - 1]);
            let after_ok = match bytes.get(range.end) {
                None => true,
                // A full stop ends a sentence; a dot before more digits is something else.
                Some(b'.') => !bytes
                    .get(range.end + 1)
                    .is_some_and(u8::is_ascii_alphanumeric),
                Some(&b) => !is_ipv6_byte(b),
            };
            let groups = found.as_str().split(':').filter(|g| !g.is_empty()).count();
            if before_ok && after_ok && groups >= 3 && Ipv6Addr::from_str(found.as_str()).is_ok() {
                out.push(Candidate::new(Class::Ipv6, range, text, 0.9));
            }
        }
    }
}

/// "version 1.2.3.4", "release 10.0.0.1": a dotted quad right after such a word is a version.
fn looks_like_version(text: &str, start: usize) -> bool {
    let from = floor_boundary(text, start.saturating_sub(12));
    let before = text[from..start].to_ascii_lowercase();
    ["version", "release", "build", "ver."]
        .iter()
        .any(|word| before.contains(word))
}

/// The IBAN starting at the match, if its country's length of characters, read across the
/// separators, passes mod-97.
fn iban_at(text: &str, range: Range<usize>) -> Option<Candidate> {
    let bytes = text.as_bytes();
    let mut compact = Vec::with_capacity(34);
    let mut end = range.start;
    let mut expected = None;
    for (offset, &b) in bytes[range.clone()].iter().enumerate() {
        if b.is_ascii_alphanumeric() {
            compact.push(b.to_ascii_uppercase());
            end = range.start + offset + 1;
            if compact.len() == 2 {
                expected = Some(iban_length(&compact)?);
            }
            if Some(compact.len()) == expected {
                break;
            }
        }
    }
    if Some(compact.len()) != expected {
        return None;
    }
    // The IBAN must end where a token ends; "...013000abc" is something else.
    if bytes.get(end).is_some_and(|&b| is_word_byte(b)) || !iban_valid(&compact) {
        return None;
    }
    let value = String::from_utf8(compact).ok()?;
    Some(Candidate {
        class: Class::Iban,
        range: range.start..end,
        value,
        confidence: 0.95,
    })
}

/// A run of digits and the separators between them.
struct DigitRun {
    range: Range<usize>,
    plus: bool,
    digits: Vec<u8>,
    /// Lengths of the groups of adjacent digits.
    groups: Vec<usize>,
    /// Whether there are separators and all of them are dots.
    only_dots: bool,
}

impl DigitRun {
    fn parse(text: &str, range: Range<usize>) -> DigitRun {
        let bytes = &text.as_bytes()[range.clone()];
        let mut run = DigitRun {
            range: range.clone(),
            plus: bytes.first() == Some(&b'+'),
            digits: Vec::new(),
            groups: Vec::new(),
            only_dots: true,
        };
        let mut separators = false;
        let mut in_group = false;
        for &b in bytes {
            if b.is_ascii_digit() {
                run.digits.push(b);
                if in_group {
                    if let Some(last) = run.groups.last_mut() {
                        *last += 1;
                    }
                } else {
                    run.groups.push(1);
                    in_group = true;
                }
            } else {
                in_group = false;
                if b != b'+' {
                    separators = true;
                }
                if b != b'.' && b != b'+' {
                    run.only_dots = false;
                }
            }
        }
        run.only_dots &= separators;
        run
    }

    fn classify(&self, text: &str) -> Option<Candidate> {
        let bytes = text.as_bytes();
        // A digit run glued to a word or a decimal point is part of something else.
        if self.range.start > 0 {
            let before = bytes[self.range.start - 1];
            if is_word_byte(before) || before == b'.' || before == b'-' || before == b'/' {
                return None;
            }
        }
        match bytes.get(self.range.end) {
            Some(&b) if b.is_ascii_alphabetic() && b != b'x' => return None,
            Some(b'_') => return None,
            Some(b'.' | b'-' | b'/')
                if bytes
                    .get(self.range.end + 1)
                    .is_some_and(u8::is_ascii_digit) =>
            {
                return None
            }
            _ => {}
        }
        // Dotted numbers with fewer than three groups are decimals; dotted quads are IPs.
        if self.only_dots && (self.groups.len() < 3 || self.groups.len() == 4) && !self.plus {
            return None;
        }
        let all_single = self.groups.len() > 3 && self.groups.iter().all(|&g| g == 1);
        let value = String::from_utf8(self.digits.clone()).ok()?;
        let candidate = |class, confidence| Candidate {
            class,
            range: self.range.clone(),
            value: value.clone(),
            confidence,
        };
        if !self.plus && self.is_card(all_single) {
            return Some(candidate(Class::CreditCard, 0.95));
        }
        if !self.plus && self.is_ssn(text, all_single) {
            return Some(candidate(Class::UsSsn, 0.9));
        }
        if self.is_phone(all_single) {
            return Some(candidate(Class::Phone, 0.8));
        }
        None
    }

    fn is_card(&self, all_single: bool) -> bool {
        let n = self.digits.len();
        let (last, rest) = self.groups.split_last().unwrap_or((&0, &[]));
        (12..=19).contains(&n)
            && ((b'2'..=b'6').contains(&self.digits[0])
                || self.digits.starts_with(b"0604")
                || self.digits.starts_with(b"1800"))
            && (all_single || (*last >= 1 && rest.iter().all(|&g| g >= 3)))
            && luhn_valid(&self.digits)
    }

    fn is_ssn(&self, text: &str, all_single: bool) -> bool {
        if self.digits.len() != 9 || !ssn_valid(&self.digits) {
            return false;
        }
        if all_single || self.groups == [3, 2, 4] {
            return true;
        }
        // Nine bare digits are an SSN only when the text says so just before.
        self.groups == [9] && {
            let from = floor_boundary(text, self.range.start.saturating_sub(40));
            let before = text[from..self.range.start].to_ascii_lowercase();
            before.contains("ssn") || before.contains("social security")
        }
    }

    fn is_phone(&self, all_single: bool) -> bool {
        let d = &self.digits;
        let n = d.len();
        if self.plus {
            return (8..=15).contains(&n) && d[0] != b'0';
        }
        if d.starts_with(b"00") {
            // International call prefix: 00 + country code + number.
            return (10..=17).contains(&n) && d[2] != b'0';
        }
        let nanp = |digits: &[u8]| digits.len() == 10 && digits[0] >= b'2' && digits[3] >= b'2';
        let groups = self.groups.as_slice();
        if nanp(d) {
            return all_single || matches!(groups, [10] | [3, 3, 4] | [3, 7]);
        }
        if n == 11 && d[0] == b'1' && nanp(&d[1..]) {
            return all_single || matches!(groups, [1, 3, 3, 4] | [1, 10] | [11]);
        }
        // National numbers with a trunk 0 (UK, most of Europe): 10 or 11 digits in at most
        // three groups, the first a short area code.
        if d[0] == b'0' && d[1] != b'0' && (10..=11).contains(&n) {
            return all_single
                || groups.len() == 1
                || (groups.len() <= 3 && groups.iter().all(|&g| g >= 3) && groups[0] <= 6);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        PiiDetectors::new().scan(text, &mut out);
        out.into_iter()
            .map(|c| (c.class.to_string(), text[c.range].to_string()))
            .collect()
    }

    #[test]
    fn numbers_by_shape_and_checksum() {
        assert_eq!(
            classes("card 4111 1111 1111 1111 ok"),
            [("credit_card".into(), "4111 1111 1111 1111".into())]
        );
        assert!(classes("card 4111 1111 1111 1112 ok").is_empty());
        assert_eq!(
            classes("ssn 123-45-6789."),
            [("us_ssn".into(), "123-45-6789".into())]
        );
        assert!(classes("ssn 666-45-6789.").is_empty());
        assert_eq!(
            classes("call (555)234-5678x123"),
            [("phone".into(), "555)234-5678".into())]
        );
        assert_eq!(
            classes("tel +44 7700 900123"),
            [("phone".into(), "+44 7700 900123".into())]
        );
        assert_eq!(
            classes("5 5 5 - 2 3 4 - 5 6 7 8"),
            [("phone".into(), "5 5 5 - 2 3 4 - 5 6 7 8".into())]
        );
        assert!(classes("on 2024-01-15 12:30 and 2023-10-05 12").is_empty());
        assert!(classes("pi is 3.14159265358979 and v1.2.3").is_empty());
    }

    #[test]
    fn iban_skips_false_starts() {
        let found = classes("pay at 2024 to DE89 3704 0044 0532 0130 00 today");
        assert_eq!(
            found,
            [("iban".into(), "DE89 3704 0044 0532 0130 00".into())]
        );
        assert!(classes("DE89 3704 0044 0532 0130 01").is_empty());
    }

    #[test]
    fn ip_addresses_but_not_versions_or_paths() {
        assert_eq!(
            classes("host 10.0.0.1:80"),
            [("ipv4".into(), "10.0.0.1".into())]
        );
        assert!(classes("version 1.2.3.4 and 1.2.3.4.5 and 300.1.1.1").is_empty());
        assert_eq!(
            classes("at 2001:db8::8a2e:370:7334."),
            [("ipv6".into(), "2001:db8::8a2e:370:7334".into())]
        );
        assert!(classes("use std::io::Read; at 10:30:00; mac 00:1a:2b:3c:4d:5e").is_empty());
    }
}
