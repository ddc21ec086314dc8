//! Files into structured text: a [`ParsedDocument`] is the document's text as a list of
//! [`Block`]s (headings, paragraphs, lists, code), each with the line it starts on, its page
//! and the heading path it sits under, which is what the chunker follows.
//!
//! The format comes from the file name's extension ([`Format::from_name`]); a file whose
//! extension is unknown is read as plain text when it is UTF-8 text. Every problem with the
//! bytes is a [`ParseError`] for that one file, never a panic: empty files, binary files (NUL
//! bytes, mostly control characters), text that is not UTF-8 (reported with the offset of the
//! first bad byte; no encoding is guessed), files over the size limit, and PDFs the extractor
//! cannot read. PDF and HTML parsers run under `catch_unwind` on a worker thread with a
//! deadline ([`ParseOptions::timeout`]).
//!
//! It knows nothing of chunks, tokens or stores.

mod html;
mod markdown;
mod pdf;
mod text;

use std::time::Duration;

/// Limits and knobs for parsing. `Default` gives the values the CLI and server use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseOptions {
    /// Files larger than this many bytes are rejected before they are read (20 MiB).
    pub max_bytes: u64,
    /// How long parsing one PDF or HTML file may take before it is abandoned (30 s): their
    /// parsers can be slow on hostile input (html5ever is quadratic in nesting depth).
    pub timeout: Duration,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            max_bytes: 20 * 1024 * 1024,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Why one file could not be turned into text. Each message is written for the user who
/// added the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the file is empty (no text to index)")]
    Empty,
    #[error("the file is binary ({0}), not text")]
    Binary(String),
    #[error(
        "the file is not UTF-8 text (invalid byte at offset {offset}); convert it to UTF-8 \
         first, moat does not guess encodings"
    )]
    NotUtf8 { offset: usize },
    #[error("the file is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("the PDF cannot be read: {0}")]
    Pdf(String),
    #[error("the {format} parser failed on this file: {message}")]
    Failed {
        format: &'static str,
        message: String,
    },
    #[error("parsing the {format} took longer than {seconds} s; it was abandoned")]
    Timeout { format: &'static str, seconds: u64 },
    #[error("the PDF has no extractable text (a scanned document needs OCR first)")]
    PdfNoText,
    #[error("cannot read the file: {0}")]
    Io(String),
}

/// How a file's bytes are read, chosen by its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Plain text: paragraphs at blank lines.
    Text,
    /// Markdown: ATX and setext headings, paragraphs, fenced code blocks, lists.
    Markdown,
    /// HTML: headings, paragraphs, list items and `pre` blocks; scripts and styles dropped.
    Html,
    /// PDF: text per page.
    Pdf,
    /// Source code and configuration: blocks at blank lines, kept whole per top-level
    /// definition (an indented part after a blank line stays with what precedes it).
    Code,
}

const MARKDOWN_EXTENSIONS: &[&str] = &["md", "markdown", "mdown", "mkd"];
const HTML_EXTENSIONS: &[&str] = &["html", "htm", "xhtml"];
const TEXT_EXTENSIONS: &[&str] = &["txt", "text", "rst", "adoc", "org"];
const CODE_EXTENSIONS: &[&str] = &[
    "rs",
    "py",
    "pyi",
    "js",
    "mjs",
    "cjs",
    "jsx",
    "ts",
    "tsx",
    "go",
    "c",
    "h",
    "cc",
    "cpp",
    "cxx",
    "hpp",
    "hh",
    "java",
    "kt",
    "kts",
    "scala",
    "cs",
    "swift",
    "rb",
    "php",
    "pl",
    "lua",
    "r",
    "sh",
    "bash",
    "zsh",
    "fish",
    "ps1",
    "sql",
    "toml",
    "yaml",
    "yml",
    "json",
    "jsonc",
    "ini",
    "cfg",
    "conf",
    "xml",
    "css",
    "scss",
    "proto",
    "gradle",
    "cmake",
    "mk",
    "dockerfile",
    "tf",
    "hcl",
    "nix",
    "zig",
    "hs",
    "ml",
    "ex",
    "exs",
    "erl",
    "clj",
    "dart",
    "vue",
    "svelte",
];

impl Format {
    /// The format for a file name, by extension (case-insensitive); `None` when unknown.
    /// `Makefile` and `Dockerfile` count as code.
    pub fn from_name(name: &str) -> Option<Format> {
        let file_name = name.rsplit(['/', '\\']).next().unwrap_or(name);
        let lower = file_name.to_ascii_lowercase();
        if matches!(lower.as_str(), "makefile" | "dockerfile" | "justfile") {
            return Some(Format::Code);
        }
        let (_, extension) = lower.rsplit_once('.')?;
        let known = |list: &[&str]| list.contains(&extension);
        if known(MARKDOWN_EXTENSIONS) {
            Some(Format::Markdown)
        } else if known(HTML_EXTENSIONS) {
            Some(Format::Html)
        } else if extension == "pdf" {
            Some(Format::Pdf)
        } else if known(TEXT_EXTENSIONS) {
            Some(Format::Text)
        } else if known(CODE_EXTENSIONS) {
            Some(Format::Code)
        } else {
            None
        }
    }
}

/// What a block of text is; the chunker splits prose at sentences and the rest at lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// A heading of level 1-6; it opens the section that the following blocks belong to.
    Heading {
        level: u8,
    },
    Paragraph,
    /// One or more consecutive list items.
    List,
    /// A code block, or a block of a source file.
    Code,
}

/// One structural unit of a document's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub kind: BlockKind,
    /// The block's text; for line-based formats it keeps the source's line breaks, so line
    /// `line_start + k` of the file is line `k` of this text.
    pub text: String,
    /// 1-based line the text starts on; 0 when the format has no lines (HTML, PDF).
    pub line_start: u32,
    /// 1-based page (PDF); 0 when the format is not paged.
    pub page: u32,
    /// The titles of the headings this block sits under, outermost first. A heading block's
    /// path ends with its own title.
    pub heading: Vec<String>,
}

/// A file's text as blocks, in document order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedDocument {
    pub blocks: Vec<Block>,
}

/// Turns a file's bytes into blocks. `name` (a file name or path) picks the format by its
/// extension; a PDF is also recognised by its `%PDF-` signature whatever its name.
pub fn parse_bytes(
    name: &str,
    bytes: &[u8],
    options: &ParseOptions,
) -> Result<ParsedDocument, ParseError> {
    let size = bytes.len() as u64;
    if size > options.max_bytes {
        return Err(ParseError::TooLarge {
            size,
            limit: options.max_bytes,
        });
    }
    let format =
        Format::from_name(name).or_else(|| bytes.starts_with(b"%PDF-").then_some(Format::Pdf));
    let document = match format {
        Some(Format::Pdf) => pdf::parse(bytes, options.timeout)?,
        Some(format) => {
            let text = decode_text(bytes)?;
            match format {
                Format::Markdown => markdown::parse(text),
                Format::Html => {
                    let owned = text.to_owned();
                    pdf::run_with_deadline("HTML", options.timeout, move || html::parse(&owned))?
                }
                Format::Code => text::parse_code(text),
                Format::Text | Format::Pdf => text::parse_plain(text),
            }
        }
        None => text::parse_plain(decode_text(bytes)?),
    };
    if document.blocks.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(document)
}

/// The bytes as text: rejects empty, binary and non-UTF-8 input; drops a UTF-8 byte order mark.
pub(crate) fn decode_text(bytes: &[u8]) -> Result<&str, ParseError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(ParseError::Binary(format!("a NUL byte at offset {offset}")));
    }
    let text = std::str::from_utf8(bytes).map_err(|error| ParseError::NotUtf8 {
        offset: error.valid_up_to(),
    })?;
    check_control_characters(text)?;
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(text)
}

/// Text made mostly of control characters is a binary format that happens to be valid UTF-8.
fn check_control_characters(text: &str) -> Result<(), ParseError> {
    let sample: Vec<char> = text.chars().take(8192).collect();
    let control = sample
        .iter()
        .filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c'))
        .count();
    if control * 10 > sample.len() {
        return Err(ParseError::Binary(format!(
            "{control} of its first {} characters are control characters",
            sample.len()
        )));
    }
    Ok(())
}

/// Lines of `text` without their `\r\n`/`\n` endings, with their 1-based numbers.
pub(crate) fn numbered_lines(text: &str) -> Vec<(u32, &str)> {
    text.split('\n')
        .enumerate()
        .map(|(index, line)| {
            let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
            (number, line.strip_suffix('\r').unwrap_or(line))
        })
        .collect()
}

/// Lines `[from, to]` (indices into `lines`) as one block text.
pub(crate) fn join_lines(lines: &[(u32, &str)], from: usize, to: usize) -> String {
    let mut text = String::new();
    for (k, (_, line)) in lines[from..=to].iter().enumerate() {
        if k > 0 {
            text.push('\n');
        }
        text.push_str(line.trim_end());
    }
    text
}

#[cfg(test)]
mod tests;
