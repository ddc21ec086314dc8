//! OpenAI's chunks and bodies, as moat's routes produce them, in Ollama's shapes: a stream of
//! newline-delimited objects or one object, with the stop reason, counts and durations.

use super::*;

/// Which endpoint the answer is for: chat answers carry `message`, generate answers `response`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Chat,
    Generate,
}

/// What the last object of an answer reports.
pub(super) struct Tally {
    began: Instant,
    first_token: Option<Instant>,
    finish: Option<String>,
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl Tally {
    fn new(began: Instant) -> Self {
        Self {
            began,
            first_token: None,
            finish: None,
            prompt_tokens: 0,
            completion_tokens: 0,
        }
    }

    fn usage(&mut self, usage: &Value) {
        let count = |field: &str| usage.get(field).and_then(Value::as_u64).unwrap_or(0);
        self.prompt_tokens = count("prompt_tokens");
        self.completion_tokens = count("completion_tokens");
    }

    /// The fields of the object with `done: true`. The prompt's time is the time to the first
    /// token (queueing included); there is no load time, since served models stay loaded.
    fn done_fields(&self, object: &mut Map<String, Value>) {
        let end = Instant::now();
        let first = self.first_token.unwrap_or(end);
        let nanos = |d: Duration| json!(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        object.insert("done".into(), json!(true));
        object.insert(
            "done_reason".into(),
            json!(self.finish.as_deref().unwrap_or("stop")),
        );
        object.insert("total_duration".into(), nanos(end - self.began));
        object.insert("load_duration".into(), json!(0));
        object.insert("prompt_eval_count".into(), json!(self.prompt_tokens));
        object.insert("prompt_eval_duration".into(), nanos(first - self.began));
        object.insert("eval_count".into(), json!(self.completion_tokens));
        object.insert("eval_duration".into(), nanos(end - first));
    }
}

/// A tool call read from a stream's fragments: OpenAI streams a call's id and name in its
/// first fragment and its arguments (JSON text) in pieces, which may arrive over many chunks
/// (an upstream's, or what an output rail held back and sent with the finish).
#[derive(Default)]
pub(super) struct PendingCall {
    /// The `index` its fragments carry (upstreams number calls from 0 or 1, or leave it out).
    key: u64,
    id: Option<String>,
    name: Option<Value>,
    arguments: String,
}

/// Adds the calls of a chunk's delta to `calls`: a fragment with an `id` not seen under its
/// index starts a call (some upstreams give every call index 0), one without goes on the
/// latest call with its index (or its place in the chunk, when it has none).
pub(super) fn read_call_fragments(part: &Value, calls: &mut Vec<PendingCall>) {
    let Some(fragments) = part.get("tool_calls").and_then(Value::as_array) else {
        return;
    };
    for (position, fragment) in fragments.iter().enumerate() {
        let key = fragment
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let id = fragment.get("id").and_then(Value::as_str);
        let latest = calls.iter().rposition(|call| call.key == key);
        let at = match (latest, id) {
            (Some(at), Some(id)) if calls[at].id.as_deref().is_some_and(|seen| seen != id) => None,
            (latest, _) => latest,
        };
        let at = at.unwrap_or_else(|| {
            calls.push(PendingCall {
                key,
                ..PendingCall::default()
            });
            calls.len() - 1
        });
        let call = &mut calls[at];
        if let Some(id) = id {
            call.id = Some(id.to_owned());
        }
        let Some(function) = fragment.get("function") else {
            continue;
        };
        if let Some(name) = function.get("name").filter(|n| n.is_string()) {
            call.name = Some(name.clone());
        }
        match function.get("arguments") {
            Some(Value::String(text)) => call.arguments.push_str(text),
            Some(value @ (Value::Object(_) | Value::Array(_))) => {
                call.arguments = value.to_string();
            }
            _ => {}
        }
    }
}

/// Finished calls in Ollama's form: `{"function": {"name", "arguments": {...}}}` (arguments as
/// an object, not JSON text); a call without a name is dropped.
pub(super) fn ollama_tool_calls(calls: Vec<PendingCall>) -> Vec<Value> {
    calls
        .into_iter()
        .filter_map(|call| {
            let arguments = serde_json::from_str::<Value>(&call.arguments)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            Some(json!({"function": {"name": call.name?, "arguments": arguments}}))
        })
        .collect()
}

/// One object of an answer with `text` as its content.
pub(super) fn object(shape: Shape, model: &str, text: &str) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("model".into(), json!(model));
    object.insert("created_at".into(), json!(now()));
    match shape {
        Shape::Chat => {
            object.insert(
                "message".into(),
                json!({ "role": "assistant", "content": text }),
            );
        }
        Shape::Generate => {
            object.insert("response".into(), json!(text));
        }
    }
    object
}

/// The text of choice 0 in a chunk (`delta.content` or `text`) or a whole answer
/// (`message.content` or `text`).
pub(super) fn choice_text<'a>(choice: &'a Value, part: &str) -> Option<&'a str> {
    choice
        .get(part)
        .and_then(|p| p.get("content"))
        .or_else(|| choice.get("text"))
        .and_then(Value::as_str)
}

/// A delta's or message's thinking: `reasoning_content` (moat's, llama-server's), or
/// `reasoning` (newer vLLM's, through a gateway alias).
pub(super) fn reasoning_text(part: &Value) -> Option<&str> {
    let text = |field: &str| {
        part.get(field)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
    };
    text(moat_openai::REASONING_CONTENT).or_else(|| text("reasoning"))
}

/// Puts `thinking` into an Ollama object: `message.thinking` for chat, `thinking` for
/// generate.
fn with_thinking(object: &mut Map<String, Value>, thinking: &str) {
    match object.get_mut("message").and_then(Value::as_object_mut) {
        Some(message) => {
            message.insert("thinking".into(), json!(thinking));
        }
        None => {
            object.insert("thinking".into(), json!(thinking));
        }
    }
}

/// The message of an OpenAI error body (`{"error": {"message": ...}}`), if it is one.
pub(super) fn openai_error_message(body: &[u8]) -> Option<String> {
    let value = serde_json::from_slice::<Value>(body).ok()?;
    value
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// An error object's message, from an OpenAI error body (the body itself if it is not one).
pub(super) fn error_message(body: &str) -> String {
    openai_error_message(body.as_bytes()).unwrap_or_else(|| body.to_owned())
}

pub(super) fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

/// What one piece of the internal stream means for the Ollama answer.
pub(super) enum Step {
    /// Text to pass on, with the log probabilities of the tokens read since the last text
    /// (when asked for).
    Text(String, Vec<Value>),
    /// A reasoning model's thinking (`reasoning_content`), passed on as `thinking`, with the
    /// log probabilities of the tokens read since the last step that carried some.
    Thinking(String, Vec<Value>),
    /// Tool calls, in Ollama's form.
    Calls(Vec<Value>),
    /// The answer failed: this error body (OpenAI's shape).
    Failed(String),
}

/// Reads the internal OpenAI stream: text, tool calls, the finish reason and the usage.
pub(super) struct Reader {
    pieces: Pieces,
    tally: Tally,
    /// Log probabilities of tokens whose text has not been passed on yet (a stop string's
    /// first characters are held back).
    logprobs: Vec<Value>,
    /// Tool calls being read, until the choice finishes.
    calls: Vec<PendingCall>,
    /// Steps read from one chunk and not yet taken.
    ready: std::collections::VecDeque<Step>,
    /// The pieces have ended (a local stream must not be polled again).
    ended: bool,
}

impl Reader {
    fn new(pieces: Pieces, began: Instant) -> Reader {
        Reader {
            pieces,
            tally: Tally::new(began),
            logprobs: Vec::new(),
            calls: Vec::new(),
            ready: std::collections::VecDeque::new(),
            ended: false,
        }
    }

    /// The next step; `None` at the end of the stream.
    async fn next(&mut self) -> Option<Step> {
        loop {
            if let Some(step) = self.ready.pop_front() {
                return Some(step);
            }
            if self.ended {
                return None;
            }
            match self.pieces.next().await {
                Some(Piece::Error(body)) => return Some(Step::Failed(body)),
                Some(Piece::Chunk(text)) => self.chunk(&text),
                None => {
                    self.ended = true;
                    // Calls of a stream that ended without a finish reason still count.
                    if !self.calls.is_empty() {
                        let calls = ollama_tool_calls(std::mem::take(&mut self.calls));
                        return Some(Step::Calls(calls));
                    }
                    return None;
                }
            }
        }
    }

    fn chunk(&mut self, text: &str) {
        let Ok(chunk) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.tally.usage(usage);
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return;
        };
        let finished = match choice.get("finish_reason").and_then(Value::as_str) {
            Some(reason) => {
                // Ollama ends an answer that made calls with "stop".
                let reason = if reason == "tool_calls" {
                    "stop"
                } else {
                    reason
                };
                self.tally.finish = Some(reason.to_owned());
                true
            }
            None => false,
        };
        let delta = choice.get("delta");
        if let Some(delta) = delta {
            let before = self.calls.len();
            read_call_fragments(delta, &mut self.calls);
            if self.calls.len() > before {
                self.tally.first_token.get_or_insert_with(Instant::now);
            }
        }
        self.logprobs.extend(token_logprobs(choice));
        if let Some(thinking) = delta.and_then(reasoning_text).filter(|t| !t.is_empty()) {
            self.tally.first_token.get_or_insert_with(Instant::now);
            self.ready.push_back(Step::Thinking(
                thinking.to_owned(),
                std::mem::take(&mut self.logprobs),
            ));
        }
        if let Some(text) = choice_text(choice, "delta").filter(|t| !t.is_empty()) {
            self.tally.first_token.get_or_insert_with(Instant::now);
            self.ready.push_back(Step::Text(
                text.to_owned(),
                std::mem::take(&mut self.logprobs),
            ));
        }
        if finished && !self.calls.is_empty() {
            let calls = ollama_tool_calls(std::mem::take(&mut self.calls));
            self.ready.push_back(Step::Calls(calls));
        }
    }
}

/// A chunk's log probabilities in Ollama's form, which is chat's (`token`, `logprob`, `bytes`,
/// `top_logprobs`); the completions endpoint's (`tokens`, `token_logprobs`, `top_logprobs` as
/// maps) is turned into it.
pub(super) fn token_logprobs(choice: &Value) -> Vec<Value> {
    let Some(logprobs) = choice.get("logprobs").filter(|l| !l.is_null()) else {
        return Vec::new();
    };
    if let Some(content) = logprobs.get("content").and_then(Value::as_array) {
        return content.clone();
    }
    let list = |field: &str| {
        logprobs
            .get(field)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (tokens, values, tops) = (list("tokens"), list("token_logprobs"), list("top_logprobs"));
    let entry = |token: &str, logprob: &Value| json!({ "token": token, "logprob": logprob, "bytes": token.as_bytes() });
    tokens
        .iter()
        .zip(values.iter())
        .enumerate()
        .map(|(i, (token, logprob))| {
            let token = token.as_str().unwrap_or_default();
            let mut alternatives: Vec<(String, Value)> = tops
                .get(i)
                .and_then(Value::as_object)
                .map(|top| top.iter().map(|(t, l)| (t.clone(), l.clone())).collect())
                .unwrap_or_default();
            alternatives.sort_by(|a, b| {
                let (a, b) = (a.1.as_f64().unwrap_or(0.0), b.1.as_f64().unwrap_or(0.0));
                b.total_cmp(&a)
            });
            let mut out = entry(token, logprob);
            out["top_logprobs"] = alternatives
                .iter()
                .map(|(t, l)| entry(t, l))
                .collect::<Vec<_>>()
                .into();
            out
        })
        .collect()
}

/// Relays the answer as newline-delimited JSON: one object per piece of text, then one with
/// `done: true`; an error ends the stream with `{"error": ...}`.
pub(super) struct Relay {
    reader: Reader,
    shape: Shape,
    model: String,
    logprobs: bool,
    done: bool,
}

impl Relay {
    async fn next_line(mut self) -> Option<(Result<Bytes, std::convert::Infallible>, Self)> {
        if self.done {
            return None;
        }
        let value = match self.reader.next().await {
            Some(Step::Text(text, logprobs)) => {
                let mut object = object(self.shape, &self.model, &text);
                if self.logprobs {
                    object.insert("logprobs".into(), Value::Array(logprobs));
                }
                object.insert("done".into(), json!(false));
                Value::Object(object)
            }
            Some(Step::Calls(calls)) => {
                let mut object = object(self.shape, &self.model, "");
                if let Some(message) = object.get_mut("message") {
                    message["tool_calls"] = Value::Array(calls);
                }
                object.insert("done".into(), json!(false));
                Value::Object(object)
            }
            Some(Step::Thinking(thinking, logprobs)) => {
                let mut object = object(self.shape, &self.model, "");
                with_thinking(&mut object, &thinking);
                if self.logprobs {
                    object.insert("logprobs".into(), Value::Array(logprobs));
                }
                object.insert("done".into(), json!(false));
                Value::Object(object)
            }
            Some(Step::Failed(body)) => {
                self.done = true;
                json!({ "error": error_message(&body) })
            }
            None => {
                self.done = true;
                let mut last = object(self.shape, &self.model, "");
                if self.logprobs && !self.reader.logprobs.is_empty() {
                    let rest = std::mem::take(&mut self.reader.logprobs);
                    last.insert("logprobs".into(), Value::Array(rest));
                }
                self.reader.tally.done_fields(&mut last);
                Value::Object(last)
            }
        };
        Some((Ok(line(&value)), self))
    }
}

/// The answer in Ollama's shape: a stream of objects, or (`stream: false`) one object with the
/// whole text. moat generates both as a stream, so the durations are measured the same way.
pub(super) async fn respond(
    answer: Answer,
    shape: Shape,
    model: &str,
    asked: Asked,
    began: Instant,
) -> Result<Response> {
    let pieces = match answer {
        Answer::Stream(pieces) => pieces,
        // Every request is made with `stream: true`; a whole answer still reads as one piece.
        Answer::Whole(value) => stream::iter([Piece::Chunk(whole_as_chunk(&value))]).boxed(),
    };
    let mut reader = Reader::new(pieces, began);
    if asked.stream {
        let relay = Relay {
            reader,
            shape,
            model: model.to_owned(),
            logprobs: asked.logprobs,
            done: false,
        };
        let lines = stream::unfold(relay, Relay::next_line);
        let mut response = Body::from_stream(lines).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-ndjson"),
        );
        return Ok(response);
    }
    let mut text = String::new();
    let mut thinking = String::new();
    let mut logprobs = Vec::new();
    let mut calls = Vec::new();
    while let Some(step) = reader.next().await {
        match step {
            Step::Text(piece, more) => {
                text.push_str(&piece);
                logprobs.extend(more);
            }
            Step::Thinking(piece, more) => {
                thinking.push_str(&piece);
                logprobs.extend(more);
            }
            Step::Calls(more) => calls.extend(more),
            Step::Failed(body) => return Err(failed(&body)),
        }
    }
    let mut object = object(shape, model, &text);
    if !thinking.is_empty() {
        with_thinking(&mut object, &thinking);
    }
    if !calls.is_empty() {
        if let Some(message) = object.get_mut("message") {
            message["tool_calls"] = Value::Array(calls);
        }
    }
    if asked.logprobs {
        logprobs.append(&mut reader.logprobs);
        object.insert("logprobs".into(), Value::Array(logprobs));
    }
    reader.tally.done_fields(&mut object);
    Ok(Json(Value::Object(object)).into_response())
}

/// What the client asked of the answer's form.
#[derive(Clone, Copy)]
pub(super) struct Asked {
    /// A stream of objects (Ollama's default), or one.
    pub(super) stream: bool,
    /// Log probabilities in each object.
    pub(super) logprobs: bool,
}

impl Asked {
    pub(super) fn of(common: &Common) -> Self {
        Self {
            stream: common.streams(),
            logprobs: common.wants_logprobs(),
        }
    }
}

/// A whole OpenAI answer as one chunk with its text as the delta.
pub(super) fn whole_as_chunk(value: &Value) -> String {
    let choice = value.pointer("/choices/0").cloned().unwrap_or_default();
    let text = choice_text(&choice, "message").unwrap_or_default();
    let calls = choice.pointer("/message/tool_calls").cloned();
    let thinking = choice.get("message").and_then(reasoning_text);
    json!({
        "choices": [{
            "index": 0,
            "delta": { "content": text, "tool_calls": calls, "reasoning_content": thinking },
            "finish_reason": choice.get("finish_reason"),
        }],
        "usage": value.get("usage"),
    })
    .to_string()
}

/// The error response for an answer that failed after it started (in moat's internal stream),
/// when the client asked for one object: a blocked answer is a 400, as on `/v1`.
pub(super) fn failed(body: &str) -> ApiError {
    let value = serde_json::from_str::<Value>(body).unwrap_or_default();
    let message = error_message(body);
    if value.pointer("/error/code").and_then(Value::as_str) == Some("content_policy_violation") {
        ApiError::invalid_request(message).with_code("content_policy_violation")
    } else {
        ApiError::internal(message)
    }
}

/// The answer to a request with no prompt: Ollama loads the model and says so; moat checks
/// that it names a chat model the caller may use (`model`, as resolved; `asked_for`, as sent).
pub(super) fn loaded(
    state: &AppState,
    caller: &Caller,
    model: &str,
    shape: Shape,
    asked_for: &str,
) -> Result<Response> {
    check_chat_model(state, model)?;
    caller.authorize(model, model)?;
    let mut object = object(shape, asked_for, "");
    object.insert("done".into(), json!(true));
    object.insert("done_reason".into(), json!("load"));
    Ok(Json(Value::Object(object)).into_response())
}

/// Answers an OpenAI chat body, local or through the gateway.
pub(super) async fn answer_chat(state: &AppState, caller: &Caller, body: &Value) -> Result<Answer> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if matches!(named(state, model), Some(Named::Gateway)) {
        let (answer, _cache) = crate::gateway::chat_answer(state, caller, model, &bytes).await?;
        return Ok(answer);
    }
    crate::routes::chat::local_chat(state, caller, &bytes, None).await
}

/// Fails with the same error a chat request for `model` would get, when it names no chat model.
pub(super) fn check_chat_model(state: &AppState, model: &str) -> Result<()> {
    match named(state, model) {
        Some(Named::Chat) => state.model(model).map(drop),
        Some(Named::Alias(_) | Named::Gateway) => Ok(()),
        Some(Named::Embedding) => Err(ApiError::not_a_chat_model(model)),
        None => Err(ApiError::model_not_found(model)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_fragments_are_put_together_by_index() {
        let mut calls = Vec::new();
        for delta in [
            json!({"tool_calls": [{"index": 0, "id": "a", "type": "function",
                "function": {"name": "mail", "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"to\": "}}]}),
            json!({"tool_calls": [{"index": 1, "id": "b", "type": "function",
                "function": {"name": "time", "arguments": {"zone": "UTC"}}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"bob\"}"}}]}),
            json!({"tool_calls": null}),
        ] {
            read_call_fragments(&delta, &mut calls);
        }
        assert_eq!(
            ollama_tool_calls(calls),
            [
                json!({"function": {"name": "mail", "arguments": {"to": "bob"}}}),
                json!({"function": {"name": "time", "arguments": {"zone": "UTC"}}}),
            ]
        );
    }

    #[test]
    fn calls_numbered_from_one_or_all_at_index_zero_stay_apart() {
        let call = |index: u64, id: &str, name: &str, arguments: &str| {
            json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                "function": {"name": name, "arguments": arguments}}]})
        };
        let more = |index: u64, arguments: &str| json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]});
        let expected = [
            json!({"function": {"name": "a", "arguments": {"x": 1}}}),
            json!({"function": {"name": "b", "arguments": {"y": 2}}}),
        ];
        for (first, second) in [(1, 2), (0, 0)] {
            let mut calls = Vec::new();
            for delta in [
                call(first, "c1", "a", "{\"x\":"),
                more(first, "1}"),
                call(second, "c2", "b", "{\"y\":"),
                more(second, "2}"),
            ] {
                read_call_fragments(&delta, &mut calls);
            }
            assert_eq!(
                ollama_tool_calls(calls),
                expected,
                "indexes {first}, {second}"
            );
        }
        // No index at all: each call's place in its chunk.
        let mut calls = Vec::new();
        read_call_fragments(
            &json!({"tool_calls": [
                {"id": "c1", "function": {"name": "a", "arguments": "{\"x\":1}"}},
                {"id": "c2", "function": {"name": "b", "arguments": "{\"y\":2}"}}]}),
            &mut calls,
        );
        assert_eq!(ollama_tool_calls(calls), expected);
    }

    #[tokio::test]
    async fn the_reader_gives_thinking_text_and_calls_of_one_chunk_and_calls_at_the_finish() {
        let chunk = |delta: Value, finish: Value| {
            Piece::Chunk(
                json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                    .to_string(),
            )
        };
        let pieces = vec![
            chunk(json!({"reasoning_content": "Bob wants mail."}), Value::Null),
            chunk(
                json!({"content": "Let me check.", "tool_calls": [{"index": 0, "id": "a",
                    "type": "function", "function": {"name": "mail", "arguments": ""}}]}),
                Value::Null,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"to\": \"bob\"}"}}]}),
                json!("tool_calls"),
            ),
        ];
        let mut reader = Reader::new(stream::iter(pieces).boxed(), Instant::now());
        let mut steps = Vec::new();
        while let Some(step) = reader.next().await {
            steps.push(match step {
                Step::Text(text, _) => json!({"text": text}),
                Step::Thinking(text, _) => json!({"thinking": text}),
                Step::Calls(calls) => json!({"calls": calls}),
                Step::Failed(body) => json!({"failed": body}),
            });
        }
        assert_eq!(
            steps,
            [
                json!({"thinking": "Bob wants mail."}),
                json!({"text": "Let me check."}),
                json!({"calls": [{"function": {"name": "mail", "arguments": {"to": "bob"}}}]}),
            ]
        );
        assert_eq!(reader.tally.finish.as_deref(), Some("stop"));
    }
}
