//! Server-sent events in OpenAI's framing: one `data: {chunk}` per chunk, with
//! `include_usage` a last chunk holding the usage and no choices, then `data: [DONE]`. An
//! engine error mid-stream is sent as `data: {"error": …}` before `[DONE]`, and cancels the
//! other choices. When the client goes away axum drops this stream, which drops the engine
//! streams and so cancels their generations.
//!
//! The chunks are first a stream of [`Piece`]s (serialised JSON), which the SSE response frames
//! and the gateway's local provider (`gateway.rs`) hands to the router as JSON values.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, BoxStream, SelectAll, Stream, StreamExt};
use moat_openai::UsageTally;
use serde::Serialize;

use crate::generate::{merge, tally_event, Format, MergedEvents, Started};

/// One piece of a streamed answer, before SSE framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A chunk, serialised.
    Chunk(String),
    /// An error body, serialised; the stream ends after it.
    Error(String),
}

/// A streamed answer, piece by piece; `[DONE]` is implied by its end.
pub(crate) type Pieces = BoxStream<'static, Piece>;

struct PieceState<F> {
    events: MergedEvents,
    format: F,
    tally: UsageTally,
    include_usage: bool,
    pending: VecDeque<Piece>,
    done: bool,
    /// A chunk sent after the choices' last chunks, before the usage chunk (chat's
    /// `citations`).
    trailer: Option<serde_json::Value>,
}

/// Serialises a chunk. Serializing these plain structs cannot fail; if it ever did, the client
/// gets an error piece rather than a malformed one.
pub(crate) fn piece<T: Serialize>(value: &T) -> Piece {
    const FALLBACK: &str = r#"{"error":{"message":"could not encode a chunk","type":"server_error","param":null,"code":"internal_error"}}"#;
    match serde_json::to_string(value) {
        Ok(text) => Piece::Chunk(text),
        Err(_) => Piece::Error(FALLBACK.to_string()),
    }
}

fn error_piece<T: Serialize>(body: &T) -> Piece {
    match piece(body) {
        Piece::Chunk(text) | Piece::Error(text) => Piece::Error(text),
    }
}

impl<F: Format> PieceState<F> {
    /// Reads events until there is something to send; `None` after the last piece.
    async fn next_piece(mut self) -> Option<(Piece, Self)> {
        loop {
            if let Some(piece) = self.pending.pop_front() {
                return Some((piece, self));
            }
            if self.done {
                return None;
            }
            match self.events.next().await {
                Some((index, first_of_prompt, Ok(event))) => {
                    tally_event(&mut self.tally, first_of_prompt, &event);
                    let chunks = self.format.on_event(index, event);
                    self.pending.extend(chunks.iter().map(piece));
                }
                Some((_, _, Err(error))) => {
                    // Dropping the other choices' streams cancels their generations.
                    self.events = SelectAll::new();
                    self.pending.push_back(error_piece(&error.body()));
                    self.done = true;
                }
                None => {
                    if let Some(trailer) = self.trailer.take() {
                        self.pending.push_back(piece(&trailer));
                    }
                    if self.include_usage {
                        let chunk = self.format.usage_chunk(self.tally.wire());
                        self.pending.push_back(piece(&chunk));
                    }
                    self.done = true;
                }
            }
        }
    }
}

/// The pieces of the streamed answer for generations already started, with one more chunk
/// after the choices' last ones (before the usage chunk) when `trailer` is set.
pub(crate) fn pieces<F: Format>(
    choices: Vec<Started>,
    format: F,
    include_usage: bool,
    trailer: Option<serde_json::Value>,
) -> Pieces {
    let state = PieceState {
        events: merge(choices),
        format,
        tally: UsageTally::default(),
        include_usage,
        pending: VecDeque::new(),
        done: false,
        trailer,
    };
    stream::unfold(state, PieceState::next_piece).boxed()
}

/// Fixed pieces: an answer that needs no model.
pub(crate) fn fixed_pieces(values: Vec<serde_json::Value>) -> Pieces {
    let all: Vec<Piece> = values.iter().map(piece).collect();
    stream::iter(all).boxed()
}

/// Frames pieces as SSE, `[DONE]` last.
pub(crate) fn sse_response(pieces: impl Stream<Item = Piece> + Send + 'static) -> Response {
    let events = pieces
        .map(|piece| match piece {
            Piece::Chunk(text) | Piece::Error(text) => Event::default().data(text),
        })
        .chain(stream::once(async { Event::default().data("[DONE]") }))
        .map(Ok::<_, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A generated answer before it becomes an HTTP response: the whole body, or its pieces.
pub(crate) enum Answer {
    Whole(serde_json::Value),
    Stream(Pieces),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Self::Whole(value) => axum::Json(value).into_response(),
            Self::Stream(pieces) => sse_response(pieces),
        }
    }
}
