//! What every backend does with one generation's output on its way to the client:
//! [`TextAssembler`] turns token bytes into whole UTF-8 characters and holds back anything
//! that could still become a stop string; [`EventOutbox`] queues events and hands them to the
//! stream's bounded channel without ever blocking the engine thread. It knows nothing of
//! sampling, batches or the KV cache.

use std::collections::VecDeque;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::{
    EngineError, FinishReason, GenerationEvent, StopMatcher, StopOutput, Usage, Utf8Decoder,
};

/// One event of a stream, as the channel carries it.
pub type Event = Result<GenerationEvent, EngineError>;

/// Token bytes in, text safe to stream out.
pub struct TextAssembler {
    utf8: Utf8Decoder,
    stops: StopMatcher,
}

impl TextAssembler {
    pub fn new<S: Into<String>>(stop_strings: impl IntoIterator<Item = S>) -> Self {
        Self {
            utf8: Utf8Decoder::new(),
            stops: StopMatcher::new(stop_strings),
        }
    }

    /// The text one token's bytes release, and whether a stop string completed.
    pub fn push(&mut self, bytes: &[u8]) -> StopOutput {
        let text = self.utf8.push(bytes);
        self.stops.push(&text)
    }

    /// Text held back (an incomplete character, a possible stop-string start), released
    /// because the stream ends without a stop.
    pub fn flush(&mut self) -> String {
        let tail = self.utf8.finish();
        let mut text = self.stops.push(&tail).text;
        text.push_str(&self.stops.finish());
        text
    }
}

/// Events the client has not taken yet. What the channel refuses waits here, so a client that
/// stops reading cannot stall the other streams; the backlog is bounded by the request's
/// tokens, which the context bounds.
pub struct EventOutbox {
    sender: mpsc::Sender<Event>,
    queue: VecDeque<Event>,
    /// The last event is queued; the stream goes once the client has it.
    ended: bool,
}

impl EventOutbox {
    pub fn new(sender: mpsc::Sender<Event>) -> Self {
        Self {
            sender,
            queue: VecDeque::new(),
            ended: false,
        }
    }

    pub fn push(&mut self, event: GenerationEvent) {
        self.queue.push_back(Ok(event));
    }

    /// Queues the stream's last event (`Finished` or an error); later ones are ignored.
    pub fn end_with(&mut self, event: Event) {
        if !self.ended {
            self.queue.push_back(event);
            self.ended = true;
        }
    }

    /// Ends the stream as the scheduler decided. When it ran out of room (`Length`), the text
    /// held back was not a stop after all: it goes out with the last token.
    pub fn finish(&mut self, reason: FinishReason, usage: Usage, text: &mut TextAssembler) {
        if reason == FinishReason::Length {
            let tail = text.flush();
            if let Some(Ok(GenerationEvent::Token(token))) = self.queue.back_mut() {
                token.text.push_str(&tail);
            }
        }
        self.end_with(Ok(GenerationEvent::Finished { reason, usage }));
    }

    /// Hands over what the channel has room for; false once the client dropped its stream.
    pub fn deliver(&mut self) -> bool {
        while let Some(event) = self.queue.pop_front() {
            match self.sender.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.queue.push_front(event);
                    return true;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        !self.sender.is_closed()
    }

    /// Events are in the channel that the client's side has not taken yet.
    pub fn in_channel(&self) -> bool {
        self.sender.capacity() < self.sender.max_capacity()
    }

    pub fn has_backlog(&self) -> bool {
        !self.queue.is_empty()
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Nothing more will be sent.
    pub fn is_done(&self) -> bool {
        self.ended && self.queue.is_empty()
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_channel_keeps_the_backlog_and_a_closed_one_reports_it() {
        let (sender, mut receiver) = mpsc::channel(1);
        let mut outbox = EventOutbox::new(sender);
        outbox.push(GenerationEvent::Started {
            prompt_tokens: 1,
            cached_tokens: 0,
            prompt_logprobs: None,
        });
        outbox.end_with(Ok(GenerationEvent::Finished {
            reason: FinishReason::Stop,
            usage: Usage::default(),
        }));
        outbox.end_with(Err(EngineError::ShuttingDown));
        assert!(!outbox.in_channel());
        assert!(outbox.deliver());
        assert!(outbox.has_backlog() && !outbox.is_done());
        assert!(outbox.in_channel());
        assert!(matches!(
            receiver.try_recv(),
            Ok(Ok(GenerationEvent::Started { .. }))
        ));
        assert!(!outbox.in_channel());
        assert!(outbox.deliver());
        assert!(outbox.is_done() && outbox.in_channel());
        assert!(matches!(
            receiver.try_recv(),
            Ok(Ok(GenerationEvent::Finished { .. }))
        ));
        assert!(!outbox.in_channel());
        drop(receiver);
        assert!(!outbox.deliver());
    }

    #[test]
    fn length_releases_held_back_text_with_the_last_token() {
        let (sender, _receiver) = mpsc::channel(4);
        let mut outbox = EventOutbox::new(sender);
        let mut text = TextAssembler::new(["STOP"]);
        let out = text.push(b"abc ST");
        assert_eq!((out.text.as_str(), out.stopped), ("abc ", false));
        outbox.push(GenerationEvent::Token(crate::GeneratedToken {
            id: 1,
            text: out.text,
            logprob: None,
        }));
        outbox.finish(FinishReason::Length, Usage::default(), &mut text);
        match outbox.queue.front() {
            Some(Ok(GenerationEvent::Token(token))) => assert_eq!(token.text, "abc ST"),
            other => panic!("{other:?}"),
        }
    }
}
