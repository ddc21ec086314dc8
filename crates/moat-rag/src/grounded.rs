//! Grounded prompts: the user's chat messages plus retrieved passages become the messages the
//! model sees (a system message listing the passages as `[1]`..`[n]`, with the instruction to
//! cite them by number and to say so when they do not hold the answer), and the [`Citation`]s
//! the response carries. When nothing was retrieved (nothing passed `min_score`), the
//! [`NoAnswerPolicy`] decides: reply without calling the model, or call it with an instruction
//! to say it found nothing.
//!
//! Pure functions: no store, no model, no wire format.

use moat_engine::{ChatMessage, MessageContent};
use moat_vector::Location;

use crate::RetrievedHit;

/// The instruction put before the passages.
pub const DEFAULT_INSTRUCTION: &str = "Answer the user's question using only the numbered \
passages below. Cite the passages you use by their number in square brackets, like [1] or \
[2][3]. If the passages do not contain the answer, say that you do not know; do not guess.";

/// The instruction used when nothing relevant was retrieved and the policy asks the model.
pub const DEFAULT_NOTHING_FOUND_INSTRUCTION: &str = "The knowledge base was searched for the \
user's question and holds no relevant information. Tell the user that no relevant information \
was found in the knowledge base; do not answer from general knowledge.";

/// The reply given without calling the model, by default.
pub const DEFAULT_NO_ANSWER_REPLY: &str = "No relevant information was found in the knowledge \
base for this question.";

/// What happens when no passage was retrieved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoAnswerPolicy {
    /// Answer with this text and do not call the model.
    Reply(String),
    /// Call the model with an instruction to say that nothing relevant was found.
    AskModel,
}

impl Default for NoAnswerPolicy {
    fn default() -> Self {
        NoAnswerPolicy::Reply(DEFAULT_NO_ANSWER_REPLY.to_owned())
    }
}

/// How prompts are built. `Default` gives the wording above and 240-character snippets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroundingConfig {
    pub instruction: String,
    pub nothing_found_instruction: String,
    pub no_answer: NoAnswerPolicy,
    /// The longest snippet in a citation, in characters (cut at a word, with `…`).
    pub snippet_chars: usize,
}

impl Default for GroundingConfig {
    fn default() -> Self {
        GroundingConfig {
            instruction: DEFAULT_INSTRUCTION.to_owned(),
            nothing_found_instruction: DEFAULT_NOTHING_FOUND_INSTRUCTION.to_owned(),
            no_answer: NoAnswerPolicy::default(),
            snippet_chars: 240,
        }
    }
}

/// One passage put in the prompt, as the response cites it.
#[derive(Clone, Debug, PartialEq)]
pub struct Citation {
    /// The number the passage has in the prompt (`[marker]`), from 1.
    pub marker: u32,
    /// The document's path in the knowledge base.
    pub path: String,
    pub location: Location,
    /// The retrieval score (fused or reranked).
    pub score: f32,
    /// The passage's start, for display.
    pub snippet: String,
    pub chunk_id: i64,
}

/// What to do with the request.
#[derive(Clone, Debug, PartialEq)]
pub enum Grounded {
    /// Send these messages to the model and attach these citations to its answer (none when
    /// nothing was found and the policy asks the model).
    Prompt {
        messages: Vec<ChatMessage>,
        citations: Vec<Citation>,
    },
    /// Nothing relevant was found: answer with this text, do not call the model.
    NoAnswer { reply: String },
}

/// The text of the last user message: what retrieval should search for. `None` when there is
/// no user message with text.
pub fn query_from_messages(messages: &[ChatMessage]) -> Option<String> {
    messages
        .iter()
        .rev()
        .filter(|message| message.role == "user")
        .map(content_text)
        .find(|text| !text.trim().is_empty())
}

/// Builds the augmented messages and citations for `hits` (best first), or the no-answer
/// outcome when `hits` is empty.
pub fn ground(
    messages: &[ChatMessage],
    hits: &[RetrievedHit],
    config: &GroundingConfig,
) -> Grounded {
    if hits.is_empty() {
        return match &config.no_answer {
            NoAnswerPolicy::Reply(reply) => Grounded::NoAnswer {
                reply: reply.clone(),
            },
            NoAnswerPolicy::AskModel => Grounded::Prompt {
                messages: with_system(messages, &config.nothing_found_instruction),
                citations: Vec::new(),
            },
        };
    }
    let mut system = config.instruction.clone();
    let mut citations = Vec::with_capacity(hits.len());
    for (index, retrieved) in hits.iter().enumerate() {
        let marker = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let hit = &retrieved.hit;
        system.push_str(&format!(
            "\n\n[{marker}] {}\n{}",
            source_line(&hit.path, &hit.location),
            hit.text.trim()
        ));
        citations.push(Citation {
            marker,
            path: hit.path.clone(),
            location: hit.location.clone(),
            score: retrieved.score,
            snippet: snippet(&hit.text, config.snippet_chars),
            chunk_id: hit.chunk_id,
        });
    }
    Grounded::Prompt {
        messages: with_system(messages, &system),
        citations,
    }
}

/// The markers `[n]` an answer cites, in order of first appearance, without repeats. Lets the
/// server return only the citations the model used.
pub fn cited_markers(answer: &str) -> Vec<u32> {
    let mut markers = Vec::new();
    let mut rest = answer;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && rest[digits.len()..].starts_with(']') {
            if let Ok(marker) = digits.parse::<u32>() {
                if !markers.contains(&marker) {
                    markers.push(marker);
                }
            }
        }
    }
    markers
}

/// `docs/install.md, Install > From source, lines 10-24` (what is known of the place).
fn source_line(path: &str, location: &Location) -> String {
    let mut parts = vec![path.to_owned()];
    if !location.heading.is_empty() {
        parts.push(location.heading.clone());
    }
    if location.page > 0 {
        parts.push(format!("page {}", location.page));
    }
    match (location.line_start, location.line_end) {
        (0, _) => {}
        (start, end) if end > start => parts.push(format!("lines {start}-{end}")),
        (start, _) => parts.push(format!("line {start}")),
    }
    format!("({})", parts.join(", "))
}

/// The messages with `text` as the system prompt: appended (after a blank line) to a leading
/// system message, else inserted as one. Many chat templates take one system message only, at
/// the start.
fn with_system(messages: &[ChatMessage], text: &str) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    match messages.split_first() {
        Some((first, rest)) if first.role == "system" => {
            let existing = content_text(first);
            let combined = if existing.trim().is_empty() {
                text.to_owned()
            } else {
                format!("{}\n\n{text}", existing.trim_end())
            };
            let mut system = first.clone();
            system.content = Some(MessageContent::Text(combined));
            out.push(system);
            out.extend_from_slice(rest);
        }
        _ => {
            out.push(ChatMessage::text("system", text));
            out.extend_from_slice(messages);
        }
    }
    out
}

/// A message's text: the string, or its text parts joined by newlines.
fn content_text(message: &ChatMessage) -> String {
    match &message.content {
        None => String::new(),
        Some(MessageContent::Text(text)) => text.clone(),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .filter_map(|part| part.text.as_deref())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// The first `limit` characters of `text` with whitespace collapsed, cut at a word, `…` added
/// when cut.
fn snippet(text: &str, limit: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= limit {
        return collapsed;
    }
    let cut: String = collapsed.chars().take(limit).collect();
    let at_word = match cut.rfind(' ') {
        Some(space) if space > 0 => &cut[..space],
        _ => cut.as_str(),
    };
    format!("{at_word}…")
}

#[cfg(test)]
mod tests;
