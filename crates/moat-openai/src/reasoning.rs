//! Reasoning models: the thinking a model writes between `<think>` and `</think>` (DeepSeek-R1
//! and its distills, Qwen3, QwQ and others trained on that form) goes to `reasoning_content`,
//! apart from the answer, as llama.cpp's server (`--reasoning-format deepseek`, its default
//! for such templates) and DeepSeek's API send it.
//!
//! [`ReasoningFormat`] is the request's `reasoning_format` (llama-server's field);
//! [`ReasoningReader`] splits a choice's text as it streams.

use moat_engine::{Grammar, Thinking};
use serde_json::Value;

use crate::WireError;

/// Where an assistant message keeps its thinking, in requests and answers (llama-server's and
/// DeepSeek's name).
pub const REASONING_CONTENT: &str = "reasoning_content";

/// What opens and closes a model's thinking.
pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";

/// `reasoning_format`: whether thinking is read out of the text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReasoningFormat {
    /// Read it when the model's chat template writes or reads `<think>` (the default).
    #[default]
    Auto,
    /// Always read it (`deepseek`).
    Separate,
    /// Never: thinking stays in `content`, tags and all (`none`).
    Inline,
}

impl ReasoningFormat {
    pub(crate) fn parse(value: Option<&Value>) -> Result<Self, WireError> {
        match value {
            None | Some(Value::Null) => Ok(Self::Auto),
            Some(Value::String(name)) => match name.as_str() {
                "auto" => Ok(Self::Auto),
                "deepseek" => Ok(Self::Separate),
                "none" => Ok(Self::Inline),
                "deepseek-legacy" => Err(WireError::Unsupported {
                    param: "reasoning_format".into(),
                    reason: "deepseek-legacy (thinking in both fields) is not supported; \
                             use deepseek or none"
                        .into(),
                }),
                other => Err(WireError::invalid(
                    "reasoning_format",
                    format!("'{other}' is not one of auto, deepseek, none"),
                )),
            },
            Some(_) => Err(WireError::invalid(
                "reasoning_format",
                "expected a string: auto, deepseek or none",
            )),
        }
    }

    /// Whether to read thinking out of the text of a model whose template does
    /// (`template_thinks`) or does not mention `<think>`.
    pub fn separates(self, template_thinks: bool) -> bool {
        match self {
            Self::Auto => template_thinks,
            Self::Separate => true,
            Self::Inline => false,
        }
    }
}

/// Whether a grammar writes the thinking itself: a `guided_choice` whose texts carry the
/// tags scripts the whole answer, thinking and all, so it holds the answer from its first
/// token. Other grammars hold what follows the thinking.
pub fn writes_thinking(grammar: &Grammar) -> bool {
    match grammar {
        Grammar::Choice(texts) => texts
            .iter()
            .any(|text| text.contains(THINK_OPEN) || text.contains(THINK_CLOSE)),
        Grammar::JsonSchema(_) | Grammar::Tagged { .. } => false,
    }
}

/// What the engine is told of an answer's thinking: nothing for a model that does not think
/// (`template_thinks`) when its thinking is not read out either (`reads_thinking`), so a
/// budget has nothing to bound there. When the thinking is read out, a grammar that holds the
/// answer from its first token waits for the thinking, unless it writes the tags itself
/// ([`writes_thinking`]). `opened`: the prompt ended inside the thinking.
pub fn answer_thinking(
    reads_thinking: bool,
    template_thinks: bool,
    opened: bool,
    grammar: Option<&Grammar>,
    budget: Option<u32>,
) -> Option<Thinking> {
    if !(reads_thinking || template_thinks) {
        return None;
    }
    let holds = grammar.is_some_and(Grammar::holds_from_the_start);
    let grammar_after = reads_thinking && holds && grammar.is_some_and(|g| !writes_thinking(g));
    Some(Thinking {
        open: THINK_OPEN.to_owned(),
        close: THINK_CLOSE.to_owned(),
        opened,
        // A grammar that holds the whole answer writes it all, thinking or not: a forced tag
        // could only land inside what it holds.
        budget: if holds && !grammar_after {
            None
        } else {
            budget
        },
        grammar_after,
    })
}

/// Whether a chat template is a reasoning model's: it writes or reads `<think>` or
/// `</think>` (DeepSeek-R1's distills' first template only splits earlier answers at
/// `</think>`).
pub fn template_thinks(template: &str) -> bool {
    template.contains(THINK_OPEN) || template.contains(THINK_CLOSE)
}

/// Whether a prompt leaves the model inside its thinking: the template's generation prompt
/// ended with `<think>` (DeepSeek-R1's does), so the answer starts with thinking and has no
/// opening tag.
pub fn prompt_opens_thinking(prompt: &str) -> bool {
    prompt.trim_end().ends_with(THINK_OPEN)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: the answer may still open with `<think>`.
    Opening,
    Thinking,
    Answering,
}

/// One piece of text, split.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub reasoning: String,
    pub content: String,
}

impl Split {
    /// A piece that is all answer (a model whose thinking is not read out).
    pub fn answer(content: String) -> Self {
        Self {
            content,
            ..Self::default()
        }
    }
}

/// Splits a choice's text into thinking and answer as it streams. Thinking is only what the
/// answer opens with: `<think>` after nothing but whitespace (or nothing at all, when the prompt
/// opened it), up to `</think>`; a `<think>` later in the text is content. Whitespace around
/// the thinking is dropped; thinking the answer never closed (it ran out of tokens) stays
/// thinking. Text that may be the start of a tag is held until the next piece tells.
#[derive(Debug)]
pub struct ReasoningReader {
    state: State,
    /// Text not given out yet: an opening that may become `<think>`, or thinking that may
    /// become `</think>` (or whitespace before it).
    held: String,
    /// Whitespace after `</think>` is dropped until the answer starts.
    answer_started: bool,
    /// Thinking given out so far (leading whitespace is dropped until it starts).
    thinking_started: bool,
    /// With tools: what opens and closes a call (see [`ReasoningReader::holding_calls`]).
    call_tags: Option<(&'static str, &'static str)>,
    /// A call was opened in the thinking: nothing more goes out until the thinking closes.
    holding_call: bool,
    /// Pieces taken while the answer might still open with `<think>`.
    opening_pieces: u32,
    /// Pieces that were thinking, its tags included (see [`ReasoningReader::thinking_pieces`]).
    thinking_pieces: u32,
    /// `thinking_pieces` before the piece that opened a held call.
    before_call: u32,
}

impl ReasoningReader {
    /// A reader for an answer whose prompt did (`opened`) or did not open its thinking.
    pub fn new(opened: bool) -> Self {
        Self {
            state: if opened {
                State::Thinking
            } else {
                State::Opening
            },
            held: String::new(),
            answer_started: false,
            thinking_started: false,
            call_tags: None,
            holding_call: false,
            opening_pieces: 0,
            thinking_pieces: 0,
            before_call: 0,
        }
    }

    /// Holds back a call the model opens while it thinks (`open`, such as `<tool_call>`, to
    /// `close`): with `tool_choice: auto` a lazy grammar holds the model to its calls from that
    /// tag on and then ends the answer, so thinking that never closes and ends with a closed
    /// call ends in calls, which [`ReasoningReader::finish`] gives as content for the calls
    /// reader. Should the thinking close after all (the tag was only mentioned), or end
    /// inside the call (out of tokens), the held text is thinking. Nothing streams while a
    /// call is held.
    pub fn holding_calls(mut self, open: &'static str, close: &'static str) -> Self {
        self.call_tags = Some((open, close));
        self
    }

    /// Whether the answer is (so far) thinking.
    #[cfg(test)]
    fn thinking(&self) -> bool {
        self.state == State::Thinking
    }

    /// How many of the pieces taken so far were thinking, its tags included: a reasoning
    /// model's reasoning tokens, when each piece is one token. Pieces that opened with
    /// `<think>` count once the tag is read, and a call held in the thinking that turned out
    /// to be the answer's (see [`ReasoningReader::holding_calls`]) stops counting at the end.
    pub fn thinking_pieces(&self) -> u32 {
        self.thinking_pieces
    }

    /// Takes the next piece of text; returns what may go out now.
    pub fn push(&mut self, piece: &str) -> Split {
        let mut split = Split::default();
        self.held.push_str(piece);
        if self.state == State::Thinking {
            self.thinking_pieces += 1;
        }
        if self.state == State::Opening {
            self.opening_pieces += 1;
            let start = self.held.trim_start();
            if start.is_empty() || (THINK_OPEN.starts_with(start) && start != THINK_OPEN) {
                return split;
            }
            if let Some(rest) = start.strip_prefix(THINK_OPEN) {
                self.held = rest.to_owned();
                self.state = State::Thinking;
                // The pieces that wrote the tag (and any whitespace before it) count.
                self.thinking_pieces += self.opening_pieces;
            } else {
                // No thinking: the text is the answer as written.
                self.state = State::Answering;
                self.answer_started = true;
            }
        }
        if self.state == State::Thinking {
            if let Some(end) = self.held.find(THINK_CLOSE) {
                let rest = self.held.split_off(end);
                self.give_thinking(&mut split, true);
                self.held = rest[THINK_CLOSE.len()..].to_owned();
                self.state = State::Answering;
            } else {
                self.give_thinking(&mut split, false);
            }
        }
        if self.state == State::Answering {
            split.content = self.take_answer();
        }
        split
    }

    /// At the end: what is still held. Nothing is taken after it.
    pub fn finish(&mut self) -> Split {
        let mut split = Split::default();
        match self.state {
            State::Opening => split.content = std::mem::take(&mut self.held),
            State::Thinking => {
                let mut held = std::mem::take(&mut self.held);
                if !self.thinking_started {
                    held = held.trim_start().to_owned();
                }
                let call = self
                    .call_tags
                    .filter(|_| self.holding_call)
                    .and_then(|(open, close)| calls_from(&held, open, close));
                match call {
                    Some(at) => {
                        split.content = held.split_off(at);
                        held.truncate(held.trim_end().len());
                        split.reasoning = held;
                        self.thinking_pieces = self.before_call;
                    }
                    None => split.reasoning = held,
                }
            }
            State::Answering => split.content = self.take_answer(),
        }
        self.state = State::Answering;
        self.answer_started = true;
        split
    }

    /// Gives out the held thinking but what may be the start of `</think>` (or of a call's tag,
    /// or a call opened in the thinking, see [`ReasoningReader::holding_calls`]) and the
    /// whitespace before it; with `closed`, the held text is all the thinking there is, and its trailing
    /// whitespace is dropped.
    fn give_thinking(&mut self, split: &mut Split, closed: bool) {
        let mut text = std::mem::take(&mut self.held);
        if !self.thinking_started {
            let start = text.len() - text.trim_start().len();
            text.drain(..start);
        }
        let keep = if closed {
            self.holding_call = false;
            text.truncate(text.trim_end().len());
            0
        } else {
            let open = self.call_tags.map(|(open, _)| open);
            let call = open.and_then(|open| text.find(open));
            let body_end = if self.holding_call {
                0
            } else if let Some(at) = call {
                self.holding_call = true;
                // This piece (already counted) opened the call.
                self.before_call = self.thinking_pieces.saturating_sub(1);
                at
            } else {
                let call_tag = open.map_or(0, |open| tag_prefix_len(&text, open));
                text.len() - tag_prefix_len(&text, THINK_CLOSE).max(call_tag)
            };
            text.len() - text[..body_end].trim_end().len()
        };
        self.held = text.split_off(text.len() - keep);
        if !text.is_empty() {
            self.thinking_started = true;
        }
        split.reasoning = text;
    }

    fn take_answer(&mut self) -> String {
        let mut text = std::mem::take(&mut self.held);
        if !self.answer_started {
            let start = text.len() - text.trim_start().len();
            text.drain(..start);
            self.answer_started = !text.is_empty();
        }
        text
    }
}

/// Where the calls that end `text` start: the first `open` from which the rest is nothing but
/// calls, each `open`, a JSON value, `close`, apart by whitespace. `None` when no such place
/// exists (a call cut off, or the tag only mentioned).
fn calls_from(text: &str, open: &str, close: &str) -> Option<usize> {
    let only_calls = |mut rest: &str| loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return true;
        }
        let Some(after_open) = rest.strip_prefix(open) else {
            return false;
        };
        let Some(end) = after_open.find(close) else {
            return false;
        };
        if serde_json::from_str::<Value>(after_open[..end].trim()).is_err() {
            return false;
        }
        rest = &after_open[end + close.len()..];
    };
    text.match_indices(open)
        .map(|(at, _)| at)
        .find(|&at| only_calls(&text[at..]))
}

/// The length of the longest end of `text` that is a proper start of `tag`.
fn tag_prefix_len(text: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|&n| {
            n <= text.len()
                && text.is_char_boundary(text.len() - n)
                && tag.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_engine_is_told_of_the_thinking() {
        let json = Grammar::json_object();
        // Neither read out nor a thinking template: nothing to bound.
        assert_eq!(answer_thinking(false, false, false, None, Some(5)), None);
        let free = answer_thinking(true, true, true, None, Some(5)).unwrap();
        assert!(free.opened && !free.grammar_after);
        assert_eq!(free.budget, Some(5));
        // Read out, a JSON grammar waits for the thinking and the budget still bounds it.
        let held = answer_thinking(true, true, false, Some(&json), Some(5)).unwrap();
        assert!(held.grammar_after);
        assert_eq!(held.budget, Some(5));
        // A choice that writes the tags holds everything: no budget, nothing to wait for.
        let scripted = Grammar::Choice(vec!["<think>x</think>y".into()]);
        let written = answer_thinking(true, true, false, Some(&scripted), Some(5)).unwrap();
        assert!(!written.grammar_after);
        assert_eq!(written.budget, None);
        // Not read out (reasoning_format none) but a thinking template: the grammar holds
        // the whole answer, so no budget either.
        let inline = answer_thinking(false, true, false, Some(&json), Some(5)).unwrap();
        assert!(!inline.grammar_after);
        assert_eq!(inline.budget, None);
    }

    #[test]
    fn only_a_choice_that_carries_the_tags_writes_the_thinking() {
        let choice =
            |texts: &[&str]| Grammar::Choice(texts.iter().map(|t| t.to_string()).collect());
        assert!(writes_thinking(&choice(&["yes", "hm</think>no"])));
        assert!(writes_thinking(&choice(&["<think>a"])));
        assert!(!writes_thinking(&choice(&["yes", "no <thinking>"])));
        assert!(!writes_thinking(&Grammar::JsonSchema(
            r#"{"const": "</think>"}"#.to_owned()
        )));
    }

    /// Feeds `pieces`, returns (reasoning, content, pieces that counted as thinking).
    fn read(opened: bool, pieces: &[&str]) -> (String, String, u32) {
        read_with(ReasoningReader::new(opened), pieces)
    }

    fn read_with(mut reader: ReasoningReader, pieces: &[&str]) -> (String, String, u32) {
        let (mut reasoning, mut content) = (String::new(), String::new());
        for piece in pieces {
            let split = reader.push(piece);
            reasoning += &split.reasoning;
            content += &split.content;
        }
        let split = reader.finish();
        reasoning += &split.reasoning;
        content += &split.content;
        (reasoning, content, reader.thinking_pieces())
    }

    /// Every way of cutting `text` into two or three pieces reads as the whole does.
    fn same_however_cut(opened: bool, text: &str) -> (String, String) {
        let whole = read(opened, &[text]);
        let bounds: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        for &i in &bounds {
            for &j in bounds.iter().filter(|&&j| j >= i) {
                let cut = read(opened, &[&text[..i], &text[i..j], &text[j..]]);
                assert_eq!((&cut.0, &cut.1), (&whole.0, &whole.1), "cut at {i} and {j}");
            }
        }
        (whole.0, whole.1)
    }

    #[test]
    fn thinking_the_answer_opens_with_is_split_from_the_answer() {
        let text = "<think>\nThe capital of France is Paris.\n</think>\n\nParis.";
        assert_eq!(
            same_however_cut(false, text),
            ("The capital of France is Paris.".into(), "Paris.".into())
        );
        let text = "  \n<think>a < b, so </thin k> is not a tag</think>yes";
        assert_eq!(
            same_however_cut(false, text),
            ("a < b, so </thin k> is not a tag".into(), "yes".into())
        );
    }

    #[test]
    fn a_prompt_that_opened_the_thinking_leaves_the_answer_inside_it() {
        let text = "Two and two.\n</think>\n\nFour.";
        assert_eq!(
            same_however_cut(true, text),
            ("Two and two.".into(), "Four.".into())
        );
    }

    #[test]
    fn text_that_does_not_open_with_think_is_all_content() {
        for text in [
            "Paris.",
            "The tag <think>x</think> comes later.",
            " <thin",
            "<",
            "\n\n",
        ] {
            assert_eq!(
                same_however_cut(false, text),
                (String::new(), text.to_owned()),
                "{text:?}"
            );
        }
    }

    #[test]
    fn thinking_that_never_closes_stays_thinking() {
        assert_eq!(
            same_however_cut(false, "<think>\nStep one, step two, </th"),
            (String::new() + "Step one, step two, </th", String::new())
        );
        assert_eq!(
            same_however_cut(true, "I ran out"),
            ("I ran out".into(), String::new())
        );
        assert_eq!(
            same_however_cut(false, "<think>"),
            (String::new(), String::new())
        );
    }

    #[test]
    fn whitespace_inside_the_thinking_is_kept_and_around_it_dropped() {
        let text = "<think>\n\nline one\n\n  line two  \n</think>\n\n  answer\n\n  end";
        assert_eq!(
            same_however_cut(false, text),
            ("line one\n\n  line two".into(), "answer\n\n  end".into())
        );
    }

    #[test]
    fn thinking_streams_as_it_comes_and_only_a_tag_start_is_held() {
        let mut reader = ReasoningReader::new(false);
        assert_eq!(reader.push("<thi").reasoning, "");
        assert!(!reader.thinking());
        assert_eq!(reader.thinking_pieces(), 0);
        let split = reader.push("nk>Let me");
        assert_eq!(split.reasoning, "Let me");
        assert!(reader.thinking());
        assert_eq!(reader.thinking_pieces(), 2, "both pieces of the tag count");
        assert_eq!(reader.push(" see </").reasoning, " see");
        let split = reader.push("think>Yes");
        assert_eq!(
            (split.reasoning.as_str(), split.content.as_str()),
            ("", "Yes")
        );
        assert_eq!(
            reader.thinking_pieces(),
            4,
            "the piece that closes the thinking is thinking"
        );
        let split = reader.push(" indeed");
        assert_eq!(split.content, " indeed");
        assert_eq!(reader.thinking_pieces(), 4);
    }

    #[test]
    fn pieces_are_counted_as_thinking_up_to_the_closing_tag() {
        let (_, _, thinking) = read(false, &["<think>", "a", "b", "</think>", "c", "d"]);
        assert_eq!(thinking, 4);
        let (_, _, thinking) = read(true, &["a", "</think>", "c"]);
        assert_eq!(thinking, 2);
        let (_, _, thinking) = read(false, &["c", "<think>", "d"]);
        assert_eq!(thinking, 0);
        let (_, _, thinking) = read(false, &["\n", "<", "think", ">", "a", "</think>"]);
        assert_eq!(thinking, 6, "whitespace and a tag written in pieces count");
        let (_, _, thinking) = read(false, &["\n", "<", "b"]);
        assert_eq!(thinking, 0);
    }

    /// (reasoning, content) of `text` read with calls held, however it is cut.
    fn holding_calls_however_cut(text: &str) -> (String, String) {
        let read = |pieces: &[&str]| {
            let reader = ReasoningReader::new(false).holding_calls("<tool_call>", "</tool_call>");
            let (reasoning, content, _) = read_with(reader, pieces);
            (reasoning, content)
        };
        let whole = read(&[text]);
        for i in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            assert_eq!(read(&[&text[..i], &text[i..]]), whole, "cut at {i}");
        }
        whole
    }

    #[test]
    fn a_call_opened_in_thinking_that_never_closes_is_the_answer() {
        let call = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
        let text = format!("<think>\nI should call f.\n{call}");
        assert_eq!(
            holding_calls_however_cut(&text),
            ("I should call f.".into(), call.into())
        );
        // The tag only mentioned: the thinking closes, and all of it is thinking.
        let text = "<think>Hermes calls look like <tool_call>{...}.</think>No call.";
        assert_eq!(
            holding_calls_however_cut(text),
            (
                "Hermes calls look like <tool_call>{...}.".into(),
                "No call.".into()
            )
        );
        // A mention the answer ran out of tokens after, and a call cut off, stay thinking.
        let text = "<think>Hermes calls look like <tool_call> tags, so I";
        assert_eq!(
            holding_calls_however_cut(text),
            (
                "Hermes calls look like <tool_call> tags, so I".into(),
                String::new()
            )
        );
        let text = "<think>Plan.<tool_call>{\"name\": \"f\", \"argu";
        assert_eq!(
            holding_calls_however_cut(text),
            (
                "Plan.<tool_call>{\"name\": \"f\", \"argu".into(),
                String::new()
            )
        );
        // The tag mentioned before the call: the mention stays thinking, the call is read.
        let call = "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>";
        let text = format!("<think>I use <tool_call> tags. Now:{call}\n{call}");
        assert_eq!(
            holding_calls_however_cut(&text),
            (
                "I use <tool_call> tags. Now:".into(),
                format!("{call}\n{call}")
            )
        );
        // Nothing goes out while a call is held, and its pieces are not thinking.
        let mut reader = ReasoningReader::new(true).holding_calls("<tool_call>", "</tool_call>");
        assert_eq!(reader.push("Plan. <tool_").reasoning, "Plan.");
        assert_eq!(reader.push("call>{\"name\"").reasoning, "");
        assert_eq!(reader.push(": \"f\"}</tool_call>").reasoning, "");
        assert_eq!(reader.thinking_pieces(), 3);
        let rest = reader.finish();
        assert_eq!(rest.content, "<tool_call>{\"name\": \"f\"}</tool_call>");
        assert_eq!(rest.reasoning, "");
        assert_eq!(
            reader.thinking_pieces(),
            1,
            "the pieces from the one that completed the tag stopped counting"
        );
        let (_, _, thinking) = read_with(
            ReasoningReader::new(true).holding_calls("<tool_call>", "</tool_call>"),
            &["Plan.", "\n", "<tool_call>", "{}", "</tool_call>"],
        );
        assert_eq!(thinking, 2);
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let text = "<think>日本の首都は東京。</think>東京です";
        assert_eq!(
            same_however_cut(false, text),
            ("日本の首都は東京。".into(), "東京です".into())
        );
    }

    #[test]
    fn reasoning_format_reads_llama_servers_names() {
        let parse = |value: Value| ReasoningFormat::parse(Some(&value));
        assert_eq!(parse(Value::from("auto")).unwrap(), ReasoningFormat::Auto);
        assert_eq!(
            parse(Value::from("deepseek")).unwrap(),
            ReasoningFormat::Separate
        );
        assert_eq!(parse(Value::from("none")).unwrap(), ReasoningFormat::Inline);
        assert_eq!(ReasoningFormat::parse(None).unwrap(), ReasoningFormat::Auto);
        for bad in [
            Value::from("deepseek-legacy"),
            Value::from("r1"),
            Value::from(1),
        ] {
            let error = parse(bad).unwrap_err();
            assert_eq!(error.param(), Some("reasoning_format"));
        }
        assert!(ReasoningFormat::Auto.separates(true));
        assert!(!ReasoningFormat::Auto.separates(false));
        assert!(ReasoningFormat::Separate.separates(false));
        assert!(!ReasoningFormat::Inline.separates(true));
        assert!(prompt_opens_thinking("<|Assistant|><think>\n"));
        assert!(template_thinks("{{ content.split('</think>')[-1] }}"));
        assert!(template_thinks("<think>\n"));
        assert!(!template_thinks("<|im_start|>assistant\n"));
        assert!(!prompt_opens_thinking("<think>\n\n</think>\n\n"));
    }
}
