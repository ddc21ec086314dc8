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

/// English words so common that they say nothing about what a passage is about: function
/// words (articles, pronouns, auxiliaries, prepositions, conjunctions) and question words.
/// Words that are also keywords of common programming languages (`for`, `if`, `while`, `as`,
/// `where`, `in`, `self`, `match`, `type`, `use`, ...) are not in the list, since in technical
/// documentation they name things.
const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "don",
    "down",
    "during",
    "each",
    "few",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "which",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "s",
    "t",
    "ll",
    "ve",
    "re",
    "d",
    "m",
];

/// Whether `term` (lowercased, as [`query_terms`] gives it) is an English stop word.
pub fn is_stop_word(term: &str) -> bool {
    STOP_WORDS.contains(&term)
}

/// The terms of a keyword query worth searching for: `terms` without its stop words, unless
/// nothing else remains (a query of stop words only is searched as typed).
///
/// Why: a keyword search is an OR of its words, and the engine scores every passage that
/// matches any of them. "the", "how" or "do" match nearly every passage, so keeping them made
/// a query score and sort nearly the whole knowledge base (80 ms of a 99 ms hybrid query at
/// 100k chunks), while BM25 gives such words almost no weight: dropping them barely changes
/// the ranking. Applied to the query only; the index keeps every word.
pub fn content_terms(terms: Vec<String>) -> Vec<String> {
    if terms.iter().all(|t| is_stop_word(t)) {
        return terms;
    }
    terms.into_iter().filter(|t| !is_stop_word(t)).collect()
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

    #[test]
    fn stop_words_are_dropped_unless_nothing_else_remains() {
        let terms = query_terms("How do I read a file in Rust, and what does the ? operator do?");
        assert_eq!(
            content_terms(terms),
            ["read", "file", "in", "rust", "operator"]
        );
        let only = query_terms("What is it?");
        assert_eq!(content_terms(only), ["what", "is", "it"]);
        // Keywords of programming languages are words to search for.
        assert_eq!(
            content_terms(query_terms("the for loop and if let while")),
            ["for", "loop", "if", "let", "while"]
        );
        assert!(content_terms(Vec::new()).is_empty());
    }
}
