//! The guardrails on one request: the input rail over a chat's messages or a completion's
//! prompts (block → 400 `content_policy_violation`, redact → the model sees placeholders),
//! and the watch on each choice's answer: it counts the generated tokens and the engine's
//! measured busy time on the request's ticket, runs the output rail through moat-guard's
//! incremental scanner as tokens flow (holding back only what a detector still needs; a
//! block ends the choice with an error), and optionally puts the request's redacted values
//! back in place of their placeholders.

use std::sync::Arc;

use moat_engine::{ChatMessage, GeneratedToken, GenerationEvent, MessageContent};
use moat_guard::{Action, Guard, GuardError, Hit, OutputScan, OutputScanner, Rail, RedactionMap};
use moat_meter::Decision;

use crate::trust::{ChosenGuard, Ticket};
use crate::ApiError;

/// Placeholders are at most this long (moat-guard's bound), so a restorer holds back at most
/// this much.
const MAX_PLACEHOLDER_BYTES: usize = 64;

/// Joins the texts of a conversation for one scan. The record separator breaks every number
/// and token run, so no finding spans two texts in practice; if one ever does, the texts are
/// scanned one by one instead.
const SEPARATOR: &str = "\n\u{1e}\n";

/// The audit name of a hit: `group.class`, e.g. `pii.email`.
pub(crate) fn rail_name(hit: &Hit) -> String {
    let class = &hit.finding.class;
    format!("{}.{}", class.group().as_str(), class.name())
}

pub(crate) fn decision_of(action: Action) -> Decision {
    match action {
        Action::Allow => Decision::Allowed,
        Action::Flag => Decision::Flagged,
        Action::Redact => Decision::Redacted,
        Action::Block => Decision::Blocked,
    }
}

/// Checks `texts` under the input rail, rewriting them with placeholders when the policy
/// redacts; returns the placeholders given.
fn check_texts(
    guard: &ChosenGuard,
    texts: &mut [&mut String],
    ticket: &Ticket,
) -> Result<RedactionMap, ApiError> {
    if texts.is_empty() {
        return Ok(RedactionMap::default());
    }
    let joined = texts
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(SEPARATOR);
    let verdict = guard.guard.check_input(&joined)?;
    if let Some(record) = ticket.record() {
        record.count_guard_hits("input", &verdict.hits);
    }
    ticket.record_rails(
        decision_of(verdict.decision),
        verdict.hits.iter().map(rail_name),
    );
    let verdict = verdict.into_result(Rail::Input)?;
    if verdict.redactions.is_empty() {
        return Ok(verdict.redactions);
    }
    let parts: Vec<&str> = verdict.text.split(SEPARATOR).collect();
    if parts.len() == texts.len() {
        for (text, part) in texts.iter_mut().zip(parts) {
            **text = part.to_owned();
        }
        return Ok(verdict.redactions);
    }
    // A redaction swallowed a separator: scan each text alone (placeholders then restart
    // per text, so only the last text's map is kept for restoring).
    let mut last = RedactionMap::default();
    for text in texts.iter_mut() {
        let verdict = guard.guard.check_input(text)?.into_result(Rail::Input)?;
        **text = verdict.text;
        last = verdict.redactions;
    }
    Ok(last)
}

/// An earlier assistant turn's thinking, if it has any.
pub(crate) fn message_reasoning(message: &ChatMessage) -> Option<&str> {
    message
        .extra
        .get(moat_openai::REASONING_CONTENT)
        .and_then(serde_json::Value::as_str)
        .filter(|text| !text.is_empty())
}

/// The input rail over a chat's messages: their text and text parts, the thinking of earlier
/// assistant turns, and the arguments of the
/// tool calls earlier assistant turns made (JSON text; a redaction stays inside its string);
/// and over the request's tool definitions, which the model reads too (see [`tool_texts`]).
pub(crate) fn chat_input(
    guard: &ChosenGuard,
    messages: &mut [ChatMessage],
    tools: Option<&mut serde_json::Value>,
    ticket: &Ticket,
) -> Result<RedactionMap, ApiError> {
    let mut texts: Vec<&mut String> = Vec::new();
    if let Some(tools) = tools {
        let mut fixed = Vec::new();
        tool_texts(tools, None, &mut texts, &mut fixed);
        check_only(guard, &fixed, ticket)?;
    }
    for message in messages.iter_mut() {
        match &mut message.content {
            Some(MessageContent::Text(text)) => texts.push(text),
            Some(MessageContent::Parts(parts)) => {
                texts.extend(parts.iter_mut().filter_map(|part| part.text.as_mut()));
            }
            None => {}
        }
        if let Some(serde_json::Value::Array(calls)) = &mut message.tool_calls {
            for call in calls.iter_mut() {
                if let Some(serde_json::Value::String(arguments)) =
                    call.pointer_mut("/function/arguments")
                {
                    texts.push(arguments);
                }
            }
        }
        // An earlier turn's thinking, which a template may show the model.
        if let Some(serde_json::Value::String(reasoning)) =
            message.extra.get_mut(moat_openai::REASONING_CONTENT)
        {
            texts.push(reasoning);
        }
    }
    check_texts(guard, &mut texts, ticket)
}

/// Keys whose string values in a tool definition are prose, which a redaction may rewrite.
const TOOL_PROSE_KEYS: [&str; 2] = ["description", "title"];

/// The text of the `tools` array, all of which reaches the model through its chat template (a
/// poisoned tool description is a prompt injection like any other): descriptions and titles
/// at any depth into `prose`, every other string and every key (names, property names,
/// types, enum values, defaults, patterns) into `fixed`, which the rail checks but does not
/// rewrite, since the tool and the grammar built from its schema must keep them as sent.
fn tool_texts<'a>(
    value: &'a mut serde_json::Value,
    key: Option<&str>,
    prose: &mut Vec<&'a mut String>,
    fixed: &mut Vec<String>,
) {
    match value {
        serde_json::Value::String(text) => {
            if key.is_some_and(|key| TOOL_PROSE_KEYS.contains(&key)) {
                prose.push(text);
            } else {
                fixed.push(text.clone());
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                tool_texts(item, key, prose, fixed);
            }
        }
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                fixed.push(key.clone());
                tool_texts(value, Some(key), prose, fixed);
            }
        }
        _ => {}
    }
}

/// Checks `texts` under the input rail without rewriting them: a block is the error, and a
/// finding the policy would redact is recorded as flagged, since it cannot be rewritten.
fn check_only(guard: &ChosenGuard, texts: &[String], ticket: &Ticket) -> Result<(), ApiError> {
    if texts.is_empty() {
        return Ok(());
    }
    let verdict = guard.guard.check_input(&texts.join(SEPARATOR))?;
    if let Some(record) = ticket.record() {
        record.count_guard_hits("input", &verdict.hits);
    }
    let decision = match verdict.decision {
        Action::Redact => Action::Flag,
        other => other,
    };
    ticket.record_rails(decision_of(decision), verdict.hits.iter().map(rail_name));
    verdict.into_result(Rail::Input)?;
    Ok(())
}

/// The input rail over one completion prompt.
pub(crate) fn prompt_input(
    guard: &ChosenGuard,
    prompt: &mut String,
    ticket: &Ticket,
) -> Result<RedactionMap, ApiError> {
    check_texts(guard, &mut [prompt], ticket)
}

/// Puts placeholders back in a stream of text, holding back only an unclosed `[` that could
/// still become a placeholder.
struct Restore {
    map: Arc<RedactionMap>,
    pending: String,
}

impl Restore {
    fn push(&mut self, delta: &str) -> String {
        self.pending.push_str(delta);
        let hold_from = self.pending.rfind('[').filter(|&open| {
            !self.pending[open..].contains(']') && self.pending.len() - open < MAX_PLACEHOLDER_BYTES
        });
        let cut = hold_from.unwrap_or(self.pending.len());
        let ready: String = self.pending.drain(..cut).collect();
        self.map.restore(&ready)
    }

    fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.map.restore(&rest)
    }
}

/// What watches one choice's answer.
pub(crate) struct Watch {
    ticket: Ticket,
    /// Tokens counted so far; corrected to the engine's own count when the choice finishes.
    counted: u64,
    scanner: Option<OutputScanner>,
    restore: Option<Restore>,
}

impl Watch {
    /// Counts tokens on `ticket`; with `guard`, runs its output rail; with a non-empty
    /// `restore` map, puts the request's redacted values back after the scan (so the output
    /// rail judges placeholders, not the user's own data).
    pub(crate) fn new(
        ticket: Ticket,
        guard: Option<&ChosenGuard>,
        restore: Option<Arc<RedactionMap>>,
    ) -> Watch {
        Watch {
            ticket,
            counted: 0,
            scanner: guard.filter(|g| g.scans_output).map(|g| g.guard.scanner()),
            restore: restore.filter(|map| !map.is_empty()).map(|map| Restore {
                map,
                pending: String::new(),
            }),
        }
    }

    /// The request's ticket (the generation path times choices through its record).
    pub(crate) fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    fn release(&mut self, text: String) -> String {
        match &mut self.restore {
            Some(restore) => restore.push(&text),
            None => text,
        }
    }

    fn record_hits(&self) {
        if let Some(scanner) = &self.scanner {
            let hits = scanner.hits();
            let decision = hits
                .iter()
                .map(|hit| hit.action)
                .max()
                .unwrap_or(Action::Allow);
            if let Some(record) = self.ticket.record() {
                record.count_guard_hits("output", hits);
            }
            self.ticket
                .record_rails(decision_of(decision), hits.iter().map(rail_name));
        }
    }

    fn blocked(&self, error: GuardError) -> ApiError {
        self.record_hits();
        if let GuardError::Blocked { .. } = &error {
            self.ticket.record_rails(Decision::Blocked, []);
        }
        ApiError::from(error)
    }

    /// The events to pass on for one engine event.
    pub(crate) fn on_event(
        &mut self,
        event: GenerationEvent,
    ) -> Vec<Result<GenerationEvent, ApiError>> {
        match event {
            GenerationEvent::Token(token) => {
                self.ticket.add_completion_tokens(1);
                self.counted += 1;
                let text = match &mut self.scanner {
                    Some(scanner) => match scanner.push(&token.text) {
                        Ok(text) => text,
                        Err(error) => return vec![Err(self.blocked(error))],
                    },
                    None => token.text.clone(),
                };
                let text = self.release(text);
                vec![Ok(GenerationEvent::Token(GeneratedToken { text, ..token }))]
            }
            GenerationEvent::Finished { reason, usage } => {
                self.ticket.add_busy(usage.busy);
                let real = u64::from(usage.completion_tokens);
                self.ticket
                    .add_completion_tokens(real.saturating_sub(self.counted));
                self.counted = self.counted.max(real);
                let finished = GenerationEvent::Finished { reason, usage };
                let rest = match &mut self.scanner {
                    Some(scanner) => match scanner.finish() {
                        Ok(rest) => rest,
                        Err(error) => return vec![Err(self.blocked(error))],
                    },
                    None => String::new(),
                };
                let mut rest = self.release(rest);
                if let Some(restore) = &mut self.restore {
                    rest.push_str(&restore.finish());
                }
                self.record_hits();
                let mut out = Vec::new();
                if !rest.is_empty() {
                    out.push(Ok(GenerationEvent::Token(GeneratedToken {
                        id: 0,
                        text: rest,
                        logprob: None,
                    })));
                }
                out.push(Ok(finished));
                out
            }
            started @ GenerationEvent::Started { .. } => vec![Ok(started)],
        }
    }
}
