//! An incremental Server-Sent Events decoder with bounded line and event sizes.
//!
//! It knows the SSE framing only (`data:` lines, comments, blank-line dispatch), not what the
//! events mean; the client turns event payloads into JSON. Bytes arrive in arbitrary pieces, so
//! a line may be split across many `push` calls; the limits make sure a hostile or broken peer
//! that never sends a newline cannot make us buffer without bound.

use crate::UpstreamError;

/// Bounds on what one SSE line and one event may hold, so a peer that never ends a line or an
/// event gets a `MalformedStream` error instead of unbounded memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseLimits {
    /// The longest line accepted, in bytes, without its line ending.
    pub max_line_bytes: usize,
    /// The largest `data` payload of one event, in bytes.
    pub max_event_bytes: usize,
}

impl Default for SseLimits {
    fn default() -> Self {
        Self {
            max_line_bytes: 1024 * 1024,
            max_event_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Decodes a byte stream into the `data` payloads of its events, one `push` at a time.
#[derive(Debug)]
pub struct SseDecoder {
    limits: SseLimits,
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
}

impl SseDecoder {
    /// A decoder with empty buffers and the given limits.
    pub fn new(limits: SseLimits) -> Self {
        Self {
            limits,
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
        }
    }

    /// Feeds the next piece of the stream and appends every event it completes to `events`.
    pub fn push(
        &mut self,
        mut chunk: &[u8],
        events: &mut Vec<String>,
    ) -> Result<(), UpstreamError> {
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.extend_line(&chunk[..end])?;
                    chunk = &chunk[end + 1..];
                    let mut line = std::mem::take(&mut self.line);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    self.take_line(&line, events)?;
                }
                None => {
                    self.extend_line(chunk)?;
                    chunk = &[];
                }
            }
        }
        Ok(())
    }

    /// Ends the stream: a last line without a newline and an event without its blank line are
    /// still delivered, as the SSE specification's parsers do at end of input.
    pub fn finish(&mut self, events: &mut Vec<String>) -> Result<(), UpstreamError> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.take_line(&line, events)?;
        }
        self.dispatch(events)
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), UpstreamError> {
        if self.line.len() + bytes.len() > self.limits.max_line_bytes {
            return Err(UpstreamError::MalformedStream {
                reason: format!("a line is longer than {} bytes", self.limits.max_line_bytes),
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn take_line(&mut self, line: &[u8], events: &mut Vec<String>) -> Result<(), UpstreamError> {
        if line.is_empty() {
            return self.dispatch(events);
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        // Only `data` matters for OpenAI-compatible streams; `event`, `id` and `retry` are ignored.
        if field == b"data" {
            let separator = usize::from(self.has_data);
            if self.data.len() + separator + value.len() > self.limits.max_event_bytes {
                return Err(UpstreamError::MalformedStream {
                    reason: format!(
                        "an event is larger than {} bytes",
                        self.limits.max_event_bytes
                    ),
                });
            }
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        Ok(())
    }

    fn dispatch(&mut self, events: &mut Vec<String>) -> Result<(), UpstreamError> {
        if !self.has_data {
            return Ok(());
        }
        self.has_data = false;
        let data = std::mem::take(&mut self.data);
        let text = String::from_utf8(data).map_err(|_| UpstreamError::MalformedStream {
            reason: "an event is not valid UTF-8".to_owned(),
        })?;
        events.push(text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Vec<String> {
        let mut decoder = SseDecoder::new(SseLimits::default());
        let mut events = Vec::new();
        for chunk in input.chunks(piece) {
            decoder.push(chunk, &mut events).unwrap();
        }
        decoder.finish(&mut events).unwrap();
        events
    }

    #[test]
    fn events_split_anywhere_decode_the_same() {
        let input = b": keep-alive\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: two\ndata: lines\n\ndata:[DONE]\n\n";
        let expected = vec![
            "{\"a\":1}".to_owned(),
            "two\nlines".to_owned(),
            "[DONE]".to_owned(),
        ];
        for piece in 1..input.len() {
            assert_eq!(
                decode_in_pieces(input, piece),
                expected,
                "piece size {piece}"
            );
        }
    }

    #[test]
    fn an_unterminated_last_event_is_delivered_at_finish() {
        assert_eq!(decode_in_pieces(b"data: tail", 3), vec!["tail".to_owned()]);
    }

    #[test]
    fn a_line_without_end_past_the_limit_is_an_error() {
        let limits = SseLimits {
            max_line_bytes: 16,
            max_event_bytes: 64,
        };
        let mut decoder = SseDecoder::new(limits);
        let mut events = Vec::new();
        decoder.push(b"data: 0123456789", &mut events).unwrap();
        let err = decoder.push(b"abcdef", &mut events).unwrap_err();
        assert!(
            matches!(err, UpstreamError::MalformedStream { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn an_event_of_many_lines_past_the_limit_is_an_error() {
        let limits = SseLimits {
            max_line_bytes: 16,
            max_event_bytes: 20,
        };
        let mut decoder = SseDecoder::new(limits);
        let mut events = Vec::new();
        let err = decoder
            .push(b"data: 0123456789\ndata: 0123456789\n", &mut events)
            .unwrap_err();
        assert!(
            matches!(err, UpstreamError::MalformedStream { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_panic() {
        let mut decoder = SseDecoder::new(SseLimits::default());
        let mut events = Vec::new();
        let err = decoder
            .push(b"data: \xff\xfe\n\n", &mut events)
            .unwrap_err();
        assert!(
            matches!(err, UpstreamError::MalformedStream { .. }),
            "{err:?}"
        );
    }
}
