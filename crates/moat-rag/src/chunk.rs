//! Cutting a [`ParsedDocument`] into chunks that follow its structure within a token budget.
//!
//! A chunk never spans two sections (a section is the run of blocks under one heading path on
//! one page); a heading with no text of its own before the next heading travels with the next
//! section. Within a section, whole blocks are packed together while they fit; a block larger
//! than the budget is cut at sentence ends (prose) or line ends (code, lists), a sentence or
//! line still too large at whitespace, and only a single word longer than the whole budget
//! (a long hash, say) is cut between characters. Consecutive chunks of one section overlap:
//! the next one starts with the last words of the one before, up to `overlap_tokens`.
//!
//! Tokens are counted by the caller's function (the embedder's tokenizer in ingestion, a
//! whitespace count in tests), always on the exact text the chunk will have, so every chunk
//! fits whatever the tokenizer does at the seams.

use moat_vector::Location;

use crate::parse::{Block, BlockKind, ParsedDocument};
use crate::RagError;

/// The token budget. `Default` fits all-MiniLM-L6-v2 (256 tokens at most) with room to spare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkConfig {
    /// The most tokens one chunk may have, as the counting function counts them (200).
    pub max_tokens: usize,
    /// How many tokens at the end of a chunk are repeated at the start of the next chunk of
    /// the same section (30); must be below `max_tokens`.
    pub overlap_tokens: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        ChunkConfig {
            max_tokens: 200,
            overlap_tokens: 30,
        }
    }
}

impl ChunkConfig {
    /// The budget must be positive and larger than the overlap.
    pub fn validate(&self) -> Result<(), RagError> {
        if self.max_tokens == 0 || self.overlap_tokens >= self.max_tokens {
            return Err(RagError::Invalid(format!(
                "a chunk budget of {} tokens with {} tokens of overlap: the budget must be \
                 positive and larger than the overlap",
                self.max_tokens, self.overlap_tokens
            )));
        }
        Ok(())
    }
}

/// One chunk of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub text: String,
    /// Lines, page and heading path of all of `text`, overlap included.
    pub location: Location,
    /// How many leading bytes of `text` repeat the end of the previous chunk; `text[overlap..]`
    /// is what this chunk adds.
    pub overlap: usize,
}

/// A piece of one block's text: `block.text[start..end]`, trimmed, never inside a word
/// (except for a word longer than the budget).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Unit {
    block: usize,
    start: usize,
    end: usize,
}

/// The text of some units and where each unit starts in it.
struct Rendered {
    text: String,
    starts: Vec<usize>,
}

struct Section<'a> {
    blocks: Vec<&'a Block>,
}

/// Cuts `document` into chunks of at most `config.max_tokens` tokens as `count` counts them.
/// Fails only when the configuration is unusable or a single character exceeds the budget.
pub fn chunk_document(
    document: &ParsedDocument,
    config: &ChunkConfig,
    count: &dyn Fn(&str) -> usize,
) -> Result<Vec<Chunk>, RagError> {
    config.validate()?;
    let mut chunks = Vec::new();
    for section in sections(document) {
        let packer = Packer {
            section: &section,
            config,
            count,
        };
        packer.run(&mut chunks)?;
    }
    Ok(chunks)
}

/// Groups blocks by (heading path, page); a section of headings only joins the next one on the
/// same page.
fn sections(document: &ParsedDocument) -> Vec<Section<'_>> {
    let mut sections: Vec<Section<'_>> = Vec::new();
    let mut pending: Vec<&Block> = Vec::new();
    for block in &document.blocks {
        let same = sections.last().is_some_and(|section| {
            pending.is_empty()
                && section
                    .blocks
                    .last()
                    .is_some_and(|last| last.heading == block.heading && last.page == block.page)
        });
        let pending_other_page = pending
            .first()
            .is_some_and(|first| first.page != block.page);
        if pending_other_page {
            sections.push(Section {
                blocks: std::mem::take(&mut pending),
            });
        }
        if matches!(block.kind, BlockKind::Heading { .. }) {
            pending.push(block);
        } else if same {
            if let Some(section) = sections.last_mut() {
                section.blocks.push(block);
            }
        } else {
            let mut blocks = std::mem::take(&mut pending);
            blocks.push(block);
            sections.push(Section { blocks });
        }
    }
    if !pending.is_empty() {
        sections.push(Section { blocks: pending });
    }
    sections
}

struct Packer<'a> {
    section: &'a Section<'a>,
    config: &'a ChunkConfig,
    count: &'a dyn Fn(&str) -> usize,
}

impl Packer<'_> {
    fn run(&self, chunks: &mut Vec<Chunk>) -> Result<(), RagError> {
        let mut units = Vec::new();
        for (index, block) in self.section.blocks.iter().enumerate() {
            split_block(index, block, self.config.max_tokens, self.count, &mut units)?;
        }
        // The units of the chunk being built; the first `overlap` of them repeat the last one.
        let mut current: Vec<Unit> = Vec::new();
        let mut overlap = 0;
        for unit in units {
            current.push(unit);
            if current.len() == 1 || self.fits(&current, self.config.max_tokens) {
                continue;
            }
            current.pop();
            chunks.push(self.chunk(&current, overlap));
            let mut tail = self.overlap_tail(&current);
            tail.push(unit);
            while tail.len() > 1 && !self.fits(&tail, self.config.max_tokens) {
                drop_first_word(&mut tail, self.section);
            }
            overlap = tail.len() - 1;
            current = tail;
        }
        if !current.is_empty() {
            chunks.push(self.chunk(&current, overlap));
        }
        Ok(())
    }

    fn fits(&self, units: &[Unit], budget: usize) -> bool {
        (self.count)(&render(units, self.section).text) <= budget
    }

    /// The longest run of whole words at the end of `units` within the overlap budget.
    fn overlap_tail(&self, units: &[Unit]) -> Vec<Unit> {
        let mut best: Vec<Unit> = Vec::new();
        if self.config.overlap_tokens == 0 {
            return best;
        }
        for (index, unit) in units.iter().enumerate().rev() {
            let text = &self.section.blocks[unit.block].text;
            for start in word_starts(text, unit.start, unit.end).into_iter().rev() {
                let mut candidate = vec![Unit { start, ..*unit }];
                candidate.extend_from_slice(&units[index + 1..]);
                if !self.fits(&candidate, self.config.overlap_tokens) {
                    return best;
                }
                best = candidate;
            }
        }
        best
    }

    fn chunk(&self, units: &[Unit], overlap: usize) -> Chunk {
        let rendered = render(units, self.section);
        let overlap_bytes = rendered.starts.get(overlap).copied().unwrap_or(0);
        let first = units[0];
        let last = units[units.len() - 1];
        let block_of = |unit: Unit| self.section.blocks[unit.block];
        let line_at = |unit: Unit, offset: usize| {
            let block = block_of(unit);
            if block.line_start == 0 {
                return 0;
            }
            let newlines = block.text[..offset].matches('\n').count();
            block
                .line_start
                .saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX))
        };
        // The section's body sets its place: a leading heading carried over from an empty
        // section has a shorter path.
        let section_block = self.section.blocks[self.section.blocks.len() - 1];
        Chunk {
            location: Location {
                line_start: line_at(first, first.start),
                line_end: line_at(last, last.end),
                page: section_block.page,
                heading: section_block.heading.join(" > "),
            },
            text: rendered.text,
            overlap: overlap_bytes,
        }
    }
}

/// Removes the first word of the first unit (or the whole unit when it has one word).
fn drop_first_word(units: &mut Vec<Unit>, section: &Section<'_>) {
    let unit = units[0];
    let text = &section.blocks[unit.block].text;
    match word_starts(text, unit.start, unit.end).get(1) {
        Some(&next) => units[0].start = next,
        None => {
            units.remove(0);
        }
    }
}

/// Units joined: consecutive units of one block as the block's text between them (its own
/// whitespace and line breaks), blocks separated by a blank line.
fn render(units: &[Unit], section: &Section<'_>) -> Rendered {
    let mut text = String::new();
    let mut starts = Vec::with_capacity(units.len());
    let mut index = 0;
    while index < units.len() {
        let first = units[index];
        let mut last_index = index;
        while last_index + 1 < units.len() && units[last_index + 1].block == first.block {
            last_index += 1;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let group_offset = text.len();
        let block_text = &section.blocks[first.block].text;
        text.push_str(&block_text[first.start..units[last_index].end]);
        for unit in &units[index..=last_index] {
            starts.push(group_offset + unit.start - first.start);
        }
        index = last_index + 1;
    }
    Rendered { text, starts }
}

/// Where each word (a run of non-whitespace) of `text[start..end]` begins.
fn word_starts(text: &str, start: usize, end: usize) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut previous_space = true;
    for (offset, c) in text[start..end].char_indices() {
        let space = c.is_whitespace();
        if previous_space && !space {
            starts.push(start + offset);
        }
        previous_space = space;
    }
    starts
}

/// How a too-large piece of text is cut, coarsest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Lines,
    Sentences,
    Words,
    Characters,
}

/// Appends the units of one block: the whole block when it fits, else its lines or sentences,
/// each further cut while it does not fit.
fn split_block(
    index: usize,
    block: &Block,
    budget: usize,
    count: &dyn Fn(&str) -> usize,
    units: &mut Vec<Unit>,
) -> Result<(), RagError> {
    let text = block.text.as_str();
    let Some((start, end)) = trimmed(text, 0, text.len()) else {
        return Ok(());
    };
    let levels: &[Level] = match block.kind {
        BlockKind::Code | BlockKind::List => &[Level::Lines, Level::Words, Level::Characters],
        BlockKind::Paragraph | BlockKind::Heading { .. } => &[
            Level::Sentences,
            Level::Lines,
            Level::Words,
            Level::Characters,
        ],
    };
    let mut ranges = Vec::new();
    split_range(text, (start, end), levels, budget, count, &mut ranges)?;
    units.extend(ranges.into_iter().map(|(start, end)| Unit {
        block: index,
        start,
        end,
    }));
    Ok(())
}

fn split_range(
    text: &str,
    (start, end): (usize, usize),
    levels: &[Level],
    budget: usize,
    count: &dyn Fn(&str) -> usize,
    out: &mut Vec<(usize, usize)>,
) -> Result<(), RagError> {
    if count(&text[start..end]) <= budget {
        out.push((start, end));
        return Ok(());
    }
    let Some((&level, coarser_failed)) = levels.split_first() else {
        return Err(RagError::Unsplittable { budget });
    };
    match level {
        Level::Lines | Level::Sentences => {
            let pieces = if level == Level::Lines {
                line_pieces(text, start, end)
            } else {
                sentence_pieces(text, start, end)
            };
            if pieces.len() <= 1 {
                return split_range(text, (start, end), coarser_failed, budget, count, out);
            }
            for piece in pieces {
                split_range(text, piece, coarser_failed, budget, count, out)?;
            }
            Ok(())
        }
        Level::Words => {
            let starts = word_starts(text, start, end);
            if starts.len() <= 1 {
                return split_range(text, (start, end), coarser_failed, budget, count, out);
            }
            let ends: Vec<usize> = starts.iter().map(|&s| word_end(text, s, end)).collect();
            // Every word is at least one token, so no run fits more than `budget` words.
            pack_greedy(text, (&starts, &ends), budget, count, out, (budget, true))
        }
        Level::Characters => {
            let starts: Vec<usize> = text[start..end]
                .char_indices()
                .map(|(offset, _)| start + offset)
                .collect();
            let ends: Vec<usize> = starts
                .iter()
                .skip(1)
                .copied()
                .chain(std::iter::once(end))
                .collect();
            // No tokenizer we use makes tokens of more than 32 characters; a cap keeps each
            // binary search (and so the whole cut) near linear in the text's length.
            let most = budget.saturating_mul(32);
            pack_greedy(text, (&starts, &ends), budget, count, out, (most, false))
        }
    }
}

/// Packs consecutive pieces `[starts[i], ends[i])` into the longest runs that fit, found by
/// binary search (token counts grow with the text) over at most `most_pieces` pieces per run. A
/// single piece that does not fit is cut between characters when `cut_characters` (a word
/// longer than the budget), else it is [`RagError::Unsplittable`].
fn pack_greedy(
    text: &str,
    (starts, ends): (&[usize], &[usize]),
    budget: usize,
    count: &dyn Fn(&str) -> usize,
    out: &mut Vec<(usize, usize)>,
    (most_pieces, cut_characters): (usize, bool),
) -> Result<(), RagError> {
    let mut first = 0;
    while first < starts.len() {
        // The largest `last` with pieces first..=last within budget.
        let last_candidate = (starts.len() - 1).min(first + most_pieces.max(1) - 1);
        let (mut low, mut high) = (first, last_candidate);
        let mut found = None;
        while low <= high {
            let middle = low + (high - low) / 2;
            if count(&text[starts[first]..ends[middle]]) <= budget {
                found = Some(middle);
                low = middle + 1;
            } else if middle == first {
                break;
            } else {
                high = middle - 1;
            }
        }
        match (found, cut_characters) {
            (Some(last), _) => {
                out.push((starts[first], ends[last]));
                first = last + 1;
            }
            (None, true) => {
                let range = (starts[first], ends[first]);
                split_range(text, range, &[Level::Characters], budget, count, out)?;
                first += 1;
            }
            (None, false) => return Err(RagError::Unsplittable { budget }),
        }
    }
    Ok(())
}

fn word_end(text: &str, start: usize, limit: usize) -> usize {
    text[start..limit]
        .find(char::is_whitespace)
        .map_or(limit, |offset| start + offset)
}

/// `text[start..end]` without leading and trailing whitespace; `None` when nothing is left.
fn trimmed(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let slice = &text[start..end];
    let leading = slice.len() - slice.trim_start().len();
    let trailing = slice.len() - slice.trim_end().len();
    (leading < slice.len()).then(|| (start + leading, end - trailing))
}

/// The non-blank lines of `text[start..end]`.
fn line_pieces(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let mut pieces = Vec::new();
    let mut line_start = start;
    for (offset, c) in text[start..end].char_indices() {
        if c == '\n' {
            pieces.extend(trimmed(text, line_start, start + offset));
            line_start = start + offset + 1;
        }
    }
    pieces.extend(trimmed(text, line_start, end));
    pieces
}

/// Sentences of `text[start..end]`: a sentence ends after `.`, `!` or `?` (and any closing
/// quotes or brackets) followed by whitespace.
fn sentence_pieces(text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
    let slice = &text[start..end];
    let mut pieces = Vec::new();
    let mut sentence_start = start;
    let mut after_terminal = false;
    for (offset, c) in slice.char_indices() {
        if c.is_whitespace() && after_terminal {
            pieces.extend(trimmed(text, sentence_start, start + offset));
            sentence_start = start + offset;
        }
        after_terminal = match c {
            '.' | '!' | '?' => true,
            '"' | '\'' | ')' | ']' | '”' | '’' => after_terminal,
            _ => false,
        };
    }
    pieces.extend(trimmed(text, sentence_start, end));
    pieces
}

#[cfg(test)]
mod tests;
