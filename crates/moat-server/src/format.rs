//! The two APIs' `Format`s: how engine events become chat chunks or completion chunks, and
//! the whole answers built from the same events.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use moat_engine::{GeneratedToken, GenerationEvent, TokenLogprob};
use moat_openai::{
    finish_reason, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatLogprobToken, ChatLogprobs,
    Completion, CompletionChoice, CompletionLogprobs, FunctionCall, ReasoningReader, ResponseIds,
    Split, ToolCall, ToolCallReader, ValidTools, WireUsage,
};

use crate::generate::Format;

#[derive(Default)]
struct ChatChoiceState {
    text: String,
    logprobs: Vec<ChatLogprobToken>,
    finish_reason: &'static str,
    /// With tools: the model's text, held back from the first call on.
    calls_reader: Option<ToolCallReader>,
    tool_calls: Vec<ToolCall>,
    /// For a reasoning model: its thinking, read out of the text before calls are.
    reasoning_reader: Option<ReasoningReader>,
    reasoning: String,
    /// Its tokens spent thinking, counted by a [`ThinkingCount`] on the engine's tokens.
    reasoning_tokens: Arc<AtomicU32>,
}

/// Counts a choice's tokens spent thinking as the engine gives them, before the output rails
/// (which hold text back and let it go in later tokens) see them: a reader of its own, set
/// up as the format's, over the raw token text.
pub(crate) struct ThinkingCount {
    reader: ReasoningReader,
    count: Arc<AtomicU32>,
}

impl ThinkingCount {
    pub(crate) fn on_event(&mut self, event: &GenerationEvent) {
        match event {
            GenerationEvent::Token(token) => {
                self.reader.push(&token.text);
            }
            GenerationEvent::Finished { .. } => {
                self.reader.finish();
            }
            GenerationEvent::Started { .. } => return,
        }
        self.count
            .store(self.reader.thinking_pieces(), Ordering::Relaxed);
    }
}

pub(crate) struct ChatFormat {
    ids: ResponseIds,
    with_logprobs: bool,
    choices: Vec<ChatChoiceState>,
    /// Thinking is read out of the text (whether the prompt opened it): usage reports its
    /// tokens.
    reasoning: Option<bool>,
}

impl ChatFormat {
    pub(crate) fn new(ids: ResponseIds, n_choices: u32, with_logprobs: bool) -> Self {
        Self {
            ids,
            with_logprobs,
            choices: (0..n_choices).map(|_| ChatChoiceState::default()).collect(),
            reasoning: None,
        }
    }

    /// Reads a reasoning model's thinking out of each choice's text into `reasoning_content`:
    /// `Some(opened)` when it does, with `opened` when the prompt ended inside the thinking.
    /// After `reading_tool_calls`.
    pub(crate) fn reading_reasoning(mut self, opened: Option<bool>) -> Self {
        self.reasoning = opened;
        for index in 0..self.choices.len() {
            let reader = self.reasoning_reader(index);
            self.choices[index].reasoning_reader = reader;
        }
        self
    }

    /// A reader of choice `index`'s thinking, when thinking is read out.
    fn reasoning_reader(&self, index: usize) -> Option<ReasoningReader> {
        let reader = ReasoningReader::new(self.reasoning?);
        // With tools, a call opened in the thinking may be the answer (see
        // `ReasoningReader::holding_calls`).
        Some(match self.choices.get(index)?.calls_reader {
            Some(_) => reader.holding_calls(moat_openai::HERMES_OPEN, moat_openai::HERMES_CLOSE),
            None => reader,
        })
    }

    /// What counts choice `index`'s tokens spent thinking, for the generation to run on the
    /// engine's events (`generate::Started::count_thinking`); `None` unless thinking is read
    /// out.
    pub(crate) fn thinking_count(&self, index: u32) -> Option<ThinkingCount> {
        let index = index as usize;
        Some(ThinkingCount {
            reader: self.reasoning_reader(index)?,
            count: Arc::clone(&self.choices.get(index)?.reasoning_tokens),
        })
    }

    /// The usage, with the thinking's tokens when thinking is read out (never more than the
    /// completion's).
    fn usage(&self, usage: WireUsage) -> WireUsage {
        if self.reasoning.is_none() {
            return usage;
        }
        let thinking: u32 = self
            .choices
            .iter()
            .map(|choice| choice.reasoning_tokens.load(Ordering::Relaxed))
            .sum();
        usage.with_reasoning_tokens(thinking.min(usage.completion_tokens))
    }

    /// Reads calls of these tools out of each choice's text (the request has tools): the
    /// calls become `tool_calls`, the rest stays content.
    pub(crate) fn reading_tool_calls(mut self, tools: Option<&ValidTools>) -> Self {
        if let Some(tools) = tools {
            let names: Vec<String> = tools
                .functions
                .iter()
                .map(|(name, _)| name.clone())
                .collect();
            for choice in &mut self.choices {
                choice.calls_reader = Some(ToolCallReader::new(names.clone(), tools.parallel));
            }
        }
        self
    }

    /// OpenAI's form of a choice's calls; ids are unique per response.
    fn tool_calls(&self, index: u32, calls: Vec<(String, String)>) -> Vec<ToolCall> {
        calls
            .into_iter()
            .zip(0u32..)
            .map(|((name, arguments), position)| ToolCall {
                index: Some(position),
                id: format!("call_{}_{index}_{position}", self.ids.id),
                kind: "function",
                function: FunctionCall { name, arguments },
            })
            .collect()
    }
}

impl Format for ChatFormat {
    type Chunk = ChatCompletionChunk;
    type Whole = ChatCompletion;

    fn on_event(&mut self, index: u32, event: GenerationEvent) -> Vec<ChatCompletionChunk> {
        let Some(choice) = self.choices.get_mut(index as usize) else {
            return Vec::new();
        };
        match event {
            GenerationEvent::Started { .. } => vec![ChatCompletionChunk::role(&self.ids, index)],
            GenerationEvent::Token(GeneratedToken { text, logprob, .. }) => {
                let logprob = logprob
                    .filter(|_| self.with_logprobs)
                    .map(|l| ChatLogprobToken::from(&l));
                let split = match &mut choice.reasoning_reader {
                    Some(reader) => reader.push(&text),
                    None => Split::answer(text),
                };
                choice.reasoning.push_str(&split.reasoning);
                let text = match &mut choice.calls_reader {
                    Some(reader) => reader.push(&split.content),
                    None => split.content,
                };
                if text.is_empty() && split.reasoning.is_empty() && logprob.is_none() {
                    return Vec::new();
                }
                choice.text.push_str(&text);
                choice.logprobs.extend(logprob.clone());
                let logprobs = logprob.map(|token| ChatLogprobs {
                    content: vec![token],
                    refusal: None,
                });
                if split.reasoning.is_empty() {
                    return vec![ChatCompletionChunk::content(
                        &self.ids, index, text, logprobs,
                    )];
                }
                let text = (!text.is_empty()).then_some(text);
                vec![ChatCompletionChunk::reasoning(
                    &self.ids,
                    index,
                    split.reasoning,
                    text,
                    logprobs,
                )]
            }
            GenerationEvent::Finished { reason, .. } => {
                choice.finish_reason = finish_reason(reason);
                let mut chunks = Vec::new();
                let mut held_content = String::new();
                if let Some(mut reader) = choice.reasoning_reader.take() {
                    let rest = reader.finish();
                    if !rest.reasoning.is_empty() {
                        choice.reasoning.push_str(&rest.reasoning);
                        chunks.push(ChatCompletionChunk::reasoning(
                            &self.ids,
                            index,
                            rest.reasoning,
                            None,
                            None,
                        ));
                    }
                    held_content = match &mut choice.calls_reader {
                        Some(reader) => reader.push(&rest.content),
                        None => rest.content,
                    };
                }
                if !held_content.is_empty() {
                    choice.text.push_str(&held_content);
                    chunks.push(ChatCompletionChunk::content(
                        &self.ids,
                        index,
                        held_content,
                        None,
                    ));
                }
                if let Some(reader) = choice.calls_reader.take() {
                    let parsed = reader.finish();
                    if !parsed.content.is_empty() {
                        choice.text.push_str(&parsed.content);
                        chunks.push(ChatCompletionChunk::content(
                            &self.ids,
                            index,
                            parsed.content,
                            None,
                        ));
                    }
                    if !parsed.calls.is_empty() {
                        // OpenAI says tool_calls when the answer ends in calls, even when
                        // the model went on to its end-of-turn token.
                        let finish = choice.finish_reason;
                        let calls = self.tool_calls(index, parsed.calls);
                        let choice = &mut self.choices[index as usize];
                        choice.tool_calls.clone_from(&calls);
                        if finish == "stop" {
                            choice.finish_reason = "tool_calls";
                        }
                        chunks.push(ChatCompletionChunk::tool_calls(&self.ids, index, calls));
                    }
                }
                let choice = &self.choices[index as usize];
                chunks.push(ChatCompletionChunk::finish(
                    &self.ids,
                    index,
                    choice.finish_reason,
                ));
                chunks
            }
        }
    }

    fn usage_chunk(&self, usage: WireUsage) -> ChatCompletionChunk {
        ChatCompletionChunk::usage(&self.ids, self.usage(usage))
    }

    fn into_whole(self, usage: WireUsage) -> ChatCompletion {
        let usage = self.usage(usage);
        let separates_reasoning = self.reasoning.is_some();
        let with_logprobs = self.with_logprobs;
        let choices = self
            .choices
            .into_iter()
            .zip(0..)
            .map(|(choice, index)| {
                let logprobs = with_logprobs.then_some(ChatLogprobs {
                    content: choice.logprobs,
                    refusal: None,
                });
                let calls = choice.tool_calls.into_iter().map(|call| ToolCall {
                    index: None,
                    ..call
                });
                let reasoning = separates_reasoning.then_some(choice.reasoning);
                ChatChoice::new(index, choice.text, logprobs, choice.finish_reason)
                    .with_reasoning(reasoning.filter(|text| !text.is_empty()))
                    .with_tool_calls(calls.collect())
            })
            .collect();
        ChatCompletion::new(&self.ids, choices, usage)
    }
}

/// What `echo` puts before a completion choice.
#[derive(Clone, Debug, Default)]
pub(crate) struct Echo {
    pub text: String,
    /// Each prompt token's text, when logprobs were asked for too.
    pub token_texts: Option<Vec<String>>,
}

#[derive(Default)]
struct CompletionChoiceState {
    echo: Option<Echo>,
    text: String,
    /// Characters in the token texts so far: where the next token starts (`text_offset`),
    /// counted over the tokens' texts as in OpenAI's echo, where those include BOS.
    token_chars: u32,
    logprobs: CompletionLogprobs,
    finish_reason: Option<&'static str>,
}

impl CompletionChoiceState {
    /// Appends text with its tokens' logprobs, returning the part just added.
    fn append(
        &mut self,
        text: &str,
        tokens: &[(String, Option<&TokenLogprob>)],
    ) -> CompletionLogprobs {
        let mut added = CompletionLogprobs::default();
        for (token, logprob) in tokens {
            added.push(token, *logprob, self.token_chars);
            self.logprobs.push(token, *logprob, self.token_chars);
            self.token_chars += token.chars().count() as u32;
        }
        self.text.push_str(text);
        added
    }
}

pub(crate) struct CompletionFormat {
    ids: ResponseIds,
    with_logprobs: bool,
    choices: Vec<CompletionChoiceState>,
}

impl CompletionFormat {
    /// `echoes[i]` is what choice `i` echoes (`None` without `echo`).
    pub(crate) fn new(ids: ResponseIds, echoes: Vec<Option<Echo>>, with_logprobs: bool) -> Self {
        Self {
            ids,
            with_logprobs,
            choices: echoes
                .into_iter()
                .map(|echo| CompletionChoiceState {
                    echo,
                    ..CompletionChoiceState::default()
                })
                .collect(),
        }
    }

    fn chunk(
        &self,
        index: u32,
        text: String,
        logprobs: Option<CompletionLogprobs>,
        finish: Option<&'static str>,
    ) -> Completion {
        let choice = CompletionChoice {
            text,
            index,
            logprobs,
            finish_reason: finish,
        };
        Completion::new(&self.ids, vec![choice], None)
    }
}

impl Format for CompletionFormat {
    type Chunk = Completion;
    type Whole = Completion;

    fn on_event(&mut self, index: u32, event: GenerationEvent) -> Vec<Completion> {
        let with_logprobs = self.with_logprobs;
        let Some(choice) = self.choices.get_mut(index as usize) else {
            return Vec::new();
        };
        let (text, added) = match event {
            GenerationEvent::Started {
                prompt_logprobs, ..
            } => {
                let Some(echo) = choice.echo.take() else {
                    return Vec::new();
                };
                let prompt_logprobs = prompt_logprobs.unwrap_or_default();
                let tokens: Vec<_> = echo
                    .token_texts
                    .iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, token)| {
                        (
                            token.clone(),
                            prompt_logprobs.get(i).and_then(Option::as_ref),
                        )
                    })
                    .collect();
                let added = choice.append(&echo.text, &tokens);
                (echo.text, added)
            }
            GenerationEvent::Token(GeneratedToken { text, logprob, .. }) => {
                let logprob = logprob.filter(|_| with_logprobs);
                if text.is_empty() && logprob.is_none() {
                    return Vec::new();
                }
                let tokens: Vec<_> = logprob.iter().map(|l| (l.token.clone(), Some(l))).collect();
                let added = choice.append(&text, &tokens);
                (text, added)
            }
            GenerationEvent::Finished { reason, .. } => {
                let reason = finish_reason(reason);
                choice.finish_reason = Some(reason);
                let logprobs = with_logprobs.then(CompletionLogprobs::default);
                return vec![self.chunk(index, String::new(), logprobs, Some(reason))];
            }
        };
        let logprobs = with_logprobs.then_some(added);
        vec![self.chunk(index, text, logprobs, None)]
    }

    fn usage_chunk(&self, usage: WireUsage) -> Completion {
        Completion::new(&self.ids, Vec::new(), Some(usage))
    }

    fn into_whole(self, usage: WireUsage) -> Completion {
        let with_logprobs = self.with_logprobs;
        let choices = self
            .choices
            .into_iter()
            .zip(0..)
            .map(|(choice, index)| CompletionChoice {
                text: choice.text,
                index,
                logprobs: with_logprobs.then_some(choice.logprobs),
                finish_reason: choice.finish_reason,
            })
            .collect();
        Completion::new(&self.ids, choices, Some(usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_engine::{FinishReason, Usage};
    use serde_json::{json, Value};

    fn token(text: &str) -> GenerationEvent {
        GenerationEvent::Token(GeneratedToken {
            id: 0,
            text: text.to_owned(),
            logprob: None,
        })
    }

    fn tools(parallel: bool) -> ValidTools {
        ValidTools {
            definitions: json!([]),
            choice: moat_openai::ToolChoice::Auto,
            parallel,
            functions: vec![("f".to_owned(), json!({"type": "object"}))],
        }
    }

    fn ids() -> ResponseIds {
        ResponseIds {
            id: "chatcmpl-7".into(),
            created: 1,
            model: "m".into(),
        }
    }

    /// The chunks of one choice that writes `pieces`, as JSON, and the whole answer.
    fn run(pieces: &[&str], parallel: bool) -> (Vec<Value>, Value) {
        let format = ChatFormat::new(ids(), 1, false).reading_tool_calls(Some(&tools(parallel)));
        let (chunks, _, whole) = run_with(format, pieces);
        (chunks, whole)
    }

    /// The chunks, the usage chunk and the whole answer.
    fn run_with(format: ChatFormat, pieces: &[&str]) -> (Vec<Value>, Value, Value) {
        run_watched(format, pieces, false)
    }

    /// As `run_with`; with `held`, the format gets what an output rail that held everything
    /// back gives: each token's event with no text, then all of it in one last token.
    fn run_watched(
        mut format: ChatFormat,
        pieces: &[&str],
        held: bool,
    ) -> (Vec<Value>, Value, Value) {
        let mut events = vec![GenerationEvent::Started {
            prompt_tokens: 3,
            cached_tokens: 0,
            prompt_logprobs: None,
        }];
        events.extend(pieces.iter().map(|piece| token(piece)));
        events.push(GenerationEvent::Finished {
            reason: FinishReason::Stop,
            usage: Usage::default(),
        });
        let mut count = format.thinking_count(0);
        for event in &events {
            if let Some(count) = &mut count {
                count.on_event(event);
            }
        }
        if held {
            let finished = events.pop().unwrap();
            for event in &mut events[1..] {
                *event = token("");
            }
            events.push(token(&pieces.concat()));
            events.push(finished);
        }
        let chunks = events
            .into_iter()
            .flat_map(|event| format.on_event(0, event))
            .map(|chunk| serde_json::to_value(chunk).unwrap())
            .collect();
        let usage = WireUsage::from(Usage {
            prompt_tokens: 3,
            completion_tokens: pieces.len() as u32,
            ..Usage::default()
        });
        let usage_chunk = serde_json::to_value(format.usage_chunk(usage)).unwrap();
        let whole = serde_json::to_value(format.into_whole(usage)).unwrap();
        (chunks, usage_chunk, whole)
    }

    /// What the stream's deltas put together: (reasoning_content, content).
    fn streamed_texts(chunks: &[Value]) -> (String, String) {
        let mut texts = (String::new(), String::new());
        for chunk in chunks {
            let delta = &chunk["choices"][0]["delta"];
            texts.0 += delta["reasoning_content"].as_str().unwrap_or_default();
            texts.1 += delta["content"].as_str().unwrap_or_default();
        }
        texts
    }

    #[test]
    fn a_reasoning_models_thinking_goes_apart_and_its_call_is_read_after_it() {
        let format = ChatFormat::new(ids(), 1, false)
            .reading_tool_calls(Some(&tools(true)))
            .reading_reasoning(Some(false));
        let (chunks, usage, whole) = run_with(
            format,
            &[
                "<think>",
                "\nI will call f, not <tool_call> here.",
                "\n</think>\n\n",
                "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
            ],
        );
        let message = &whole["choices"][0]["message"];
        assert_eq!(
            message["reasoning_content"], "I will call f, not <tool_call> here.",
            "{whole}"
        );
        assert_eq!(message["content"], Value::Null);
        assert_eq!(message["tool_calls"].as_array().unwrap().len(), 1);
        assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            whole["usage"]["completion_tokens_details"]["reasoning_tokens"], 3,
            "the tags count"
        );
        let (reasoning, content) = streamed_texts(&chunks);
        assert_eq!(reasoning, "I will call f, not <tool_call> here.");
        assert_eq!(content, "");
        assert_eq!(
            usage["usage"]["completion_tokens_details"]["reasoning_tokens"],
            3
        );
    }

    #[test]
    fn a_call_the_lazy_grammar_held_inside_the_thinking_is_a_call() {
        let format = ChatFormat::new(ids(), 1, false)
            .reading_tool_calls(Some(&tools(true)))
            .reading_reasoning(Some(true));
        let (chunks, _, whole) = run_with(
            format,
            &[
                "I should call f.",
                "\n<tool_call>",
                "\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
                "\n</tool_call>",
            ],
        );
        let message = &whole["choices"][0]["message"];
        assert_eq!(message["reasoning_content"], "I should call f.", "{whole}");
        assert_eq!(
            message["tool_calls"][0]["function"]["arguments"],
            r#"{"a":1}"#
        );
        assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");
        let (reasoning, content) = streamed_texts(&chunks);
        assert_eq!(
            (reasoning.as_str(), content.as_str()),
            ("I should call f.", "")
        );
        assert_eq!(
            whole["usage"]["completion_tokens_details"]["reasoning_tokens"], 1,
            "the call's tokens are not thinking"
        );
    }

    #[test]
    fn thinking_tokens_are_counted_on_the_engines_tokens_not_on_what_a_rail_lets_go() {
        let pieces = ["<think>", "a", "b", "</think>", "Paris"];
        for held in [false, true] {
            let format = ChatFormat::new(ids(), 1, false).reading_reasoning(Some(false));
            let (_, usage, whole) = run_watched(format, &pieces, held);
            assert_eq!(whole["choices"][0]["message"]["reasoning_content"], "ab");
            assert_eq!(whole["choices"][0]["message"]["content"], "Paris");
            assert_eq!(
                usage["usage"]["completion_tokens_details"]["reasoning_tokens"], 4,
                "held: {held}"
            );
        }
    }

    #[test]
    fn thinking_the_prompt_opened_and_an_answer_are_streamed_apart() {
        let format = ChatFormat::new(ids(), 1, false).reading_reasoning(Some(true));
        let (chunks, _, whole) = run_with(format, &["Two", " and\n", " two.</think>Four", "."]);
        let message = &whole["choices"][0]["message"];
        let thinking = "Two and\n two.";
        assert_eq!(message["reasoning_content"], thinking);
        assert_eq!(message["content"], "Four.");
        assert_eq!(streamed_texts(&chunks), (thinking.into(), "Four.".into()));
        assert_eq!(
            whole["usage"]["completion_tokens_details"]["reasoning_tokens"],
            3
        );
        // The piece that ends the thinking carries both.
        let both = &chunks[3]["choices"][0]["delta"];
        assert_eq!(
            (both["reasoning_content"].as_str(), both["content"].as_str()),
            (Some("\n two."), Some("Four"))
        );
    }

    #[test]
    fn without_reading_reasoning_the_tags_are_content() {
        let (chunks, whole) = run(&["<think>", "x", "</think>", "y"], true);
        let message = &whole["choices"][0]["message"];
        assert_eq!(message["content"], "<think>x</think>y");
        assert!(message.get("reasoning_content").is_none());
        assert!(whole["usage"].get("completion_tokens_details").is_none());
        assert_eq!(streamed_texts(&chunks).1, "<think>x</think>y");
        // Read, but the model did not think: no reasoning_content, zero reasoning tokens.
        let format = ChatFormat::new(ids(), 1, false).reading_reasoning(Some(false));
        let (_, _, whole) = run_with(format, &["Just", " text"]);
        assert!(whole["choices"][0]["message"]
            .get("reasoning_content")
            .is_none());
        assert_eq!(whole["choices"][0]["message"]["content"], "Just text");
        assert_eq!(
            whole["usage"]["completion_tokens_details"]["reasoning_tokens"],
            0
        );
    }

    #[test]
    fn calls_become_tool_calls_whole_and_streamed() {
        let (chunks, whole) = run(
            &[
                "\n",
                "<tool_call>\n{\"name\": ",
                "\"f\", \"arguments\": {\"a\": 1}}\n</tool_call>",
            ],
            true,
        );
        let message = &whole["choices"][0]["message"];
        assert_eq!(message["content"], Value::Null, "{whole}");
        assert_eq!(message["tool_calls"][0]["function"]["name"], "f");
        assert_eq!(
            message["tool_calls"][0]["function"]["arguments"],
            r#"{"a":1}"#
        );
        assert_eq!(message["tool_calls"][0]["id"], "call_chatcmpl-7_0_0");
        assert!(message["tool_calls"][0].get("index").is_none(), "{whole}");
        assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");
        // Streamed: the role, then one delta with the calls (index set), then the finish.
        let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(deltas.len(), 3, "{chunks:?}");
        assert_eq!(deltas[1]["tool_calls"][0]["index"], 0);
        assert_eq!(deltas[1]["tool_calls"][0]["function"]["name"], "f");
        assert!(deltas[1].get("content").is_none());
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn text_before_a_call_streams_and_text_without_calls_stays_text() {
        let (chunks, whole) = run(
            &[
                "Let me look. ",
                "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
            ],
            true,
        );
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Let me look. ");
        assert_eq!(whole["choices"][0]["message"]["content"], "Let me look. ");
        assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");
        let (_, whole) = run(&["Just ", "text."], true);
        assert_eq!(whole["choices"][0]["message"]["content"], "Just text.");
        assert!(whole["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(whole["choices"][0]["finish_reason"], "stop");
        // Two bare calls, parallel calls off: the first counts.
        let (_, whole) = run(
            &["{\"name\": \"f\", \"arguments\": {\"n\": 1}}\n{\"name\": \"f\", \"arguments\": {}}"],
            false,
        );
        let calls = whole["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["function"]["arguments"], r#"{"n":1}"#);
    }
}
