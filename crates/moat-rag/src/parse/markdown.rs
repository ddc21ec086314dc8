//! Markdown by lines: ATX (`## Title`) and setext (`Title` over `===`/`---`) headings, fenced
//! code blocks (backticks or tildes), list items with their continuation lines, and paragraphs.
//! Enough structure for chunking, not a CommonMark renderer: inline markup stays as written.

use super::{join_lines, numbered_lines, Block, BlockKind, ParsedDocument};

/// What the line scanner is inside of.
enum Open {
    Nothing,
    Paragraph(usize),
    List(usize),
}

struct Builder<'a> {
    lines: Vec<(u32, &'a str)>,
    blocks: Vec<Block>,
    /// (level, title) of the headings above the current line.
    headings: Vec<(u8, String)>,
}

impl Builder<'_> {
    fn path(&self) -> Vec<String> {
        self.headings
            .iter()
            .map(|(_, title)| title.clone())
            .collect()
    }

    fn push(&mut self, kind: BlockKind, from: usize, to: usize) {
        let block = Block {
            kind,
            text: join_lines(&self.lines, from, to),
            line_start: self.lines[from].0,
            page: 0,
            heading: self.path(),
        };
        self.blocks.push(block);
    }

    fn close(&mut self, open: &Open, to: usize) {
        match *open {
            Open::Nothing => {}
            Open::Paragraph(from) => self.push(BlockKind::Paragraph, from, to),
            Open::List(from) => self.push(BlockKind::List, from, to),
        }
    }

    fn heading(&mut self, level: u8, title: String, from: usize, to: usize) {
        while self.headings.last().is_some_and(|(l, _)| *l >= level) {
            self.headings.pop();
        }
        self.headings.push((level, title));
        self.push(BlockKind::Heading { level }, from, to);
    }
}

pub(super) fn parse(text: &str) -> ParsedDocument {
    let mut builder = Builder {
        lines: numbered_lines(text),
        blocks: Vec::new(),
        headings: Vec::new(),
    };
    let mut open = Open::Nothing;
    let mut index = 0;
    while index < builder.lines.len() {
        let line = builder.lines[index].1;
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if line.trim().is_empty() {
            builder.close(&open, index.saturating_sub(1));
            open = Open::Nothing;
        } else if let (true, Some(fence)) = (indent < 4, fence_of(trimmed)) {
            builder.close(&open, index.saturating_sub(1));
            open = Open::Nothing;
            let end = closing_fence(&builder.lines, index, fence);
            builder.push(BlockKind::Code, index, end);
            index = end;
        } else if let (true, Some((level, title))) = (indent < 4, atx_heading(trimmed)) {
            builder.close(&open, index.saturating_sub(1));
            open = Open::Nothing;
            builder.heading(level, title, index, index);
        } else if let (Open::Paragraph(from), Some(level)) = (&open, setext_level(trimmed)) {
            let from = *from;
            let title = join_lines(&builder.lines, from, index - 1);
            let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
            builder.heading(level, title, from, index);
            open = Open::Nothing;
        } else if indent < 4 && is_list_item(trimmed) {
            if let Open::Paragraph(_) = open {
                builder.close(&open, index - 1);
                open = Open::Nothing;
            }
            if let Open::Nothing = open {
                open = Open::List(index);
            }
        } else if let Open::Nothing = open {
            open = Open::Paragraph(index);
        }
        index += 1;
    }
    let last = builder.lines.len().saturating_sub(1);
    builder.close(&open, last);
    ParsedDocument {
        blocks: builder.blocks,
    }
}

/// A fence opener: its character and length.
fn fence_of(trimmed: &str) -> Option<(char, usize)> {
    let first = trimmed.chars().next()?;
    if first != '`' && first != '~' {
        return None;
    }
    let length = trimmed.chars().take_while(|&c| c == first).count();
    (length >= 3).then_some((first, length))
}

/// The index of the line that closes the fence opened at `open`, or the last line when the
/// fence is never closed (as CommonMark reads it).
fn closing_fence(lines: &[(u32, &str)], open: usize, (fence, length): (char, usize)) -> usize {
    for (index, (_, line)) in lines.iter().enumerate().skip(open + 1) {
        let trimmed = line.trim();
        let run = trimmed.chars().take_while(|&c| c == fence).count();
        if run >= length && run == trimmed.chars().count() {
            return index;
        }
    }
    lines.len() - 1
}

/// `# Title ##` into (1, "Title").
fn atx_heading(trimmed: &str) -> Option<(u8, String)> {
    let level = trimmed.chars().take_while(|&c| c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &trimmed[level..];
    if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    let title = rest.trim().trim_end_matches('#').trim();
    Some((u8::try_from(level).unwrap_or(6), title.to_owned()))
}

fn setext_level(trimmed: &str) -> Option<u8> {
    let trimmed = trimmed.trim_end();
    if !trimmed.is_empty() && trimmed.chars().all(|c| c == '=') {
        Some(1)
    } else if trimmed.len() >= 2 && trimmed.chars().all(|c| c == '-') {
        Some(2)
    } else {
        None
    }
}

/// `- x`, `* x`, `+ x`, `1. x`, `1) x`.
fn is_list_item(trimmed: &str) -> bool {
    if trimmed.starts_with("- ") || trimmed.starts_with("* ") || trimmed.starts_with("+ ") {
        return true;
    }
    let digits = trimmed.chars().take_while(char::is_ascii_digit).count();
    (1..=9).contains(&digits)
        && (trimmed[digits..].starts_with(". ") || trimmed[digits..].starts_with(") "))
}
