//! One finished span as the exporter sends it: ids, name, kind, start and end (Unix
//! nanoseconds), attributes and status. A plain record: whoever measured the work fills it in
//! and hands it to [`crate::Exporter::record`].

use std::time::{SystemTime, UNIX_EPOCH};

use crate::context::{SpanContext, SpanId, TraceId};

/// The longest string attribute value kept, in bytes; longer values are cut at a character
/// boundary, so one span cannot grow without bound.
pub const MAX_ATTRIBUTE_BYTES: usize = 1024;

/// The longest span name and status message kept, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// What a span stands for, as OTLP numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// Work inside the service (`SPAN_KIND_INTERNAL` = 1).
    Internal,
    /// A request the service answered (`SPAN_KIND_SERVER` = 2).
    Server,
    /// A request the service sent (`SPAN_KIND_CLIENT` = 3).
    Client,
}

impl SpanKind {
    /// The OTLP enum value.
    pub fn code(self) -> u8 {
        match self {
            Self::Internal => 1,
            Self::Server => 2,
            Self::Client => 3,
        }
    }
}

/// An attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    String(String),
    Int(i64),
    Bool(bool),
    Double(f64),
}

impl From<&str> for AttributeValue {
    fn from(value: &str) -> Self {
        Self::String(clip(value, MAX_ATTRIBUTE_BYTES).to_owned())
    }
}

impl From<String> for AttributeValue {
    fn from(mut value: String) -> Self {
        let end = clip(&value, MAX_ATTRIBUTE_BYTES).len();
        value.truncate(end);
        Self::String(value)
    }
}

impl From<i64> for AttributeValue {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<u64> for AttributeValue {
    /// Counts past `i64::MAX` (which no token count reaches) are kept as `i64::MAX`.
    fn from(value: u64) -> Self {
        Self::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }
}

impl From<bool> for AttributeValue {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<f64> for AttributeValue {
    fn from(value: f64) -> Self {
        Self::Double(value)
    }
}

/// A span's outcome. Unset is OTLP's default and what the HTTP conventions ask for on a
/// server span that did not fail.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Status {
    /// `STATUS_CODE_UNSET` = 0.
    #[default]
    Unset,
    /// `STATUS_CODE_OK` = 1.
    Ok,
    /// `STATUS_CODE_ERROR` = 2, with a message.
    Error(String),
}

impl Status {
    /// An error status; the message is cut to [`MAX_NAME_BYTES`].
    pub fn error(message: impl AsRef<str>) -> Self {
        Self::Error(clip(message.as_ref(), MAX_NAME_BYTES).to_owned())
    }

    /// The OTLP status code.
    pub fn code(&self) -> u8 {
        match self {
            Self::Unset => 0,
            Self::Ok => 1,
            Self::Error(_) => 2,
        }
    }
}

/// One finished (or finishing) span.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The span this one belongs under; `None` for a trace's root.
    pub parent_span_id: Option<SpanId>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: Vec<(String, AttributeValue)>,
    pub status: Status,
}

impl Span {
    /// A span at `context` under `parent`, started at `start_unix_nanos` and (until
    /// [`Span::end_at`] says otherwise) ending then too, with no attributes and unset status.
    pub fn new(
        context: SpanContext,
        parent: Option<SpanId>,
        name: impl AsRef<str>,
        kind: SpanKind,
        start_unix_nanos: u64,
    ) -> Self {
        Self {
            trace_id: context.trace_id,
            span_id: context.span_id,
            parent_span_id: parent,
            name: clip(name.as_ref(), MAX_NAME_BYTES).to_owned(),
            kind,
            start_unix_nanos,
            end_unix_nanos: start_unix_nanos,
            attributes: Vec::new(),
            status: Status::Unset,
        }
    }

    /// Adds an attribute (a later value for the same key is added too; keep keys unique).
    pub fn set(&mut self, key: &str, value: impl Into<AttributeValue>) -> &mut Self {
        self.attributes.push((key.to_owned(), value.into()));
        self
    }

    /// Sets the end time, never before the start.
    pub fn end_at(&mut self, end_unix_nanos: u64) -> &mut Self {
        self.end_unix_nanos = end_unix_nanos.max(self.start_unix_nanos);
        self
    }

    /// The attribute's value, if set (for tests and exporters).
    pub fn attribute(&self, key: &str) -> Option<&AttributeValue> {
        self.attributes
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }
}

/// Now, in nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_nanos() -> u64 {
    unix_nanos(SystemTime::now())
}

/// A time in nanoseconds since the Unix epoch (0 before it; saturating far in the future).
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn clip(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_strings_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_ATTRIBUTE_BYTES);
        let AttributeValue::String(kept) = AttributeValue::from(long.as_str()) else {
            unreachable!("a string stays a string")
        };
        assert!(kept.len() <= MAX_ATTRIBUTE_BYTES);
        assert!(kept.chars().all(|c| c == 'é'));
        let AttributeValue::String(kept) = AttributeValue::from(long) else {
            unreachable!("a string stays a string")
        };
        assert!(kept.len() <= MAX_ATTRIBUTE_BYTES);
    }

    #[test]
    fn the_end_is_never_before_the_start() {
        let mut span = Span::new(SpanContext::new_root(), None, "x", SpanKind::Internal, 100);
        span.end_at(50);
        assert_eq!(span.end_unix_nanos, 100);
        span.end_at(150);
        assert_eq!(span.end_unix_nanos, 150);
    }

    #[test]
    fn huge_counts_saturate() {
        assert_eq!(
            AttributeValue::from(u64::MAX),
            AttributeValue::Int(i64::MAX)
        );
    }
}
