//! Turning a user's free text into the words of a keyword search, for every backend.
//!
//! Users type anything: quotes, `AND`, `*`, `-x`, `col:value`. Both full-text engines give such
//! characters meaning (FTS5's query syntax, Postgres's tsquery), and a stray one is a syntax
//! error. So a query is reduced to its words (runs of letters and digits) and each backend
//! builds an OR of those words with its own safe quoting. The word list is bounded so a huge
//! query cannot build a huge statement.

/// The most words a query keeps; the rest are ignored.
pub const MAX_QUERY_TERMS: usize = 64;
/// The longest word kept, in characters; longer runs are cut.
pub const MAX_TERM_CHARS: usize = 64;

/// The distinct words of `text`, in order of first appearance, lowercased, at most
/// [`MAX_QUERY_TERMS`] of them. Empty when the text has no letter or digit.
pub fn query_terms(text: &str) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        let term: String = word
            .chars()
            .take(MAX_TERM_CHARS)
            .collect::<String>()
            .to_lowercase();
        if !terms.contains(&term) {
            terms.push(term);
            if terms.len() == MAX_QUERY_TERMS {
                break;
            }
        }
    }
    terms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_and_punctuation_are_dropped() {
        assert_eq!(
            query_terms(r#""rust" AND -unsafe* col:value NEAR(x)"#),
            ["rust", "and", "unsafe", "col", "value", "near", "x"]
        );
        assert!(query_terms(" \" * - : ( ) ^ ").is_empty());
        assert!(query_terms("").is_empty());
    }

    #[test]
    fn unicode_words_are_kept_and_duplicates_dropped() {
        assert_eq!(query_terms("Émile émile 東京 x2"), ["émile", "東京", "x2"]);
    }

    #[test]
    fn the_term_list_is_bounded() {
        let long = (0..500)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(query_terms(&long).len(), MAX_QUERY_TERMS);
        assert_eq!(
            query_terms(&"a".repeat(1000))[0].chars().count(),
            MAX_TERM_CHARS
        );
    }
}
