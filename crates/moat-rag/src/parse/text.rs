//! Plain text (paragraphs at blank lines) and source code (blocks at blank lines, a top-level
//! definition kept whole). Neither knows headings.

use super::{join_lines, numbered_lines, Block, BlockKind, ParsedDocument};

/// Paragraphs separated by blank lines.
pub(super) fn parse_plain(text: &str) -> ParsedDocument {
    let lines = numbered_lines(text);
    let blocks = segments(&lines)
        .into_iter()
        .map(|(from, to)| block(&lines, from, to, BlockKind::Paragraph))
        .collect();
    ParsedDocument { blocks }
}

/// Blocks at blank lines, where a segment that starts indented, or with a closing bracket,
/// continues the block before it: the body of a function or class that has blank lines inside
/// stays with its signature, whatever the language.
pub(super) fn parse_code(text: &str) -> ParsedDocument {
    let lines = numbered_lines(text);
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (from, to) in segments(&lines) {
        let first = lines[from].1;
        let continues = first.starts_with([' ', '\t', '}', ')', ']']);
        match merged.last_mut() {
            Some(last) if continues => last.1 = to,
            _ => merged.push((from, to)),
        }
    }
    let blocks = merged
        .into_iter()
        .map(|(from, to)| block(&lines, from, to, BlockKind::Code))
        .collect();
    ParsedDocument { blocks }
}

/// Runs of non-blank lines, as inclusive index ranges.
fn segments(lines: &[(u32, &str)]) -> Vec<(usize, usize)> {
    let mut segments = Vec::new();
    let mut start: Option<usize> = None;
    for (index, (_, line)) in lines.iter().enumerate() {
        match (line.trim().is_empty(), start) {
            (true, Some(from)) => {
                segments.push((from, index - 1));
                start = None;
            }
            (false, None) => start = Some(index),
            _ => {}
        }
    }
    if let Some(from) = start {
        segments.push((from, lines.len() - 1));
    }
    segments
}

fn block(lines: &[(u32, &str)], from: usize, to: usize, kind: BlockKind) -> Block {
    Block {
        kind,
        text: join_lines(lines, from, to),
        line_start: lines[from].0,
        page: 0,
        heading: Vec::new(),
    }
}
