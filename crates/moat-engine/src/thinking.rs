//! A reasoning model's thinking as the engine sees it: [`BudgetWatch`] reads a sequence's
//! output as it is generated, finds the thinking at the start of the answer (or knows the
//! prompt opened it), counts its tokens, and says when a [`Thinking::budget`] is spent, so
//! that the backend makes the model write the closing tag (llama.cpp's and vLLM's reasoning
//! budget). It reads bytes and tags only: no vocabulary, sampling or HTTP.

use crate::request::Thinking;

/// What the watch knows of the thinking so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The answer so far is whitespace or the start of the opening tag.
    Before,
    /// Inside the thinking: its tokens count.
    Thinking,
    /// The thinking ended, was forced to end, or never began: nothing more to do.
    Over,
}

/// Watches one sequence's output for the end of its thinking budget.
#[derive(Clone, Debug)]
pub struct BudgetWatch {
    open: Vec<u8>,
    close: Vec<u8>,
    budget: u32,
    state: State,
    /// Before: the answer so far. Thinking: the last bytes, enough to find a closing tag
    /// split over tokens.
    seen: Vec<u8>,
    /// Thinking tokens after the opening tag.
    spent: u32,
    /// The output's last bytes (at most 4): whether it ends inside a UTF-8 character, which
    /// forcing now would split.
    last_bytes: Vec<u8>,
}

impl BudgetWatch {
    /// A watch for a request with a thinking budget; `None` without one (or without tags).
    pub fn new(thinking: &Thinking) -> Option<Self> {
        let budget = thinking.budget?;
        if thinking.open.is_empty() || thinking.close.is_empty() {
            return None;
        }
        Some(Self {
            open: thinking.open.as_bytes().to_vec(),
            close: thinking.close.as_bytes().to_vec(),
            budget,
            state: if thinking.opened {
                State::Thinking
            } else {
                State::Before
            },
            seen: Vec::new(),
            spent: 0,
            last_bytes: Vec::new(),
        })
    }

    /// The bytes of the token just generated.
    pub fn observe(&mut self, piece: &[u8]) {
        self.last_bytes.extend_from_slice(piece);
        let excess = self.last_bytes.len().saturating_sub(4);
        self.last_bytes.drain(..excess);
        match self.state {
            State::Over => {}
            State::Before => {
                self.seen.extend_from_slice(piece);
                // Leading whitespace is dropped as it comes, so a long run of it is not read
                // again at every token.
                let start = self
                    .seen
                    .iter()
                    .position(|byte| !byte.is_ascii_whitespace())
                    .unwrap_or(self.seen.len());
                self.seen.drain(..start);
                let answer = self.seen.as_slice();
                if let Some(after) = answer.strip_prefix(self.open.as_slice()) {
                    // The token that opens the thinking is not one of its tokens.
                    let after = after.to_vec();
                    self.state = State::Thinking;
                    self.seen.clear();
                    self.read_thinking(&after);
                } else if !self.open.starts_with(answer) {
                    self.end();
                }
            }
            State::Thinking => {
                self.spent = self.spent.saturating_add(1);
                self.read_thinking(piece);
            }
        }
    }

    /// Whether the budget is spent and the closing tag must be written now. Once the backend
    /// acts on it, it calls [`BudgetWatch::end`].
    pub fn spent(&self) -> bool {
        self.state == State::Thinking
            && self.spent >= self.budget
            && !ends_mid_char(&self.last_bytes)
    }

    /// The thinking is over (its end is being forced): the watch does nothing more.
    pub fn end(&mut self) {
        self.state = State::Over;
        self.seen = Vec::new();
    }

    /// Thinking text: ends the watch at the closing tag, keeps the tail that could start one.
    fn read_thinking(&mut self, text: &[u8]) {
        self.seen.extend_from_slice(text);
        if contains(&self.seen, &self.close) {
            self.end();
            return;
        }
        let keep = self.close.len() - 1;
        if self.seen.len() > keep {
            self.seen.drain(..self.seen.len() - keep);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// Whether `bytes` (the end of the output) end inside a UTF-8 character: their last lead
/// byte has fewer continuation bytes after it than it announces.
fn ends_mid_char(bytes: &[u8]) -> bool {
    let continuation = |byte: u8| byte & 0b1100_0000 == 0b1000_0000;
    let trailing = bytes
        .iter()
        .rev()
        .take_while(|&&byte| continuation(byte))
        .count();
    let Some(&lead) = bytes.iter().rev().nth(trailing) else {
        return false;
    };
    let width = match lead {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        // ASCII, or not a lead byte (invalid UTF-8 stays invalid): nothing to wait for.
        _ => 1,
    };
    trailing + 1 < width
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thinking(opened: bool, budget: u32) -> Thinking {
        Thinking {
            open: "<think>".into(),
            close: "</think>".into(),
            opened,
            budget: Some(budget),
            grammar_after: false,
        }
    }

    /// After each piece, whether the budget is spent.
    fn spent_after(opened: bool, budget: u32, pieces: &[&str]) -> Vec<bool> {
        let mut watch = BudgetWatch::new(&thinking(opened, budget)).unwrap();
        pieces
            .iter()
            .map(|piece| {
                watch.observe(piece.as_bytes());
                watch.spent()
            })
            .collect()
    }

    #[test]
    fn no_budget_no_watch() {
        let mut free = thinking(true, 4);
        free.budget = None;
        assert!(BudgetWatch::new(&free).is_none());
    }

    #[test]
    fn thinking_the_prompt_opened_counts_from_the_first_token() {
        assert_eq!(
            spent_after(true, 3, &["a", " b", " c", " d"]),
            [false, false, true, true]
        );
        let watch = BudgetWatch::new(&thinking(true, 0)).unwrap();
        assert!(watch.spent(), "a budget of 0 closes before the first token");
    }

    #[test]
    fn the_opening_tag_starts_the_count_even_split_over_tokens() {
        assert_eq!(
            spent_after(false, 2, &["\n", "<th", "ink>", "x", "y"]),
            [false, false, false, false, true]
        );
        // Text after the tag in the same token is thinking, but the token is not counted.
        assert_eq!(spent_after(false, 1, &["<think>\nhm", "m"]), [false, true]);
        assert_eq!(spent_after(false, 0, &["<think>"]), [true]);
    }

    #[test]
    fn whitespace_before_the_tag_is_not_kept() {
        let mut watch = BudgetWatch::new(&thinking(false, 1)).unwrap();
        for _ in 0..1000 {
            watch.observe(b"  \n");
        }
        assert!(watch.seen.is_empty());
        watch.observe(b"<think>");
        watch.observe(b"x");
        assert!(watch.spent());
    }

    #[test]
    fn an_answer_that_does_not_open_thinking_is_never_cut() {
        assert_eq!(
            spent_after(false, 0, &["Paris", "<think>", "x"]),
            [false, false, false]
        );
        assert_eq!(spent_after(false, 0, &["<thing>", "x"]), [false, false]);
    }

    #[test]
    fn a_closing_tag_ends_the_watch_even_split_over_tokens() {
        assert_eq!(
            spent_after(true, 4, &["a", "</", "think", ">", "b", "c"]),
            [false, false, false, false, false, false]
        );
        assert_eq!(
            spent_after(true, 2, &["a</think>", "b", "c"]),
            [false, false, false]
        );
    }

    #[test]
    fn the_budget_waits_for_a_character_to_be_whole() {
        let euro = "€".as_bytes();
        let mut watch = BudgetWatch::new(&thinking(true, 1)).unwrap();
        watch.observe(&euro[..2]);
        assert!(!watch.spent(), "the budget is spent mid-character");
        watch.observe(&euro[2..]);
        assert!(watch.spent());
        watch.end();
        assert!(!watch.spent(), "once forced, it says nothing more");
    }

    #[test]
    fn a_character_is_open_until_its_last_byte() {
        let crab = "a🦀".as_bytes();
        for end in 1..=crab.len() {
            assert_eq!(
                ends_mid_char(&crab[..end]),
                (2..5).contains(&end),
                "{end} bytes"
            );
        }
        assert!(!ends_mid_char(b""));
        assert!(!ends_mid_char(b"\xff"));
        assert!(!ends_mid_char(b"\x80\x80\x80\x80"));
        // A character whose bytes came in two tokens, one a continuation byte alone.
        let mut watch = BudgetWatch::new(&thinking(true, 0)).unwrap();
        watch.observe(&"€".as_bytes()[..2]);
        assert!(!watch.spent());
        watch.observe(&"€".as_bytes()[2..]);
        assert!(watch.spent());
    }
}
