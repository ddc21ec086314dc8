//! The normalised view detectors match on, with a map back to byte offsets of the original
//! text: zero-width characters and soft hyphens removed, each other character folded by NFKC
//! (fullwidth digits and letters become ASCII), dash look-alikes become `-`. Case folding is
//! left to the matchers (case-insensitive patterns), which keeps secrets' case intact.
//!
//! Knows nothing of detectors; it only keeps offsets straight so that a redaction replaces the
//! bytes the user actually sent.

use std::ops::Range;

use unicode_normalization::UnicodeNormalization;

/// Text as the detectors see it, and where each of its bytes came from.
pub(crate) struct Normalized<'a> {
    text: std::borrow::Cow<'a, str>,
    /// For each byte of `text`, the original byte range of the character it came from; empty
    /// when the view is the original itself (pure ASCII: nothing to fold or strip).
    origin: Vec<(u32, u32)>,
}

/// Characters that render as nothing and are used to split a pattern so it no longer matches.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}'
    )
}

fn is_dash_like(c: char) -> bool {
    matches!(
        c,
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE58}' | '\u{FE63}' | '\u{FF0D}'
    )
}

impl<'a> Normalized<'a> {
    /// Builds the view. Callers bound `original` (the guard's `max_text_bytes`), which keeps
    /// the offset table (8 bytes per byte) bounded too.
    pub(crate) fn new(original: &'a str) -> Normalized<'a> {
        if original.is_ascii() {
            return Normalized {
                text: std::borrow::Cow::Borrowed(original),
                origin: Vec::new(),
            };
        }
        let mut text = String::with_capacity(original.len());
        let mut origin = Vec::with_capacity(original.len());
        for (start, c) in original.char_indices() {
            let end = start + c.len_utf8();
            let range = (start as u32, end as u32);
            if is_invisible(c) {
                continue;
            }
            let before = text.len();
            if c.is_ascii() {
                text.push(c);
            } else if is_dash_like(c) {
                text.push('-');
            } else {
                text.extend(std::iter::once(c).nfkc());
            }
            origin.extend(std::iter::repeat_n(range, text.len() - before));
        }
        Normalized {
            text: std::borrow::Cow::Owned(text),
            origin,
        }
    }

    /// The normalised text.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The original byte range covering the normalised byte range `range` (which must be
    /// non-empty and inside the text).
    pub(crate) fn to_original(&self, range: Range<usize>) -> Range<usize> {
        if self.origin.is_empty() {
            return range;
        }
        let start = self.origin[range.start].0 as usize;
        let end = self.origin[range.end.max(range.start + 1) - 1].1 as usize;
        start..end
    }

    /// The original byte offset where normalised byte `offset` starts (the end of the original
    /// text when `offset` is the end of the view).
    pub(crate) fn original_offset(&self, offset: usize, original_len: usize) -> usize {
        if self.origin.is_empty() {
            return offset;
        }
        match self.origin.get(offset) {
            Some(&(start, _)) => start as usize,
            None => original_len,
        }
    }
}

/// The largest char boundary of `text` at or below `index` (`str::floor_char_boundary` is
/// newer than the workspace's minimum Rust).
pub(crate) fn floor_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_its_own_view() {
        let view = Normalized::new("call 555-0100");
        assert_eq!(view.text(), "call 555-0100");
        assert_eq!(view.to_original(5..13), 5..13);
    }

    #[test]
    fn zero_width_and_fullwidth_map_back_to_original_bytes() {
        let original = "id: ４\u{200B}１1 x";
        let view = Normalized::new(original);
        assert_eq!(view.text(), "id: 411 x");
        let span = view.to_original(4..7);
        assert_eq!(&original[span], "４\u{200B}１1");
    }

    #[test]
    fn dash_look_alikes_and_soft_hyphens() {
        let view = Normalized::new("555\u{2013}01\u{00AD}00");
        assert_eq!(view.text(), "555-0100");
    }
}
