//! Unit tests of `chunk`.

use super::*;
use crate::parse::{parse_bytes, ParseOptions};

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

fn config(max_tokens: usize, overlap_tokens: usize) -> ChunkConfig {
    ChunkConfig {
        max_tokens,
        overlap_tokens,
    }
}

fn parse(name: &str, text: &str) -> ParsedDocument {
    parse_bytes(name, text.as_bytes(), &ParseOptions::default()).expect("parses")
}

/// Every word of the document, in order.
fn document_words(document: &ParsedDocument) -> Vec<String> {
    document
        .blocks
        .iter()
        .flat_map(|block| block.text.split_whitespace().map(str::to_owned))
        .collect()
}

/// The words the chunks add (overlaps left out), in order.
fn chunk_words(chunks: &[Chunk]) -> Vec<String> {
    chunks
        .iter()
        .flat_map(|chunk| {
            chunk.text[chunk.overlap..]
                .split_whitespace()
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn small_document_is_one_chunk_per_section() {
    let document = parse(
        "a.md",
        "# Title\n\nIntro text.\n\n## Install\n\nRun the installer.\nThen reboot.\n",
    );
    let chunks = chunk_document(&document, &config(50, 5), &words).expect("chunks");
    assert_eq!(chunks.len(), 2, "{chunks:#?}");
    assert_eq!(chunks[0].text, "# Title\n\nIntro text.");
    assert_eq!(chunks[0].location.heading, "Title");
    assert_eq!(
        (chunks[0].location.line_start, chunks[0].location.line_end),
        (1, 3)
    );
    assert_eq!(
        chunks[1].text,
        "## Install\n\nRun the installer.\nThen reboot."
    );
    assert_eq!(chunks[1].location.heading, "Title > Install");
    assert_eq!(
        (chunks[1].location.line_start, chunks[1].location.line_end),
        (5, 8)
    );
    assert!(chunks.iter().all(|chunk| chunk.overlap == 0));
}

#[test]
fn heading_without_text_travels_with_the_next_section() {
    let document = parse("a.md", "# Book\n## Chapter\n\nBody here.\n");
    let chunks = chunk_document(&document, &config(50, 5), &words).expect("chunks");
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].text, "# Book\n\n## Chapter\n\nBody here.");
    assert_eq!(chunks[0].location.heading, "Book > Chapter");
}

#[test]
fn long_paragraph_splits_at_sentences_with_overlap() {
    let text = "One two three four. Five six seven eight. Nine ten eleven twelve. \
                Thirteen fourteen fifteen sixteen.";
    let document = parse("a.txt", text);
    let chunks = chunk_document(&document, &config(9, 3), &words).expect("chunks");
    let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "One two three four. Five six seven eight.",
            "six seven eight. Nine ten eleven twelve.",
            "ten eleven twelve. Thirteen fourteen fifteen sixteen.",
        ]
    );
    assert_eq!(&chunks[1].text[..chunks[1].overlap], "six seven eight. ");
}

#[test]
fn code_block_splits_at_lines_and_keeps_line_numbers() {
    let body: String = (1..=10).map(|i| format!("let x{i} = {i};\n")).collect();
    let text = format!("fn main() {{\n{body}}}\n");
    let document = parse("main.rs", &text);
    let chunks = chunk_document(&document, &config(16, 0), &words).expect("chunks");
    assert!(chunks.len() > 1);
    assert_eq!(chunks[0].location.line_start, 1);
    for pair in chunks.windows(2) {
        assert_eq!(pair[1].location.line_start, pair[0].location.line_end + 1);
    }
    assert_eq!(chunks.last().expect("one").location.line_end, 12);
    // Lines are never cut: every chunk is whole lines of the file.
    let lines: Vec<&str> = text.lines().collect();
    for chunk in &chunks {
        let (start, end) = (
            chunk.location.line_start as usize,
            chunk.location.line_end as usize,
        );
        assert_eq!(chunk.text, lines[start - 1..end].join("\n"));
    }
}

#[test]
fn a_word_longer_than_the_budget_is_cut_between_characters() {
    // Counting characters, a 30-character word cannot fit 8 tokens.
    let count = |text: &str| text.chars().count();
    let document = parse("a.txt", "abcdefghijklmnopqrstuvwxyz0123");
    let chunks = chunk_document(&document, &config(8, 0), &count).expect("chunks");
    let joined: String = chunks.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(joined, "abcdefghijklmnopqrstuvwxyz0123");
    assert!(chunks.iter().all(|c| count(&c.text) <= 8));
}

#[test]
fn a_character_over_the_budget_is_an_error_not_a_loop() {
    let count = |text: &str| 10 * text.chars().count();
    let document = parse("a.txt", "ab");
    let error = chunk_document(&document, &config(5, 0), &count).expect_err("cannot fit");
    assert!(matches!(error, RagError::Unsplittable { budget: 5 }));
}

#[test]
fn unusable_configs_are_rejected() {
    let document = parse("a.txt", "text");
    for bad in [config(0, 0), config(10, 10), config(10, 20)] {
        let error = chunk_document(&document, &bad, &words).expect_err("invalid");
        assert!(matches!(error, RagError::Invalid(_)), "{error}");
    }
}

#[test]
fn pdf_pages_are_separate_sections() {
    let mut document = parse("a.txt", "first page text\n\nsecond page text");
    document.blocks[0].page = 1;
    document.blocks[1].page = 2;
    let chunks = chunk_document(&document, &config(50, 5), &words).expect("chunks");
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[1].location.page, 2);
}

/// A small deterministic generator, so the property tests need no extra crate and every
/// failure names the seed that reproduces it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

fn random_markdown(rng: &mut Rng) -> String {
    const WORDS: &[&str] = &[
        "alpha", "beta", "gamma", "delta.", "epsilon", "zeta!", "eta", "theta?", "iota", "kappa",
        "lambda", "mu", "(nu)", "xi.", "omicron", "pi", "rho", "sigma", "tau", "upsilon",
    ];
    let mut text = String::new();
    for _ in 0..rng.below(25) + 1 {
        match rng.below(6) {
            0 => text.push_str(&format!(
                "{} Heading {}\n\n",
                "#".repeat(rng.below(3) + 1),
                rng.below(9)
            )),
            1 => {
                text.push_str("```\n");
                for _ in 0..rng.below(30) {
                    let line: Vec<&str> = (0..rng.below(8)).map(|_| WORDS[rng.below(20)]).collect();
                    text.push_str(&line.join(" "));
                    text.push('\n');
                }
                text.push_str("```\n\n");
            }
            2 => {
                for _ in 0..rng.below(6) + 1 {
                    text.push_str(&format!(
                        "- {} {}\n",
                        WORDS[rng.below(20)],
                        WORDS[rng.below(20)]
                    ));
                }
                text.push('\n');
            }
            _ => {
                let n = rng.below(120) + 1;
                let paragraph: Vec<&str> = (0..n).map(|_| WORDS[rng.below(20)]).collect();
                // Some lines are long runs without any sentence end.
                for (index, word) in paragraph.iter().enumerate() {
                    text.push_str(word);
                    text.push(if index % 11 == 10 { '\n' } else { ' ' });
                }
                text.push_str("\n\n");
            }
        }
    }
    text
}

#[test]
fn property_chunks_fit_cover_everything_in_order_and_overlap_within_sections() {
    for seed in 1..=300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let text = random_markdown(&mut rng);
        let document = parse("doc.md", &text);
        let max_tokens = rng.below(40) + 3;
        let overlap_tokens = rng.below(max_tokens as u64);
        let config = config(max_tokens, overlap_tokens);
        let chunks = chunk_document(&document, &config, &words).expect("chunks");
        for chunk in &chunks {
            assert!(
                words(&chunk.text) <= max_tokens,
                "seed {seed}: {chunk:?} over {max_tokens}"
            );
            assert!(
                words(&chunk.text[..chunk.overlap]) <= overlap_tokens,
                "seed {seed}: {chunk:?}"
            );
            assert!(
                chunk.overlap < chunk.text.len(),
                "seed {seed}: a chunk of overlap only"
            );
            assert!(chunk.location.line_start >= 1, "seed {seed}");
            assert!(
                chunk.location.line_start <= chunk.location.line_end,
                "seed {seed}"
            );
        }
        assert_eq!(
            chunk_words(&chunks),
            document_words(&document),
            "seed {seed}\n{text}"
        );
        // Words are never cut: every word of a chunk is a word of the document.
        let vocabulary: std::collections::HashSet<String> =
            document_words(&document).into_iter().collect();
        for chunk in &chunks {
            for word in chunk.text.split_whitespace() {
                assert!(vocabulary.contains(word), "seed {seed}: {word:?} was cut");
            }
        }
        // Lines never go backwards.
        for pair in chunks.windows(2) {
            assert!(
                pair[1].location.line_end >= pair[0].location.line_end,
                "seed {seed}"
            );
        }
        // Overlap only within a section, and it is the end of the previous chunk.
        for pair in chunks.windows(2) {
            let overlap = &pair[1].text[..pair[1].overlap];
            if !overlap.is_empty() {
                assert_eq!(
                    pair[0].location.heading, pair[1].location.heading,
                    "seed {seed}"
                );
                let tail: Vec<&str> = overlap.split_whitespace().collect();
                let previous: Vec<&str> = pair[0].text.split_whitespace().collect();
                assert!(
                    previous.ends_with(&tail),
                    "seed {seed}: {overlap:?} not the end of {:?}",
                    pair[0].text
                );
            }
        }
    }
}

#[test]
fn a_huge_line_without_sentences_is_counted_in_near_linear_work() {
    // One 20,000-word line: the cut must not re-count the whole rest of the text for every
    // chunk (which made a large file quadratic).
    let text = vec!["word"; 20_000].join(" ");
    let document = parse("a.txt", &text);
    let counted_bytes = std::cell::Cell::new(0usize);
    let count = |text: &str| {
        counted_bytes.set(counted_bytes.get() + text.len());
        words(text)
    };
    let chunks = chunk_document(&document, &config(50, 0), &count).expect("chunks");
    assert_eq!(chunks.len(), 400);
    // Without the cap on each binary search this is about 3,000 times the text.
    let ratio = counted_bytes.get() / text.len();
    assert!(ratio < 50, "counted {ratio} times the text's length");
}
