//! `StopMatcher`: incremental stop-string matching over streamed text. It holds back any tail
//! that could still become a stop string, so no part of a stop string is ever emitted, and it
//! cuts the stream just before the first stop string that completes. It sees text only; it
//! does not know tokens, bytes (see `utf8.rs`) or how the engine ends a sequence.

/// What one piece of text gave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopOutput {
    /// Text safe to emit now.
    pub text: String,
    /// A stop string completed: `text` ends just before it and the stream is over.
    pub stopped: bool,
}

/// Matches stop strings across pieces of text.
#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not emitted, because it is the start of some stop string.
    held: String,
    stopped: bool,
}

impl StopMatcher {
    /// A matcher for these stop strings; empty strings are ignored.
    pub fn new<S: Into<String>>(stops: impl IntoIterator<Item = S>) -> Self {
        let stops = stops
            .into_iter()
            .map(Into::into)
            .filter(|s: &String| !s.is_empty())
            .collect();
        Self {
            stops,
            held: String::new(),
            stopped: false,
        }
    }

    /// Whether there is anything to match (with no stop strings every piece passes through).
    pub fn is_active(&self) -> bool {
        !self.stops.is_empty()
    }

    /// Whether a stop string has completed.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Feeds the next piece of text. After a stop, every piece gives nothing.
    pub fn push(&mut self, piece: &str) -> StopOutput {
        if self.stopped {
            return StopOutput::default();
        }
        self.held.push_str(piece);
        if let Some(start) = self.first_stop_start() {
            self.held.truncate(start);
            self.stopped = true;
            return StopOutput {
                text: std::mem::take(&mut self.held),
                stopped: true,
            };
        }
        let keep_from = self.partial_stop_start();
        let kept = self.held.split_off(keep_from);
        let text = std::mem::replace(&mut self.held, kept);
        StopOutput {
            text,
            stopped: false,
        }
    }

    /// Ends the stream without a stop (end of generation, length): the held text was not the
    /// start of a stop string after all, so it is emitted.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// The byte offset where the earliest complete stop string starts in the held text.
    fn first_stop_start(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()))
            .min()
    }

    /// The byte offset of the longest tail of the held text that is a proper prefix of some
    /// stop string; the end of the text when there is none. The earliest such offset holds the
    /// most, which is what keeps overlapping candidates (`"aab"` after `"aaa"`) intact.
    fn partial_stop_start(&self) -> usize {
        let longest_stop = self.stops.iter().map(String::len).max().unwrap_or(0);
        let earliest = self.held.len().saturating_sub(longest_stop);
        self.held
            .char_indices()
            .map(|(offset, _)| offset)
            .filter(|&offset| offset >= earliest)
            .find(|&offset| {
                let tail = &self.held[offset..];
                self.stops.iter().any(|stop| stop.starts_with(tail))
            })
            .unwrap_or(self.held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds pieces and returns what was emitted per piece, then the flush, and whether it
    /// stopped.
    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, bool) {
        let mut matcher = StopMatcher::new(stops.iter().copied());
        let mut out = Vec::new();
        let mut stopped = false;
        for piece in pieces {
            let step = matcher.push(piece);
            out.push(step.text);
            stopped |= step.stopped;
        }
        out.push(matcher.finish());
        (out, stopped)
    }

    #[test]
    fn without_stop_strings_text_passes_through() {
        let (out, stopped) = run(&[], &["Hello", " world"]);
        assert_eq!(out, ["Hello", " world", ""]);
        assert!(!stopped);
    }

    #[test]
    fn a_stop_string_inside_one_piece_cuts_the_text_before_it() {
        let (out, stopped) = run(&["END"], &["abc END def"]);
        assert_eq!(out, ["abc ", ""]);
        assert!(stopped);
    }

    #[test]
    fn a_stop_string_split_across_pieces_is_never_emitted() {
        let (out, stopped) = run(&["</answer>"], &["42", "</", "ans", "wer", ">", "more"]);
        assert_eq!(out, ["42", "", "", "", "", "", ""]);
        assert!(stopped);
    }

    #[test]
    fn held_text_is_released_when_the_candidate_fails() {
        let (out, stopped) = run(&["</answer>"], &["a</", "ans", "x b"]);
        assert_eq!(out, ["a", "", "</ansx b", ""]);
        assert!(!stopped);
    }

    #[test]
    fn held_text_is_flushed_at_the_end_of_the_stream() {
        let (out, stopped) = run(&["STOP"], &["go ST"]);
        assert_eq!(out, ["go ", "ST"]);
        assert!(!stopped);
    }

    #[test]
    fn a_stop_string_at_the_very_start_emits_nothing() {
        let (out, stopped) = run(&["\n\n"], &["\n", "\nafter"]);
        assert_eq!(out, ["", "", ""]);
        assert!(stopped);
    }

    #[test]
    fn the_earliest_of_several_stop_strings_wins() {
        let (out, stopped) = run(&["world", "lo w"], &["hello world"]);
        assert_eq!(out, ["hel", ""]);
        assert!(stopped);
    }

    #[test]
    fn overlapping_candidates_keep_the_longest_possible_start() {
        // After "aaa" the tail "aa" may still become "aab"; the first "a" is safe.
        let (out, stopped) = run(&["aab"], &["a", "a", "a", "b"]);
        assert_eq!(out, ["", "", "a", "", ""]);
        assert!(stopped);
    }

    #[test]
    fn a_shorter_stop_inside_a_longer_candidate_still_stops() {
        // "ab" completes while "abcd" is still only a candidate.
        let (out, stopped) = run(&["abcd", "b"], &["xa", "bc"]);
        assert_eq!(out, ["x", "a", ""]);
        assert!(stopped);
    }

    #[test]
    fn multi_byte_text_is_held_on_char_boundaries() {
        let (out, stopped) = run(&["«fin»"], &["été «", "fi", "n»"]);
        assert_eq!(out, ["été ", "", "", ""]);
        assert!(stopped);
        let (out, stopped) = run(&["«fin»"], &["été «", "fo"]);
        assert_eq!(out, ["été ", "«fo", ""]);
        assert!(!stopped);
    }

    #[test]
    fn nothing_is_emitted_after_a_stop() {
        let mut matcher = StopMatcher::new(["x"]);
        assert!(matcher.push("ax").stopped);
        assert!(matcher.is_stopped());
        assert_eq!(matcher.push("more"), StopOutput::default());
        assert_eq!(matcher.finish(), "");
    }

    #[test]
    fn empty_stop_strings_are_ignored() {
        let matcher = StopMatcher::new([""]);
        assert!(!matcher.is_active());
        let (out, stopped) = run(&[""], &["text"]);
        assert_eq!(out, ["text", ""]);
        assert!(!stopped);
    }
}
