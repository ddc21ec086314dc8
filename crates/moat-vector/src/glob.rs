//! Path globs for [`Filter::path_glob`](crate::Filter): `*` matches within one path segment,
//! `**` across segments (`**/` also matches no folder at all, so `docs/**/*.md` admits
//! `docs/a.md`), `?` one character other than `/`; every other character stands for itself.
//!
//! The embedded store matches in Rust ([`Glob::matches`], a dynamic programme, so a hostile
//! pattern cannot make it backtrack exponentially); the Postgres store sends
//! [`Glob::to_postgres_regex`] to the server. Both come from the same parsed tokens, so the two
//! stores agree, which the conformance suite checks.

use crate::VectorError;

/// The longest pattern accepted: patterns come from users, and matching costs
/// pattern length × path length.
pub const MAX_GLOB_LEN: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`
    AnyChar,
    /// `*`
    AnyInSegment,
    /// `**` (not followed by `/`)
    AnyAcross,
    /// `**/`: zero or more whole folders.
    AnyFolders,
}

/// A parsed path glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

impl Glob {
    /// Parses a pattern; `Invalid` when it is empty or longer than [`MAX_GLOB_LEN`].
    pub fn new(pattern: &str) -> Result<Self, VectorError> {
        if pattern.is_empty() {
            return Err(VectorError::Invalid("the path glob is empty".into()));
        }
        if pattern.len() > MAX_GLOB_LEN {
            return Err(VectorError::Invalid(format!(
                "the path glob is {} bytes long; the limit is {MAX_GLOB_LEN}",
                pattern.len()
            )));
        }
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' if chars.get(i + 1) == Some(&'*') => {
                    // Any run of stars longer than two means the same as `**`.
                    while chars.get(i) == Some(&'*') {
                        i += 1;
                    }
                    if chars.get(i) == Some(&'/') {
                        tokens.push(Token::AnyFolders);
                        i += 1;
                    } else {
                        tokens.push(Token::AnyAcross);
                    }
                }
                '*' => {
                    tokens.push(Token::AnyInSegment);
                    i += 1;
                }
                '?' => {
                    tokens.push(Token::AnyChar);
                    i += 1;
                }
                c => {
                    tokens.push(Token::Literal(c));
                    i += 1;
                }
            }
        }
        Ok(Self { tokens })
    }

    /// Whether `path` matches the whole pattern.
    pub fn matches(&self, path: &str) -> bool {
        let text: Vec<char> = path.chars().collect();
        // reach[j]: the tokens so far can match exactly text[..j].
        let mut reach = vec![false; text.len() + 1];
        reach[0] = true;
        for token in &self.tokens {
            let mut next = vec![false; text.len() + 1];
            match token {
                Token::Literal(c) => {
                    for j in 0..text.len() {
                        next[j + 1] = reach[j] && text[j] == *c;
                    }
                }
                Token::AnyChar => {
                    for j in 0..text.len() {
                        next[j + 1] = reach[j] && text[j] != '/';
                    }
                }
                Token::AnyInSegment => {
                    for j in 0..=text.len() {
                        next[j] = reach[j] || (j > 0 && next[j - 1] && text[j - 1] != '/');
                    }
                }
                Token::AnyAcross => {
                    for j in 0..=text.len() {
                        next[j] = reach[j] || (j > 0 && next[j - 1]);
                    }
                }
                Token::AnyFolders => {
                    // Zero folders, or any text ending in `/` after a reachable point.
                    let mut open = false;
                    for j in 0..=text.len() {
                        next[j] = reach[j] || (open && j > 0 && text[j - 1] == '/');
                        if j < text.len() {
                            open = open || reach[j];
                        }
                    }
                }
            }
            reach = next;
        }
        reach[text.len()]
    }

    /// The same pattern as an anchored Postgres regular expression (for the `~` operator), with
    /// every character that is special to Postgres's regex engine escaped.
    pub fn to_postgres_regex(&self) -> String {
        let mut out = String::from("^");
        for token in &self.tokens {
            match token {
                Token::Literal(c) if c.is_alphanumeric() || *c == '/' => out.push(*c),
                Token::Literal(c) if c.is_ascii() => {
                    out.push('\\');
                    out.push(*c);
                }
                // A non-ASCII character that is not alphanumeric: a bracket expression keeps
                // it literal without relying on escapes for characters the engine may not know.
                Token::Literal(c) => {
                    out.push('[');
                    out.push(*c);
                    out.push(']');
                }
                Token::AnyChar => out.push_str("[^/]"),
                Token::AnyInSegment => out.push_str("[^/]*"),
                Token::AnyAcross => out.push_str(".*"),
                Token::AnyFolders => out.push_str("(.*/)?"),
            }
        }
        out.push('$');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, path: &str, expect: bool) {
        let glob = Glob::new(pattern).unwrap();
        assert_eq!(glob.matches(path), expect, "{pattern:?} vs {path:?}");
    }

    #[test]
    fn star_stays_within_a_segment() {
        check("*.md", "a.md", true);
        check("*.md", "docs/a.md", false);
        check("docs/*", "docs/a.md", true);
        check("docs/*", "docs/x/a.md", false);
        check("*", "", true);
    }

    #[test]
    fn double_star_crosses_segments() {
        check("docs/**/*.md", "docs/a.md", true);
        check("docs/**/*.md", "docs/x/y/a.md", true);
        check("docs/**/*.md", "src/a.md", false);
        check("docs/**/*.md", "docs/a.txt", false);
        check("**", "a/b/c", true);
        check("**/*.rs", "main.rs", true);
        check("**/*.rs", "src/bin/main.rs", true);
        check("docs/**", "docs/a/b", true);
        check("a**b", "a/x/b", true);
    }

    #[test]
    fn question_mark_is_one_character_but_not_a_slash() {
        check("a?c", "abc", true);
        check("a?c", "a/c", false);
        check("a?c", "ac", false);
        check("??", "é1", true);
    }

    #[test]
    fn other_characters_are_literal() {
        check("a+b(c).md", "a+b(c).md", true);
        check("a+b(c).md", "aab(c).md", false);
        check("[x]", "[x]", true);
        check("[x]", "x", false);
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let pattern = "*a".repeat(200);
        let path = "a".repeat(199) + "b";
        check(&pattern, &path, false);
    }

    #[test]
    fn empty_and_huge_patterns_are_rejected() {
        assert!(matches!(Glob::new(""), Err(VectorError::Invalid(_))));
        assert!(matches!(
            Glob::new(&"a".repeat(MAX_GLOB_LEN + 1)),
            Err(VectorError::Invalid(_))
        ));
    }

    #[test]
    fn postgres_regex_escapes_specials() {
        let glob = Glob::new("docs/**/a.b+*?").unwrap();
        assert_eq!(glob.to_postgres_regex(), r"^docs/(.*/)?a\.b\+[^/]*[^/]$");
    }
}
