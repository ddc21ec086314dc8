//! The output rail on answers the gateway passes on: one incremental scanner per choice's
//! content and per tool call's arguments ([`AnswerScan`]), and the ticket their hits are
//! recorded on ([`OutputRail`]).

use moat_guard::{Action, GuardError, OutputScan, OutputScanner};
use moat_meter::Decision;
use serde_json::{Map, Value};

use crate::guarding;
use crate::stream::Piece;
use crate::trust::{ChosenGuard, Ticket};
use crate::ApiError;

/// The output rail over an answer the gateway passes on: the scanners of [`AnswerScan`], and
/// the ticket their hits are recorded on when the rail is dropped (the answer sent, or the
/// client gone), before the ticket's audit entry is written. A local target ran the rail
/// itself, on its tokens; running it again here on the same text changes nothing that passed.
pub(super) struct OutputRail {
    scan: AnswerScan,
    ticket: Ticket,
}

impl Drop for OutputRail {
    fn drop(&mut self) {
        self.record();
    }
}

impl OutputRail {
    pub(super) fn new(guard: Option<ChosenGuard>, ticket: &Ticket) -> Option<OutputRail> {
        guard.filter(|g| g.scans_output).map(|guard| OutputRail {
            scan: AnswerScan::new(guard.guard),
            ticket: ticket.clone(),
        })
    }

    /// Scans the choices of a chunk (`delta`) or a whole answer (`message`) in place; a
    /// block is the error to answer with.
    pub(super) fn scan(
        &mut self,
        value: &mut Value,
        field: &str,
        whole: bool,
    ) -> Result<(), ApiError> {
        self.scan
            .scan(value, field, whole)
            .map_err(|error| self.blocked(error))
    }

    /// A chunk with what the open scanners still hold (see [`AnswerScan::flush`]), in the
    /// envelope of the stream's last chunk; an error piece if that text is blocked.
    pub(super) fn flush_piece(&mut self, envelope: Option<&Map<String, Value>>) -> Option<Piece> {
        let choices = match self.scan.flush() {
            Ok(choices) if choices.is_empty() => return None,
            Ok(choices) => choices,
            Err(error) => {
                let error = self.blocked(error);
                return Some(Piece::Error(
                    serde_json::to_string(&error.body()).unwrap_or_default(),
                ));
            }
        };
        let mut chunk = envelope.cloned().unwrap_or_default();
        chunk
            .entry("object")
            .or_insert_with(|| Value::String("chat.completion.chunk".into()));
        chunk.insert("choices".into(), Value::Array(choices));
        Some(Piece::Chunk(Value::Object(chunk).to_string()))
    }

    fn record(&self) {
        for scanner in self.scan.scanners() {
            let hits = scanner.hits();
            let decision = hits.iter().map(|h| h.action).max().unwrap_or(Action::Allow);
            self.ticket.record_rails(
                guarding::decision_of(decision),
                hits.iter().map(guarding::rail_name),
            );
        }
    }

    fn blocked(&self, error: GuardError) -> ApiError {
        self.record();
        if let GuardError::Blocked { .. } = &error {
            self.ticket.record_rails(Decision::Blocked, []);
        }
        ApiError::from(error)
    }
}

/// Which text of a choice a scanner reads: one of its [`TEXT_FIELDS`], or the arguments of one
/// of its tool calls (by the call's index).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Slot {
    Text(&'static str),
    Arguments(u64),
}

/// The text fields of a message or delta: the answer, and a reasoning model's thinking
/// (`reasoning_content` as llama-server and DeepSeek send it, `reasoning` as newer vLLM
/// does).
const TEXT_FIELDS: [&str; 3] = ["content", "reasoning_content", "reasoning"];

/// The output rail's scanners over one answer: one incremental scanner per choice's content
/// and per tool call's arguments, fed each delta as it arrives (holding back only what a
/// detector still needs) and flushed when the choice finishes. Arguments are JSON text,
/// scanned as text like a prompt's earlier calls on the input rail.
struct AnswerScan {
    guard: moat_guard::RuleGuard,
    /// (choice index, slot, scanner, finished).
    scanners: Vec<(u64, Slot, OutputScanner, bool)>,
}

impl AnswerScan {
    fn new(guard: moat_guard::RuleGuard) -> AnswerScan {
        AnswerScan {
            guard,
            scanners: Vec::new(),
        }
    }

    fn scanners(&self) -> impl Iterator<Item = &OutputScanner> {
        self.scanners.iter().map(|(_, _, scanner, _)| scanner)
    }

    /// Feeds `text` to the scanner of `slot` in choice `index` (finishing it when `last`);
    /// returns what may be sent now.
    fn feed(
        &mut self,
        index: u64,
        slot: Slot,
        text: &str,
        last: bool,
    ) -> Result<String, GuardError> {
        // Nothing comes after a choice's end; should it, a new scanner reads it.
        let at = match self
            .scanners
            .iter()
            .position(|(i, s, _, done)| *i == index && *s == slot && !done)
        {
            Some(at) => at,
            None => {
                self.scanners
                    .push((index, slot, self.guard.scanner(), false));
                self.scanners.len() - 1
            }
        };
        let (_, _, scanner, finished) = &mut self.scanners[at];
        let mut out = scanner.push(text)?;
        if last {
            out.push_str(&scanner.finish()?);
            *finished = true;
        }
        Ok(out)
    }

    /// Finishes every scanner still open (a stream that ended, or stopped sending choices,
    /// without a choice's finish reason; or text that came after it): what they held, as
    /// one choice delta per choice, without a finish reason.
    fn flush(&mut self) -> Result<Vec<Value>, GuardError> {
        let open: Vec<(u64, Slot)> = self
            .scanners
            .iter()
            .filter(|(_, _, _, done)| !done)
            .map(|(index, slot, _, _)| (*index, *slot))
            .collect();
        let mut deltas: Vec<(u64, Map<String, Value>)> = Vec::new();
        for (index, slot) in open {
            let rest = self.feed(index, slot, "", true)?;
            if rest.is_empty() {
                continue;
            }
            let at = match deltas.iter().position(|(i, _)| *i == index) {
                Some(at) => at,
                None => {
                    deltas.push((index, Map::new()));
                    deltas.len() - 1
                }
            };
            let delta = &mut deltas[at].1;
            match slot {
                Slot::Text(name) => {
                    delta.insert(name.into(), Value::String(rest));
                }
                Slot::Arguments(call) => {
                    let calls = delta
                        .entry("tool_calls")
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(calls) = calls {
                        calls.push(serde_json::json!({
                            "index": call,
                            "function": {"arguments": rest},
                        }));
                    }
                }
            }
        }
        Ok(deltas
            .into_iter()
            .map(|(index, delta)| {
                serde_json::json!({"index": index, "delta": delta, "finish_reason": null})
            })
            .collect())
    }

    /// Scans the choices of a chunk (`delta`) or a whole answer (`message`) in place.
    fn scan(&mut self, value: &mut Value, field: &str, whole: bool) -> Result<(), GuardError> {
        let Some(choices) = value.get_mut("choices").and_then(Value::as_array_mut) else {
            return Ok(());
        };
        for choice in choices {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let finished = whole || choice.get("finish_reason").is_some_and(|f| !f.is_null());
            let Some(choice) = choice.as_object_mut() else {
                continue;
            };
            if !choice.get(field).is_some_and(Value::is_object) {
                if !finished {
                    continue;
                }
                // A last chunk without a delta still flushes what was held back.
                choice.insert(field.into(), Value::Object(Map::new()));
            }
            let Some(part) = choice.get_mut(field).and_then(Value::as_object_mut) else {
                continue;
            };
            // Thinking ends where the answer starts (its text or its calls): what its
            // scanner holds goes out with the answer's first piece, not after it.
            let answering = part
                .get("content")
                .and_then(Value::as_str)
                .is_some_and(|text| !text.is_empty())
                || part
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .is_some_and(|calls| !calls.is_empty());
            for name in TEXT_FIELDS {
                let last = finished || (answering && name != "content");
                let text = part.get(name).and_then(Value::as_str).unwrap_or("");
                // A field that never had text in this choice needs no scanner.
                let open = self
                    .scanners
                    .iter()
                    .any(|(i, slot, _, done)| *i == index && *slot == Slot::Text(name) && !done);
                if text.is_empty() && !open && name != "content" {
                    continue;
                }
                let out = self.feed(index, Slot::Text(name), text, last)?;
                // A `null` content (an answer that is only tool calls) stays `null`.
                let had_text = part.get(name).is_some_and(Value::is_string);
                if had_text || !out.is_empty() {
                    part.insert(name.into(), Value::String(out));
                }
            }
            self.scan_calls(index, part, whole, finished)?;
        }
        Ok(())
    }

    /// The arguments of a choice's tool calls: a whole answer's at once, a stream's fragment
    /// by fragment (by each call's `index`), and what is held back when the choice finishes
    /// goes out as one more fragment of its call.
    fn scan_calls(
        &mut self,
        index: u64,
        part: &mut Map<String, Value>,
        whole: bool,
        finished: bool,
    ) -> Result<(), GuardError> {
        if let Some(Value::Array(calls)) = part.get_mut("tool_calls") {
            for (position, call) in calls.iter_mut().enumerate() {
                let call_index = match call.get("index").and_then(Value::as_u64) {
                    Some(i) if !whole => i,
                    _ => position as u64,
                };
                let Some(arguments) = call.pointer_mut("/function/arguments") else {
                    continue;
                };
                // Arguments are JSON text; one sent as JSON itself is read (and passed on)
                // as its text.
                if arguments.is_object() || arguments.is_array() {
                    *arguments = Value::String(arguments.to_string());
                }
                if let Value::String(text) = arguments {
                    *text = self.feed(index, Slot::Arguments(call_index), text, whole)?;
                }
            }
        }
        if whole || !finished {
            return Ok(());
        }
        let open: Vec<u64> = self
            .scanners
            .iter()
            .filter_map(|(i, slot, _, done)| match slot {
                Slot::Arguments(call) if *i == index && !done => Some(*call),
                _ => None,
            })
            .collect();
        for call_index in open {
            let rest = self.feed(index, Slot::Arguments(call_index), "", true)?;
            if rest.is_empty() {
                continue;
            }
            let calls = part
                .entry("tool_calls")
                .or_insert_with(|| Value::Array(Vec::new()));
            if !calls.is_array() {
                // `"tool_calls": null` in a finish chunk.
                *calls = Value::Array(Vec::new());
            }
            let Value::Array(calls) = calls else {
                continue;
            };
            let entry = calls
                .iter_mut()
                .find(|call| call.get("index").and_then(Value::as_u64) == Some(call_index));
            let Some(entry) = entry.and_then(Value::as_object_mut) else {
                calls.push(serde_json::json!({
                    "index": call_index,
                    "function": {"arguments": rest},
                }));
                continue;
            };
            let function = entry
                .entry("function")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(function) = function {
                match function.get_mut("arguments") {
                    Some(Value::String(arguments)) => arguments.push_str(&rest),
                    _ => {
                        function.insert("arguments".into(), Value::String(rest));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scan_with(policy: &str) -> AnswerScan {
        let config: moat_guard::GuardConfig = toml::from_str(policy).unwrap();
        AnswerScan::new(moat_guard::RuleGuard::new(&config).unwrap())
    }

    fn redacting() -> AnswerScan {
        scan_with("[output.actions]\npii = \"redact\"\n")
    }

    fn chunk(delta: Value, finish: Option<&str>) -> Value {
        json!({"object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }

    /// The arguments of each call (by index) put together from a stream's chunks.
    fn arguments(chunks: &[Value]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for chunk in chunks {
            for call in chunk["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let index = call["index"].as_u64().unwrap() as usize;
                if out.len() <= index {
                    out.resize(index + 1, String::new());
                }
                out[index].push_str(call["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
        out
    }

    #[test]
    fn a_whole_answers_call_arguments_pass_the_output_rail() {
        let mut scan = redacting();
        let mut answer = json!({"choices": [{"index": 0, "finish_reason": "tool_calls",
        "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "a", "type": "function",
             "function": {"name": "pay", "arguments": "{\"card\": \"4111 1111 1111 1111\"}"}},
            {"id": "b", "type": "function",
             "function": {"name": "mail", "arguments": "{\"to\": \"jane.doe@example.com\"}"}}
        ]}}]});
        scan.scan(&mut answer, "message", true).unwrap();
        let message = &answer["choices"][0]["message"];
        assert!(message["content"].is_null(), "{message}");
        let first = message["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        let second = message["tool_calls"][1]["function"]["arguments"]
            .as_str()
            .unwrap();
        assert_eq!(first, "{\"card\": \"[CREDIT_CARD_1]\"}");
        assert_eq!(second, "{\"to\": \"[EMAIL_1]\"}");
        assert_eq!(message["tool_calls"][1]["function"]["name"], "mail");
    }

    #[test]
    fn streamed_call_arguments_are_scanned_across_fragments_and_flushed_at_the_finish() {
        let mut scan = redacting();
        let mut chunks = vec![
            chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [
                {"index": 0, "id": "a", "type": "function",
                 "function": {"name": "pay", "arguments": ""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0,
                "function": {"arguments": "{\"card\": \"4111 11"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0,
                "function": {"arguments": "11 1111 1111\"}"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "b", "type": "function",
                "function": {"name": "mail", "arguments": "{\"to\": \"jane.doe@exa"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1,
                "function": {"arguments": "mple.com\"}"}}]}),
                None,
            ),
            // The last chunk has no call fragment: what was held back is added to it.
            chunk(json!({}), Some("tool_calls")),
        ];
        for chunk in &mut chunks {
            scan.scan(chunk, "delta", false).unwrap();
        }
        let all = serde_json::to_string(&chunks).unwrap();
        assert!(
            !all.contains("4111") && !all.contains("example.com"),
            "{all}"
        );
        let calls = arguments(&chunks);
        assert_eq!(
            calls,
            ["{\"card\": \"[CREDIT_CARD_1]\"}", "{\"to\": \"[EMAIL_1]\"}"]
        );
        // Nothing of the card number went out before it was judged whole.
        assert!(!arguments(&chunks[..3]).concat().contains("4111"), "{all}");
        // No content appeared where there was none.
        assert!(chunks
            .iter()
            .all(|c| c["choices"][0]["delta"]["content"].is_null()));
    }

    #[test]
    fn a_last_chunk_without_a_delta_still_flushes() {
        let mut scan = redacting();
        let mut chunks = vec![
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "a", "type": "function",
                "function": {"name": "mail", "arguments": "{\"to\": \"bob"}}]}),
                None,
            ),
            json!({"choices": [{"index": 0, "finish_reason": "tool_calls"}]}),
        ];
        for chunk in &mut chunks {
            scan.scan(chunk, "delta", false).unwrap();
        }
        assert_eq!(arguments(&chunks), ["{\"to\": \"bob"]);
        // The short text was held back until the finish, which had to carry it.
        assert_eq!(arguments(&chunks[1..]), ["{\"to\": \"bob"]);
    }

    #[test]
    fn a_call_sent_whole_before_a_separate_finish_comes_out_whole() {
        // A local target's shape: the calls in one chunk, the finish in the next; and a
        // finish delta that says `"tool_calls": null`, as some upstreams write.
        for finish in [json!({}), json!({"content": null, "tool_calls": null})] {
            let mut scan = redacting();
            let mut chunks = vec![
                chunk(
                    json!({"role": "assistant", "content": null, "tool_calls": [
                    {"index": 0, "id": "a", "type": "function",
                     "function": {"name": "mail", "arguments": "{\"to\": \"bob@example.com\"}"}}]}),
                    None,
                ),
                chunk(finish, Some("tool_calls")),
            ];
            for chunk in &mut chunks {
                scan.scan(chunk, "delta", false).unwrap();
            }
            assert_eq!(
                arguments(&chunks),
                ["{\"to\": \"[EMAIL_1]\"}"],
                "{chunks:?}"
            );
        }
    }

    #[test]
    fn arguments_sent_as_json_are_scanned_as_their_text() {
        let mut scan = redacting();
        let mut answer = json!({"choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "a", "type": "function",
                 "function": {"name": "mail", "arguments": {"to": "jane.doe@example.com"}}}]}}]});
        scan.scan(&mut answer, "message", true).unwrap();
        assert_eq!(
            answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"to\":\"[EMAIL_1]\"}"
        );
    }

    #[test]
    fn what_a_stream_without_a_finish_left_held_is_flushed_at_its_end() {
        let mut scan = redacting();
        let mut chunks = vec![
            chunk(json!({"content": "Mail jane.doe@exa"}), None),
            chunk(
                json!({"content": "mple.com today", "tool_calls": [{"index": 0, "id": "a",
                "type": "function", "function": {"name": "mail", "arguments": "{\"to\": \"bob"}}]}),
                None,
            ),
        ];
        for chunk in &mut chunks {
            scan.scan(chunk, "delta", false).unwrap();
        }
        let sent: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        let flushed = scan.flush().unwrap();
        assert_eq!(flushed.len(), 1, "{flushed:?}");
        let last = json!({"choices": flushed});
        let content = format!(
            "{sent}{}",
            last["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
        );
        assert_eq!(content, "Mail [EMAIL_1] today");
        chunks.push(last);
        assert_eq!(arguments(&chunks), ["{\"to\": \"bob"]);
        // Nothing is left to flush a second time.
        assert_eq!(scan.flush().unwrap(), Vec::<Value>::new());
    }

    #[test]
    fn a_reasoning_models_thinking_passes_the_output_rail_whole_and_streamed() {
        for field in ["reasoning_content", "reasoning"] {
            let mut scan = redacting();
            let mut answer = json!({"choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Done.",
                            field: "Write to jane.doe@example.com first."}}]});
            scan.scan(&mut answer, "message", true).unwrap();
            assert_eq!(
                answer["choices"][0]["message"][field],
                "Write to [EMAIL_1] first."
            );
            let mut scan = redacting();
            let mut chunks = vec![
                chunk(json!({field: "Write to jane.doe@exa"}), None),
                chunk(json!({field: "mple.com first."}), None),
                chunk(json!({"content": "Done."}), None),
                chunk(json!({}), Some("stop")),
            ];
            for chunk in &mut chunks {
                scan.scan(chunk, "delta", false).unwrap();
            }
            let text = |name: &str| -> String {
                chunks
                    .iter()
                    .filter_map(|c| c["choices"][0]["delta"][name].as_str())
                    .collect()
            };
            assert_eq!(text(field), "Write to [EMAIL_1] first.", "{chunks:?}");
            assert_eq!(text("content"), "Done.");
            // The chunk that brought the answer's first text (the third) carries the rest of
            // the thinking: none of it comes after the answer.
            let thinking_by_the_answer: String = chunks[..3]
                .iter()
                .filter_map(|c| c["choices"][0]["delta"][field].as_str())
                .collect();
            assert_eq!(thinking_by_the_answer, "Write to [EMAIL_1] first.");
            assert!(
                chunks[0]["choices"][0]["delta"].get("content").is_none(),
                "no content appears where there was none: {chunks:?}"
            );
        }
    }

    #[test]
    fn thinking_before_calls_is_all_out_before_them() {
        let mut scan = redacting();
        let mut chunks = vec![
            chunk(json!({"reasoning_content": "Write to jane.doe@exa"}), None),
            chunk(json!({"reasoning_content": "mple.com"}), None),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "a", "type": "function",
                    "function": {"name": "mail", "arguments": "{}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
        ];
        for chunk in &mut chunks {
            scan.scan(chunk, "delta", false).unwrap();
        }
        let thinking: String = chunks[..3]
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
            .collect();
        assert_eq!(thinking, "Write to [EMAIL_1]", "{chunks:?}");
    }

    #[test]
    fn a_blocked_class_in_call_arguments_blocks_whole_and_streamed() {
        let policy = "[output.actions]\nsecret = \"block\"\n";
        let key = "AKIAIOSFODNN7EXAMPLE";
        let mut whole = json!({"choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "a", "type": "function",
                 "function": {"name": "s3", "arguments": format!("{{\"aws_access_key_id\": \"{key}\"}}")}}]}}]});
        let error = scan_with(policy)
            .scan(&mut whole, "message", true)
            .unwrap_err();
        assert!(matches!(error, GuardError::Blocked { .. }), "{error}");

        let mut scan = scan_with(policy);
        let mut first = chunk(
            json!({"tool_calls": [{"index": 0, "id": "a", "type": "function",
            "function": {"name": "s3", "arguments": format!("{{\"aws_access_key_id\": \"{}", &key[..8])}}]}),
            None,
        );
        let mut last = chunk(
            json!({"tool_calls": [{"index": 0,
            "function": {"arguments": format!("{}\"}}", &key[8..])}}]}),
            Some("tool_calls"),
        );
        scan.scan(&mut first, "delta", false).unwrap();
        assert!(!first.to_string().contains(&key[..8]), "{first}");
        let error = scan.scan(&mut last, "delta", false).unwrap_err();
        assert!(matches!(error, GuardError::Blocked { .. }), "{error}");
    }
}
