//! Server-sent events in OpenAI's framing: one `data: {chunk}` per chunk, with
//! `include_usage` a last chunk holding the usage and no choices, then `data: [DONE]`. An
//! engine error mid-stream is sent as `data: {"error": …}` before `[DONE]`, and cancels the
//! other choices. When the client goes away axum drops this stream, which drops the engine
//! streams and so cancels their generations.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, SelectAll, StreamExt};
use moat_openai::UsageTally;
use serde::Serialize;

use crate::generate::{merge, tally_event, Format, MergedEvents, Started};

struct SseState<F> {
    events: MergedEvents,
    format: F,
    tally: UsageTally,
    include_usage: bool,
    pending: VecDeque<Event>,
    done: bool,
    /// A chunk sent after the choices' last chunks, before the usage chunk (chat's
    /// `citations`).
    trailer: Option<serde_json::Value>,
}

/// Events sent as they are, then `[DONE]`: an answer that needs no model.
pub(crate) fn sse_fixed(events: Vec<serde_json::Value>) -> Response {
    let mut all: Vec<Result<Event, Infallible>> = events.iter().map(|e| Ok(data(e))).collect();
    all.push(Ok(Event::default().data("[DONE]")));
    Sse::new(stream::iter(all)).into_response()
}

/// One `data:` event. Serializing these plain structs cannot fail; if it ever did, the client
/// gets an error event rather than a malformed one.
fn data<T: Serialize>(value: &T) -> Event {
    const FALLBACK: &str = r#"{"error":{"message":"could not encode a chunk","type":"server_error","param":null,"code":"internal_error"}}"#;
    Event::default().data(serde_json::to_string(value).unwrap_or_else(|_| FALLBACK.to_string()))
}

impl<F: Format> SseState<F> {
    /// Reads events until there is something to send; `None` once `[DONE]` went out.
    async fn next_event(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            match self.events.next().await {
                Some((index, first_of_prompt, Ok(event))) => {
                    tally_event(&mut self.tally, first_of_prompt, &event);
                    let chunks = self.format.on_event(index, event);
                    self.pending.extend(chunks.iter().map(data));
                }
                Some((_, _, Err(error))) => {
                    // Dropping the other choices' streams cancels their generations.
                    self.events = SelectAll::new();
                    self.pending.push_back(data(&error.body()));
                    self.finish(false);
                }
                None => {
                    let include_usage = self.include_usage;
                    self.finish(include_usage);
                }
            }
        }
    }

    fn finish(&mut self, with_usage: bool) {
        if let Some(trailer) = self.trailer.take() {
            self.pending.push_back(data(&trailer));
        }
        if with_usage {
            let chunk = self.format.usage_chunk(self.tally.wire());
            self.pending.push_back(data(&chunk));
        }
        self.pending.push_back(Event::default().data("[DONE]"));
        self.done = true;
    }
}

/// The streamed answer for generations already started.
pub(crate) fn sse<F: Format>(choices: Vec<Started>, format: F, include_usage: bool) -> Response {
    sse_with_trailer(choices, format, include_usage, None)
}

/// As [`sse`], with one more chunk after the choices' last ones (before the usage chunk).
pub(crate) fn sse_with_trailer<F: Format>(
    choices: Vec<Started>,
    format: F,
    include_usage: bool,
    trailer: Option<serde_json::Value>,
) -> Response {
    let state = SseState {
        events: merge(choices),
        format,
        tally: UsageTally::default(),
        include_usage,
        pending: VecDeque::new(),
        done: false,
        trailer,
    };
    let events = stream::unfold(state, SseState::next_event);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
